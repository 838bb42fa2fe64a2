//! `keel eod` end to end on the shipped examples.
#![allow(clippy::unwrap_used, reason = "tests: a failed setup should fail loudly")]

use std::process::{Command, Output};

fn keel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

#[test]
fn end_of_day_posts_balanced_cash_once_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    assert!(keel(&["import", "--data-dir", data, "examples/trades.csv"]).status.success());

    // Prices missing for held contracts: refused, naming them; nothing posted.
    let partial = dir.path().join("partial.csv");
    std::fs::write(&partial, "instrument,price\nESZ6,6050.25\n").unwrap();
    let refused = keel(&[
        "eod",
        "--data-dir",
        data,
        "--date",
        "2026-11-27",
        "--prices",
        partial.to_str().unwrap(),
    ]);
    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("MISSING_SETTLEMENT_PRICES") && message.contains("CLF7"), "{message}");

    // A price off its tick is refused with the contract named.
    let off_tick = dir.path().join("off.csv");
    std::fs::write(&off_tick, "instrument,price\nESZ6,6050.10\n").unwrap();
    let refused = keel(&[
        "eod",
        "--data-dir",
        data,
        "--date",
        "2026-11-27",
        "--prices",
        off_tick.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("SETTLEMENT_PRICE_OFF_TICK"));

    // A malformed prices file names the line.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "instrument,price\nESZ6,cheap\n").unwrap();
    let refused = keel(&[
        "eod",
        "--data-dir",
        data,
        "--date",
        "2026-11-27",
        "--prices",
        bad.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("line 2, column \"price\""));

    let ran = keel(&[
        "eod",
        "--data-dir",
        data,
        "--date",
        "2026-11-27",
        "--prices",
        "examples/settlement-prices-2026-11-27.csv",
        "--fees",
        "examples/fees.csv",
        "--format",
        "json",
    ]);
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    let report: serde_json::Value = serde_json::from_slice(&ran.stdout).unwrap();
    assert_eq!(report["balanced"], true);
    assert!(report["postings"].as_array().unwrap().len() > 20);
    assert!(!report["payment_instructions"].as_array().unwrap().is_empty());

    let again = keel(&[
        "eod",
        "--data-dir",
        data,
        "--date",
        "2026-11-27",
        "--prices",
        "examples/settlement-prices-2026-11-27.csv",
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("EOD_ALREADY_RUN"));

    // Everything is journaled (the refusals too): verification replays it all, reproducing
    // every checkpoint's state hash.
    let verify = keel(&["journal", "verify", "--data-dir", data, "--json"]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    let verified: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert!(verified["tenants"][0]["state_hashes"].as_u64().unwrap() >= 5);
}

#[test]
fn reconciliation_lists_every_break_and_names_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    assert!(keel(&["import", "--data-dir", data, "examples/trades.csv"]).status.success());
    let output =
        keel(&["reconcile", "--data-dir", data, "examples/ccp-positions-2026-11-27.csv", "--json"]);
    assert_eq!(output.status.code(), Some(1), "breaks exit 1");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let kinds: Vec<&str> =
        report["breaks"].as_array().unwrap().iter().map(|b| b["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["quantity", "missing-at-clearing-house", "missing-in-keel"]);

    let unknown = dir.path().join("unknown.csv");
    std::fs::write(&unknown, "account,instrument,net\nACME-01,ESZ6,1\nNOBODY,ESZ6,2\n").unwrap();
    let output = keel(&["reconcile", "--data-dir", data, unknown.to_str().unwrap()]);
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("line 3, column \"account\": unknown account NOBODY"), "{message}");
}

#[test]
fn an_account_statement_shows_positions_cash_and_postings() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    assert!(keel(&["import", "--data-dir", data, "examples/trades.csv"]).status.success());
    let eod = keel(&[
        "eod",
        "--data-dir",
        data,
        "--date",
        "2026-11-27",
        "--prices",
        "examples/settlement-prices-2026-11-27.csv",
        "--fees",
        "examples/fees.csv",
    ]);
    assert!(eod.status.success(), "{}", String::from_utf8_lossy(&eod.stderr));
    let output = keel(&["statement", "ACME-01", "--data-dir", data, "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let statement: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(!statement["positions"].as_array().unwrap().is_empty());
    let postings = statement["postings"].as_array().unwrap();
    assert!(!postings.is_empty());
    // The USD cash balance is the sum of the account's USD postings.
    let usd: Vec<&serde_json::Value> = postings.iter().filter(|p| p["currency"] == "USD").collect();
    let total = usd
        .iter()
        .map(|p| keel_domain::Amount::parse(p["amount"].as_str().unwrap()).unwrap().nanos())
        .sum::<i128>();
    let balance =
        statement["cash"].as_array().unwrap().iter().find(|c| c["currency"] == "USD").unwrap();
    assert_eq!(
        keel_domain::Amount::parse(balance["balance"].as_str().unwrap()).unwrap().nanos(),
        total
    );
    assert!(!keel(&["statement", "NOBODY", "--data-dir", data]).status.success());
}
