//! Snapshot files: an engine state with the sequence and chain value it covers, so that replay
//! can start there instead of at the first record. A snapshot is only trusted once the
//! journal's own chain value at its sequence agrees (`reader::StartAfter`).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::JournalError;
use crate::format::ChainHash;

pub const SNAPSHOT_MAGIC: [u8; 8] = *b"KEELSNP1";
pub const SNAPSHOT_HEADER_BYTES: usize = 96;

/// A snapshot as read from disk, checked against its own hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub path: PathBuf,
    pub sequence: u64,
    pub chain: ChainHash,
    pub body: Vec<u8>,
}

fn snapshot_name(sequence: u64) -> String {
    format!("{sequence:020}.snap")
}

/// Writes a snapshot durably (temporary file, `sync`, rename, directory `sync`).
pub fn write_snapshot(
    dir: &Path,
    sequence: u64,
    chain: &ChainHash,
    body: &[u8],
) -> Result<PathBuf, JournalError> {
    write_snapshot_streamed(dir, sequence, chain, Pacing::Full, |out| out.write_all(body))
        .map(|(path, _)| path)
}

/// As `write_snapshot`, with the body streamed by `body` into the file (hashed and counted on
/// the way; the header, which carries both, is written last), so a large state is never held
/// in memory twice. Returns the file's path and the body's BLAKE3 hash (for an engine's
/// snapshot, its state hash).
pub fn write_snapshot_streamed(
    dir: &Path,
    sequence: u64,
    chain: &ChainHash,
    pacing: Pacing,
    body: impl FnOnce(&mut HashingWriter<'_>) -> std::io::Result<()>,
) -> Result<(PathBuf, [u8; 32]), JournalError> {
    use std::io::{Seek, SeekFrom};
    std::fs::create_dir_all(dir).map_err(JournalError::io(dir))?;
    let path = dir.join(snapshot_name(sequence));
    let temporary = dir.join(format!("{}.tmp", snapshot_name(sequence)));
    let io = JournalError::io(&temporary);
    let written = (|| -> std::io::Result<[u8; 32]> {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&[0; SNAPSHOT_HEADER_BYTES])?;
        let (hash, length) = {
            let mut sink = HashingWriter {
                file: &mut file,
                buffer: Vec::with_capacity(HASHING_BLOCK_BYTES),
                hasher: blake3::Hasher::new(),
                length: 0,
                pacing,
            };
            body(&mut sink)?;
            sink.flush()?;
            (*sink.hasher.finalize().as_bytes(), sink.length)
        };
        let mut header = [0u8; SNAPSHOT_HEADER_BYTES];
        header[..8].copy_from_slice(&SNAPSHOT_MAGIC);
        header[8..16].copy_from_slice(&sequence.to_le_bytes());
        header[16..48].copy_from_slice(chain);
        header[48..80].copy_from_slice(&hash);
        header[80..88].copy_from_slice(&length.to_le_bytes());
        let crc = crc32c::crc32c(&header[..92]);
        header[92..96].copy_from_slice(&crc.to_le_bytes());
        file.seek(SeekFrom::Start(0))?;
        keel_sched::writing(|| file.write_all(&header).and_then(|()| file.sync_all()))?;
        Ok(hash)
    })();
    let hash = match written {
        Ok(hash) => hash,
        Err(error) => {
            let _ = std::fs::remove_file(&temporary); // Half a snapshot is of no use to anyone.
            return Err(io(error));
        }
    };
    keel_sched::writing(|| {
        std::fs::rename(&temporary, &path).map_err(JournalError::io(&path))?;
        crate::journal::sync_dir(dir)
    })?;
    Ok((path, hash))
}

/// Where a streamed snapshot body goes: the file, a BLAKE3 hash and a byte count, in blocks.
///
/// A serializer writes a field at a time (1 to 8 bytes); hashing and writing each as it came
/// made this writer half of a background state pass's CPU (`blake3::Hasher::update` on a few
/// bytes costs as much as on a kilobyte). Small writes are gathered into a block first, and
/// the hasher sees whole blocks, which it hashes many chunks at a time (SIMD).
#[derive(Debug)]
pub struct HashingWriter<'a> {
    file: &'a mut std::fs::File,
    buffer: Vec<u8>,
    hasher: blake3::Hasher,
    length: u64,
    pacing: Pacing,
}

/// The block a `HashingWriter` hashes and writes at once.
const HASHING_BLOCK_BYTES: usize = 64 << 10;

/// How a snapshot shares the disk with the journals while it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// As fast as the disk goes (an operator's snapshot, a test).
    Full,
    /// In the background of live tenants: after each periodic sync, pause three times as long
    /// as that sync took, so the snapshot takes at most about a quarter of the disk's time and
    /// every journal's `fdatasync` finds it idle three times in four. (The VM's block queue
    /// ignores I/O priorities, so the pacing is done here.)
    Background,
}

/// A snapshot file is synced every this many bytes while it is written: dirty pages left for
/// the kernel to write back at once stall every other `fdatasync` on the disk (the tenant's
/// journal among them) behind them. 256 KiB bounds such a wait to one small writeback: with
/// 4 MiB synced and a 1:1 pause, the journal's sync p99.9 in `keel load` at 220k/s was <= 5 ms
/// while a snapshot was written; with 256 KiB and 3:1 it is <= 1 to 2 ms, and a snapshot of 1M
/// trades takes 2 to 3 s instead of 1.1 to 1.3 (docs/benchmarks.md, fifth session). The
/// journal's segment preparation uses the same steps.
const SNAPSHOT_SYNC_BYTES: u64 = 256 << 10;

