//! The errors of this crate, mapped to the seed's failure table.

use chrono::{DateTime, Utc};
use citycard_core::{ClassifiedError, ErrorClass, IdempotencyError, Platform, StoreError};
use serde::{Deserialize, Serialize};

use crate::model::{BindingId, Service};

/// Everything that can go wrong with cards, bindings and delegations; each says what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    /// The card number does not have the issuer's format.
    #[error("the card number is not valid ({rule}): check the number printed on the card")]
    InvalidCardNumber {
        /// The format rule in words.
        rule: String,
    },
    /// The card kind is not one the issuer issues.
    #[error("card kind {kind:?} is not issued: choose one of the issuer's card kinds")]
    UnknownCardKind {
        /// The code given.
        kind: String,
    },
    /// The card rules could not be read.
    #[error("card rules are invalid ({reason}): fix the rules file")]
    Config {
        /// Why.
        reason: String,
    },
    /// The consent to record is missing a part the user must be shown.
    #[error(
        "the consent is incomplete ({missing} missing): show the full consent text and ask again"
    )]
    ConsentIncomplete {
        /// Which part.
        missing: String,
    },
    /// The card number and ID number do not belong together (either may be wrong).
    #[error(
        "the card details do not match: check both the card number and the ID number, then try again"
    )]
    DetailsDoNotMatch,
    /// The platform account is not real-name verified.
    #[error(
        "the platform account is not real-name verified: complete real-name verification first"
    )]
    NotRealNameVerified,
    /// A service is not enabled on this card.
    #[error(
        "the {service} service is not enabled on this card: see the card's service list or ask the issuer to enable it"
    )]
    ServiceNotEnabled {
        /// The service asked for.
        service: Service,
    },
    /// The card may not be bound on this platform.
    #[error("this card cannot be bound on {platform}: use a platform the issuer supports")]
    PlatformNotEnabled {
        /// The platform.
        platform: Platform,
    },
    /// The card is not active.
    #[error(
        "the card is {status}, not active: report it found, have it unfrozen, or use the replacement card"
    )]
    CardNotActive {
        /// `reported_lost`, `frozen`, `replaced` or `cancelled`.
        status: String,
    },
    /// Too many mismatched attempts from this account.
    #[error("too many failed attempts: try again after {retry_after}")]
    TooManyAttempts {
        /// When the next attempt is allowed.
        retry_after: DateTime<Utc>,
    },
    /// The binding is still being settled.
    #[error(
        "binding {binding} is processing: poll its status or retry with the same idempotency key"
    )]
    Processing {
        /// The pending binding.
        binding: BindingId,
    },
    /// A dependency could not be reached; nothing was changed that a retry cannot finish.
    #[error("a service is unreachable ({reason}): retry later with the same idempotency key")]
    RetryLater {
        /// Which dependency and how.
        reason: String,
    },
    /// The acting principal may not do this.
    #[error("denied: {reason}")]
    Denied {
        /// Why.
        reason: String,
    },
    /// The card is already bound to this platform account.
    #[error("the card is already bound to this account as {binding}: use the existing binding")]
    AlreadyBound {
        /// The live binding.
        binding: BindingId,
    },
    /// A guardian must consent for this cardholder.
    #[error(
        "the cardholder is a minor: a guardian must give consent, acting under a guardian delegation"
    )]
    GuardianRequired,
    /// The thing asked for does not exist.
    #[error("{what} was not found: check the id")]
    NotFound {
        /// What.
        what: String,
    },
    /// The operation does not fit the current state.
    #[error("cannot {operation} while {state}: check the current state first")]
    InvalidState {
        /// The operation.
        operation: String,
        /// The current state.
        state: String,
    },
    /// An idempotency conflict or in-progress duplicate.
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    /// A storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ClassifiedError for BindingError {
    fn class(&self) -> ErrorClass {
        use BindingError::*;
        match self {
            InvalidCardNumber { .. }
            | UnknownCardKind { .. }
            | ConsentIncomplete { .. }
            | DetailsDoNotMatch
            | NotRealNameVerified
            | GuardianRequired => ErrorClass::InvalidInput,
            Config { .. } => ErrorClass::Internal,
            ServiceNotEnabled { .. }
            | PlatformNotEnabled { .. }
            | CardNotActive { .. }
            | AlreadyBound { .. }
            | InvalidState { .. } => ErrorClass::Conflict,
            TooManyAttempts { .. } => ErrorClass::RateLimited,
            Processing { .. } | RetryLater { .. } => ErrorClass::Unavailable,
            Denied { .. } => ErrorClass::Denied,
            NotFound { .. } => ErrorClass::NotFound,
            Idempotency(e) => e.class(),
            Store(e) => e.class(),
        }
    }
}

