//! # citycard-testkit
//!
//! Test support shared by every citycard crate and by hosts that write their
//! own adapters:
//!
//! - **conformance suites**: one macro per storage port that expands into the
//!   same `#[tokio::test]` cases for any backend. The memory and SQLite
//!   stores both run them, and so can a host's own backend. The calling crate
//!   needs `tokio` as a dev-dependency.
//! - **fault injection**: [`Faults`], a switch that makes a port double fail,
//!   time out or report an unknown outcome on chosen calls.
//! - **proptest strategies** for money, ids and instants ([`strategies`]).
//!
//! ```
//! use citycard_testkit::{idempotency_store_conformance, audit_log_conformance};
//! use citycard_core::{MemoryAuditLog, MemoryIdempotencyStore};
//!
//! async fn idempotency_store() -> MemoryIdempotencyStore { MemoryIdempotencyStore::new() }
//! async fn audit_log() -> MemoryAuditLog { MemoryAuditLog::new() }
//! // Another handle on the same records, as a second process would claim.
//! fn handle(s: &MemoryIdempotencyStore, owner: &str) -> MemoryIdempotencyStore { s.handle(owner) }
//!
//! // In a test file these expand into `#[tokio::test]` functions.
//! idempotency_store_conformance!(idempotency_store, handle);
//! audit_log_conformance!(audit_log);
//! # fn main() {}
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod conformance;
pub mod faults;
pub mod idempotency;
mod outbox;
pub mod strategies;

#[cfg(feature = "binding")]
pub mod binding;
#[cfg(feature = "binding")]
mod binding_changes;
#[cfg(feature = "healthcare")]
pub mod healthcare;
#[cfg(feature = "identity")]
pub mod identity;
#[cfg(feature = "ledger")]
pub mod ledger;
#[cfg(feature = "transit")]
pub mod transit;

pub use citycard_core::ManualClock;
pub use faults::{Fault, Faults};

#[doc(hidden)]
pub mod __private {
    pub use chrono;
    #[cfg(feature = "binding")]
    pub use citycard_binding;
    pub use citycard_core;
    #[cfg(feature = "healthcare")]
    pub use citycard_healthcare;
    #[cfg(feature = "identity")]
    pub use citycard_identity;
    #[cfg(feature = "ledger")]
    pub use citycard_ledger;
    #[cfg(feature = "transit")]
    pub use citycard_transit;
    pub use proptest;
    pub use serde_json;
    pub use tokio;
}

/// Whether the backend under test is reachable here: always, for memory and
/// SQLite. A suite invoked as `suite!(factory, available = reachable)` calls
/// the caller's `fn reachable() -> bool` first and skips each case when it
/// answers `false` (a server-backed store with no server configured locally;
/// the caller decides whether that is allowed, e.g. never in CI).
pub fn backend_available() -> bool {
    true
}
