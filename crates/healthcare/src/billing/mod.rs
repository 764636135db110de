//! Bills: pre-settlement (quotes), settlement and reversal through the payments port.
//!
//! A settlement is a saga of three steps, each recorded before the next begins:
//!
//! 1. **Begin** (one transaction in the [`SettlementStore`](crate::SettlementStore)): the
//!    split is decided from the person's accumulators and balances
//!    ([`decide::plan_settlement`]) and committed as a pending record together with the
//!    new accumulators, on condition that the accumulators are still the ones read (a
//!    concurrent settlement for the same person makes this one decide again) and that the
//!    key is new.
//! 2. **Pay** (the [`MedicalPayments`](crate::MedicalPayments) port, idempotent by the
//!    settlement's key): one all-or-nothing batch of transfers.
//! 3. **Complete** (one transaction): the record completed with its audit record, or failed
//!    with the accumulators restored when the payment was refused. When the payment outcome
//!    is unknown the record stays pending and a retry with the same key re-sends the *same*
//!    transfers, so nothing is paid twice.
//!
//! So a settlement is two write transactions in the settlement store plus the payment's
//! own. The pending record cannot be folded into the completion: it is what makes the
//! payment's transfers recoverable after a crash between paying and completing (a retry
//! must re-send exactly what may have been paid, even when the accumulators have moved
//! since). A settlement's idempotency is its record (its key is unique and the record
//! keeps the request's fingerprint), so no separate idempotency outcome is written.
//!
//! Reversal is the same saga: mark the record reversing under the reversal's key (one
//! transaction), send the opposite transfers under that key, then mark it reversed and
//! subtract exactly what the settlement added to the accumulators (one transaction).

use chrono::{DateTime, NaiveDate, Utc};
use citycard_core::{ClassifiedError, ErrorClass, Fingerprint, IdempotencyKey, Money, PersonId};
use serde::{Deserialize, Serialize};

use crate::error::HealthcareError;
use crate::ids::{HospitalId, SettlementId};
use crate::settlement::{
    AnnualAccumulators, ChargeItem, HospitalLevel, PersonType, SettlementBreakdown, VisitType,
};

pub mod decide;
mod service;

pub use service::{BillingService, MAX_SETTLEMENT_DECISIONS};

/// An account the payments port moves money between.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum PaymentAccount {
    /// A person's current-year medical account.
    CurrentYearAccount(PersonId),
    /// A person's accumulated medical account.
    AccumulatedAccount(PersonId),
    /// A person's citizen-card e-wallet.
    EWallet(PersonId),
    /// The medical insurance pooled fund.
    PooledFund,
    /// A hospital's receivable account.
    Hospital(HospitalId),
}

/// One transfer of a settlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MedicalTransfer {
    /// Debited account.
    pub from: PaymentAccount,
    /// Credited account.
    pub to: PaymentAccount,
    /// Amount (positive).
    pub amount: Money,
}

/// The payments port's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentReceipt {
    /// The ledger's reference for the batch.
    pub reference: String,
}

/// Why the payments port did not pay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PaymentError {
    /// Definitively refused (insufficient funds, frozen account): nothing was moved.
    #[error("payment refused, nothing was moved: {0}")]
    Refused(String),
    /// The outcome is unknown (timeout, lost answer): retry with the same key.
    #[error("payment outcome unknown, retry with the same key: {0}")]
    Unknown(String),
}

impl ClassifiedError for PaymentError {
    fn class(&self) -> ErrorClass {
        match self {
            PaymentError::Refused(_) => ErrorClass::Conflict,
            PaymentError::Unknown(_) => ErrorClass::Unavailable,
        }
    }
}

impl From<PaymentError> for HealthcareError {
    fn from(e: PaymentError) -> Self {
        match e {
            PaymentError::Refused(why) => HealthcareError::PaymentRefused(why),
            PaymentError::Unknown(_) => HealthcareError::PaymentUnknown,
        }
    }
}

