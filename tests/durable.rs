//! The durable path end to end: import journals, reopen replays to the same state hash,
//! snapshots are used only when the journal vouches for them, `keel journal verify` names
//! corruption, and a tenant rebuilds from its backup copy.
#![allow(clippy::unwrap_used, reason = "tests: a failed setup should fail loudly")]

use std::path::Path;
use std::process::{Command, Output};

use keel::import::{import, import_durable, ImportOptions};
use keel_domain::TenantId;
use keel_pipeline::store::{DataDir, StoreOptions, TenantStore};

fn options() -> ImportOptions {
    ImportOptions {
        tenant: "demo".parse().unwrap(),
        instruments_csv: keel::defaults::INSTRUMENTS_CSV.to_owned(),
        accounts_csv: keel::defaults::ACCOUNTS_CSV.to_owned(),
        business_date: None,
    }
}

fn trades() -> std::fs::File {
    std::fs::File::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/trades.csv")).unwrap()
}

fn keel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel")).args(args).output().unwrap()
}

fn demo() -> TenantId {
    "demo".parse().unwrap()
}

/// New trades `PREFIX-n`: the example file's first new trade, booked again and again under new
/// report ids.
fn new_trades(prefix: &'static str) -> impl Fn(u64) -> keel_engine::Command {
    use keel_domain::TradeAction;
    use keel_engine::Command as EngineCommand;
    let template = keel::tradefile::parse_trade_file(trades())
        .unwrap()
        .into_iter()
        .find_map(|row| match row.command {
            Ok(EngineCommand::Trade(report)) if matches!(report.action, TradeAction::New(_)) => {
                Some(report)
            }
            _ => None,
        })
        .unwrap();
    move |n| {
        let mut report = template.clone();
        report.report_id = format!("{prefix}-{n}").parse().unwrap();
        EngineCommand::Trade(report)
    }
}

#[test]
fn durable_import_equals_in_memory_and_reopens_to_the_same_hash() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    let in_memory = import(&options(), trades()).unwrap();
    let (durable, recovery) =
        import_durable(&options(), trades(), &data, StoreOptions::default()).unwrap();
    assert_eq!(recovery.commands_replayed, 0);
    assert_eq!(durable.engine.state_hash(), in_memory.engine.state_hash());

    let (store, recovery) = TenantStore::open(&data, demo(), StoreOptions::default()).unwrap();
    assert_eq!(store.engine().state_hash(), in_memory.engine.state_hash());
    assert_eq!(recovery.commands_replayed, in_memory.engine.last_sequence());
    assert!(recovery.checkpoints_verified >= 1, "the import closes with a checkpoint");

    let output = keel(&["journal", "verify", "--data-dir", dir.path().to_str().unwrap(), "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["tenants"][0]["state_hash"], in_memory.engine.state_hash().to_string());
}

#[test]
fn reopen_starts_from_a_snapshot_only_when_the_journal_vouches_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    let store_options = StoreOptions { checkpoint_interval: 50, ..StoreOptions::default() };
    let (report, _) = import_durable(&options(), trades(), &data, store_options.clone()).unwrap();
    let expected = report.engine.state_hash();
    let (mut store, _) = TenantStore::open(&data, demo(), store_options.clone()).unwrap();
    let snapshot = store.snapshot().unwrap();
    drop(store);

    let (store, recovery) = TenantStore::open(&data, demo(), store_options.clone()).unwrap();
    assert_eq!(recovery.snapshot.as_ref().map(|(path, _)| path.clone()), Some(snapshot.clone()));
    assert_eq!(recovery.commands_replayed, 0);
    assert_eq!(store.engine().state_hash(), expected);
    drop(store);

    // A damaged snapshot is skipped and the journal replayed from the start.
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&snapshot, &bytes).unwrap();
    let (store, recovery) = TenantStore::open(&data, demo(), store_options.clone()).unwrap();
    assert_eq!(recovery.snapshot, None);
    assert_eq!(recovery.snapshots_rejected.len(), 1);
    assert_eq!(store.engine().state_hash(), expected);
}

