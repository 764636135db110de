//! The core conformance suites run against the PostgreSQL stores.
use citycard_postgres::testing::{fresh_database, server_available};
use citycard_postgres::{PgAuditLog, PgIdempotencyStore};
use citycard_testkit::{audit_log_conformance, idempotency_store_conformance};

async fn idempotency_store() -> PgIdempotencyStore {
    PgIdempotencyStore::new(fresh_database().await)
}

async fn audit_log() -> PgAuditLog {
    PgAuditLog::new(fresh_database().await)
}

fn handle(store: &PgIdempotencyStore, owner: &str) -> PgIdempotencyStore {
    store.handle(owner)
}

idempotency_store_conformance!(idempotency_store, handle, available = server_available);
audit_log_conformance!(audit_log, available = server_available);
