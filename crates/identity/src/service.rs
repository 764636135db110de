//! `IdentityService`: platform accounts and their real-name verification.
//!
//! Design decisions beyond DESIGN.md:
//! - "The account itself" is the account's platform acting for it
//!   (`Principal::Platform` of the same platform) or, once the account is
//!   linked, the cardholder it belongs to; core has no account principal.
//! - ID numbers are validated locally (with the service's clock as "today")
//!   before any provider call; invalid ones never reach the provider and do
//!   not count as failures.
//! - Mismatches, "no record" answers and failed face checks count toward a
//!   per-account daily limit (civil day, Asia/Shanghai); provider "invalid
//!   input" answers and outages do not. An attempt is reserved atomically
//!   before each billed factor check and released when the answer does not
//!   count, so concurrent requests cannot overshoot the limit.
//! - Idempotency fingerprints use a keyed digest of the personal data, never
//!   a plain hash (the ID-number space is small enough to brute-force).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use citycard_core::principal_scope;
use citycard_core::{
    AuditLog, AuditOutcome, AuditRecord, Clock, IdGenerator, IdempotencyKey, IdempotencyStore,
    OperatorRole, OperatorRoles, PersonId, Platform, PlatformAccountId, Principal, Sensitive,
    StoreError, civil_date, run_idempotent,
};
use serde::{Deserialize, Serialize};
use tracing::{Instrument, info_span};

use crate::error::IdentityError;
use crate::id_number::{IdNumber, RegionCheck, ValidationPolicy};
use crate::person::{
    PendingFaceCheck, Person, PersonStore, PlatformAccount, PlatformAccountStore, RealNameLevel,
};
use crate::vault::{BlindIndex, Vault};
use crate::verifier::{
    ExtraFactor, FaceResult, FaceSession, Factor, FactorCheck, RealNameVerifier,
    VerificationOutcome, sensitive_name,
};

/// Tunables of the identity service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdentityConfig {
    /// Failed verifications allowed per account per civil day.
    pub max_failures_per_day: u32,
    /// The region check applied to ID numbers before verification.
    pub region_check: RegionCheck,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            max_failures_per_day: 5,
            region_check: RegionCheck::ExistedAnyTime,
        }
    }
}

/// The ports the service uses.
#[derive(Clone)]
pub struct IdentityPorts {
    /// Persons.
    pub persons: Arc<dyn PersonStore>,
    /// Platform accounts.
    pub accounts: Arc<dyn PlatformAccountStore>,
    /// The real-name provider.
    pub verifier: Arc<dyn RealNameVerifier>,
    /// The personal-data vault.
    pub vault: Vault,
    /// The audit trail.
    pub audit: Arc<dyn AuditLog>,
    /// Idempotency records.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Id generation.
    pub ids: Arc<dyn IdGenerator>,
}

impl IdentityPorts {
    /// Every port in memory (random vault keys, time-ordered ids) around a
    /// verifier and a clock: for demos, examples and tests.
    pub fn in_memory(
        verifier: Arc<dyn RealNameVerifier>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, crate::vault::VaultError> {
        Ok(Self {
            persons: Arc::new(crate::person::MemoryPersonStore::new()),
            accounts: Arc::new(crate::person::MemoryPlatformAccountStore::new()),
            verifier,
            vault: Vault::new(Arc::new(crate::vault::MemoryKeyProvider::random()?)),
            audit: Arc::new(citycard_core::MemoryAuditLog::new()),
            idempotency: Arc::new(citycard_core::MemoryIdempotencyStore::new()),
            clock,
            ids: Arc::new(citycard_core::SequentialIdGenerator::new()),
        })
    }
}

/// What a real-name verification request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealNameRequest {
    /// The name as on the ID card.
    pub name: Sensitive<String>,
    /// The ID number as entered (normalised and validated by the service).
    pub id_number: Sensitive<String>,
    /// The third factor, if any.
    pub extra: ExtraFactor,
}

impl RealNameRequest {
    /// A two-factor request.
    pub fn two_factor(name: &str, id_number: &str) -> Self {
        Self {
            name: sensitive_name(name),
            id_number: Sensitive::new(id_number.to_owned()),
            extra: ExtraFactor::None,
        }
    }

