//! Segment writes that bypass the page cache (`O_DIRECT`), in whole pages.
//!
//! Why: a buffered journal puts every byte it writes through the page cache twice, once as the
//! helper's preallocated zeros and once as the records that overwrite them, and every one of
//! those cache pages is memory the kernel must find and clear. On the 2-core VM keel is
//! benchmarked on, a fresh page costs about 2 µs (4 GB of zeros written to the page cache took
//! 7-11 s of system time), so at a million commands a second the zero-fill helpers alone took
//! 7% of both cores. Written direct, the records go from one reused, aligned buffer to the
//! disk, and the zeros from another, and neither takes a page of cache.
//!
//! How: direct writes must start on a page boundary and be whole pages. A commit writes the
//! segment's last, partly written page again, with the new records after what it held and
//! zeros after them up to the next page boundary: the zeros a preallocated segment holds
//! there already (format version 3), so the file's bytes are what a buffered write would have
//! left. Rewriting a page with the bytes it already held leaves its durable records as they
//! were, whichever of its sectors a crash lets through, as the page cache's own writeback of
//! a partly written page would.
//!
//! Only preallocated segments are written direct. A segment that grows by appends (the first,
//! or one whose zeros were not ready in time) stays buffered, so that it still ends at its
//! last record. So does every segment on a file system that refuses `O_DIRECT` (tmpfs on
//! older kernels).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// The unit of a direct write: its offset, its length and its buffer's address are multiples
/// of it. A page covers every logical block size a disk reports (512 or 4096).
pub(crate) const DIRECT_ALIGN: usize = 4096;

/// A buffer whose usable part starts on a [`DIRECT_ALIGN`] boundary, in safe code: a `Vec`
/// one alignment longer than asked, used from its first aligned byte.
#[derive(Debug)]
pub(crate) struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// `len` zero bytes, aligned; `None` if the platform cannot say where the boundary is.
    pub(crate) fn zeroed(len: usize) -> Option<Self> {
        let raw = vec![0u8; len + DIRECT_ALIGN];
        let start = raw.as_ptr().align_offset(DIRECT_ALIGN);
        (start < DIRECT_ALIGN).then_some(Self { raw, start, len })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

/// Opens `path` for direct writes, or `None` where that is not possible (no `O_DIRECT` on this
/// platform or file system).
pub(crate) fn open_direct(path: &Path) -> Option<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path).ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        None
    }
}

/// The direct writer of one segment: where its last, partly written page starts and what
/// that page holds so far.
#[derive(Debug)]
pub(crate) struct DirectSegment {
    file: File,
    /// The staging buffer: its first `tail` bytes are the segment's bytes from `page_offset`.
    staging: AlignedBuf,
    /// The segment offset of the last partly written page (a multiple of `DIRECT_ALIGN`).
    page_offset: u64,
    tail: usize,
}

impl DirectSegment {
    /// The writer of the segment at `path`, whose written bytes end at `end`; `last_page` is
    /// what it holds from the page that `end` falls in (`end % DIRECT_ALIGN` bytes), zeros
    /// after that. `None` when direct writes are not possible there. With `probe`, that page
    /// is written again as it is, and a refusal also means `None`: a file system can take
    /// `O_DIRECT` at open and still refuse the writes (an alignment larger than a page), and
    /// a commit's refused write would poison the journal. (A segment the helper filled with
    /// direct writes needs no probe.)
    pub(crate) fn open(path: &Path, end: u64, last_page: &[u8], probe: bool) -> Option<Self> {
        use std::os::unix::fs::FileExt;
        debug_assert_eq!(last_page.len() as u64, end % DIRECT_ALIGN as u64);
        let file = open_direct(path)?;
        let mut staging = AlignedBuf::zeroed(1 << 20)?;
        staging.as_mut_slice()[..last_page.len()].copy_from_slice(last_page);
        let page_offset = end - last_page.len() as u64;
        if probe && file.write_all_at(&staging.as_slice()[..DIRECT_ALIGN], page_offset).is_err() {
            return None;
        }
        Some(Self { file, staging, page_offset, tail: last_page.len() })
    }

    /// Writes `data` after the segment's written bytes: the last partly written page again,
    /// then `data`, then zeros to the next page boundary, in one direct write. Not durable
    /// until the file is synced.
    pub(crate) fn write(&mut self, data: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let len = self.tail + data.len();
        let padded = len.next_multiple_of(DIRECT_ALIGN);
        if padded > self.staging.len() {
            let mut bigger = AlignedBuf::zeroed(padded.next_power_of_two())
                .ok_or_else(|| io::Error::other("no aligned buffer for a direct write"))?;
            bigger.as_mut_slice()[..self.tail]
                .copy_from_slice(&self.staging.as_slice()[..self.tail]);
            self.staging = bigger;
        }
        let region = &mut self.staging.as_mut_slice()[..padded];
        region[self.tail..len].copy_from_slice(data);
        region[len..].fill(0);
        self.file.write_all_at(region, self.page_offset)?;
        let whole = len - len % DIRECT_ALIGN;
        region.copy_within(whole..len, 0);
        self.page_offset += whole as u64;
        self.tail = len - whole;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffers_start_on_a_page() {
        for len in [0, 1, 4096, 100_000] {
            let buffer = AlignedBuf::zeroed(len).expect("aligned");
            assert_eq!(buffer.as_slice().as_ptr() as usize % DIRECT_ALIGN, 0);
            assert_eq!(buffer.as_slice().len(), len);
            assert!(buffer.as_slice().iter().all(|&byte| byte == 0));
        }
    }

    /// Whatever the sizes of the writes, the file holds their bytes in order, then zeros to
    /// the page's end; written direct where the file system allows it, and the same bytes
    /// either way.
    #[test]
    fn writes_land_in_order_with_zeros_to_the_page_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("segment");
        let header = [7u8; 64];
        std::fs::write(&path, header).expect("header");
        let Some(mut segment) = DirectSegment::open(&path, 64, &header, true) else {
            eprintln!("no O_DIRECT on this file system: nothing to test");
            return;
        };
        let mut expected = header.to_vec();
        for (round, size) in [1, 4031, 4096, 5000, 3, 70_000, 1 << 21, 17].into_iter().enumerate() {
            let data: Vec<u8> = (0..size).map(|i| (i * 31 + round) as u8 | 1).collect();
            segment.write(&data).expect("write");
            expected.extend_from_slice(&data);
            let on_disk = std::fs::read(&path).expect("read");
            assert_eq!(on_disk.len(), expected.len().next_multiple_of(DIRECT_ALIGN), "{round}");
            assert_eq!(&on_disk[..expected.len()], &expected[..], "round {round}");
            assert!(on_disk[expected.len()..].iter().all(|&byte| byte == 0), "round {round}");
        }
    }
}
