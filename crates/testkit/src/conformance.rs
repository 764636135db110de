//! Conformance suites for the core storage ports.
//!
//! Each macro takes the name of an `async fn() -> S` in the calling module that returns a fresh,
//! empty store and expands into a module of `#[tokio::test]` cases.

/// The conformance suite for [`IdempotencyStore`](citycard_core::IdempotencyStore).
///
/// `$factory` returns a fresh store; `$handle(&store, owner)` returns another
/// handle on the same records claiming as `owner` (another process), with the
/// default lease ([`DEFAULT_CLAIM_LEASE`](citycard_core::DEFAULT_CLAIM_LEASE)).
#[macro_export]
macro_rules! idempotency_store_conformance {
    ($factory:ident, $handle:ident) => {
        $crate::idempotency_store_conformance!(@suite $factory, $handle, $crate::backend_available);
    };
    ($factory:ident, $handle:ident, available = $available:ident) => {
        $crate::idempotency_store_conformance!(@suite $factory, $handle, super::$available);
    };
    (@suite $factory:ident, $handle:ident, $available:path) => {
        #[allow(clippy::unwrap_used)]
        mod idempotency_store_conformance {
            use $crate::__private::citycard_core::{
                Claim, DEFAULT_CLAIM_LEASE, Fingerprint, IdempotencyError, IdempotencyKey,
                IdempotencyState, IdempotencyStore, run_idempotent, run_idempotent_recovering,
            };

            fn lease_secs() -> i64 {
                DEFAULT_CLAIM_LEASE.num_seconds()
            }

            /// Claims, completions and releases by two owners at growing
            /// instants always answer as a model of leases does: one holder at a
            /// time, takeover only after the lease, only the holder completes or
            /// releases, and a completed outcome never changes.
            #[test]
            fn claims_by_two_owners_follow_the_lease_model() {
                if !$available() {
                    return;
                }
                use $crate::__private::proptest::prelude::*;
                use $crate::__private::proptest::test_runner::{Config, TestRunner};

                #[derive(Debug, Clone, PartialEq)]
                enum Model {
                    InProgress { owner: usize, until: i64 },
                    Completed(String),
                }

                let ops = $crate::__private::proptest::collection::vec(
                    (0usize..2, 0u8..3, 0usize..2, 0i64..(lease_secs() * 3 / 2)),
                    1..40,
                );
                // IO and timers on: a server-backed store talks over sockets.
                let rt = $crate::__private::tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let mut runner = TestRunner::new(Config::with_cases(48));
                runner
                    .run(&ops, |ops| {
                        rt.block_on(async {
                            let first = super::$factory().await;
                            let second = super::$handle(&first, "owner-1");
                            let names = [first.owner().to_owned(), "owner-1".to_owned()];
                            let stores = [&first, &second];
                            let fp = Fingerprint::of_bytes(b"req");
                            let mut model: [Option<Model>; 2] = [None, None];
                            let mut t = 0i64;
                            for (who, op, k, dt) in ops {
                                t += dt;
                                let store = stores[who];
                                let kk = key(&format!("model-{k}"));
                                let slot = &mut model[k];
                                match op {
                                    0 => {
                                        let got = store.claim("m", &kk, &fp, at(t)).await;
                                        match slot.clone() {
                                            None => {
                                                prop_assert_eq!(got.unwrap(), Claim::Started);
                                                *slot = Some(Model::InProgress { owner: who, until: t + lease_secs() });
                                            }
                                            Some(Model::InProgress { until, .. }) if t < until => {
                                                prop_assert!(matches!(got, Err(IdempotencyError::InProgress { .. })), "{:?}", got);
                                            }
                                            Some(Model::InProgress { owner, .. }) => {
                                                prop_assert!(
                                                    matches!(&got, Ok(Claim::TakenOver { previous_owner, .. }) if *previous_owner == names[owner]),
                                                    "{:?}",
                                                    got
                                                );
                                                *slot = Some(Model::InProgress { owner: who, until: t + lease_secs() });
                                            }
                                            Some(Model::Completed(outcome)) => {
                                                prop_assert_eq!(got.unwrap(), Claim::Completed(outcome));
                                            }
                                        }
                                    }
                                    1 => {
                                        let outcome = format!("{who}@{t}");
                                        let got = store.complete("m", &kk, &fp, &outcome, at(t)).await;
                                        match slot.clone() {
                                            Some(Model::InProgress { owner, .. }) if owner == who => {
                                                prop_assert!(got.is_ok(), "{:?}", got);
                                                *slot = Some(Model::Completed(outcome));
                                            }
                                            Some(Model::InProgress { .. }) => {
                                                prop_assert!(matches!(got, Err(IdempotencyError::NotOwner { .. })), "{:?}", got);
                                            }
                                            _ => prop_assert!(matches!(got, Err(IdempotencyError::NotClaimed { .. })), "{:?}", got),
                                        }
                                    }
                                    _ => {
                                        let got = store.release("m", &kk, &fp).await;
                                        match slot.clone() {
                                            Some(Model::InProgress { owner, .. }) if owner == who => {
                                                prop_assert!(got.is_ok(), "{:?}", got);
                                                *slot = None;
                                            }
                                            Some(Model::InProgress { .. }) => {
                                                prop_assert!(matches!(got, Err(IdempotencyError::NotOwner { .. })), "{:?}", got);
                                            }
                                            _ => prop_assert!(matches!(got, Err(IdempotencyError::NotClaimed { .. })), "{:?}", got),
                                        }
                                    }
                                }
                                let stored = first.get("m", &kk).await.unwrap();
                                match &model[k] {
                                    None => prop_assert_eq!(stored, None),
                                    Some(Model::InProgress { owner, until }) => {
                                        let r = stored.unwrap();
                                        prop_assert_eq!(r.state, IdempotencyState::InProgress);
                                        prop_assert_eq!(&r.owner, &names[*owner]);
                                        prop_assert_eq!(r.lease_until, Some(at(*until)));
                                    }
                                    Some(Model::Completed(outcome)) => {
                                        let r = stored.unwrap();
                                        prop_assert_eq!(r.state, IdempotencyState::Completed);
                                        prop_assert_eq!(r.outcome.as_deref(), Some(outcome.as_str()));
                                    }
                                }
                            }
                            Ok(())
                        })
                    })
                    .unwrap();
            }

            #[tokio::test]
            async fn a_claim_carries_its_owner_and_a_lease_from_the_callers_clock() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let k = key("lease-1");
                let fp = Fingerprint::of_bytes(b"req");
                store.claim("s", &k, &fp, at(10)).await.unwrap();
                let rec = store.get("s", &k).await.unwrap().unwrap();
                assert_eq!(rec.owner, store.owner());
                assert_eq!(rec.lease_until, Some(at(10 + lease_secs())));
                assert!(!rec.is_expired(at(10 + lease_secs() - 1)));
                assert!(rec.is_expired(at(10 + lease_secs())));
                store.complete("s", &k, &fp, "1", at(11)).await.unwrap();
                let rec = store.get("s", &k).await.unwrap().unwrap();
                assert_eq!(rec.lease_until, None);
                assert!(!rec.is_expired(at(10_000)));
            }

            #[tokio::test]
            async fn a_live_claim_is_in_progress_for_every_owner_until_its_lease_runs_out() {
                if !$available() {
                    return;
                }
                let first = super::$factory().await;
                let second = super::$handle(&first, "second-process");
                let k = key("lease-2");
                let fp = Fingerprint::of_bytes(b"req");
                assert_eq!(
                    first.claim("s", &k, &fp, at(0)).await.unwrap(),
                    Claim::Started
                );
                for store in [&first, &second] {
                    assert!(matches!(
                        store.claim("s", &k, &fp, at(lease_secs() - 1)).await,
                        Err(IdempotencyError::InProgress { .. })
                    ));
                }
                assert_eq!(
                    second.claim("s", &k, &fp, at(lease_secs())).await.unwrap(),
                    Claim::TakenOver {
                        previous_owner: first.owner().to_owned(),
                        claimed_at: at(0),
                    }
                );
                let rec = second.get("s", &k).await.unwrap().unwrap();
                assert_eq!(rec.owner, "second-process");
                assert_eq!(rec.state, IdempotencyState::InProgress);
                assert_eq!(rec.created_at, at(0));
                assert_eq!(rec.lease_until, Some(at(2 * lease_secs())));
                // The new lease holds against the first owner in turn.
                assert!(matches!(
                    first.claim("s", &k, &fp, at(lease_secs() + 1)).await,
                    Err(IdempotencyError::InProgress { .. })
                ));
            }

            #[tokio::test]
            async fn only_the_current_owner_completes_or_releases_a_claim() {
                if !$available() {
                    return;
                }
                let first = super::$factory().await;
                let second = super::$handle(&first, "second-process");
                let k = key("owner-1");
                let fp = Fingerprint::of_bytes(b"req");
                first.claim("s", &k, &fp, at(0)).await.unwrap();
                assert!(matches!(
                    second.complete("s", &k, &fp, "2", at(1)).await,
                    Err(IdempotencyError::NotOwner { .. })
                ));
                assert!(matches!(
                    second.release("s", &k, &fp).await,
                    Err(IdempotencyError::NotOwner { .. })
                ));
                second.claim("s", &k, &fp, at(lease_secs())).await.unwrap();
                // The first owner woke up after its lease was taken over: it may not
                // overwrite or drop what the new owner does.
                assert!(matches!(
                    first
                        .complete("s", &k, &fp, "1", at(lease_secs() + 1))
                        .await,
                    Err(IdempotencyError::NotOwner { .. })
                ));
                assert!(matches!(
                    first.release("s", &k, &fp).await,
                    Err(IdempotencyError::NotOwner { .. })
                ));
                second
                    .complete("s", &k, &fp, "2", at(lease_secs() + 1))
                    .await
                    .unwrap();
                assert_eq!(
                    first
                        .claim("s", &k, &fp, at(lease_secs() + 2))
                        .await
                        .unwrap(),
                    Claim::Completed("2".to_owned())
                );
            }

            #[tokio::test]
            async fn an_expired_claim_of_a_different_request_still_conflicts() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let k = key("owner-2");
                store
                    .claim("s", &k, &Fingerprint::of_bytes(b"a"), at(0))
                    .await
                    .unwrap();
                assert!(matches!(
                    store
                        .claim("s", &k, &Fingerprint::of_bytes(b"b"), at(10 * lease_secs()))
                        .await,
                    Err(IdempotencyError::Conflict { .. })
                ));
            }

            #[tokio::test]
            async fn in_progress_lists_open_claims_oldest_first_and_never_completed_ones() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let fp = Fingerprint::of_bytes(b"req");
                store.claim("b", &key("late"), &fp, at(5)).await.unwrap();
                store.claim("a", &key("early"), &fp, at(1)).await.unwrap();
                store.claim("c", &key("done"), &fp, at(0)).await.unwrap();
                store
                    .complete("c", &key("done"), &fp, "1", at(2))
                    .await
                    .unwrap();
                let open = store.in_progress(10).await.unwrap();
                let keys: Vec<&str> = open.iter().map(|r| r.key.as_str()).collect();
                assert_eq!(keys, ["early", "late"]);
                assert_eq!(store.in_progress(1).await.unwrap().len(), 1);
            }

            #[tokio::test]
            async fn a_taken_over_claim_reads_its_effect_back_before_running_again() {
                if !$available() {
                    return;
                }
                let first = super::$factory().await;
                let second = super::$handle(&first, "second-process");
                let k = key("recover-1");
                // The first process claims, then dies before completing.
                let fp = Fingerprint::of(&"req").unwrap();
                first.claim("s", &k, &fp, at(0)).await.unwrap();
                let mut ran = false;
                let out: Result<u32, IdempotencyError> = run_idempotent_recovering(
                    &second,
                    "s",
                    &k,
                    "req",
                    at(lease_secs()),
                    || async { Ok(Some(7)) },
                    || {
                        ran = true;
                        async { Ok(8) }
                    },
                )
                .await;
                assert_eq!(out.unwrap(), 7);
                assert!(
                    !ran,
                    "a found effect completes the claim without running again"
                );
                assert_eq!(
                    first
                        .claim("s", &k, &fp, at(lease_secs() + 1))
                        .await
                        .unwrap(),
                    Claim::Completed("7".to_owned())
                );
                // Nothing found: the operation runs.
                let k2 = key("recover-2");
                first.claim("s", &k2, &fp, at(0)).await.unwrap();
                let out: Result<u32, IdempotencyError> = run_idempotent_recovering(
                    &second,
                    "s",
                    &k2,
                    "req",
                    at(lease_secs()),
                    || async { Ok(None) },
                    || async { Ok(8) },
                )
                .await;
                assert_eq!(out.unwrap(), 8);
                assert!(second.in_progress(10).await.unwrap().is_empty());
            }

            fn key(s: &str) -> IdempotencyKey {
                IdempotencyKey::parse(s).unwrap()
            }

            fn at(secs: i64) -> $crate::__private::chrono::DateTime<chrono::Utc> {
                $crate::__private::chrono::DateTime::from_timestamp(1_790_000_000 + secs, 0)
                    .unwrap()
            }

            #[tokio::test]
            async fn a_new_key_is_claimed_then_completed_then_replayed() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let fp = Fingerprint::of(&("top_up", "card-1", "50.00")).unwrap();
                let k = key("k-1");
                assert_eq!(
                    store.claim("wallet.top_up", &k, &fp, at(0)).await.unwrap(),
                    Claim::Started
                );
                let rec = store.get("wallet.top_up", &k).await.unwrap().unwrap();
                assert_eq!(rec.state, IdempotencyState::InProgress);
                assert_eq!(rec.fingerprint, fp);
                assert_eq!(rec.created_at, at(0));
                store
                    .complete("wallet.top_up", &k, &fp, r#"{"ok":1}"#, at(1))
                    .await
                    .unwrap();
                assert_eq!(
                    store.claim("wallet.top_up", &k, &fp, at(2)).await.unwrap(),
                    Claim::Completed(r#"{"ok":1}"#.to_owned())
                );
                let rec = store.get("wallet.top_up", &k).await.unwrap().unwrap();
                assert_eq!(rec.state, IdempotencyState::Completed);
                assert_eq!(rec.completed_at, Some(at(1)));
                assert_eq!(rec.outcome.as_deref(), Some(r#"{"ok":1}"#));
            }

            #[tokio::test]
            async fn a_different_request_with_the_same_key_conflicts() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let k = key("k-2");
                let first = Fingerprint::of_bytes(b"first");
                let second = Fingerprint::of_bytes(b"second");
                store.claim("s", &k, &first, at(0)).await.unwrap();
                assert!(matches!(
                    store.claim("s", &k, &second, at(1)).await,
                    Err(IdempotencyError::Conflict { .. })
                ));
                store.complete("s", &k, &first, "1", at(1)).await.unwrap();
                assert!(matches!(
                    store.claim("s", &k, &second, at(2)).await,
                    Err(IdempotencyError::Conflict { .. })
                ));
            }

            #[tokio::test]
            async fn a_duplicate_while_in_progress_is_refused_as_in_progress() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let k = key("k-3");
                let fp = Fingerprint::of_bytes(b"req");
                store.claim("s", &k, &fp, at(0)).await.unwrap();
                assert!(matches!(
                    store.claim("s", &k, &fp, at(1)).await,
                    Err(IdempotencyError::InProgress { .. })
                ));
            }

            #[tokio::test]
            async fn a_released_claim_can_be_claimed_again() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let k = key("k-4");
                let fp = Fingerprint::of_bytes(b"req");
                store.claim("s", &k, &fp, at(0)).await.unwrap();
                assert!(matches!(
                    store
                        .release("s", &k, &Fingerprint::of_bytes(b"other"))
                        .await,
                    Err(IdempotencyError::NotClaimed { .. })
                ));
                store.release("s", &k, &fp).await.unwrap();
                assert_eq!(store.get("s", &k).await.unwrap(), None);
                assert_eq!(
                    store.claim("s", &k, &fp, at(1)).await.unwrap(),
                    Claim::Started
                );
            }

            #[tokio::test]
            async fn completing_requires_an_in_progress_claim_and_completed_records_stay() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let k = key("k-5");
                let fp = Fingerprint::of_bytes(b"req");
                assert!(matches!(
                    store.complete("s", &k, &fp, "1", at(0)).await,
                    Err(IdempotencyError::NotClaimed { .. })
                ));
                store.claim("s", &k, &fp, at(0)).await.unwrap();
                store.complete("s", &k, &fp, "1", at(0)).await.unwrap();
                assert!(matches!(
                    store.complete("s", &k, &fp, "2", at(1)).await,
                    Err(IdempotencyError::NotClaimed { .. })
                ));
                assert!(matches!(
                    store.release("s", &k, &fp).await,
                    Err(IdempotencyError::NotClaimed { .. })
                ));
                assert_eq!(
                    store.claim("s", &k, &fp, at(2)).await.unwrap(),
                    Claim::Completed("1".into())
                );
            }

            #[tokio::test]
            async fn scopes_keep_keys_apart() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let k = key("shared");
                let a = Fingerprint::of_bytes(b"a");
                let b = Fingerprint::of_bytes(b"b");
                assert_eq!(
                    store.claim("ledger.top_up", &k, &a, at(0)).await.unwrap(),
                    Claim::Started
                );
                assert_eq!(
                    store.claim("binding.bind", &k, &b, at(0)).await.unwrap(),
                    Claim::Started
                );
                assert_eq!(store.get("other", &k).await.unwrap(), None);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_claims_of_one_key_start_exactly_once() {
                let store = std::sync::Arc::new(super::$factory().await);
                let fp = Fingerprint::of_bytes(b"req");
                let mut tasks = Vec::new();
                for _ in 0..16 {
                    let store = store.clone();
                    tasks.push($crate::__private::tokio::spawn(async move {
                        store.claim("s", &key("race"), &fp, at(0)).await
                    }));
                }
                let mut started = 0;
                for t in tasks {
                    match t.await.unwrap() {
                        Ok(Claim::Started) => started += 1,
                        Err(IdempotencyError::InProgress { .. }) => {}
                        other => panic!("unexpected claim answer {other:?}"),
                    }
                }
                assert_eq!(started, 1);
            }

            #[tokio::test]
            async fn run_idempotent_runs_once_and_retries_after_an_error() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let k = key("k-run");
                let mut runs = 0;
                let failed: Result<u32, IdempotencyError> =
                    run_idempotent(&store, "s", &k, "req", at(0), || {
                        runs += 1;
                        async { Err(IdempotencyError::Encoding("transient".into())) }
                    })
                    .await;
                assert!(failed.is_err());
                for _ in 0..3 {
                    let out: Result<u32, IdempotencyError> =
                        run_idempotent(&store, "s", &k, "req", at(1), || {
                            runs += 1;
                            async { Ok(42) }
                        })
                        .await;
                    assert_eq!(out.unwrap(), 42);
                }
                assert_eq!(runs, 2);
                let other: Result<u32, IdempotencyError> =
                    run_idempotent(&store, "s", &k, "different", at(2), || async { Ok(1) }).await;
                assert!(matches!(other, Err(IdempotencyError::Conflict { .. })));
            }
        }
    };
}

