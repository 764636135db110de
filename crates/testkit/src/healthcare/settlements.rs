//! The conformance cases of the [`SettlementStore`] port: each step of the settlement saga
//! commits on its precondition (a free key, the expected status, unchanged accumulators)
//! with its core records, or writes nothing. The
//! [`settlement_store_conformance!`](crate::settlement_store_conformance) macro expands them
//! into tests for one backend.
#![allow(clippy::unwrap_used, clippy::panic)] // test cases: a failed step is a failed test

use citycard_core::{
    AuditQuery, Fingerprint, IdempotencyKey, KeyOutcome, Money, PersonId, Principal, StoreError,
};
use citycard_healthcare::billing::decide::{
    AccumulatorsChange, ReversalStart, SettlementPlan, complete_settlement, fail_settlement,
    finish_reversal, start_reversal,
};
use citycard_healthcare::{
    AnnualAccumulators, PaymentReceipt, SettlementId, SettlementRecord, SettlementStatus,
    SettlementStore,
};

use super::{CoreView, settlement_record, suite_time};

fn pid(s: &str) -> PersonId {
    PersonId::parse(s).unwrap()
}

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).unwrap()
}

/// The plan that begins `record`: a new pending record applying its accumulators.
pub fn begin_plan(record: SettlementRecord) -> SettlementPlan {
    SettlementPlan {
        expected_status: None,
        accumulators: Some(AccumulatorsChange {
            before: record.accumulators_before,
            after: record.breakdown.accumulators_after,
        }),
        record,
        core: Default::default(),
    }
}

fn receipt() -> PaymentReceipt {
    PaymentReceipt {
        reference: "ref-1".into(),
    }
}

fn is_conflict(result: Result<(), StoreError>) -> bool {
    matches!(result, Err(StoreError::Conflict(_)))
}

/// A new record applies its accumulators and writes its core records with it.
pub async fn a_new_record_applies_its_accumulators_with_its_core_records<S: SettlementStore>(
    store: S,
    core: CoreView,
) {
    assert_eq!(
        store.accumulators(&pid("psn-1"), 2026).await.unwrap(),
        AnnualAccumulators::new(2026)
    );
    let r = settlement_record(
        "stl-1",
        "k-1",
        "psn-1",
        AnnualAccumulators::new(2026),
        50_000,
    );
    let mut plan = begin_plan(r.clone());
    plan.core.audit.push(citycard_core::AuditRecord::new(
        suite_time(0),
        Principal::System,
        "healthcare.settle.begin",
        "settlement:stl-1",
        citycard_core::AuditOutcome::Succeeded,
    ));
    let fingerprint = Fingerprint::of_bytes(b"bill");
    plan.core.outcomes.push(
        KeyOutcome::new(
            "healthcare.settle",
            key("k-1"),
            fingerprint,
            &r.id,
            suite_time(0),
        )
        .unwrap(),
    );
    store.commit(&plan).await.unwrap();
    let acc = store.accumulators(&pid("psn-1"), 2026).await.unwrap();
    assert_eq!(acc, r.breakdown.accumulators_after);
    assert_eq!(acc.deductible_met, Money::from_fen(30_000));
    assert_eq!(store.settlement(&r.id).await.unwrap(), Some(r.clone()));
    assert_eq!(
        store.settlement_by_key(&key("k-1")).await.unwrap(),
        Some(r.clone())
    );
    assert_eq!(store.settlement_by_key(&key("k-2")).await.unwrap(), None);
    assert_eq!(
        store
            .settlement(&SettlementId::parse("stl-x").unwrap())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        core.audit
            .query(&AuditQuery::subject("settlement:stl-1"))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        core.idempotency
            .get("healthcare.settle", &key("k-1"))
            .await
            .unwrap()
            .is_some()
    );
    // Other years and other people are untouched.
    assert_eq!(
        store.accumulators(&pid("psn-1"), 2025).await.unwrap(),
        AnnualAccumulators::new(2025)
    );
    assert_eq!(
        store.accumulators(&pid("psn-2"), 2026).await.unwrap(),
        AnnualAccumulators::new(2026)
    );
}

