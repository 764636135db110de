// A little over 800 lines: the bind saga's four steps, settling and
// compensation read best together.

//! The bind saga, settling pending bindings, unbinding, and binding views.
//!
//! Binding runs in the steps, each committing at most once:
//!
//! 1. **verify input** — rate limit, real-name checks of the account, the
//!    principal and the ID number (remote calls; a refusal commits its
//!    audit record, mismatch record and idempotency outcome together);
//! 2. **issuer check** — the card is active for the platform and the issuer
//!    confirms card number + ID number; then the pending binding and its
//!    consent commit together (expecting the card's version), before the
//!    wallet is touched ("commit before acknowledging");
//! 3. **platform wallet** — the pass is added (idempotent by serial; an
//!    unknown answer is read back, never guessed); no local write;
//! 4. **bound** — the binding becomes active (following its card if it
//!    changed meanwhile), with its audit record and the idempotency outcome,
//!    in one commit. If the wallet cannot confirm, the pass is removed and the
//!    binding removed (compensation, one commit).
//!
//! A crash after step 2 leaves a pending binding that the retry with the same
//! key (or [`CardService::settle_pending`]) settles with the same pass serial.

use chrono::{DateTime, Duration, Utc};
use citycard_core::{
    AuditOutcome, AuditRecord, CoreChanges, DelegationScope, IdempotencyKey, OperatorRole,
    Platform, PlatformAccountId, Principal, principal_scope,
};
use serde::Serialize;
use tracing::info;

use super::{BindRequest, CAS_ATTEMPTS, CardService, Decided, KeyRef, is_conflict};
use crate::changes::{CardChanges, stored};
use crate::decide::{self, subject_binding};
use crate::error::{BindingError, PortError, Refusal};
use crate::model::{
    Binding, BindingId, BindingReceipt, BindingState, BlindIndex, Card, CardNumber, ConsentInput,
    ConsentRecord, PassSerial, PassStatus, Relation, RemovalReason,
};
use crate::ports::IssuerVerdict;

#[derive(Serialize)]
struct BindFingerprint<'a> {
    principal: &'a Principal,
    platform: &'a Platform,
    account: &'a PlatformAccountId,
    card_digest: &'a BlindIndex,
    id_index: &'a BlindIndex,
    consent: &'a ConsentInput,
}

/// What a bind request answers, stored under its key (definitive refusals included).
type BindOutcome = Result<BindingReceipt, Refusal>;