#[test]
fn verify_names_the_corrupt_record_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    import_durable(&options(), trades(), &data, StoreOptions::default()).unwrap();
    let segment = data.journal_dir(demo()).join("00000001.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[20_000] ^= 0x10;
    std::fs::write(&segment, &bytes).unwrap();
    let output = keel(&["journal", "verify", "--data-dir", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("demo: FAILED: journal corrupt at segment "), "{text}");
    assert!(text.contains("00000001.seg, offset ") && text.contains(", sequence "), "{text}");
    // The tenant will not open either.
    assert!(TenantStore::open(&data, demo(), StoreOptions::default()).is_err());
}

#[test]
fn a_tenant_rebuilds_from_its_backup_when_the_primary_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    let (report, _) = import_durable(&options(), trades(), &data, StoreOptions::default()).unwrap();
    let output = keel(&[
        "journal",
        "backup",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--to",
        backup.path().to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // A second pass copies nothing new and leaves the copy as it was.
    let again = keel(&[
        "journal",
        "backup",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--to",
        backup.path().to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 bytes copied"));

    // Ransomware: the tenant's data is gone. The node key survives (it lives outside).
    std::fs::remove_dir_all(data.tenant_dir(demo())).unwrap();
    let restored = DataDir::new(dir.path());
    let from_backup = DataDir::new(backup.path());
    std::fs::create_dir_all(restored.journal_dir(demo())).unwrap();
    for entry in std::fs::read_dir(from_backup.journal_dir(demo())).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), restored.journal_dir(demo()).join(entry.file_name())).unwrap();
    }
    let (store, recovery) = TenantStore::open(&restored, demo(), StoreOptions::default()).unwrap();
    assert_eq!(store.engine().state_hash(), report.engine.state_hash());
    assert_eq!(recovery.commands_replayed, report.engine.last_sequence());
}

#[test]
fn continuous_backup_mirrors_every_commit() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    let mut store_options = StoreOptions::default();
    store_options.journal.backup_dir = Some(DataDir::new(backup.path()).journal_dir(demo()));
    import_durable(&options(), trades(), &data, store_options).unwrap();
    let primary = std::fs::read(data.journal_dir(demo()).join("00000001.seg")).unwrap();
    let copy = std::fs::read(DataDir::new(backup.path()).journal_dir(demo()).join("00000001.seg"))
        .unwrap();
    // The primary is preallocated: its records, then zeros. The backup holds the records.
    let written = keel_journal::format::written_len(&primary);
    assert!(primary[written..].iter().all(|&b| b == 0), "zeros after the records");
    assert_eq!(primary[..written], copy[..]);
}

#[test]
fn a_snapshot_from_another_history_is_rejected_and_old_snapshots_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    let (report, _) = import_durable(&options(), trades(), &data, StoreOptions::default()).unwrap();
    let (mut store, _) = TenantStore::open(&data, demo(), StoreOptions::default()).unwrap();
    for _ in 0..3 {
        store.snapshot().unwrap();
        store
            .submit((0..10).map(|_| {
                (
                    keel_engine::Command::OpenBusinessDate(
                        keel_domain::Date::parse("2026-11-30").unwrap(),
                    ),
                    0,
                )
            }))
            .unwrap();
    }
    let snapshots = keel_journal::list_snapshots(&data.snapshot_dir(demo())).unwrap();
    assert_eq!(snapshots.len(), keel_pipeline::store::SNAPSHOTS_KEPT, "{snapshots:?}");
    let expected = store.engine().state_hash();
    drop(store);

    // Another tenant history under the same name: import into a second data directory with a
    // different file, and plant its snapshot here at a higher sequence.
    let other_dir = tempfile::tempdir().unwrap();
    let other = DataDir::new(other_dir.path());
    let mut short =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/trades.csv"))
            .unwrap();
    short = short.replace("D25-0001", "Z25-0001");
    let (_, _) =
        import_durable(&options(), short.as_bytes(), &other, StoreOptions::default()).unwrap();
    let (mut other_store, _) = TenantStore::open(&other, demo(), StoreOptions::default()).unwrap();
    for _ in 0..25 {
        other_store
            .submit([(
                keel_engine::Command::OpenBusinessDate(
                    keel_domain::Date::parse("2026-11-30").unwrap(),
                ),
                0,
            )])
            .unwrap();
    }
    let planted = other_store.snapshot().unwrap();
    std::fs::copy(&planted, data.snapshot_dir(demo()).join(planted.file_name().unwrap())).unwrap();

    let (store, recovery) = TenantStore::open(&data, demo(), StoreOptions::default()).unwrap();
    assert_eq!(store.engine().state_hash(), expected);
    assert!(
        recovery
            .snapshots_rejected
            .iter()
            .any(|(path, reason)| path.ends_with(planted.file_name().unwrap())
                && reason.contains("differs")),
        "{:?}",
        recovery.snapshots_rejected
    );
    assert!(
        recovery.snapshot.is_some(),
        "falls back to the newest snapshot the journal vouches for"
    );
    assert!(report.engine.last_sequence() < store.engine().last_sequence());
}

