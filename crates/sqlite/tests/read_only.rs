//! Opening a database for reading only: nothing is created, migrated or changed.

use citycard_core::{AuditLog, AuditOutcome, AuditQuery, AuditRecord, Principal};
use citycard_sqlite::{Database, SqliteAuditLog, SqliteError};

fn record(n: i64) -> AuditRecord {
    AuditRecord::new(
        chrono::DateTime::from_timestamp(1_790_000_000 + n, 0).expect("valid instant"),
        Principal::System,
        "test.write",
        format!("thing:{n}"),
        AuditOutcome::Succeeded,
    )
}

fn read_only(path: &std::path::Path) {
    let mut perms = std::fs::metadata(path).expect("metadata").permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(path, perms).expect("chmod");
}

#[tokio::test]
async fn a_read_only_file_is_read_and_left_byte_for_byte_unchanged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("city.db");
    {
        let db = Database::open(&path).expect("creates");
        SqliteAuditLog::new(db)
            .append(record(1))
            .await
            .expect("appends");
    }
    read_only(&path);
    let before = std::fs::read(&path).expect("read");
    {
        let db = Database::open_read_only(&path).expect("opens read-only");
        let entries = SqliteAuditLog::new(db.clone())
            .query(&AuditQuery::all())
            .await
            .expect("reads");
        assert_eq!(entries.len(), 1);
        // Writes are refused, not silently done.
        let write = SqliteAuditLog::new(db).append(record(2)).await;
        assert!(write.is_err(), "{write:?}");
    }
    assert!(
        std::fs::read(&path).expect("read") == before,
        "file unchanged"
    );
    let wal = dir.path().join("city.db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(0, |m| m.len()) == 0,
        "nothing written to the WAL"
    );
}

#[test]
fn an_empty_file_is_not_a_citycard_database_and_stays_empty() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("citycard.db");
    std::fs::write(&path, b"").expect("write");
    let err = Database::open_read_only(&path).expect_err("refused");
    assert!(matches!(err, SqliteError::NotCitycard { .. }), "{err:?}");
    assert!(
        err.to_string().contains("is not a citycard database"),
        "{err}"
    );
    assert_eq!(std::fs::metadata(&path).expect("metadata").len(), 0);
}

#[test]
fn a_missing_file_is_not_created() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("citycard.db");
    let err = Database::open_read_only(&path).expect_err("refused");
    assert!(matches!(err, SqliteError::Open { .. }), "{err:?}");
    assert!(!path.exists());
}

#[test]
fn a_foreign_file_or_database_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = dir.path().join("notes.db");
    std::fs::write(&text, b"this is not a database, just some text").expect("write");
    let err = Database::open_read_only(&text).expect_err("refused");
    assert!(matches!(err, SqliteError::NotCitycard { .. }), "{err:?}");

    let other = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&other).expect("open");
        conn.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
            .expect("create");
    }
    let before = std::fs::read(&other).expect("read");
    let err = Database::open_read_only(&other).expect_err("refused");
    assert!(matches!(err, SqliteError::NotCitycard { .. }), "{err:?}");
    assert!(std::fs::read(&other).expect("read") == before);
}

#[test]
fn a_schema_too_old_or_too_new_is_refused_clearly_without_migrating() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("city.db");
    drop(Database::open(&path).expect("creates"));
    let set = |version: u32| {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute(
            "UPDATE citycard_schema SET version = ?1 WHERE component = 'core'",
            [version],
        )
        .expect("update");
    };
    let current: u32 = {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.query_row(
            "SELECT version FROM citycard_schema WHERE component = 'core'",
            [],
            |r| r.get(0),
        )
        .expect("version")
    };
    set(current + 1);
    let err = Database::open_read_only(&path).expect_err("too new");
    assert!(matches!(err, SqliteError::SchemaTooNew { .. }), "{err:?}");
    assert!(err.to_string().contains("upgrade citycard"), "{err}");

    set(0);
    let before = std::fs::read(&path).expect("read");
    let err = Database::open_read_only(&path).expect_err("too old");
    assert!(matches!(err, SqliteError::SchemaTooOld { .. }), "{err:?}");
    assert!(
        err.to_string().contains("older than this program reads"),
        "{err}"
    );
    assert!(
        std::fs::read(&path).expect("read") == before,
        "not migrated"
    );
}
