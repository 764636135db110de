//! The storage conformance suites run against the in-memory stores.
use std::sync::Arc;

use citycard_binding::{
    MemoryBindingStore, MemoryCardRegistry, MemoryCardStore, MemoryDelegationStore,
};
use citycard_testkit::binding::CardRegistryUnderTest;
use citycard_testkit::{
    binding_store_conformance, card_change_store_conformance, card_store_conformance,
    delegation_store_conformance,
};

async fn card_store() -> MemoryCardStore {
    MemoryCardStore::new()
}

async fn binding_store() -> MemoryBindingStore {
    MemoryBindingStore::new()
}

async fn delegation_store() -> MemoryDelegationStore {
    MemoryDelegationStore::new()
}

async fn registry() -> CardRegistryUnderTest {
    let registry = MemoryCardRegistry::new();
    CardRegistryUnderTest {
        cards: Arc::new(registry.cards()),
        bindings: Arc::new(registry.bindings()),
        delegations: Arc::new(registry.delegations()),
        audit: registry.core().audit(),
        idempotency: registry.core().idempotency(),
        changes: Arc::new(registry),
    }
}

card_store_conformance!(card_store);
binding_store_conformance!(binding_store);
delegation_store_conformance!(delegation_store);
card_change_store_conformance!(registry);
