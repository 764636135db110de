//! The facade's error: every domain's error, classified in one place.
//!
//! Each domain error is carried typed, so [`CityCardError::class`] is the
//! domain's own class: a ledger store outage stays `Unavailable` (retry with
//! the same key), it does not become `Internal`. A ledger denial becomes the
//! facade's [`CityCardError::Denied`], which names no principal. A transfer or
//! account the ledger answered with a failure result (not an error) is
//! [`CityCardError::LedgerRefused`] / [`CityCardError::AccountNotOpened`],
//! classed by that result.

use citycard_core::{ClassifiedError, ErrorClass, IdempotencyError, StoreError};
use citycard_ledger::{AccountId, CreateAccountResult, CreateTransferResult, LedgerError};

/// What went wrong in the card system, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CityCardError {
    /// The database could not be opened.
    #[error(transparent)]
    Storage(#[from] citycard_sqlite::SqliteError),
    /// The PostgreSQL database could not be reached, or is not a citycard database.
    #[error(transparent)]
    Postgres(#[from] citycard_postgres::PgError),
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
    /// The ledger failed (its store, its state, an unknown id).
    #[error("ledger: {0}")]
    Ledger(LedgerError),
    /// The ledger refused a transfer the facade asked for.
    #[error("the ledger refused the transfer ({result:?}); use a new key to try again")]
    LedgerRefused {
        /// The ledger's result for the transfer.
        result: CreateTransferResult,
    },
    /// The ledger could not open an account the facade needs.
    #[error("ledger account {account} could not be opened ({result:?}); contact support")]
    AccountNotOpened {
        /// The account.
        account: AccountId,
        /// The ledger's result for it.
        result: CreateAccountResult,
    },
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

impl From<LedgerError> for CityCardError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Denied { .. } => CityCardError::Denied {
                actor: "this principal".to_owned(),
                action: "use this ledger account",
            },
            other => CityCardError::Ledger(other),
        }
    }
}

/// The class of a transfer the ledger did not accept.
///
/// Same id with other content (a reused key) and refusals by state (closed
/// account, limits) are `Conflict`; missing accounts `NotFound`; malformed
/// transfers `InvalidInput`; a ledger that gave no answer `Unavailable`.
pub fn transfer_result_class(result: CreateTransferResult) -> ErrorClass {
    use CreateTransferResult as R;
    match result {
        R::Ok | R::Exists => ErrorClass::Internal,
        R::DebitAccountNotFound | R::CreditAccountNotFound | R::PendingTransferNotFound => {
            ErrorClass::NotFound
        }
        R::ExistsWithDifferentFlags
        | R::ExistsWithDifferentPendingId
        | R::ExistsWithDifferentTimeout
        | R::ExistsWithDifferentDebitAccountId
        | R::ExistsWithDifferentCreditAccountId
        | R::ExistsWithDifferentAmount
        | R::ExistsWithDifferentReference
        | R::ExistsWithDifferentMemo
        | R::ExistsWithDifferentCurrency
        | R::ExistsWithDifferentCode
        | R::IdAlreadyFailed
        | R::LinkedEventFailed
        | R::PendingTransferNotPending
        | R::PendingTransferAlreadyPosted
        | R::PendingTransferAlreadyVoided
        | R::PendingTransferExpired
        | R::DebitAccountAlreadyClosed
        | R::CreditAccountAlreadyClosed
        | R::ExceedsCredits
        | R::ExceedsDebits
        | R::ExceedsUpperLimit
        | R::ExceedsPendingTransferAmount
        | R::OverflowsDebitsPending
        | R::OverflowsCreditsPending
        | R::OverflowsDebitsPosted
        | R::OverflowsCreditsPosted
        | R::OverflowsDebits
        | R::OverflowsCredits
        | R::OverflowsTimeout => ErrorClass::Conflict,
        _ => ErrorClass::InvalidInput,
    }
}

/// The class of an account the ledger did not open: an account already open
/// with other settings is a `Conflict`; anything else is a facade bug.
pub fn account_result_class(result: CreateAccountResult) -> ErrorClass {
    use CreateAccountResult as R;
    match result {
        R::ExistsWithDifferentFlags
        | R::ExistsWithDifferentUpperLimit
        | R::ExistsWithDifferentOwner
        | R::ExistsWithDifferentMetadata
        | R::ExistsWithDifferentCurrency
        | R::ExistsWithDifferentKind => ErrorClass::Conflict,
        _ => ErrorClass::Internal,
    }
}

impl ClassifiedError for CityCardError {
    fn class(&self) -> ErrorClass {
        match self {
            CityCardError::Storage(e) => e.class(),
            CityCardError::Postgres(e) => e.class(),
            CityCardError::Store(e) => e.class(),
            CityCardError::Idempotency(e) => e.class(),
            CityCardError::Identity(e) => e.class(),
            CityCardError::Binding(e) => e.class(),
            CityCardError::Ledger(e) => e.class(),
            CityCardError::LedgerRefused { result } => transfer_result_class(*result),
            CityCardError::AccountNotOpened { result, .. } => account_result_class(*result),
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
