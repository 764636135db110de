//! The core conformance suites run against the SQLite stores.
use citycard_sqlite::{Database, SqliteAuditLog, SqliteIdempotencyStore};
use citycard_testkit::{audit_log_conformance, idempotency_store_conformance};

async fn idempotency_store() -> SqliteIdempotencyStore {
    SqliteIdempotencyStore::new(Database::open_in_memory().expect("in-memory database opens"))
}

async fn audit_log() -> SqliteAuditLog {
    SqliteAuditLog::new(Database::open_in_memory().expect("in-memory database opens"))
}

fn handle(store: &SqliteIdempotencyStore, owner: &str) -> SqliteIdempotencyStore {
    store.handle(owner)
}

idempotency_store_conformance!(idempotency_store, handle);
audit_log_conformance!(audit_log);

/// A claim left in progress by a schema-1 database (no owner, no lease) counts
/// as expired after the upgrade: the next identical claim takes it over.
#[tokio::test]
async fn an_in_progress_claim_from_schema_1_is_taken_over_after_the_upgrade() {
    use citycard_core::{Claim, Fingerprint, IdempotencyKey, IdempotencyStore};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("citycard.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("opens");
        let v1 = citycard_sqlite::all_migrations()
            .into_iter()
            .find(|m| m.component == "core" && m.version == 1)
            .expect("core v1");
        conn.execute_batch(v1.sql).expect("v1 schema");
        conn.execute_batch(&format!(
            "PRAGMA application_id = {};
             CREATE TABLE citycard_schema (component TEXT PRIMARY KEY, version INTEGER NOT NULL, applied_at INTEGER NOT NULL);
             INSERT INTO citycard_schema VALUES ('core', 1, 0);",
            citycard_sqlite::APPLICATION_ID
        ))
        .expect("v1 bookkeeping");
        conn.execute(
            "INSERT INTO idempotency_records (scope, key, fingerprint, state, created_at)
             VALUES ('transit.fare', 'trip-1', ?1, 'in_progress', 0)",
            [Fingerprint::of_bytes(b"fare").to_hex()],
        )
        .expect("a stuck v1 claim");
    }
    let db = Database::open(&path).expect("upgrades");
    assert!(
        db.schema_versions()
            .expect("versions")
            .contains(&("core".to_owned(), 2))
    );
    let store = SqliteIdempotencyStore::new(db);
    let key = IdempotencyKey::parse("trip-1").expect("key");
    let open = store.in_progress(10).await.expect("lists");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].owner, "");
    assert_eq!(open[0].lease_until, None);
    let now = chrono::DateTime::from_timestamp(1_790_000_000, 0).expect("instant");
    assert!(open[0].is_expired(now));
    assert!(matches!(
        store
            .claim("transit.fare", &key, &Fingerprint::of_bytes(b"fare"), now)
            .await
            .expect("claims"),
        Claim::TakenOver { .. }
    ));
}

async fn outbox() -> (
    impl Fn(citycard_core::CoreChanges) -> std::future::Ready<Result<(), citycard_core::StoreError>>,
    std::sync::Arc<dyn citycard_core::Outbox>,
) {
    let db = Database::open_in_memory().expect("in-memory database opens");
    let outbox = std::sync::Arc::new(citycard_sqlite::outbox::SqliteOutbox::new(db.clone()));
    let commit = move |changes: citycard_core::CoreChanges| {
        std::future::ready(db.transaction(|tx| citycard_sqlite::write_core_changes(tx, &changes)))
    };
    (commit, outbox)
}

citycard_testkit::outbox_conformance!(outbox);