/// Options for a tenant grown in a test: a checkpoint every 10 commands, a snapshot due every
/// 100, a state hash every `state_hash_interval`.
fn grown_options(state_hash_interval: u64) -> StoreOptions {
    StoreOptions {
        checkpoint_interval: 10,
        state_hash_interval,
        snapshot_interval: 100,
        ..StoreOptions::default()
    }
}

/// The demo tenant imported from the sample trades, then opened.
fn imported_store(data: &DataDir, store_options: StoreOptions) -> TenantStore {
    import_durable(&options(), trades(), data, store_options.clone()).unwrap();
    TenantStore::open(data, demo(), store_options).unwrap().0
}

/// Checks signatures against the node key of `data`.
fn node_trust(data: &DataDir) -> keel_journal::Trust {
    keel_journal::Trust::Key(
        keel_journal::NodeKey::load_or_create(&data.node_dir()).unwrap().verifying_key(),
    )
}

/// A snapshot that cannot be written (here its directory is a file) is logged and skipped, and
/// its checkpoint still gets its state hash: the pass hashes the image it could not write.
#[test]
fn a_snapshot_that_cannot_be_written_still_attests_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    let trade = new_trades("NOSNAP");
    let mut store = imported_store(&data, grown_options(100));
    let snapshots = data.snapshot_dir(demo());
    let _ = std::fs::remove_dir_all(&snapshots);
    std::fs::write(&snapshots, b"not a directory").unwrap();
    let first = store.engine().last_sequence();
    for n in 0..1_000 {
        assert!(store.stage(trade(n), 0).unwrap().is_accepted());
        if n % 50 == 49 {
            store.flush().unwrap();
            store.finish_pass();
        }
    }
    drop(store.close().unwrap());
    let mut deferred = 0;
    let trust = node_trust(&data);
    let report = keel_pipeline::store::replay_into(
        &mut keel_engine::Engine::new(demo()),
        &data.journal_dir(demo()),
        trust,
        None,
        |_| {},
        |record, _| {
            if record.kind == keel_journal::RecordKind::Checkpoint && record.sequence > first {
                let checkpoint = keel_journal::Checkpoint::decode(record.payload).unwrap();
                let claim = keel_journal::StateClaim::decode(checkpoint.state_hash);
                deferred += usize::from(claim == keel_journal::StateClaim::Deferred);
            }
        },
    )
    .unwrap();
    assert!(deferred >= 2, "snapshot passes were due: {deferred}");
    assert!(report.unattested.is_empty(), "every deferred checkpoint attested: {report:?}");
    assert!(std::fs::metadata(&snapshots).unwrap().is_file(), "no snapshot written");
}

