//! Invariants on random operation sequences.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use citycard_core::{ManualClock, Money, Principal};
use citycard_ledger::{
    Account, AccountId, AccountKind, CreateTransferResult as R, Engine, Ledger, LedgerStore,
    MemoryLedgerStore, NewAccount, NewTransfer, PendingStatus, TransferId,
};
use citycard_testkit::Fault;
use citycard_testkit::ledger::{FaultyLedgerStore, account_flags, funding_batch, new_transfer};
use proptest::prelude::*;

const ACCOUNTS: u64 = 6;
const IDS: u64 = 60;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap()
}

fn accounts_strategy() -> impl Strategy<Value = Vec<NewAccount>> {
    proptest::collection::vec(
        (account_flags(), proptest::option::of(1i64..20_000)),
        ACCOUNTS as usize,
    )
    .prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (flags, limit))| {
                let mut a =
                    NewAccount::new(AccountId::new(i as u64 + 1), AccountKind(1 + i as u16))
                        .with_flags(flags);
                a.upper_limit = limit.map(Money::from_fen);
                a
            })
            .collect()
    })
}

fn funding() -> Vec<NewTransfer> {
    funding_batch(ACCOUNTS)
}

type Batches = Vec<(i64, Vec<NewTransfer>)>;

fn batches_strategy(max_batches: usize) -> impl Strategy<Value = Batches> {
    proptest::collection::vec(
        (
            0i64..150,
            proptest::collection::vec(new_transfer(ACCOUNTS, IDS), 0..12),
        ),
        1..max_batches,
    )
}

fn check_account(a: &Account) -> Result<(), TestCaseError> {
    let b = a.balances;
    let (dp, dpo, cp, cpo) = (
        i128::from(b.debits_pending.fen()),
        i128::from(b.debits_posted.fen()),
        i128::from(b.credits_pending.fen()),
        i128::from(b.credits_posted.fen()),
    );
    prop_assert!(dp >= 0 && dpo >= 0 && cp >= 0 && cpo >= 0, "{a:?}");
    if a.flags.debits_must_not_exceed_credits() {
        prop_assert!(dp + dpo <= cpo, "overdraft: {a:?}");
    }
    if a.flags.credits_must_not_exceed_debits() {
        prop_assert!(cp + cpo <= dpo, "mirror overdraft: {a:?}");
    }
    if let Some(limit) = a.upper_limit {
        let limit = i128::from(limit.fen());
        if a.flags.credits_must_not_exceed_debits() {
            prop_assert!(dp + dpo - cpo <= limit, "over the limit: {a:?}");
        } else {
            prop_assert!(cp + cpo - dpo <= limit, "over the cap: {a:?}");
        }
    }
    Ok(())
}

fn check_invariants(e: &Engine, now: DateTime<Utc>) -> Result<(), TestCaseError> {
    let [dp, dpo, cp, cpo] = e.totals();
    prop_assert_eq!(dp, cp, "pending debits = pending credits");
    prop_assert_eq!(dpo, cpo, "posted debits = posted credits");
    for a in e.accounts() {
        check_account(&a)?;
    }
    // A hold is posted or voided at most once, and never after it expired.
    let expired: HashSet<TransferId> = e.expiries().map(|x| x.transfer_id).collect();
    let mut settled: HashMap<TransferId, usize> = HashMap::new();
    for t in e.transfers() {
        if let Some(p) = t.pending_id {
            *settled.entry(p).or_default() += 1;
            prop_assert!(!expired.contains(&p), "settled an expired hold {p}");
            let status = e.pending_status(p);
            prop_assert!(
                matches!(status, Some(PendingStatus::Posted | PendingStatus::Voided)),
                "{p} settled but {status:?}"
            );
        }
        if t.flags.pending() && t.timeout_secs > 0 {
            let expires = t.timestamp + Duration::seconds(i64::from(t.timeout_secs));
            if expires <= now {
                prop_assert_ne!(e.pending_status(t.id), Some(PendingStatus::Pending));
            }
        }
    }
    prop_assert!(settled.values().all(|&n| n == 1), "{settled:?}");
    // The reference index agrees with a scan.
    for n in 0..4 {
        let r = citycard_ledger::Reference::trip(&format!("T-{n}")).unwrap();
        let indexed: Vec<TransferId> = e.transfers_by_reference(&r).iter().map(|t| t.id).collect();
        let scanned: Vec<TransferId> = e
            .transfers()
            .iter()
            .filter(|t| t.reference.as_ref() == Some(&r))
            .map(|t| t.id)
            .collect();
        prop_assert_eq!(indexed, scanned);
    }
    Ok(())
}

