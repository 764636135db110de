//! The ledger store conformance suite run against PostgreSQL.
use citycard_postgres::ledger::PgLedgerStore;
use citycard_postgres::testing::{fresh_database, server_available};
use citycard_testkit::ledger_store_conformance;

async fn ledger_store() -> PgLedgerStore {
    PgLedgerStore::new(fresh_database().await)
}

ledger_store_conformance!(ledger_store, available = server_available);