/// Automatic snapshots and state hashes on the pipelined path: both are taken as the tenant
/// grows, spaced at least the configured interval and at least the tenant's size in trades
/// apart (so their whole-state cost per command stays constant), and a reopen starts from the
/// newest snapshot and reaches the same state hash.
#[test]
fn background_snapshots_and_state_hashes_space_out_as_the_tenant_grows() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    let store_options = grown_options(40);
    let trade = new_trades("GROW");
    let mut store = imported_store(&data, store_options.clone());
    let first = store.engine().last_sequence();
    for n in 0..4_000 {
        assert!(store.stage(trade(n), 0).unwrap().is_accepted());
        if n % 37 == 36 {
            let staged = store.flush().unwrap();
            if n % 3 == 0 {
                assert_eq!(store.wait_durable(staged).unwrap(), staged);
            }
            // A pass due while the previous one runs waits for it: let each finish, so the
            // count below does not depend on how fast the helper thread runs here.
            store.finish_pass();
        }
    }
    let engine = store.close().unwrap();
    let (last, expected) = (engine.last_sequence(), engine.state_hash());

    // State hashes in the journal, with the tenant's size in trades when each was taken: in
    // line at the close, deferred (hashed off the shard thread) while growing, each deferred
    // one followed by its state-hash record.
    let mut hashed: Vec<(u64, usize)> = Vec::new();
    let (mut deferred, mut attested) = (Vec::new(), Vec::new());
    let mut replayed = keel_engine::Engine::new(demo());
    let trust = node_trust(&data);
    let report = keel_pipeline::store::replay_into(
        &mut replayed,
        &data.journal_dir(demo()),
        trust,
        None,
        |_| {},
        |record, engine| match record.kind {
            keel_journal::RecordKind::Checkpoint if record.sequence > first => {
                let checkpoint = keel_journal::Checkpoint::decode(record.payload).unwrap();
                match keel_journal::StateClaim::decode(checkpoint.state_hash) {
                    keel_journal::StateClaim::None => {}
                    keel_journal::StateClaim::Deferred => {
                        deferred.push(record.sequence);
                        hashed.push((record.sequence, engine.capture().trades().len()));
                    }
                    keel_journal::StateClaim::Hash(_) => {
                        hashed.push((record.sequence, engine.capture().trades().len()));
                    }
                }
            }
            keel_journal::RecordKind::StateHash => {
                let record = keel_journal::StateHashRecord::decode(record.payload).unwrap();
                if record.sequence > first {
                    attested.push(record.sequence);
                }
            }
            _ => {}
        },
    )
    .unwrap();
    assert_eq!(replayed.state_hash(), expected);
    assert!(deferred.len() >= 3, "deferred while growing: {hashed:?}");
    assert_eq!(attested, deferred, "every deferred state hash was written, in order");
    assert!(report.unattested.is_empty());
    assert!(report.state_hashes_verified >= hashed.len() as u64, "{report:?}");
    let (closing, during) = hashed.split_last().unwrap();
    assert_eq!(closing.0, last, "the close carries a state hash");
    assert!(during.len() >= 3, "state hashes while growing: {hashed:?}");
    for pair in during.windows(2) {
        let ((before, size), (after, _)) = (pair[0], pair[1]);
        let gap = after - before;
        assert!(gap >= 40 && gap + 10 >= size as u64, "{before} -> {after} at {size} trades");
    }
    // Fixed spacing would have hashed every 40 commands.
    assert!((during.len() as u64) < (last - first) / 40 / 4, "{hashed:?}");

    let snapshots = keel_journal::list_snapshots(&data.snapshot_dir(demo())).unwrap();
    assert_eq!(snapshots.len(), keel_pipeline::store::SNAPSHOTS_KEPT, "{snapshots:?}");
    let (store, recovery) = TenantStore::open(&data, demo(), store_options).unwrap();
    let (_, from) = recovery.snapshot.clone().unwrap();
    assert!(from > first, "the newest snapshot was taken while growing: {recovery:?}");
    assert_eq!(recovery.commands_replayed, last - from);
    assert_eq!(store.engine().state_hash(), expected);
}

/// A checkpoint that deferred its state hash is checked against the state-hash record that
/// follows it; a wrong or unannounced record is named as corruption; and one cut off by a stop
/// is recomputed by replay and written on open, after which the journal verifies whole.
#[test]
fn deferred_state_hashes_are_checked_and_a_missing_one_is_rewritten() {
    use keel_journal::{Journal, JournalOptions, NodeKey, DEFERRED_STATE_HASH};
    #[derive(Debug, Clone, Copy)]
    enum Tail {
        CutOff,
        Wrong,
        Unannounced,
    }
    let no_snapshots = StoreOptions { snapshot_interval: 0, ..StoreOptions::default() };
    for tail in [Tail::CutOff, Tail::Wrong, Tail::Unannounced] {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let (report, _) =
            import_durable(&options(), trades(), &data, no_snapshots.clone()).unwrap();
        let (expected, last) = (report.engine.state_hash(), report.engine.last_sequence());
        let key = NodeKey::load_or_create(&data.node_dir()).unwrap();
        let journal_dir = data.journal_dir(demo());
        let (mut journal, _) =
            Journal::open(&journal_dir, demo(), JournalOptions::default()).unwrap();
        match tail {
            Tail::CutOff => journal.append_checkpoint(&key, DEFERRED_STATE_HASH).unwrap(),
            Tail::Wrong => {
                journal.append_checkpoint(&key, DEFERRED_STATE_HASH).unwrap();
                journal.append_state_hash(&key, last, [7; 32]).unwrap();
            }
            Tail::Unannounced => journal.append_state_hash(&key, last - 1, expected.0).unwrap(),
        }
        journal.commit().unwrap();
        drop(journal);

        let data_dir = dir.path().to_str().unwrap();
        let verify = || {
            let output = keel(&["journal", "verify", "--data-dir", data_dir]);
            (output.status.code(), String::from_utf8(output.stdout).unwrap())
        };
        let pending = "demo: note: 1 deferred state hash(es) not in the journal yet";
        if let Tail::CutOff = tail {
            let (code, text) = verify();
            assert_eq!(code, Some(0), "a cut-off state hash is not corruption: {text}");
            assert!(text.contains(pending), "{text}");
        }
        let opened = TenantStore::open(&data, demo(), no_snapshots.clone());
        match tail {
            Tail::CutOff => {
                let (store, recovery) = opened.unwrap();
                assert_eq!(recovery.state_hashes_rewritten, 1, "{recovery:?}");
                assert_eq!(store.close().unwrap().state_hash(), expected);
                let (_, again) = TenantStore::open(&data, demo(), no_snapshots.clone()).unwrap();
                assert_eq!(again.state_hashes_rewritten, 0, "written once: {again:?}");
                assert!(again.state_hashes_verified >= 2, "{again:?}");
                let (code, text) = verify();
                assert_eq!(code, Some(0), "{text}");
                assert!(!text.contains("deferred"), "{text}");
                let dump = keel(&["journal", "dump", "--data-dir", data_dir, "--tenant", "demo"]);
                let dump = String::from_utf8(dump.stdout).unwrap();
                let line = format!("after sequence {last} signed by");
                assert!(
                    dump.lines().any(|l| l.contains("state-hash") && l.contains(&line)),
                    "{dump}"
                );
            }
            Tail::Wrong | Tail::Unannounced => {
                let error = format!("{:#}", opened.unwrap_err());
                let expected_fault = match tail {
                    Tail::Wrong => "state hash after replay does not match".to_owned(),
                    _ => format!("state-hash record for sequence {}", last - 1),
                };
                assert!(error.contains(&expected_fault), "{tail:?}: {error}");
                assert!(
                    error.contains(&format!("sequence {last}")),
                    "{tail:?} names the record: {error}"
                );
            }
        }
    }
}

