//! The storage port: persist one batch's changes atomically, read the
//! working state back on open, and answer history queries.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use citycard_core::{CoreChanges, MemoryCore, StoreError};
use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, Reference, TransferId};
use crate::model::{
    Account, AccountFlags, Balances, CreateTransferResult, Expiry, FailedTransfer, Transfer,
};

/// An account's balances and flags (`closed` included) after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountBalance {
    /// The account.
    pub id: AccountId,
    /// Its balances.
    pub balances: Balances,
    /// Its flags, `closed` included.
    pub flags: AccountFlags,
}

/// What one batch changed: the records it appended and the state it left.
///
/// Records (accounts, transfers, expiries, burnt ids) are appended; the
/// touched accounts' balances and the holds the batch released are the
/// state a store keeps so that opening reads state instead of replaying
/// history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ChangeSet<'a> {
    /// Accounts created (zero balances, creation flags).
    pub accounts: &'a [Account],
    /// Transfers recorded, in timestamp order.
    pub transfers: &'a [Transfer],
    /// Holds released by expiry, in timestamp order.
    pub expiries: &'a [Expiry],
    /// Ids burnt by state-dependent failures.
    pub failures: &'a [FailedTransfer],
    /// The balances and flags of every account the batch touched, as it left them.
    pub balances: &'a [AccountBalance],
    /// Holds that stopped being pending in this batch (posted, voided or
    /// expired), including holds created by this batch's own transfers.
    pub released: &'a [TransferId],
}

impl ChangeSet<'_> {
    /// True when there is nothing to persist.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
            && self.transfers.is_empty()
            && self.expiries.is_empty()
            && self.failures.is_empty()
            && self.balances.is_empty()
            && self.released.is_empty()
    }

    /// A copy that owns its rows, for a commit that runs away from the
    /// engine (on a writer thread, say).
    pub fn to_owned_changes(&self) -> OwnedChangeSet {
        OwnedChangeSet {
            accounts: self.accounts.to_vec(),
            transfers: self.transfers.to_vec(),
            expiries: self.expiries.to_vec(),
            failures: self.failures.to_vec(),
            balances: self.balances.to_vec(),
            released: self.released.to_vec(),
        }
    }
}

/// A [`ChangeSet`] that owns its rows ([`ChangeSet::to_owned_changes`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedChangeSet {
    /// See [`ChangeSet::accounts`].
    pub accounts: Vec<Account>,
    /// See [`ChangeSet::transfers`].
    pub transfers: Vec<Transfer>,
    /// See [`ChangeSet::expiries`].
    pub expiries: Vec<Expiry>,
    /// See [`ChangeSet::failures`].
    pub failures: Vec<FailedTransfer>,
    /// See [`ChangeSet::balances`].
    pub balances: Vec<AccountBalance>,
    /// See [`ChangeSet::released`].
    pub released: Vec<TransferId>,
}

impl OwnedChangeSet {
    /// The change set, borrowed.
    pub fn as_change_set(&self) -> ChangeSet<'_> {
        ChangeSet {
            accounts: &self.accounts,
            transfers: &self.transfers,
            expiries: &self.expiries,
            failures: &self.failures,
            balances: &self.balances,
            released: &self.released,
        }
    }
}

/// Everything a store holds (exports, audits, tests).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Every account, with its current balances and flags.
    pub accounts: Vec<Account>,
    /// Every transfer.
    pub transfers: Vec<Transfer>,
    /// Every expiry.
    pub expiries: Vec<Expiry>,
    /// Every failed id.
    pub failures: Vec<FailedTransfer>,
}

/// The working state a ledger opens on: no history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerState {
    /// Every account with its current balances and flags (`closed` included).
    pub accounts: Vec<Account>,
    /// Holds still pending (not posted, voided or expired), with their timeouts.
    pub holds: Vec<Transfer>,
    /// The newest timestamp of any account, transfer or expiry.
    pub last_timestamp: Option<DateTime<Utc>>,
    /// How many transfers the store holds.
    pub transfer_count: u64,
    /// How many failed ids the store holds.
    pub failure_count: u64,
}

