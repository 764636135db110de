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
//!   owners and metadata — lives in a [`SideStore`]: a SQLite file of its own
//!   (see `side`), written before each batch is sent and keyed by the digests
//!   on the cluster, so it survives restarts and never disagrees with the
//!   cluster about which text belongs to an event. The digests on the cluster
//!   make idempotency exact without it.
//! - **Wallet caps are enforced by the cluster**: a transfer crediting a
//!   capped wallet is sent with four linked checks (TigerBeetle's
//!   balance-bounds recipe, see [`caps`]), atomic on the cluster, so no number
//!   of concurrent clients can pass a cap; the refusal is
//!   `exceeds_upper_limit`, as in the engine.
//! - **The other stores** (cards, trips, audit, idempotency) stay on SQLite
//!   or PostgreSQL: with the ledger remote, an operation writes the ledger
//!   first and its other rows after, and transfer ids derived from the
//!   operation's key make a retry answer `exists`, never a second charge
//!   (the crate README spells out the order and the wallet views).
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

pub mod caps;
pub mod map;
mod side;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use citycard_core::{OperatorRole, OperatorRoles, Principal, StoreError};
use citycard_ledger::{
    Account, AccountId, Balances, CreateAccountResult, CreateTransferResult, LedgerError,
    LedgerPort, NewAccount, NewTransfer, Owner, Reference, Transfer, TransferId,
};
pub use side::SideStore;
use tigerbeetle_unofficial as tb;

/// The largest batch the cluster takes in one request: 1 MiB less the
/// header is 8,190 events of 128 bytes, less one for TigerBeetle 0.16's
/// multi-batch trailer (a batch of 8,190 goes out as two requests).
pub const BATCH_MAX: usize = 8_189;

/// The card system's ledger on a TigerBeetle cluster.
pub struct TigerBeetleLedger {
    client: tb::Client,
    side: SideStore,
    roles: Arc<OperatorRoles>,
    caps: caps::CapCache,
    /// Currencies whose cap check accounts exist.
    helpers: Mutex<HashSet<u32>>,
}

fn unavailable(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Store(StoreError::Unavailable(format!("TigerBeetle: {e}")))
}

fn corrupt(what: &str) -> LedgerError {
    LedgerError::Corrupt(format!("TigerBeetle answered {what}"))
}

