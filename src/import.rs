//! `keel import`: books a trade file for one tenant against the instrument master and account
//! list, offline, and reports positions, rejects and the resulting state hash.

use std::fmt::Write as _;
use std::io::Read;

use anyhow::{bail, Context};
use keel_domain::table::TableError;
use keel_domain::{
    account::load_accounts, instrument::load_instruments, CaptureError, Date, ReportId, Rounding,
    Side, TenantId,
};
use keel_engine::{Command, Engine, Envelope, Outcome, PositionView, Reject};
use serde_json::{json, Value};

use crate::tradefile::parse_trade_file;
use keel_pipeline::store::{DataDir, Recovery, StoreOptions, TenantStore};

/// What to book a trade file against.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub tenant: TenantId,
    pub instruments_csv: String,
    pub accounts_csv: String,
    /// Business date for rows that do not carry one.
    pub business_date: Option<Date>,
}

/// What happened to one row.
#[derive(Debug)]
pub enum RowOutcome {
    /// Planned, not applied yet (never seen once an import returns).
    Pending,
    Accepted {
        sequence: u64,
    },
    Duplicate {
        sequence: u64,
    },
    Rejected(Reject),
    Malformed(TableError),
}

#[derive(Debug)]
pub struct RowResult {
    pub line: u64,
    pub report_id: Option<ReportId>,
    pub outcome: RowOutcome,
}

/// The booked state and each row's outcome.
#[derive(Debug)]
pub struct ImportReport {
    pub engine: Engine,
    pub rows: Vec<RowResult>,
}

impl ImportReport {
    pub fn count(&self, matches: impl Fn(&RowOutcome) -> bool) -> usize {
        self.rows.iter().filter(|row| matches(&row.outcome)).count()
    }

    pub fn malformed(&self) -> usize {
        self.count(|o| matches!(o, RowOutcome::Malformed(_)))
    }
}

/// Offline commands are stamped with their business date's midnight (UTC) plus their line
/// number in nanoseconds, so that importing the same file twice gives the same state hash.
fn timestamp_ns(date: Date, line: u64) -> i64 {
    i64::from(date.days()) * 86_400_000_000_000 + line as i64
}

/// Where imported commands go: an engine in memory, or a tenant's durable store.
pub trait Sink {
    fn business_date(&self) -> Option<Date>;
    fn is_duplicate(&self, command: &Command) -> bool;
    /// Applies the commands in order and returns their outcomes once they are durable.
    fn submit(&mut self, commands: Vec<(Command, i64)>) -> anyhow::Result<Vec<Outcome>>;
}

impl Sink for Engine {
    fn business_date(&self) -> Option<Date> {
        self.capture().reference().business_date()
    }

    fn is_duplicate(&self, command: &Command) -> bool {
        Engine::is_duplicate(self, command)
    }

    fn submit(&mut self, commands: Vec<(Command, i64)>) -> anyhow::Result<Vec<Outcome>> {
        commands
            .into_iter()
            .map(|(command, timestamp_ns)| {
                let envelope =
                    Envelope { sequence: self.last_sequence() + 1, timestamp_ns, command };
                self.apply(&envelope).context("engine fault")
            })
            .collect()
    }
}

impl Sink for TenantStore {
    fn business_date(&self) -> Option<Date> {
        self.engine().capture().reference().business_date()
    }

    fn is_duplicate(&self, command: &Command) -> bool {
        self.engine().is_duplicate(command)
    }

    fn submit(&mut self, commands: Vec<(Command, i64)>) -> anyhow::Result<Vec<Outcome>> {
        TenantStore::submit(self, commands)
    }
}

/// Commands per group commit when importing into a durable store.
pub const IMPORT_BATCH_COMMANDS: usize = 1_000;

