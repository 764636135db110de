//! The transit stores on SQLite: settled trips, arrears and the deny list.

use async_trait::async_trait;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use citycard_core::{Money, StoreError};
use citycard_transit::{
    ArrearsEntry, CardRef, DenyEntry, DenyReason, IssuedCredential, SettledTrip, SpendSoFar,
    StoredForChunk, TransitChanges, TransitStore, TripCompleteness, TripId, TripPayment,
};
use rusqlite::params;

use crate::db::{Database, Migration, corrupt, decode_instant, encode_instant};

/// The schema of the transit component.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        component: "transit",
        version: 1,
        sql: "
        CREATE TABLE transit_trips (
            id           TEXT PRIMARY KEY,
            card         BIGINT NOT NULL,
            day          TEXT NOT NULL,
            started_at   BIGINT NOT NULL,
            operator     TEXT NOT NULL,
            base_fen     BIGINT NOT NULL,
            amount_fen   BIGINT NOT NULL,
            completeness TEXT NOT NULL,
            payment      TEXT NOT NULL
        );
        CREATE INDEX transit_trips_card_day ON transit_trips (card, day, started_at);
        CREATE TABLE transit_arrears (
            card       BIGINT NOT NULL,
            trip       TEXT NOT NULL,
            amount_fen BIGINT NOT NULL,
            at         BIGINT NOT NULL,
            PRIMARY KEY (card, trip)
        );
        CREATE TABLE transit_deny_list (
            card   BIGINT NOT NULL,
            reason TEXT NOT NULL,
            since  BIGINT NOT NULL,
            PRIMARY KEY (card, reason)
        );
    ",
    },
    Migration {
        component: "transit",
        version: 2,
        sql: "
        CREATE TABLE transit_credentials (
            key_id      BIGINT NOT NULL,
            reference   BIGINT NOT NULL,
            valid_from  BIGINT NOT NULL,
            valid_until BIGINT NOT NULL,
            card        BIGINT NOT NULL,
            PRIMARY KEY (key_id, reference, valid_from, valid_until)
        );
        CREATE INDEX transit_credentials_until ON transit_credentials (valid_until);
    ",
    },
    // v3: trips keyed by (card, day, id) without a rowid: one b-tree instead
    // of a table, its id index and its (card, day) index.
    Migration {
        component: "transit",
        version: 3,
        sql: "
        CREATE TABLE transit_trips_v3 (
            card         BIGINT NOT NULL,
            day          TEXT NOT NULL,
            id           TEXT NOT NULL,
            started_at   BIGINT NOT NULL,
            operator     TEXT NOT NULL,
            base_fen     BIGINT NOT NULL,
            amount_fen   BIGINT NOT NULL,
            completeness TEXT NOT NULL,
            payment      TEXT NOT NULL,
            PRIMARY KEY (card, day, id)
        ) WITHOUT ROWID;
        INSERT INTO transit_trips_v3
            SELECT card, day, id, started_at, operator, base_fen, amount_fen, completeness, payment
            FROM transit_trips;
        DROP TABLE transit_trips;
        ALTER TABLE transit_trips_v3 RENAME TO transit_trips;
    ",
    },
];

/// Card references are u64; SQLite integers are i64: store the same 64 bits.
fn card_to_sql(card: CardRef) -> i64 {
    i64::from_ne_bytes(card.0.to_ne_bytes())
}

fn card_from_sql(v: i64) -> CardRef {
    CardRef(u64::from_ne_bytes(v.to_ne_bytes()))
}

fn reason_order(r: DenyReason) -> u8 {
    match r {
        DenyReason::Arrears => 0,
        DenyReason::Lost => 1,
        DenyReason::Revoked => 2,
    }
}

/// The transit store in the citycard database.
#[derive(Debug, Clone)]
pub struct SqliteTransitStore {
    db: Database,
}

