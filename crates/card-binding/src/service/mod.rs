//! The card service, one type split by concern:
//!
//! - [`issue`]: issuing one card or a batch (decided here, committed by the caller or here);
//! - [`lifecycle`]: report lost / found, freeze, replace, cancel, reconcile;
//! - [`binding`]: the bind saga, settling, unbinding, binding views;
//! - [`delegation`]: grants, revocation, the stored-grant check;
//! - [`passes`]: the wallet pass (sync, balance refresh, capabilities).
//!
//! Every state change is gather → pure decision ([`crate::decide`]) → one
//! commit of a [`CardChanges`] with its core records (audit, idempotency
//! outcome) on the [`CardChangeStore`]. An idempotent operation looks its
//! key up first and commits its outcome with its effect, so it takes no
//! claim: a crash leaves either the whole step or nothing. A refused commit
//! (a concurrent change) is read again and decided again, at most
//! [`CAS_ATTEMPTS`] times. Remote calls (real-name checks, issuer, platform
//! wallet, funds) run between commits, never inside one.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use citycard_core::{
    AuditLog, AuditOutcome, AuditRecord, Clock, CoreChanges, DelegationScope, Fingerprint,
    IdGenerator, IdempotencyError, IdempotencyKey, IdempotencyState, IdempotencyStore, KeyOutcome,
    OperatorRole, OperatorRoles, PersonId, Principal, StoreError,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::changes::CardChanges;
use crate::error::{BindingError, PortError};
use crate::model::{Binding, BindingId, BlindIndex, Card, CardId, CardNumber, Delegation};
use crate::ports::{
    BalanceSource, BindingStore, CardChangeStore, CardFunds, CardIssuer, CardStore,
    DelegationStore, IdNumberIndex, PlatformWallet, RealNameCheck,
};

pub mod binding;
pub mod delegation;
pub mod issue;
pub mod lifecycle;
pub mod passes;
mod requests;

pub use delegation::StoredGrants;
pub use issue::{
    ChunkDecision, IssueBatch, IssueChunkPlan, IssueDecision, IssueOutcome, IssuePlan,
};
pub use requests::{
    BindRequest, BindingConfig, CardChange, GrantDelegation, IssueCard, ReplaceCard, WalletView,
};

/// Every port the service uses, as shared trait objects.
#[derive(Clone)]
pub struct CardPorts {
    /// The card registry.
    pub cards: Arc<dyn CardStore>,
    /// Bindings and mismatch records.
    pub bindings: Arc<dyn BindingStore>,
    /// Delegation grants.
    pub delegations: Arc<dyn DelegationStore>,
    /// The one write: decided change sets with their core records (same backend as the three above).
    pub changes: Arc<dyn CardChangeStore>,
    /// Idempotency records (read; outcomes are written with each commit).
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// The audit log (denials and audited reads; changes audit with their commit).
    pub audit: Arc<dyn AuditLog>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// New ids.
    pub ids: Arc<dyn IdGenerator>,
    /// Real-name facts (identity).
    pub real_names: Arc<dyn RealNameCheck>,
    /// Blind index of ID numbers (identity).
    pub id_index: Arc<dyn IdNumberIndex>,
    /// The issuer's details check.
    pub issuer: Arc<dyn CardIssuer>,
    /// The platform card wallet.
    pub wallet: Arc<dyn PlatformWallet>,
    /// Balance moves on replace and cancel (ledger).
    pub funds: Arc<dyn CardFunds>,
    /// The authoritative balance (ledger).
    pub balances: Arc<dyn BalanceSource>,
}

/// The card-binding service; see the crate docs for the flow.
///
/// Back-office operations are for the system and operators. Without a role
/// registry ([`CardService::with_roles`]) every operator passes, as when the
/// crate is used alone behind the issuer's own access control; with one, an
/// operator needs the card-desk role to change cards, bindings and grants,
/// and the card-desk or auditor role to read them.
pub struct CardService {
    ports: CardPorts,
    config: BindingConfig,
    settling: Mutex<HashSet<BindingId>>,
    roles: Option<Arc<OperatorRoles>>,
}

impl std::fmt::Debug for CardService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// How often a refused commit (a concurrent change) is read and decided again.
pub const CAS_ATTEMPTS: usize = 16;

pub(crate) fn is_conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::Conflict(_))
}

/// An idempotency key with its scope and the request's fingerprint: where a
/// decision's outcome is committed.
#[derive(Debug, Clone)]
pub(crate) struct KeyRef {
    pub(crate) scope: String,
    pub(crate) key: IdempotencyKey,
    pub(crate) fingerprint: Fingerprint,
}

