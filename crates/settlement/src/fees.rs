//! The fee schedule: a charge per contract traded, by exchange, product and account kind, in a
//! currency. The most specific rule wins (product and kind, then product, then kind, then the
//! exchange alone).

use std::io::Read;

use keel_domain::table::{read_table, TableError};
use keel_domain::{AccountKind, Amount, Currency, ExchangeId, Instrument, ProductId};
use serde::{Deserialize, Serialize};

use crate::error::SettleError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FeeRule {
    pub exchange: ExchangeId,
    /// `None`: every product of the exchange.
    pub product: Option<ProductId>,
    /// `None`: every kind of account.
    pub account_kind: Option<AccountKind>,
    pub per_contract: Amount,
    pub currency: Currency,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FeeSchedule {
    pub rules: Vec<FeeRule>,
}

impl FeeSchedule {
    /// The rule that applies to a contract of `instrument` traded in an account of `kind`.
    pub fn rule_for(&self, instrument: &Instrument, kind: AccountKind) -> Option<&FeeRule> {
        self.rules
            .iter()
            .filter(|rule| rule.exchange == instrument.exchange)
            .filter(|rule| rule.product.is_none_or(|p| p == instrument.product))
            .filter(|rule| rule.account_kind.is_none_or(|k| k == kind))
            .max_by_key(|rule| (rule.product.is_some(), rule.account_kind.is_some()))
    }

    /// Checks that every rule names an exchange and product of the instrument master.
    pub fn validate<'a>(
        &self,
        instruments: impl Iterator<Item = &'a Instrument> + Clone,
    ) -> Result<(), SettleError> {
        for rule in &self.rules {
            if !instruments.clone().any(|i| i.exchange == rule.exchange) {
                return Err(SettleError::UnknownFeeTarget {
                    what: "exchange".into(),
                    name: rule.exchange.to_string(),
                });
            }
            if let Some(product) = rule.product {
                if !instruments.clone().any(|i| i.exchange == rule.exchange && i.product == product)
                {
                    return Err(SettleError::UnknownFeeTarget {
                        what: "product".into(),
                        name: format!("{}/{product}", rule.exchange),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Parses `exchange,product,account_kind,per_contract,currency` (`*` or empty: any).
pub fn load_fees(reader: impl Read) -> Result<FeeSchedule, TableError> {
    let mut rules = Vec::new();
    read_table(
        reader,
        &["exchange", "product", "account_kind", "per_contract", "currency"],
        |row| {
            let any = |text: &str| text == "*";
            rules.push(FeeRule {
                exchange: row.parse("exchange", ExchangeId::new_checked)?,
                product: row
                    .optional("product")
                    .filter(|p| !any(p))
                    .map(ProductId::new_checked)
                    .transpose()
                    .map_err(|e| row.field_error("product", &e.to_string()))?,
                account_kind: match row.optional("account_kind").filter(|k| !any(k)) {
                    None => None,
                    Some(kind) => Some(AccountKind::parse(kind).ok_or_else(|| {
                        row.field_error(
                            "account_kind",
                            "must be customer, house, omnibus, holding, residual or *",
                        )
                    })?),
                },
                per_contract: row.parse("per_contract", Amount::parse)?,
                currency: row.parse("currency", |c| {
                    Currency::new_checked(c).ok_or("not an ISO 4217 code")
                })?,
            });
            Ok(())
        },
    )?;
    Ok(FeeSchedule { rules })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_domain::instrument::load_instruments;

    #[test]
    fn rules_validate_against_the_master_and_the_most_specific_wins() {
        let master = load_instruments("id,kind,exchange,product,currency,multiplier,tick_size,price_decimals,maturity,last_trade_date,settlement\nESZ6,future,CME,ES,USD,50,0.25,4,202612,2026-12-18,cash\n".as_bytes()).unwrap();
        let schedule = load_fees("exchange,product,account_kind,per_contract,currency\nCME,*,*,0.50,USD\nCME,ES,*,1.00,USD\nCME,ES,house,0.25,USD\n".as_bytes()).unwrap();
        schedule.validate(master.iter()).unwrap();
        let rate = |kind| schedule.rule_for(&master[0], kind).unwrap().per_contract;
        assert_eq!(rate(AccountKind::House), Amount::parse("0.25").unwrap());
        assert_eq!(rate(AccountKind::Customer), Amount::parse("1").unwrap());
        let cases = [
            ("CME,NQ,*,1,USD\n", "unknown product CME/NQ"),
            ("XEUR,*,*,1,EUR\n", "unknown exchange XEUR"),
        ];
        for (row, expected) in cases {
            let bad = load_fees(
                format!("exchange,product,account_kind,per_contract,currency\n{row}").as_bytes(),
            )
            .unwrap();
            assert_eq!(
                bad.validate(master.iter()).unwrap_err().to_string(),
                format!("fee schedule names {expected}")
            );
        }
        let error = load_fees(
            "exchange,product,account_kind,per_contract,currency\nCME,ES,pension,1,USD\n"
                .as_bytes(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("line 2, column \"account_kind\""), "{error}");
    }
}
