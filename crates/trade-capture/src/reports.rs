//! The report table: every accepted report id with what is needed to answer a resubmission.
//!
//! One record per accepted instruction is the largest per-trade cost of a tenant's state, so
//! the table is an arena (`CowVec<ReportRecord>`, 64 bytes a record, in acceptance order,
//! shared copy-on-write with snapshot images) with a hash index of `u32` positions beside it
//! (`hashbrown::HashTable`, 5 bytes a slot) instead of a map holding the records in its slots,
//! where the load factor would double their cost.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use keel_domain::{CowVec, ReportId};
use serde::{Deserialize, Serialize};

use crate::record::{ReportKind, TradeKey};

/// One accepted report id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRecord {
    pub id: ReportId,
    pub kind: ReportKind,
    /// The trade it created (`New`) or concerned; for an average-price allocation, the group's
    /// first fill.
    pub trade: TradeKey,
    /// xxh3-128 of the report's content, as two words (keeps the record 8-byte aligned).
    pub fingerprint: [u64; 2],
    /// Tenant sequence of the command that accepted it.
    pub sequence: u64,
}

/// Accepted report ids, in acceptance order, with a hash index.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReportTable {
    records: CowVec<ReportRecord>,
    #[serde(skip)]
    index: HashTable<u32>,
}

fn hash(id: &ReportId) -> u64 {
    rustc_hash::FxBuildHasher.hash_one(id)
}

impl ReportTable {
    #[inline]
    pub fn get(&self, id: &ReportId) -> Option<&ReportRecord> {
        let records = &self.records;
        self.index
            .find(hash(id), |&at| records[at as usize].id == *id)
            .map(|&at| &records[at as usize])
    }

    /// Adds a record whose id is not in the table yet (checked by the caller with `get`).
    pub fn insert(&mut self, record: ReportRecord) {
        debug_assert!(self.get(&record.id).is_none(), "invariant: report ids are unique");
        let at = u32::try_from(self.records.len()).unwrap_or(u32::MAX);
        let records = &self.records;
        self.index.insert_unique(hash(&record.id), at, |&other| hash(&records[other as usize].id));
        self.records.push(record);
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn records(&self) -> &CowVec<ReportRecord> {
        &self.records
    }

    /// The records without the index, sharing their chunks: for a snapshot image only.
    pub fn image(&self) -> ReportTable {
        ReportTable { records: self.records.clone(), index: HashTable::new() }
    }

    /// Makes room for `additional` more records without growing the arena or the index.
    pub fn reserve(&mut self, additional: usize) {
        self.records.reserve(additional);
        let records = &self.records;
        self.index.reserve(additional, |&at| hash(&records[at as usize].id));
    }

    /// Rebuilds the index after deserialization.
    pub fn reindex(&mut self) {
        let mut index = HashTable::with_capacity(self.records.len());
        for (at, record) in self.records.iter().enumerate() {
            let records = &self.records;
            index.insert_unique(hash(&record.id), at as u32, |&other| {
                hash(&records[other as usize].id)
            });
        }
        self.index = index;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, sequence: u64) -> ReportRecord {
        ReportRecord {
            id: id.parse().unwrap(),
            kind: ReportKind::New,
            trade: TradeKey(sequence as u32),
            fingerprint: [sequence, !sequence],
            sequence,
        }
    }

    #[test]
    fn finds_what_was_inserted_and_survives_reindex() {
        let mut table = ReportTable::default();
        for n in 0..10_000u64 {
            table.insert(record(&format!("R{n}"), n));
        }
        assert_eq!(std::mem::size_of::<ReportRecord>(), 64);
        for n in [0u64, 1, 4_999, 9_999] {
            assert_eq!(table.get(&format!("R{n}").parse().unwrap()).map(|r| r.sequence), Some(n));
        }
        assert!(table.get(&"R10000".parse().unwrap()).is_none());
        let bytes = bincode::serialize(&table).unwrap();
        let mut restored: ReportTable = bincode::deserialize(&bytes).unwrap();
        assert!(restored.get(&"R5".parse().unwrap()).is_none(), "the index is not serialized");
        restored.reindex();
        assert_eq!(restored.get(&"R5".parse().unwrap()).map(|r| r.sequence), Some(5));
        assert_eq!(restored.len(), 10_000);
    }
}
