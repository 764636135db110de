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
