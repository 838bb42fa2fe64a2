//! The engine alone on a fixed stream, once: for A/B comparisons that the machine's noise
//! cannot blur. Under cachegrind the instruction and simulated cache-miss counts of the apply
//! loop are the same on every run of the same binary, so two builds compare exactly:
//!
//! ```text
//! valgrind --tool=cachegrind --cache-sim=yes --cachegrind-out-file=/dev/null \
//!     target/release/examples/apply_count 200000
//! ```
//!
//! Prints the wall time of the apply loop and the resulting state hash (which two builds must
//! agree on). Tenant and mix as `engine_apply`: 10,000 accounts x 50 futures, 80% new, 10%
//! amend, 10% cancel. Run: `cargo run --release --example apply_count -- [COMMANDS]`.
use std::time::Instant;

#[path = "../benches/support/mod.rs"]
mod support;

fn main() -> anyhow::Result<()> {
    let commands: usize = std::env::args().nth(1).map_or(Ok(200_000), |c| c.parse())?;
    let mut engine = support::engine(10_000, 50);
    let stream = support::mixed_stream(commands, 10_000, 50, 80, engine.last_sequence() + 1);
    let start = Instant::now();
    let mut accepted = 0_usize;
    for envelope in &stream {
        accepted += usize::from(engine.apply(envelope)?.is_accepted());
    }
    let elapsed = start.elapsed();
    println!(
        "{commands} commands ({accepted} accepted) in {:.3} s: {:.0} per second; state hash {}",
        elapsed.as_secs_f64(),
        commands as f64 / elapsed.as_secs_f64(),
        engine.state_hash()
    );
    Ok(())
}
