//! # citycard-ledger
//!
//! A double-entry ledger in the manner of TigerBeetle: accounts with balance
//! flags and upper limits, immutable transfers (linked, pending, post, void,
//! balancing, closing), precise per-transfer results, statements, balances as
//! of an instant and reconciliation, persisted batch by batch through the
//! `LedgerStore` port.
//!
//! This crate is being filled in; see the workspace README for status.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