/// A taken key, moved accumulators or a refused outcome refuse the plan; nothing is written.
pub async fn a_stale_or_duplicate_plan_writes_nothing<S: SettlementStore>(
    store: S,
    core: CoreView,
) {
    let first = settlement_record(
        "stl-1",
        "k-1",
        "psn-1",
        AnnualAccumulators::new(2026),
        50_000,
    );
    // Decided on the same accumulators as the first: stale once the first commits.
    let second = settlement_record(
        "stl-2",
        "k-2",
        "psn-1",
        AnnualAccumulators::new(2026),
        20_000,
    );
    let mut first_plan = begin_plan(first.clone());
    first_plan.core.outcomes.push(
        KeyOutcome::new(
            "healthcare.settle",
            key("k-1"),
            Fingerprint::of_bytes(b"1"),
            &1u8,
            suite_time(0),
        )
        .unwrap(),
    );
    store.commit(&first_plan).await.unwrap();
    let audit_before = core.audit.query(&AuditQuery::all()).await.unwrap().len();
    let mut stale = begin_plan(second.clone());
    stale.core.audit.push(citycard_core::AuditRecord::new(
        suite_time(0),
        Principal::System,
        "healthcare.settle",
        "settlement:stl-2",
        citycard_core::AuditOutcome::Succeeded,
    ));
    assert!(is_conflict(store.commit(&stale).await));
    assert_eq!(store.settlement(&second.id).await.unwrap(), None);
    assert_eq!(
        store.accumulators(&pid("psn-1"), 2026).await.unwrap(),
        first.breakdown.accumulators_after
    );
    // The same key again (another id), with fresh accumulators: refused.
    let again = settlement_record(
        "stl-3",
        "k-1",
        "psn-1",
        first.breakdown.accumulators_after,
        10_000,
    );
    assert!(is_conflict(store.commit(&begin_plan(again.clone())).await));
    assert_eq!(store.settlement(&again.id).await.unwrap(), None);
    // A fresh plan whose idempotency outcome is already completed: refused whole.
    let fresh = settlement_record(
        "stl-4",
        "k-4",
        "psn-1",
        first.breakdown.accumulators_after,
        10_000,
    );
    let mut refused = begin_plan(fresh.clone());
    refused.core = first_plan.core.clone();
    assert!(is_conflict(store.commit(&refused).await));
    assert_eq!(store.settlement(&fresh.id).await.unwrap(), None);
    assert_eq!(
        store.accumulators(&pid("psn-1"), 2026).await.unwrap(),
        first.breakdown.accumulators_after
    );
    assert_eq!(
        core.audit.query(&AuditQuery::all()).await.unwrap().len(),
        audit_before
    );
    // Decided again on the current accumulators, it commits.
    store.commit(&begin_plan(fresh)).await.unwrap();
}

