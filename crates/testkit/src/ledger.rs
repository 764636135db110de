//! Test support for citycard-ledger: conformance suites for its storage ports,
//! fault-injecting doubles of its remote ports, and proptest strategies.
//!
//! Longer than ≈800 lines: the conformance suite is one macro, one item.

use std::sync::Arc;

use async_trait::async_trait;
use citycard_core::{CoreChanges, Money, StoreError};
use citycard_ledger::{
    Account, AccountFlags, AccountId, AccountKind, AccountRange, ChangeSet, LedgerState,
    LedgerStore, NewAccount, NewTransfer, Prefetched, Reference, Snapshot, Transfer, TransferFlags,
    TransferId,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

use crate::faults::{Fault, Faults};

/// A [`LedgerStore`] double that injects faults on `commit`, `load` (opening
/// reads: `load_state` and `load`), `prefetch` and `read` (history queries).
///
/// [`Fault::Fail`] and [`Fault::Timeout`] fail before writing anything (a crash
/// before the commit); [`Fault::UnknownOutcome`] commits, then reports failure
/// (a crash after the commit, before the acknowledgement).
#[derive(Clone)]
pub struct FaultyLedgerStore {
    inner: Arc<dyn LedgerStore>,
    faults: Faults,
}

impl std::fmt::Debug for FaultyLedgerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaultyLedgerStore")
    }
}

impl FaultyLedgerStore {
    /// Wraps a store; script faults on the returned [`Faults`].
    pub fn new(inner: Arc<dyn LedgerStore>) -> (Self, Faults) {
        let faults = Faults::new();
        (
            Self {
                inner,
                faults: faults.clone(),
            },
            faults,
        )
    }
}

#[async_trait]
impl LedgerStore for FaultyLedgerStore {
    async fn commit(&self, changes: &ChangeSet<'_>, core: &CoreChanges) -> Result<(), StoreError> {
        match self.faults.check("commit") {
            Fault::None => self.inner.commit(changes, core).await,
            Fault::Fail => Err(StoreError::Unavailable("injected failure".into())),
            Fault::Timeout => Err(StoreError::Unavailable("injected timeout".into())),
            Fault::UnknownOutcome => {
                self.inner.commit(changes, core).await?;
                Err(StoreError::Unavailable(
                    "injected lost acknowledgement".into(),
                ))
            }
        }
    }

    async fn load_state(&self) -> Result<LedgerState, StoreError> {
        self.read_fault("load")?;
        self.inner.load_state().await
    }

    async fn prefetch(
        &self,
        ids: &[TransferId],
        holds: &[TransferId],
    ) -> Result<Prefetched, StoreError> {
        self.read_fault("prefetch")?;
        self.inner.prefetch(ids, holds).await
    }

    async fn accounts(&self, ids: &[AccountId]) -> Result<Vec<Account>, StoreError> {
        self.read_fault("accounts")?;
        self.inner.accounts(ids).await
    }

    async fn account_transfers(&self, range: &AccountRange) -> Result<Vec<Transfer>, StoreError> {
        self.read_fault("read")?;
        self.inner.account_transfers(range).await
    }

    async fn transfers_by_reference(
        &self,
        reference: &Reference,
    ) -> Result<Vec<Transfer>, StoreError> {
        self.read_fault("read")?;
        self.inner.transfers_by_reference(reference).await
    }

    async fn load(&self) -> Result<Snapshot, StoreError> {
        self.read_fault("load")?;
        self.inner.load().await
    }
}

impl FaultyLedgerStore {
    /// A scripted failure of a read (`UnknownOutcome` reads normally).
    fn read_fault(&self, operation: &str) -> Result<(), StoreError> {
        match self.faults.check(operation) {
            Fault::None | Fault::UnknownOutcome => Ok(()),
            Fault::Fail | Fault::Timeout => Err(StoreError::Unavailable(format!(
                "injected {operation} failure"
            ))),
        }
    }
}

/// Account ids `1..=accounts`.
pub fn account_id(accounts: u64) -> impl Strategy<Value = AccountId> {
    (1..=accounts.max(1)).prop_map(AccountId::new)
}

/// Account flags a generated account may carry (no overdraft, or the mirror, or none; history sometimes).
pub fn account_flags() -> impl Strategy<Value = AccountFlags> {
    (0u8..3, any::<bool>()).prop_map(|(balance, history)| {
        let f = match balance {
            0 => AccountFlags::NONE,
            1 => AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
            _ => AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
        };
        if history {
            f | AccountFlags::HISTORY
        } else {
            f
        }
    })
}

