//! Memory of the engine's state, as resident set size growth (allocator overhead included), in
//! two shapes, each measured in a fresh process:
//! - `positions`: 20,000 accounts x 50 instruments, one opening trade each: 1,000,000 open
//!   positions, each with one lot.
//! - `lots`: 1,000 accounts x 1 instrument, 1,000 opening trades each: 1,000,000 open lots in
//!   1,000 positions, so the per-position overhead vanishes and what remains is the cost of a
//!   trade and its lot.
//!
//! Run: `cargo bench --bench engine_memory`. Figures: docs/benchmarks.md.

use std::process::Command;
use std::time::Instant;

mod support;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

fn measure(shape: &str, accounts: usize, instruments: usize, trades_per_position: usize) {
    let mut engine = support::engine(accounts, instruments);
    let mut rng = support::Rng::new(7);
    let before = rss_bytes();
    let start = Instant::now();
    let mut sequence = engine.last_sequence();
    for _ in 0..trades_per_position {
        for account in 0..accounts {
            for instrument in 0..instruments {
                let mut details = support::details(&mut rng, accounts, instruments);
                details.account = support::account_id(account);
                details.instrument = support::instrument_id(instrument);
                // Every trade opens: all buys, so nothing closes and every trade stays a lot.
                details.side = keel_domain::Side::Buy;
                sequence += 1;
                let envelope = keel_engine::Envelope {
                    sequence,
                    timestamp_ns: 0,
                    command: keel_engine::Command::Trade(keel_domain::TradeReport {
                        report_id: format!("M{sequence}").parse().expect("report id"),
                        action: keel_domain::TradeAction::New(details),
                    }),
                };
                let outcome = engine.apply(&envelope).expect("apply");
                assert!(outcome.is_accepted(), "{outcome:?}");
            }
        }
    }
    let elapsed = start.elapsed();
    let after = rss_bytes();
    let (positions, lots) = (engine.positions().len(), engine.open_lots());
    let grown = after.saturating_sub(before);
    println!(
        "{shape}: {positions} positions, {lots} open lots; state grew {:.1} MiB \
         ({:.0} bytes per open lot); total RSS {:.1} MiB; booked in {:.2} s",
        mib(grown),
        grown as f64 / lots as f64,
        mib(after),
        elapsed.as_secs_f64(),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|arg| arg == "--list") {
        return; // `cargo test --benches` asks bench targets to list themselves
    }
    // `cargo bench` passes --bench; `cargo test --benches` does not, and then a thousandth of
    // the work checks that the bench still runs.
    let scale = if args.iter().any(|arg| arg == "--bench") { 1 } else { 1_000 };
    match args.iter().find(|arg| *arg == "positions" || *arg == "lots").map(String::as_str) {
        Some("positions") => measure("positions", 20_000 / scale, 50, 1),
        Some("lots") => measure("lots", 1_000 / scale, 1, 1_000),
        _ => {
            let exe = std::env::current_exe().expect("own path");
            for shape in ["positions", "lots"] {
                let status =
                    Command::new(&exe).args(&args[1..]).arg(shape).status().expect("child");
                assert!(status.success(), "{shape} failed");
            }
        }
    }
}
