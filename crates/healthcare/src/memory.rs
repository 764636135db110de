//! The memory adapters of every port: tests, demos, and hosts without a database.
//!
//! The storage adapters decide nothing: they check a plan's preconditions and write it,
//! under one mutex each, so a commit is atomic. Their core records (audit, idempotency
//! outcomes) go to a [`MemoryCore`], their own unless given a shared one with `with_core`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, NaiveDate, Utc};
use citycard_core::{
    CivilMonth, Fingerprint, IdempotencyKey, MemoryCore, Money, PersonId, StoreError,
};

use crate::appointments::decide::{AppointmentPlan, PatientState, Precondition, SlotState};
use crate::appointments::{
    Appointment, AppointmentStatus, PatientIdentifier, PatientRecord, Slot, SlotView,
};
use crate::billing::decide::SettlementPlan;
use crate::billing::{
    MedicalTransfer, PaymentAccount, PaymentError, PaymentReceipt, SettlementRecord,
};
use crate::ids::{AppointmentId, DepartmentId, EmployerId, SettlementId, SlotId};
use crate::ports::{
    AppointmentStore, MedicalPayments, PatientDirectory, SettlementStore, SocialInsuranceRecords,
};
use crate::settlement::{AccountBalances, AnnualAccumulators};
use crate::social::{ContributionRecord, Employer, Insurance, PersonCategory};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Default)]
struct AppointmentData {
    /// Each slot with its counts and version.
    slots: HashMap<SlotId, (SlotView, u64)>,
    appointments: HashMap<AppointmentId, Appointment>,
    /// Each patient's version and appointments, oldest first.
    patients: HashMap<PersonId, (u64, Vec<AppointmentId>)>,
    /// Each slot's appointments, oldest first (the waitlist's order).
    by_slot: HashMap<SlotId, Vec<AppointmentId>>,
    by_key: HashMap<(PersonId, IdempotencyKey), AppointmentId>,
}

impl AppointmentData {
    fn check(&self, plan: &AppointmentPlan) -> Result<(), StoreError> {
        for p in &plan.preconditions {
            match p {
                Precondition::Slot { slot, version } => {
                    let current = self.slots.get(slot).map(|(_, v)| *v);
                    if current != Some(*version) {
                        return Err(StoreError::Conflict(format!(
                            "slot {slot} changed since it was read"
                        )));
                    }
                }
                Precondition::Patient { patient, version } => {
                    let current = self.patients.get(patient).map_or(0, |(v, _)| *v);
                    if current != *version {
                        return Err(StoreError::Conflict(
                            "the patient's appointments changed since they were read".into(),
                        ));
                    }
                }
            }
        }
        for c in &plan.slots {
            if !self.slots.contains_key(&c.slot) {
                return Err(StoreError::Conflict(format!("slot {} is unknown", c.slot)));
            }
        }
        for a in &plan.inserts {
            if self.appointments.contains_key(&a.id)
                || self
                    .by_key
                    .contains_key(&(a.patient.clone(), a.booking_key.clone()))
                || !self.slots.contains_key(&a.slot)
            {
                return Err(StoreError::Conflict(format!(
                    "appointment {} or its booking key is taken",
                    a.id
                )));
            }
        }
        for a in &plan.updates {
            if self
                .appointments
                .get(&a.id)
                .is_none_or(|stored| stored.patient != a.patient || stored.slot != a.slot)
            {
                return Err(StoreError::Conflict(format!(
                    "appointment {} is not stored as planned",
                    a.id
                )));
            }
        }
        Ok(())
    }

    fn write(&mut self, plan: &AppointmentPlan) {
        for c in &plan.slots {
            if let Some((view, version)) = self.slots.get_mut(&c.slot) {
                view.booked = c.booked;
                view.waitlisted = c.waitlisted;
                view.issued = c.issued;
                *version += 1;
            }
        }
        for patient in plan.patients() {
            self.patients.entry(patient.clone()).or_default().0 += 1;
        }
        for a in &plan.inserts {
            self.by_key
                .insert((a.patient.clone(), a.booking_key.clone()), a.id.clone());
            self.patients
                .entry(a.patient.clone())
                .or_default()
                .1
                .push(a.id.clone());
            self.by_slot
                .entry(a.slot.clone())
                .or_default()
                .push(a.id.clone());
            self.appointments.insert(a.id.clone(), a.clone());
        }
        for a in &plan.updates {
            self.appointments.insert(a.id.clone(), a.clone());
        }
    }

