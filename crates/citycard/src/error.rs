//! The facade's error: every domain's error, classified in one place.

use citycard_core::{ClassifiedError, ErrorClass, IdempotencyError, StoreError};

/// What went wrong in the card system, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CityCardError {
    /// The database could not be opened.
    #[error(transparent)]
    Storage(#[from] citycard_sqlite::SqliteError),
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An idempotency key was reused or is still in progress.
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    /// Identity refused or failed.
    #[error(transparent)]
    Identity(#[from] citycard_identity::IdentityError),
    /// Card binding refused or failed.
    #[error(transparent)]
    Binding(#[from] citycard_binding::BindingError),
    /// The ledger refused or failed.
    #[error("ledger: {0}")]
    Ledger(String),
    /// Transit refused or failed.
    #[error(transparent)]
    Transit(#[from] citycard_transit::TransitError),
    /// Healthcare refused or failed.
    #[error(transparent)]
    Healthcare(#[from] citycard_healthcare::HealthcareError),
    /// The acting principal may not do this.
    #[error("{actor} may not {action}")]
    Denied {
        /// Who tried.
        actor: String,
        /// What.
        action: &'static str,
    },
    /// A top-up would take the wallet over its cap.
    #[error(
        "top-up refused: the card's wallet may hold at most {cap}, and {balance} is already on it; top up at most {room}"
    )]
    OverCap {
        /// The cap.
        cap: citycard_core::Money,
        /// The balance now.
        balance: citycard_core::Money,
        /// How much more fits.
        room: citycard_core::Money,
    },
    /// A top-up would take the wallet over its cap, told to a principal who may not view the balance.
    #[error(
        "top-up refused: the card's wallet may hold at most {cap}; ask the cardholder how much still fits, or top up less"
    )]
    OverCapUndisclosed {
        /// The cap.
        cap: citycard_core::Money,
    },
    /// The wallet does not hold enough, told to a principal who may not view the balance.
    #[error(
        "insufficient balance: the card's wallet does not hold enough; ask the cardholder to top up"
    )]
    InsufficientBalanceUndisclosed,
    /// The wallet does not hold enough.
    #[error("insufficient balance: the card's wallet holds {balance}; top up first")]
    InsufficientBalance {
        /// The balance now.
        balance: citycard_core::Money,
    },
    /// The request is invalid.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A configuration or data file is wrong.
    #[error("configuration: {0}")]
    Config(String),
}

impl From<citycard_ledger::LedgerError> for CityCardError {
    fn from(e: citycard_ledger::LedgerError) -> Self {
        match e {
            citycard_ledger::LedgerError::Denied { .. } => CityCardError::Denied {
                actor: "this principal".to_owned(),
                action: "use this ledger account",
            },
            other => CityCardError::Ledger(other.to_string()),
        }
    }
}

impl ClassifiedError for CityCardError {
    fn class(&self) -> ErrorClass {
        match self {
            CityCardError::Storage(e) => e.class(),
            CityCardError::Store(e) => e.class(),
            CityCardError::Idempotency(e) => e.class(),
            CityCardError::Identity(e) => e.class(),
            CityCardError::Binding(e) => e.class(),
            CityCardError::Ledger(_) => ErrorClass::Internal,
            CityCardError::Transit(e) => e.class(),
            CityCardError::Healthcare(e) => e.class(),
            CityCardError::Denied { .. } => ErrorClass::Denied,
            CityCardError::OverCap { .. }
            | CityCardError::OverCapUndisclosed { .. }
            | CityCardError::InsufficientBalance { .. }
            | CityCardError::InsufficientBalanceUndisclosed => ErrorClass::Conflict,
            CityCardError::Invalid(_) => ErrorClass::InvalidInput,
            CityCardError::Config(_) => ErrorClass::Internal,
        }
    }
}
