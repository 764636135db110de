//! The ledger store conformance suite run against the memory store.
use citycard_ledger::MemoryLedgerStore;
use citycard_testkit::ledger_store_conformance;

async fn ledger_store() -> MemoryLedgerStore {
    MemoryLedgerStore::new()
}

ledger_store_conformance!(ledger_store);
