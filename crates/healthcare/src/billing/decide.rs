//! Settlement decisions, pure: each step of the settlement saga as a plan.
//!
//! The service prefetches (the record of a key, the person's accumulators and balances),
//! decides here, and the [`SettlementStore`](crate::SettlementStore) commits the plan in one
//! transaction, refusing it when the record's status or the accumulators moved since they
//! were read.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use citycard_core::{
    AuditOutcome, AuditRecord, CoreChanges, Fingerprint, IdempotencyKey, PersonId, Principal,
};
use serde::{Deserialize, Serialize};

use super::{
    BillRequest, MedicalTransfer, PaymentReceipt, SettlementRecord, SettlementStatus,
    settlement_transfers,
};
use crate::error::HealthcareError;
use crate::ids::SettlementId;
use crate::settlement::{
    AccountBalances, AnnualAccumulators, PersonType, SettlementBreakdown, SettlementEngine,
    SettlementInput,
};

/// A compare-and-set of a person's annual accumulators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccumulatorsChange {
    /// The values the decision read (the store refuses the plan when they moved).
    pub before: AnnualAccumulators,
    /// The values to write.
    pub after: AnnualAccumulators,
}

/// One step of a settlement, committed in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementPlan {
    /// The record's stored status the decision read; `None` for a new record, whose id and
    /// key must be free.
    pub expected_status: Option<SettlementStatus>,
    /// The record to write (inserted, or replacing the stored one).
    pub record: SettlementRecord,
    /// The change of the patient's accumulators for the record's year, if any.
    pub accumulators: Option<AccumulatorsChange>,
    /// Audit records (and idempotency outcomes) of the step.
    pub core: CoreChanges,
}

impl SettlementPlan {
    /// The person whose accumulators the plan changes.
    pub fn person(&self) -> &PersonId {
        &self.record.request.patient
    }
}

/// Applies or removes a settlement's accumulator delta.
pub fn shift_accumulators(
    current: AnnualAccumulators,
    breakdown: &SettlementBreakdown,
    add: bool,
) -> Result<AnnualAccumulators, HealthcareError> {
    let (d, f) = (breakdown.deductible_applied, breakdown.fund_paid);
    Ok(AnnualAccumulators {
        year: current.year,
        deductible_met: if add {
            current.deductible_met.checked_add(d)
        } else {
            current.deductible_met.checked_sub(d)
        }?,
        fund_paid: if add {
            current.fund_paid.checked_add(f)
        } else {
            current.fund_paid.checked_sub(f)
        }?,
    })
}

/// What a stored record means for a settlement request with the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Begun, payment outcome unknown: pay again with the same transfers, then complete.
    Resume(SettlementRecord),
    /// Settled (or reversed since): the first result.
    Done(SettlementRecord),
}

/// Replays a stored record for a request with `fingerprint`.
pub fn replay_settlement(
    existing: SettlementRecord,
    fingerprint: &Fingerprint,
) -> Result<Replay, HealthcareError> {
    if existing.request_fingerprint != *fingerprint {
        return Err(HealthcareError::KeyReused);
    }
    match existing.status {
        SettlementStatus::Failed => Err(HealthcareError::PaymentRefused(
            "an earlier attempt with this key was refused: settle again with a new key".into(),
        )),
        SettlementStatus::Pending => Ok(Replay::Resume(existing)),
        _ => Ok(Replay::Done(existing)),
    }
}

/// What a new settlement is decided from.
#[derive(Debug, Clone, Copy)]
pub struct SettlementFacts<'a> {
    /// The record's id.
    pub id: &'a SettlementId,
    /// The settlement's key (scoped to the caller).
    pub key: &'a IdempotencyKey,
    /// The request's fingerprint.
    pub fingerprint: Fingerprint,
    /// The bill.
    pub request: &'a BillRequest,
    /// The insured person's category.
    pub person_type: PersonType,
    /// The civil date of the visit.
    pub date: NaiveDate,
    /// The person's account balances.
    pub accounts: AccountBalances,
    /// The person's accumulators (any year; the visit's year is used).
    pub accumulators: AnnualAccumulators,
    /// When decided.
    pub now: DateTime<Utc>,
}

