//! The transit stores on PostgreSQL: settled trips, arrears, the deny list
//! and issued ride-code credentials (the SQLite store's schema v3).
//!
//! A trip is keyed `(card, day, id)`: a settlement run on two instances at
//! once records each trip once (`ON CONFLICT DO NOTHING`), and its fare is a
//! ledger transfer whose id derives from the trip, stored once by the
//! ledger's unique id. Trips of a chunk go in as arrays, one statement.

use async_trait::async_trait;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use citycard_core::{Money, StoreError};
use citycard_transit::{
    ArrearsEntry, CardRef, DenyEntry, DenyReason, IssuedCredential, SettledTrip, SpendSoFar,
    StoredForChunk, TransitChanges, TransitStore, TripCompleteness, TripId, TripPayment,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::db::{
    Database, Isolation, Migration, SqlResult, corrupt, decode_instant, encode_instant,
};
use crate::transaction;

/// The schema of the transit component.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    component: "transit",
    version: 1,
    sql: "
        CREATE TABLE transit_trips (
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
        );
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
}];

/// Stores a card reference bit-for-bit.
fn card_to_sql(card: CardRef) -> i64 {
    i64::from_ne_bytes(card.0.to_ne_bytes())
}

fn card_from_sql(v: i64) -> CardRef {
    CardRef(u64::from_ne_bytes(v.to_ne_bytes()))
}

fn day_text(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

fn reason_order(r: DenyReason) -> u8 {
    match r {
        DenyReason::Arrears => 0,
        DenyReason::Lost => 1,
        DenyReason::Revoked => 2,
    }
}

/// Trips, arrears, the deny list and credentials in the citycard database.
#[derive(Debug, Clone)]
pub struct PgTransitStore {
    db: Database,
}

impl PgTransitStore {
    /// The store on a connected database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn read_trip(r: &PgRow) -> Result<SettledTrip, StoreError> {
    let id: String = r.try_get(0).st()?;
    let day: String = r.try_get(2).st()?;
    let completeness: String = r.try_get(7).st()?;
    let payment: String = r.try_get(8).st()?;
    Ok(SettledTrip {
        id: TripId::parse(&id).map_err(corrupt)?,
        card: card_from_sql(r.try_get(1).st()?),
        day: NaiveDate::parse_from_str(&day, "%Y-%m-%d").map_err(corrupt)?,
        started_at: decode_instant(r.try_get(3).st()?)?,
        operator: r.try_get(4).st()?,
        base: Money::from_fen(r.try_get(5).st()?),
        amount: Money::from_fen(r.try_get(6).st()?),
        completeness: TripCompleteness::from_code(&completeness)
            .ok_or_else(|| corrupt(format!("bad completeness {completeness:?}")))?,
        payment: TripPayment::from_code(&payment)
            .ok_or_else(|| corrupt(format!("bad payment {payment:?}")))?,
    })
}

/// Inserts trips (one statement); a trip already stored is left as it is.
/// Returns how many were new.
async fn insert_trips(c: &mut PgConnection, trips: &[SettledTrip]) -> Result<u64, StoreError> {
    if trips.is_empty() {
        return Ok(0);
    }
    let n = trips.len();
    let (mut id, mut card, mut day, mut started, mut operator) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut base, mut amount, mut completeness, mut payment) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut last_day = (NaiveDate::MIN, String::new());
    for t in trips {
        if last_day.0 != t.day {
            last_day = (t.day, day_text(t.day));
        }
        id.push(t.id.as_str().to_owned());
        card.push(card_to_sql(t.card));
        day.push(last_day.1.clone());
        started.push(encode_instant(t.started_at));
        operator.push(t.operator.clone());
        base.push(t.base.fen());
        amount.push(t.amount.fen());
        completeness.push(t.completeness.code().to_owned());
        payment.push(t.payment.code().to_owned());
    }
    let done = sqlx::query(
        "INSERT INTO transit_trips (id, card, day, started_at, operator, base_fen, amount_fen, completeness, payment)
         SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::text[],
                              $6::bigint[], $7::bigint[], $8::text[], $9::text[])
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(card)
    .bind(day)
    .bind(started)
    .bind(operator)
    .bind(base)
    .bind(amount)
    .bind(completeness)
    .bind(payment)
    .execute(c)
    .await
    .st()?;
    Ok(done.rows_affected())
}

async fn add_arrears(c: &mut PgConnection, entries: &[ArrearsEntry]) -> Result<u64, StoreError> {
    if entries.is_empty() {
        return Ok(0);
    }
    let card: Vec<i64> = entries.iter().map(|a| card_to_sql(a.card)).collect();
    let trip: Vec<String> = entries.iter().map(|a| a.trip.as_str().to_owned()).collect();
    let amount: Vec<i64> = entries.iter().map(|a| a.amount.fen()).collect();
    let at: Vec<i64> = entries.iter().map(|a| encode_instant(a.at)).collect();
    Ok(sqlx::query(
        "INSERT INTO transit_arrears (card, trip, amount_fen, at)
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[])
         ON CONFLICT (card, trip) DO NOTHING",
    )
    .bind(card)
    .bind(trip)
    .bind(amount)
    .bind(at)
    .execute(c)
    .await
    .st()?
    .rows_affected())
}