impl SqliteTransitStore {
    /// The store on an open database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn read_trip(r: &rusqlite::Row<'_>) -> rusqlite::Result<SettledTrip> {
    let id: String = r.get(0)?;
    let day: String = r.get(2)?;
    let completeness: String = r.get(7)?;
    let payment: String = r.get(8)?;
    Ok(SettledTrip {
        id: TripId::parse(&id).map_err(|e| corrupt(0, e))?,
        card: card_from_sql(r.get(1)?),
        day: NaiveDate::parse_from_str(&day, "%Y-%m-%d").map_err(|e| corrupt(2, e))?,
        started_at: decode_instant(r.get(3)?).map_err(|e| corrupt(3, e))?,
        operator: r.get(4)?,
        base: Money::from_fen(r.get(5)?),
        amount: Money::from_fen(r.get(6)?),
        completeness: TripCompleteness::from_code(&completeness)
            .ok_or_else(|| corrupt(7, format!("bad completeness {completeness:?}")))?,
        payment: TripPayment::from_code(&payment)
            .ok_or_else(|| corrupt(8, format!("bad payment {payment:?}")))?,
    })
}

/// Inserts trips (a stored id is left as it is); returns how many were new.
fn insert_trips(conn: &rusqlite::Connection, trips: &[SettledTrip]) -> Result<u64, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO transit_trips (id, card, day, started_at, operator, base_fen, amount_fen, completeness, payment)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
        )
        .map_err(|e| crate::to_store_error(&e))?;
    let mut new = 0u64;
    let mut day_text = (NaiveDate::MIN, String::new());
    for t in trips {
        if day_text.0 != t.day {
            day_text = (t.day, t.day.format("%Y-%m-%d").to_string());
        }
        new += stmt
            .execute(params![
                t.id.as_str(),
                card_to_sql(t.card),
                day_text.1,
                encode_instant(t.started_at),
                t.operator,
                t.base.fen(),
                t.amount.fen(),
                t.completeness.code(),
                t.payment.code()
            ])
            .map_err(|e| crate::to_store_error(&e))? as u64;
    }
    Ok(new)
}

/// Writes a settlement chunk's (or an arrears payment's) rows inside the
/// caller's transaction; the facade's unit of work commits them with the
/// chunk's ledger batch.
pub fn write_changes(
    tx: &rusqlite::Transaction<'_>,
    changes: &TransitChanges,
) -> Result<(), StoreError> {
    let e = |e: rusqlite::Error| crate::to_store_error(&e);
    insert_trips(tx, &changes.trips)?;
    if !changes.arrears.is_empty() {
        let mut stmt = tx
            .prepare_cached(
                "INSERT INTO transit_arrears (card, trip, amount_fen, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (card, trip) DO NOTHING",
            )
            .map_err(e)?;
        for a in &changes.arrears {
            stmt.execute(params![
                card_to_sql(a.card),
                a.trip.as_str(),
                a.amount.fen(),
                encode_instant(a.at)
            ])
            .map_err(e)?;
        }
    }
    for (card, trip) in &changes.cleared {
        tx.prepare_cached("DELETE FROM transit_arrears WHERE card = ?1 AND trip = ?2")
            .and_then(|mut s| s.execute(params![card_to_sql(*card), trip.as_str()]))
            .map_err(e)?;
    }
    for d in &changes.deny {
        tx.prepare_cached(
            "INSERT INTO transit_deny_list (card, reason, since) VALUES (?1, ?2, ?3)
             ON CONFLICT (card, reason) DO NOTHING",
        )
        .and_then(|mut s| {
            s.execute(params![
                card_to_sql(d.card),
                d.reason.code(),
                encode_instant(d.since)
            ])
        })
        .map_err(e)?;
    }
    for (card, reason) in &changes.allow {
        tx.prepare_cached("DELETE FROM transit_deny_list WHERE card = ?1 AND reason = ?2")
            .and_then(|mut s| s.execute(params![card_to_sql(*card), reason.code()]))
            .map_err(e)?;
    }
    crate::write_core_changes(tx, &changes.core)
}