/// Begins a settlement: the split, its transfers, and a pending record applying the new
/// accumulators on condition that they are still `facts.accumulators`.
pub fn plan_settlement(
    engine: &SettlementEngine,
    facts: SettlementFacts<'_>,
) -> Result<SettlementPlan, HealthcareError> {
    let request = facts.request;
    let before = facts.accumulators.for_year(facts.date.year());
    let breakdown = engine.compute(&SettlementInput {
        person_type: facts.person_type,
        hospital_level: request.hospital_level,
        visit_type: request.visit_type,
        date: facts.date,
        items: &request.items,
        accounts: facts.accounts,
        accumulators: before,
    })?;
    let record = SettlementRecord {
        id: facts.id.clone(),
        key: facts.key.clone(),
        request_fingerprint: facts.fingerprint,
        request: request.clone(),
        person_type: facts.person_type,
        date: facts.date,
        transfers: settlement_transfers(
            &request.patient,
            &request.hospital,
            &breakdown,
            request.cash_source,
        ),
        accumulators_before: before,
        status: SettlementStatus::Pending,
        reversal_key: None,
        created_at: facts.now,
        breakdown,
    };
    Ok(SettlementPlan {
        expected_status: None,
        accumulators: Some(AccumulatorsChange {
            before,
            after: record.breakdown.accumulators_after,
        }),
        record,
        core: CoreChanges::default(),
    })
}

/// Completes a paid settlement, with its audit record.
pub fn complete_settlement(
    record: &SettlementRecord,
    receipt: &PaymentReceipt,
    actor: &Principal,
    at: DateTime<Utc>,
) -> SettlementPlan {
    let mut done = record.clone();
    done.status = SettlementStatus::Completed;
    let audit = AuditRecord::new(
        at,
        actor.clone(),
        "healthcare.settle",
        format!("settlement:{}", record.id),
        AuditOutcome::Succeeded,
    )
    .with("total", record.breakdown.total.to_string())
    .with("fund", record.breakdown.fund_paid.to_string())
    .with("reference", receipt.reference.clone());
    SettlementPlan {
        expected_status: Some(SettlementStatus::Pending),
        record: done,
        accumulators: None,
        core: CoreChanges::audited(audit),
    }
}

/// Fails a settlement whose payment was refused: the accumulators it applied are taken off
/// `current`, and the refusal is audited.
pub fn fail_settlement(
    record: &SettlementRecord,
    current: AnnualAccumulators,
    why: &str,
    actor: &Principal,
    at: DateTime<Utc>,
) -> Result<SettlementPlan, HealthcareError> {
    let mut failed = record.clone();
    failed.status = SettlementStatus::Failed;
    let audit = AuditRecord::new(
        at,
        actor.clone(),
        "healthcare.settle",
        format!("settlement:{}", record.id),
        AuditOutcome::Failed,
    )
    .with("reason", why);
    Ok(SettlementPlan {
        expected_status: Some(SettlementStatus::Pending),
        accumulators: Some(AccumulatorsChange {
            before: current,
            after: shift_accumulators(current, &record.breakdown, false)?,
        }),
        record: failed,
        core: CoreChanges::audited(audit),
    })
}

/// The first step of a reversal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversalStart {
    /// Mark the record reversing under the key: commit the plan, then pay.
    Start(SettlementPlan),
    /// Already reversing under this key: pay again (same transfers), then finish.
    Resume(SettlementRecord),
    /// Already reversed under this key: the first result.
    Done(SettlementRecord),
}

