//! Segment files: naming, listing and header checks across the whole directory.

use std::path::{Path, PathBuf};

use keel_domain::TenantId;

use crate::error::{Corruption, JournalError, Location};
use crate::format::{tenant_bytes, SegmentHeader, SEGMENT_HEADER_BYTES};

pub fn segment_name(number: u32) -> String {
    format!("{number:08}.seg")
}

/// The segment files of a journal directory in number order, checked to be numbered 1..=n
/// without gaps. A missing directory is an empty journal.
pub fn list_segments(dir: &Path) -> Result<Vec<(u32, PathBuf)>, JournalError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(JournalError::Io { path: dir.to_path_buf(), source: error }),
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(JournalError::io(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".seg") else { continue };
        if stem.len() == 8 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(number) = stem.parse::<u32>() {
                segments.push((number, entry.path()));
            }
        }
    }
    segments.sort_unstable_by_key(|(number, _)| *number);
    for (index, (number, path)) in segments.iter().enumerate() {
        let expected = index as u32 + 1;
        if *number != expected {
            return Err(JournalError::Corrupt {
                location: Location { segment: path.clone(), offset: 0, sequence: None },
                corruption: Corruption::SegmentOrder { expected, found: *number },
            });
        }
    }
    Ok(segments)
}

/// Reads and checks a segment's header against its file name and tenant.
pub fn check_header(
    path: &Path,
    bytes: &[u8],
    number: u32,
    tenant: TenantId,
) -> Result<SegmentHeader, JournalError> {
    let corrupt = |corruption| JournalError::Corrupt {
        location: Location { segment: path.to_path_buf(), offset: 0, sequence: None },
        corruption,
    };
    let header = SegmentHeader::decode(&bytes[..bytes.len().min(SEGMENT_HEADER_BYTES)])
        .map_err(|reason| corrupt(Corruption::SegmentHeader(reason.to_owned())))?;
    if header.number != number {
        return Err(corrupt(Corruption::SegmentOrder { expected: number, found: header.number }));
    }
    if header.tenant != tenant_bytes(tenant) {
        return Err(corrupt(Corruption::WrongTenant));
    }
    Ok(header)
}
