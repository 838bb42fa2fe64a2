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
