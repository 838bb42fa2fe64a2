//! Canonical encoding of an engine's state: the snapshot bytes, and their BLAKE3 hash, the
//! state hash that journal checkpoints sign.
//!
//! The encoding is bincode 1.3 (fixed-width little-endian integers) of `Image`, with every hash
//! map written as a vector sorted by key, so that equal states give equal bytes however they
//! were reached. A change to any serialized type must bump `SNAPSHOT_FORMAT_VERSION`.

use std::collections::BTreeMap;
use std::fmt;

use bincode::Options;
use keel_domain::CanonSink;
use keel_domain::{Amount, Currency, TenantId};
use keel_settlement::Settlement;
use keel_trade_capture::{AccountKey, Capture};
use serde::{Deserialize, Serialize};

use crate::book::PositionBook;
use crate::engine::{Engine, EngineError};

/// 2: the settlement state (prices, fees, ledger, accrued amounts) joined the image.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 2;

/// Largest snapshot `restore` will decode.
pub const SNAPSHOT_BYTES_MAX: u64 = 16 << 30;

/// BLAKE3 hash of the canonical state encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StateHash(pub [u8; 32]);

impl fmt::Display for StateHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for StateHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateHash({self})")
    }
}

#[derive(Serialize)]
struct ImageRef<'a> {
    format_version: u32,
    tenant: TenantId,
    last_sequence: u64,
    last_timestamp_ns: i64,
    capture: &'a Capture,
    positions: &'a PositionBook,
    cash: &'a BTreeMap<(AccountKey, Currency), Amount>,
    settlement: &'a Settlement,
}

#[derive(Deserialize)]
struct Image {
    format_version: u32,
    tenant: TenantId,
    last_sequence: u64,
    last_timestamp_ns: i64,
    capture: Capture,
    positions: PositionBook,
    cash: BTreeMap<(AccountKey, Currency), Amount>,
    settlement: Settlement,
}

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
        .with_limit(SNAPSHOT_BYTES_MAX)
}

/// Bytes gathered before they go to the writer: large enough that a write (or a hasher's
/// update) is one call per 64 KiB, small enough to stay in cache.
const CANON_FLUSH_AT: usize = 64 << 10;

/// A snapshot's fields in their canonical order (the order of `ImageRef`), the two large
/// parts encoded by `capture` and `positions`: from a live engine, or consuming an image.
fn write_in_order<W: std::io::Write>(
    out: &mut W,
    (tenant, last_sequence, last_timestamp_ns): (TenantId, u64, i64),
    capture: impl FnOnce(&mut CanonWriter<'_, W>),
    positions: impl FnOnce(&mut CanonWriter<'_, W>),
    (cash, settlement): (&BTreeMap<(AccountKey, Currency), Amount>, &Settlement),
) -> std::io::Result<()> {
    let mut sink = CanonWriter::new(out);
    sink.put(&SNAPSHOT_FORMAT_VERSION);
    sink.serde(&tenant);
    sink.put(&last_sequence);
    sink.put(&last_timestamp_ns);
    capture(&mut sink);
    positions(&mut sink);
    sink.serde(cash);
    sink.serde(settlement);
    sink.finish()
}

/// The `CanonSink` snapshots are written through: encodes into a buffer and hands it to `out`
/// every `CANON_FLUSH_AT` bytes.
struct CanonWriter<'a, W: std::io::Write> {
    buffer: Vec<u8>,
    out: &'a mut W,
    error: Option<std::io::Error>,
}

impl<'a, W: std::io::Write> CanonWriter<'a, W> {
    fn new(out: &'a mut W) -> Self {
        Self { buffer: Vec::with_capacity(2 * CANON_FLUSH_AT), out, error: None }
    }

    #[inline]
    fn filled(&mut self) {
        if self.buffer.len() >= CANON_FLUSH_AT {
            self.drain();
        }
    }

    fn drain(&mut self) {
        if self.error.is_none() {
            if let Err(error) = self.out.write_all(&self.buffer) {
                self.error = Some(error);
            }
        }
        self.buffer.clear();
    }

    fn finish(mut self) -> std::io::Result<()> {
        self.drain();
        self.error.map_or(Ok(()), Err)
    }
}

impl<W: std::io::Write> keel_domain::CanonSink for CanonWriter<'_, W> {
    #[inline]
    fn put<T: keel_domain::Canon + ?Sized>(&mut self, value: &T) {
        value.canon(&mut self.buffer);
        self.filled();
    }

    fn serde<T: Serialize + ?Sized>(&mut self, value: &T) {
        if let Err(error) = options().with_no_limit().serialize_into(&mut self.buffer, value) {
            // Only a type serde cannot size would fail into a Vec: a bug, kept like an I/O
            // error so that the snapshot is refused rather than short.
            self.error.get_or_insert_with(|| std::io::Error::other(error.to_string()));
        }
        self.filled();
    }
}

/// A frozen copy of an engine's state, to encode or hash on another thread while the engine
/// goes on. Taking one (`Engine::image`) shares the large arenas chunk by chunk (copy-on-write:
/// the engine copies a chunk the first time it writes to it while the image lives) and copies
/// only the small tables; the indexes are left out. Its snapshot bytes and state hash are
/// exactly the engine's at the moment it was taken.
#[derive(Debug)]
pub struct EngineImage {
    engine: Engine,
}

impl EngineImage {
    pub fn tenant(&self) -> TenantId {
        self.engine.tenant
    }

    /// The sequence of the last command the image includes.
    pub fn last_sequence(&self) -> u64 {
        self.engine.last_sequence
    }

