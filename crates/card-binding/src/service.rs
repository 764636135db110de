//! The card service: card lifecycle, the binding flow, unbinding, delegation and the wallet view.

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use citycard_core::{
    AuditLog, AuditOutcome, AuditRecord, Clock, DelegationId, DelegationScope, GrantVerifier,
    IdGenerator, IdempotencyKey, IdempotencyStore, OperatorRole, OperatorRoles, PersonId, Platform,
    PlatformAccountId, Principal, Scopes, Sensitive, StoreError, run_idempotent,
};
use citycard_core::{principal_scope, run_idempotent_recovering};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::error::{BindingError, PortError, Refusal};
use crate::model::{
    BalanceView, BindingReceipt, BindingState, BlindIndex, Card, CardId, CardNumber, CardRules,
    CardStatus, ConsentInput, ConsentRecord, Delegation, PassSerial, PassStatus, PassUpdate,
    Relation, RemovalReason, Service, ServiceSet, WalletAccountRef, WalletPass,
};
use crate::model::{Binding, BindingId};
use crate::ports::{
    BalanceSource, CardFunds, CardIssuer, IdNumberIndex, IssuerVerdict, PlatformWallet,
    RealNameCheck,
};
use crate::store::{BindingStore, CardStore, DelegationStore};

/// The one delegation check: the claimed grant, loaded from the store, must name
/// this delegate and this cardholder, hold `scope` (also claimed: a session may be
/// narrowed), be unexpired at `now` and unrevoked. A claim alone proves nothing.
#[allow(clippy::too_many_arguments)]
async fn live_grant(
    delegations: &dyn DelegationStore,
    delegate: &PersonId,
    on_behalf_of: &PersonId,
    delegation: &DelegationId,
    claimed: Scopes,
    person: &PersonId,
    scope: DelegationScope,
    now: DateTime<Utc>,
) -> Result<Option<Delegation>, StoreError> {
    if on_behalf_of != person || !claimed.contains(scope) {
        return Ok(None);
    }
    let grant = delegations.get(delegation).await?;
    Ok(
        grant
            .filter(|g| g.delegate == *delegate && g.cardholder == *person && g.allows(scope, now)),
    )
}

/// The [`GrantVerifier`] over stored delegation grants: the check the card
/// service itself uses, for the ledger, healthcare and the facade.
#[derive(Clone)]
pub struct StoredGrants {
    delegations: Arc<dyn DelegationStore>,
}

impl StoredGrants {
    /// The verifier over this delegation store.
    pub fn new(delegations: Arc<dyn DelegationStore>) -> Self {
        Self { delegations }
    }
}

impl std::fmt::Debug for StoredGrants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredGrants")
    }
}

#[async_trait::async_trait]
impl GrantVerifier for StoredGrants {
    async fn verify(
        &self,
        principal: &Principal,
        person: &PersonId,
        scope: DelegationScope,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(match principal {
            Principal::Cardholder { person: p } => p == person,
            Principal::Delegate {
                delegate,
                on_behalf_of,
                delegation,
                scopes,
            } => live_grant(
                &*self.delegations,
                delegate,
                on_behalf_of,
                delegation,
                *scopes,
                person,
                scope,
                now,
            )
            .await?
            .is_some(),
            _ => false,
        })
    }
}

/// Every port the service uses, as shared trait objects.
#[derive(Clone)]
pub struct CardPorts {
    /// The card registry.
    pub cards: Arc<dyn CardStore>,
    /// Bindings and mismatch records.
    pub bindings: Arc<dyn BindingStore>,
    /// Delegation grants.
    pub delegations: Arc<dyn DelegationStore>,
    /// Idempotency records.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// The audit log.
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

/// Tunable rules of the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingConfig {
    /// Card number format, kinds and defaults.
    pub rules: CardRules,
    /// Mismatched attempts allowed per account within the window.
    pub mismatch_limit: u32,
    /// The rate-limit window.
    pub mismatch_window: Duration,
    /// Attempts per wallet write before compensating (same serial each time).
    pub wallet_attempts: u32,
    /// The longest a delegation may run.
    pub max_delegation: Duration,
}

impl Default for BindingConfig {
    fn default() -> Self {
        Self {
            rules: CardRules::embedded(),
            mismatch_limit: 5,
            mismatch_window: Duration::minutes(30),
            wallet_attempts: 3,
            max_delegation: Duration::days(366),
        }
    }
}

/// A request to issue a card.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueCard {
    /// The printed number.
    pub number: String,
    /// The kind code (one of the rules' kinds).
    pub kind: String,
    /// The cardholder.
    pub holder: PersonId,
    /// The cardholder's ID number (kept only as a blind index).
    pub id_number: Sensitive<String>,
    /// The e-wallet account.
    pub wallet_account: WalletAccountRef,
    /// Services (the rules' defaults when `None`).
    pub services: Option<ServiceSet>,
    /// Platforms (the rules' defaults when `None`).
    pub platforms: Option<BTreeSet<Platform>>,
}

/// A request to replace a card (补卡).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaceCard {
    /// The new card's printed number.
    pub new_number: String,
    /// The new card's e-wallet account.
    pub new_wallet_account: WalletAccountRef,
}

/// What a card event did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardChange {
    /// The card after the change.
    pub card: Card,
    /// The new card, on replacement.
    pub new_card: Option<Card>,
    /// Bindings whose state or card changed.
    pub bindings_changed: Vec<BindingId>,
    /// Bindings whose wallet pass could not be updated yet (call [`CardService::resync_pass`]).
    pub passes_unsynced: Vec<BindingId>,
    /// Money moved (replacement) or refunded (cancellation).
    pub funds_moved: Option<citycard_core::Money>,
}

/// A request to bind a card to a platform account (one user action).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindRequest {
    /// The platform.
    pub platform: Platform,
    /// The platform account.
    pub account: PlatformAccountId,
    /// The card number as typed.
    pub card_number: String,
    /// The ID number as typed.
    pub id_number: Sensitive<String>,
    /// What the user consents to.
    pub consent: ConsentInput,
}

// Requests carry card numbers as typed: their Debug masks them (one rule,
// `citycard_core::mask_card_number`), like the ID number's `Sensitive`.
impl std::fmt::Debug for IssueCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssueCard")
            .field("number", &citycard_core::mask_card_number(&self.number))
            .field("kind", &self.kind)
            .field("holder", &self.holder)
            .field("id_number", &self.id_number)
            .field("wallet_account", &self.wallet_account)
            .field("services", &self.services)
            .field("platforms", &self.platforms)
            .finish()
    }
}

impl std::fmt::Debug for ReplaceCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplaceCard")
            .field(
                "new_number",
                &citycard_core::mask_card_number(&self.new_number),
            )
            .field("new_wallet_account", &self.new_wallet_account)
            .finish()
    }
}

impl std::fmt::Debug for BindRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindRequest")
            .field("platform", &self.platform)
            .field("account", &self.account)
            .field(
                "card_number",
                &citycard_core::mask_card_number(&self.card_number),
            )
            .field("id_number", &self.id_number)
            .field("consent", &self.consent)
            .finish()
    }
}

/// A request to grant a delegation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantDelegation {
    /// For whom.
    pub cardholder: PersonId,
    /// Who may act.
    pub delegate: PersonId,
    /// Family helper or guardian.
    pub relation: Relation,
    /// What may be done.
    pub scopes: Scopes,
    /// Until when.
    pub expires_at: DateTime<Utc>,
}

/// The view of a binding's card in the wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletView {
    /// The binding.
    pub binding: BindingId,
    /// Its state.
    pub state: BindingState,
    /// Services enabled on the card.
    pub services: ServiceSet,
    /// The balance last pushed to the pass, with its "as of" time.
    pub balance: Option<BalanceView>,
}

#[derive(Serialize)]
struct BindFingerprint<'a> {
    principal: &'a Principal,
    platform: &'a Platform,
    account: &'a PlatformAccountId,
    card_digest: &'a BlindIndex,
    id_index: &'a BlindIndex,
    consent: &'a ConsentInput,
}

type BindOutcome = Result<BindingReceipt, Refusal>;

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

fn subject_card(id: &CardId) -> String {
    format!("card:{id}")
}

fn subject_binding(id: &BindingId) -> String {
    format!("binding:{id}")
}

fn is_conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::Conflict(_))
}

