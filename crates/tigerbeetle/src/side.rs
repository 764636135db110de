//! The side store: what has no place on a TigerBeetle cluster.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use citycard_core::Money;
use citycard_ledger::{AccountId, NewAccount, NewTransfer, Owner, Reference, TransferId};

type TransferSide = (Option<Reference>, Option<String>);
type AccountSide = (Option<Owner>, BTreeMap<String, String>, Option<Money>);

/// Texts of references and memos per transfer, owners, metadata and upper
/// limits per account, kept in this process's memory. Written before the
/// batch is sent (first write wins), so an acknowledged transfer always has
/// its texts; a refused one leaves an unused entry.
#[derive(Debug, Default)]
pub struct SideStore {
    transfers: Mutex<HashMap<u64, TransferSide>>,
    accounts: Mutex<HashMap<u64, AccountSide>>,
}

impl SideStore {
    pub(crate) fn remember_transfer(&self, t: &NewTransfer) {
        if t.reference.is_none() && t.memo.is_none() {
            return;
        }
        let mut map = self.transfers.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(t.id.get())
            .or_insert_with(|| (t.reference.clone(), t.memo.clone()));
    }

    pub(crate) fn remember_account(&self, a: &NewAccount) {
        let mut map = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(a.id.get())
            .or_insert_with(|| (a.owner.clone(), a.metadata.clone(), a.upper_limit));
    }

    pub(crate) fn transfer(&self, id: TransferId) -> (Option<Reference>, Option<String>) {
        let map = self.transfers.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&id.get()).cloned().unwrap_or_default()
    }

    pub(crate) fn account(&self, id: AccountId) -> AccountSide {
        let map = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&id.get()).cloned().unwrap_or_default()
    }

    /// How many transfers have texts here.
    pub fn transfer_count(&self) -> usize {
        self.transfers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}
