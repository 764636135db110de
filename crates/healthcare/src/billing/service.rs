//! The billing service: quotes, and the settlement and reversal sagas (see [`super`]).

use std::sync::Arc;

use chrono::Datelike;
use citycard_core::{
    AuditLog, AuditOutcome, AuditRecord, Clock, Fingerprint, IdGenerator, IdempotencyKey, PersonId,
    Principal, StoreError, civil_date,
};
use tracing::{debug, info};

use super::decide::{
    Replay, ReversalStart, SettlementFacts, SettlementPlan, complete_settlement, fail_settlement,
    finish_reversal, plan_settlement, replay_settlement, reversal_transfers, start_reversal,
};
use super::{BillRequest, PaymentError, SettlementRecord, SettlementStatus};
use crate::error::HealthcareError;
use crate::ids::SettlementId;
use crate::ports::{MedicalPayments, PatientDirectory, SettlementStore};
use crate::settlement::{PersonType, SettlementBreakdown, SettlementEngine, SettlementInput};

/// Quotes, settles and reverses bills.
pub struct BillingService {
    engine: Arc<SettlementEngine>,
    store: Arc<dyn SettlementStore>,
    payments: Arc<dyn MedicalPayments>,
    patients: Arc<dyn PatientDirectory>,
    audit: Arc<dyn AuditLog>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
}

impl std::fmt::Debug for BillingService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BillingService").finish_non_exhaustive()
    }
}

/// How many times a settlement step decides before giving up on a patient whose
/// accumulators keep changing (each refusal means another settlement of the same person
/// committed first).
pub const MAX_SETTLEMENT_DECISIONS: usize = 3;

impl BillingService {
    /// A service over its engine and ports.
    pub fn new(
        engine: Arc<SettlementEngine>,
        store: Arc<dyn SettlementStore>,
        payments: Arc<dyn MedicalPayments>,
        patients: Arc<dyn PatientDirectory>,
        audit: Arc<dyn AuditLog>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
    ) -> Self {
        Self {
            engine,
            store,
            payments,
            patients,
            audit,
            clock,
            ids,
        }
    }

    /// Audits a refusal and returns it.
    async fn refuse(
        &self,
        actor: &Principal,
        action: &str,
        subject: String,
        why: &str,
    ) -> HealthcareError {
        let record = AuditRecord::new(
            self.clock.now(),
            actor.clone(),
            action,
            subject,
            AuditOutcome::Denied,
        )
        .with("reason", why);
        if let Err(e) = self.audit.append(record).await {
            return e.into();
        }
        HealthcareError::Denied(why.to_owned())
    }

    fn may_bill(actor: &Principal, patient: &PersonId) -> bool {
        match actor {
            Principal::Cardholder { person } => person == patient,
            Principal::Operator { .. } | Principal::System => true,
            _ => false,
        }
    }

    async fn person_type(&self, patient: &PersonId) -> Result<PersonType, HealthcareError> {
        let record = self
            .patients
            .patient(patient)
            .await?
            .ok_or_else(|| HealthcareError::NotFound("patient".into()))?;
        record.person_type.ok_or_else(|| {
            HealthcareError::InvalidInput("the patient is not insured: bill in cash".into())
        })
    }

    /// Identifies the patient at the terminal (credential token, ID number or social
    /// security card number): operators and the system only.
    pub async fn identify(
        &self,
        actor: &Principal,
        identifier: &crate::appointments::PatientIdentifier,
    ) -> Result<PersonId, HealthcareError> {
        if !(actor.is_operator() || matches!(actor, Principal::System)) {
            return Err(self
                .refuse(
                    actor,
                    "billing.identify",
                    "patient:*".into(),
                    "only the hospital identifies patients by document",
                )
                .await);
        }
        self.patients
            .resolve(identifier)
            .await?
            .ok_or_else(|| HealthcareError::NotFound("patient for this identifier".into()))
    }

    /// Pre-settlement: the split the bill would get now, changing nothing.
    pub async fn quote(
        &self,
        actor: &Principal,
        request: &BillRequest,
    ) -> Result<SettlementBreakdown, HealthcareError> {
        if !Self::may_bill(actor, &request.patient) {
            return Err(self
                .refuse(
                    actor,
                    "billing.quote",
                    format!("person:{}", request.patient),
                    "only the patient or the hospital may quote a bill",
                )
                .await);
        }
        if !matches!(actor, Principal::System) {
            self.audit
                .append(AuditRecord::new(
                    self.clock.now(),
                    actor.clone(),
                    "billing.quote",
                    format!("person:{}", request.patient),
                    AuditOutcome::Succeeded,
                ))
                .await?;
        }
        let person_type = self.person_type(&request.patient).await?;
        let date = civil_date(self.clock.now());
        let accounts = self.payments.balances(&request.patient).await?;
        let accumulators = self
            .store
            .accumulators(&request.patient, date.year())
            .await?;
        self.engine.compute(&SettlementInput {
            person_type,
            hospital_level: request.hospital_level,
            visit_type: request.visit_type,
            date,
            items: &request.items,
            accounts,
            accumulators,
        })
    }