    fn patient_appointments(&self, patient: &PersonId) -> Vec<Appointment> {
        self.patients
            .get(patient)
            .map(|(_, ids)| {
                ids.iter()
                    .filter_map(|id| self.appointments.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Slots and appointments in memory.
#[derive(Debug, Default)]
pub struct MemoryAppointmentStore {
    data: Mutex<AppointmentData>,
    core: MemoryCore,
}

impl MemoryAppointmentStore {
    /// An empty store with its own core records.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that writes core records (audit, idempotency outcomes) to `core`.
    pub fn with_core(core: MemoryCore) -> Self {
        Self {
            data: Mutex::default(),
            core,
        }
    }
}

#[async_trait::async_trait]
impl AppointmentStore for MemoryAppointmentStore {
    async fn put_slot(&self, slot: &Slot) -> Result<(), StoreError> {
        let mut data = lock(&self.data);
        let entry = data.slots.entry(slot.id.clone()).or_insert_with(|| {
            (
                SlotView {
                    slot: slot.clone(),
                    booked: 0,
                    waitlisted: 0,
                    issued: 0,
                },
                0,
            )
        });
        entry.0.slot = slot.clone();
        entry.1 += 1;
        Ok(())
    }

    async fn slot(&self, id: &SlotId) -> Result<Option<SlotView>, StoreError> {
        Ok(lock(&self.data).slots.get(id).map(|(v, _)| v.clone()))
    }

    async fn slot_state(&self, id: &SlotId) -> Result<Option<SlotState>, StoreError> {
        let data = lock(&self.data);
        Ok(data.slots.get(id).map(|(view, version)| SlotState {
            view: view.clone(),
            version: *version,
            first_waitlisted: data
                .by_slot
                .get(id)
                .into_iter()
                .flatten()
                .filter_map(|a| data.appointments.get(a))
                .find(|a| a.status == AppointmentStatus::Waitlist)
                .cloned(),
        }))
    }

    async fn patient_state(&self, patient: &PersonId) -> Result<PatientState, StoreError> {
        let data = lock(&self.data);
        Ok(PatientState {
            patient: patient.clone(),
            version: data.patients.get(patient).map_or(0, |(v, _)| *v),
            appointments: data.patient_appointments(patient),
        })
    }

    async fn department_slots(
        &self,
        department: &DepartmentId,
        date: NaiveDate,
    ) -> Result<Vec<SlotView>, StoreError> {
        let data = lock(&self.data);
        let mut out: Vec<SlotView> = data
            .slots
            .values()
            .map(|(v, _)| v)
            .filter(|v| &v.slot.department == department && v.slot.date == date)
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.slot.start, &a.slot.id).cmp(&(b.slot.start, &b.slot.id)));
        Ok(out)
    }

    async fn commit(&self, plan: &AppointmentPlan) -> Result<(), StoreError> {
        let mut data = lock(&self.data);
        data.check(plan)?;
        self.core.check(&plan.core)?;
        data.write(plan);
        self.core.commit(&plan.core)
    }

    async fn appointment(&self, id: &AppointmentId) -> Result<Option<Appointment>, StoreError> {
        Ok(lock(&self.data).appointments.get(id).cloned())
    }

    async fn appointment_by_key(
        &self,
        patient: &PersonId,
        key: &IdempotencyKey,
    ) -> Result<Option<Appointment>, StoreError> {
        let data = lock(&self.data);
        Ok(data
            .by_key
            .get(&(patient.clone(), key.clone()))
            .and_then(|id| data.appointments.get(id))
            .cloned())
    }

    async fn patient_appointments(
        &self,
        patient: &PersonId,
    ) -> Result<Vec<Appointment>, StoreError> {
        Ok(lock(&self.data).patient_appointments(patient))
    }

    async fn booked_ending_before(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Appointment>, StoreError> {
        let data = lock(&self.data);
        let mut out: Vec<Appointment> = data
            .appointments
            .values()
            .filter(|a| a.status == AppointmentStatus::Booked && a.end < before)
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.end, &a.id).cmp(&(b.end, &b.id)));
        out.truncate(limit);
        Ok(out)
    }
}

#[derive(Debug, Default)]
struct SettlementData {
    accumulators: HashMap<(PersonId, i32), AnnualAccumulators>,
    records: HashMap<SettlementId, SettlementRecord>,
    by_key: HashMap<IdempotencyKey, SettlementId>,
}

impl SettlementData {
    fn acc(&self, person: &PersonId, year: i32) -> AnnualAccumulators {
        self.accumulators
            .get(&(person.clone(), year))
            .copied()
            .unwrap_or(AnnualAccumulators::new(year))
    }

    fn check(&self, plan: &SettlementPlan) -> Result<(), StoreError> {
        let record = &plan.record;
        let stored = self.records.get(&record.id);
        match plan.expected_status {
            None if stored.is_some() || self.by_key.contains_key(&record.key) => {
                return Err(StoreError::Conflict(format!(
                    "settlement key {} is already used",
                    record.key
                )));
            }
            Some(expected) if stored.is_none_or(|s| s.status != expected) => {
                return Err(StoreError::Conflict(format!(
                    "settlement {} is no longer {}",
                    record.id,
                    expected.code()
                )));
            }
            _ => {}
        }
        if let Some(change) = &plan.accumulators
            && self.acc(plan.person(), change.before.year) != change.before
        {
            return Err(StoreError::Conflict(
                "the patient's accumulators changed since they were read".into(),
            ));
        }
        Ok(())
    }
}

/// Settlement records and accumulators in memory.
#[derive(Debug, Default)]
pub struct MemorySettlementStore {
    data: Mutex<SettlementData>,
    core: MemoryCore,
}

impl MemorySettlementStore {
    /// An empty store with its own core records.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that writes core records (audit, idempotency outcomes) to `core`.
    pub fn with_core(core: MemoryCore) -> Self {
        Self {
            data: Mutex::default(),
            core,
        }
    }
}

#[async_trait::async_trait]
impl SettlementStore for MemorySettlementStore {
    async fn accumulators(
        &self,
        person: &PersonId,
        year: i32,
    ) -> Result<AnnualAccumulators, StoreError> {
        Ok(lock(&self.data).acc(person, year))
    }

    async fn commit(&self, plan: &SettlementPlan) -> Result<(), StoreError> {
        let mut data = lock(&self.data);
        data.check(plan)?;
        self.core.check(&plan.core)?;
        if let Some(change) = &plan.accumulators {
            data.accumulators
                .insert((plan.person().clone(), change.after.year), change.after);
        }
        let record = &plan.record;
        data.by_key.insert(record.key.clone(), record.id.clone());
        data.records.insert(record.id.clone(), record.clone());
        self.core.commit(&plan.core)
    }

    async fn settlement(&self, id: &SettlementId) -> Result<Option<SettlementRecord>, StoreError> {
        Ok(lock(&self.data).records.get(id).cloned())
    }

    async fn settlement_by_key(
        &self,
        key: &IdempotencyKey,
    ) -> Result<Option<SettlementRecord>, StoreError> {
        let data = lock(&self.data);
        Ok(data
            .by_key
            .get(key)
            .and_then(|id| data.records.get(id))
            .cloned())
    }
}

/// A patient directory in memory (tests, demos, hosts without identity).
#[derive(Debug, Default)]
pub struct MemoryPatientDirectory {
    inner: std::sync::RwLock<MemoryDirectoryInner>,
}

#[derive(Debug, Default)]
struct MemoryDirectoryInner {
    identifiers: std::collections::HashMap<PatientIdentifier, PersonId>,
    patients: std::collections::HashMap<PersonId, PatientRecord>,
    delegations: std::collections::HashMap<
        citycard_core::DelegationId,
        (PersonId, PersonId, citycard_core::Scopes),
    >,
}

impl MemoryPatientDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a patient.
    pub fn put(&self, record: PatientRecord) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.patients.insert(record.person.clone(), record);
    }

