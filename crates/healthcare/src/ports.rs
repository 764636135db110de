//! Every port of the crate: the storage ports (appointments, settlements, social insurance
//! records) and the remote ones (the patient directory, medical payments).
//!
//! Storage ports persist and check preconditions; they never decide. A state change comes
//! to them as a plan decided in [`crate::appointments::decide`] or [`crate::billing::decide`]
//! and is committed in one transaction together with its core records (audit, idempotency
//! outcomes). Memory implementations are in [`crate::memory`].

use chrono::{DateTime, NaiveDate, Utc};
use citycard_core::{CivilMonth, IdempotencyKey, PersonId, StoreError};

use crate::appointments::decide::{AppointmentPlan, PatientState, SlotState};
use crate::appointments::{Appointment, PatientIdentifier, PatientRecord, Slot, SlotView};
use crate::billing::decide::SettlementPlan;
use crate::billing::{MedicalTransfer, PaymentError, PaymentReceipt, SettlementRecord};
use crate::ids::{AppointmentId, DepartmentId, EmployerId, SettlementId, SlotId};
use crate::settlement::{AccountBalances, AnnualAccumulators};
use crate::social::{ContributionRecord, Employer, PersonCategory};

/// Storage of slots and appointments: reads, and commits of decided plans.
#[async_trait::async_trait]
pub trait AppointmentStore: Send + Sync {
    /// Creates or replaces a slot (capacity and status changes by the facility); the
    /// slot's counts are kept and its version moves.
    async fn put_slot(&self, slot: &Slot) -> Result<(), StoreError>;
    /// A slot with its counts.
    async fn slot(&self, id: &SlotId) -> Result<Option<SlotView>, StoreError>;
    /// A slot as a decision reads it: counts, version and first waitlisted appointment.
    async fn slot_state(&self, id: &SlotId) -> Result<Option<SlotState>, StoreError>;
    /// A patient's appointments and their version, as a decision reads them.
    async fn patient_state(&self, patient: &PersonId) -> Result<PatientState, StoreError>;
    /// The slots of a department on a date, ordered by start then id.
    async fn department_slots(
        &self,
        department: &DepartmentId,
        date: NaiveDate,
    ) -> Result<Vec<SlotView>, StoreError>;
    /// Commits a plan in one transaction: every precondition holds and every row and core
    /// record is written, or [`StoreError::Conflict`] (a moved version, a taken booking key
    /// or idempotency key) and nothing is.
    async fn commit(&self, plan: &AppointmentPlan) -> Result<(), StoreError>;
    /// One appointment.
    async fn appointment(&self, id: &AppointmentId) -> Result<Option<Appointment>, StoreError>;
    /// The appointment a patient booked with an idempotency key, if any.
    async fn appointment_by_key(
        &self,
        patient: &PersonId,
        key: &IdempotencyKey,
    ) -> Result<Option<Appointment>, StoreError>;
    /// A patient's appointments, oldest first.
    async fn patient_appointments(
        &self,
        patient: &PersonId,
    ) -> Result<Vec<Appointment>, StoreError>;
    /// Booked appointments whose session ended before `before`, oldest first, at most `limit`.
    async fn booked_ending_before(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Appointment>, StoreError>;
}

/// The port to identity: who a patient is and whether a delegation is live.
#[async_trait::async_trait]
pub trait PatientDirectory: Send + Sync {
    /// The person an identifier belongs to (a credential token only while it is valid).
    async fn resolve(&self, identifier: &PatientIdentifier)
    -> Result<Option<PersonId>, StoreError>;
    /// The person's record, or `None` when unknown.
    async fn patient(&self, person: &PersonId) -> Result<Option<PatientRecord>, StoreError>;
    /// Whether `actor`, a delegate, acts for `patient` with `scope` under a stored grant
    /// that names this delegate and this patient, holds the scope and is live (not
    /// expired, not revoked); a scope the principal merely claims proves nothing.
    async fn delegate_allowed(
        &self,
        actor: &citycard_core::Principal,
        patient: &PersonId,
        scope: citycard_core::DelegationScope,
    ) -> Result<bool, StoreError>;
}

/// The port to money: all-or-nothing idempotent transfer batches and account balances.
#[async_trait::async_trait]
pub trait MedicalPayments: Send + Sync {
    /// Executes every transfer or none, at most once per key; a retry with the same key and
    /// transfers returns the first receipt.
    async fn execute(
        &self,
        key: &IdempotencyKey,
        transfers: &[MedicalTransfer],
    ) -> Result<PaymentReceipt, PaymentError>;
    /// A person's medical account balances.
    async fn balances(&self, person: &PersonId) -> Result<AccountBalances, PaymentError>;
}

/// Settlement records and annual accumulators: reads, and commits of decided plans.
#[async_trait::async_trait]
pub trait SettlementStore: Send + Sync {
    /// A person's accumulators for a year (fresh when none).
    async fn accumulators(
        &self,
        person: &PersonId,
        year: i32,
    ) -> Result<AnnualAccumulators, StoreError>;
    /// Commits a plan in one transaction: the record's expected status (or a free key for
    /// a new record) and the accumulators' expected values hold, and the record, the new
    /// accumulators and the core records are written; else [`StoreError::Conflict`] and
    /// nothing is.
    async fn commit(&self, plan: &SettlementPlan) -> Result<(), StoreError>;
    /// One record.
    async fn settlement(&self, id: &SettlementId) -> Result<Option<SettlementRecord>, StoreError>;
    /// The record of a settlement key, if any.
    async fn settlement_by_key(
        &self,
        key: &IdempotencyKey,
    ) -> Result<Option<SettlementRecord>, StoreError>;
}

/// Storage of social insurance records.
#[async_trait::async_trait]
pub trait SocialInsuranceRecords: Send + Sync {
    /// Adds or replaces an employer.
    async fn put_employer(&self, employer: &Employer) -> Result<(), StoreError>;
    /// One employer.
    async fn employer(&self, id: &EmployerId) -> Result<Option<Employer>, StoreError>;
    /// Sets a person's category.
    async fn put_category(
        &self,
        person: &PersonId,
        category: PersonCategory,
    ) -> Result<(), StoreError>;
    /// A person's category.
    async fn category(&self, person: &PersonId) -> Result<Option<PersonCategory>, StoreError>;
    /// Adds or replaces records, keyed by (person, employer, month, insurance), all or none.
    async fn upsert(&self, records: &[ContributionRecord]) -> Result<(), StoreError>;
    /// A person's records in `[from, to]` (inclusive, either open), ordered by month,
    /// insurance, employer.
    async fn contributions(
        &self,
        person: &PersonId,
        from: Option<CivilMonth>,
        to: Option<CivilMonth>,
    ) -> Result<Vec<ContributionRecord>, StoreError>;
}