fn snapshot(e: &Engine) -> (Vec<Account>, u64, [i128; 4]) {
    (e.accounts().collect(), e.transfer_count(), e.totals())
}

/// The chains of a batch: index ranges, a chain ending at the first unlinked event.
fn chains(batch: &[NewTransfer]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, t) in batch.iter().enumerate() {
        if t.flags.is_linked() {
            start.get_or_insert(i);
        } else if let Some(s) = start.take() {
            out.push(s..i + 1);
        }
    }
    if let Some(s) = start {
        out.push(s..batch.len());
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn invariants_hold_after_every_batch(accounts in accounts_strategy(), batches in batches_strategy(12)) {
        let mut e = Engine::new();
        e.create_accounts(t0(), accounts);
        let mut now = t0();
        e.create_transfers(now, funding());
        check_invariants(&e, now)?;
        for (secs, batch) in batches {
            now += Duration::seconds(secs);
            let before: HashSet<TransferId> = e.transfers().iter().map(|t| t.id).collect();
            let results = e.create_transfers(now, batch.clone());
            prop_assert_eq!(results.len(), batch.len());
            check_invariants(&e, now)?;
            // A linked chain is all or nothing.
            for chain in chains(&batch) {
                let ok = results[chain.clone()].iter().all(|r| r.is_success());
                let none = results[chain.clone()].iter().all(|r| !r.is_success());
                prop_assert!(ok || none, "chain {chain:?}: {:?}", &results[chain.clone()]);
                if none {
                    for t in &batch[chain.clone()] {
                        let created_here = e.transfer(t.id).is_some() && !before.contains(&t.id);
                        // The same id may also appear outside the chain in this batch.
                        let elsewhere = batch
                            .iter()
                            .enumerate()
                            .any(|(i, o)| o.id == t.id && !chain.contains(&i) && results[i] == R::Ok);
                        prop_assert!(!created_here || elsewhere, "{} survived its failed chain", t.id);
                    }
                }
            }
        }
    }

    #[test]
    fn replaying_a_batch_changes_nothing_and_answers_exists(
        accounts in accounts_strategy(),
        batches in batches_strategy(8),
    ) {
        let mut e = Engine::new();
        e.create_accounts(t0(), accounts);
        let mut now = t0();
        e.create_transfers(now, funding());
        for (secs, batch) in batches {
            now += Duration::seconds(secs);
            let first = e.create_transfers(now, batch.clone());
            let before = snapshot(&e);
            let again = e.create_transfers(now, batch.clone());
            prop_assert_eq!(snapshot(&e), before, "a replay changed the ledger");
            for (i, (a, b)) in first.iter().zip(&again).enumerate() {
                if *a == R::Ok {
                    prop_assert_eq!(*b, R::Exists, "event {} of {:?}", i, batch);
                }
                if a.is_transient() {
                    prop_assert!(
                        *b == R::IdAlreadyFailed || *b == R::LinkedEventFailed || b.is_transient(),
                        "event {}: {:?} then {:?}", i, a, b
                    );
                }
            }
        }
    }

    #[test]
    fn reopening_after_a_crash_equals_the_acknowledged_batches(
        accounts in accounts_strategy(),
        batches in batches_strategy(8),
        crashes in proptest::collection::vec(any::<bool>(), 8),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let inner: Arc<dyn LedgerStore> = Arc::new(MemoryLedgerStore::new());
            let (faulty, faults) = FaultyLedgerStore::new(inner.clone());
            let clock = Arc::new(ManualClock::new(t0()));
            let ledger = Ledger::open(Arc::new(faulty), clock.clone()).await.unwrap();
            let sys = Principal::System;
            ledger.create_accounts(&sys, accounts.clone()).await.unwrap();
            ledger.create_transfers(&sys, funding()).await.unwrap();
            let mut reference = Engine::new();
            reference.create_accounts(t0(), accounts);
            reference.create_transfers(t0(), funding());
            for ((secs, batch), crash) in batches.into_iter().zip(crashes) {
                clock.advance(Duration::seconds(secs));
                if crash {
                    faults.next("commit", Fault::Fail);
                }
                let outcome = ledger.create_transfers(&sys, batch.clone()).await;
                // A batch with nothing to persist never reaches the store.
                faults.clear();
                let acknowledged = outcome.is_ok();
                prop_assert!(acknowledged || crash, "{:?}", outcome);
                if acknowledged {
                    let expected = reference.create_transfers(citycard_core::Clock::now(&*clock), batch);
                    prop_assert_eq!(outcome.unwrap(), expected);
                }
            }
            // Drop the engine, reopen on what the store holds.
            drop(ledger);
            let reopened = Ledger::open(inner, clock.clone()).await.unwrap();
            let got = reopened
                .inspect(|e| (e.accounts().collect::<Vec<_>>(), e.live_holds()))
                .await
                .unwrap();
            prop_assert_eq!(got.0, reference.accounts().collect::<Vec<_>>());
            prop_assert_eq!(got.1, reference.live_holds());
            let exported = reopened.export(&sys).await.unwrap();
            prop_assert_eq!(exported.transfers, reference.transfers().to_vec());
            prop_assert_eq!(exported.failures, reference.failures());
            Ok(())
        })?;
    }

    #[test]
    fn a_tiny_window_decides_exactly_like_a_complete_engine(
        accounts in accounts_strategy(),
        batches in batches_strategy(10),
        capacity in 0usize..4,
        reopen_after in 0usize..10,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let store: Arc<dyn LedgerStore> = Arc::new(MemoryLedgerStore::new());
            let clock = Arc::new(ManualClock::new(t0()));
            let sys = Principal::System;
            let mut ledger = Ledger::open(store.clone(), clock.clone())
                .await
                .unwrap()
                .with_transfer_cache(capacity);
            ledger.create_accounts(&sys, accounts.clone()).await.unwrap();
            ledger.create_transfers(&sys, funding()).await.unwrap();
            let mut reference = Engine::new();
            reference.create_accounts(t0(), accounts);
            reference.create_transfers(t0(), funding());
            let mut old = Vec::new();
            for (i, (secs, batch)) in batches.into_iter().enumerate() {
                clock.advance(Duration::seconds(secs));
                let now = citycard_core::Clock::now(&*clock);
                // Each batch also replays a few requests of earlier batches.
                let mut batch = batch;
                batch.extend(old.iter().step_by(3).take(4).cloned());
                let expected = reference.create_transfers(now, batch.clone());
                let got = ledger.create_transfers(&sys, batch.clone()).await.unwrap();
                prop_assert_eq!(got, expected, "batch {}", i);
                old.extend(batch);
                if i == reopen_after {
                    drop(ledger);
                    ledger = Ledger::open(store.clone(), clock.clone())
                        .await
                        .unwrap()
                        .with_transfer_cache(capacity);
                }
                let mine = ledger
                    .inspect(|e| (e.accounts().collect::<Vec<_>>(), e.live_holds(), e.transfer_count()))
                    .await
                    .unwrap();
                prop_assert_eq!(mine.0, reference.accounts().collect::<Vec<_>>());
                prop_assert_eq!(mine.1, reference.live_holds());
                prop_assert_eq!(mine.2, reference.transfer_count());
            }
            Ok(())
        })?;
    }
}