/// The store's answer to [`LedgerStore::prefetch`]: raw rows, the ledger
/// derives what they mean.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prefetched {
    /// Stored transfers whose id is one of the ids or holds asked for.
    pub transfers: Vec<Transfer>,
    /// Stored posts and voids of the holds asked for.
    pub settlements: Vec<Transfer>,
    /// Stored expiries of the holds asked for.
    pub expiries: Vec<Expiry>,
    /// Stored failed ids among the ids asked for.
    pub failures: Vec<FailedTransfer>,
}

/// A page of an account's transfers: those touching `account` with
/// `from <= timestamp < to`, oldest first, at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountRange {
    /// The account (debited or credited).
    pub account: AccountId,
    /// The first instant (inclusive).
    pub from: DateTime<Utc>,
    /// The end (exclusive).
    pub to: DateTime<Utc>,
    /// The most transfers to return.
    pub limit: usize,
}

/// How a store shared by several ledger instances (several app processes on
/// one database) says a batch was decided on a state another instance has
/// since changed: a [`StoreError::Conflict`] whose message starts with this.
/// The ledger then reloads its state and decides the batch again (bounded,
/// see [`Ledger`](crate::Ledger)); any other conflict reaches the caller.
pub const STALE_VERSION: &str = "stale ledger version";

/// The conflict a shared store returns for a batch decided on a stale
/// state (see [`STALE_VERSION`]); `detail` says what moved.
pub fn stale_version(detail: &str) -> StoreError {
    StoreError::Conflict(format!("{STALE_VERSION}: {detail}"))
}

/// Whether `error` is a stale-version refusal (see [`STALE_VERSION`]),
/// which the ledger retries, rather than a conflict of the caller's own.
pub fn is_stale_version(error: &StoreError) -> bool {
    matches!(error, StoreError::Conflict(m) if m.starts_with(STALE_VERSION))
}

/// The ledger's storage port.
///
/// `commit` must be atomic and durable when it returns `Ok`: either every
/// record of the change set, with the batch's audit record (`core`), is
/// stored or none is; a transfer or failed id stored twice is a
/// [`StoreError::Conflict`]; a batch decided on a state another ledger
/// instance has since changed is refused with [`stale_version`]. The ledger
/// calls it once per batch decision, in batch order, never concurrently. The read methods see every committed batch.
#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// Persists one batch's changes and its core records atomically.
    async fn commit(&self, changes: &ChangeSet<'_>, core: &CoreChanges) -> Result<(), StoreError>;
    /// The working state to open on (accounts with balances, live holds,
    /// the last timestamp, counts), without reading history.
    async fn load_state(&self) -> Result<LedgerState, StoreError>;
    /// In one round trip: the stored transfers with any of `ids` or `holds`
    /// as id, failures among `ids`, and the posts, voids and expiries of `holds`.
    async fn prefetch(
        &self,
        ids: &[TransferId],
        holds: &[TransferId],
    ) -> Result<Prefetched, StoreError>;
    /// The stored accounts among `ids`, each with the balances and flags its
    /// last committed batch left (ids not stored are left out; any order).
    /// Balance reads come here, so they never wait behind a batch being
    /// decided or committed, and on a shared store they see every
    /// instance's commits.
    async fn accounts(&self, ids: &[AccountId]) -> Result<Vec<Account>, StoreError>;
    /// A page of an account's transfers, oldest first.
    async fn account_transfers(&self, range: &AccountRange) -> Result<Vec<Transfer>, StoreError>;
    /// Every transfer carrying `reference`, oldest first.
    async fn transfers_by_reference(
        &self,
        reference: &Reference,
    ) -> Result<Vec<Transfer>, StoreError>;
    /// Reads every record back (exports and audits; any order): the ledger
    /// never calls it to open.
    async fn load(&self) -> Result<Snapshot, StoreError>;
    /// The store's shared side, when several ledger instances may write it
    /// (see [`crate::shared`]); `None` (the default) for a store one
    /// process owns, which then costs nothing extra.
    fn shared(&self) -> Option<&dyn crate::shared::SharedLedgerStore> {
        None
    }
}

