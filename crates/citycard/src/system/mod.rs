//! `CityCard`: one handle on the whole card system, and its builder.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::Duration;
use citycard_binding::{
    BindingConfig, BindingStore, CardChangeStore, CardIssuer, CardPorts, CardService, CardStore,
    DelegationStore, MemoryCardRegistry, PlatformWallet, RegistryCardIssuer, SimulatedWallet,
    StoredGrants,
};
use citycard_core::{
    AuditLog, Clock, GrantVerifier, IdGenerator, IdempotencyStore, OperatorRoles, SystemClock,
    TimeOrderedIdGenerator,
};
use citycard_healthcare::{
    AppointmentService, AppointmentStore, BillingService, BookingPolicy, MemoryAppointmentStore,
    MemorySettlementStore, MemorySocialInsuranceRecords, SettlementEngine, SettlementStore,
    SocialInsuranceRecords, SocialInsuranceService,
};
use citycard_identity::{
    IdentityConfig, IdentityPorts, IdentityService, KeyProvider, MemoryKeyProvider,
    MemoryPersonStore, MemoryPlatformAccountStore, PersonStore, PlatformAccountStore,
    RealNameVerifier, SimulatedVerifier, Vault,
};
use citycard_ledger::{Ledger, LedgerStore, MemoryLedgerStore, WalletLimits};
use citycard_sqlite::Database;
use citycard_transit::{
    Algorithm, FareEngine, Issuer, MemoryTransitStore, Settlement, TransitStore,
};

use citycard_binding::{
    Card, CardChange, CardId, ChunkDecision, IssueCard, IssueDecision, IssueOutcome, ReplaceCard,
    ServiceSet,
};
use citycard_core::{
    AuditOutcome, AuditRecord, IdempotencyKey, OperatorRole, PersonId, Principal, Sensitive,
};
use serde::{Deserialize, Serialize};

use crate::accounts::Accounts;
use crate::error::CityCardError;
use crate::glue::money::{
    LedgerBalances, LedgerCardFunds, LedgerFarePayments, LedgerMedicalPayments, wallet_of,
    wallet_ref,
};
use crate::glue::people::{Guardianships, IdentityRealNames, Patients, VaultIdIndex};
use crate::riders::CardRiders;
use crate::unit::{PortsUnitOfWork, PostgresUnitOfWork, SqliteUnitOfWork, UnitOfWork};
use crate::wallet::WalletService;

mod builder;

pub use builder::{CityCardBuilder, Storage};

/// A card to issue through [`CityCard::issue_card`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCitizenCard {
    /// The printed card number.
    pub number: String,
    /// The kind code (`standard`, `elderly`, `student`, ...).
    pub kind: String,
    /// The enrolled cardholder.
    pub holder: PersonId,
    /// The cardholder's ID number (kept by the registry only as a blind index).
    pub id_number: Sensitive<String>,
    /// Services enabled (the card rules' defaults when `None`).
    pub services: Option<ServiceSet>,
}

impl std::fmt::Debug for NewCitizenCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCitizenCard")
            .field("number", &citycard_core::mask_card_number(&self.number))
            .field("kind", &self.kind)
            .field("holder", &self.holder)
            .field("id_number", &self.id_number)
            .field("services", &self.services)
            .finish()
    }
}

/// How many cards [`CityCard::issue_cards`] commits per write transaction.
pub const ISSUE_CHUNK: usize = 4_096;

/// What [`CityCard::issue_cards`] did with each card of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueReport {
    /// One outcome per card sent, in order.
    pub outcomes: Vec<IssueOutcome>,
}

impl IssueReport {
    /// The issued cards: (position in the batch, card id).
    pub fn issued(&self) -> impl Iterator<Item = (usize, &CardId)> {
        self.outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, o)| match o {
                IssueOutcome::Issued { card } => Some((i, card)),
                IssueOutcome::Refused { .. } => None,
            })
    }

    /// The refused rows: (position in the batch, reason).
    pub fn refused(&self) -> impl Iterator<Item = (usize, &str)> {
        self.outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, o)| match o {
                IssueOutcome::Refused { reason } => Some((i, reason.as_str())),
                IssueOutcome::Issued { .. } => None,
            })
    }
}

