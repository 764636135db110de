//! Two app instances writing one ledger flat out: they take turns to decide
//! and catch up incrementally (`citycard_ledger::shared`), so every top-up
//! succeeds and is decided once, no commit is ever refused as stale, and a
//! read on the instance that did not write is current.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use citycard_core::{CoreChanges, ManualClock, Money, Principal, StoreError};
use citycard_ledger::{
    Account, AccountId, AccountKind, AccountRange, ChangeSet, CreateTransferResult, Ledger,
    LedgerState, LedgerStore, NewAccount, NewTransfer, PendingStatus, Prefetched, Reference,
    SharedLedgerStore, Snapshot, Transfer, TransferId, WalletHolder, WalletLimits,
    is_stale_version,
};
use citycard_postgres::ledger::PgLedgerStore;
use citycard_postgres::testing::{connect_to, fresh_schema, server_available};

const CLEARING: AccountId = AccountId::new(1);
const METRO: AccountId = AccountId::new(2);
const WALLETS: u64 = 40;

fn wallet(i: u64) -> AccountId {
    AccountId::new(100 + i)
}

/// A store handle that counts its commits and the stale refusals among them,
/// and shares like the handle it wraps.
struct Counting {
    inner: PgLedgerStore,
    commits: Arc<AtomicU32>,
    stale: Arc<AtomicU32>,
}

#[async_trait]
impl LedgerStore for Counting {
    async fn commit(&self, changes: &ChangeSet<'_>, core: &CoreChanges) -> Result<(), StoreError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
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
    fn shared(&self) -> Option<&dyn SharedLedgerStore> {
        self.inner.shared()
    }
}

struct Instance {
    ledger: Arc<Ledger>,
    commits: Arc<AtomicU32>,
    stale: Arc<AtomicU32>,
}

async fn instance(schema: &str, clock: &Arc<ManualClock>) -> Instance {
    let commits = Arc::new(AtomicU32::new(0));
    let stale = Arc::new(AtomicU32::new(0));
    let store = Counting {
        inner: PgLedgerStore::new(connect_to(schema).await),
        commits: commits.clone(),
        stale: stale.clone(),
    };
    let ledger = Ledger::open(Arc::new(store), clock.clone()).await.unwrap();
    Instance {
        ledger: Arc::new(ledger),
        commits,
        stale,
    }
}

async fn open_accounts(ledger: &Ledger) {
    let mut accounts = vec![
        NewAccount::new(CLEARING, AccountKind::TOP_UP_CLEARING),
        NewAccount::new(METRO, AccountKind::OPERATOR_REVENUE),
    ];
    accounts.extend(
        (0..WALLETS)
            .map(|i| WalletLimits::default().wallet(wallet(i), WalletHolder::Registered, None)),
    );
    let results = ledger
        .create_accounts(&Principal::System, accounts)
        .await
        .unwrap();
    assert!(results.iter().all(|r| r.is_success()));
}

/// What the database holds: balances equal to the sums of the stored
/// transfers, no id twice; returns the stored transfers by id.
async fn check_database(schema: &str) -> BTreeMap<TransferId, Transfer> {
    let store = PgLedgerStore::new(connect_to(schema).await);
    let snapshot = store.load().await.unwrap();
    let stored: BTreeMap<TransferId, Transfer> = snapshot
        .transfers
        .iter()
        .map(|t| (t.id, t.clone()))
        .collect();
    assert_eq!(stored.len(), snapshot.transfers.len(), "an id stored twice");
    let mut debits: BTreeMap<AccountId, i64> = BTreeMap::new();
    let mut credits: BTreeMap<AccountId, i64> = BTreeMap::new();
    for t in snapshot.transfers.iter().filter(|t| !t.flags.pending()) {
        *debits.entry(t.debit_account_id).or_default() += t.amount.fen();
        *credits.entry(t.credit_account_id).or_default() += t.amount.fen();
    }
    for a in &store.load_state().await.unwrap().accounts {
        assert_eq!(
            a.balances.debits_posted.fen(),
            debits.get(&a.id).copied().unwrap_or(0),
            "{}",
            a.id
        );
        assert_eq!(
            a.balances.credits_posted.fen(),
            credits.get(&a.id).copied().unwrap_or(0),
            "{}",
            a.id
        );
    }
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contended_top_ups_take_turns_and_never_go_stale() {
    if !server_available() {
        return;
    }
    const CALLERS: u64 = 8;
    const EACH: u64 = 15;
    let schema = fresh_schema().await;
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 29, 8, 0, 0));
    let a = instance(&schema, &clock).await;
    let b = instance(&schema, &clock).await;
    open_accounts(&a.ledger).await;
    let before = (
        a.commits.load(Ordering::SeqCst),
        b.commits.load(Ordering::SeqCst),
    );

