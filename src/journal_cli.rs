//! `keel journal verify` and `keel journal dump`: offline inspection of tenants' journals.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use ed25519_dalek::VerifyingKey;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use keel_domain::TenantId;
use keel_engine::{Command, Engine, Envelope};
use keel_journal::{read_journal, JournalError, RecordKind, Trust};
use serde_json::{json, Value};

use keel_pipeline::store::{replay_into, DataDir};

/// The public key that checkpoints must verify under: given in hex, or the node's `node.pub`.
pub fn public_key(data: &DataDir, hex: Option<&str>) -> anyhow::Result<VerifyingKey> {
    match hex {
        Some(hex) => keel_journal::keys::parse_public_key(hex)
            .context("--public-key is not an Ed25519 public key in hex"),
        None => {
            let path = data.node_dir().join(keel_journal::keys::PUBLIC_FILE);
            keel_journal::keys::load_public_key(&path).with_context(|| {
                format!("no node public key at {}; pass --public-key", path.display())
            })
        }
    }
}

fn progress_bar(total: u64, label: String, hidden: bool) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if hidden {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template(
        "{msg:>12} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(label);
    bar
}

/// The result of verifying one tenant.
#[derive(Debug)]
pub struct Verified {
    pub tenant: TenantId,
    pub outcome: Result<VerifiedJournal, String>,
}

#[derive(Debug)]
pub struct VerifiedJournal {
    pub segments: u32,
    pub commands: u64,
    pub checkpoints: u64,
    /// State hashes (in checkpoints, or in state-hash records for deferred checkpoints) that
    /// matched the replayed state: all of them, or verification fails.
    pub state_hashes: u64,
    /// Deferred checkpoints whose state-hash record is missing (a crash cut it off; the next
    /// open recomputes and writes it).
    pub state_hashes_pending: u64,
    pub snapshots: u64,
    pub last_sequence: u64,
    pub state_hash: String,
    pub torn_tail: Option<String>,
    /// The final seal's header was damaged and its chain value proves its group.
    pub repaired_seal: Option<String>,
}

/// Verifies tenants' journals from their first record: segment order and headers, every
/// record's checksums, sequence and chain, every checkpoint's signature, and, replaying into a
/// fresh engine, every checkpoint's state hash and every snapshot's.
pub fn verify(
    data: &DataDir,
    tenants: &[TenantId],
    key: VerifyingKey,
    quiet: bool,
) -> Vec<Verified> {
    tenants
        .iter()
        .map(|&tenant| Verified { tenant, outcome: verify_one(data, tenant, key, quiet) })
        .collect()
}

fn verify_one(
    data: &DataDir,
    tenant: TenantId,
    key: VerifyingKey,
    quiet: bool,
) -> Result<VerifiedJournal, String> {
    let journal_dir = data.journal_dir(tenant);
    let total = keel_journal::reader::journal_bytes(&journal_dir).map_err(|e| e.to_string())?;
    let bar = progress_bar(total, tenant.to_string(), quiet);
    // Snapshots are checked against the replayed state at their sequence.
    let mut snapshots: BTreeMap<u64, (PathBuf, [u8; 32])> = BTreeMap::new();
    for path in
        keel_journal::list_snapshots(&data.snapshot_dir(tenant)).map_err(|e| e.to_string())?
    {
        let snapshot = keel_journal::load_snapshot(&path)
            .map_err(|reason| format!("snapshot {}: {reason}", path.display()))?;
        snapshots.insert(snapshot.sequence, (path, *blake3::hash(&snapshot.body).as_bytes()));
    }
    let mut engine = Engine::new(tenant);
    let (mut commands, mut checkpoints, mut snapshot_checked) = (0, 0, 0);
    let mut snapshot_fault = None;
    let summary = replay_into(
        &mut engine,
        &journal_dir,
        Trust::Key(key),
        None,
        |bytes| bar.inc(bytes),
        |record, engine| {
            match record.kind {
                RecordKind::Command => commands += 1,
                RecordKind::Checkpoint | RecordKind::StateHash => checkpoints += 1,
                RecordKind::Seal => {}
            }
            if record.kind == RecordKind::Command {
                if let Some((path, hash)) = snapshots.get(&record.sequence) {
                    if engine.state_hash().0 == *hash {
                        snapshot_checked += 1;
                    } else if snapshot_fault.is_none() {
                        snapshot_fault = Some(format!(
                            "snapshot {} does not match the replayed state at sequence {}",
                            path.display(),
                            record.sequence
                        ));
                    }
                }
            }
        },
    );
    bar.finish_and_clear();
    let summary = summary.map_err(|e| e.to_string())?;
    if let Some(fault) = snapshot_fault {
        return Err(fault);
    }
    Ok(VerifiedJournal {
        segments: summary.read.segments,
        commands,
        checkpoints,
        state_hashes: summary.state_hashes_verified,
        state_hashes_pending: summary.unattested.len() as u64,
        snapshots: snapshot_checked,
        last_sequence: summary.read.last_sequence,
        state_hash: engine.state_hash().to_string(),
        repaired_seal: summary.read.repaired_seal.as_ref().map(|r| {
            format!(
                "{} offset {} ({}; commands up to sequence {} proven by its chain value)",
                r.segment.display(),
                r.offset,
                r.fault,
                r.sequence
            )
        }),
        torn_tail: summary.read.torn_tail.map(|t| {
            format!(
                "{} bytes at {} offset {}: {}",
                t.bytes,
                t.segment.display(),
                t.offset,
                t.reason
            )
        }),
    })
}

pub fn render_verify_text(results: &[Verified]) -> String {
    let mut out = String::new();
    for result in results {
        match &result.outcome {
            Ok(v) => {
                out += &format!(
                    "{}: OK: {} segments, {} commands, {} checkpoint signatures and {} state hashes verified, {} snapshots verified, last sequence {}, state {}\n",
                    result.tenant, v.segments, v.commands, v.checkpoints, v.state_hashes, v.snapshots, v.last_sequence, v.state_hash
                );
                if v.state_hashes_pending > 0 {
                    out += &format!("{}: note: {} deferred state hash(es) not in the journal yet (cut off by a stop; recomputed and written when the tenant is next opened)\n", result.tenant, v.state_hashes_pending);
                }
                if let Some(torn) = &v.torn_tail {
                    out += &format!("{}: note: torn tail of {torn} (truncated when the tenant is next opened)\n", result.tenant);
                }
                if let Some(seal) = &v.repaired_seal {
                    out += &format!("{}: note: damaged header of the final seal at {seal} (rewritten when the tenant is next opened)\n", result.tenant);
                }
            }
            Err(error) => out += &format!("{}: FAILED: {error}\n", result.tenant),
        }
    }
    out
}

pub fn render_verify_json(results: &[Verified]) -> Value {
    let tenants: Vec<Value> = results
        .iter()
        .map(|result| match &result.outcome {
            Ok(v) => json!({
                "tenant": result.tenant.as_str(), "ok": true, "segments": v.segments,
                "commands": v.commands, "checkpoints": v.checkpoints, "state_hashes": v.state_hashes, "state_hashes_pending": v.state_hashes_pending, "snapshots": v.snapshots,
                "last_sequence": v.last_sequence, "state_hash": v.state_hash, "torn_tail": v.torn_tail, "repaired_seal": v.repaired_seal,
            }),
            Err(error) => json!({"tenant": result.tenant.as_str(), "ok": false, "error": error}),
        })
        .collect();
    json!({ "ok": results.iter().all(|r| r.outcome.is_ok()), "tenants": tenants })
}

/// One line (or JSON object) per record from `from` on, at most `limit`.
pub fn dump(
    data: &DataDir,
    tenant: TenantId,
    from: u64,
    limit: Option<u64>,
    as_json: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let mut written = 0u64;
    let result = read_journal::<JournalError>(
        &data.journal_dir(tenant),
        tenant,
        Trust::Unchecked,
        None,
        |_| {},
        |record| {
            if record.sequence < from || limit.is_some_and(|limit| written >= limit) {
                return Ok(());
            }
            written += 1;
            let chain = keel_journal::keys::hex(&record.chain[..8]);
            let segment =
                record.segment.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_owned();
            let (kind, detail) = match record.kind {
                RecordKind::Command => {
                    ("command", describe_command(record.payload, record.version))
                }
                RecordKind::Checkpoint => (
                    "checkpoint",
                    match keel_journal::Checkpoint::decode(record.payload) {
                        Some(c) => format!(
                            "state {} signed by {}",
                            keel_journal::keys::hex(&c.state_hash),
                            &keel_journal::keys::hex(&c.public_key)[..16]
                        ),
                        None => "malformed checkpoint".to_owned(),
                    },
                ),
                RecordKind::StateHash => (
                    "state-hash",
                    match keel_journal::StateHashRecord::decode(record.payload) {
                        Some(r) => format!(
                            "state {} after sequence {} signed by {}",
                            keel_journal::keys::hex(&r.checkpoint.state_hash),
                            r.sequence,
                            &keel_journal::keys::hex(&r.checkpoint.public_key)[..16]
                        ),
                        None => "malformed state-hash record".to_owned(),
                    },
                ),
                RecordKind::Seal => ("seal", "end of a group commit: chains its commands".into()),
            };
            let line = if as_json {
                json!({"sequence": record.sequence, "kind": kind, "segment": segment, "offset": record.offset, "bytes": record.payload.len(), "chain": chain, "detail": detail}).to_string()
            } else {
                format!(
                    "{:>10}  {kind:<10}  {segment}:{:<10}  {chain}  {detail}",
                    record.sequence, record.offset
                )
            };
            writeln!(out, "{line}")
                .map_err(|e| JournalError::Io { path: PathBuf::from("<stdout>"), source: e })
        },
    );
    match result {
        Ok(summary) => {
            if let Some(torn) = summary.torn_tail {
                eprintln!(
                    "note: torn tail of {} bytes at {} offset {}: {}",
                    torn.bytes,
                    torn.segment.display(),
                    torn.offset,
                    torn.reason
                );
            }
            Ok(())
        }
        Err(JournalError::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

fn describe_command(payload: &[u8], version: u8) -> String {
    let encoding = if keel_journal::format::compact_commands(version) {
        keel_engine::Encoding::Compact
    } else {
        keel_engine::Encoding::Fixed
    };
    let envelope = match Envelope::decode_as(payload, encoding) {
        Ok(envelope) => envelope,
        Err(error) => return error.to_string(),
    };
    match envelope.command {
        Command::OpenBusinessDate(date) => format!("open business date {date}"),
        Command::DefineInstrument(i) => format!("define instrument {}", i.id),
        Command::DefineAccount(a) => format!("define account {} ({})", a.id, a.firm),
        Command::Trade(report) => match report.action {
            keel_domain::TradeAction::New(d) => format!(
                "new {} {} {:?} {} {} @ {}",
                report.report_id, d.account, d.side, d.quantity, d.instrument, d.price
            ),
            keel_domain::TradeAction::Amend { target, details: d } => format!(
                "amend {} of {target}: {} {:?} {} {} @ {}",
                report.report_id, d.account, d.side, d.quantity, d.instrument, d.price
            ),
            keel_domain::TradeAction::Cancel { target } => {
                format!("cancel {} of {target}", report.report_id)
            }
        },
        Command::GiveUp(response) => format!(
            "give-up response {} for {} by {}",
            response.report_id, response.trade, response.firm
        ),
        Command::AveragePrice(allocation) => format!(
            "average-price allocation {} of group {}",
            allocation.report_id, allocation.group
        ),
        Command::LoadSettlementPrices(prices) => {
            format!("settlement prices for {} ({} contracts)", prices.date, prices.prices.len())
        }
        Command::LoadFeeSchedule(schedule) => {
            format!("fee schedule ({} rules)", schedule.rules.len())
        }
        Command::RunEndOfDay(date) => format!("end of day {date}"),
        Command::ProcessExpiries { date, threshold } => {
            format!("expiries of {date} (exercise threshold {threshold})")
        }
    }
}