/// Decides the first step of reversing `record` under `key`.
pub fn start_reversal(
    record: &SettlementRecord,
    key: &IdempotencyKey,
) -> Result<ReversalStart, HealthcareError> {
    let same_key = record.reversal_key.as_ref() == Some(key);
    match record.status {
        SettlementStatus::Completed => {
            let mut reversing = record.clone();
            reversing.status = SettlementStatus::Reversing;
            reversing.reversal_key = Some(key.clone());
            Ok(ReversalStart::Start(SettlementPlan {
                expected_status: Some(SettlementStatus::Completed),
                record: reversing,
                accumulators: None,
                core: CoreChanges::default(),
            }))
        }
        SettlementStatus::Reversing if same_key => Ok(ReversalStart::Resume(record.clone())),
        SettlementStatus::Reversed if same_key => Ok(ReversalStart::Done(record.clone())),
        SettlementStatus::Reversing | SettlementStatus::Reversed => Err(HealthcareError::KeyReused),
        other => Err(HealthcareError::Conflict(format!(
            "a {} settlement cannot be reversed",
            other.code()
        ))),
    }
}

/// The transfers that undo a settlement's.
pub fn reversal_transfers(record: &SettlementRecord) -> Vec<MedicalTransfer> {
    record
        .transfers
        .iter()
        .map(|t| MedicalTransfer {
            from: t.to.clone(),
            to: t.from.clone(),
            amount: t.amount,
        })
        .collect()
}

