//! The journal's fault suite: torn tails, every kind of corruption, and isolation between
//! tenants. Each corruption must be detected with the segment, offset and sequence named.
#![allow(clippy::unwrap_used, reason = "tests: a failed setup should fail loudly")]

use std::path::{Path, PathBuf};

use keel_domain::TenantId;
use keel_journal::format::{
    decode_record_header, encode_chained, encode_command, is_chained, is_unwritten, RecordKind,
    RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use keel_journal::{
    read_journal, Corruption, Journal, JournalError, JournalOptions, NodeKey, Trust,
};

fn tenant(name: &str) -> TenantId {
    name.parse().unwrap()
}

fn key() -> NodeKey {
    NodeKey::from_seed([7; 32])
}

fn payload(sequence: u64) -> Vec<u8> {
    format!("command {sequence:05} {}", "x".repeat((sequence % 40) as usize)).into_bytes()
}

/// Writes `commands` commands in batches of 10 with a checkpoint after every 10th, in segments
/// of at most `segment_bytes` bytes grown by appends: each file ends with its last record,
/// the layout the tests below cut and flip byte by byte (`build_preallocated` makes the
/// other).
fn build(dir: &Path, name: &str, commands: u64, segment_bytes: u64) {
    let options = JournalOptions {
        segment_bytes_max: segment_bytes,
        preallocate: false,
        ..JournalOptions::default()
    };
    let (mut journal, _) = Journal::open(dir, tenant(name), options).unwrap();
    for sequence in 1..=commands {
        journal.append_command(sequence, &payload(sequence)).unwrap();
        if sequence % 10 == 0 {
            journal.append_checkpoint(&key(), [sequence as u8; 32]).unwrap();
            journal.commit().unwrap();
        }
    }
    journal.commit().unwrap();
}

/// Reads everything with full verification; returns the sequences of the commands whose
/// payload came back exactly as written.
fn read_all(dir: &Path, name: &str) -> Result<Vec<u64>, JournalError> {
    let mut seen = Vec::new();
    read_journal::<JournalError>(
        dir,
        tenant(name),
        Trust::Key(key().verifying_key()),
        None,
        |_| {},
        |record| {
            if record.kind == RecordKind::Command && record.payload == &payload(record.sequence)[..]
            {
                seen.push(record.sequence);
            }
            Ok(())
        },
    )?;
    Ok(seen)
}

fn segment(dir: &Path, number: u32) -> PathBuf {
    dir.join(format!("{number:08}.seg"))
}

/// Offsets of the records of one segment file.
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES;
    while at + RECORD_HEADER_BYTES <= bytes.len() && !is_unwritten(&bytes[at..]) {
        let header = decode_record_header(&bytes[at..at + RECORD_HEADER_BYTES]).unwrap();
        offsets.push(at);
        at += RECORD_HEADER_BYTES + header.length as usize;
    }
    offsets
}

fn corruption(result: Result<Vec<u64>, JournalError>) -> (PathBuf, u64, Option<u64>, Corruption) {
    match result {
        Err(JournalError::Corrupt { location, corruption }) => {
            (location.segment, location.offset, location.sequence, corruption)
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn round_trip_across_segments_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), "alpha", 95, 2_000);
    assert!(segment(dir.path(), 3).exists(), "small segments force several files");
    assert_eq!(read_all(dir.path(), "alpha").unwrap(), (1..=95).collect::<Vec<_>>());
    let (mut journal, report) = Journal::open(
        dir.path(),
        tenant("alpha"),
        JournalOptions { segment_bytes_max: 2_000, ..JournalOptions::default() },
    )
    .unwrap();
    assert_eq!((report.last_sequence, report.torn_tail), (95, None));
    journal.append_batch([(96, &payload(96)[..]), (97, &payload(97)[..])]).unwrap();
    assert_eq!(journal.durable_sequence(), 97);
    assert!(matches!(
        journal.append_command(99, b"gap"),
        Err(JournalError::SequenceOutOfOrder { last: 97, got: 99 })
    ));
    drop(journal);
    assert_eq!(read_all(dir.path(), "alpha").unwrap(), (1..=97).collect::<Vec<_>>());
}

