//! Pipelined group commit. A writer thread owns the `Journal`; the tenant's shard hands it
//! batches of encoded commands and goes on applying the next batch while this one is framed
//! (CRC32C), chained (BLAKE3), written and synced. Everything the writer finds queued when it
//! wakes goes into one `sync_data`, so a slow disk makes batches larger rather than the shard
//! idle. Outcomes are still released only once `durable()` covers them.
//!
//! Order is the journal's: batches are appended in the order they were sent, and a command's
//! sequence must follow the one before it, as for `Journal::append_command`.

use std::sync::mpsc::{self, Receiver, RecvError, SyncSender, TryRecvError};
use std::thread::JoinHandle;

use crate::error::JournalError;
use crate::format::ChainHash;
use crate::journal::Journal;
use crate::keys::NodeKey;

/// Commands (already encoded) and checkpoints for the writer, in journal order. Reused: the
/// writer sends each batch back once it is durable, and `JournalWriter::batch` hands it out
/// again, so the steady state allocates nothing.
#[derive(Debug, Default)]
pub struct WriteBatch {
    payloads: Vec<u8>,
    records: Vec<Staged>,
    commands: usize,
    /// Run by the writer thread once the batch is durable, or has failed.
    then: Then,
}

/// What the writer thread does once a batch is durable or has failed: the caller's answers
/// for it, so that they go out the moment the disk has them rather than when the caller
/// (a shard busy applying the next batch) gets round to it. Run on the writer's thread, before
/// the caller hears of the commit; should be short (a few channel sends).
pub trait OnDurable: Send {
    /// Everything in the batch, and every batch before it, is durable up to `durable`.
    fn durable(self: Box<Self>, durable: Durable);
    /// The batch will never be durable: the writer stopped (`why`). Not run when the writer
    /// cannot run anything (its thread ended, a batch it never received): an implementation
    /// that must answer in every case does so when dropped unrun.
    fn failed(self: Box<Self>, why: &str);
}

#[derive(Default)]
struct Then(Option<Box<dyn OnDurable>>);

impl std::fmt::Debug for Then {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Then(Some)" } else { "Then(None)" })
    }
}

#[derive(Debug, Clone, Copy)]
enum Staged {
    /// A command whose payload ends at `end` in `payloads` (and starts where the previous
    /// command's ended).
    Command { sequence: u64, end: usize },
    /// A signed checkpoint after the commands before it; all zeros: no state hash.
    Checkpoint { state_hash: [u8; 32] },
    /// The state hash after command `sequence`, deferred by that command's checkpoint.
    StateHash { sequence: u64, state_hash: [u8; 32] },
}

impl WriteBatch {
    /// Appends a command; `encode` writes its payload to the end of the given buffer.
    pub fn command(&mut self, sequence: u64, encode: impl FnOnce(&mut Vec<u8>)) {
        encode(&mut self.payloads);
        self.records.push(Staged::Command { sequence, end: self.payloads.len() });
        self.commands += 1;
    }

    /// Appends a checkpoint of `state_hash` (all zeros: the checkpoint carries none).
    pub fn checkpoint(&mut self, state_hash: [u8; 32]) {
        self.records.push(Staged::Checkpoint { state_hash });
    }

    /// Appends a state-hash record: `state_hash` after command `sequence`, which an earlier
    /// checkpoint deferred (`DEFERRED_STATE_HASH`).
    pub fn state_hash(&mut self, sequence: u64, state_hash: [u8; 32]) {
        self.records.push(Staged::StateHash { sequence, state_hash });
    }

