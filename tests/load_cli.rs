//! `keel load` end to end, briefly: both modes run, report, and chart.
#![allow(clippy::unwrap_used, reason = "tests: a failed setup should fail loudly")]

use std::process::Command;

#[test]
fn closed_and_open_loop_runs_report_rates_and_percentiles() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("load.svg");
    for extra in [&[][..], &["--rate", "2000"][..]] {
        let mut args = vec![
            "load",
            "--seconds",
            "1",
            "--connections",
            "2",
            "--batch",
            "50",
            "--json",
            "--svg",
            svg.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let output = Command::new(env!("CARGO_BIN_EXE_keel")).args(&args).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert!(report["instructions"].as_u64().unwrap() > 0, "{report}");
        // The run records what its figures depend on.
        assert!(report["realtime_priority"].is_null(), "{report}");
        assert!(report["data_dir_parent"].is_string(), "{report}");
        // And the host's steal, where the machine counts it: one figure a second, adding up.
        if std::path::Path::new("/proc/stat").exists() {
            let total = report["host_steal_ms"].as_u64().unwrap();
            let seconds = report["host_steal_ms_per_second"].as_array().unwrap();
            assert_eq!(seconds.len(), report["per_second"].as_array().unwrap().len(), "{report}");
            assert_eq!(seconds.iter().map(|ms| ms.as_u64().unwrap()).sum::<u64>(), total);
            assert!(report["cpus"].as_u64().unwrap() >= 1, "{report}");
        }
        let latency = &report["batch_latency_us"];
        assert!(latency["p50"].as_u64().unwrap() <= latency["p99"].as_u64().unwrap());
        assert!(latency["p99"].as_u64().unwrap() <= latency["max"].as_u64().unwrap());
        // The server's side: every shard batch and group commit was timed.
        assert!(report["server_commits"].as_u64().unwrap() > 0, "{report}");
        assert!(report["server_batches"].as_u64().unwrap() > 0, "{report}");
        assert!(report["journal_syncs"].as_u64().unwrap() > 0, "{report}");
        let commit = &report["server_commit_latency_us"];
        // null: above the histogram's last bound (100 ms), possible on a slow disk.
        let bound = |field: &str| commit.get(field).unwrap().as_u64().unwrap_or(u64::MAX);
        assert!(bound("p50_at_most") <= bound("p99_at_most"), "{report}");
        if !extra.is_empty() {
            assert_eq!(report["offered_per_s"], 2000.0);
        }
        let chart = std::fs::read_to_string(&svg).unwrap();
        assert!(
            chart.starts_with("<svg")
                && chart.contains("polyline")
                && chart.trim_end().ends_with("</svg>")
        );
    }
}

/// `--accounts` creates that many accounts in the load tenant and trades them (a trade for an
/// account the tenant lacks would be rejected), `--instruments` narrows the futures; the report
/// records both, and out-of-range counts are refused before anything runs.
#[test]
fn accounts_and_instruments_shape_the_load() {
    let keel = env!("CARGO_BIN_EXE_keel");
    let load = ["load", "--seconds", "1", "--connections", "2", "--batch", "50", "--json"];
    let output =
        Command::new(keel).args(load).args(["--accounts", "300", "--instruments", "3"]).output();
    let output = output.unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["accounts"], 300, "{report}");
    assert_eq!(report["instruments"], 3, "{report}");
    assert!(report["instructions"].as_u64().unwrap() > 300, "{report}");
    assert_eq!(report["rejected"], 0, "{report}");
    let wrong = [
        ("--instruments", "0"),
        ("--instruments", "10000"),
        ("--accounts", "0"),
        ("--amend-recent", "0"),
    ];
    for (flag, value) in wrong {
        let refused = Command::new(keel).args(load).args([flag, value]).output().unwrap();
        assert!(!refused.status.success(), "{flag} {value} was accepted");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(&format!("{flag} {value}")), "{stderr}");
    }
}

/// `--count` sends exactly that many instructions, the last batch cut short, in both modes and
/// over several connections, with no time limit unless `--seconds` is given too; a count of
/// zero is refused.
#[test]
fn a_count_sends_exactly_that_many_instructions() {
    let keel = env!("CARGO_BIN_EXE_keel");
    let runs: [&[&str]; 2] = [&["--count", "1000"], &["--count", "700", "--rate", "20000"]];
    for extra in runs {
        let output = Command::new(keel)
            .args(["load", "--connections", "3", "--batch", "64", "--json"])
            .args(extra)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let count: u64 = extra[1].parse().unwrap();
        assert_eq!(report["count"], count, "{report}");
        assert_eq!(report["instructions"], count, "{report}");
        assert_eq!(report["accepted_or_duplicate"], count, "{report}");
        let per_second: u64 =
            report["per_second"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).sum();
        assert_eq!(per_second, count, "every acknowledgement in a second: {report}");
    }
    let refused = Command::new(keel).args(["load", "--count", "0"]).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--count 0"));
}

