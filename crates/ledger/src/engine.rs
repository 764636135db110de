//! The in-memory engine: validates and applies batches deterministically.
//!
//! The engine is synchronous and single-threaded; the [`Ledger`](crate::Ledger)
//! service wraps it with a store and a lock. Hot state lives in vectors
//! indexed through hash maps keyed by the integer ids (with a seeded
//! multiply-fold hasher), so validating and applying a plain transfer
//! allocates nothing beyond amortised vector growth.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasher, Hasher};

use chrono::{DateTime, Utc};
use citycard_core::Money;

use crate::ids::{AccountId, Reference, TransferId};
use crate::model::{
    Account, AccountFlags, Balances, CreateAccountResult, CreateTransferResult, Expiry,
    FailedTransfer, MAX_MEMO_LEN, NewAccount, NewTransfer, PendingStatus, Transfer, TransferFlags,
};
use crate::service::LedgerError;
use crate::store::{ChangeSet, Snapshot};

fn corrupt(message: String) -> LedgerError {
    LedgerError::Corrupt(message)
}

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// A seeded multiply-fold hasher for integer ids (fast, and seeded per
/// process so ids chosen by an attacker cannot be aimed at one bucket).
#[derive(Clone, Copy)]
pub(crate) struct IdHasher(u64);

const MUL: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let m = u128::from(a).wrapping_mul(u128::from(b));
    (m as u64) ^ ((m >> 64) as u64)
}

impl Hasher for IdHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(buf));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        // Ids are hashed in blocks of 64: the block number is mixed with the
        // seed, the position in the block passes through. Ids allocated close
        // together (sequential or time-based, as TigerBeetle recommends) so
        // share cache lines of the table, while without the seed nobody can
        // aim ids of different blocks at one bucket. The position also goes
        // into the top bits, which the table uses as a per-slot tag.
        let block = fold_mul((n >> 6) ^ self.0, MUL);
        let pos = n & 0x3F;
        self.0 = (block & !0x3F) ^ pos ^ (pos << 58);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`IdHasher`]s with a per-process random seed.
#[derive(Clone, Copy)]
pub(crate) struct IdHasherBuilder(u64);

impl Default for IdHasherBuilder {
    fn default() -> Self {
        IdHasherBuilder(std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64) | 1)
    }
}

impl BuildHasher for IdHasherBuilder {
    type Hasher = IdHasher;
    #[inline]
    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.0)
    }
}

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

#[derive(Debug, Clone, Copy)]
struct PendingState {
    status: PendingStatus,
    /// Expiry in nanoseconds since the epoch, `i64::MAX` when none.
    expires_at: i64,
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
    last_ts: i64,
}

/// The in-memory ledger state and its batch logic.
pub struct Engine {
    account_index: IdMap<u32>,
    states: Vec<AccountState>,
    accounts: Vec<Account>,
    /// Transfer positions touching each `history` account, in order.
    entries: Vec<Vec<u32>>,
    /// Balance snapshots `(timestamp ns, balances)` of accounts with `history`.
    history: Vec<Vec<(i64, [i64; 4])>>,
    transfer_index: IdMap<u32>,
    transfers: Vec<Transfer>,
    failed: IdMap<CreateTransferResult>,
    pending: IdMap<PendingState>,
    expiry_queue: BinaryHeap<Reverse<(i64, u64)>>,
    /// The newest transfer per reference hash; older ones chain through `reference_prev`.
    by_reference: IdMap<u32>,
    /// Per transfer, the previous transfer with the same reference hash (`u32::MAX`: none).
    reference_prev: Vec<u32>,
    reference_hasher: std::collections::hash_map::RandomState,
    expiries: Vec<(TransferId, i64)>,
    last_ts: i64,
    undo: Vec<Undo>,
    batch_accounts: usize,
    batch_transfers: usize,
    batch_failures: Vec<FailedTransfer>,
    batch_expiry_log: Vec<Expiry>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("accounts", &self.accounts.len())
            .field("transfers", &self.transfers.len())
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
    /// An empty ledger.
    pub fn new() -> Self {
        Engine {
            account_index: IdMap::default(),
            states: Vec::new(),
            accounts: Vec::new(),
            entries: Vec::new(),
            history: Vec::new(),
            transfer_index: IdMap::default(),
            transfers: Vec::new(),
            failed: IdMap::default(),
            pending: IdMap::default(),
            expiry_queue: BinaryHeap::new(),
            by_reference: IdMap::default(),
            reference_prev: Vec::new(),
            reference_hasher: std::collections::hash_map::RandomState::new(),
            expiries: Vec::new(),
            last_ts: 0,
            undo: Vec::new(),
            batch_accounts: 0,
            batch_transfers: 0,
            batch_failures: Vec::new(),
            batch_expiry_log: Vec::new(),
        }
    }

