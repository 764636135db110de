//! The core stores on SQLite: idempotency records and the audit log.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use citycard_core::idempotency::decide_claim;
use citycard_core::{
    AuditEntry, AuditLog, AuditOutcome, AuditQuery, AuditRecord, Claim, Fingerprint,
    IdempotencyError, IdempotencyKey, IdempotencyRecord, IdempotencyState, IdempotencyStore,
    StoreError,
};
use rusqlite::{OptionalExtension, params};

use crate::db::{Database, Migration, corrupt, decode_instant, encode_instant};

pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    component: "core",
    version: 1,
    sql: "
        CREATE TABLE idempotency_records (
            scope        TEXT NOT NULL,
            key          TEXT NOT NULL,
            fingerprint  TEXT NOT NULL,
            state        TEXT NOT NULL CHECK (state IN ('in_progress', 'completed')),
            outcome      TEXT,
            created_at   INTEGER NOT NULL,
            completed_at INTEGER,
            PRIMARY KEY (scope, key)
        );
        CREATE TABLE audit_log (
            sequence INTEGER PRIMARY KEY AUTOINCREMENT,
            at       INTEGER NOT NULL,
            actor    TEXT NOT NULL,
            action   TEXT NOT NULL,
            subject  TEXT NOT NULL,
            outcome  TEXT NOT NULL,
            detail   TEXT NOT NULL
        );
        CREATE INDEX audit_log_subject ON audit_log (subject, sequence);
        CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    ",
}];

/// Idempotency records in the citycard database.
#[derive(Debug, Clone)]
pub struct SqliteIdempotencyStore {
    db: Database,
}

impl SqliteIdempotencyStore {
    /// The store on an open database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn state_code(state: IdempotencyState) -> &'static str {
    match state {
        IdempotencyState::InProgress => "in_progress",
        IdempotencyState::Completed => "completed",
    }
}

fn read_record(
    tx: &rusqlite::Connection,
    scope: &str,
    key: &IdempotencyKey,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    let row = tx
        .query_row(
            "SELECT fingerprint, state, outcome, created_at, completed_at
             FROM idempotency_records WHERE scope = ?1 AND key = ?2",
            params![scope, key.as_str()],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            },
        )
        .optional()
        .map_err(|e| crate::to_store_error(&e))?;
    let Some((fingerprint, state, outcome, created_at, completed_at)) = row else {
        return Ok(None);
    };
    let fingerprint = Fingerprint::from_hex(&fingerprint)
        .ok_or_else(|| StoreError::Corrupt(format!("bad fingerprint for key {key}")))?;
    let state = match state.as_str() {
        "in_progress" => IdempotencyState::InProgress,
        "completed" => IdempotencyState::Completed,
        other => return Err(StoreError::Corrupt(format!("bad state {other:?}"))),
    };
    Ok(Some(IdempotencyRecord {
        scope: scope.to_owned(),
        key: key.clone(),
        fingerprint,
        state,
        outcome,
        created_at: decode_instant(created_at)?,
        completed_at: completed_at.map(decode_instant).transpose()?,
    }))
}

#[async_trait]
impl IdempotencyStore for SqliteIdempotencyStore {
    async fn claim(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        now: DateTime<Utc>,
    ) -> Result<Claim, IdempotencyError> {
        let decision = self.db.transaction(|tx| {
            if let Some(existing) = read_record(tx, scope, key)? {
                return Ok(Err(existing));
            }
            tx.execute(
                "INSERT INTO idempotency_records (scope, key, fingerprint, state, created_at)
                 VALUES (?1, ?2, ?3, 'in_progress', ?4)",
                params![
                    scope,
                    key.as_str(),
                    fingerprint.to_hex(),
                    encode_instant(now)
                ],
            )
            .map_err(|e| crate::to_store_error(&e))?;
            Ok(Ok(()))
        })?;
        match decision {
            Ok(()) => Ok(Claim::Started),
            Err(existing) => decide_claim(&existing, fingerprint),
        }
    }