/// Where the patient's cash share comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CashSource {
    /// The citizen-card e-wallet (transferred in the same batch).
    EWallet,
    /// Paid at the counter outside the card system (not transferred).
    Counter,
}

/// A bill to quote or settle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillRequest {
    /// The insured patient.
    pub patient: PersonId,
    /// The hospital.
    pub hospital: HospitalId,
    /// The hospital's level.
    pub hospital_level: HospitalLevel,
    /// Outpatient or inpatient.
    pub visit_type: VisitType,
    /// The charge items.
    pub items: Vec<ChargeItem>,
    /// Where the cash share comes from.
    pub cash_source: CashSource,
}

/// The life of a settlement record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettlementStatus {
    /// Accumulators applied; payment sent or about to be.
    Pending,
    /// Paid.
    Completed,
    /// Payment refused; accumulators restored.
    Failed,
    /// Reversal sent or about to be.
    Reversing,
    /// Reversed; money and accumulators restored.
    Reversed,
}

impl SettlementStatus {
    /// A stable code.
    pub fn code(self) -> &'static str {
        match self {
            SettlementStatus::Pending => "pending",
            SettlementStatus::Completed => "completed",
            SettlementStatus::Failed => "failed",
            SettlementStatus::Reversing => "reversing",
            SettlementStatus::Reversed => "reversed",
        }
    }

    /// The status for a code.
    pub fn from_code(code: &str) -> Option<SettlementStatus> {
        use SettlementStatus::*;
        [Pending, Completed, Failed, Reversing, Reversed]
            .into_iter()
            .find(|s| s.code() == code)
    }
}

/// A settlement as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementRecord {
    /// Its id.
    pub id: SettlementId,
    /// The settlement's idempotency key (unique).
    pub key: IdempotencyKey,
    /// Fingerprint of the [`BillRequest`], to tell a retry from a reused key.
    pub request_fingerprint: Fingerprint,
    /// The bill.
    pub request: BillRequest,
    /// The insured person's category at settlement.
    pub person_type: PersonType,
    /// The civil date of the visit.
    pub date: NaiveDate,
    /// The split.
    pub breakdown: SettlementBreakdown,
    /// The accumulators the split started from.
    pub accumulators_before: AnnualAccumulators,
    /// The transfers sent.
    pub transfers: Vec<MedicalTransfer>,
    /// Where it stands.
    pub status: SettlementStatus,
    /// The reversal's idempotency key, once reversal started.
    pub reversal_key: Option<IdempotencyKey>,
    /// When created.
    pub created_at: DateTime<Utc>,
}

/// The transfers of a split: accounts, fund and (optionally) e-wallet to the hospital.
pub fn settlement_transfers(
    patient: &PersonId,
    hospital: &HospitalId,
    breakdown: &SettlementBreakdown,
    cash_source: CashSource,
) -> Vec<MedicalTransfer> {
    let to = PaymentAccount::Hospital(hospital.clone());
    let mut parts = vec![
        (
            PaymentAccount::CurrentYearAccount(patient.clone()),
            breakdown.current_year_account_paid,
        ),
        (
            PaymentAccount::AccumulatedAccount(patient.clone()),
            breakdown.accumulated_account_paid,
        ),
        (PaymentAccount::PooledFund, breakdown.fund_paid),
    ];
    if cash_source == CashSource::EWallet {
        parts.push((
            PaymentAccount::EWallet(patient.clone()),
            breakdown.cash_paid,
        ));
    }
    parts
        .into_iter()
        .filter(|(_, amount)| amount.is_positive())
        .map(|(from, amount)| MedicalTransfer {
            from,
            to: to.clone(),
            amount,
        })
        .collect()
}

/// Money that balances: the sum of a batch's transfers (for reconciliation).
pub fn transfers_total(transfers: &[MedicalTransfer]) -> Result<Money, HealthcareError> {
    Ok(Money::checked_sum(transfers.iter().map(|t| t.amount))?)
}