    /// Reserves room for `accounts` accounts and `transfers` transfers.
    pub fn reserve(&mut self, accounts: usize, transfers: usize) {
        self.account_index.reserve(accounts);
        self.states.reserve(accounts);
        self.accounts.reserve(accounts);
        self.entries.reserve(accounts);
        self.history.reserve(accounts);
        self.transfer_index.reserve(transfers);
        self.transfers.reserve(transfers);
        self.reference_prev.reserve(transfers);
    }

    /// Rebuilds a ledger from everything a store acknowledged.
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
            engine.failed.insert(f.id.get(), f.result);
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
        self.apply(t, dr, cr, ts, false);
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
        self.batch_accounts = self.accounts.len();
        self.batch_transfers = self.transfers.len();
        self.batch_failures.clear();
        self.batch_expiry_log.clear();
        self.undo.clear();
    }

    /// The changes of the last batch, to persist.
    pub fn changes(&self) -> ChangeSet<'_> {
        ChangeSet {
            accounts: self.accounts.get(self.batch_accounts..).unwrap_or(&[]),
            transfers: self.transfers.get(self.batch_transfers..).unwrap_or(&[]),
            expiries: &self.batch_expiry_log,
            failures: &self.batch_failures,
        }
    }

    #[inline]
    fn next_ts(&mut self, now: i64) -> i64 {
        self.last_ts = now.max(self.last_ts.saturating_add(1));
        self.last_ts
    }

    fn insert_account(&mut self, account: Account) {
        let index = self.states.len() as u32;
        self.account_index.insert(account.id.get(), index);
        self.states.push(AccountState {
            flags: account.flags.0,
            currency: account.currency.0,
            upper_limit: account.upper_limit.map_or(i64::MAX, Money::fen),
            debits_pending: 0,
            debits_posted: 0,
            credits_pending: 0,
            credits_posted: 0,
        });
        self.history.push(Vec::new());
        self.entries.push(Vec::new());
        self.accounts.push(account);
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
            let result = if chain_broken {
                CreateAccountResult::LinkedEventFailed
            } else if linked && i + 1 == len {
                CreateAccountResult::LinkedEventChainOpen
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
                    self.history.truncate(first_account);
                    self.entries.truncate(first_account);
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
        results
    }

    fn create_account(&mut self, now: i64, a: NewAccount) -> CreateAccountResult {
        type A = CreateAccountResult;
        if a.flags.has_unknown() || a.flags.closed() {
            return A::ReservedFlag;
        }
        if a.id.is_zero() {
            return A::IdMustNotBeZero;
        }
        if a.id == AccountId::MAX {
            return A::IdMustNotBeIntMax;
        }
        if let Some(&index) = self.account_index.get(&a.id.get()) {
            let e = &self.accounts[index as usize];
            return if e.flags.0 & !AccountFlags::CLOSED.0 != a.flags.0 {
                A::ExistsWithDifferentFlags
            } else if e.upper_limit != a.upper_limit {
                A::ExistsWithDifferentUpperLimit
            } else if e.owner != a.owner {
                A::ExistsWithDifferentOwner
            } else if e.metadata != a.metadata {
                A::ExistsWithDifferentMetadata
            } else if e.currency != a.currency {
                A::ExistsWithDifferentCurrency
            } else if e.kind != a.kind {
                A::ExistsWithDifferentKind
            } else {
                A::Exists
            };
        }
        if a.flags.debits_must_not_exceed_credits() && a.flags.credits_must_not_exceed_debits() {
            return A::FlagsAreMutuallyExclusive;
        }
        if a.upper_limit.is_some_and(|l| !l.is_positive()) {
            return A::UpperLimitMustBePositive;
        }
        if a.currency.0 == 0 {
            return A::CurrencyMustNotBeZero;
        }
        if a.kind.0 == 0 {
            return A::KindMustNotBeZero;
        }
        let ts = self.next_ts(now);
        self.insert_account(Account {
            id: a.id,
            kind: a.kind,
            currency: a.currency,
            flags: a.flags,
            upper_limit: a.upper_limit,
            owner: a.owner,
            metadata: a.metadata,
            balances: Balances::default(),
            created_at: instant(ts),
        });
        A::Ok
    }

    // --------------------------------------------------------------- transfers

    /// Releases every hold whose timeout passed by `now`.
    pub fn expire_pending(&mut self, now: DateTime<Utc>) -> usize {
        self.clear_batch();
        self.sweep(ts_of(now))
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
                count += 1;
            }
        }
        count
    }

    fn expire(&mut self, id: u64, ts: i64) {
        let Some(&pos) = self.transfer_index.get(&id) else {
            return;
        };
        let p = &self.transfers[pos as usize];
        let (amount, flags) = (p.amount.fen(), p.flags);
        let dr = self.account_index[&p.debit_account_id.get()];
        let cr = self.account_index[&p.credit_account_id.get()];
        self.states[dr as usize].debits_pending -= amount;
        self.states[cr as usize].credits_pending -= amount;
        if flags.closing_debit() {
            self.states[dr as usize].flags &= !AccountFlags::CLOSED.0;
        }
        if flags.closing_credit() {
            self.states[cr as usize].flags &= !AccountFlags::CLOSED.0;
        }
        if let Some(p) = self.pending.get_mut(&id) {
            p.status = PendingStatus::Expired;
        }
        self.snapshot(dr, ts);
        self.snapshot(cr, ts);
        self.expiries.push((TransferId::new(id), ts));
    }

    /// Creates a batch of transfers at `now`: first releases expired holds,
    /// then validates and applies each transfer in order (linked chains all
    /// or nothing). One result per transfer, in order.
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
                        last_ts: self.last_ts,
                    },
                ));
                chain_broken = false;
            }
            let result = if chain_broken {
                R::LinkedEventFailed
            } else if linked && i + 1 == len {
                R::LinkedEventChainOpen
            } else {
                let id = t.id;
                let r = self.create_transfer(now, t, chain.is_some());
                if r.is_transient() && !self.failed.contains_key(&id.get()) {
                    self.failed.insert(id.get(), r);
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
        let chain_start = mark.last_ts;
        while self.transfers.len() > mark.transfers {
            let pos = (self.transfers.len() - 1) as u32;
            let Some(t) = self.transfers.pop() else { break };
            self.transfer_index.remove(&t.id.get());
            for account in [t.debit_account_id, t.credit_account_id] {
                if let Some(&a) = self.account_index.get(&account.get()) {
                    let entries = &mut self.entries[a as usize];
                    if entries.last() == Some(&pos) {
                        entries.pop();
                    }
                    let history = &mut self.history[a as usize];
                    while history.last().is_some_and(|h| h.0 > chain_start) {
                        history.pop();
                    }
                }
            }
            let prev = self.reference_prev.pop().unwrap_or(u32::MAX);
            if let Some(r) = &t.reference {
                let h = self.reference_hasher.hash_one(r.as_str());
                if prev == u32::MAX {
                    self.by_reference.remove(&h);
                } else {
                    self.by_reference.insert(h, prev);
                }
            }
        }
        // Holds pushed on the expiry queue by rolled-back transfers are
        // skipped when popped: their pending state is gone.
        self.last_ts = mark.last_ts;
    }

    fn exists(&self, e: &Transfer, t: &NewTransfer) -> R {
        let settles = t.flags.post_pending_transfer() || t.flags.void_pending_transfer();
        let inherit = |req: u64, stored: u64| (settles && req == 0) || req == stored;
        let amount_ok = if t.flags.balancing_debit() || t.flags.balancing_credit() {
            t.amount >= e.amount
        } else if settles {
            t.amount.is_zero() || t.amount == e.amount
        } else {
            t.amount == e.amount
        };
        if e.flags != t.flags {
            R::ExistsWithDifferentFlags
        } else if e.pending_id != t.pending_id {
            R::ExistsWithDifferentPendingId
        } else if e.timeout_secs != t.timeout_secs {
            R::ExistsWithDifferentTimeout
        } else if !inherit(t.debit_account_id.get(), e.debit_account_id.get()) {
            R::ExistsWithDifferentDebitAccountId
        } else if !inherit(t.credit_account_id.get(), e.credit_account_id.get()) {
            R::ExistsWithDifferentCreditAccountId
        } else if !amount_ok {
            R::ExistsWithDifferentAmount
        } else if e.reference != t.reference {
            R::ExistsWithDifferentReference
        } else if e.memo != t.memo {
            R::ExistsWithDifferentMemo
        } else if !inherit(u64::from(t.currency.0), u64::from(e.currency.0)) {
            R::ExistsWithDifferentCurrency
        } else if !inherit(u64::from(t.code), u64::from(e.code)) {
            R::ExistsWithDifferentCode
        } else {
            R::Exists
        }
    }

    fn create_transfer(&mut self, now: i64, mut t: NewTransfer, in_chain: bool) -> R {
        let f = t.flags;
        if f.has_unknown() {
            return R::ReservedFlag;
        }
        if t.id.is_zero() {
            return R::IdMustNotBeZero;
        }
        if t.id == TransferId::MAX {
            return R::IdMustNotBeIntMax;
        }
        if let Some(&pos) = self.transfer_index.get(&t.id.get()) {
            return self.exists(&self.transfers[pos as usize], &t);
        }
        if !self.failed.is_empty() && self.failed.contains_key(&t.id.get()) {
            return R::IdAlreadyFailed;
        }
        let phases = u8::from(f.pending())
            + u8::from(f.post_pending_transfer())
            + u8::from(f.void_pending_transfer());
        let settles = f.post_pending_transfer() || f.void_pending_transfer();
        let balancing = f.balancing_debit() || f.balancing_credit();
        let closing = f.closing_debit() || f.closing_credit();
        if phases > 1 || (settles && (balancing || closing)) {
            return R::FlagsAreMutuallyExclusive;
        }
        if settles {
            return self.settle(now, t, in_chain);
        }
        if t.debit_account_id.is_zero() {
            return R::DebitAccountIdMustNotBeZero;
        }
        if t.debit_account_id == AccountId::MAX {
            return R::DebitAccountIdMustNotBeIntMax;
        }
        if t.credit_account_id.is_zero() {
            return R::CreditAccountIdMustNotBeZero;
        }
        if t.credit_account_id == AccountId::MAX {
            return R::CreditAccountIdMustNotBeIntMax;
        }
        if t.debit_account_id == t.credit_account_id {
            return R::AccountsMustBeDifferent;
        }
        if t.pending_id.is_some() {
            return R::PendingIdMustBeZero;
        }
        if !f.pending() && t.timeout_secs != 0 {
            return R::TimeoutReservedForPendingTransfer;
        }
        if closing && !f.pending() {
            return R::ClosingTransferMustBePending;
        }
        if t.amount.is_negative() {
            return R::AmountMustNotBeNegative;
        }
        if t.amount.is_zero() && !closing {
            return R::AmountMustNotBeZero;
        }
        if t.currency.0 == 0 {
            return R::CurrencyMustNotBeZero;
        }
        if t.code == 0 {
            return R::CodeMustNotBeZero;
        }
        if t.memo.as_ref().is_some_and(|m| m.len() > MAX_MEMO_LEN) {
            return R::MemoTooLong;
        }
        let Some(&dr) = self.account_index.get(&t.debit_account_id.get()) else {
            return R::DebitAccountNotFound;
        };
        let Some(&cr) = self.account_index.get(&t.credit_account_id.get()) else {
            return R::CreditAccountNotFound;
        };
        let d = self.states[dr as usize];
        let c = self.states[cr as usize];
        if d.currency != c.currency {
            return R::AccountsMustHaveTheSameCurrency;
        }
        if t.currency.0 != d.currency {
            return R::TransferMustHaveTheSameCurrencyAsAccounts;
        }
        if d.flags().closed() {
            return R::DebitAccountAlreadyClosed;
        }
        if c.flags().closed() {
            return R::CreditAccountAlreadyClosed;
        }
        let mut amount = t.amount.fen();
        if f.balancing_debit() {
            let room = d
                .credits_posted
                .saturating_sub(d.debits_posted)
                .saturating_sub(d.debits_pending)
                .max(0);
            amount = amount.min(room);
        }
        if f.balancing_credit() {
            let room =
                if c.upper_limit != i64::MAX && !c.flags().credits_must_not_exceed_debits() {
                    c.upper_limit
                        .saturating_sub(c.credits_posted)
                        .saturating_sub(c.credits_pending)
                        .saturating_add(c.debits_posted)
                } else {
                    c.debits_posted
                        .saturating_sub(c.credits_posted)
                        .saturating_sub(c.credits_pending)
                }
                .max(0);
            amount = amount.min(room);
        }
        let pending = f.pending();
        if pending {
            if d.debits_pending.checked_add(amount).is_none() {
                return R::OverflowsDebitsPending;
            }
            if c.credits_pending.checked_add(amount).is_none() {
                return R::OverflowsCreditsPending;
            }
        } else {
            if d.debits_posted.checked_add(amount).is_none() {
                return R::OverflowsDebitsPosted;
            }
            if c.credits_posted.checked_add(amount).is_none() {
                return R::OverflowsCreditsPosted;
            }
        }
        let d_total =
            i128::from(d.debits_pending) + i128::from(d.debits_posted) + i128::from(amount);
        let c_total =
            i128::from(c.credits_pending) + i128::from(c.credits_posted) + i128::from(amount);
        if d_total > i128::from(i64::MAX) {
            return R::OverflowsDebits;
        }
        if c_total > i128::from(i64::MAX) {
            return R::OverflowsCredits;
        }
        if pending
            && t.timeout_secs > 0
            && (i64::from(t.timeout_secs) * NANOS_PER_SEC)
                .checked_add(now.max(self.last_ts + 1))
                .is_none()
        {
            return R::OverflowsTimeout;
        }
        if d.flags().debits_must_not_exceed_credits() && d_total > i128::from(d.credits_posted) {
            return R::ExceedsCredits;
        }
        if c.flags().credits_must_not_exceed_debits() && c_total > i128::from(c.debits_posted) {
            return R::ExceedsDebits;
        }
        if c.upper_limit != i64::MAX
            && !c.flags().credits_must_not_exceed_debits()
            && c_total - i128::from(c.debits_posted) > i128::from(c.upper_limit)
        {
            return R::ExceedsUpperLimit;
        }
        if d.upper_limit != i64::MAX
            && d.flags().credits_must_not_exceed_debits()
            && d_total - i128::from(d.credits_posted) > i128::from(d.upper_limit)
        {
            return R::ExceedsUpperLimit;
        }
        let ts = self.next_ts(now);
        let transfer = Transfer {
            id: t.id,
            debit_account_id: t.debit_account_id,
            credit_account_id: t.credit_account_id,
            amount: Money::from_fen(amount),
            pending_id: None,
            timeout_secs: t.timeout_secs,
            currency: t.currency,
            code: t.code,
            flags: f,
            reference: t.reference.take(),
            memo: t.memo.take(),
            timestamp: instant(ts),
        };
        self.apply(transfer, dr, cr, ts, in_chain);
        R::Ok
    }

    fn settle(&mut self, now: i64, mut t: NewTransfer, in_chain: bool) -> R {
        let f = t.flags;
        let Some(pending_id) = t.pending_id else {
            return R::PendingIdMustNotBeZero;
        };
        if pending_id.is_zero() {
            return R::PendingIdMustNotBeZero;
        }
        if pending_id == TransferId::MAX {
            return R::PendingIdMustNotBeIntMax;
        }
        if pending_id == t.id {
            return R::PendingIdMustBeDifferent;
        }
        if t.timeout_secs != 0 {
            return R::TimeoutReservedForPendingTransfer;
        }
        if t.amount.is_negative() {
            return R::AmountMustNotBeNegative;
        }
        if t.memo.as_ref().is_some_and(|m| m.len() > MAX_MEMO_LEN) {
            return R::MemoTooLong;
        }
        if !t.debit_account_id.is_zero()
            && !self.account_index.contains_key(&t.debit_account_id.get())
        {
            return R::DebitAccountNotFound;
        }
        if !t.credit_account_id.is_zero()
            && !self.account_index.contains_key(&t.credit_account_id.get())
        {
            return R::CreditAccountNotFound;
        }
        let Some(&pos) = self.transfer_index.get(&pending_id.get()) else {
            return R::PendingTransferNotFound;
        };
        let p = &self.transfers[pos as usize];
        if !p.flags.pending() {
            return R::PendingTransferNotPending;
        }
        if !t.debit_account_id.is_zero() && t.debit_account_id != p.debit_account_id {
            return R::PendingTransferHasDifferentDebitAccountId;
        }
        if !t.credit_account_id.is_zero() && t.credit_account_id != p.credit_account_id {
            return R::PendingTransferHasDifferentCreditAccountId;
        }
        if t.currency.0 != 0 && t.currency != p.currency {
            return R::PendingTransferHasDifferentCurrency;
        }
        if t.code != 0 && t.code != p.code {
            return R::PendingTransferHasDifferentCode;
        }
        let amount = if f.post_pending_transfer() {
            if t.amount > p.amount {
                return R::ExceedsPendingTransferAmount;
            }
            if t.amount.is_zero() {
                p.amount
            } else {
                t.amount
            }
        } else {
            if !t.amount.is_zero() && t.amount != p.amount {
                return R::PendingTransferHasDifferentAmount;
            }
            p.amount
        };
        let state = self.pending.get(&pending_id.get()).copied();
        match state.map(|s| s.status) {
            Some(PendingStatus::Posted) => return R::PendingTransferAlreadyPosted,
            Some(PendingStatus::Voided) => return R::PendingTransferAlreadyVoided,
            Some(PendingStatus::Expired) => return R::PendingTransferExpired,
            Some(PendingStatus::Pending) | None => {}
        }
        if state.is_some_and(|s| s.expires_at <= now) {
            return R::PendingTransferExpired;
        }
        let (debit, credit, currency, code) =
            (p.debit_account_id, p.credit_account_id, p.currency, p.code);
        let dr = self.account_index[&debit.get()];
        let cr = self.account_index[&credit.get()];
        if f.post_pending_transfer() {
            let d = self.states[dr as usize];
            let c = self.states[cr as usize];
            if d.debits_posted.checked_add(amount.fen()).is_none() {
                return R::OverflowsDebitsPosted;
            }
            if c.credits_posted.checked_add(amount.fen()).is_none() {
                return R::OverflowsCreditsPosted;
            }
        }
        let ts = self.next_ts(now);
        let transfer = Transfer {
            id: t.id,
            debit_account_id: debit,
            credit_account_id: credit,
            amount,
            pending_id: Some(pending_id),
            timeout_secs: 0,
            currency,
            code,
            flags: f,
            reference: t.reference.take(),
            memo: t.memo.take(),
            timestamp: instant(ts),
        };
        self.apply(transfer, dr, cr, ts, in_chain);
        R::Ok
    }

    /// Applies a validated (or replayed) transfer's effects and records it.
    fn apply(&mut self, t: Transfer, dr: u32, cr: u32, ts: i64, undo: bool) {
        if undo {
            self.undo.push(Undo::Account(dr, self.states[dr as usize]));
            self.undo.push(Undo::Account(cr, self.states[cr as usize]));
        }
        let amount = t.amount.fen();
        let f = t.flags;
        if f.pending() {
            let expires_at = if t.timeout_secs > 0 {
                ts.saturating_add(i64::from(t.timeout_secs) * NANOS_PER_SEC)
            } else {
                i64::MAX
            };
            if undo {
                self.undo.push(Undo::Pending(t.id.get(), None));
            }
            self.pending.insert(
                t.id.get(),
                PendingState {
                    status: PendingStatus::Pending,
                    expires_at,
                },
            );
            if expires_at != i64::MAX {
                self.expiry_queue.push(Reverse((expires_at, t.id.get())));
            }
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
            let held = self
                .transfer_index
                .get(&pid.get())
                .map(|&pos| &self.transfers[pos as usize])
                .map_or((0, TransferFlags::NONE), |p| (p.amount.fen(), p.flags));
            if let Some(p) = self.pending.get_mut(&pid.get()) {
                if undo {
                    self.undo.push(Undo::Pending(pid.get(), Some(*p)));
                }
                p.status = if f.post_pending_transfer() {
                    PendingStatus::Posted
                } else {
                    PendingStatus::Voided
                };
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
        let pos = self.transfers.len() as u32;
        self.snapshot(dr, ts);
        self.snapshot(cr, ts);
        if self.states[dr as usize].flags().history() {
            self.entries[dr as usize].push(pos);
        }
        if self.states[cr as usize].flags().history() {
            self.entries[cr as usize].push(pos);
        }
        let prev = match &t.reference {
            Some(r) => {
                let h = self.reference_hasher.hash_one(r.as_str());
                self.by_reference.insert(h, pos).unwrap_or(u32::MAX)
            }
            None => u32::MAX,
        };
        self.reference_prev.push(prev);
        self.transfer_index.insert(t.id.get(), pos);
        self.transfers.push(t);
    }

    #[inline]
    fn snapshot(&mut self, index: u32, ts: i64) {
        let s = &self.states[index as usize];
        if s.flags().history() {
            let b = s.balances();
            self.history[index as usize].push((ts, b));
        }
    }

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
    /// to and including `at`); `None` for unknown accounts or no history.
    pub fn balances_at(&self, id: AccountId, at: DateTime<Utc>) -> Option<Balances> {
        let &index = self.account_index.get(&id.get())?;
        if !self.states[index as usize].flags().history() {
            return None;
        }
        let at = ts_of(at);
        let h = &self.history[index as usize];
        let n = h.partition_point(|(ts, _)| *ts <= at);
        Some(match n.checked_sub(1).and_then(|i| h.get(i)) {
            Some((_, b)) => Balances::from_fen(*b),
            None => Balances::default(),
        })
    }

    /// The transfer with this id.
    pub fn transfer(&self, id: TransferId) -> Option<&Transfer> {
        let &pos = self.transfer_index.get(&id.get())?;
        self.transfers.get(pos as usize)
    }

    /// The state of a pending transfer.
    pub fn pending_status(&self, id: TransferId) -> Option<PendingStatus> {
        self.pending.get(&id.get()).map(|p| p.status)
    }

    /// The result an id failed with, if it did.
    pub fn failure(&self, id: TransferId) -> Option<CreateTransferResult> {
        self.failed.get(&id.get()).copied()
    }

    /// Transfers carrying this reference, oldest first.
    pub fn transfers_by_reference(&self, reference: &Reference) -> Vec<&Transfer> {
        let h = self.reference_hasher.hash_one(reference.as_str());
        let mut out = Vec::new();
        let mut next = self.by_reference.get(&h).copied().unwrap_or(u32::MAX);
        while let Some(t) = self.transfers.get(next as usize) {
            if t.reference.as_ref() == Some(reference) {
                out.push(t);
            }
            // Links always point to older positions; stop on anything else.
            next = match self.reference_prev.get(next as usize) {
                Some(&prev) if prev < next => prev,
                _ => u32::MAX,
            };
        }
        out.reverse();
        out
    }

    /// Transfers touching an account, oldest first: from the account's own
    /// index when it has `history`, by a scan of every transfer otherwise.
    pub fn account_transfers(&self, id: AccountId) -> Vec<&Transfer> {
        let Some(&index) = self.account_index.get(&id.get()) else {
            return Vec::new();
        };
        if self.states[index as usize].flags().history() {
            self.entries
                .get(index as usize)
                .into_iter()
                .flatten()
                .filter_map(|&p| self.transfers.get(p as usize))
                .collect()
        } else {
            self.transfers
                .iter()
                .filter(|t| t.debit_account_id == id || t.credit_account_id == id)
                .collect()
        }
    }

    /// Every account, in creation order, with current balances.
    pub fn accounts(&self) -> impl Iterator<Item = Account> + '_ {
        self.accounts.iter().filter_map(|a| self.account(a.id))
    }

    /// Every transfer, in timestamp order.
    pub fn transfers(&self) -> &[Transfer] {
        &self.transfers
    }

    /// Every expiry, in timestamp order.
    pub fn expiries(&self) -> impl Iterator<Item = Expiry> + '_ {
        self.expiries.iter().map(|&(id, ts)| Expiry {
            transfer_id: id,
            timestamp: instant(ts),
        })
    }

    /// Every failed id with its result, sorted by id.
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

    /// The number of transfers.
    pub fn transfer_count(&self) -> usize {
        self.transfers.len()
    }
}