    /// A three-factor request with a phone number.
    pub fn with_phone(name: &str, id_number: &str, phone: &str) -> Self {
        Self {
            extra: ExtraFactor::Phone(Sensitive::new(phone.trim().to_owned())),
            ..Self::two_factor(name, id_number)
        }
    }

    /// A three-factor request with a bank card number.
    pub fn with_bank_card(name: &str, id_number: &str, card: &str) -> Self {
        Self {
            extra: ExtraFactor::BankCard(Sensitive::new(card.trim().to_owned())),
            ..Self::two_factor(name, id_number)
        }
    }
}

/// The result of a verification, as stored for idempotent replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationReport {
    /// The account.
    pub account: PlatformAccountId,
    /// The provider's answer.
    pub outcome: VerificationOutcome,
    /// The account's level afterwards.
    pub level: RealNameLevel,
    /// The person the account belongs to afterwards.
    pub person: Option<PersonId>,
    /// Failed verifications counted today, including this one.
    pub failures_today: u32,
}

/// What the card-binding glue needs to know about an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealNameStatus {
    /// The account.
    pub account: PlatformAccountId,
    /// Its platform.
    pub platform: Platform,
    /// The person it belongs to, once verified.
    pub person: Option<PersonId>,
    /// The level reached.
    pub level: RealNameLevel,
    /// When.
    pub verified_at: Option<DateTime<Utc>>,
}

impl RealNameStatus {
    /// True when verified at any level.
    pub fn is_verified(&self) -> bool {
        self.level.is_verified() && self.person.is_some()
    }
}

/// The identity service.
#[derive(Clone)]
///
/// Reads of persons and accounts name their principal and are audited
/// (allowed and denied) unless the system reads for its own processing.
/// Without a role registry ([`IdentityService::with_roles`]) every operator
/// may read and enrol; with one, an operator needs the card-desk or auditor
/// role to read and the card-desk role to enrol.
pub struct IdentityService {
    ports: IdentityPorts,
    config: IdentityConfig,
    roles: Option<std::sync::Arc<OperatorRoles>>,
}

impl std::fmt::Debug for IdentityService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityService")
            .field("config", &self.config)
            .finish()
    }
}

fn subject(account: &PlatformAccountId) -> String {
    format!("platform_account:{account}")
}

const MAX_EXTERNAL_ID: usize = 128;

impl IdentityService {
    /// A service over its ports.
    pub fn new(ports: IdentityPorts, config: IdentityConfig) -> Self {
        Self {
            ports,
            config,
            roles: None,
        }
    }

    /// Looks operators' roles up in `roles` for reads (see the type's docs).
    #[must_use]
    pub fn with_roles(mut self, roles: std::sync::Arc<OperatorRoles>) -> Self {
        self.roles = Some(roles);
        self
    }

    /// The system, or a card-desk operator (any operator without a registry).
    fn may_enrol(&self, actor: &Principal) -> bool {
        match (actor, &self.roles) {
            (Principal::System, _) | (Principal::Operator { .. }, None) => true,
            (Principal::Operator { .. }, Some(roles)) => {
                roles.allows(actor, &[OperatorRole::CardDesk])
            }
            _ => false,
        }
    }

    /// The system, or an operator with a reading role (any operator without a registry).
    fn may_read_back_office(&self, actor: &Principal) -> bool {
        match (actor, &self.roles) {
            (Principal::System, _) | (Principal::Operator { .. }, None) => true,
            (Principal::Operator { .. }, Some(roles)) => {
                roles.allows(actor, &[OperatorRole::CardDesk, OperatorRole::Auditor])
            }
            _ => false,
        }
    }

    /// Audits an access to personal data (a refusal always, an allowed read
    /// unless the system's own) and returns the refusal when not `allowed`.
    async fn audit_access(
        &self,
        actor: &Principal,
        allowed: bool,
        action: &'static str,
        what: &'static str,
        subject: String,
    ) -> Result<(), IdentityError> {
        if !allowed || !matches!(actor, Principal::System) {
            self.audit(AuditRecord::new(
                self.ports.clock.now(),
                actor.clone(),
                action,
                subject,
                if allowed {
                    AuditOutcome::Succeeded
                } else {
                    AuditOutcome::Denied
                },
            ))
            .await?;
        }
        if allowed {
            Ok(())
        } else {
            Err(IdentityError::Denied {
                actor: actor.to_string(),
                action: what,
            })
        }
    }