/// A definitive refusal, stored under the idempotency key so a retry replays it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "refusal", rename_all = "snake_case")]
pub(crate) enum Refusal {
    DetailsDoNotMatch,
    NotRealNameVerified,
    PlatformNotEnabled { platform: Platform },
    CardNotActive { status: String },
    Denied { reason: String },
    AlreadyBound { binding: BindingId },
    GuardianRequired,
}

impl Refusal {
    /// The refusal for a definitive error, `None` for errors a retry may cure.
    pub(crate) fn of(error: &BindingError) -> Option<Refusal> {
        Some(match error {
            BindingError::DetailsDoNotMatch => Refusal::DetailsDoNotMatch,
            BindingError::NotRealNameVerified => Refusal::NotRealNameVerified,
            BindingError::PlatformNotEnabled { platform } => Refusal::PlatformNotEnabled {
                platform: platform.clone(),
            },
            BindingError::CardNotActive { status } => Refusal::CardNotActive {
                status: status.clone(),
            },
            BindingError::Denied { reason } => Refusal::Denied {
                reason: reason.clone(),
            },
            BindingError::AlreadyBound { binding } => Refusal::AlreadyBound {
                binding: binding.clone(),
            },
            BindingError::GuardianRequired => Refusal::GuardianRequired,
            _ => return None,
        })
    }
}

impl From<Refusal> for BindingError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::DetailsDoNotMatch => BindingError::DetailsDoNotMatch,
            Refusal::NotRealNameVerified => BindingError::NotRealNameVerified,
            Refusal::PlatformNotEnabled { platform } => {
                BindingError::PlatformNotEnabled { platform }
            }
            Refusal::CardNotActive { status } => BindingError::CardNotActive { status },
            Refusal::Denied { reason } => BindingError::Denied { reason },
            Refusal::AlreadyBound { binding } => BindingError::AlreadyBound { binding },
            Refusal::GuardianRequired => BindingError::GuardianRequired,
        }
    }
}

/// How a call to a remote port failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PortError {
    /// Refused before doing anything (connection refused, 5xx): nothing happened.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Timed out: it may or may not have happened.
    #[error("timed out")]
    Timeout,
    /// The call was made but its answer was lost: it may or may not have happened.
    #[error("outcome unknown")]
    UnknownOutcome,
    /// The remote side refused the request for good.
    #[error("rejected: {0}")]
    Rejected(String),
}

impl PortError {
    /// True when the call may have taken effect.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, PortError::Timeout | PortError::UnknownOutcome)
    }
}

impl ClassifiedError for PortError {
    fn class(&self) -> ErrorClass {
        match self {
            PortError::Rejected(_) => ErrorClass::Conflict,
            _ => ErrorClass::Unavailable,
        }
    }
}

impl PortError {
    /// This failure as a "retry later" for the caller, naming the port.
    pub(crate) fn retry_later(self, port: &str) -> BindingError {
        BindingError::RetryLater {
            reason: format!("{port}: {self}"),
        }
    }
}
