//! The double-entry cash ledger. Every posting debits one ledger account and credits another
//! by the same positive amount, so per currency the balances always sum to zero; `check` proves
//! it after every end of day, in release builds too.

use std::collections::BTreeMap;
use std::sync::Arc;

use keel_domain::{AccountId, Amount, CowVec, Currency, Date, ExchangeId, InstrumentId};
use serde::{Deserialize, Serialize};

use crate::error::SettleError;

/// Who a balance belongs to. A credit raises a balance (money owed to its holder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LedgerAccount {
    Customer(AccountId),
    /// The clearing house of an exchange: the other side of margin and premium.
    ClearingHouse(ExchangeId),
    /// Fees charged by the clearing firm.
    FeeIncome,
}

impl std::fmt::Display for LedgerAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LedgerAccount::Customer(id) => write!(f, "{id}"),
            LedgerAccount::ClearingHouse(exchange) => write!(f, "CCP:{exchange}"),
            LedgerAccount::FeeIncome => f.write_str("FEE-INCOME"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PostingKind {
    VariationMargin,
    Premium,
    Fee,
}

impl PostingKind {
    pub fn name(self) -> &'static str {
        match self {
            PostingKind::VariationMargin => "variation-margin",
            PostingKind::Premium => "premium",
            PostingKind::Fee => "fee",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    /// 1, 2, 3, ... in posting order.
    pub id: u64,
    pub business_date: Date,
    pub value_date: Date,
    pub kind: PostingKind,
    pub debit: LedgerAccount,
    pub credit: LedgerAccount,
    /// Always positive.
    pub amount: Amount,
    pub currency: Currency,
    pub instrument: InstrumentId,
}

/// Net cash for one account, currency and value date: positive, the clearing firm pays the
/// account; negative, the account pays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentInstruction {
    pub account: AccountId,
    pub currency: Currency,
    pub value_date: Date,
    pub amount: Amount,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Copy-on-write, so that a snapshot image shares the postings (millions after a large
    /// end of day) instead of copying them. Chunks stay shared (`false`): the ledger is
    /// cloned into an image, and written only at the end of day.
    postings: CowVec<Posting, false>,
    /// Behind a count for the same reason (one per customer account and currency).
    balances: Arc<BTreeMap<(LedgerAccount, Currency), Amount>>,
}

impl Ledger {
    pub fn postings(&self) -> &CowVec<Posting, false> {
        &self.postings
    }

    pub fn balances(&self) -> &BTreeMap<(LedgerAccount, Currency), Amount> {
        &self.balances
    }

    pub fn balance(&self, account: LedgerAccount, currency: Currency) -> Amount {
        self.balances.get(&(account, currency)).copied().unwrap_or_default()
    }

    /// Records a posting (amount must be positive) and moves both balances.
    pub(crate) fn post(&mut self, mut posting: Posting) -> Result<(), SettleError> {
        debug_assert!(posting.amount > Amount::ZERO, "invariant: postings carry a positive amount");
        posting.id = self.postings.len() as u64 + 1;
        let overflow = || SettleError::Overflow(format!("balance in {}", posting.currency));
        let balances = Arc::make_mut(&mut self.balances);
        let credit = balances.entry((posting.credit, posting.currency)).or_default();
        *credit = credit.checked_add(posting.amount).ok_or_else(overflow)?;
        let debit = balances.entry((posting.debit, posting.currency)).or_default();
        *debit = debit.checked_sub(posting.amount).ok_or_else(overflow)?;
        self.postings.push(posting);
        Ok(())
    }

    /// Per currency, the balances sum to zero; otherwise the error names the last posting.
    pub fn check(&self) -> Result<(), SettleError> {
        let mut sums: BTreeMap<Currency, i128> = BTreeMap::new();
        for ((_, currency), amount) in self.balances.iter() {
            *sums.entry(*currency).or_default() += amount.nanos();
        }
        match sums.into_iter().find(|(_, sum)| *sum != 0) {
            None => Ok(()),
            Some((currency, sum)) => Err(SettleError::LedgerUnbalanced {
                currency: currency.to_string(),
                sum: Amount::from_nanos(sum).to_string(),
                posting: self.postings.len() as u64,
            }),
        }
    }

    /// Customer cash of one business date's postings, netted per account, currency and value
    /// date; accounts that net to zero get no instruction.
    pub fn payment_instructions(&self, business_date: Date) -> Vec<PaymentInstruction> {
        let mut net: BTreeMap<(AccountId, Currency, Date), i128> = BTreeMap::new();
        for posting in self.postings.iter().filter(|p| p.business_date == business_date) {
            if let LedgerAccount::Customer(account) = posting.credit {
                *net.entry((account, posting.currency, posting.value_date)).or_default() +=
                    posting.amount.nanos();
            }
            if let LedgerAccount::Customer(account) = posting.debit {
                *net.entry((account, posting.currency, posting.value_date)).or_default() -=
                    posting.amount.nanos();
            }
        }
        net.into_iter()
            .filter(|(_, amount)| *amount != 0)
            .map(|((account, currency, value_date), amount)| PaymentInstruction {
                account,
                currency,
                value_date,
                amount: Amount::from_nanos(amount),
            })
            .collect()
    }
}
