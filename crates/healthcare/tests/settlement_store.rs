//! The settlement store conformance suite run against the memory store.
use citycard_core::MemoryCore;
use citycard_healthcare::MemorySettlementStore;
use citycard_testkit::healthcare::CoreView;
use citycard_testkit::settlement_store_conformance;

async fn store() -> (MemorySettlementStore, CoreView) {
    let core = MemoryCore::new();
    (
        MemorySettlementStore::with_core(core.clone()),
        CoreView::memory(&core),
    )
}

settlement_store_conformance!(store);