    /// The configuration.
    pub fn config(&self) -> IdentityConfig {
        self.config
    }

    /// The vault (for hosts that read persons' data).
    pub fn vault(&self) -> &Vault {
        &self.ports.vault
    }

    fn policy(&self) -> ValidationPolicy {
        ValidationPolicy::new()
            .region_check(self.config.region_check)
            .today(civil_date(self.ports.clock.now()))
    }

    async fn audit(&self, record: AuditRecord) -> Result<(), IdentityError> {
        self.ports.audit.append(record).await?;
        Ok(())
    }

    async fn deny(
        &self,
        actor: &Principal,
        action: &'static str,
        audit_action: &str,
        account: &PlatformAccountId,
    ) -> IdentityError {
        let record = AuditRecord::new(
            self.ports.clock.now(),
            actor.clone(),
            audit_action,
            subject(account),
            AuditOutcome::Denied,
        );
        if let Err(e) = self.audit(record).await {
            return e;
        }
        IdentityError::Denied {
            actor: actor.to_string(),
            action,
        }
    }

    /// Registers a platform's account (or returns the one already registered).
    /// Allowed for that platform, operators and the system.
    pub async fn register_account(
        &self,
        actor: &Principal,
        platform: Platform,
        external_id: &str,
        key: &IdempotencyKey,
    ) -> Result<PlatformAccount, IdentityError> {
        let external_id = external_id.trim();
        if external_id.is_empty() || external_id.len() > MAX_EXTERNAL_ID {
            return Err(IdentityError::InvalidExternalId);
        }
        let allowed = match actor {
            Principal::Platform { platform: p } => *p == platform,
            Principal::Operator { .. } | Principal::System => true,
            _ => false,
        };
        let now = self.ports.clock.now();
        if !allowed {
            self.audit(
                AuditRecord::new(
                    now,
                    actor.clone(),
                    "identity.register_account",
                    format!("platform:{}", platform.code()),
                    AuditOutcome::Denied,
                )
                .with("platform", platform.code()),
            )
            .await?;
            return Err(IdentityError::Denied {
                actor: actor.to_string(),
                action: "register an account",
            });
        }
        let request = (platform.code(), external_id);
        run_idempotent(
            self.ports.idempotency.as_ref(),
            &principal_scope("identity.register_account", actor),
            key,
            &request,
            now,
            || async {
                if let Some(existing) = self
                    .ports
                    .accounts
                    .find_external(&platform, external_id)
                    .await?
                {
                    return Ok(existing);
                }
                let account = PlatformAccount {
                    id: PlatformAccountId::generate(self.ports.ids.as_ref()),
                    platform: platform.clone(),
                    external_id: external_id.to_owned(),
                    person: None,
                    level: RealNameLevel::Unverified,
                    verified_at: None,
                    pending_face: None,
                    created_at: now,
                };
                self.ports.accounts.insert(&account).await?;
                self.audit(AuditRecord::new(
                    now,
                    actor.clone(),
                    "identity.register_account",
                    subject(&account.id),
                    AuditOutcome::Succeeded,
                )
                .with("platform", platform.code()))
                .await?;
                tracing::info!(account = %account.id, platform = %platform, "platform account registered");
                Ok(account)
            },
        )
        .await
    }

    async fn load_account(&self, id: &PlatformAccountId) -> Result<PlatformAccount, IdentityError> {
        self.ports
            .accounts
            .get(id)
            .await?
            .ok_or_else(|| IdentityError::AccountNotFound {
                account: id.clone(),
            })
    }

    fn may_verify(actor: &Principal, account: &PlatformAccount) -> bool {
        match actor {
            Principal::Operator { .. } => true,
            Principal::Platform { platform } => *platform == account.platform,
            Principal::Cardholder { person } => account.person.as_ref() == Some(person),
            _ => false,
        }
    }

    fn validate_name(name: &Sensitive<String>) -> Result<(), IdentityError> {
        let n = name.expose().trim().chars().count();
        if n == 0 || n > 64 {
            return Err(IdentityError::InvalidName);
        }
        Ok(())
    }