    /// Has the writer run `then` once this batch is durable (or failed). One per batch: a
    /// second replaces the first, which is dropped unrun. Not run for a batch with nothing in
    /// it, which is never sent (`JournalWriter::send` gives it back: see there).
    pub fn then(&mut self, then: Box<dyn OnDurable>) {
        self.then = Then(Some(then));
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether `then` was set.
    pub fn has_then(&self) -> bool {
        self.then.0.is_some()
    }

    /// Commands in the batch (checkpoints not counted).
    pub fn commands(&self) -> usize {
        self.commands
    }

    fn clear(&mut self) {
        self.payloads.clear();
        self.records.clear();
        self.commands = 0;
        self.then = Then(None);
    }

    fn append_to(&self, journal: &mut Journal, key: &NodeKey) -> Result<(), JournalError> {
        let mut start = 0;
        for staged in &self.records {
            match *staged {
                Staged::Command { sequence, end } => {
                    journal.append_command(sequence, &self.payloads[start..end])?;
                    start = end;
                }
                Staged::Checkpoint { state_hash } => journal.append_checkpoint(key, state_hash)?,
                Staged::StateHash { sequence, state_hash } => {
                    journal.append_state_hash(key, sequence, state_hash)?;
                }
            }
        }
        Ok(())
    }
}

/// Where the journal stands on disk: every record up to `sequence` is durable and the chain
/// after the last of them is `chain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    pub sequence: u64,
    pub chain: ChainHash,
}

/// A batch made durable, with the time its group's write and `sync_data` took (on the first
/// batch of each group only, so that each commit is counted once).
type Report = Result<(Durable, WriteBatch, Option<u64>), JournalError>;

/// The shard's handle on the writer thread.
#[derive(Debug)]
pub struct JournalWriter {
    work: Option<SyncSender<WriteBatch>>,
    done: Receiver<Report>,
    thread: Option<JoinHandle<Journal>>,
    durable: Durable,
    /// Batches sent and not yet reported durable.
    in_flight: usize,
    spare: Vec<WriteBatch>,
    /// Why the writer stopped, once it has: every later call fails with it.
    failure: Option<String>,
    /// Microseconds each group commit (write + `sync_data`) took, not yet taken by the caller.
    commit_micros: Vec<u64>,
    /// The thread the writer unparks after each commit's reports (`wake_on_report`).
    waker: std::sync::Arc<std::sync::OnceLock<std::thread::Thread>>,
}

