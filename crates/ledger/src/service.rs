//! The `Ledger` service: the engine, a store, a clock, principals and audit.

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

use crate::engine::Engine;
use crate::ids::{AccountId, AccountKind, Owner, Reference, TransferId};
use crate::model::{
    Account, AccountFlags, Balances, CreateAccountResult, CreateTransferResult, NewAccount,
    NewTransfer, PendingStatus, Transfer, TransferFlags,
};
use crate::query::{ExternalEntry, ReconciliationReport, Statement, reconcile, statement};
use crate::store::{ChangeSet, LedgerStore};

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
#[async_trait::async_trait]
pub trait CommitWith: Send {
    /// What the commit returns to the caller.
    type Output: Send;
    /// Writes `changes` (the ledger's rows), `audit` (the batch's audit
    /// record) and the caller's rows, derived from `results`, atomically.
    async fn commit(
        self,
        results: &[CreateTransferResult],
        changes: &ChangeSet<'_>,
        audit: AuditRecord,
    ) -> Result<Self::Output, StoreError>;
}

struct State {
    engine: Engine,
    poisoned: bool,
}

/// The ledger: validates batches in memory and acknowledges them only once
/// the store has committed them.
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
    /// Opens the ledger on a store, rebuilding the state it acknowledged.
    pub async fn open(
        store: Arc<dyn LedgerStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Ledger, LedgerError> {
        let engine = Self::rebuild(store.as_ref()).await?;
        info!(
            accounts = engine.account_count(),
            transfers = engine.transfer_count(),
            "ledger opened"
        );
        Ok(Ledger {
            state: Mutex::new(State {
                engine,
                poisoned: false,
            }),
            store,
            clock,
            audit: None,
            grants: None,
            roles: Arc::new(OperatorRoles::new()),
        })
    }

    async fn rebuild(store: &dyn LedgerStore) -> Result<Engine, LedgerError> {
        let snapshot = store.load().await?;
        Engine::from_snapshot(snapshot)
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
        let changes = state.engine.changes();
        if changes.is_empty() && core.is_empty() {
            return Ok(());
        }
        let outcome = self.store.commit(&changes, core).await;
        self.settle_commit(state, outcome).await
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
                match Self::rebuild(self.store.as_ref()).await {
                    Ok(engine) => state.engine = engine,
                    Err(_) => state.poisoned = true,
                }
                Err(LedgerError::Store(e))
            }
        }
    }

    async fn lock(&self) -> Result<tokio::sync::MutexGuard<'_, State>, LedgerError> {
        let guard = self.state.lock().await;
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
        let mut state = self.lock().await?;
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
        self.persist(&mut state, &self.core_for(audit)).await?;
        drop(state);
        info!(count, ok, "ledger accounts created");
        Ok(results)
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
        let mut state = self.lock().await?;
        let now = self.clock.now();
        let (results, audit) = Self::decide_transfers(&mut state, principal, now, batch);
        self.persist(&mut state, &self.core_for(audit)).await?;
        Ok(results)
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
        let mut state = self.lock().await?;
        let now = self.clock.now();
        let (results, audit) = Self::decide_transfers(&mut state, principal, now, batch);
        let outcome = {
            let changes = state.engine.changes();
            commit.commit(&results, &changes, audit).await
        };
        let out = self.settle_commit(&mut state, outcome).await?;
        Ok((results, out))
    }

    /// Decides a batch in the engine; returns the results and the batch's audit record.
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
        let mut state = self.lock().await?;
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

    /// An account with its flags and balances.
    pub async fn account(
        &self,
        principal: &Principal,
        id: AccountId,
    ) -> Result<Account, LedgerError> {
        let found = self.lock().await?.engine.account(id);
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

    /// An account's balances as of an instant (accounts with `history`).
    pub async fn balances_at(
        &self,
        principal: &Principal,
        id: AccountId,
        at: DateTime<Utc>,
    ) -> Result<Balances, LedgerError> {
        let (found, balances) = {
            let state = self.lock().await?;
            (state.engine.account(id), state.engine.balances_at(id, at))
        };
        self.readable(
            principal,
            id,
            found,
            DelegationScope::ViewBalance,
            "ledger.balances_at",
        )
        .await?;
        balances.ok_or(LedgerError::HistoryNotEnabled(id))
    }

    fn transfer_accounts(engine: &Engine, t: &Transfer) -> [Option<Account>; 2] {
        [
            engine.account(t.debit_account_id),
            engine.account(t.credit_account_id),
        ]
    }

    /// A transfer by id.
    pub async fn transfer(
        &self,
        principal: &Principal,
        id: TransferId,
    ) -> Result<Transfer, LedgerError> {
        let found = {
            let state = self.lock().await?;
            state.engine.transfer(id).map(|t| {
                let accounts = Self::transfer_accounts(&state.engine, t);
                (t.clone(), accounts)
            })
        };
        let Some((t, accounts)) = found else {
            return Err(self
                .missing(principal, LedgerError::TransferNotFound(id))
                .await);
        };
        if !self.may_see(principal, &accounts).await? {
            return Err(self
                .deny(principal, "view this transfer", format!("transfer:{id}"))
                .await);
        }
        Ok(t)
    }

    /// The state of a hold.
    pub async fn pending_status(
        &self,
        principal: &Principal,
        id: TransferId,
    ) -> Result<PendingStatus, LedgerError> {
        let found = {
            let state = self.lock().await?;
            state.engine.transfer(id).map(|t| {
                let accounts = Self::transfer_accounts(&state.engine, t);
                (state.engine.pending_status(id), accounts)
            })
        };
        let Some((status, accounts)) = found else {
            return Err(self
                .missing(principal, LedgerError::TransferNotFound(id))
                .await);
        };
        if !self.may_see(principal, &accounts).await? {
            return Err(self
                .deny(principal, "view this transfer", format!("transfer:{id}"))
                .await);
        }
        status.ok_or(LedgerError::TransferNotFound(id))
    }

    /// Transfers with a reference the principal may see, oldest first.
    pub async fn transfers_by_reference(
        &self,
        principal: &Principal,
        reference: &Reference,
    ) -> Result<Vec<Transfer>, LedgerError> {
        let found: Vec<(Transfer, [Option<Account>; 2])> = {
            let state = self.lock().await?;
            state
                .engine
                .transfers_by_reference(reference)
                .into_iter()
                .map(|t| (t.clone(), Self::transfer_accounts(&state.engine, t)))
                .collect()
        };
        let mut visible = Vec::with_capacity(found.len());
        for (t, accounts) in found {
            if self.may_see(principal, &accounts).await? {
                visible.push(t);
            }
        }
        Ok(visible)
    }

    /// An account's statement over `[from, to)`.
    #[tracing::instrument(name = "ledger.statement", skip_all, fields(account = %id))]
    pub async fn statement(
        &self,
        principal: &Principal,
        id: AccountId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Statement, LedgerError> {
        if to < from {
            return Err(LedgerError::InvalidRange);
        }
        let found = self.lock().await?.engine.account(id);
        self.readable(
            principal,
            id,
            found,
            DelegationScope::ViewRecords,
            "ledger.statement",
        )
        .await?;
        let state = self.lock().await?;
        statement(&state.engine, id, from, to).ok_or(LedgerError::AccountNotFound(id))
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

    /// Runs `f` on the engine (read-only), for the host's own checks and
    /// exports: it checks no principal, so never answer a caller with it.
    pub async fn inspect<T>(&self, f: impl FnOnce(&Engine) -> T) -> Result<T, LedgerError> {
        let state = self.lock().await?;
        Ok(f(&state.engine))
    }
}
