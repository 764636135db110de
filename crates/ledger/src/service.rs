//! The `Ledger` service: the engine, a store, a clock, principals and audit.
//!
//! Longer than ≈800 lines: every read checks its principal with the same
//! rules, so the queries live beside the authorisation they share; moving the
//! history queries to their own module is the next split.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use citycard_core::{
    AuditLog, AuditOutcome, AuditRecord, ClassifiedError, Clock, CoreChanges, DelegationScope,
    ErrorClass, Fingerprint, GrantVerifier, IdempotencyKey, Money, OperatorRole, OperatorRoles,
    PersonId, Principal, StoreError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::engine::{DEFAULT_TRANSFER_CACHE, Engine, instant, settled_status};
use crate::ids::{AccountId, AccountKind, Owner, Reference, TransferId};
use crate::model::{
    Account, AccountFlags, Balances, CreateAccountResult, CreateTransferResult, NewAccount,
    NewTransfer, PendingStatus, Transfer, TransferFlags,
};
use crate::query::{
    BalanceWalk, ExternalEntry, ReconciliationReport, Statement, StatementBuilder, StatementPage,
    posted_effect, reconcile,
};
use crate::shared::WithTurn;
use crate::store::{AccountRange, ChangeSet, LedgerStore, Snapshot, is_stale_version};

/// How many transfers a history query reads from the store per round trip.
const PAGE: usize = 4_096;

/// How many times one batch is decided at most when a shared store keeps
/// refusing it as stale (another instance writing in between each time);
/// the last refusal then reaches the caller as a conflict. High, because an
/// instance that keeps writing wins every race against one that must reload
/// first (two instances topping up at once took more than 8 in CI). A store
/// with a shared side ([`crate::shared`]) gives each instance its turn to
/// decide, so its batches are decided once; the bound is for writers that
/// take no turns.
pub const MAX_DECISIONS: u32 = 128;

/// The first instant the store can hold (history queries start there).
fn beginning() -> DateTime<Utc> {
    instant(i64::MIN)
}

/// `at`, kept within the instants the store can hold.
fn clamp(at: DateTime<Utc>) -> DateTime<Utc> {
    at.clamp(instant(i64::MIN), instant(i64::MAX))
}

/// What can go wrong calling the ledger (per-event outcomes are results, not errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The principal may not do this.
    #[error(
        "{principal} may not {action}: act as the account's owner, a delegate under a live grant, an operator with the right role or the system"
    )]
    Denied {
        /// Who tried (masked form).
        principal: String,
        /// What.
        action: &'static str,
    },
    /// No account with this id.
    #[error("account {0} does not exist: check the id")]
    AccountNotFound(AccountId),
    /// No transfer with this id.
    #[error("transfer {0} does not exist: check the id")]
    TransferNotFound(TransferId),
    /// Balances as of an instant need the account's `history` flag.
    #[error(
        "account {0} keeps no balance history: create accounts with the history flag to query past balances"
    )]
    HistoryNotEnabled(AccountId),
    /// A time range ends before it starts.
    #[error("the time range ends before it starts: swap or fix the bounds")]
    InvalidRange,
    /// The store failed; the batch was not acknowledged and had no effect.
    #[error("the ledger store failed, nothing was acknowledged; retry the same batch: {0}")]
    Store(#[from] StoreError),
    /// The stored data cannot be replayed.
    #[error("stored ledger data is inconsistent, contact support: {0}")]
    Corrupt(String),
    /// An earlier store failure left the ledger unable to reload its state.
    /// Writes are refused; balance reads, which come from the store, still
    /// answer.
    #[error("the ledger lost its store and must be reopened: reopen it once the store is back")]
    Poisoned,
}

impl ClassifiedError for LedgerError {
    fn class(&self) -> ErrorClass {
        match self {
            LedgerError::Denied { .. } => ErrorClass::Denied,
            LedgerError::AccountNotFound(_) | LedgerError::TransferNotFound(_) => {
                ErrorClass::NotFound
            }
            LedgerError::HistoryNotEnabled(_) | LedgerError::InvalidRange => {
                ErrorClass::InvalidInput
            }
            LedgerError::Store(e) => e.class(),
            LedgerError::Corrupt(_) => ErrorClass::Internal,
            LedgerError::Poisoned => ErrorClass::Unavailable,
        }
    }
}

/// The PBOC ceiling for a registered (记名) prepaid card's balance: ¥5,000.
pub const PBOC_REGISTERED_CEILING: Money = Money::from_yuan(5_000);
/// The PBOC ceiling for an anonymous prepaid card's balance: ¥1,000.
pub const PBOC_ANONYMOUS_CEILING: Money = Money::from_yuan(1_000);

/// The wallet caps: configurable, loadable as JSON, validated against the PBOC
/// ceilings when built or loaded.
///
/// `registered` and `anonymous` are the caps by holder (at most the PBOC
/// ceilings, ¥5,000 and ¥1,000). `kinds` caps the wallet of a card kind
/// (by its code, `standard`, `elderly`, ...) and `other_kinds` every kind not
/// listed; a kind's cap may not exceed the registered cap, since citizen cards
/// are registered. Hangzhou's transit wallets are capped at ¥1,000 and the
/// elder card's (长者卡) at ¥550 ([`WalletLimits::default`]). A cap is fixed on
/// the account when the wallet is opened: changing the configuration leaves
/// wallets already opened with the cap they were opened with (a balance legally
/// held under the old cap is never made unlawful after the fact).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WalletLimitsConfig")]
pub struct WalletLimits {
    /// The cap on a registered (记名) card's wallet; ¥5,000 by default.
    pub registered: Money,
    /// The cap on an anonymous card's wallet; ¥1,000 by default.
    pub anonymous: Money,
    /// Caps by card kind code.
    #[serde(default)]
    pub kinds: std::collections::BTreeMap<String, Money>,
    /// The cap of a kind not in `kinds`; the registered cap when absent.
    #[serde(default)]
    pub other_kinds: Option<Money>,
}