const CAS_ATTEMPTS: usize = 16;

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

    /// The system, or an operator holding one of `roles` (any operator without a registry).
    fn back_office(&self, principal: &Principal, roles: &[OperatorRole]) -> bool {
        match (principal, &self.roles) {
            (Principal::System, _) => true,
            (Principal::Operator { .. }, None) => true,
            (Principal::Operator { .. }, Some(registry)) => registry.allows(principal, roles),
            _ => false,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &BindingConfig {
        &self.config
    }

    /// Parses a card number with the configured format.
    pub fn parse_card_number(&self, text: &str) -> Result<CardNumber, BindingError> {
        CardNumber::parse(text, &self.config.rules.number_format)
    }

    fn now(&self) -> DateTime<Utc> {
        self.ports.clock.now()
    }

    async fn audit(&self, record: AuditRecord) -> Result<(), BindingError> {
        self.ports.audit.append(record).await?;
        Ok(())
    }

    /// Audits a denial and returns the error.
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
        Ok(live_grant(
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

    // ----- cards -----------------------------------------------------------

    /// Issues a card (operators and the system only).
    #[tracing::instrument(skip_all, fields(key = %key))]
    pub async fn issue_card(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        request: &IssueCard,
    ) -> Result<Card, BindingError> {
        if !self.back_office(principal, &[OperatorRole::CardDesk]) {
            return Err(self
                .deny(
                    principal,
                    "card.issue",
                    "card:new".into(),
                    "only the issuer issues cards",
                )
                .await);
        }
        let number = self.parse_card_number(&request.number)?;
        let kind = self.config.rules.kind(&request.kind)?;
        let holder_index = self
            .ports
            .id_index
            .blind_index(&request.id_number)
            .await
            .map_err(|e| e.retry_later("id index"))?;
        let services = request
            .services
            .clone()
            .unwrap_or_else(|| self.config.rules.default_services.clone());
        let platforms = request
            .platforms
            .clone()
            .unwrap_or_else(|| self.config.rules.default_platforms.clone());
        let card_digest = self.card_digest(&number).await?;
        let fingerprint = (
            &card_digest,
            kind.code(),
            &request.holder,
            &holder_index,
            &request.wallet_account,
            &services,
            &platforms,
        );
        let now = self.now();
        run_idempotent_recovering(
            &*self.ports.idempotency,
            &principal_scope("card.issue", principal),
            key,
            &fingerprint,
            now,
            // After a crash the card may be stored already: the card with this
            // number, for this holder, kind and wallet, is this request's.
            || async {
                Ok(match self.ports.cards.by_number(&number).await? {
                    Some(card)
                        if card.holder == request.holder
                            && card.kind == kind
                            && card.wallet_account == request.wallet_account =>
                    {
                        Some(card)
                    }
                    _ => None,
                })
            },
            || async {
                let card = Card {
                    id: CardId::generate(&*self.ports.ids),
                    number: number.clone(),
                    kind: kind.clone(),
                    holder: request.holder.clone(),
                    holder_index: holder_index.clone(),
                    wallet_account: request.wallet_account.clone(),
                    services: services.clone(),
                    platforms: platforms.clone(),
                    status: CardStatus::Active,
                    replaces: None,
                    issued_at: now,
                    version: 0,
                };
                self.ports.cards.insert(&card).await.map_err(|e| {
                    if is_conflict(&e) {
                        BindingError::InvalidState {
                            operation: "issue the card".into(),
                            state: "a card with this number exists".into(),
                        }
                    } else {
                        e.into()
                    }
                })?;
                self.audit(
                    AuditRecord::new(
                        now,
                        principal.clone(),
                        "card.issue",
                        subject_card(&card.id),
                        AuditOutcome::Succeeded,
                    )
                    .with("kind", card.kind.code())
                    .with("number", card.number.masked()),
                )
                .await?;
                info!(card = %card.id, "card issued");
                Ok::<_, BindingError>(card)
            },
        )
        .await
    }

    /// The card with this id, for its holder, a delegate with a viewing scope, or an operator.
    pub async fn card(&self, principal: &Principal, id: &CardId) -> Result<Card, BindingError> {
        let card = self.load_card(id).await?;
        if !(self.back_office(principal, &[OperatorRole::CardDesk, OperatorRole::Auditor])
            || self
                .acts_for(principal, &card.holder, DelegationScope::ViewBalance)
                .await?)
        {
            return Err(self
                .deny(
                    principal,
                    "card.view",
                    subject_card(id),
                    "not the cardholder",
                )
                .await);
        }
        self.audit_read(principal, "card.view", subject_card(id))
            .await?;
        Ok(card)
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
        self.audit(AuditRecord::new(
            self.now(),
            principal.clone(),
            action,
            subject,
            AuditOutcome::Succeeded,
        ))
        .await
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

    /// Reports a card lost (挂失): its bindings are suspended. Holder or operator.
    pub async fn report_lost(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        card: &CardId,
    ) -> Result<CardChange, BindingError> {
        self.change_status(
            principal,
            key,
            card,
            "card.report_lost",
            true,
            |s| matches!(s, CardStatus::Active | CardStatus::Frozen),
            CardStatus::ReportedLost,
        )
        .await
    }

    /// Reports a lost card found (解挂): its bindings resume. Holder or operator.
    pub async fn report_found(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        card: &CardId,
    ) -> Result<CardChange, BindingError> {
        self.change_status(
            principal,
            key,
            card,
            "card.report_found",
            true,
            |s| matches!(s, CardStatus::ReportedLost),
            CardStatus::Active,
        )
        .await
    }

    /// Freezes a card (issuer only): its bindings are suspended.
    pub async fn freeze(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        card: &CardId,
    ) -> Result<CardChange, BindingError> {
        self.change_status(
            principal,
            key,
            card,
            "card.freeze",
            false,
            |s| matches!(s, CardStatus::Active),
            CardStatus::Frozen,
        )
        .await
    }

    /// Unfreezes a card (issuer only): its bindings resume.
    pub async fn unfreeze(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        card: &CardId,
    ) -> Result<CardChange, BindingError> {
        self.change_status(
            principal,
            key,
            card,
            "card.unfreeze",
            false,
            |s| matches!(s, CardStatus::Frozen),
            CardStatus::Active,
        )
        .await
    }

    async fn authorize_card_op(
        &self,
        principal: &Principal,
        card: &Card,
        action: &str,
        holder_allowed: bool,
    ) -> Result<(), BindingError> {
        let allowed = match principal {
            Principal::Operator { .. } | Principal::System => {
                self.back_office(principal, &[OperatorRole::CardDesk])
            }
            Principal::Cardholder { person } => holder_allowed && *person == card.holder,
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(self
                .deny(
                    principal,
                    action,
                    subject_card(&card.id),
                    if holder_allowed {
                        "only the cardholder or the issuer may do this"
                    } else {
                        "only the issuer may do this"
                    },
                )
                .await)
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[tracing::instrument(skip_all, fields(action = %action, card = %card_id, key = %key))]
    async fn change_status(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        card_id: &CardId,
        action: &'static str,
        holder_allowed: bool,
        from: fn(&CardStatus) -> bool,
        to: CardStatus,
    ) -> Result<CardChange, BindingError> {
        let now = self.now();
        run_idempotent_recovering(
            &*self.ports.idempotency,
            &principal_scope(action, principal),
            key,
            &(card_id, principal),
            now,
            // After a crash the card may have its new status already: bring the
            // bindings in line again (idempotent) and answer with it.
            || async {
                let card = self.load_card(card_id).await?;
                if card.status != to {
                    return Ok(None);
                }
                let (changed, unsynced) = self.propagate(card_id, false).await?;
                Ok(Some(CardChange {
                    card,
                    new_card: None,
                    bindings_changed: changed,
                    passes_unsynced: unsynced,
                    funds_moved: None,
                }))
            },
            || async {
                let mut attempt = 0;
                let card = loop {
                    attempt += 1;
                    let mut card = self.load_card(card_id).await?;
                    self.authorize_card_op(principal, &card, action, holder_allowed)
                        .await?;
                    if !from(&card.status) {
                        return Err(BindingError::InvalidState {
                            operation: action.trim_start_matches("card.").replace('_', " "),
                            state: format!("the card is {}", card.status.code()),
                        });
                    }
                    card.status = to.clone();
                    match self.ports.cards.update(&card).await {
                        Ok(card) => break card,
                        Err(e) if is_conflict(&e) && attempt < CAS_ATTEMPTS => continue,
                        Err(e) => return Err(e.into()),
                    }
                };
                self.audit(
                    AuditRecord::new(
                        now,
                        principal.clone(),
                        action,
                        subject_card(card_id),
                        AuditOutcome::Succeeded,
                    )
                    .with("status", card.status.code()),
                )
                .await?;
                let (changed, unsynced) = self.propagate(card_id, false).await?;
                info!(card = %card_id, action, changed = changed.len(), "card status changed");
                Ok(CardChange {
                    card,
                    new_card: None,
                    bindings_changed: changed,
                    passes_unsynced: unsynced,
                    funds_moved: None,
                })
            },
        )
        .await
    }

    /// Replaces a card (补卡, issuer only): a new card with a new number; bindings and balance move to it.
    #[tracing::instrument(skip_all, fields(card = %card_id, key = %key))]
    pub async fn replace_card(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        card_id: &CardId,
        request: &ReplaceCard,
    ) -> Result<CardChange, BindingError> {
        let number = self.parse_card_number(&request.new_number)?;
        let card_digest = self.card_digest(&number).await?;
        let now = self.now();
        run_idempotent_recovering(
            &*self.ports.idempotency,
            &principal_scope("card.replace", principal),
            key,
            &(
                card_id,
                principal,
                &card_digest,
                &request.new_wallet_account,
            ),
            now,
            // After a crash the card may be replaced already by the card with
            // the new number: the balance move answers with its amount again
            // (idempotent on the key), the bindings are brought in line again.
            || async {
                let old = self.load_card(card_id).await?;
                let CardStatus::Replaced { by } = &old.status else {
                    return Ok(None);
                };
                let new = self.load_card(by).await?;
                if new.number != number {
                    return Ok(None);
                }
                let moved = self
                    .ports
                    .funds
                    .move_balance(&old.wallet_account, &request.new_wallet_account, key)
                    .await
                    .map_err(|e| e.retry_later("card funds"))?;
                let (changed, unsynced) = self.propagate(card_id, false).await?;
                Ok(Some(CardChange {
                    card: old,
                    new_card: Some(new),
                    bindings_changed: changed,
                    passes_unsynced: unsynced,
                    funds_moved: Some(moved),
                }))
            },
            || async {
                // Saga order: check, move the money (idempotent on the key), then swap the
                // cards atomically. A retry after any failure repeats the same steps safely.
                let first = self.load_card(card_id).await?;
                self.authorize_card_op(principal, &first, "card.replace", false)
                    .await?;
                if first.status.is_final() {
                    return Err(BindingError::InvalidState {
                        operation: "replace the card".into(),
                        state: format!("the card is {}", first.status.code()),
                    });
                }
                if self.ports.cards.by_number(&number).await?.is_some() {
                    return Err(BindingError::InvalidState {
                        operation: "replace the card".into(),
                        state: "a card with the new number exists".into(),
                    });
                }
                let moved = self
                    .ports
                    .funds
                    .move_balance(&first.wallet_account, &request.new_wallet_account, key)
                    .await
                    .map_err(|e| e.retry_later("card funds"))?;
                let mut attempt = 0;
                let (old, new) = loop {
                    attempt += 1;
                    let mut old = if attempt == 1 {
                        first.clone()
                    } else {
                        self.load_card(card_id).await?
                    };
                    if old.status.is_final() {
                        return Err(BindingError::InvalidState {
                            operation: "replace the card".into(),
                            state: format!("the card is {}", old.status.code()),
                        });
                    }
                    let new = Card {
                        id: CardId::generate(&*self.ports.ids),
                        number: number.clone(),
                        kind: old.kind.clone(),
                        holder: old.holder.clone(),
                        holder_index: old.holder_index.clone(),
                        wallet_account: request.new_wallet_account.clone(),
                        services: old.services.clone(),
                        platforms: old.platforms.clone(),
                        status: CardStatus::Active,
                        replaces: Some(old.id.clone()),
                        issued_at: now,
                        version: 0,
                    };
                    old.status = CardStatus::Replaced { by: new.id.clone() };
                    match self.ports.cards.replace(&old, &new).await {
                        Ok(old) => break (old, new),
                        Err(e) if is_conflict(&e) && attempt < CAS_ATTEMPTS => continue,
                        Err(e) => return Err(e.into()),
                    }
                };
                self.audit(
                    AuditRecord::new(
                        now,
                        principal.clone(),
                        "card.replace",
                        subject_card(card_id),
                        AuditOutcome::Succeeded,
                    )
                    .with("new_card", new.id.as_str())
                    .with("balance_moved", moved.to_string()),
                )
                .await?;
                let (changed, unsynced) = self.propagate(card_id, false).await?;
                info!(card = %card_id, new_card = %new.id, "card replaced");
                Ok(CardChange {
                    card: old,
                    new_card: Some(new),
                    bindings_changed: changed,
                    passes_unsynced: unsynced,
                    funds_moved: Some(moved),
                })
            },
        )
        .await
    }

    /// Cancels a card (注销, issuer only): bindings removed, balance refunded.
    #[tracing::instrument(skip_all, fields(card = %card_id, key = %key))]
    pub async fn cancel_card(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        card_id: &CardId,
    ) -> Result<CardChange, BindingError> {
        let now = self.now();
        run_idempotent_recovering(
            &*self.ports.idempotency,
            &principal_scope("card.cancel", principal),
            key,
            &(card_id, principal),
            now,
            // After a crash the card may be cancelled already: the refund answers
            // with its amount again (idempotent on the key), the bindings are
            // brought in line again.
            || async {
                let card = self.load_card(card_id).await?;
                if card.status != CardStatus::Cancelled {
                    return Ok(None);
                }
                let refunded = self
                    .ports
                    .funds
                    .refund_balance(&card.wallet_account, key)
                    .await
                    .map_err(|e| e.retry_later("card funds"))?;
                let (changed, unsynced) = self.propagate(card_id, false).await?;
                Ok(Some(CardChange {
                    card,
                    new_card: None,
                    bindings_changed: changed,
                    passes_unsynced: unsynced,
                    funds_moved: Some(refunded),
                }))
            },
            || async {
                // Saga order: refund (idempotent on the key; the ledger closes the account),
                // then mark the card cancelled. A retry after any failure repeats both safely.
                let first = self.load_card(card_id).await?;
                self.authorize_card_op(principal, &first, "card.cancel", false)
                    .await?;
                if first.status.is_final() {
                    return Err(BindingError::InvalidState {
                        operation: "cancel the card".into(),
                        state: format!("the card is {}", first.status.code()),
                    });
                }
                let refunded = self
                    .ports
                    .funds
                    .refund_balance(&first.wallet_account, key)
                    .await
                    .map_err(|e| e.retry_later("card funds"))?;
                let mut attempt = 0;
                let mut card = first;
                let card = loop {
                    attempt += 1;
                    if card.status.is_final() {
                        return Err(BindingError::InvalidState {
                            operation: "cancel the card".into(),
                            state: format!("the card is {}", card.status.code()),
                        });
                    }
                    card.status = CardStatus::Cancelled;
                    match self.ports.cards.update(&card).await {
                        Ok(card) => break card,
                        Err(e) if is_conflict(&e) && attempt < CAS_ATTEMPTS => {
                            card = self.load_card(card_id).await?;
                        }
                        Err(e) => return Err(e.into()),
                    }
                };
                self.audit(
                    AuditRecord::new(
                        now,
                        principal.clone(),
                        "card.cancel",
                        subject_card(card_id),
                        AuditOutcome::Succeeded,
                    )
                    .with("refunded", refunded.to_string()),
                )
                .await?;
                let (changed, unsynced) = self.propagate(card_id, false).await?;
                info!(card = %card_id, "card cancelled");
                Ok(CardChange {
                    card,
                    new_card: None,
                    bindings_changed: changed,
                    passes_unsynced: unsynced,
                    funds_moved: Some(refunded),
                })
            },
        )
        .await
    }

    /// Applies a card's current state to its bindings and passes again (issuer or system),
    /// e.g. after a card event whose propagation failed half-way.
    pub async fn reconcile_card(
        &self,
        principal: &Principal,
        card_id: &CardId,
    ) -> Result<CardChange, BindingError> {
        let card = self.load_card(card_id).await?;
        self.authorize_card_op(principal, &card, "card.reconcile", false)
            .await?;
        let (changed, unsynced) = self.propagate(card_id, true).await?;
        Ok(CardChange {
            card,
            new_card: None,
            bindings_changed: changed,
            passes_unsynced: unsynced,
            funds_moved: None,
        })
    }

    /// Applies a card's state to its settled bindings (and, with `include_removed`, makes
    /// sure removed bindings left no pass); returns (changed, unsynced).
    async fn propagate(
        &self,
        card: &CardId,
        include_removed: bool,
    ) -> Result<(Vec<BindingId>, Vec<BindingId>), BindingError> {
        let mut changed = Vec::new();
        let mut unsynced = Vec::new();
        for binding in self.ports.bindings.by_card(card).await? {
            let id = binding.id.clone();
            let (after, card, did_change) = match binding.state {
                BindingState::Active | BindingState::Suspended => {
                    self.follow_card(&id, Some(binding)).await?
                }
                BindingState::Removed if include_removed => {
                    let card = self.load_card(&binding.card).await?;
                    (binding, card, false)
                }
                _ => continue,
            };
            if did_change {
                changed.push(id.clone());
            }
            if !self.sync_pass(&after, &card).await {
                unsynced.push(id);
            }
        }
        Ok((changed, unsynced))
    }

    /// Brings a settled binding's state and card in line with its card (following
    /// replacements); returns the binding, its card, and whether it changed.
    ///
    /// `known` is a copy of the binding already at hand; a stale copy only costs a retry.
    async fn follow_card(
        &self,
        id: &BindingId,
        mut known: Option<Binding>,
    ) -> Result<(Binding, Card, bool), BindingError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut b = match known.take() {
                Some(b) => b,
                None => self.load_binding(id).await?,
            };
            let mut card = self.load_card(&b.card).await?;
            if !matches!(b.state, BindingState::Active | BindingState::Suspended) {
                return Ok((b, card, false));
            }
            let mut hops = 0;
            while let CardStatus::Replaced { by } = &card.status {
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
            let moved = card.id != b.card;
            let state = match card.status {
                CardStatus::Active => BindingState::Active,
                CardStatus::ReportedLost | CardStatus::Frozen => BindingState::Suspended,
                _ => BindingState::Removed,
            };
            if !moved && state == b.state {
                return Ok((b, card, false));
            }
            let now = self.now();
            // A binding that would move onto a card already bound on the same account
            // (bound again while this one was still pending) is superseded: removed.
            let superseded = moved
                && self
                    .ports
                    .bindings
                    .live_for(&card.id, &b.platform, &b.account)
                    .await?
                    .is_some_and(|other| other.id != b.id);
            let state = if superseded {
                b.removal = Some(RemovalReason::CardReplaced);
                b.consent.withdrawn_at = Some(now);
                BindingState::Removed
            } else {
                if moved {
                    b.card = card.id.clone();
                    b.pass_serial = PassSerial::derive(&b.id, &card.id);
                }
                if state == BindingState::Removed {
                    b.removal = Some(RemovalReason::CardCancelled);
                    b.consent.withdrawn_at = Some(now);
                }
                state
            };
            b.state = state;
            b.updated_at = now;
            match self.ports.bindings.update(&b).await {
                Ok(stored) => {
                    self.audit(
                        AuditRecord::new(
                            now,
                            Principal::System,
                            "binding.follow_card",
                            subject_binding(id),
                            AuditOutcome::Succeeded,
                        )
                        .with("state", stored.state.code())
                        .with("card", stored.card.as_str()),
                    )
                    .await?;
                    return Ok((stored, card, true));
                }
                Err(e) if is_conflict(&e) && attempt < CAS_ATTEMPTS => continue,
                Err(e) => return Err(e.into()),
            }
        }
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

    fn pass_for(&self, binding: &Binding, card: &Card, status: PassStatus) -> WalletPass {
        WalletPass {
            serial: binding.pass_serial.clone(),
            binding: binding.id.clone(),
            platform: binding.platform.clone(),
            account: binding.account.clone(),
            card_number_masked: card.number.masked(),
            kind: card.kind.clone(),
            services: card.services.clone(),
            status,
            balance: None,
        }
    }

    /// Makes the wallet match a settled binding (idempotent); true when the wallet confirmed.
    ///
    /// Passes the binding had for the cards this card replaced are removed too
    /// (their serials are derived), so a failed clean-up is finished by any later sync.
    async fn sync_pass(&self, binding: &Binding, card: &Card) -> bool {
        let wallet = &self.ports.wallet;
        let platform = &binding.platform;
        let mut earlier = card.replaces.clone();
        let mut hops = 0;
        while let Some(prev) = earlier {
            hops += 1;
            if hops > 16 {
                return false;
            }
            let old = PassSerial::derive(&binding.id, &prev);
            if self
                .with_retries(|| wallet.remove_pass(platform, &old, RemovalReason::CardReplaced))
                .await
                .is_err()
            {
                return false;
            }
            earlier = match self.ports.cards.get(&prev).await {
                Ok(Some(c)) => c.replaces,
                _ => return false,
            };
        }
        let status = match binding.state {
            BindingState::Pending => return true,
            BindingState::Removed => {
                let reason = binding.removal.unwrap_or(RemovalReason::UserUnbound);
                return self
                    .with_retries(|| wallet.remove_pass(platform, &binding.pass_serial, reason))
                    .await
                    .is_ok();
            }
            BindingState::Active => PassStatus::Active,
            BindingState::Suspended => PassStatus::Suspended,
        };
        let pass = self.pass_for(binding, card, status);
        if self.with_retries(|| wallet.add_pass(&pass)).await.is_err() {
            return false;
        }
        let update = PassUpdate::Status(status);
        self.with_retries(|| wallet.update_pass(platform, &binding.pass_serial, &update))
            .await
            .is_ok()
    }

    /// Pushes a binding's current state to its wallet pass again (after a failed propagation).
    pub async fn resync_pass(
        &self,
        principal: &Principal,
        binding: &BindingId,
    ) -> Result<Binding, BindingError> {
        let b = self.load_binding(binding).await?;
        self.authorize_binding(
            principal,
            &b,
            DelegationScope::ViewBalance,
            "binding.resync",
        )
        .await?;
        if b.state == BindingState::Pending {
            return Err(BindingError::Processing {
                binding: b.id.clone(),
            });
        }
        let card = self.load_card(&b.card).await?;
        if self.sync_pass(&b, &card).await {
            Ok(b)
        } else {
            Err(BindingError::RetryLater {
                reason: "platform wallet: the pass could not be updated".into(),
            })
        }
    }

    // ----- binding ---------------------------------------------------------

    async fn mismatch(
        &self,
        principal: &Principal,
        request: &BindRequest,
        step: &str,
    ) -> Result<BindOutcome, BindingError> {
        let now = self.now();
        self.ports
            .bindings
            .record_mismatch(&request.platform, &request.account, now)
            .await?;
        self.audit(
            AuditRecord::new(
                now,
                principal.clone(),
                "binding.bind",
                format!("account:{}:{}", request.platform, request.account),
                AuditOutcome::Failed,
            )
            .with("reason", "details_do_not_match")
            .with("step", step),
        )
        .await?;
        Ok(Err(Refusal::DetailsDoNotMatch))
    }

    async fn refuse(
        &self,
        principal: &Principal,
        request: &BindRequest,
        error: BindingError,
    ) -> Result<BindOutcome, BindingError> {
        let Some(refusal) = Refusal::of(&error) else {
            return Err(error);
        };
        let outcome = if matches!(refusal, Refusal::Denied { .. }) {
            AuditOutcome::Denied
        } else {
            AuditOutcome::Failed
        };
        self.audit(
            AuditRecord::new(
                self.now(),
                principal.clone(),
                "binding.bind",
                format!("account:{}:{}", request.platform, request.account),
                outcome,
            )
            .with("reason", error.to_string()),
        )
        .await?;
        Ok(Err(refusal))
    }

    /// Binds a card to a platform account: steps 1–6 of the flow, idempotent on `key`.
    ///
    /// Definitive refusals (details do not match, not verified, card not
    /// active, denied, already bound) are stored under the key and replayed;
    /// "processing", "retry later" and "too many attempts" are not, so a
    /// retry with the same key continues the same binding.
    #[tracing::instrument(skip_all, fields(key = %key, platform = %request.platform))]
    pub async fn bind(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        request: &BindRequest,
    ) -> Result<BindingReceipt, BindingError> {
        let number = self.parse_card_number(&request.card_number)?;
        check_consent(&request.consent)?;
        let id_index = self
            .ports
            .id_index
            .blind_index(&request.id_number)
            .await
            .map_err(|e| e.retry_later("id index"))?;
        let card_digest = self.card_digest(&number).await?;
        let fingerprint = BindFingerprint {
            principal,
            platform: &request.platform,
            account: &request.account,
            card_digest: &card_digest,
            id_index: &id_index,
            consent: &request.consent,
        };
        let outcome: BindOutcome = run_idempotent_recovering(
            &*self.ports.idempotency,
            &principal_scope("binding.bind", principal),
            key,
            &fingerprint,
            self.now(),
            // After a crash the binding may exist (pending, or confirmed by the
            // wallet whose answer was lost): the live binding of this card on
            // this account, consented by this principal, is this request's;
            // settling it finishes a pending one (the wallet's add is idempotent
            // by pass serial) and reads a confirmed one back.
            || async {
                let Some(card) = self.ports.cards.by_number(&number).await? else {
                    return Ok(None);
                };
                match self
                    .ports
                    .bindings
                    .live_for(&card.id, &request.platform, &request.account)
                    .await?
                {
                    Some(b) if b.consent.actor == *principal => {
                        self.settle(b, None).await.map(|r| Some(Ok(r)))
                    }
                    _ => Ok(None),
                }
            },
            || self.bind_steps(principal, request, &number),
        )
        .await?;
        match &outcome {
            Ok(r) => info!(binding = %r.binding, state = r.state.code(), "bound"),
            Err(refusal) => info!(?refusal, "bind refused"),
        }
        outcome.map_err(BindingError::from)
    }

    async fn bind_steps(
        &self,
        principal: &Principal,
        request: &BindRequest,
        number: &CardNumber,
    ) -> Result<BindOutcome, BindingError> {
        let now = self.now();
        // Rate limit on mismatched details, per account.
        // The window is (now - window, now]: a mismatch stops counting exactly one window later.
        // Instants are stored to the microsecond.
        let window_start = now
            .checked_sub_signed(self.config.mismatch_window - Duration::microseconds(1))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let recent = self
            .ports
            .bindings
            .mismatches_since(&request.platform, &request.account, window_start)
            .await?;
        let limit = self.config.mismatch_limit.max(1) as usize;
        if recent.len() >= limit {
            let oldest_that_counts = recent.get(recent.len() - limit).copied().unwrap_or(now);
            return Err(BindingError::TooManyAttempts {
                retry_after: oldest_that_counts
                    .checked_add_signed(self.config.mismatch_window)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC),
            });
        }

        // Step 1: real-name verified account; the ID number is the holder's own, or a delegate acts.
        let real = &self.ports.real_names;
        let Some(account_holder) = real
            .account_holder(&request.platform, &request.account)
            .await
            .map_err(|e| e.retry_later("real-name check"))?
        else {
            return self
                .refuse(principal, request, BindingError::NotRealNameVerified)
                .await;
        };
        // A closed account may not bind again (Alipay's "account closed" deletion reason).
        if self
            .ports
            .bindings
            .by_account(&request.platform, &request.account)
            .await?
            .iter()
            .any(|b| b.removal == Some(RemovalReason::AccountClosed))
        {
            return self
                .refuse(
                    principal,
                    request,
                    BindingError::Denied {
                        reason: "this platform account was closed and may not bind cards".into(),
                    },
                )
                .await;
        }
        let (cardholder, guardian) = match principal {
            Principal::Cardholder { person } => {
                if *person != account_holder {
                    return self
                        .refuse(
                            principal,
                            request,
                            BindingError::Denied {
                                reason: "the platform account belongs to someone else".into(),
                            },
                        )
                        .await;
                }
                (person.clone(), None)
            }
            Principal::Delegate {
                delegate,
                on_behalf_of,
                ..
            } => {
                let Some(grant) = self
                    .live_grant(principal, on_behalf_of, DelegationScope::Bind)
                    .await?
                else {
                    return self
                        .refuse(
                            principal,
                            request,
                            BindingError::Denied {
                                reason: "no live delegation allows binding for this cardholder"
                                    .into(),
                            },
                        )
                        .await;
                };
                if account_holder != *on_behalf_of && account_holder != *delegate {
                    return self
                        .refuse(
                            principal,
                            request,
                            BindingError::Denied {
                                reason: "the platform account is neither the cardholder's nor the delegate's"
                                    .into(),
                            },
                        )
                        .await;
                }
                let guardian =
                    (grant.relation == Relation::Guardian).then(|| grant.delegate.clone());
                (on_behalf_of.clone(), guardian)
            }
            _ => {
                return self
                    .refuse(
                        principal,
                        request,
                        BindingError::Denied {
                            reason: "only a cardholder or a delegate may bind".into(),
                        },
                    )
                    .await;
            }
        };
        if !real
            .id_number_is(&cardholder, &request.id_number)
            .await
            .map_err(|e| e.retry_later("real-name check"))?
        {
            return self.mismatch(principal, request, "id_number").await;
        }
        if guardian.is_none()
            && real
                .guardian_required(&cardholder)
                .await
                .map_err(|e| e.retry_later("real-name check"))?
        {
            return self
                .refuse(principal, request, BindingError::GuardianRequired)
                .await;
        }

        // Step 2: the card is active and the platform enabled for it.
        let Some(card) = self.ports.cards.by_number(number).await? else {
            return self.mismatch(principal, request, "card_number").await;
        };
        if let Some(existing) = self
            .ports
            .bindings
            .live_for(&card.id, &request.platform, &request.account)
            .await?
        {
            if existing.state == BindingState::Pending {
                return self.settle(existing, None).await.map(Ok);
            }
            return self
                .refuse(
                    principal,
                    request,
                    BindingError::AlreadyBound {
                        binding: existing.id,
                    },
                )
                .await;
        }
        if !card.status.is_active() {
            return self
                .refuse(
                    principal,
                    request,
                    BindingError::CardNotActive {
                        status: card.status.code().to_owned(),
                    },
                )
                .await;
        }
        if !card.platforms.contains(&request.platform) {
            return self
                .refuse(
                    principal,
                    request,
                    BindingError::PlatformNotEnabled {
                        platform: request.platform.clone(),
                    },
                )
                .await;
        }

        // Step 3: the issuer verifies card number + ID number.
        match self
            .ports
            .issuer
            .verify(number, &request.id_number)
            .await
            .map_err(|e| e.retry_later("card issuer"))?
        {
            IssuerVerdict::Matched { card: matched }
                if matched == card.id && card.holder == cardholder => {}
            _ => return self.mismatch(principal, request, "issuer").await,
        }

        // Step 4: consent is recorded with a pending binding.
        let binding_id = BindingId::generate(&*self.ports.ids);
        let binding = Binding {
            id: binding_id.clone(),
            card: card.id.clone(),
            holder: cardholder.clone(),
            platform: request.platform.clone(),
            account: request.account.clone(),
            state: BindingState::Pending,
            pass_serial: PassSerial::derive(&binding_id, &card.id),
            consent: ConsentRecord {
                recipient: request.platform.clone(),
                given: request.consent.clone(),
                given_at: now,
                actor: principal.clone(),
                guardian: guardian.clone(),
                withdrawn_at: None,
            },
            removal: None,
            created_at: now,
            updated_at: now,
            version: 0,
        };
        match self.ports.bindings.insert(&binding).await {
            Ok(()) => {}
            Err(e) if is_conflict(&e) => {
                // A concurrent bind of the same card on the same account won the insert.
                return match self
                    .ports
                    .bindings
                    .live_for(&card.id, &request.platform, &request.account)
                    .await?
                {
                    Some(b) if b.state == BindingState::Pending => {
                        self.settle(b, None).await.map(Ok)
                    }
                    Some(b) => {
                        self.refuse(
                            principal,
                            request,
                            BindingError::AlreadyBound { binding: b.id },
                        )
                        .await
                    }
                    None => Err(BindingError::RetryLater {
                        reason: "a concurrent binding changed state".into(),
                    }),
                };
            }
            Err(e) => return Err(e.into()),
        }
        let mut consent_audit = AuditRecord::new(
            now,
            principal.clone(),
            "binding.consent",
            subject_binding(&binding.id),
            AuditOutcome::Succeeded,
        )
        .with("recipient", request.platform.code())
        .with("purpose", request.consent.purpose.clone())
        .with("text_version", request.consent.text_version.clone())
        .with("channel", request.consent.channel.clone())
        .with(
            "data_categories",
            serde_json::to_string(&request.consent.data_categories).unwrap_or_default(),
        );
        if let Some(g) = &guardian {
            consent_audit = consent_audit.with("guardian", g.as_str());
        }
        self.audit(consent_audit).await?;

        // Steps 5 and 6.
        self.settle(binding, Some(card)).await.map(Ok)
    }

    /// Settles a pending binding (steps 5–6), or reports it still processing.
    ///
    /// Hosts call [`CardService::settle_pending`] from a job to finish bindings
    /// whose callers went away.
    async fn settle(
        &self,
        binding: Binding,
        fresh: Option<Card>,
    ) -> Result<BindingReceipt, BindingError> {
        {
            let mut settling = self.settling.lock().unwrap_or_else(|e| e.into_inner());
            if !settling.insert(binding.id.clone()) {
                return Err(BindingError::Processing {
                    binding: binding.id,
                });
            }
        }
        let id = binding.id.clone();
        let out = self.settle_exclusive(binding, fresh).await;
        self.settling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        out
    }

    async fn settle_exclusive(
        &self,
        binding: Binding,
        fresh: Option<Card>,
    ) -> Result<BindingReceipt, BindingError> {
        // Re-read a binding found pending: another call may have settled it meanwhile.
        // A binding this call just inserted (with the card it just read) is held under
        // the settle guard and is current.
        let (binding, card) = match fresh {
            Some(card) => (binding, card),
            None => {
                let binding = self.load_binding(&binding.id).await?;
                let card = self.load_card(&binding.card).await?;
                (binding, card)
            }
        };
        match binding.state {
            BindingState::Pending => {}
            BindingState::Active | BindingState::Suspended => {
                return Ok(receipt(&binding, &card));
            }
            BindingState::Removed => {
                return Err(BindingError::RetryLater {
                    reason: "the binding could not be completed and was undone; nothing is bound"
                        .into(),
                });
            }
        }
        let pass = self.pass_for(&binding, &card, PassStatus::Active);
        let wallet = &self.ports.wallet;
        let mut confirmed = false;
        let mut rejected = false;
        for _ in 0..self.config.wallet_attempts.max(1) {
            match wallet.add_pass(&pass).await {
                Ok(()) => {
                    confirmed = true;
                    break;
                }
                Err(PortError::Rejected(_)) => {
                    rejected = true;
                    break;
                }
                Err(_) => {
                    // Never guess: ask the wallet whether the pass is there.
                    if let Ok(Some(_)) = wallet.pass(&binding.platform, &binding.pass_serial).await
                    {
                        confirmed = true;
                        break;
                    }
                }
            }
        }
        if !confirmed {
            return self.compensate(binding, rejected).await;
        }

        // Step 6: activate.
        let mut attempt = 0;
        let mut b = binding;
        let active = loop {
            attempt += 1;
            if b.state != BindingState::Pending {
                break b;
            }
            b.state = BindingState::Active;
            b.updated_at = self.now();
            match self.ports.bindings.update(&b).await {
                Ok(stored) => break stored,
                Err(e) if is_conflict(&e) && attempt < CAS_ATTEMPTS => {
                    b = self.load_binding(&b.id).await?;
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.audit(
            AuditRecord::new(
                self.now(),
                active.consent.actor.clone(),
                "binding.bind",
                subject_binding(&active.id),
                AuditOutcome::Succeeded,
            )
            .with("card", active.card.as_str())
            .with("platform", active.platform.code())
            .with("pass_serial", active.pass_serial.as_str()),
        )
        .await?;
        // The card may have changed while the flow ran: follow it now (see crate docs).
        let id = active.id.clone();
        let (followed, card, changed) = self.follow_card(&id, Some(active)).await?;
        if changed {
            self.sync_pass(&followed, &card).await;
        }
        if followed.state == BindingState::Removed {
            if let Some(other) = self
                .ports
                .bindings
                .live_for(&card.id, &followed.platform, &followed.account)
                .await?
            {
                return Err(BindingError::AlreadyBound { binding: other.id });
            }
            return Err(BindingError::CardNotActive {
                status: card.status.code().to_owned(),
            });
        }
        Ok(receipt(&followed, &card))
    }

    async fn compensate(
        &self,
        binding: Binding,
        rejected: bool,
    ) -> Result<BindingReceipt, BindingError> {
        let wallet = &self.ports.wallet;
        if self
            .with_retries(|| {
                wallet.remove_pass(
                    &binding.platform,
                    &binding.pass_serial,
                    RemovalReason::BindingFailed,
                )
            })
            .await
            .is_err()
        {
            // Whether the pass exists is unknown: stay pending until it is settled.
            return Err(BindingError::Processing {
                binding: binding.id,
            });
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut b = self.load_binding(&binding.id).await?;
            if b.state != BindingState::Pending {
                break;
            }
            b.state = BindingState::Removed;
            b.removal = Some(RemovalReason::BindingFailed);
            b.consent.withdrawn_at = Some(self.now());
            b.updated_at = self.now();
            match self.ports.bindings.update(&b).await {
                Ok(_) => break,
                Err(e) if is_conflict(&e) && attempt < CAS_ATTEMPTS => continue,
                Err(e) => return Err(e.into()),
            }
        }
        self.audit(
            AuditRecord::new(
                self.now(),
                binding.consent.actor.clone(),
                "binding.bind",
                subject_binding(&binding.id),
                AuditOutcome::Failed,
            )
            .with("reason", "wallet_write_failed_compensated"),
        )
        .await?;
        Err(BindingError::RetryLater {
            reason: if rejected {
                "the platform wallet refused the pass; nothing was bound".into()
            } else {
                "the platform wallet could not be reached; nothing was bound".into()
            },
        })
    }

    /// Settles up to `limit` pending bindings (a host job); returns how many were settled either way.
    #[tracing::instrument(skip_all)]
    pub async fn settle_pending(
        &self,
        principal: &Principal,
        limit: usize,
    ) -> Result<usize, BindingError> {
        if !self.back_office(principal, &[OperatorRole::CardDesk]) {
            return Err(self
                .deny(
                    principal,
                    "binding.settle",
                    "binding:*".into(),
                    "only the system settles",
                )
                .await);
        }
        let mut settled = 0;
        for b in self.ports.bindings.pending(limit).await? {
            match self.settle(b, None).await {
                Ok(_)
                | Err(BindingError::RetryLater { .. })
                | Err(BindingError::AlreadyBound { .. })
                | Err(BindingError::CardNotActive { .. }) => settled += 1,
                Err(BindingError::Processing { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(settled)
    }

    async fn authorize_binding(
        &self,
        principal: &Principal,
        binding: &Binding,
        scope: DelegationScope,
        action: &str,
    ) -> Result<(), BindingError> {
        let allowed = match principal {
            Principal::Operator { .. } | Principal::System => self.back_office(
                principal,
                if matches!(
                    scope,
                    DelegationScope::ViewBalance | DelegationScope::ViewRecords
                ) {
                    &[OperatorRole::CardDesk, OperatorRole::Auditor]
                } else {
                    &[OperatorRole::CardDesk]
                },
            ),
            Principal::Platform { platform } => *platform == binding.platform,
            _ => self.acts_for(principal, &binding.holder, scope).await?,
        };
        if allowed {
            Ok(())
        } else {
            Err(self
                .deny(
                    principal,
                    action,
                    subject_binding(&binding.id),
                    "not the cardholder, a delegate with this right, or the binding's platform",
                )
                .await)
        }
    }

    /// A binding, for whoever may see it; pending bindings read as "processing" to the caller.
    pub async fn binding(
        &self,
        principal: &Principal,
        id: &BindingId,
    ) -> Result<Binding, BindingError> {
        let b = self.load_binding(id).await?;
        self.authorize_binding(principal, &b, DelegationScope::ViewRecords, "binding.view")
            .await?;
        self.audit_read(principal, "binding.view", subject_binding(id))
            .await?;
        Ok(b)
    }

    /// The bindings of a platform account ("my cards" in the platform app), for the
    /// account's real-name holder, the platform itself, or an operator.
    pub async fn bindings_of_account(
        &self,
        principal: &Principal,
        platform: &Platform,
        account: &PlatformAccountId,
    ) -> Result<Vec<Binding>, BindingError> {
        let allowed = match principal {
            Principal::Operator { .. } | Principal::System => {
                self.back_office(principal, &[OperatorRole::CardDesk, OperatorRole::Auditor])
            }
            Principal::Platform { platform: p } => p == platform,
            Principal::Cardholder { person } => {
                self.ports
                    .real_names
                    .account_holder(platform, account)
                    .await
                    .map_err(|e| e.retry_later("real-name check"))?
                    .as_ref()
                    == Some(person)
            }
            _ => false,
        };
        if !allowed {
            return Err(self
                .deny(
                    principal,
                    "binding.list",
                    format!("account:{platform}:{account}"),
                    "not the account's holder or platform",
                )
                .await);
        }
        self.audit_read(
            principal,
            "binding.list",
            format!("account:{platform}:{account}"),
        )
        .await?;
        Ok(self.ports.bindings.by_account(platform, account).await?)
    }

    /// The cards of a person, for the person, a delegate with a viewing scope, or an operator.
    pub async fn cards_of(
        &self,
        principal: &Principal,
        holder: &PersonId,
    ) -> Result<Vec<Card>, BindingError> {
        if !(self.back_office(principal, &[OperatorRole::CardDesk, OperatorRole::Auditor])
            || self
                .acts_for(principal, holder, DelegationScope::ViewBalance)
                .await?)
        {
            return Err(self
                .deny(
                    principal,
                    "card.list",
                    format!("person:{holder}"),
                    "not the cardholder",
                )
                .await);
        }
        self.audit_read(principal, "card.list", format!("person:{holder}"))
            .await?;
        Ok(self.ports.cards.by_holder(holder).await?)
    }

    /// Unbinds (withdraws consent): the pass is removed and the platform deletes its copy.
    #[tracing::instrument(skip_all, fields(key = %key, binding = %binding))]
    pub async fn unbind(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        binding: &BindingId,
        reason: RemovalReason,
    ) -> Result<Binding, BindingError> {
        let now = self.now();
        run_idempotent_recovering(
            &*self.ports.idempotency,
            &principal_scope("binding.unbind", principal),
            key,
            &(principal, binding, reason),
            now,
            // After a crash the binding may be removed already, for this reason.
            || async {
                let b = self.load_binding(binding).await?;
                self.authorize_binding(principal, &b, DelegationScope::Unbind, "binding.unbind")
                    .await?;
                Ok((b.state == BindingState::Removed && b.removal == Some(reason)).then_some(b))
            },
            || async {
                let b = self.load_binding(binding).await?;
                self.authorize_binding(principal, &b, DelegationScope::Unbind, "binding.unbind")
                    .await?;
                if matches!(principal, Principal::Platform { .. })
                    && !matches!(
                        reason,
                        RemovalReason::AccountClosed | RemovalReason::HandedToAnotherPerson
                    )
                {
                    return Err(self
                        .deny(
                            principal,
                            "binding.unbind",
                            subject_binding(binding),
                            "a platform unbinds only for a closed or handed-over account",
                        )
                        .await);
                }
                match b.state {
                    BindingState::Active | BindingState::Suspended => {}
                    BindingState::Pending => {
                        return Err(BindingError::Processing { binding: b.id });
                    }
                    BindingState::Removed => {
                        return Err(BindingError::InvalidState {
                            operation: "unbind".into(),
                            state: "the binding is already removed".into(),
                        });
                    }
                }
                let wallet = &self.ports.wallet;
                self.with_retries(|| wallet.remove_pass(&b.platform, &b.pass_serial, reason))
                    .await
                    .map_err(|e| e.retry_later("platform wallet"))?;
                let mut attempt = 0;
                let removed = loop {
                    attempt += 1;
                    let mut cur = self.load_binding(binding).await?;
                    if cur.state == BindingState::Removed {
                        break cur;
                    }
                    if cur.pass_serial != b.pass_serial {
                        // Moved to a replacement card meanwhile: remove that pass too.
                        self.with_retries(|| {
                            wallet.remove_pass(&cur.platform, &cur.pass_serial, reason)
                        })
                        .await
                        .map_err(|e| e.retry_later("platform wallet"))?;
                    }
                    cur.state = BindingState::Removed;
                    cur.removal = Some(reason);
                    cur.consent.withdrawn_at = Some(now);
                    cur.updated_at = now;
                    match self.ports.bindings.update(&cur).await {
                        Ok(b) => break b,
                        Err(e) if is_conflict(&e) && attempt < CAS_ATTEMPTS => continue,
                        Err(e) => return Err(e.into()),
                    }
                };
                self.audit(
                    AuditRecord::new(
                        now,
                        principal.clone(),
                        "binding.unbind",
                        subject_binding(binding),
                        AuditOutcome::Succeeded,
                    )
                    .with("reason", reason.code())
                    .with("pass_removed", "true")
                    .with("platform_copy_deleted", "true"),
                )
                .await?;
                info!(binding = %binding, reason = reason.code(), "unbound");
                Ok(removed)
            },
        )
        .await
    }

    /// The services usable through a binding (its card's services while the binding is active).
    pub async fn capabilities(
        &self,
        principal: &Principal,
        binding: &BindingId,
    ) -> Result<ServiceSet, BindingError> {
        let b = self.load_binding(binding).await?;
        self.authorize_binding(
            principal,
            &b,
            DelegationScope::ViewRecords,
            "binding.capabilities",
        )
        .await?;
        self.audit_read(principal, "binding.capabilities", subject_binding(binding))
            .await?;
        if b.state != BindingState::Active {
            return Ok(ServiceSet::new());
        }
        Ok(self.load_card(&b.card).await?.services)
    }

    /// Checks that a service works through a binding: a distinct error names a service not enabled.
    pub async fn ensure_service(
        &self,
        principal: &Principal,
        binding: &BindingId,
        service: &Service,
    ) -> Result<(), BindingError> {
        let b = self.load_binding(binding).await?;
        self.authorize_binding(principal, &b, DelegationScope::ViewRecords, "binding.use")
            .await?;
        let card = self.load_card(&b.card).await?;
        match b.state {
            BindingState::Active => {}
            BindingState::Pending => return Err(BindingError::Processing { binding: b.id }),
            BindingState::Suspended => {
                return Err(BindingError::CardNotActive {
                    status: card.status.code().to_owned(),
                });
            }
            BindingState::Removed => {
                return Err(BindingError::InvalidState {
                    operation: format!("use {service}"),
                    state: "the binding is removed".into(),
                });
            }
        }
        if !card.services.contains(service) {
            return Err(BindingError::ServiceNotEnabled {
                service: service.clone(),
            });
        }
        Ok(())
    }

    /// The wallet view of a binding: services and the balance last pushed, with its "as of" time.
    pub async fn wallet_view(
        &self,
        principal: &Principal,
        binding: &BindingId,
    ) -> Result<WalletView, BindingError> {
        let b = self.load_binding(binding).await?;
        self.authorize_binding(
            principal,
            &b,
            DelegationScope::ViewBalance,
            "binding.wallet_view",
        )
        .await?;
        self.audit_read(principal, "binding.wallet_view", subject_binding(binding))
            .await?;
        let card = self.load_card(&b.card).await?;
        let pass = self
            .ports
            .wallet
            .pass(&b.platform, &b.pass_serial)
            .await
            .map_err(|e| e.retry_later("platform wallet"))?;
        Ok(WalletView {
            binding: b.id,
            state: b.state,
            services: card.services,
            balance: pass.and_then(|p| p.balance),
        })
    }

    /// Pulls the authoritative balance and pushes it to the pass (the "refresh" button).
    pub async fn refresh_balance(
        &self,
        principal: &Principal,
        binding: &BindingId,
    ) -> Result<BalanceView, BindingError> {
        let b = self.load_binding(binding).await?;
        self.authorize_binding(
            principal,
            &b,
            DelegationScope::ViewBalance,
            "binding.refresh",
        )
        .await?;
        self.audit_read(principal, "binding.refresh", subject_binding(binding))
            .await?;
        let card = self.load_card(&b.card).await?;
        let view = self
            .ports
            .balances
            .balance(&card.wallet_account)
            .await
            .map_err(|e| e.retry_later("balance source"))?;
        if matches!(b.state, BindingState::Active | BindingState::Suspended) {
            let wallet = &self.ports.wallet;
            let update = PassUpdate::Balance(view);
            self.with_retries(|| wallet.update_pass(&b.platform, &b.pass_serial, &update))
                .await
                .map_err(|e| e.retry_later("platform wallet"))?;
        }
        Ok(view)
    }

    /// Pushes a new balance of a card to every settled binding's pass (called on every ledger change).
    /// Returns the bindings whose pass could not be updated (a refresh will pull it later).
    pub async fn push_balance(
        &self,
        principal: &Principal,
        card: &CardId,
        view: BalanceView,
    ) -> Result<Vec<BindingId>, BindingError> {
        if !self.back_office(principal, &[OperatorRole::CardDesk]) {
            return Err(self
                .deny(
                    principal,
                    "binding.push_balance",
                    subject_card(card),
                    "only the system pushes balances",
                )
                .await);
        }
        let wallet = &self.ports.wallet;
        let update = PassUpdate::Balance(view);
        let mut failed = Vec::new();
        for b in self.ports.bindings.by_card(card).await? {
            if !matches!(b.state, BindingState::Active | BindingState::Suspended) {
                continue;
            }
            if self
                .with_retries(|| wallet.update_pass(&b.platform, &b.pass_serial, &update))
                .await
                .is_err()
            {
                failed.push(b.id);
            }
        }
        Ok(failed)
    }

    // ----- delegation ------------------------------------------------------

    /// Grants a delegation: by the cardholder, or by a guardian for a minor.
    #[tracing::instrument(skip_all, fields(key = %key))]
    pub async fn grant_delegation(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        request: &GrantDelegation,
    ) -> Result<Delegation, BindingError> {
        let now = self.now();
        let subject = format!("person:{}", request.cardholder);
        let Principal::Cardholder { person: grantor } = principal else {
            return Err(self
                .deny(
                    principal,
                    "delegation.grant",
                    subject,
                    "only a cardholder or guardian grants",
                )
                .await);
        };
        let real = &self.ports.real_names;
        let grantor_is_guardian = real
            .is_guardian_of(grantor, &request.cardholder)
            .await
            .map_err(|e| e.retry_later("real-name check"))?;
        if *grantor != request.cardholder && !grantor_is_guardian {
            return Err(self
                .deny(
                    principal,
                    "delegation.grant",
                    subject,
                    "only the cardholder or their guardian grants",
                )
                .await);
        }
        if request.relation == Relation::Guardian
            && !real
                .is_guardian_of(&request.delegate, &request.cardholder)
                .await
                .map_err(|e| e.retry_later("real-name check"))?
        {
            return Err(self
                .deny(
                    principal,
                    "delegation.grant",
                    subject,
                    "the delegate is not the cardholder's guardian",
                )
                .await);
        }
        if request.scopes.is_empty() {
            return Err(BindingError::InvalidState {
                operation: "grant a delegation".into(),
                state: "no scopes were chosen".into(),
            });
        }
        let latest = now
            .checked_add_signed(self.config.max_delegation)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        if request.expires_at <= now || request.expires_at > latest {
            return Err(BindingError::InvalidState {
                operation: "grant a delegation".into(),
                state: format!(
                    "the expiry must be in the future and within {} days",
                    self.config.max_delegation.num_days()
                ),
            });
        }
        run_idempotent_recovering(
            &*self.ports.idempotency,
            &principal_scope("delegation.grant", principal),
            key,
            &(principal, request),
            now,
            // After a crash the grant may be stored already: the newest grant by
            // this grantor with exactly these terms is this request's (a second
            // copy would survive the revocation of the first).
            || async {
                let grants = self
                    .ports
                    .delegations
                    .for_cardholder(&request.cardholder)
                    .await?;
                Ok(grants.into_iter().rev().find(|g| {
                    g.granted_by == *grantor
                        && g.delegate == request.delegate
                        && g.relation == request.relation
                        && g.scopes == request.scopes
                        && g.expires_at == request.expires_at
                }))
            },
            || async {
                let grant = Delegation {
                    id: DelegationId::generate(&*self.ports.ids),
                    cardholder: request.cardholder.clone(),
                    delegate: request.delegate.clone(),
                    relation: request.relation,
                    scopes: request.scopes,
                    granted_by: grantor.clone(),
                    granted_at: now,
                    expires_at: request.expires_at,
                    revoked_at: None,
                };
                self.ports.delegations.insert(&grant).await?;
                self.audit(
                    AuditRecord::new(
                        now,
                        principal.clone(),
                        "delegation.grant",
                        format!("delegation:{}", grant.id),
                        AuditOutcome::Succeeded,
                    )
                    .with("cardholder", grant.cardholder.as_str())
                    .with("delegate", grant.delegate.as_str())
                    .with(
                        "scopes",
                        serde_json::to_string(&grant.scopes).unwrap_or_default(),
                    ),
                )
                .await?;
                Ok::<_, BindingError>(grant)
            },
        )
        .await
    }

    /// Revokes a delegation: by the grantor, the cardholder, the delegate or an operator.
    #[tracing::instrument(skip_all, fields(delegation = %id, key = %key))]
    pub async fn revoke_delegation(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        id: &DelegationId,
    ) -> Result<Delegation, BindingError> {
        let now = self.now();
        run_idempotent(
            &*self.ports.idempotency,
            &principal_scope("delegation.revoke", principal),
            key,
            &(principal, id),
            now,
            || async {
                let grant = self.ports.delegations.get(id).await?.ok_or_else(|| {
                    BindingError::NotFound {
                        what: format!("delegation {id}"),
                    }
                })?;
                let allowed = match principal {
                    Principal::Operator { .. } | Principal::System => {
                        self.back_office(principal, &[OperatorRole::CardDesk])
                    }
                    Principal::Cardholder { person } => {
                        *person == grant.granted_by
                            || *person == grant.cardholder
                            || *person == grant.delegate
                    }
                    _ => false,
                };
                if !allowed {
                    return Err(self
                        .deny(
                            principal,
                            "delegation.revoke",
                            format!("delegation:{id}"),
                            "only the grantor, cardholder, delegate or issuer revokes",
                        )
                        .await);
                }
                let revoked = self
                    .ports
                    .delegations
                    .revoke(id, now)
                    .await?
                    .ok_or_else(|| BindingError::NotFound {
                        what: format!("delegation {id}"),
                    })?;
                self.audit(AuditRecord::new(
                    now,
                    principal.clone(),
                    "delegation.revoke",
                    format!("delegation:{id}"),
                    AuditOutcome::Succeeded,
                ))
                .await?;
                Ok(revoked)
            },
        )
        .await
    }

    /// The delegations of a cardholder (for the cardholder, a guardian, or an operator).
    pub async fn delegations(
        &self,
        principal: &Principal,
        cardholder: &PersonId,
    ) -> Result<Vec<Delegation>, BindingError> {
        let allowed = match principal {
            Principal::Operator { .. } | Principal::System => {
                self.back_office(principal, &[OperatorRole::CardDesk, OperatorRole::Auditor])
            }
            Principal::Cardholder { person } => {
                person == cardholder
                    || self
                        .ports
                        .real_names
                        .is_guardian_of(person, cardholder)
                        .await
                        .map_err(|e| e.retry_later("real-name check"))?
            }
            _ => false,
        };
        if !allowed {
            return Err(self
                .deny(
                    principal,
                    "delegation.list",
                    format!("person:{cardholder}"),
                    "not the cardholder",
                )
                .await);
        }
        self.audit_read(principal, "delegation.list", format!("person:{cardholder}"))
            .await?;
        Ok(self.ports.delegations.for_cardholder(cardholder).await?)
    }

    /// Checks that the principal may act for `person` with `scope` (for other crates' operations via the facade);
    /// a denial is audited.
    pub async fn authorize(
        &self,
        principal: &Principal,
        person: &PersonId,
        scope: DelegationScope,
        action: &str,
    ) -> Result<(), BindingError> {
        if self.acts_for(principal, person, scope).await? {
            Ok(())
        } else {
            Err(self
                .deny(
                    principal,
                    action,
                    format!("person:{person}"),
                    "outside any live grant",
                )
                .await)
        }
    }
}

/// Separate, informed consent names its purpose, data, text version and channel.
fn check_consent(consent: &ConsentInput) -> Result<(), BindingError> {
    let missing = if consent.purpose.trim().is_empty() {
        "purpose"
    } else if consent.data_categories.is_empty() {
        "data categories"
    } else if consent.text_version.trim().is_empty() {
        "consent text version"
    } else if consent.channel.trim().is_empty() {
        "channel"
    } else {
        return Ok(());
    };
    Err(BindingError::ConsentIncomplete {
        missing: missing.to_owned(),
    })
}

fn receipt(binding: &Binding, card: &Card) -> BindingReceipt {
    BindingReceipt {
        binding: binding.id.clone(),
        state: binding.state,
        card: card.id.clone(),
        pass_serial: binding.pass_serial.clone(),
        services: card.services.clone(),
    }
}
