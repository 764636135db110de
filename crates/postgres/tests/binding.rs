//! The binding conformance suites run against the PostgreSQL stores.
use std::sync::Arc;

use citycard_postgres::binding::{
    PgBindingStore, PgCardChangeStore, PgCardStore, PgDelegationStore,
};
use citycard_postgres::testing::{fresh_database, server_available};
use citycard_postgres::{PgAuditLog, PgIdempotencyStore};
use citycard_testkit::binding::CardRegistryUnderTest;
use citycard_testkit::{
    binding_store_conformance, card_change_store_conformance, card_store_conformance,
    delegation_store_conformance,
};

async fn card_store() -> PgCardStore {
    PgCardStore::new(fresh_database().await)
}

async fn binding_store() -> PgBindingStore {
    PgBindingStore::new(fresh_database().await)
}

async fn delegation_store() -> PgDelegationStore {
    PgDelegationStore::new(fresh_database().await)
}

async fn registry() -> CardRegistryUnderTest {
    let db = fresh_database().await;
    CardRegistryUnderTest {
        changes: Arc::new(PgCardChangeStore::new(db.clone())),
        cards: Arc::new(PgCardStore::new(db.clone())),
        bindings: Arc::new(PgBindingStore::new(db.clone())),
        delegations: Arc::new(PgDelegationStore::new(db.clone())),
        audit: Arc::new(PgAuditLog::new(db.clone())),
        idempotency: Arc::new(PgIdempotencyStore::new(db)),
    }
}

card_store_conformance!(card_store, available = server_available);
binding_store_conformance!(binding_store, available = server_available);
delegation_store_conformance!(delegation_store, available = server_available);
card_change_store_conformance!(registry, available = server_available);
