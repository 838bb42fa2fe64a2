//! The trade file: one instruction per CSV row (docs/trade-file.md). Parsing never stops at a
//! bad row: each row becomes a command or a line-numbered error, so one typo in a drop copy
//! cannot hold back the rest of it.

use std::io::Read;

use keel_domain::table::{read_table, Row, TableError};
use keel_domain::{
    AccountId, AveragePriceAllocation, Date, ExchangeId, FirmId, GiveUpDecision, GiveUpResponse,
    GroupId, InstrumentId, PositionEffect, Price, Quantity, ReportId, Side, Split, TradeAction,
    TradeDetails, TradeReport,
};
use keel_engine::Command;

/// Columns every trade file has; the others are optional and may be left empty.
pub const REQUIRED_COLUMNS: &[&str] = &["type", "report_id"];

/// One data row of a trade file.
#[derive(Debug)]
pub struct TradeRow {
    pub line: u64,
    /// The clearing business date the row belongs to, if the file says.
    pub business_date: Option<Date>,
    pub report_id: Option<ReportId>,
    pub command: Result<Command, TableError>,
}

/// Parses a whole trade file. Errors in a row land in that row; only a file that cannot be
/// read as CSV at all (or lacks the required columns) fails as a whole.
pub fn parse_trade_file(reader: impl Read) -> Result<Vec<TradeRow>, TableError> {
    let mut rows = Vec::new();
    read_table(reader, REQUIRED_COLUMNS, |row| {
        let business_date = row.parse_optional("business_date", Date::parse);
        let (business_date, command) = match business_date {
            Ok(date) => (date, parse_command(row)),
            Err(error) => (None, Err(error)),
        };
        let report_id = row.optional("report_id").and_then(|id| id.parse().ok());
        rows.push(TradeRow { line: row.line, business_date, report_id, command });
        Ok(())
    })?;
    Ok(rows)
}

fn parse_command(row: &Row<'_>) -> Result<Command, TableError> {
    let report_id = row.parse("report_id", ReportId::new_checked)?;
    let target = || row.parse("target", ReportId::new_checked);
    Ok(match row.required("type")? {
        "new" => trade(report_id, TradeAction::New(parse_details(row)?)),
        "amend" => trade(report_id, TradeAction::Amend { target: target()?, details: parse_details(row)? }),
        "cancel" => trade(report_id, TradeAction::Cancel { target: target()? }),
        "give-up-accept" | "give-up-reject" => Command::GiveUp(GiveUpResponse {
            report_id,
            trade: target()?,
            firm: row.parse("clearing_firm", FirmId::new_checked)?,
            decision: if row.required("type")? == "give-up-accept" {
                GiveUpDecision::Accept { account: row.parse("account", AccountId::new_checked)? }
            } else {
                GiveUpDecision::Reject
            },
        }),
        "average-price" => Command::AveragePrice(AveragePriceAllocation {
            report_id,
            group: row.parse("group", GroupId::new_checked)?,
            splits: row.parse("allocations", parse_splits)?,
            residual_account: row.parse("account", AccountId::new_checked)?,
        }),
        other => {
            return Err(row.field_error(
                "type",
                &format!("{other:?} is not new, amend, cancel, give-up-accept, give-up-reject or average-price"),
            ))
        }
    })
}

fn trade(report_id: ReportId, action: TradeAction) -> Command {
    Command::Trade(TradeReport { report_id, action })
}

fn parse_details(row: &Row<'_>) -> Result<TradeDetails, TableError> {
    Ok(TradeDetails {
        account: row.parse("account", AccountId::new_checked)?,
        instrument: row.parse("instrument", InstrumentId::new_checked)?,
        side: row.parse("side", |side| match side {
            "buy" | "B" | "1" => Ok(Side::Buy),
            "sell" | "S" | "2" => Ok(Side::Sell),
            _ => Err("must be buy or sell"),
        })?,
        quantity: row.parse("quantity", Quantity::parse)?,
        price: row.parse("price", Price::parse)?,
        trade_date: row.parse("trade_date", Date::parse)?,
        venue: row.parse_optional("venue", ExchangeId::new_checked)?,
        executing_firm: row.parse("executing_firm", FirmId::new_checked)?,
        clearing_firm: row.parse("clearing_firm", FirmId::new_checked)?,
        give_up_to: row.parse_optional("give_up_to", FirmId::new_checked)?,
        position_effect: row
            .parse_optional("position_effect", |effect| match effect {
                "open" | "O" => Ok(PositionEffect::Open),
                "close" | "C" => Ok(PositionEffect::Close),
                _ => Err("must be open or close"),
            })?
            .unwrap_or_default(),
        average_price_group: row.parse_optional("group", GroupId::new_checked)?,
        allocations: row.parse_optional("allocations", parse_splits)?.unwrap_or_default(),
    })
}

/// `ACCOUNT:QUANTITY;ACCOUNT:QUANTITY`.
pub fn parse_splits(text: &str) -> Result<Vec<Split>, String> {
    text.split(';')
        .map(|part| {
            let (account, quantity) =
                part.split_once(':').ok_or_else(|| format!("{part:?} is not ACCOUNT:QUANTITY"))?;
            Ok(Split {
                account: account.trim().parse().map_err(|e| format!("{e}"))?,
                quantity: Quantity::parse(quantity.trim()).map_err(|e| format!("{e}"))?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "business_date,type,report_id,target,account,instrument,side,quantity,price,trade_date,venue,executing_firm,clearing_firm,give_up_to,position_effect,group,allocations\n";

    #[test]
    fn rows_parse_or_name_their_error() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("2026-11-27,new,T1,,A1,ESZ6,buy,3,6050.25,2026-11-27,CME,F,F,,,,", Ok("Trade")),
            ("2026-11-27,cancel,X1,T1,,,,,,,,,,,,,", Ok("Trade")),
            ("2026-11-27,give-up-accept,G1,T1,B1,,,,,,,,PEER,,,,", Ok("GiveUp")),
            ("2026-11-27,average-price,AP1,,RES,,,,,,,,,,,G1,A1:2;A2:3", Ok("AveragePrice")),
            (
                "2026-11-27,new,T1,,A1,ESZ6,hold,3,6050.25,2026-11-27,CME,F,F,,,,",
                Err("column \"side\": must be buy or sell"),
            ),
            (
                "2026-11-27,new,T1,,A1,ESZ6,buy,3,6050.2.5,2026-11-27,CME,F,F,,,,",
                Err("column \"price\""),
            ),
            ("2026-11-27,cancel,X1,,,,,,,,,,,,,,", Err("column \"target\": is empty")),
            ("2026-11-27,average-price,AP1,,RES,,,,,,,,,,,G1,A1=2", Err("column \"allocations\"")),
            ("2026-11-27,transfer,T1,,,,,,,,,,,,,,", Err("column \"type\"")),
            ("2026-13-27,new,T1,,,,,,,,,,,,,,", Err("column \"business_date\"")),
            ("2026-11-27,new,T1", Err("column \"account\": is empty")),
        ];
        for (body, expected) in cases {
            let rows = parse_trade_file(format!("{HEADER}{body}\n").as_bytes()).unwrap();
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].line, 2);
            match (&rows[0].command, expected) {
                (Ok(command), Ok(kind)) => {
                    assert!(format!("{command:?}").starts_with(kind), "{body}")
                }
                (Err(error), Err(fragment)) => {
                    assert!(error.to_string().contains(fragment), "{body}: {error}")
                }
                (got, want) => panic!("{body}: expected {want:?}, got {got:?}"),
            }
        }
    }
}
