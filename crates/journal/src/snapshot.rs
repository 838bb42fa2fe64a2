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
    std::fs::create_dir_all(dir).map_err(JournalError::io(dir))?;
    let mut header = [0u8; SNAPSHOT_HEADER_BYTES];
    header[..8].copy_from_slice(&SNAPSHOT_MAGIC);
    header[8..16].copy_from_slice(&sequence.to_le_bytes());
    header[16..48].copy_from_slice(chain);
    header[48..80].copy_from_slice(blake3::hash(body).as_bytes());
    header[80..88].copy_from_slice(&(body.len() as u64).to_le_bytes());
    let crc = crc32c::crc32c(&header[..92]);
    header[92..96].copy_from_slice(&crc.to_le_bytes());
    let path = dir.join(snapshot_name(sequence));
    let temporary = dir.join(format!("{}.tmp", snapshot_name(sequence)));
    let mut file = std::fs::File::create(&temporary).map_err(JournalError::io(&temporary))?;
    file.write_all(&header)
        .and_then(|()| file.write_all(body))
        .map_err(JournalError::io(&temporary))?;
    file.sync_all().map_err(JournalError::io(&temporary))?;
    std::fs::rename(&temporary, &path).map_err(JournalError::io(&path))?;
    crate::journal::sync_dir(dir)?;
    Ok(path)
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
