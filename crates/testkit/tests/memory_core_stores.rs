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

async fn outbox() -> (
    impl Fn(citycard_core::CoreChanges) -> std::future::Ready<Result<(), citycard_core::StoreError>>,
    std::sync::Arc<dyn citycard_core::Outbox>,
) {
    let core = citycard_core::MemoryCore::new();
    let outbox: std::sync::Arc<dyn citycard_core::Outbox> = core.outbox();
    (
        move |changes: citycard_core::CoreChanges| std::future::ready(core.commit(&changes)),
        outbox,
    )
}

citycard_testkit::outbox_conformance!(outbox);
