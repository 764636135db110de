//! Several ledger instances on one store: a batch the store refuses as
//! decided on a stale state is decided again by the ledger itself (bounded),
//! while any other conflict reaches the caller at once.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use citycard_core::{AuditRecord, CoreChanges, ManualClock, Money, Principal, StoreError};
use citycard_ledger::{
    Account, AccountId, AccountKind, AccountRange, ChangeSet, CommitWith,
    CreateTransferResult as R, Ledger, LedgerError, LedgerState, LedgerStore, MemoryLedgerStore,
    NewAccount, NewTransfer, Prefetched, Reference, Snapshot, Transfer, TransferId,
    is_stale_version, stale_version,
};

const CLEARING: AccountId = AccountId::new(1);
const WALLET: AccountId = AccountId::new(2);
const METRO: AccountId = AccountId::new(3);

/// One shared memory store with a version, as the PostgreSQL store keeps
/// one: each handle remembers the version its ledger loaded, and a commit
/// from a handle whose version moved is refused as stale.
struct Shared {
    inner: MemoryLedgerStore,
    version: tokio::sync::Mutex<u64>,
}

struct Handle {
    shared: Arc<Shared>,
    remembered: Mutex<u64>,
    /// Refuse this many more commits as stale regardless of the version.
    refuse: AtomicU32,
    /// Commits refused as stale so far.
    refused: AtomicU32,
}

impl Handle {
    fn new(shared: &Arc<Shared>) -> Arc<Handle> {
        Arc::new(Handle {
            shared: shared.clone(),
            remembered: Mutex::new(0),
            refuse: AtomicU32::new(0),
            refused: AtomicU32::new(0),
        })
    }
}

#[async_trait]
impl LedgerStore for Handle {
    async fn commit(&self, changes: &ChangeSet<'_>, core: &CoreChanges) -> Result<(), StoreError> {
        let forced = self
            .refuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let mut version = self.shared.version.lock().await;
        let remembered = *self.remembered.lock().unwrap();
        if forced || remembered != *version {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(stale_version("another instance committed"));
        }
        self.shared.inner.commit(changes, core).await?;
        *version += 1;
        *self.remembered.lock().unwrap() = *version;
        Ok(())
    }
    async fn load_state(&self) -> Result<LedgerState, StoreError> {
        let version = self.shared.version.lock().await;
        let state = self.shared.inner.load_state().await?;
        *self.remembered.lock().unwrap() = *version;
        Ok(state)
    }
    async fn prefetch(
        &self,
        ids: &[TransferId],
        holds: &[TransferId],
    ) -> Result<Prefetched, StoreError> {
        self.shared.inner.prefetch(ids, holds).await
    }
    async fn accounts(&self, ids: &[AccountId]) -> Result<Vec<Account>, StoreError> {
        self.shared.inner.accounts(ids).await
    }
    async fn account_transfers(&self, range: &AccountRange) -> Result<Vec<Transfer>, StoreError> {
        self.shared.inner.account_transfers(range).await
    }
    async fn transfers_by_reference(
        &self,
        reference: &Reference,
    ) -> Result<Vec<Transfer>, StoreError> {
        self.shared.inner.transfers_by_reference(reference).await
    }
    async fn load(&self) -> Result<Snapshot, StoreError> {
        self.shared.inner.load().await
    }
}

fn shared() -> Arc<Shared> {
    Arc::new(Shared {
        inner: MemoryLedgerStore::new(),
        version: tokio::sync::Mutex::new(0),
    })
}

async fn instance(shared: &Arc<Shared>) -> (Ledger, Arc<Handle>) {
    let handle = Handle::new(shared);
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 8, 0, 0));
    let ledger = Ledger::open(handle.clone(), clock).await.unwrap();
    (ledger, handle)
}

fn id(n: u64) -> TransferId {
    TransferId::new(n)
}

const SYS: Principal = Principal::System;

