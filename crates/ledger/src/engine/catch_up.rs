//! Catching an engine up with what other ledger instances committed to a
//! shared store, without reloading the whole state (see [`crate::shared`]).

use std::cmp::Reverse;
use std::collections::HashSet;

use super::{Engine, PendingState, corrupt, ts_of};
use crate::ids::TransferId;
use crate::model::{PendingStatus, Transfer};
use crate::service::LedgerError;
use crate::shared::CatchUp;
use crate::store::Prefetched;

impl Engine {
    /// Applies what other instances changed since this engine's state:
    /// the changed accounts take the store's balances and flags (accounts
    /// created elsewhere are added), and the live holds of those accounts
    /// become the store's. Returns the holds this engine held live on those
    /// accounts that the store no longer holds live (posted, voided or
    /// expired elsewhere): ask the store for their fate and hand it to
    /// [`Engine::settle_elsewhere`] before deciding.
    ///
    /// Call it between batches only. Afterwards the engine no longer knows
    /// every transfer of the ledger (it asks the store for ids it lacks).
    pub fn catch_up(&mut self, delta: CatchUp) -> Result<Vec<TransferId>, LedgerError> {
        let mut changed = HashSet::with_capacity(delta.accounts.len());
        let mut created = Vec::new();
        for account in delta.accounts {
            changed.insert(account.id.get());
            match self.account_index.get(&account.id.get()) {
                Some(&i) => {
                    let s = &mut self.states[i as usize];
                    let b = account.balances;
                    s.flags = account.flags.0;
                    s.debits_pending = b.debits_pending.fen();
                    s.debits_posted = b.debits_posted.fen();
                    s.credits_pending = b.credits_pending.fen();
                    s.credits_posted = b.credits_posted.fen();
                }
                None => created.push(account),
            }
        }
        created.sort_by_key(|a| a.created_at);
        for account in created {
            self.last_ts = self.last_ts.max(ts_of(account.created_at));
            self.insert_account(account);
        }
        let live: HashSet<u64> = delta.holds.iter().map(|t| t.id.get()).collect();
        let mut gone: Vec<TransferId> = self
            .pending
            .iter()
            .filter(|(id, p)| {
                p.status == PendingStatus::Pending
                    && (changed.contains(&p.hold.debit.get())
                        || changed.contains(&p.hold.credit.get()))
                    && !live.contains(id)
            })
            .map(|(&id, _)| TransferId::new(id))
            .collect();
        gone.sort_unstable();
        for hold in delta.holds {
            self.adopt_hold(hold)?;
        }
        if let Some(at) = delta.last_timestamp {
            self.last_ts = self.last_ts.max(ts_of(at));
        }
        self.elsewhere = delta
            .transfer_count
            .saturating_sub(self.base + self.transfers.len() as u64);
        self.complete = false;
        self.clear_batch();
        Ok(gone)
    }

    /// A live hold the store holds, made live here too (if it is not already).
    fn adopt_hold(&mut self, hold: Transfer) -> Result<(), LedgerError> {
        let known = |id: crate::ids::AccountId| self.account_index.contains_key(&id.get());
        if !hold.flags.pending() || !known(hold.debit_account_id) || !known(hold.credit_account_id)
        {
            return Err(corrupt(format!(
                "live hold {} is not a hold between known accounts",
                hold.id
            )));
        }
        if self
            .pending
            .get(&hold.id.get())
            .is_some_and(|p| p.status == PendingStatus::Pending)
        {
            return Ok(());
        }
        let p = PendingState::of(&hold, PendingStatus::Pending);
        if p.expires_at != i64::MAX {
            self.expiry_queue
                .push(Reverse((p.expires_at, hold.id.get())));
        }
        self.last_ts = self.last_ts.max(ts_of(hold.timestamp));
        self.pending.insert(hold.id.get(), p);
        Ok(())
    }

    /// Records the fate of holds another instance released (the `gone`
    /// list of [`Engine::catch_up`]), from the store's posts, voids and
    /// expiries of them: a hold in the window keeps its status, any other
    /// is forgotten (the store answers for it when a batch names it).
    pub fn settle_elsewhere(&mut self, gone: &[TransferId], fetched: &Prefetched) {
        for &id in gone {
            let status = super::settled_status(id, &fetched.settlements, &fetched.expiries);
            if self.transfer_index.contains_key(&id.get()) {
                if let Some(p) = self.pending.get_mut(&id.get()) {
                    // A hold the store holds neither live nor settled cannot
                    // be decided on: treat it as settled elsewhere (expired),
                    // never as still live.
                    p.status = if status == PendingStatus::Pending {
                        PendingStatus::Expired
                    } else {
                        status
                    };
                }
            } else {
                self.pending.remove(&id.get());
            }
        }
    }
}
