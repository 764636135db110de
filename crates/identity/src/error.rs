//! The error of the identity service.

use citycard_core::{ClassifiedError, ErrorClass, IdempotencyError, PlatformAccountId, StoreError};

use crate::id_number::IdNumberError;
use crate::vault::VaultError;
use crate::verifier::VerifierError;

/// What can go wrong in [`IdentityService`](crate::IdentityService).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The ID number failed local validation; the provider was not called.
    #[error("the id number is invalid, fix it and try again: {0}")]
    InvalidIdNumber(#[from] IdNumberError),
    /// The name is empty or too long.
    #[error("the name must be 1 to 64 characters: fix it and try again")]
    InvalidName,
    /// A platform account id (the platform's own) is empty or too long.
    #[error("the platform's account id must be 1 to 128 characters: fix it and try again")]
    InvalidExternalId,
    /// No such platform account.
    #[error("platform account {account} does not exist: register it first")]
    AccountNotFound {
        /// The account.
        account: PlatformAccountId,
    },
    /// The acting principal may not do this for this account.
    #[error(
        "{actor} may not {action}: only the person or account concerned, or an operator holding the right role, may"
    )]
    Denied {
        /// Who tried (a description, no personal data).
        actor: String,
        /// What they tried.
        action: &'static str,
    },
    /// Too many failed verifications today for this account.
    #[error("{limit} failed verifications today for this account: try again tomorrow")]
    TooManyFailures {
        /// The configured daily limit.
        limit: u32,
    },
    /// The account is already verified as another person.
    #[error("this account is already verified as another person: contact support to change it")]
    AccountBelongsToAnotherPerson,
    /// No face check was started for the account.
    #[error("no face check is in progress for this account: start one first")]
    NoFaceCheckPending,
    /// The client has not finished the face check yet.
    #[error("the face check is not finished yet: poll again shortly")]
    FaceCheckPending,
    /// The face session expired.
    #[error("the face check session expired: start a new one")]
    FaceCheckExpired,
    /// The real-name provider failed.
    #[error(transparent)]
    Provider(#[from] VerifierError),
    /// The vault failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The idempotency key was misused or its store failed.
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
}

impl ClassifiedError for IdentityError {
    fn class(&self) -> ErrorClass {
        match self {
            IdentityError::InvalidIdNumber(_)
            | IdentityError::InvalidName
            | IdentityError::InvalidExternalId => ErrorClass::InvalidInput,
            IdentityError::AccountNotFound { .. } => ErrorClass::NotFound,
            IdentityError::Denied { .. } => ErrorClass::Denied,
            IdentityError::TooManyFailures { .. } => ErrorClass::RateLimited,
            IdentityError::AccountBelongsToAnotherPerson
            | IdentityError::NoFaceCheckPending
            | IdentityError::FaceCheckExpired => ErrorClass::Conflict,
            IdentityError::FaceCheckPending => ErrorClass::Unavailable,
            IdentityError::Provider(e) => e.class(),
            IdentityError::Vault(e) => e.class(),
            IdentityError::Store(e) => e.class(),
            IdentityError::Idempotency(e) => e.class(),
        }
    }
}
