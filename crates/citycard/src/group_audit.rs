//! Group commit of audit records on the embedded store.
//!
//! The card system audits every read of personal data (a platform reading a
//! binding, a cardholder's statement). On SQLite each append was its own
//! synced write transaction, so reads were bound by the disk's fsync rate.
//! [`GroupCommitAuditLog`] queues the records of concurrent callers and
//! writes them in one transaction: the first caller to find no commit in
//! progress becomes the leader, takes every queued record and commits them;
//! the others wait for that commit and return with it.
//!
//! **Durability is unchanged**: `append` returns only after the transaction
//! holding the record committed (`synchronous = FULL`), so a read that was
//! answered was durably audited; a caller waits at most for the commit in
//! progress and its own. A failed group commit fails every append in it (each
//! caller sees the error, as with a lone append). Spawns nothing: the
//! leader is one of the callers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use citycard_core::{AuditEntry, AuditLog, AuditQuery, AuditRecord, StoreError};
use citycard_sqlite::SqliteAuditLog;

/// How many failed group commits are remembered for their waiting callers.
const FAILURES_KEPT: usize = 64;

#[derive(Debug, Default)]
struct Queue {
    /// The records of the group being filled, in their callers' order.
    records: Vec<AuditRecord>,
    /// The number of the group being filled.
    group: u64,
}

#[derive(Debug, Default)]
struct Committed {
    /// The last group written (or failed).
    done: u64,
    /// The first sequence number of each recent group (or its error).
    sequences: VecDeque<(u64, Result<u64, StoreError>)>,
}

/// The SQLite audit log with concurrent appends committed together (see the module docs).
#[derive(Debug)]
pub struct GroupCommitAuditLog {
    log: SqliteAuditLog,
    queue: Mutex<Queue>,
    committed: tokio::sync::Mutex<Committed>,
}

impl GroupCommitAuditLog {
    /// Group commits over `log`.
    pub fn new(log: SqliteAuditLog) -> Arc<Self> {
        Arc::new(Self {
            log,
            queue: Mutex::new(Queue {
                records: Vec::new(),
                group: 1,
            }),
            committed: tokio::sync::Mutex::new(Committed::default()),
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn answer(committed: &Committed, group: u64, place: usize) -> Result<u64, StoreError> {
    match committed.sequences.iter().find(|(g, _)| *g == group) {
        Some((_, Ok(first))) => Ok(first + place as u64),
        Some((_, Err(e))) => Err(e.clone()),
        None => Err(StoreError::Internal(format!(
            "the outcome of audit group {group} is no longer known"
        ))),
    }
}

#[async_trait]
impl AuditLog for GroupCommitAuditLog {
    async fn append(&self, record: AuditRecord) -> Result<u64, StoreError> {
        let (group, place) = {
            let mut queue = self.queue();
            queue.records.push(record);
            (queue.group, queue.records.len() - 1)
        };
        let mut committed = self.committed.lock().await;
        if committed.done >= group {
            return answer(&committed, group, place);
        }
        // The leader: no group after ours was taken, so ours is the one
        // being filled; take it and start the next.
        let records = {
            let mut queue = self.queue();
            queue.group += 1;
            std::mem::take(&mut queue.records)
        };
        let written = self
            .log
            .append_all(&records)
            .map(|sequences| sequences.first().copied().unwrap_or_default());
        committed.done = group;
        committed.sequences.push_back((group, written));
        while committed.sequences.len() > FAILURES_KEPT {
            committed.sequences.pop_front();
        }
        answer(&committed, group, place)
    }

    async fn query(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.log.query(query).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citycard_core::{AuditOutcome, Principal};

    fn record(i: usize) -> AuditRecord {
        AuditRecord::new(
            chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            Principal::System,
            "test.read",
            format!("card:{i}"),
            AuditOutcome::Succeeded,
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_share_commits_and_each_gets_its_own_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let db = citycard_sqlite::Database::open(dir.path().join("a.db")).unwrap();
        let log = GroupCommitAuditLog::new(SqliteAuditLog::new(db.clone()));
        let before = db.commits();
        // A commit in progress (held here) while 200 readers append.
        let in_progress = log.committed.lock().await;
        let mut tasks = Vec::new();
        for i in 0..200 {
            let log = log.clone();
            tasks.push(tokio::spawn(
                async move { (i, log.append(record(i)).await) },
            ));
        }
        while log.queue().records.len() < 200 {
            tokio::task::yield_now().await;
        }
        drop(in_progress);
        let mut sequences = Vec::new();
        for t in tasks {
            let (i, seq) = t.await.unwrap();
            sequences.push((seq.unwrap(), i));
        }
        let entries = log.query(&AuditQuery::default()).await.unwrap();
        assert_eq!(entries.len(), 200);
        // Each caller's sequence names its own record.
        for (seq, i) in &sequences {
            let entry = entries.iter().find(|e| e.sequence == *seq).unwrap();
            assert_eq!(entry.record.subject, format!("card:{i}"));
        }
        // They waited for the commit in progress, then went in one.
        assert_eq!(db.commits() - before, 1);
    }

    #[tokio::test]
    async fn a_lone_append_is_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = citycard_sqlite::Database::open(dir.path().join("a.db")).unwrap();
        let log = GroupCommitAuditLog::new(SqliteAuditLog::new(db.clone()));
        let before = db.commits();
        assert_eq!(log.append(record(1)).await.unwrap(), 1);
        assert_eq!(log.append(record(2)).await.unwrap(), 2);
        assert_eq!(db.commits() - before, 2);
    }
}
