//! Reading a journal with every check, from the start or from a snapshot's position.

use std::path::Path;

use keel_domain::TenantId;

use crate::error::{Corruption, JournalError, Location};
use crate::format::{genesis, ChainHash, SEGMENT_HEADER_BYTES};
use crate::scan::{scan_segment, ChainState, RecordRef, RepairedSeal, TornTail, Trust};
use crate::segments::{check_header, list_segments};

/// Where to start: after the record carrying this sequence whose chain value is `chain` (a
/// snapshot's position: the last record before it, a command or the checkpoint after it). The
/// journal must contain that record; `None` reads from the first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartAfter {
    pub sequence: u64,
    pub chain: ChainHash,
}

/// What a read covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadSummary {
    pub segments: u32,
    /// Records checked (including those before the start point in its segment).
    pub records: u64,
    /// Where the chain ends.
    pub last_sequence: u64,
    pub last_chain: ChainHash,
    /// A torn tail in the last segment (a journal not reopened since a crash).
    pub torn_tail: Option<TornTail>,
    /// A final seal whose damaged header its chain value proves (rewritten when the journal is
    /// next opened for appending).
    pub repaired_seal: Option<RepairedSeal>,
}

/// Reads the journal in `dir`, checking segment order and headers, every record's header,
/// checksum, sequence and chain, and (with `Trust::Key`) every checkpoint signature. Records
/// after `start` are passed to `visit` in order; `progress` hears the bytes of each segment
/// as it is finished.
pub fn read_journal<E: From<JournalError>>(
    dir: &Path,
    tenant: TenantId,
    trust: Trust,
    start: Option<StartAfter>,
    mut progress: impl FnMut(u64),
    mut visit: impl FnMut(&RecordRef<'_>) -> Result<(), E>,
) -> Result<ReadSummary, E> {
    let segments = list_segments(dir)?;
    let mut state = ChainState { chain: genesis(tenant), sequence: 0 };
    let mut records = 0;
    let mut torn_tail = None;
    let mut repaired_seal = None;
    let after = start.map_or(0, |s| s.sequence);
    let mut start_seen = start.is_none() || after == 0;
    let count = segments.len();
    // One buffer for every segment: a fresh 64 MiB allocation per segment would fault in
    // fresh pages each time.
    let mut buffer = Vec::new();
    for (index, (number, path)) in segments.iter().enumerate() {
        buffer.clear();
        std::fs::File::open(path)
            .and_then(|mut file| std::io::Read::read_to_end(&mut file, &mut buffer))
            .map_err(JournalError::io(path))?;
        let bytes = &buffer[..];
        let last = index + 1 == count;
        if bytes.len() < SEGMENT_HEADER_BYTES && last {
            let reason = "segment header cut short".to_owned();
            torn_tail = Some(TornTail {
                segment: path.clone(),
                offset: 0,
                bytes: bytes.len() as u64,
                reason,
            });
            break;
        }
        let header = check_header(path, bytes, *number, tenant)?;
        // Skip whole segments that end before the start point; their successor's header
        // says where the chain stood.
        if let Some((_, next)) = segments.get(index + 1) {
            if let Some(next_header) = peek_header(next, number + 1, tenant)? {
                if next_header.prev_sequence < after
                    || (next_header.prev_sequence == after
                        && after > 0
                        && start_seen_at(&next_header, start))
                {
                    progress(bytes.len() as u64);
                    state = ChainState {
                        chain: next_header.prev_chain,
                        sequence: next_header.prev_sequence,
                    };
                    start_seen = start_seen || next_header.prev_sequence >= after;
                    continue;
                }
            }
        }
        let continuity = ChainState { chain: header.prev_chain, sequence: header.prev_sequence };
        if continuity != state {
            let location =
                Location { segment: path.clone(), offset: 0, sequence: Some(header.prev_sequence) };
            return Err(
                JournalError::Corrupt { location, corruption: Corruption::ChainBroken }.into()
            );
        }
        let end = scan_segment(
            path,
            bytes,
            SEGMENT_HEADER_BYTES,
            tenant,
            state,
            last,
            trust,
            |record| {
                if !start_seen {
                    if record.sequence > after {
                        // Passed the snapshot's sequence without meeting its chain value.
                        let location = Location {
                            segment: path.clone(),
                            offset: record.offset,
                            sequence: Some(record.sequence),
                        };
                        let corruption = Corruption::Snapshot("the journal's chain at the snapshot's sequence differs from the snapshot's".into());
                        return Err(JournalError::Corrupt { location, corruption }.into());
                    }
                    if record.sequence == after && start.is_some_and(|s| s.chain == record.chain) {
                        start_seen = true;
                    }
                    return Ok(());
                }
                if record.sequence <= after {
                    return Ok(());
                }
                visit(record)
            },
        )?;
        records += end.records;
        state = end.state;
        torn_tail = end.torn;
        repaired_seal = end.repaired;
        progress(bytes.len() as u64);
    }
    if !start_seen {
        let location = Location { segment: dir.to_path_buf(), offset: 0, sequence: Some(after) };
        let corruption = Corruption::Snapshot(format!(
            "the journal ends before the snapshot's sequence {after}"
        ));
        return Err(JournalError::Corrupt { location, corruption }.into());
    }
    Ok(ReadSummary {
        segments: count as u32,
        records,
        last_sequence: state.sequence,
        last_chain: state.chain,
        torn_tail,
        repaired_seal,
    })
}

/// A skipped segment boundary at exactly the start sequence still proves the start's chain:
/// the next segment's header carries it.
fn start_seen_at(next: &crate::format::SegmentHeader, start: Option<StartAfter>) -> bool {
    start.is_some_and(|start| next.prev_chain == start.chain)
}

fn peek_header(
    path: &Path,
    number: u32,
    tenant: TenantId,
) -> Result<Option<crate::format::SegmentHeader>, JournalError> {
    use std::io::Read;
    let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
    let mut file = std::fs::File::open(path).map_err(JournalError::io(path))?;
    match file.read_exact(&mut bytes) {
        Ok(()) => check_header(path, &bytes, number, tenant).map(Some),
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(error) => Err(JournalError::Io { path: path.to_path_buf(), source: error }),
    }
}

/// Total bytes of a journal's segments, for progress bars.
pub fn journal_bytes(dir: &Path) -> Result<u64, JournalError> {
    let mut total = 0;
    for (_, path) in list_segments(dir)? {
        total += std::fs::metadata(&path).map_err(JournalError::io(&path))?.len();
    }
    Ok(total)
}
