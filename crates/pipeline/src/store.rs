//! A tenant's durable state: its engine, rebuilt from the newest verified snapshot and the
//! journal after it, and its journal, to which every command is appended and made durable
//! before its outcome is returned.
//!
//! Layout under the data directory (docs/journal-format.md):
//! `node/node.key` (the signing key, outside every tenant), `tenants/<tenant>/journal/*.seg`,
//! `tenants/<tenant>/snapshots/*.snap`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use keel_domain::TenantId;
use keel_engine::{Command, Engine, EngineImage, Envelope, Outcome, StateHash};
use keel_journal::{
    read_journal, ChainHash, Corruption, Durable, Journal, JournalError, JournalOptions,
    JournalWriter, Location, NodeKey, OnDurable, OpenReport, RecordKind, StartAfter, Trust,
    WriteBatch,
};
use keel_trade_capture::{IndexJob, Install};

/// Where a data directory keeps things.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn node_dir(&self) -> PathBuf {
        self.root.join("node")
    }

    pub fn tenant_dir(&self, tenant: TenantId) -> PathBuf {
        self.root.join("tenants").join(tenant.as_str())
    }

    pub fn journal_dir(&self, tenant: TenantId) -> PathBuf {
        self.tenant_dir(tenant).join("journal")
    }

    pub fn snapshot_dir(&self, tenant: TenantId) -> PathBuf {
        self.tenant_dir(tenant).join("snapshots")
    }

    /// Tenants with a journal directory, sorted.
    pub fn tenants(&self) -> anyhow::Result<Vec<TenantId>> {
        let dir = self.root.join("tenants");
        let mut tenants = Vec::new();
        match std::fs::read_dir(&dir) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error.into()),
            Ok(entries) => {
                for entry in entries {
                    let entry = entry?;
                    if let Some(tenant) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                        tenants.push(tenant);
                    }
                }
            }
        }
        tenants.sort_unstable();
        Ok(tenants)
    }
}

/// Snapshots kept per tenant: the newest, and one before it in case the newest is damaged.
pub const SNAPSHOTS_KEPT: usize = 2;

/// The longest an image waits for the chunk stocks' reserve for its copies, from the moment it
/// was asked for (`TenantStore::copies_reserved`, a quarter of an interval before the image is
/// due): a helper starved of CPU delays the image, never stops it. `StoreOptions::reserve_wait`.
pub const RESERVE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// A report index build runs in the idle class (`keel_sched::Role::Spare`): it takes only CPU
/// no other thread wants, and any thread that wakes takes its core at once. At 24M report ids a
/// build flat out took a full core for about a second, beside a shard that then waited on the
/// run queue half the time (twentieth session); paced to a quarter of a core in the normal
/// class it still held cores for up to a millisecond at a time, since a thread that rests
/// three quarters of the time is owed CPU when it runs, and the scheduler picked it again
/// after it yielded (twenty-first session). The idle class also finished the builds sooner at
/// 400k trades a second, with a third of the machine idle. Should the index reach three
/// quarters full while the build is out, the store sets its hurry flag and it finishes flat
/// out in the normal class (`IndexBuild::hurry`, `keel_sched::hurry`), so the index never fills
/// and grows in line.
///
/// Where the kernel would not let the build back out of the idle class (no `CAP_SYS_NICE` and
/// an `RLIMIT_NICE` that does not allow nice 0: `keel_sched::can_hurry_from_idle`), it runs in
/// the normal class instead, resting after each `INDEX_BUILD_SLICE` of work to keep to
/// `INDEX_BUILD_PERCENT` of a core (`keel_sched::Duty`).
///
/// With the latency path real-time (`keel_sched::realtime_priority`)
/// a woken shard or session takes the core from a helper at once, so resting buys nothing,
/// and the helper only gets what the real-time threads leave: paced as well, the build for
/// 3.1M ids came back after the index had filled and grown in line, a 300 ms stall of the
/// shard (docs/benchmarks.md, twentieth session). There it runs flat out in the normal class,
/// and when it must hurry it goes up to the writers' real-time priority, one below the
/// latency path's (`keel_sched::hurry`): flat out in the normal class, it still came back
/// late in three of four disk runs at P4's rate (twenty-second session).
///
/// `KEEL_INDEX_BUILD_PERCENT` (1 to 100) overrides all of it: the build paced to that share
/// in the normal class, a diagnostic switch for comparing runs of one binary.
const INDEX_BUILD_PERCENT: u32 = 25;
const INDEX_BUILD_SLICE: std::time::Duration = std::time::Duration::from_millis(2);

fn index_build_percent() -> u32 {
    let default = if keel_sched::realtime_priority().is_some() { 100 } else { INDEX_BUILD_PERCENT };
    index_build_percent_set().unwrap_or(default)
}

/// `KEEL_INDEX_BUILD_PERCENT`, if set.
fn index_build_percent_set() -> Option<u32> {
    std::env::var("KEEL_INDEX_BUILD_PERCENT").ok().and_then(|percent| percent.parse().ok())
}

/// Tunables.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// A signed checkpoint of the chain after this many commands: bounds how much of the
    /// journal a forger without the node key could rewrite unnoticed. Cheap (one signature).
    pub checkpoint_interval: u64,
    /// Every this many commands (or the tenant's size in trades, if larger) the state is
    /// hashed, and replay must reproduce the hash: a checkpoint defers it and a state-hash
    /// record brings it once a background pass over an image has computed it (a pass over the
    /// whole state, so much rarer than signatures). The close of a store carries one in line.
    pub state_hash_interval: u64,
    /// A snapshot after this many commands, or the tenant's size in trades if larger (0: only
    /// on request).
    pub snapshot_interval: u64,
    /// Batches that may wait for the journal writer before `flush` blocks.
    pub writer_depth: usize,
    /// The engine's tables are sized for this many trades and positions on open
    /// (`Engine::reserve`): no growth stalls before the tenant reaches them.
    pub reserve_trades: usize,
    pub reserve_positions: usize,
    /// How long an image that is due waits for the reserve for its copies: `RESERVE_WAIT`.
    pub reserve_wait: std::time::Duration,
    pub journal: JournalOptions,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            checkpoint_interval: 10_000,
            state_hash_interval: 1_000_000,
            snapshot_interval: 1_000_000,
            writer_depth: 4,
            reserve_trades: 0,
            reserve_positions: 0,
            reserve_wait: RESERVE_WAIT,
            journal: JournalOptions::default(),
        }
    }
}