#[test]
fn torn_tails_are_truncated_and_reported_and_nothing_committed_is_lost() {
    // (what the crash left after the last committed record, expected reason fragment)
    let partial_record = {
        let mut bytes = Vec::new();
        encode_command(&mut bytes, 31, &payload(31));
        bytes
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("header cut short", partial_record[..20].to_vec()),
        ("payload cut short", partial_record[..RECORD_HEADER_BYTES + 3].to_vec()),
        // (Zeros alone are preallocated space, a clean end: see the preallocated tests.)
        ("nothing valid follows", {
            let mut damaged = partial_record.clone();
            damaged[0] = 0;
            damaged
        }),
        ("final record does not match", {
            let mut whole = partial_record.clone();
            let last = whole.len() - 1;
            whole[last] ^= 0xff;
            whole
        }),
        // Whole, valid commands whose seal never reached the disk: the write was cut short.
        ("have no seal after them", partial_record.clone()),
        ("the group's 1 earlier command(s), never sealed, go with it", {
            let mut two = partial_record.clone();
            encode_command(&mut two, 32, &payload(32));
            two.truncate(two.len() - 2);
            two
        }),
    ];
    for (reason, tail) in cases {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), "alpha", 30, 1 << 20);
        let path = segment(dir.path(), 1);
        let committed_len = std::fs::metadata(&path).unwrap().len();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&tail);
        std::fs::write(&path, &bytes).unwrap();

        let (mut journal, report) =
            Journal::open(dir.path(), tenant("alpha"), JournalOptions::default()).unwrap();
        let torn = report.torn_tail.unwrap_or_else(|| panic!("{reason}: no torn tail reported"));
        assert!(torn.reason.contains(reason), "{reason}: {}", torn.reason);
        assert_eq!((torn.offset, torn.bytes), (committed_len, tail.len() as u64), "{reason}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), committed_len, "{reason}: truncated");
        journal.append_batch([(31, &payload(31)[..])]).unwrap();
        drop(journal);
        assert_eq!(
            read_all(dir.path(), "alpha").unwrap(),
            (1..=31).collect::<Vec<_>>(),
            "{reason}"
        );
    }
}

const PREALLOCATED_BYTES: u64 = 64 << 10;

/// Writes commands `from..=to` in batches of 10, a checkpoint after every 10th, waiting for
/// each next segment's file to be prepared so that every segment is preallocated (the first
/// as the journal is created).
fn build_preallocated(dir: &Path, from: u64, to: u64) -> Journal {
    build_preallocated_with(dir, from, to, JournalOptions::default().direct_io)
}

/// As [`build_preallocated`], writing preallocated segments direct or buffered.
fn build_preallocated_with(dir: &Path, from: u64, to: u64, direct_io: bool) -> Journal {
    let options =
        JournalOptions { segment_bytes_max: PREALLOCATED_BYTES, direct_io, ..Default::default() };
    let (mut journal, report) = Journal::open(dir, tenant("alpha"), options).unwrap();
    assert_eq!((report.last_sequence, report.torn_tail), (from - 1, None));
    if from == 1 {
        // A new journal's first segment is preallocated too: its first commit goes direct.
        let first = std::fs::metadata(segment(dir, 1)).unwrap().len();
        assert_eq!(first, PREALLOCATED_BYTES, "the first segment is zero-filled");
        assert!(journal.writes_direct() == (direct_io && direct_possible(dir)));
    }
    for sequence in from..=to {
        journal.append_command(sequence, &payload(sequence)).unwrap();
        if sequence % 10 == 0 || sequence == to {
            journal.append_checkpoint(&key(), [sequence as u8; 32]).unwrap();
            journal.commit().unwrap();
            journal.await_prepared_segment();
        }
    }
    journal
}