    /// Checks that an account already linked to a person is not being
    /// verified as someone else (before any billed provider call).
    async fn check_same_person(
        &self,
        account: &PlatformAccount,
        index: &BlindIndex,
    ) -> Result<(), IdentityError> {
        if let Some(person_id) = &account.person
            && let Some(person) = self.ports.persons.get(person_id).await?
            && person.id_number_index != *index
        {
            return Err(IdentityError::AccountBelongsToAnotherPerson);
        }
        Ok(())
    }

    async fn check_rate(&self, account: &PlatformAccountId) -> Result<u32, IdentityError> {
        let today = civil_date(self.ports.clock.now());
        let failures = self.ports.accounts.failed_attempts(account, today).await?;
        if failures >= self.config.max_failures_per_day {
            return Err(IdentityError::TooManyFailures {
                limit: self.config.max_failures_per_day,
            });
        }
        Ok(failures)
    }

    /// Verifies an account's real name with two or three factors.
    ///
    /// The ID number is validated locally first; an invalid one is refused
    /// without calling the provider. A match links the account to the person
    /// (created on first sight, stored encrypted) and raises its level;
    /// mismatches and "no record" count toward the daily limit. Retries with
    /// the same key return the first report.
    pub async fn verify_real_name(
        &self,
        actor: &Principal,
        account_id: &PlatformAccountId,
        request: &RealNameRequest,
        key: &IdempotencyKey,
    ) -> Result<VerificationReport, IdentityError> {
        let span = info_span!("identity.verify_real_name", account = %account_id, outcome = tracing::field::Empty);
        async {
            const ACTION: &str = "identity.verify_real_name";
            let account = self.load_account(account_id).await?;
            if !Self::may_verify(actor, &account) {
                return Err(self
                    .deny(actor, "verify the real name", ACTION, account_id)
                    .await);
            }
            let now = self.ports.clock.now();
            Self::validate_name(&request.name)?;
            let id_number = match IdNumber::parse_with(request.id_number.expose(), &self.policy()) {
                Ok(id) => id,
                Err(e) => {
                    self.audit(
                        AuditRecord::new(
                            now,
                            actor.clone(),
                            ACTION,
                            subject(account_id),
                            AuditOutcome::Failed,
                        )
                        .with("reason", "invalid_id_number"),
                    )
                    .await?;
                    tracing::Span::current().record("outcome", "invalid_id_number");
                    return Err(e.into());
                }
            };
            let vault = &self.ports.vault;
            let index = vault.blind_index(&id_number).await?;
            let (extra_kind, extra_value) = match &request.extra {
                ExtraFactor::None => ("none", ""),
                ExtraFactor::Phone(p) => ("phone", p.expose().as_str()),
                ExtraFactor::BankCard(c) => ("bank_card", c.expose().as_str()),
            };
            let digest = vault
                .keyed_digest(&[
                    request.name.expose().trim().as_bytes(),
                    extra_value.as_bytes(),
                ])
                .await?;
            let fingerprint = (
                account_id.as_str(),
                index.to_hex(),
                extra_kind,
                digest.to_hex(),
            );
            let report = run_idempotent(
                self.ports.idempotency.as_ref(),
                &principal_scope(ACTION, actor),
                key,
                &fingerprint,
                now,
                || async {
                    let today = civil_date(now);
                    let limit = self.config.max_failures_per_day;
                    // Reserve the attempt first, so concurrent requests
                    // cannot overshoot the daily limit.
                    let Some(count) = self
                        .ports
                        .accounts
                        .reserve_attempt(account_id, today, limit)
                        .await?
                    else {
                        self.audit(
                            AuditRecord::new(
                                now,
                                actor.clone(),
                                ACTION,
                                subject(account_id),
                                AuditOutcome::Denied,
                            )
                            .with("reason", "too_many_failures"),
                        )
                        .await?;
                        return Err(IdentityError::TooManyFailures { limit });
                    };
                    let answer = async {
                        self.check_same_person(&account, &index).await?;
                        let check = FactorCheck {
                            name: request.name.clone(),
                            id_number,
                            extra: request.extra.clone(),
                        };
                        Ok::<_, IdentityError>(self.ports.verifier.check_factors(&check).await?)
                    }
                    .await;
                    let counts = matches!(
                        answer,
                        Ok(VerificationOutcome::Mismatch { .. } | VerificationOutcome::NoRecord)
                    );
                    if !counts {
                        self.ports
                            .accounts
                            .release_attempt(account_id, today)
                            .await?;
                    }
                    let outcome = answer?;
                    let failures = if counts { count } else { count - 1 };
                    let level = match request.extra {
                        ExtraFactor::None => RealNameLevel::TwoFactor,
                        _ => RealNameLevel::ThreeFactor,
                    };
                    self.conclude(
                        actor,
                        account.clone(),
                        outcome,
                        level,
                        &id_number,
                        &request.name,
                        index,
                        failures,
                        ACTION,
                    )
                    .await
                },
            )
            .await?;
            tracing::Span::current().record("outcome", report.outcome.code());
            Ok(report)
        }
        .instrument(span)
        .await
    }

