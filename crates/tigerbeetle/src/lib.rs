//! # citycard-tigerbeetle
//!
//! The card system's ledger on a replicated TigerBeetle cluster:
//! [`TigerBeetleLedger`] implements [`LedgerPort`] with our model and results
//! (the same as the embedded engine's), over the `tigerbeetle-unofficial`
//! client.
//!
//! ## Mapping (decisions)
//! - **Ids** `u64 → u128` (ours fit; 0 and `u64::MAX` stay reserved by our
//!   engine, the cluster reserves 0 and `u128::MAX`).
//! - **Currency → `ledger`**, **account kind → account `code`**, transfer
//!   `code` as is, flags bit for bit (our layout is TigerBeetle's), timeouts in
//!   seconds, timestamps the cluster's (nanoseconds since the epoch).
//! - **Transfer `user_data_128`** = a 128-bit digest (SHA-256, first 16 bytes)
//!   of the reference text, so `query_transfers` finds transfers by reference;
//!   **`user_data_64`** = a 64-bit digest of the memo, so a replay with a
//!   different memo answers `exists_with_different_memo` on the cluster.
//! - **Account `user_data_128`** = digest of the owner, **`user_data_64`** =
//!   digest of the metadata, **`user_data_32`** = the upper limit in fen (at
//!   most `u32::MAX` fen, ¥42.9 M; wallet caps are ≤ ¥5,000).
//! - **What has no place in TigerBeetle** — the texts of references and memos,
//!   owners and metadata — lives in a [`SideStore`] kept by this process (in
//!   memory; the host persists it with its other stores). The digests on the
//!   cluster make idempotency exact without it.
//! - **Wallet caps are not enforced by the cluster** (TigerBeetle 0.16 has no
//!   upper limit; its balance-bounds recipe costs four extra linked transfers
//!   per credit): the limit is recorded, and `exceeds_upper_limit` is never
//!   answered here. Not done.
//! - **Checks TigerBeetle lacks** (negative or zero amount, memo length, an
//!   account created closed, a non-positive limit) are answered before the
//!   batch is sent: an event refused so is not sent, and its linked chain is
//!   answered `linked_event_failed` without being sent. The engine compares
//!   ids first, so for an id that already exists it answers `exists_*` where
//!   this adapter answers the request error (deviation).
//! - **A post of 0** is sent as `u128::MAX` (TigerBeetle's "post in full").
//! - **Authorisation**: writes for the system and operators with the finance
//!   role; reads also for auditors, the account's cardholder owner and a
//!   platform owning the account. Delegates are not supported (no grant
//!   verifier here).
//!
//! ## Versions
//! `tigerbeetle-unofficial =0.14.28+0.16.78`: its client is built from the
//! source bundled in `tigerbeetle-unofficial-sys`, which contains the 0.16.78
//! server source too, so `.ci/tigerbeetle.sh` builds the exactly matching
//! server (Zig 0.14.1 from PyPI). Building this crate needs `ZIG_PATH`
//! (that Zig) and libclang.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod map;
mod side;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use citycard_core::{OperatorRole, OperatorRoles, Principal, StoreError};
use citycard_ledger::{
    Account, AccountId, Balances, CreateAccountResult, CreateTransferResult, LedgerError,
    LedgerPort, NewAccount, NewTransfer, Owner, Reference, Transfer, TransferId,
};
pub use side::SideStore;
use tigerbeetle_unofficial as tb;

/// The largest batch the cluster takes in one request.
pub const BATCH_MAX: usize = 8_190;

/// The card system's ledger on a TigerBeetle cluster.
pub struct TigerBeetleLedger {
    client: tb::Client,
    side: SideStore,
    roles: Arc<OperatorRoles>,
}

fn unavailable(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Store(StoreError::Unavailable(format!("TigerBeetle: {e}")))
}

fn corrupt(what: &str) -> LedgerError {
    LedgerError::Corrupt(format!("TigerBeetle answered {what}"))
}

impl TigerBeetleLedger {
    /// Connects to the cluster `cluster_id` at `addresses`
    /// (`"127.0.0.1:3000,127.0.0.1:3001"`).
    pub fn connect(cluster_id: u128, addresses: &str) -> Result<Self, LedgerError> {
        let client = tb::Client::new(cluster_id, addresses).map_err(unavailable)?;
        Ok(TigerBeetleLedger {
            client,
            side: SideStore::default(),
            roles: Arc::new(OperatorRoles::new()),
        })
    }

    /// Looks operators' roles up in `roles`.
    #[must_use]
    pub fn with_roles(mut self, roles: Arc<OperatorRoles>) -> Self {
        self.roles = roles;
        self
    }

