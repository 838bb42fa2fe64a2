//! `keel load` (first version): a closed-loop load generator over the native protocol with the
//! Rust client. N connections over M tenants, each keeping K batches of B instructions in
//! flight, for a duration; prints the achieved rate and batch latency percentiles. By default it
//! starts its own server on loopback in this process, on a scratch data directory (so the
//! figure includes the load generator's own CPU, as on a broker's small machine).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_client::Client;
use keel_domain::{
    instrument::load_instruments, InstrumentKind, PositionEffect, Price, Quantity, Side, TenantId,
    TradeAction, TradeDetails, TradeReport,
};
use keel_pipeline::{DataDir, Pipeline};
use keel_server::ServerConfig;
use keel_wire::{AckResult, Instruction};

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub connections: usize,
    pub tenants: usize,
    pub batch: usize,
    pub in_flight: usize,
    pub duration: Duration,
    /// Percent of new trades; the rest are split between amends and cancels.
    pub new_percent: u32,
}

#[derive(Debug, Clone)]
pub struct LoadReport {
    pub instructions: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub elapsed: Duration,
    /// Batch round-trip latencies, microseconds, sorted.
    pub latencies_us: Vec<u64>,
}

impl LoadReport {
    pub fn rate(&self) -> f64 {
        self.instructions as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile_us(&self, p: f64) -> u64 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let index = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[index.min(self.latencies_us.len() - 1)]
    }
}

/// Instruments a load can trade today: the shipped master's live futures, with their ticks.
fn live_futures() -> Vec<(keel_domain::InstrumentId, Price)> {
    let today = crate::serve::today();
    load_instruments(crate::defaults::INSTRUMENTS_CSV.as_bytes())
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.kind == InstrumentKind::Future && !i.is_expired_on(today))
        .map(|i| (i.id, i.tick_size))
        .collect()
}

const ACCOUNTS: [&str; 5] = ["ACME-01", "ACME-02", "BRAVO-01", "CAPITAL-01", "HOUSE"];

/// Builds one batch for connection `connection`, numbering reports from `*next`.
fn batch(
    connection: usize,
    next: &mut u64,
    size: usize,
    new_percent: u32,
    live: &mut Vec<String>,
    futures: &[(keel_domain::InstrumentId, Price)],
) -> Vec<Instruction> {
    let today = crate::serve::today();
    (0..size)
        .map(|_| {
            *next += 1;
            let n = *next;
            let report_id: keel_domain::ReportId = format!("L{connection}-{n}")
                .parse()
                .unwrap_or_else(|_| unreachable!("load report ids are valid"));
            let (instrument, tick) = futures[(n as usize) % futures.len()];
            let details = TradeDetails {
                account: ACCOUNTS[(n as usize / 7) % ACCOUNTS.len()]
                    .parse()
                    .unwrap_or_else(|_| unreachable!("shipped account")),
                instrument,
                side: if n % 2 == 0 { Side::Buy } else { Side::Sell },
                quantity: Quantity::new(1 + (n % 5) as i64),
                price: Price::from_nanos(tick.nanos() * (10_000 + (n % 200) as i64)),
                trade_date: today,
                venue: None,
                executing_firm: "KEELCLR".parse().unwrap_or_else(|_| unreachable!("firm")),
                clearing_firm: "KEELCLR".parse().unwrap_or_else(|_| unreachable!("firm")),
                give_up_to: None,
                position_effect: PositionEffect::Open,
                average_price_group: None,
                allocations: Vec::new(),
            };
            let roll = (n.wrapping_mul(2_654_435_761) % 100) as u32;
            let action = if roll < new_percent || live.len() < 16 {
                live.push(report_id.to_string());
                TradeAction::New(details)
            } else if roll < new_percent + (100 - new_percent) / 2 {
                let target = live[(n as usize * 31) % live.len()]
                    .parse()
                    .unwrap_or_else(|_| unreachable!("id"));
                TradeAction::Amend { target, details }
            } else {
                let index = (n as usize * 17) % live.len();
                let target = live.swap_remove(index).parse().unwrap_or_else(|_| unreachable!("id"));
                TradeAction::Cancel { target }
            };
            Instruction::Trade(TradeReport { report_id, action })
        })
        .collect()
}

/// Runs a load against an in-process server on a scratch data directory.
pub async fn run(options: LoadOptions) -> anyhow::Result<LoadReport> {
    let scratch = std::env::temp_dir().join(format!("keel-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let data = DataDir::new(&scratch);
    let mut credentials = Vec::new();
    for index in 0..options.tenants.max(1) {
        let tenant: TenantId = format!("load-{index}").parse()?;
        let secret = crate::serve::create_tenant(
            &data,
            tenant,
            crate::defaults::INSTRUMENTS_CSV,
            crate::defaults::ACCOUNTS_CSV,
            Default::default(),
        )?;
        credentials.push((tenant, secret));
    }
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        metrics_listen: None,
        data_dir: scratch.clone(),
        ..ServerConfig::default()
    };
    let pipeline = Arc::new(Pipeline::new());
    crate::serve::start_tenants(&pipeline, &data, &config)?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let (bound, address) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(keel_server::serve(config, pipeline.clone(), shutdown, bound));
    let address = address.await?.native;

    let futures = Arc::new(live_futures());
    anyhow::ensure!(!futures.is_empty(), "no live futures in the shipped master for today's date");
    let instructions = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + options.duration;
    let mut tasks = Vec::new();
    for connection in 0..options.connections.max(1) {
        let (tenant, secret) = credentials[connection % credentials.len()].clone();
        let client = Arc::new(Client::connect(address, tenant, &secret, "keel load").await?);
        for lane in 0..options.in_flight.max(1) {
            let (client, futures) = (client.clone(), futures.clone());
            let (instructions, accepted, rejected) =
                (instructions.clone(), accepted.clone(), rejected.clone());
            let options = options.clone();
            let id = connection * 1_000 + lane;
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let (mut next, mut live) = (0u64, Vec::new());
                while Instant::now() < deadline {
                    let work = batch(
                        id,
                        &mut next,
                        options.batch,
                        options.new_percent,
                        &mut live,
                        &futures,
                    );
                    let sent = Instant::now();
                    let Ok(acks) = client.submit(work).await else { break };
                    latencies.push(sent.elapsed().as_micros() as u64);
                    instructions.fetch_add(acks.len() as u64, Ordering::Relaxed);
                    let ok =
                        acks.iter().filter(|a| !matches!(a, AckResult::Rejected { .. })).count()
                            as u64;
                    accepted.fetch_add(ok, Ordering::Relaxed);
                    rejected.fetch_add(acks.len() as u64 - ok, Ordering::Relaxed);
                }
                latencies
            }));
        }
    }
    let mut latencies_us = Vec::new();
    for task in tasks {
        latencies_us.extend(task.await?);
    }
    let elapsed = started.elapsed();
    latencies_us.sort_unstable();
    let _ = stop.send(true);
    server.await??;
    tokio::task::spawn_blocking(move || pipeline.shutdown()).await?;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(LoadReport {
        instructions: instructions.load(Ordering::Relaxed),
        accepted: accepted.load(Ordering::Relaxed),
        rejected: rejected.load(Ordering::Relaxed),
        elapsed,
        latencies_us,
    })
}