    async fn complete(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        outcome: &str,
        now: DateTime<Utc>,
    ) -> Result<(), IdempotencyError> {
        let changed = self.db.with(|c| {
            c.execute(
                "UPDATE idempotency_records SET state = 'completed', outcome = ?4, completed_at = ?5
                 WHERE scope = ?1 AND key = ?2 AND fingerprint = ?3 AND state = 'in_progress'",
                params![scope, key.as_str(), fingerprint.to_hex(), outcome, encode_instant(now)],
            )
        })?;
        if changed == 1 {
            Ok(())
        } else {
            Err(IdempotencyError::NotClaimed {
                scope: scope.to_owned(),
                key: key.clone(),
            })
        }
    }

    async fn release(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
    ) -> Result<(), IdempotencyError> {
        let changed = self.db.with(|c| {
            c.execute(
                "DELETE FROM idempotency_records
                 WHERE scope = ?1 AND key = ?2 AND fingerprint = ?3 AND state = ?4",
                params![
                    scope,
                    key.as_str(),
                    fingerprint.to_hex(),
                    state_code(IdempotencyState::InProgress)
                ],
            )
        })?;
        if changed == 1 {
            Ok(())
        } else {
            Err(IdempotencyError::NotClaimed {
                scope: scope.to_owned(),
                key: key.clone(),
            })
        }
    }

    async fn get(
        &self,
        scope: &str,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, IdempotencyError> {
        let conn = self.db.lock();
        Ok(read_record(&conn, scope, key)?)
    }
}

/// The append-only audit log in the citycard database. Triggers refuse any
/// `UPDATE` or `DELETE` on it.
#[derive(Debug, Clone)]
pub struct SqliteAuditLog {
    db: Database,
}

impl SqliteAuditLog {
    /// The log on an open database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl AuditLog for SqliteAuditLog {
    async fn append(&self, record: AuditRecord) -> Result<u64, StoreError> {
        let actor = serde_json::to_string(&record.actor)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let detail = serde_json::to_string(&record.detail)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        self.db.with(|c| {
            c.execute(
                "INSERT INTO audit_log (at, actor, action, subject, outcome, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    encode_instant(record.at),
                    actor,
                    record.action,
                    record.subject,
                    record.outcome.code(),
                    detail
                ],
            )?;
            Ok(c.last_insert_rowid() as u64)
        })
    }

    async fn query(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = query
            .limit
            .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let after = query
            .after_sequence
            .map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX));
        self.db.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT sequence, at, actor, action, subject, outcome, detail FROM audit_log
                 WHERE sequence > ?1 AND (?2 IS NULL OR subject = ?2) AND (?3 IS NULL OR action = ?3)
                 ORDER BY sequence LIMIT ?4",
            )?;
            let rows = stmt.query_map(
                params![after, query.subject, query.action, limit],
                |r| {
                    let at = decode_instant(r.get(1)?).map_err(|e| corrupt(1, e))?;
                    let actor = serde_json::from_str(&r.get::<_, String>(2)?)
                        .map_err(|e| corrupt(2, e))?;
                    let outcome_code: String = r.get(5)?;
                    let outcome = AuditOutcome::from_code(&outcome_code)
                        .ok_or_else(|| corrupt(5, format!("bad outcome {outcome_code:?}")))?;
                    let detail = serde_json::from_str(&r.get::<_, String>(6)?)
                        .map_err(|e| corrupt(6, e))?;
                    Ok(AuditEntry {
                        sequence: r.get::<_, i64>(0)? as u64,
                        record: AuditRecord {
                            at,
                            actor,
                            action: r.get(3)?,
                            subject: r.get(4)?,
                            outcome,
                            detail,
                        },
                    })
                },
            )?;
            rows.collect()
        })
    }
}
