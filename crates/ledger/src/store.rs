//! The storage port: persist one batch's changes atomically, load everything back.

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;
use citycard_core::{CoreChanges, MemoryCore, StoreError};
use serde::{Deserialize, Serialize};

use crate::model::{Account, Expiry, FailedTransfer, Transfer};

/// What one batch changed: appended records only (the ledger is a log).
///
/// Balances are not stored: they are derived by replaying transfers and
/// expiries in timestamp order when the ledger opens, so a batch costs one
/// append per record and nothing per touched account.
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
}

impl ChangeSet<'_> {
    /// True when there is nothing to persist.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
            && self.transfers.is_empty()
            && self.expiries.is_empty()
            && self.failures.is_empty()
    }
}

/// Everything a store holds, to rebuild the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Every account as created.
    pub accounts: Vec<Account>,
    /// Every transfer.
    pub transfers: Vec<Transfer>,
    /// Every expiry.
    pub expiries: Vec<Expiry>,
    /// Every failed id.
    pub failures: Vec<FailedTransfer>,
}

/// The ledger's storage port.
///
/// `commit` must be atomic and durable when it returns `Ok`: either every
/// record of the change set, with the batch's audit record (`core`), is
/// stored or none is. The ledger calls it once per batch, in batch order,
/// never concurrently.
#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// Persists one batch's changes and its core records atomically.
    async fn commit(&self, changes: &ChangeSet<'_>, core: &CoreChanges) -> Result<(), StoreError>;
    /// Reads every record back (any order; the ledger sorts by timestamp).
    async fn load(&self) -> Result<Snapshot, StoreError>;
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
    snapshot: Snapshot,
    transfer_ids: HashSet<u64>,
    account_ids: HashSet<u64>,
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
}

#[async_trait]
impl LedgerStore for MemoryLedgerStore {
    async fn commit(&self, changes: &ChangeSet<'_>, core: &CoreChanges) -> Result<(), StoreError> {
        let mut guard = self.data.lock().unwrap_or_else(|e| e.into_inner());
        self.core.check(core)?;
        let data = &mut *guard;
        if changes
            .transfers
            .iter()
            .any(|t| data.transfer_ids.contains(&t.id.get()))
        {
            return Err(StoreError::Conflict("transfer id stored twice".into()));
        }
        if changes
            .accounts
            .iter()
            .any(|a| data.account_ids.contains(&a.id.get()))
        {
            return Err(StoreError::Conflict("account id stored twice".into()));
        }
        data.transfer_ids
            .extend(changes.transfers.iter().map(|t| t.id.get()));
        data.account_ids
            .extend(changes.accounts.iter().map(|a| a.id.get()));
        let s = &mut data.snapshot;
        s.accounts.extend_from_slice(changes.accounts);
        s.transfers.extend_from_slice(changes.transfers);
        s.expiries.extend_from_slice(changes.expiries);
        s.failures.extend_from_slice(changes.failures);
        self.core.commit(core)
    }

    async fn load(&self) -> Result<Snapshot, StoreError> {
        Ok(self
            .data
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .snapshot
            .clone())
    }
}