impl JournalWriter {
    /// Moves `journal` onto a writer thread. At most `depth` batches wait for it; sending more
    /// blocks until it catches up (backpressure on the shard).
    pub fn spawn(journal: Journal, key: NodeKey, depth: usize) -> Result<Self, JournalError> {
        let durable = Durable { sequence: journal.durable_sequence(), chain: journal.last_chain() };
        debug_assert_eq!(
            journal.durable_sequence(),
            journal.last_sequence(),
            "invariant: a journal handed to a writer has nothing buffered"
        );
        let (work, queue) = mpsc::sync_channel::<WriteBatch>(depth.max(1));
        let (report, done) = mpsc::channel::<Report>();
        let name = format!("journal-{}", journal.tenant());
        let waker = std::sync::Arc::new(std::sync::OnceLock::new());
        let wake = waker.clone();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                keel_sched::enter(keel_sched::Role::Latency);
                write_loop(journal, &key, &queue, &report, &wake)
            })
            .map_err(|source| JournalError::Io { path: "journal writer thread".into(), source })?;
        Ok(Self {
            work: Some(work),
            done,
            thread: Some(thread),
            durable,
            in_flight: 0,
            spare: Vec::new(),
            failure: None,
            commit_micros: Vec::new(),
            waker,
        })
    }

    /// Has the writer unpark `thread` once it has reported a commit (or its failure), so
    /// that a caller waiting in `std::thread::park_timeout` for either the disk or other work
    /// (a shard with batches in flight and an empty queue) wakes for whichever comes first,
    /// rather than blocking in `wait_for` while new work waits. Set once; later calls are
    /// ignored.
    pub fn wake_on_report(&self, thread: std::thread::Thread) {
        let _ = self.waker.set(thread);
    }

    /// An empty batch to fill (a recycled one when there is one).
    pub fn batch(&mut self) -> WriteBatch {
        self.spare.pop().unwrap_or_default()
    }

    /// Hands `batch` to the writer. Blocks while `depth` batches are already waiting. An
    /// empty batch is not sent: its `then` (if any) is returned, for the caller to run once
    /// what it sent before is durable.
    pub fn send(
        &mut self,
        mut batch: WriteBatch,
    ) -> Result<Option<Box<dyn OnDurable>>, JournalError> {
        self.check()?;
        if batch.is_empty() {
            let then = batch.then.0.take();
            self.spare.push(batch);
            return Ok(then);
        }
        let sent = self.work.as_ref().map(|work| work.send(batch));
        match sent {
            Some(Ok(())) => {
                self.in_flight += 1;
                Ok(None)
            }
            // The writer is gone: its report says why.
            _ => {
                self.wait_report()?;
                Err(self.stopped())
            }
        }
    }

    /// What is durable now, after taking every report already in (never blocks).
    pub fn poll(&mut self) -> Result<Durable, JournalError> {
        self.check()?;
        while self.in_flight > 0 {
            match self.done.try_recv() {
                Ok(report) => self.take(report)?,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(self.lost()),
            }
        }
        Ok(self.durable)
    }

    /// Blocks until everything up to `sequence` (which must have been sent) is durable.
    pub fn wait(&mut self, sequence: u64) -> Result<Durable, JournalError> {
        self.check()?;
        while self.durable.sequence < sequence && self.in_flight > 0 {
            self.wait_report()?;
        }
        Ok(self.durable)
    }

    /// Like `wait`, but gives up after `timeout`, returning what is durable by then.
    pub fn wait_for(
        &mut self,
        sequence: u64,
        timeout: std::time::Duration,
    ) -> Result<Durable, JournalError> {
        self.check()?;
        let deadline = std::time::Instant::now() + timeout;
        while self.durable.sequence < sequence && self.in_flight > 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.done.recv_timeout(left) {
                Ok(report) => self.take(report)?,
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(self.lost()),
            }
        }
        Ok(self.durable)
    }

    /// Blocks until every batch sent is durable.
    pub fn wait_all(&mut self) -> Result<Durable, JournalError> {
        self.check()?;
        while self.in_flight > 0 {
            self.wait_report()?;
        }
        Ok(self.durable)
    }

    /// The last durable position known (see `poll` for a fresh one).
    pub fn durable(&self) -> Durable {
        self.durable
    }

    /// Batches sent and not yet durable.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// How long each group commit reported since the last call took (write + `sync_data`,
    /// microseconds): the disk's share of every acknowledgement's latency.
    pub fn take_commit_micros(&mut self) -> std::vec::Drain<'_, u64> {
        self.commit_micros.drain(..)
    }

    /// Waits for everything sent, stops the thread and gives the journal back.
    pub fn close(mut self) -> Result<Journal, JournalError> {
        let waited = self.wait_all();
        self.work = None; // The writer's queue closes: it returns once idle.
        let journal = self.thread.take().and_then(|thread| thread.join().ok());
        waited?;
        journal.ok_or_else(|| JournalError::WriterStopped("the writer thread panicked".into()))
    }

    fn wait_report(&mut self) -> Result<(), JournalError> {
        match self.done.recv() {
            Ok(report) => self.take(report),
            Err(RecvError) => Err(self.lost()),
        }
    }

    fn take(&mut self, report: Report) -> Result<(), JournalError> {
        match report {
            Ok((durable, batch, micros)) => {
                self.in_flight -= 1;
                self.durable = durable;
                self.spare.push(batch);
                self.commit_micros.extend(micros);
                Ok(())
            }
            Err(error) => {
                self.failure = Some(error.to_string());
                Err(error)
            }
        }
    }

    fn check(&self) -> Result<(), JournalError> {
        match &self.failure {
            Some(_) => Err(self.stopped()),
            None => Ok(()),
        }
    }

    fn stopped(&self) -> JournalError {
        JournalError::WriterStopped(self.failure.clone().unwrap_or_else(|| "stopped".into()))
    }

    fn lost(&mut self) -> JournalError {
        let reason = "the writer thread ended without a report (panicked)";
        self.failure.get_or_insert_with(|| reason.into());
        self.stopped()
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        // Close the queue and let the writer finish what it holds: what it makes durable has
        // its `then` run as usual (the answers are true), and nothing else is acknowledged.
        self.work = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer thread: takes everything queued, appends it in order, one commit, reports each
/// batch. Stops at the first failure (the journal is poisoned then) after reporting it.
fn write_loop(
    mut journal: Journal,
    key: &NodeKey,
    queue: &Receiver<WriteBatch>,
    report: &mpsc::Sender<Report>,
    waker: &std::sync::OnceLock<std::thread::Thread>,
) -> Journal {
    let wake = || {
        if let Some(thread) = waker.get() {
            thread.unpark();
        }
    };
    let mut taken: Vec<WriteBatch> = Vec::new();
    while let Ok(first) = queue.recv() {
        taken.push(first);
        while let Ok(next) = queue.try_recv() {
            taken.push(next);
        }
        let mut micros = None;
        let written =
            taken.iter().try_for_each(|batch| batch.append_to(&mut journal, key)).and_then(|()| {
                let started = std::time::Instant::now();
                let committed = journal.commit();
                micros = Some(started.elapsed().as_micros() as u64);
                committed
            });
        match written {
            Ok(sequence) => {
                let durable = Durable { sequence, chain: journal.last_chain() };
                // The answers first: they are what the latency is measured to.
                for batch in &mut taken {
                    if let Some(then) = batch.then.0.take() {
                        then.durable(durable);
                    }
                }
                for mut batch in taken.drain(..) {
                    batch.clear();
                    if report.send(Ok((durable, batch, micros.take()))).is_err() {
                        return journal; // The shard is gone.
                    }
                }
                wake();
            }
            Err(error) => {
                let why = error.to_string();
                // Every batch taken, and every one still queued: none will be written now.
                taken.extend(std::iter::from_fn(|| queue.try_recv().ok()));
                for batch in &mut taken {
                    if let Some(then) = batch.then.0.take() {
                        then.failed(&why);
                    }
                }
                let _ = report.send(Err(error));
                wake();
                return journal;
            }
        }
    }
    journal
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalOptions;
    use crate::reader::read_journal;
    use crate::scan::Trust;
    use keel_domain::TenantId;

    fn tenant() -> TenantId {
        "writer".parse().expect("tenant")
    }

    fn key() -> NodeKey {
        NodeKey::from_seed([3; 32])
    }

    fn open(dir: &std::path::Path) -> Journal {
        Journal::open(dir, tenant(), JournalOptions::default()).expect("open").0
    }

    /// Many batches, sent faster than they sync, come out as one verified chain in order,
    /// with the checkpoints where they were staged.
    #[test]
    fn batches_are_written_in_order_with_checkpoints() {
        let dir = tempfile::tempdir().expect("dir");
        let mut writer = JournalWriter::spawn(open(dir.path()), key(), 2).expect("spawn");
        let mut sequence = 0;
        for round in 0..50_u64 {
            let mut batch = writer.batch();
            for _ in 0..(1 + round % 7) {
                sequence += 1;
                batch.command(sequence, |out| out.extend_from_slice(&sequence.to_le_bytes()));
            }
            if round % 10 == 9 {
                batch.checkpoint([round as u8; 32]);
            }
            if round % 10 == 4 {
                // A state hash for the sequence some rounds back, as a deferred one arrives.
                batch.state_hash(sequence - 3, [round as u8 + 1; 32]);
            }
            writer.send(batch).expect("send");
            if round % 3 == 0 {
                assert!(writer.poll().expect("poll").sequence <= sequence);
            }
        }
        let durable = writer.wait_all().expect("wait");
        assert_eq!(durable.sequence, sequence);
        assert_eq!(writer.in_flight(), 0);
        // One timing per group commit: at least one, at most one per batch.
        let commits = writer.take_commit_micros().count();
        assert!((1..=50).contains(&commits), "{commits} commit timings");
        assert_eq!(writer.take_commit_micros().count(), 0, "taken once");
        let journal = writer.close().expect("close");
        assert_eq!(journal.durable_sequence(), sequence);
        assert_eq!(journal.last_chain(), durable.chain);

        let (mut commands, mut checkpoints, mut seals, mut state_hashes) =
            (0_u64, 0, 0_usize, Vec::new());
        let trust = Trust::Key(key().verifying_key());
        read_journal::<JournalError>(
            dir.path(),
            tenant(),
            trust,
            None,
            |_| {},
            |record| {
                match record.kind {
                    crate::RecordKind::Command => {
                        commands += 1;
                        assert_eq!(record.sequence, commands);
                        assert_eq!(record.payload, commands.to_le_bytes());
                    }
                    crate::RecordKind::Checkpoint => checkpoints += 1,
                    crate::RecordKind::Seal => seals += 1,
                    crate::RecordKind::StateHash => {
                        let attested =
                            crate::StateHashRecord::decode(record.payload).expect("payload");
                        assert_eq!(record.sequence, commands, "at the end of the journal so far");
                        assert_eq!(attested.sequence, commands - 3);
                        state_hashes.push(attested.checkpoint.state_hash[0]);
                    }
                }
                Ok(())
            },
        )
        .expect("read");
        assert_eq!((commands, checkpoints), (sequence, 5));
        assert!((1..=commits + 10).contains(&seals), "a seal per group commit: {seals}");
        assert_eq!(state_hashes, [5, 15, 25, 35, 45], "signed and verified, in order");
    }

    /// A writer with commands 1 to 10 sent, one batch each, up to 4 in flight.
    fn ten_batches_sent(dir: &std::path::Path) -> JournalWriter {
        let mut writer = JournalWriter::spawn(open(dir), key(), 4).expect("spawn");
        for sequence in 1..=10 {
            let mut batch = writer.batch();
            batch.command(sequence, |out| out.push(sequence as u8));
            writer.send(batch).expect("send");
        }
        writer
    }

    /// `wait(sequence)` returns once that sequence is durable, not before.
    #[test]
    fn wait_covers_the_sequence() {
        let dir = tempfile::tempdir().expect("dir");
        let mut writer = ten_batches_sent(dir.path());
        assert!(writer.wait(7).expect("wait").sequence >= 7);
        assert_eq!(writer.wait_all().expect("wait").sequence, 10);
        // An empty batch is not sent.
        let empty = writer.batch();
        writer.send(empty).expect("send empty");
        assert_eq!(writer.in_flight(), 0);
    }

    /// `wait_for` returns by its deadline whatever is durable then, and with a long enough
    /// deadline covers the sequence, as `wait` does.
    #[test]
    fn wait_for_gives_up_at_its_deadline_or_covers_the_sequence() {
        let dir = tempfile::tempdir().expect("dir");
        let mut writer = ten_batches_sent(dir.path());
        let started = std::time::Instant::now();
        let now = writer.wait_for(10, std::time::Duration::ZERO).expect("poll");
        assert!(now.sequence <= 10 && started.elapsed() < std::time::Duration::from_secs(5));
        let long = std::time::Duration::from_secs(60);
        assert_eq!(writer.wait_for(10, long).expect("wait").sequence, 10);
        // Nothing in flight: returns at once with what is durable.
        assert_eq!(writer.wait_all().expect("all").sequence, 10);
        assert_eq!(writer.wait_for(11, long).expect("idle").sequence, 10);
    }

    /// A thread registered with `wake_on_report` is unparked once a commit is reported, so it
    /// can park waiting for the disk or other work, whichever comes first.
    #[test]
    fn a_registered_thread_is_woken_by_each_commit() {
        let dir = tempfile::tempdir().expect("dir");
        let mut writer = JournalWriter::spawn(open(dir.path()), key(), 4).expect("spawn");
        writer.wake_on_report(std::thread::current());
        for sequence in 1..=3 {
            let mut batch = writer.batch();
            batch.command(sequence, |out| out.push(sequence as u8));
            writer.send(batch).expect("send");
            let started = std::time::Instant::now();
            while writer.poll().expect("poll").sequence < sequence {
                // Without the wake this parks for the whole timeout.
                std::thread::park_timeout(std::time::Duration::from_secs(10));
                assert!(started.elapsed() < std::time::Duration::from_secs(8), "not woken");
            }
        }
    }

    /// A sequence out of order stops the writer; the failure is reported to every later call
    /// and nothing after the failed batch becomes durable.
    #[test]
    fn a_failure_stops_the_writer_and_is_reported() {
        let dir = tempfile::tempdir().expect("dir");
        let mut writer = JournalWriter::spawn(open(dir.path()), key(), 1).expect("spawn");
        let mut batch = writer.batch();
        batch.command(1, |out| out.push(1));
        writer.send(batch).expect("send");
        assert_eq!(writer.wait(1).expect("durable").sequence, 1);
        let mut bad = writer.batch();
        bad.command(5, |out| out.push(5));
        writer.send(bad).expect("sent before the writer sees it");
        let error = writer.wait_all().expect_err("out of order");
        assert!(error.to_string().contains("does not follow"), "{error}");
        let again = writer.poll().expect_err("still stopped");
        assert!(matches!(again, JournalError::WriterStopped(_)), "{again}");
        let mut batch = writer.batch();
        batch.command(2, |out| out.push(2));
        assert!(writer.send(batch).is_err());
        assert_eq!(writer.durable().sequence, 1);
    }

    /// What `OnDurable` saw: (batch, durable sequence or the failure, the thread it ran on).
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<(u64, Result<u64, String>, String)>>>;

    /// Records what it is told, and "dropped unrun" when dropped without being run (as a
    /// batch that never reached the writer is).
    struct Record {
        batch: u64,
        seen: Seen,
        ran: bool,
    }

    impl Record {
        fn new(batch: u64, seen: &Seen) -> Box<Self> {
            Box::new(Self { batch, seen: seen.clone(), ran: false })
        }

        fn push(&mut self, result: Result<u64, String>) {
            self.ran = true;
            let thread = std::thread::current().name().unwrap_or_default().to_owned();
            self.seen.lock().expect("seen").push((self.batch, result, thread));
        }
    }

    impl OnDurable for Record {
        fn durable(mut self: Box<Self>, durable: Durable) {
            self.push(Ok(durable.sequence));
        }

        fn failed(mut self: Box<Self>, why: &str) {
            self.push(Err(why.to_owned()));
        }
    }

    impl Drop for Record {
        fn drop(&mut self) {
            if !self.ran {
                self.push(Err("dropped unrun".into()));
            }
        }
    }

    /// Each batch's `then` runs on the writer's thread once the batch is durable, before the
    /// caller hears of it; a failure fails every batch taken or queued; an empty batch is not
    /// sent and its `then` comes back.
    #[test]
    fn then_runs_on_the_writer_once_durable_or_failed() {
        let dir = tempfile::tempdir().expect("dir");
        let seen = Seen::default();
        let mut writer = JournalWriter::spawn(open(dir.path()), key(), 4).expect("spawn");
        for sequence in 1..=3 {
            let mut batch = writer.batch();
            batch.command(sequence, |out| out.push(sequence as u8));
            batch.then(Record::new(sequence, &seen));
            assert!(writer.send(batch).expect("send").is_none(), "sent with it");
        }
        writer.wait_all().expect("durable");
        {
            let seen = seen.lock().expect("seen");
            assert_eq!(seen.len(), 3, "all three ran before the caller heard: {seen:?}");
            for (at, (batch, durable, thread)) in seen.iter().enumerate() {
                assert_eq!(*batch, at as u64 + 1, "in order");
                assert!(durable.as_ref().is_ok_and(|&d| d >= *batch), "{durable:?}");
                assert_eq!(thread, "journal-writer");
            }
        }
        let mut empty = writer.batch();
        empty.then(Record::new(4, &seen));
        let back = writer.send(empty).expect("send").expect("an empty batch's then comes back");
        back.durable(writer.durable());
        assert_eq!(seen.lock().expect("seen").len(), 4);
        // Out of order: this batch and the one behind it fail (the second may find the writer
        // gone already, and is dropped unrun then: its owner answers it as failed).
        for (batch, sequence) in [(5, 9), (6, 10)] {
            let mut bad = writer.batch();
            bad.command(sequence, |out| out.push(0));
            bad.then(Record::new(batch, &seen));
            let _ = writer.send(bad);
        }
        assert!(writer.wait_all().is_err());
        let seen = seen.lock().expect("seen");
        let failed: Vec<_> =
            seen[4..].iter().map(|(batch, result, _)| (*batch, result.is_err())).collect();
        assert_eq!(failed, [(5, true), (6, true)], "{seen:?}");
    }
}
