//! Settlement records and annual accumulators: reads on the reader pool, plans committed
//! in one transaction.

use async_trait::async_trait;
use citycard_core::{IdempotencyKey, Money, PersonId, StoreError};
use citycard_healthcare::billing::decide::SettlementPlan;
use citycard_healthcare::{
    AnnualAccumulators, SettlementId, SettlementRecord, SettlementStatus, SettlementStore,
};
use rusqlite::{OptionalExtension, Row, params};

use super::store_err;
use crate::db::{Database, corrupt, encode_instant};

fn read_accumulators(
    tx: &rusqlite::Connection,
    person: &PersonId,
    year: i32,
) -> rusqlite::Result<AnnualAccumulators> {
    Ok(tx
        .query_row(
            "SELECT deductible_met, fund_paid FROM hc_accumulators WHERE person = ?1 AND year = ?2",
            params![person.as_str(), year],
            |r| {
                Ok(AnnualAccumulators {
                    year,
                    deductible_met: Money::from_fen(r.get(0)?),
                    fund_paid: Money::from_fen(r.get(1)?),
                })
            },
        )
        .optional()?
        .unwrap_or(AnnualAccumulators::new(year)))
}

fn write_accumulators(
    tx: &rusqlite::Connection,
    person: &PersonId,
    acc: &AnnualAccumulators,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO hc_accumulators (person, year, deductible_met, fund_paid)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (person, year) DO UPDATE SET deductible_met = excluded.deductible_met,
            fund_paid = excluded.fund_paid",
        params![
            person.as_str(),
            acc.year,
            acc.deductible_met.fen(),
            acc.fund_paid.fen()
        ],
    )
    .map_err(store_err)?;
    Ok(())
}

fn read_settlement(row: &Row<'_>) -> rusqlite::Result<SettlementRecord> {
    let mut record: SettlementRecord =
        serde_json::from_str(&row.get::<_, String>(0)?).map_err(|e| corrupt(0, e))?;
    let status: String = row.get(1)?;
    record.status = SettlementStatus::from_code(&status)
        .ok_or_else(|| corrupt(1, format!("bad settlement status {status:?}")))?;
    record.reversal_key = row
        .get::<_, Option<String>>(2)?
        .map(|k| k.parse().map_err(|e| corrupt(2, e)))
        .transpose()?;
    Ok(record)
}

fn load_settlement(
    tx: &rusqlite::Connection,
    column: &str,
    value: &str,
) -> rusqlite::Result<Option<SettlementRecord>> {
    tx.query_row(
        &format!("SELECT record, status, reversal_key FROM hc_settlements WHERE {column} = ?1"),
        params![value],
        read_settlement,
    )
    .optional()
}

/// Settlement records and annual accumulators in the citycard database.
#[derive(Debug, Clone)]
pub struct SqliteSettlementStore {
    db: Database,
}

impl SqliteSettlementStore {
    /// The store on an open database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn check(tx: &rusqlite::Connection, plan: &SettlementPlan) -> Result<(), StoreError> {
    let record = &plan.record;
    let stored = load_settlement(tx, "id", record.id.as_str()).map_err(store_err)?;
    match plan.expected_status {
        None => {
            if stored.is_some()
                || load_settlement(tx, "key", record.key.as_str())
                    .map_err(store_err)?
                    .is_some()
            {
                return Err(StoreError::Conflict(format!(
                    "settlement key {} is already used",
                    record.key
                )));
            }
        }
        Some(expected) => {
            if stored.is_none_or(|s| s.status != expected) {
                return Err(StoreError::Conflict(format!(
                    "settlement {} is no longer {}",
                    record.id,
                    expected.code()
                )));
            }
        }
    }
    if let Some(change) = &plan.accumulators
        && read_accumulators(tx, plan.person(), change.before.year).map_err(store_err)?
            != change.before
    {
        return Err(StoreError::Conflict(
            "the patient's accumulators changed since they were read".into(),
        ));
    }
    Ok(())
}

#[async_trait]
impl SettlementStore for SqliteSettlementStore {
    async fn accumulators(
        &self,
        person: &PersonId,
        year: i32,
    ) -> Result<AnnualAccumulators, StoreError> {
        self.db.read(|c| read_accumulators(c, person, year))
    }

    async fn commit(&self, plan: &SettlementPlan) -> Result<(), StoreError> {
        self.db.transaction(|tx| {
            check(tx, plan)?;
            if let Some(change) = &plan.accumulators {
                write_accumulators(tx, plan.person(), &change.after)?;
            }
            let record = &plan.record;
            let json =
                serde_json::to_string(record).map_err(|e| StoreError::Internal(e.to_string()))?;
            let key = record.reversal_key.as_ref().map(|k| k.as_str());
            if plan.expected_status.is_none() {
                tx.prepare_cached(
                    "INSERT INTO hc_settlements (id, key, person, status, reversal_key, record,
                        created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        record.id.as_str(),
                        record.key.as_str(),
                        plan.person().as_str(),
                        record.status.code(),
                        key,
                        json,
                        encode_instant(record.created_at)
                    ])
                })
                .map_err(store_err)?;
            } else {
                tx.prepare_cached(
                    "UPDATE hc_settlements SET status = ?2, reversal_key = ?3, record = ?4
                     WHERE id = ?1",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![record.id.as_str(), record.status.code(), key, json])
                })
                .map_err(store_err)?;
            }
            crate::write_core_changes(tx, &plan.core)
        })
    }

    async fn settlement(&self, id: &SettlementId) -> Result<Option<SettlementRecord>, StoreError> {
        self.db.read(|c| load_settlement(c, "id", id.as_str()))
    }

    async fn settlement_by_key(
        &self,
        key: &IdempotencyKey,
    ) -> Result<Option<SettlementRecord>, StoreError> {
        self.db.read(|c| load_settlement(c, "key", key.as_str()))
    }
}
