//! The writer: appends records to the tenant's current segment and makes them durable with one
//! `sync_data` per commit (group commit). Nothing is durable, and so nothing may be
//! acknowledged, before `commit` returns.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use keel_domain::TenantId;

use crate::direct::{DirectSegment, DIRECT_ALIGN};
use crate::error::JournalError;
use crate::format::{
    encode_chained, encode_command, genesis, tenant_bytes, ChainHash, RecordKind, SegmentHeader,
    PAYLOAD_BYTES_MAX, SEGMENT_HEADER_BYTES,
};
use crate::keys::NodeKey;
use crate::scan::{
    scan_segment, ChainState, Checkpoint, RepairedSeal, StateHashRecord, TornTail, Trust,
};
use crate::segments::{check_header, list_segments, segment_name};

/// Tunables, with units last.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// A segment is closed and a new one started once it is this large.
    pub segment_bytes_max: u64,
    /// Mirror every committed byte into this directory too (an append-only backup copy).
    pub backup_dir: Option<PathBuf>,
    /// Start each new segment as a file of `segment_bytes_max` zero bytes, written and synced
    /// ahead of time by a helper thread (format version 3). A group commit into space that is
    /// already allocated and written changes no file metadata, so its `sync_data` flushes the
    /// data alone: about half the latency of an append that grows the file (ext4 must commit
    /// the new size and blocks to its own journal first). A new journal's first segment is
    /// zero-filled when it is created; a segment the helper has not finished in time grows by
    /// appends.
    pub preallocate: bool,
    /// Write preallocated segments, and their zeros, with `O_DIRECT` in whole pages from an
    /// aligned buffer, where the file system allows it (`crate::direct`): no page cache for
    /// either. The bytes on disk are the same either way.
    pub direct_io: bool,
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self { segment_bytes_max: 64 << 20, backup_dir: None, preallocate: true, direct_io: true }
    }
}

/// The file a helper thread fills with zeros to become the next segment. Not a segment name,
/// so a leftover one (a crash while it was being written) is never read as one; `open`
/// removes it.
const PREPARED_NAME: &str = "next-segment.tmp";
/// The helper syncs the zeros every this many bytes and then waits `PREPARE_PAUSE_FACTOR` times
/// as long as the step (write and sync) took, so that a journal's own sync waits behind at most
/// one short step and finds the disk idle most of the time. (4 MiB steps paced 1:1 doubled the
/// open loop's p99.) The write counts too: on a file system whose syncs cost nothing (tmpfs)
/// the step is all CPU, and paced by the sync alone the helper took half a core for a third of
/// a second per segment, beside the shard (docs/benchmarks.md, twentieth session).
const PREPARE_SYNC_BYTES: usize = 256 << 10;
const PREPARE_PAUSE_FACTOR: u32 = 3;

/// What opening found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    pub segments: u32,
    /// Records in the last segment (earlier segments are not re-read on open).
    pub records_in_last_segment: u64,
    pub last_sequence: u64,
    /// A partial final record left by a crash, now truncated. Never an acknowledged record.
    pub torn_tail: Option<TornTail>,
    /// The final seal's header, damaged but proven by its chain value, now written back: its
    /// group of commands was kept.
    pub repaired_seal: Option<RepairedSeal>,
}

/// An open journal for appending.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    tenant: TenantId,
    options: JournalOptions,
    file: File,
    /// The current segment's direct writer, when `direct_io` is on, the segment was
    /// preallocated and the file system allows it; otherwise records go through `file`.
    direct: Option<DirectSegment>,
    backup: Option<File>,
    segment_number: u32,
    segment_len: u64,
    /// `SegmentFiles::capacity` of the current segment.
    segment_capacity: u64,
    /// The helper failed to replace the current segment, grown by appends, early: it goes on
    /// by appends to its end (`leaving_appends`).
    appends_kept: bool,
    /// The last command appended (buffered or written), and the chain value after the last
    /// chained record (seal, checkpoint or state hash): commands after it are pending.
    state: ChainState,
    /// Where in `buffer` the commands not yet sealed start: the next chained record covers
    /// them (format version 5). `commit` always seals, so none are ever written unsealed.
    pending_from: Option<usize>,
    /// Chain state after the last record written to the file.
    written: ChainState,
    durable_sequence: u64,
    buffer: Vec<u8>,
    poisoned: bool,
    /// The helper preparing the next segment's file, if one was started.
    prepared: Option<Helper>,
}