/// What opening a tenant found and did.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub journal: OpenReport,
    /// The snapshot replay started from, if any.
    pub snapshot: Option<(PathBuf, u64)>,
    /// Snapshots skipped because they did not verify, with the reason.
    pub snapshots_rejected: Vec<(PathBuf, String)>,
    pub commands_replayed: u64,
    pub checkpoints_verified: u64,
    /// State hashes replay recomputed and found equal to the journal's.
    pub state_hashes_verified: u64,
    /// Deferred state hashes whose record a crash cut off: recomputed by replay and written
    /// again on open.
    pub state_hashes_rewritten: u64,
}

/// A tenant's engine and journal, kept in step. Commands are applied and encoded on the
/// caller's thread (`stage`) and handed in batches (`flush`) to a writer thread that owns the
/// journal, so the next batch is applied while the previous one is written and synced
/// (pipelined group commit). An outcome may be released only once `durable_sequence` covers
/// its command: `commit` waits for that, `flush` + `wait_durable` let the caller overlap.
#[derive(Debug)]
pub struct TenantStore {
    engine: Engine,
    writer: JournalWriter,
    /// Commands and checkpoints staged since the last `flush`.
    staging: WriteBatch,
    /// The command being staged, encoded before it is applied (`stage`).
    encoded: Vec<u8>,
    options: StoreOptions,
    snapshot_dir: PathBuf,
    since_checkpoint: u64,
    since_state_hash: u64,
    since_snapshot: u64,
    /// Commands from the last state hash to the next: the configured interval, or the tenant's
    /// size in trades when it was last hashed if larger (see `stretched`).
    state_hash_gap: u64,
    /// The same for snapshots.
    snapshot_gap: u64,
    /// The whole-state pass running in the background, if any.
    pass: Option<StatePass>,
    /// Image and pass durations not yet taken by `take_pass_timings`.
    pass_timings: Vec<PassTiming>,
    /// The report index's next size being built on a helper thread (`Engine::index_job`).
    index_build: Option<IndexBuild>,
    /// Indexes built that way and installed.
    indexes_installed: u64,
    /// Where the coming image's reserve of chunks for its copies is.
    reserve: Reserve,
    /// What to run once durable (`then`) for batches that had nothing to write, each with the
    /// last sequence staged before it: run as soon as that is durable (`poll_durable`).
    held: Held,
}

/// `TenantStore::held`.
#[derive(Default)]
struct Held(std::collections::VecDeque<(u64, Box<dyn OnDurable>)>);

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Held({} waiting)", self.0.len())
    }
}

/// A report index build out on a helper thread, which returns what it built and how long that
/// took in microseconds. It takes spare CPU only (or paces itself) until `hurry` is set.
#[derive(Debug)]
struct IndexBuild {
    thread: std::thread::JoinHandle<Option<(keel_trade_capture::BuiltIndex, u64)>>,
    hurry: Arc<AtomicBool>,
    /// Stops the build when the store goes (closed, or dropped on a fault) with it still out.
    _stop: StopBuild,
}

/// Set when dropped: the build stops at its next piece (with `hurry` set too, so that a build
/// in the idle class gets the CPU to see it), rather than running on for a store that is gone,
/// holding the index it was building.
#[derive(Debug)]
struct StopBuild {
    stop: Arc<AtomicBool>,
    hurry: Arc<AtomicBool>,
}

impl Drop for StopBuild {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.hurry.store(true, Ordering::Relaxed);
    }
}

/// The chunk stocks' reserve for the copies of the coming image (`copies_reserved`).
#[derive(Debug, Clone, Copy)]
enum Reserve {
    /// Not asked for yet.
    None,
    /// Asked for then; not in yet.
    Asked(std::time::Instant),
    /// In, or no longer waited for.
    In,
}

/// What the background work reported, for metrics: how long a state pass's parts took (in
/// microseconds), what its image cost in copies and whether it waited for their reserve, and
/// how each report index build ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassTiming {
    /// The shard's pause to take the engine image.
    Image(u64),
    /// The helper thread's pass, start to finish.
    Pass(u64),
    /// A report index built off the shard came back: installed, or late.
    IndexBuild { installed: bool },
    /// Chunks the shard copied on write while a pass held them (`Stocks::pass_done`).
    Copies(u64),
    /// An image taken before the chunk stocks' reserve for its copies was in, `reserve_wait`
    /// after asking.
    ReserveLate,
}

/// A whole-state pass on a helper thread over an engine image taken after command `sequence`:
/// it hashes the state for the checkpoint that deferred its hash there and, when a snapshot
/// was due, writes the snapshot in the same pass (its body's BLAKE3 is the state hash).
#[derive(Debug)]
struct StatePass {
    sequence: u64,
    /// The state hash (none if a snapshot failed part way) and the pass's duration in
    /// microseconds.
    thread: std::thread::JoinHandle<(Option<StateHash>, u64)>,
}

/// The scratch buffer `stage` encodes into keeps at most this much capacity between commands
/// (a trade is about 80 bytes).
const ENCODED_KEPT_BYTES: usize = 4 << 10;

/// A command `TenantStore::stage` refused before applying it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StageError {
    #[error(
        "command too large: {bytes} bytes encoded, a journal record holds at most {max} bytes \
         (nothing was applied)"
    )]
    TooLarge { bytes: usize, max: u64 },
}

/// Replay failures: the journal's own, or a replayed state that disagrees with a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("record at {location} does not decode: {reason}")]
    Decode { location: Location, reason: String },
    #[error("engine fault replaying {location}: {reason}")]
    Engine { location: Location, reason: String },
}

