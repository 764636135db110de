//! Several ledger instances on one store with a shared side
//! (`citycard_ledger::shared`): a memory store that keeps a version per
//! commit and per account, as the PostgreSQL store does. Instances take
//! turns, so no batch is decided twice; they catch up incrementally, and
//! what they then hold equals a fresh load, including holds the other
//! instance placed, posted, voided or let expire.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use citycard_core::{CoreChanges, ManualClock, Money, Principal, StoreError};
use citycard_ledger::{
    Account, AccountId, AccountKind, AccountRange, CatchUp, ChangeSet, CreateTransferResult as R,
    DecisionTurn, Ledger, LedgerState, LedgerStore, MemoryLedgerStore, NewAccount, NewTransfer,
    PendingStatus, Prefetched, Reference, SharedLedgerStore, Snapshot, Transfer, TransferId, Turn,
    stale_version,
};

struct Meta {
    version: u64,
    /// The version that last wrote each account's balances.
    accounts: HashMap<AccountId, u64>,
}

struct Shared {
    inner: MemoryLedgerStore,
    meta: Mutex<Meta>,
    turn: Arc<tokio::sync::Mutex<()>>,
}

struct Handle {
    shared: Arc<Shared>,
    known: Mutex<Option<u64>>,
    commits: AtomicU32,
    stale: AtomicU32,
    catch_ups: AtomicU32,
}

impl Handle {
    fn new(shared: &Arc<Shared>) -> Arc<Handle> {
        Arc::new(Handle {
            shared: shared.clone(),
            known: Mutex::new(None),
            commits: AtomicU32::new(0),
            stale: AtomicU32::new(0),
            catch_ups: AtomicU32::new(0),
        })
    }

    async fn delta(&self) -> Option<CatchUp> {
        let known = (*self.known.lock().unwrap())?;
        let (version, changed) = {
            let meta = self.shared.meta.lock().unwrap();
            let changed: HashSet<AccountId> = meta
                .accounts
                .iter()
                .filter(|(_, v)| **v > known)
                .map(|(id, _)| *id)
                .collect();
            (meta.version, changed)
        };
        if version == known {
            return None;
        }
        self.catch_ups.fetch_add(1, Ordering::SeqCst);
        let state = self.shared.inner.load_state().await.unwrap();
        let accounts: Vec<Account> = state
            .accounts
            .into_iter()
            .filter(|a| changed.contains(&a.id))
            .collect();
        let holds = state
            .holds
            .into_iter()
            .filter(|h| {
                changed.contains(&h.debit_account_id) || changed.contains(&h.credit_account_id)
            })
            .collect();
        *self.known.lock().unwrap() = Some(version);
        Some(CatchUp {
            accounts,
            holds,
            last_timestamp: state.last_timestamp,
            transfer_count: state.transfer_count,
        })
    }
}

