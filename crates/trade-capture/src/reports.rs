//! The report table: every accepted report id with what is needed to answer a resubmission.
//!
//! One record per accepted instruction is the largest per-trade cost of a tenant's state, so
//! the table is an arena (`CowVec<ReportRecord>`, 64 bytes a record, in acceptance order,
//! shared copy-on-write with snapshot images) with a hash index of `u32` positions beside it
//! (`keel_domain::index::TaggedIndex`, 8 bytes a slot) instead of a map holding the records in
//! its slots, where the load factor would double their cost. The index is laid out for
//! batches: [`ReportTable::touch`] loads the slot where an id's lookup starts, so a loop over a
//! batch brings all their slots into cache together before any is looked up.
//!
//! The index grows incrementally. A hash table that doubles in place rehashes every entry at
//! once, and here rehashing an entry means reading its record from the arena (a cache miss):
//! 0.15 s at 1.8M report ids and 0.4 s at 3.7M, a stall every acknowledgement waited for.
//! Instead, a full index is set aside and a new one of twice the capacity takes the inserts;
//! each insert also moves `GROW_STEP` of the old index's records across, reading the arena in
//! order (cheap), and lookups try the new index and then the old one until every record has
//! moved. Redis's dictionaries grow the same way. The total work is the same; the pause is
//! gone.
//!
//! The work itself can leave the shard's thread too. Once a large index is half full,
//! [`ReportTable::index_job`] hands out the records so far (shared, not copied) and the next
//! capacity; whoever runs the job ([`IndexJob::build`], on any thread) returns an index of those
//! records, and [`ReportTable::install_index`] puts it in place as a growth that has already
//! moved them: only the records accepted while it was built move per insert. An incremental
//! growth during a whole doubling took about twice the shard's time per new trade, for seconds
//! (a 20 to 70 ms tail in `keel load`, docs/benchmarks.md). A build of millions of records
//! takes long enough for hundreds of thousands to arrive meanwhile, and moving those (with
//! every lookup trying both indexes until they have moved) saturated a busy shard for most of
//! a second; so while more than `CATCH_UP_MAX` wait, the built index goes back out for another
//! round over just those (`Install::Again`), each round shorter than the last. If the index
//! fills before a job comes back, it grows in line as before and the job's index is dropped on
//! arrival.

use std::hash::BuildHasher;
use std::ops::ControlFlow;

use keel_domain::index::{tag, TaggedIndex};
use keel_domain::{Canon, CanonSink, CowVec, ReportId};
use serde::{Deserialize, Serialize};

use crate::record::{ReportKind, TradeKey};

/// One accepted report id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRecord {
    pub id: ReportId,
    pub kind: ReportKind,
    /// The trade it created (`New`) or concerned; for an average-price allocation, the group's
    /// first fill.
    pub trade: TradeKey,
    /// xxh3-128 of the report's content, as two words (keeps the record 8-byte aligned).
    pub fingerprint: [u64; 2],
    /// Tenant sequence of the command that accepted it.
    pub sequence: u64,
}

impl Canon for ReportRecord {
    #[inline]
    fn canon(&self, out: &mut Vec<u8>) {
        let ReportRecord { id, kind, trade, fingerprint, sequence } = self;
        id.canon(out);
        kind.canon(out);
        trade.canon(out);
        fingerprint.canon(out);
        sequence.canon(out);
    }
}

/// Accepted report ids, in acceptance order, with a hash index.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReportTable {
    records: CowVec<ReportRecord>,
    #[serde(skip)]
    index: TaggedIndex,
    /// While the index grows: the full one it replaces, still answering for the records it
    /// holds that have not moved yet.
    #[serde(skip)]
    growing: Option<Growing>,
    /// Bumped whenever the index is replaced: an index built for an earlier one is stale.
    #[serde(skip)]
    generation: u64,
    /// A job for this generation is out.
    #[serde(skip)]
    job_out: bool,
}

/// A report index to build away from the table: see [`ReportTable::index_job`].
#[derive(Debug)]
pub struct IndexJob {
    records: CowVec<ReportRecord>,
    into: Target,
    /// The first record to index: records before it are in `into` already.
    from: usize,
    /// Rounds before this one (`Install::Again`).
    round: u32,
    generation: u64,
}