/// A ledger store in memory (tests, demos, and hosts that replicate elsewhere).
///
/// Core records go to its [`MemoryCore`] (its own unless given one with
/// [`MemoryLedgerStore::with_core`]).
#[derive(Debug, Default)]
pub struct MemoryLedgerStore {
    data: Mutex<MemoryData>,
    core: MemoryCore,
}

#[derive(Debug, Default)]
struct MemoryData {
    accounts: Vec<Account>,
    account_index: HashMap<u64, usize>,
    transfers: Vec<Transfer>,
    by_id: HashMap<u64, usize>,
    by_account: HashMap<u64, Vec<usize>>,
    by_reference: HashMap<String, Vec<usize>>,
    by_pending: HashMap<u64, usize>,
    live_holds: HashSet<u64>,
    expiries: Vec<Expiry>,
    expiry_of: HashMap<u64, usize>,
    failures: HashMap<u64, CreateTransferResult>,
    last_ts: Option<DateTime<Utc>>,
}

impl MemoryLedgerStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that writes core records (audit, idempotency outcomes) to `core`.
    pub fn with_core(core: MemoryCore) -> Self {
        Self {
            data: Mutex::default(),
            core,
        }
    }

    fn data(&self) -> std::sync::MutexGuard<'_, MemoryData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl MemoryData {
    fn check(&self, changes: &ChangeSet<'_>) -> Result<(), StoreError> {
        let mut ids = HashSet::new();
        for t in changes.transfers {
            if self.by_id.contains_key(&t.id.get()) || !ids.insert(t.id.get()) {
                return Err(StoreError::Conflict("transfer id stored twice".into()));
            }
        }
        let mut failed = HashSet::new();
        for f in changes.failures {
            if self.failures.contains_key(&f.id.get()) || !failed.insert(f.id.get()) {
                return Err(StoreError::Conflict("failed id stored twice".into()));
            }
        }
        let mut accounts = HashSet::new();
        for a in changes.accounts {
            if self.account_index.contains_key(&a.id.get()) || !accounts.insert(a.id.get()) {
                return Err(StoreError::Conflict("account id stored twice".into()));
            }
        }
        for b in changes.balances {
            if !self.account_index.contains_key(&b.id.get()) && !accounts.contains(&b.id.get()) {
                return Err(StoreError::Conflict(format!(
                    "balances of unknown account {}",
                    b.id
                )));
            }
        }
        Ok(())
    }

    fn apply(&mut self, changes: &ChangeSet<'_>) {
        let mut newest = self.last_ts;
        for a in changes.accounts {
            self.account_index.insert(a.id.get(), self.accounts.len());
            self.accounts.push(a.clone());
            newest = newest.max(Some(a.created_at));
        }
        for t in changes.transfers {
            let i = self.transfers.len();
            self.by_id.insert(t.id.get(), i);
            for account in [t.debit_account_id, t.credit_account_id] {
                self.by_account.entry(account.get()).or_default().push(i);
            }
            if let Some(r) = &t.reference {
                self.by_reference
                    .entry(r.as_str().to_owned())
                    .or_default()
                    .push(i);
            }
            if let Some(p) = t.pending_id {
                self.by_pending.insert(p.get(), i);
            }
            if t.flags.pending() {
                self.live_holds.insert(t.id.get());
            }
            newest = newest.max(Some(t.timestamp));
            self.transfers.push(t.clone());
        }
        for e in changes.expiries {
            self.expiry_of
                .insert(e.transfer_id.get(), self.expiries.len());
            self.expiries.push(*e);
            newest = newest.max(Some(e.timestamp));
        }
        for f in changes.failures {
            self.failures.insert(f.id.get(), f.result);
        }
        for b in changes.balances {
            if let Some(&i) = self.account_index.get(&b.id.get()) {
                self.accounts[i].balances = b.balances;
                self.accounts[i].flags = b.flags;
            }
        }
        for id in changes.released {
            self.live_holds.remove(&id.get());
        }
        self.last_ts = newest;
    }
}

