//! `keel eod`: runs end of day for a tenant offline: loads settlement prices (and a fee
//! schedule), runs the end-of-day command through the journal, and prints the postings, the
//! payment instructions and each account's cash.

use std::fmt::Write as _;

use anyhow::Context;
use keel_domain::{Date, TenantId};
use keel_engine::{Command, Engine, Outcome};
use keel_pipeline::{DataDir, StoreOptions, TenantStore};
use keel_settlement::{FeeSchedule, SettlementPrices};
use serde_json::{json, Value};

/// What to run.
#[derive(Debug)]
pub struct EodRequest {
    pub tenant: TenantId,
    pub date: Date,
    pub prices_csv: String,
    pub fees_csv: Option<String>,
    /// Options must be in the money by at least this much to be exercised.
    pub exercise_threshold: keel_domain::Price,
}

/// Runs end of day durably. A refusal (missing prices, wrong date, already run) is an error
/// naming the rule, and nothing is posted.
pub fn run(data: &DataDir, request: &EodRequest) -> anyhow::Result<Engine> {
    let prices = keel_settlement::prices::load_prices(request.prices_csv.as_bytes())
        .context("settlement prices")?;
    let fees: Option<FeeSchedule> = request
        .fees_csv
        .as_deref()
        .map(|csv| keel_settlement::fees::load_fees(csv.as_bytes()))
        .transpose()
        .context("fee schedule")?;
    let (mut store, _) = TenantStore::open(data, request.tenant, StoreOptions::default())?;
    let mut commands = Vec::new();
    if let Some(fees) = fees {
        commands.push(Command::LoadFeeSchedule(fees));
    }
    commands.push(Command::LoadSettlementPrices(SettlementPrices { date: request.date, prices }));
    // Expiries run once per date; a retried end of day (after, say, a missing price) goes on
    // from where the first attempt stopped.
    if !store.engine().settlement().expiries_processed(request.date) {
        commands.push(Command::ProcessExpiries {
            date: request.date,
            threshold: request.exercise_threshold,
        });
    }
    commands.push(Command::RunEndOfDay(request.date));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let outcomes = store.submit(commands.into_iter().map(|c| (c, now)))?;
    let engine = store.close()?;
    for outcome in outcomes {
        if let Outcome::Rejected(reason) = outcome {
            anyhow::bail!("end of day refused ({} {}): {reason}", reason.code(), reason.name());
        }
    }
    Ok(engine)
}

/// Postings, payment instructions and cash balances of `date` as text tables.
pub fn render_text(engine: &Engine, date: Date) -> String {
    let ledger = engine.settlement().ledger();
    let mut out = format!("END OF DAY {date} for tenant {}\n\nPOSTINGS\n", engine.tenant());
    let _ = writeln!(
        out,
        "{:>6}  {:<18} {:<14} {:<16} {:<16} {:>16} CCY",
        "ID", "KIND", "INSTRUMENT", "DEBIT", "CREDIT", "AMOUNT"
    );
    for posting in ledger.postings().iter().filter(|p| p.business_date == date) {
        let _ = writeln!(
            out,
            "{:>6}  {:<18} {:<14} {:<16} {:<16} {:>16} {}",
            posting.id,
            posting.kind.name(),
            posting.instrument.to_string(),
            posting.debit.to_string(),
            posting.credit.to_string(),
            posting.amount.display_in(posting.currency).to_string(),
            posting.currency
        );
    }
    let expiries = engine.settlement().expiries(date);
    if !expiries.is_empty() {
        let _ = writeln!(out, "\nEXPIRIES");
        for record in expiries {
            let _ = writeln!(
                out,
                "{:<16} {:<14} {:<14} {:>8}",
                record.account.to_string(),
                record.instrument.to_string(),
                record.event.name(),
                record.quantity
            );
        }
    }
    let _ = writeln!(out, "\nPAYMENT INSTRUCTIONS (positive: the clearing firm pays the account)");
    for instruction in ledger.payment_instructions(date) {
        let _ = writeln!(
            out,
            "{:<16} {} {:>16} value {}",
            instruction.account.to_string(),
            instruction.currency,
            instruction.amount.display_in(instruction.currency).to_string(),
            instruction.value_date
        );
    }
    let _ = writeln!(out, "\nCASH BALANCES (all dates)");
    for ((account, currency), amount) in ledger.balances() {
        let _ = writeln!(
            out,
            "{:<16} {} {:>16}",
            account.to_string(),
            currency,
            amount.display_in(*currency).to_string()
        );
    }
    let _ = writeln!(
        out,
        "\nledger balanced per currency: {}",
        if ledger.check().is_ok() { "yes" } else { "NO" }
    );
    out
}

/// Payment instructions of `date` as CSV (`account,currency,value_date,amount`).
pub fn render_instructions_csv(engine: &Engine, date: Date) -> String {
    let mut out = String::from("account,currency,value_date,amount\n");
    for i in engine.settlement().ledger().payment_instructions(date) {
        let _ = writeln!(
            out,
            "{},{},{},{}",
            i.account,
            i.currency,
            i.value_date,
            i.amount.display_in(i.currency)
        );
    }
    out
}

