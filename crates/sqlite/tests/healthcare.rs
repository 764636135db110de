//! The healthcare conformance suites run against the SQLite stores.
#![cfg(feature = "healthcare")]
use citycard_sqlite::Database;
use citycard_sqlite::healthcare::SqliteAppointmentStore;
use citycard_testkit::appointment_store_conformance;

async fn appointment_store() -> SqliteAppointmentStore {
    SqliteAppointmentStore::new(Database::open_in_memory().expect("in-memory database opens"))
}

appointment_store_conformance!(appointment_store);

async fn social_records() -> citycard_sqlite::healthcare::SqliteSocialInsuranceRecords {
    citycard_sqlite::healthcare::SqliteSocialInsuranceRecords::new(
        Database::open_in_memory().expect("in-memory database opens"),
    )
}

citycard_testkit::social_insurance_records_conformance!(social_records);

async fn settlement_store() -> citycard_sqlite::healthcare::SqliteSettlementStore {
    citycard_sqlite::healthcare::SqliteSettlementStore::new(
        Database::open_in_memory().expect("in-memory database opens"),
    )
}

citycard_testkit::settlement_store_conformance!(settlement_store);

#[tokio::test]
async fn bookings_and_accumulators_survive_reopening_the_file() {
    use citycard_healthcare::appointments::BookingDecision;
    use citycard_healthcare::billing::SettlementStore;
    use citycard_healthcare::{AnnualAccumulators, AppointmentStore};
    use citycard_testkit::healthcare::{booking, no_quota, settlement_record, slot, suite_date};

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("citycard.db");
    let s = slot("slot-1", "dep-1", suite_date(), 2);
    {
        let db = Database::open(&path).expect("opens");
        let store = SqliteAppointmentStore::new(db.clone());
        store.put_slot(&s).await.expect("slot stored");
        let decision = store
            .book(&booking(&s, "apt-1", "psn-1", "k1", no_quota(), false))
            .await
            .expect("booked");
        assert!(matches!(decision, BookingDecision::Booked { .. }));
        let settlements = citycard_sqlite::healthcare::SqliteSettlementStore::new(db);
        let r = settlement_record(
            "stl-1",
            "k-1",
            "psn-1",
            AnnualAccumulators::new(2026),
            50_000,
        );
        settlements.begin(&r).await.expect("begun");
    }
    let db = Database::open(&path).expect("reopens");
    let store = SqliteAppointmentStore::new(db.clone());
    let view = store.slot(&s.id).await.expect("read").expect("slot kept");
    assert_eq!((view.booked, view.issued), (1, 1));
    let settlements = citycard_sqlite::healthcare::SqliteSettlementStore::new(db);
    let acc = settlements
        .accumulators(&"psn-1".parse().expect("id"), 2026)
        .await
        .expect("read");
    assert_eq!(acc.deductible_met, citycard_core::Money::from_fen(30_000));
}
