//! Journal errors. Every integrity failure names the segment file, the byte offset and, where
//! it could be read, the sequence of the record concerned.

use std::path::PathBuf;

/// Where in the journal a fault lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub segment: PathBuf,
    pub offset: u64,
    pub sequence: Option<u64>,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "segment {}, offset {}", self.segment.display(), self.offset)?;
        if let Some(sequence) = self.sequence {
            write!(f, ", sequence {sequence}")?;
        }
        Ok(())
    }
}

/// What an integrity check found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    #[error("{0}")]
    Header(String),
    #[error("payload checksum does not match")]
    PayloadChecksum,
    #[error("hash chain broken: the record does not follow the one before it")]
    ChainBroken,
    #[error(
        "{commands} commands with no seal after them (a chained record must close their group)"
    )]
    Unsealed { commands: u64 },
    #[error("sequence {found} where {expected} was expected")]
    Sequence { expected: u64, found: u64 },
    #[error("record is cut short inside a segment that is not the last")]
    Truncated,
    #[error("segment header: {0}")]
    SegmentHeader(String),
    #[error("segment {found} where segment {expected} was expected (missing or reordered)")]
    SegmentOrder { expected: u32, found: u32 },
    #[error("segment belongs to another tenant")]
    WrongTenant,
    #[error("checkpoint signature is invalid")]
    CheckpointSignature,
    #[error("checkpoint was signed by an untrusted key {0}")]
    UntrustedKey(String),
    #[error("checkpoint payload is malformed")]
    CheckpointMalformed,
    #[error("state hash after replay does not match the checkpoint")]
    StateHashMismatch,
    #[error("state-hash record attests sequence {attested}, after its own position {at}")]
    StateHashAhead { attested: u64, at: u64 },
    #[error("state-hash record for sequence {0}, where no checkpoint deferred one")]
    StateHashUnannounced(u64),
    #[error("snapshot: {0}")]
    Snapshot(String),
    #[error("backup copy differs from the primary journal")]
    BackupDiverges,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    #[error("I/O on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("journal corrupt at {location}: {corruption}")]
    Corrupt { location: Location, corruption: Corruption },
    #[error("sequence {got} does not follow {last}")]
    SequenceOutOfOrder { last: u64, got: u64 },
    #[error("payload of {0} bytes is above the limit")]
    PayloadTooLarge(usize),
    #[error("node key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the journal is poisoned by an earlier write failure; reopen it")]
    Poisoned,
    #[error("the journal writer stopped: {0}")]
    WriterStopped(String),
}

impl JournalError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> JournalError {
        let path = path.into();
        move |source| JournalError::Io { path, source }
    }
}
