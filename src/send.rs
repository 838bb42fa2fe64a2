//! `keel send`: sends a trade file to a running server over the native protocol, in batches,
//! and reports what came back.

use std::io::Read;

use anyhow::Context;
use keel_client::Client;
use keel_domain::TenantId;
use keel_engine::Command;
use keel_wire::{AckResult, Instruction};

use crate::tradefile::parse_trade_file;

/// Counts of what the server answered.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SendReport {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: Vec<(u64, String)>,
    pub malformed: Vec<(u64, String)>,
    pub skipped: usize,
}

/// Sends every instruction of `trades` (rows with a business date of their own are sent as they
/// are: the server books them on its open business date).
pub async fn send(
    address: &str,
    tenant: TenantId,
    credential: &str,
    trades: impl Read,
    batch: usize,
) -> anyhow::Result<SendReport> {
    let rows = parse_trade_file(trades).context("trade file")?;
    let client =
        Client::connect(address, tenant, credential, "keel send").await.context("connecting")?;
    let mut report = SendReport::default();
    let mut lines = Vec::new();
    let mut instructions = Vec::new();
    for row in rows {
        match row.command {
            Err(error) => report.malformed.push((row.line, error.to_string())),
            Ok(Command::Trade(trade)) => {
                lines.push(row.line);
                instructions.push(Instruction::Trade(trade));
            }
            Ok(Command::GiveUp(response)) => {
                lines.push(row.line);
                instructions.push(Instruction::GiveUp(response));
            }
            Ok(Command::AveragePrice(allocation)) => {
                lines.push(row.line);
                instructions.push(Instruction::AveragePrice(allocation));
            }
            Ok(_) => report.skipped += 1,
        }
    }
    let mut line = lines.into_iter();
    for chunk in instructions.chunks(batch.max(1)) {
        for ack in client.submit(chunk.to_vec()).await? {
            let at = line.next().unwrap_or(0);
            match ack {
                AckResult::Accepted { .. } => report.accepted += 1,
                AckResult::Duplicate { .. } => report.duplicates += 1,
                AckResult::Rejected { code, rule, text } => {
                    report.rejected.push((at, format!("{code} {rule}: {text}")))
                }
            }
        }
    }
    client.logout().await.ok();
    Ok(report)
}