    // Both instances top up at once, CALLERS callers each, EACH top-ups per
    // caller, one transfer per batch (as the wallet service sends them).
    let mut tasks = Vec::new();
    for (n, inst) in [&a, &b].into_iter().enumerate() {
        for caller in 0..CALLERS {
            let ledger = inst.ledger.clone();
            tasks.push(tokio::spawn(async move {
                let mut ok = 0;
                for k in 0..EACH {
                    let id = TransferId::new(10_000 + (n as u64) * 1_000 + caller * 100 + k);
                    let to = wallet((caller * 7 + k) % WALLETS);
                    let amount = Money::from_fen(100 + k as i64);
                    let results = ledger
                        .create_transfers(
                            &Principal::System,
                            vec![NewTransfer::new(id, CLEARING, to, amount, 1)],
                        )
                        .await
                        .expect("a top-up is never refused");
                    assert_eq!(results, [CreateTransferResult::Ok]);
                    ok += 1;
                }
                ok
            }));
        }
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    let top_ups = 2 * CALLERS * EACH;
    assert_eq!(ok, top_ups);
    // Each top-up decided once: one commit each, none refused as stale.
    let commits = u64::from(a.commits.load(Ordering::SeqCst) - before.0)
        + u64::from(b.commits.load(Ordering::SeqCst) - before.1);
    assert_eq!(commits, top_ups, "one decision per top-up");
    assert_eq!(a.stale.load(Ordering::SeqCst), 0);
    assert_eq!(b.stale.load(Ordering::SeqCst), 0);
    // Both instances really wrote (neither starved).
    assert!(a.commits.load(Ordering::SeqCst) - before.0 == (CALLERS * EACH) as u32);

    let stored = check_database(&schema).await;
    assert_eq!(stored.len() as u64, top_ups);
    // Each instance's memory equals the database, account by account
    // (after a read, which catches up), and equals a freshly opened ledger's.
    let fresh = Ledger::open(
        Arc::new(PgLedgerStore::new(connect_to(&schema).await)),
        clock.clone(),
    )
    .await
    .unwrap();
    let expected = fresh
        .inspect(|e| e.accounts().collect::<Vec<_>>())
        .await
        .unwrap();
    for inst in [&a, &b] {
        // Inspecting catches the instance's memory up first.
        let seen = inst
            .ledger
            .inspect(|e| (e.accounts().collect::<Vec<_>>(), e.transfer_count()))
            .await
            .unwrap();
        assert_eq!(seen.0, expected);
        assert_eq!(seen.1, top_ups);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_on_the_other_instance_are_current() {
    if !server_available() {
        return;
    }
    let schema = fresh_schema().await;
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 29, 9, 0, 0));
    let a = instance(&schema, &clock).await;
    let b = instance(&schema, &clock).await;
    open_accounts(&a.ledger).await;
    let w = wallet(3);

    // B sees an account A created and a top-up A acknowledged, without
    // writing anything itself.
    let seen = b.ledger.account(&Principal::System, w).await.unwrap();
    assert_eq!(seen.balances.credits_posted, Money::ZERO);
    a.ledger
        .create_transfers(
            &Principal::System,
            vec![NewTransfer::new(
                TransferId::new(1),
                CLEARING,
                w,
                Money::from_yuan(50),
                1,
            )],
        )
        .await
        .unwrap();
    let seen = b.ledger.account(&Principal::System, w).await.unwrap();
    assert_eq!(seen.balances.credits_posted, Money::from_yuan(50));

    // A hold placed on A is live on B; B posts it; A then sees it posted,
    // refuses to void it, and its balances are B's.
    let hold = TransferId::new(2);
    a.ledger
        .create_transfers(
            &Principal::System,
            vec![NewTransfer::pending(
                hold,
                w,
                METRO,
                Money::from_yuan(3),
                2,
                0,
            )],
        )
        .await
        .unwrap();
    assert_eq!(
        b.ledger
            .pending_status(&Principal::System, hold)
            .await
            .unwrap(),
        PendingStatus::Pending
    );
    assert_eq!(
        b.ledger
            .account(&Principal::System, w)
            .await
            .unwrap()
            .balances
            .debits_pending,
        Money::from_yuan(3)
    );
    let post = NewTransfer::post(TransferId::new(3), hold, None);
    assert_eq!(
        b.ledger
            .create_transfers(&Principal::System, vec![post.clone()])
            .await
            .unwrap(),
        [CreateTransferResult::Ok]
    );
    assert_eq!(
        a.ledger
            .pending_status(&Principal::System, hold)
            .await
            .unwrap(),
        PendingStatus::Posted
    );
    let void = NewTransfer::void(TransferId::new(4), hold);
    let results = a
        .ledger
        .create_transfers(&Principal::System, vec![void])
        .await
        .unwrap();
    assert_eq!(
        results,
        [CreateTransferResult::PendingTransferAlreadyPosted]
    );
    let on_a = a.ledger.account(&Principal::System, w).await.unwrap();
    let on_b = b.ledger.account(&Principal::System, w).await.unwrap();
    assert_eq!(on_a.balances, on_b.balances);
    assert_eq!(on_a.balances.debits_posted, Money::from_yuan(3));
    assert_eq!(on_a.balances.debits_pending, Money::ZERO);
    // The post B stored answers `exists` on A.
    let again = NewTransfer::post(TransferId::new(3), hold, None);
    assert_eq!(
        a.ledger
            .create_transfers(&Principal::System, vec![again])
            .await
            .unwrap(),
        [CreateTransferResult::Exists]
    );
    assert_eq!(
        a.stale.load(Ordering::SeqCst) + b.stale.load(Ordering::SeqCst),
        0
    );
    check_database(&schema).await;
}
