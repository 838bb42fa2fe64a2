//! Where replay time goes: read + verify, + decode, + apply, and one state hash.
//! Run: cargo run --release --example replay_breakdown -- DATA_DIR [COMMANDS]
//! Writes a synthetic tenant of COMMANDS (default 1,000,000) mixed commands first if DATA_DIR
//! has none.
use std::time::Instant;

#[path = "../benches/support/mod.rs"]
mod support;

use keel_engine::{Engine, Envelope};
use keel_journal::{read_journal, JournalError, NodeKey, RecordKind, Trust};
use keel_pipeline::store::{replay_into, DataDir};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let data = DataDir::new(&args[1]);
    let tenant = "bench".parse()?;
    let commands: usize = args.get(2).map_or(Ok(1_000_000), |c| c.parse())?;
    if data.tenants()?.is_empty() {
        let start = Instant::now();
        let options =
            keel_pipeline::store::StoreOptions { snapshot_interval: 0, ..Default::default() };
        let (mut store, _) = keel_pipeline::store::TenantStore::open(&data, tenant, options)?;
        let setup = support::setup_commands(10_000, 50);
        let first = setup.len() as u64 + 1;
        store.submit(setup.into_iter().map(|c| (c, 0)))?;
        let stream = support::mixed_stream(commands, 10_000, 50, 80, first);
        for chunk in stream.chunks(1_000) {
            store.submit(chunk.iter().map(|e| (e.command.clone(), e.timestamp_ns)))?;
        }
        store.close()?;
        println!("wrote {commands} commands durably in {:.3} s", start.elapsed().as_secs_f64());
    }
    let key = NodeKey::load_or_create(&data.node_dir())?.verifying_key();
    let dir = data.journal_dir(tenant);
    let start = Instant::now();
    let mut n = 0u64;
    read_journal::<JournalError>(
        &dir,
        tenant,
        Trust::Key(key),
        None,
        |_| {},
        |_| {
            n += 1;
            Ok(())
        },
    )?;
    println!("read + verify: {:.3} s for {n} records", start.elapsed().as_secs_f64());
    let start = Instant::now();
    read_journal::<JournalError>(
        &dir,
        tenant,
        Trust::Key(key),
        None,
        |_| {},
        |r| {
            if r.kind == RecordKind::Command {
                std::hint::black_box(Envelope::decode(r.payload).expect("decode"));
            }
            Ok(())
        },
    )?;
    println!("read + verify + decode: {:.3} s", start.elapsed().as_secs_f64());
    let start = Instant::now();
    let mut engine = Engine::new(tenant);
    replay_into(&mut engine, &dir, Trust::Key(key), None, |_| {}, |_, _| {})?;
    println!("full replay (incl. state hash checks): {:.3} s", start.elapsed().as_secs_f64());
    let start = Instant::now();
    let hash = engine.state_hash();
    println!("one state hash: {:.3} s ({hash})", start.elapsed().as_secs_f64());
    Ok(())
}
