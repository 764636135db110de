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
