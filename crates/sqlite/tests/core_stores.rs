//! The core conformance suites run against the SQLite stores.
use citycard_sqlite::{Database, SqliteAuditLog, SqliteIdempotencyStore};
use citycard_testkit::{audit_log_conformance, idempotency_store_conformance};

async fn idempotency_store() -> SqliteIdempotencyStore {
    SqliteIdempotencyStore::new(Database::open_in_memory().expect("in-memory database opens"))
}

async fn audit_log() -> SqliteAuditLog {
    SqliteAuditLog::new(Database::open_in_memory().expect("in-memory database opens"))
}

fn handle(store: &SqliteIdempotencyStore, owner: &str) -> SqliteIdempotencyStore {
    store.handle(owner)
}

idempotency_store_conformance!(idempotency_store, handle);
audit_log_conformance!(audit_log);