    /// The side store (texts of references and memos, owners, metadata).
    pub fn side_store(&self) -> &SideStore {
        &self.side
    }

    fn may_write(&self, principal: &Principal) -> Result<(), LedgerError> {
        if self.roles.allows(principal, &[OperatorRole::Finance]) {
            Ok(())
        } else {
            Err(LedgerError::Denied {
                principal: principal.to_string(),
                action: "write the ledger",
            })
        }
    }

    fn may_read(&self, principal: &Principal, account: &Account) -> Result<(), LedgerError> {
        let allowed = self
            .roles
            .allows(principal, &[OperatorRole::Finance, OperatorRole::Auditor])
            || match (principal, &account.owner) {
                (Principal::Platform { platform }, Some(Owner::Organisation(org))) => {
                    org == platform.code()
                }
                (Principal::Cardholder { person }, Some(Owner::Person(owner))) => person == owner,
                _ => false,
            };
        if allowed {
            Ok(())
        } else {
            Err(LedgerError::Denied {
                principal: principal.to_string(),
                action: "read the account",
            })
        }
    }

    /// Creates accounts without an authorisation check (for tests and tools).
    pub async fn create_accounts_unchecked(
        &self,
        batch: Vec<NewAccount>,
    ) -> Result<Vec<CreateAccountResult>, LedgerError> {
        let mut results = Vec::with_capacity(batch.len());
        for chunk in chains(&batch, |a| a.flags.is_linked()) {
            let part = &batch[chunk.clone()];
            let mut out = vec![CreateAccountResult::Ok; part.len()];
            let mut send = Vec::with_capacity(part.len());
            let mut index = Vec::with_capacity(part.len());
            let mut local_fail = vec![false; part.len()];
            for (i, a) in part.iter().enumerate() {
                if let Err(r) = map::account_to_tb(a) {
                    out[i] = r;
                    local_fail[i] = true;
                }
            }
            refuse_chains(
                &mut out,
                &local_fail,
                |i| part[i].flags.is_linked(),
                CreateAccountResult::LinkedEventFailed,
            );
            for (i, a) in part.iter().enumerate() {
                if out[i] == CreateAccountResult::Ok
                    && let Ok(x) = map::account_to_tb(a)
                {
                    send.push(x);
                    index.push(i);
                }
            }
            for (i, a) in part.iter().enumerate() {
                if out[i] == CreateAccountResult::Ok {
                    self.side.remember_account(a);
                }
            }
            match self.client.create_accounts(send).await {
                Ok(()) => {}
                Err(tb::error::CreateAccountsError::Api(errors)) => {
                    for e in errors.as_slice() {
                        let at = *index
                            .get(e.index() as usize)
                            .ok_or_else(|| corrupt("an index out of the batch"))?;
                        out[at] = map::account_result(e.inner().code().get())
                            .ok_or_else(|| corrupt("an unknown account result"))?;
                    }
                }
                Err(e) => return Err(unavailable(e)),
            }
            results.extend(out);
        }
        Ok(results)
    }

    /// Creates transfers without an authorisation check (for tests and tools).
    pub async fn create_transfers_unchecked(
        &self,
        batch: Vec<NewTransfer>,
    ) -> Result<Vec<CreateTransferResult>, LedgerError> {
        let mut results = Vec::with_capacity(batch.len());
        for chunk in chains(&batch, |t| t.flags.is_linked()) {
            let part = &batch[chunk.clone()];
            let mut out = vec![CreateTransferResult::Ok; part.len()];
            let mut local_fail = vec![false; part.len()];
            let mut mapped = Vec::with_capacity(part.len());
            for (i, t) in part.iter().enumerate() {
                match map::transfer_to_tb(t) {
                    Ok(x) => mapped.push(Some(x)),
                    Err(r) => {
                        out[i] = r;
                        local_fail[i] = true;
                        mapped.push(None);
                    }
                }
            }
            refuse_chains(
                &mut out,
                &local_fail,
                |i| part[i].flags.is_linked(),
                CreateTransferResult::LinkedEventFailed,
            );
            let mut send = Vec::with_capacity(part.len());
            let mut index = Vec::with_capacity(part.len());
            for (i, x) in mapped.into_iter().enumerate() {
                if out[i] == CreateTransferResult::Ok
                    && let Some(x) = x
                {
                    self.side.remember_transfer(&part[i]);
                    send.push(x);
                    index.push(i);
                }
            }
            match self.client.create_transfers(send).await {
                Ok(()) => {}
                Err(tb::error::CreateTransfersError::Api(errors)) => {
                    for e in errors.as_slice() {
                        let at = *index
                            .get(e.index() as usize)
                            .ok_or_else(|| corrupt("an index out of the batch"))?;
                        out[at] = map::transfer_result(e.inner().code().get())
                            .ok_or_else(|| corrupt("an unknown transfer result"))?;
                    }
                }
                Err(e) => return Err(unavailable(e)),
            }
            results.extend(out);
        }
        Ok(results)
    }