/// The unchecked form of [`WalletLimits`] as read from JSON.
#[derive(Debug, Clone, Deserialize)]
struct WalletLimitsConfig {
    registered: Money,
    anonymous: Money,
    #[serde(default)]
    kinds: std::collections::BTreeMap<String, Money>,
    #[serde(default)]
    other_kinds: Option<Money>,
}

impl TryFrom<WalletLimitsConfig> for WalletLimits {
    type Error = WalletLimitsError;

    fn try_from(c: WalletLimitsConfig) -> Result<Self, Self::Error> {
        let limits = WalletLimits {
            registered: c.registered,
            anonymous: c.anonymous,
            kinds: c.kinds,
            other_kinds: c.other_kinds,
        };
        limits.validate()?;
        Ok(limits)
    }
}

/// A wallet cap configuration that breaks the PBOC ceilings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("wallet cap {what} of {cap} exceeds {ceiling}: lower it to {ceiling} or less")]
pub struct WalletLimitsError {
    /// Which cap (`registered`, `anonymous`, `kind elderly`, ...).
    pub what: String,
    /// The configured cap.
    pub cap: Money,
    /// The ceiling it may not pass.
    pub ceiling: Money,
}

impl Default for WalletLimits {
    /// Hangzhou: the PBOC ceilings by holder, transit wallets of every card
    /// kind at ¥1,000 and the elder card (长者卡, kind `elder`) at ¥550.
    fn default() -> Self {
        Self {
            registered: PBOC_REGISTERED_CEILING,
            anonymous: PBOC_ANONYMOUS_CEILING,
            kinds: [("elder".to_owned(), Money::from_yuan(550))]
                .into_iter()
                .collect(),
            other_kinds: Some(Money::from_yuan(1_000)),
        }
    }
}

/// Whether a card (and so its wallet) is registered to a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WalletHolder {
    /// A registered (记名) card.
    Registered,
    /// An anonymous card.
    Anonymous,
}

impl WalletLimits {
    /// Loads caps from JSON, refusing any cap above its PBOC ceiling.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Checks every cap against its ceiling: a negative cap, a holder cap above
    /// the PBOC ceiling or a kind's cap above the registered cap is refused.
    pub fn validate(&self) -> Result<(), WalletLimitsError> {
        let check = |what: String, cap: Money, ceiling: Money| {
            if cap.is_negative() || cap > ceiling {
                Err(WalletLimitsError { what, cap, ceiling })
            } else {
                Ok(())
            }
        };
        check(
            "registered".into(),
            self.registered,
            PBOC_REGISTERED_CEILING,
        )?;
        check("anonymous".into(), self.anonymous, PBOC_ANONYMOUS_CEILING)?;
        for (kind, cap) in &self.kinds {
            check(format!("kind {kind}"), *cap, self.registered)?;
        }
        if let Some(cap) = self.other_kinds {
            check("other_kinds".into(), cap, self.registered)?;
        }
        Ok(())
    }

    /// The cap of a registered card of a kind (by code).
    pub fn kind_cap(&self, kind: &str) -> Money {
        self.kinds
            .get(kind)
            .copied()
            .or(self.other_kinds)
            .unwrap_or(self.registered)
            .min(self.registered)
    }

    /// A registered card's e-wallet capped for its kind (see [`WalletLimits::wallet`]).
    pub fn wallet_for_kind(
        &self,
        id: AccountId,
        kind: &str,
        owner: Option<PersonId>,
    ) -> NewAccount {
        self.wallet_with_cap(id, WalletHolder::Registered, self.kind_cap(kind), owner)
            .with_metadata("card_kind", kind)
    }

    /// The cap for a holder.
    pub fn cap(&self, holder: WalletHolder) -> Money {
        match holder {
            WalletHolder::Registered => self.registered,
            WalletHolder::Anonymous => self.anonymous,
        }
    }

    /// A CNY e-wallet account: no overdraft, balance history, capped for its holder.
    pub fn wallet(
        &self,
        id: AccountId,
        holder: WalletHolder,
        owner: Option<PersonId>,
    ) -> NewAccount {
        self.wallet_with_cap(id, holder, self.cap(holder), owner)
    }

    /// A CNY e-wallet account with an explicit cap (kept at most the holder's cap),
    /// e.g. a replacement card's wallet taking over its predecessor's cap.
    pub fn wallet_with_cap(
        &self,
        id: AccountId,
        holder: WalletHolder,
        cap: Money,
        owner: Option<PersonId>,
    ) -> NewAccount {
        let mut a = NewAccount::new(id, AccountKind::E_WALLET)
            .with_flags(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags::HISTORY)
            .with_upper_limit(cap.min(self.cap(holder)))
            .with_metadata(
                "holder",
                match holder {
                    WalletHolder::Registered => "registered",
                    WalletHolder::Anonymous => "anonymous",
                },
            );
        a.owner = owner.map(Owner::Person);
        a
    }
}

impl TransferId {
    /// A transfer id derived from an idempotency key within a scope (SHA-256,
    /// first 8 bytes): the same key always names the same transfer, so a
    /// retried request is answered `exists`.
    pub fn from_idempotency_key(scope: &str, key: &IdempotencyKey) -> TransferId {
        let mut bytes = Vec::with_capacity(scope.len() + 1 + key.as_str().len());
        bytes.extend_from_slice(scope.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(key.as_str().as_bytes());
        let digest = Fingerprint::of_bytes(&bytes);
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_bytes()[..8]);
        match u64::from_le_bytes(first) {
            0 => TransferId::new(1),
            u64::MAX => TransferId::new(u64::MAX - 1),
            n => TransferId::new(n),
        }
    }
}

