//! `IdentityService`: platform accounts and their real-name verification.
//!
//! The service's methods are grouped by concern: [`IdentityService`]'s
//! construction, access rules and shared checks here; platform accounts in
//! `accounts.rs` (register, status, lookup); real-name verification in
//! `verification.rs` (factor checks, face liveness, applying an answer);
//! persons in `persons.rs` (enrolment, reads, re-encryption).
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

mod accounts;
mod persons;
mod verification;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use citycard_core::{
    AuditLog, AuditOutcome, AuditRecord, Clock, IdGenerator, IdempotencyStore, OperatorRole,
    OperatorRoles, PersonId, Platform, PlatformAccountId, Principal, Sensitive, civil_date,
};
use serde::{Deserialize, Serialize};

use crate::error::IdentityError;
use crate::id_number::{RegionCheck, ValidationPolicy};
use crate::memory::{MemoryKeyProvider, MemoryPersonStore, MemoryPlatformAccountStore};
use crate::person::{PlatformAccount, RealNameLevel};
use crate::ports::{PersonStore, PlatformAccountStore, RealNameVerifier};
use crate::vault::{BlindIndex, Vault, VaultError};
use crate::verifier::{ExtraFactor, VerificationOutcome, sensitive_name};

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
    ) -> Result<Self, VaultError> {
        Ok(Self {
            persons: Arc::new(MemoryPersonStore::new()),
            accounts: Arc::new(MemoryPlatformAccountStore::new()),
            verifier,
            vault: Vault::new(Arc::new(MemoryKeyProvider::random()?)),
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
}
