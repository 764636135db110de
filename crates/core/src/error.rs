//! Error classes shared by every crate.
//!
//! Each crate has its own error enum; each implements [`ClassifiedError`] so a
//! host maps every citycard error to its own codes (HTTP statuses, app
//! messages) in one place, by class.

use serde::{Deserialize, Serialize};

/// What kind of failure an error is, and so what the caller should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorClass {
    /// The request is wrong: fix the input and try again.
    InvalidInput,
    /// What was asked for does not exist.
    NotFound,
    /// The request clashes with the current state (already done differently, wrong state).
    Conflict,
    /// The acting principal may not do this.
    Denied,
    /// Too many attempts: wait before trying again.
    RateLimited,
    /// A dependency is unavailable or the outcome is not known yet: retry later with the same key.
    Unavailable,
    /// A bug or corrupted data: contact support.
    Internal,
}

impl ErrorClass {
    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::RateLimited | ErrorClass::Unavailable)
    }
}

/// Implemented by every citycard error type.
pub trait ClassifiedError: std::error::Error {
    /// The class of this error.
    fn class(&self) -> ErrorClass;
}

/// A failure of a storage port (any backend).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store cannot be reached or is busy: retry later.
    #[error("storage unavailable, retry later: {0}")]
    Unavailable(String),
    /// A write clashed with an existing record (a unique key, say).
    #[error("storage conflict: {0}")]
    Conflict(String),
    /// Stored data could not be read back: contact support.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Any other storage failure: contact support.
    #[error("storage failure: {0}")]
    Internal(String),
}

impl ClassifiedError for StoreError {
    fn class(&self) -> ErrorClass {
        match self {
            StoreError::Unavailable(_) => ErrorClass::Unavailable,
            StoreError::Conflict(_) => ErrorClass::Conflict,
            StoreError::Corrupt(_) | StoreError::Internal(_) => ErrorClass::Internal,
        }
    }
}