    /// Applies a provider's definitive answer: link and upgrade on a match,
    /// audit either way. `failures` is the day's count including this answer
    /// (the caller has counted it).
    #[allow(clippy::too_many_arguments)]
    async fn conclude(
        &self,
        actor: &Principal,
        mut account: PlatformAccount,
        outcome: VerificationOutcome,
        level: RealNameLevel,
        id_number: &IdNumber,
        name: &Sensitive<String>,
        index: BlindIndex,
        failures: u32,
        action: &str,
    ) -> Result<VerificationReport, IdentityError> {
        let now = self.ports.clock.now();
        let failures_today = failures;
        match outcome {
            VerificationOutcome::Match => {
                let person = self.person_for(id_number, name, index, level, now).await?;
                account.person = Some(person.id.clone());
                if level >= account.level {
                    account.level = level;
                    account.verified_at = Some(now);
                }
                account.pending_face = None;
                self.ports.accounts.update(&account).await?;
                self.audit(
                    AuditRecord::new(
                        now,
                        actor.clone(),
                        action,
                        subject(&account.id),
                        AuditOutcome::Succeeded,
                    )
                    .with("outcome", outcome.code())
                    .with("level", account.level.code())
                    .with("person", person.id.as_str()),
                )
                .await?;
            }
            VerificationOutcome::Mismatch { .. } | VerificationOutcome::NoRecord => {
                let mut record = AuditRecord::new(
                    now,
                    actor.clone(),
                    action,
                    subject(&account.id),
                    AuditOutcome::Failed,
                )
                .with("outcome", outcome.code())
                .with("failures_today", failures_today.to_string());
                if let VerificationOutcome::Mismatch { factor: Some(f) } = outcome {
                    record = record.with("factor", format!("{f:?}").to_lowercase());
                }
                self.audit(record).await?;
            }
            _ => {
                self.audit(
                    AuditRecord::new(
                        now,
                        actor.clone(),
                        action,
                        subject(&account.id),
                        AuditOutcome::Failed,
                    )
                    .with("outcome", outcome.code()),
                )
                .await?;
            }
        }
        Ok(VerificationReport {
            account: account.id.clone(),
            outcome,
            level: account.level,
            person: account.person.clone(),
            failures_today,
        })
    }

    /// The person with this ID number, created (encrypted) if new, with the
    /// level raised.
    async fn person_for(
        &self,
        id_number: &IdNumber,
        name: &Sensitive<String>,
        index: BlindIndex,
        level: RealNameLevel,
        now: DateTime<Utc>,
    ) -> Result<Person, IdentityError> {
        let persons = &self.ports.persons;
        if let Some(mut person) = persons.find_by_id_number_index(&index).await? {
            if level >= person.level {
                person.level = level;
                person.verified_at = Some(now);
                persons.update(&person).await?;
            }
            return Ok(person);
        }
        let id = PersonId::generate(self.ports.ids.as_ref());
        let vault = &self.ports.vault;
        let person = Person {
            masked_name: Person::mask_name(name.expose()),
            name: vault
                .seal_name(name.expose().trim(), &Person::name_context(&id))
                .await?,
            masked_id_number: id_number.masked(),
            id_number: vault
                .seal_id_number(id_number, &Person::id_number_context(&id))
                .await?,
            id_number_index: index,
            level,
            verified_at: Some(now),
            created_at: now,
            id,
        };
        persons.insert(&person).await?;
        Ok(person)
    }

