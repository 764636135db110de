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
    // v4: a settled trip in ≈45 bytes. The day is days since 1970-01-01; a
    // trip id of the settlement's own form `trip-{card}-{boarded µs}-{n}` is
    // the integer `boarded µs << 8 | n` (its start is then left NULL: the id
    // holds it); any other id stays text in the same column. Completeness
    // and payment are small codes (see `completeness_code`, `payment_code`).
    Migration {
        component: "transit",
        version: 4,
        sql: "
        CREATE TABLE transit_trips_v4 (
            card         INTEGER NOT NULL,
            day          INTEGER NOT NULL,
            -- no declared type: integers and text are kept as given
            trip         NOT NULL,
            started_at   INTEGER,
            operator     TEXT NOT NULL,
            base_fen     INTEGER NOT NULL,
            amount_fen   INTEGER NOT NULL,
            completeness INTEGER NOT NULL,
            payment      INTEGER NOT NULL,
            PRIMARY KEY (card, day, trip)
        ) WITHOUT ROWID;
        INSERT INTO transit_trips_v4
            SELECT card,
                CAST(julianday(day) - 2440587.5 AS INTEGER),
                CASE WHEN own THEN (started_at << 8) | CAST(n AS INTEGER) ELSE id END,
                CASE WHEN own THEN NULL ELSE started_at END,
                operator, base_fen, amount_fen,
                CASE completeness WHEN 'complete' THEN 0 WHEN 'missing_tap_out' THEN 1
                    WHEN 'missing_tap_in' THEN 2 END,
                CASE payment WHEN 'charged' THEN 0 WHEN 'free' THEN 1 WHEN 'arrears' THEN 2 END
            FROM (
                SELECT *, substr(id, 1, length(prefix)) = prefix
                        AND n != '' AND n NOT GLOB '*[^0-9]*'
                        AND CAST(n AS INTEGER) || '' = n AND CAST(n AS INTEGER) < 256
                        AND started_at >= 0 AND started_at < (1 << 55) AS own
                FROM (
                    SELECT *, substr(id, length(prefix) + 1) AS n
                    FROM (
                        SELECT *, 'trip-' || printf('cr%016x', card) || '-' || started_at || '-'
                            AS prefix
                        FROM transit_trips
                    )
                )
            );
        DROP TABLE transit_trips;
        ALTER TABLE transit_trips_v4 RENAME TO transit_trips;
    ",
    },
];

/// Days since 1970-01-01 (the trips table's day).
fn day_to_sql(day: NaiveDate) -> i64 {
    i64::from(day.num_days_from_ce()) - i64::from(EPOCH_DAYS_FROM_CE)
}

fn day_from_sql(days: i64) -> Option<NaiveDate> {
    let ce = i32::try_from(days.checked_add(i64::from(EPOCH_DAYS_FROM_CE))?).ok()?;
    NaiveDate::from_num_days_from_ce_opt(ce)
}

/// 1970-01-01 in days from the common era.
const EPOCH_DAYS_FROM_CE: i32 = 719_163;

fn completeness_code(c: TripCompleteness) -> i64 {
    match c {
        TripCompleteness::Complete => 0,
        TripCompleteness::MissingTapOut => 1,
        TripCompleteness::MissingTapIn => 2,
    }
}

fn completeness_from(code: i64) -> Option<TripCompleteness> {
    [
        TripCompleteness::Complete,
        TripCompleteness::MissingTapOut,
        TripCompleteness::MissingTapIn,
    ]
    .into_iter()
    .find(|c| completeness_code(*c) == code)
}

fn payment_code(p: TripPayment) -> i64 {
    match p {
        TripPayment::Charged => 0,
        TripPayment::Free => 1,
        TripPayment::Arrears => 2,
    }
}

fn payment_from(code: i64) -> Option<TripPayment> {
    [
        TripPayment::Charged,
        TripPayment::Free,
        TripPayment::Arrears,
    ]
    .into_iter()
    .find(|p| payment_code(*p) == code)
}

/// A trip id as stored: the settlement's own form as an integer (and no
/// separate start), any other id as text beside its start.
enum StoredTripId<'a> {
    Own(i64),
    Text(&'a str),
}

impl<'a> StoredTripId<'a> {
    fn of(card: CardRef, id: &'a TripId, started_at: i64) -> Self {
        let text = id.as_str();
        let own = (|| {
            let rest = text.strip_prefix("trip-")?;
            let (card_text, rest) = rest.split_once('-')?;
            let (micros, n) = rest.split_once('-')?;
            let n: u8 = n.parse().ok()?;
            let micros: i64 = micros.parse().ok()?;
            (micros == started_at && (0..1 << 55).contains(&micros)).then_some(())?;
            let canonical = format!("trip-{card}-{micros}-{n}");
            (canonical == text && card_text.len() == 18).then_some((micros << 8) | i64::from(n))
        })();
        own.map_or(StoredTripId::Text(text), StoredTripId::Own)
    }
}

