//! The identity conformance suites run against the PostgreSQL stores.
use citycard_postgres::identity::{PgPersonStore, PgPlatformAccountStore};
use citycard_postgres::testing::{fresh_database, server_available};
use citycard_testkit::{person_store_conformance, platform_account_store_conformance};

async fn person_store() -> PgPersonStore {
    PgPersonStore::new(fresh_database().await)
}

async fn account_store() -> PgPlatformAccountStore {
    PgPlatformAccountStore::new(fresh_database().await)
}

person_store_conformance!(person_store, available = server_available);
platform_account_store_conformance!(account_store, available = server_available);