    /// Enrols a person at the issuer's counter (documents checked by an
    /// operator), or returns the person already known by this ID number.
    ///
    /// The ID number is validated locally, stored encrypted with its blind
    /// index, and never logged. Enrolment does not make any platform account
    /// real-name verified: that still takes [`IdentityService::verify_real_name`].
    /// Operators and the system only; idempotent with `key` (the actor's own).
    ///
    /// After a crash between claim and completion, a retry once the claim's
    /// lease has run out takes it over and runs again, which is safe: the
    /// person is found by the ID number's blind index, never made twice.
    pub async fn enroll_person(
        &self,
        actor: &Principal,
        name: &Sensitive<String>,
        id_number: &Sensitive<String>,
        key: &IdempotencyKey,
    ) -> Result<Person, IdentityError> {
        const ACTION: &str = "identity.enroll_person";
        if !self.may_enrol(actor) {
            // Audits the refusal and returns it.
            self.audit_access(actor, false, ACTION, "enrol persons", "person:*".into())
                .await?;
        }
        let trimmed = name.expose().trim();
        if trimmed.is_empty() || trimmed.chars().count() > 64 {
            return Err(IdentityError::InvalidName);
        }
        let id_number = IdNumber::parse_with(id_number.expose(), &self.policy())?;
        let index = self.ports.vault.blind_index(&id_number).await?;
        let now = self.ports.clock.now();
        // Keyed like the blind index: a plain hash of the name would give it
        // back to anyone holding the database (a dictionary of names is small).
        let name_digest = self
            .ports
            .vault
            .keyed_digest(&[b"enroll-name", trimmed.as_bytes()])
            .await?;
        let request = (index.to_hex(), name_digest.to_hex());
        let person_id: PersonId = run_idempotent(
            self.ports.idempotency.as_ref(),
            &principal_scope(ACTION, actor),
            key,
            &request,
            now,
            || async {
                let person = self
                    .person_for(&id_number, name, index, RealNameLevel::Unverified, now)
                    .await?;
                self.audit(AuditRecord::new(
                    now,
                    actor.clone(),
                    ACTION,
                    format!("person:{}", person.id),
                    AuditOutcome::Succeeded,
                ))
                .await?;
                Ok::<_, IdentityError>(person.id)
            },
        )
        .await?;
        self.ports.persons.get(&person_id).await?.ok_or_else(|| {
            IdentityError::Store(StoreError::Corrupt(format!(
                "person {person_id} is missing after enrolment"
            )))
        })
    }

    /// Starts a face liveness check for an account: validates locally, opens
    /// a provider session and keeps it (encrypted) on the account.
    pub async fn start_face_check(
        &self,
        actor: &Principal,
        account_id: &PlatformAccountId,
        name: &str,
        id_number: &str,
        key: &IdempotencyKey,
    ) -> Result<FaceSession, IdentityError> {
        const ACTION: &str = "identity.face_check.start";
        let span = info_span!("identity.face_check.start", account = %account_id);
        async {
            let account = self.load_account(account_id).await?;
            if !Self::may_verify(actor, &account) {
                return Err(self
                    .deny(actor, "start a face check", ACTION, account_id)
                    .await);
            }
            let name = sensitive_name(name);
            Self::validate_name(&name)?;
            let id_number = IdNumber::parse_with(id_number, &self.policy())?;
            let now = self.ports.clock.now();
            let vault = &self.ports.vault;
            let index = vault.blind_index(&id_number).await?;
            let digest = vault.keyed_digest(&[name.expose().as_bytes()]).await?;
            let fingerprint = (account_id.as_str(), index.to_hex(), digest.to_hex());
            run_idempotent(
                self.ports.idempotency.as_ref(),
                &principal_scope(ACTION, actor),
                key,
                &fingerprint,
                now,
                || async {
                    if let Err(e) = self.check_rate(account_id).await {
                        self.audit(
                            AuditRecord::new(
                                now,
                                actor.clone(),
                                ACTION,
                                subject(account_id),
                                AuditOutcome::Denied,
                            )
                            .with("reason", "too_many_failures"),
                        )
                        .await?;
                        return Err(e);
                    }
                    self.check_same_person(&account, &index).await?;
                    let session = self
                        .ports
                        .verifier
                        .start_face_session(&name, &id_number)
                        .await?;
                    let mut account = account.clone();
                    let ctx = format!("account:{account_id}:face");
                    account.pending_face = Some(PendingFaceCheck {
                        session_id: session.session_id.clone(),
                        id_number_index: index,
                        id_number: vault
                            .seal_id_number(&id_number, &format!("{ctx}:id_number"))
                            .await?,
                        name: vault
                            .seal_name(name.expose(), &format!("{ctx}:name"))
                            .await?,
                        started_at: now,
                    });
                    self.ports.accounts.update(&account).await?;
                    self.audit(AuditRecord::new(
                        now,
                        actor.clone(),
                        ACTION,
                        subject(account_id),
                        AuditOutcome::Succeeded,
                    ))
                    .await?;
                    Ok(session)
                },
            )
            .await
        }
        .instrument(span)
        .await
    }

