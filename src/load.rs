//! `keel load`: a load generator over the native protocol with the Rust client. N connections
//! over M tenants, closed loop (each keeping K batches of B instructions in flight) or open
//! loop (a fixed offered rate), for a duration or a count of instructions; prints the achieved
//! rate and batch latency percentiles. By default it starts its own server on loopback in this
//! process, on a scratch data directory (so the figure includes the load generator's own CPU,
//! as on a broker's small machine); `Target::Remote` loads a running `keel serve` instead.

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

use anyhow::Context as _;

/// Closed loop: each lane sends its next batch when the previous one is acknowledged (the
/// maximum rate). Open loop: batches leave on a fixed schedule whatever happens, and latency is
/// measured from each batch's intended send time, so a stall shows up in the latencies of every
/// batch it delayed (no coordinated omission).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Closed {
        in_flight: usize,
    },
    /// Instructions per second offered, over all connections.
    Open {
        rate: f64,
    },
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub connections: usize,
    pub tenants: usize,
    pub batch: usize,
    pub mode: Mode,
    /// How long the load runs at most; `None`: until `count` instructions are sent.
    pub duration: Option<Duration>,
    /// Instructions to send in all (the last batch cut short to fit); `None`: as many as
    /// `duration` allows. At least one of the two is set.
    pub count: Option<u64>,
    /// Percent of new trades; the rest are split between amends and cancels.
    pub new_percent: u32,
    /// Net accounts to trade (created in each load tenant as `LOAD-000001` and on); `None`:
    /// the five shipped net accounts.
    pub accounts: Option<usize>,
    /// The first this many live futures of the shipped master; `None`: all of them.
    pub instruments: Option<usize>,
    /// Amends and cancels pick among each lane's this many most recent live trades; `None`:
    /// among all of them, uniformly (the worst case for copy-on-write images: between two
    /// images nearly every chunk of the trade arena is written).
    pub amend_recent: Option<usize>,
    /// Show a progress line on standard error.
    pub progress: bool,
    /// The server the load goes to.
    pub target: Target,
}

/// Where `keel load` sends its trades.
#[derive(Debug, Clone)]
pub enum Target {
    /// A server started in this process on loopback, with fresh load tenants on a scratch
    /// data directory (removed afterwards); the report has the server's side of the latency.
    InProcess,
    /// A running server (`keel serve`), as one or more of its tenants (each with its
    /// credential), the connections spread over them in turn. Each tenant needs the shipped
    /// instrument master and accounts (the demo tenant and `keel tenant create`'s defaults have
    /// them); report ids are new for each run, so that a second load is not answered as
    /// duplicates.
    Remote { address: String, tenants: Vec<(TenantId, String)> },
}

/// The tenants of a running server to load and their credentials, from `--tenant` and
/// `--credential`: each a comma-separated list, paired in order (`a,b` with `secret-a,secret-b`).
pub fn remote_tenants(tenants: &str, credentials: &str) -> anyhow::Result<Vec<(TenantId, String)>> {
    let tenants: Vec<&str> = tenants.split(',').map(str::trim).collect();
    let credentials: Vec<&str> = credentials.split(',').map(str::trim).collect();
    anyhow::ensure!(
        tenants.len() == credentials.len(),
        "--tenant names {} tenant(s) and --credential gives {} credential(s): one each, in the same order",
        tenants.len(),
        credentials.len()
    );
    let mut paired: Vec<(TenantId, String)> = Vec::with_capacity(tenants.len());
    for (tenant, credential) in tenants.into_iter().zip(credentials) {
        let id = TenantId::new_checked(tenant).with_context(|| format!("--tenant {tenant:?}"))?;
        anyhow::ensure!(!credential.is_empty(), "--credential: the one for tenant {id} is empty");
        anyhow::ensure!(paired.iter().all(|(seen, _)| *seen != id), "--tenant {id} is named twice");
        paired.push((id, credential.to_owned()));
    }
    Ok(paired)
}

/// Batches one open-loop connection may have outstanding before it waits (the wait is still
/// charged to the batches' latencies).
pub const OPEN_LOOP_OUTSTANDING_MAX: usize = 4_096;

/// A batch latency counted as slow in `slow_batches_per_second`: P4's bound on the p99.
pub const SLOW_BATCH: Duration = Duration::from_millis(1);

#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Tenants the load went to: the in-process load tenants, or those `--tenant` named.
    pub tenants: usize,
    pub instructions: u64,
    /// Accepted now or before (duplicates included).
    pub accepted: u64,
    /// Answered as duplicates of trades accepted before.
    pub duplicates: u64,
    pub rejected: u64,
    pub elapsed: Duration,
    /// Batch latencies in microseconds (from the intended send time in open loop).
    pub latency_us: hdrhistogram::Histogram<u64>,
    /// Instructions acknowledged in each second of the run.
    pub per_second: Vec<u64>,
    /// The worst batch latency acknowledged in each second of the run, in microseconds: where
    /// in the run a tail comes from.
    pub max_latency_us_per_second: Vec<u64>,
    /// Batches acknowledged in each second that took `SLOW_BATCH` or more: whether a p99 over
    /// that bound comes from a few bad seconds or from all of them.
    pub slow_batches_per_second: Vec<u64>,
    /// Offered instructions per second (open loop).
    pub offered: Option<f64>,
    /// Accounts and instruments the trades were spread over: positions are at most their
    /// product per tenant.
    pub accounts: usize,
    pub instruments: usize,
    /// The server's side of the latency, when the server ran in this process.
    pub server: Option<ServerSide>,
    /// What the hypervisor took from this machine's CPUs during the run, where the operating
    /// system counts it (`crate::host`): a latency tail in a second the host took much from
    /// is the host's as much as the engine's.
    pub host_steal: Option<HostSteal>,
}

