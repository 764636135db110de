//! Test support for citycard-healthcare: conformance suites for its storage ports,
//! fault-injecting doubles of its remote ports, and proptest strategies.
//!
//! The helpers below build slots and booking requests for the suites; hosts may use them
//! for their own backends' tests too. The suites' cases are plain async functions in
//! [`appointments`] and [`settlements`], so a host can also run them on its own handles.

pub mod appointments;
pub mod settlements;

use std::sync::Arc;

use citycard_core::{AuditLog, IdempotencyStore, MemoryCore};

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use citycard_core::{IdempotencyKey, PersonId, Principal};
use citycard_healthcare::appointments::{BookingRequest, Quota};
use citycard_healthcare::{
    Appointment, AppointmentId, AppointmentStatus, DepartmentId, HospitalId, Session, Slot, SlotId,
    SlotStatus,
};

/// Where a store's commits write their core records, for the suites to check.
#[derive(Clone)]
pub struct CoreView {
    /// The audit log the store appends to.
    pub audit: Arc<dyn AuditLog>,
    /// The idempotency store the store writes outcomes to.
    pub idempotency: Arc<dyn IdempotencyStore>,
}

impl CoreView {
    /// The view of a memory core.
    pub fn memory(core: &MemoryCore) -> CoreView {
        CoreView {
            audit: core.audit(),
            idempotency: core.idempotency(),
        }
    }
}

/// The civil date used by the suites (a Monday).
pub fn suite_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 9).unwrap_or_default()
}

/// 08:00 China time on the suite date, plus `hours`.
pub fn suite_time(hours: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 9, 0, 0, 0)
        .single()
        .unwrap_or_default()
        + Duration::hours(hours)
}

/// A morning slot of department `dep` on `date`, 08:00-12:00 China time, open.
pub fn slot(id: &str, dep: &str, date: NaiveDate, capacity: u32) -> Slot {
    let day_start = citycard_core::start_of_civil_day(date);
    Slot {
        id: SlotId::parse(id)
            .unwrap_or_else(|_| SlotId::parse("slot-bad").unwrap_or_else(|_| unreachable!())),
        hospital: HospitalId::parse("hsp-1").unwrap_or_else(|_| unreachable!()),
        department: DepartmentId::parse(dep).unwrap_or_else(|_| unreachable!()),
        doctor: None,
        date,
        session: Session::Morning,
        start: day_start + Duration::hours(8),
        end: day_start + Duration::hours(12),
        capacity,
        status: SlotStatus::Open,
    }
}

/// Generous quotas (nothing limits but capacity).
pub fn no_quota() -> Quota {
    Quota {
        per_department_session: 100,
        per_day: 100,
        per_week: 100,
        per_month: 100,
    }
}

/// A booking request for `patient` on `slot` with key `key` and appointment id `id`.
pub fn booking(
    slot: &Slot,
    id: &str,
    patient: &str,
    key: &str,
    quota: Quota,
    waitlist: bool,
) -> BookingRequest {
    let patient = PersonId::parse(patient).unwrap_or_else(|_| unreachable!());
    let at = slot.start - Duration::days(1);
    let date = slot.date;
    BookingRequest {
        appointment: Appointment {
            id: AppointmentId::parse(id).unwrap_or_else(|_| unreachable!()),
            slot: slot.id.clone(),
            hospital: slot.hospital.clone(),
            department: slot.department.clone(),
            date,
            session: slot.session,
            start: slot.start,
            end: slot.end,
            patient: patient.clone(),
            booked_by: Principal::cardholder(patient),
            status: AppointmentStatus::Booked,
            queue_number: None,
            expected_at: None,
            booking_key: IdempotencyKey::parse(key).unwrap_or_else(|_| unreachable!()),
            created_at: at,
            updated_at: at,
            cancellation: None,
        },
        quota,
        week: {
            let monday = date - Duration::days(i64::from(date.weekday().num_days_from_monday()));
            (monday, monday + Duration::days(6))
        },
        month: {
            let first = date.with_day(1).unwrap_or(date);
            (first, first + Duration::days(27))
        },
        allow_waitlist: waitlist,
    }
}