/// Finishes a reversal whose transfers were sent: the record reversed, exactly what the
/// settlement added taken off `current`, audited.
pub fn finish_reversal(
    record: &SettlementRecord,
    current: AnnualAccumulators,
    actor: &Principal,
    at: DateTime<Utc>,
) -> Result<SettlementPlan, HealthcareError> {
    let mut reversed = record.clone();
    reversed.status = SettlementStatus::Reversed;
    let audit = AuditRecord::new(
        at,
        actor.clone(),
        "healthcare.reverse",
        format!("settlement:{}", record.id),
        AuditOutcome::Succeeded,
    );
    Ok(SettlementPlan {
        expected_status: Some(SettlementStatus::Reversing),
        accumulators: Some(AccumulatorsChange {
            before: current,
            after: shift_accumulators(current, &record.breakdown, false)?,
        }),
        record: reversed,
        core: CoreChanges::audited(audit),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use chrono::TimeZone;
    use citycard_core::Money;

    use super::*;
    use crate::billing::CashSource;
    use crate::settlement::{CatalogueClass, ChargeItem, HospitalLevel, VisitType};

    fn request(fen: i64) -> BillRequest {
        BillRequest {
            patient: "psn-1".parse().unwrap(),
            hospital: "hsp-1".parse().unwrap(),
            hospital_level: HospitalLevel::Community,
            visit_type: VisitType::Outpatient,
            items: vec![ChargeItem::new(
                "consult",
                CatalogueClass::A,
                Money::from_fen(fen),
                1,
            )],
            cash_source: CashSource::EWallet,
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 10, 2, 0, 0).unwrap()
    }

    fn begun(fen: i64, before: AnnualAccumulators) -> SettlementPlan {
        let engine = SettlementEngine::hangzhou().unwrap();
        let req = request(fen);
        plan_settlement(
            &engine,
            SettlementFacts {
                id: &"stl-1".parse().unwrap(),
                key: &"k-1".parse().unwrap(),
                fingerprint: Fingerprint::of(&req).unwrap(),
                request: &req,
                person_type: PersonType::Resident,
                date: NaiveDate::from_ymd_opt(2026, 3, 10).unwrap(),
                accounts: AccountBalances::default(),
                accumulators: before,
                now: now(),
            },
        )
        .unwrap()
    }

    #[test]
    fn a_new_settlement_is_pending_and_applies_its_accumulators_on_condition() {
        let plan = begun(50_000, AnnualAccumulators::new(2026));
        assert_eq!(plan.expected_status, None);
        assert_eq!(plan.record.status, SettlementStatus::Pending);
        let change = plan.accumulators.unwrap();
        assert_eq!(change.before, AnnualAccumulators::new(2026));
        assert_eq!(change.after.deductible_met, Money::from_fen(30_000));
        assert_eq!(change.after, plan.record.breakdown.accumulators_after);
        // ¥300 deductible, 70% of ¥200 from the fund, the rest from the e-wallet.
        let total: i64 = plan.record.transfers.iter().map(|t| t.amount.fen()).sum();
        assert_eq!(total, 50_000);
        assert!(plan.core.is_empty());
        // Accumulators of another year start the visit's year afresh.
        let other = begun(50_000, AnnualAccumulators::new(2025));
        assert_eq!(
            other.accumulators.unwrap().before,
            AnnualAccumulators::new(2026)
        );
    }

    #[test]
    fn completion_failure_and_reversal_are_plans_on_the_expected_status() {
        let pending = begun(50_000, AnnualAccumulators::new(2026)).record;
        let receipt = PaymentReceipt {
            reference: "r-1".into(),
        };
        let done = complete_settlement(&pending, &receipt, &Principal::System, now());
        assert_eq!(done.expected_status, Some(SettlementStatus::Pending));
        assert_eq!(done.record.status, SettlementStatus::Completed);
        assert_eq!(done.core.audit[0].outcome, AuditOutcome::Succeeded);
        assert!(done.accumulators.is_none());

        let current = pending.breakdown.accumulators_after;
        let failed =
            fail_settlement(&pending, current, "no funds", &Principal::System, now()).unwrap();
        assert_eq!(failed.record.status, SettlementStatus::Failed);
        assert_eq!(
            failed.accumulators.unwrap().after,
            AnnualAccumulators::new(2026)
        );
        assert_eq!(failed.core.audit[0].outcome, AuditOutcome::Failed);

        let key: IdempotencyKey = "rev-1".parse().unwrap();
        let ReversalStart::Start(start) = start_reversal(&done.record, &key).unwrap() else {
            panic!("expected a start")
        };
        assert_eq!(start.expected_status, Some(SettlementStatus::Completed));
        assert_eq!(start.record.reversal_key, Some(key.clone()));
        assert_eq!(
            start_reversal(&start.record, &key).unwrap(),
            ReversalStart::Resume(start.record.clone())
        );
        assert!(matches!(
            start_reversal(&start.record, &"rev-2".parse().unwrap()),
            Err(HealthcareError::KeyReused)
        ));
        assert!(matches!(
            start_reversal(&pending, &key),
            Err(HealthcareError::Conflict(_))
        ));
        let back = reversal_transfers(&start.record);
        assert_eq!(back.len(), start.record.transfers.len());
        assert_eq!(back[0].from, start.record.transfers[0].to);
        let finished = finish_reversal(&start.record, current, &Principal::System, now()).unwrap();
        assert_eq!(finished.record.status, SettlementStatus::Reversed);
        assert_eq!(
            finished.accumulators.unwrap().after,
            AnnualAccumulators::new(2026)
        );
    }

    #[test]
    fn replays_tell_a_retry_from_a_reused_key() {
        let mut record = begun(50_000, AnnualAccumulators::new(2026)).record;
        let fp = record.request_fingerprint;
        assert_eq!(
            replay_settlement(record.clone(), &fp).unwrap(),
            Replay::Resume(record.clone())
        );
        assert!(matches!(
            replay_settlement(record.clone(), &Fingerprint::of(&1u8).unwrap()),
            Err(HealthcareError::KeyReused)
        ));
        record.status = SettlementStatus::Failed;
        assert!(matches!(
            replay_settlement(record.clone(), &fp),
            Err(HealthcareError::PaymentRefused(_))
        ));
        record.status = SettlementStatus::Reversed;
        assert_eq!(
            replay_settlement(record.clone(), &fp).unwrap(),
            Replay::Done(record)
        );
    }
}
