//! Reconciliation against a clearing house's position file (`account,instrument,net`): every
//! difference is a break, listed; bad rows are errors naming their line.

use std::collections::BTreeMap;
use std::io::Read;

use keel_domain::table::{read_table, TableError};
use keel_domain::{AccountId, InstrumentId, Quantity};
use serde::{Deserialize, Serialize};

/// One difference between keel's positions and the clearing house's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Break {
    pub account: AccountId,
    pub instrument: InstrumentId,
    /// keel's net position (0 when keel has none).
    pub ours: i64,
    /// The clearing house's (0 when the file has none).
    pub theirs: i64,
    /// The file line, when the clearing house reported it.
    pub line: Option<u64>,
}

impl Break {
    pub fn kind(&self) -> &'static str {
        match (self.ours, self.line) {
            (_, None) => "missing-at-clearing-house",
            (0, Some(_)) => "missing-in-keel",
            _ => "quantity",
        }
    }
}

/// The clearing house's net per (account, instrument), with the file line it came from.
pub type ClearingPositions = BTreeMap<(AccountId, InstrumentId), (i64, u64)>;

/// Reads the clearing house file, checking accounts and instruments against keel's.
pub fn load_positions(
    reader: impl Read,
    known_account: impl Fn(&AccountId) -> bool,
    known_instrument: impl Fn(&InstrumentId) -> bool,
) -> Result<ClearingPositions, TableError> {
    let mut positions = BTreeMap::new();
    read_table(reader, &["account", "instrument", "net"], |row| {
        let account = row.parse("account", AccountId::new_checked)?;
        if !known_account(&account) {
            return Err(row.field_error("account", &format!("unknown account {account}")));
        }
        let instrument = row.parse("instrument", InstrumentId::new_checked)?;
        if !known_instrument(&instrument) {
            return Err(row.field_error("instrument", &format!("unknown instrument {instrument}")));
        }
        let net = row.parse("net", Quantity::parse)?.get();
        if positions.insert((account, instrument), (net, row.line)).is_some() {
            return Err(row.row_error(format!("{account} {instrument} listed twice")));
        }
        Ok(())
    })?;
    Ok(positions)
}

/// Every (account, instrument) whose net differs, in order.
pub fn reconcile(
    ours: &BTreeMap<(AccountId, InstrumentId), i64>,
    theirs: &ClearingPositions,
) -> Vec<Break> {
    let mut keys: Vec<&(AccountId, InstrumentId)> = ours.keys().chain(theirs.keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| {
            let mine = ours.get(key).copied().unwrap_or(0);
            let (clearing, line) =
                theirs.get(key).map_or((0, None), |(net, line)| (*net, Some(*line)));
            (mine != clearing).then_some(Break {
                account: key.0,
                instrument: key.1,
                ours: mine,
                theirs: clearing,
                line,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id<T: std::str::FromStr>(text: &str) -> T
    where
        T::Err: std::fmt::Debug,
    {
        text.parse().unwrap()
    }

    #[test]
    fn every_difference_is_a_break_and_bad_rows_name_their_line() {
        let file = "account,instrument,net\nA1,ESZ6,5\nA1,CLF7,-2\nA2,ESZ6,1\n";
        let theirs = load_positions(file.as_bytes(), |_| true, |_| true).unwrap();
        let ours: BTreeMap<_, _> = [
            ((id("A1"), id("ESZ6")), 5),
            ((id("A1"), id("CLF7")), -3),
            ((id("A3"), id("ESZ6")), 4),
        ]
        .into_iter()
        .collect();
        let breaks = reconcile(&ours, &theirs);
        let kinds: Vec<(String, &str)> =
            breaks.iter().map(|b| (format!("{}/{}", b.account, b.instrument), b.kind())).collect();
        assert_eq!(
            kinds,
            vec![
                ("A1/CLF7".into(), "quantity"),
                ("A2/ESZ6".into(), "missing-in-keel"),
                ("A3/ESZ6".into(), "missing-at-clearing-house")
            ]
        );
        assert_eq!(breaks[0].line, Some(3));

        let cases = [
            (
                "account,instrument,net\nZZ,ESZ6,1\n",
                "line 2, column \"account\": unknown account ZZ",
            ),
            (
                "account,instrument,net\nA1,XX,1\n",
                "line 2, column \"instrument\": unknown instrument XX",
            ),
            ("account,instrument,net\nA1,ESZ6,one\n", "line 2, column \"net\""),
            ("account,instrument,net\nA1,ESZ6,1\nA1,ESZ6,2\n", "line 3: A1 ESZ6 listed twice"),
            ("account,net\n", "missing column \"instrument\""),
        ];
        for (file, expected) in cases {
            let error =
                load_positions(file.as_bytes(), |a| a.as_str() != "ZZ", |i| i.as_str() != "XX")
                    .unwrap_err()
                    .to_string();
            assert!(error.contains(expected), "{file}: {error}");
        }
    }
}