struct MemTurn(#[allow(dead_code)] tokio::sync::OwnedMutexGuard<()>);

#[async_trait]
impl DecisionTurn for MemTurn {
    async fn end(self: Box<Self>) {}
}

#[async_trait]
impl SharedLedgerStore for Handle {
    async fn begin_decision(&self) -> Result<Option<Turn>, StoreError> {
        let guard = self.shared.turn.clone().lock_owned().await;
        Ok(Some(Turn {
            catch_up: self.delta().await,
            turn: Box::new(MemTurn(guard)),
        }))
    }
    async fn catch_up(&self) -> Result<Option<CatchUp>, StoreError> {
        Ok(self.delta().await)
    }
}

#[async_trait]
impl LedgerStore for Handle {
    async fn commit(&self, changes: &ChangeSet<'_>, core: &CoreChanges) -> Result<(), StoreError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        let mut meta = self.shared.meta.lock().unwrap();
        if *self.known.lock().unwrap() != Some(meta.version) {
            self.stale.fetch_add(1, Ordering::SeqCst);
            return Err(stale_version("another instance committed"));
        }
        // The memory store's commit completes without waiting.
        futures_lite(self.shared.inner.commit(changes, core))?;
        meta.version += 1;
        let v = meta.version;
        for id in changes
            .accounts
            .iter()
            .map(|a| a.id)
            .chain(changes.balances.iter().map(|b| b.id))
        {
            meta.accounts.insert(id, v);
        }
        *self.known.lock().unwrap() = Some(v);
        Ok(())
    }
    async fn load_state(&self) -> Result<LedgerState, StoreError> {
        let version = self.shared.meta.lock().unwrap().version;
        let state = self.shared.inner.load_state().await?;
        *self.known.lock().unwrap() = Some(version);
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
    fn shared(&self) -> Option<&dyn SharedLedgerStore> {
        Some(self)
    }
}

/// Polls a future that never waits (the memory store's) to completion.
fn futures_lite<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    loop {
        if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// SplitMix64: a deterministic sequence of operations.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

const CLEARING: AccountId = AccountId::new(1);
const METRO: AccountId = AccountId::new(2);
const WALLETS: u64 = 10;

fn wallet(i: u64) -> AccountId {
    AccountId::new(100 + i)
}

async fn accounts_of(ledger: &Ledger) -> Vec<Account> {
    let mut all = ledger
        .inspect(|e| e.accounts().collect::<Vec<_>>())
        .await
        .unwrap();
    all.sort_by_key(|a| a.id);
    all
}

#[tokio::test]
async fn instances_take_turns_and_catch_up_incrementally() {
    let shared = Arc::new(Shared {
        inner: MemoryLedgerStore::new(),
        meta: Mutex::new(Meta {
            version: 0,
            accounts: HashMap::new(),
        }),
        turn: Arc::default(),
    });
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 29, 8, 0, 0));
    let (ha, hb) = (Handle::new(&shared), Handle::new(&shared));
    let a = Ledger::open(ha.clone(), clock.clone()).await.unwrap();
    let b = Ledger::open(hb.clone(), clock.clone()).await.unwrap();
    let mut accounts = vec![
        NewAccount::new(CLEARING, AccountKind::TOP_UP_CLEARING),
        NewAccount::new(METRO, AccountKind::OPERATOR_REVENUE),
    ];
    let limits = citycard_ledger::WalletLimits::default();
    accounts.extend(
        (0..WALLETS)
            .map(|i| limits.wallet(wallet(i), citycard_ledger::WalletHolder::Registered, None)),
    );
    assert!(
        a.create_accounts(&Principal::System, accounts)
            .await
            .unwrap()
            .iter()
            .all(|r| r.is_success())
    );

    let mut rng = Rng(7);
    let mut holds: Vec<TransferId> = Vec::new();
    let mut next = 1_000u64;
    let mut outcomes = HashMap::new();
    for step in 0..400u64 {
        let ledger = if rng.below(2) == 0 { &a } else { &b };
        let w = wallet(rng.below(WALLETS));
        next += 1;
        let id = TransferId::new(next);
        let t = match rng.below(6) {
            0 | 1 => NewTransfer::new(id, CLEARING, w, Money::from_fen(500 + step as i64), 1),
            2 => NewTransfer::new(id, w, METRO, Money::from_fen(300), 2),
            3 => NewTransfer::pending(id, w, METRO, Money::from_fen(200), 2, 60),
            4 if !holds.is_empty() => {
                let h = holds[rng.below(holds.len() as u64) as usize];
                if rng.below(2) == 0 {
                    NewTransfer::post(id, h, None)
                } else {
                    NewTransfer::void(id, h)
                }
            }
            _ => {
                // A replay of an earlier id through either instance: `exists`
                // when it succeeded, the same failure otherwise.
                clock.advance(chrono::Duration::seconds(7));
                let earlier = TransferId::new(1_001 + rng.below(next - 1_001));
                next -= 1;
                match outcomes.get(&earlier) {
                    Some((t, r)) if *r == R::Ok => {
                        let results = ledger
                            .create_transfers(&Principal::System, vec![NewTransfer::clone(t)])
                            .await
                            .unwrap();
                        assert_eq!(results, [R::Exists], "replay of {earlier}");
                    }
                    _ => {}
                }
                continue;
            }
        };
        let results = ledger
            .create_transfers(&Principal::System, vec![t.clone()])
            .await
            .unwrap();
        if t.flags.pending() && results[0] == R::Ok {
            holds.push(id);
        }
        outcomes.insert(id, (t, results[0]));
        // The other instance's read is current.
        let other = if std::ptr::eq(ledger, &a) { &b } else { &a };
        let seen = other.account(&Principal::System, w).await.unwrap();
        let here = ledger.account(&Principal::System, w).await.unwrap();
        assert_eq!(seen.balances, here.balances, "step {step}");
    }
    // Every decision committed once: nothing was stale.
    assert_eq!(
        ha.stale.load(Ordering::SeqCst) + hb.stale.load(Ordering::SeqCst),
        0
    );
    assert!(ha.catch_ups.load(Ordering::SeqCst) > 10 && hb.catch_ups.load(Ordering::SeqCst) > 10);
    // Holds: each instance agrees with the store on every hold's status.
    let mut statuses = HashSet::new();
    for h in &holds {
        let on_a = a.pending_status(&Principal::System, *h).await.unwrap();
        let on_b = b.pending_status(&Principal::System, *h).await.unwrap();
        assert_eq!(on_a, on_b, "hold {h}");
        statuses.insert(format!("{on_a:?}"));
    }
    for s in [
        PendingStatus::Posted,
        PendingStatus::Voided,
        PendingStatus::Expired,
    ] {
        assert!(
            statuses.contains(&format!("{s:?}")),
            "the workload never saw {s:?}"
        );
    }
    // Each instance's memory equals a freshly loaded ledger's.
    a.account(&Principal::System, CLEARING).await.unwrap();
    b.account(&Principal::System, CLEARING).await.unwrap();
    let fresh = Ledger::open(Handle::new(&shared), clock.clone())
        .await
        .unwrap();
    let expected = accounts_of(&fresh).await;
    assert_eq!(accounts_of(&a).await, expected);
    assert_eq!(accounts_of(&b).await, expected);
    let count = fresh.inspect(|e| e.transfer_count()).await.unwrap();
    assert_eq!(a.inspect(|e| e.transfer_count()).await.unwrap(), count);
    assert_eq!(b.inspect(|e| e.transfer_count()).await.unwrap(), count);
}
