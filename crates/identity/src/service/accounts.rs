//! Platform accounts: registering a platform's account, its real-name
//! status, and finding it by the platform's own id.

use citycard_core::{
    AuditOutcome, AuditRecord, IdempotencyKey, Platform, PlatformAccountId, Principal,
    principal_scope, run_idempotent,
};

use super::{IdentityService, MAX_EXTERNAL_ID, RealNameStatus, subject};
use crate::error::IdentityError;
use crate::person::{PlatformAccount, RealNameLevel};
impl IdentityService {
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
}