/// A journal written before compact command payloads (format version 3: fixed-width
/// envelopes in version-3 records) still replays to the same state, and `keel journal dump`
/// still describes its commands.
#[test]
fn a_version_3_journal_of_fixed_width_commands_still_replays() {
    use keel_engine::{Encoding, Envelope};
    use keel_journal::format::{
        encode_record_as, genesis, tenant_bytes, RecordKind, SegmentHeader, FORMAT_VERSION,
    };
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    let in_memory = import(&options(), trades()).unwrap();
    import_durable(&options(), trades(), &data, StoreOptions::default()).unwrap();

    // The same commands as version 3 wrote them. Checkpoints are left out: their signatures
    // cover the chain, which the older encoding changes.
    let journal = data.journal_dir(demo());
    let mut commands = Vec::new();
    keel_journal::read_journal::<keel_journal::JournalError>(
        &journal,
        demo(),
        keel_journal::Trust::Unchecked,
        None,
        |_| {},
        |record| {
            if record.kind == RecordKind::Command {
                assert_eq!(record.version, FORMAT_VERSION);
                commands.push((record.sequence, Envelope::decode(record.payload).unwrap()));
            }
            Ok(())
        },
    )
    .unwrap();
    let header = SegmentHeader {
        number: 1,
        prev_sequence: 0,
        tenant: tenant_bytes(demo()),
        prev_chain: genesis(demo()),
    };
    let mut segment = header.encode_as(3).to_vec();
    let mut chain = genesis(demo());
    for (sequence, envelope) in &commands {
        let mut fixed = Vec::new();
        envelope.encode_as_into(Encoding::Fixed, &mut fixed);
        chain = encode_record_as(&mut segment, &chain, RecordKind::Command, *sequence, &fixed, 3);
    }
    std::fs::remove_dir_all(&journal).unwrap();
    std::fs::create_dir_all(&journal).unwrap();
    std::fs::write(journal.join("00000001.seg"), &segment).unwrap();
    let _ = std::fs::remove_dir_all(data.snapshot_dir(demo()));

    let (mut store, recovery) = TenantStore::open(&data, demo(), StoreOptions::default()).unwrap();
    assert_eq!(recovery.commands_replayed, commands.len() as u64);
    assert_eq!(store.engine().state_hash(), in_memory.engine.state_hash());

    // This build goes on in the same segment in its own format (commands sealed per group
    // commit), and the mixed segment replays, signatures and all.
    let trade = new_trades("V5");
    for n in 0..25 {
        assert!(store.stage(trade(n), 0).unwrap().is_accepted());
        if n % 10 == 9 {
            store.flush().unwrap();
        }
    }
    let expected = store.close().unwrap().state_hash();
    let (store, recovery) = TenantStore::open(&data, demo(), StoreOptions::default()).unwrap();
    assert_eq!(recovery.commands_replayed, commands.len() as u64 + 25);
    assert_eq!(store.engine().state_hash(), expected);
    drop(store);
    let key =
        keel_journal::keys::load_public_key(&data.node_dir().join(keel_journal::keys::PUBLIC_FILE))
            .unwrap();
    let summary = keel_journal::read_journal::<keel_journal::JournalError>(
        &journal,
        demo(),
        keel_journal::Trust::Key(key),
        None,
        |_| {},
        |_| Ok(()),
    )
    .unwrap();
    assert_eq!((summary.segments, summary.last_sequence), (1, commands.len() as u64 + 25));

    let dump = keel(&["journal", "dump", "--data-dir", dir.path().to_str().unwrap()]);
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.status.success(), "{text}");
    assert!(text.contains("open business date") && text.contains("new "), "{text}");
    assert!(!text.contains("does not decode"), "{text}");
}