/// What an [`IndexJob`] adds its records to.
#[derive(Debug)]
enum Target {
    /// A new index of this capacity.
    Empty(usize),
    /// The index an earlier round built.
    Built(TaggedIndex),
}

/// What became of a [`BuiltIndex`] handed to [`ReportTable::install_index`].
#[derive(Debug)]
pub enum Install {
    /// In place; the records accepted since its job was taken move a few per insert.
    Installed,
    /// Dropped: the index was replaced meanwhile (it filled up and grew in line).
    Stale,
    /// Too many records arrived while it was built: this job adds them to it, off the table's
    /// thread like the first, and hands it back to `install_index` again.
    Again(IndexJob),
}

/// What an [`IndexJob`] built, for [`ReportTable::install_index`].
#[derive(Debug)]
pub struct BuiltIndex {
    index: TaggedIndex,
    /// It holds records `[0, end)`.
    end: usize,
    round: u32,
    generation: u64,
}

impl IndexJob {
    /// Indexes the job's records, into a new index of the next capacity or (a later round)
    /// into the one built so far. Pure CPU, no shared state.
    pub fn build(self) -> BuiltIndex {
        match self.build_with(|| ControlFlow::Continue(())) {
            Some(built) => built,
            None => unreachable!("invariant: a build that is never stopped finishes"),
        }
    }

    /// As `build`, calling `between` between pieces of the work (every `BUILD_PIECE` records,
    /// and every 64 KiB of a new index's slots as they are faulted in): for a builder that
    /// paces itself (`keel_sched::Duty`), and that may be told to stop (its store closed):
    /// `between` breaks, and the build returns `None` at once.
    pub fn build_with(self, mut between: impl FnMut() -> ControlFlow<()>) -> Option<BuiltIndex> {
        let records = &self.records;
        let mut index = match self.into {
            Target::Empty(capacity) => {
                TaggedIndex::with_capacity_faulted_with(capacity, &mut between)?
            }
            Target::Built(index) => index,
        };
        // Each insert is a miss in an index far larger than the cache: hash a run of records
        // and touch their slots first, so that the run's misses overlap (4M records into an
        // index for 8M: 250 ms, against 285 ms inserting one at a time; hashbrown took 241).
        let mut hashes = [0_u64; BUILD_RUN];
        let mut at = u32::try_from(self.from).unwrap_or(u32::MAX);
        let mut touched = 0_u32;
        let mut run = records.iter_from(self.from);
        loop {
            let mut len = 0;
            for (hashed, record) in hashes.iter_mut().zip(run.by_ref()) {
                *hashed = hash(&record.id);
                touched ^= index.touch(*hashed);
                len += 1;
            }
            for &hashed in &hashes[..len] {
                index.insert_unique(hashed, tag(hashed), at, |_, other| hash_at(records, other));
                at += 1;
            }
            if len < BUILD_RUN {
                break;
            }
            if at as usize % BUILD_PIECE < BUILD_RUN && between().is_break() {
                return None;
            }
        }
        std::hint::black_box(touched);
        Some(BuiltIndex {
            index,
            end: records.len(),
            round: self.round,
            generation: self.generation,
        })
    }

    /// Records this job indexes.
    pub fn records(&self) -> usize {
        self.records.len() - self.from
    }
}

/// An index being replaced by one twice its capacity.
#[derive(Debug, Clone)]
struct Growing {
    old: TaggedIndex,
    /// The next record to move into the new index; records `[next, end)` are only in `old`.
    next: usize,
    /// Records the old index holds: `[0, end)`.
    end: usize,
}

/// Records moved from the old index to the new one per insert. Any value of 2 or more finishes
/// moving before the new index (twice the capacity) fills up; 4 finishes in a quarter of the
/// time and costs two arena reads more per insert.
const GROW_STEP: usize = 4;

/// Records an index build hashes and touches before inserting them.
const BUILD_RUN: usize = 32;

/// Records an index build inserts between two calls of its `between` (`IndexJob::build_with`):
/// about 100 us of inserts.
const BUILD_PIECE: usize = 4096;

/// Indexes smaller than this grow in line only: building them takes less than a thread's start.
const JOB_CAPACITY_MIN: usize = if cfg!(test) { 64 } else { 1 << 16 };

