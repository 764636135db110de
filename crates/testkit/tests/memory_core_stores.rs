//! The core conformance suites run against the in-memory stores.
use citycard_core::{MemoryAuditLog, MemoryIdempotencyStore};
use citycard_testkit::{audit_log_conformance, idempotency_store_conformance};

async fn idempotency_store() -> MemoryIdempotencyStore {
    MemoryIdempotencyStore::new()
}

async fn audit_log() -> MemoryAuditLog {
    MemoryAuditLog::new()
}

fn handle(store: &MemoryIdempotencyStore, owner: &str) -> MemoryIdempotencyStore {
    store.handle(owner)
}

idempotency_store_conformance!(idempotency_store, handle);
audit_log_conformance!(audit_log);
