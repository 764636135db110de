//! Property tests of the core ports' invariants, on the memory implementations.

use std::collections::HashMap;

use citycard_core::{
    AuditLog, AuditOutcome, AuditQuery, AuditRecord, IdempotencyError, IdempotencyKey,
    MemoryAuditLog, MemoryIdempotencyStore, PersonId, Principal, run_idempotent,
};
use proptest::prelude::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime builds")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sequence of calls: each key runs its operation once, every retry with
    /// the same request gets the first answer, and a different request conflicts.
    #[test]
    fn retries_return_the_first_answer(calls in proptest::collection::vec((0u8..5, 0u8..3), 1..40)) {
        let rt = runtime();
        rt.block_on(async {
            let store = MemoryIdempotencyStore::new();
            let now = chrono::Utc::now();
            let mut first: HashMap<u8, (u8, u64)> = HashMap::new();
            let mut runs = 0u64;
            for (key_no, request) in calls {
                let key = IdempotencyKey::parse(&format!("k-{key_no}")).expect("valid key");
                let out: Result<u64, IdempotencyError> =
                    run_idempotent(&store, "test.op", &key, &request, now, || {
                        runs += 1;
                        let answer = runs;
                        async move { Ok(answer) }
                    })
                    .await;
                match first.get(&key_no) {
                    None => {
                        let answer = out.expect("a new key runs");
                        first.insert(key_no, (request, answer));
                    }
                    Some((req, answer)) if *req == request => prop_assert_eq!(out.expect("replayed"), *answer),
                    Some(_) => {
                        let conflicted = matches!(out, Err(IdempotencyError::Conflict { .. }));
                        prop_assert!(conflicted);
                    }
                }
            }
            prop_assert_eq!(runs, first.len() as u64);
            Ok(())
        })?;
    }

    /// Whatever is appended reads back in order, unchanged, and filters agree with a naive scan.
    #[test]
    fn the_audit_log_returns_what_was_appended(subjects in proptest::collection::vec(0u8..4, 0..30)) {
        let rt = runtime();
        rt.block_on(async {
            let log = MemoryAuditLog::new();
            let at = chrono::Utc::now();
            let mut written = Vec::new();
            for (i, s) in subjects.iter().enumerate() {
                let record = AuditRecord::new(
                    at,
                    Principal::cardholder(PersonId::parse(&format!("psn-{i}")).expect("valid id")),
                    "card.report_lost",
                    format!("card:{s}"),
                    AuditOutcome::Succeeded,
                );
                log.append(record.clone()).await.expect("appends");
                written.push(record);
            }
            let all = log.query(&AuditQuery::all()).await.expect("reads");
            prop_assert_eq!(all.iter().map(|e| e.record.clone()).collect::<Vec<_>>(), written.clone());
            let subject = log.query(&AuditQuery::subject("card:1")).await.expect("reads");
            let expected = written.iter().filter(|r| r.subject == "card:1").count();
            prop_assert_eq!(subject.len(), expected);
            Ok(())
        })?;
    }
}