/// A segment's files: the primary (buffered: headers, syncs), its direct writer if it has
/// one, and the backup twin if the journal keeps one.
#[derive(Debug)]
struct SegmentFiles {
    file: File,
    direct: Option<DirectSegment>,
    backup: Option<File>,
    /// The file's length when it was preallocated (zeros written ahead), 0 when it grows by
    /// appends.
    capacity: u64,
}

/// A thread writing the next segment's zero-filled file.
#[derive(Debug)]
struct Helper {
    /// Whether the zeros were written direct (so the segment can be).
    thread: std::thread::JoinHandle<std::io::Result<bool>>,
    /// Set to stop the helper early (the journal is closing).
    cancel: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Journal {
    /// Stops a helper still writing the next segment's file (woken from its pause, it checks
    /// between steps, so this waits at most one `PREPARE_SYNC_BYTES` write and sync) and
    /// removes the file: a closed journal leaves nothing behind but its segments.
    fn drop(&mut self) {
        if let Some(helper) = self.prepared.take() {
            helper.cancel.store(true, std::sync::atomic::Ordering::Relaxed);
            helper.thread.thread().unpark();
            let _ = helper.thread.join();
            let _ = std::fs::remove_file(self.dir.join(PREPARED_NAME));
        }
    }
}

impl Journal {
    /// Opens (or creates) the journal in `dir`. The last segment is scanned to find where the
    /// chain stands; a torn tail is truncated and reported. Other corruption is an error and
    /// the journal stays closed.
    pub fn open(
        dir: &Path,
        tenant: TenantId,
        options: JournalOptions,
    ) -> Result<(Journal, OpenReport), JournalError> {
        std::fs::create_dir_all(dir).map_err(JournalError::io(dir))?;
        let prepared = dir.join(PREPARED_NAME);
        if prepared.exists() {
            // Possibly cut short by a stop: started again when the segment fills.
            std::fs::remove_file(&prepared).map_err(JournalError::io(&prepared))?;
        }
        let mut segments = list_segments(dir)?;
        let mut torn_tail = None;
        // A last segment whose own header never reached the disk held no records: drop it.
        if let Some((_, path)) = segments.last() {
            let len = std::fs::metadata(path).map_err(JournalError::io(path))?.len();
            if len < SEGMENT_HEADER_BYTES as u64 {
                torn_tail = Some(TornTail {
                    segment: path.clone(),
                    offset: 0,
                    bytes: len,
                    reason: "segment header cut short".into(),
                });
                std::fs::remove_file(path).map_err(JournalError::io(path))?;
                sync_dir(dir)?;
                segments.pop();
            }
        }
        let Some((number, path)) = segments.last().cloned() else {
            let state = ChainState { chain: genesis(tenant), sequence: 0 };
            let journal = Self::create_segment(dir, tenant, options, 1, state)?;
            let report = OpenReport {
                segments: 1,
                records_in_last_segment: 0,
                last_sequence: 0,
                torn_tail,
                repaired_seal: None,
            };
            return Ok((journal, report));
        };
        let mut bytes = std::fs::read(&path).map_err(JournalError::io(&path))?;
        let header = check_header(&path, &bytes, number, tenant)?;
        let start = ChainState { chain: header.prev_chain, sequence: header.prev_sequence };
        let end = scan_segment::<JournalError>(
            &path,
            &bytes,
            SEGMENT_HEADER_BYTES,
            tenant,
            start,
            true,
            Trust::Unchecked,
            |_| Ok(()),
        )?;
        // Direct writes only into preallocated space, which zeros fill past the records (a torn
        // tail is cut off with them, and the segment grows by appends).
        let preallocated = bytes.len() as u64 > end.end && end.torn.is_none();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(JournalError::io(&path))?;
        if let Some(torn) = end.torn {
            file.set_len(end.end).map_err(JournalError::io(&path))?;
            file.sync_all().map_err(JournalError::io(&path))?;
            torn_tail = Some(torn);
        }
        if let Some(seal) = &end.repaired {
            use std::os::unix::fs::FileExt;
            file.write_all_at(&seal.header, seal.offset).map_err(JournalError::io(&path))?;
            file.sync_data().map_err(JournalError::io(&path))?;
            // The backup copy is brought level with the repaired bytes, not the damaged ones.
            let at = seal.offset as usize;
            bytes[at..at + seal.header.len()].copy_from_slice(&seal.header);
        }
        use std::io::Seek;
        // Not the file's end: a preallocated segment goes on with zero bytes after its records.
        file.seek(std::io::SeekFrom::Start(end.end)).map_err(JournalError::io(&path))?;
        let backup = Self::open_backup(&options, number, &bytes[..end.end as usize])?;
        let last_page =
            &bytes[(end.end - end.end % DIRECT_ALIGN as u64) as usize..end.end as usize];
        let direct = (options.direct_io && preallocated)
            .then(|| DirectSegment::open(&path, end.end, last_page, true))
            .flatten();
        let report = OpenReport {
            segments: number,
            records_in_last_segment: end.records,
            last_sequence: end.state.sequence,
            torn_tail,
            repaired_seal: end.repaired,
        };
        let capacity = if preallocated { bytes.len() as u64 } else { 0 };
        let files = SegmentFiles { file, direct, backup, capacity };
        let journal = Journal::assemble(dir, tenant, options, files, number, end.end, end.state);
        Ok((journal, report))
    }

