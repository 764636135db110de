//! # citycard-postgres
//!
//! Every citycard storage port on a PostgreSQL (15+) server, for
//! deployments where several app instances share one database. The schemas
//! mirror the SQLite store's (portable SQL, instants as microseconds, money
//! as fen); each component has its own schema version in `citycard_schema`,
//! and a database written by a newer citycard, or a schema holding another
//! application's tables, is refused and left untouched.
//!
//! Concurrency is enforced by the database, never by one process's memory:
//! unique constraints, row locks (`SELECT … FOR UPDATE`), compare-and-set
//! preconditions from the plans, and SERIALIZABLE transactions where a
//! store reads and then writes; a transaction that hits a serialization
//! failure (40001) or a deadlock (40P01) is run again from the start, at
//! most [`db::MAX_ATTEMPTS`] times ([`transaction!`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod binding;
mod core_stores;
pub mod db;
pub mod healthcare;
pub mod identity;
pub mod ledger;
mod ledger_shared;
pub mod outbox;
pub mod testing;
pub mod transit;

pub use core_stores::{PgAuditLog, PgIdempotencyStore, write_core_changes};
pub use db::{
    Database, Isolation, Migration, PgError, PoolSettings, SqlResult, decode_instant,
    encode_instant, to_store_error,
};

/// Every migration compiled into this build, all components together.
pub fn all_migrations() -> Vec<Migration> {
    let mut all: Vec<Migration> = Vec::new();
    all.extend_from_slice(core_stores::MIGRATIONS);
    all.extend_from_slice(outbox::MIGRATIONS);
    all.extend_from_slice(identity::MIGRATIONS);
    all.extend_from_slice(binding::MIGRATIONS);
    all.extend_from_slice(ledger::MIGRATIONS);
    all.extend_from_slice(transit::MIGRATIONS);
    all.extend_from_slice(healthcare::MIGRATIONS);
    all
}
