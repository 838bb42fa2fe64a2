//! Accounts of a tenant and the CSV account list.

use std::collections::HashSet;
use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::ident::{AccountId, FirmId};
use crate::table::{read_table, TableError};

/// What an account is for. Allocation and average-price processing only start from holding
/// or omnibus accounts; average-price rounding residuals go to a residual account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AccountKind {
    Customer,
    House,
    /// Many customers' positions in one account, allocated onward.
    Omnibus,
    /// Fills parked for allocation or average pricing; flat once processed.
    Holding,
    /// Receives average-price rounding residuals.
    Residual,
}

impl AccountKind {
    pub fn can_allocate(self) -> bool {
        matches!(self, AccountKind::Omnibus | AccountKind::Holding)
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "customer" => AccountKind::Customer,
            "house" => AccountKind::House,
            "omnibus" => AccountKind::Omnibus,
            "holding" => AccountKind::Holding,
            "residual" => AccountKind::Residual,
            _ => return None,
        })
    }
}

/// Net accounts offset buys against sells (FIFO); gross accounts keep long and short open lots
/// apart and honour each trade's open/close position effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PositionMode {
    Net,
    Gross,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    /// The clearing firm that carries the account.
    pub firm: FirmId,
    pub kind: AccountKind,
    pub position_mode: PositionMode,
}

pub const ACCOUNT_COLUMNS: &[&str] = &["id", "firm", "kind", "position_mode"];

/// Parses an account list (`id,firm,kind,position_mode`).
pub fn load_accounts(reader: impl Read) -> Result<Vec<Account>, TableError> {
    let mut accounts = Vec::new();
    let mut seen = HashSet::new();
    read_table(reader, ACCOUNT_COLUMNS, |row| {
        let account = Account {
            id: row.parse("id", AccountId::new_checked)?,
            firm: row.parse("firm", FirmId::new_checked)?,
            kind: row.parse("kind", |k| {
                AccountKind::parse(k).ok_or("must be customer, house, omnibus, holding or residual")
            })?,
            position_mode: row.parse("position_mode", |m| match m {
                "net" => Ok(PositionMode::Net),
                "gross" => Ok(PositionMode::Gross),
                _ => Err("must be net or gross"),
            })?,
        };
        if !seen.insert(account.id) {
            return Err(row.row_error(format!("account {} is listed twice", account.id)));
        }
        accounts.push(account);
        Ok(())
    })?;
    Ok(accounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_list_parses_and_names_bad_lines() {
        let good = "id,firm,kind,position_mode\nC1,FIRMA,customer,net\nH1,FIRMA,holding,gross\n";
        let accounts = load_accounts(good.as_bytes()).unwrap();
        assert_eq!(accounts.len(), 2);
        assert_eq!(accounts[1].position_mode, PositionMode::Gross);

        let cases = [
            ("C1,FIRMA,pension,net\n", "line 2, column \"kind\""),
            ("C1,FIRMA,customer,both\n", "column \"position_mode\""),
            (
                "C1,FIRMA,customer,net\nC1,FIRMA,customer,net\n",
                "line 3: account C1 is listed twice",
            ),
            ("C 1,FIRMA,customer,net\n", "column \"id\""),
        ];
        for (body, expected) in cases {
            let text = format!("id,firm,kind,position_mode\n{body}");
            let error = load_accounts(text.as_bytes()).unwrap_err().to_string();
            assert!(error.contains(expected), "{body}: {error}");
        }
    }
}