/// Steal time during a run: all of this machine's CPUs together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSteal {
    /// Milliseconds in each second of the run (the same seconds as `per_second`).
    pub ms_per_second: Vec<u64>,
    pub cpus: usize,
}

impl HostSteal {
    /// Milliseconds over the whole run.
    pub fn total_ms(&self) -> u64 {
        self.ms_per_second.iter().sum()
    }

    /// The share of the CPUs' time over `elapsed` that the host took.
    pub fn share(&self, elapsed: Duration) -> f64 {
        let cpu_seconds = elapsed.as_secs_f64() * self.cpus.max(1) as f64;
        self.total_ms() as f64 / 1e3 / cpu_seconds.max(1e-9)
    }
}

/// The server's side of the latency, summed over tenants.
#[derive(Debug, Clone, Default)]
pub struct ServerSide {
    /// Shard batches from staging to durable.
    pub commit_us: keel_pipeline::Buckets,
    /// The journal's group commits (write and sync).
    pub journal_sync_us: keel_pipeline::Buckets,
    /// Client batches in the server, from their frame decoded to their acknowledgement
    /// written. What the batch latency adds to this was spent on the network or in the load
    /// generator.
    pub batch_us: keel_pipeline::Buckets,
}

impl LoadReport {
    pub fn rate(&self) -> f64 {
        self.instructions as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile_us(&self, percentile: f64) -> u64 {
        self.latency_us.value_at_quantile(percentile)
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

/// What the trades are drawn from: accounts and futures with their ticks.
#[derive(Debug)]
struct Universe {
    accounts: Vec<keel_domain::AccountId>,
    futures: Vec<(keel_domain::InstrumentId, Price)>,
}

impl Universe {
    /// The accounts and futures `options` asks for, and the account list a load tenant is
    /// created with (the shipped list, plus the generated accounts if any).
    fn new(options: &LoadOptions) -> anyhow::Result<(Self, String)> {
        let mut futures = live_futures();
        anyhow::ensure!(
            !futures.is_empty(),
            "no live futures in the shipped master for today's date"
        );
        if let Some(wanted) = options.instruments {
            anyhow::ensure!(
                (1..=futures.len()).contains(&wanted),
                "--instruments {wanted}: between 1 and {} (the futures live today)",
                futures.len()
            );
            futures.truncate(wanted);
        }
        let mut csv = crate::defaults::ACCOUNTS_CSV.to_owned();
        let names: Vec<String> = match options.accounts {
            None => ACCOUNTS.iter().map(|name| (*name).to_owned()).collect(),
            Some(wanted) => {
                anyhow::ensure!(
                    (1..=ACCOUNTS_MAX).contains(&wanted),
                    "--accounts {wanted}: between 1 and {ACCOUNTS_MAX}"
                );
                let names: Vec<String> = (1..=wanted).map(|n| format!("LOAD-{n:06}")).collect();
                csv.push_str("# Generated by keel load\n");
                names
                    .iter()
                    .for_each(|name| csv.push_str(&format!("{name},KEELCLR,customer,net\n")));
                names
            }
        };
        let accounts = names.iter().map(|name| name.parse()).collect::<Result<_, _>>()?;
        Ok((Self { accounts, futures }, csv))
    }
}

/// The longest `run_prefix`.
const RUN_PREFIX_BYTES: usize = 8;

/// A prefix of report ids for one run against a running server, new each run: `R` and the
/// start time in milliseconds, in base 36 (the last 7 digits: they repeat after 2.5 years).
/// With it a report id is at most 8 + 1 + 7 + 1 + 10 bytes (lane numbers up to 9,999,999,
/// ten billion trades a lane), under `ReportId::LEN_MAX`.
fn run_prefix() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    let mut digits = Vec::new();
    let mut left = millis;
    for _ in 0..RUN_PREFIX_BYTES - 1 {
        digits.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(left % 36) as usize]);
        left /= 36;
    }
    digits.reverse();
    format!("R{}", String::from_utf8_lossy(&digits))
}

/// Most accounts `--accounts` creates.
const ACCOUNTS_MAX: usize = 1_000_000;

/// Most live trades one lane keeps as targets for amends and cancels (each as the number in its
/// report id, 8 bytes: 2 MB a lane, where the ids themselves took 33 bytes each and the lookups
/// missed the cache). The list is allocated once: growing it copied it on the pacer's thread
/// (8 MB at a million trades, on a heap that `realloc` cannot remap), a 25 ms stall in the load
/// generator that every batch behind it was charged for (docs/benchmarks.md, fifth session).
const LIVE_MAX: usize = 1 << 18;

/// What one lane needs to make batches: parsed once, so that generating load costs little of
/// the CPU it shares with the server.
#[derive(Debug)]
struct Generator {
    /// Put before every report id: empty for a fresh load tenant, a run's own for a running
    /// server (`run_prefix`).
    prefix: String,
    connection: usize,
    next: u64,
    new_percent: u32,
    /// Trades that can still be amended or cancelled, by the number in their report id: at most
    /// `LIVE_MAX`, allocated up front.
    live: Vec<u64>,
    /// `LoadOptions::amend_recent`.
    recent: Option<usize>,
    universe: Arc<Universe>,
    firm: keel_domain::FirmId,
    today: keel_domain::Date,
}

impl Generator {
    fn new(
        prefix: &str,
        connection: usize,
        options: &LoadOptions,
        universe: Arc<Universe>,
    ) -> Self {
        Self {
            prefix: prefix.to_owned(),
            connection,
            next: 0,
            new_percent: options.new_percent,
            live: Vec::with_capacity(LIVE_MAX),
            recent: options.amend_recent,
            universe,
            firm: "KEELCLR".parse().unwrap_or_else(|_| unreachable!("firm")),
            today: crate::serve::today(),
        }
    }