/// The trip id back from its stored form.
fn trip_id_from_sql(
    card: CardRef,
    value: rusqlite::types::ValueRef<'_>,
    column: usize,
) -> rusqlite::Result<(TripId, Option<i64>)> {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Integer(v) => {
            let text = format!("trip-{card}-{}-{}", v >> 8, v & 0xff);
            Ok((
                TripId::parse(&text).map_err(|e| corrupt(column, e))?,
                Some(v >> 8),
            ))
        }
        ValueRef::Text(t) => {
            let text = std::str::from_utf8(t).map_err(|e| corrupt(column, e))?;
            Ok((TripId::parse(text).map_err(|e| corrupt(column, e))?, None))
        }
        other => Err(corrupt(
            column,
            format!("bad trip id {:?}", other.data_type()),
        )),
    }
}

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

const TRIP_COLUMNS: &str =
    "card, day, trip, started_at, operator, base_fen, amount_fen, completeness, payment";

fn read_trip(r: &rusqlite::Row<'_>) -> rusqlite::Result<SettledTrip> {
    let card = card_from_sql(r.get(0)?);
    let day: i64 = r.get(1)?;
    let (id, own_start) = trip_id_from_sql(card, r.get_ref(2)?, 2)?;
    let started_at = match own_start {
        Some(micros) => micros,
        None => r
            .get::<_, Option<i64>>(3)?
            .ok_or_else(|| corrupt(3, "no start"))?,
    };
    let completeness: i64 = r.get(7)?;
    let payment: i64 = r.get(8)?;
    Ok(SettledTrip {
        id,
        card,
        day: day_from_sql(day).ok_or_else(|| corrupt(1, format!("day {day} out of range")))?,
        started_at: decode_instant(started_at).map_err(|e| corrupt(3, e))?,
        operator: r.get(4)?,
        base: Money::from_fen(r.get(5)?),
        amount: Money::from_fen(r.get(6)?),
        completeness: completeness_from(completeness)
            .ok_or_else(|| corrupt(7, format!("bad completeness {completeness}")))?,
        payment: payment_from(payment)
            .ok_or_else(|| corrupt(8, format!("bad payment {payment}")))?,
    })
}

/// Inserts trips (a stored id is left as it is); returns how many were new.
fn insert_trips(conn: &rusqlite::Connection, trips: &[SettledTrip]) -> Result<u64, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "INSERT INTO transit_trips ({TRIP_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING"
        ))
        .map_err(|e| crate::to_store_error(&e))?;
    let mut new = 0u64;
    for t in trips {
        let started_at = encode_instant(t.started_at);
        let (trip, start): (rusqlite::types::ToSqlOutput<'_>, Option<i64>) =
            match StoredTripId::of(t.card, &t.id, started_at) {
                StoredTripId::Own(v) => (v.into(), None),
                StoredTripId::Text(text) => (text.into(), Some(started_at)),
            };
        new += stmt
            .execute(params![
                card_to_sql(t.card),
                day_to_sql(t.day),
                trip,
                start,
                t.operator,
                t.base.fen(),
                t.amount.fen(),
                completeness_code(t.completeness),
                payment_code(t.payment)
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
        let first = day_to_sql(day.with_day(1).unwrap_or(day));
        let monday = day_to_sql(
            day - chrono::Duration::days(i64::from(day.weekday().num_days_from_monday())),
        );
        let today = day_to_sql(day);
        self.db.read(|c| {
            let mut out = StoredForChunk::default();
            let mut settled =
                c.prepare_cached("SELECT trip FROM transit_trips WHERE card = ?1 AND day = ?2")?;
            let mut spend = c.prepare_cached(
                "SELECT COALESCE(SUM(amount_fen), 0) FROM transit_trips
                 WHERE card = ?1 AND day >= ?2 AND day < ?3",
            )?;
            for card in cards {
                let card_sql = card_to_sql(*card);
                let mut rows = settled.query(params![card_sql, today])?;
                while let Some(row) = rows.next()? {
                    out.settled
                        .insert(trip_id_from_sql(*card, row.get_ref(0)?, 0)?.0);
                }
                let month: i64 = spend.query_row(params![card_sql, first, today], |r| r.get(0))?;
                let week: i64 = spend.query_row(params![card_sql, monday, today], |r| r.get(0))?;
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
        let mut trips = self.db.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {TRIP_COLUMNS} FROM transit_trips WHERE card = ?1 AND day = ?2"
            ))?;
            let rows = stmt.query_map(params![card_to_sql(card), day_to_sql(day)], read_trip)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        trips.sort_by(|a, b| (a.started_at, a.id.as_str()).cmp(&(b.started_at, b.id.as_str())));
        Ok(trips)
    }

    async fn month_spend_before(&self, card: CardRef, day: NaiveDate) -> Result<Money, StoreError> {
        let first = day.with_day(1).unwrap_or(day);
        let fen: i64 = self.db.read(|c| {
            c.query_row(
                "SELECT COALESCE(SUM(amount_fen), 0) FROM transit_trips
                 WHERE card = ?1 AND day >= ?2 AND day < ?3",
                params![card_to_sql(card), day_to_sql(first), day_to_sql(day)],
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