    fn create_segment(
        dir: &Path,
        tenant: TenantId,
        mut options: JournalOptions,
        number: u32,
        state: ChainState,
    ) -> Result<Journal, JournalError> {
        let files =
            match Self::first_segment_preallocated(dir, tenant, &mut options, number, state)? {
                Some(files) => files,
                None => Self::new_segment_files(dir, tenant, &options, number, state)?,
            };
        let length = SEGMENT_HEADER_BYTES as u64;
        Ok(Journal::assemble(dir, tenant, options, files, number, length, state))
    }

    /// A new journal's first segment, zero-filled here and now (paced, as the helper does for
    /// the segments after it) when `preallocate` is on, so that its records too are written
    /// direct into allocated space. A first segment grown by appends held up every group
    /// commit of a new tenant's first `segment_bytes_max` bytes (docs/benchmarks.md, sixteenth
    /// session). None when the zeros could not be written (a full disk, say): the segment then
    /// grows by appends.
    fn first_segment_preallocated(
        dir: &Path,
        tenant: TenantId,
        options: &mut JournalOptions,
        number: u32,
        state: ChainState,
    ) -> Result<Option<SegmentFiles>, JournalError> {
        if !options.preallocate {
            return Ok(None);
        }
        let prepared = dir.join(PREPARED_NAME);
        let never = std::sync::atomic::AtomicBool::new(false);
        let zeros = write_zeros(&prepared, options.segment_bytes_max, options.direct_io, &never);
        let Ok(zeros_direct) = zeros else {
            let _ = std::fs::remove_file(&prepared);
            return Ok(None);
        };
        if !zeros_direct {
            options.direct_io = false;
        }
        let header = segment_header(tenant, number, state);
        install_prepared(dir, options, number, &header).map(Some)
    }

    /// A journal positioned at the end of segment `number` (`length` bytes), where the chain
    /// stands at `state`, everything durable.
    fn assemble(
        dir: &Path,
        tenant: TenantId,
        options: JournalOptions,
        SegmentFiles { file, direct, backup, capacity }: SegmentFiles,
        number: u32,
        length: u64,
        state: ChainState,
    ) -> Journal {
        Journal {
            dir: dir.to_path_buf(),
            tenant,
            options,
            file,
            direct,
            backup,
            segment_number: number,
            segment_len: length,
            segment_capacity: capacity,
            appends_kept: false,
            state,
            pending_from: None,
            written: state,
            durable_sequence: state.sequence,
            buffer: Vec::with_capacity(1 << 20),
            poisoned: false,
            prepared: None,
        }
    }

    /// Creates segment `number` (and its backup twin) with its header, durably.
    fn new_segment_files(
        dir: &Path,
        tenant: TenantId,
        options: &JournalOptions,
        number: u32,
        state: ChainState,
    ) -> Result<SegmentFiles, JournalError> {
        let header = segment_header(tenant, number, state);
        let file = create_segment_file(dir, number, &header)?;
        let backup = match options.backup_dir.as_deref() {
            Some(backup_dir) => Some(create_segment_file(backup_dir, number, &header)?),
            None => None,
        };
        // Grown by appends, buffered: a direct write's whole pages would leave zeros after the
        // records, which only preallocated space has.
        Ok(SegmentFiles { file, direct: None, backup, capacity: 0 })
    }