/// A random transfer request among `accounts` accounts, with ids drawn from
/// `ids+1..=2*ids` (so some collide, exercising replays), except holds, whose
/// ids come from `1..=ids/4` like the holds posts and voids name, so they
/// meet; half carry one of four trip references; of every kind: plain,
/// pending with or without a timeout, post (full or partial), void,
/// balancing; one in five is linked to the next.
pub fn new_transfer(accounts: u64, ids: u64) -> impl Strategy<Value = NewTransfer> {
    (
        1..=ids.max(1),
        account_id(accounts),
        account_id(accounts),
        0i64..5_000,
        0u8..10,
        1..=(ids / 4).max(1),
        0u8..5,
        0u32..3,
        0u8..8,
    )
        .prop_map(
            move |(id, debit, credit, fen, kind, pending, linked, timeout, reference)| {
                // Holds take ids in 1..=ids/4, everything else above `ids`.
                let id = TransferId::new(id + ids);
                let amount = Money::from_fen(fen);
                let mut t = match kind {
                    0..=2 => NewTransfer::new(id, debit, credit, amount, 1),
                    3 | 4 => NewTransfer::pending(
                        TransferId::new(pending),
                        debit,
                        credit,
                        amount,
                        2,
                        timeout * 60,
                    ),
                    5 | 6 => NewTransfer::post(
                        id,
                        TransferId::new(pending),
                        (fen % 2 == 0).then_some(amount),
                    ),
                    7 => NewTransfer::void(id, TransferId::new(pending)),
                    8 => NewTransfer::new(id, debit, credit, amount, 1)
                        .with_flags(TransferFlags::BALANCING_DEBIT),
                    _ => NewTransfer::new(id, debit, credit, amount, 1)
                        .with_flags(TransferFlags::BALANCING_CREDIT),
                };
                if reference < 4 {
                    t.reference = Reference::trip(&format!("T-{reference}")).ok();
                }
                if linked == 0 {
                    t.flags = t.flags | TransferFlags::LINKED;
                }
                t
            },
        )
}

/// Accounts `1..=accounts` with random balance flags, history and limits
/// (deterministic for a seed).
pub fn random_accounts(seed: u64, accounts: u64) -> Vec<NewAccount> {
    let mut runner = seeded_runner(seed);
    (1..=accounts)
        .map(|i| {
            let flags = account_flags()
                .new_tree(&mut runner)
                .map(|t| t.current())
                .unwrap_or(AccountFlags::NONE);
            let limit = proptest::option::of(1i64..20_000)
                .new_tree(&mut runner)
                .ok()
                .and_then(|t| t.current());
            let mut a = NewAccount::new(AccountId::new(i), AccountKind(i as u16)).with_flags(flags);
            a.upper_limit = limit.map(Money::from_fen);
            a
        })
        .collect()
}

/// A funding batch: every account pays every other up to ¥30 (balancing
/// debits), so constrained accounts hold money before random batches run.
pub fn funding_batch(accounts: u64) -> Vec<NewTransfer> {
    (1..=accounts)
        .flat_map(|to| {
            (1..=accounts)
                .filter(move |&from| from != to)
                .map(move |from| {
                    NewTransfer::new(
                        TransferId::new(1_000_000 + from * 1_000 + to),
                        AccountId::new(from),
                        AccountId::new(to),
                        Money::from_fen(3_000),
                        1,
                    )
                    .with_flags(TransferFlags::BALANCING_DEBIT)
                })
        })
        .collect()
}

/// Random batches of [`new_transfer`] requests, each with the seconds to
/// advance the clock by first (deterministic for a seed).
pub fn random_batches(
    seed: u64,
    batches: usize,
    accounts: u64,
    ids: u64,
) -> Vec<(i64, Vec<NewTransfer>)> {
    let mut runner = seeded_runner(seed);
    let strategy = (
        0i64..150,
        proptest::collection::vec(new_transfer(accounts, ids), 0..12),
    );
    (0..batches)
        .filter_map(|_| strategy.new_tree(&mut runner).ok().map(|t| t.current()))
        .collect()
}

fn seeded_runner(seed: u64) -> proptest::test_runner::TestRunner {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    proptest::test_runner::TestRunner::new_with_rng(
        proptest::test_runner::Config::default(),
        proptest::test_runner::TestRng::from_seed(
            proptest::test_runner::RngAlgorithm::ChaCha,
            &bytes,
        ),
    )
}

