//! Tests against a real server: where its URL comes from, and a fresh
//! schema per test so tests run in parallel on one server.
//!
//! `.ci/run` starts a private PostgreSQL and exports
//! `CITYCARD_TEST_POSTGRES=postgres://postgres@127.0.0.1:PORT/postgres`.
//! Without it a test prints `skipped: no PostgreSQL (set CITYCARD_TEST_POSTGRES)`
//! and passes, except in CI (`CI=true`), where a missing server fails the test.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Executor;
use sqlx::postgres::PgConnectOptions;

use crate::db::{Database, PoolSettings, connect_once};

/// The environment variable holding the test server's URL.
pub const URL_VAR: &str = "CITYCARD_TEST_POSTGRES";

/// The test server's URL, if one is configured.
pub fn server_url() -> Option<String> {
    std::env::var(URL_VAR).ok().filter(|u| !u.trim().is_empty())
}

/// Whether a test server is configured. Without one: in CI this panics (a
/// missing server is a failure there, never a silent skip); elsewhere it
/// prints why the test is skipped and answers `false`.
pub fn server_available() -> bool {
    if server_url().is_some() {
        return true;
    }
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !in_ci,
        "no PostgreSQL in CI: .ci/run must start one and export {URL_VAR}"
    );
    println!("skipped: no PostgreSQL (set {URL_VAR})");
    false
}

/// A schema name no other test uses: the process id, a counter and the clock.
fn unique_schema() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "t_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// Creates an empty schema on the test server and returns its name.
///
/// Panics without a server: call it only after [`server_available`].
pub async fn fresh_schema() -> String {
    let url = server_url().expect("a test server (check server_available first)");
    let schema = unique_schema();
    let mut conn = connect_once(&url)
        .await
        .expect("the test server accepts connections");
    conn.execute(format!("CREATE SCHEMA {schema}").as_str())
        .await
        .expect("creates a schema");
    schema
}

/// Options for the test server with `schema` as the search path.
pub fn options_in(schema: &str) -> PgConnectOptions {
    let url = server_url().expect("a test server (check server_available first)");
    PgConnectOptions::from_str(&url)
        .expect("the test URL parses")
        .options([("search_path", schema)])
}

/// Connects to `schema` on the test server (another app instance when
/// called twice: separate pools).
pub async fn connect_to(schema: &str) -> Database {
    Database::connect_with(
        options_in(schema),
        PoolSettings {
            max_connections: 4,
            ..PoolSettings::default()
        },
    )
    .await
    .expect("connects and migrates")
}

/// A migrated, empty citycard database in a schema of its own.
pub async fn fresh_database() -> Database {
    connect_to(&fresh_schema().await).await
}