    /// Accounts by id (those that exist), without an authorisation check.
    pub async fn lookup_accounts(&self, ids: &[AccountId]) -> Result<Vec<Account>, LedgerError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH_MAX) {
            let raw: Vec<u128> = chunk.iter().map(|id| u128::from(id.get())).collect();
            for a in self
                .client
                .lookup_accounts(raw)
                .await
                .map_err(unavailable)?
            {
                found.push(self.account_from_tb(&a)?);
            }
        }
        Ok(found)
    }

    /// Transfers by id (those that exist), without an authorisation check.
    pub async fn lookup_transfers(&self, ids: &[TransferId]) -> Result<Vec<Transfer>, LedgerError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH_MAX) {
            let raw: Vec<u128> = chunk.iter().map(|id| u128::from(id.get())).collect();
            for t in self
                .client
                .lookup_transfers(raw)
                .await
                .map_err(unavailable)?
            {
                found.push(self.transfer_from_tb(&t)?);
            }
        }
        Ok(found)
    }

    /// Every transfer of an account with a timestamp in `[from, to]`, oldest
    /// first, at most `limit` (a statement page: the next page starts 1 ns
    /// after the last entry's timestamp).
    pub async fn account_transfers(
        &self,
        id: AccountId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Transfer>, LedgerError> {
        use tb::account::{Filter, FilterFlags};
        let filter = Filter::new(u128::from(id.get()), limit.min(BATCH_MAX as u32))
            .with_timestamp_min(map::system_time(from))
            .with_timestamp_max(map::system_time(to))
            .with_flags(FilterFlags::DEBITS | FilterFlags::CREDITS);
        let raw = self
            .client
            .get_account_transfers(Box::new(filter))
            .await
            .map_err(unavailable)?;
        raw.iter().map(|t| self.transfer_from_tb(t)).collect()
    }

    fn account_from_tb(&self, a: &tb::Account) -> Result<Account, LedgerError> {
        let id = map::account_id(a.id()).ok_or_else(|| corrupt("an account id beyond u64"))?;
        let balances = map::balances(
            a.debits_pending(),
            a.debits_posted(),
            a.credits_pending(),
            a.credits_posted(),
        )
        .ok_or_else(|| corrupt("a balance beyond i64 fen"))?;
        let (owner, metadata, upper_limit) = self.side.account(id);
        Ok(Account {
            id,
            kind: citycard_ledger::AccountKind(a.code()),
            currency: map::currency(a.ledger()),
            flags: map::account_flags(a.flags().bits()),
            upper_limit: upper_limit.or_else(|| {
                (a.user_data_32() != 0)
                    .then(|| citycard_core::Money::from_fen(i64::from(a.user_data_32())))
            }),
            owner,
            metadata,
            balances,
            created_at: map::instant(a.timestamp()),
        })
    }

    fn transfer_from_tb(&self, t: &tb::Transfer) -> Result<Transfer, LedgerError> {
        let id = map::transfer_id(t.id()).ok_or_else(|| corrupt("a transfer id beyond u64"))?;
        let (reference, memo) = self.side.transfer(id);
        Ok(Transfer {
            id,
            debit_account_id: map::account_id(t.debit_account_id())
                .ok_or_else(|| corrupt("an account id beyond u64"))?,
            credit_account_id: map::account_id(t.credit_account_id())
                .ok_or_else(|| corrupt("an account id beyond u64"))?,
            amount: map::fen(t.amount()).ok_or_else(|| corrupt("an amount beyond i64 fen"))?,
            pending_id: map::transfer_id(t.pending_id()).filter(|p| !p.is_zero()),
            timeout_secs: t.timeout(),
            currency: map::currency(t.ledger()),
            code: t.code(),
            flags: map::transfer_flags(t.flags().bits()),
            reference,
            memo,
            timestamp: map::instant(t.timestamp()),
        })
    }
}

/// Splits a batch into runs of at most [`BATCH_MAX`] events that never cut a linked chain.
fn chains<T>(batch: &[T], linked: impl Fn(&T) -> bool) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut chain_start) = (0, 0);
    for (i, e) in batch.iter().enumerate() {
        if i > 0 && !linked(&batch[i - 1]) {
            chain_start = i;
        }
        if i - start == BATCH_MAX {
            let cut = if chain_start > start { chain_start } else { i };
            out.push(start..cut);
            start = cut;
        }
        let _ = e;
    }
    if start < batch.len() {
        out.push(start..batch.len());
    }
    out
}