impl HashingWriter<'_> {
    /// Hashes and writes `block`, then syncs and pauses if it crossed a sync step.
    fn emit(&mut self, block: &[u8]) -> std::io::Result<()> {
        self.hasher.update(block);
        // The writes and syncs in the writer's class (`keel_sched::writing`): a background
        // pass preempted inside them held up the journal's syncs for milliseconds.
        keel_sched::writing(|| self.file.write_all(block))?;
        let before = self.length;
        self.length += block.len() as u64;
        if before / SNAPSHOT_SYNC_BYTES != self.length / SNAPSHOT_SYNC_BYTES {
            let started = std::time::Instant::now();
            keel_sched::writing(|| self.file.sync_data())?;
            if self.pacing == Pacing::Background {
                std::thread::sleep(started.elapsed() * 3);
            }
        }
        Ok(())
    }

    /// Emits what is buffered.
    fn drain(&mut self) -> std::io::Result<()> {
        let block = std::mem::take(&mut self.buffer);
        let emitted = self.emit(&block);
        self.buffer = block;
        self.buffer.clear();
        emitted
    }
}

impl Write for HashingWriter<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.buffer.len() + bytes.len() <= HASHING_BLOCK_BYTES {
            self.buffer.extend_from_slice(bytes);
            return Ok(bytes.len());
        }
        self.drain()?;
        if bytes.len() >= HASHING_BLOCK_BYTES {
            self.emit(bytes)?;
        } else {
            self.buffer.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.drain()?;
        self.file.flush()
    }
}

/// Snapshot files in `dir`, newest (highest sequence) first.
pub fn list_snapshots(dir: &Path) -> Result<Vec<PathBuf>, JournalError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(JournalError::Io { path: dir.to_path_buf(), source: error }),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "snap"))
        .collect();
    paths.sort_unstable();
    paths.reverse();
    Ok(paths)
}

/// Reads and checks one snapshot file (header checksum, magic, body length and hash).
pub fn load_snapshot(path: &Path) -> Result<Snapshot, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    if bytes.len() < SNAPSHOT_HEADER_BYTES || bytes[..8] != SNAPSHOT_MAGIC {
        return Err("not a snapshot file".into());
    }
    if crc32c::crc32c(&bytes[..92])
        != u32::from_le_bytes([bytes[92], bytes[93], bytes[94], bytes[95]])
    {
        return Err("header checksum does not match".into());
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
    let (sequence, length) = (word(8), word(80));
    let body = &bytes[SNAPSHOT_HEADER_BYTES..];
    if body.len() as u64 != length {
        return Err(format!("body is {} bytes, header says {length}", body.len()));
    }
    if blake3::hash(body).as_bytes()[..] != bytes[48..80] {
        return Err("body hash does not match".into());
    }
    let mut chain = [0u8; 32];
    chain.copy_from_slice(&bytes[16..48]);
    Ok(Snapshot { path: path.to_path_buf(), sequence, chain, body: body.to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body streamed in pieces of every size gives the same file as the body written whole,
    /// and loads back; a body that fails part-way leaves no snapshot behind.
    #[test]
    fn streamed_snapshots_equal_whole_ones_and_failures_leave_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let body: Vec<u8> = (0..3_000_000_u32).map(|n| (n * 7 % 251) as u8).collect();
        let chain = [5; 32];
        let whole = write_snapshot(&dir.path().join("whole"), 42, &chain, &body).expect("whole");
        for piece in [1, 7, 1_000, 65_535, 65_536, 65_537, 1 << 20, 5_000_000] {
            let streamed_dir = dir.path().join(format!("streamed-{piece}"));
            let (streamed, hash) =
                write_snapshot_streamed(&streamed_dir, 42, &chain, Pacing::Full, |out| {
                    body.chunks(piece).try_for_each(|chunk| out.write_all(chunk))
                })
                .expect("streamed");
            assert_eq!(hash, *blake3::hash(&body).as_bytes(), "the body's hash is returned");
            assert_eq!(
                std::fs::read(&streamed).expect("read"),
                std::fs::read(&whole).expect("read")
            );
            let loaded = load_snapshot(&streamed).expect("load");
            assert_eq!((loaded.sequence, loaded.chain, loaded.body), (42, chain, body.clone()));
        }
        // A body past the periodic sync: still one file, byte for byte.
        let large: Vec<u8> = (0..SNAPSHOT_SYNC_BYTES + 4_096).map(|n| (n % 253) as u8).collect();
        let large_dir = dir.path().join("large");
        let (path, _) = write_snapshot_streamed(&large_dir, 7, &chain, Pacing::Background, |out| {
            large.chunks(1 << 20).try_for_each(|chunk| out.write_all(chunk))
        })
        .expect("large");
        assert_eq!(load_snapshot(&path).expect("load").body, large);
        let failing = dir.path().join("failing");
        let error = write_snapshot_streamed(&failing, 43, &chain, Pacing::Full, |out| {
            out.write_all(&body[..1000])?;
            Err(std::io::Error::other("encoder failed"))
        })
        .expect_err("fails");
        assert!(error.to_string().contains("encoder failed"), "{error}");
        assert!(list_snapshots(&failing).expect("list").is_empty());
        assert_eq!(std::fs::read_dir(&failing).expect("dir").count(), 0, "no temporary left");
    }
}