async fn deny(c: &mut PgConnection, d: &DenyEntry) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO transit_deny_list (card, reason, since) VALUES ($1, $2, $3)
         ON CONFLICT (card, reason) DO NOTHING",
    )
    .bind(card_to_sql(d.card))
    .bind(d.reason.code())
    .bind(encode_instant(d.since))
    .execute(c)
    .await
    .st()?;
    Ok(())
}

async fn allow(c: &mut PgConnection, card: CardRef, reason: DenyReason) -> Result<u64, StoreError> {
    Ok(
        sqlx::query("DELETE FROM transit_deny_list WHERE card = $1 AND reason = $2")
            .bind(card_to_sql(card))
            .bind(reason.code())
            .execute(c)
            .await
            .st()?
            .rows_affected(),
    )
}

/// Writes a settlement chunk's transit rows and core records inside the
/// caller's transaction (the facade's unit of work adds the ledger batch).
pub async fn write_changes(
    tx: &mut PgConnection,
    changes: &TransitChanges,
) -> Result<(), StoreError> {
    insert_trips(tx, &changes.trips).await?;
    add_arrears(tx, &changes.arrears).await?;
    for (card, trip) in &changes.cleared {
        sqlx::query("DELETE FROM transit_arrears WHERE card = $1 AND trip = $2")
            .bind(card_to_sql(*card))
            .bind(trip.as_str())
            .execute(&mut *tx)
            .await
            .st()?;
    }
    for d in &changes.deny {
        deny(tx, d).await?;
    }
    for (card, reason) in &changes.allow {
        allow(tx, *card, *reason).await?;
    }
    crate::write_core_changes(tx, &changes.core).await
}

