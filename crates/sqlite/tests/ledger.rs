//! The ledger store conformance suite run against SQLite.
use citycard_sqlite::Database;
use citycard_sqlite::ledger::SqliteLedgerStore;
use citycard_testkit::ledger_store_conformance;

async fn ledger_store() -> SqliteLedgerStore {
    SqliteLedgerStore::new(Database::open_in_memory().expect("in-memory database opens"))
}

ledger_store_conformance!(ledger_store);
