//! `keel`: the one binary. Subcommands are thin: the work lives in the library half (`keel::*`)
//! and in the crates.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use keel::import::{import, import_durable, render_json, render_text, ImportOptions};
use keel_domain::{Date, TenantId};
use keel_pipeline::store::{DataDir, StoreOptions};

#[derive(Debug, Parser)]
#[command(name = "keel", version, about = "keel: a derivatives trade-processing engine")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Book a trade file (CSV, docs/trade-file.md) offline and print positions and rejects.
    ///
    /// Exit status: 0 when every row was read (rejected trades are business outcomes and are
    /// listed), 2 when some rows were malformed (listed with their line), 1 on a fatal error.
    Import {
        /// The trade file.
        file: PathBuf,
        /// Tenant to book for.
        #[arg(long, default_value = keel::defaults::DEMO_TENANT)]
        tenant: String,
        /// Instrument master CSV (default: the shipped examples/instruments.csv).
        #[arg(long)]
        instruments: Option<PathBuf>,
        /// Account list CSV (default: the shipped examples/accounts.csv).
        #[arg(long)]
        accounts: Option<PathBuf>,
        /// Business date for rows without a business_date (YYYY-MM-DD).
        #[arg(long)]
        business_date: Option<String>,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Journal what is booked into this data directory (durable, verifiable, resumable)
        /// instead of booking in memory only.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Run the server: native protocol, metrics, every tenant of the data directory. On a
    /// fresh directory, creates the demo tenant with the sample instruments and accounts and
    /// prints its credential once. Settings: keel.toml, then KEEL_* variables.
    Serve {
        /// Configuration file (optional; every key optional).
        #[arg(long, default_value = "keel.toml")]
        config: PathBuf,
    },
    /// Send a trade file to a running server and report the acknowledgements.
    Send {
        file: PathBuf,
        #[arg(long, default_value = "127.0.0.1:7070")]
        address: String,
        #[arg(long, default_value = keel::defaults::DEMO_TENANT)]
        tenant: String,
        /// The tenant's credential (or KEEL_CREDENTIAL).
        #[arg(long, env = "KEEL_CREDENTIAL", hide_env_values = true)]
        credential: String,
        /// Instructions per batch.
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
    },
    /// Load over the native protocol against an in-process server on loopback (or a running
    /// one with --address): closed loop (maximum rate) by default, open loop with --rate
    /// (latency from each batch's intended send time).
    Load {
        /// Load a running server (`keel serve`) instead of one started in this process, as
        /// --tenant: tenants with the shipped instruments and accounts, such as the demo tenant.
        #[arg(long)]
        address: Option<String>,
        /// With --address: the tenant to load, or several separated by commas (the connections
        /// are spread over them in turn).
        #[arg(long, default_value = keel::defaults::DEMO_TENANT, requires = "address")]
        tenant: String,
        /// With --address: the tenant's credential (or KEEL_CREDENTIAL); for several tenants,
        /// theirs separated by commas, in --tenant's order.
        #[arg(long, env = "KEEL_CREDENTIAL", hide_env_values = true)]
        credential: Option<String>,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        #[arg(long, default_value_t = 1)]
        tenants: usize,
        /// Instructions per batch.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Closed loop: batches each connection keeps in flight.
        #[arg(long, default_value_t = 4)]
        in_flight: usize,
        /// Open loop: instructions per second offered, over all connections.
        #[arg(long)]
        rate: Option<f64>,
        /// How long the load runs (default: 10 s, or no limit with --count).
        #[arg(long)]
        seconds: Option<u64>,
        /// Instructions to send in all, then stop once they are acknowledged (with --seconds:
        /// whichever comes first).
        #[arg(long)]
        count: Option<u64>,
        /// Percent of new trades (the rest split between amends and cancels).
        #[arg(long, default_value_t = 80)]
        new_percent: u32,
        /// Net accounts traded, created in each load tenant (default: the five shipped net
        /// accounts): with the instruments, how many positions the trades spread over.
        #[arg(long)]
        accounts: Option<usize>,
        /// Live futures traded: the first N of the shipped master, in its order (default: all
        /// live today).
        #[arg(long)]
        instruments: Option<usize>,
        /// Amends and cancels pick among the N most recent live trades of their stream (a
        /// connection, or one in-flight slot of it in closed loop), as corrections mostly do
        /// (default: any live trade, uniformly: the harder case).
        #[arg(long)]
        amend_recent: Option<usize>,
        /// Write an SVG chart (latency by percentile, throughput over time) here.
        #[arg(long)]
        svg: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Run end of day for a tenant offline: load settlement prices (and fees), post variation
    /// margin, premium and fees to the ledger, print postings and payment instructions.
    Eod {
        #[arg(long, default_value = "keel-data")]
        data_dir: PathBuf,
        #[arg(long, default_value = keel::defaults::DEMO_TENANT)]
        tenant: String,
        /// The business date (must be the tenant's open one).
        #[arg(long)]
        date: String,
        /// Settlement prices CSV (`instrument,price`).
        #[arg(long)]
        prices: PathBuf,
        /// Fee schedule CSV (`exchange,product,account_kind,per_contract,currency`).
        #[arg(long)]
        fees: Option<PathBuf>,
        /// table, csv (payment instructions) or json.
        #[arg(long, default_value = "table")]
        format: String,
        /// Options expiring today are exercised when in the money by at least this much.
        #[arg(long, default_value = "0")]
        exercise_threshold: String,
    },
    /// Compare a tenant's net positions with a clearing house position file
    /// (`account,instrument,net`) and list every break. Exit status 1 when there are breaks.
    Reconcile {
        file: PathBuf,
        #[arg(long, default_value = "keel-data")]
        data_dir: PathBuf,
        #[arg(long, default_value = keel::defaults::DEMO_TENANT)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// An account's statement: positions, cash balances and postings (offline).
    Statement {
        account: String,
        #[arg(long, default_value = "keel-data")]
        data_dir: PathBuf,
        #[arg(long, default_value = keel::defaults::DEMO_TENANT)]
        tenant: String,
        /// Only the postings of this business date.
        #[arg(long)]
        date: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Manage tenants offline.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Inspect tenants' journals offline.
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant with an instrument master and account list; prints its credential once.
    Create {
        tenant: String,
        #[arg(long, default_value = "keel-data")]
        data_dir: PathBuf,
        /// Instrument master CSV (default: the shipped examples/instruments.csv).
        #[arg(long)]
        instruments: Option<PathBuf>,
        /// Account list CSV (default: the shipped examples/accounts.csv).
        #[arg(long)]
        accounts: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum JournalCommand {
    /// Verify journals from their first record: checksums, hash chain, sequence, checkpoint
    /// signatures, and (replaying into a fresh engine) every checkpoint's and snapshot's state
    /// hash. Exit status 1 names the segment, offset and sequence of the first failure.
    Verify {
        #[arg(long, default_value = "keel-data")]
        data_dir: PathBuf,
        /// One tenant (default: every tenant in the data directory).
        #[arg(long)]
        tenant: Option<String>,
        /// The node public key in hex (default: DATA_DIR/node/node.pub).
        #[arg(long)]
        public_key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print a tenant's records, one per line (or one JSON object per line).
    Dump {
        #[arg(long, default_value = "keel-data")]
        data_dir: PathBuf,
        #[arg(long, default_value = keel::defaults::DEMO_TENANT)]
        tenant: String,
        /// First sequence to print.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Most records to print.
        #[arg(long)]
        limit: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Copy every tenant's journal segments, append-only, into a backup directory.
    Backup {
        #[arg(long, default_value = "keel-data")]
        data_dir: PathBuf,
        /// Where the copy goes (DIR/tenants/<tenant>/journal).
        #[arg(long)]
        to: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("keel: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Structured logs on standard error; `KEEL_LOG` (or `RUST_LOG`) sets the filter.
fn init_logging() {
    let filter = std::env::var("KEEL_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Writes to standard output; a reader that went away (`| head`) is not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to standard output"),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Commands::Journal { command } => journal(command),
        Commands::Statement { account, data_dir, tenant, date, json } => {
            let data = DataDir::new(data_dir);
            let (store, _) = keel_pipeline::TenantStore::open(
                &data,
                TenantId::new_checked(&tenant)?,
                StoreOptions::default(),
            )?;
            let date = date.as_deref().map(Date::parse).transpose()?;
            let statement = keel::eod::statement(
                store.engine(),
                &keel_domain::AccountId::new_checked(&account)?,
                date,
            )?;
            store.close()?;
            let text = if json {
                serde_json::to_string_pretty(&statement)? + "\n"
            } else {
                keel::eod::render_statement(&statement)
            };
            write_stdout(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        Commands::Reconcile { file, data_dir, tenant, json } => {
            let csv = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let breaks = keel::eod::reconcile(
                &DataDir::new(data_dir),
                TenantId::new_checked(&tenant)?,
                &csv,
            )?;
            let text = if json {
                serde_json::to_string_pretty(&serde_json::json!({
                    "breaks": breaks.iter().map(|b| serde_json::json!({
                        "account": b.account.as_str(), "instrument": b.instrument.as_str(), "kind": b.kind(),
                        "keel": b.ours, "clearing_house": b.theirs, "line": b.line,
                    })).collect::<Vec<_>>(),
                }))? + "\n"
            } else {
                let mut out = String::new();
                for b in &breaks {
                    let line =
                        b.line.map(|l| format!("line {l}")).unwrap_or_else(|| "not in file".into());
                    out += &format!(
                        "{:<16} {:<14} {:<26} keel {:>8}  clearing house {:>8}  ({line})\n",
                        b.account.as_str(),
                        b.instrument.as_str(),
                        b.kind(),
                        b.ours,
                        b.theirs
                    );
                }
                out + &format!("{} breaks\n", breaks.len())
            };
            write_stdout(&text)?;
            Ok(if breaks.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Commands::Eod { data_dir, tenant, date, prices, fees, format, exercise_threshold } => {
            let read = |path: &PathBuf| {
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
            };
            let request = keel::eod::EodRequest {
                tenant: TenantId::new_checked(&tenant)?,
                date: Date::parse(&date)?,
                prices_csv: read(&prices)?,
                fees_csv: fees.as_ref().map(read).transpose()?,
                exercise_threshold: keel_domain::Price::parse(&exercise_threshold)?,
            };
            let engine = keel::eod::run(&DataDir::new(data_dir), &request)?;
            let text = match format.as_str() {
                "json" => {
                    serde_json::to_string_pretty(&keel::eod::render_json(&engine, request.date))?
                        + "\n"
                }
                "csv" => keel::eod::render_instructions_csv(&engine, request.date),
                _ => keel::eod::render_text(&engine, request.date),
            };
            write_stdout(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        Commands::Load {
            address,
            tenant,
            credential,
            connections,
            tenants,
            batch,
            in_flight,
            rate,
            seconds,
            count,
            new_percent,
            accounts,
            instruments,
            amend_recent,
            svg,
            json,
        } => {
            // The server's logs (snapshots, state hashes, with their durations) on request.
            if std::env::var_os("KEEL_LOG").is_some() {
                init_logging();
            }
            let mode = match rate {
                Some(rate) => keel::load::Mode::Open { rate },
                None => keel::load::Mode::Closed { in_flight },
            };
            let target = match address {
                None => keel::load::Target::InProcess,
                Some(address) => keel::load::Target::Remote {
                    address,
                    tenants: keel::load::remote_tenants(
                        &tenant,
                        &credential.context(
                            "--address needs the tenant's credential: --credential or \
                             KEEL_CREDENTIAL",
                        )?,
                    )?,
                },
            };
            let remote = matches!(target, keel::load::Target::Remote { .. });
            let options = keel::load::LoadOptions {
                target,
                connections,
                tenants,
                batch,
                mode,
                duration: match (seconds, count) {
                    (None, Some(_)) => None,
                    (seconds, _) => Some(std::time::Duration::from_secs(seconds.unwrap_or(10))),
                },
                count,
                new_percent,
                accounts,
                instruments,
                amend_recent,
                progress: !json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            // The in-process server's settings come from `KEEL_*` variables, as in load::run.
            let settings = keel_server::ServerConfig::default().with_env(std::env::vars())?;
            keel_sched::configure(settings.realtime_priority)?;
            let runtime = keel::runtime()?;
            let report = runtime.block_on(keel::load::run(options))?;
            let percentile = |p| report.percentile_us(p);
            let (p50, p99, p999, max) =
                (percentile(0.5), percentile(0.99), percentile(0.999), report.latency_us.max());
            let mode_text = match mode {
                keel::load::Mode::Open { rate } => format!("open loop, offered {rate:.0}/s"),
                keel::load::Mode::Closed { in_flight } => {
                    format!("closed loop, {in_flight} in flight per connection")
                }
            };
            if let Some(path) = &svg {
                let tenants = report.tenants;
                let title = format!("keel load: {connections} connections, {tenants} tenants, batches of {batch}, {mode_text}");
                std::fs::write(path, keel::load::render_svg(&report, &title))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let at_most = |buckets: &keel_pipeline::Buckets| {
                [0.5, 0.99, 0.999].map(|q| buckets.quantile_at_most_us(q))
            };
            // The server's side, from its histograms, when it ran in this process.
            let server = report.server.as_ref().map(|side| {
                let totals =
                    [side.batch_us.total(), side.commit_us.total(), side.journal_sync_us.total()];
                (
                    [
                        at_most(&side.batch_us),
                        at_most(&side.commit_us),
                        at_most(&side.journal_sync_us),
                    ],
                    totals,
                )
            });
            let text = if json {
                let quantiles = |q: [Option<u64>; 3]| serde_json::json!({"p50_at_most": q[0], "p99_at_most": q[1], "p999_at_most": q[2]});
                let side = |index: usize| server.map(|(q, _)| quantiles(q[index]));
                let total = |index: usize| server.map(|(_, totals)| totals[index]);
                serde_json::json!({
                    "connections": connections, "tenants": report.tenants, "batch": batch, "mode": mode_text,
                    "server": if remote { "running" } else { "in process" },
                    "new_percent": new_percent, "accounts": report.accounts, "instruments": report.instruments, "amend_recent": amend_recent,
                    "offered_per_s": report.offered, "count": count, "seconds": report.elapsed.as_secs_f64(), "instructions": report.instructions,
                    "accepted_or_duplicate": report.accepted, "duplicates": report.duplicates, "rejected": report.rejected,
                    "achieved_per_s": report.rate(), "batch_latency_us": {"p50": p50, "p99": p99, "p999": p999, "max": max},
                    "per_second": report.per_second,
                    "max_latency_us_per_second": report.max_latency_us_per_second,
                    "slow_batches_per_second": report.slow_batches_per_second,
                    // This machine's steal time (null where not counted): the host's share of a tail.
                    "host_steal_ms": report.host_steal.as_ref().map(|steal| steal.total_ms()),
                    "host_steal_ms_per_second": report.host_steal.as_ref().map(|steal| &steal.ms_per_second),
                    "cpus": report.host_steal.as_ref().map(|steal| steal.cpus),
                    // null for a running server: see its own /metrics.
                    "server_batches": total(0),
                    "server_batch_latency_us": side(0),
                    "server_commits": total(1),
                    "server_commit_latency_us": side(1),
                    "journal_syncs": total(2),
                    "journal_sync_us": side(2),
                    // What the figures depend on, recorded with them.
                    "data_dir_parent": (!remote).then(std::env::temp_dir),
                    "realtime_priority": keel_sched::realtime_priority(),
                })
                .to_string()
                    + "\n"
            } else {
                let offered =
                    report.offered.map(|o| format!("offered {o:.0}/s, ")).unwrap_or_default();
                let bound = |q: Option<u64>| {
                    q.map_or_else(|| "over the last bucket".to_owned(), |us| format!("<= {us} us"))
                };
                let mut text = format!(
                    "{mode_text}: {} instructions in {:.2} s: {offered}achieved {:.0}/s acknowledged after fsync ({} rejected, {} duplicates); batch latency p50 {} us, p99 {} us, p99.9 {} us, max {} us\n",
                    report.instructions, report.elapsed.as_secs_f64(), report.rate(), report.rejected, report.duplicates, p50, p99, p999, max,
                );
                match server {
                    Some(([in_server, commit, sync], [batches, commits, syncs])) => text += &format!(
                        "in the server (frame decoded to acknowledgement written): p50 {}, p99 {}, p99.9 {} ({batches} batches)\n\
                         of which shard batch staged to durable: p50 {}, p99 {}, p99.9 {} ({commits} shard batches); journal write and sync p50 {}, p99 {}, p99.9 {} ({syncs} syncs)\n\
                         journal under {}; ",
                        bound(in_server[0]), bound(in_server[1]), bound(in_server[2]),
                        bound(commit[0]), bound(commit[1]), bound(commit[2]),
                        bound(sync[0]), bound(sync[1]), bound(sync[2]),
                        std::env::temp_dir().display(),
                    ),
                    None => text += "the server's side of the latency: in its own /metrics; ",
                }
                text += &format!(
                    "{} {}\n",
                    // A running server's class is its own setting, not this process's.
                    if remote { "the load generator's threads" } else { "latency path" },
                    keel_sched::realtime_priority().map_or_else(
                        || "in the normal scheduling class".to_owned(),
                        |p| format!("in SCHED_FIFO at priority {p}")
                    ),
                );
                if let Some(steal) = &report.host_steal {
                    text += &format!(
                        "host: the hypervisor took {} ms of this machine's {} CPUs during the run ({:.2}% of their time; most in one second {} ms)\n",
                        steal.total_ms(),
                        steal.cpus,
                        100.0 * steal.share(report.elapsed),
                        steal.ms_per_second.iter().max().copied().unwrap_or(0),
                    );
                }
                text
            };
            write_stdout(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        Commands::Serve { config } => {
            init_logging();
            let config = keel_server::ServerConfig::load(&config, std::env::vars())?;
            keel_sched::configure(config.realtime_priority)?;
            if let Some(priority) = config.realtime_priority {
                tracing::info!(priority, "latency path in the real-time class SCHED_FIFO");
            }
            let runtime = keel::runtime()?;
            runtime.block_on(keel::serve::serve(
                config,
                keel::defaults::INSTRUMENTS_CSV,
                keel::defaults::ACCOUNTS_CSV,
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Commands::Send { file, address, tenant, credential, batch } => {
            let tenant = TenantId::new_checked(&tenant)?;
            let reader =
                File::open(&file).with_context(|| format!("opening {}", file.display()))?;
            let runtime = tokio::runtime::Runtime::new()?;
            let report = runtime.block_on(keel::send::send(
                &address,
                tenant,
                &credential,
                BufReader::new(reader),
                batch,
            ))?;
            let mut text = String::new();
            for (line, reason) in report.malformed.iter().chain(&report.rejected) {
                text += &format!("line {line}: {reason}\n");
            }
            text += &format!(
                "{} accepted, {} duplicates, {} rejected, {} malformed, {} rows not sendable (business date rows)\n",
                report.accepted, report.duplicates, report.rejected.len(), report.malformed.len(), report.skipped
            );
            write_stdout(&text)?;
            Ok(if report.malformed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
        }
        Commands::Tenant {
            command: TenantCommand::Create { tenant, data_dir, instruments, accounts },
        } => {
            let read = |path: Option<PathBuf>, default: &str| -> anyhow::Result<String> {
                match path {
                    None => Ok(default.to_owned()),
                    Some(path) => std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display())),
                }
            };
            let data = DataDir::new(data_dir);
            let tenant = TenantId::new_checked(&tenant)?;
            let secret = keel::serve::create_tenant(
                &data,
                tenant,
                &read(instruments, keel::defaults::INSTRUMENTS_CSV)?,
                &read(accounts, keel::defaults::ACCOUNTS_CSV)?,
                StoreOptions::default(),
            )?;
            println!(
                "tenant {tenant} created; credential (shown only now, stored hashed): {secret}"
            );
            Ok(ExitCode::SUCCESS)
        }
        Commands::Import { file, tenant, instruments, accounts, business_date, json, data_dir } => {
            let read = |path: Option<PathBuf>, default: &str| -> anyhow::Result<String> {
                match path {
                    None => Ok(default.to_owned()),
                    Some(path) => std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display())),
                }
            };
            let options = ImportOptions {
                tenant: TenantId::new_checked(&tenant)?,
                instruments_csv: read(instruments, keel::defaults::INSTRUMENTS_CSV)?,
                accounts_csv: read(accounts, keel::defaults::ACCOUNTS_CSV)?,
                business_date: business_date.as_deref().map(Date::parse).transpose()?,
            };
            let reader =
                File::open(&file).with_context(|| format!("opening {}", file.display()))?;
            let report = match data_dir {
                None => import(&options, BufReader::new(reader))?,
                Some(dir) => {
                    let data = DataDir::new(dir);
                    let (report, recovery) = import_durable(
                        &options,
                        BufReader::new(reader),
                        &data,
                        StoreOptions::default(),
                    )?;
                    if let Some(torn) = &recovery.journal.torn_tail {
                        eprintln!(
                            "keel: repaired a torn journal tail: {} bytes at {} offset {} ({})",
                            torn.bytes,
                            torn.segment.display(),
                            torn.offset,
                            torn.reason
                        );
                    }
                    if let Some(seal) = &recovery.journal.repaired_seal {
                        eprintln!(
                            "keel: rewrote the damaged header of the journal's final seal at {} offset {} ({}): its chain value proved its commands, up to sequence {}, all kept",
                            seal.segment.display(),
                            seal.offset,
                            seal.fault,
                            seal.sequence
                        );
                    }
                    report
                }
            };
            let text = if json {
                serde_json::to_string_pretty(&render_json(&report))? + "\n"
            } else {
                render_text(&report)
            };
            write_stdout(&text)?;
            Ok(if report.malformed() > 0 { ExitCode::from(2) } else { ExitCode::SUCCESS })
        }
    }
}

fn journal(command: JournalCommand) -> anyhow::Result<ExitCode> {
    match command {
        JournalCommand::Verify { data_dir, tenant, public_key, json } => {
            let data = DataDir::new(data_dir);
            let key = keel::journal_cli::public_key(&data, public_key.as_deref())?;
            let tenants = match tenant {
                Some(tenant) => vec![TenantId::new_checked(&tenant)?],
                None => data.tenants()?,
            };
            anyhow::ensure!(!tenants.is_empty(), "no tenants under {}", data.root.display());
            let results = keel::journal_cli::verify(&data, &tenants, key, json);
            let text = if json {
                serde_json::to_string_pretty(&keel::journal_cli::render_verify_json(&results))?
                    + "\n"
            } else {
                keel::journal_cli::render_verify_text(&results)
            };
            write_stdout(&text)?;
            Ok(if results.iter().all(|r| r.outcome.is_ok()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        JournalCommand::Dump { data_dir, tenant, from, limit, json } => {
            let data = DataDir::new(data_dir);
            let tenant = TenantId::new_checked(&tenant)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            keel::journal_cli::dump(&data, tenant, from, limit, json, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        JournalCommand::Backup { data_dir, to } => {
            let data = DataDir::new(data_dir);
            let backup = DataDir::new(to);
            for tenant in data.tenants()? {
                let report = keel_journal::sync_backup(
                    &data.journal_dir(tenant),
                    &backup.journal_dir(tenant),
                )?;
                println!(
                    "{tenant}: {} segments, {} bytes copied",
                    report.segments, report.bytes_copied
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