    /// Opens the backup twin of the current segment, bringing it level with the primary.
    fn open_backup(
        options: &JournalOptions,
        number: u32,
        primary: &[u8],
    ) -> Result<Option<File>, JournalError> {
        let Some(dir) = options.backup_dir.as_deref() else { return Ok(None) };
        crate::backup::copy_missing(primary, dir, number).map(Some)
    }

    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the current segment is written direct, bypassing the page cache: the option is
    /// on, the segment was preallocated and its file system allows it.
    pub fn writes_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Sequence of the last command appended (durable or not).
    pub fn last_sequence(&self) -> u64 {
        self.state.sequence
    }

    /// Sequence of the last command known to be on disk.
    pub fn durable_sequence(&self) -> u64 {
        self.durable_sequence
    }

    /// Chain value after the last chained record appended (commands are chained by the seal
    /// that `commit` appends after them).
    pub fn last_chain(&self) -> ChainHash {
        self.state.chain
    }

    /// Buffers a command record; `sequence` must follow the last one.
    pub fn append_command(&mut self, sequence: u64, payload: &[u8]) -> Result<(), JournalError> {
        if sequence != self.state.sequence + 1 {
            return Err(JournalError::SequenceOutOfOrder {
                last: self.state.sequence,
                got: sequence,
            });
        }
        if payload.len() > PAYLOAD_BYTES_MAX {
            return Err(JournalError::PayloadTooLarge(payload.len()));
        }
        self.pending_from.get_or_insert(self.buffer.len());
        encode_command(&mut self.buffer, sequence, payload);
        self.state.sequence = sequence;
        Ok(())
    }

    /// Encodes a chained record into the buffer: its chain value covers the pending commands
    /// before it (none for a checkpoint or state hash, which `seal` first).
    fn push_chained(&mut self, kind: RecordKind, payload: &[u8]) {
        let from = self.pending_from.take().unwrap_or(self.buffer.len());
        let sequence = self.state.sequence;
        let chain =
            encode_chained(&mut self.buffer, from, &self.state.chain, kind, sequence, payload);
        self.state.chain = chain;
    }

    /// Closes the group of pending commands with a seal record, if any are pending: one
    /// BLAKE3 pass over all of them.
    fn seal(&mut self) {
        if self.pending_from.is_some() {
            self.push_chained(RecordKind::Seal, &[]);
        }
    }

    /// `state_hash` with the node key's public half and `signature`.
    fn signed(key: &NodeKey, state_hash: [u8; 32], signature: [u8; 64]) -> Checkpoint {
        Checkpoint { state_hash, public_key: *key.verifying_key().as_bytes(), signature }
    }

    /// Buffers a checkpoint of `state_hash` (the engine's, after the last command), signed with
    /// the node key over the tenant, the sequence and the chain before it.
    pub fn append_checkpoint(
        &mut self,
        key: &NodeKey,
        state_hash: [u8; 32],
    ) -> Result<(), JournalError> {
        // Sealed first, so that the signature's chain value covers every command before it.
        self.seal();
        let sequence = self.state.sequence;
        let signature = key.sign_checkpoint(self.tenant, sequence, &self.state.chain, &state_hash);
        let checkpoint = Self::signed(key, state_hash, signature);
        self.push_chained(RecordKind::Checkpoint, &checkpoint.encode());
        Ok(())
    }

    /// Buffers a state-hash record: `state_hash` is the engine's after command `sequence` (an
    /// earlier one, whose checkpoint deferred it), signed with the node key.
    pub fn append_state_hash(
        &mut self,
        key: &NodeKey,
        sequence: u64,
        state_hash: [u8; 32],
    ) -> Result<(), JournalError> {
        let at = self.state.sequence;
        if sequence > at {
            return Err(JournalError::SequenceOutOfOrder { last: at, got: sequence });
        }
        self.seal();
        let signature = key.sign_state_hash(self.tenant, sequence, &self.state.chain, &state_hash);
        let checkpoint = Self::signed(key, state_hash, signature);
        self.push_chained(
            RecordKind::StateHash,
            &StateHashRecord { sequence, checkpoint }.encode(),
        );
        Ok(())
    }