#[async_trait]
impl LedgerStore for MemoryLedgerStore {
    async fn commit(&self, changes: &ChangeSet<'_>, core: &CoreChanges) -> Result<(), StoreError> {
        let mut data = self.data();
        self.core.check(core)?;
        data.check(changes)?;
        data.apply(changes);
        self.core.commit(core)
    }

    async fn load_state(&self) -> Result<LedgerState, StoreError> {
        let data = self.data();
        let mut holds: Vec<Transfer> = data
            .live_holds
            .iter()
            .filter_map(|id| data.by_id.get(id).map(|&i| data.transfers[i].clone()))
            .collect();
        holds.sort_by_key(|t| t.timestamp);
        Ok(LedgerState {
            accounts: data.accounts.clone(),
            holds,
            last_timestamp: data.last_ts,
            transfer_count: data.transfers.len() as u64,
            failure_count: data.failures.len() as u64,
        })
    }

    async fn prefetch(
        &self,
        ids: &[TransferId],
        holds: &[TransferId],
    ) -> Result<Prefetched, StoreError> {
        let data = self.data();
        let mut out = Prefetched::default();
        let mut seen = HashSet::new();
        for id in ids.iter().chain(holds) {
            if let Some(&i) = data.by_id.get(&id.get())
                && seen.insert(id.get())
            {
                out.transfers.push(data.transfers[i].clone());
            }
        }
        for id in ids {
            if let Some(&result) = data.failures.get(&id.get()) {
                out.failures.push(FailedTransfer { id: *id, result });
            }
        }
        for id in holds {
            if let Some(&i) = data.by_pending.get(&id.get()) {
                out.settlements.push(data.transfers[i].clone());
            }
            if let Some(&i) = data.expiry_of.get(&id.get()) {
                out.expiries.push(data.expiries[i]);
            }
        }
        Ok(out)
    }

    async fn accounts(&self, ids: &[AccountId]) -> Result<Vec<Account>, StoreError> {
        let data = self.data();
        Ok(ids
            .iter()
            .filter_map(|id| data.account_index.get(&id.get()))
            .map(|&i| data.accounts[i].clone())
            .collect())
    }

    async fn account_transfers(&self, range: &AccountRange) -> Result<Vec<Transfer>, StoreError> {
        let data = self.data();
        let Some(list) = data.by_account.get(&range.account.get()) else {
            return Ok(Vec::new());
        };
        let start = list.partition_point(|&i| data.transfers[i].timestamp < range.from);
        Ok(list[start..]
            .iter()
            .map(|&i| &data.transfers[i])
            .take_while(|t| t.timestamp < range.to)
            .take(range.limit)
            .cloned()
            .collect())
    }

    async fn transfers_by_reference(
        &self,
        reference: &Reference,
    ) -> Result<Vec<Transfer>, StoreError> {
        let data = self.data();
        Ok(data
            .by_reference
            .get(reference.as_str())
            .into_iter()
            .flatten()
            .map(|&i| data.transfers[i].clone())
            .collect())
    }

    async fn load(&self) -> Result<Snapshot, StoreError> {
        let data = self.data();
        let mut failures: Vec<FailedTransfer> = data
            .failures
            .iter()
            .map(|(&id, &result)| FailedTransfer {
                id: TransferId::new(id),
                result,
            })
            .collect();
        failures.sort_by_key(|f| f.id);
        Ok(Snapshot {
            accounts: data.accounts.clone(),
            transfers: data.transfers.clone(),
            expiries: data.expiries.clone(),
            failures,
        })
    }
}