impl TigerBeetleLedger {
    /// Connects to the cluster `cluster_id` at `addresses`
    /// (`"127.0.0.1:3000,127.0.0.1:3001"`) with its side store (texts the
    /// cluster cannot hold: give a file, [`SideStore::open`], for anything
    /// that must survive a restart).
    pub fn connect(
        cluster_id: u128,
        addresses: &str,
        side: SideStore,
    ) -> Result<Self, LedgerError> {
        let client = tb::Client::new(cluster_id, addresses).map_err(unavailable)?;
        Ok(TigerBeetleLedger {
            client,
            side,
            roles: Arc::new(OperatorRoles::new()),
            caps: caps::CapCache::default(),
            helpers: Mutex::new(HashSet::new()),
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
        for chunk in chains(batch.len(), |i| batch[i].flags.is_linked(), |_| 1) {
            let part = &batch[chunk.clone()];
            let mut out = vec![CreateAccountResult::Ok; part.len()];
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
            let mut send = Vec::with_capacity(part.len());
            let mut index = Vec::with_capacity(part.len());
            for (i, a) in part.iter().enumerate() {
                if out[i] == CreateAccountResult::Ok
                    && let Ok(x) = map::account_to_tb(a)
                {
                    send.push(x);
                    index.push(i);
                }
            }
            self.side
                .remember_accounts(index.iter().map(|&i| &part[i]))?;
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

    /// Learns the caps of the accounts a batch touches (one lookup for those
    /// not seen yet), and makes sure each currency's check accounts exist.
    async fn prepare_caps(&self, batch: &[NewTransfer]) -> Result<(), LedgerError> {
        let unknown = self.caps.unknown(
            batch
                .iter()
                .flat_map(|t| [t.debit_account_id.get(), t.credit_account_id.get()])
                .filter(|id| *id != 0 && *id != u64::MAX),
        );
        for chunk in unknown.chunks(BATCH_MAX) {
            let raw: Vec<u128> = chunk.iter().map(|&id| u128::from(id)).collect();
            for a in self
                .client
                .lookup_accounts(raw)
                .await
                .map_err(unavailable)?
            {
                self.caps.learn(&a);
            }
        }
        Ok(())
    }

    async fn ensure_helpers(&self, ledger: u32) -> Result<(), LedgerError> {
        if self
            .helpers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&ledger)
        {
            return Ok(());
        }
        match self
            .client
            .create_accounts(caps::helper_accounts(ledger))
            .await
        {
            Ok(()) => {}
            Err(tb::error::CreateAccountsError::Api(errors)) => {
                for e in errors.as_slice() {
                    let code = e.inner().code().get();
                    if map::account_result(code) != Some(CreateAccountResult::Exists) {
                        return Err(corrupt("a refusal of the wallet caps' check accounts"));
                    }
                }
            }
            Err(e) => return Err(unavailable(e)),
        }
        self.helpers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ledger);
        Ok(())
    }

    /// Creates transfers without an authorisation check (for tests and tools).
    pub async fn create_transfers_unchecked(
        &self,
        batch: Vec<NewTransfer>,
    ) -> Result<Vec<CreateTransferResult>, LedgerError> {
        self.prepare_caps(&batch).await?;
        let capped: Vec<Option<(u64, caps::Cap, caps::Side)>> = batch
            .iter()
            .map(|t| {
                if t.flags.void_pending_transfer() {
                    None
                } else {
                    self.caps
                        .cap_for(t.debit_account_id.get(), t.credit_account_id.get())
                }
            })
            .collect();
        let mut results = Vec::with_capacity(batch.len());
        let weight = |i: usize| if capped[i].is_some() { 5 } else { 1 };
        for chunk in chains(batch.len(), |i| batch[i].flags.is_linked(), weight) {
            let part = &batch[chunk.clone()];
            let part_caps = &capped[chunk.clone()];
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
            // The last event of a batch still linked is answered `linked_event_chain_open`
            // before any check of its own: sent without cap checks, which would fail first.
            let open_tail = match part.last() {
                Some(t) if t.flags.is_linked() => part.len() - 1,
                _ => part.len(),
            };
            // Each sent event: (index in `part`, 0 for the transfer or 1–4 for its cap checks).
            let mut send = Vec::with_capacity(part.len());
            let mut owner: Vec<(usize, u8)> = Vec::with_capacity(part.len());
            for (i, x) in mapped.into_iter().enumerate() {
                if out[i] != CreateTransferResult::Ok {
                    continue;
                }
                let Some(x) = x else { continue };
                match part_caps[i].filter(|_| i < open_tail) {
                    None => {
                        send.push(x);
                        owner.push((i, 0));
                    }
                    Some((account, cap, side)) => {
                        self.ensure_helpers(x.ledger()).await?;
                        let linked_after = part[i].flags.is_linked();
                        let main = x
                            .with_flags(x.flags() | tb::transfer::Flags::LINKED)
                            .with_user_data_32(if linked_after { 0 } else { caps::ADDED_LINK });
                        let checks =
                            caps::checks(&main, u128::from(account), cap.limit, side, linked_after);
                        send.push(main);
                        owner.push((i, 0));
                        for (k, c) in checks.into_iter().enumerate() {
                            send.push(c);
                            owner.push((i, k as u8 + 1));
                        }
                    }
                }
            }
            self.side.remember_transfers(
                part.iter()
                    .enumerate()
                    .filter(|(i, _)| out[*i] == CreateTransferResult::Ok)
                    .map(|(_, t)| t),
            )?;
            match self.client.create_transfers(send).await {
                Ok(()) => {}
                Err(tb::error::CreateTransfersError::Api(errors)) => {
                    // The first refusal among a transfer's checks, by TigerBeetle's code.
                    let mut check_code: HashMap<usize, u32> = HashMap::new();
                    let mut replays = Vec::new();
                    for e in errors.as_slice() {
                        let (at, k) = *owner
                            .get(e.index() as usize)
                            .ok_or_else(|| corrupt("an index out of the batch"))?;
                        let code = e.inner().code().get();
                        if k == 0 {
                            out[at] = match map::transfer_result(code) {
                                Some(r) => r,
                                // exists_with_different_user_data_32: only our link marker differs.
                                None if code == map::EXISTS_WITH_DIFFERENT_USER_DATA_32 => {
                                    CreateTransferResult::ExistsWithDifferentFlags
                                }
                                None => return Err(corrupt("an unknown transfer result")),
                            };
                            if map::is_exists(out[at]) {
                                replays.push(at);
                            }
                        } else if code != map::LINKED_EVENT_FAILED {
                            check_code.entry(at).or_insert(code);
                        }
                    }
                    for (at, code) in check_code {
                        if out[at] == CreateTransferResult::LinkedEventFailed {
                            out[at] = map::check_result(code)
                                .ok_or_else(|| corrupt("an unknown transfer result"))?;
                        }
                    }
                    // A replay where this adapter may have changed the flags on the wire (a
                    // capped transfer gets `linked`): compare as the engine does.
                    let replays: Vec<usize> = replays
                        .into_iter()
                        .filter(|&at| {
                            part_caps[at].is_some()
                                || out[at] == CreateTransferResult::ExistsWithDifferentFlags
                        })
                        .collect();
                    if !replays.is_empty() {
                        let ids: Vec<u128> = replays
                            .iter()
                            .map(|&at| u128::from(part[at].id.get()))
                            .collect();
                        let stored = self
                            .client
                            .lookup_transfers(ids)
                            .await
                            .map_err(unavailable)?;
                        for (&at, e) in replays.iter().zip(stored.iter()) {
                            if e.id() == u128::from(part[at].id.get()) {
                                out[at] = caps::exists_result(e, &part[at]);
                            }
                        }
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
        let limit = limit.min(BATCH_MAX as u32);
        let mut out = Vec::new();
        let mut from = map::system_time(from);
        // Cap checks (ids above 2^64) are not ours: skip them and read on until the page is full.
        loop {
            let filter = Filter::new(u128::from(id.get()), limit)
                .with_timestamp_min(from)
                .with_timestamp_max(map::system_time(to))
                .with_flags(FilterFlags::DEBITS | FilterFlags::CREDITS);
            let raw = self
                .client
                .get_account_transfers(Box::new(filter))
                .await
                .map_err(unavailable)?;
            for t in &raw {
                if out.len() < limit as usize && map::transfer_id(t.id()).is_some() {
                    out.push(self.transfer_from_tb(t)?);
                }
            }
            match raw.last() {
                Some(last) if raw.len() == limit as usize && out.len() < limit as usize => {
                    from = last.timestamp() + std::time::Duration::from_nanos(1);
                }
                _ => return Ok(out),
            }
        }
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
        let (owner, metadata, upper_limit) =
            self.side.account(id, a.user_data_128(), a.user_data_64())?;
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
        let (reference, memo) = self
            .side
            .transfer(id, t.user_data_128(), t.user_data_64())?;
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

/// Splits a batch of `len` events into runs of at most [`BATCH_MAX`] events
/// on the wire (`weight`: an event with cap checks is five) that never cut a
/// linked chain (unless the chain alone is larger).
fn chains(
    len: usize,
    linked: impl Fn(usize) -> bool,
    weight: impl Fn(usize) -> usize,
) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut chain_start, mut size) = (0, 0, 0usize);
    for i in 0..len {
        if i > 0 && !linked(i - 1) {
            chain_start = i;
        }
        let w = weight(i);
        if size + w > BATCH_MAX && i > start {
            let cut = if chain_start > start { chain_start } else { i };
            out.push(start..cut);
            size = (cut..i).map(&weight).sum();
            start = cut;
        }
        size += w;
    }
    if start < len {
        out.push(start..len);
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