/// Every store, as ports.
#[derive(Clone)]
pub(crate) struct Stores {
    pub(crate) db: Option<Database>,
    /// The PostgreSQL database and the ledger's store handle (the unit of
    /// work writes ledger batches through the handle the ledger opened on).
    pub(crate) pg: Option<(
        citycard_postgres::Database,
        Arc<citycard_postgres::ledger::PgLedgerStore>,
    )>,
    pub(crate) audit: Arc<dyn AuditLog>,
    pub(crate) idempotency: Arc<dyn IdempotencyStore>,
    pub(crate) outbox: Arc<dyn citycard_core::Outbox>,
    pub(crate) persons: Arc<dyn PersonStore>,
    pub(crate) platform_accounts: Arc<dyn PlatformAccountStore>,
    pub(crate) cards: Arc<dyn CardStore>,
    pub(crate) bindings: Arc<dyn BindingStore>,
    pub(crate) delegations: Arc<dyn DelegationStore>,
    pub(crate) card_changes: Arc<dyn CardChangeStore>,
    pub(crate) ledger: Arc<dyn LedgerStore>,
    pub(crate) transit: Arc<dyn TransitStore>,
    pub(crate) appointments: Arc<dyn AppointmentStore>,
    pub(crate) settlements: Arc<dyn SettlementStore>,
    pub(crate) social: Arc<dyn SocialInsuranceRecords>,
}

impl Stores {
    fn in_memory() -> Self {
        // One core for every memory store, so their commits' audit records
        // and idempotency outcomes land where the facade reads them.
        let core = citycard_core::MemoryCore::new();
        let registry = MemoryCardRegistry::with_core(core.clone());
        Self {
            db: None,
            pg: None,
            audit: core.audit(),
            idempotency: core.idempotency(),
            outbox: core.outbox(),
            persons: Arc::new(MemoryPersonStore::with_core(core.clone())),
            platform_accounts: Arc::new(MemoryPlatformAccountStore::new()),
            cards: Arc::new(registry.cards()),
            bindings: Arc::new(registry.bindings()),
            delegations: Arc::new(registry.delegations()),
            card_changes: Arc::new(registry),
            ledger: Arc::new(MemoryLedgerStore::with_core(core.clone())),
            transit: Arc::new(MemoryTransitStore::with_core(core.clone())),
            appointments: Arc::new(MemoryAppointmentStore::with_core(core.clone())),
            settlements: Arc::new(MemorySettlementStore::with_core(core.clone())),
            social: Arc::new(MemorySocialInsuranceRecords::new()),
        }
    }

    fn sqlite(db: Database) -> Self {
        use citycard_sqlite::{binding, healthcare, identity, ledger, transit};
        Self {
            // Concurrent reads' audit records share one synced commit.
            audit: crate::group_audit::GroupCommitAuditLog::new(
                citycard_sqlite::SqliteAuditLog::new(db.clone()),
            ),
            idempotency: Arc::new(citycard_sqlite::SqliteIdempotencyStore::new(db.clone())),
            outbox: Arc::new(citycard_sqlite::outbox::SqliteOutbox::new(db.clone())),
            persons: Arc::new(identity::SqlitePersonStore::new(db.clone())),
            platform_accounts: Arc::new(identity::SqlitePlatformAccountStore::new(db.clone())),
            cards: Arc::new(binding::SqliteCardStore::new(db.clone())),
            bindings: Arc::new(binding::SqliteBindingStore::new(db.clone())),
            delegations: Arc::new(binding::SqliteDelegationStore::new(db.clone())),
            card_changes: Arc::new(binding::SqliteCardChangeStore::new(db.clone())),
            ledger: Arc::new(ledger::SqliteLedgerStore::new(db.clone())),
            transit: Arc::new(transit::SqliteTransitStore::new(db.clone())),
            appointments: Arc::new(healthcare::SqliteAppointmentStore::new(db.clone())),
            settlements: Arc::new(healthcare::SqliteSettlementStore::new(db.clone())),
            social: Arc::new(healthcare::SqliteSocialInsuranceRecords::new(db.clone())),
            db: Some(db),
            pg: None,
        }
    }

