//! Opening, migrating and refusing database files.

use citycard_core::{AuditLog, AuditOutcome, AuditQuery, AuditRecord, Principal};
use citycard_sqlite::db::migrate;
use citycard_sqlite::{APPLICATION_ID, Database, Migration, SqliteAuditLog, SqliteError};

fn record(n: i64) -> AuditRecord {
    AuditRecord::new(
        chrono::DateTime::from_timestamp(1_790_000_000 + n, 0).expect("valid instant"),
        Principal::System,
        "test.write",
        format!("thing:{n}"),
        AuditOutcome::Succeeded,
    )
}

#[tokio::test]
async fn a_file_keeps_its_data_across_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("city.db");
    {
        let db = Database::open(&path).expect("creates");
        SqliteAuditLog::new(db)
            .append(record(1))
            .await
            .expect("appends");
    }
    let db = Database::open(&path).expect("reopens");
    let entries = SqliteAuditLog::new(db.clone())
        .query(&AuditQuery::all())
        .await
        .expect("reads");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].record, record(1));
    let versions = db.schema_versions().expect("versions");
    assert!(
        versions.iter().any(|(c, v)| c == "core" && *v >= 1),
        "{versions:?}"
    );
}

#[test]
fn a_file_uses_wal_full_sync_foreign_keys_and_our_application_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Database::open(dir.path().join("city.db")).expect("creates");
    let conn = db.lock();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("pragma");
    let sync: i64 = conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .expect("pragma");
    let fk: i64 = conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .expect("pragma");
    let app: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(mode, "wal");
    assert_eq!(sync, 2, "synchronous = FULL");
    assert_eq!(fk, 1);
    assert_eq!(app, APPLICATION_ID);
}

#[test]
fn a_text_file_is_not_a_citycard_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notes.txt");
    std::fs::write(
        &path,
        "this is not a database at all, just some words ".repeat(50),
    )
    .expect("writes");
    let err = Database::open(&path).expect_err("refused");
    assert!(matches!(err, SqliteError::NotCitycard { .. }), "{err:?}");
    assert!(err.to_string().contains("is not a citycard database"));
    // Nothing was written over the file.
    assert!(
        std::fs::read_to_string(&path)
            .expect("still text")
            .starts_with("this is not")
    );
}

#[test]
fn another_applications_database_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("other.db");
    {
        let conn = rusqlite_conn(&path);
        conn.execute_batch("CREATE TABLE songs (title TEXT); INSERT INTO songs VALUES ('x');")
            .expect("other app writes");
    }
    let err = Database::open(&path).expect_err("refused");
    assert!(matches!(err, SqliteError::NotCitycard { .. }), "{err:?}");
    let conn = rusqlite_conn(&path);
    let n: i64 = conn
        .query_row("SELECT count(*) FROM songs", [], |r| r.get(0))
        .expect("intact");
    assert_eq!(n, 1);
}

#[test]
fn a_file_from_a_newer_citycard_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("city.db");
    drop(Database::open(&path).expect("creates"));
    {
        let conn = rusqlite_conn(&path);
        conn.execute(
            "UPDATE citycard_schema SET version = 99 WHERE component = 'core'",
            [],
        )
        .expect("bumps");
    }
    let err = Database::open(&path).expect_err("refused");
    match err {
        SqliteError::SchemaTooNew {
            component,
            found,
            supported,
        } => {
            assert_eq!(component, "core");
            assert_eq!(found, 99);
            assert!(supported < 99);
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[test]
fn migrations_run_once_in_order_and_a_failed_one_leaves_the_previous_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = rusqlite_conn(&dir.path().join("m.db"));
    let v1 = Migration {
        component: "demo",
        version: 1,
        sql: "CREATE TABLE t (x INTEGER);",
    };
    let v2 = Migration {
        component: "demo",
        version: 2,
        sql: "ALTER TABLE t ADD COLUMN y INTEGER;",
    };
    let bad = Migration {
        component: "demo",
        version: 3,
        sql: "ALTER TABLE t ADD COLUMN y INTEGER; CREATE TABLE never (z);",
    };
    migrate(&mut conn, &[v2, v1]).expect("applies in version order");
    migrate(&mut conn, &[v1, v2]).expect("second run is a no-op");
    let err = migrate(&mut conn, &[v1, v2, bad]).expect_err("duplicate column fails");
    assert!(
        matches!(err, SqliteError::Migration { version: 3, .. }),
        "{err:?}"
    );
    let version: u32 = conn
        .query_row(
            "SELECT version FROM citycard_schema WHERE component = 'demo'",
            [],
            |r| r.get(0),
        )
        .expect("version");
    assert_eq!(version, 2);
    let never: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'never'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(never, 0, "the failed migration was rolled back whole");
}

#[tokio::test]
async fn the_audit_log_refuses_updates_and_deletes() {
    let db = Database::open_in_memory().expect("opens");
    SqliteAuditLog::new(db.clone())
        .append(record(1))
        .await
        .expect("appends");
    let conn = db.lock();
    let update = conn.execute("UPDATE audit_log SET action = 'forged'", []);
    let delete = conn.execute("DELETE FROM audit_log", []);
    assert!(update.is_err_and(|e| e.to_string().contains("append-only")));
    assert!(delete.is_err_and(|e| e.to_string().contains("append-only")));
}

fn rusqlite_conn(path: &std::path::Path) -> citycard_sqlite::db::Connection {
    citycard_sqlite::db::Connection::open(path).expect("plain sqlite opens")
}