impl KeyRef {
    pub(crate) fn new<R: Serialize + ?Sized>(
        scope: String,
        key: &IdempotencyKey,
        request: &R,
    ) -> Result<KeyRef, BindingError> {
        Ok(KeyRef {
            scope,
            key: key.clone(),
            fingerprint: Fingerprint::of(request)?,
        })
    }

    /// The outcome record of `value`, decided at `at`.
    pub(crate) fn outcome<T: Serialize + ?Sized>(
        &self,
        value: &T,
        at: DateTime<Utc>,
    ) -> Result<KeyOutcome, BindingError> {
        Ok(KeyOutcome::new(
            self.scope.clone(),
            self.key.clone(),
            self.fingerprint,
            value,
            at,
        )?)
    }
}

/// A decision ready to commit: the rows, the core records, and the answer.
pub(crate) struct Decided<T> {
    pub(crate) changes: CardChanges,
    pub(crate) core: CoreChanges,
    pub(crate) value: T,
}

impl CardService {
    /// A service over its ports.
    pub fn new(ports: CardPorts, config: BindingConfig) -> Self {
        Self {
            ports,
            config,
            settling: Mutex::default(),
            roles: None,
        }
    }

    /// Looks operators' roles up in `roles` (see the type's docs).
    #[must_use]
    pub fn with_roles(mut self, roles: Arc<OperatorRoles>) -> Self {
        self.roles = Some(roles);
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &BindingConfig {
        &self.config
    }

    /// Parses a card number with the configured format.
    pub fn parse_card_number(&self, text: &str) -> Result<CardNumber, BindingError> {
        CardNumber::parse(text, &self.config.rules.number_format)
    }

    /// The system, or an operator holding one of `roles` (any operator without a registry).
    fn back_office(&self, principal: &Principal, roles: &[OperatorRole]) -> bool {
        match (principal, &self.roles) {
            (Principal::System, _) => true,
            (Principal::Operator { .. }, None) => true,
            (Principal::Operator { .. }, Some(registry)) => registry.allows(principal, roles),
            _ => false,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.ports.clock.now()
    }

    /// Audits a denial and returns the error (a denial changes nothing else).
    async fn deny(
        &self,
        principal: &Principal,
        action: &str,
        subject: String,
        reason: &str,
    ) -> BindingError {
        warn!(action, subject = %subject, reason, "denied");
        let record = AuditRecord::new(
            self.now(),
            principal.clone(),
            action,
            subject,
            AuditOutcome::Denied,
        )
        .with("reason", reason);
        if let Err(e) = self.ports.audit.append(record).await {
            return e.into();
        }
        BindingError::Denied {
            reason: reason.to_owned(),
        }
    }

    /// Audits a read allowed to anyone but the system (whose reads serve its own work).
    async fn audit_read(
        &self,
        principal: &Principal,
        action: &str,
        subject: String,
    ) -> Result<(), BindingError> {
        if matches!(principal, Principal::System) {
            return Ok(());
        }
        self.ports
            .audit
            .append(AuditRecord::new(
                self.now(),
                principal.clone(),
                action,
                subject,
                AuditOutcome::Succeeded,
            ))
            .await?;
        Ok(())
    }

    /// Checks that a delegate principal acts under a live grant holding `scope` for `person`.
    async fn live_grant(
        &self,
        principal: &Principal,
        person: &PersonId,
        scope: DelegationScope,
    ) -> Result<Option<Delegation>, BindingError> {
        let Principal::Delegate {
            delegate,
            on_behalf_of,
            delegation,
            scopes,
        } = principal
        else {
            return Ok(None);
        };
        Ok(delegation::live_grant(
            &*self.ports.delegations,
            delegate,
            on_behalf_of,
            delegation,
            *scopes,
            person,
            scope,
            self.now(),
        )
        .await?)
    }

    /// Whether the principal may act for `person` with `scope` (self, or a live grant).
    async fn acts_for(
        &self,
        principal: &Principal,
        person: &PersonId,
        scope: DelegationScope,
    ) -> Result<bool, BindingError> {
        Ok(match principal {
            Principal::Cardholder { person: p } => p == person,
            Principal::Delegate { .. } => {
                self.live_grant(principal, person, scope).await?.is_some()
            }
            _ => false,
        })
    }

    async fn with_retries<T, F, Fut>(&self, mut call: F) -> Result<T, PortError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, PortError>>,
    {
        let mut last = PortError::Unavailable("not attempted".into());
        for _ in 0..self.config.wallet_attempts.max(1) {
            match call().await {
                Ok(v) => return Ok(v),
                Err(PortError::Rejected(r)) => return Err(PortError::Rejected(r)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The keyed digest of a card number that request fingerprints carry:
    /// a plain hash of a number from a space of about 10^6 gives it back.
    async fn card_digest(&self, number: &CardNumber) -> Result<BlindIndex, BindingError> {
        self.ports
            .id_index
            .keyed_digest("card-number", number.as_str())
            .await
            .map_err(|e| e.retry_later("id index"))
    }

    async fn load_card(&self, id: &CardId) -> Result<Card, BindingError> {
        self.ports
            .cards
            .get(id)
            .await?
            .ok_or_else(|| BindingError::NotFound {
                what: format!("card {id}"),
            })
    }

    async fn load_binding(&self, id: &BindingId) -> Result<Binding, BindingError> {
        self.ports
            .bindings
            .get(id)
            .await?
            .ok_or_else(|| BindingError::NotFound {
                what: format!("binding {id}"),
            })
    }

    /// The card at the end of `card`'s replacement chain (itself when not replaced).
    async fn current_card(&self, card: Card) -> Result<Card, BindingError> {
        let mut card = card;
        let mut hops = 0;
        while let crate::model::CardStatus::Replaced { by } = &card.status {
            hops += 1;
            if hops > 16 {
                return Err(BindingError::InvalidState {
                    operation: "follow card replacements".into(),
                    state: "the replacement chain is too long".into(),
                });
            }
            let by = by.clone();
            card = self.load_card(&by).await?;
        }
        Ok(card)
    }

    /// The stored outcome of `key`, if its request completed.
    ///
    /// A claim left in progress by an earlier version whose lease ran out
    /// counts as free: the decision reads the effect back, and the outcome
    /// committed with it completes the claim.
    async fn lookup<T: DeserializeOwned>(&self, key: &KeyRef) -> Result<Option<T>, BindingError> {
        let Some(record) = self.ports.idempotency.get(&key.scope, &key.key).await? else {
            return Ok(None);
        };
        if record.fingerprint != key.fingerprint {
            return Err(IdempotencyError::Conflict {
                scope: key.scope.clone(),
                key: key.key.clone(),
            }
            .into());
        }
        match (record.state, &record.outcome) {
            (IdempotencyState::Completed, Some(outcome)) => serde_json::from_str(outcome)
                .map(Some)
                .map_err(|e| IdempotencyError::Encoding(e.to_string()).into()),
            _ if record.is_expired(self.now()) => Ok(None),
            _ => Err(IdempotencyError::InProgress {
                scope: key.scope.clone(),
                key: key.key.clone(),
            }
            .into()),
        }
    }

    /// Commits a decision in one transaction, with the outbox events of the
    /// bindings it creates, changes or removes (for the binding's platform,
    /// in the card's event sequence).
    async fn commit(&self, changes: &CardChanges, core: &CoreChanges) -> Result<(), StoreError> {
        let events = binding_events(changes, self.now());
        if events.is_empty() {
            return self.ports.changes.commit(changes, core).await;
        }
        let mut core = core.clone();
        core.events.extend(events);
        self.ports.changes.commit(changes, &core).await
    }

    /// Runs an idempotent change the decide-then-commit way: look the key up
    /// (a stored outcome is the answer), gather and decide (`decide`), commit
    /// the decision with its outcome; a refused commit is decided again.
    /// Returns the answer and whether it was replayed.
    async fn idempotent<T, F, Fut>(
        &self,
        key: &KeyRef,
        mut decide: F,
    ) -> Result<(T, bool), BindingError>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Decided<T>, BindingError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Some(stored) = self.lookup::<T>(key).await? {
                return Ok((stored, true));
            }
            let mut decided = decide().await?;
            decided
                .core
                .outcomes
                .push(key.outcome(&decided.value, self.now())?);
            match self.commit(&decided.changes, &decided.core).await {
                Ok(()) => return Ok((decided.value, false)),
                Err(e) if is_conflict(&e) && attempt < CAS_ATTEMPTS => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The outbox events of a decision's bindings.
fn binding_events(changes: &CardChanges, at: DateTime<Utc>) -> Vec<citycard_core::NewEvent> {
    use citycard_core::{EventKind, NewEvent};
    let event = |kind: EventKind, b: &crate::model::Binding| {
        NewEvent::new(
            kind,
            b.card.to_string(),
            Some(b.platform.clone()),
            at,
            serde_json::json!({
                "binding": b.id.to_string(),
                "state": b.state,
                "account": b.account.to_string(),
                "removal": b.removal.map(|r| r.code()),
            }),
        )
    };
    let created = changes
        .new_bindings
        .iter()
        .map(|b| event(EventKind::BindingCreated, b));
    let changed = changes.bindings.iter().map(|b| {
        if b.state == crate::model::BindingState::Removed {
            event(EventKind::BindingRemoved, b)
        } else {
            event(EventKind::BindingChanged, b)
        }
    });
    created.chain(changed).collect()
}
