//! The in-memory engine: validates and applies batches deterministically.
//!
//! Longer than ≈800 lines: a batch's apply and undo steps share private
//! state and are kept side by side, so that each change and its reversal
//! read together (validation and queries are in their own files).
//!
//! The engine is synchronous and single-threaded; the [`Ledger`](crate::Ledger)
//! service wraps it with a store and a lock. Its working set is bounded:
//! accounts with their balances, holds still pending (with their timeouts),
//! and a window of recent transfers, failed ids and expiries of at least
//! `capacity` entries (at most 1.5 × `capacity` between trims). History
//! lives in the store. An engine that has never let a record go (a new
//! [`Engine::new`], which keeps everything) decides alone; otherwise the
//! ledger first asks the store for what a batch names and the window lacks
//! ([`Engine::lacking`]) and hands it over ([`Engine::supply`]), so that
//! `exists`, `exists_with_different_*` and `id_already_failed` stay exact
//! forever. Hot state lives in vectors indexed through hash maps keyed by
//! the integer ids (with a seeded multiply-fold hasher), so validating and
//! applying a plain transfer allocates nothing beyond amortised vector growth.
//!
//! Slightly over ≈800 lines: batches, linked-chain rollback and the window
//! share private state; validation and reads are in `validate.rs` and `queries.rs`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use chrono::{DateTime, Utc};
use citycard_core::Money;

use crate::ids::{AccountId, TransferId};
use crate::model::{
    Account, AccountFlags, Balances, CreateAccountResult, CreateTransferResult, Expiry,
    FailedTransfer, NewAccount, NewTransfer, PendingStatus, Transfer, TransferFlags,
};
use crate::service::LedgerError;
use crate::store::{AccountBalance, ChangeSet, LedgerState, Prefetched, Snapshot};

fn corrupt(message: String) -> LedgerError {
    LedgerError::Corrupt(message)
}

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// How many recent transfers (and failed ids) a [`Ledger`](crate::Ledger)'s
/// engine keeps by default: 65,536, eight batches of 8,190, about 15 MB.
pub const DEFAULT_TRANSFER_CACHE: usize = 65_536;

mod catch_up;
mod hasher;
mod queries;
mod validate;

use hasher::IdHasherBuilder;

type IdMap<V> = HashMap<u64, V, IdHasherBuilder>;

/// The hot part of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AccountState {
    flags: u16,
    currency: u16,
    /// The upper limit in fen, `i64::MAX` when none.
    upper_limit: i64,
    debits_pending: i64,
    debits_posted: i64,
    credits_pending: i64,
    credits_posted: i64,
}

impl AccountState {
    fn balances(&self) -> [i64; 4] {
        [
            self.debits_pending,
            self.debits_posted,
            self.credits_pending,
            self.credits_posted,
        ]
    }
    fn flags(&self) -> AccountFlags {
        AccountFlags(self.flags)
    }
}

/// What posting, voiding or expiring a hold needs of it.
#[derive(Debug, Clone, Copy)]
struct Hold {
    debit: AccountId,
    credit: AccountId,
    amount: Money,
    currency: crate::ids::Currency,
    code: u16,
    flags: TransferFlags,
}

#[derive(Debug, Clone, Copy)]
struct PendingState {
    status: PendingStatus,
    /// Expiry in nanoseconds since the epoch, `i64::MAX` when none.
    expires_at: i64,
    hold: Hold,
}