    fn postgres(db: citycard_postgres::Database) -> Self {
        use citycard_postgres::{binding, healthcare, identity, ledger, transit};
        let ledger_store = Arc::new(ledger::PgLedgerStore::new(db.clone()));
        Self {
            db: None,
            audit: Arc::new(citycard_postgres::PgAuditLog::new(db.clone())),
            idempotency: Arc::new(citycard_postgres::PgIdempotencyStore::new(db.clone())),
            outbox: Arc::new(citycard_postgres::outbox::PgOutbox::new(db.clone())),
            persons: Arc::new(identity::PgPersonStore::new(db.clone())),
            platform_accounts: Arc::new(identity::PgPlatformAccountStore::new(db.clone())),
            cards: Arc::new(binding::PgCardStore::new(db.clone())),
            bindings: Arc::new(binding::PgBindingStore::new(db.clone())),
            delegations: Arc::new(binding::PgDelegationStore::new(db.clone())),
            card_changes: Arc::new(binding::PgCardChangeStore::new(db.clone())),
            ledger: ledger_store.clone(),
            transit: Arc::new(transit::PgTransitStore::new(db.clone())),
            appointments: Arc::new(healthcare::PgAppointmentStore::new(db.clone())),
            settlements: Arc::new(healthcare::PgSettlementStore::new(db.clone())),
            social: Arc::new(healthcare::PgSocialInsuranceRecords::new(db.clone())),
            pg: Some((db, ledger_store)),
        }
    }
}

/// The ride-code issuer id of a city built without [`CityCardBuilder::ride_code_issuer`].
pub const DEFAULT_RIDE_CODE_ISSUER_ID: u16 = 1;

/// Transit on the card: the fare engine, day settlement and the ride-code issuer.
pub struct Transit {
    engine: Arc<FareEngine>,
    settlement: Settlement,
    issuer: Mutex<Issuer>,
    store: Arc<dyn TransitStore>,
}

impl Transit {
    /// The fare engine (Hangzhou's rules).
    pub fn fares(&self) -> &FareEngine {
        &self.engine
    }

    /// Day settlement of taps, charging fares to card wallets on the ledger.
    ///
    /// Each chunk of cards is one ledger batch committed with its trips,
    /// arrears and denials in one write transaction; rider profiles (card
    /// kind, age) are looked up from the card registry chunk by chunk.
    pub fn settlement(&self) -> &Settlement {
        &self.settlement
    }

    /// Certifies a phone's ride-code key for a card and a period with the
    /// issuer's current key, and records the credential so that readers'
    /// deny lists can name its reference ([`Transit::reader_deny_list`]).
    pub async fn certify(
        &self,
        user_public_key: &[u8],
        card: citycard_transit::CardRef,
        valid_from: chrono::DateTime<chrono::Utc>,
        valid_until: chrono::DateTime<chrono::Utc>,
    ) -> Result<citycard_transit::Credential, CityCardError> {
        let (credential, issued) = {
            let issuer = self.issuer();
            let credential = issuer.certify(user_public_key, card, valid_from, valid_until)?;
            let (key_id, reference) =
                credential
                    .key_id()
                    .zip(credential.reference())
                    .ok_or_else(|| {
                        CityCardError::Invalid("the issuer made an unreadable credential".into())
                    })?;
            let issued = citycard_transit::IssuedCredential {
                card,
                key_id,
                reference,
                valid_from,
                valid_until,
            };
            (credential, issued)
        };
        self.store.record_credential(&issued).await?;
        Ok(credential)
    }

