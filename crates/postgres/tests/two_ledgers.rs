//! Two app instances, one ledger: two `Ledger`s with their own pools on one
//! database, committing interleaved and concurrent batches. Neither ever
//! commits a batch decided on state the other has changed (the ledger
//! version refuses it, the instance reloads and decides again), so every
//! acknowledged transfer is stored exactly once and every balance in the
//! database is the sum of its stored transfers, within its flags and limits.
//! The ledger decides a refused batch again itself: alternating callers see
//! no refusal, while the store counts the stale commits it refused.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use citycard_core::{CoreChanges, ManualClock, Money, Principal, StoreError};
use citycard_ledger::{
    Account, AccountId, AccountKind, AccountRange, ChangeSet, CreateTransferResult, Ledger,
    LedgerError, LedgerState, LedgerStore, NewAccount, NewTransfer, Prefetched, Reference,
    Snapshot, Transfer, TransferId, WalletHolder, WalletLimits, is_stale_version,
};
use citycard_postgres::ledger::PgLedgerStore;
use citycard_postgres::testing::{connect_to, fresh_schema, server_available};

const WALLETS: u64 = 12;
const CLEARING: u64 = 1;
const METRO: u64 = 2;

fn wallet(i: u64) -> AccountId {
    AccountId::new(100 + i)
}

/// Round `r`'s batch: top-ups into some wallets, fares out of others (some
/// of which exceed the wallet's balance and fail, by the engine's rule).
fn batch(r: u64) -> Vec<NewTransfer> {
    (0..8)
        .map(|k| {
            let id = TransferId::new(10_000 + r * 100 + k);
            let w = wallet((r * 7 + k * 5) % WALLETS);
            if (r + k).is_multiple_of(3) {
                NewTransfer::new(
                    id,
                    w,
                    AccountId::new(METRO),
                    Money::from_fen(350 + 10 * (k as i64)),
                    2,
                )
            } else {
                NewTransfer::new(
                    id,
                    AccountId::new(CLEARING),
                    w,
                    Money::from_fen(200 + 25 * (r as i64 % 4)),
                    1,
                )
            }
        })
        .collect()
}

/// A store handle that counts the commits it refused as stale.
struct Counting {
    inner: PgLedgerStore,
    stale: Arc<AtomicU32>,
}

#[async_trait]
impl LedgerStore for Counting {
    async fn commit(&self, changes: &ChangeSet<'_>, core: &CoreChanges) -> Result<(), StoreError> {
        let out = self.inner.commit(changes, core).await;
        if out.as_ref().is_err_and(is_stale_version) {
            self.stale.fetch_add(1, Ordering::SeqCst);
        }
        out
    }
    async fn load_state(&self) -> Result<LedgerState, StoreError> {
        self.inner.load_state().await
    }
    async fn prefetch(
        &self,
        ids: &[TransferId],
        holds: &[TransferId],
    ) -> Result<Prefetched, StoreError> {
        self.inner.prefetch(ids, holds).await
    }
    async fn accounts(&self, ids: &[AccountId]) -> Result<Vec<Account>, StoreError> {
        self.inner.accounts(ids).await
    }
    async fn account_transfers(&self, range: &AccountRange) -> Result<Vec<Transfer>, StoreError> {
        self.inner.account_transfers(range).await
    }
    async fn transfers_by_reference(
        &self,
        reference: &Reference,
    ) -> Result<Vec<Transfer>, StoreError> {
        self.inner.transfers_by_reference(reference).await
    }
    async fn load(&self) -> Result<Snapshot, StoreError> {
        self.inner.load().await
    }
}

