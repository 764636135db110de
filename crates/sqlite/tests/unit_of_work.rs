//! The unit-of-work plumbing: core records commit with the caller's rows in
//! one transaction, commits are counted, and readers see committed state.

use citycard_core::{
    AuditLog, AuditOutcome, AuditQuery, AuditRecord, CoreChanges, Fingerprint, IdempotencyKey,
    IdempotencyStore, KeyOutcome, Principal, StoreError,
};
use citycard_sqlite::{Database, SqliteAuditLog, SqliteIdempotencyStore, write_core_changes};

fn changes(key: &str, subject: &str) -> CoreChanges {
    let at = chrono::Utc::now();
    let key: IdempotencyKey = key.parse().unwrap();
    let fingerprint = Fingerprint::of(&subject).unwrap();
    CoreChanges {
        audit: vec![AuditRecord::new(
            at,
            Principal::System,
            "test.op",
            subject,
            AuditOutcome::Succeeded,
        )],
        outcomes: vec![KeyOutcome::new("test.op", key, fingerprint, &subject, at).unwrap()],
        events: Vec::new(),
    }
}

#[tokio::test]
async fn core_changes_commit_once_and_a_second_outcome_for_the_key_refuses_the_whole_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("c.db")).unwrap();
    let before = db.commits();
    db.transaction(|tx| write_core_changes(tx, &changes("k-1", "card:1")))
        .unwrap();
    assert_eq!(
        db.commits() - before,
        1,
        "one operation, one write transaction"
    );

    // The same key again: refused as a conflict, and its audit record is not kept.
    let again = db.transaction(|tx| write_core_changes(tx, &changes("k-1", "card:2")));
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let audit = SqliteAuditLog::new(db.clone());
    assert_eq!(
        audit
            .query(&AuditQuery::subject("card:2"))
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        audit
            .query(&AuditQuery::subject("card:1"))
            .await
            .unwrap()
            .len(),
        1
    );

    let idem = SqliteIdempotencyStore::new(db.clone());
    let record = idem
        .get("test.op", &"k-1".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.outcome.as_deref(), Some("\"card:1\""));
}

#[tokio::test]
async fn reads_do_not_count_as_commits_and_readers_see_committed_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("r.db")).unwrap();
    db.transaction(|tx| write_core_changes(tx, &changes("k-2", "card:3")))
        .unwrap();
    let before = db.commits();
    let n: i64 = db
        .read(|c| c.query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0)))
        .unwrap();
    assert_eq!(n, 1);
    let audit = SqliteAuditLog::new(db.clone());
    audit.query(&AuditQuery::all()).await.unwrap();
    assert_eq!(db.commits(), before, "reading commits nothing");
    // A reader refuses writes.
    assert!(
        db.read(|c| c.execute("DELETE FROM idempotency_records", []))
            .is_err()
    );
}
