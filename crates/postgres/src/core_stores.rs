//! The core stores on PostgreSQL: idempotency records and the audit log.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use citycard_core::idempotency::{ClaimDecision, decide_claim, new_claim_owner, not_held};
use citycard_core::{
    AuditEntry, AuditLog, AuditOutcome, AuditQuery, AuditRecord, Claim, CoreChanges, Fingerprint,
    IdempotencyError, IdempotencyKey, IdempotencyRecord, IdempotencyState, IdempotencyStore,
    StoreError,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::db::{
    Database, Isolation, Migration, SqlResult, corrupt, decode_instant, encode_instant,
};
use crate::transaction;

pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    component: "core",
    version: 1,
    // The SQLite store's core v1 and v2 in one step (claims with owners and leases).
    sql: "
        CREATE TABLE idempotency_records (
            scope        TEXT NOT NULL,
            key          TEXT NOT NULL,
            fingerprint  TEXT NOT NULL,
            state        TEXT NOT NULL CHECK (state IN ('in_progress', 'completed')),
            outcome      TEXT,
            created_at   BIGINT NOT NULL,
            completed_at BIGINT,
            owner        TEXT NOT NULL DEFAULT '',
            lease_until  BIGINT,
            PRIMARY KEY (scope, key)
        );
        CREATE INDEX idempotency_in_progress ON idempotency_records (state, created_at);
        CREATE TABLE audit_log (
            sequence BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at       BIGINT NOT NULL,
            actor    TEXT NOT NULL,
            action   TEXT NOT NULL,
            subject  TEXT NOT NULL,
            outcome  TEXT NOT NULL,
            detail   TEXT NOT NULL
        );
        CREATE INDEX audit_log_subject ON audit_log (subject, sequence);
        CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'the audit log is append-only'; END;
        $$;
        CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
            FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
        CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
            FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
    ",
}];

/// Idempotency records in the citycard database.
///
/// Each handle claims keys as its own owner (a fresh id per
/// [`PgIdempotencyStore::new`]), with leases of
/// [`DEFAULT_CLAIM_LEASE`](citycard_core::DEFAULT_CLAIM_LEASE). A claim
/// locks the key's row (`FOR UPDATE`), so two instances deciding on one key
/// take turns.
#[derive(Debug, Clone)]
pub struct PgIdempotencyStore {
    db: Database,
    owner: String,
    lease: chrono::Duration,
}