/// Records accepted while a job was out that an install leaves to the shard (a few moved per
/// insert, about 2 ms of a busy shard's time at this size); past it, the built index goes back
/// out for another round. A round over N records takes a fraction of the time N took to arrive,
/// so each round is shorter than the last.
const CATCH_UP_MAX: usize = if cfg!(test) { 16 } else { 8 << 10 };

/// Rounds after the first, at most: a helper starved of CPU for long enough lets records
/// arrive faster than it indexes them, and then the shard moves them after all.
const CATCH_UP_ROUNDS: u32 = 3;

fn hash(id: &ReportId) -> u64 {
    rustc_hash::FxBuildHasher.hash_one(id)
}

impl ReportTable {
    #[inline]
    pub fn get(&self, id: &ReportId) -> Option<&ReportRecord> {
        let records = &self.records;
        self.find(id, |at| records[at as usize].id == *id).map(|at| &records[at as usize])
    }

    /// The position of the first entry for `id`'s hash that `eq` accepts, in the index and then,
    /// while one grows, in the old one.
    #[inline]
    fn find(&self, id: &ReportId, eq: impl Fn(u32) -> bool + Copy) -> Option<u32> {
        let hash = hash(id);
        self.index.find(hash, tag(hash), eq).or_else(|| {
            self.growing.as_ref().and_then(|growing| growing.old.find(hash, tag(hash), eq))
        })
    }

    /// Loads the index slot where a lookup of `id` starts (in both indexes while one grows)
    /// and returns a value that depends on it: see `TaggedIndex::touch`.
    #[inline]
    pub fn touch(&self, id: &ReportId) -> u32 {
        let hash = hash(id);
        let old = self.growing.as_ref().map_or(0, |growing| growing.old.touch(hash));
        self.index.touch(hash) ^ old
    }

    /// Where the record a lookup of `id` compares first is, if any: unconfirmed (a slot whose
    /// 32 bits of hash match), for a probe to fetch before the lookup. Reads only slots,
    /// which `touch` has brought in.
    #[inline]
    pub fn candidate(&self, id: &ReportId) -> Option<u32> {
        self.find(id, |_| true)
    }

    /// Adds a record whose id is not in the table yet (checked by the caller with `get`).
    pub fn insert(&mut self, record: ReportRecord) {
        debug_assert!(self.get(&record.id).is_none(), "invariant: report ids are unique");
        if self.growing.is_some() {
            self.move_some(GROW_STEP);
        } else if self.index.len() >= self.index.capacity() {
            let capacity = (self.index.capacity() * 2).max(64);
            let old = std::mem::replace(&mut self.index, TaggedIndex::with_capacity(capacity));
            self.growing = Some(Growing { old, next: 0, end: self.records.len() });
            self.replaced();
        }
        let at = u32::try_from(self.records.len()).unwrap_or(u32::MAX);
        let records = &self.records;
        let hashed = hash(&record.id);
        self.index.insert_unique(hashed, tag(hashed), at, |_, other| hash_at(records, other));
        self.records.push(record);
    }

    /// Moves up to `count` records from the old index to the new one; drops the old index
    /// once all have moved.
    fn move_some(&mut self, count: usize) {
        let Some(growing) = &mut self.growing else { return };
        let records = &self.records;
        let stop = growing.end.min(growing.next.saturating_add(count));
        for at in growing.next..stop {
            let hashed = hash(&records[at].id);
            self.index
                .insert_unique(hashed, tag(hashed), at as u32, |_, other| hash_at(records, other));
        }
        growing.next = stop;
        if stop == growing.end {
            self.growing = None;
        }
    }

    /// The index was replaced: an index built for the old one no longer fits.
    fn replaced(&mut self) {
        self.generation += 1;
        self.job_out = false;
    }

    /// A job building the next, twice larger index, once this one is half full (and
    /// large enough for a thread to be worth it), unless one is out or a growth is under way.
    /// Handing out the records costs one reference count per 8 KiB chunk; the table goes on
    /// accepting records meanwhile.
    pub fn index_job(&mut self) -> Option<IndexJob> {
        self.index_job_from(1, 2)
    }