/// A [`MedicalPayments`](citycard_healthcare::MedicalPayments) double that wraps another and
/// injects faults per operation (`"execute"`, `"balances"`): `Fail` and `Timeout` do nothing
/// and report an unknown outcome or a refusal; `UnknownOutcome` executes, then loses the answer.
pub struct FaultyMedicalPayments<P> {
    inner: P,
    faults: crate::Faults,
}

impl<P> FaultyMedicalPayments<P> {
    /// Wraps `inner` with a fault script.
    pub fn new(inner: P, faults: crate::Faults) -> Self {
        Self { inner, faults }
    }

    /// The wrapped port.
    pub fn inner(&self) -> &P {
        &self.inner
    }
}

#[async_trait::async_trait]
impl<P: citycard_healthcare::MedicalPayments> citycard_healthcare::MedicalPayments
    for FaultyMedicalPayments<P>
{
    async fn execute(
        &self,
        key: &IdempotencyKey,
        transfers: &[citycard_healthcare::MedicalTransfer],
    ) -> Result<citycard_healthcare::PaymentReceipt, citycard_healthcare::PaymentError> {
        use citycard_healthcare::PaymentError;
        match self.faults.check("execute") {
            crate::Fault::None => self.inner.execute(key, transfers).await,
            crate::Fault::Fail => Err(PaymentError::Refused("injected failure".into())),
            crate::Fault::Timeout => Err(PaymentError::Unknown("injected timeout".into())),
            crate::Fault::UnknownOutcome => {
                let _ = self.inner.execute(key, transfers).await;
                Err(PaymentError::Unknown("injected lost answer".into()))
            }
        }
    }

    async fn balances(
        &self,
        person: &PersonId,
    ) -> Result<citycard_healthcare::AccountBalances, citycard_healthcare::PaymentError> {
        match self.faults.check("balances") {
            crate::Fault::None => self.inner.balances(person).await,
            _ => Err(citycard_healthcare::PaymentError::Unknown(
                "injected fault".into(),
            )),
        }
    }
}

