//! `keel serve` and `keel tenant create`: a data directory's tenants, the pipeline and the
//! server, wired together with embedded defaults.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use keel_domain::{account::load_accounts, instrument::load_instruments, Date, TenantId};
use keel_engine::Command;
use keel_pipeline::{DataDir, Pipeline, ShardOptions, StoreOptions, TenantStore};
use keel_server::ServerConfig;

/// Today's date in UTC: the clearing business date a tenant opens when the server starts.
pub fn today() -> Date {
    let days = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400);
    Date::from_days(days as i32)
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

pub fn store_options(config: &ServerConfig) -> StoreOptions {
    StoreOptions {
        checkpoint_interval: config.checkpoint_interval,
        snapshot_interval: config.snapshot_interval,
        reserve_trades: config.reserve_trades,
        reserve_positions: config.reserve_positions,
        journal: keel_journal::JournalOptions {
            direct_io: config.journal_direct_io,
            preallocate: config.journal_preallocate,
            segment_bytes_max: config.journal_segment_bytes,
            ..keel_journal::JournalOptions::default()
        },
        ..StoreOptions::default()
    }
}

/// Creates a tenant: its credential (returned, shown once) and its journal, seeded with the
/// instrument master and account list. Refuses a tenant that exists.
pub fn create_tenant(
    data: &DataDir,
    tenant: TenantId,
    instruments_csv: &str,
    accounts_csv: &str,
    options: StoreOptions,
) -> anyhow::Result<String> {
    anyhow::ensure!(!keel_server::auth::exists(data, tenant), "tenant {tenant} already exists");
    let instruments = load_instruments(instruments_csv.as_bytes()).context("instrument master")?;
    let accounts = load_accounts(accounts_csv.as_bytes()).context("account list")?;
    let (mut store, _) = TenantStore::open(data, tenant, options)?;
    let commands = instruments
        .into_iter()
        .map(Command::DefineInstrument)
        .chain(accounts.into_iter().map(Command::DefineAccount));
    let now = now_ns();
    for outcome in store.submit(commands.map(|c| (c, now)))? {
        anyhow::ensure!(outcome.is_accepted(), "reference data refused: {outcome:?}");
    }
    store.close()?;
    keel_server::auth::create(data, tenant)
}

/// Opens every tenant that has a credential, rolls each to today's business date if it is
/// behind, and starts its shard.
pub fn start_tenants(
    pipeline: &Pipeline,
    data: &DataDir,
    config: &ServerConfig,
) -> anyhow::Result<Vec<TenantId>> {
    let mut started = Vec::new();
    for tenant in data.tenants()? {
        if !keel_server::auth::exists(data, tenant) {
            continue;
        }
        roll_business_date(data, tenant, store_options(config))?;
        let recovery =
            pipeline.start_tenant(data, tenant, store_options(config), ShardOptions::default())?;
        tracing::info!(
            %tenant,
            replayed = recovery.commands_replayed,
            checkpoints = recovery.checkpoints_verified,
            snapshot = ?recovery.snapshot.as_ref().map(|(_, sequence)| sequence),
            torn_tail = ?recovery.journal.torn_tail.as_ref().map(|t| t.bytes),
            repaired_seal = ?recovery.journal.repaired_seal.as_ref().map(|r| r.sequence),
            "tenant recovered"
        );
        started.push(tenant);
    }
    Ok(started)
}

fn roll_business_date(
    data: &DataDir,
    tenant: TenantId,
    options: StoreOptions,
) -> anyhow::Result<()> {
    let (mut store, _) = TenantStore::open(data, tenant, options)?;
    let today = today();
    if store.engine().capture().reference().business_date().is_none_or(|open| open < today) {
        store.submit([(Command::OpenBusinessDate(today), now_ns())])?;
        tracing::info!(%tenant, date = %today, "business date opened");
    }
    store.close()?;
    Ok(())
}

/// Runs the server until SIGINT or SIGTERM, then drains and syncs every tenant.
pub async fn serve(
    config: ServerConfig,
    demo_instruments: &str,
    demo_accounts: &str,
) -> anyhow::Result<()> {
    let data = DataDir::new(&config.data_dir);
    std::fs::create_dir_all(&data.root)
        .with_context(|| format!("creating {}", data.root.display()))?;
    if data.tenants()?.is_empty() {
        let tenant: TenantId = crate::defaults::DEMO_TENANT.parse()?;
        let secret =
            create_tenant(&data, tenant, demo_instruments, demo_accounts, store_options(&config))?;
        println!(
            "Created tenant {tenant} in {} with the sample instruments and accounts.",
            data.root.display()
        );
        println!("Its credential (shown only now; stored hashed): {secret}");
        println!("Send trades from another shell:  KEEL_CREDENTIAL={secret} cargo run --release -- send examples/trades.csv");
    }
    let pipeline = Arc::new(Pipeline::new());
    let tenants = start_tenants(&pipeline, &data, &config)?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let (bound, listening) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(keel_server::serve(config, pipeline.clone(), shutdown, bound));
    let Ok(bound) = listening.await else {
        // It could not listen (an address in use, say): its error says why.
        let failed = server.await?;
        tokio::task::spawn_blocking(move || pipeline.shutdown()).await?;
        failed?;
        anyhow::bail!("the server stopped before it listened");
    };
    // The bound addresses, not the configured ones: port 0 asks for any free port.
    println!(
        "keel serving tenants {tenants:?} on {} (metrics {:?}); Ctrl-C to stop",
        bound.native, bound.metrics
    );
    wait_for_signal().await?;
    tracing::info!("signal received: stopping");
    let _ = stop.send(true);
    server.await??;
    tokio::task::spawn_blocking(move || pipeline.shutdown()).await?;
    println!("keel stopped cleanly: every tenant drained, synced and checkpointed");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result?,
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}