#[test]
fn preallocated_segments_end_in_zeros_read_back_and_back_up() {
    let dir = tempfile::tempdir().unwrap();
    let journal = build_preallocated(dir.path(), 1, 2_000);
    let segments = (1..).take_while(|n| segment(dir.path(), *n).exists()).count() as u32;
    assert!(segments >= 3, "64 KiB segments: {segments}");
    for number in 1..=segments {
        let bytes = std::fs::read(segment(dir.path(), number)).unwrap();
        assert_eq!(bytes.len() as u64, PREALLOCATED_BYTES, "segment {number} preallocated");
        let written = keel_journal::format::written_len(&bytes);
        assert!(written < bytes.len() && is_unwritten(&bytes[written..]), "segment {number}");
    }
    drop(journal);
    assert!(
        !dir.path().join("next-segment.tmp").exists(),
        "a closed journal leaves no helper file"
    );
    assert_eq!(read_all(dir.path(), "alpha").unwrap(), (1..=2_000).collect::<Vec<_>>());

    // The backup copies records, not the live segment's zeros, so it stays a prefix as the
    // journal goes on filling that space.
    let backup = tempfile::tempdir().unwrap();
    keel_journal::sync_backup(dir.path(), backup.path()).unwrap();
    assert_eq!(read_all(backup.path(), "alpha").unwrap(), (1..=2_000).collect::<Vec<_>>());
    let last = segment(backup.path(), segments);
    assert!(std::fs::metadata(&last).unwrap().len() < PREALLOCATED_BYTES, "no zeros copied");

    // Reopened: no torn tail, appends go after the last record, not after the zeros.
    drop(build_preallocated(dir.path(), 2_001, 2_500));
    assert_eq!(read_all(dir.path(), "alpha").unwrap(), (1..=2_500).collect::<Vec<_>>());
    keel_journal::sync_backup(dir.path(), backup.path()).unwrap();
    assert_eq!(read_all(backup.path(), "alpha").unwrap(), (1..=2_500).collect::<Vec<_>>());
}

/// A segment preallocated under a smaller `segment_bytes_max` ends where its zeros end when
/// the journal is reopened under a larger one (records never go on past them into space the
/// file system must allocate as it goes); the segments after it take the new size.
#[test]
fn a_larger_segment_setting_rolls_at_the_preallocated_end() {
    let dir = tempfile::tempdir().unwrap();
    drop(build_preallocated(dir.path(), 1, 100));
    let larger = 4 * PREALLOCATED_BYTES;
    let options = JournalOptions { segment_bytes_max: larger, ..JournalOptions::default() };
    let (mut journal, _) = Journal::open(dir.path(), tenant("alpha"), options).unwrap();
    for sequence in 101..=3_000 {
        journal.append_command(sequence, &payload(sequence)).unwrap();
        if sequence % 10 == 0 {
            journal.append_checkpoint(&key(), [sequence as u8; 32]).unwrap();
            journal.commit().unwrap();
            journal.await_prepared_segment();
        }
    }
    drop(journal);
    let first = std::fs::read(segment(dir.path(), 1)).unwrap();
    assert_eq!(first.len() as u64, PREALLOCATED_BYTES, "the first segment kept its size");
    assert!(is_unwritten(&first[keel_journal::format::written_len(&first)..]));
    let second = std::fs::metadata(segment(dir.path(), 2)).unwrap().len();
    assert_eq!(second, larger, "the next segment is preallocated at the new size");
    assert_eq!(read_all(dir.path(), "alpha").unwrap(), (1..=3_000).collect::<Vec<_>>());
}

/// A journal whose last segment grows by appends (copied back from a backup, which holds
/// records and no zeros) moves to a preallocated segment as soon as the helper has one ready,
/// not after `segment_bytes_max` bytes of slower syncs; with preallocation off it stays.
#[test]
fn a_segment_grown_by_appends_is_left_once_a_preallocated_one_is_ready() {
    for preallocate in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), "alpha", 40, 1 << 20);
        let appended = std::fs::metadata(segment(dir.path(), 1)).unwrap().len();
        let options = JournalOptions {
            segment_bytes_max: PREALLOCATED_BYTES,
            preallocate,
            ..JournalOptions::default()
        };
        let (mut journal, _) = Journal::open(dir.path(), tenant("alpha"), options).unwrap();
        for sequence in 41..=60 {
            journal.append_command(sequence, &payload(sequence)).unwrap();
            if sequence % 10 == 0 {
                journal.commit().unwrap();
                journal.await_prepared_segment();
            }
        }
        drop(journal);
        let first = std::fs::metadata(segment(dir.path(), 1)).unwrap().len();
        let second = std::fs::metadata(segment(dir.path(), 2)).map(|m| m.len()).ok();
        if preallocate {
            // 41..=50 went on in the old segment, while the helper wrote the new one's zeros.
            assert!(first > appended, "the first commit after opening: {first} > {appended}");
            assert_eq!(second, Some(PREALLOCATED_BYTES), "51..=60 in a preallocated segment");
        } else {
            assert_eq!(second, None, "no preallocation: the segment goes on by appends");
        }
        assert_eq!(read_all(dir.path(), "alpha").unwrap(), (1..=60).collect::<Vec<_>>());
    }
}