impl PgIdempotencyStore {
    /// The store on a connected database, with a new owner id.
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

fn record_from_row(r: &PgRow) -> Result<IdempotencyRecord, StoreError> {
    let scope: String = r.try_get(0).st()?;
    let key: String = r.try_get(1).st()?;
    let key = IdempotencyKey::parse(&key).map_err(corrupt)?;
    let fingerprint: String = r.try_get(2).st()?;
    let fingerprint = Fingerprint::from_hex(&fingerprint)
        .ok_or_else(|| corrupt(format!("bad fingerprint for key {key}")))?;
    let state: String = r.try_get(3).st()?;
    let state = match state.as_str() {
        "in_progress" => IdempotencyState::InProgress,
        "completed" => IdempotencyState::Completed,
        other => return Err(corrupt(format!("bad idempotency state {other:?}"))),
    };
    Ok(IdempotencyRecord {
        scope,
        key,
        fingerprint,
        state,
        outcome: r.try_get(4).st()?,
        created_at: decode_instant(r.try_get(5).st()?)?,
        completed_at: r
            .try_get::<Option<i64>, _>(6)
            .st()?
            .map(decode_instant)
            .transpose()?,
        owner: r.try_get(7).st()?,
        lease_until: r
            .try_get::<Option<i64>, _>(8)
            .st()?
            .map(decode_instant)
            .transpose()?,
    })
}

/// Reads a key's record; `lock` takes its row lock until the transaction ends.
async fn read_record(
    conn: &mut PgConnection,
    scope: &str,
    key: &IdempotencyKey,
    lock: bool,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM idempotency_records WHERE scope = $1 AND key = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    sqlx::query(&sql)
        .bind(scope)
        .bind(key.as_str())
        .fetch_optional(conn)
        .await
        .st()?
        .as_ref()
        .map(record_from_row)
        .transpose()
}

#[async_trait]
impl IdempotencyStore for PgIdempotencyStore {
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
        transaction!(self.db, Isolation::ReadCommitted, |tx| {
            // A new key: insert, and let a racing insert of the same key win
            // or lose on the primary key; a present key: lock it and decide.
            let inserted = sqlx::query(
                "INSERT INTO idempotency_records
                     (scope, key, fingerprint, state, created_at, owner, lease_until)
                 VALUES ($1, $2, $3, 'in_progress', $4, $5, $6)
                 ON CONFLICT (scope, key) DO NOTHING",
            )
            .bind(scope)
            .bind(key.as_str())
            .bind(fingerprint.to_hex())
            .bind(encode_instant(now))
            .bind(&self.owner)
            .bind(lease_until)
            .execute(&mut *tx)
            .await
            .st()?
            .rows_affected();
            if inserted == 1 {
                return Ok(Ok(Claim::Started));
            }
            let existing = read_record(&mut tx, scope, key, true)
                .await?
                .ok_or_else(|| StoreError::Internal(format!("key {key} vanished")))?;
            Ok(match decide_claim(&existing, fingerprint, now) {
                Ok(ClaimDecision::Answer(claim)) => Ok(claim),
                Ok(ClaimDecision::TakeOver(claim)) => {
                    sqlx::query(
                        "UPDATE idempotency_records SET owner = $3, lease_until = $4
                         WHERE scope = $1 AND key = $2 AND state = 'in_progress'",
                    )
                    .bind(scope)
                    .bind(key.as_str())
                    .bind(&self.owner)
                    .bind(lease_until)
                    .execute(&mut *tx)
                    .await
                    .st()?;
                    Ok(claim)
                }
                Err(e) => Err(e),
            })
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
        transaction!(self.db, Isolation::ReadCommitted, |tx| {
            let changed = sqlx::query(
                "UPDATE idempotency_records
                 SET state = 'completed', outcome = $5, completed_at = $6, lease_until = NULL
                 WHERE scope = $1 AND key = $2 AND fingerprint = $3 AND owner = $4
                   AND state = 'in_progress'",
            )
            .bind(scope)
            .bind(key.as_str())
            .bind(fingerprint.to_hex())
            .bind(&self.owner)
            .bind(outcome)
            .bind(encode_instant(now))
            .execute(&mut *tx)
            .await
            .st()?
            .rows_affected();
            if changed == 1 {
                Ok(Ok(()))
            } else {
                let existing = read_record(&mut tx, scope, key, false).await?;
                Ok(Err(not_held(existing.as_ref(), fingerprint, scope, key)))
            }
        })?
    }

    async fn release(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
    ) -> Result<(), IdempotencyError> {
        transaction!(self.db, Isolation::ReadCommitted, |tx| {
            let changed = sqlx::query(
                "DELETE FROM idempotency_records
                 WHERE scope = $1 AND key = $2 AND fingerprint = $3 AND owner = $4
                   AND state = 'in_progress'",
            )
            .bind(scope)
            .bind(key.as_str())
            .bind(fingerprint.to_hex())
            .bind(&self.owner)
            .execute(&mut *tx)
            .await
            .st()?
            .rows_affected();
            if changed == 1 {
                Ok(Ok(()))
            } else {
                let existing = read_record(&mut tx, scope, key, false).await?;
                Ok(Err(not_held(existing.as_ref(), fingerprint, scope, key)))
            }
        })?
    }

    async fn get(
        &self,
        scope: &str,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, IdempotencyError> {
        let mut conn = self.db.pool().acquire().await.st()?;
        Ok(read_record(&mut conn, scope, key, false).await?)
    }

    async fn in_progress(&self, limit: usize) -> Result<Vec<IdempotencyRecord>, IdempotencyError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM idempotency_records
             WHERE state = 'in_progress' ORDER BY created_at, scope, key LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.db.pool())
        .await
        .st()?;
        Ok(rows.iter().map(record_from_row).collect::<Result<_, _>>()?)
    }
}

/// Writes a plan's core records inside the caller's transaction: each
/// idempotency outcome by [`citycard_core::KeyOutcome::apply_to`] on the
/// key's locked row (a key that already has an outcome, or belongs to another
/// request, refuses the whole transaction as a conflict; two transactions
/// inserting the same new key meet on the primary key, and the second is a
/// conflict too), then the audit records in order.
pub async fn write_core_changes(
    conn: &mut PgConnection,
    changes: &CoreChanges,
) -> Result<(), StoreError> {
    for outcome in &changes.outcomes {
        let existing = read_record(conn, &outcome.scope, &outcome.key, true).await?;
        let record = outcome.apply_to(existing.as_ref())?;
        let sql = if existing.is_none() {
            format!(
                "INSERT INTO idempotency_records ({RECORD_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)"
            )
        } else {
            "UPDATE idempotency_records
             SET fingerprint = $3, state = $4, outcome = $5, created_at = $6,
                 completed_at = $7, owner = $8, lease_until = NULL
             WHERE scope = $1 AND key = $2"
                .to_owned()
        };
        sqlx::query(&sql)
            .bind(&record.scope)
            .bind(record.key.as_str())
            .bind(record.fingerprint.to_hex())
            .bind("completed")
            .bind(&record.outcome)
            .bind(encode_instant(record.created_at))
            .bind(record.completed_at.map(encode_instant))
            .bind(&record.owner)
            .execute(&mut *conn)
            .await
            .st()?;
    }
    append_audit(conn, &changes.audit).await?;
    crate::outbox::write_events(conn, &changes.events).await
}

/// Appends audit records in order (one multi-row insert) and returns the
/// sequence of the last one.
async fn append_audit(
    conn: &mut PgConnection,
    records: &[AuditRecord],
) -> Result<Option<u64>, StoreError> {
    if records.is_empty() {
        return Ok(None);
    }
    let mut at = Vec::with_capacity(records.len());
    let mut actor = Vec::with_capacity(records.len());
    let mut action = Vec::with_capacity(records.len());
    let mut subject = Vec::with_capacity(records.len());
    let mut outcome = Vec::with_capacity(records.len());
    let mut detail = Vec::with_capacity(records.len());
    for r in records {
        at.push(encode_instant(r.at));
        actor.push(
            serde_json::to_string(&r.actor).map_err(|e| StoreError::Internal(e.to_string()))?,
        );
        action.push(r.action.clone());
        subject.push(r.subject.clone());
        outcome.push(r.outcome.code().to_owned());
        detail.push(
            serde_json::to_string(&r.detail).map_err(|e| StoreError::Internal(e.to_string()))?,
        );
    }
    // WITH ORDINALITY keeps the records' order in their sequence numbers.
    let last: Option<i64> = sqlx::query_scalar(
        "WITH inserted AS (
             INSERT INTO audit_log (at, actor, action, subject, outcome, detail)
             SELECT a, b, c, d, e, f
             FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                  WITH ORDINALITY AS t(a, b, c, d, e, f, n)
             ORDER BY n
             RETURNING sequence)
         SELECT max(sequence) FROM inserted",
    )
    .bind(at)
    .bind(actor)
    .bind(action)
    .bind(subject)
    .bind(outcome)
    .bind(detail)
    .fetch_one(conn)
    .await
    .st()?;
    Ok(last.map(|s| u64::try_from(s).unwrap_or_default()))
}

