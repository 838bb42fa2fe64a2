//! Walking a segment's records with every check: header, payload checksum, sequence, chain,
//! checkpoint signature. Shared by the writer (to find the tail on open) and the reader.

use std::path::Path;

use ed25519_dalek::{Signature, VerifyingKey};
use keel_domain::TenantId;

use crate::error::{Corruption, JournalError, Location};
use crate::format::{
    decode_record_header, is_chained, is_unwritten, ChainHash, RecordHeader, RecordKind,
    RECORD_HEADER_BYTES,
};
use crate::keys::{checkpoint_message, state_hash_message};

/// A record as read, borrowing its payload from the segment buffer.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub segment: &'a Path,
    pub offset: u64,
    /// The format version the record was written in (it says how a command payload is encoded).
    pub version: u8,
    pub kind: RecordKind,
    pub sequence: u64,
    /// The chain value that vouches for the record: its own, or for a command of format
    /// version 5 on, that of the seal closing its group commit.
    pub chain: ChainHash,
    pub payload: &'a [u8],
}

/// A checkpoint record's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub state_hash: [u8; 32],
    pub public_key: [u8; 32],
    pub signature: [u8; 64],
}

pub const CHECKPOINT_PAYLOAD_BYTES: usize = 128;

/// A checkpoint's `state_hash` when it carries none.
pub const NO_STATE_HASH: [u8; 32] = [0; 32];
/// A checkpoint's `state_hash` when the state hash after its sequence is being computed off the
/// shard thread and follows in a `StateHash` record (format version 2).
pub const DEFERRED_STATE_HASH: [u8; 32] = [0xff; 32];

/// What a checkpoint says about the state after its sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateClaim {
    None,
    /// A `StateHash` record later in the journal carries it.
    Deferred,
    Hash([u8; 32]),
}

impl StateClaim {
    pub fn encode(self) -> [u8; 32] {
        match self {
            StateClaim::None => NO_STATE_HASH,
            StateClaim::Deferred => DEFERRED_STATE_HASH,
            StateClaim::Hash(hash) => hash,
        }
    }

    pub fn decode(state_hash: [u8; 32]) -> StateClaim {
        match state_hash {
            NO_STATE_HASH => StateClaim::None,
            DEFERRED_STATE_HASH => StateClaim::Deferred,
            hash => StateClaim::Hash(hash),
        }
    }
}

/// A `StateHash` record's payload: the state hash after command `sequence`, which an earlier
/// checkpoint deferred, signed like a checkpoint (over the tenant, `sequence`, the chain before
/// this record and the hash, under its own domain label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateHashRecord {
    pub sequence: u64,
    pub checkpoint: Checkpoint,
}

pub const STATE_HASH_PAYLOAD_BYTES: usize = 8 + CHECKPOINT_PAYLOAD_BYTES;

impl StateHashRecord {
    pub fn encode(&self) -> [u8; STATE_HASH_PAYLOAD_BYTES] {
        let mut bytes = [0u8; STATE_HASH_PAYLOAD_BYTES];
        bytes[..8].copy_from_slice(&self.sequence.to_le_bytes());
        bytes[8..].copy_from_slice(&self.checkpoint.encode());
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Option<StateHashRecord> {
        if bytes.len() != STATE_HASH_PAYLOAD_BYTES {
            return None;
        }
        let mut sequence = [0u8; 8];
        sequence.copy_from_slice(&bytes[..8]);
        let checkpoint = Checkpoint::decode(&bytes[8..])?;
        Some(StateHashRecord { sequence: u64::from_le_bytes(sequence), checkpoint })
    }
}

impl Checkpoint {
    pub fn encode(&self) -> [u8; CHECKPOINT_PAYLOAD_BYTES] {
        let mut bytes = [0u8; CHECKPOINT_PAYLOAD_BYTES];
        bytes[..32].copy_from_slice(&self.state_hash);
        bytes[32..64].copy_from_slice(&self.public_key);
        bytes[64..].copy_from_slice(&self.signature);
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Option<Checkpoint> {
        if bytes.len() != CHECKPOINT_PAYLOAD_BYTES {
            return None;
        }
        let mut checkpoint =
            Checkpoint { state_hash: [0; 32], public_key: [0; 32], signature: [0; 64] };
        checkpoint.state_hash.copy_from_slice(&bytes[..32]);
        checkpoint.public_key.copy_from_slice(&bytes[32..64]);
        checkpoint.signature.copy_from_slice(&bytes[64..]);
        Some(checkpoint)
    }
}

/// How checkpoint signatures are checked.
#[derive(Debug, Clone, Copy)]
pub enum Trust {
    /// Signatures must verify under this key (`keel journal verify`, replay).
    Key(VerifyingKey),
    /// Signatures are not checked (opening for append, `dump`).
    Unchecked,
}

/// Where the chain stands: after the last good record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainState {
    pub chain: ChainHash,
    /// Sequence of the last command record.
    pub sequence: u64,
}

/// A torn tail: the bytes from `offset` to the end of the last segment, cut by a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub segment: std::path::PathBuf,
    pub offset: u64,
    pub bytes: u64,
    pub reason: String,
}