/// Direct writes (the default, where the file system allows them) leave every segment's bytes
/// as buffered writes do: the records, then the preallocated zeros. Also across a reopen part
/// way through a page, whose written part the direct writer must carry into its next write.
#[test]
fn direct_and_buffered_writes_leave_the_same_bytes() {
    let direct = tempfile::tempdir().unwrap();
    let buffered = tempfile::tempdir().unwrap();
    for (dir, direct_io) in [(&direct, true), (&buffered, false)] {
        let journal = build_preallocated_with(dir.path(), 1, 1_234, direct_io);
        assert!(!direct_io || journal.writes_direct() || !direct_possible(dir.path()));
        assert!(direct_io || !journal.writes_direct());
        drop(journal);
        let journal = build_preallocated_with(dir.path(), 1_235, 2_003, direct_io);
        assert!(!direct_io || journal.writes_direct() || !direct_possible(dir.path()));
        drop(journal);
    }
    let segments = (1..).take_while(|n| segment(direct.path(), *n).exists()).count() as u32;
    assert!(segments >= 3, "64 KiB segments: {segments}");
    for number in 1..=segments + 1 {
        let ours = std::fs::read(segment(direct.path(), number)).ok();
        let theirs = std::fs::read(segment(buffered.path(), number)).ok();
        assert!(ours == theirs, "segment {number} differs between direct and buffered writes");
    }
    assert_eq!(read_all(direct.path(), "alpha").unwrap(), (1..=2_003).collect::<Vec<_>>());
}

/// Whether files in `dir` can be opened for direct writes (tmpfs on older kernels refuses).
fn direct_possible(dir: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let probe = dir.join("direct-probe");
    let possible = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe)
        .is_ok();
    let _ = std::fs::remove_file(probe);
    possible
}

#[test]
fn torn_writes_into_preallocated_space_are_truncated_and_reported() {
    let partial_record = {
        let mut bytes = Vec::new();
        encode_command(&mut bytes, 1_701, &payload(1_701));
        bytes
    };
    // (what the crash left in the zeros after the last committed record, reason fragment)
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "payload checksum of the final record",
            partial_record[..RECORD_HEADER_BYTES + 3].to_vec(),
        ),
        ("final record does not match", {
            let mut whole = partial_record.clone();
            let last = whole.len() - 1;
            whole[last] ^= 0xff;
            whole
        }),
        ("nothing valid follows", {
            let mut header = partial_record[..20].to_vec();
            header.extend_from_slice(&[0; 50]);
            header.push(0x5a);
            header
        }),
        // A crash can persist the pages of one write in any order: the first page of the write
        // was lost, a later one (holding a whole record header) was not.
        ("the page it starts in was never written", {
            let mut gap = vec![0u8; 9_000];
            gap.extend_from_slice(&partial_record);
            gap
        }),
        ("a page of the record was never written", {
            let mut big = Vec::new();
            let filler = vec![b'x'; 3 * 4096];
            encode_command(&mut big, 1_701, &filler);
            encode_command(&mut big, 1_702, &payload(1_702));
            big
        }),
    ];
    for (reason, tail) in cases {
        let dir = tempfile::tempdir().unwrap();
        drop(build_preallocated(dir.path(), 1, 1_700));
        let last = (1..).take_while(|n| segment(dir.path(), *n + 1).exists()).count() as u32 + 1;
        assert!(last >= 2, "{reason}: the last segment is a preallocated one");
        let path = segment(dir.path(), last);
        let mut bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, PREALLOCATED_BYTES);
        let committed = keel_journal::format::written_len(&bytes);
        assert!(committed + 20_000 <= bytes.len(), "room after the records for every tail");
        bytes[committed..committed + tail.len()].copy_from_slice(&tail);
        if reason.contains("a page of the record") {
            let lost = (committed + 4096).next_multiple_of(4096);
            bytes[lost..lost + 4096].fill(0);
        }
        std::fs::write(&path, &bytes).unwrap();

        let (mut journal, report) =
            Journal::open(dir.path(), tenant("alpha"), JournalOptions::default()).unwrap();
        let torn = report.torn_tail.unwrap_or_else(|| panic!("{reason}: no torn tail reported"));
        assert!(torn.reason.contains(reason), "{reason}: {}", torn.reason);
        assert_eq!(torn.offset, committed as u64, "{reason}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), committed as u64, "{reason}");
        journal.append_batch([(1_701, &payload(1_701)[..])]).unwrap();
        drop(journal);
        assert_eq!(read_all(dir.path(), "alpha").unwrap(), (1..=1_701).collect::<Vec<_>>());
    }
}

