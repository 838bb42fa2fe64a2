//! The backup copy: segments copied append-only into a second directory, usable to rebuild a
//! tenant when the primary is gone. Continuous (the writer mirrors every commit) or on command
//! (`sync_backup`). A backup is never truncated or rewritten: if its bytes differ from the
//! primary's, that is reported, not repaired.

use std::fs::OpenOptions;
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::error::{Corruption, JournalError, Location};
use crate::segments::{list_segments, segment_name};

/// What a backup pass copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackupReport {
    pub segments: u32,
    pub bytes_copied: u64,
}

/// Brings `backup_dir` level with `primary_dir`: every segment's missing suffix is appended.
pub fn sync_backup(primary_dir: &Path, backup_dir: &Path) -> Result<BackupReport, JournalError> {
    let mut report = BackupReport::default();
    for (number, path) in list_segments(primary_dir)? {
        let whole = std::fs::read(&path).map_err(JournalError::io(&path))?;
        // Not a live segment's preallocated zeros: the backup is append-only, and the records
        // that later fill that space would no longer match it.
        let primary = &whole[..crate::format::written_len(&whole)];
        let target = backup_dir.join(segment_name(number));
        let before = std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
        copy_missing(primary, backup_dir, number)?;
        report.segments += 1;
        report.bytes_copied += primary.len() as u64 - before.min(primary.len() as u64);
    }
    Ok(report)
}

/// Appends to the backup of segment `number` whatever `primary` has beyond it, after checking
/// that the bytes the backup already holds are the primary's. Returns the open backup file.
pub(crate) fn copy_missing(
    primary: &[u8],
    backup_dir: &Path,
    number: u32,
) -> Result<std::fs::File, JournalError> {
    std::fs::create_dir_all(backup_dir).map_err(JournalError::io(backup_dir))?;
    let path = backup_dir.join(segment_name(number));
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&path)
        .map_err(JournalError::io(&path))?;
    let mut existing = Vec::new();
    file.read_to_end(&mut existing).map_err(JournalError::io(&path))?;
    let diverges = existing.len() > primary.len() || existing[..] != primary[..existing.len()];
    if diverges {
        let offset =
            existing.iter().zip(primary).position(|(a, b)| a != b).unwrap_or(primary.len()) as u64;
        return Err(JournalError::Corrupt {
            location: Location { segment: path, offset, sequence: None },
            corruption: Corruption::BackupDiverges,
        });
    }
    if existing.len() < primary.len() {
        file.seek(std::io::SeekFrom::End(0)).map_err(JournalError::io(&path))?;
        file.write_all(&primary[existing.len()..]).map_err(JournalError::io(&path))?;
        file.sync_data().map_err(JournalError::io(&path))?;
        crate::journal::sync_dir(backup_dir)?;
    }
    Ok(file)
}