    /// Report id number `n` of this lane: `<prefix>L<connection>-<n>`, written without the
    /// formatting machinery (a sixth of the generator's time went to `write!` and parsing it
    /// back).
    fn report_id(prefix: &str, connection: usize, n: u64) -> keel_domain::ReportId {
        fn digits(mut value: u64, out: &mut [u8; 20]) -> &[u8] {
            let mut at = out.len();
            loop {
                at -= 1;
                out[at] = b'0' + (value % 10) as u8;
                value /= 10;
                if value == 0 {
                    return &out[at..];
                }
            }
        }
        let (mut lane, mut number) = ([0u8; 20], [0u8; 20]);
        let mut id = [0u8; RUN_PREFIX_BYTES + 42];
        let prefix = &prefix.as_bytes()[..prefix.len().min(RUN_PREFIX_BYTES)];
        id[..prefix.len()].copy_from_slice(prefix);
        let at = prefix.len();
        id[at] = b'L';
        let lane = digits(connection as u64, &mut lane);
        let number = digits(n, &mut number);
        id[at + 1..at + 1 + lane.len()].copy_from_slice(lane);
        id[at + 1 + lane.len()] = b'-';
        let end = at + 2 + lane.len() + number.len();
        id[at + 2 + lane.len()..end].copy_from_slice(number);
        keel_domain::ReportId::from_bytes(&id[..end])
            .unwrap_or_else(|_| unreachable!("load report ids are valid"))
    }

    /// Which of `live` live trades an amend or cancel takes (`pick` is a hash of the instruction
    /// number): any of them, or one of the `recent` newest (the end of the list).
    fn target(live: usize, recent: Option<usize>, pick: usize) -> usize {
        match recent {
            None => pick % live,
            Some(window) => live - 1 - pick % window.min(live),
        }
    }

    /// The next `size` instructions: `new_percent`% new trades, the rest amends and cancels
    /// of this lane's live trades.
    fn batch(&mut self, size: usize) -> Vec<Instruction> {
        (0..size).map(|_| self.instruction()).collect()
    }

    fn instruction(&mut self) -> Instruction {
        self.next += 1;
        let n = self.next;
        let lane = self.connection;
        let report_id = Self::report_id(&self.prefix, lane, n);
        let Universe { accounts, futures } = &*self.universe;
        let (instrument, tick) = futures[(n as usize) % futures.len()];
        // The account from bits of a Fibonacci hash apart from the side's, so that every
        // account trades every instrument whatever the two counts are.
        let mixed = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let details = TradeDetails {
            account: accounts[((mixed >> 16) % accounts.len() as u64) as usize],
            instrument,
            // Drawn apart from the instrument (the top bit of a Fibonacci hash), so that every
            // position gets buys and sells, closes lots and hovers around flat. It was `n`'s
            // parity, which with an even number of live futures gave each instrument one side
            // only: positions that only grew, never closed a lot, and an amend never moved a
            // FIFO match (docs/benchmarks.md, tenth session).
            side: if mixed >> 63 == 0 { Side::Buy } else { Side::Sell },
            quantity: Quantity::new(1 + (n % 5) as i64),
            price: Price::from_nanos(tick.nanos() * (10_000 + (n % 200) as i64)),
            trade_date: self.today,
            venue: None,
            executing_firm: self.firm,
            clearing_firm: self.firm,
            give_up_to: None,
            position_effect: PositionEffect::Open,
            average_price_group: None,
            allocations: Vec::new(),
        };
        let roll = (n.wrapping_mul(2_654_435_761) % 100) as u32;
        let live = &mut self.live;
        let action = if roll < self.new_percent || live.len() < 16 {
            if live.len() == LIVE_MAX {
                if self.recent.is_some() {
                    // Full: the older half is never touched again (a memmove of 1 MB, once
                    // every 131,072 new trades), so the newest stay at the end in order.
                    live.drain(..LIVE_MAX / 2);
                } else {
                    // Full: the new trade takes a random one's place; that one is never touched
                    // again.
                    live[(n as usize * 13) % LIVE_MAX] = n;
                }
            }
            if live.len() < LIVE_MAX {
                live.push(n);
            }
            TradeAction::New(details)
        } else if roll < self.new_percent + (100 - self.new_percent) / 2 {
            let at = Self::target(live.len(), self.recent, n as usize * 31);
            TradeAction::Amend { target: Self::report_id(&self.prefix, lane, live[at]), details }
        } else {
            // (`swap_remove` moves the newest into the gap, which stays among the newest when
            // the gap is.)
            let target = live.swap_remove(Self::target(live.len(), self.recent, n as usize * 17));
            TradeAction::Cancel { target: Self::report_id(&self.prefix, lane, target) }
        };
        Instruction::Trade(TradeReport { report_id, action })
    }
}

/// What the lanes share while a load runs.
#[derive(Debug)]
struct Tally {
    instructions: AtomicU64,
    accepted: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
    /// Instructions not yet handed to a batch, when the load runs for a count.
    unsent: Option<AtomicU64>,
    /// Taken once per acknowledged batch (the histogram needed a lock anyway).
    series: parking_lot::Mutex<Series>,
    started: Instant,
}

/// The latencies, and the figures kept for each second of the run (grown as the run goes, so
/// that a load for a count needs no length up front).
#[derive(Debug)]
struct Series {
    latency_us: hdrhistogram::Histogram<u64>,
    per_second: Vec<u64>,
    max_latency_us: Vec<u64>,
    slow_batches: Vec<u64>,
    /// The host's steal in each second, in milliseconds, and the reading last counted (`None`:
    /// not counted on this machine).
    steal_ms: Vec<u64>,
    steal_seen: Option<Duration>,
}

impl Series {
    /// Makes room for figures of `second` (counted from 0) in every per-second series.
    fn reach(&mut self, second: usize) {
        if self.per_second.len() <= second {
            let seconds = second + 1;
            self.per_second.resize(seconds, 0);
            self.max_latency_us.resize(seconds, 0);
            self.slow_batches.resize(seconds, 0);
            self.steal_ms.resize(seconds, 0);
        }
    }
}

