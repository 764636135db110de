//! The settlement store conformance suite on the memory store.
use citycard_healthcare::MemorySettlementStore;
use citycard_testkit::settlement_store_conformance;

async fn store() -> MemorySettlementStore {
    MemorySettlementStore::new()
}

settlement_store_conformance!(store);