/// Past 57,344 report ids (half of a 114,688-slot index) the report index's next size is built
/// on a helper thread and installed while trades keep coming; every report id, from before,
/// during and after the build, is still found (a resubmission is a duplicate), and the state
/// reopens to its hash.
#[test]
fn the_report_index_is_built_off_the_shard_and_every_report_id_still_dedupes() {
    use keel_engine::Outcome;
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    import_durable(&options(), trades(), &data, StoreOptions::default()).unwrap();
    let trade = new_trades("IDX");
    let (mut store, _) = TenantStore::open(&data, demo(), StoreOptions::default()).unwrap();
    let mut n = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while store.indexes_installed() == 0 {
        assert!(std::time::Instant::now() < deadline, "no index built by {n} trades");
        for _ in 0..500 {
            assert!(store.stage(trade(n), 0).unwrap().is_accepted());
            n += 1;
        }
        store.flush().unwrap();
    }
    // And on, while the records accepted during the build move across.
    for _ in 0..5_000 {
        assert!(store.stage(trade(n), 0).unwrap().is_accepted());
        n += 1;
    }
    for probe in (0..n).step_by(997).chain([n - 1]) {
        let outcome = store.stage(trade(probe), 0).unwrap();
        assert!(matches!(outcome, Outcome::Duplicate { .. }), "IDX-{probe}: {outcome:?}");
    }
    let engine = store.close().unwrap();
    let expected = engine.state_hash();
    let (store, _) = TenantStore::open(&data, demo(), StoreOptions::default()).unwrap();
    assert_eq!(store.engine().state_hash(), expected);
}

/// A state pass and a report index build never start beside each other: a pass that is due
/// waits while a build is out, and a build offered while a pass runs waits until the index is
/// five eighths full. Checked after every flush of a tenant with passes every 20,000 commands
/// (stretched to its size) while it grows past two index builds.
#[test]
fn a_state_pass_and_a_report_index_build_take_turns() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    import_durable(&options(), trades(), &data, StoreOptions::default()).unwrap();
    let trade = new_trades("TURN");
    let every = StoreOptions {
        state_hash_interval: 20_000,
        snapshot_interval: 20_000,
        ..StoreOptions::default()
    };
    let (mut store, _) = TenantStore::open(&data, demo(), every).unwrap();
    let (mut n, mut passes, mut builds, mut deferred) = (0, 0, 0, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while store.indexes_installed() < 2 {
        assert!(std::time::Instant::now() < deadline, "two index builds by {n} trades");
        let (pass_before, build_before) = (store.state_pass_running(), store.index_building());
        for _ in 0..500 {
            assert!(store.stage(trade(n), 0).unwrap().is_accepted());
            n += 1;
        }
        store.flush().unwrap();
        let (pass, build) = (store.state_pass_running(), store.index_building());
        if pass && !pass_before {
            passes += 1;
            assert!(!build, "a pass started beside an index build at {n} trades");
        }
        if build && !build_before {
            builds += 1;
            if pass {
                deferred += 1;
                let (len, capacity) = store.engine().index_fill();
                assert!(len >= capacity / 8 * 5, "a build beside a pass at {len} of {capacity}");
            }
        }
    }
    assert!(passes > 0 && builds > 0, "{passes} passes, {builds} builds in {n} trades");
    eprintln!("{n} trades: {passes} passes, {builds} builds, {deferred} of them beside a pass");
    let engine = store.close().unwrap();
    let expected = engine.state_hash();
    let (store, _) = TenantStore::open(&data, demo(), StoreOptions::default()).unwrap();
    assert_eq!(store.engine().state_hash(), expected);
}