/// The conformance suite for
/// [`SocialInsuranceRecords`](citycard_healthcare::SocialInsuranceRecords).
#[macro_export]
macro_rules! social_insurance_records_conformance {
    ($factory:ident) => {
        $crate::social_insurance_records_conformance!(@suite $factory, $crate::backend_available);
    };
    ($factory:ident, available = $available:ident) => {
        $crate::social_insurance_records_conformance!(@suite $factory, super::$available);
    };
    (@suite $factory:ident, $available:path) => {
        #[allow(clippy::unwrap_used)]
        mod social_insurance_records_conformance {
            use $crate::__private::citycard_core::{CivilMonth, Money, PersonId};
            use $crate::__private::citycard_healthcare::{
                ContributionRecord, ContributionStatus, Employer, EmployerId, Insurance,
                PersonCategory, SocialInsuranceRecords,
            };

            fn m(y: i32, mo: u32) -> CivilMonth {
                CivilMonth::new(y, mo).unwrap()
            }

            fn rec(
                person: &str,
                employer: &str,
                month: CivilMonth,
                insurance: Insurance,
                fen: i64,
            ) -> ContributionRecord {
                ContributionRecord {
                    person: PersonId::parse(person).unwrap(),
                    employer: EmployerId::parse(employer).unwrap(),
                    month,
                    insurance,
                    base: Money::from_fen(fen * 10),
                    employer_amount: Money::from_fen(fen),
                    employee_amount: Money::from_fen(fen / 2),
                    paid: Money::from_fen(fen + fen / 2),
                    status: ContributionStatus::Paid,
                }
            }

            #[tokio::test]
            async fn employers_and_categories_round_trip() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let e = Employer {
                    id: EmployerId::parse("emp-1").unwrap(),
                    name: "杭州示例科技有限公司".into(),
                    district: "西湖区".into(),
                };
                store.put_employer(&e).await.unwrap();
                assert_eq!(store.employer(&e.id).await.unwrap(), Some(e.clone()));
                let renamed = Employer {
                    name: "New name".into(),
                    ..e.clone()
                };
                store.put_employer(&renamed).await.unwrap();
                assert_eq!(store.employer(&e.id).await.unwrap(), Some(renamed));
                assert_eq!(
                    store
                        .employer(&EmployerId::parse("emp-x").unwrap())
                        .await
                        .unwrap(),
                    None
                );
                let p = PersonId::parse("psn-1").unwrap();
                assert_eq!(store.category(&p).await.unwrap(), None);
                store
                    .put_category(&p, PersonCategory::Employee)
                    .await
                    .unwrap();
                store
                    .put_category(&p, PersonCategory::FlexibleEmployment)
                    .await
                    .unwrap();
                assert_eq!(
                    store.category(&p).await.unwrap(),
                    Some(PersonCategory::FlexibleEmployment)
                );
            }

            #[tokio::test]
            async fn records_are_ordered_filtered_and_replaced_by_key() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let p = PersonId::parse("psn-1").unwrap();
                store
                    .upsert(&[
                        rec("psn-1", "emp-b", m(2024, 2), Insurance::Medical, 300),
                        rec("psn-1", "emp-a", m(2024, 2), Insurance::Medical, 200),
                        rec("psn-1", "emp-a", m(2024, 2), Insurance::Pension, 100),
                        rec("psn-1", "emp-a", m(2023, 12), Insurance::Maternity, 50),
                        rec("psn-1", "emp-a", m(2024, 3), Insurance::Pension, 400),
                        rec("psn-2", "emp-a", m(2024, 2), Insurance::Pension, 999),
                    ])
                    .await
                    .unwrap();
                let all = store.contributions(&p, None, None).await.unwrap();
                let keys: Vec<(CivilMonth, Insurance, &str)> = all
                    .iter()
                    .map(|r| (r.month, r.insurance, r.employer.as_str()))
                    .collect();
                assert_eq!(
                    keys,
                    vec![
                        (m(2023, 12), Insurance::Maternity, "emp-a"),
                        (m(2024, 2), Insurance::Pension, "emp-a"),
                        (m(2024, 2), Insurance::Medical, "emp-a"),
                        (m(2024, 2), Insurance::Medical, "emp-b"),
                        (m(2024, 3), Insurance::Pension, "emp-a"),
                    ]
                );
                assert_eq!(
                    all[1],
                    rec("psn-1", "emp-a", m(2024, 2), Insurance::Pension, 100)
                );
                let window = store
                    .contributions(&p, Some(m(2024, 2)), Some(m(2024, 2)))
                    .await
                    .unwrap();
                assert_eq!(window.len(), 3);
                assert_eq!(
                    store
                        .contributions(&p, Some(m(2024, 3)), None)
                        .await
                        .unwrap()
                        .len(),
                    1
                );
                assert_eq!(
                    store
                        .contributions(&p, None, Some(m(2023, 12)))
                        .await
                        .unwrap()
                        .len(),
                    1
                );
                // Same key replaces: arrears paid later.
                let mut fixed = rec("psn-1", "emp-a", m(2024, 3), Insurance::Pension, 400);
                fixed.status = ContributionStatus::Arrears;
                fixed.paid = Money::ZERO;
                store.upsert(&[fixed.clone()]).await.unwrap();
                let after = store
                    .contributions(&p, Some(m(2024, 3)), None)
                    .await
                    .unwrap();
                assert_eq!(after, vec![fixed]);
                assert!(
                    store
                        .contributions(&PersonId::parse("psn-3").unwrap(), None, None)
                        .await
                        .unwrap()
                        .is_empty()
                );
            }
        }
    };
}