/// A record damaged in a closed, preallocated segment is corruption, and so is a record lost
/// to zeros there: the next segment's header no longer continues the chain.
#[test]
fn damage_in_a_closed_preallocated_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    drop(build_preallocated(dir.path(), 1, 2_000));
    let path = segment(dir.path(), 2);
    let pristine = std::fs::read(&path).unwrap();
    let written = keel_journal::format::written_len(&pristine);
    let last_record = *record_offsets(&pristine).last().unwrap();

    let mut flipped = pristine.clone();
    flipped[written - 1] ^= 0x01;
    std::fs::write(&path, &flipped).unwrap();
    let (segment_path, offset, _, found) = corruption(read_all(dir.path(), "alpha"));
    assert_eq!((segment_path, offset), (path.clone(), last_record as u64));
    assert!(matches!(found, Corruption::PayloadChecksum), "{found:?}");

    let mut zeroed = pristine.clone();
    zeroed[last_record..written].fill(0);
    std::fs::write(&path, &zeroed).unwrap();
    let (segment_path, offset, _, found) = corruption(read_all(dir.path(), "alpha"));
    assert_eq!((segment_path, offset), (segment(dir.path(), 3), 0));
    assert!(matches!(found, Corruption::ChainBroken), "{found:?}");
}

#[test]
fn every_corruption_is_detected_and_named() {
    struct Case {
        name: &'static str,
        damage: fn(&Path),
        expect: fn(&Corruption) -> bool,
    }
    fn flip(path: &Path, at: usize) {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[at] ^= 0x04;
        std::fs::write(path, bytes).unwrap();
    }
    fn third_record(path: &Path) -> usize {
        record_offsets(&std::fs::read(path).unwrap())[2]
    }
    let cases = [
        Case {
            name: "flipped payload bit",
            damage: |dir| {
                let p = segment(dir, 1);
                flip(&p, third_record(&p) + RECORD_HEADER_BYTES + 2)
            },
            expect: |c| *c == Corruption::PayloadChecksum,
        },
        Case {
            name: "flipped header bit",
            damage: |dir| {
                let p = segment(dir, 1);
                flip(&p, third_record(&p) + 13)
            },
            expect: |c| matches!(c, Corruption::Header(h) if h.contains("header checksum")),
        },
        Case {
            name: "flipped chain bit",
            damage: |dir| {
                let p = segment(dir, 1);
                flip(&p, third_record(&p) + 40)
            },
            expect: |c| *c == Corruption::ChainBroken,
        },
        Case {
            name: "zeroed block",
            damage: |dir| {
                let p = segment(dir, 1);
                let mut b = std::fs::read(&p).unwrap();
                let at = third_record(&p);
                b[at..at + 256].fill(0);
                std::fs::write(&p, b).unwrap()
            },
            expect: |c| matches!(c, Corruption::Header(h) if h.contains("magic")),
        },
        Case {
            name: "truncated middle segment",
            damage: |dir| {
                let p = segment(dir, 2);
                let len = std::fs::metadata(&p).unwrap().len();
                std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(len - 10).unwrap()
            },
            expect: |c| *c == Corruption::Truncated,
        },
        Case {
            name: "missing segment",
            damage: |dir| std::fs::remove_file(segment(dir, 2)).unwrap(),
            expect: |c| *c == Corruption::SegmentOrder { expected: 2, found: 3 },
        },
        Case {
            name: "reordered segments",
            damage: |dir| {
                let tmp = dir.join("swap");
                std::fs::rename(segment(dir, 1), &tmp).unwrap();
                std::fs::rename(segment(dir, 2), segment(dir, 1)).unwrap();
                std::fs::rename(&tmp, segment(dir, 2)).unwrap()
            },
            expect: |c| *c == Corruption::SegmentOrder { expected: 1, found: 2 },
        },
        Case {
            name: "altered record with CRC recomputed",
            damage: |dir| rewrite(&segment(dir, 1), 2, false),
            expect: |c| *c == Corruption::ChainBroken,
        },
        Case {
            name: "chain recomputed without the signing key",
            damage: |dir| rewrite(&segment(dir, 1), 2, true),
            expect: |c| *c == Corruption::CheckpointSignature,
        },
        Case {
            name: "segment of another tenant",
            damage: |dir| {
                let other = tempfile::tempdir().unwrap();
                build(other.path(), "beta", 95, 2_000);
                std::fs::copy(segment(other.path(), 2), segment(dir, 2)).unwrap();
            },
            expect: |c| *c == Corruption::WrongTenant,
        },
    ];
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), "alpha", 95, 2_000);
        (case.damage)(dir.path());
        let (segment_path, offset, sequence, found) = corruption(read_all(dir.path(), "alpha"));
        assert!(
            (case.expect)(&found),
            "{}: found {found:?} at {} offset {offset} sequence {sequence:?}",
            case.name,
            segment_path.display()
        );
        let message = JournalError::Corrupt {
            location: keel_journal::Location { segment: segment_path, offset, sequence },
            corruption: found,
        }
        .to_string();
        assert!(message.contains(".seg, offset "), "{}: {message}", case.name);
    }
}