impl PendingState {
    fn of(t: &Transfer, status: PendingStatus) -> Self {
        let ts = ts_of(t.timestamp);
        PendingState {
            status,
            expires_at: if t.timeout_secs > 0 {
                ts.saturating_add(i64::from(t.timeout_secs) * NANOS_PER_SEC)
            } else {
                i64::MAX
            },
            hold: Hold {
                debit: t.debit_account_id,
                credit: t.credit_account_id,
                amount: t.amount,
                currency: t.currency,
                code: t.code,
                flags: t.flags,
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Undo {
    Account(u32, AccountState),
    Pending(u64, Option<PendingState>),
}

/// Where a batch's changes start, to roll a linked chain back.
#[derive(Debug, Clone, Copy)]
struct Mark {
    transfers: usize,
    undo: usize,
    released: usize,
    last_ts: i64,
}

/// The status of a hold that is not live, from the store's rows: posted or
/// voided when a post or void names it, expired when an expiry does.
pub(crate) fn settled_status(
    id: TransferId,
    settlements: &[Transfer],
    expiries: &[Expiry],
) -> PendingStatus {
    if let Some(s) = settlements.iter().find(|s| s.pending_id == Some(id)) {
        if s.flags.post_pending_transfer() {
            PendingStatus::Posted
        } else {
            PendingStatus::Voided
        }
    } else if expiries.iter().any(|e| e.transfer_id == id) {
        PendingStatus::Expired
    } else {
        PendingStatus::Pending
    }
}

/// The in-memory ledger state and its batch logic.
pub struct Engine {
    account_index: IdMap<u32>,
    states: Vec<AccountState>,
    accounts: Vec<Account>,
    /// Per account, the batch that last touched it (to list touched accounts once).
    touched_in: Vec<u64>,
    /// The window of recent transfers, in timestamp order.
    transfers: Vec<Transfer>,
    /// The ledger-wide position (0-based, 64-bit) of `transfers[0]`.
    base: u64,
    /// Transfers other instances stored that this engine never held
    /// (learnt when catching up with a shared store).
    elsewhere: u64,
    /// Transfer id → ledger-wide position, for the window.
    transfer_index: IdMap<u64>,
    /// How many transfers and failed ids the window keeps at least.
    capacity: usize,
    /// True while the engine knows every transfer and failure the ledger holds.
    complete: bool,
    failed: IdMap<CreateTransferResult>,
    failed_order: VecDeque<u64>,
    /// Live holds, and holds of the window whatever their status.
    pending: IdMap<PendingState>,
    expiry_queue: BinaryHeap<Reverse<(i64, u64)>>,
    /// Recent expiries (bounded like the window).
    expiries: VecDeque<(TransferId, i64)>,
    /// What the store answered for this batch.
    fetched: IdMap<Transfer>,
    fetched_failed: IdMap<CreateTransferResult>,
    fetched_holds: IdMap<PendingState>,
    last_ts: i64,
    undo: Vec<Undo>,
    batch: u64,
    batch_accounts: usize,
    batch_transfers: usize,
    batch_failures: Vec<FailedTransfer>,
    batch_expiry_log: Vec<Expiry>,
    batch_released: Vec<TransferId>,
    batch_touched: Vec<u32>,
    batch_balances: Vec<AccountBalance>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("accounts", &self.accounts.len())
            .field("transfers", &self.transfer_count())
            .field("window", &self.transfers.len())
            .finish()
    }
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

fn ts_of(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt()
        .unwrap_or(if at.timestamp() > 0 { i64::MAX - 1 } else { 0 })
}

pub(crate) fn instant(ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(ns)
}

type R = CreateTransferResult;

impl Engine {
    /// An empty ledger that keeps every transfer (a reference, tests, a
    /// ledger that fits in memory): it never needs the store to decide.
    pub fn new() -> Self {
        Self::with_capacity(usize::MAX)
    }

    /// An empty ledger whose window keeps at least `capacity` recent
    /// transfers and failed ids (0: only the current batch).
    pub fn with_capacity(capacity: usize) -> Self {
        Engine {
            account_index: IdMap::default(),
            states: Vec::new(),
            accounts: Vec::new(),
            touched_in: Vec::new(),
            transfers: Vec::new(),
            base: 0,
            elsewhere: 0,
            transfer_index: IdMap::default(),
            capacity,
            complete: true,
            failed: IdMap::default(),
            failed_order: VecDeque::new(),
            pending: IdMap::default(),
            expiry_queue: BinaryHeap::new(),
            expiries: VecDeque::new(),
            fetched: IdMap::default(),
            fetched_failed: IdMap::default(),
            fetched_holds: IdMap::default(),
            last_ts: 0,
            undo: Vec::new(),
            batch: 1,
            batch_accounts: 0,
            batch_transfers: 0,
            batch_failures: Vec::new(),
            batch_expiry_log: Vec::new(),
            batch_released: Vec::new(),
            batch_touched: Vec::new(),
            batch_balances: Vec::new(),
        }
    }

    /// The window's capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Changes the window's capacity (trimmed at the end of the next batch).
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    /// True while the engine holds every transfer and failed id of the
    /// ledger (it then decides without asking the store).
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Reserves room for `accounts` accounts and `transfers` transfers.
    pub fn reserve(&mut self, accounts: usize, transfers: usize) {
        let transfers = transfers.min(self.capacity.saturating_add(self.capacity / 2));
        self.account_index.reserve(accounts);
        self.states.reserve(accounts);
        self.accounts.reserve(accounts);
        self.touched_in.reserve(accounts);
        self.transfer_index.reserve(transfers);
        self.transfers.reserve(transfers);
    }

    /// Opens on the state a store holds: accounts with their balances,
    /// live holds and the last timestamp. No transfer history is read.
    pub fn from_state(state: LedgerState, capacity: usize) -> Result<Engine, LedgerError> {
        let mut engine = Engine::with_capacity(capacity);
        engine.reserve(state.accounts.len(), 0);
        let mut accounts = state.accounts;
        accounts.sort_by_key(|a| a.created_at);
        for account in accounts {
            if engine.account_index.contains_key(&account.id.get()) {
                return Err(corrupt(format!("account {} stored twice", account.id)));
            }
            engine.last_ts = engine.last_ts.max(ts_of(account.created_at));
            engine.insert_account(account);
        }
        for hold in state.holds {
            let known = |id: AccountId| engine.account_index.contains_key(&id.get());
            if !hold.flags.pending()
                || !known(hold.debit_account_id)
                || !known(hold.credit_account_id)
            {
                return Err(corrupt(format!(
                    "live hold {} is not a hold between known accounts",
                    hold.id
                )));
            }
            let p = PendingState::of(&hold, PendingStatus::Pending);
            if p.expires_at != i64::MAX {
                engine
                    .expiry_queue
                    .push(Reverse((p.expires_at, hold.id.get())));
            }
            engine.last_ts = engine.last_ts.max(ts_of(hold.timestamp));
            engine.pending.insert(hold.id.get(), p);
        }
        if let Some(at) = state.last_timestamp {
            engine.last_ts = engine.last_ts.max(ts_of(at));
        }
        engine.base = state.transfer_count;
        engine.complete = state.transfer_count == 0 && state.failure_count == 0;
        engine.clear_batch();
        Ok(engine)
    }

    /// Rebuilds a ledger by replaying everything a store acknowledged (the
    /// reference for [`Engine::from_state`]; it keeps every transfer).
    pub fn from_snapshot(snapshot: Snapshot) -> Result<Engine, LedgerError> {
        let mut engine = Engine::new();
        engine.reserve(snapshot.accounts.len(), snapshot.transfers.len());
        let mut accounts = snapshot.accounts;
        accounts.sort_by_key(|a| a.created_at);
        for mut account in accounts {
            let ts = ts_of(account.created_at);
            account.flags = AccountFlags(account.flags.0 & !AccountFlags::CLOSED.0);
            account.balances = Balances::default();
            if engine.account_index.contains_key(&account.id.get()) {
                return Err(corrupt(format!("account {} stored twice", account.id)));
            }
            engine.insert_account(account);
            engine.last_ts = engine.last_ts.max(ts);
        }
        let mut transfers = snapshot.transfers;
        transfers.sort_by_key(|t| t.timestamp);
        let mut expiries = snapshot.expiries;
        expiries.sort_by_key(|e| e.timestamp);
        let mut expiries = expiries.into_iter().peekable();
        for transfer in transfers {
            let ts = ts_of(transfer.timestamp);
            while let Some(e) = expiries.next_if(|e| ts_of(e.timestamp) < ts) {
                engine.replay_expiry(e)?;
            }
            engine.replay_transfer(transfer)?;
        }
        for e in expiries {
            engine.replay_expiry(e)?;
        }
        for f in snapshot.failures {
            engine.remember_failure(f.id.get(), f.result);
        }
        engine.clear_batch();
        Ok(engine)
    }

    fn replay_transfer(&mut self, t: Transfer) -> Result<(), LedgerError> {
        let ts = ts_of(t.timestamp);
        let dr = self.account_index.get(&t.debit_account_id.get()).copied();
        let cr = self.account_index.get(&t.credit_account_id.get()).copied();
        let (Some(dr), Some(cr)) = (dr, cr) else {
            return Err(corrupt(format!(
                "transfer {} names an unknown account",
                t.id
            )));
        };
        if self.transfer_index.contains_key(&t.id.get()) {
            return Err(corrupt(format!("transfer {} stored twice", t.id)));
        }
        if t.flags.post_pending_transfer() || t.flags.void_pending_transfer() {
            let known = t
                .pending_id
                .and_then(|p| self.pending.get(&p.get()))
                .is_some_and(|p| p.status == PendingStatus::Pending);
            if !known {
                return Err(corrupt(format!(
                    "transfer {} settles an unknown hold",
                    t.id
                )));
            }
        }
        self.last_ts = self.last_ts.max(ts);
        self.apply(t, dr, cr, false);
        Ok(())
    }

    fn replay_expiry(&mut self, e: Expiry) -> Result<(), LedgerError> {
        let ts = ts_of(e.timestamp);
        match self.pending.get(&e.transfer_id.get()) {
            Some(p) if p.status == PendingStatus::Pending => {}
            _ => {
                return Err(corrupt(format!(
                    "expiry of {} names no live hold",
                    e.transfer_id
                )));
            }
        }
        self.last_ts = self.last_ts.max(ts);
        self.expire(e.transfer_id.get(), ts);
        Ok(())
    }

    fn clear_batch(&mut self) {
        self.batch += 1;
        self.batch_accounts = self.accounts.len();
        self.batch_transfers = self.transfers.len();
        self.batch_failures.clear();
        self.batch_expiry_log.clear();
        self.batch_released.clear();
        self.batch_touched.clear();
        self.batch_balances.clear();
        self.undo.clear();
    }

    /// Ends a batch: lists the touched accounts' balances for the change
    /// set, lets released holds outside the window go, trims the window and
    /// forgets what the store supplied.
    fn finish_batch(&mut self) {
        self.batch_balances = self
            .batch_touched
            .iter()
            .map(|&i| {
                let s = &self.states[i as usize];
                AccountBalance {
                    id: self.accounts[i as usize].id,
                    balances: Balances::from_fen(s.balances()),
                    flags: s.flags(),
                }
            })
            .collect();
        for id in &self.batch_released {
            if !self.transfer_index.contains_key(&id.get()) {
                self.pending.remove(&id.get());
            }
        }
        self.trim();
        self.fetched.clear();
        self.fetched_failed.clear();
        self.fetched_holds.clear();
    }

    /// Trims the window to `capacity` once it passes 1.5 × `capacity`
    /// (never dropping the current batch), so trimming costs O(1) per transfer.
    fn trim(&mut self) {
        let slack = self.capacity / 2;
        if self.transfers.len() > self.capacity.saturating_add(slack) {
            let excess = (self.transfers.len() - self.capacity).min(self.batch_transfers);
            for t in self.transfers.drain(..excess) {
                self.transfer_index.remove(&t.id.get());
                if t.flags.pending()
                    && self
                        .pending
                        .get(&t.id.get())
                        .is_some_and(|p| p.status != PendingStatus::Pending)
                {
                    self.pending.remove(&t.id.get());
                }
            }
            self.base += excess as u64;
            self.batch_transfers -= excess;
            self.complete &= excess == 0;
        }
        if self.failed_order.len() > self.capacity.saturating_add(slack) {
            while self.failed_order.len() > self.capacity {
                if let Some(id) = self.failed_order.pop_front() {
                    self.failed.remove(&id);
                }
            }
            self.complete = false;
        }
        while self.expiries.len() > self.capacity {
            self.expiries.pop_front();
        }
    }

    fn remember_failure(&mut self, id: u64, result: CreateTransferResult) {
        if self.failed.insert(id, result).is_none() {
            self.failed_order.push_back(id);
        }
    }

    /// The changes of the last batch, to persist.
    pub fn changes(&self) -> ChangeSet<'_> {
        ChangeSet {
            accounts: self.accounts.get(self.batch_accounts..).unwrap_or(&[]),
            transfers: self.transfers.get(self.batch_transfers..).unwrap_or(&[]),
            expiries: &self.batch_expiry_log,
            failures: &self.batch_failures,
            balances: &self.batch_balances,
            released: &self.batch_released,
        }
    }

    /// What `batch` names that this engine does not hold: ids it may have
    /// to answer `exists` or `id_already_failed` for, and holds it posts or
    /// voids that are not in memory. Empty for a complete engine. Ask the
    /// store ([`LedgerStore::prefetch`](crate::LedgerStore::prefetch)) and
    /// [`Engine::supply`] the answer before deciding the batch.
    pub fn lacking(&self, batch: &[NewTransfer]) -> (Vec<TransferId>, Vec<TransferId>) {
        let (mut ids, mut holds) = (Vec::new(), Vec::new());
        if self.complete {
            return (ids, holds);
        }
        let usable = |id: TransferId| !id.is_zero() && id != TransferId::MAX;
        for t in batch {
            let id = t.id.get();
            if usable(t.id)
                && !self.transfer_index.contains_key(&id)
                && !self.failed.contains_key(&id)
            {
                ids.push(t.id);
            }
            if let Some(p) = t.pending_id
                && usable(p)
                && (t.flags.post_pending_transfer() || t.flags.void_pending_transfer())
                && !self.pending.contains_key(&p.get())
                && !self.transfer_index.contains_key(&p.get())
            {
                holds.push(p);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        holds.sort_unstable();
        holds.dedup();
        (ids, holds)
    }

    /// Hands the engine what the store answered for the next batch, for
    /// the ids and holds [`Engine::lacking`] listed.
    pub fn supply(&mut self, holds: &[TransferId], prefetched: Prefetched) {
        self.fetched.clear();
        self.fetched_failed.clear();
        self.fetched_holds.clear();
        for t in prefetched.transfers {
            if t.flags.pending() && holds.contains(&t.id) && !self.pending.contains_key(&t.id.get())
            {
                let status = settled_status(t.id, &prefetched.settlements, &prefetched.expiries);
                let p = PendingState::of(&t, status);
                if status == PendingStatus::Pending {
                    // A live hold the engine did not load: it is live all the same.
                    if p.expires_at != i64::MAX {
                        self.expiry_queue.push(Reverse((p.expires_at, t.id.get())));
                    }
                    self.pending.insert(t.id.get(), p);
                } else {
                    self.fetched_holds.insert(t.id.get(), p);
                }
            }
            self.fetched.insert(t.id.get(), t);
        }
        for f in prefetched.failures {
            self.fetched_failed.insert(f.id.get(), f.result);
        }
    }

    /// A transfer the engine knows: in the window or supplied for this batch.
    fn known_transfer(&self, id: u64) -> Option<&Transfer> {
        match self.transfer_index.get(&id) {
            Some(&pos) => self.transfers.get((pos - self.base) as usize),
            None => self.fetched.get(&id),
        }
    }

    #[inline]
    fn next_ts(&mut self, now: i64) -> i64 {
        self.last_ts = now.max(self.last_ts.saturating_add(1));
        self.last_ts
    }

    /// Inserts an account with the balances and flags it carries.
    fn insert_account(&mut self, account: Account) {
        let index = self.states.len() as u32;
        self.account_index.insert(account.id.get(), index);
        let b = account.balances;
        self.states.push(AccountState {
            flags: account.flags.0,
            currency: account.currency.0,
            upper_limit: account.upper_limit.map_or(i64::MAX, Money::fen),
            debits_pending: b.debits_pending.fen(),
            debits_posted: b.debits_posted.fen(),
            credits_pending: b.credits_pending.fen(),
            credits_posted: b.credits_posted.fen(),
        });
        self.touched_in.push(0);
        self.accounts.push(account);
    }

    #[inline]
    fn touch(&mut self, index: u32) {
        let seen = &mut self.touched_in[index as usize];
        if *seen != self.batch {
            *seen = self.batch;
            self.batch_touched.push(index);
        }
    }

    // ---------------------------------------------------------------- accounts

    /// Creates a batch of accounts at `now`; one result per account, in order.
    pub fn create_accounts(
        &mut self,
        now: DateTime<Utc>,
        batch: Vec<NewAccount>,
    ) -> Vec<CreateAccountResult> {
        self.clear_batch();
        let now = ts_of(now);
        let len = batch.len();
        let mut results = Vec::with_capacity(len);
        let mut chain: Option<(usize, usize, i64)> = None; // (first event, first account, ts)
        let mut chain_broken = false;
        for (i, account) in batch.into_iter().enumerate() {
            let linked = account.flags.is_linked();
            if chain.is_none() && linked {
                chain = Some((i, self.accounts.len(), self.last_ts));
                chain_broken = false;
            }
            let result = if linked && i + 1 == len {
                CreateAccountResult::LinkedEventChainOpen
            } else if chain_broken {
                CreateAccountResult::LinkedEventFailed
            } else {
                self.create_account(now, account)
            };
            results.push(result);
            if let Some((first, first_account, ts)) = chain {
                if !result.is_success() && !chain_broken {
                    chain_broken = true;
                    for a in self.accounts.drain(first_account..) {
                        self.account_index.remove(&a.id.get());
                    }
                    self.states.truncate(first_account);
                    self.touched_in.truncate(first_account);
                    self.last_ts = ts;
                    for r in results.iter_mut().take(i).skip(first) {
                        *r = CreateAccountResult::LinkedEventFailed;
                    }
                }
                if !linked {
                    chain = None;
                    chain_broken = false;
                }
            }
        }
        self.finish_batch();
        results
    }

    // --------------------------------------------------------------- transfers

    /// Releases every hold whose timeout passed by `now`.
    pub fn expire_pending(&mut self, now: DateTime<Utc>) -> usize {
        self.clear_batch();
        let released = self.sweep(ts_of(now));
        self.finish_batch();
        released
    }

    fn sweep(&mut self, now: i64) -> usize {
        let mut count = 0;
        while let Some(&Reverse((at, id))) = self.expiry_queue.peek() {
            if at > now {
                break;
            }
            self.expiry_queue.pop();
            if self
                .pending
                .get(&id)
                .is_some_and(|p| p.status == PendingStatus::Pending && p.expires_at == at)
            {
                let ts = self.next_ts(now);
                self.expire(id, ts);
                self.batch_expiry_log.push(Expiry {
                    transfer_id: TransferId::new(id),
                    timestamp: instant(ts),
                });
                self.batch_released.push(TransferId::new(id));
                count += 1;
            }
        }
        count
    }

    fn expire(&mut self, id: u64, ts: i64) {
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        p.status = PendingStatus::Expired;
        let hold = p.hold;
        let amount = hold.amount.fen();
        let dr = self.account_index[&hold.debit.get()];
        let cr = self.account_index[&hold.credit.get()];
        self.states[dr as usize].debits_pending -= amount;
        self.states[cr as usize].credits_pending -= amount;
        if hold.flags.closing_debit() {
            self.states[dr as usize].flags &= !AccountFlags::CLOSED.0;
        }
        if hold.flags.closing_credit() {
            self.states[cr as usize].flags &= !AccountFlags::CLOSED.0;
        }
        self.touch(dr);
        self.touch(cr);
        self.expiries.push_back((TransferId::new(id), ts));
    }

    /// Creates a batch of transfers at `now`: first releases expired holds,
    /// then validates and applies each transfer in order (linked chains all
    /// or nothing). One result per transfer, in order.
    ///
    /// An engine that is not complete decides from its window and what was
    /// [`supplied`](Engine::supply) for this batch: an id it knows nothing
    /// of is taken to be new.
    pub fn create_transfers(
        &mut self,
        now: DateTime<Utc>,
        batch: Vec<NewTransfer>,
    ) -> Vec<CreateTransferResult> {
        self.clear_batch();
        let now = ts_of(now);
        self.sweep(now);
        let len = batch.len();
        let mut results = Vec::with_capacity(len);
        let mut chain: Option<(usize, Mark)> = None;
        let mut chain_broken = false;
        for (i, t) in batch.into_iter().enumerate() {
            let linked = t.flags.is_linked();
            if chain.is_none() && linked {
                chain = Some((
                    i,
                    Mark {
                        transfers: self.transfers.len(),
                        undo: self.undo.len(),
                        released: self.batch_released.len(),
                        last_ts: self.last_ts,
                    },
                ));
                chain_broken = false;
            }
            let result = if linked && i + 1 == len {
                R::LinkedEventChainOpen
            } else if chain_broken {
                R::LinkedEventFailed
            } else {
                let id = t.id;
                let r = self.create_transfer(now, t, chain.is_some());
                if r.is_transient() && self.failure(id).is_none() {
                    self.remember_failure(id.get(), r);
                    self.batch_failures.push(FailedTransfer { id, result: r });
                }
                r
            };
            results.push(result);
            if let Some((first, mark)) = chain {
                if !result.is_success() && !chain_broken {
                    chain_broken = true;
                    self.rollback(mark);
                    for r in results.iter_mut().take(i).skip(first) {
                        *r = R::LinkedEventFailed;
                    }
                }
                if !linked {
                    chain = None;
                    chain_broken = false;
                    self.undo.clear();
                }
            }
        }
        self.finish_batch();
        results
    }

    fn rollback(&mut self, mark: Mark) {
        while self.undo.len() > mark.undo {
            match self.undo.pop() {
                Some(Undo::Account(index, state)) => self.states[index as usize] = state,
                Some(Undo::Pending(id, prev)) => match prev {
                    Some(p) => {
                        self.pending.insert(id, p);
                    }
                    None => {
                        self.pending.remove(&id);
                    }
                },
                None => break,
            }
        }
        for t in self.transfers.drain(mark.transfers..) {
            self.transfer_index.remove(&t.id.get());
        }
        self.batch_released.truncate(mark.released);
        // Holds pushed on the expiry queue by rolled-back transfers are
        // skipped when popped: their pending state is gone.
        self.last_ts = mark.last_ts;
    }

    /// Applies a validated (or replayed) transfer's effects and records it.
    fn apply(&mut self, t: Transfer, dr: u32, cr: u32, undo: bool) {
        if undo {
            self.undo.push(Undo::Account(dr, self.states[dr as usize]));
            self.undo.push(Undo::Account(cr, self.states[cr as usize]));
        }
        let amount = t.amount.fen();
        let f = t.flags;
        if f.pending() {
            let state = PendingState::of(&t, PendingStatus::Pending);
            if undo {
                self.undo.push(Undo::Pending(t.id.get(), None));
            }
            if state.expires_at != i64::MAX {
                self.expiry_queue
                    .push(Reverse((state.expires_at, t.id.get())));
            }
            self.pending.insert(t.id.get(), state);
            let d = &mut self.states[dr as usize];
            d.debits_pending += amount;
            if f.closing_debit() {
                d.flags |= AccountFlags::CLOSED.0;
            }
            let c = &mut self.states[cr as usize];
            c.credits_pending += amount;
            if f.closing_credit() {
                c.flags |= AccountFlags::CLOSED.0;
            }
        } else if let (true, Some(pid)) = (
            f.post_pending_transfer() || f.void_pending_transfer(),
            t.pending_id,
        ) {
            let mut held = (0, TransferFlags::NONE);
            if let Some(p) = self.pending.get_mut(&pid.get()) {
                if undo {
                    self.undo.push(Undo::Pending(pid.get(), Some(*p)));
                }
                held = (p.hold.amount.fen(), p.hold.flags);
                p.status = if f.post_pending_transfer() {
                    PendingStatus::Posted
                } else {
                    PendingStatus::Voided
                };
                self.batch_released.push(pid);
            }
            let posted = if f.post_pending_transfer() { amount } else { 0 };
            let d = &mut self.states[dr as usize];
            d.debits_pending -= held.0;
            d.debits_posted += posted;
            if f.void_pending_transfer() && held.1.closing_debit() {
                d.flags &= !AccountFlags::CLOSED.0;
            }
            let c = &mut self.states[cr as usize];
            c.credits_pending -= held.0;
            c.credits_posted += posted;
            if f.void_pending_transfer() && held.1.closing_credit() {
                c.flags &= !AccountFlags::CLOSED.0;
            }
        } else {
            self.states[dr as usize].debits_posted += amount;
            self.states[cr as usize].credits_posted += amount;
        }
        self.touch(dr);
        self.touch(cr);
        let pos = self.base + self.transfers.len() as u64;
        self.transfer_index.insert(t.id.get(), pos);
        self.transfers.push(t);
    }
}