/// Books `trades` for `options.tenant` into `sink`. Fails only when the reference data or the
/// file as a whole cannot be read; bad rows are reported in their place.
pub fn import_into(
    sink: &mut impl Sink,
    options: &ImportOptions,
    trades: impl Read,
) -> anyhow::Result<Vec<RowResult>> {
    let instruments =
        load_instruments(options.instruments_csv.as_bytes()).context("instrument master")?;
    let accounts = load_accounts(options.accounts_csv.as_bytes()).context("account list")?;
    let rows = parse_trade_file(trades).context("trade file")?;
    let first_date = rows.iter().find_map(|row| row.business_date).or(options.business_date);
    let Some(first_date) = first_date else {
        bail!("the trade file has no business_date column values and no --business-date was given");
    };
    // Reference data first, as commands like any other (journaled; identical redefinitions are
    // no-ops, so importing into an existing tenant is safe).
    let setup: Vec<(Command, i64)> = instruments
        .into_iter()
        .map(Command::DefineInstrument)
        .chain(accounts.into_iter().map(Command::DefineAccount))
        .map(|command| (command, timestamp_ns(first_date, 0)))
        .collect();
    for outcome in sink.submit(setup)? {
        if let Outcome::Rejected(reason) = outcome {
            bail!("reference data refused: {reason}");
        }
    }
    // Plan: each row's command, preceded by the opening of its business date when it moves on.
    // Dates only move forward, so a row dated before the open date is refused here, unless it
    // is a resubmission of what was accepted then: that is answered as the duplicate it is,
    // which makes importing the same file twice harmless.
    let mut open_date = sink.business_date();
    let mut results: Vec<RowResult> = Vec::with_capacity(rows.len());
    let mut steps: Vec<(Option<usize>, Command, i64)> = Vec::with_capacity(rows.len() + 4);
    for row in rows {
        let date = row.business_date.or(open_date).unwrap_or(first_date);
        let index = results.len();
        let outcome = match row.command {
            Err(error) => RowOutcome::Malformed(error),
            Ok(command)
                if open_date.is_some_and(|open| date < open) && sink.is_duplicate(&command) =>
            {
                steps.push((Some(index), command, timestamp_ns(date, row.line)));
                RowOutcome::Pending
            }
            Ok(_) if open_date.is_some_and(|open| date < open) => {
                let open = open_date.unwrap_or(date);
                RowOutcome::Rejected(
                    CaptureError::BusinessDateBackwards { requested: date, open }.into(),
                )
            }
            Ok(command) => {
                if open_date != Some(date) {
                    steps.push((
                        None,
                        Command::OpenBusinessDate(date),
                        timestamp_ns(date, row.line),
                    ));
                    open_date = Some(date);
                }
                steps.push((Some(index), command, timestamp_ns(date, row.line)));
                RowOutcome::Pending
            }
        };
        results.push(RowResult { line: row.line, report_id: row.report_id, outcome });
    }
    let mut steps = steps.into_iter().peekable();
    while steps.peek().is_some() {
        let batch: Vec<(Option<usize>, Command, i64)> =
            steps.by_ref().take(IMPORT_BATCH_COMMANDS).collect();
        let targets: Vec<Option<usize>> = batch.iter().map(|(row, _, _)| *row).collect();
        let outcomes =
            sink.submit(batch.into_iter().map(|(_, command, ts)| (command, ts)).collect())?;
        for (target, outcome) in targets.into_iter().zip(outcomes) {
            let Some(index) = target else {
                anyhow::ensure!(
                    outcome.is_accepted(),
                    "opening a business date was refused: {outcome:?}"
                );
                continue;
            };
            results[index].outcome = match outcome {
                Outcome::Accepted { sequence } => RowOutcome::Accepted { sequence },
                Outcome::Duplicate { sequence } => RowOutcome::Duplicate { sequence },
                Outcome::Rejected(reason) => RowOutcome::Rejected(reason),
            };
        }
    }
    Ok(results)
}

/// Books `trades` into a fresh in-memory engine.
pub fn import(options: &ImportOptions, trades: impl Read) -> anyhow::Result<ImportReport> {
    let mut engine = Engine::new(options.tenant);
    let rows = import_into(&mut engine, options, trades)?;
    Ok(ImportReport { engine, rows })
}

/// Books `trades` into the tenant's durable store under `data`, journaling every command, and
/// closes it with a signed checkpoint.
pub fn import_durable(
    options: &ImportOptions,
    trades: impl Read,
    data: &DataDir,
    store_options: StoreOptions,
) -> anyhow::Result<(ImportReport, Recovery)> {
    let (mut store, recovery) = TenantStore::open(data, options.tenant, store_options)?;
    let rows = import_into(&mut store, options, trades)?;
    let engine = store.close()?;
    Ok((ImportReport { engine, rows }, recovery))
}

fn average(view: &PositionView<'_>, side: Side) -> String {
    view.position
        .average_open_price(side)
        .map(|p| {
            p.round_to_decimals(u32::from(view.instrument.price_decimals), Rounding::HalfEven)
                .to_string()
        })
        .unwrap_or_default()
}

