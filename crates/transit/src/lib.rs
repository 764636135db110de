//! # citycard-transit
//!
//! Public transport on the card: a data-driven fare engine loading a
//! GTFS-Fares v2 subset with documented extensions, signed ride codes that a
//! reader verifies offline, taps assembled into trips, and day settlement that
//! charges through the `FarePayments` port.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod codes;
pub mod data;
pub mod error;
pub mod fares;
pub mod network;
pub mod qr;
pub mod reader;
pub mod settlement;
pub mod store;
pub mod taps;
pub mod workload;

pub use codes::{
    Algorithm, Credential, Issuer, IssuerPublicKey, RideCode, RideCodeWallet, SigningKey,
};
pub use data::FareData;
pub use error::{LoadError, TransitError};
pub use fares::{
    CardKind, ConcessionApplied, FareBasis, FareEngine, Journey, Leg, LegFare, MaximumFareReason,
    Medium, Quote, Rider, TierApplied, TransferApplied, percent_of,
};
pub use network::{NetworkIdx, RouteIdx, StopIdx, TransitNetwork};
pub use reader::{Decision, Reader, ReaderConfig, Rejection};
pub use settlement::{
    ArrearsPayment, ChargeOutcome, FareCharge, FarePayments, MemoryFarePayments,
    MemoryRiderDirectory, RiderDirectory, Settlement, SettlementReport,
};
pub use store::{
    ArrearsEntry, DenyEntry, DenyReason, MemoryTransitStore, SettledTrip, TransitStore, TripId,
    TripPayment,
};
pub use taps::{
    CardRef, Tap, TapDirection, TapPlace, TapStats, Trip, TripCompleteness, assemble_trips,
};
