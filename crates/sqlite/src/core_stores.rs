//! The core stores on SQLite: idempotency records and the audit log.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use citycard_core::idempotency::{ClaimDecision, decide_claim, new_claim_owner, not_held};
use citycard_core::{
    AuditEntry, AuditLog, AuditOutcome, AuditQuery, AuditRecord, Claim, CoreChanges, Fingerprint,
    IdempotencyError, IdempotencyKey, IdempotencyRecord, IdempotencyState, IdempotencyStore,
    StoreError,
};
use rusqlite::{OptionalExtension, params};

use crate::db::{Database, Migration, corrupt, decode_instant, encode_instant};

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
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
    },
    // v2: claims carry an owner and a lease. Claims left in progress by v1 have
    // no lease, so they count as expired and are taken over on the next claim.
    Migration {
        component: "core",
        version: 2,
        sql: "
            ALTER TABLE idempotency_records ADD COLUMN owner TEXT NOT NULL DEFAULT '';
            ALTER TABLE idempotency_records ADD COLUMN lease_until INTEGER;
            CREATE INDEX idempotency_in_progress ON idempotency_records (state, created_at);
        ",
    },
];

/// Idempotency records in the citycard database.
///
/// Each handle claims keys as its own owner (a fresh id per
/// [`SqliteIdempotencyStore::new`]), with leases of
/// [`DEFAULT_CLAIM_LEASE`](citycard_core::DEFAULT_CLAIM_LEASE).
#[derive(Debug, Clone)]
pub struct SqliteIdempotencyStore {
    db: Database,
    owner: String,
    lease: chrono::Duration,
}

impl SqliteIdempotencyStore {
    /// The store on an open database, with a new owner id.
    pub fn new(db: Database) -> Self {
        Self {
            db,
            owner: new_claim_owner(),
            lease: citycard_core::DEFAULT_CLAIM_LEASE,
        }
    }

    /// Another handle on the same database, claiming as `owner`.
    pub fn handle(&self, owner: &str) -> Self {
        Self {
            db: self.db.clone(),
            owner: owner.to_owned(),
            lease: self.lease,
        }
    }

    /// This handle with claims held for `lease`.
    pub fn with_lease(mut self, lease: chrono::Duration) -> Self {
        self.lease = lease;
        self
    }
}

const RECORD_COLUMNS: &str =
    "scope, key, fingerprint, state, outcome, created_at, completed_at, owner, lease_until";

fn record_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<IdempotencyRecord> {
    let scope: String = r.get(0)?;
    let key: String = r.get(1)?;
    let key = IdempotencyKey::parse(&key).map_err(|e| corrupt(1, e))?;
    let fingerprint: String = r.get(2)?;
    let fingerprint = Fingerprint::from_hex(&fingerprint)
        .ok_or_else(|| corrupt(2, format!("bad fingerprint for key {key}")))?;
    let state: String = r.get(3)?;
    let state = match state.as_str() {
        "in_progress" => IdempotencyState::InProgress,
        "completed" => IdempotencyState::Completed,
        other => return Err(corrupt(3, format!("bad state {other:?}"))),
    };
    let instant = |i: usize, v: i64| decode_instant(v).map_err(|e| corrupt(i, e));
    Ok(IdempotencyRecord {
        scope,
        key,
        fingerprint,
        state,
        outcome: r.get(4)?,
        created_at: instant(5, r.get(5)?)?,
        completed_at: r
            .get::<_, Option<i64>>(6)?
            .map(|v| instant(6, v))
            .transpose()?,
        owner: r.get(7)?,
        lease_until: r
            .get::<_, Option<i64>>(8)?
            .map(|v| instant(8, v))
            .transpose()?,
    })
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
    // Cached: every outcome a plan commits reads its key's record first.
    tx.prepare_cached(&format!(
        "SELECT {RECORD_COLUMNS} FROM idempotency_records WHERE scope = ?1 AND key = ?2"
    ))
    .and_then(|mut stmt| {
        stmt.query_row(params![scope, key.as_str()], record_from_row)
            .optional()
    })
    .map_err(|e| crate::to_store_error(&e))
}

#[async_trait]
impl IdempotencyStore for SqliteIdempotencyStore {
    fn owner(&self) -> &str {
        &self.owner
    }

    async fn claim(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        now: DateTime<Utc>,
    ) -> Result<Claim, IdempotencyError> {
        let lease_until = encode_instant(now.checked_add_signed(self.lease).unwrap_or(now));
        self.db.transaction(|tx| {
            if let Some(existing) = read_record(tx, scope, key)? {
                return Ok(match decide_claim(&existing, fingerprint, now) {
                    Ok(ClaimDecision::Answer(claim)) => Ok(claim),
                    Ok(ClaimDecision::TakeOver(claim)) => {
                        tx.execute(
                            "UPDATE idempotency_records SET owner = ?3, lease_until = ?4
                             WHERE scope = ?1 AND key = ?2 AND state = 'in_progress'",
                            params![scope, key.as_str(), self.owner, lease_until],
                        )
                        .map_err(|e| crate::to_store_error(&e))?;
                        Ok(claim)
                    }
                    Err(e) => Err(e),
                });
            }
            tx.execute(
                "INSERT INTO idempotency_records
                     (scope, key, fingerprint, state, created_at, owner, lease_until)
                 VALUES (?1, ?2, ?3, 'in_progress', ?4, ?5, ?6)",
                params![
                    scope,
                    key.as_str(),
                    fingerprint.to_hex(),
                    encode_instant(now),
                    self.owner,
                    lease_until
                ],
            )
            .map_err(|e| crate::to_store_error(&e))?;
            Ok(Ok(Claim::Started))
        })?
    }

