//! Reads of the engine's state and window.

use chrono::{DateTime, Utc};

use super::{Engine, instant, ts_of};
use crate::ids::{AccountId, Reference, TransferId};
use crate::model::{
    Account, Balances, CreateTransferResult, Expiry, FailedTransfer, PendingStatus, Transfer,
};
use crate::query::BalanceWalk;

impl Engine {
    // ----------------------------------------------------------------- queries

    /// The account with its current flags and balances.
    pub fn account(&self, id: AccountId) -> Option<Account> {
        let &index = self.account_index.get(&id.get())?;
        let s = &self.states[index as usize];
        let mut a = self.accounts[index as usize].clone();
        a.flags = s.flags();
        a.balances = Balances::from_fen(s.balances());
        Some(a)
    }

    /// The balances of an account.
    pub fn balances(&self, id: AccountId) -> Option<Balances> {
        let &index = self.account_index.get(&id.get())?;
        Some(Balances::from_fen(self.states[index as usize].balances()))
    }

    /// The balances of a `history` account as of `at` (after every change up
    /// to and including `at`), from the window; `None` for unknown accounts
    /// or no history. Exact for an engine that keeps everything; the
    /// [`Ledger`](crate::Ledger) answers from its store.
    pub fn balances_at(&self, id: AccountId, at: DateTime<Utc>) -> Option<Balances> {
        let &index = self.account_index.get(&id.get())?;
        if !self.states[index as usize].flags().history() {
            return None;
        }
        let mut walk = BalanceWalk::new(id);
        for t in self
            .transfers
            .iter()
            .take_while(|t| t.timestamp <= at)
            .filter(|t| t.debit_account_id == id || t.credit_account_id == id)
        {
            walk.push(t);
        }
        let at = ts_of(at);
        for &(e, ts) in &self.expiries {
            if ts <= at {
                walk.expire(e);
            }
        }
        Some(walk.balances())
    }

    /// The transfer with this id, if it is in the window.
    pub fn transfer(&self, id: TransferId) -> Option<&Transfer> {
        let &pos = self.transfer_index.get(&id.get())?;
        self.transfers.get((pos - self.base) as usize)
    }

    /// The state of a pending transfer: live holds, and holds in the window.
    pub fn pending_status(&self, id: TransferId) -> Option<PendingStatus> {
        self.pending.get(&id.get()).map(|p| p.status)
    }

    /// The result an id failed with, if the engine knows it failed (the
    /// recent failed ids, and what was supplied for this batch).
    pub fn failure(&self, id: TransferId) -> Option<CreateTransferResult> {
        self.failed
            .get(&id.get())
            .or_else(|| self.fetched_failed.get(&id.get()))
            .copied()
    }

    /// Transfers of the window carrying this reference, oldest first.
    pub fn transfers_by_reference(&self, reference: &Reference) -> Vec<&Transfer> {
        self.transfers
            .iter()
            .filter(|t| t.reference.as_ref() == Some(reference))
            .collect()
    }

    /// Transfers of the window touching an account, oldest first.
    pub fn account_transfers(&self, id: AccountId) -> Vec<&Transfer> {
        self.transfers
            .iter()
            .filter(|t| t.debit_account_id == id || t.credit_account_id == id)
            .collect()
    }

    /// Every account, in creation order, with current balances.
    pub fn accounts(&self) -> impl Iterator<Item = Account> + '_ {
        self.accounts.iter().filter_map(|a| self.account(a.id))
    }

    /// The window of recent transfers, in timestamp order (every transfer
    /// for an engine that keeps everything).
    pub fn transfers(&self) -> &[Transfer] {
        &self.transfers
    }

    /// Recent expiries, in timestamp order.
    pub fn expiries(&self) -> impl Iterator<Item = Expiry> + '_ {
        self.expiries.iter().map(|&(id, ts)| Expiry {
            transfer_id: id,
            timestamp: instant(ts),
        })
    }

    /// The failed ids the engine holds with their results, sorted by id.
    pub fn failures(&self) -> Vec<FailedTransfer> {
        let mut v: Vec<FailedTransfer> = self
            .failed
            .iter()
            .map(|(&id, &result)| FailedTransfer {
                id: TransferId::new(id),
                result,
            })
            .collect();
        v.sort_by_key(|f| f.id);
        v
    }

    /// Holds still pending, by id.
    pub fn live_holds(&self) -> Vec<TransferId> {
        let mut v: Vec<TransferId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.status == PendingStatus::Pending)
            .map(|(&id, _)| TransferId::new(id))
            .collect();
        v.sort_unstable();
        v
    }

    /// Σ over accounts of (debits pending, debits posted, credits pending, credits posted), in fen.
    pub fn totals(&self) -> [i128; 4] {
        let mut t = [0i128; 4];
        for s in &self.states {
            for (acc, v) in t.iter_mut().zip(s.balances()) {
                *acc += i128::from(v);
            }
        }
        t
    }

    /// The number of accounts.
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// The number of transfers the ledger holds (not only the window's).
    pub fn transfer_count(&self) -> u64 {
        self.base + self.elsewhere + self.transfers.len() as u64
    }
}