    /// The deny list for readers: every denied card's live credentials (as
    /// recorded by [`Transit::certify`]) under their keyed references.
    pub async fn reader_deny_list(
        &self,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<citycard_transit::DenyEntry>, CityCardError> {
        let deny = self.store.deny_list().await?;
        let live = self.store.live_credentials(at).await?;
        Ok(citycard_transit::reader_deny_list(&deny, &live))
    }

    /// Maps the keyed card reference of every ride-code tap back to its card
    /// (readers see only the reference); call it on uploaded taps before
    /// settlement. Returns how many ride-code
    /// taps carry another issuer's key (left unchanged, they match no card).
    pub fn resolve_code_taps(&self, taps: &mut [citycard_transit::Tap]) -> u64 {
        self.issuer().resolve_taps(taps)
    }

    /// The ride-code issuer (keys, credentials).
    pub fn issuer(&self) -> std::sync::MutexGuard<'_, Issuer> {
        self.issuer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Healthcare on the card: appointments, outpatient billing and social insurance.
pub struct Healthcare {
    appointments: AppointmentService,
    billing: BillingService,
    social: SocialInsuranceService,
}

impl Healthcare {
    /// Appointment booking.
    pub fn appointments(&self) -> &AppointmentService {
        &self.appointments
    }

    /// Outpatient bills and their insurance settlement.
    pub fn billing(&self) -> &BillingService {
        &self.billing
    }

    /// Social insurance records and summaries.
    pub fn social_insurance(&self) -> &SocialInsuranceService {
        &self.social
    }
}

/// The whole card system behind one handle.
pub struct CityCard {
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    pub(crate) stores: Stores,
    identity: Arc<IdentityService>,
    cards: Arc<CardService>,
    ledger: Arc<Ledger>,
    accounts: Accounts,
    issues: crate::issue::IssueDesk,
    unit: Arc<dyn UnitOfWork>,
    wallet: WalletService,
    transit: Transit,
    healthcare: Healthcare,
    guardians: Arc<Guardianships>,
    roles: Arc<OperatorRoles>,
    grants: Arc<dyn GrantVerifier>,
    card_issuer: Arc<dyn CardIssuer>,
    simulated_verifier: Option<Arc<SimulatedVerifier>>,
    simulated_wallet: Option<Arc<SimulatedWallet>>,
}

impl std::fmt::Debug for CityCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CityCard")
            .field("db", &self.stores.db)
            .finish_non_exhaustive()
    }
}

impl CityCard {
    /// The unit of work the services commit through (a service that adds
    /// its own records to an operation, the platform API's idempotency
    /// records, commits with it).
    pub fn unit_of_work(&self) -> &Arc<dyn UnitOfWork> {
        &self.unit
    }

    /// The transactional outbox: events committed with their changes, for a
    /// relay to publish and deliver.
    pub fn outbox(&self) -> &Arc<dyn citycard_core::Outbox> {
        &self.stores.outbox
    }

    /// Starts building a card system.
    pub fn builder() -> CityCardBuilder {
        CityCardBuilder::default()
    }

    /// Identity: persons, platform accounts, real-name verification.
    pub fn identity(&self) -> &IdentityService {
        &self.identity
    }

    /// Cards and everything that hangs on them: their lifecycle (the
    /// issuer's side), bindings to platform accounts, consent and delegation
    /// (one service: cards and their bindings change together).
    pub fn cards(&self) -> &CardService {
        &self.cards
    }

    /// The e-wallet: top-up, balance, statement, refund.
    pub fn wallet(&self) -> &WalletService {
        &self.wallet
    }

    /// The ledger itself. It authorises per account: only the system and
    /// finance operators write; a platform reads only its own clearing
    /// account and tops up through [`CityCard::wallet`].
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The system's ledger accounts.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// Transit: fares, settlement, ride codes.
    pub fn transit(&self) -> &Transit {
        &self.transit
    }

    /// Healthcare: appointments, billing, social insurance.
    pub fn healthcare(&self) -> &Healthcare {
        &self.healthcare
    }

    /// The issuer's check that a card number and an ID number belong
    /// together (the port a platform calls; answers never tell which was wrong).
    pub fn card_issuer(&self) -> &Arc<dyn CardIssuer> {
        &self.card_issuer
    }

    /// Operators' roles: grant and revoke them here (an operator starts with none).
    pub fn operator_roles(&self) -> &Arc<OperatorRoles> {
        &self.roles
    }

    /// The one check of a delegate against the stored grants.
    pub fn grants(&self) -> &Arc<dyn GrantVerifier> {
        &self.grants
    }

    /// Refuses `principal` unless it is the system or an operator holding
    /// one of `roles`; a refusal is audited.
    async fn require_role(
        &self,
        principal: &Principal,
        roles: &[OperatorRole],
        action: &'static str,
        subject: String,
    ) -> Result<(), CityCardError> {
        if self.roles.allows(principal, roles) {
            return Ok(());
        }
        self.stores
            .audit
            .append(
                AuditRecord::new(
                    self.clock.now(),
                    principal.clone(),
                    action,
                    subject,
                    AuditOutcome::Denied,
                )
                .with("reason", "no operator role for this"),
            )
            .await?;
        Err(CityCardError::Denied {
            actor: principal.to_string(),
            action,
        })
    }