    /// Commits a plan; `Ok(false)` when it was decided on a stale read (decide again).
    async fn commit(&self, plan: &SettlementPlan) -> Result<bool, HealthcareError> {
        match self.store.commit(plan).await {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict(why)) => {
                debug!(%why, "stale settlement plan, deciding again");
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn contended() -> HealthcareError {
        HealthcareError::Conflict(
            "the patient's accumulators keep changing: retry the settlement".into(),
        )
    }

    /// A record that must exist (it was read or committed before).
    async fn stored(&self, id: &SettlementId) -> Result<SettlementRecord, HealthcareError> {
        self.store
            .settlement(id)
            .await?
            .ok_or_else(|| HealthcareError::NotFound(format!("settlement {id}")))
    }

    /// Settles a bill: begin (pending record and accumulators, one transaction), pay (one
    /// idempotent all-or-nothing batch of transfers), complete (one transaction).
    #[tracing::instrument(skip_all, fields(key = %key))]
    pub async fn settle(
        &self,
        actor: &Principal,
        key: &IdempotencyKey,
        request: &BillRequest,
    ) -> Result<SettlementRecord, HealthcareError> {
        if !Self::may_bill(actor, &request.patient) {
            return Err(self
                .refuse(
                    actor,
                    "billing.settle",
                    format!("person:{}", request.patient),
                    "only the patient or the hospital may settle a bill",
                )
                .await);
        }
        // Keys are the caller's: another principal's identical key is another bill.
        let key = &key.scoped_to(actor);
        let fingerprint = Fingerprint::of(request)?;
        let person_type = self.person_type(&request.patient).await?;
        let now = self.clock.now();
        let date = civil_date(now);
        let mut record = None;
        for _ in 0..MAX_SETTLEMENT_DECISIONS {
            if let Some(existing) = self.store.settlement_by_key(key).await? {
                match replay_settlement(existing, &fingerprint)? {
                    Replay::Done(done) => return Ok(done),
                    Replay::Resume(pending) => {
                        record = Some(pending);
                        break;
                    }
                }
            }
            let accumulators = self
                .store
                .accumulators(&request.patient, date.year())
                .await?;
            let accounts = self.payments.balances(&request.patient).await?;
            let plan = plan_settlement(
                &self.engine,
                SettlementFacts {
                    id: &SettlementId::generate(self.ids.as_ref()),
                    key,
                    fingerprint,
                    request,
                    person_type,
                    date,
                    accounts,
                    accumulators,
                    now,
                },
            )?;
            if self.commit(&plan).await? {
                record = Some(plan.record);
                break;
            }
        }
        let record = record.ok_or_else(Self::contended)?;
        match self.payments.execute(key, &record.transfers).await {
            Ok(receipt) => {
                let plan = complete_settlement(&record, &receipt, actor, now);
                if !self.commit(&plan).await? {
                    // Completed meanwhile by an identical retry: its record is the answer.
                    return self.stored(&record.id).await;
                }
                info!(settlement = %record.id, total = %record.breakdown.total, "settled");
                Ok(plan.record)
            }
            Err(PaymentError::Refused(why)) => {
                for _ in 0..MAX_SETTLEMENT_DECISIONS {
                    let current = self
                        .store
                        .accumulators(&record.request.patient, record.accumulators_before.year)
                        .await?;
                    let plan = fail_settlement(&record, current, &why, actor, now)?;
                    if self.commit(&plan).await? {
                        return Err(HealthcareError::PaymentRefused(why));
                    }
                    if self.stored(&record.id).await?.status != SettlementStatus::Pending {
                        break;
                    }
                }
                Err(HealthcareError::PaymentRefused(why))
            }
            Err(e @ PaymentError::Unknown(_)) => Err(e.into()),
        }
    }

    /// Reverses a completed settlement: mark it reversing (one transaction), send the
    /// opposite transfers, then mark it reversed and restore the accumulators (one
    /// transaction). Operators and the system only; idempotent per reversal key.
    #[tracing::instrument(skip_all, fields(settlement = %id))]
    pub async fn reverse(
        &self,
        actor: &Principal,
        id: &SettlementId,
        key: &IdempotencyKey,
    ) -> Result<SettlementRecord, HealthcareError> {
        if !(actor.is_operator() || matches!(actor, Principal::System)) {
            return Err(self
                .refuse(
                    actor,
                    "billing.reverse",
                    format!("settlement:{id}"),
                    "only the hospital or the insurer may reverse a settlement",
                )
                .await);
        }
        let mut reversing = None;
        for _ in 0..MAX_SETTLEMENT_DECISIONS {
            let record = self.stored(id).await?;
            match start_reversal(&record, key)? {
                ReversalStart::Done(done) => return Ok(done),
                ReversalStart::Resume(record) => {
                    reversing = Some(record);
                    break;
                }
                ReversalStart::Start(plan) => {
                    if self.commit(&plan).await? {
                        reversing = Some(plan.record);
                        break;
                    }
                }
            }
        }
        let record = reversing.ok_or_else(Self::contended)?;
        self.payments
            .execute(key, &reversal_transfers(&record))
            .await?;
        for _ in 0..MAX_SETTLEMENT_DECISIONS {
            let current = self
                .store
                .accumulators(&record.request.patient, record.accumulators_before.year)
                .await?;
            let plan = finish_reversal(&record, current, actor, self.clock.now())?;
            if self.commit(&plan).await? {
                info!("reversed");
                return Ok(plan.record);
            }
            let stored = self.stored(id).await?;
            if stored.status != SettlementStatus::Reversing {
                // Finished meanwhile by an identical retry.
                return Ok(stored);
            }
        }
        Err(Self::contended())
    }

    /// One settlement, for its patient or the facility.
    pub async fn settlement(
        &self,
        actor: &Principal,
        id: &SettlementId,
    ) -> Result<SettlementRecord, HealthcareError> {
        let record = self
            .store
            .settlement(id)
            .await?
            .ok_or_else(|| HealthcareError::NotFound(format!("settlement {id}")))?;
        if !Self::may_bill(actor, &record.request.patient) {
            return Err(self
                .refuse(
                    actor,
                    "billing.settlement",
                    format!("settlement:{id}"),
                    "not your settlement",
                )
                .await);
        }
        Ok(record)
    }
}