    /// Seals the pending commands, writes everything buffered and makes it durable with one
    /// `sync_data` (and one on the backup copy). Returns the durable sequence. After a failed
    /// write the journal refuses further work: what reached the disk is unknown until it is
    /// reopened and scanned.
    pub fn commit(&mut self) -> Result<u64, JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        if self.buffer.is_empty() {
            return Ok(self.durable_sequence);
        }
        self.seal();
        self.poisoned = true;
        let header_only = self.segment_len == SEGMENT_HEADER_BYTES as u64;
        if !header_only && self.segment_len + self.buffer.len() as u64 > self.segment_limit() {
            self.roll_segment()?;
        } else if !header_only
            && self.leaving_appends()
            && self.prepared.as_ref().is_some_and(|helper| helper.thread.is_finished())
            && !self.roll_to_prepared()?
        {
            // The helper failed (a full disk, say): this segment goes on by appends.
            self.appends_kept = true;
        }
        let path = self.dir.join(segment_name(self.segment_number));
        match self.direct.as_mut() {
            Some(direct) => direct.write(&self.buffer),
            None => self.file.write_all(&self.buffer),
        }
        .map_err(JournalError::io(&path))?;
        if let Some(backup) = self.backup.as_mut() {
            let backup_path = self
                .options
                .backup_dir
                .as_deref()
                .unwrap_or(Path::new(""))
                .join(segment_name(self.segment_number));
            backup.write_all(&self.buffer).map_err(JournalError::io(&backup_path))?;
            backup.sync_data().map_err(JournalError::io(&backup_path))?;
        }
        self.file.sync_data().map_err(JournalError::io(&path))?;
        self.segment_len += self.buffer.len() as u64;
        self.buffer.clear();
        self.written = self.state;
        self.durable_sequence = self.state.sequence;
        self.poisoned = false;
        self.prepare_next_segment();
        Ok(self.durable_sequence)
    }

    /// Where the current segment ends: `segment_bytes_max`, or the end of its preallocated
    /// file when that is shorter (made under a smaller setting), so that records never go
    /// past the zeros into space that must be allocated as it is written.
    fn segment_limit(&self) -> u64 {
        match self.segment_capacity {
            0 => self.options.segment_bytes_max,
            capacity => capacity.min(self.options.segment_bytes_max),
        }
    }

    /// Whether the current segment grows by appends while preallocation is on (a segment
    /// reopened after a torn tail, the last of a journal rebuilt from a backup's copies, one
    /// the helper had not finished in time) and no helper has failed to replace it: the
    /// journal then moves to a preallocated segment as soon as the helper has one ready, not
    /// after `segment_bytes_max` bytes of slower syncs.
    fn leaving_appends(&self) -> bool {
        self.options.preallocate && self.segment_capacity == 0 && !self.appends_kept
    }

    /// Once the current segment is an eighth full (at once when `leaving_appends`), starts a
    /// helper thread writing the next segment's zero-filled file, paced (`PREPARE_SYNC_BYTES`):
    /// early, so that a gentle pace still finishes before the roll.
    fn prepare_next_segment(&mut self) {
        if !self.options.preallocate
            || self.prepared.is_some()
            || (self.segment_len < self.segment_limit() / 8 && !self.leaving_appends())
        {
            return;
        }
        let path = self.dir.join(PREPARED_NAME);
        let bytes = self.options.segment_bytes_max;
        let direct = self.options.direct_io;
        let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = cancel.clone();
        let spawned =
            std::thread::Builder::new().name(format!("segment-{}", self.tenant)).spawn(move || {
                // Below the latency path, whose writer thread starts this one, but not
                // preempted by normal threads while it holds the file system's locks.
                keel_sched::enter(keel_sched::Role::Writer);
                write_zeros(&path, bytes, direct, &stop)
            });
        match spawned {
            Ok(thread) => self.prepared = Some(Helper { thread, cancel }),
            // No thread to spare: the next segment grows by appends instead.
            Err(_) => self.options.preallocate = false,
        }
    }

