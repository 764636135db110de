//! # citycard
//!
//! The facade that wires every citycard crate into one card system, and the
//! `citycard` command.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod accounts;
pub mod demo;
pub mod error;
pub mod glue;
pub mod keys;
pub mod riders;
pub mod system;
pub mod wallet;

pub use accounts::Accounts;
pub use error::CityCardError;
pub use system::{CityCard, CityCardBuilder, Healthcare, NewCitizenCard, Storage, Transit};
pub use wallet::{WalletReceipt, WalletService};

pub use citycard_binding as binding;
pub use citycard_core as core;
pub use citycard_healthcare as healthcare;
pub use citycard_identity as identity;
pub use citycard_ledger as ledger;
pub use citycard_sqlite as sqlite;
pub use citycard_transit as transit;