impl NewTransfer {
    /// Moves a whole balance (what `from` can spend) to `to`: a balancing
    /// debit, as when a lost registered card's balance moves to its replacement.
    pub fn carry_balance(id: TransferId, from: AccountId, to: AccountId, code: u16) -> Self {
        NewTransfer::new(id, from, to, Money::MAX, code).with_flags(TransferFlags::BALANCING_DEBIT)
    }

    /// A closing hold: closes `account` (debit side) against `control` until voided.
    pub fn close_account(
        id: TransferId,
        account: AccountId,
        control: AccountId,
        code: u16,
    ) -> Self {
        NewTransfer::pending(id, account, control, Money::ZERO, code, 0)
            .with_flags(TransferFlags::CLOSING_DEBIT)
    }
}

/// The caller's half of [`Ledger::create_transfers_with`]: commits a decided
/// ledger batch together with the caller's own rows, in one transaction.
///
/// It may be called more than once for one batch: when the store refuses a
/// commit as decided on a stale state ([`crate::is_stale_version`]), the
/// ledger reloads, decides the batch again and calls `commit` with the new
/// results; nothing of the refused attempt was stored.
#[async_trait::async_trait]
pub trait CommitWith: Send {
    /// What the commit returns to the caller.
    type Output: Send;
    /// Writes `changes` (the ledger's rows), `audit` (the batch's audit
    /// record) and the caller's rows, derived from `results`, atomically.
    async fn commit(
        &mut self,
        results: &[CreateTransferResult],
        changes: &ChangeSet<'_>,
        audit: AuditRecord,
    ) -> Result<Self::Output, StoreError>;
}

/// The caller's half of [`Ledger::create_accounts_with`]: commits newly
/// decided accounts together with the caller's own rows, in one transaction.
/// Like [`CommitWith`], it is called again after a stale-version refusal.
#[async_trait::async_trait]
pub trait CommitAccountsWith: Send {
    /// What the commit returns to the caller.
    type Output: Send;
    /// Writes `changes` (the ledger's rows), `audit` (the batch's audit
    /// record) and the caller's rows, derived from `results`, atomically.
    async fn commit(
        &mut self,
        results: &[CreateAccountResult],
        changes: &ChangeSet<'_>,
        audit: AuditRecord,
    ) -> Result<Self::Output, StoreError>;
}

struct State {
    engine: Engine,
    poisoned: bool,
    /// A batch's commit has started and not been settled: if the lock is
    /// taken again in that state, the caller went away mid-commit (its
    /// future was dropped), and only the store knows whether it landed.
    committing: bool,
}

/// The ledger: validates batches in memory and acknowledges them only once
/// the store has committed them.
///
/// Several instances may share one store (app processes on one database):
/// a store that refuses a batch as decided on a stale state
/// ([`crate::stale_version`]) makes the ledger reload its state and decide
/// the batch again, at most [`MAX_DECISIONS`] times, before the conflict reaches the caller;
/// transfers another instance stored meanwhile then answer `exists`. Any
/// other failed commit (a conflict of the caller's own rows, say) reloads
/// and reaches the caller at once.
///
/// Who may do what (the ledger authorises per account):
///
/// - writes (`create_*`, `expire_pending`): the system, and operators holding
///   the [`OperatorRole::Finance`] role in the registry given with
///   [`Ledger::with_roles`] (none by default). Platforms never write here:
///   they top up through the card system's wallet service, which checks
///   their binding and writes as the system;
/// - reads of an account: the system; operators with the finance or auditor
///   role; the person who owns it; a delegate for that person whose grant
///   the [`GrantVerifier`] given with [`Ledger::with_grants`] finds stored
///   and live (without a verifier, delegates are refused); a platform for
///   the accounts its organisation owns (`Owner::Organisation(platform code)`,
///   its clearing account);
/// - a transfer is visible to whoever may read one of its two accounts.
///
/// Denied calls, and reads of person-owned accounts by anyone but the
/// system, are audited. An id that does not exist is "not found" only for
/// the system and reading operators; anyone else is refused as for another's
/// account, so ids derived from card numbers cannot be probed.
pub struct Ledger {
    state: Mutex<State>,
    cache: usize,
    store: Arc<dyn LedgerStore>,
    clock: Arc<dyn Clock>,
    audit: Option<Arc<dyn AuditLog>>,
    grants: Option<Arc<dyn GrantVerifier>>,
    roles: Arc<OperatorRoles>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ledger")
    }
}