pub fn render_json(engine: &Engine, date: Date) -> Value {
    let ledger = engine.settlement().ledger();
    let postings: Vec<Value> = ledger
        .postings()
        .iter()
        .filter(|p| p.business_date == date)
        .map(|p| json!({"id": p.id, "kind": p.kind.name(), "instrument": p.instrument.as_str(), "debit": p.debit.to_string(), "credit": p.credit.to_string(), "amount": p.amount.to_string(), "currency": p.currency.as_str(), "value_date": p.value_date.to_string()}))
        .collect();
    let instructions: Vec<Value> = ledger
        .payment_instructions(date)
        .iter()
        .map(|i| json!({"account": i.account.as_str(), "currency": i.currency.as_str(), "value_date": i.value_date.to_string(), "amount": i.amount.to_string()}))
        .collect();
    let expiries: Vec<Value> = engine
        .settlement()
        .expiries(date)
        .iter()
        .map(|r| json!({"account": r.account.as_str(), "instrument": r.instrument.as_str(), "event": r.event.name(), "quantity": r.quantity}))
        .collect();
    json!({"tenant": engine.tenant().as_str(), "date": date.to_string(), "expiries": expiries, "postings": postings, "payment_instructions": instructions, "balanced": ledger.check().is_ok(), "state_hash": engine.state_hash().to_string()})
}

/// Compares the tenant's net positions with a clearing house position file
/// (`account,instrument,net`). Read-only: nothing is journaled.
pub fn reconcile(
    data: &DataDir,
    tenant: TenantId,
    file_csv: &str,
) -> anyhow::Result<Vec<keel_settlement::reconcile::Break>> {
    let (store, _) = TenantStore::open(data, tenant, StoreOptions::default())?;
    let engine = store.engine();
    let reference = engine.capture().reference();
    let theirs = keel_settlement::reconcile::load_positions(
        file_csv.as_bytes(),
        |account| reference.account_key(account).is_some(),
        |instrument| reference.instrument_key(instrument).is_some(),
    )
    .context("clearing house position file")?;
    let ours = engine
        .positions()
        .into_iter()
        .filter(|view| view.position.net() != 0)
        .map(|view| ((view.account.id, view.instrument.id), view.position.net()))
        .collect();
    let breaks = keel_settlement::reconcile::reconcile(&ours, &theirs);
    store.close()?;
    Ok(breaks)
}

/// An account's statement: positions (net, gross, average open prices, realized P&L), cash
/// balances per currency, and the postings that made them (of one date, or all).
pub fn statement(
    engine: &Engine,
    account: &keel_domain::AccountId,
    date: Option<Date>,
) -> anyhow::Result<Value> {
    let reference = engine.capture().reference();
    anyhow::ensure!(reference.account_key(account).is_some(), "unknown account {account}");
    let positions: Vec<Value> = engine
        .positions()
        .into_iter()
        .filter(|view| view.account.id == *account)
        .map(|view| {
            let p = view.position;
            let average = |side| p.average_open_price(side).map(|price| price.to_string());
            json!({
                "instrument": view.instrument.id.as_str(), "net": p.net(), "long": p.long(), "short": p.short(),
                "average_long": average(keel_domain::Side::Buy), "average_short": average(keel_domain::Side::Sell),
                "realized": p.realized().to_string(), "currency": view.instrument.currency.as_str(),
            })
        })
        .collect();
    let ledger = engine.settlement().ledger();
    let holder = keel_settlement::LedgerAccount::Customer(*account);
    let cash: Vec<Value> = ledger
        .balances()
        .iter()
        .filter(|((owner, _), _)| *owner == holder)
        .map(|((_, currency), amount)| json!({"currency": currency.as_str(), "balance": amount.display_in(*currency).to_string()}))
        .collect();
    let postings: Vec<Value> = ledger
        .postings()
        .iter()
        .filter(|p| (p.debit == holder || p.credit == holder) && date.is_none_or(|d| p.business_date == d))
        .map(|p| {
            let signed = if p.credit == holder { p.amount } else { -p.amount };
            json!({"id": p.id, "business_date": p.business_date.to_string(), "value_date": p.value_date.to_string(), "kind": p.kind.name(), "instrument": p.instrument.as_str(), "amount": signed.display_in(p.currency).to_string(), "currency": p.currency.as_str()})
        })
        .collect();
    Ok(
        json!({"tenant": engine.tenant().as_str(), "account": account.as_str(), "positions": positions, "cash": cash, "postings": postings}),
    )
}

/// A statement as text.
pub fn render_statement(statement: &Value) -> String {
    let mut out = format!(
        "STATEMENT {} / {}\n\nPOSITIONS\n",
        statement["tenant"].as_str().unwrap_or(""),
        statement["account"].as_str().unwrap_or("")
    );
    for p in statement["positions"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:<14} net {:>6}  long {:>6}  short {:>6}  realized {:>14} {}",
            p["instrument"].as_str().unwrap_or(""),
            p["net"].to_string(),
            p["long"].to_string(),
            p["short"].to_string(),
            p["realized"].as_str().unwrap_or(""),
            p["currency"].as_str().unwrap_or("")
        );
    }
    let _ = writeln!(out, "\nCASH");
    for c in statement["cash"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{} {:>16}",
            c["currency"].as_str().unwrap_or(""),
            c["balance"].as_str().unwrap_or("")
        );
    }
    let _ = writeln!(out, "\nPOSTINGS (positive: credited to the account)");
    for p in statement["postings"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:>6} {} value {} {:<18} {:<14} {:>14} {}",
            p["id"].to_string(),
            p["business_date"].as_str().unwrap_or(""),
            p["value_date"].as_str().unwrap_or(""),
            p["kind"].as_str().unwrap_or(""),
            p["instrument"].as_str().unwrap_or(""),
            p["amount"].as_str().unwrap_or(""),
            p["currency"].as_str().unwrap_or("")
        );
    }
    out
}