impl CardService {
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
        let key = KeyRef::new(
            principal_scope("binding.bind", principal),
            key,
            &fingerprint,
        )?;
        let outcome = match self.lookup::<BindOutcome>(&key).await? {
            Some(stored) => stored,
            None => self.bind_steps(principal, request, &number, &key).await?,
        };
        match &outcome {
            Ok(r) => info!(binding = %r.binding, state = r.state.code(), "bound"),
            Err(refusal) => info!(?refusal, "bind refused"),
        }
        outcome.map_err(BindingError::from)
    }

    /// Commits a definitive answer of a bind with its rows; when an identical
    /// request committed first, its answer is the answer.
    async fn conclude(
        &self,
        key: &KeyRef,
        changes: CardChanges,
        mut core: CoreChanges,
        outcome: BindOutcome,
    ) -> Result<BindOutcome, BindingError> {
        core.outcomes.push(key.outcome(&outcome, self.now())?);
        match self.commit(&changes, &core).await {
            Ok(()) => Ok(outcome),
            Err(e) if is_conflict(&e) => match self.lookup::<BindOutcome>(key).await? {
                Some(stored) => Ok(stored),
                None => Err(BindingError::RetryLater {
                    reason: "a concurrent change to the binding".into(),
                }),
            },
            Err(e) => Err(e.into()),
        }
    }

    fn account_subject(request: &BindRequest) -> String {
        format!("account:{}:{}", request.platform, request.account)
    }

    /// Step 1 or 2 refused on mismatched details: the attempt counts toward the rate limit.
    async fn mismatch(
        &self,
        principal: &Principal,
        request: &BindRequest,
        step: &str,
        key: &KeyRef,
    ) -> Result<BindOutcome, BindingError> {
        let now = self.now();
        let mut changes = CardChanges::new();
        changes.record_mismatch(request.platform.clone(), request.account.clone(), now);
        let audit = AuditRecord::new(
            now,
            principal.clone(),
            "binding.bind",
            Self::account_subject(request),
            AuditOutcome::Failed,
        )
        .with("reason", "details_do_not_match")
        .with("step", step);
        self.conclude(
            key,
            changes,
            CoreChanges::audited(audit),
            Err(Refusal::DetailsDoNotMatch),
        )
        .await
    }

    /// A definitive refusal, audited and stored under the key; other errors are returned.
    async fn refuse(
        &self,
        principal: &Principal,
        request: &BindRequest,
        error: BindingError,
        key: &KeyRef,
    ) -> Result<BindOutcome, BindingError> {
        let Some(refusal) = Refusal::of(&error) else {
            return Err(error);
        };
        let outcome = if matches!(refusal, Refusal::Denied { .. }) {
            AuditOutcome::Denied
        } else {
            AuditOutcome::Failed
        };
        let audit = AuditRecord::new(
            self.now(),
            principal.clone(),
            "binding.bind",
            Self::account_subject(request),
            outcome,
        )
        .with("reason", error.to_string());
        self.conclude(
            key,
            CardChanges::new(),
            CoreChanges::audited(audit),
            Err(refusal),
        )
        .await
    }

    fn denied(reason: &str) -> BindingError {
        BindingError::Denied {
            reason: reason.to_owned(),
        }
    }

    async fn bind_steps(
        &self,
        principal: &Principal,
        request: &BindRequest,
        number: &CardNumber,
        key: &KeyRef,
    ) -> Result<BindOutcome, BindingError> {
        // Step 1: verify input.
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

        // A real-name verified account; the ID number is the holder's own, or a delegate acts.
        let real = &self.ports.real_names;
        let Some(account_holder) = real
            .account_holder(&request.platform, &request.account)
            .await
            .map_err(|e| e.retry_later("real-name check"))?
        else {
            return self
                .refuse(principal, request, BindingError::NotRealNameVerified, key)
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
            let error = Self::denied("this platform account was closed and may not bind cards");
            return self.refuse(principal, request, error, key).await;
        }
        let (cardholder, guardian) = match principal {
            Principal::Cardholder { person } => {
                if *person != account_holder {
                    let error = Self::denied("the platform account belongs to someone else");
                    return self.refuse(principal, request, error, key).await;
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
                    let error =
                        Self::denied("no live delegation allows binding for this cardholder");
                    return self.refuse(principal, request, error, key).await;
                };
                if account_holder != *on_behalf_of && account_holder != *delegate {
                    let error = Self::denied(
                        "the platform account is neither the cardholder's nor the delegate's",
                    );
                    return self.refuse(principal, request, error, key).await;
                }
                let guardian =
                    (grant.relation == Relation::Guardian).then(|| grant.delegate.clone());
                (on_behalf_of.clone(), guardian)
            }
            _ => {
                let error = Self::denied("only a cardholder or a delegate may bind");
                return self.refuse(principal, request, error, key).await;
            }
        };
        if !real
            .id_number_is(&cardholder, &request.id_number)
            .await
            .map_err(|e| e.retry_later("real-name check"))?
        {
            return self.mismatch(principal, request, "id_number", key).await;
        }
        if guardian.is_none()
            && real
                .guardian_required(&cardholder)
                .await
                .map_err(|e| e.retry_later("real-name check"))?
        {
            return self
                .refuse(principal, request, BindingError::GuardianRequired, key)
                .await;
        }

        // Step 2: issuer check. The card is active and the platform enabled for
        // it, the issuer confirms the details; then the pending binding and its
        // consent commit before the wallet is touched. A refused commit (a
        // concurrent bind or card event) reads the card again and decides again.
        let mut attempt = 0;
        let mut verified: Option<crate::model::CardId> = None;
        loop {
            attempt += 1;
            let Some(card) = self.ports.cards.by_number(number).await? else {
                return self.mismatch(principal, request, "card_number", key).await;
            };
            if let Some(existing) = self
                .ports
                .bindings
                .live_for(&card.id, &request.platform, &request.account)
                .await?
            {
                if existing.state == BindingState::Pending {
                    return self.settle(existing, None, Some(key)).await.map(Ok);
                }
                let error = BindingError::AlreadyBound {
                    binding: existing.id,
                };
                return self.refuse(principal, request, error, key).await;
            }
            if !card.status.is_active() {
                let error = BindingError::CardNotActive {
                    status: card.status.code().to_owned(),
                };
                return self.refuse(principal, request, error, key).await;
            }
            if !card.platforms.contains(&request.platform) {
                let error = BindingError::PlatformNotEnabled {
                    platform: request.platform.clone(),
                };
                return self.refuse(principal, request, error, key).await;
            }
            if verified.as_ref() != Some(&card.id) {
                match self
                    .ports
                    .issuer
                    .verify(number, &request.id_number)
                    .await
                    .map_err(|e| e.retry_later("card issuer"))?
                {
                    IssuerVerdict::Matched { card: matched }
                        if matched == card.id && card.holder == cardholder => {}
                    _ => return self.mismatch(principal, request, "issuer", key).await,
                }
                verified = Some(card.id.clone());
            }
            let Decided {
                changes,
                core,
                value: binding,
            } = self.decide_pending(principal, request, &card, &cardholder, guardian.as_ref());
            match self.commit(&changes, &core).await {
                // Steps 3 and 4.
                Ok(()) => return self.settle(binding, Some(card), Some(key)).await.map(Ok),
                Err(e) if is_conflict(&e) && attempt < CAS_ATTEMPTS => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The pending binding of step 2 with its consent record and audit.
    fn decide_pending(
        &self,
        principal: &Principal,
        request: &BindRequest,
        card: &Card,
        cardholder: &citycard_core::PersonId,
        guardian: Option<&citycard_core::PersonId>,
    ) -> Decided<Binding> {
        let now = self.now();
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
                guardian: guardian.cloned(),
                withdrawn_at: None,
            },
            removal: None,
            created_at: now,
            updated_at: now,
            version: 0,
        };
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
        if let Some(g) = guardian {
            consent_audit = consent_audit.with("guardian", g.as_str());
        }
        let mut changes = CardChanges::new();
        changes.insert_binding(binding.clone()).expect_card(card);
        Decided {
            changes,
            core: CoreChanges::audited(consent_audit),
            value: binding,
        }
    }

    /// Settles a pending binding (steps 3–4), or reports it still processing;
    /// with `key`, the bind request's outcome commits with the activation.
    ///
    /// Hosts call [`CardService::settle_pending`] from a job to finish bindings
    /// whose callers went away.
    async fn settle(
        &self,
        binding: Binding,
        fresh: Option<Card>,
        key: Option<&KeyRef>,
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
        let out = self.settle_exclusive(binding, fresh, key).await;
        self.settling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        out
    }

    /// A binding found settled: its receipt (committed under `key`, if any).
    async fn settled(
        &self,
        binding: &Binding,
        card: &Card,
        key: Option<&KeyRef>,
    ) -> Result<BindingReceipt, BindingError> {
        match binding.state {
            BindingState::Pending => Err(BindingError::Processing {
                binding: binding.id.clone(),
            }),
            BindingState::Active | BindingState::Suspended => {
                let r = receipt(binding, card);
                match key {
                    Some(key) => self
                        .conclude(key, CardChanges::new(), CoreChanges::default(), Ok(r))
                        .await?
                        .map_err(BindingError::from),
                    None => Ok(r),
                }
            }
            BindingState::Removed => Err(BindingError::RetryLater {
                reason: "the binding could not be completed and was undone; nothing is bound"
                    .into(),
            }),
        }
    }

    async fn settle_exclusive(
        &self,
        binding: Binding,
        fresh: Option<Card>,
        key: Option<&KeyRef>,
    ) -> Result<BindingReceipt, BindingError> {
        // Re-read a binding found pending: another call may have settled it meanwhile.
        // A binding this call just committed (with the card it just read) is held under
        // the settle guard and is current.
        let (binding, card) = match fresh {
            Some(card) => (binding, card),
            None => {
                let binding = self.load_binding(&binding.id).await?;
                let card = self.load_card(&binding.card).await?;
                (binding, card)
            }
        };
        if binding.state != BindingState::Pending {
            return self.settled(&binding, &card, key).await;
        }

        // Step 3: platform wallet.
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
        self.activate(binding, card, key).await
    }

    /// Step 4: bound. One commit: the binding active (or following its card,
    /// if the card changed while the flow ran), its audit records, and the
    /// request's outcome; the card's version is the precondition.
    async fn activate(
        &self,
        mut binding: Binding,
        mut card: Card,
        key: Option<&KeyRef>,
    ) -> Result<BindingReceipt, BindingError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            if binding.state != BindingState::Pending {
                return self.settled(&binding, &card, key).await;
            }
            let current = self.current_card(card.clone()).await?;
            let other = if current.id == binding.card {
                None
            } else {
                self.ports
                    .bindings
                    .live_for(&current.id, &binding.platform, &binding.account)
                    .await?
                    .map(|b| b.id)
            };
            let now = self.now();
            let (next, followed) = decide::activate(&binding, &current, other.as_ref(), now);
            let mut changes = CardChanges::new();
            changes.move_binding(&binding, next.clone())?;
            changes.expect_card(&current);
            let mut core = CoreChanges::audited(
                AuditRecord::new(
                    now,
                    binding.consent.actor.clone(),
                    "binding.bind",
                    subject_binding(&binding.id),
                    AuditOutcome::Succeeded,
                )
                .with("card", binding.card.as_str())
                .with("platform", binding.platform.code())
                .with("pass_serial", binding.pass_serial.as_str()),
            );
            if followed {
                core.audit.push(decide::follow_audit(&next, now));
            }
            let answer = receipt(&next, &current);
            if let Some(key) = key
                && next.state != BindingState::Removed
            {
                core.outcomes
                    .push(key.outcome(&BindOutcome::Ok(answer.clone()), now)?);
            }
            match self.commit(&changes, &core).await {
                Ok(()) => {
                    if followed {
                        self.sync_pass(&stored(&next), &current).await;
                    }
                    if next.state == BindingState::Removed {
                        return Err(match other {
                            Some(binding) => BindingError::AlreadyBound { binding },
                            None => BindingError::CardNotActive {
                                status: current.status.code().to_owned(),
                            },
                        });
                    }
                    return Ok(answer);
                }
                Err(e) if is_conflict(&e) && attempt < CAS_ATTEMPTS => {
                    if let Some(key) = key
                        && let Some(stored) = self.lookup::<BindOutcome>(key).await?
                    {
                        return stored.map_err(BindingError::from);
                    }
                    binding = self.load_binding(&binding.id).await?;
                    card = self.load_card(&binding.card).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The wallet could not confirm the pass: remove it (idempotent) and the
    /// binding with it, in one commit; if even the removal cannot be
    /// confirmed, the binding stays pending ("processing").
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
        let mut b = binding;
        while b.state == BindingState::Pending {
            attempt += 1;
            let now = self.now();
            let mut changes = CardChanges::new();
            changes.move_binding(&b, decide::remove(&b, RemovalReason::BindingFailed, now))?;
            let core = CoreChanges::audited(
                AuditRecord::new(
                    now,
                    b.consent.actor.clone(),
                    "binding.bind",
                    subject_binding(&b.id),
                    AuditOutcome::Failed,
                )
                .with("reason", "wallet_write_failed_compensated"),
            );
            match self.commit(&changes, &core).await {
                Ok(()) => break,
                Err(e) if is_conflict(&e) && attempt < CAS_ATTEMPTS => {
                    b = self.load_binding(&b.id).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
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
            match self.settle(b, None, None).await {
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

    /// Unbinds (withdraws consent): the pass is removed and the platform deletes its copy.
    ///
    /// The pass is removed first (idempotent), then the binding, its audit
    /// record and the outcome commit together; a retry after a failure
    /// between the two finds the binding still live and repeats both.
    #[tracing::instrument(skip_all, fields(key = %key, binding = %binding))]
    pub async fn unbind(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        binding: &BindingId,
        reason: RemovalReason,
    ) -> Result<Binding, BindingError> {
        let key = KeyRef::new(
            principal_scope("binding.unbind", principal),
            key,
            &(principal, binding, reason),
        )?;
        let (removed, _) = self
            .idempotent(&key, || async move {
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
                let now = self.now();
                let next = decide::remove(&b, reason, now);
                let mut changes = CardChanges::new();
                changes.move_binding(&b, next.clone())?;
                let core = CoreChanges::audited(
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
                );
                Ok(Decided {
                    changes,
                    core,
                    value: stored(&next),
                })
            })
            .await?;
        info!(binding = %binding, reason = reason.code(), "unbound");
        Ok(removed)
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