/// Changes the payload of record `index` of a segment and recomputes its checksums; with
/// `rechain`, also recomputes every later chained record's chain value (what an attacker
/// without the node key can do), leaving checkpoint signatures as they were.
fn rewrite(path: &Path, index: usize, rechain: bool) {
    let bytes = std::fs::read(path).unwrap();
    let header = keel_journal::format::SegmentHeader::decode(&bytes).unwrap();
    let mut out = bytes[..SEGMENT_HEADER_BYTES].to_vec();
    let mut chain = header.prev_chain;
    let mut pending_from = out.len();
    for (n, at) in record_offsets(&bytes).into_iter().enumerate() {
        let record = decode_record_header(&bytes[at..at + RECORD_HEADER_BYTES]).unwrap();
        let mut body = bytes
            [at + RECORD_HEADER_BYTES..at + RECORD_HEADER_BYTES + record.length as usize]
            .to_vec();
        if n == index {
            body[8] = b'9';
        }
        let start = out.len();
        if !is_chained(record.version, record.kind) {
            encode_command(&mut out, record.sequence, &body);
            continue;
        }
        let new_chain =
            encode_chained(&mut out, pending_from, &chain, record.kind, record.sequence, &body);
        pending_from = out.len();
        if !rechain {
            // Keep the stored chain value: only the checksums were fixed up.
            out[start + 32..start + 64].copy_from_slice(&record.chain);
            chain = record.chain;
        } else {
            chain = new_chain;
        }
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn a_corrupt_tenant_stays_closed_and_others_are_unaffected() {
    let root = tempfile::tempdir().unwrap();
    let (alpha, beta) = (root.path().join("alpha"), root.path().join("beta"));
    build(&alpha, "alpha", 40, 1 << 20);
    build(&beta, "beta", 40, 1 << 20);
    let path = segment(&alpha, 1);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = record_offsets(&bytes)[5] + RECORD_HEADER_BYTES;
    bytes[at] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let error = Journal::open(&alpha, tenant("alpha"), JournalOptions::default()).unwrap_err();
    assert!(
        matches!(error, JournalError::Corrupt { corruption: Corruption::PayloadChecksum, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("sequence 6"), "{error}");
    assert_eq!(read_all(&beta, "beta").unwrap().len(), 40);
    let (_, report) = Journal::open(&beta, tenant("beta"), JournalOptions::default()).unwrap();
    assert_eq!(report.last_sequence, 40);
}

/// Exhaustive: flipping any single bit of any byte before the final record is detected. (A
/// damaged final record is indistinguishable from a torn write and is reported as one.)
#[test]
fn every_single_bit_flip_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), "alpha", 12, 1 << 20);
    let path = segment(dir.path(), 1);
    let pristine = std::fs::read(&path).unwrap();
    let last_record = *record_offsets(&pristine).last().unwrap();
    for at in 0..last_record {
        for bit in [0, 3, 7] {
            let mut bytes = pristine.clone();
            bytes[at] ^= 1 << bit;
            std::fs::write(&path, &bytes).unwrap();
            let result = read_all(dir.path(), "alpha");
            assert!(result.is_err(), "flip of bit {bit} at byte {at} went unnoticed: {result:?}");
        }
    }
}

/// A flipped bit in the header of the journal's final seal (bytes 0..28, under the header
/// checksum) no longer loses its group: the seal's chain value proves every command of it, the
/// header is rebuilt and written back on open, and the journal goes on. A flip in its chain
/// value or its reserved bytes breaks the chain: corruption, nothing dropped.
#[test]
fn a_damaged_final_seal_is_proven_by_its_chain_and_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), "alpha", 25, 1 << 20);
    let path = segment(dir.path(), 1);
    let pristine = std::fs::read(&path).unwrap();
    let seal = *record_offsets(&pristine).last().unwrap();
    let header = decode_record_header(&pristine[seal..seal + RECORD_HEADER_BYTES]).unwrap();
    assert_eq!((header.kind, header.sequence, pristine.len()), (RecordKind::Seal, 25, seal + 64));
    for at in 0..28 {
        for bit in [0, 3, 7] {
            let mut bytes = pristine.clone();
            bytes[seal + at] ^= 1 << bit;
            std::fs::write(&path, &bytes).unwrap();
            let summary = read_journal::<JournalError>(
                dir.path(),
                tenant("alpha"),
                Trust::Key(key().verifying_key()),
                None,
                |_| {},
                |_| Ok(()),
            )
            .unwrap_or_else(|e| panic!("byte {at} bit {bit}: {e}"));
            assert!(summary.repaired_seal.is_some() && summary.torn_tail.is_none(), "{at}");
            let (journal, report) =
                Journal::open(dir.path(), tenant("alpha"), JournalOptions::default()).unwrap();
            let repaired = report.repaired_seal.unwrap_or_else(|| panic!("byte {at} bit {bit}"));
            assert_eq!((repaired.offset, repaired.sequence), (seal as u64, 25));
            assert_eq!((report.last_sequence, report.torn_tail), (25, None));
            drop(journal);
            assert_eq!(std::fs::read(&path).unwrap(), pristine, "byte {at}: written back");
        }
    }
    // The chain value and the reserved bytes are the chain's own input: a flip there is
    // corruption, reported and kept for an operator, never truncated.
    for at in [28, 31, 32, 63] {
        let mut bytes = pristine.clone();
        bytes[seal + at] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let error = Journal::open(dir.path(), tenant("alpha"), JournalOptions::default());
        assert!(
            matches!(error, Err(JournalError::Corrupt { corruption: Corruption::ChainBroken, .. })),
            "byte {at}: {error:?}"
        );
    }
    // Repaired, the journal goes on and reads back whole, its continuous backup (which holds
    // the seal as written) still level with it.
    std::fs::write(&path, &pristine).unwrap();
    let backup = tempfile::tempdir().unwrap();
    keel_journal::sync_backup(dir.path(), backup.path()).unwrap();
    let mut bytes = pristine.clone();
    bytes[seal + 2] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let options =
        JournalOptions { backup_dir: Some(backup.path().to_path_buf()), ..Default::default() };
    let (mut journal, _) = Journal::open(dir.path(), tenant("alpha"), options).unwrap();
    journal.append_batch([(26, &payload(26)[..])]).unwrap();
    drop(journal);
    assert_eq!(read_all(dir.path(), "alpha").unwrap(), (1..=26).collect::<Vec<_>>());
    assert_eq!(read_all(backup.path(), "alpha").unwrap(), (1..=26).collect::<Vec<_>>());
}