/// `--address` loads a running `keel serve` as one of its tenants (the demo tenant here, on
/// a free loopback port): every instruction acknowledged, none rejected, and a second run is
/// not answered as duplicates of the first (its report ids are its own). A wrong credential
/// fails with the server's reason, and the journal the server leaves holds every trade of
/// both runs.
#[test]
fn a_load_of_a_running_server() {
    let keel = env!("CARGO_BIN_EXE_keel");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let credential = server.credential.clone().expect("the demo tenant's credential");
    let address = server.address.clone();
    let load = |credential: &str| {
        Command::new(keel)
            .args(["load", "--address", &address, "--connections", "2", "--batch", "100"])
            .args(["--count", "3000", "--json"])
            .env("KEEL_CREDENTIAL", credential)
            .output()
            .unwrap()
    };
    for run in 0..2 {
        let output = load(&credential);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(report["instructions"], 3000, "run {run}: {report}");
        assert_eq!(report["accepted_or_duplicate"], 3000, "run {run}: {report}");
        assert_eq!(report["duplicates"], 0, "run {run}: {report}");
        assert_eq!(report["server"], "running", "{report}");
        assert!(report["journal_syncs"].is_null(), "not measured from here: {report}");
    }
    let refused = load("not-the-credential");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("logon refused"));

    server.stop();
    // The demo tenant's set-up, then both runs' 6,000 trades (and a business date more should
    // the UTC date turn during the test).
    let commands = journal_commands(dir.path(), "demo");
    assert!((SET_UP_COMMANDS + 6_000..=SET_UP_COMMANDS + 6_001).contains(&commands), "{commands}");
}

/// `--tenant a,b` with `--credential` for each loads two tenants of a running server, the
/// connections spread over them: every instruction acknowledged, and the two journals hold
/// them all between them, a good share in each (two of the four connections go to each; how
/// the count splits depends on which lane takes each batch).
#[test]
fn a_load_of_two_tenants_of_a_running_server() {
    let keel = env!("CARGO_BIN_EXE_keel");
    let dir = tempfile::tempdir().unwrap();
    let create = |tenant: &str| {
        let output = Command::new(keel)
            .args(["tenant", "create", tenant, "--data-dir", "keel-data"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let (_, secret) =
            stdout.split_once("stored hashed): ").unwrap_or_else(|| panic!("{stdout}"));
        secret.trim().to_owned()
    };
    let secrets = [create("acme"), create("beta")];
    let server = Server::start(dir.path());
    let address = server.address.clone();
    let output = Command::new(keel)
        .args(["load", "--address", &address, "--tenant", "acme,beta"])
        .args(["--connections", "4", "--batch", "100", "--count", "4000", "--json"])
        .env("KEEL_CREDENTIAL", secrets.join(","))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["tenants"], 2, "{report}");
    assert_eq!(report["instructions"], 4000, "{report}");
    assert_eq!(report["accepted_or_duplicate"], 4000, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    // One credential short: refused before any connection, with the reason.
    let short = Command::new(keel)
        .args(["load", "--address", &address, "--tenant", "acme,beta", "--count", "100"])
        .env("KEEL_CREDENTIAL", &secrets[0])
        .output()
        .unwrap();
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("--credential gives 1"));

    server.stop();
    let mut trades = 0;
    for tenant in ["acme", "beta"] {
        let own = journal_commands(dir.path(), tenant) - SET_UP_COMMANDS;
        assert!(own >= 1_000, "{tenant} got {own} of the 4,000");
        trades += own;
    }
    // Every trade in one of the two (each tenant's count may hold one business date more, had
    // the UTC date turned during the test).
    assert!((4_000..=4_002).contains(&trades), "{trades}");
}

/// The commands a tenant's journal starts with: its instruments and accounts (the shipped
/// ones, as `keel serve` creates the demo tenant and `keel tenant create` any other), and the
/// business date `keel serve` opens.
const SET_UP_COMMANDS: u64 = 45;

/// A `keel serve` started in `dir` on a free loopback port (no metrics), and what its first
/// lines said: the address it listens on, and the demo tenant's credential when it created it.
struct Server {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    address: String,
    credential: Option<String>,
}

impl Server {
    fn start(dir: &std::path::Path) -> Self {
        use std::io::BufRead as _;
        let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .arg("serve")
            .current_dir(dir)
            .env("KEEL_LISTEN", "127.0.0.1:0")
            .env("KEEL_METRICS_LISTEN", "")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut credential, mut address) = (None, None);
        for line in lines.by_ref().take(10) {
            let line = line.unwrap();
            if let Some((_, secret)) = line.split_once("stored hashed): ") {
                credential = Some(secret.trim().to_owned());
            }
            if let Some((_, rest)) = line.split_once("] on ") {
                address = rest.split_once(' ').map(|(address, _)| address.to_owned());
                break;
            }
        }
        Self { child, lines, address: address.expect("the server's address"), credential }
    }

    /// SIGINT, then waits (30 s at most) for it to drain, sync and say so.
    fn stop(mut self) {
        let stopped = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        assert!(stopped.unwrap().success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "the server did not stop");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(self.lines.any(|line| line.unwrap().contains("keel stopped cleanly")));
    }
}

