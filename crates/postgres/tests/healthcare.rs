//! The healthcare conformance suites run against the PostgreSQL stores.
use std::sync::Arc;

use citycard_postgres::healthcare::{
    PgAppointmentStore, PgSettlementStore, PgSocialInsuranceRecords,
};
use citycard_postgres::testing::{fresh_database, server_available};
use citycard_postgres::{Database, PgAuditLog, PgIdempotencyStore};
use citycard_testkit::healthcare::CoreView;
use citycard_testkit::{
    appointment_store_conformance, settlement_store_conformance,
    social_insurance_records_conformance,
};

fn core_view(db: &Database) -> CoreView {
    CoreView {
        audit: Arc::new(PgAuditLog::new(db.clone())),
        idempotency: Arc::new(PgIdempotencyStore::new(db.clone())),
    }
}

async fn appointment_store() -> (PgAppointmentStore, CoreView) {
    let db = fresh_database().await;
    (PgAppointmentStore::new(db.clone()), core_view(&db))
}

async fn social_records() -> PgSocialInsuranceRecords {
    PgSocialInsuranceRecords::new(fresh_database().await)
}

async fn settlement_store() -> (PgSettlementStore, CoreView) {
    let db = fresh_database().await;
    (PgSettlementStore::new(db.clone()), core_view(&db))
}

appointment_store_conformance!(appointment_store, available = server_available);
social_insurance_records_conformance!(social_records, available = server_available);
settlement_store_conformance!(settlement_store, available = server_available);
