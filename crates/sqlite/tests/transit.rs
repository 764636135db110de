//! The transit conformance suite against the SQLite store.
#![cfg(feature = "transit")]
use citycard_sqlite::Database;
use citycard_sqlite::transit::SqliteTransitStore;
use citycard_testkit::transit_store_conformance;

async fn transit_store() -> SqliteTransitStore {
    SqliteTransitStore::new(Database::open_in_memory().expect("in-memory database opens"))
}

transit_store_conformance!(transit_store);

#[tokio::test]
async fn trips_survive_reopening_the_file() {
    use citycard_core::Money;
    use citycard_transit::{CardRef, SettledTrip, TransitStore, TripCompleteness, TripPayment};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("transit.db");
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 26).expect("date");
    let trip = SettledTrip {
        id: "trip-x".parse().expect("id"),
        card: CardRef(u64::MAX),
        day,
        started_at: chrono::DateTime::from_timestamp(1_790_000_000, 0).expect("time"),
        operator: "hz_bus".into(),
        base: Money::from_fen(200),
        amount: Money::from_fen(180),
        completeness: TripCompleteness::Complete,
        payment: TripPayment::Charged,
    };
    {
        let store = SqliteTransitStore::new(Database::open(&path).expect("open"));
        assert_eq!(
            store
                .record_trips(std::slice::from_ref(&trip))
                .await
                .expect("record"),
            1
        );
    }
    let store = SqliteTransitStore::new(Database::open(&path).expect("reopen"));
    assert_eq!(
        store.trips(CardRef(u64::MAX), day).await.expect("read"),
        vec![trip]
    );
}

/// Trips stored by schema v3 (ids as text, days as text) read back the same
/// after the v4 upgrade, whether their id is the settlement's own form
/// (stored as an integer afterwards) or any other; a re-settlement sees them
/// as settled.
#[tokio::test]
async fn v3_trips_read_back_after_the_upgrade() {
    use chrono::{DateTime, NaiveDate};
    use citycard_core::Money;
    use citycard_sqlite::db::{Connection, migrate};
    use citycard_transit::{CardRef, SettledTrip, TransitStore, TripCompleteness, TripPayment};

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("citycard.db");
    let day = NaiveDate::from_ymd_opt(2026, 11, 26).expect("date");
    let trip = |card: u64, id: String, secs: i64, completeness, payment| SettledTrip {
        id: id.parse().expect("id"),
        card: CardRef(card),
        day,
        started_at: DateTime::from_timestamp(secs, 0).expect("time"),
        operator: "hz_metro".into(),
        base: Money::from_fen(400),
        amount: Money::from_fen(360),
        completeness,
        payment,
    };
    let own =
        |card: u64, secs: i64, n: u32| format!("trip-{}-{}-{n}", CardRef(card), secs * 1_000_000);
    let trips = vec![
        trip(
            u64::MAX,
            own(u64::MAX, 1_795_650_000, 0),
            1_795_650_000,
            TripCompleteness::Complete,
            TripPayment::Charged,
        ),
        trip(
            u64::MAX,
            own(u64::MAX, 1_795_650_000, 1),
            1_795_650_000,
            TripCompleteness::MissingTapOut,
            TripPayment::Free,
        ),
        trip(
            7,
            own(7, 1_795_660_000, 3),
            1_795_660_000,
            TripCompleteness::MissingTapIn,
            TripPayment::Arrears,
        ),
        // Not the settlement's form: a different start, and free text.
        trip(
            7,
            own(7, 1_795_660_001, 0),
            1_795_670_000,
            TripCompleteness::Complete,
            TripPayment::Charged,
        ),
        trip(
            7,
            "12345".into(),
            1_795_680_000,
            TripCompleteness::Complete,
            TripPayment::Charged,
        ),
        trip(
            7,
            "trip-x".into(),
            1_795_690_000,
            TripCompleteness::Complete,
            TripPayment::Charged,
        ),
    ];
    {
        let mut conn = Connection::open(&path).expect("file");
        conn.execute_batch("PRAGMA application_id = 1128485444;")
            .expect("id");
        let v3: Vec<_> = citycard_sqlite::all_migrations()
            .into_iter()
            .filter(|m| m.component != "transit" || m.version <= 3)
            .collect();
        migrate(&mut conn, &v3).expect("v3 schema");
        for t in &trips {
            conn.execute(
                "INSERT INTO transit_trips (card, day, id, started_at, operator, base_fen,
                    amount_fen, completeness, payment) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                rusqlite::params![
                    i64::from_ne_bytes(t.card.0.to_ne_bytes()),
                    t.day.format("%Y-%m-%d").to_string(),
                    t.id.as_str(),
                    t.started_at.timestamp_micros(),
                    t.operator,
                    t.base.fen(),
                    t.amount.fen(),
                    t.completeness.code(),
                    t.payment.code()
                ],
            )
            .expect("v3 row");
        }
    }
    let store = SqliteTransitStore::new(Database::open(&path).expect("v3 file migrates"));
    for card in [CardRef(u64::MAX), CardRef(7)] {
        let mut expected: Vec<_> = trips.iter().filter(|t| t.card == card).cloned().collect();
        expected.sort_by(|a, b| (a.started_at, a.id.as_str()).cmp(&(b.started_at, b.id.as_str())));
        assert_eq!(store.trips(card, day).await.expect("read"), expected);
        let stored = store.prefetch(&[card], day).await.expect("prefetch");
        for t in &expected {
            assert!(stored.settled.contains(&t.id), "{} is settled", t.id);
        }
        // Recording them again adds nothing.
        assert_eq!(store.record_trips(&expected).await.expect("again"), 0);
    }
    assert_eq!(
        store
            .month_spend_before(CardRef(7), day.succ_opt().expect("next day"))
            .await
            .expect("spend"),
        Money::from_fen(360 * 4)
    );
}