    /// As `Engine::state_hash`.
    pub fn state_hash(&self) -> StateHash {
        self.engine.state_hash()
    }

    /// As `Engine::write_snapshot_to`.
    pub fn write_snapshot_to(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        self.engine.write_snapshot_to(out)
    }

    /// As `write_snapshot_to` (the same bytes), consuming the image: the trade, report and
    /// position arenas, the bulk of a tenant, are let go a group of chunks at a time as they
    /// are encoded. The shard's first write to a chunk copies it only while the image still holds
    /// it, and with corrections spread over the whole history (any trade amended at random)
    /// nearly every chunk was written during a pass and copied: the burst of copies behind
    /// the open loop's tail during state passes (docs/benchmarks.md, eleventh session).
    pub fn write_snapshot_into(self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let Engine {
            tenant,
            last_sequence,
            last_timestamp_ns,
            capture,
            positions,
            cash,
            settlement,
            ..
        } = self.engine;
        write_in_order(
            out,
            (tenant, last_sequence, last_timestamp_ns),
            |sink| capture.write_canon_drained(sink),
            |sink| positions.write_canon_drained(sink),
            (&cash, &settlement),
        )
    }

    /// As `state_hash`, consuming the image (`write_snapshot_into`).
    pub fn into_state_hash(self) -> StateHash {
        let mut hasher = blake3::Hasher::new();
        // Writing into a hasher cannot fail.
        let _ = self.write_snapshot_into(&mut hasher);
        StateHash(*hasher.finalize().as_bytes())
    }
}

impl Engine {
    /// A frozen copy of the state for a snapshot or a state hash (see `EngineImage`): about a
    /// millisecond at a million trades, where `clone` takes a tenth of a second.
    pub fn image(&mut self) -> EngineImage {
        EngineImage {
            engine: Engine::from_parts(
                self.tenant,
                self.capture.image(),
                self.positions.image(),
                self.cash.clone(),
                self.settlement.clone(),
                self.last_sequence,
                self.last_timestamp_ns,
            ),
        }
    }

    /// The canonical encoding of the whole state.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        self.write_snapshot(&mut bytes);
        bytes
    }

    /// BLAKE3 of `snapshot()`, computed by streaming the encoding through the hasher in blocks
    /// of `CANON_FLUSH_AT` rather than building it in memory first.
    pub fn state_hash(&self) -> StateHash {
        let mut hasher = blake3::Hasher::new();
        self.write_snapshot(&mut hasher);
        StateHash(*hasher.finalize().as_bytes())
    }

    fn write_snapshot(&self, out: &mut impl std::io::Write) {
        // Serializing plain data into a Vec or a hasher cannot fail; a short snapshot would be
        // caught by restore and by the hash differing from every checkpoint.
        let _ = self.write_snapshot_to(out);
    }

    /// Streams `snapshot()`'s bytes into `out` (a file, say) without building them in memory:
    /// at a million trades the encoding is about 150 MB. The large arenas are encoded by hand
    /// (`keel_domain::canon`), the rest through serde; the bytes are exactly those of
    /// `write_snapshot_serde`, which the tests hold it to.
    pub fn write_snapshot_to(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        write_in_order(
            out,
            (self.tenant, self.last_sequence, self.last_timestamp_ns),
            |sink| self.capture.write_canon(sink),
            |sink| self.positions.write_canon(sink),
            (&self.cash, &self.settlement),
        )
    }

    /// `write_snapshot_to` through serde alone (`ImageRef`, bincode): the definition of the
    /// encoding, which the hand-written path must reproduce byte for byte.
    pub fn write_snapshot_serde(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let image = ImageRef {
            format_version: SNAPSHOT_FORMAT_VERSION,
            tenant: self.tenant,
            last_sequence: self.last_sequence,
            last_timestamp_ns: self.last_timestamp_ns,
            capture: &self.capture,
            positions: &self.positions,
            cash: &self.cash,
            settlement: &self.settlement,
        };
        // No limit when writing: with one, bincode first measures the whole state in a pass of
        // its own (half of a state pass's serializing). The limit bounds what `restore` reads.
        options().with_no_limit().serialize_into(out, &image).map_err(|error| match *error {
            bincode::ErrorKind::Io(io) => io,
            other => std::io::Error::other(other.to_string()),
        })
    }

    /// Rebuilds an engine from `snapshot()` bytes, checking format version and tenant.
    pub fn restore(expected: TenantId, bytes: &[u8]) -> Result<Engine, EngineError> {
        let version = bytes.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        match version {
            Some(SNAPSHOT_FORMAT_VERSION) => {}
            Some(found) => {
                return Err(EngineError::SnapshotVersion {
                    found,
                    supported: SNAPSHOT_FORMAT_VERSION,
                })
            }
            None => return Err(EngineError::SnapshotCorrupt("shorter than its header".into())),
        }
        let image: Image = options()
            .deserialize(bytes)
            .map_err(|e| EngineError::SnapshotCorrupt(e.to_string()))?;
        debug_assert_eq!(
            image.format_version, SNAPSHOT_FORMAT_VERSION,
            "invariant: version checked above"
        );
        if image.tenant != expected {
            return Err(EngineError::SnapshotTenant { found: image.tenant, expected });
        }
        let mut capture = image.capture;
        capture.reindex();
        let mut positions = image.positions;
        positions.reindex();
        Ok(Engine::from_parts(
            image.tenant,
            capture,
            positions,
            image.cash,
            image.settlement,
            image.last_sequence,
            image.last_timestamp_ns,
        ))
    }
}