    /// Records a live delegation granted by `patient` to `delegate` with `scopes`.
    pub fn grant(
        &self,
        delegation: citycard_core::DelegationId,
        delegate: PersonId,
        patient: PersonId,
        scopes: citycard_core::Scopes,
    ) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner
            .delegations
            .insert(delegation, (delegate, patient, scopes));
    }

    /// Links an identifier to a person.
    pub fn link(&self, identifier: PatientIdentifier, person: PersonId) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.identifiers.insert(identifier, person);
    }

    /// Revokes a delegation.
    pub fn revoke(&self, delegation: &citycard_core::DelegationId) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.delegations.remove(delegation);
    }
}

#[async_trait::async_trait]
impl PatientDirectory for MemoryPatientDirectory {
    async fn resolve(
        &self,
        identifier: &PatientIdentifier,
    ) -> Result<Option<PersonId>, StoreError> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        Ok(inner.identifiers.get(identifier).cloned())
    }

    async fn patient(&self, person: &PersonId) -> Result<Option<PatientRecord>, StoreError> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        Ok(inner.patients.get(person).cloned())
    }

    async fn delegate_allowed(
        &self,
        actor: &citycard_core::Principal,
        patient: &PersonId,
        scope: citycard_core::DelegationScope,
    ) -> Result<bool, StoreError> {
        let citycard_core::Principal::Delegate {
            delegate,
            on_behalf_of,
            delegation,
            scopes,
        } = actor
        else {
            return Ok(false);
        };
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        Ok(on_behalf_of == patient
            && scopes.contains(scope)
            && inner
                .delegations
                .get(delegation)
                .is_some_and(|(d, p, s)| d == delegate && p == patient && s.contains(scope)))
    }
}

/// Payments in memory: personal accounts cannot go negative; the fund and hospitals can.
#[derive(Debug, Default)]
pub struct MemoryMedicalPayments {
    inner: Mutex<MemoryPaymentsInner>,
}

