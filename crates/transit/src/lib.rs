//! # citycard-transit
//!
//! Public transport on the card: a data-driven fare engine loading a
//! GTFS-Fares v2 subset with documented extensions, signed ride codes that a
//! reader verifies offline, taps assembled into trips, and day settlement that
//! charges through the `FarePayments` port.
//!
//! This crate is being filled in; see the workspace README for status.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