    /// Waits for the helper writing the next segment's file, if one is running, so that the
    /// next segment is sure to be preallocated: for tests and benchmarks that need it to be.
    pub fn await_prepared_segment(&self) {
        if let Some(helper) = &self.prepared {
            while !helper.thread.is_finished() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }

    /// The helper's file installed as segment `number` (`install_prepared`), if the helper
    /// has finished it without error.
    fn take_prepared(
        &mut self,
        number: u32,
        header: &[u8; SEGMENT_HEADER_BYTES],
    ) -> Result<Option<SegmentFiles>, JournalError> {
        if !self.prepared.as_ref().is_some_and(|helper| helper.thread.is_finished()) {
            return Ok(None);
        }
        let helper = self.prepared.take().unwrap_or_else(|| unreachable!("checked above"));
        let prepared = self.dir.join(PREPARED_NAME);
        let finished =
            helper.thread.join().unwrap_or_else(|_| Err(std::io::Error::other("panicked")));
        let Ok(zeros_direct) = finished else {
            // A full disk, say: the segment is created by appends instead; what the helper
            // left is removed so that it does not take up the space.
            let _ = std::fs::remove_file(&prepared);
            return Ok(None);
        };
        if !zeros_direct {
            // The file system took no direct write from the helper: the journal stays buffered.
            self.options.direct_io = false;
        }
        install_prepared(&self.dir, &self.options, number, header).map(Some)
    }

    /// Closes the current segment and starts the next, preallocated if the helper has it
    /// ready, else grown by appends; the buffered records go to the new one.
    fn roll_segment(&mut self) -> Result<(), JournalError> {
        if self.roll_to_prepared()? {
            return Ok(());
        }
        let number = self.segment_number + 1;
        let files =
            Self::new_segment_files(&self.dir, self.tenant, &self.options, number, self.written)?;
        self.start_segment(number, files);
        Ok(())
    }

    /// Closes the current segment and starts the next in the helper's file, if the helper has
    /// finished it without error; false (nothing changed) otherwise.
    fn roll_to_prepared(&mut self) -> Result<bool, JournalError> {
        let number = self.segment_number + 1;
        let header = segment_header(self.tenant, number, self.written);
        let Some(files) = self.take_prepared(number, &header)? else { return Ok(false) };
        self.start_segment(number, files);
        Ok(true)
    }

    fn start_segment(&mut self, number: u32, files: SegmentFiles) {
        self.file = files.file;
        self.direct = files.direct;
        self.backup = files.backup;
        self.segment_number = number;
        self.segment_len = SEGMENT_HEADER_BYTES as u64;
        self.segment_capacity = files.capacity;
        self.appends_kept = false;
    }

    /// Appends commands and commits them: one write and one `sync_data` for the whole batch.
    pub fn append_batch<'a>(
        &mut self,
        commands: impl IntoIterator<Item = (u64, &'a [u8])>,
    ) -> Result<u64, JournalError> {
        for (sequence, payload) in commands {
            self.append_command(sequence, payload)?;
        }
        self.commit()
    }
}

/// The header of segment `number`, which starts after the chain stood at `state`.
fn segment_header(tenant: TenantId, number: u32, state: ChainState) -> [u8; SEGMENT_HEADER_BYTES] {
    SegmentHeader {
        number,
        prev_sequence: state.sequence,
        tenant: tenant_bytes(tenant),
        prev_chain: state.chain,
    }
    .encode()
}

/// Renames the zero-filled `PREPARED_NAME` file in `dir` (`segment_bytes_max` long) into place
/// as segment `number`, its header written (direct when `direct_io`) and synced first, and
/// creates its backup twin: the segment's records then go into space that is already
/// allocated and written.
fn install_prepared(
    dir: &Path,
    options: &JournalOptions,
    number: u32,
    header: &[u8; SEGMENT_HEADER_BYTES],
) -> Result<SegmentFiles, JournalError> {
    let prepared = dir.join(PREPARED_NAME);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&prepared)
        .map_err(JournalError::io(&prepared))?;
    // Direct, when the records will be: a buffered write of part of a page the helper
    // wrote direct would read that page from the disk first.
    let mut direct =
        options.direct_io.then(|| DirectSegment::open(&prepared, 0, &[], false)).flatten();
    match direct.as_mut() {
        Some(direct) => direct.write(header),
        None => file.write_all(header),
    }
    .map_err(JournalError::io(&prepared))?;
    file.sync_data().map_err(JournalError::io(&prepared))?;
    let path = dir.join(segment_name(number));
    std::fs::rename(&prepared, &path).map_err(JournalError::io(&path))?;
    sync_dir(dir)?;
    let backup = match options.backup_dir.as_deref() {
        Some(backup_dir) => Some(create_segment_file(backup_dir, number, header)?),
        None => None,
    };
    Ok(SegmentFiles { file, direct, backup, capacity: options.segment_bytes_max })
}