#[derive(Debug, Default)]
struct MemoryPaymentsInner {
    balances: HashMap<PaymentAccount, Money>,
    done: HashMap<IdempotencyKey, (Fingerprint, PaymentReceipt)>,
}

impl MemoryMedicalPayments {
    /// No accounts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets an account's balance.
    pub fn set_balance(&self, account: PaymentAccount, amount: Money) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.balances.insert(account, amount);
    }

    /// An account's balance (zero when unknown).
    pub fn balance(&self, account: &PaymentAccount) -> Money {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.balances.get(account).copied().unwrap_or(Money::ZERO)
    }
}

#[async_trait::async_trait]
impl MedicalPayments for MemoryMedicalPayments {
    async fn execute(
        &self,
        key: &IdempotencyKey,
        transfers: &[MedicalTransfer],
    ) -> Result<PaymentReceipt, PaymentError> {
        let fingerprint =
            Fingerprint::of(transfers).map_err(|e| PaymentError::Refused(e.to_string()))?;
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((fp, receipt)) = inner.done.get(key) {
            return if *fp == fingerprint {
                Ok(receipt.clone())
            } else {
                Err(PaymentError::Refused(
                    "the key was used for other transfers".into(),
                ))
            };
        }
        let mut next = inner.balances.clone();
        for t in transfers {
            if !t.amount.is_positive() {
                return Err(PaymentError::Refused("amounts must be positive".into()));
            }
            let from = next.entry(t.from.clone()).or_insert(Money::ZERO);
            let after = from
                .checked_sub(t.amount)
                .map_err(|e| PaymentError::Refused(e.to_string()))?;
            let personal = !matches!(
                t.from,
                PaymentAccount::PooledFund | PaymentAccount::Hospital(_)
            );
            if personal && after.is_negative() {
                return Err(PaymentError::Refused("insufficient funds".into()));
            }
            *from = after;
            let to = next.entry(t.to.clone()).or_insert(Money::ZERO);
            *to = to
                .checked_add(t.amount)
                .map_err(|e| PaymentError::Refused(e.to_string()))?;
        }
        inner.balances = next;
        let receipt = PaymentReceipt {
            reference: format!("mem-{}", inner.done.len() + 1),
        };
        inner
            .done
            .insert(key.clone(), (fingerprint, receipt.clone()));
        Ok(receipt)
    }

    async fn balances(&self, person: &PersonId) -> Result<AccountBalances, PaymentError> {
        Ok(AccountBalances {
            current_year: self.balance(&PaymentAccount::CurrentYearAccount(person.clone())),
            accumulated: self.balance(&PaymentAccount::AccumulatedAccount(person.clone())),
        })
    }
}

/// Social insurance records in memory.
#[derive(Debug, Default)]
pub struct MemorySocialInsuranceRecords {
    inner: Mutex<MemorySocialInner>,
}

type RecordKey = (CivilMonth, Insurance, EmployerId);

#[derive(Debug, Default)]
struct MemorySocialInner {
    employers: HashMap<EmployerId, Employer>,
    categories: HashMap<PersonId, PersonCategory>,
    records: HashMap<PersonId, BTreeMap<RecordKey, ContributionRecord>>,
}

impl MemorySocialInsuranceRecords {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemorySocialInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl SocialInsuranceRecords for MemorySocialInsuranceRecords {
    async fn put_employer(&self, employer: &Employer) -> Result<(), StoreError> {
        self.lock()
            .employers
            .insert(employer.id.clone(), employer.clone());
        Ok(())
    }

    async fn employer(&self, id: &EmployerId) -> Result<Option<Employer>, StoreError> {
        Ok(self.lock().employers.get(id).cloned())
    }

    async fn put_category(
        &self,
        person: &PersonId,
        category: PersonCategory,
    ) -> Result<(), StoreError> {
        self.lock().categories.insert(person.clone(), category);
        Ok(())
    }

    async fn category(&self, person: &PersonId) -> Result<Option<PersonCategory>, StoreError> {
        Ok(self.lock().categories.get(person).copied())
    }

    async fn upsert(&self, records: &[ContributionRecord]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for r in records {
            inner
                .records
                .entry(r.person.clone())
                .or_default()
                .insert((r.month, r.insurance, r.employer.clone()), r.clone());
        }
        Ok(())
    }

    async fn contributions(
        &self,
        person: &PersonId,
        from: Option<CivilMonth>,
        to: Option<CivilMonth>,
    ) -> Result<Vec<ContributionRecord>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .records
            .get(person)
            .map(|m| {
                m.values()
                    .filter(|r| {
                        from.is_none_or(|f| r.month >= f) && to.is_none_or(|t| r.month <= t)
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }
}