/// The end of a scanned segment.
#[derive(Debug)]
pub struct ScanEnd {
    pub state: ChainState,
    pub records: u64,
    /// Offset just after the last good record.
    pub end: u64,
    pub torn: Option<TornTail>,
    pub repaired: Option<RepairedSeal>,
}

/// The journal's final seal with a damaged header (a flipped bit: the page was written) whose
/// chain value still proves its group: BLAKE3 over the previous chain, every command of the
/// group and the seal header rebuilt from their last sequence gives the stored value. The
/// group is kept, where a torn tail would drop it with its acknowledged commands, and
/// `Journal::open` writes `header` back in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairedSeal {
    pub segment: std::path::PathBuf,
    pub offset: u64,
    /// The last command of the group.
    pub sequence: u64,
    pub header: [u8; RECORD_HEADER_BYTES],
    pub fault: String,
}

/// Scans the records of one segment. `bytes` is the whole segment file and `start` the offset
/// of its first record. In the last segment a damaged final record is a torn tail (reported,
/// not an error); anywhere else every fault is corruption.
///
/// From format version 5 a command is chained by the seal (or other chained record) after it,
/// so commands are passed to `visit` only once that record has verified them, each with its
/// chain value. Commands with no seal after them at the end of the last segment are a group
/// commit that never finished: a torn tail from the first of them.
#[allow(
    clippy::too_many_arguments,
    reason = "a scan needs each of these; a struct would only rename them"
)]
pub fn scan_segment<E: From<JournalError>>(
    path: &Path,
    bytes: &[u8],
    start: usize,
    tenant: TenantId,
    mut state: ChainState,
    last_segment: bool,
    trust: Trust,
    mut visit: impl FnMut(&RecordRef<'_>) -> Result<(), E>,
) -> Result<ScanEnd, E> {
    let mut offset = start;
    let mut records = 0;
    // Commands read since the last chained record, not yet verified by a seal.
    let mut pending: Vec<(usize, RecordHeader)> = Vec::new();
    // The last command read, sealed or not.
    let mut last_command = state.sequence;
    let corrupt =
        |offset: usize, sequence: Option<u64>, corruption: Corruption| JournalError::Corrupt {
            location: Location { segment: path.to_path_buf(), offset: offset as u64, sequence },
            corruption,
        };
    // A torn tail found at `offset`: it starts with the unfinished group's first command.
    let torn_end = |state: ChainState,
                    records: u64,
                    pending: &[(usize, RecordHeader)],
                    offset: usize,
                    reason: String| {
        let from = pending.first().map_or(offset, |(at, _)| *at);
        let reason = match pending.len() {
            0 => reason,
            n => format!("{reason}; the group's {n} earlier command(s), never sealed, go with it"),
        };
        let torn = TornTail {
            segment: path.to_path_buf(),
            offset: from as u64,
            bytes: (bytes.len() - from) as u64,
            reason,
        };
        ScanEnd { state, records, end: from as u64, torn: Some(torn), repaired: None }
    };
    let mut repaired = None;
    while offset < bytes.len() {
        // Preallocated space that no record has reached yet: the clean end of the segment.
        // (In a closed segment too: the next segment's header says where the chain stood, so
        // a record lost to zeros there breaks the chain at that header.)
        if bytes[offset] == 0 && is_unwritten(&bytes[offset..]) {
            break;
        }
        let end_of = |header: &RecordHeader| offset + RECORD_HEADER_BYTES + header.length as usize;
        let header = match bytes.get(offset..offset + RECORD_HEADER_BYTES).map(decode_record_header)
        {
            None if last_segment => {
                return Ok(torn_end(
                    state,
                    records,
                    &pending,
                    offset,
                    "record header cut short".to_owned(),
                ));
            }
            None => return Err(corrupt(offset, None, Corruption::Truncated).into()),
            Some(Err(fault)) => {
                // The final seal, with a flipped bit in its header and a chain value that
                // proves its group: kept, and rebuilt (`Journal::open` writes it back).
                let proven =
                    if last_segment { proven_seal(bytes, offset, &state, &pending) } else { None };
                if let Some((header, chain)) = proven {
                    let sequence = last_command;
                    records += visit_group(path, bytes, &mut pending, chain, &mut visit)?;
                    visit(&RecordRef {
                        segment: path,
                        offset: offset as u64,
                        version: crate::format::FORMAT_VERSION,
                        kind: RecordKind::Seal,
                        sequence,
                        chain,
                        payload: &[],
                    })?;
                    records += 1;
                    state = ChainState { chain, sequence };
                    repaired = Some(RepairedSeal {
                        segment: path.to_path_buf(),
                        offset: offset as u64,
                        sequence,
                        header,
                        fault: fault.to_string(),
                    });
                    offset += RECORD_HEADER_BYTES;
                    continue;
                }
                let reason = if lost_page(bytes, offset, offset + RECORD_HEADER_BYTES) {
                    Some(format!("{fault}: the page it starts in was never written"))
                } else if !any_record_after(bytes, offset + 1) {
                    Some(format!("{fault} and nothing valid follows"))
                } else {
                    None
                };
                if let (true, Some(reason)) = (last_segment, reason) {
                    return Ok(torn_end(state, records, &pending, offset, reason));
                }
                return Err(corrupt(offset, None, Corruption::Header(fault.to_string())).into());
            }
            Some(Ok(header)) => header,
        };
        let end = end_of(&header);
        let sequence = Some(header.sequence);
        if end > bytes.len() {
            if last_segment {
                return Ok(torn_end(
                    state,
                    records,
                    &pending,
                    offset,
                    "record payload cut short".to_owned(),
                ));
            }
            return Err(corrupt(offset, sequence, Corruption::Truncated).into());
        }
        let payload = &bytes[offset + RECORD_HEADER_BYTES..end];
        if crc32c::crc32c(payload) != header.payload_crc {
            let reason = if is_unwritten(&bytes[end..]) {
                Some("payload checksum of the final record does not match")
            } else if lost_page(bytes, offset, end) {
                Some("payload checksum does not match: a page of the record was never written")
            } else {
                None
            };
            if let (true, Some(reason)) = (last_segment, reason) {
                return Ok(torn_end(state, records, &pending, offset, reason.to_owned()));
            }
            return Err(corrupt(offset, sequence, Corruption::PayloadChecksum).into());
        }
        let expected = match header.kind {
            RecordKind::Command => last_command + 1,
            RecordKind::Checkpoint | RecordKind::StateHash | RecordKind::Seal => last_command,
        };
        if header.sequence != expected {
            let found = header.sequence;
            return Err(corrupt(offset, sequence, Corruption::Sequence { expected, found }).into());
        }
        last_command = header.sequence;
        if !is_chained(header.version, header.kind) {
            pending.push((offset, header));
            offset = end;
            continue;
        }
        let from = pending.first().map_or(offset, |(at, _)| *at);
        if from < offset && header.kind != RecordKind::Seal {
            // A checkpoint signs the chain before it, so the writer seals first.
            let commands = pending.len() as u64;
            return Err(corrupt(offset, sequence, Corruption::Unsealed { commands }).into());
        }
        let chain = crate::format::chain_hash(
            &state.chain,
            &bytes[from..offset],
            &bytes[offset..offset + 32],
            payload,
        );
        if chain != header.chain {
            return Err(corrupt(offset, sequence, Corruption::ChainBroken).into());
        }
        match header.kind {
            RecordKind::Command | RecordKind::Seal => {}
            RecordKind::Checkpoint => {
                verify_checkpoint(tenant, header.sequence, &state.chain, payload, trust)
                    .map_err(|corruption| corrupt(offset, sequence, corruption))?;
            }
            RecordKind::StateHash => {
                verify_state_hash(tenant, header.sequence, &state.chain, payload, trust)
                    .map_err(|corruption| corrupt(offset, sequence, corruption))?;
            }
        }
        // The seal vouches for its group: pass the commands on, then the seal itself.
        records += visit_group(path, bytes, &mut pending, chain, &mut visit)?;
        visit(&RecordRef {
            segment: path,
            offset: offset as u64,
            version: header.version,
            kind: header.kind,
            sequence: header.sequence,
            chain,
            payload,
        })?;
        state = ChainState { chain, sequence: header.sequence };
        records += 1;
        offset = end;
    }
    if let Some((at, first)) = pending.first() {
        let commands = pending.len() as u64;
        if last_segment {
            let reason = format!(
                "{commands} commands from sequence {} have no seal after them: their group \
                 commit never finished",
                first.sequence
            );
            return Ok(torn_end(state, records, &[], *at, reason));
        }
        return Err(corrupt(*at, Some(first.sequence), Corruption::Unsealed { commands }).into());
    }
    Ok(ScanEnd { state, records, end: offset as u64, torn: None, repaired })
}

/// Passes the commands of a group that its seal (or checkpoint) has just verified to `visit`,
/// each with that record's chain value, and empties `pending`. Returns how many.
fn visit_group<E>(
    path: &Path,
    bytes: &[u8],
    pending: &mut Vec<(usize, RecordHeader)>,
    chain: ChainHash,
    visit: &mut impl FnMut(&RecordRef<'_>) -> Result<(), E>,
) -> Result<u64, E> {
    let count = pending.len() as u64;
    for (at, command) in pending.drain(..) {
        let from = at + RECORD_HEADER_BYTES;
        visit(&RecordRef {
            segment: path,
            offset: at as u64,
            version: command.version,
            kind: command.kind,
            sequence: command.sequence,
            chain,
            payload: &bytes[from..from + command.length as usize],
        })?;
    }
    Ok(count)
}

/// The whole header, and its chain value, that a damaged record at `offset` would have as the
/// seal of the `pending` commands, when that is what it is: the final record of the segment (only zeros, or nothing,
/// after its 64 bytes), on a page that was written, and with a stored chain value equal to the
/// one its group and the rebuilt header give. A BLAKE3 match is proof: no crash or flipped bit
/// makes one by chance.
fn proven_seal(
    bytes: &[u8],
    offset: usize,
    state: &ChainState,
    pending: &[(usize, RecordHeader)],
) -> Option<([u8; RECORD_HEADER_BYTES], ChainHash)> {
    let (first, _) = pending.first()?;
    let (_, last) = pending.last()?;
    let end = offset + RECORD_HEADER_BYTES;
    if end > bytes.len() || !is_unwritten(&bytes[end..]) || lost_page(bytes, offset, end) {
        return None;
    }
    let rebuilt = crate::format::seal_header(last.sequence);
    let chain = crate::format::chain_hash(&state.chain, &bytes[*first..offset], &rebuilt, &[]);
    if bytes[offset + 32..end] != chain {
        return None;
    }
    let mut header = [0u8; RECORD_HEADER_BYTES];
    header[..32].copy_from_slice(&rebuilt);
    header[32..].copy_from_slice(&chain);
    Some((header, chain))
}

fn verify_checkpoint(
    tenant: TenantId,
    sequence: u64,
    prev_chain: &ChainHash,
    payload: &[u8],
    trust: Trust,
) -> Result<(), Corruption> {
    let Trust::Key(trusted) = trust else { return Ok(()) };
    let checkpoint = Checkpoint::decode(payload).ok_or(Corruption::CheckpointMalformed)?;
    let message = checkpoint_message(tenant, sequence, prev_chain, &checkpoint.state_hash);
    verify_signature(trusted, &checkpoint, &message)
}

/// `checkpoint` must be signed by the trusted key over `message`.
fn verify_signature(
    trusted: VerifyingKey,
    checkpoint: &Checkpoint,
    message: &[u8],
) -> Result<(), Corruption> {
    if checkpoint.public_key != *trusted.as_bytes() {
        return Err(Corruption::UntrustedKey(crate::keys::hex(&checkpoint.public_key)));
    }
    trusted
        .verify_strict(message, &Signature::from_bytes(&checkpoint.signature))
        .map_err(|_| Corruption::CheckpointSignature)
}

/// A state-hash record must attest a sequence already in the journal and, when signatures are
/// checked, be signed by the trusted key over its own domain label.
fn verify_state_hash(
    tenant: TenantId,
    at: u64,
    prev_chain: &ChainHash,
    payload: &[u8],
    trust: Trust,
) -> Result<(), Corruption> {
    let record = StateHashRecord::decode(payload).ok_or(Corruption::CheckpointMalformed)?;
    if record.sequence > at {
        return Err(Corruption::StateHashAhead { attested: record.sequence, at });
    }
    let Trust::Key(trusted) = trust else { return Ok(()) };
    let checkpoint = record.checkpoint;
    let message = state_hash_message(tenant, record.sequence, prev_chain, &checkpoint.state_hash);
    verify_signature(trusted, &checkpoint, &message)
}

/// The unit in which a crash can leave a write half done: each page of a write either reached
/// the disk or did not, in any order.
const PAGE_BYTES: usize = 4096;

/// Whether a page overlapping `from..to` was never written from `from` (or the page's start)
/// to the page's end: the mark of a write into preallocated space cut short by a crash, where
/// later pages of the same write may have reached the disk. A flipped bit never looks like
/// this.
fn lost_page(bytes: &[u8], from: usize, to: usize) -> bool {
    let to = to.min(bytes.len());
    let mut page = from - from % PAGE_BYTES;
    while page < to {
        let start = page.max(from);
        let stop = (page + PAGE_BYTES).min(bytes.len());
        if start < stop && is_unwritten(&bytes[start..stop]) {
            return true;
        }
        page += PAGE_BYTES;
    }
    false
}

/// True when a well-formed record header starts anywhere at or after `from`: then a damaged
/// header before it is corruption in the middle of the journal, not a torn tail.
fn any_record_after(bytes: &[u8], from: usize) -> bool {
    let magic = crate::format::RECORD_MAGIC;
    let mut at = from;
    while at + RECORD_HEADER_BYTES <= bytes.len() {
        match bytes[at..].windows(4).position(|window| window == magic) {
            None => return false,
            Some(found) => {
                let candidate = at + found;
                if candidate + RECORD_HEADER_BYTES <= bytes.len()
                    && decode_record_header(&bytes[candidate..candidate + RECORD_HEADER_BYTES])
                        .is_ok()
                {
                    return true;
                }
                at = candidate + 1;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{hex, NodeKey};

    /// Pins the version-2 additions (docs/journal-format.md): the deferred marker, the
    /// state-hash payload layout and its signed message's label. A failure here is a format
    /// change: bump FORMAT_VERSION.
    #[test]
    fn state_hash_record_golden_bytes() {
        assert_eq!(StateClaim::decode([0xff; 32]), StateClaim::Deferred);
        assert_eq!(StateClaim::decode([0; 32]), StateClaim::None);
        assert_eq!(StateClaim::decode([9; 32]), StateClaim::Hash([9; 32]));
        let record = StateHashRecord {
            sequence: 0x0102_0304,
            checkpoint: Checkpoint {
                state_hash: [0xaa; 32],
                public_key: [0xbb; 32],
                signature: [0xcc; 64],
            },
        };
        let bytes = record.encode();
        assert_eq!(bytes.len(), 136);
        assert_eq!(hex(&bytes[..8]), "0403020100000000", "attested sequence, little-endian");
        assert_eq!((bytes[8], bytes[40], bytes[72], bytes[135]), (0xaa, 0xbb, 0xcc, 0xcc));
        assert_eq!(StateHashRecord::decode(&bytes), Some(record));
        assert_eq!(StateHashRecord::decode(&bytes[..135]), None);
        let tenant: TenantId = "demo".parse().expect("tenant");
        let message = state_hash_message(tenant, 7, &[1; 32], &[2; 32]);
        assert_eq!(&message[..24], b"keel state hash v1\0\0\0\0\0\0");
        assert_ne!(message, checkpoint_message(tenant, 7, &[1; 32], &[2; 32]));
    }

    /// A state-hash record verifies under the node key, names what is wrong otherwise, and a
    /// checkpoint's signature does not pass for a state-hash record's.
    #[test]
    fn state_hash_records_verify_and_faults_are_named() {
        let tenant: TenantId = "demo".parse().expect("tenant");
        let key = NodeKey::from_seed([7; 32]);
        let trust = Trust::Key(key.verifying_key());
        let chain = [4; 32];
        let signed = |sequence: u64, signature: [u8; 64]| {
            let checkpoint = Checkpoint {
                state_hash: [5; 32],
                public_key: *key.verifying_key().as_bytes(),
                signature,
            };
            StateHashRecord { sequence, checkpoint }.encode()
        };
        let good = signed(10, key.sign_state_hash(tenant, 10, &chain, &[5; 32]));
        assert_eq!(verify_state_hash(tenant, 12, &chain, &good, trust), Ok(()));
        let cases = [
            (
                signed(10, key.sign_checkpoint(tenant, 10, &chain, &[5; 32])),
                12,
                Corruption::CheckpointSignature,
            ),
            (
                signed(11, key.sign_state_hash(tenant, 10, &chain, &[5; 32])),
                12,
                Corruption::CheckpointSignature,
            ),
            (good, 9, Corruption::StateHashAhead { attested: 10, at: 9 }),
        ];
        for (payload, at, expected) in cases {
            assert_eq!(verify_state_hash(tenant, at, &chain, &payload, trust), Err(expected));
        }
        assert_eq!(
            verify_state_hash(tenant, 12, &chain, &good[..100], trust),
            Err(Corruption::CheckpointMalformed)
        );
        assert_eq!(verify_state_hash(tenant, 12, &[0; 32], &good, Trust::Unchecked), Ok(()));
    }
}
