//! The storage conformance suites run against the in-memory stores.
use citycard_binding::{MemoryBindingStore, MemoryCardStore, MemoryDelegationStore};
use citycard_testkit::{
    binding_store_conformance, card_store_conformance, delegation_store_conformance,
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

card_store_conformance!(card_store);
binding_store_conformance!(binding_store);
delegation_store_conformance!(delegation_store);