impl TenantStore {
    /// Opens a tenant: repairs a torn journal tail, restores the newest snapshot that verifies,
    /// replays the journal after it with every check (checkpoint signatures and state hashes
    /// included), and is ready to append.
    pub fn open(
        data: &DataDir,
        tenant: TenantId,
        options: StoreOptions,
    ) -> anyhow::Result<(TenantStore, Recovery)> {
        let key = NodeKey::load_or_create(&data.node_dir())?;
        let journal_dir = data.journal_dir(tenant);
        let (journal, report) = Journal::open(&journal_dir, tenant, options.journal.clone())?;
        let snapshot_dir = data.snapshot_dir(tenant);
        let trust = Trust::Key(key.verifying_key());
        let mut snapshots_rejected = Vec::new();
        let mut candidates = restorable_snapshots(&snapshot_dir, tenant, &mut snapshots_rejected)?;
        candidates.push(None);
        let mut recovered = None;
        for candidate in candidates {
            let (mut engine, start, snapshot) = match candidate {
                Some((engine, start, path)) => (engine, Some(start), Some((path, start.sequence))),
                None => (Engine::new(tenant), None, None),
            };
            // Sized before replay, so that neither replay nor the session grows the tables.
            engine.reserve(options.reserve_trades, options.reserve_positions);
            let (mut replayed, mut checkpoints) = (0, 0);
            let result = replay_into(
                &mut engine,
                &journal_dir,
                trust,
                start,
                |_| {},
                |record, _| match record.kind {
                    RecordKind::Command => replayed += 1,
                    RecordKind::Checkpoint => checkpoints += 1,
                    RecordKind::StateHash | RecordKind::Seal => {}
                },
            );
            match result {
                Ok(report) => {
                    recovered = Some((engine, snapshot, replayed, checkpoints, report));
                    break;
                }
                // The journal does not vouch for this snapshot: try an older one, or none.
                Err(ReplayError::Journal(JournalError::Corrupt {
                    corruption: Corruption::Snapshot(reason),
                    ..
                })) if snapshot.is_some() => {
                    if let Some((path, _)) = snapshot {
                        snapshots_rejected.push((path, reason));
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
        let Some((engine, snapshot, replayed, checkpoints, replay)) = recovered else {
            anyhow::bail!("no way to rebuild tenant {tenant}")
        };
        let recovery = Recovery {
            journal: report,
            snapshot,
            snapshots_rejected,
            commands_replayed: replayed,
            checkpoints_verified: checkpoints,
            state_hashes_verified: replay.state_hashes_verified,
            state_hashes_rewritten: replay.unattested.len() as u64,
        };
        let mut writer = JournalWriter::spawn(journal, key, options.writer_depth)?;
        let mut staging = writer.batch();
        // A crash between a deferred checkpoint and its state-hash record: replay computed
        // the hash, so the journal gets it now (durable with the first commit).
        for (sequence, hash) in replay.unattested {
            tracing::info!(%tenant, sequence, "writing a deferred state hash a crash cut off");
            staging.state_hash(sequence, hash.0);
        }
        let mut store = TenantStore {
            engine,
            writer,
            staging,
            encoded: Vec::with_capacity(ENCODED_KEPT_BYTES),
            options,
            snapshot_dir,
            since_checkpoint: 0,
            since_state_hash: 0,
            since_snapshot: 0,
            state_hash_gap: 0,
            snapshot_gap: 0,
            pass: None,
            pass_timings: Vec::new(),
            index_build: None,
            indexes_installed: 0,
            reserve: Reserve::None,
            held: Held::default(),
        };
        // A reopened tenant spaces them by its size already.
        store.state_hash_gap = store.stretched(store.options.state_hash_interval);
        store.snapshot_gap = store.stretched(store.options.snapshot_interval);
        Ok((store, recovery))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Sequence of the last command known to be on disk (as of the last `flush`, `poll`,
    /// `wait_durable` or `commit`).
    pub fn durable_sequence(&self) -> u64 {
        self.writer.durable().sequence
    }

    /// Applies `commands` in order, journals every one (rejections too, so that replay agrees),
    /// and makes them durable with one commit before returning their outcomes: an outcome is
    /// never seen before it is on disk.
    pub fn submit(
        &mut self,
        commands: impl IntoIterator<Item = (Command, i64)>,
    ) -> anyhow::Result<Vec<Outcome>> {
        let mut outcomes = Vec::new();
        for (command, timestamp_ns) in commands {
            outcomes.push(self.stage(command, timestamp_ns)?);
        }
        self.commit()?;
        Ok(outcomes)
    }

    /// Applies one command and stages it for the journal. Its outcome must not be released
    /// before `durable_sequence` reaches the command's sequence (`commit`, or `flush` and then
    /// `wait_durable`).
    pub fn stage(&mut self, command: Command, timestamp_ns: i64) -> anyhow::Result<Outcome> {
        let sequence = self.engine.last_sequence() + 1;
        let envelope = Envelope { sequence, timestamp_ns, command };
        // Encoded first: a command the journal could not hold is refused with nothing changed.
        self.encoded.clear();
        envelope.encode_into(&mut self.encoded);
        let (bytes, max) = (self.encoded.len(), keel_engine::ENVELOPE_BYTES_MAX);
        if bytes as u64 > max {
            self.encoded = Vec::with_capacity(ENCODED_KEPT_BYTES);
            return Err(StageError::TooLarge { bytes, max }.into());
        }
        let outcome = self.engine.apply(&envelope)?;
        let encoded = &self.encoded;
        self.staging.command(sequence, |out| out.extend_from_slice(encoded));
        if self.encoded.capacity() > ENCODED_KEPT_BYTES {
            // A large admin command (a price file) leaves no megabytes behind.
            self.encoded = Vec::with_capacity(ENCODED_KEPT_BYTES);
        }
        self.since_checkpoint += 1;
        self.since_state_hash += 1;
        self.since_snapshot += 1;
        if self.since_checkpoint >= self.options.checkpoint_interval {
            self.checkpoint(false);
        }
        Ok(outcome)
    }

    /// Hands everything staged to the journal writer without waiting for the disk (blocks only
    /// while `writer_depth` batches are already queued), then starts a background state pass
    /// if a state hash or a snapshot is due. Returns the last sequence staged, which
    /// `wait_durable` takes.
    pub fn flush(&mut self) -> anyhow::Result<u64> {
        if self.pass.as_ref().is_some_and(|pass| pass.thread.is_finished()) {
            self.finish_pass();
        }
        self.tend_index();
        self.send_staged()?;
        // While a pass runs, the next waits (the counters keep counting): one image at a time.
        if self.pass.is_none() {
            let hashes = self.since_state_hash > 0;
            let snapshots = self.options.snapshot_interval > 0;
            let soon = |since: u64, gap: u64| since >= gap - gap / 4;
            if hashes && soon(self.since_state_hash, self.state_hash_gap)
                || snapshots && soon(self.since_snapshot, self.snapshot_gap)
            {
                let reserved = self.copies_reserved();
                let hash_due = hashes && self.since_state_hash >= self.state_hash_gap;
                let snapshot_due = snapshots && self.since_snapshot >= self.snapshot_gap;
                // Not while a report index is being built: the pass waits for it (a second
                // or two at most), the index's build could not wait as long.
                if (hash_due || snapshot_due) && reserved && self.index_build.is_none() {
                    self.start_pass(snapshot_due)?;
                }
            }
        }
        Ok(self.engine.last_sequence())
    }

    /// From three quarters of the way to an image: whether it may be taken when due. The
    /// first call asks the chunk stocks for buffers for the copies its writes will cause
    /// (`Stocks::reserve_for_image`, faulted in by their helper while the image is not due
    /// yet); true once they are in, `reserve_wait` after asking, or at once on a thread
    /// without stocks.
    fn copies_reserved(&mut self) -> bool {
        match self.reserve {
            Reserve::In => true,
            Reserve::Asked(asked) if asked.elapsed() >= self.options.reserve_wait => {
                let tenant = self.engine.tenant();
                tracing::debug!(%tenant, "the copies' reserve is late: the image goes ahead");
                self.pass_timings.push(PassTiming::ReserveLate);
                self.reserve = Reserve::In;
                true
            }
            Reserve::Asked(_) | Reserve::None => {
                let Some(stocks) = keel_domain::stock::installed() else { return true };
                if let Reserve::None = self.reserve {
                    self.reserve = Reserve::Asked(std::time::Instant::now());
                }
                let ready = stocks.reserve_for_image();
                if ready {
                    self.reserve = Reserve::In;
                }
                ready
            }
        }
    }

    /// Builds the report index's next size on a helper thread when the engine offers the job,
    /// and installs it once built, so the shard does not move a doubling's worth of entries
    /// itself; when many reports arrived during the build, the index goes back to a helper for
    /// another round over them first (`Install::Again`). If no thread can be had, the index
    /// grows in line when it fills, as in replay.
    fn tend_index(&mut self) {
        let tenant = self.engine.tenant();
        match &self.index_build {
            Some(build) if build.thread.is_finished() => {
                let Some(build) = self.index_build.take() else { return };
                match build.thread.join() {
                    // Stopped: only ever told to once the store is going.
                    Ok(None) => tracing::debug!(%tenant, "report index build stopped"),
                    Ok(Some((built, micros))) => match self.engine.install_index(built) {
                        Install::Again(job) => {
                            tracing::debug!(%tenant, micros, behind = job.records(), "report index: another round");
                            self.build_index(job);
                        }
                        outcome => {
                            let installed = matches!(outcome, Install::Installed);
                            self.indexes_installed += u64::from(installed);
                            self.pass_timings.push(PassTiming::IndexBuild { installed });
                            tracing::info!(%tenant, micros, installed, "report index built off the shard");
                        }
                    },
                    Err(_) => tracing::error!(%tenant, "the report index build panicked"),
                }
            }
            Some(build) => {
                // Three quarters full: the rest of the headroom is the build's, flat out.
                let (len, capacity) = self.engine.index_fill();
                if len >= capacity / 4 * 3 && !build.hurry.swap(true, Ordering::Relaxed) {
                    tracing::debug!(%tenant, len, capacity, "report index build: hurrying");
                }
            }
            None => {
                // While a state pass runs, the build waits until the index is five eighths
                // full: the two together, beside a busy shard, are more than a small machine
                // has to spare (docs/benchmarks.md, twentieth session).
                let job = if self.pass.is_some() {
                    self.engine.index_job_from(5, 8)
                } else {
                    self.engine.index_job()
                };
                if let Some(job) = job {
                    self.build_index(job);
                }
            }
        }
    }

    /// Runs `job` on a helper thread, which returns what it built and how long that took (in
    /// microseconds: this round only, when the index goes out more than once).
    fn build_index(&mut self, job: IndexJob) {
        let tenant = self.engine.tenant();
        let hurry = Arc::new(AtomicBool::new(false));
        let hurried = hurry.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let spawned =
            std::thread::Builder::new().name(format!("index-{tenant}")).spawn(move || {
                // Spare CPU only (the idle class), until the index is three quarters full;
                // where the idle class cannot be left again, or with an explicit share, paced
                // in the normal class instead.
                let paced = index_build_percent_set().is_some();
                keel_sched::enter(if paced {
                    keel_sched::Role::Helper
                } else {
                    keel_sched::Role::Spare
                });
                let idle = keel_sched::current_class() == keel_sched::Class::Idle;
                let started = std::time::Instant::now();
                let percent = if idle { 100 } else { index_build_percent() };
                let mut duty = keel_sched::Duty::new(percent, INDEX_BUILD_SLICE);
                let mut give_way = keel_sched::GiveWay::new();
                let mut hurrying = false;
                let built = job.build_with(|| {
                    if stopped.load(Ordering::Relaxed) {
                        return std::ops::ControlFlow::Break(());
                    }
                    if hurried.load(Ordering::Relaxed) {
                        if !std::mem::replace(&mut hurrying, true) {
                            keel_sched::hurry();
                        }
                        give_way.now();
                    } else {
                        duty.step();
                    }
                    std::ops::ControlFlow::Continue(())
                });
                built.map(|built| (built, started.elapsed().as_micros() as u64))
            });
        match spawned {
            Ok(thread) => {
                let _stop = StopBuild { stop, hurry: hurry.clone() };
                self.index_build = Some(IndexBuild { thread, hurry, _stop });
            }
            Err(error) => tracing::debug!(%tenant, %error, "no thread for the index build"),
        }
    }

    /// Whether a background state pass is running (`flush` starts one when a state hash or a
    /// snapshot is due, and takes its result once it is done).
    pub fn state_pass_running(&self) -> bool {
        self.pass.is_some()
    }

    /// Whether the report index's next size is being built on a helper thread.
    pub fn index_building(&self) -> bool {
        self.index_build.is_some()
    }

    /// Report indexes built on a helper thread and installed since the store opened.
    pub fn indexes_installed(&self) -> u64 {
        self.indexes_installed
    }

    /// `interval`, or the tenant's size in trades now if that is larger: the gap to the next
    /// state hash or snapshot. Both are whole-state passes on the shard thread, so their cost
    /// grows with the tenant; spacing each at least one tenant-size after the last keeps
    /// their cost per command constant (geometric spacing) instead of growing without bound
    /// through a long day, and a recovery still replays no more commands than the snapshot
    /// it starts from holds trades.
    fn stretched(&self, interval: u64) -> u64 {
        interval.max(self.engine.capture().trades().len() as u64)
    }

    fn send_staged(&mut self) -> Result<(), JournalError> {
        if self.staging.is_empty() && !self.staging.has_then() {
            return Ok(());
        }
        let next = self.writer.batch();
        let batch = std::mem::replace(&mut self.staging, next);
        if let Some(then) = self.writer.send(batch)? {
            // Nothing of its own to write: it waits for what was sent before it.
            self.held.0.push_back((self.engine.last_sequence(), then));
        }
        Ok(())
    }

    /// Has the journal writer run `then` once everything staged so far is durable (right
    /// after the commit that makes it so, on the writer's thread), or failed: the caller's
    /// answers for this batch, released without waiting for the caller. Set before `flush`;
    /// one per flush. A batch with nothing to write runs it on the caller's thread instead,
    /// in `poll_durable` or `wait_durable`, once what went before is durable.
    pub fn then(&mut self, then: Box<dyn OnDurable>) {
        self.staging.then(then);
    }

    /// Whether answers wait here for what went before them (`then` on a batch with nothing
    /// to write): the caller must then poll until they are released.
    pub fn holds_answers(&self) -> bool {
        !self.held.0.is_empty()
    }

    /// Runs what `held` holds up to `durable`.
    fn release_held(&mut self, durable: Durable) -> Durable {
        while self.held.0.front().is_some_and(|(sequence, _)| *sequence <= durable.sequence) {
            if let Some((_, then)) = self.held.0.pop_front() {
                then.durable(durable);
            }
        }
        durable
    }

    /// Passes each group commit's duration (write + `sync_data`, microseconds) reported since
    /// the last call to `record`.
    pub fn take_commit_micros(&mut self, record: impl FnMut(u64)) {
        self.writer.take_commit_micros().for_each(record);
    }

    /// Passes each state pass timing recorded since the last call to `record`.
    pub fn take_pass_timings(&mut self, record: impl FnMut(PassTiming)) {
        self.pass_timings.drain(..).for_each(record);
    }

    /// The durable sequence now, without blocking.
    pub fn poll_durable(&mut self) -> anyhow::Result<u64> {
        let durable = self.writer.poll()?;
        Ok(self.release_held(durable).sequence)
    }

    /// Blocks until `sequence` (already flushed) is durable; returns the durable sequence.
    pub fn wait_durable(&mut self, sequence: u64) -> anyhow::Result<u64> {
        let durable = self.writer.wait(sequence)?;
        Ok(self.release_held(durable).sequence)
    }

    /// Has the journal writer unpark `thread` after each commit it reports
    /// (`JournalWriter::wake_on_report`).
    pub fn wake_on_durable(&self, thread: std::thread::Thread) {
        self.writer.wake_on_report(thread);
    }

    /// Makes everything staged durable (its batch joins any the writer is syncing), then
    /// snapshots if one is due. Returns the durable sequence.
    pub fn commit(&mut self) -> anyhow::Result<u64> {
        self.flush()?;
        let durable = self.writer.wait_all()?;
        Ok(self.release_held(durable).sequence)
    }

    /// Starts a whole-state pass without holding up the tenant: the shard takes a copy-on-write
    /// image of the engine (`Engine::image`: a fraction of a millisecond, where copying the
    /// engine took a tenth of a second at a million trades) and stages a checkpoint deferring
    /// its state hash; a helper thread, at the lowest CPU priority so that it uses only what
    /// the shard, the journal writer and the sessions leave, hashes the image and, when
    /// `with_snapshot`, writes it as a snapshot in the same pass. `flush` stages the hash as a
    /// state-hash record once the pass is done. While the image lives the shard copies each
    /// chunk it first writes to (a few microseconds each). Hashing in line stalled the shard
    /// 0.14 s per million trades; the snapshot's copy as much again.
    fn start_pass(&mut self, with_snapshot: bool) -> anyhow::Result<()> {
        debug_assert!(self.staging.is_empty(), "invariant: called right after send_staged");
        // A snapshot is anchored on the chain after its last command: let the writer catch up
        // first (one sync's wait, once per snapshot).
        let anchor = if with_snapshot { Some(self.writer.wait_all()?.chain) } else { None };
        let started = std::time::Instant::now();
        let image = self.engine.image();
        let (tenant, sequence) = (image.tenant(), image.last_sequence());
        let micros = started.elapsed().as_micros() as u64;
        self.reserve = Reserve::None;
        tracing::info!(%tenant, sequence, micros, with_snapshot, "engine image taken");
        self.pass_timings.push(PassTiming::Image(micros));
        if let Some(stocks) = keel_domain::stock::installed() {
            stocks.image_taken();
        }
        self.staging.checkpoint(keel_journal::DEFERRED_STATE_HASH);
        self.since_checkpoint = 0;
        self.since_state_hash = 0;
        self.state_hash_gap = self.stretched(self.options.state_hash_interval);
        if with_snapshot {
            self.since_snapshot = 0;
            self.snapshot_gap = self.stretched(self.options.snapshot_interval);
        }
        let dir = self.snapshot_dir.clone();
        let spawned = std::thread::Builder::new().name("state-pass".into()).spawn(move || {
            // SCHED_IDLE: a waking session, shard or journal thread takes the core at once.
            keel_sched::enter(keel_sched::Role::Background);
            let started = std::time::Instant::now();
            // The image is consumed as it is read (`EngineImage::write_snapshot_into`).
            let hash = match anchor {
                Some(chain) => write_snapshot(image, &dir, &chain),
                None => Some(state_hash_yielding(image)),
            };
            let micros = started.elapsed().as_micros() as u64;
            tracing::info!(%tenant, sequence, micros, with_snapshot, "state pass done");
            (hash, micros)
        });
        match spawned {
            Ok(thread) => self.pass = Some(StatePass { sequence, thread }),
            Err(error) => {
                // No thread: hash in line (no snapshot this time; the next interval retries).
                tracing::warn!(%tenant, %error, "no thread for the state pass: hashing in line");
                self.staging.state_hash(sequence, self.engine.state_hash().0);
            }
        }
        Ok(())
    }

    /// Waits for the background state pass, if one is running, and stages its state hash for
    /// the journal (durable with the next commit). `flush` does this without waiting once the
    /// pass is done; `close` waits. For callers that need the snapshot on disk now (a test, or
    /// an operator about to copy the tenant's files).
    pub fn finish_pass(&mut self) {
        let Some(StatePass { sequence, thread }) = self.pass.take() else { return };
        if let Some(stocks) = keel_domain::stock::installed() {
            let copies = stocks.pass_done();
            let total = copies.iter().map(|(_, copies)| *copies as u64).sum();
            self.pass_timings.push(PassTiming::Copies(total));
            let tenant = self.engine.tenant();
            let empty_takes = stocks.take_empty_takes();
            tracing::debug!(%tenant, sequence, ?copies, empty_takes, "chunks copied during the state pass");
        }
        match thread.join() {
            Ok((hash, micros)) => {
                // No hash: the snapshot failed part way through its image (logged there).
                if let Some(hash) = hash {
                    self.staging.state_hash(sequence, hash.0);
                }
                self.pass_timings.push(PassTiming::Pass(micros));
            }
            // The checkpoint stays unattested: the next open recomputes and writes it.
            Err(_) => tracing::error!(sequence, "the state-pass thread panicked"),
        }
    }

    /// Stages a signed checkpoint (the writer signs it; durable with the next commit),
    /// carrying the engine's state hash when `with_state` (all zeros otherwise: no state hash
    /// in this checkpoint).
    pub fn checkpoint(&mut self, with_state: bool) {
        let state_hash = if with_state {
            let started = std::time::Instant::now();
            let hash = self.engine.state_hash().0;
            let (tenant, sequence) = (self.engine.tenant(), self.engine.last_sequence());
            let micros = started.elapsed().as_micros() as u64;
            tracing::info!(%tenant, sequence, micros, "state hash for a checkpoint");
            hash
        } else {
            [0; 32]
        };
        self.staging.checkpoint(state_hash);
        self.since_checkpoint = 0;
        if with_state {
            self.since_state_hash = 0;
            self.state_hash_gap = self.stretched(self.options.state_hash_interval);
        }
    }

    /// Commits, then writes a snapshot of the current state anchored at the journal's last
    /// record, and keeps only the newest `SNAPSHOTS_KEPT` snapshots.
    pub fn snapshot(&mut self) -> anyhow::Result<PathBuf> {
        self.send_staged()?;
        let chain = self.writer.wait_all()?.chain;
        let sequence = self.engine.last_sequence();
        let engine = &self.engine;
        let body = |out: &mut keel_journal::HashingWriter<'_>| engine.write_snapshot_to(out);
        let (path, _) = keel_journal::write_snapshot_streamed(
            &self.snapshot_dir,
            sequence,
            &chain,
            keel_journal::Pacing::Full,
            body,
        )?;
        prune_snapshots(&self.snapshot_dir)?;
        self.since_snapshot = 0;
        self.snapshot_gap = self.stretched(self.options.snapshot_interval);
        Ok(path)
    }

    /// Checkpoints (if anything happened since the last) and commits: the clean way to stop.
    /// Returns the engine.
    pub fn close(mut self) -> anyhow::Result<Engine> {
        self.finish_pass();
        if self.since_checkpoint > 0 || self.since_state_hash > 0 {
            self.checkpoint(true);
        }
        self.send_staged()?;
        let durable = self.writer.wait_all()?;
        self.release_held(durable);
        self.writer.close()?;
        Ok(self.engine)
    }
}

/// Writes `image` as a snapshot anchored at `chain`, consuming it as it goes
/// (`EngineImage::write_snapshot_into`), and prunes old ones; returns the state hash (the
/// body's BLAKE3), or `None` when the write failed. A snapshot is an optimization of
/// recovery, never the source of truth, so a failure is logged and the next interval retries.
/// A failure before the body (no file) still hashes the image; one part way through it finds
/// the image spent, so the checkpoint stays unattested, as after a crash during a pass, and
/// the next open recomputes its hash and writes it.
fn write_snapshot(image: EngineImage, dir: &Path, chain: &ChainHash) -> Option<StateHash> {
    let (tenant, sequence) = (image.tenant(), image.last_sequence());
    let mut image = Some(image);
    let body = |out: &mut keel_journal::HashingWriter<'_>| match image.take() {
        // The encoder hands over blocks of 64 KiB (`write_snapshot_into`): no buffer in front.
        Some(image) => image.write_snapshot_into(&mut Yielding { inner: out, since: 0 }),
        None => Err(std::io::Error::other("the image was already written")),
    };
    let pacing = keel_journal::Pacing::Background;
    let written = keel_journal::write_snapshot_streamed(dir, sequence, chain, pacing, body)
        .map_err(anyhow::Error::from)
        .and_then(|(_, hash)| prune_snapshots(dir).map(|()| hash));
    match written {
        Ok(hash) => {
            tracing::info!(%tenant, sequence, "snapshot written");
            Some(StateHash(hash))
        }
        Err(error) => {
            tracing::warn!(%tenant, sequence, %error, "snapshot failed");
            // Not started: the image is whole, and the checkpoint gets its hash anyway.
            image.map(state_hash_yielding)
        }
    }
}

/// `EngineImage::into_state_hash`, yielding the core as it goes (`Yielding`).
fn state_hash_yielding(image: EngineImage) -> StateHash {
    let mut hasher = blake3::Hasher::new();
    // Writing into a hasher cannot fail.
    let _ = image.write_snapshot_into(&mut Yielding { inner: &mut hasher, since: 0 });
    StateHash(*hasher.finalize().as_bytes())
}

/// A background pass yields its core (`sched_yield`) after every this many bytes.
const YIELD_BYTES: usize = 256 << 10;

/// Passes bytes through to `inner`, yielding the core after every `YIELD_BYTES`. The idle
/// scheduling class still gives a pass that has waited long one whole scheduler tick (4 ms at
/// 250 Hz) even while a normal thread is runnable on its core; yielding every 256 KiB (a
/// fraction of a millisecond of hashing) hands the core back within that.
struct Yielding<W> {
    inner: W,
    since: usize,
}

impl<W: std::io::Write> std::io::Write for Yielding<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.since += written;
        if self.since >= YIELD_BYTES {
            self.since = 0;
            std::thread::yield_now();
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Keeps the newest `SNAPSHOTS_KEPT` snapshots.
fn prune_snapshots(dir: &Path) -> anyhow::Result<()> {
    for old in keel_journal::list_snapshots(dir)?.into_iter().skip(SNAPSHOTS_KEPT) {
        // Freeing blocks is file system work too (`keel_sched::writing`).
        keel_sched::writing(|| std::fs::remove_file(&old))
            .with_context(|| format!("removing old snapshot {}", old.display()))?;
    }
    Ok(())
}

/// Snapshots that verify on their own (header, hash, decode, tenant, sequence), newest first.
/// Whether the journal vouches for each is checked by the replay that follows (`StartAfter`).
fn restorable_snapshots(
    snapshot_dir: &Path,
    tenant: TenantId,
    rejected: &mut Vec<(PathBuf, String)>,
) -> anyhow::Result<Vec<Option<(Engine, StartAfter, PathBuf)>>> {
    let mut restorable = Vec::new();
    for path in keel_journal::list_snapshots(snapshot_dir)? {
        let snapshot = match keel_journal::load_snapshot(&path) {
            Ok(snapshot) => snapshot,
            Err(reason) => {
                rejected.push((path, reason));
                continue;
            }
        };
        match Engine::restore(tenant, &snapshot.body) {
            Ok(engine) if engine.last_sequence() == snapshot.sequence => {
                let start = StartAfter { sequence: snapshot.sequence, chain: snapshot.chain };
                restorable.push(Some((engine, start, path)));
            }
            Ok(_) => rejected.push((path, "engine sequence differs from the snapshot's".into())),
            Err(error) => rejected.push((path, error.to_string())),
        }
    }
    Ok(restorable)
}

/// Replays the journal into `engine` from `start`, checking every checkpoint's state hash
/// against the engine's after the commands before it. `after` sees each record with the engine
/// as it stands once the record is applied.
///
/// Pipelined: a reader thread reads, verifies (checksums, chain, signatures) and decodes the
/// journal in chunks while this thread applies the previous chunk, probing each chunk's trades
/// first (`Engine::probe`) so their cache misses overlap. Records reach `after` in journal
/// order, and a fault found by either side stops both at that record.
pub fn replay_into(
    engine: &mut Engine,
    journal_dir: &Path,
    trust: Trust,
    start: Option<StartAfter>,
    mut progress: impl FnMut(u64),
    mut after: impl FnMut(&keel_journal::RecordRef<'_>, &Engine),
) -> Result<ReplayReport, ReplayError> {
    let tenant = engine.tenant();
    let mut states = StateChecks {
        start: start.map_or(0, |start| start.sequence),
        deferred: std::collections::BTreeMap::new(),
        verified: 0,
    };
    // The state replay rebuilds grows as the shard's does: its chunks faulted in ahead too.
    crate::stock::with_chunk_stock(tenant, || {
        std::thread::scope(|scope| {
            let (chunks, receive) = std::sync::mpsc::sync_channel::<Chunk>(REPLAY_CHUNKS_AHEAD);
            let reader = std::thread::Builder::new()
                .name(format!("replay-{tenant}"))
                .spawn_scoped(scope, move || {
                    read_chunks(journal_dir, tenant, trust, start, &chunks)
                })
                .map_err(|e| {
                    ReplayError::Journal(JournalError::Io { path: journal_dir.into(), source: e })
                })?;
            let mut applied = Ok(());
            for chunk in receive.iter() {
                applied = apply_chunk(engine, &chunk, &mut states, &mut progress, &mut after);
                if applied.is_err() {
                    break; // Dropping the receiver stops the reader at its next chunk.
                }
            }
            drop(receive);
            let read = reader.join().unwrap_or_else(|_| {
                Err(ReplayError::Decode {
                    location: Location { segment: journal_dir.into(), offset: 0, sequence: None },
                    reason: "the journal reader thread panicked".into(),
                })
            });
            // The applier's fault comes first: it is at an earlier record than anything the
            // reader found after it.
            let location = Location { segment: journal_dir.into(), offset: 0, sequence: None };
            // Hashes still running are joined whatever happened, before any error returns.
            let waited: Vec<_> = std::mem::take(&mut states.deferred)
                .into_iter()
                .map(|(sequence, pending)| (sequence, pending.wait(&location)))
                .collect();
            applied?;
            let read = read?;
            let unattested = waited
                .into_iter()
                .map(|(sequence, hash)| hash.map(|hash| (sequence, hash)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ReplayReport { read, state_hashes_verified: states.verified, unattested })
        })
    })
}

/// What a replay read and checked.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    pub read: keel_journal::ReadSummary,
    /// State hashes recomputed and found equal to the journal's (in checkpoints, or in
    /// state-hash records for deferred ones).
    pub state_hashes_verified: u64,
    /// Deferred checkpoints whose state-hash record never came (a crash cut it off), with the
    /// hash replay computed at each: the store writes them again on open.
    pub unattested: Vec<(u64, StateHash)>,
}

/// A state hash replay is computing off the applier's thread, as the live shard does: replay
/// goes on applying while an image of the engine at the deferred checkpoint is hashed.
#[derive(Debug)]
enum PendingHash {
    Running(std::thread::JoinHandle<StateHash>),
    /// No thread could be started: hashed in line.
    Done(StateHash),
}

impl PendingHash {
    fn start(engine: &mut Engine) -> PendingHash {
        let image = engine.image();
        match std::thread::Builder::new()
            .name("replay-hash".into())
            .spawn(move || image.into_state_hash())
        {
            Ok(thread) => PendingHash::Running(thread),
            Err(_) => PendingHash::Done(engine.state_hash()),
        }
    }

    fn wait(self, location: &Location) -> Result<StateHash, ReplayError> {
        match self {
            PendingHash::Done(hash) => Ok(hash),
            PendingHash::Running(thread) => thread.join().map_err(|_| ReplayError::Engine {
                location: location.clone(),
                reason: "the state-hash thread panicked".into(),
            }),
        }
    }
}

/// Replay's state-hash bookkeeping.
#[derive(Debug)]
struct StateChecks {
    /// Replay started after this sequence: a state-hash record for it or an earlier one
    /// attests a state replay did not pass through (a snapshot stood in for it).
    start: u64,
    /// Hashes being computed (each on a thread, over an image) at deferred checkpoints,
    /// awaiting their state-hash records.
    deferred: std::collections::BTreeMap<u64, PendingHash>,
    verified: u64,
}

/// Records read ahead of the applier, per chunk.
const REPLAY_CHUNK_RECORDS: usize = 1_024;
/// Chunks the reader may be ahead.
const REPLAY_CHUNKS_AHEAD: usize = 4;

/// Verified, decoded records for the applier, in journal order.
#[derive(Debug, Default)]
struct Chunk {
    records: Vec<Replayed>,
    /// The records' payloads, back to back (`Replayed::end` marks each one's end).
    payloads: Vec<u8>,
    /// Bytes of segments finished while this chunk filled (for the progress callback).
    progress: Vec<u64>,
}

#[derive(Debug)]
struct Replayed {
    segment: std::sync::Arc<Path>,
    offset: u64,
    version: u8,
    kind: RecordKind,
    sequence: u64,
    chain: keel_journal::ChainHash,
    end: usize,
    envelope: Option<Envelope>,
}

impl Replayed {
    fn location(&self) -> Location {
        Location {
            segment: self.segment.to_path_buf(),
            offset: self.offset,
            sequence: Some(self.sequence),
        }
    }
}

/// The reader thread: the verifying read, decoding each command, in chunks.
fn read_chunks(
    journal_dir: &Path,
    tenant: keel_domain::TenantId,
    trust: Trust,
    start: Option<StartAfter>,
    chunks: &std::sync::mpsc::SyncSender<Chunk>,
) -> Result<keel_journal::ReadSummary, ReplayError> {
    use std::cell::RefCell;
    let chunk = RefCell::new(Chunk::default());
    let mut segment: Option<std::sync::Arc<Path>> = None;
    let stopped = || ReplayError::Decode {
        location: Location { segment: journal_dir.into(), offset: 0, sequence: None },
        reason: "replay stopped by the applier".into(),
    };
    let summary = read_journal::<ReplayError>(
        journal_dir,
        tenant,
        trust,
        start,
        |bytes| chunk.borrow_mut().progress.push(bytes),
        |record| {
            let segment = match &segment {
                Some(path) if **path == *record.segment => path.clone(),
                _ => segment.insert(std::sync::Arc::from(record.segment)).clone(),
            };
            let mut replayed = Replayed {
                segment,
                offset: record.offset,
                version: record.version,
                kind: record.kind,
                sequence: record.sequence,
                chain: record.chain,
                end: 0,
                envelope: None,
            };
            if record.kind == RecordKind::Command {
                let encoding = if keel_journal::format::compact_commands(record.version) {
                    keel_engine::Encoding::Compact
                } else {
                    keel_engine::Encoding::Fixed
                };
                let envelope = Envelope::decode_as(record.payload, encoding).map_err(|e| {
                    ReplayError::Decode { location: replayed.location(), reason: e.to_string() }
                })?;
                if envelope.sequence != record.sequence {
                    let reason = format!("envelope says sequence {}", envelope.sequence);
                    return Err(ReplayError::Decode { location: replayed.location(), reason });
                }
                replayed.envelope = Some(envelope);
            }
            let mut current = chunk.borrow_mut();
            current.payloads.extend_from_slice(record.payload);
            replayed.end = current.payloads.len();
            current.records.push(replayed);
            if current.records.len() >= REPLAY_CHUNK_RECORDS {
                let full = std::mem::take(&mut *current);
                chunks.send(full).map_err(|_| stopped())?;
            }
            Ok(())
        },
    );
    // What was read before the end (or before a fault) is still applied, in order.
    let last = chunk.into_inner();
    if !last.records.is_empty() || !last.progress.is_empty() {
        let _ = chunks.send(last);
    }
    summary
}

/// `corruption` found replaying `record`.
fn corrupt(record: &Replayed, corruption: Corruption) -> ReplayError {
    JournalError::Corrupt { location: record.location(), corruption }.into()
}

/// Applies one chunk, `PROBE_AHEAD` records at a time: probes their trades, then applies and
/// checks each record in order.
fn apply_chunk(
    engine: &mut Engine,
    chunk: &Chunk,
    states: &mut StateChecks,
    progress: &mut impl FnMut(u64),
    after: &mut impl FnMut(&keel_journal::RecordRef<'_>, &Engine),
) -> Result<(), ReplayError> {
    let mut start = 0;
    for (at, record) in chunk.records.iter().enumerate() {
        if at % keel_engine::PROBE_AHEAD == 0 {
            let window =
                &chunk.records[at..(at + keel_engine::PROBE_AHEAD).min(chunk.records.len())];
            let reports = window.iter().filter_map(|record| record.envelope.as_ref());
            std::hint::black_box(
                engine.probe(reports.filter_map(|envelope| envelope.command.trade_report())),
            );
        }
        let payload = &chunk.payloads[start..record.end];
        start = record.end;
        match (&record.envelope, record.kind) {
            (Some(envelope), _) => {
                engine.apply(envelope).map_err(|e| ReplayError::Engine {
                    location: record.location(),
                    reason: e.to_string(),
                })?;
            }
            (None, RecordKind::Checkpoint) => {
                let checkpoint = keel_journal::Checkpoint::decode(payload)
                    .ok_or_else(|| corrupt(record, Corruption::CheckpointMalformed))?;
                match keel_journal::StateClaim::decode(checkpoint.state_hash) {
                    keel_journal::StateClaim::None => {}
                    keel_journal::StateClaim::Deferred => {
                        states.deferred.insert(record.sequence, PendingHash::start(engine));
                    }
                    keel_journal::StateClaim::Hash(hash) => {
                        if engine.state_hash().0 != hash {
                            return Err(corrupt(record, Corruption::StateHashMismatch));
                        }
                        states.verified += 1;
                    }
                }
            }
            (None, RecordKind::StateHash) => {
                let attested = keel_journal::StateHashRecord::decode(payload)
                    .ok_or_else(|| corrupt(record, Corruption::CheckpointMalformed))?;
                let sequence = attested.sequence;
                let computed = match states.deferred.remove(&sequence) {
                    Some(pending) => Some(pending.wait(&record.location())?),
                    None => None,
                };
                match computed {
                    Some(hash) if hash.0 == attested.checkpoint.state_hash => states.verified += 1,
                    Some(_) => return Err(corrupt(record, Corruption::StateHashMismatch)),
                    // Before the snapshot replay started from: nothing to compare with.
                    None if sequence <= states.start => {}
                    None => {
                        return Err(corrupt(record, Corruption::StateHashUnannounced(sequence)))
                    }
                }
            }
            // The scan has checked the group's chain; nothing to apply.
            (None, RecordKind::Seal) => {}
            (None, RecordKind::Command) => {
                let reason = "command was not decoded by the reader".into();
                return Err(ReplayError::Decode { location: record.location(), reason });
            }
        }
        let view = keel_journal::RecordRef {
            segment: &record.segment,
            offset: record.offset,
            version: record.version,
            kind: record.kind,
            sequence: record.sequence,
            chain: record.chain,
            payload,
        };
        after(&view, engine);
    }
    for bytes in &chunk.progress {
        progress(*bytes);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Yielding` passes every byte through unchanged, whatever the write sizes, and a
    /// yielding state pass hashes exactly what `state_hash` does.
    #[test]
    fn yielding_passes_bytes_through_and_hashes_the_same() {
        let data: Vec<u8> =
            (0..3_000_000_u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        for chunk in [1, 7, 4096, 65_536, 300_000, 3_000_000] {
            let mut out = Vec::new();
            let mut yielding = Yielding { inner: &mut out, since: 0 };
            for piece in data.chunks(chunk) {
                std::io::Write::write_all(&mut yielding, piece).unwrap_or_else(|_| unreachable!());
            }
            assert!(out == data, "chunks of {chunk}");
        }
        let mut engine = Engine::new("demo".parse().unwrap_or_else(|_| unreachable!("valid id")));
        let image = engine.image();
        let expected = image.state_hash();
        assert_eq!(state_hash_yielding(image), expected);
    }
}