#[tokio::test]
async fn two_instances_interleave_and_each_decides_on_what_the_other_wrote() {
    let shared = shared();
    let (a, a_store) = instance(&shared).await;
    let (b, b_store) = instance(&shared).await;
    // A opens the accounts; B has not seen them.
    a.create_accounts(
        &SYS,
        vec![
            NewAccount::new(CLEARING, AccountKind::TOP_UP_CLEARING),
            NewAccount::new(WALLET, AccountKind::E_WALLET)
                .with_flags(citycard_ledger::AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
            NewAccount::new(METRO, AccountKind::OPERATOR_REVENUE),
        ],
    )
    .await
    .unwrap();
    // B tops up ¥10: its state is stale (no accounts), the store refuses,
    // B reloads and decides again: the top-up succeeds.
    let r = b
        .create_transfers(
            &SYS,
            vec![NewTransfer::new(
                id(1),
                CLEARING,
                WALLET,
                Money::from_yuan(10),
                1,
            )],
        )
        .await
        .unwrap();
    assert_eq!(r, vec![R::Ok]);
    assert_eq!(b_store.refused.load(Ordering::SeqCst), 1);
    // A charges ¥8 on its stale view (balance 0 there): decided again, it sees ¥10.
    let r = a
        .create_transfers(
            &SYS,
            vec![NewTransfer::new(
                id(2),
                WALLET,
                METRO,
                Money::from_yuan(8),
                2,
            )],
        )
        .await
        .unwrap();
    assert_eq!(r, vec![R::Ok]);
    assert_eq!(a_store.refused.load(Ordering::SeqCst), 1);
    // B charges ¥5 on its stale view (¥10 there): decided again, only ¥2 is left.
    let r = b
        .create_transfers(
            &SYS,
            vec![NewTransfer::new(
                id(3),
                WALLET,
                METRO,
                Money::from_yuan(5),
                2,
            )],
        )
        .await
        .unwrap();
    assert_eq!(r, vec![R::ExceedsCredits]);
    // A replays B's top-up: it exists, whoever wrote it.
    let r = a
        .create_transfers(
            &SYS,
            vec![NewTransfer::new(
                id(1),
                CLEARING,
                WALLET,
                Money::from_yuan(10),
                1,
            )],
        )
        .await
        .unwrap();
    assert_eq!(r, vec![R::Exists]);
    let stored = shared.inner.load().await.unwrap();
    let posted: Vec<u64> = stored.transfers.iter().map(|t| t.id.get()).collect();
    assert_eq!(posted, vec![1, 2], "each acknowledged transfer once");
    for ledger in [&a, &b] {
        assert_eq!(
            ledger.account(&SYS, WALLET).await.unwrap().posted(),
            Money::from_yuan(2)
        );
    }
}

#[tokio::test]
async fn a_store_that_stays_stale_is_given_up_on_with_a_conflict() {
    let shared = shared();
    let (a, store) = instance(&shared).await;
    store.refuse.store(u32::MAX, Ordering::SeqCst);
    let e = a
        .create_accounts(
            &SYS,
            vec![NewAccount::new(CLEARING, AccountKind::TOP_UP_CLEARING)],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, LedgerError::Store(s) if is_stale_version(s)),
        "{e:?}"
    );
    assert_eq!(
        store.refused.load(Ordering::SeqCst),
        citycard_ledger::MAX_DECISIONS,
        "bounded"
    );
    // Nothing was stored and the ledger still works once the store does.
    store.refuse.store(0, Ordering::SeqCst);
    assert!(shared.inner.load().await.unwrap().accounts.is_empty());
    let r = a
        .create_accounts(
            &SYS,
            vec![NewAccount::new(CLEARING, AccountKind::TOP_UP_CLEARING)],
        )
        .await
        .unwrap();
    assert!(r[0].is_success());
}

/// A caller's commit: refuses its first `stale` calls as stale, then fails
/// with `then` (or writes through the store when `None`); counts calls and
/// remembers the results it was given.
struct CallerCommit {
    store: Arc<Handle>,
    stale: u32,
    then: Option<StoreError>,
    calls: u32,
    seen: Vec<Vec<R>>,
}

#[async_trait]
impl CommitWith for CallerCommit {
    type Output = u32;
    async fn commit(
        &mut self,
        results: &[R],
        changes: &ChangeSet<'_>,
        audit: AuditRecord,
    ) -> Result<u32, StoreError> {
        self.calls += 1;
        self.seen.push(results.to_vec());
        if self.stale > 0 {
            self.stale -= 1;
            return Err(stale_version("test"));
        }
        if let Some(e) = self.then.clone() {
            return Err(e);
        }
        self.store
            .commit(changes, &CoreChanges::audited(audit))
            .await?;
        Ok(self.calls)
    }
}

async fn funded() -> (Arc<Shared>, Ledger, Arc<Handle>) {
    let shared = shared();
    let (a, store) = instance(&shared).await;
    a.create_accounts(
        &SYS,
        vec![
            NewAccount::new(CLEARING, AccountKind::TOP_UP_CLEARING),
            NewAccount::new(WALLET, AccountKind::E_WALLET),
        ],
    )
    .await
    .unwrap();
    (shared, a, store)
}

#[tokio::test]
async fn a_callers_commit_is_called_again_after_a_stale_refusal() {
    let (shared, a, store) = funded().await;
    let commit = CallerCommit {
        store,
        stale: 2,
        then: None,
        calls: 0,
        seen: Vec::new(),
    };
    let (r, calls) = a
        .create_transfers_with(
            &SYS,
            vec![NewTransfer::new(
                id(7),
                CLEARING,
                WALLET,
                Money::from_yuan(3),
                1,
            )],
            commit,
        )
        .await
        .unwrap();
    assert_eq!(r, vec![R::Ok]);
    assert_eq!(calls, 3, "two stale refusals, then the commit");
    assert_eq!(shared.inner.load().await.unwrap().transfers.len(), 1);
}

#[tokio::test]
async fn a_conflict_of_the_callers_own_rows_reaches_the_caller_at_once() {
    let (shared, a, store) = funded().await;
    let own = StoreError::Conflict("the idempotency key's outcome differs".into());
    assert!(!is_stale_version(&own));
    let mut commit = CallerCommit {
        store,
        stale: 0,
        then: Some(own.clone()),
        calls: 0,
        seen: Vec::new(),
    };
    let e = a
        .create_transfers_with(
            &SYS,
            vec![NewTransfer::new(
                id(8),
                CLEARING,
                WALLET,
                Money::from_yuan(3),
                1,
            )],
            &mut commit,
        )
        .await
        .unwrap_err();
    assert_eq!(e, LedgerError::Store(own));
    assert_eq!(commit.calls, 1, "not retried");
    assert!(shared.inner.load().await.unwrap().transfers.is_empty());
    // The ledger forgot the batch: submitting it again decides it afresh.
    assert_eq!(commit.seen, vec![vec![R::Ok]]);
}

#[async_trait]
impl CommitWith for &mut CallerCommit {
    type Output = u32;
    async fn commit(
        &mut self,
        results: &[R],
        changes: &ChangeSet<'_>,
        audit: AuditRecord,
    ) -> Result<u32, StoreError> {
        (**self).commit(results, changes, audit).await
    }
}