impl Tally {
    /// A tally starting now, for a run that sends `count` instructions (`None`: no count),
    /// with room for `seconds` of per-second figures (more are added as needed).
    fn new(count: Option<u64>, seconds: usize) -> anyhow::Result<Self> {
        Ok(Self {
            instructions: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            unsent: count.map(AtomicU64::new),
            series: parking_lot::Mutex::new(Series {
                latency_us: hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)?,
                per_second: Vec::with_capacity(seconds),
                max_latency_us: Vec::with_capacity(seconds),
                slow_batches: Vec::with_capacity(seconds),
                steal_ms: Vec::with_capacity(seconds),
                steal_seen: crate::host::steal_so_far(),
            }),
            started: Instant::now(),
        })
    }

    /// Adds the host's steal since the last reading to `second` of the run. A reading no later
    /// than the last one counted (the ticker's, taken just before the run's final one but
    /// counted after it) adds nothing and is not kept.
    fn count_steal(&self, second: usize, reading: Option<Duration>) {
        let mut series = self.series.lock();
        let (Some(seen), Some(now)) = (series.steal_seen, reading) else { return };
        if now < seen {
            return;
        }
        series.reach(second);
        series.steal_ms[second] += now.saturating_sub(seen).as_millis() as u64;
        series.steal_seen = Some(now);
    }

    /// How many instructions the next batch may have: `batch`, fewer when the count is nearly
    /// sent, 0 when it is.
    fn take(&self, batch: usize) -> usize {
        let Some(unsent) = &self.unsent else { return batch };
        let before = unsent.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            Some(left.saturating_sub(batch as u64))
        });
        let left = before.unwrap_or_else(|left| left);
        left.min(batch as u64) as usize
    }

    fn record(&self, acks: &[AckResult], latency: Duration) {
        let count = acks.len() as u64;
        self.instructions.fetch_add(count, Ordering::Relaxed);
        let (mut rejected, mut duplicates) = (0, 0);
        for ack in acks {
            match ack {
                AckResult::Accepted { .. } => {}
                AckResult::Duplicate { .. } => duplicates += 1,
                AckResult::Rejected { .. } => rejected += 1,
            }
        }
        self.accepted.fetch_add(count - rejected, Ordering::Relaxed);
        self.rejected.fetch_add(rejected, Ordering::Relaxed);
        self.duplicates.fetch_add(duplicates, Ordering::Relaxed);
        let micros = latency.as_micros().max(1) as u64;
        let second = self.started.elapsed().as_secs() as usize;
        let mut series = self.series.lock();
        let _ = series.latency_us.record(micros);
        series.reach(second);
        series.per_second[second] += count;
        series.max_latency_us[second] = series.max_latency_us[second].max(micros);
        if latency >= SLOW_BATCH {
            series.slow_batches[second] += 1;
        }
    }
}