    /// Registered guardianships (for minors' consent).
    pub fn guardianships(&self) -> &Guardianships {
        &self.guardians
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The id generator.
    pub fn ids(&self) -> &Arc<dyn IdGenerator> {
        &self.ids
    }

    /// The audit log.
    pub fn audit(&self) -> &Arc<dyn AuditLog> {
        &self.stores.audit
    }

    /// The social insurance records store.
    pub fn social_insurance_records(&self) -> &Arc<dyn SocialInsuranceRecords> {
        &self.stores.social
    }

    /// The appointment store (hospitals publish schedules into it).
    pub fn appointment_store(&self) -> &Arc<dyn AppointmentStore> {
        &self.stores.appointments
    }

    /// The transit store (settled trips, arrears, the deny list).
    pub fn transit_store(&self) -> &Arc<dyn TransitStore> {
        &self.stores.transit
    }

    /// The idempotency store every operation records its outcome in (a
    /// host's own idempotent requests, such as the HTTP service's, use it
    /// under their own scopes).
    pub fn idempotency_store(&self) -> &Arc<dyn IdempotencyStore> {
        &self.stores.idempotency
    }

    /// The database, when on SQLite.
    pub fn database(&self) -> Option<&Database> {
        self.stores.db.as_ref()
    }

    /// Issues a citizen card to an enrolled person: the card's capped
    /// e-wallet and the person's medical accounts in the ledger, the card in
    /// the registry, its audit record and the key's outcome, in one write
    /// transaction. Concurrent issues share one transaction (group commit);
    /// each keeps its own outcome, and one refused (its number taken) does
    /// not refuse the others. The system and card-desk operators only
    /// (checked before anything is decided); idempotent with `key`.
    #[tracing::instrument(name = "citycard.issue_card", skip_all, fields(key = %key, kind = %request.kind))]
    pub async fn issue_card(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        request: &NewCitizenCard,
    ) -> Result<Card, CityCardError> {
        self.require_role(
            principal,
            &[OperatorRole::CardDesk],
            "card.issue",
            format!("person:{}", request.holder),
        )
        .await?;
        let number = self.cards.parse_card_number(&request.number)?;
        let issue = Self::issue_request(request, Accounts::wallet(&number));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let plan = match self.cards.decide_issue(principal, key, &issue).await? {
                IssueDecision::Replayed(card) => return Ok(*card),
                IssueDecision::Decided(plan) => *plan,
            };
            let accounts = self
                .accounts
                .card_accounts(&plan.card.number, &plan.card.holder, &plan.card.kind)
                .to_vec();
            let committed = self
                .issues
                .commit_queued(crate::issue::PlanWithAccounts {
                    changes: plan.changes,
                    core: plan.core,
                    accounts,
                })
                .await;
            match committed {
                Ok(()) => return Ok(plan.card),
                Err(e) if e.is_conflict() && attempt < citycard_binding::CAS_ATTEMPTS => continue,
                // A wallet keyed by this number under another holder: a
                // concurrent issue of the number, which deciding again sees.
                Err(crate::issue::PlanRefused::Account(..)) if attempt == 1 => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Issues a batch of cards under one key (migrating an existing card
    /// base): the system and card-desk operators only, audited. The batch
    /// goes in chunks of [`ISSUE_CHUNK`] cards (see
    /// [`CityCardBuilder::issue_chunk_cards`]), each one write transaction
    /// with the cards' ledger accounts, audit records (one per card and one
    /// per chunk) and the chunk's outcome. A row that cannot be issued (its
    /// number or kind is invalid, its number is taken or repeats an earlier
    /// row) is refused in the report with its reason and the others are
    /// issued. A retry with the same key replays the chunks that committed
    /// and issues the rest, so a crash between chunks resumes; the same key
    /// with another batch is refused. An account the ledger refuses stops
    /// the batch with the error (the chunks before it stay issued).
    #[tracing::instrument(name = "citycard.issue_cards", skip_all, fields(key = %key, cards = cards.len()))]
    pub async fn issue_cards(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        cards: &[NewCitizenCard],
    ) -> Result<IssueReport, CityCardError> {
        self.require_role(
            principal,
            &[OperatorRole::CardDesk],
            "card.issue_batch",
            format!("batch:{key}"),
        )
        .await?;
        let requests: Vec<IssueCard> = cards
            .iter()
            .map(|c| {
                let wallet = match self.cards.parse_card_number(&c.number) {
                    Ok(number) => Accounts::wallet(&number),
                    // Refused by the card service; any well-formed reference will do.
                    Err(_) => crate::accounts::account_id(&format!("wallet:{}", c.number)),
                };
                Self::issue_request(c, wallet)
            })
            .collect();
        let batch = self
            .cards
            .prepare_issue_batch(principal, key, &requests, self.issues.chunk)
            .await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for index in 0..batch.chunks() {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let plan = match self.cards.decide_issue_chunk(&batch, index).await? {
                    ChunkDecision::Replayed(done) => {
                        outcomes.extend(done);
                        break;
                    }
                    ChunkDecision::Decided(plan) => *plan,
                };
                let accounts = plan
                    .changes
                    .new_cards
                    .iter()
                    .flat_map(|c| self.accounts.card_accounts(&c.number, &c.holder, &c.kind))
                    .collect();
                let committed = self
                    .issues
                    .commit(&[crate::issue::PlanWithAccounts {
                        changes: plan.changes,
                        core: plan.core,
                        accounts,
                    }])
                    .await
                    .pop()
                    .unwrap_or(Err(crate::issue::PlanRefused::Unknown));
                match committed {
                    Ok(()) => {
                        outcomes.extend(plan.outcomes);
                        break;
                    }
                    Err(e) if e.is_conflict() && attempt < citycard_binding::CAS_ATTEMPTS => {
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(IssueReport { outcomes })
    }

    fn issue_request(request: &NewCitizenCard, wallet: citycard_ledger::AccountId) -> IssueCard {
        IssueCard {
            number: request.number.clone(),
            kind: request.kind.clone(),
            holder: request.holder.clone(),
            id_number: request.id_number.clone(),
            wallet_account: wallet_ref(wallet),
            services: request.services.clone(),
            platforms: None,
        }
    }

    /// Replaces a lost card (补卡): the system and card-desk operators only,
    /// checked before anything is opened; then opens the new card's wallet,
    /// and the card service moves the bindings and the ledger carries the
    /// balance over.
    #[tracing::instrument(name = "citycard.replace_card", skip_all, fields(key = %key, card = %card))]
    pub async fn replace_card(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        card: &CardId,
        new_number: &str,
    ) -> Result<CardChange, CityCardError> {
        self.require_role(
            principal,
            &[OperatorRole::CardDesk],
            "card.replace",
            format!("card:{card}"),
        )
        .await?;
        let old = self.cards.card(principal, card).await?;
        let number = self.cards.parse_card_number(new_number)?;
        let old_wallet = wallet_of(&old.wallet_account).map_err(CityCardError::Invalid)?;
        let wallet = self
            .accounts
            .open_replacement_wallet(&number, &old.holder, &old.kind, old_wallet)
            .await?;
        Ok(self
            .cards
            .replace_card(
                principal,
                key,
                card,
                &ReplaceCard {
                    new_number: new_number.to_owned(),
                    new_wallet_account: wallet_ref(wallet),
                },
            )
            .await?)
    }

    /// The transit card reference of a card (its wallet account), as settlement and tap files
    /// use it; ride codes carry a keyed per-credential form of it instead
    /// (mapped back by [`Transit::resolve_code_taps`]).
    pub fn card_ref(card: &Card) -> Result<citycard_transit::CardRef, CityCardError> {
        let account = wallet_of(&card.wallet_account).map_err(CityCardError::Invalid)?;
        Ok(citycard_transit::CardRef(account.get()))
    }

    /// The simulated real-name provider, when no real one was given.
    pub fn simulated_verifier(&self) -> Option<&Arc<SimulatedVerifier>> {
        self.simulated_verifier.as_ref()
    }

    /// The simulated platform wallet, when no real one was given.
    pub fn simulated_wallet(&self) -> Option<&Arc<SimulatedWallet>> {
        self.simulated_wallet.as_ref()
    }
}