    /// Queries the provider for the account's face check and applies the
    /// result: a pass links the account at the face-liveness level; a fail
    /// counts toward the daily limit. A pending check is an error to poll on.
    pub async fn complete_face_check(
        &self,
        actor: &Principal,
        account_id: &PlatformAccountId,
        key: &IdempotencyKey,
    ) -> Result<VerificationReport, IdentityError> {
        const ACTION: &str = "identity.face_check.complete";
        let span = info_span!("identity.face_check.complete", account = %account_id, outcome = tracing::field::Empty);
        async {
            let account = self.load_account(account_id).await?;
            if !Self::may_verify(actor, &account) {
                return Err(self
                    .deny(actor, "complete a face check", ACTION, account_id)
                    .await);
            }
            let now = self.ports.clock.now();
            // The pending check is looked up inside, so a retry after success
            // (which cleared it) still replays the first report.
            let fingerprint = (account_id.as_str(), "face");
            let report = run_idempotent(
                self.ports.idempotency.as_ref(),
                &principal_scope(ACTION, actor),
                key,
                &fingerprint,
                now,
                || async {
                    let Some(pending) = account.pending_face.clone() else {
                        return Err(IdentityError::NoFaceCheckPending);
                    };
                    let result = self.ports.verifier.face_result(&pending.session_id).await?;
                    let outcome = match result {
                        FaceResult::Pending => return Err(IdentityError::FaceCheckPending),
                        FaceResult::Expired => {
                            let mut account = account.clone();
                            account.pending_face = None;
                            self.ports.accounts.update(&account).await?;
                            return Err(IdentityError::FaceCheckExpired);
                        }
                        FaceResult::Passed => VerificationOutcome::Match,
                        FaceResult::NoRecord => VerificationOutcome::NoRecord,
                        _ => VerificationOutcome::Mismatch {
                            factor: Some(Factor::Face),
                        },
                    };
                    let vault = &self.ports.vault;
                    let ctx = format!("account:{account_id}:face");
                    let id_number = vault
                        .open_id_number(&pending.id_number, &format!("{ctx}:id_number"))
                        .await?;
                    let name = vault
                        .open_name(&pending.name, &format!("{ctx}:name"))
                        .await?;
                    let mut account = account.clone();
                    if outcome != VerificationOutcome::Match {
                        account.pending_face = None;
                        self.ports.accounts.update(&account).await?;
                    }
                    let today = civil_date(now);
                    let failures = if matches!(
                        outcome,
                        VerificationOutcome::Mismatch { .. } | VerificationOutcome::NoRecord
                    ) {
                        // The face check already happened: always counted.
                        self.ports
                            .accounts
                            .reserve_attempt(account_id, today, u32::MAX)
                            .await?
                            .unwrap_or(u32::MAX)
                    } else {
                        self.ports
                            .accounts
                            .failed_attempts(account_id, today)
                            .await?
                    };
                    self.conclude(
                        actor,
                        account,
                        outcome,
                        RealNameLevel::FaceLiveness,
                        &id_number,
                        &name,
                        pending.id_number_index,
                        failures,
                        ACTION,
                    )
                    .await
                },
            )
            .await?;
            tracing::Span::current().record("outcome", report.outcome.code());
            Ok(report)
        }
        .instrument(span)
        .await
    }

