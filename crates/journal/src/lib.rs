//! A tenant's journal: the source of truth that any tenant is rebuilt from. Every accepted
//! command is appended and made durable (group commit: one `sync_data` per batch) before it is
//! acknowledged; records are checksummed (CRC32C) and hash-chained (BLAKE3); checkpoints sign
//! the engine's state hash with the node's Ed25519 key; snapshots let replay start late; a
//! backup copy lets a tenant be rebuilt when its primary data is gone.
//!
//! # Layout
//! - `format`: byte layout of segments and records, the chain, golden-bytes tests.
//! - `segments`: segment file naming, listing, header checks.
//! - `scan`: walking one segment's records with every check; torn-tail detection.
//! - `journal`: `Journal`, the writer: append, group commit, segment roll, torn-tail repair.
//! - `writer`: `JournalWriter`, pipelined group commit on a thread that owns the `Journal`.
//! - `reader`: `read_journal`, the verifying reader, from the start or a snapshot's position.
//! - `keys`: the node signing key and checkpoint signatures.
//! - `snapshot`: snapshot files.
//! - `backup`: the append-only backup copy.
//! - `error`: `JournalError`, `Corruption`, `Location` (segment, offset, sequence).
//!
//! Byte layout and the checks each field enables: docs/journal-format.md.

pub mod backup;
mod direct;
pub mod error;
pub mod format;
pub mod journal;
pub mod keys;
pub mod reader;
pub mod scan;
pub mod segments;
pub mod snapshot;
pub mod writer;

pub use backup::{sync_backup, BackupReport};
pub use error::{Corruption, JournalError, Location};
pub use format::{ChainHash, RecordKind};
pub use journal::{Journal, JournalOptions, OpenReport};
pub use keys::NodeKey;
pub use reader::{read_journal, ReadSummary, StartAfter};
pub use scan::{
    Checkpoint, RecordRef, RepairedSeal, StateClaim, StateHashRecord, TornTail, Trust,
    DEFERRED_STATE_HASH, NO_STATE_HASH,
};
pub use snapshot::{
    list_snapshots, load_snapshot, write_snapshot, write_snapshot_streamed, HashingWriter, Pacing,
    Snapshot,
};
pub use writer::{Durable, JournalWriter, OnDurable, WriteBatch};