#[async_trait]
impl TransitStore for PgTransitStore {
    async fn commit(&self, changes: &TransitChanges) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        transaction!(self.db, Isolation::ReadCommitted, |tx| {
            write_changes(&mut tx, changes).await
        })
    }

    async fn prefetch(
        &self,
        cards: &[CardRef],
        day: NaiveDate,
    ) -> Result<StoredForChunk, StoreError> {
        let first = day_text(day.with_day(1).unwrap_or(day));
        let monday =
            day_text(day - chrono::Duration::days(i64::from(day.weekday().num_days_from_monday())));
        let today = day_text(day);
        let keys: Vec<i64> = cards.iter().map(|c| card_to_sql(*c)).collect();
        let mut out = StoredForChunk::default();
        // Two statements for the whole chunk: the day's settled trips, and
        // each card's spend this month and this week before the day.
        let settled: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM transit_trips WHERE card = ANY($1::bigint[]) AND day = $2",
        )
        .bind(&keys)
        .bind(&today)
        .fetch_all(self.db.pool())
        .await
        .st()?;
        for id in settled {
            out.settled.insert(TripId::parse(&id).map_err(corrupt)?);
        }
        let lower = if monday < first { &monday } else { &first };
        let rows = sqlx::query(
            "SELECT card,
                    COALESCE(SUM(amount_fen) FILTER (WHERE day >= $2), 0)::bigint,
                    COALESCE(SUM(amount_fen) FILTER (WHERE day >= $3), 0)::bigint
             FROM transit_trips
             WHERE card = ANY($1::bigint[]) AND day >= $4 AND day < $5
             GROUP BY card",
        )
        .bind(&keys)
        .bind(&first)
        .bind(&monday)
        .bind(lower)
        .bind(&today)
        .fetch_all(self.db.pool())
        .await
        .st()?;
        for r in rows {
            let month: i64 = r.try_get(1).st()?;
            let week: i64 = r.try_get(2).st()?;
            if month != 0 || week != 0 {
                out.spend.insert(
                    card_from_sql(r.try_get(0).st()?),
                    SpendSoFar {
                        day: Money::ZERO,
                        week: Money::from_fen(week),
                        month: Money::from_fen(month),
                    },
                );
            }
        }
        Ok(out)
    }

    async fn record_trips(&self, trips: &[SettledTrip]) -> Result<u64, StoreError> {
        let mut conn = self.db.pool().acquire().await.st()?;
        insert_trips(&mut conn, trips).await
    }

    async fn trips(&self, card: CardRef, day: NaiveDate) -> Result<Vec<SettledTrip>, StoreError> {
        sqlx::query(
            "SELECT id, card, day, started_at, operator, base_fen, amount_fen, completeness, payment
             FROM transit_trips WHERE card = $1 AND day = $2 ORDER BY started_at, id",
        )
        .bind(card_to_sql(card))
        .bind(day_text(day))
        .fetch_all(self.db.pool())
        .await
        .st()?
        .iter()
        .map(read_trip)
        .collect()
    }

    async fn month_spend_before(&self, card: CardRef, day: NaiveDate) -> Result<Money, StoreError> {
        let first = day.with_day(1).unwrap_or(day);
        let fen: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(amount_fen), 0)::bigint FROM transit_trips
             WHERE card = $1 AND day >= $2 AND day < $3",
        )
        .bind(card_to_sql(card))
        .bind(day_text(first))
        .bind(day_text(day))
        .fetch_one(self.db.pool())
        .await
        .st()?;
        Ok(Money::from_fen(fen))
    }

    async fn add_arrears(&self, entry: &ArrearsEntry) -> Result<bool, StoreError> {
        let mut conn = self.db.pool().acquire().await.st()?;
        Ok(add_arrears(&mut conn, std::slice::from_ref(entry)).await? == 1)
    }

    async fn arrears(&self, card: CardRef) -> Result<Vec<ArrearsEntry>, StoreError> {
        sqlx::query(
            "SELECT trip, amount_fen, at FROM transit_arrears WHERE card = $1 ORDER BY at, trip",
        )
        .bind(card_to_sql(card))
        .fetch_all(self.db.pool())
        .await
        .st()?
        .iter()
        .map(|r| {
            let trip: String = r.try_get(0).st()?;
            Ok(ArrearsEntry {
                card,
                trip: TripId::parse(&trip).map_err(corrupt)?,
                amount: Money::from_fen(r.try_get(1).st()?),
                at: decode_instant(r.try_get(2).st()?)?,
            })
        })
        .collect()
    }

    async fn clear_arrears(&self, card: CardRef, trips: &[TripId]) -> Result<Money, StoreError> {
        let trips: Vec<String> = trips.iter().map(|t| t.as_str().to_owned()).collect();
        let cleared: i64 = sqlx::query_scalar(
            "WITH gone AS (DELETE FROM transit_arrears WHERE card = $1 AND trip = ANY($2::text[])
                           RETURNING amount_fen)
             SELECT COALESCE(SUM(amount_fen), 0)::bigint FROM gone",
        )
        .bind(card_to_sql(card))
        .bind(trips)
        .fetch_one(self.db.pool())
        .await
        .st()?;
        Ok(Money::from_fen(cleared))
    }

    async fn deny(&self, entry: &DenyEntry) -> Result<(), StoreError> {
        let mut conn = self.db.pool().acquire().await.st()?;
        deny(&mut conn, entry).await
    }

    async fn allow(&self, card: CardRef, reason: DenyReason) -> Result<bool, StoreError> {
        let mut conn = self.db.pool().acquire().await.st()?;
        Ok(allow(&mut conn, card, reason).await? == 1)
    }

    async fn deny_list(&self) -> Result<Vec<DenyEntry>, StoreError> {
        let mut list = sqlx::query("SELECT card, reason, since FROM transit_deny_list")
            .fetch_all(self.db.pool())
            .await
            .st()?
            .iter()
            .map(|r| {
                let reason: String = r.try_get(1).st()?;
                Ok(DenyEntry {
                    card: card_from_sql(r.try_get(0).st()?),
                    reason: DenyReason::from_code(&reason)
                        .ok_or_else(|| corrupt(format!("bad reason {reason:?}")))?,
                    since: decode_instant(r.try_get(2).st()?)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        list.sort_by_key(|e| (e.card, reason_order(e.reason)));
        Ok(list)
    }

    async fn record_credential(&self, credential: &IssuedCredential) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO transit_credentials (key_id, reference, valid_from, valid_until, card)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (key_id, reference, valid_from, valid_until) DO NOTHING",
        )
        .bind(i64::from(credential.key_id))
        .bind(card_to_sql(credential.reference))
        .bind(encode_instant(credential.valid_from))
        .bind(encode_instant(credential.valid_until))
        .bind(card_to_sql(credential.card))
        .execute(self.db.pool())
        .await
        .st()?;
        Ok(())
    }

    async fn live_credentials(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Vec<IssuedCredential>, StoreError> {
        let mut list = sqlx::query(
            "SELECT key_id, reference, valid_from, valid_until, card FROM transit_credentials
             WHERE valid_until >= $1 AND valid_from <= $1",
        )
        .bind(encode_instant(at))
        .fetch_all(self.db.pool())
        .await
        .st()?
        .iter()
        .map(|r| {
            let key_id: i64 = r.try_get(0).st()?;
            Ok(IssuedCredential {
                key_id: u32::try_from(key_id).map_err(corrupt)?,
                reference: card_from_sql(r.try_get(1).st()?),
                valid_from: decode_instant(r.try_get(2).st()?)?,
                valid_until: decode_instant(r.try_get(3).st()?)?,
                card: card_from_sql(r.try_get(4).st()?),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        list.sort_by_key(|c| (c.card, c.key_id, c.reference, c.valid_from));
        Ok(list)
    }
}