/// What `OnDurable` saw: (the durable sequence, the thread it ran on).
type Released = std::sync::Arc<std::sync::Mutex<Vec<(u64, String)>>>;

struct Release(Released);

impl keel_journal::OnDurable for Release {
    fn durable(self: Box<Self>, durable: keel_journal::Durable) {
        let thread = std::thread::current().name().unwrap_or_default().to_owned();
        self.0.lock().unwrap().push((durable.sequence, thread));
    }

    fn failed(self: Box<Self>, why: &str) {
        panic!("failed: {why}");
    }
}

/// A batch's answers are released by the journal writer the moment the batch is durable, with
/// nothing asked of the store's caller (a shard busy with the next batch); a batch with
/// nothing to write has its answers released by the caller, once what went before is durable.
#[test]
fn answers_are_released_by_the_writer_once_durable() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    import_durable(&options(), trades(), &data, StoreOptions::default()).unwrap();
    let (mut store, _) = TenantStore::open(&data, demo(), StoreOptions::default()).unwrap();
    let trade = new_trades("THEN");
    let released = Released::default();
    let mut sequences = Vec::new();
    for n in 0..3 {
        assert!(store.stage(trade(n), 0).unwrap().is_accepted());
        sequences.push(store.engine().last_sequence());
        store.then(Box::new(Release(released.clone())));
        store.flush().unwrap();
    }
    // Not polled, not waited for: the writer runs them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while released.lock().unwrap().len() < 3 {
        assert!(std::time::Instant::now() < deadline, "released: {:?}", released.lock().unwrap());
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    for ((durable, thread), sequence) in released.lock().unwrap().iter().zip(&sequences) {
        assert!(durable >= sequence, "released at {durable}, staged {sequence}");
        assert_eq!(thread, "journal-demo");
    }
    // A query's batch: nothing to write. Held until what was staged before it is durable.
    assert!(store.stage(trade(3), 0).unwrap().is_accepted());
    store.flush().unwrap();
    let before = store.engine().last_sequence();
    let caller = std::thread::current().name().unwrap_or_default().to_owned();
    store.then(Box::new(Release(released.clone())));
    store.flush().unwrap();
    store.wait_durable(before).unwrap();
    let last = released.lock().unwrap().last().cloned().unwrap();
    assert_eq!(released.lock().unwrap().len(), 4);
    assert!(last.0 >= before, "{last:?} before {before}");
    assert_eq!(last.1, caller, "run by the caller");
    store.close().unwrap();
}

/// A command over the old 1 MiB envelope limit (a settlement price file of a large options
/// book) is journaled whole and replays; one over the journal's own limit is refused before it
/// changes anything, with an error that says so, and the tenant goes on.
#[test]
fn large_commands_are_journaled_whole_and_oversized_ones_refused_untouched() {
    use keel_domain::{Date, InstrumentId, Price};
    use keel_engine::Command as EngineCommand;
    use keel_settlement::SettlementPrices;
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    import_durable(&options(), trades(), &data, StoreOptions::default()).unwrap();
    let date = Date::parse("2026-11-27").unwrap();
    let prices = |count: usize| {
        let prices = (0..count)
            .map(|n| {
                let id: InstrumentId = format!("OPT-SERIES-{n:09}").parse().unwrap();
                (id, Price::parse("1.25").unwrap())
            })
            .collect();
        EngineCommand::LoadSettlementPrices(SettlementPrices { date, prices })
    };
    let (mut store, _) = TenantStore::open(&data, demo(), StoreOptions::default()).unwrap();
    let before = store.engine().last_sequence();
    // About 2 MiB: the old limit silently staged an empty payload for it.
    store.submit([(prices(80_000), 0)]).unwrap();
    let large = store.engine().state_hash();
    assert_eq!(store.engine().last_sequence(), before + 1);
    // About 17 MiB: more than a journal record holds.
    let error = store.submit([(prices(700_000), 0)]).unwrap_err().to_string();
    assert!(error.contains("too large") && error.contains("bytes"), "{error}");
    assert_eq!(store.engine().last_sequence(), before + 1, "nothing applied");
    assert_eq!(store.engine().state_hash(), large, "nothing changed");
    store.submit([(new_trades("AFTER")(1), 0)]).unwrap();
    let after = store.engine().state_hash();
    store.close().unwrap();
    let (reopened, _) = TenantStore::open(&data, demo(), StoreOptions::default()).unwrap();
    assert_eq!(reopened.engine().state_hash(), after, "the large command replayed");
    assert_eq!(reopened.engine().last_sequence(), before + 2);
}

