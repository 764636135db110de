//! The error type of the healthcare crate.

use citycard_core::{ClassifiedError, ErrorClass, IdempotencyError, MoneyError, StoreError};

/// Everything that can go wrong in appointments, settlement and social insurance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HealthcareError {
    /// A request field is invalid.
    #[error("invalid request: {0}; fix the input and try again")]
    InvalidInput(String),
    /// No parameter row covers this person type, hospital level, visit type and date.
    #[error(
        "no insurance parameters for {person_type} at a {hospital_level} hospital ({visit_type}) on {date}: load a parameter table that covers this date"
    )]
    NoParameters {
        /// The person type.
        person_type: String,
        /// The hospital level.
        hospital_level: String,
        /// The visit type.
        visit_type: String,
        /// The date.
        date: chrono::NaiveDate,
    },
    /// A parameter or policy data file could not be read.
    #[error("parameter data is invalid at {location}: {message}; fix the data file")]
    BadData {
        /// Where (file and line).
        location: String,
        /// What is wrong.
        message: String,
    },
    /// An amount overflowed.
    #[error("amount out of range: {0}; check the bill")]
    Money(#[from] MoneyError),
    /// The thing asked for does not exist.
    #[error("{0} not found: check the id")]
    NotFound(String),
    /// The acting principal may not do this.
    #[error("not allowed: {0}; act as a principal that holds the right")]
    Denied(String),
    /// The patient is not real-name verified.
    #[error(
        "the patient is not real-name verified: complete real-name verification before booking"
    )]
    NotRealName,
    /// The slot cannot be booked now (outside the booking window, before release, in the past, closed).
    #[error("slot not bookable: {0}; choose another slot")]
    NotBookable(String),
    /// The slot is full and the request did not ask for the waitlist.
    #[error("the slot is fully booked: choose another slot or join the waitlist")]
    SlotFull,
    /// A per-person quota is used up.
    #[error("booking quota reached ({0}): cancel another booking or choose another day")]
    QuotaExceeded(String),
    /// The patient is banned from booking after repeated no-shows.
    #[error(
        "booking is suspended until {until} after repeated no-shows: book at the counter or wait"
    )]
    Banned {
        /// The first civil date on which booking is allowed again.
        until: chrono::NaiveDate,
    },
    /// The state does not allow the change (a backward move, a cancellation after the cut-off).
    #[error("not possible in the current state: {0}; reload and check the state")]
    Conflict(String),
    /// An idempotency key was reused for a different request.
    #[error("idempotency key reused for a different request: use a new key for a new request")]
    KeyReused,
    /// Payment failed definitively; nothing was paid.
    #[error("payment refused: {0}; nothing was charged, top up or pay another way")]
    PaymentRefused(String),
    /// The payment outcome is unknown; retry with the same idempotency key.
    #[error("payment outcome unknown: retry with the same idempotency key")]
    PaymentUnknown,
    /// Idempotency bookkeeping failed.
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ClassifiedError for HealthcareError {
    fn class(&self) -> ErrorClass {
        match self {
            HealthcareError::InvalidInput(_)
            | HealthcareError::Money(_)
            | HealthcareError::NoParameters { .. } => ErrorClass::InvalidInput,
            HealthcareError::BadData { .. } => ErrorClass::Internal,
            HealthcareError::NotFound(_) => ErrorClass::NotFound,
            HealthcareError::Denied(_)
            | HealthcareError::NotRealName
            | HealthcareError::Banned { .. } => ErrorClass::Denied,
            HealthcareError::NotBookable(_)
            | HealthcareError::SlotFull
            | HealthcareError::QuotaExceeded(_)
            | HealthcareError::Conflict(_)
            | HealthcareError::KeyReused
            | HealthcareError::PaymentRefused(_) => ErrorClass::Conflict,
            HealthcareError::PaymentUnknown => ErrorClass::Unavailable,
            HealthcareError::Idempotency(e) => e.class(),
            HealthcareError::Store(e) => e.class(),
        }
    }
}