/// Creates segment `number` in `dir` holding only its header, durably (file and directory).
fn create_segment_file(
    dir: &Path,
    number: u32,
    header: &[u8; SEGMENT_HEADER_BYTES],
) -> Result<File, JournalError> {
    std::fs::create_dir_all(dir).map_err(JournalError::io(dir))?;
    let path = dir.join(segment_name(number));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(JournalError::io(&path))?;
    file.write_all(header).map_err(JournalError::io(&path))?;
    file.sync_all().map_err(JournalError::io(&path))?;
    sync_dir(dir)?;
    Ok(file)
}

/// Writes `bytes` zero bytes to a new file at `path` (replacing any), synced, paced so that
/// the journals' own syncs are not queued behind it; with `direct`, in whole pages that bypass
/// the page cache where the file system allows it. Returns whether every write was direct: a
/// direct write the file system refuses (an alignment it does not take, say) is done again
/// buffered, and so is the rest. Stops with an error once `cancel` is set.
fn write_zeros(
    path: &Path,
    bytes: u64,
    direct: bool,
    cancel: &std::sync::atomic::AtomicBool,
) -> std::io::Result<bool> {
    use std::io::Seek;
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
    let zeros = crate::direct::AlignedBuf::zeroed(PREPARE_SYNC_BYTES)
        .ok_or_else(|| std::io::Error::other("no aligned buffer for the zeros"))?;
    // Whole pages (a direct write's unit; the segment may end part way through its last).
    let mut direct =
        direct.then(|| crate::direct::open_direct(path)).flatten().map(|file| (file, 0_u64));
    let mut left = bytes;
    while left > 0 {
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(std::io::Error::other("the journal closed"));
        }
        let chunk = left.min(PREPARE_SYNC_BYTES as u64) as usize;
        let pages = chunk.next_multiple_of(DIRECT_ALIGN);
        let started = std::time::Instant::now();
        let written_direct = match direct.as_mut() {
            Some((direct, offset)) => {
                use std::os::unix::fs::FileExt;
                let written = direct.write_all_at(&zeros.as_slice()[..pages], *offset).is_ok();
                *offset += if written { pages as u64 } else { 0 };
                written
            }
            None => false,
        };
        if !written_direct {
            if let Some((_, offset)) = direct.take() {
                // Refused: this step again, and the rest, through the page cache.
                file.seek(std::io::SeekFrom::Start(offset))?;
            }
            file.write_all(&zeros.as_slice()[..chunk])?;
        }
        file.sync_data()?;
        // Parked rather than asleep, so that a closing journal can wake it (`Drop`).
        std::thread::park_timeout(started.elapsed() * PREPARE_PAUSE_FACTOR);
        left -= chunk as u64;
    }
    let all_direct = direct.is_some();
    if all_direct {
        // The last page written whole, past `bytes` when that is not a multiple of it.
        file.set_len(bytes)?;
    }
    file.sync_all()?;
    Ok(all_direct)
}

/// Makes a directory entry (a new or removed file) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(JournalError::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The helper's file is `bytes` zeros whether written direct or buffered, also when `bytes`
    /// ends part way through a page (the direct writer's last page is trimmed back).
    #[test]
    fn prepared_zeros_are_the_same_file_direct_or_buffered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let never = std::sync::atomic::AtomicBool::new(false);
        for bytes in [0, 1, 4096, PREPARE_SYNC_BYTES as u64 + 100, 3 * PREPARE_SYNC_BYTES as u64] {
            for direct in [false, true] {
                let path = dir.path().join(format!("zeros-{bytes}-{direct}"));
                let wrote_direct = write_zeros(&path, bytes, direct, &never).expect("zeros");
                assert!(direct || !wrote_direct, "buffered when not asked for direct");
                let on_disk = std::fs::read(&path).expect("read");
                assert_eq!(on_disk.len() as u64, bytes, "{bytes} direct={direct}");
                assert!(on_disk.iter().all(|&byte| byte == 0), "{bytes} direct={direct}");
            }
        }
    }

    /// A closing journal stops its helper between steps, with an error and nothing claimed.
    #[test]
    fn a_cancelled_helper_stops_with_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cancelled = std::sync::atomic::AtomicBool::new(true);
        for direct in [false, true] {
            let path = dir.path().join(format!("zeros-{direct}"));
            assert!(write_zeros(&path, 1 << 20, direct, &cancelled).is_err());
        }
    }
}