/// Marks the other events of every chain that holds a locally refused event.
fn refuse_chains<R: Copy + PartialEq>(
    out: &mut [R],
    local_fail: &[bool],
    linked: impl Fn(usize) -> bool,
    failed: R,
) {
    let mut start = 0;
    for i in 0..out.len() {
        let end_of_chain = !linked(i) || i + 1 == out.len();
        if end_of_chain {
            if (linked(start) || start != i) && (start..=i).any(|j| local_fail[j]) {
                for j in start..=i {
                    if !local_fail[j] {
                        out[j] = failed;
                    }
                }
            }
            start = i + 1;
        }
    }
}

#[async_trait]
impl LedgerPort for TigerBeetleLedger {
    async fn create_accounts(
        &self,
        principal: &Principal,
        batch: Vec<NewAccount>,
    ) -> Result<Vec<CreateAccountResult>, LedgerError> {
        self.may_write(principal)?;
        self.create_accounts_unchecked(batch).await
    }

    async fn create_transfers(
        &self,
        principal: &Principal,
        batch: Vec<NewTransfer>,
    ) -> Result<Vec<CreateTransferResult>, LedgerError> {
        self.may_write(principal)?;
        self.create_transfers_unchecked(batch).await
    }

    async fn account(&self, principal: &Principal, id: AccountId) -> Result<Account, LedgerError> {
        let account = self
            .lookup_accounts(&[id])
            .await?
            .pop()
            .ok_or(LedgerError::AccountNotFound(id))?;
        self.may_read(principal, &account)?;
        Ok(account)
    }

    async fn balances_at(
        &self,
        principal: &Principal,
        id: AccountId,
        at: DateTime<Utc>,
    ) -> Result<Balances, LedgerError> {
        use tb::account::{Filter, FilterFlags};
        let account = self.account(principal, id).await?;
        if !account.flags.history() {
            return Err(LedgerError::HistoryNotEnabled(id));
        }
        // The latest snapshot at or before `at`.
        let filter = Filter::new(u128::from(id.get()), 1)
            .with_timestamp_max(map::system_time(at))
            .with_flags(FilterFlags::DEBITS | FilterFlags::CREDITS | FilterFlags::REVERSED);
        let found = self
            .client
            .get_account_balances(Box::new(filter))
            .await
            .map_err(unavailable)?;
        match found.first() {
            None => Ok(Balances::default()),
            Some(b) => map::balances(
                b.debits_pending(),
                b.debits_posted(),
                b.credits_pending(),
                b.credits_posted(),
            )
            .ok_or_else(|| corrupt("a balance beyond i64 fen")),
        }
    }

    async fn transfer(
        &self,
        principal: &Principal,
        id: TransferId,
    ) -> Result<Transfer, LedgerError> {
        let t = self
            .lookup_transfers(&[id])
            .await?
            .pop()
            .ok_or(LedgerError::TransferNotFound(id))?;
        self.visible(principal, &t).await?;
        Ok(t)
    }

    async fn transfers_by_reference(
        &self,
        principal: &Principal,
        reference: &Reference,
    ) -> Result<Vec<Transfer>, LedgerError> {
        let filter = tb::QueryFilter::new(BATCH_MAX as u32)
            .with_user_data_128(map::reference_key(reference.as_str()));
        let raw = self
            .client
            .query_transfers(Box::new(filter))
            .await
            .map_err(unavailable)?;
        let mut out = Vec::with_capacity(raw.len());
        let mut seen: HashMap<AccountId, bool> = HashMap::new();
        for t in &raw {
            let t = self.transfer_from_tb(t)?;
            // A post inherits its hold's reference key on the cluster; keep only
            // transfers whose own reference is this one.
            if t.reference.as_ref() != Some(reference) && t.pending_id.is_none() {
                continue;
            }
            let mut ok = false;
            for a in [t.debit_account_id, t.credit_account_id] {
                if let Some(v) = seen.get(&a) {
                    ok |= *v;
                    continue;
                }
                let v = match self.lookup_accounts(&[a]).await?.pop() {
                    Some(acc) => self.may_read(principal, &acc).is_ok(),
                    None => false,
                };
                seen.insert(a, v);
                ok |= v;
            }
            if ok {
                out.push(t);
            }
        }
        Ok(out)
    }
}

impl TigerBeetleLedger {
    async fn visible(&self, principal: &Principal, t: &Transfer) -> Result<(), LedgerError> {
        let accounts = self
            .lookup_accounts(&[t.debit_account_id, t.credit_account_id])
            .await?;
        if accounts.iter().any(|a| self.may_read(principal, a).is_ok()) {
            Ok(())
        } else {
            Err(LedgerError::Denied {
                principal: principal.to_string(),
                action: "read the transfer",
            })
        }
    }
}