/// Completion, failure and reversal commit only from the status they expect; failure and
/// reversal take exactly what the settlement added off the accumulators.
pub async fn steps_commit_on_the_expected_status<S: SettlementStore>(store: S, core: CoreView) {
    let a = settlement_record(
        "stl-a",
        "k-a",
        "psn-1",
        AnnualAccumulators::new(2026),
        50_000,
    );
    store.commit(&begin_plan(a.clone())).await.unwrap();
    let after_a = a.breakdown.accumulators_after;
    let b = settlement_record("stl-b", "k-b", "psn-1", after_a, 20_000);
    store.commit(&begin_plan(b.clone())).await.unwrap();
    let after_b = store.accumulators(&pid("psn-1"), 2026).await.unwrap();
    assert_eq!(after_b, b.breakdown.accumulators_after);

    // a completes once; a second completion is stale.
    let done = complete_settlement(&a, &receipt(), &Principal::System, suite_time(1));
    store.commit(&done).await.unwrap();
    assert!(is_conflict(store.commit(&done).await));
    let stored = store.settlement(&a.id).await.unwrap().unwrap();
    assert_eq!(stored.status, SettlementStatus::Completed);
    assert_eq!(
        core.audit
            .query(&AuditQuery::subject("settlement:stl-a"))
            .await
            .unwrap()
            .len(),
        1
    );
    // A completed record cannot fail.
    let late_fail =
        fail_settlement(&a, after_b, "refused", &Principal::System, suite_time(1)).unwrap();
    assert!(is_conflict(store.commit(&late_fail).await));

    // b fails: its share comes off what is there now.
    let fail = fail_settlement(&b, after_b, "refused", &Principal::System, suite_time(1)).unwrap();
    store.commit(&fail).await.unwrap();
    assert_eq!(
        store.settlement(&b.id).await.unwrap().unwrap().status,
        SettlementStatus::Failed
    );
    assert_eq!(
        store.accumulators(&pid("psn-1"), 2026).await.unwrap(),
        after_a
    );

    // a is reversed: reversing under a key, then reversed with the accumulators restored.
    let ReversalStart::Start(start) = start_reversal(&stored, &key("r-1")).unwrap() else {
        panic!("expected a start")
    };
    store.commit(&start).await.unwrap();
    assert!(is_conflict(store.commit(&start).await));
    let reversing = store.settlement(&a.id).await.unwrap().unwrap();
    assert_eq!(reversing.status, SettlementStatus::Reversing);
    assert_eq!(reversing.reversal_key, Some(key("r-1")));
    // Finishing on stale accumulators is refused.
    let stale = finish_reversal(&reversing, after_b, &Principal::System, suite_time(2)).unwrap();
    assert!(is_conflict(store.commit(&stale).await));
    let finish = finish_reversal(&reversing, after_a, &Principal::System, suite_time(2)).unwrap();
    store.commit(&finish).await.unwrap();
    let reversed = store.settlement(&a.id).await.unwrap().unwrap();
    assert_eq!(reversed.status, SettlementStatus::Reversed);
    assert_eq!(reversed.reversal_key, Some(key("r-1")));
    assert_eq!(
        store.accumulators(&pid("psn-1"), 2026).await.unwrap(),
        AnnualAccumulators::new(2026)
    );
    assert!(
        core.audit
            .query(&AuditQuery::subject("settlement:stl-a"))
            .await
            .unwrap()
            .iter()
            .any(|r| r.record.action == "healthcare.reverse")
    );
}

/// The conformance suite for [`SettlementStore`].
///
/// The factory must return a fresh, empty store and a [`CoreView`] of where its commits
/// write audit records and idempotency outcomes.
#[macro_export]
macro_rules! settlement_store_conformance {
    ($factory:ident) => {
        $crate::settlement_store_conformance!(@suite $factory, $crate::backend_available);
    };
    ($factory:ident, available = $available:ident) => {
        $crate::settlement_store_conformance!(@suite $factory, super::$available);
    };
    (@suite $factory:ident, $available:path) => {
        mod settlement_store_conformance {
            use $crate::healthcare::settlements as suite;

            #[tokio::test]
            async fn a_new_record_applies_its_accumulators_with_its_core_records() {
                if !$available() {
                    return;
                }
                let (store, core) = super::$factory().await;
                suite::a_new_record_applies_its_accumulators_with_its_core_records(store, core)
                    .await;
            }

            #[tokio::test]
            async fn a_stale_or_duplicate_plan_writes_nothing() {
                if !$available() {
                    return;
                }
                let (store, core) = super::$factory().await;
                suite::a_stale_or_duplicate_plan_writes_nothing(store, core).await;
            }

            #[tokio::test]
            async fn steps_commit_on_the_expected_status() {
                if !$available() {
                    return;
                }
                let (store, core) = super::$factory().await;
                suite::steps_commit_on_the_expected_status(store, core).await;
            }
        }
    };
}