/// Positions, rejects and a summary as aligned text tables.
pub fn render_text(report: &ImportReport) -> String {
    let mut out = String::new();
    let positions = report.engine.positions();
    let mut table = vec![[
        "ACCOUNT",
        "INSTRUMENT",
        "NET",
        "LONG",
        "SHORT",
        "AVG LONG",
        "AVG SHORT",
        "REALIZED",
        "CCY",
    ]
    .map(String::from)];
    for view in &positions {
        let p = view.position;
        let currency = view.instrument.currency;
        table.push([
            view.account.id.to_string(),
            view.instrument.id.to_string(),
            p.net().to_string(),
            p.long().to_string(),
            p.short().to_string(),
            average(view, Side::Buy),
            average(view, Side::Sell),
            p.realized().display_in(currency).to_string(),
            currency.to_string(),
        ]);
    }
    let _ = writeln!(out, "POSITIONS");
    write_table(&mut out, &table, &[2, 3, 4, 5, 6, 7]);

    let cash = report.engine.cash_adjustments();
    if !cash.is_empty() {
        let mut table = vec![["ACCOUNT", "CCY", "CASH ADJUSTMENT"].map(String::from)];
        for (account, currency, amount) in cash {
            table.push([
                account.id.to_string(),
                currency.to_string(),
                amount.display_in(currency).to_string(),
            ]);
        }
        let _ = writeln!(out, "\nCASH ADJUSTMENTS (average-price residuals)");
        write_table(&mut out, &table, &[2]);
    }

    let mut rejects = vec![["LINE", "REPORT ID", "CODE", "RULE", "REASON"].map(String::from)];
    for row in &report.rows {
        let (code, name, reason) = match &row.outcome {
            RowOutcome::Rejected(e) => (e.code().to_string(), e.name().to_owned(), e.to_string()),
            RowOutcome::Malformed(e) => ("-".to_owned(), "MALFORMED".to_owned(), e.to_string()),
            _ => continue,
        };
        let id = row.report_id.map(|id| id.to_string()).unwrap_or_default();
        rejects.push([row.line.to_string(), id, code, name, reason]);
    }
    if rejects.len() > 1 {
        let _ = writeln!(out, "\nREJECTS");
        write_table(&mut out, &rejects, &[0]);
    }
    let _ = writeln!(out, "\n{}", summary_line(report));
    out
}

fn summary_line(report: &ImportReport) -> String {
    let accepted = report.count(|o| matches!(o, RowOutcome::Accepted { .. }));
    let duplicates = report.count(|o| matches!(o, RowOutcome::Duplicate { .. }));
    let rejected = report.count(|o| matches!(o, RowOutcome::Rejected(_)));
    format!(
        "{} rows: {accepted} accepted, {duplicates} duplicates, {rejected} rejected, {} malformed; \
         {} trades, {} positions, {} open lots; tenant {} state {}",
        report.rows.len(),
        report.malformed(),
        report.engine.capture().trades().len(),
        report.engine.positions().len(),
        report.engine.open_lots(),
        report.engine.tenant(),
        report.engine.state_hash(),
    )
}

fn write_table<const N: usize>(out: &mut String, rows: &[[String; N]], right_aligned: &[usize]) {
    let mut widths = [0usize; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            let width = widths[index];
            let _ = if right_aligned.contains(&index) {
                write!(line, "{cell:>width$}  ")
            } else {
                write!(line, "{cell:<width$}  ")
            };
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// The same content as JSON, for scripts.
pub fn render_json(report: &ImportReport) -> Value {
    let positions: Vec<Value> = report
        .engine
        .positions()
        .iter()
        .map(|view| {
            let p = view.position;
            json!({
                "account": view.account.id.as_str(),
                "instrument": view.instrument.id.as_str(),
                "net": p.net(),
                "long": p.long(),
                "short": p.short(),
                "average_long": average(view, Side::Buy),
                "average_short": average(view, Side::Sell),
                "realized": p.realized().to_string(),
                "currency": view.instrument.currency.as_str(),
                "open_lots": p.open_lot_count(),
            })
        })
        .collect();
    let rows: Vec<Value> = report
        .rows
        .iter()
        .map(|row| {
            let id = row.report_id.map(|id| id.to_string());
            match &row.outcome {
                RowOutcome::Accepted { sequence } => json!({"line": row.line, "report_id": id, "status": "accepted", "sequence": sequence}),
                RowOutcome::Duplicate { sequence } => json!({"line": row.line, "report_id": id, "status": "duplicate", "sequence": sequence}),
                RowOutcome::Rejected(e) => json!({"line": row.line, "report_id": id, "status": "rejected", "code": e.code(), "rule": e.name(), "reason": e.to_string()}),
                RowOutcome::Malformed(e) => json!({"line": row.line, "report_id": id, "status": "malformed", "reason": e.to_string()}),
                RowOutcome::Pending => json!({"line": row.line, "report_id": id, "status": "pending"}),
            }
        })
        .collect();
    let cash: Vec<Value> = report
        .engine
        .cash_adjustments()
        .into_iter()
        .map(|(account, currency, amount)| json!({"account": account.id.as_str(), "currency": currency.as_str(), "amount": amount.to_string()}))
        .collect();
    json!({
        "tenant": report.engine.tenant().as_str(),
        "state_hash": report.engine.state_hash().to_string(),
        "last_sequence": report.engine.last_sequence(),
        "trades": report.engine.capture().trades().len(),
        "positions": positions,
        "cash_adjustments": cash,
        "rows": rows,
    })
}