/// A settlement record for `person` on 2026-03-10: a resident's class A bill of `bill_fen`
/// at a community hospital, computed from `before` by the Hangzhou engine.
pub fn settlement_record(
    id: &str,
    key: &str,
    person: &str,
    before: citycard_healthcare::AnnualAccumulators,
    bill_fen: i64,
) -> citycard_healthcare::SettlementRecord {
    use citycard_healthcare::{
        AccountBalances, BillRequest, CashSource, CatalogueClass, ChargeItem, HospitalLevel,
        PersonType, SettlementEngine, SettlementInput, SettlementStatus, VisitType,
    };
    let date = NaiveDate::from_ymd_opt(2026, 3, 10).unwrap_or_default();
    let request = BillRequest {
        patient: PersonId::parse(person).unwrap_or_else(|_| unreachable!()),
        hospital: HospitalId::parse("hsp-1").unwrap_or_else(|_| unreachable!()),
        hospital_level: HospitalLevel::Community,
        visit_type: VisitType::Outpatient,
        items: vec![ChargeItem::new(
            "a",
            CatalogueClass::A,
            citycard_core::Money::from_fen(bill_fen),
            1,
        )],
        cash_source: CashSource::Counter,
    };
    let engine = SettlementEngine::hangzhou().unwrap_or_else(|_| unreachable!());
    let breakdown = engine
        .compute(&SettlementInput {
            person_type: PersonType::Resident,
            hospital_level: request.hospital_level,
            visit_type: request.visit_type,
            date,
            items: &request.items,
            accounts: AccountBalances::default(),
            accumulators: before,
        })
        .unwrap_or_else(|_| unreachable!());
    citycard_healthcare::SettlementRecord {
        id: citycard_healthcare::SettlementId::parse(id).unwrap_or_else(|_| unreachable!()),
        key: IdempotencyKey::parse(key).unwrap_or_else(|_| unreachable!()),
        request_fingerprint: citycard_core::Fingerprint::of_bytes(key.as_bytes()),
        transfers: citycard_healthcare::billing::settlement_transfers(
            &request.patient,
            &request.hospital,
            &breakdown,
            request.cash_source,
        ),
        request,
        person_type: PersonType::Resident,
        date,
        breakdown,
        accumulators_before: before,
        status: SettlementStatus::Pending,
        reversal_key: None,
        created_at: suite_time(0),
    }
}

/// A [`PatientDirectory`](citycard_healthcare::PatientDirectory) double that wraps another and
/// injects faults per operation (`"resolve"`, `"patient"`, `"delegate_allowed"`): every fault is reported
/// as an unavailable store.
pub struct FaultyPatientDirectory<D> {
    inner: D,
    faults: crate::Faults,
}

impl<D> FaultyPatientDirectory<D> {
    /// Wraps `inner` with a fault script.
    pub fn new(inner: D, faults: crate::Faults) -> Self {
        Self { inner, faults }
    }
}

#[async_trait::async_trait]
impl<D: citycard_healthcare::PatientDirectory> citycard_healthcare::PatientDirectory
    for FaultyPatientDirectory<D>
{
    async fn resolve(
        &self,
        identifier: &citycard_healthcare::appointments::PatientIdentifier,
    ) -> Result<Option<PersonId>, citycard_core::StoreError> {
        match self.faults.check("resolve") {
            crate::Fault::None => self.inner.resolve(identifier).await,
            _ => Err(citycard_core::StoreError::Unavailable(
                "injected fault".into(),
            )),
        }
    }

    async fn patient(
        &self,
        person: &PersonId,
    ) -> Result<Option<citycard_healthcare::PatientRecord>, citycard_core::StoreError> {
        match self.faults.check("patient") {
            crate::Fault::None => self.inner.patient(person).await,
            crate::Fault::UnknownOutcome => {
                let _ = self.inner.patient(person).await;
                Err(citycard_core::StoreError::Unavailable(
                    "injected lost answer".into(),
                ))
            }
            _ => Err(citycard_core::StoreError::Unavailable(
                "injected fault".into(),
            )),
        }
    }

    async fn delegate_allowed(
        &self,
        actor: &citycard_core::Principal,
        patient: &PersonId,
        scope: citycard_core::DelegationScope,
    ) -> Result<bool, citycard_core::StoreError> {
        match self.faults.check("delegate_allowed") {
            crate::Fault::None => self.inner.delegate_allowed(actor, patient, scope).await,
            _ => Err(citycard_core::StoreError::Unavailable(
                "injected fault".into(),
            )),
        }
    }
}
