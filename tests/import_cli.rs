//! `keel import` end to end: the real binary on the shipped example files.
#![allow(clippy::unwrap_used, reason = "tests: a failed setup should fail loudly")]

use std::process::Command;

fn keel(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

#[test]
fn example_trades_import_with_the_expected_outcomes() {
    let output = keel(&["import", "examples/trades.csv", "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let rows = report["rows"].as_array().unwrap();
    let status = |s: &str| rows.iter().filter(|r| r["status"] == s).count();
    assert_eq!(
        (status("accepted"), status("duplicate"), status("rejected"), status("malformed")),
        (340, 1, 3, 0)
    );
    let rules: Vec<&str> = rows.iter().filter_map(|r| r["rule"].as_str()).collect();
    assert_eq!(rules, ["PRICE_OFF_TICK", "UNKNOWN_ACCOUNT", "UNKNOWN_TRADE"]);

    // The give-up moved into PEERCLR-01; the average-price group left APS-HOLD flat.
    let position = |account: &str, instrument: &str| {
        report["positions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["account"] == account && p["instrument"] == instrument)
            .cloned()
    };
    assert_eq!(position("PEERCLR-01", "CLF7").unwrap()["net"], 15);
    assert_eq!(position("APS-HOLD", "ESZ6").unwrap()["net"], 0);
    let cash = report["cash_adjustments"].as_array().unwrap();
    assert_eq!(cash.len(), 2);
    assert_eq!(cash[1]["account"], "APS-RESIDUAL");
    assert_eq!(cash[1]["amount"], "-0.03");
}

#[test]
fn import_is_reproducible() {
    let first = keel(&["import", "examples/trades.csv", "--json"]);
    let second = keel(&["import", "examples/trades.csv", "--json"]);
    let hash = |o: &std::process::Output| {
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["state_hash"].clone()
    };
    assert_eq!(hash(&first), hash(&second));
    assert_eq!(hash(&first).as_str().unwrap().len(), 64);
}

#[test]
fn malformed_rows_are_listed_and_exit_2() {
    let dir = std::env::temp_dir().join(format!("keel-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("trades.csv");
    std::fs::write(
        &file,
        "business_date,type,report_id,target,account,instrument,side,quantity,price,trade_date,venue,executing_firm,clearing_firm\n\
         2026-11-27,new,T1,,ACME-01,ESZ6,buy,2,6050.25,2026-11-27,CME,KEELCLR,KEELCLR\n\
         2026-11-27,new,T2,,ACME-01,ESZ6,purchase,2,6050.25,2026-11-27,CME,KEELCLR,KEELCLR\n",
    )
    .unwrap();
    let output = keel(&["import", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("MALFORMED"), "{text}");
    assert!(text.contains("line 3, column \"side\": must be buy or sell"), "{text}");
    assert!(text.contains("2 rows: 1 accepted, 0 duplicates, 0 rejected, 1 malformed"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_file_is_a_fatal_error() {
    let output = keel(&["import", "no/such/file.csv"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("opening no/such/file.csv"));
}