    async fn complete(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        outcome: &str,
        now: DateTime<Utc>,
    ) -> Result<(), IdempotencyError> {
        self.db.transaction(|tx| {
            let changed = tx
                .execute(
                    "UPDATE idempotency_records
                     SET state = 'completed', outcome = ?5, completed_at = ?6, lease_until = NULL
                     WHERE scope = ?1 AND key = ?2 AND fingerprint = ?3 AND owner = ?4
                       AND state = 'in_progress'",
                    params![
                        scope,
                        key.as_str(),
                        fingerprint.to_hex(),
                        self.owner,
                        outcome,
                        encode_instant(now)
                    ],
                )
                .map_err(|e| crate::to_store_error(&e))?;
            if changed == 1 {
                Ok(Ok(()))
            } else {
                Ok(Err(not_held(
                    read_record(tx, scope, key)?.as_ref(),
                    fingerprint,
                    scope,
                    key,
                )))
            }
        })?
    }

    async fn release(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
    ) -> Result<(), IdempotencyError> {
        self.db.transaction(|tx| {
            let changed = tx
                .execute(
                    "DELETE FROM idempotency_records
                     WHERE scope = ?1 AND key = ?2 AND fingerprint = ?3 AND owner = ?4
                       AND state = ?5",
                    params![
                        scope,
                        key.as_str(),
                        fingerprint.to_hex(),
                        self.owner,
                        state_code(IdempotencyState::InProgress)
                    ],
                )
                .map_err(|e| crate::to_store_error(&e))?;
            if changed == 1 {
                Ok(Ok(()))
            } else {
                Ok(Err(not_held(
                    read_record(tx, scope, key)?.as_ref(),
                    fingerprint,
                    scope,
                    key,
                )))
            }
        })?
    }

    async fn get(
        &self,
        scope: &str,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, IdempotencyError> {
        // A pure read: on a reader connection, not behind the writer.
        Ok(self.db.read(|conn| Ok(read_record(conn, scope, key)))??)
    }

    async fn in_progress(&self, limit: usize) -> Result<Vec<IdempotencyRecord>, IdempotencyError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(self.db.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {RECORD_COLUMNS} FROM idempotency_records
                 WHERE state = 'in_progress' ORDER BY created_at, scope, key LIMIT ?1"
            ))?;
            stmt.query_map(params![limit], record_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?)
    }
}

/// Writes a plan's core records inside the caller's transaction: the audit
/// records appended in order and each idempotency outcome by
/// [`citycard_core::KeyOutcome::apply_to`] (a key that already has an outcome, or belongs to
/// another request, refuses the whole transaction as a conflict).
pub fn write_core_changes(
    tx: &rusqlite::Transaction<'_>,
    changes: &CoreChanges,
) -> Result<(), StoreError> {
    let se = |e: rusqlite::Error| crate::to_store_error(&e);
    for outcome in &changes.outcomes {
        let record = outcome.apply_to(read_record(tx, &outcome.scope, &outcome.key)?.as_ref())?;
        tx.prepare_cached(&format!(
            "INSERT OR REPLACE INTO idempotency_records ({RECORD_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL)"
        ))
        .and_then(|mut stmt| {
            stmt.execute(params![
                record.scope,
                record.key.as_str(),
                record.fingerprint.to_hex(),
                state_code(record.state),
                record.outcome,
                encode_instant(record.created_at),
                record.completed_at.map(encode_instant),
                record.owner,
            ])
        })
        .map_err(se)?;
    }
    for record in &changes.audit {
        append_audit(tx, record)?;
    }
    crate::outbox::write_events(tx, &changes.events)
}

/// Appends one audit record on `conn` (inside the caller's transaction, if any).
fn append_audit(conn: &rusqlite::Connection, record: &AuditRecord) -> Result<u64, StoreError> {
    let actor =
        serde_json::to_string(&record.actor).map_err(|e| StoreError::Internal(e.to_string()))?;
    let detail =
        serde_json::to_string(&record.detail).map_err(|e| StoreError::Internal(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO audit_log (at, actor, action, subject, outcome, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            encode_instant(record.at),
            actor,
            record.action,
            record.subject,
            record.outcome.code(),
            detail
        ])
    })
    .map_err(|e| crate::to_store_error(&e))?;
    Ok(u64::try_from(conn.last_insert_rowid()).unwrap_or_default())
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

impl SqliteAuditLog {
    /// Appends `records` in order in one transaction (one fsync for all of
    /// them: the facade's group commit of audit records); returns their
    /// sequence numbers.
    pub fn append_all(&self, records: &[AuditRecord]) -> Result<Vec<u64>, StoreError> {
        self.db.transaction(|tx| {
            records
                .iter()
                .map(|record| append_audit(tx, record))
                .collect()
        })
    }
}

#[async_trait]
impl AuditLog for SqliteAuditLog {
    async fn append(&self, record: AuditRecord) -> Result<u64, StoreError> {
        let conn = self.db.lock();
        append_audit(&conn, &record)
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