#[async_trait]
impl TransitStore for SqliteTransitStore {
    async fn commit(&self, changes: &TransitChanges) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.db.transaction(|tx| write_changes(tx, changes))
    }

    async fn prefetch(
        &self,
        cards: &[CardRef],
        day: NaiveDate,
    ) -> Result<StoredForChunk, StoreError> {
        let first = day
            .with_day(1)
            .unwrap_or(day)
            .format("%Y-%m-%d")
            .to_string();
        let monday = (day
            - chrono::Duration::days(i64::from(day.weekday().num_days_from_monday())))
        .format("%Y-%m-%d")
        .to_string();
        let day_text = day.format("%Y-%m-%d").to_string();
        self.db.read(|c| {
            let mut out = StoredForChunk::default();
            let mut settled =
                c.prepare_cached("SELECT id FROM transit_trips WHERE card = ?1 AND day = ?2")?;
            let mut spend = c.prepare_cached(
                "SELECT COALESCE(SUM(amount_fen), 0) FROM transit_trips
                 WHERE card = ?1 AND day >= ?2 AND day < ?3",
            )?;
            for card in cards {
                let card_sql = card_to_sql(*card);
                let mut rows = settled.query(params![card_sql, day_text])?;
                while let Some(row) = rows.next()? {
                    let id: String = row.get(0)?;
                    out.settled
                        .insert(TripId::parse(&id).map_err(|e| corrupt(0, e))?);
                }
                let month: i64 =
                    spend.query_row(params![card_sql, first, day_text], |r| r.get(0))?;
                let week: i64 =
                    spend.query_row(params![card_sql, monday, day_text], |r| r.get(0))?;
                if month != 0 || week != 0 {
                    out.spend.insert(
                        *card,
                        SpendSoFar {
                            day: Money::ZERO,
                            week: Money::from_fen(week),
                            month: Money::from_fen(month),
                        },
                    );
                }
            }
            Ok(out)
        })
    }

    async fn record_trips(&self, trips: &[SettledTrip]) -> Result<u64, StoreError> {
        self.db.transaction(|tx| insert_trips(tx, trips))
    }

    async fn trips(&self, card: CardRef, day: NaiveDate) -> Result<Vec<SettledTrip>, StoreError> {
        self.db.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, card, day, started_at, operator, base_fen, amount_fen, completeness, payment
                 FROM transit_trips WHERE card = ?1 AND day = ?2 ORDER BY started_at, id",
            )?;
            let rows = stmt.query_map(
                params![card_to_sql(card), day.format("%Y-%m-%d").to_string()],
                read_trip,
            )?;
            rows.collect()
        })
    }

    async fn month_spend_before(&self, card: CardRef, day: NaiveDate) -> Result<Money, StoreError> {
        let first = day.with_day(1).unwrap_or(day);
        let fen: i64 = self.db.read(|c| {
            c.query_row(
                "SELECT COALESCE(SUM(amount_fen), 0) FROM transit_trips
                 WHERE card = ?1 AND day >= ?2 AND day < ?3",
                params![
                    card_to_sql(card),
                    first.format("%Y-%m-%d").to_string(),
                    day.format("%Y-%m-%d").to_string()
                ],
                |r| r.get(0),
            )
        })?;
        Ok(Money::from_fen(fen))
    }

    async fn add_arrears(&self, entry: &ArrearsEntry) -> Result<bool, StoreError> {
        let n = self.db.with(|c| {
            c.execute(
                "INSERT INTO transit_arrears (card, trip, amount_fen, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (card, trip) DO NOTHING",
                params![
                    card_to_sql(entry.card),
                    entry.trip.as_str(),
                    entry.amount.fen(),
                    encode_instant(entry.at)
                ],
            )
        })?;
        Ok(n == 1)
    }

    async fn arrears(&self, card: CardRef) -> Result<Vec<ArrearsEntry>, StoreError> {
        self.db.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT trip, amount_fen, at FROM transit_arrears WHERE card = ?1 ORDER BY at, trip",
            )?;
            let rows = stmt.query_map(params![card_to_sql(card)], |r| {
                let trip: String = r.get(0)?;
                Ok(ArrearsEntry {
                    card,
                    trip: TripId::parse(&trip).map_err(|e| corrupt(0, e))?,
                    amount: Money::from_fen(r.get(1)?),
                    at: decode_instant(r.get(2)?).map_err(|e| corrupt(2, e))?,
                })
            })?;
            rows.collect()
        })
    }

    async fn clear_arrears(&self, card: CardRef, trips: &[TripId]) -> Result<Money, StoreError> {
        self.db.transaction(|tx| {
            let mut cleared = 0i64;
            for trip in trips {
                let amount: Option<i64> = tx
                    .query_row(
                        "DELETE FROM transit_arrears WHERE card = ?1 AND trip = ?2 RETURNING amount_fen",
                        params![card_to_sql(card), trip.as_str()],
                        |r| r.get(0),
                    )
                    .map(Some)
                    .or_else(|e| match e {
                        rusqlite::Error::QueryReturnedNoRows => Ok(None),
                        other => Err(other),
                    })
                    .map_err(|e| crate::to_store_error(&e))?;
                cleared += amount.unwrap_or(0);
            }
            Ok(Money::from_fen(cleared))
        })
    }

    async fn deny(&self, entry: &DenyEntry) -> Result<(), StoreError> {
        self.db.with(|c| {
            c.execute(
                "INSERT INTO transit_deny_list (card, reason, since) VALUES (?1, ?2, ?3)
                 ON CONFLICT (card, reason) DO NOTHING",
                params![
                    card_to_sql(entry.card),
                    entry.reason.code(),
                    encode_instant(entry.since)
                ],
            )
        })?;
        Ok(())
    }

    async fn allow(&self, card: CardRef, reason: DenyReason) -> Result<bool, StoreError> {
        let n = self.db.with(|c| {
            c.execute(
                "DELETE FROM transit_deny_list WHERE card = ?1 AND reason = ?2",
                params![card_to_sql(card), reason.code()],
            )
        })?;
        Ok(n == 1)
    }

    async fn deny_list(&self) -> Result<Vec<DenyEntry>, StoreError> {
        let mut list = self.db.read(|c| {
            let mut stmt = c.prepare_cached("SELECT card, reason, since FROM transit_deny_list")?;
            let rows = stmt.query_map([], |r| {
                let reason: String = r.get(1)?;
                Ok(DenyEntry {
                    card: card_from_sql(r.get(0)?),
                    reason: DenyReason::from_code(&reason)
                        .ok_or_else(|| corrupt(1, format!("bad reason {reason:?}")))?,
                    since: decode_instant(r.get(2)?).map_err(|e| corrupt(2, e))?,
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        list.sort_by_key(|e| (e.card, reason_order(e.reason)));
        Ok(list)
    }

    async fn record_credential(&self, credential: &IssuedCredential) -> Result<(), StoreError> {
        self.db.with(|c| {
            c.execute(
                "INSERT INTO transit_credentials (key_id, reference, valid_from, valid_until, card)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (key_id, reference, valid_from, valid_until) DO NOTHING",
                params![
                    i64::from(credential.key_id),
                    card_to_sql(credential.reference),
                    encode_instant(credential.valid_from),
                    encode_instant(credential.valid_until),
                    card_to_sql(credential.card)
                ],
            )
        })?;
        Ok(())
    }

    async fn live_credentials(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Vec<IssuedCredential>, StoreError> {
        let mut list = self.db.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT key_id, reference, valid_from, valid_until, card FROM transit_credentials
                 WHERE valid_until >= ?1 AND valid_from <= ?1",
            )?;
            let rows = stmt.query_map(params![encode_instant(at)], |r| {
                let key_id: i64 = r.get(0)?;
                Ok(IssuedCredential {
                    key_id: u32::try_from(key_id).map_err(|e| corrupt(0, e))?,
                    reference: card_from_sql(r.get(1)?),
                    valid_from: decode_instant(r.get(2)?).map_err(|e| corrupt(2, e))?,
                    valid_until: decode_instant(r.get(3)?).map_err(|e| corrupt(3, e))?,
                    card: card_from_sql(r.get(4)?),
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        list.sort_by_key(|c| (c.card, c.key_id, c.reference, c.valid_from));
        Ok(list)
    }
}