/// Images taken so far by `store` and not yet counted (`PassTiming::Image`), and how many of
/// them were taken before their copies' reserve was in (`PassTiming::ReserveLate`).
fn images_taken(store: &mut TenantStore) -> (usize, usize) {
    use keel_pipeline::store::PassTiming;
    let (mut images, mut late) = (0, 0);
    store.take_pass_timings(|timing| match timing {
        PassTiming::Image(_) => images += 1,
        PassTiming::ReserveLate => late += 1,
        _ => {}
    });
    (images, late)
}

/// Once an image's writes have copied chunks, the next image waits until the chunk stocks hold
/// a reserve for as many copies again (`Stocks::reserve_for_image`), or until `reserve_wait`
/// has passed since it was asked for; with no copies counted, it is taken when due. The stocks
/// run without their helper here: the test restocks where the helper would, so what is waited
/// for does not depend on how fast this machine is.
#[test]
fn an_image_waits_for_the_reserve_for_its_copies() {
    use keel_domain::stock::{self, Stocks};
    use keel_domain::CowVec;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    let patient = StoreOptions {
        state_hash_interval: 2_000,
        snapshot_interval: 0,
        reserve_wait: Duration::from_secs(600),
        ..StoreOptions::default()
    };
    import_durable(&options(), trades(), &data, patient.clone()).unwrap();
    let stocks = Stocks::new();
    let _installed = stock::install(stocks.clone());
    let (mut store, _) = TenantStore::open(&data, demo(), patient).unwrap();
    let trade = new_trades("RSV");
    let mut n = 0;
    // Stages `commands` new trades, flushing every 100; returns the images taken meanwhile
    // (and how many of them late).
    let mut grow = |store: &mut TenantStore, commands: u64| {
        for _ in 0..commands {
            assert!(store.stage(trade(n), 0).unwrap().is_accepted());
            n += 1;
            if n % 100 == 0 {
                store.flush().unwrap();
            }
        }
        images_taken(store)
    };
    // Copies of a `u64` arena of 300 chunks, as if the engine's writes had made them while
    // the image's pass ran: 64 times as many (bounded by the 300 chunks there are) are reserved
    // for the next image.
    let chunk = CowVec::<u64>::chunk_len();
    let mut arena: CowVec<u64> = (0..(300 * chunk) as u64).collect();
    let mut copy_during_the_pass = |store: &mut TenantStore| {
        let image = arena.share();
        for at in (0..arena.len()).step_by(chunk).take(200) {
            arena[at] += 1;
        }
        drop(image);
        store.finish_pass();
    };

    assert_eq!(grow(&mut store, 2_500), (1, 0), "no copies counted yet: taken when due");
    copy_during_the_pass(&mut store);
    let held = stocks.buffers();
    assert_eq!(grow(&mut store, 6_000), (0, 0), "due, and waiting for its reserve");
    assert_eq!(stocks.buffers(), held, "no helper here: nothing made yet");
    assert!(stocks.restock() >= 300, "the reserve: 300 buffers and the usual stock");
    assert_eq!(grow(&mut store, 100), (1, 0), "taken once the reserve is in");
    copy_during_the_pass(&mut store);
    let engine = store.close().unwrap();
    let expected = engine.state_hash();

    // Reopened with a short wait (the stocks, and what they counted, are this thread's): the
    // reserve is never made, and the image goes ahead once the wait is over.
    let hasty = StoreOptions {
        state_hash_interval: 2_000,
        snapshot_interval: 0,
        reserve_wait: Duration::from_millis(200),
        ..StoreOptions::default()
    };
    let (mut store, _) = TenantStore::open(&data, demo(), hasty).unwrap();
    assert_eq!(store.engine().state_hash(), expected);
    let started = Instant::now();
    let taken = loop {
        let taken = grow(&mut store, 100);
        if taken.0 > 0 || started.elapsed() > Duration::from_secs(60) {
            break taken;
        }
    };
    assert_eq!(taken, (1, 1), "taken without its reserve, once the wait was over");
    assert!(started.elapsed() >= Duration::from_millis(200));
    let engine = store.close().unwrap();
    let expected = engine.state_hash();
    let (store, _) = TenantStore::open(&data, demo(), StoreOptions::default()).unwrap();
    assert_eq!(store.engine().state_hash(), expected);
}
