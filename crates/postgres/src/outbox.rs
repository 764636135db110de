//! The transactional outbox on PostgreSQL (component `outbox`), as on SQLite.
//!
//! [`write_events`] runs inside the change's transaction (called by
//! [`crate::write_core_changes`]). A card's sequence is bumped on its
//! counter row (`INSERT … ON CONFLICT DO UPDATE`), whose row lock is held to
//! the commit: two transactions with events of one card take their numbers
//! in commit order. Outbox ids come from an identity column: unique, but a
//! transaction that commits late may hold a smaller id than one already
//! published, so the relay reads "not yet published" rows, never "after
//! the last id", and orders a card's events by their sequence.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use citycard_core::{Delivery, EventKind, NewEvent, Outbox, OutboxEvent, Platform, StoreError};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::db::{Database, Migration, SqlResult, corrupt, decode_instant, encode_instant};

pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    component: "outbox",
    version: 1,
    sql: "
        CREATE TABLE outbox (
            id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            card         TEXT NOT NULL,
            sequence     BIGINT NOT NULL,
            kind         TEXT NOT NULL,
            platform     TEXT,
            at           BIGINT NOT NULL,
            data         TEXT NOT NULL,
            published    BOOLEAN NOT NULL DEFAULT FALSE,
            delivered    BOOLEAN NOT NULL DEFAULT FALSE,
            attempts     INTEGER NOT NULL DEFAULT 0,
            next_attempt BIGINT NOT NULL,
            last_error   TEXT,
            dead         BOOLEAN NOT NULL DEFAULT FALSE,
            UNIQUE (card, sequence)
        );
        CREATE INDEX outbox_unpublished ON outbox (id) WHERE NOT published;
        CREATE INDEX outbox_undelivered ON outbox (id) WHERE NOT delivered AND NOT dead;
        CREATE INDEX outbox_dead ON outbox (id) WHERE dead;
        CREATE TABLE outbox_sequences (
            card TEXT PRIMARY KEY,
            last BIGINT NOT NULL
        );
    ",
}];

fn platform_text(platform: &Platform) -> Result<String, StoreError> {
    serde_json::to_string(platform).map_err(|e| StoreError::Internal(e.to_string()))
}

fn id_of(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

/// Writes `events` inside the caller's transaction (see the module docs).
pub async fn write_events(conn: &mut PgConnection, events: &[NewEvent]) -> Result<(), StoreError> {
    for event in events {
        let sequence: i64 = sqlx::query_scalar(
            "INSERT INTO outbox_sequences (card, last) VALUES ($1, 1)
             ON CONFLICT (card) DO UPDATE SET last = outbox_sequences.last + 1 RETURNING last",
        )
        .bind(&event.card)
        .fetch_one(&mut *conn)
        .await
        .st()?;
        let platform = event.platform.as_ref().map(platform_text).transpose()?;
        let data =
            serde_json::to_string(&event.data).map_err(|e| StoreError::Internal(e.to_string()))?;
        sqlx::query(
            "INSERT INTO outbox (card, sequence, kind, platform, at, data, delivered, next_attempt)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $5)",
        )
        .bind(&event.card)
        .bind(sequence)
        .bind(event.kind.code())
        .bind(platform)
        .bind(encode_instant(event.at))
        .bind(data)
        .bind(event.platform.is_none())
        .execute(&mut *conn)
        .await
        .st()?;
    }
    Ok(())
}

const COLUMNS: &str =
    "id, card, sequence, kind, platform, at, data, attempts, next_attempt, last_error, dead";

fn read_delivery(r: &PgRow) -> Result<Delivery, StoreError> {
    let get = |e: sqlx::Error| corrupt(e);
    let kind: String = r.try_get("kind").map_err(get)?;
    let kind = EventKind::from_code(&kind)
        .ok_or_else(|| corrupt(format!("unknown event kind {kind:?}")))?;
    let platform = r
        .try_get::<Option<String>, _>("platform")
        .map_err(get)?
        .map(|p| serde_json::from_str::<Platform>(&p))
        .transpose()
        .map_err(corrupt)?;
    let data =
        serde_json::from_str(&r.try_get::<String, _>("data").map_err(get)?).map_err(corrupt)?;
    Ok(Delivery {
        event: OutboxEvent {
            id: u64::try_from(r.try_get::<i64, _>("id").map_err(get)?).unwrap_or_default(),
            sequence: u64::try_from(r.try_get::<i64, _>("sequence").map_err(get)?)
                .unwrap_or_default(),
            event: NewEvent {
                kind,
                card: r.try_get("card").map_err(get)?,
                platform,
                at: decode_instant(r.try_get("at").map_err(get)?)?,
                data,
            },
        },
        attempts: u32::try_from(r.try_get::<i32, _>("attempts").map_err(get)?).unwrap_or(0),
        next_attempt: decode_instant(r.try_get("next_attempt").map_err(get)?)?,
        last_error: r.try_get("last_error").map_err(get)?,
        dead: r.try_get("dead").map_err(get)?,
    })
}

/// The outbox in the citycard database, as the relay reads it.
#[derive(Debug, Clone)]
pub struct PgOutbox {
    db: Database,
}

impl PgOutbox {
    /// The outbox on a connected database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    async fn select(
        &self,
        filter: &str,
        limit: i64,
        platform: Option<String>,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM outbox {filter}"))
            .bind(limit)
            .bind(platform)
            .fetch_all(self.db.pool())
            .await
            .st()?;
        rows.iter().map(read_delivery).collect()
    }
}

