//! # citycard-healthcare
//!
//! Hospitals on the card: real-name appointment booking that never overbooks,
//! outpatient bills settled between the medical-insurance pooled fund, the
//! personal accounts and the e-wallet, social insurance records, and FHIR R4
//! export.
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
pub mod settlement;

pub use error::HealthcareError;
pub use settlement::{
    AccountBalances, AnnualAccumulators, CatalogueClass, ChargeItem, HospitalLevel, ItemSplit,
    ParameterRow, PersonType, SettlementBreakdown, SettlementEngine, SettlementInput,
    SettlementParameters, VisitType,
};
pub mod appointments;
pub mod ids;
pub use appointments::{
    Appointment, AppointmentService, AppointmentStatus, AppointmentStore, BookRequest, Booking,
    BookingPolicy, CancelledBy, Department, Doctor, Hospital, MemoryAppointmentStore,
    MemoryPatientDirectory, PatientDirectory, PatientRecord, ScheduleTemplate, Session,
    SessionTimes, Slot, SlotStatus, SlotView, WeeklySession,
};
pub use ids::{
    AppointmentId, DepartmentId, DoctorId, EmployerId, HospitalId, SettlementId, SlotId,
};
pub mod billing;
pub use billing::{
    BillRequest, BillingService, CashSource, MedicalPayments, MedicalTransfer,
    MemoryMedicalPayments, MemorySettlementStore, PaymentAccount, PaymentError, PaymentReceipt,
    SettlementRecord, SettlementStatus, SettlementStore,
};
pub mod social;
pub use social::{
    ContributionRates, ContributionRecord, ContributionStatus, Employer, EmploymentSpell,
    Insurance, MemorySocialInsuranceRecords, PersonCategory, SocialInsuranceRecords,
    SocialInsuranceService, SocialInsuranceSummary,
};
pub mod fhir;
