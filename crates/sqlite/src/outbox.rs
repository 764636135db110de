//! The transactional outbox on SQLite (component `outbox`).
//!
//! [`write_events`] runs inside the transaction of the change (called by
//! [`crate::write_core_changes`]): each event gets the next outbox id (the
//! table's `AUTOINCREMENT` key: commit order, as SQLite has one writer) and
//! the next sequence of its card (a counter row per card, bumped in the same
//! transaction). [`SqliteOutbox`] is the relay's port.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use citycard_core::{Delivery, EventKind, NewEvent, Outbox, OutboxEvent, Platform, StoreError};
use rusqlite::params;

use crate::db::{Database, Migration, corrupt, decode_instant, encode_instant};

pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    component: "outbox",
    version: 1,
    sql: "
        CREATE TABLE outbox (
            id           INTEGER PRIMARY KEY AUTOINCREMENT,
            card         TEXT NOT NULL,
            sequence     INTEGER NOT NULL,
            kind         TEXT NOT NULL,
            platform     TEXT,
            at           INTEGER NOT NULL,
            data         TEXT NOT NULL,
            published    INTEGER NOT NULL DEFAULT 0,
            delivered    INTEGER NOT NULL DEFAULT 0,
            attempts     INTEGER NOT NULL DEFAULT 0,
            next_attempt INTEGER NOT NULL,
            last_error   TEXT,
            dead         INTEGER NOT NULL DEFAULT 0,
            UNIQUE (card, sequence)
        );
        CREATE INDEX outbox_unpublished ON outbox (id) WHERE published = 0;
        CREATE INDEX outbox_undelivered ON outbox (id) WHERE delivered = 0 AND dead = 0;
        CREATE INDEX outbox_dead ON outbox (id) WHERE dead = 1;
        CREATE TABLE outbox_sequences (
            card TEXT PRIMARY KEY,
            last INTEGER NOT NULL
        );
    ",
}];

fn se(e: rusqlite::Error) -> StoreError {
    crate::to_store_error(&e)
}

fn platform_text(platform: &Platform) -> Result<String, StoreError> {
    serde_json::to_string(platform).map_err(|e| StoreError::Internal(e.to_string()))
}

/// Writes `events` inside the caller's transaction (see the module docs).
pub fn write_events(tx: &rusqlite::Connection, events: &[NewEvent]) -> Result<(), StoreError> {
    for event in events {
        let sequence: i64 = tx
            .prepare_cached(
                "INSERT INTO outbox_sequences (card, last) VALUES (?1, 1)
                 ON CONFLICT (card) DO UPDATE SET last = last + 1 RETURNING last",
            )
            .and_then(|mut s| s.query_row([&event.card], |r| r.get(0)))
            .map_err(se)?;
        let platform = event.platform.as_ref().map(platform_text).transpose()?;
        let data =
            serde_json::to_string(&event.data).map_err(|e| StoreError::Internal(e.to_string()))?;
        tx.prepare_cached(
            "INSERT INTO outbox (card, sequence, kind, platform, at, data, delivered, next_attempt)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?5)",
        )
        .and_then(|mut s| {
            s.execute(params![
                event.card,
                sequence,
                event.kind.code(),
                platform,
                encode_instant(event.at),
                data,
                event.platform.is_none(),
            ])
        })
        .map_err(se)?;
    }
    Ok(())
}

const COLUMNS: &str =
    "id, card, sequence, kind, platform, at, data, attempts, next_attempt, last_error, dead";