    /// As `index_job`, but offered only once the index is `num / den` full (at least half):
    /// for a caller with other background work under way, that would rather spend some of the
    /// headroom before the index fills than run both at once.
    pub fn index_job_from(&mut self, num: usize, den: usize) -> Option<IndexJob> {
        let capacity = self.index.capacity();
        let due = (capacity / den.max(1)).saturating_mul(num).max(capacity / 2);
        if self.job_out
            || self.growing.is_some()
            || capacity < JOB_CAPACITY_MIN
            || self.index.len() < due
        {
            return None;
        }
        self.job_out = true;
        Some(IndexJob {
            records: self.records.share(),
            into: Target::Empty(capacity * 2),
            from: 0,
            round: 0,
            generation: self.generation,
        })
    }

    /// Puts an index built by this table's latest job in place of the current one. It answers
    /// for the records it was built from; the ones accepted since are moved across
    /// `GROW_STEP` per insert, as in a growth, with the current index answering for them until
    /// then. If more than `CATCH_UP_MAX` arrived meanwhile, hands the index back out instead
    /// (`Install::Again`), up to `CATCH_UP_ROUNDS` times. Drops it (`Install::Stale`) if the
    /// index was replaced meanwhile (it filled up and grew in line).
    pub fn install_index(&mut self, built: BuiltIndex) -> Install {
        if built.generation != self.generation || !self.job_out || self.growing.is_some() {
            return Install::Stale;
        }
        let behind = self.records.len().saturating_sub(built.end);
        if behind > CATCH_UP_MAX && built.round < CATCH_UP_ROUNDS {
            return Install::Again(IndexJob {
                records: self.records.share(),
                into: Target::Built(built.index),
                from: built.end,
                round: built.round + 1,
                generation: built.generation,
            });
        }
        let old = std::mem::replace(&mut self.index, built.index);
        self.growing = Some(Growing { old, next: built.end, end: self.records.len() });
        self.replaced();
        self.move_some(0);
        Install::Installed
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// The index's entries and the entries it holds before it must grow: how close a build
    /// out on a helper is to being overtaken by an in-line growth.
    pub fn index_fill(&self) -> (usize, usize) {
        (self.index.len(), self.index.capacity())
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn records(&self) -> &CowVec<ReportRecord> {
        &self.records
    }

    /// Writes the snapshot encoding (`Serialize`'s bytes), the records by hand.
    pub fn write_canon(&self, sink: &mut impl CanonSink) {
        let ReportTable { records, index: _, growing: _, generation: _, job_out: _ } = self;
        sink.arena(records);
    }

    /// As `write_canon`, consuming an image: each group of records is let go once encoded.
    pub fn write_canon_drained(self, sink: &mut impl CanonSink) {
        sink.arena_drained(self.records);
    }

    /// The records without the index, sharing their chunks: for a snapshot image only.
    pub fn image(&mut self) -> ReportTable {
        ReportTable {
            records: self.records.share(),
            index: TaggedIndex::new(),
            growing: None,
            generation: 0,
            job_out: false,
        }
    }

    /// Makes room for `additional` more records without growing the arena or the index.
    pub fn reserve(&mut self, additional: usize) {
        self.move_some(usize::MAX);
        self.records.reserve(additional);
        let records = &self.records;
        let capacity = self.index.capacity();
        self.index.reserve(additional, |_, at| hash_at(records, at));
        if self.index.capacity() != capacity {
            self.replaced();
        }
    }

    /// Rebuilds the index after deserialization.
    pub fn reindex(&mut self) {
        let records = &self.records;
        let mut index = TaggedIndex::with_capacity_faulted(records.len());
        for (at, record) in records.iter().enumerate() {
            let hashed = hash(&record.id);
            index.insert_unique(hashed, tag(hashed), at as u32, |_, other| hash_at(records, other));
        }
        self.index = index;
        self.growing = None;
        self.replaced();
    }
}

fn hash_at(records: &CowVec<ReportRecord>, at: u32) -> u64 {
    hash(&records[at as usize].id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every id is found at every point of an incremental growth, whether it has moved to the
    /// new index yet or not; growth never rehashes the whole index in one insert.
    #[test]
    fn growth_moves_records_a_few_at_a_time_and_lookups_never_miss() {
        let mut table = ReportTable::default();
        let (mut growths, mut capacity) = (0, 0);
        for n in 0..20_000u64 {
            let was_growing = table.growing.is_some();
            table.insert(record(&format!("G{n}"), n));
            let started = table.growing.is_some() && !was_growing;
            if n > 0 && !started {
                assert_eq!(table.index.capacity(), capacity, "the index never resized itself");
            }
            capacity = table.index.capacity();
            if let Some(growing) = &table.growing {
                growths += usize::from(started);
                assert!(growing.next <= growing.end);
                assert!(growing.next <= GROW_STEP * (n as usize + 1), "moved a few per insert");
            }
            if n % 97 == 0 || table.growing.is_some() && n % 7 == 0 {
                for probe in [0, n / 3, n / 2, n] {
                    let id = format!("G{probe}").parse().unwrap();
                    assert_eq!(
                        table.get(&id).map(|r| r.sequence),
                        Some(probe),
                        "G{probe} after {n}"
                    );
                    // What a probe fetches ahead is the record the lookup then confirms.
                    let candidate = table.candidate(&id).map(|at| table.records[at as usize].id);
                    assert_eq!(candidate, Some(id), "candidate of G{probe} after {n}");
                }
                assert!(table.get(&format!("G{}", n + 1).parse().unwrap()).is_none());
            }
        }
        assert!(growths >= 5, "{growths} growths");
        table.reserve(100_000);
        assert!(table.growing.is_none(), "reserve finishes a growth");
        assert!((0..20_000u64).all(|n| table.get(&format!("G{n}").parse().unwrap()).is_some()));
    }

    /// An index built from a job takes over when it comes back in time, goes back out for
    /// another round while more than `CATCH_UP_MAX` records arrived during the last (at most
    /// `CATCH_UP_ROUNDS` more), and is dropped when the index filled up and grew in line
    /// first; either way every id is found at every point, and one job is out at a time.
    #[test]
    fn an_index_built_off_the_table_takes_over_or_is_dropped_and_lookups_never_miss() {
        // (records accepted while each round is out, rounds after the first, installed)
        let cases: [(&[usize], u32, bool); 8] = [
            (&[0], 0, true),
            (&[1], 0, true),
            (&[CATCH_UP_MAX], 0, true),
            (&[CATCH_UP_MAX + 1, 0], 1, true),
            (&[40, 17, 3], 2, true),
            (&[20, 20, 20, 20], CATCH_UP_ROUNDS, true),
            (&[2_000], 0, false),
            (&[30, 2_000], 1, false),
        ];
        for (while_out, rounds, installed) in cases {
            let mut table = ReportTable::default();
            let mut n = 0u64;
            let mut insert = |table: &mut ReportTable| {
                table.insert(record(&format!("J{n}"), n));
                n += 1;
                n
            };
            // A job at a capacity of 1,000 or more leaves room for 500 records or more before
            // the index fills.
            let job = loop {
                insert(&mut table);
                if table.index.capacity() >= 1_000 {
                    if let Some(job) = table.index_job() {
                        break job;
                    }
                }
            };
            let (taken_at, capacity) = (table.len(), table.index.capacity());
            assert!(table.index.len() >= capacity / 2, "half full");
            assert!(table.index_job().is_none(), "one job at a time");
            let (mut job, mut round, mut built_end) = (job, 0, 0);
            assert_eq!(job.records(), taken_at, "the first round indexes all");
            let outcome = loop {
                assert_eq!(job.records(), table.len() - built_end, "a round indexes what is new");
                for _ in 0..while_out.get(round).copied().unwrap_or(0) {
                    let n = insert(&mut table);
                    assert!(table.get(&format!("J{}", n - 1).parse().unwrap()).is_some());
                }
                let built = job.build();
                built_end = built.end;
                match table.install_index(built) {
                    Install::Again(next) => {
                        assert!(table.index_job().is_none(), "one job at a time");
                        (job, round) = (next, round + 1);
                    }
                    outcome => break outcome,
                }
            };
            assert_eq!(round as u32, rounds, "rounds for {while_out:?}");
            assert_eq!(matches!(outcome, Install::Installed), installed, "{while_out:?}");
            if installed {
                assert_eq!(table.index.capacity(), 2 * capacity);
                let growing = table.growing.as_ref();
                assert_eq!(growing.map_or(table.len(), |g| g.next), built_end, "built ones moved");
                let behind = table.len() - built_end;
                assert!(behind <= CATCH_UP_MAX || rounds == CATCH_UP_ROUNDS, "{behind} left");
            }
            let capacity = table.index.capacity();
            while table.growing.is_some() {
                insert(&mut table);
                assert_eq!(table.index.capacity(), capacity, "no rehash in line");
            }
            let total = table.len() as u64;
            for probe in 0..total {
                let id = format!("J{probe}").parse().unwrap();
                assert_eq!(table.get(&id).map(|r| r.sequence), Some(probe), "J{probe}");
            }
            assert!(table.get(&format!("J{total}").parse().unwrap()).is_none());
        }
    }

    /// A job asked for with other background work under way (`index_job_from`) is offered
    /// only from the fill asked for, never before half full, and once only.
    #[test]
    fn a_deferred_job_waits_for_its_fill() {
        // (num, den, the fill at which the job is first offered: (n, d) for n / d full)
        let cases =
            [(1, 2, (1, 2)), (5, 8, (5, 8)), (3, 4, (3, 4)), (1, 4, (1, 2)), (0, 8, (1, 2))];
        for (num, den, (at_num, at_den)) in cases {
            let mut table = ReportTable::default();
            let mut n = 0u64;
            let mut insert = |table: &mut ReportTable| {
                table.insert(record(&format!("D{n}"), n));
                n += 1;
            };
            // Sized up front, past the capacity where jobs are handed out.
            table.reserve(JOB_CAPACITY_MIN * 4);
            let capacity = table.index.capacity();
            assert!(capacity >= JOB_CAPACITY_MIN && table.growing.is_none());
            while table.index_job_from(num, den).is_none() {
                insert(&mut table);
                assert_eq!(table.index.capacity(), capacity, "{num}/{den}: never offered");
            }
            assert_eq!(table.index.len(), capacity / at_den * at_num, "{num}/{den}");
            assert!(table.index_job_from(num, den).is_none(), "one job at a time");
            assert!(table.index_job().is_none(), "one job at a time");
        }
    }

    fn record(id: &str, sequence: u64) -> ReportRecord {
        ReportRecord {
            id: id.parse().unwrap(),
            kind: ReportKind::New,
            trade: TradeKey(sequence as u32),
            fingerprint: [sequence, !sequence],
            sequence,
        }
    }

    #[test]
    fn finds_what_was_inserted_and_survives_reindex() {
        let mut table = ReportTable::default();
        for n in 0..10_000u64 {
            table.insert(record(&format!("R{n}"), n));
        }
        assert_eq!(std::mem::size_of::<ReportRecord>(), 64);
        for n in [0u64, 1, 4_999, 9_999] {
            assert_eq!(table.get(&format!("R{n}").parse().unwrap()).map(|r| r.sequence), Some(n));
        }
        assert!(table.get(&"R10000".parse().unwrap()).is_none());
        assert!(table.growing.is_none(), "growth finished long before");
        let bytes = bincode::serialize(&table).unwrap();
        let mut restored: ReportTable = bincode::deserialize(&bytes).unwrap();
        assert!(restored.get(&"R5".parse().unwrap()).is_none(), "the index is not serialized");
        restored.reindex();
        assert_eq!(restored.get(&"R5".parse().unwrap()).map(|r| r.sequence), Some(5));
        assert_eq!(restored.len(), 10_000);
    }

    /// A build told to stop returns nothing, whether stopped while its slots are faulted in or
    /// while it inserts; one never stopped builds what `build` builds.
    #[test]
    fn a_stopped_build_returns_nothing() {
        let job = || {
            let mut table = ReportTable::default();
            let mut n = 0u64;
            loop {
                table.insert(record(&format!("S{n}"), n));
                n += 1;
                if table.index.capacity() >= 100_000 {
                    if let Some(job) = table.index_job() {
                        return job;
                    }
                }
            }
        };
        // (calls before it stops, built)
        for (calls, built) in [(0, false), (1, false), (40, false), (usize::MAX, true)] {
            let mut left = calls;
            let result = job().build_with(|| match left.checked_sub(1) {
                Some(rest) => {
                    left = rest;
                    ControlFlow::Continue(())
                }
                None => ControlFlow::Break(()),
            });
            assert_eq!(result.is_some(), built, "stopped after {calls} calls");
            if let Some(result) = result {
                let whole = job().build();
                assert_eq!((result.end, result.index.len()), (whole.end, whole.index.len()));
            }
        }
    }
}