/// A server started for the load in this process.
struct Local {
    scratch: std::path::PathBuf,
    pipeline: Arc<Pipeline>,
    stop: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Local {
    /// Creates `tenants` load tenants (`load-0` and on) with `accounts_csv` on a scratch data
    /// directory and serves them on a loopback port; returns the address and credentials.
    async fn start(
        tenants: usize,
        accounts_csv: &str,
    ) -> anyhow::Result<(Self, std::net::SocketAddr, Vec<(TenantId, String)>)> {
        let scratch = std::env::temp_dir().join(format!("keel-load-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        let data = DataDir::new(&scratch);
        // The server's settings may be tuned as for `keel serve` (KEEL_SNAPSHOT_INTERVAL=...);
        // where it listens and keeps its data are the load's.
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse()?,
            metrics_listen: None,
            data_dir: scratch.clone(),
            ..ServerConfig::default().with_env(std::env::vars())?
        };
        let mut credentials = Vec::new();
        for index in 0..tenants.max(1) {
            let tenant: TenantId = format!("load-{index}").parse()?;
            let secret = crate::serve::create_tenant(
                &data,
                tenant,
                crate::defaults::INSTRUMENTS_CSV,
                accounts_csv,
                crate::serve::store_options(&config),
            )?;
            credentials.push((tenant, secret));
        }
        let pipeline = Arc::new(Pipeline::new());
        crate::serve::start_tenants(&pipeline, &data, &config)?;
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let (bound, address) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(keel_server::serve(config, pipeline.clone(), shutdown, bound));
        let address = address.await?.native;
        Ok((Self { scratch, pipeline, stop, server }, address, credentials))
    }

    /// Stops the server, shuts the tenants down and removes the scratch directory; returns
    /// the server's side of the latency.
    async fn stop(self) -> anyhow::Result<ServerSide> {
        let _ = self.stop.send(true);
        self.server.await??;
        let mut side = ServerSide::default();
        for handle in self.pipeline.tenants() {
            keel_pipeline::Buckets::add(&mut side.batch_us, &handle.metrics.batch_latency());
            keel_pipeline::Buckets::add(&mut side.commit_us, &handle.metrics.commit_latency());
            keel_pipeline::Buckets::add(&mut side.journal_sync_us, &handle.metrics.journal_sync());
        }
        let pipeline = self.pipeline;
        tokio::task::spawn_blocking(move || pipeline.shutdown()).await?;
        let _ = std::fs::remove_dir_all(&self.scratch);
        Ok(side)
    }
}

/// Runs a load against an in-process server on a scratch data directory, or a running one.
pub async fn run(options: LoadOptions) -> anyhow::Result<LoadReport> {
    if let Some(recent) = options.amend_recent {
        anyhow::ensure!(recent >= 1, "--amend-recent {recent}: at least 1");
    }
    if let Some(count) = options.count {
        anyhow::ensure!(count >= 1, "--count {count}: at least 1");
    }
    anyhow::ensure!(
        options.duration.is_some() || options.count.is_some(),
        "a load needs a duration (--seconds) or a count (--count)"
    );
    if let Target::Remote { .. } = options.target {
        anyhow::ensure!(
            options.accounts.is_none(),
            "--accounts creates accounts in load tenants of its own: not with --address"
        );
        anyhow::ensure!(
            options.tenants <= 1,
            "--tenants {}: a load of a running server goes to the tenants --tenant names",
            options.tenants
        );
    }
    let (universe, accounts_csv) = Universe::new(&options)?;
    let universe = Arc::new(universe);
    let (local, address, credentials, run_prefix) = match &options.target {
        Target::InProcess => {
            let (local, address, credentials) =
                Local::start(options.tenants, &accounts_csv).await?;
            (Some(local), address, credentials, String::new())
        }
        Target::Remote { address, tenants } => {
            let address = tokio::net::lookup_host(address.as_str())
                .await
                .with_context(|| format!("--address {address}"))?
                .next()
                .with_context(|| format!("--address {address}: no such host"))?;
            anyhow::ensure!(!tenants.is_empty(), "--address needs at least one tenant");
            (None, address, tenants.clone(), run_prefix())
        }
    };
    let seconds = options.duration.map_or(60, |d| d.as_secs() as usize + 1);
    let tally = Arc::new(Tally::new(options.count, seconds)?);
    let deadline = options.duration.map(|duration| tally.started + duration);
    let progress = progress_task(tally.clone(), options.progress, options.duration, options.count);
    let steal = steal_task(tally.clone());
    let mut lanes = Vec::new();
    let mut open_lanes = Vec::new();
    let mut connections: Vec<Arc<Client>> = Vec::new();
    for connection in 0..options.connections.max(1) {
        let (tenant, secret) = credentials[connection % credentials.len()].clone();
        let client = Client::connect(address, tenant, &secret, "keel load")
            .await
            .with_context(|| format!("connecting to {address} as tenant {tenant}"))?;
        let client = Arc::new(client);
        match options.mode {
            Mode::Closed { in_flight } => {
                for lane in 0..in_flight.max(1) {
                    let work = Lane {
                        id: connection * 1_000 + lane,
                        prefix: run_prefix.clone(),
                        client: client.clone(),
                        universe: universe.clone(),
                        tally: tally.clone(),
                        options: options.clone(),
                    };
                    lanes.push(tokio::spawn(work.closed(deadline)));
                }
            }
            Mode::Open { .. } => {
                let generator =
                    Generator::new(&run_prefix, connection * 1_000, &options, universe.clone());
                open_lanes.push((client, generator));
            }
        }
    }
    if let Mode::Open { rate } = options.mode {
        // The connections stay open (held here) until every acknowledgement is in.
        connections = open_lanes.iter().map(|(client, _)| client.clone()).collect();
        let pacer = Pacer { lanes: open_lanes, tally: tally.clone(), batch: options.batch, rate };
        let handle = tokio::runtime::Handle::current();
        for task in tokio::task::spawn_blocking(move || pacer.run(&handle, deadline)).await? {
            lanes.push(task);
        }
    }
    for lane in lanes {
        lane.await?;
    }
    drop(connections);
    let elapsed = tally.started.elapsed();
    progress.abort();
    steal.abort();
    // The last (partial) second's steal.
    tally.count_steal(elapsed.as_secs() as usize, crate::host::steal_so_far());
    let server = match local {
        Some(local) => Some(local.stop().await?),
        None => None,
    };
    let seconds = elapsed.as_secs_f64().ceil() as usize;
    let mut guard = tally.series.lock();
    let series = &mut *guard;
    if let Some(second) = seconds.checked_sub(1) {
        // A second with no acknowledgement at all is a zero, not a gap.
        series.reach(second);
    }
    let host_steal = series.steal_seen.is_some().then(|| HostSteal {
        ms_per_second: std::mem::take(&mut series.steal_ms),
        cpus: crate::host::cpus(),
    });
    Ok(LoadReport {
        tenants: credentials.len(),
        instructions: tally.instructions.load(Ordering::Relaxed),
        accepted: tally.accepted.load(Ordering::Relaxed),
        duplicates: tally.duplicates.load(Ordering::Relaxed),
        rejected: tally.rejected.load(Ordering::Relaxed),
        elapsed,
        latency_us: series.latency_us.clone(),
        per_second: std::mem::take(&mut series.per_second),
        max_latency_us_per_second: std::mem::take(&mut series.max_latency_us),
        slow_batches_per_second: std::mem::take(&mut series.slow_batches),
        offered: match options.mode {
            Mode::Open { rate } => Some(rate),
            Mode::Closed { .. } => None,
        },
        accounts: universe.accounts.len(),
        instruments: universe.futures.len(),
        server,
        host_steal,
    })
}

/// Whether a run with this deadline (none: a load for a count) still has time at `now`.
fn before(deadline: Option<Instant>, now: Instant) -> bool {
    deadline.is_none_or(|deadline| now < deadline)
}

/// One stream of batches on one connection.
struct Lane {
    id: usize,
    /// `Generator::prefix`.
    prefix: String,
    client: Arc<Client>,
    universe: Arc<Universe>,
    tally: Arc<Tally>,
    options: LoadOptions,
}

impl Lane {
    async fn closed(self, deadline: Option<Instant>) {
        let mut generator =
            Generator::new(&self.prefix, self.id, &self.options, self.universe.clone());
        while before(deadline, Instant::now()) {
            let size = self.tally.take(self.options.batch);
            if size == 0 {
                break;
            }
            let work = generator.batch(size);
            let sent = Instant::now();
            let Ok(acks) = self.client.submit(work).await else { break };
            self.tally.record(&acks, sent.elapsed());
        }
    }
}

/// Open loop: one thread paces every connection's batches on a single schedule (batch /
/// rate apart, round robin over the connections), sleeping with the operating system's
/// high-resolution timer rather than the async runtime's millisecond wheel, whose rounding
/// would otherwise be charged to every batch. Batches are written in schedule order and each
/// acknowledgement is awaited by its own task, so a slow acknowledgement never delays the next
/// send; latency runs from the intended send time.
struct Pacer {
    lanes: Vec<(Arc<Client>, Generator)>,
    tally: Arc<Tally>,
    batch: usize,
    rate: f64,
}

impl Pacer {
    fn run(
        mut self,
        runtime: &tokio::runtime::Handle,
        deadline: Option<Instant>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        // The schedule is the measurement's clock: this thread is on the latency path.
        keel_sched::enter(keel_sched::Role::Latency);
        let outstanding = Arc::new(tokio::sync::Semaphore::new(
            OPEN_LOOP_OUTSTANDING_MAX * self.lanes.len().max(1),
        ));
        let interval = Duration::from_secs_f64(self.batch as f64 / self.rate.max(1e-9));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for index in 0_u64.. {
            let intended = start + interval.mul_f64(index as f64);
            if !before(deadline, intended) || self.lanes.is_empty() {
                break;
            }
            let size = self.tally.take(self.batch);
            if size == 0 {
                break;
            }
            let now = Instant::now();
            if intended > now {
                std::thread::sleep(intended - now);
            }
            // Waiting here is still charged: the latency clock started at `intended`.
            let Ok(permit) = runtime.block_on(outstanding.clone().acquire_owned()) else { break };
            let lane = index as usize % self.lanes.len();
            let (client, generator) = &mut self.lanes[lane];
            let work = generator.batch(size);
            // Written here, in schedule order, so that a connection's amends and cancels reach
            // the server after the trades they target; the acknowledgement is awaited apart.
            let Ok(pending) = runtime.block_on(client.send(work)) else { break };
            let tally = self.tally.clone();
            tasks.push(runtime.spawn(async move {
                if let Ok(acks) = pending.acks().await {
                    tally.record(&acks, intended.elapsed());
                }
                drop(permit);
            }));
        }
        // This blocking-pool thread goes back to the pool, and to the normal class.
        keel_sched::enter(keel_sched::Role::Helper);
        tasks
    }
}

/// Counts the host's steal into each second of the run as it ends (a late tick counts the rest
/// into the second it lands in: the total is exact, the split within a second or so).
fn steal_task(tally: Arc<Tally>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if tally.series.lock().steal_seen.is_none() {
            return;
        }
        for second in 1_u64.. {
            tokio::time::sleep_until((tally.started + Duration::from_secs(second)).into()).await;
            tally.count_steal(second as usize - 1, crate::host::steal_so_far());
        }
    })
}