    /// Whether an account is real-name verified, and as whom (for card
    /// binding): for the account's platform, the person it is verified as,
    /// reading operators and the system.
    pub async fn real_name_status(
        &self,
        actor: &Principal,
        account_id: &PlatformAccountId,
    ) -> Result<RealNameStatus, IdentityError> {
        let account = self.load_account(account_id).await?;
        let allowed = self.may_read_back_office(actor)
            || match actor {
                Principal::Platform { platform } => *platform == account.platform,
                Principal::Cardholder { person } => account.person.as_ref() == Some(person),
                _ => false,
            };
        self.audit_access(
            actor,
            allowed,
            "identity.real_name_status",
            "read this account's real-name status",
            subject(account_id),
        )
        .await?;
        Ok(RealNameStatus {
            account: account.id,
            platform: account.platform,
            person: account.person,
            level: account.level,
            verified_at: account.verified_at,
        })
    }

    /// The account a platform knows by its own id, if registered: for that
    /// platform, reading operators and the system.
    pub async fn find_account(
        &self,
        actor: &Principal,
        platform: &Platform,
        external_id: &str,
    ) -> Result<Option<PlatformAccount>, IdentityError> {
        let allowed = self.may_read_back_office(actor)
            || matches!(actor, Principal::Platform { platform: p } if p == platform);
        self.audit_access(
            actor,
            allowed,
            "identity.find_account",
            "look up another platform's accounts",
            format!("platform:{platform}"),
        )
        .await?;
        Ok(self
            .ports
            .accounts
            .find_external(platform, external_id.trim())
            .await?)
    }

    /// A person by id (ciphertext and masked forms only): for the person,
    /// reading operators and the system.
    pub async fn person(
        &self,
        actor: &Principal,
        id: &PersonId,
    ) -> Result<Option<Person>, IdentityError> {
        let allowed = self.may_read_back_office(actor)
            || matches!(actor, Principal::Cardholder { person } if person == id);
        self.audit_access(
            actor,
            allowed,
            "identity.person",
            "read this person's record",
            format!("person:{id}"),
        )
        .await?;
        Ok(self.ports.persons.get(id).await?)
    }

    /// Whether `id_number` is this person's ID number (by blind index; no decryption).
    pub async fn id_number_belongs_to(
        &self,
        person: &PersonId,
        id_number: &IdNumber,
    ) -> Result<bool, IdentityError> {
        let index = self.ports.vault.blind_index(id_number).await?;
        Ok(self
            .ports
            .persons
            .get(person)
            .await?
            .is_some_and(|p| p.id_number_index == index))
    }

    /// The person with this ID number, by blind index. Reading operators and
    /// the system only; audited.
    pub async fn find_person_by_id_number(
        &self,
        actor: &Principal,
        id_number: &IdNumber,
    ) -> Result<Option<Person>, IdentityError> {
        self.audit_access(
            actor,
            self.may_read_back_office(actor),
            "identity.find_person_by_id_number",
            "look up persons by id number",
            "person:*".into(),
        )
        .await?;
        let index = self.ports.vault.blind_index(id_number).await?;
        Ok(self.ports.persons.find_by_id_number_index(&index).await?)
    }

    /// Re-encrypts up to `limit` persons after `after` under the current key
    /// (a key-rotation job step); returns the last person handled, to continue from.
    /// Operators and the system only.
    pub async fn reencrypt_persons(
        &self,
        actor: &Principal,
        after: Option<&PersonId>,
        limit: usize,
    ) -> Result<Option<PersonId>, IdentityError> {
        if !matches!(actor, Principal::Operator { .. } | Principal::System) {
            return Err(IdentityError::Denied {
                actor: actor.to_string(),
                action: "re-encrypt persons",
            });
        }
        let vault = &self.ports.vault;
        let batch = self.ports.persons.list(after, limit).await?;
        let mut last = None;
        for mut person in batch {
            person.name = vault
                .reencrypt(&person.name, &Person::name_context(&person.id))
                .await?;
            person.id_number = vault
                .reencrypt(&person.id_number, &Person::id_number_context(&person.id))
                .await?;
            self.ports.persons.update(&person).await?;
            last = Some(person.id);
        }
        if let Some(last) = &last {
            self.audit(
                AuditRecord::new(
                    self.ports.clock.now(),
                    actor.clone(),
                    "identity.reencrypt",
                    "person:*",
                    AuditOutcome::Succeeded,
                )
                .with("last", last.as_str()),
            )
            .await?;
        }
        Ok(last)
    }
}