fn read_delivery(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    let id: i64 = r.get(0)?;
    let sequence: i64 = r.get(2)?;
    let kind: String = r.get(3)?;
    let kind = EventKind::from_code(&kind)
        .ok_or_else(|| corrupt(3, format!("unknown event kind {kind:?}")))?;
    let platform = r
        .get::<_, Option<String>>(4)?
        .map(|p| serde_json::from_str::<Platform>(&p))
        .transpose()
        .map_err(|e| corrupt(4, e))?;
    let at = decode_instant(r.get(5)?).map_err(|e| corrupt(5, e))?;
    let data = serde_json::from_str(&r.get::<_, String>(6)?).map_err(|e| corrupt(6, e))?;
    let attempts: i64 = r.get(7)?;
    let next_attempt = decode_instant(r.get(8)?).map_err(|e| corrupt(8, e))?;
    Ok(Delivery {
        event: OutboxEvent {
            id: u64::try_from(id).unwrap_or_default(),
            sequence: u64::try_from(sequence).unwrap_or_default(),
            event: NewEvent {
                kind,
                card: r.get(1)?,
                platform,
                at,
                data,
            },
        },
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_attempt,
        last_error: r.get(9)?,
        dead: r.get(10)?,
    })
}

/// The outbox in the citycard database, as the relay reads it.
#[derive(Debug, Clone)]
pub struct SqliteOutbox {
    db: Database,
}

impl SqliteOutbox {
    /// The outbox on an open database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    fn select(
        &self,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Delivery>, StoreError> {
        self.db.read(|c| {
            let mut stmt = c.prepare_cached(&format!("SELECT {COLUMNS} FROM outbox {filter}"))?;
            let rows = stmt.query_map(args, read_delivery)?;
            rows.collect()
        })
    }

    fn write(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<usize>,
    ) -> Result<usize, StoreError> {
        self.db.transaction(|tx| f(tx).map_err(se))
    }
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl Outbox for SqliteOutbox {
    async fn unpublished(&self, n: usize) -> Result<Vec<OutboxEvent>, StoreError> {
        Ok(self
            .select("WHERE published = 0 ORDER BY id LIMIT ?1", &[&limit(n)])?
            .into_iter()
            .map(|d| d.event)
            .collect())
    }

    async fn mark_published(&self, ids: &[u64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut stmt = tx.prepare_cached("UPDATE outbox SET published = 1 WHERE id = ?1")?;
            let mut n = 0;
            for id in ids {
                n += stmt.execute([i64::try_from(*id).unwrap_or(i64::MAX)])?;
            }
            Ok(n)
        })?;
        Ok(())
    }

    async fn undelivered(&self, n: usize) -> Result<Vec<Delivery>, StoreError> {
        self.select(
            "WHERE delivered = 0 AND dead = 0 ORDER BY id LIMIT ?1",
            &[&limit(n)],
        )
    }

    async fn mark_delivered(&self, ids: &[u64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut stmt = tx.prepare_cached("UPDATE outbox SET delivered = 1 WHERE id = ?1")?;
            let mut n = 0;
            for id in ids {
                n += stmt.execute([i64::try_from(*id).unwrap_or(i64::MAX)])?;
            }
            Ok(n)
        })?;
        Ok(())
    }

    async fn mark_failed(
        &self,
        id: u64,
        next_attempt: DateTime<Utc>,
        error: &str,
        dead: bool,
    ) -> Result<(), StoreError> {
        let id = i64::try_from(id).unwrap_or(i64::MAX);
        self.write(|tx| {
            tx.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt = ?2, last_error = ?3, dead = ?4
                 WHERE id = ?1",
                params![id, encode_instant(next_attempt), error, dead],
            )
        })?;
        Ok(())
    }

    async fn dead_letters(&self, platform: Option<&Platform>) -> Result<Vec<Delivery>, StoreError> {
        let platform = platform.map(platform_text).transpose()?;
        self.select(
            "WHERE dead = 1 AND (?1 IS NULL OR platform = ?1) ORDER BY id",
            &[&platform],
        )
    }

    async fn replay(&self, id: u64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let id = i64::try_from(id).unwrap_or(i64::MAX);
        let n = self.write(|tx| {
            tx.execute(
                "UPDATE outbox SET dead = 0, attempts = 0, next_attempt = ?2 WHERE id = ?1 AND dead = 1",
                params![id, encode_instant(now)],
            )
        })?;
        Ok(n == 1)
    }
}