/// The conformance suite for [`LedgerStore`](citycard_ledger::LedgerStore).
///
/// Takes the name of an `async fn() -> S` returning a fresh, empty store
/// (`S: LedgerStore + 'static`). Besides the port's own contract it checks,
/// through a [`Ledger`](citycard_ledger::Ledger), that reopening on the store
/// rebuilds exactly the acknowledged state.
#[macro_export]
macro_rules! ledger_store_conformance {
    ($factory:ident) => {
        $crate::ledger_store_conformance!(@suite $factory, $crate::backend_available);
    };
    ($factory:ident, available = $available:ident) => {
        $crate::ledger_store_conformance!(@suite $factory, super::$available);
    };
    (@suite $factory:ident, $available:path) => {
        #[allow(clippy::unwrap_used)]
        mod ledger_store_conformance {
            use std::sync::Arc;

            use $crate::__private::chrono::{DateTime, Duration, Utc};
            use $crate::__private::citycard_core::{
                Clock, ManualClock, Money, PersonId, Principal,
            };
            use $crate::__private::citycard_ledger::{
                Account, AccountBalance, AccountFlags, AccountId, AccountKind, AccountRange,
                Balances, ChangeSet, CreateAccountResult, CreateTransferResult, Engine, Expiry,
                FailedTransfer, Ledger, LedgerStore, NewAccount, NewTransfer, Owner, PendingStatus,
                Reference, Transfer, TransferFlags, TransferId, WalletHolder, WalletLimits,
            };

            fn at(nanos: i64) -> DateTime<Utc> {
                DateTime::from_timestamp_nanos(1_790_000_000_000_000_000 + nanos)
            }

            fn account(id: u64, nanos: i64) -> Account {
                Account {
                    id: AccountId::new(id),
                    kind: AccountKind::E_WALLET,
                    currency: $crate::__private::citycard_ledger::Currency::CNY,
                    flags: AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags::HISTORY,
                    upper_limit: Some(Money::from_yuan(1000)),
                    owner: Some(Owner::Person(PersonId::parse("psn-1").unwrap())),
                    metadata: [("holder".to_owned(), "anonymous".to_owned())].into(),
                    balances: Balances::default(),
                    created_at: at(nanos),
                }
            }

            fn transfer(id: u64, debit: u64, credit: u64, fen: i64, nanos: i64) -> Transfer {
                Transfer {
                    id: TransferId::new(id),
                    debit_account_id: AccountId::new(debit),
                    credit_account_id: AccountId::new(credit),
                    amount: Money::from_fen(fen),
                    pending_id: None,
                    timeout_secs: 0,
                    currency: $crate::__private::citycard_ledger::Currency::CNY,
                    code: 7,
                    flags: TransferFlags::NONE,
                    reference: None,
                    memo: None,
                    timestamp: at(nanos),
                }
            }

            #[tokio::test]
            async fn a_new_store_loads_empty() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                assert_eq!(store.load_state().await.unwrap(), Default::default());
                let s = store.load().await.unwrap();
                assert!(s.accounts.is_empty() && s.transfers.is_empty());
                assert!(s.expiries.is_empty() && s.failures.is_empty());
                store
                    .commit(&ChangeSet::default(), &Default::default())
                    .await
                    .unwrap();
                assert_eq!(store.load().await.unwrap(), s);
            }

            #[tokio::test]
            async fn every_field_round_trips_including_ids_above_i64_max() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let big = u64::MAX - 1;
                let mut plain = account(big, 1);
                plain.owner = Some(Owner::Organisation("metro-1".into()));
                plain.metadata.clear();
                plain.upper_limit = None;
                plain.kind = AccountKind(900);
                plain.flags = AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS;
                let accounts = vec![account(1, 0), plain];
                store
                    .commit(
                        &ChangeSet {
                            accounts: &accounts,
                            ..ChangeSet::default()
                        },
                        &Default::default(),
                    )
                    .await
                    .unwrap();
                let mut hold = transfer(u64::MAX - 2, big, 1, 450, 2);
                hold.flags = TransferFlags::PENDING | TransferFlags::LINKED;
                hold.timeout_secs = 3600;
                hold.reference = Some(Reference::trip("T-9").unwrap());
                hold.memo = Some("地铁 1号线 ride".into());
                let mut post = transfer(5, big, 1, 300, 3);
                post.flags = TransferFlags::POST_PENDING_TRANSFER;
                post.pending_id = Some(TransferId::new(u64::MAX - 2));
                let transfers = vec![hold, post];
                let expiries = vec![Expiry {
                    transfer_id: TransferId::new(77),
                    timestamp: at(4),
                }];
                let failures = vec![FailedTransfer {
                    id: TransferId::new(u64::MAX - 9),
                    result: CreateTransferResult::ExceedsCredits,
                }];
                store
                    .commit(
                        &ChangeSet {
                            accounts: &[],
                            transfers: &transfers,
                            expiries: &expiries,
                            failures: &failures,
                            ..ChangeSet::default()
                        },
                        &Default::default(),
                    )
                    .await
                    .unwrap();
                let mut s = store.load().await.unwrap();
                s.accounts.sort_by_key(|a| a.created_at);
                s.transfers.sort_by_key(|t| t.timestamp);
                assert_eq!(s.accounts, accounts);
                assert_eq!(s.transfers, transfers);
                assert_eq!(s.expiries, expiries);
                assert_eq!(s.failures, failures);
            }

            #[tokio::test]
            async fn batches_accumulate() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let accounts = vec![account(1, 0), account(2, 1)];
                store
                    .commit(
                        &ChangeSet {
                            accounts: &accounts,
                            ..ChangeSet::default()
                        },
                        &Default::default(),
                    )
                    .await
                    .unwrap();
                for batch in 0..3i64 {
                    let transfers: Vec<Transfer> = (0..100)
                        .map(|i| {
                            let n = batch * 100 + i;
                            transfer(1000 + n as u64, 1, 2, 1 + n, 10 + n)
                        })
                        .collect();
                    store
                        .commit(
                            &ChangeSet {
                                transfers: &transfers,
                                ..ChangeSet::default()
                            },
                            &Default::default(),
                        )
                        .await
                        .unwrap();
                }
                let mut s = store.load().await.unwrap();
                s.transfers.sort_by_key(|t| t.timestamp);
                assert_eq!(s.transfers.len(), 300);
                let total: i64 = s.transfers.iter().map(|t| t.amount.fen()).sum();
                assert_eq!(total, (1..=300).sum::<i64>());
                assert_eq!(s.transfers[299].id, TransferId::new(1299));
            }

            #[tokio::test]
            async fn accounts_read_back_with_their_committed_balances() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let accounts = vec![account(1, 0), account(2, 1)];
                store
                    .commit(
                        &ChangeSet {
                            accounts: &accounts,
                            ..ChangeSet::default()
                        },
                        &Default::default(),
                    )
                    .await
                    .unwrap();
                let fresh = store.accounts(&[AccountId::new(2)]).await.unwrap();
                assert_eq!(fresh, vec![accounts[1].clone()]);
                for (n, fen) in [(0i64, 250i64), (1, 400)] {
                    let transfers = vec![transfer(10 + n as u64, 1, 2, fen, 10 + n)];
                    let credited = Balances {
                        credits_posted: Money::from_fen(if n == 0 { 250 } else { 650 }),
                        ..Balances::default()
                    };
                    let balances = vec![AccountBalance {
                        id: AccountId::new(2),
                        balances: credited,
                        flags: accounts[1].flags | AccountFlags::CLOSED,
                    }];
                    store
                        .commit(
                            &ChangeSet {
                                transfers: &transfers,
                                balances: &balances,
                                ..ChangeSet::default()
                            },
                            &Default::default(),
                        )
                        .await
                        .unwrap();
                }
                let mut read = store
                    .accounts(&[AccountId::new(99), AccountId::new(2), AccountId::new(1)])
                    .await
                    .unwrap();
                read.sort_by_key(|a| a.id);
                assert_eq!(read.len(), 2, "an id never stored is left out");
                assert_eq!(read[0], accounts[0]);
                let wallet = &read[1];
                assert_eq!(wallet.balances.credits_posted, Money::from_fen(650));
                assert!(wallet.is_closed());
                assert_eq!(wallet.owner, accounts[1].owner);
                assert_eq!(wallet.metadata, accounts[1].metadata);
                assert!(store.accounts(&[]).await.unwrap().is_empty());
            }

            #[tokio::test]
            async fn a_failed_commit_stores_nothing() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let first = vec![account(1, 0)];
                store
                    .commit(
                        &ChangeSet {
                            accounts: &first,
                            ..ChangeSet::default()
                        },
                        &Default::default(),
                    )
                    .await
                    .unwrap();
                // Account 1 again (a second row with its id) must fail the whole change set.
                let clash = vec![account(2, 5), account(1, 6)];
                let transfers = vec![transfer(9, 1, 2, 100, 7)];
                assert!(
                    store
                        .commit(
                            &ChangeSet {
                                accounts: &clash,
                                transfers: &transfers,
                                ..ChangeSet::default()
                            },
                            &Default::default()
                        )
                        .await
                        .is_err()
                );
                let s = store.load().await.unwrap();
                assert_eq!(s.accounts, first);
                assert!(s.transfers.is_empty());
            }

            #[tokio::test]
            async fn a_stored_transfer_id_deep_in_a_large_batch_refuses_all_of_it() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let accounts = vec![account(1, 0), account(2, 1)];
                let stored = vec![transfer(70, 1, 2, 5, 2)];
                store
                    .commit(
                        &ChangeSet {
                            accounts: &accounts,
                            transfers: &stored,
                            ..ChangeSet::default()
                        },
                        &Default::default(),
                    )
                    .await
                    .unwrap();
                // 200 transfers (several multi-row statements); the 70th
                // carries the id already stored.
                let batch: Vec<Transfer> =
                    (1..=200).map(|n| transfer(n, 1, 2, 1, 10 + n as i64)).collect();
                let clash = store
                    .commit(
                        &ChangeSet {
                            transfers: &batch,
                            ..ChangeSet::default()
                        },
                        &Default::default(),
                    )
                    .await;
                assert!(clash.is_err());
                let s = store.load().await.unwrap();
                assert_eq!(s.transfers, stored);
                // The store is usable afterwards: the batch without the clash lands.
                let rest: Vec<Transfer> = batch.into_iter().filter(|t| t.id.get() != 70).collect();
                store
                    .commit(
                        &ChangeSet {
                            transfers: &rest,
                            ..ChangeSet::default()
                        },
                        &Default::default(),
                    )
                    .await
                    .unwrap();
                assert_eq!(store.load().await.unwrap().transfers.len(), 200);
            }

            async fn fixture(store: Arc<dyn LedgerStore>, clock: Arc<ManualClock>) -> Ledger {
                let ledger = Ledger::open(store, clock).await.unwrap();
                let system = Principal::System;
                let limits = WalletLimits::default();
                let r = ledger
                    .create_accounts(
                        &system,
                        vec![
                            NewAccount::new(AccountId::new(1), AccountKind::TOP_UP_CLEARING),
                            limits.wallet(AccountId::new(2), WalletHolder::Registered, None),
                            NewAccount::new(AccountId::new(3), AccountKind::OPERATOR_REVENUE),
                            NewAccount::new(AccountId::new(4), AccountKind::CONTROL),
                        ],
                    )
                    .await
                    .unwrap();
                assert!(r.iter().all(|r| *r == CreateAccountResult::Ok));
                ledger
            }

            #[tokio::test]
            async fn reopening_rebuilds_exactly_the_acknowledged_state() {
                if !$available() {
                    return;
                }
                let store: Arc<dyn LedgerStore> = Arc::new(super::$factory().await);
                let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 8, 0, 0));
                let system = Principal::System;
                let ledger = fixture(store.clone(), clock.clone()).await;
                let (c, w, m) = (AccountId::new(1), AccountId::new(2), AccountId::new(3));
                let id = TransferId::new;
                let batch = vec![
                    NewTransfer::new(id(10), c, w, Money::from_yuan(100), 1)
                        .with_reference(Reference::top_up_order("O-1").unwrap())
                        .with_memo("top-up"),
                    NewTransfer::pending(id(11), w, m, Money::from_yuan(5), 2, 60),
                    NewTransfer::pending(id(12), w, m, Money::from_yuan(6), 2, 0),
                    NewTransfer::pending(id(13), w, m, Money::from_yuan(7), 2, 0),
                    NewTransfer::new(id(14), w, m, Money::from_yuan(1000), 1),
                ];
                let r = ledger.create_transfers(&system, batch).await.unwrap();
                assert_eq!(r[4], CreateTransferResult::ExceedsCredits);
                clock.advance(Duration::seconds(30));
                let r = ledger
                    .create_transfers(
                        &system,
                        vec![
                            NewTransfer::post(id(20), id(12), Some(Money::from_yuan(4))),
                            NewTransfer::void(id(21), id(13)),
                            NewTransfer::new(id(22), w, m, Money::from_yuan(1), 3)
                                .with_flags(TransferFlags::LINKED),
                            NewTransfer::new(id(23), w, m, Money::from_yuan(5000), 3),
                        ],
                    )
                    .await
                    .unwrap();
                assert_eq!(
                    r,
                    [
                        CreateTransferResult::Ok,
                        CreateTransferResult::Ok,
                        CreateTransferResult::LinkedEventFailed,
                        CreateTransferResult::ExceedsCredits,
                    ]
                );
                clock.advance(Duration::seconds(31));
                assert_eq!(ledger.expire_pending(&system).await.unwrap(), 1);
                let state = |e: &Engine| {
                    (
                        e.accounts().collect::<Vec<_>>(),
                        e.live_holds(),
                        e.transfer_count(),
                    )
                };
                let before = ledger.inspect(state).await.unwrap();
                let exported = ledger.export(&system).await.unwrap();
                drop(ledger);
                let reopened = Ledger::open(store.clone(), clock.clone()).await.unwrap();
                let after = reopened.inspect(state).await.unwrap();
                assert_eq!(before, after);
                assert!(
                    after.1.is_empty(),
                    "every hold was posted, voided or expired"
                );
                assert_eq!(after.2, 6);
                assert_eq!(reopened.export(&system).await.unwrap(), exported);
                // Opening read state, not history: the window is empty.
                assert!(
                    reopened
                        .inspect(|e: &Engine| e.transfers().is_empty())
                        .await
                        .unwrap()
                );
                let wallet = reopened.account(&system, w).await.unwrap();
                // 100 in, 4 posted out; holds 11 (expired) and 13 (voided) released.
                assert_eq!(wallet.posted(), Money::from_yuan(96));
                assert_eq!(wallet.balances.debits_pending, Money::ZERO);
                assert_eq!(
                    reopened.pending_status(&system, id(11)).await.unwrap(),
                    PendingStatus::Expired
                );
                // Replays after reopen: exists, id already failed, hold already settled.
                let r = reopened
                    .create_transfers(
                        &system,
                        vec![
                            NewTransfer::new(id(10), c, w, Money::from_yuan(100), 1)
                                .with_reference(Reference::top_up_order("O-1").unwrap())
                                .with_memo("top-up"),
                            NewTransfer::new(id(14), w, m, Money::from_yuan(1), 1),
                            NewTransfer::void(id(24), id(12)),
                            NewTransfer::post(id(25), id(11), None),
                        ],
                    )
                    .await
                    .unwrap();
                assert_eq!(
                    r,
                    [
                        CreateTransferResult::Exists,
                        CreateTransferResult::IdAlreadyFailed,
                        CreateTransferResult::PendingTransferAlreadyPosted,
                        CreateTransferResult::PendingTransferExpired,
                    ]
                );
                let found = reopened
                    .transfers_by_reference(&system, &Reference::top_up_order("O-1").unwrap())
                    .await
                    .unwrap();
                assert_eq!(found.len(), 1);
                assert_eq!(found[0].memo.as_deref(), Some("top-up"));
            }

            #[tokio::test]
            async fn random_batches_survive_a_reopen() {
                if !$available() {
                    return;
                }
                for seed in 0..12u64 {
                    let store: Arc<dyn LedgerStore> = Arc::new(super::$factory().await);
                    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 8, 0, 0));
                    let start = clock.now();
                    let system = Principal::System;
                    let accounts = $crate::ledger::random_accounts(seed, 6);
                    let mut reference = Engine::new();
                    reference.create_accounts(start, accounts.clone());
                    reference.create_transfers(start, $crate::ledger::funding_batch(6));
                    // A window of two transfers: almost every id is read from the store.
                    let ledger = Ledger::open(store.clone(), clock.clone())
                        .await
                        .unwrap()
                        .with_transfer_cache(2);
                    ledger.create_accounts(&system, accounts).await.unwrap();
                    ledger
                        .create_transfers(&system, $crate::ledger::funding_batch(6))
                        .await
                        .unwrap();
                    let mut instants = vec![start];
                    let mut all = Vec::new();
                    for (secs, batch) in $crate::ledger::random_batches(seed, 10, 6, 60) {
                        clock.advance(Duration::seconds(secs));
                        instants.push(clock.now());
                        all.extend(batch.iter().cloned());
                        let expected = reference.create_transfers(clock.now(), batch.clone());
                        let got = ledger.create_transfers(&system, batch).await.unwrap();
                        assert_eq!(got, expected, "seed {seed}");
                    }
                    // Every request again, long after: replays of old ids from the store.
                    clock.advance(Duration::seconds(1));
                    let expected = reference.create_transfers(clock.now(), all.clone());
                    let got = ledger.create_transfers(&system, all).await.unwrap();
                    assert_eq!(got, expected, "seed {seed}: replays");
                    drop(ledger);
                    let reopened = Ledger::open(store, clock.clone())
                        .await
                        .unwrap()
                        .with_transfer_cache(0);
                    let (accounts, holds) = reopened
                        .inspect(|e: &Engine| (e.accounts().collect::<Vec<_>>(), e.live_holds()))
                        .await
                        .unwrap();
                    assert_eq!(
                        accounts,
                        reference.accounts().collect::<Vec<_>>(),
                        "seed {seed}"
                    );
                    assert_eq!(holds, reference.live_holds(), "seed {seed}");
                    let exported = reopened.export(&system).await.unwrap();
                    assert_eq!(exported.accounts, accounts, "seed {seed}");
                    assert_eq!(
                        exported.transfers,
                        reference.transfers().to_vec(),
                        "seed {seed}"
                    );
                    assert_eq!(
                        exported.expiries,
                        reference.expiries().collect::<Vec<_>>(),
                        "seed {seed}"
                    );
                    assert_eq!(exported.failures, reference.failures(), "seed {seed}");
                    // History queries read the store and agree with the reference.
                    for t in reference.transfers().iter().step_by(3) {
                        assert_eq!(&reopened.transfer(&system, t.id).await.unwrap(), t);
                        if t.flags.pending() {
                            assert_eq!(
                                Some(reopened.pending_status(&system, t.id).await.unwrap()),
                                reference.pending_status(t.id),
                                "seed {seed}: hold {}",
                                t.id
                            );
                        }
                    }
                    for f in reference.failures() {
                        assert_eq!(
                            reopened.failure(&system, f.id).await.unwrap(),
                            Some(f.result)
                        );
                    }
                    for n in 0..4 {
                        let r = Reference::trip(&format!("T-{n}")).unwrap();
                        let expected: Vec<Transfer> = reference
                            .transfers_by_reference(&r)
                            .into_iter()
                            .cloned()
                            .collect();
                        assert_eq!(
                            reopened.transfers_by_reference(&system, &r).await.unwrap(),
                            expected
                        );
                    }
                    let end = clock.now() + Duration::seconds(1);
                    for a in reference.accounts() {
                        if a.flags.history() {
                            for &at in &instants {
                                assert_eq!(
                                    reopened.balances_at(&system, a.id, at).await.unwrap(),
                                    reference.balances_at(a.id, at).unwrap(),
                                    "seed {seed}: account {} at {at}",
                                    a.id
                                );
                            }
                        }
                        let whole = reopened.statement(&system, a.id, start, end).await.unwrap();
                        assert_eq!(whole.closing_balance, a.posted(), "seed {seed}");
                        let ids: Vec<TransferId> = reference
                            .account_transfers(a.id)
                            .into_iter()
                            .filter(|t| !t.flags.pending() && !t.flags.void_pending_transfer())
                            .map(|t| t.id)
                            .collect();
                        let got: Vec<TransferId> =
                            whole.entries.iter().map(|e| e.transfer_id).collect();
                        assert_eq!(got, ids, "seed {seed}: statement of {}", a.id);
                        // Paging by 3 gives the same entries and chained balances.
                        let mut from = start;
                        let mut paged = Vec::new();
                        let mut balance = whole.opening_balance;
                        loop {
                            let page = reopened
                                .statement_page(&system, a.id, from, end, 3)
                                .await
                                .unwrap();
                            assert!(page.statement.entries.len() <= 3);
                            assert_eq!(page.statement.opening_balance, balance);
                            balance = page.statement.closing_balance;
                            paged.extend(page.statement.entries);
                            match page.next {
                                Some(next) => from = next,
                                None => break,
                            }
                        }
                        assert_eq!(paged, whole.entries, "seed {seed}: pages of {}", a.id);
                        assert_eq!(balance, whole.closing_balance);
                    }
                }
            }

            #[tokio::test]
            async fn the_state_and_prefetch_read_what_was_committed() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let accounts = vec![account(1, 0), account(2, 1)];
                let mut hold = transfer(50, 1, 2, 300, 10);
                hold.flags = TransferFlags::PENDING;
                let mut live = transfer(51, 1, 2, 200, 11);
                live.flags = TransferFlags::PENDING;
                live.timeout_secs = 60;
                let mut post = transfer(52, 1, 2, 100, 12);
                post.flags = TransferFlags::POST_PENDING_TRANSFER;
                post.pending_id = Some(TransferId::new(50));
                let plain = transfer(53, 2, 1, 7, 13);
                let transfers = vec![hold, live.clone(), post.clone(), plain.clone()];
                let balances = [AccountBalance {
                    id: AccountId::new(1),
                    balances: Balances {
                        debits_pending: Money::from_fen(200),
                        debits_posted: Money::from_fen(100),
                        credits_pending: Money::ZERO,
                        credits_posted: Money::from_fen(7),
                    },
                    flags: AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
                        | AccountFlags::HISTORY
                        | AccountFlags::CLOSED,
                }];
                let failures = vec![FailedTransfer {
                    id: TransferId::new(60),
                    result: CreateTransferResult::ExceedsCredits,
                }];
                store
                    .commit(
                        &ChangeSet {
                            accounts: &accounts,
                            ..ChangeSet::default()
                        },
                        &Default::default(),
                    )
                    .await
                    .unwrap();
                store
                    .commit(
                        &ChangeSet {
                            transfers: &transfers,
                            failures: &failures,
                            balances: &balances,
                            released: &[TransferId::new(50)],
                            ..ChangeSet::default()
                        },
                        &Default::default(),
                    )
                    .await
                    .unwrap();
                let state = store.load_state().await.unwrap();
                assert_eq!(state.transfer_count, 4);
                assert_eq!(state.failure_count, 1);
                assert_eq!(state.holds, vec![live.clone()]);
                assert_eq!(state.last_timestamp, Some(at(13)));
                let mut a1 = state
                    .accounts
                    .iter()
                    .find(|a| a.id == AccountId::new(1))
                    .unwrap()
                    .clone();
                assert_eq!(a1.balances, balances[0].balances);
                assert!(a1.is_closed());
                a1.balances = Balances::default();
                a1.flags = accounts[0].flags;
                assert_eq!(a1, accounts[0]);
                let a2 = state
                    .accounts
                    .iter()
                    .find(|a| a.id == AccountId::new(2))
                    .unwrap();
                assert_eq!(a2, &accounts[1]);
                // Prefetch: ids (found, failed, unknown) and holds (posted, live).
                let p = store
                    .prefetch(
                        &[
                            TransferId::new(53),
                            TransferId::new(60),
                            TransferId::new(99),
                        ],
                        &[TransferId::new(50), TransferId::new(51)],
                    )
                    .await
                    .unwrap();
                let mut found: Vec<u64> = p.transfers.iter().map(|t| t.id.get()).collect();
                found.sort_unstable();
                assert_eq!(found, [50, 51, 53]);
                assert_eq!(p.settlements, vec![post]);
                assert!(p.expiries.is_empty());
                assert_eq!(p.failures, failures);
                let expiry = [Expiry {
                    transfer_id: TransferId::new(51),
                    timestamp: at(20),
                }];
                store
                    .commit(
                        &ChangeSet {
                            expiries: &expiry,
                            released: &[TransferId::new(51)],
                            ..ChangeSet::default()
                        },
                        &Default::default(),
                    )
                    .await
                    .unwrap();
                let p = store.prefetch(&[], &[TransferId::new(51)]).await.unwrap();
                assert_eq!(p.expiries, expiry.to_vec());
                assert!(store.load_state().await.unwrap().holds.is_empty());
                // A transfer id or a failed id stored twice is refused, and nothing of the batch stays.
                let again = [transfer(53, 2, 1, 7, 30), transfer(70, 2, 1, 1, 31)];
                assert!(
                    store
                        .commit(
                            &ChangeSet {
                                transfers: &again,
                                ..ChangeSet::default()
                            },
                            &Default::default()
                        )
                        .await
                        .is_err()
                );
                assert!(
                    store
                        .commit(
                            &ChangeSet {
                                failures: &failures,
                                ..ChangeSet::default()
                            },
                            &Default::default()
                        )
                        .await
                        .is_err()
                );
                assert!(
                    store
                        .prefetch(&[TransferId::new(70)], &[])
                        .await
                        .unwrap()
                        .transfers
                        .is_empty()
                );
                assert_eq!(store.load_state().await.unwrap().transfer_count, 4);
                // Account pages: oldest first, bounded, in [from, to).
                let range = |from: i64, to: i64, limit: usize| AccountRange {
                    account: AccountId::new(1),
                    from: at(from),
                    to: at(to),
                    limit,
                };
                let ids = |v: Vec<Transfer>| v.iter().map(|t| t.id.get()).collect::<Vec<_>>();
                assert_eq!(
                    ids(store.account_transfers(&range(0, 100, 10)).await.unwrap()),
                    [50, 51, 52, 53]
                );
                assert_eq!(
                    ids(store.account_transfers(&range(0, 100, 2)).await.unwrap()),
                    [50, 51]
                );
                assert_eq!(
                    ids(store.account_transfers(&range(11, 13, 10)).await.unwrap()),
                    [51, 52]
                );
                assert!(
                    store
                        .account_transfers(&AccountRange {
                            account: AccountId::new(9),
                            ..range(0, 100, 10)
                        })
                        .await
                        .unwrap()
                        .is_empty()
                );
            }

            #[tokio::test]
            async fn closing_and_history_survive_a_reopen() {
                if !$available() {
                    return;
                }
                let store: Arc<dyn LedgerStore> = Arc::new(super::$factory().await);
                let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 8, 0, 0));
                let system = Principal::System;
                let ledger = fixture(store.clone(), clock.clone()).await;
                let (c, w) = (AccountId::new(1), AccountId::new(2));
                let id = TransferId::new;
                ledger
                    .create_transfers(
                        &system,
                        vec![NewTransfer::new(id(1), c, w, Money::from_yuan(10), 1)],
                    )
                    .await
                    .unwrap();
                clock.advance(Duration::seconds(5));
                let t1 = clock.now();
                clock.advance(Duration::seconds(5));
                ledger
                    .create_transfers(
                        &system,
                        vec![NewTransfer::close_account(id(2), w, AccountId::new(4), 9)],
                    )
                    .await
                    .unwrap();
                drop(ledger);
                let reopened = Ledger::open(store, clock.clone()).await.unwrap();
                assert!(reopened.account(&system, w).await.unwrap().is_closed());
                let past = reopened.balances_at(&system, w, t1).await.unwrap();
                assert_eq!(past.credits_posted, Money::from_yuan(10));
                let r = reopened
                    .create_transfers(
                        &system,
                        vec![NewTransfer::new(id(3), c, w, Money::from_yuan(1), 1)],
                    )
                    .await
                    .unwrap();
                assert_eq!(r, [CreateTransferResult::CreditAccountAlreadyClosed]);
            }
        }
    };
}
