//! The errors of the transit crate.

use citycard_core::{ClassifiedError, ErrorClass, IdempotencyError, MoneyError, StoreError};

/// A problem in fare data, naming the file, the line and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("{file} line {line}, field {field}: {problem}; fix the fare data")]
pub struct LoadError {
    /// The file, e.g. `fare_leg_rules.txt`.
    pub file: String,
    /// The line in the file, counting the header as line 1 (0 when the whole file is at fault).
    pub line: u64,
    /// The field (column) at fault, or `-` for the whole row or file.
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

impl LoadError {
    /// A load error.
    pub fn new(
        file: impl Into<String>,
        line: u64,
        field: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            line,
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl ClassifiedError for LoadError {
    fn class(&self) -> ErrorClass {
        ErrorClass::InvalidInput
    }
}

/// Everything that can go wrong in the transit crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransitError {
    /// Fare or network data could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A name (stop, route, network, ...) is not in the loaded data.
    #[error("unknown {kind} {name:?}: use an id from the loaded network and fare data")]
    Unknown {
        /// What kind of thing.
        kind: &'static str,
        /// The name given.
        name: String,
    },
    /// A journey leg is inconsistent (alighting before boarding, a stop off the route, ...).
    #[error("leg {leg} is invalid: {reason}; correct the journey")]
    InvalidLeg {
        /// Index of the leg in the journey.
        leg: usize,
        /// Why.
        reason: String,
    },
    /// No fare rule matches a leg: the fare data has a gap.
    #[error("no fare rule matches leg {leg}: add a fare_leg_rules row covering it")]
    NoFareRule {
        /// Index of the leg in the journey.
        leg: usize,
    },
    /// Fare rules match a leg, but their product has no price for the rider's category and medium.
    #[error(
        "fare product {product:?} of leg {leg} has no price for rider category {category:?} paying by {medium}: pay with another medium, or add a fare_products.txt row"
    )]
    NoFareForMedium {
        /// Index of the leg in the journey.
        leg: usize,
        /// The product's id.
        product: String,
        /// The rider category's id.
        category: String,
        /// The medium (`card`, `ride_code`, `cash`, …).
        medium: &'static str,
    },
    /// The fare feed is priced in another currency than the one required.
    #[error(
        "the fare feed prices in {feed}, but {required} is required: load a feed priced in {required}"
    )]
    WrongCurrency {
        /// The feed's currency.
        feed: String,
        /// The currency required.
        required: String,
    },
    /// Amount arithmetic overflowed.
    #[error("fare amount out of range: {0}")]
    Money(#[from] MoneyError),
    /// A ride code could not be created or parsed.
    #[error("ride code problem: {0}; issue a new code")]
    Code(String),
    /// The principal may not perform the operation.
    #[error("{principal} may not {action}: act as the system or an operator")]
    Denied {
        /// Who tried (display form, no personal data).
        principal: String,
        /// What was attempted.
        action: &'static str,
    },
    /// The payments port failed; the same request may be retried with the same key.
    #[error("fare payment unavailable, retry later with the same key: {0}")]
    PaymentUnavailable(String),
    /// The payments port refused a request as conflicting with an earlier one.
    #[error("fare payment conflict: {0}; use a new key for a new charge")]
    PaymentConflict(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Idempotency bookkeeping failed.
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    /// A QR image could not be rendered.
    #[error("ride code could not be rendered: {0}")]
    Render(String),
}

impl ClassifiedError for TransitError {
    fn class(&self) -> ErrorClass {
        match self {
            TransitError::Load(_)
            | TransitError::InvalidLeg { .. }
            | TransitError::Money(_)
            | TransitError::Code(_)
            | TransitError::NoFareForMedium { .. }
            | TransitError::WrongCurrency { .. } => ErrorClass::InvalidInput,
            TransitError::Unknown { .. } => ErrorClass::NotFound,
            TransitError::NoFareRule { .. } | TransitError::Render(_) => ErrorClass::Internal,
            TransitError::Denied { .. } => ErrorClass::Denied,
            TransitError::PaymentUnavailable(_) => ErrorClass::Unavailable,
            TransitError::PaymentConflict(_) => ErrorClass::Conflict,
            TransitError::Store(e) => e.class(),
            TransitError::Idempotency(e) => e.class(),
        }
    }
}