/// Submits a batch until it is decided on current state; returns its
/// results and how many times it was refused as stale.
async fn submit(ledger: &Ledger, batch: Vec<NewTransfer>) -> (Vec<CreateTransferResult>, u32) {
    let mut refused = 0;
    loop {
        match ledger
            .create_transfers(&Principal::System, batch.clone())
            .await
        {
            Ok(results) => return (results, refused),
            Err(LedgerError::Store(StoreError::Conflict(_))) => refused += 1,
            Err(e) => panic!("unexpected ledger error: {e}"),
        }
        assert!(refused < 50, "a batch was refused 50 times");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_ledgers_on_one_database_never_diverge() {
    if !server_available() {
        return;
    }
    let schema = fresh_schema().await;
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 8, 0, 0));
    let stale = Arc::new(AtomicU32::new(0));
    // Two instances: separate pools, separate store handles, separate ledgers.
    let open = || async {
        Arc::new(
            Ledger::open(
                Arc::new(Counting {
                    inner: PgLedgerStore::new(connect_to(&schema).await),
                    stale: stale.clone(),
                }),
                clock.clone(),
            )
            .await
            .unwrap(),
        )
    };
    let a = open().await;
    let b = open().await;
    let mut accounts = vec![
        NewAccount::new(AccountId::new(CLEARING), AccountKind::TOP_UP_CLEARING),
        NewAccount::new(AccountId::new(METRO), AccountKind::OPERATOR_REVENUE),
    ];
    accounts.extend(
        (0..WALLETS)
            .map(|i| WalletLimits::default().wallet(wallet(i), WalletHolder::Anonymous, None)),
    );
    assert!(
        a.create_accounts(&Principal::System, accounts)
            .await
            .unwrap()
            .iter()
            .all(|r| r.is_success())
    );

    let mut acknowledged: BTreeMap<TransferId, CreateTransferResult> = BTreeMap::new();
    let mut refusals = 0;
    // Interleaved: the instances take turns, each deciding on what it last saw.
    for r in 0..20u64 {
        let ledger = if r.is_multiple_of(2) { &a } else { &b };
        let ids: Vec<TransferId> = batch(r).iter().map(|t| t.id).collect();
        let (results, refused) = submit(ledger, batch(r)).await;
        refusals += refused;
        acknowledged.extend(ids.into_iter().zip(results));
    }
    assert_eq!(refusals, 0, "the ledger decides a stale batch again itself");
    assert!(
        stale.load(Ordering::SeqCst) > 0,
        "alternating instances must have met a stale state"
    );
    // Concurrent: both instances at once, on disjoint and on the same batches.
    let mut tasks = Vec::new();
    for r in 20..40 {
        for ledger in [a.clone(), b.clone()] {
            // Rounds 30.. are submitted by both instances: one transfer each, exactly once.
            let round = if r < 30 && Arc::ptr_eq(&ledger, &b) {
                r + 100
            } else {
                r
            };
            tasks.push(tokio::spawn(async move {
                let ids: Vec<TransferId> = batch(round).iter().map(|t| t.id).collect();
                let (results, _) = submit(&ledger, batch(round)).await;
                ids.into_iter().zip(results).collect::<Vec<_>>()
            }));
        }
    }
    for t in tasks {
        for (id, result) in t.await.unwrap() {
            // Of two submissions of one id, one is `ok` and the other `exists`
            // (or both report the same failure).
            let first = acknowledged.entry(id).or_insert(result);
            if *first != result {
                assert_eq!(
                    first.is_success(),
                    result.is_success(),
                    "{id}: {first:?} vs {result:?}"
                );
                if result.is_success() {
                    *first = CreateTransferResult::Ok;
                }
            }
        }
    }

    // One more batch through each: the second instance catches up first, so
    // its memory then holds exactly what the database holds.
    for (ledger, round) in [(&a, 300), (&b, 301)] {
        let ids: Vec<TransferId> = batch(round).iter().map(|t| t.id).collect();
        let (results, _) = submit(ledger, batch(round)).await;
        acknowledged.extend(ids.into_iter().zip(results));
    }

    // What the database holds, read by a third handle.
    let store = PgLedgerStore::new(connect_to(&schema).await);
    let snapshot = store.load().await.unwrap();
    let stored: BTreeMap<TransferId, _> = snapshot.transfers.iter().map(|t| (t.id, t)).collect();
    assert_eq!(
        stored.len(),
        snapshot.transfers.len(),
        "a transfer id stored twice"
    );
    let succeeded: BTreeSet<TransferId> = acknowledged
        .iter()
        .filter(|(_, r)| r.is_success())
        .map(|(id, _)| *id)
        .collect();
    let in_db: BTreeSet<TransferId> = stored.keys().copied().collect();
    assert_eq!(
        in_db, succeeded,
        "every acknowledged transfer exactly once, nothing else"
    );
    assert!(succeeded.len() > 100 && succeeded.len() < acknowledged.len());

    // Balances are the sums of the stored transfers, within the wallets' rules.
    let mut debits: BTreeMap<AccountId, i64> = BTreeMap::new();
    let mut credits: BTreeMap<AccountId, i64> = BTreeMap::new();
    for t in &snapshot.transfers {
        *debits.entry(t.debit_account_id).or_default() += t.amount.fen();
        *credits.entry(t.credit_account_id).or_default() += t.amount.fen();
    }
    let state = store.load_state().await.unwrap();
    for account in &state.accounts {
        let bal = account.balances;
        assert_eq!(
            bal.debits_posted.fen(),
            debits.get(&account.id).copied().unwrap_or(0),
            "{}",
            account.id
        );
        assert_eq!(
            bal.credits_posted.fen(),
            credits.get(&account.id).copied().unwrap_or(0),
            "{}",
            account.id
        );
        if account.kind == AccountKind::E_WALLET {
            assert!(
                bal.debits_posted <= bal.credits_posted,
                "wallet {} overdrawn",
                account.id
            );
            if let Some(limit) = account.upper_limit {
                assert!(bal.credits_posted.fen() - bal.debits_posted.fen() <= limit.fen());
            }
        }
    }
    for account in &state.accounts {
        let seen = b.account(&Principal::System, account.id).await.unwrap();
        assert_eq!(
            seen.balances, account.balances,
            "instance b's view of {}",
            account.id
        );
    }
    let reopened = Ledger::open(Arc::new(store.handle()), clock).await.unwrap();
    for account in &state.accounts {
        assert_eq!(
            reopened
                .account(&Principal::System, account.id)
                .await
                .unwrap()
                .balances,
            account.balances
        );
    }
}
