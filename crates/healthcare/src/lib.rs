//! # citycard-healthcare
//!
//! Hospitals on the card: real-name appointment booking that never overbooks,
//! outpatient bills settled between the medical-insurance pooled fund, the
//! personal accounts and the e-wallet, social insurance records, and FHIR R4
//! export. The crate reaches identity and money only through its ports.
//!
//! Decide, then commit: every state change is decided by a pure function from a snapshot
//! the service prefetched, and the resulting plan (rows, audit records, and the versions it
//! relied on) is committed by a store in one transaction. Stores persist and check
//! preconditions; they never decide, so the memory and SQLite adapters share no domain
//! logic.
//!
//! - [`ports`]: every port trait; [`memory`]: their memory adapters.
//! - [`settlement`]: the pure settlement engine ([`SettlementEngine`]) on dated parameter
//!   tables ([`SettlementParameters`], Hangzhou's shipped in `data/`, marked "check").
//! - [`billing`]: quotes, settlement and reversal ([`BillingService`]) as a saga: begin
//!   (one transaction), pay through the [`MedicalPayments`] port (one all-or-nothing,
//!   idempotent batch of transfers), complete (one transaction); the pure steps are in
//!   [`billing::decide`], records and annual accumulators in the [`SettlementStore`].
//! - [`appointments`]: slots, schedules and appointments ([`AppointmentService`]);
//!   bookings, cancellations with waitlist promotion, visits and no-shows are decided in
//!   [`appointments::decide`] and committed by the [`AppointmentStore`] in one transaction
//!   each; identity through the [`PatientDirectory`] port; policy data in [`BookingPolicy`].
//! - [`social`]: contribution records ([`SocialInsuranceRecords`]), the cardholder's summary
//!   ([`SocialInsuranceService`]) and a generator of sample histories from dated rates.
//! - [`fhir`]: FHIR R4 JSON for Schedule, Slot, Appointment, Coverage, Claim, ClaimResponse.
//!
//! ## Decisions the design left open
//!
//! - **Payment order.** The current-year account pays the within-policy amount first and
//!   does not count towards the deductible; the deductible and the co-payment come from the
//!   accumulated account, then cash. Out-of-policy parts (class C, over-limit, pre-self-pay)
//!   are paid from the accounts' remaining balances only where the parameter row says
//!   `accounts_cover_self_pay`, else in cash. Class B pre-self-pay shares round half-up per
//!   item; the fund share rounds half-up once per bill, so the parts always add up.
//! - **Accumulators** belong to the calendar year of the visit; reversal subtracts exactly
//!   what the settlement added (it does not recompute), so reversals commute.
//! - **Concurrency of settlements** for one person is handled by compare-and-set on the
//!   accumulators when the settlement begins; a clash decides again (up to three times).
//! - **Concurrency of bookings**: a plan carries the slot's version and the patient's
//!   version; a stale plan is decided again up to [`appointments::MAX_DECISIONS`] times.
//! - **Idempotency of bookings and settlements** is their own row (an appointment is unique
//!   per patient and booking key, a settlement record per key, with the request's
//!   fingerprint), so their plans write no separate idempotency outcome.
//! - **Quotas**: per department per session, then per civil day, ISO week (Monday to Sunday)
//!   and civil month across departments; waitlisted bookings count, cancelled ones do not.
//! - **Cancellation cut-off** counts calendar days (the notes say "the working day before";
//!   holidays are not modelled). Facility cancellations ignore the cut-off.
//! - **Queue numbers** are never reused within a slot; the expected time divides the session
//!   evenly by capacity. No-shows keep their place (they are counted as booked).
//! - **Booking idempotency** is per patient and key, looked up before anything else, so a
//!   retry returns the first appointment even after the window has moved on.
//! - **FHIR money** is written as JSON numbers (see [`fhir`]).
//!
//! ```
//! use citycard_healthcare::{
//!     AccountBalances, AnnualAccumulators, CatalogueClass, ChargeItem, HospitalLevel, PersonType,
//!     SettlementEngine, SettlementInput, VisitType,
//! };
//!
//! let engine = SettlementEngine::hangzhou()?;
//! let bill = [ChargeItem::new("consult", CatalogueClass::A, "500.00".parse()?, 1)];
//! let split = engine.compute(&SettlementInput {
//!     person_type: PersonType::Resident,
//!     hospital_level: HospitalLevel::Community,
//!     visit_type: VisitType::Outpatient,
//!     date: chrono::NaiveDate::from_ymd_opt(2026, 3, 10).unwrap(),
//!     items: &bill,
//!     accounts: AccountBalances::default(),
//!     accumulators: AnnualAccumulators::new(2026),
//! })?;
//! // ¥300 deductible, then the fund pays 70% of the remaining ¥200.
//! assert_eq!(split.deductible_applied.to_string(), "300.00");
//! assert_eq!(split.fund_paid.to_string(), "140.00");
//! assert_eq!(split.cash_paid.to_string(), "360.00");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod error;
pub mod funding;
pub mod provenance;
pub mod settlement;

pub use funding::{AccountFunding, FundingBasis, FundingInputs, FundingRow};
pub use provenance::{Confidence, Provenance};

pub use error::HealthcareError;
pub use settlement::{
    AccountBalances, AnnualAccumulators, CatalogueClass, ChargeItem, HospitalLevel, ItemSplit,
    ParameterRow, PersonType, SettlementBreakdown, SettlementEngine, SettlementInput,
    SettlementParameters, VisitType,
};
pub mod appointments;
pub mod ids;
pub mod memory;
pub mod ports;
pub use appointments::{
    Appointment, AppointmentService, AppointmentStatus, BookRequest, Booking, BookingPolicy,
    CancelledBy, Department, Doctor, Hospital, PatientIdentifier, PatientRecord, ScheduleTemplate,
    Session, SessionTimes, Slot, SlotStatus, SlotView, WeeklySession,
};
pub use ids::{
    AppointmentId, DepartmentId, DoctorId, EmployerId, HospitalId, SettlementId, SlotId,
};
pub use memory::{
    MemoryAppointmentStore, MemoryMedicalPayments, MemoryPatientDirectory, MemorySettlementStore,
    MemorySocialInsuranceRecords,
};
pub use ports::{
    AppointmentStore, MedicalPayments, PatientDirectory, SettlementStore, SocialInsuranceRecords,
};
pub mod billing;
pub use billing::{
    BillRequest, BillingService, CashSource, MedicalTransfer, PaymentAccount, PaymentError,
    PaymentReceipt, SettlementRecord, SettlementStatus,
};
pub mod social;
pub use social::{
    ContributionRates, ContributionRecord, ContributionStatus, Employer, EmploymentSpell,
    Insurance, PersonCategory, SocialInsuranceService, SocialInsuranceSummary,
};
pub mod fhir;