/// The append-only audit log in the citycard database. A trigger refuses any
/// `UPDATE`, `DELETE` or `TRUNCATE` on it.
///
/// Sequence numbers come from an identity column: unique and increasing in
/// the order rows are inserted, though a number taken by a transaction that
/// rolled back leaves a gap.
#[derive(Debug, Clone)]
pub struct PgAuditLog {
    db: Database,
}

impl PgAuditLog {
    /// The log on a connected database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl AuditLog for PgAuditLog {
    async fn append(&self, record: AuditRecord) -> Result<u64, StoreError> {
        let mut conn = self.db.pool().acquire().await.st()?;
        append_audit(&mut conn, std::slice::from_ref(&record))
            .await?
            .ok_or_else(|| StoreError::Internal("audit record not appended".into()))
    }

    async fn query(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = query
            .limit
            .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let after = query
            .after_sequence
            .map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX));
        let rows = sqlx::query(
            "SELECT sequence, at, actor, action, subject, outcome, detail FROM audit_log
             WHERE sequence > $1 AND ($2::text IS NULL OR subject = $2)
               AND ($3::text IS NULL OR action = $3)
             ORDER BY sequence LIMIT $4",
        )
        .bind(after)
        .bind(&query.subject)
        .bind(&query.action)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await
        .st()?;
        rows.iter()
            .map(|r| {
                let actor: String = r.try_get(2).st()?;
                let outcome_code: String = r.try_get(5).st()?;
                let detail: String = r.try_get(6).st()?;
                Ok(AuditEntry {
                    sequence: u64::try_from(r.try_get::<i64, _>(0).st()?).unwrap_or_default(),
                    record: AuditRecord {
                        at: decode_instant(r.try_get(1).st()?)?,
                        actor: serde_json::from_str(&actor).map_err(corrupt)?,
                        action: r.try_get(3).st()?,
                        subject: r.try_get(4).st()?,
                        outcome: AuditOutcome::from_code(&outcome_code)
                            .ok_or_else(|| corrupt(format!("bad outcome {outcome_code:?}")))?,
                        detail: serde_json::from_str(&detail).map_err(corrupt)?,
                    },
                })
            })
            .collect()
    }
}