impl Ledger {
    /// Opens the ledger on a store: reads the state it acknowledged
    /// (accounts with their balances, live holds), not its history.
    pub async fn open(
        store: Arc<dyn LedgerStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Ledger, LedgerError> {
        let engine = Self::rebuild(store.as_ref(), DEFAULT_TRANSFER_CACHE).await?;
        info!(
            accounts = engine.account_count(),
            transfers = engine.transfer_count(),
            "ledger opened"
        );
        Ok(Ledger {
            state: Mutex::new(State {
                engine,
                poisoned: false,
                committing: false,
            }),
            cache: DEFAULT_TRANSFER_CACHE,
            store,
            clock,
            audit: None,
            grants: None,
            roles: Arc::new(OperatorRoles::new()),
        })
    }

    async fn rebuild(store: &dyn LedgerStore, cache: usize) -> Result<Engine, LedgerError> {
        let state = store.load_state().await?;
        Engine::from_state(state, cache)
    }

    /// Keeps at least `capacity` recent transfers and failed ids in memory
    /// ([`DEFAULT_TRANSFER_CACHE`] by default); older ones are read from
    /// the store when a batch names them.
    #[must_use]
    pub fn with_transfer_cache(mut self, capacity: usize) -> Self {
        self.cache = capacity;
        self.state.get_mut().engine.set_capacity(capacity);
        self
    }

    /// Audits denials and reads in `audit`, and records one audit entry per
    /// batch through the store's commit (in the batch's transaction: the
    /// store must write to the same log).
    #[must_use]
    pub fn with_audit(mut self, audit: Arc<dyn AuditLog>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Checks delegates' grants with `grants` (without it, delegates are refused).
    #[must_use]
    pub fn with_grants(mut self, grants: Arc<dyn GrantVerifier>) -> Self {
        self.grants = Some(grants);
        self
    }

    /// Looks operators' roles up in `roles` (without it, operators have none).
    #[must_use]
    pub fn with_roles(mut self, roles: Arc<OperatorRoles>) -> Self {
        self.roles = roles;
        self
    }

    fn may_write(&self, principal: &Principal) -> bool {
        self.roles.allows(principal, &[OperatorRole::Finance])
    }

    /// Whether `principal` may read `account` (see the type's docs).
    async fn may_read(
        &self,
        principal: &Principal,
        account: &Account,
        scope: DelegationScope,
    ) -> Result<bool, LedgerError> {
        if self
            .roles
            .allows(principal, &[OperatorRole::Finance, OperatorRole::Auditor])
        {
            return Ok(true);
        }
        Ok(match (principal, &account.owner) {
            (Principal::Platform { platform }, Some(Owner::Organisation(org))) => {
                org == platform.code()
            }
            (Principal::Cardholder { person }, Some(Owner::Person(owner))) => person == owner,
            (Principal::Delegate { .. }, Some(Owner::Person(owner))) => match &self.grants {
                Some(grants) => {
                    grants
                        .verify(principal, owner, scope, self.clock.now())
                        .await?
                }
                None => false,
            },
            _ => false,
        })
    }

    /// Whether `principal` may see a transfer between these accounts.
    async fn may_see(
        &self,
        principal: &Principal,
        accounts: &[Option<Account>],
    ) -> Result<bool, LedgerError> {
        for a in accounts.iter().flatten() {
            if self
                .may_read(principal, a, DelegationScope::ViewRecords)
                .await?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Audits a denial and returns the error.
    async fn deny(
        &self,
        principal: &Principal,
        action: &'static str,
        subject: String,
    ) -> LedgerError {
        warn!(action, subject = %subject, "ledger call denied");
        self.audit(AuditRecord::new(
            self.clock.now(),
            principal.clone(),
            format!("ledger.{}", action.replace(' ', "_")),
            subject,
            AuditOutcome::Denied,
        ))
        .await;
        LedgerError::Denied {
            principal: principal.to_string(),
            action,
        }
    }

    /// Audits a read of a person's account by anyone but the system.
    async fn audit_read(&self, principal: &Principal, account: &Account, action: &str) {
        if matches!(principal, Principal::System)
            || !matches!(account.owner, Some(Owner::Person(_)))
        {
            return;
        }
        self.audit(AuditRecord::new(
            self.clock.now(),
            principal.clone(),
            action,
            format!("account:{}", account.id),
            AuditOutcome::Succeeded,
        ))
        .await;
    }

    async fn audit(&self, record: AuditRecord) {
        if let Some(log) = &self.audit
            && let Err(e) = log.append(record).await
        {
            warn!(error = %e, "ledger audit record was not written");
        }
    }

    /// Persists the engine's last batch with its core records; on failure
    /// reloads the acknowledged state.
    async fn persist(&self, state: &mut State, core: &CoreChanges) -> Result<(), LedgerError> {
        state.committing = true;
        let outcome = self.commit_batch(state, core).await;
        state.committing = false;
        self.settle_commit(state, outcome).await
    }

    /// Commits the engine's last batch with its core records through the
    /// ledger's own store; a batch that changed nothing writes nothing.
    async fn commit_batch(&self, state: &State, core: &CoreChanges) -> Result<(), StoreError> {
        let changes = state.engine.changes();
        if changes.is_empty() && core.is_empty() {
            return Ok(());
        }
        self.store.commit(&changes, core).await
    }

    /// After a commit attempt: on failure, forgets the undecided batch by
    /// reloading the acknowledged state from the store.
    async fn settle_commit<T>(
        &self,
        state: &mut State,
        outcome: Result<T, StoreError>,
    ) -> Result<T, LedgerError> {
        match outcome {
            Ok(out) => Ok(out),
            Err(e) => {
                warn!(error = %e, "ledger batch not committed; reloading acknowledged state");
                match Self::rebuild(self.store.as_ref(), self.cache).await {
                    Ok(engine) => state.engine = engine,
                    Err(_) => state.poisoned = true,
                }
                Err(LedgerError::Store(e))
            }
        }
    }

    /// After a commit attempt: `true` when the store refused the batch as
    /// decided on a stale state (another instance wrote since this one
    /// loaded) and `attempt` may decide again; the acknowledged state has
    /// then been reloaded. Any other outcome is left to [`Self::settle_commit`].
    async fn stale_and_reloaded<T>(
        &self,
        state: &mut State,
        outcome: &Result<T, StoreError>,
        attempt: u32,
    ) -> Result<bool, LedgerError> {
        match outcome {
            Err(e) if is_stale_version(e) && attempt < MAX_DECISIONS => {
                info!(attempt, "ledger state stale; reloading and deciding again");
                match Self::rebuild(self.store.as_ref(), self.cache).await {
                    Ok(engine) => {
                        state.engine = engine;
                        Ok(true)
                    }
                    Err(e) => {
                        state.poisoned = true;
                        Err(e)
                    }
                }
            }
            _ => Ok(false),
        }
    }

    /// The state, locked for a write: on a shared store, with this
    /// instance's turn to decide taken and the engine caught up with what
    /// other instances wrote ([`crate::shared`]); the turn ends when the
    /// lock is dropped.
    async fn lock_to_write(
        &self,
    ) -> Result<WithTurn<tokio::sync::MutexGuard<'_, State>>, LedgerError> {
        let mut state = self.lock().await?;
        match crate::shared::begin_turn(self.store.as_ref(), &mut state.engine).await {
            Ok(turn) => Ok(WithTurn {
                _turn: turn,
                guard: state,
            }),
            Err(e) => {
                self.reload(&mut state).await;
                Err(e)
            }
        }
    }

    /// The state, locked for a read: on a shared store, caught up first when
    /// another instance wrote since ([`crate::shared`]), so reads are current.
    async fn current(&self) -> Result<tokio::sync::MutexGuard<'_, State>, LedgerError> {
        let mut state = self.lock().await?;
        if let Err(e) = crate::shared::refresh(self.store.as_ref(), &mut state.engine).await {
            self.reload(&mut state).await;
            return Err(e);
        }
        Ok(state)
    }

    /// Reloads the acknowledged state after a failed catch-up (poisoned if
    /// the store cannot answer).
    async fn reload(&self, state: &mut State) {
        match Self::rebuild(self.store.as_ref(), self.cache).await {
            Ok(engine) => state.engine = engine,
            Err(_) => state.poisoned = true,
        }
    }

    async fn lock(&self) -> Result<tokio::sync::MutexGuard<'_, State>, LedgerError> {
        let mut guard = self.state.lock().await;
        if guard.committing && !guard.poisoned {
            // The last batch's caller was dropped during its commit: the
            // engine may hold a batch the store never got. Start again from
            // what the store acknowledges.
            warn!("a ledger batch's commit was abandoned; reloading acknowledged state");
            match Self::rebuild(self.store.as_ref(), self.cache).await {
                Ok(engine) => {
                    guard.engine = engine;
                    guard.committing = false;
                }
                Err(_) => guard.poisoned = true,
            }
        }
        if guard.poisoned {
            return Err(LedgerError::Poisoned);
        }
        Ok(guard)
    }

    /// Creates a batch of accounts; one result per account, acknowledged once durable.
    #[tracing::instrument(name = "ledger.create_accounts", skip_all, fields(count = batch.len()))]
    pub async fn create_accounts(
        &self,
        principal: &Principal,
        batch: Vec<NewAccount>,
    ) -> Result<Vec<CreateAccountResult>, LedgerError> {
        if !self.may_write(principal) {
            return Err(self
                .deny(principal, "create accounts", "ledger:accounts".into())
                .await);
        }
        let mut state = self.lock_to_write().await?;
        let count = batch.len();
        let mut attempt = 1;
        loop {
            let (results, audit) = self.decide_accounts(&mut state, principal, batch.clone());
            let core = self.core_for(audit);
            let outcome = self.commit_batch(&state, &core).await;
            if self
                .stale_and_reloaded(&mut state, &outcome, attempt)
                .await?
            {
                attempt += 1;
                continue;
            }
            self.settle_commit(&mut state, outcome).await?;
            drop(state);
            let ok = results.iter().filter(|r| r.is_success()).count();
            info!(count, ok, "ledger accounts created");
            return Ok(results);
        }
    }

    /// Creates a batch of accounts and lets `commit` persist them together
    /// with the caller's own rows, in one transaction (a card's accounts
    /// with the card, say). As [`Ledger::create_transfers_with`]: the batch
    /// is acknowledged only when `commit` returns `Ok`, forgotten otherwise,
    /// and `commit` must write `changes` to this ledger's own store.
    #[tracing::instrument(name = "ledger.create_accounts_with", skip_all, fields(count = batch.len()))]
    pub async fn create_accounts_with<C: CommitAccountsWith>(
        &self,
        principal: &Principal,
        batch: Vec<NewAccount>,
        commit: C,
    ) -> Result<(Vec<CreateAccountResult>, C::Output), LedgerError> {
        if !self.may_write(principal) {
            return Err(self
                .deny(principal, "create accounts", "ledger:accounts".into())
                .await);
        }
        let mut state = self.lock_to_write().await?;
        let mut commit = commit;
        let mut attempt = 1;
        loop {
            let (results, audit) = self.decide_accounts(&mut state, principal, batch.clone());
            state.committing = true;
            let outcome = {
                let changes = state.engine.changes();
                commit.commit(&results, &changes, audit).await
            };
            state.committing = false;
            if self
                .stale_and_reloaded(&mut state, &outcome, attempt)
                .await?
            {
                attempt += 1;
                continue;
            }
            let out = self.settle_commit(&mut state, outcome).await?;
            return Ok((results, out));
        }
    }

    /// Creates a batch of transfers (releasing expired holds first); one
    /// result per transfer, returned only once the batch is durable.
    #[tracing::instrument(name = "ledger.create_transfers", skip_all, fields(count = batch.len()))]
    pub async fn create_transfers(
        &self,
        principal: &Principal,
        batch: Vec<NewTransfer>,
    ) -> Result<Vec<CreateTransferResult>, LedgerError> {
        if !self.may_write(principal) {
            return Err(self
                .deny(
                    principal,
                    "create transfers",
                    format!(
                        "transfer:{}",
                        batch.first().map(|t| t.id).unwrap_or_default()
                    ),
                )
                .await);
        }
        let mut state = self.lock_to_write().await?;
        let mut attempt = 1;
        loop {
            self.prefetch(&mut state, &batch).await?;
            let now = self.clock.now();
            let (results, audit) =
                Self::decide_transfers(&mut state, principal, now, batch.clone());
            let core = self.core_for(audit);
            let outcome = self.commit_batch(&state, &core).await;
            if self
                .stale_and_reloaded(&mut state, &outcome, attempt)
                .await?
            {
                attempt += 1;
                continue;
            }
            self.settle_commit(&mut state, outcome).await?;
            return Ok(results);
        }
    }

    /// Decides a batch of transfers and lets `commit` persist the ledger's
    /// changes together with the caller's own rows, in one transaction.
    ///
    /// This is how another domain's operation and its money movements
    /// commit as one unit (a settlement chunk's fares with its trips): the
    /// ledger decides the batch in memory, hands `commit` the per-transfer
    /// results, the change set and the batch's audit record, and
    /// acknowledges the batch only when `commit` returns `Ok`. On an error
    /// the batch is forgotten (the ledger reloads its acknowledged state) and
    /// nothing of it was stored. `commit` must write `changes` to this
    /// ledger's own store (the same database); the ledger's `store.commit`
    /// is not called.
    #[tracing::instrument(name = "ledger.create_transfers_with", skip_all, fields(count = batch.len()))]
    pub async fn create_transfers_with<C: CommitWith>(
        &self,
        principal: &Principal,
        batch: Vec<NewTransfer>,
        commit: C,
    ) -> Result<(Vec<CreateTransferResult>, C::Output), LedgerError> {
        if !self.may_write(principal) {
            return Err(self
                .deny(
                    principal,
                    "create transfers",
                    format!(
                        "transfer:{}",
                        batch.first().map(|t| t.id).unwrap_or_default()
                    ),
                )
                .await);
        }
        let mut state = self.lock_to_write().await?;
        let mut commit = commit;
        let mut attempt = 1;
        loop {
            self.prefetch(&mut state, &batch).await?;
            let now = self.clock.now();
            let (results, audit) =
                Self::decide_transfers(&mut state, principal, now, batch.clone());
            state.committing = true;
            let outcome = {
                let changes = state.engine.changes();
                commit.commit(&results, &changes, audit).await
            };
            state.committing = false;
            if self
                .stale_and_reloaded(&mut state, &outcome, attempt)
                .await?
            {
                attempt += 1;
                continue;
            }
            let out = self.settle_commit(&mut state, outcome).await?;
            return Ok((results, out));
        }
    }

    /// Asks the store, in one round trip, for what `batch` names and the
    /// engine lacks, and hands it to the engine.
    async fn prefetch(&self, state: &mut State, batch: &[NewTransfer]) -> Result<(), LedgerError> {
        let (ids, holds) = state.engine.lacking(batch);
        if ids.is_empty() && holds.is_empty() {
            return Ok(());
        }
        let fetched = self.store.prefetch(&ids, &holds).await?;
        state.engine.supply(&holds, fetched);
        Ok(())
    }

    /// Decides a batch of accounts in the engine; returns the results and the batch's audit record.
    fn decide_accounts(
        &self,
        state: &mut State,
        principal: &Principal,
        batch: Vec<NewAccount>,
    ) -> (Vec<CreateAccountResult>, AuditRecord) {
        let now = self.clock.now();
        let count = batch.len();
        let results = state.engine.create_accounts(now, batch);
        let ok = results.iter().filter(|r| r.is_success()).count();
        let audit = AuditRecord::new(
            now,
            principal.clone(),
            "ledger.create_accounts",
            "ledger:accounts",
            AuditOutcome::Succeeded,
        )
        .with("count", count.to_string())
        .with("ok", ok.to_string());
        (results, audit)
    }

    /// Decides a batch of transfers in the engine; returns the results and the batch's audit record.
    fn decide_transfers(
        state: &mut State,
        principal: &Principal,
        now: DateTime<Utc>,
        batch: Vec<NewTransfer>,
    ) -> (Vec<CreateTransferResult>, AuditRecord) {
        let first = batch.first().map(|t| t.id);
        let count = batch.len();
        let results = state.engine.create_transfers(now, batch);
        let ok = results.iter().filter(|r| r.is_success()).count();
        let replayed = results
            .iter()
            .filter(|r| matches!(r, CreateTransferResult::Exists))
            .count();
        info!(count, ok, replayed, first = ?first, "ledger transfers decided");
        let audit = AuditRecord::new(
            now,
            principal.clone(),
            "ledger.create_transfers",
            format!("transfer:{}", first.unwrap_or_default()),
            if replayed == count && count > 0 {
                AuditOutcome::Replayed
            } else if ok == count {
                AuditOutcome::Succeeded
            } else {
                AuditOutcome::Failed
            },
        )
        .with("count", count.to_string())
        .with("ok", ok.to_string())
        .with("replayed", replayed.to_string());
        (results, audit)
    }

    /// The core records of a batch: its audit record when the ledger audits.
    fn core_for(&self, audit: AuditRecord) -> CoreChanges {
        if self.audit.is_some() {
            CoreChanges::audited(audit)
        } else {
            CoreChanges::default()
        }
    }

    /// Releases every hold whose timeout has passed (call it periodically:
    /// the library spawns nothing); returns how many were released.
    #[tracing::instrument(name = "ledger.expire_pending", skip_all)]
    pub async fn expire_pending(&self, principal: &Principal) -> Result<usize, LedgerError> {
        if !self.may_write(principal) {
            return Err(self
                .deny(principal, "expire holds", "ledger:holds".into())
                .await);
        }
        let mut state = self.lock_to_write().await?;
        let released = state.engine.expire_pending(self.clock.now());
        self.persist(&mut state, &CoreChanges::default()).await?;
        info!(released, "ledger holds expired");
        Ok(released)
    }

    /// "Not found" for the system and reading operators; for anyone else a
    /// missing id is refused like another's, so ids (derived from card
    /// numbers) cannot be probed for existence.
    async fn missing(&self, principal: &Principal, not_found: LedgerError) -> LedgerError {
        if self
            .roles
            .allows(principal, &[OperatorRole::Finance, OperatorRole::Auditor])
        {
            return not_found;
        }
        let subject = match &not_found {
            LedgerError::TransferNotFound(id) => format!("transfer:{id}"),
            LedgerError::AccountNotFound(id) => format!("account:{id}"),
            _ => "ledger".to_owned(),
        };
        self.deny(principal, "view this record", subject).await
    }

    /// The account `id` as `principal` may see it for `scope`: a missing or
    /// foreign account is refused alike (audited), an allowed read is audited
    /// as `action`.
    async fn readable(
        &self,
        principal: &Principal,
        id: AccountId,
        found: Option<Account>,
        scope: DelegationScope,
        action: &'static str,
    ) -> Result<Account, LedgerError> {
        let Some(account) = found else {
            return Err(self
                .missing(principal, LedgerError::AccountNotFound(id))
                .await);
        };
        if !self.may_read(principal, &account, scope).await? {
            let what = match scope {
                DelegationScope::ViewRecords => "view this account's records",
                _ => "view this account",
            };
            return Err(self.deny(principal, what, format!("account:{id}")).await);
        }
        self.audit_read(principal, &account, action).await;
        Ok(account)
    }

    /// An account with its flags and balances as its last committed batch
    /// left them.
    ///
    /// Read from the store, not the engine: it never waits behind a batch
    /// being decided or committed (a settlement chunk holds the engine for
    /// its whole commit), and on a store shared by several instances it
    /// sees what every instance committed.
    pub async fn account(
        &self,
        principal: &Principal,
        id: AccountId,
    ) -> Result<Account, LedgerError> {
        let found = self.store.accounts(&[id]).await?.pop();
        self.readable(
            principal,
            id,
            found,
            DelegationScope::ViewBalance,
            "ledger.account",
        )
        .await
    }

    /// The accounts of an owner the principal may see, in creation order.
    pub async fn accounts_of(
        &self,
        principal: &Principal,
        owner: &Owner,
    ) -> Result<Vec<Account>, LedgerError> {
        let owned: Vec<Account> = self
            .lock()
            .await?
            .engine
            .accounts()
            .filter(|a| a.owner.as_ref() == Some(owner))
            .collect();
        let mut visible = Vec::with_capacity(owned.len());
        for a in owned {
            if self
                .may_read(principal, &a, DelegationScope::ViewBalance)
                .await?
            {
                self.audit_read(principal, &a, "ledger.accounts_of").await;
                visible.push(a);
            }
        }
        Ok(visible)
    }

    /// An account's balances as of an instant (accounts with `history`),
    /// read from the store: the account's transfers up to `at` and the
    /// expiries of its holds.
    pub async fn balances_at(
        &self,
        principal: &Principal,
        id: AccountId,
        at: DateTime<Utc>,
    ) -> Result<Balances, LedgerError> {
        let found = self.store.accounts(&[id]).await?.pop();
        let account = self
            .readable(
                principal,
                id,
                found,
                DelegationScope::ViewBalance,
                "ledger.balances_at",
            )
            .await?;
        if !account.flags.history() {
            return Err(LedgerError::HistoryNotEnabled(id));
        }
        let at = clamp(at);
        let end = clamp(at + chrono::Duration::nanoseconds(1));
        let mut walk = BalanceWalk::new(id);
        self.each_transfer(id, beginning(), end, |t| {
            walk.push(t);
            true
        })
        .await?;
        let holds = walk.open_holds();
        if !holds.is_empty() {
            for e in self.store.prefetch(&[], &holds).await?.expiries {
                if e.timestamp <= at {
                    walk.expire(e.transfer_id);
                }
            }
        }
        Ok(walk.balances())
    }

    /// Feeds `f` an account's transfers in `[from, to)` from the store, page
    /// by page, oldest first, until `f` returns false.
    async fn each_transfer(
        &self,
        account: AccountId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        mut f: impl FnMut(&Transfer) -> bool + Send,
    ) -> Result<(), LedgerError> {
        let mut from = from;
        loop {
            let page = self
                .store
                .account_transfers(&AccountRange {
                    account,
                    from,
                    to,
                    limit: PAGE,
                })
                .await?;
            for t in &page {
                if !f(t) {
                    return Ok(());
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE => {
                    from = last.timestamp + chrono::Duration::nanoseconds(1);
                }
                _ => return Ok(()),
            }
        }
    }

    /// The accounts of a transfer, as the engine holds them now.
    async fn transfer_accounts(&self, t: &Transfer) -> Result<[Option<Account>; 2], LedgerError> {
        let state = self.current().await?;
        Ok([
            state.engine.account(t.debit_account_id),
            state.engine.account(t.credit_account_id),
        ])
    }

    /// A transfer by id (from memory when recent, else from the store).
    pub async fn transfer(
        &self,
        principal: &Principal,
        id: TransferId,
    ) -> Result<Transfer, LedgerError> {
        let Some(t) = self.find_transfer(id).await? else {
            return Err(self
                .missing(principal, LedgerError::TransferNotFound(id))
                .await);
        };
        let accounts = self.transfer_accounts(&t).await?;
        if !self.may_see(principal, &accounts).await? {
            return Err(self
                .deny(principal, "view this transfer", format!("transfer:{id}"))
                .await);
        }
        Ok(t)
    }

    async fn find_transfer(&self, id: TransferId) -> Result<Option<Transfer>, LedgerError> {
        if let Some(t) = self.lock().await?.engine.transfer(id) {
            return Ok(Some(t.clone()));
        }
        Ok(self.store.prefetch(&[id], &[]).await?.transfers.pop())
    }

    /// The state of a hold.
    pub async fn pending_status(
        &self,
        principal: &Principal,
        id: TransferId,
    ) -> Result<PendingStatus, LedgerError> {
        let Some(t) = self.find_transfer(id).await? else {
            return Err(self
                .missing(principal, LedgerError::TransferNotFound(id))
                .await);
        };
        let accounts = self.transfer_accounts(&t).await?;
        if !self.may_see(principal, &accounts).await? {
            return Err(self
                .deny(principal, "view this transfer", format!("transfer:{id}"))
                .await);
        }
        if !t.flags.pending() {
            return Err(LedgerError::TransferNotFound(id));
        }
        let held = self.current().await?.engine.pending_status(id);
        match held {
            Some(status) => Ok(status),
            None => {
                let p = self.store.prefetch(&[], &[id]).await?;
                Ok(settled_status(id, &p.settlements, &p.expiries))
            }
        }
    }

    /// The result a transfer id failed with, if it did (`id_already_failed`
    /// answers it on retry): for the system and operators with the finance
    /// or auditor role.
    pub async fn failure(
        &self,
        principal: &Principal,
        id: TransferId,
    ) -> Result<Option<CreateTransferResult>, LedgerError> {
        if !self
            .roles
            .allows(principal, &[OperatorRole::Finance, OperatorRole::Auditor])
        {
            return Err(self
                .deny(principal, "view failed transfers", format!("transfer:{id}"))
                .await);
        }
        if let Some(r) = self.lock().await?.engine.failure(id) {
            return Ok(Some(r));
        }
        Ok(self
            .store
            .prefetch(&[id], &[])
            .await?
            .failures
            .first()
            .map(|f| f.result))
    }

    /// Every record the store holds (accounts with balances, transfers,
    /// expiries, failed ids), for exports and audits: for the system and
    /// operators with the finance or auditor role. It reads all history.
    pub async fn export(&self, principal: &Principal) -> Result<Snapshot, LedgerError> {
        if !self
            .roles
            .allows(principal, &[OperatorRole::Finance, OperatorRole::Auditor])
        {
            return Err(self
                .deny(principal, "export the ledger", "ledger:export".into())
                .await);
        }
        let mut snapshot = self.store.load().await?;
        snapshot.accounts.sort_by_key(|a| a.created_at);
        snapshot.transfers.sort_by_key(|t| t.timestamp);
        snapshot.expiries.sort_by_key(|e| e.timestamp);
        snapshot.failures.sort_by_key(|f| f.id);
        Ok(snapshot)
    }

    /// Transfers with a reference the principal may see, oldest first.
    pub async fn transfers_by_reference(
        &self,
        principal: &Principal,
        reference: &Reference,
    ) -> Result<Vec<Transfer>, LedgerError> {
        let found = self.store.transfers_by_reference(reference).await?;
        let mut visible = Vec::with_capacity(found.len());
        for t in found {
            let accounts = self.transfer_accounts(&t).await?;
            if self.may_see(principal, &accounts).await? {
                visible.push(t);
            }
        }
        Ok(visible)
    }

    /// An account's statement over `[from, to)` (every entry; see
    /// [`Ledger::statement_page`] to page through a long range).
    #[tracing::instrument(name = "ledger.statement", skip_all, fields(account = %id))]
    pub async fn statement(
        &self,
        principal: &Principal,
        id: AccountId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Statement, LedgerError> {
        Ok(self
            .statement_page(principal, id, from, to, usize::MAX)
            .await?
            .statement)
    }

    /// At most `limit` entries of an account's statement over `[from, to)`:
    /// the page's opening balance is the balance before its first entry,
    /// its closing balance the balance after its last. `next` is the `from`
    /// of the next page, `None` when the range is exhausted.
    #[tracing::instrument(name = "ledger.statement_page", skip_all, fields(account = %id, limit))]
    pub async fn statement_page(
        &self,
        principal: &Principal,
        id: AccountId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<StatementPage, LedgerError> {
        if to < from {
            return Err(LedgerError::InvalidRange);
        }
        let found = self.store.accounts(&[id]).await?.pop();
        let account = self
            .readable(
                principal,
                id,
                found,
                DelegationScope::ViewRecords,
                "ledger.statement",
            )
            .await?;
        let (from, to) = (clamp(from), clamp(to));
        let side = account.normal_side();
        let mut builder = StatementBuilder::new(&account, from, to);
        let mut next = None;
        self.each_transfer(id, beginning(), to, |t| {
            if builder.len() >= limit && t.timestamp >= from && posted_effect(t, id, side).is_some()
            {
                next = Some(t.timestamp);
                return false;
            }
            builder.push(t)
        })
        .await?;
        Ok(StatementPage {
            statement: builder.finish(),
            next,
        })
    }

    /// Compares an account's statement over `[from, to)` with a counterparty's entries.
    #[tracing::instrument(name = "ledger.reconcile", skip_all, fields(account = %id, external = external.len()))]
    pub async fn reconcile(
        &self,
        principal: &Principal,
        id: AccountId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        external: &[ExternalEntry],
    ) -> Result<ReconciliationReport, LedgerError> {
        let statement = self.statement(principal, id, from, to).await?;
        let report = reconcile(&statement, external);
        info!(
            account = %id,
            matched = report.matched.len(),
            missing_externally = report.missing_externally.len(),
            missing_in_ledger = report.missing_in_ledger.len(),
            mismatches = report.amount_mismatches.len(),
            "ledger reconciled"
        );
        Ok(report)
    }

    /// Runs `f` on the engine (read-only), for the host's own checks: it
    /// checks no principal, so never answer a caller with it. The engine
    /// holds accounts, balances, live holds and a window of recent
    /// transfers, not history: use the queries or [`Ledger::export`]. On a
    /// shared store the engine catches up first, as for any read.
    pub async fn inspect<T>(&self, f: impl FnOnce(&Engine) -> T) -> Result<T, LedgerError> {
        let state = self.current().await?;
        Ok(f(&state.engine))
    }
}