/// The conformance suite for [`AuditLog`](citycard_core::AuditLog).
#[macro_export]
macro_rules! audit_log_conformance {
    ($factory:ident) => {
        $crate::audit_log_conformance!(@suite $factory, $crate::backend_available);
    };
    ($factory:ident, available = $available:ident) => {
        $crate::audit_log_conformance!(@suite $factory, super::$available);
    };
    (@suite $factory:ident, $available:path) => {
        #[allow(clippy::unwrap_used)]
        mod audit_log_conformance {
            use $crate::__private::citycard_core::{
                AuditLog, AuditOutcome, AuditQuery, AuditRecord, DelegationId, DelegationScope,
                PersonId, Principal,
            };

            fn at(secs: i64) -> $crate::__private::chrono::DateTime<chrono::Utc> {
                $crate::__private::chrono::DateTime::from_timestamp_micros(
                    (1_790_000_000 + secs) * 1_000_000 + 123_456,
                )
                .unwrap()
            }

            fn record(n: i64, subject: &str, action: &str) -> AuditRecord {
                AuditRecord::new(
                    at(n),
                    Principal::Delegate {
                        delegate: PersonId::parse("psn-son").unwrap(),
                        on_behalf_of: PersonId::parse("psn-mum").unwrap(),
                        delegation: DelegationId::parse("dlg-1").unwrap(),
                        scopes: [DelegationScope::TopUp].into_iter().collect(),
                    },
                    action,
                    subject,
                    if n % 2 == 0 {
                        AuditOutcome::Succeeded
                    } else {
                        AuditOutcome::Denied
                    },
                )
                .with("n", n.to_string())
            }

            #[tokio::test]
            async fn records_come_back_in_order_exactly_as_written() {
                if !$available() {
                    return;
                }
                let log = super::$factory().await;
                let mut written = Vec::new();
                for n in 0..5 {
                    let r = record(n, &format!("card:c-{}", n % 2), "card.report_lost");
                    let seq = log.append(r.clone()).await.unwrap();
                    written.push((seq, r));
                }
                let seqs: Vec<u64> = written.iter().map(|(s, _)| *s).collect();
                assert!(
                    seqs.windows(2).all(|w| w[0] < w[1]),
                    "sequences increase: {seqs:?}"
                );
                let all = log.query(&AuditQuery::all()).await.unwrap();
                assert_eq!(all.len(), 5);
                for (entry, (seq, r)) in all.iter().zip(&written) {
                    assert_eq!(entry.sequence, *seq);
                    assert_eq!(&entry.record, r);
                }
            }

            #[tokio::test]
            async fn queries_filter_by_subject_action_and_page() {
                if !$available() {
                    return;
                }
                let log = super::$factory().await;
                for n in 0..6 {
                    let action = if n < 3 {
                        "binding.bind"
                    } else {
                        "binding.unbind"
                    };
                    log.append(record(n, &format!("card:c-{}", n % 2), action))
                        .await
                        .unwrap();
                }
                let c0 = log.query(&AuditQuery::subject("card:c-0")).await.unwrap();
                assert_eq!(c0.len(), 3);
                assert!(c0.iter().all(|e| e.record.subject == "card:c-0"));
                let unbinds = log
                    .query(&AuditQuery {
                        action: Some("binding.unbind".into()),
                        ..AuditQuery::all()
                    })
                    .await
                    .unwrap();
                assert_eq!(unbinds.len(), 3);
                let first_two = log
                    .query(&AuditQuery {
                        limit: Some(2),
                        ..AuditQuery::all()
                    })
                    .await
                    .unwrap();
                assert_eq!(first_two.len(), 2);
                let rest = log
                    .query(&AuditQuery {
                        after_sequence: Some(first_two[1].sequence),
                        ..AuditQuery::all()
                    })
                    .await
                    .unwrap();
                assert_eq!(rest.len(), 4);
                assert!(rest[0].sequence > first_two[1].sequence);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_appends_all_land_with_distinct_sequences() {
                let log = std::sync::Arc::new(super::$factory().await);
                let mut tasks = Vec::new();
                for n in 0..32 {
                    let log = log.clone();
                    tasks.push($crate::__private::tokio::spawn(async move {
                        log.append(record(n, "card:c-x", "t")).await
                    }));
                }
                let mut seqs = Vec::new();
                for t in tasks {
                    seqs.push(t.await.unwrap().unwrap());
                }
                seqs.sort_unstable();
                seqs.dedup();
                assert_eq!(seqs.len(), 32);
                assert_eq!(log.query(&AuditQuery::all()).await.unwrap().len(), 32);
            }
        }
    };
}
