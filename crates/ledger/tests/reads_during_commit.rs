//! A balance read never waits behind a batch being committed: it answers
//! from the store, with the balances of the last committed batch, while a
//! settlement chunk holds the engine through its commit.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use async_trait::async_trait;
use citycard_core::{CoreChanges, ManualClock, Money, Principal, StoreError};
use citycard_ledger::{
    Account, AccountFlags, AccountId, AccountKind, AccountRange, ChangeSet, CreateTransferResult,
    Ledger, LedgerState, LedgerStore, MemoryLedgerStore, NewAccount, NewTransfer, Prefetched,
    Reference, Snapshot, Transfer, TransferId,
};
use tokio::sync::{Notify, Semaphore};

const CLEARING: AccountId = AccountId::new(1);
const WALLET: AccountId = AccountId::new(2);

/// A memory store whose commits, once armed, wait for a permit: a commit
/// that takes as long as the test wants.
struct Slow {
    inner: MemoryLedgerStore,
    armed: std::sync::atomic::AtomicBool,
    entered: Notify,
    permits: Semaphore,
}

#[async_trait]
impl LedgerStore for Slow {
    async fn commit(&self, changes: &ChangeSet<'_>, core: &CoreChanges) -> Result<(), StoreError> {
        if self.armed.load(std::sync::atomic::Ordering::SeqCst) {
            self.entered.notify_one();
            self.permits.acquire().await.unwrap().forget();
        }
        self.inner.commit(changes, core).await
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

#[tokio::test]
async fn a_balance_read_answers_while_a_batch_commits_with_the_committed_balance() {
    let store = Arc::new(Slow {
        inner: MemoryLedgerStore::new(),
        armed: false.into(),
        entered: Notify::new(),
        permits: Semaphore::new(0),
    });
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 29, 8, 0, 0));
    let ledger = Arc::new(Ledger::open(store.clone(), clock).await.unwrap());
    let sys = Principal::System;
    ledger
        .create_accounts(
            &sys,
            vec![
                NewAccount::new(CLEARING, AccountKind::TOP_UP_CLEARING),
                NewAccount::new(WALLET, AccountKind::E_WALLET)
                    .with_flags(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
            ],
        )
        .await
        .unwrap();
    let top_up = |id: u64, yuan: i64| {
        vec![NewTransfer::new(
            TransferId::new(id),
            CLEARING,
            WALLET,
            Money::from_yuan(yuan),
            1,
        )]
    };
    assert_eq!(
        ledger.create_transfers(&sys, top_up(1, 10)).await.unwrap(),
        vec![CreateTransferResult::Ok]
    );

    // The next batch's commit stalls inside the store, holding the engine.
    store.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let writer = {
        let ledger = ledger.clone();
        tokio::spawn(async move {
            ledger
                .create_transfers(&Principal::System, top_up(2, 5))
                .await
        })
    };
    store.entered.notified().await;

    // The read completes on its first poll (it awaits nothing the stalled
    // commit holds), and shows the last committed balance, not the batch
    // in flight.
    let read = tokio::select! {
        biased;
        read = ledger.account(&sys, WALLET) => Some(read),
        () = std::future::ready(()) => None,
    };
    let wallet = read
        .expect("the balance read waited behind the commit")
        .unwrap();
    assert_eq!(wallet.posted(), Money::from_yuan(10));
    assert!(!writer.is_finished());

    // Once the commit lands, reads show it.
    store.permits.add_permits(1);
    assert_eq!(
        writer.await.unwrap().unwrap(),
        vec![CreateTransferResult::Ok]
    );
    let wallet = ledger.account(&sys, WALLET).await.unwrap();
    assert_eq!(wallet.posted(), Money::from_yuan(15));
}
