//! # citycard-transit
//!
//! Public transport on the card: a data-driven fare engine loading a
//! GTFS-Fares v2 subset with documented extensions, signed ride codes that a
//! reader verifies offline, taps assembled into trips, and day settlement that
//! charges through the `FarePayments` port.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod data;
pub mod error;
pub mod fares;
pub mod network;

pub use data::FareData;
pub use error::{LoadError, TransitError};
pub use fares::{
    CardKind, ConcessionApplied, FareBasis, FareEngine, Journey, Leg, LegFare, MaximumFareReason,
    Medium, Quote, Rider, TierApplied, TransferApplied, percent_of,
};
pub use network::{NetworkIdx, RouteIdx, StopIdx, TransitNetwork};