/// A progress bar on standard error: over the duration, or over the count when the load runs
/// for one (or for both, whichever is further along).
fn progress_task(
    tally: Arc<Tally>,
    show: bool,
    duration: Option<Duration>,
    count: Option<u64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if !show {
            return;
        }
        const WHOLE: u64 = 10_000;
        let bar = indicatif::ProgressBar::new(WHOLE);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let elapsed = tally.started.elapsed();
            let acked = tally.instructions.load(Ordering::Relaxed);
            let by_time = duration.map_or(0.0, |d| elapsed.as_secs_f64() / d.as_secs_f64());
            let by_count = count.map_or(0.0, |c| acked as f64 / c as f64);
            bar.set_position((by_time.max(by_count).min(1.0) * WHOLE as f64) as u64);
            bar.set_message(format!(
                "{acked} acknowledged, {:.0}/s",
                acked as f64 / elapsed.as_secs_f64().max(0.001)
            ));
        }
    })
}

/// An SVG with two charts: batch latency by percentile, and instructions acknowledged per
/// second over the run.
pub fn render_svg(report: &LoadReport, title: &str) -> String {
    use std::fmt::Write as _;
    let (width, height) = (900.0, 640.0);
    let mut svg = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    let _ = writeln!(svg, "<text x=\"20\" y=\"24\" font-size=\"15\">{}</text>", escape(title));
    // Latency by percentile, x on a "nines" scale: 0, 90, 99, 99.9, 99.99.
    let (left, top, plot_w, plot_h) = (70.0, 50.0, 800.0, 230.0);
    let nines = |p: f64| (1.0 / (1.0 - p)).log10();
    let points: Vec<(f64, f64)> = (0..=400)
        .map(|i| 1.0 - 10f64.powf(-(i as f64) / 100.0))
        .map(|p| (nines(p), report.latency_us.value_at_quantile(p.min(0.99999)) as f64 / 1000.0))
        .collect();
    let max_ms = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let x = |n: f64| left + n / 4.0 * plot_w;
    let y = |ms: f64| top + plot_h - ms / max_ms * plot_h;
    axes(&mut svg, left, top, plot_w, plot_h, "batch latency (ms) by percentile");
    for (label, n) in [("p0", 0.0), ("p90", 1.0), ("p99", 2.0), ("p99.9", 3.0), ("p99.99", 4.0)] {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            x(n),
            top + plot_h + 16.0
        );
    }
    for tick in 0..=4 {
        let ms = max_ms * tick as f64 / 4.0;
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{ms:.1}</text>",
            left - 6.0,
            y(ms) + 4.0
        );
    }
    let path: Vec<String> =
        points.iter().map(|(n, ms)| format!("{:.1},{:.1}", x(*n), y(*ms))).collect();
    let _ = writeln!(
        svg,
        "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"{}\"/>",
        path.join(" ")
    );
    // Throughput per second.
    let (top2, plot_h2) = (360.0, 230.0);
    axes(&mut svg, left, top2, plot_w, plot_h2, "instructions acknowledged per second");
    let peak = report.per_second.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.1;
    let bar_w = plot_w / report.per_second.len().max(1) as f64;
    for (second, count) in report.per_second.iter().enumerate() {
        let h = *count as f64 / peak * plot_h2;
        let _ = writeln!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#2ca02c\"/>",
            left + second as f64 * bar_w + 1.0,
            top2 + plot_h2 - h,
            (bar_w - 2.0).max(1.0)
        );
    }
    // The host's steal in each second, in red along the top: a dip or a tail second with a
    // large figure was the host's.
    if let Some(steal) = report.host_steal.as_ref().filter(|steal| steal.total_ms() > 0) {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#d62728\">ms the host took (steal, {} CPUs)</text>",
            left + plot_w,
            top2 - 8.0,
            steal.cpus
        );
        for (second, ms) in steal.ms_per_second.iter().enumerate().filter(|(_, ms)| **ms > 0) {
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#d62728\">{ms}</text>",
                left + (second as f64 + 0.5) * bar_w,
                top2 + 14.0
            );
        }
    }
    for tick in 0..=4 {
        let value = peak * tick as f64 / 4.0;
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.0}k</text>",
            left - 6.0,
            top2 + plot_h2 - value / peak * plot_h2 + 4.0,
            value / 1000.0
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">seconds</text>",
        left + plot_w / 2.0,
        top2 + plot_h2 + 18.0
    );
    svg.push_str("</svg>\n");
    svg
}

