//! Real-name verification of a platform account: two- and three-factor
//! checks with the provider, face liveness (start, then complete), and
//! applying a definitive answer (link the account, raise its level, count
//! failures, audit).

use citycard_core::{
    AuditOutcome, AuditRecord, IdempotencyKey, PlatformAccountId, Principal, Sensitive, civil_date,
    principal_scope, run_idempotent,
};
use tracing::{Instrument, info_span};

use super::{IdentityService, RealNameRequest, VerificationReport, subject};
use crate::error::IdentityError;
use crate::id_number::IdNumber;
use crate::person::{PendingFaceCheck, PlatformAccount, RealNameLevel};
use crate::vault::BlindIndex;
use crate::verifier::{
    ExtraFactor, FaceResult, FaceSession, Factor, FactorCheck, VerificationOutcome, sensitive_name,
};
impl IdentityService {
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
}