/// The commands in `tenant`'s journal under `dir`/keel-data, as `keel journal verify` counts
/// them once it has verified the whole journal.
fn journal_commands(dir: &std::path::Path, tenant: &str) -> u64 {
    let verify = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["journal", "verify", "--data-dir", "keel-data", "--tenant", tenant])
        .current_dir(dir)
        .output()
        .unwrap();
    let verified = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{verified}");
    verified
        .split_once(" segments, ")
        .and_then(|(_, rest)| rest.split_once(" commands"))
        .map(|(count, _)| count.parse().unwrap())
        .unwrap_or_else(|| panic!("{verified}"))
}

/// `KEEL_REALTIME_PRIORITY` puts the latency path in `SCHED_FIFO`: read back from
/// `/proc/PID/task/TID/stat` (fields 40 and 41: real-time priority and policy) while a load
/// runs. Where the kernel refuses the class (no CAP_SYS_NICE), the run must fail up front with
/// an error that says so; an out-of-range priority is refused before the kernel is asked.
#[cfg(target_os = "linux")]
#[test]
fn a_realtime_priority_puts_the_latency_path_in_sched_fifo() {
    let keel = env!("CARGO_BIN_EXE_keel");
    let load = ["load", "--seconds", "3", "--connections", "2", "--batch", "50", "--rate", "5000"];
    let out_of_range =
        Command::new(keel).args(load).env("KEEL_REALTIME_PRIORITY", "0").output().unwrap();
    assert!(!out_of_range.status.success());
    assert!(String::from_utf8_lossy(&out_of_range.stderr).contains("out of range"));

    let child = Command::new(keel)
        .args(load)
        .env("KEEL_REALTIME_PRIORITY", "5")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let task_dir = format!("/proc/{}/task", child.id());
    // (thread name, policy, real-time priority) for every thread, once the load is running.
    let mut seen: Vec<(String, u32, u32)> = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let Ok(tasks) = std::fs::read_dir(&task_dir) else { break };
        seen = tasks
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
            .filter_map(|stat| {
                // The name is in parentheses and may hold spaces: fields count from after it.
                let (head, tail) = stat.rsplit_once(") ")?;
                let name = head.split_once(" (")?.1.to_owned();
                let fields: Vec<&str> = tail.split(' ').collect();
                Some((name, fields.get(38)?.parse().ok()?, fields.get(37)?.parse().ok()?))
            })
            .collect();
        let running = |prefix: &str| seen.iter().any(|(name, _, _)| name.starts_with(prefix));
        if running("shard-") && running("journal-") {
            break;
        }
    }
    let output = child.wait_with_output().unwrap();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("CAP_SYS_NICE"), "an unexplained failure: {stderr}");
        eprintln!("the real-time class is not granted here: {stderr}");
        return;
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("latency path in SCHED_FIFO at priority 5"), "{stdout}");
    const SCHED_FIFO: u32 = 1;
    let class = |prefix: &str| -> Vec<(u32, u32)> {
        seen.iter()
            .filter(|(name, _, _)| name.starts_with(prefix))
            .map(|&(_, policy, priority)| (policy, priority))
            .collect()
    };
    for prefix in ["shard-", "journal-"] {
        let threads = class(prefix);
        assert!(!threads.is_empty(), "no {prefix} thread seen: {seen:?}");
        assert!(threads.iter().all(|&c| c == (SCHED_FIFO, 5)), "{prefix}: {seen:?}");
    }
    assert!(class("tokio-rt").contains(&(SCHED_FIFO, 5)), "no real-time worker: {seen:?}");
    for prefix in ["segment-", "state-pass"] {
        assert!(class(prefix).iter().all(|&(policy, _)| policy != SCHED_FIFO), "{seen:?}");
    }
}