fn axes(svg: &mut String, left: f64, top: f64, width: f64, height: f64, title: &str) {
    use std::fmt::Write as _;
    let _ = writeln!(svg, "<text x=\"{left}\" y=\"{:.1}\">{}</text>", top - 8.0, escape(title));
    let _ = writeln!(
        svg,
        "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{:.1}\" stroke=\"black\"/>",
        top + height
    );
    let _ = writeln!(
        svg,
        "<line x1=\"{left}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>",
        top + height,
        left + width,
        top + height
    );
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A count is handed out in whole batches, the last one cut short, then nothing; without
    /// a count every batch is whole.
    #[test]
    fn a_count_is_taken_in_batches_until_it_is_used_up() {
        let tally = |count| Tally::new(count, 0).unwrap_or_else(|e| panic!("{e}"));
        let cases: [(Option<u64>, usize, &[usize]); 5] = [
            (Some(250), 100, &[100, 100, 50, 0, 0]),
            (Some(200), 100, &[100, 100, 0]),
            (Some(1), 500, &[1, 0]),
            (Some(3), 1, &[1, 1, 1, 0]),
            (None, 100, &[100, 100, 100]),
        ];
        for (count, batch, expected) in cases {
            let tally = tally(count);
            let taken: Vec<usize> = expected.iter().map(|_| tally.take(batch)).collect();
            assert_eq!(taken, expected, "{count:?} in batches of {batch}");
        }
    }

    /// Acknowledgements are counted in the second they arrive in, the series growing as the
    /// run goes.
    #[test]
    fn acknowledgements_land_in_their_second() {
        let mut tally = Tally::new(None, 0).unwrap_or_else(|e| panic!("{e}"));
        // As if the run had started 2.5 s ago: this acknowledgement is in its third second.
        tally.started -= Duration::from_millis(2_500);
        let acks = vec![AckResult::Accepted { sequence: 1 }; 3];
        tally.record(&acks, Duration::from_millis(2));
        let series = tally.series.lock();
        assert_eq!(series.per_second, [0, 0, 3]);
        assert_eq!(series.max_latency_us, [0, 0, 2_000]);
        assert_eq!(series.slow_batches, [0, 0, 1]);
        assert_eq!(tally.accepted.load(Ordering::Relaxed), 3);
    }

    /// The host's steal goes into the second it was read in, as the difference from the
    /// reading before; a missing reading counts nothing and loses nothing, and the series grow
    /// together.
    #[test]
    fn steal_lands_in_its_second_as_a_difference() {
        let ms = Duration::from_millis;
        /// A second and the reading taken at its end (`None`: it failed).
        type Readings<'a> = &'a [(usize, Option<u64>)];
        let cases: [(Option<u64>, Readings, &[u64]); 5] = [
            (Some(1_000), &[(0, Some(1_000)), (1, Some(1_030)), (2, Some(1_030))], &[0, 30, 0]),
            // A tick landing late: what it read goes into the second it lands in.
            (Some(0), &[(0, Some(10)), (2, Some(60))], &[10, 0, 50]),
            // A failed reading: the next one counts both seconds' steal.
            (Some(500), &[(0, None), (1, Some(540))], &[0, 40]),
            // A reading older than one counted already (two readers racing) takes nothing back.
            (Some(0), &[(0, Some(30)), (0, Some(20)), (1, Some(50))], &[30, 20]),
            // Not counted on this machine: nothing, not zeros.
            (None, &[(0, Some(10)), (1, Some(20))], &[]),
        ];
        for (start, readings, expected) in cases {
            let mut tally = Tally::new(None, 0).unwrap_or_else(|e| panic!("{e}"));
            tally.series.get_mut().steal_seen = start.map(ms);
            for (second, reading) in readings {
                tally.count_steal(*second, reading.map(ms));
            }
            let series = tally.series.lock();
            assert_eq!(series.steal_ms, expected, "from {start:?}: {readings:?}");
            assert_eq!(series.per_second.len(), expected.len());
        }
    }

    /// The chart names the host's steal in the seconds it took any, and says nothing of it
    /// when it took none.
    #[test]
    fn the_chart_marks_the_seconds_the_host_took() {
        let report = |steal: Option<HostSteal>| LoadReport {
            tenants: 1,
            instructions: 3,
            accepted: 3,
            duplicates: 0,
            rejected: 0,
            elapsed: Duration::from_secs(3),
            latency_us: hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .unwrap_or_else(|e| panic!("{e}")),
            per_second: vec![1, 1, 1],
            max_latency_us_per_second: vec![1, 1, 1],
            slow_batches_per_second: vec![0, 0, 0],
            offered: None,
            accounts: 1,
            instruments: 1,
            server: None,
            host_steal: steal,
        };
        let took = HostSteal { ms_per_second: vec![0, 47, 0], cpus: 2 };
        let chart = render_svg(&report(Some(took.clone())), "t");
        assert!(chart.contains("ms the host took (steal, 2 CPUs)"), "{chart}");
        assert!(chart.contains(">47</text>"), "{chart}");
        for quiet in [None, Some(HostSteal { ms_per_second: vec![0; 3], cpus: 2 })] {
            assert!(!render_svg(&report(quiet), "t").contains("the host took"));
        }
        assert!((took.share(Duration::from_secs(3)) - 0.047 / 6.0).abs() < 1e-12);
    }

    /// `--tenant` and `--credential` pair up in order, each a comma-separated list; a
    /// mismatch, an empty credential, a malformed or repeated tenant is refused with a reason.
    #[test]
    fn remote_tenants_pair_up_in_order() {
        type Pairs = &'static [(&'static str, &'static str)];
        let ok: [(&str, &str, Pairs); 3] = [
            ("demo", "s1", &[("demo", "s1")]),
            ("acme,beta", "s1,s2", &[("acme", "s1"), ("beta", "s2")]),
            ("acme, beta", "s1, s2", &[("acme", "s1"), ("beta", "s2")]),
        ];
        for (tenants, credentials, expected) in ok {
            let paired = remote_tenants(tenants, credentials).unwrap_or_else(|e| panic!("{e:#}"));
            let paired: Vec<(String, &str)> =
                paired.iter().map(|(id, secret)| (id.to_string(), secret.as_str())).collect();
            let expected: Vec<(String, &str)> =
                expected.iter().map(|(id, secret)| ((*id).to_owned(), *secret)).collect();
            assert_eq!(paired, expected, "{tenants} / {credentials}");
        }
        let refused = [
            ("acme,beta", "s1", "2 tenant(s) and --credential gives 1"),
            ("acme", "s1,s2", "1 tenant(s) and --credential gives 2"),
            ("acme,beta", "s1,", "the one for tenant beta is empty"),
            ("acme,acme", "s1,s2", "acme is named twice"),
            ("acme,", "s1,s2", "--tenant \"\""),
        ];
        for (tenants, credentials, reason) in refused {
            let error = match remote_tenants(tenants, credentials) {
                Ok(paired) => panic!("{tenants} / {credentials} accepted: {paired:?}"),
                Err(error) => format!("{error:#}"),
            };
            assert!(error.contains(reason), "{tenants} / {credentials}: {error}");
        }
    }

    /// The generator's report ids are `L<connection>-<n>`, as `format!` writes them.
    #[test]
    fn report_ids_are_written_like_format() {
        let cases = [(0, 0), (3, 1_234_567), (7, 9), (10, 10), (12, u64::MAX), (usize::MAX, 1)];
        for (connection, n) in cases {
            let id = Generator::report_id("", connection, n);
            assert_eq!(id.as_str(), format!("L{connection}-{n}"), "{connection} {n}");
        }
        // A run's prefix goes first; the longest prefix with the longest lane and number
        // still makes a valid report id.
        let prefix = run_prefix();
        assert!(prefix.starts_with('R') && prefix.len() == RUN_PREFIX_BYTES, "{prefix}");
        let id = Generator::report_id(&prefix, 9_999_999, 9_999_999_999);
        assert_eq!(id.as_str(), format!("{prefix}L9999999-9999999999"));
    }

    /// Amend and cancel targets: any live trade, or one of the newest `recent` (the end of the
    /// list), never out of range.
    #[test]
    fn targets_are_live_and_recent_when_asked() {
        // (live, recent, pick, expected index)
        let cases = [
            (10, None, 3, 3),
            (10, None, 13, 3),
            (10, Some(4), 0, 9),
            (10, Some(4), 3, 6),
            (10, Some(4), 4, 9),
            (3, Some(100), 2, 0),
            (1, Some(1), 12_345, 0),
            (1, None, usize::MAX, 0),
        ];
        for (live, recent, pick, expected) in cases {
            assert_eq!(Generator::target(live, recent, pick), expected, "{live} {recent:?} {pick}");
        }
    }

    /// With a window, the live list stays in age order at its end: after filling up, every
    /// amend or cancel lands on one of the newest trades the lane created.
    #[test]
    fn recent_targets_stay_recent_after_the_list_fills() {
        let options = LoadOptions {
            connections: 1,
            tenants: 1,
            batch: 1,
            mode: Mode::Closed { in_flight: 1 },
            duration: Some(Duration::from_secs(1)),
            count: None,
            new_percent: 80,
            accounts: None,
            instruments: None,
            amend_recent: Some(1_000),
            progress: false,
            target: Target::InProcess,
        };
        let (universe, _) = Universe::new(&options).unwrap_or_else(|e| panic!("{e}"));
        let mut generator = Generator::new("", 0, &options, Arc::new(universe));
        let mut created = 0u64;
        for _ in 0..(LIVE_MAX as u64 * 3) {
            if let Instruction::Trade(report) = generator.instruction() {
                match &report.action {
                    TradeAction::New(_) => created = generator.next,
                    TradeAction::Amend { target, .. } | TradeAction::Cancel { target } => {
                        let n: u64 = target.as_str().trim_start_matches("L0-").parse().unwrap_or(0);
                        // Within the window of live trades, of which a fifth may have been
                        // cancelled: a few thousand instructions back at most.
                        assert!(created - n < 5_000, "target {n} when the newest is {created}");
                    }
                }
            }
        }
        assert!(generator.live.len() <= LIVE_MAX);
    }
}
