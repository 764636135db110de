//! # citycard-sqlite
//!
//! The embedded store: every citycard storage port implemented on one SQLite
//! file (bundled SQLite, WAL journal, `synchronous = FULL`). Opening a file
//! creates or migrates its schema; each component (`core`, `identity`,
//! `ledger`, ...) has its own schema version in the `citycard_schema` table,
//! and a file written by a newer citycard, or a file that is not a citycard
//! database, is refused with a clear error.
//!
//! Each domain's stores sit behind a cargo feature of the same name (all on
//! by default), so a host that uses only the ledger compiles only the ledger.
//!
//! ```
//! use citycard_core::{AuditLog, AuditOutcome, AuditQuery, AuditRecord, Principal};
//! use citycard_sqlite::{Database, SqliteAuditLog};
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! let db = Database::open_in_memory()?;
//! let audit = SqliteAuditLog::new(db.clone());
//! let at = chrono::Utc::now();
//! audit.append(AuditRecord::new(at, Principal::System, "card.issue", "card:c-1", AuditOutcome::Succeeded)).await?;
//! assert_eq!(audit.query(&AuditQuery::subject("card:c-1")).await?.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod core_stores;
pub mod db;
pub mod outbox;

#[cfg(feature = "binding")]
pub mod binding;
#[cfg(feature = "healthcare")]
pub mod healthcare;
#[cfg(feature = "identity")]
pub mod identity;
#[cfg(feature = "ledger")]
pub mod ledger;
#[cfg(feature = "transit")]
pub mod transit;

pub use core_stores::{SqliteAuditLog, SqliteIdempotencyStore, write_core_changes};
pub use db::{
    APPLICATION_ID, Database, Migration, SqliteError, decode_instant, encode_instant,
    to_store_error,
};

/// Every migration compiled into this build, all components together.
pub fn all_migrations() -> Vec<Migration> {
    let mut all: Vec<Migration> = Vec::new();
    all.extend_from_slice(core_stores::MIGRATIONS);
    all.extend_from_slice(outbox::MIGRATIONS);
    #[cfg(feature = "identity")]
    all.extend_from_slice(identity::MIGRATIONS);
    #[cfg(feature = "binding")]
    all.extend_from_slice(binding::MIGRATIONS);
    #[cfg(feature = "ledger")]
    all.extend_from_slice(ledger::MIGRATIONS);
    #[cfg(feature = "transit")]
    all.extend_from_slice(transit::MIGRATIONS);
    #[cfg(feature = "healthcare")]
    all.extend_from_slice(healthcare::MIGRATIONS);
    all
}
