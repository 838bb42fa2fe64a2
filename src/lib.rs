//! The `keel` binary's library half: what the subcommands do, kept out of `main.rs` so that
//! end-to-end tests can drive it.
//!
//! # Layout
//! - `tradefile`: the trade CSV format (docs/trade-file.md) parsed into engine commands.
//! - `import`: `keel import`: books a trade file offline and reports positions and rejects.
//! - `eod`: `keel eod`: settlement prices, fees and end of day for a tenant, offline.
//! - `defaults`: the embedded sample instrument master and account list.
//! - `journal_cli`: `keel journal verify` and `keel journal dump`.
//! - `serve`: `keel serve` and `keel tenant create`: tenants, pipeline and server wired up.
//! - `load`: `keel load`, the load generator over the native protocol (closed and open loop).
//! - `host`: what the hypervisor took from this machine (steal time), reported with a load.
//! - `send`: `keel send`: a trade file sent to a running server with the Rust client.

pub mod defaults;
pub mod eod;
pub mod host;
pub mod import;
pub mod journal_cli;
pub mod load;
pub mod send;
pub mod serve;
pub mod tradefile;

/// The async runtime of `keel serve` and `keel load`. Its workers carry sessions, so they run in
/// the latency path's scheduling class (`keel_sched`; real-time when `realtime_priority` is
/// configured). They take it on their first unpark, because tokio calls its start hook on the
/// blocking pool's threads too: those run long jobs (rebuilds, shutdown) and start in the normal
/// class, even when the worker that spawned them is real-time.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(|| keel_sched::enter(keel_sched::Role::Helper))
        .on_thread_unpark(|| keel_sched::enter_once(keel_sched::Role::Latency))
        .build()
}
