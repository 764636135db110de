//! The transit conformance suite against the PostgreSQL store.
use citycard_postgres::testing::{fresh_database, server_available};
use citycard_postgres::transit::PgTransitStore;
use citycard_testkit::transit_store_conformance;

async fn transit_store() -> PgTransitStore {
    PgTransitStore::new(fresh_database().await)
}

transit_store_conformance!(transit_store, available = server_available);
