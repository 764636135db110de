//! # citycard
//!
//! The facade that wires every citycard crate into one card system, and the
//! `citycard` command. A later issue fills it in; for now it re-exports the
//! domain crates so a host can reach each through one dependency.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use citycard_binding as binding;
pub use citycard_core as core;
pub use citycard_healthcare as healthcare;
pub use citycard_identity as identity;
pub use citycard_ledger as ledger;
pub use citycard_sqlite as sqlite;
pub use citycard_transit as transit;
