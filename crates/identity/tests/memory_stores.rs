//! The identity conformance suites run against the memory stores.
use citycard_identity::{MemoryPersonStore, MemoryPlatformAccountStore};
use citycard_testkit::{person_store_conformance, platform_account_store_conformance};

async fn person_store() -> MemoryPersonStore {
    MemoryPersonStore::new()
}

async fn account_store() -> MemoryPlatformAccountStore {
    MemoryPlatformAccountStore::new()
}

person_store_conformance!(person_store);
platform_account_store_conformance!(account_store);