#[async_trait]
impl Outbox for PgOutbox {
    async fn unpublished(&self, limit: usize) -> Result<Vec<OutboxEvent>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(self
            .select(
                "WHERE NOT published AND $2::text IS NULL ORDER BY id LIMIT $1",
                limit,
                None,
            )
            .await?
            .into_iter()
            .map(|d| d.event)
            .collect())
    }

    async fn mark_published(&self, ids: &[u64]) -> Result<(), StoreError> {
        let ids: Vec<i64> = ids.iter().copied().map(id_of).collect();
        sqlx::query("UPDATE outbox SET published = TRUE WHERE id = ANY($1)")
            .bind(ids)
            .execute(self.db.pool())
            .await
            .st()?;
        Ok(())
    }

    async fn undelivered(&self, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.select(
            "WHERE NOT delivered AND NOT dead AND $2::text IS NULL ORDER BY id LIMIT $1",
            limit,
            None,
        )
        .await
    }

    async fn mark_delivered(&self, ids: &[u64]) -> Result<(), StoreError> {
        let ids: Vec<i64> = ids.iter().copied().map(id_of).collect();
        sqlx::query("UPDATE outbox SET delivered = TRUE WHERE id = ANY($1)")
            .bind(ids)
            .execute(self.db.pool())
            .await
            .st()?;
        Ok(())
    }

    async fn mark_failed(
        &self,
        id: u64,
        next_attempt: DateTime<Utc>,
        error: &str,
        dead: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt = $2, last_error = $3, dead = $4
             WHERE id = $1",
        )
        .bind(id_of(id))
        .bind(encode_instant(next_attempt))
        .bind(error)
        .bind(dead)
        .execute(self.db.pool())
        .await
        .st()?;
        Ok(())
    }

    async fn dead_letters(&self, platform: Option<&Platform>) -> Result<Vec<Delivery>, StoreError> {
        let platform = platform.map(platform_text).transpose()?;
        self.select(
            "WHERE dead AND ($2::text IS NULL OR platform = $2) ORDER BY id LIMIT $1",
            i64::MAX,
            platform,
        )
        .await
    }

    async fn replay(&self, id: u64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET dead = FALSE, attempts = 0, next_attempt = $2 WHERE id = $1 AND dead",
        )
        .bind(id_of(id))
        .bind(encode_instant(now))
        .execute(self.db.pool())
        .await
        .st()?;
        Ok(done.rows_affected() == 1)
    }
}
