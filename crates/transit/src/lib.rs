//! # citycard-transit
//!
//! Public transport on the card: a data-driven fare engine loading a
//! GTFS-Fares v2 subset with documented extensions, signed ride codes (乘车码)
//! that a reader verifies offline, taps assembled into trips, and day
//! settlement that charges through the [`FarePayments`] port.
//!
//! ```
//! use chrono::{Duration, TimeZone, Utc};
//! use citycard_core::Money;
//! use citycard_transit::{CardRef, Decision, FareEngine, Journey, Reader, ReaderConfig, Rider, TapDirection, TapPlace};
//! use citycard_transit::codes::{Algorithm, Issuer, RideCodeWallet, SigningKey};
//!
//! // Fares: the embedded Hangzhou rules and sample network.
//! let engine = FareEngine::hangzhou()?;
//! let t = Utc.with_ymd_and_hms(2026, 11, 26, 0, 30, 0).unwrap(); // 08:30 in Hangzhou
//! let journey = Journey {
//!     rider: Rider::default(),
//!     month_spend_before: Money::ZERO,
//!     legs: vec![
//!         engine.route_leg("b7", "b_wulin", None, t, None)?,
//!         engine.station_leg("metro", "m_xianghu", Some("m_qianjiang"), t + Duration::minutes(20), Some(t + Duration::minutes(50)))?,
//!     ],
//! };
//! let quote = engine.quote(&journey)?;
//! // Bus ¥2, then 14.1 km of metro (¥5) less the ¥2 transfer discount.
//! assert_eq!(quote.total, "5.00".parse()?);
//! for line in quote.explain(&engine) {
//!     println!("{line}");
//! }
//!
//! // Ride codes: the issuer certifies the phone's key; the gate verifies offline.
//! let mut issuer = Issuer::new(1); // the issuer id the clearing body assigned
//! issuer.rotate(Algorithm::Sm2, t - Duration::days(1), t + Duration::days(365))?;
//! let phone_key = SigningKey::generate(Algorithm::Sm2)?;
//! let credential = issuer.certify(&phone_key.public_key(), CardRef(42), t - Duration::hours(1), t + Duration::days(7))?;
//! let mut wallet = RideCodeWallet::new(phone_key, credential)?;
//! let code = wallet.generate(t)?;
//! let n = engine.network();
//! let mut gate = Reader::new(
//!     ReaderConfig {
//!         reader: 1,
//!         place: TapPlace::Station { network: n.network("metro").unwrap(), stop: n.stop("m_xianghu").unwrap() },
//!         direction: TapDirection::In,
//!         max_code_age_seconds: 60,
//!         clock_skew_seconds: 30,
//!         repeat_window_seconds: 0,
//!     },
//!     &issuer.public_keys(),
//! );
//! let Decision::Accept(mut tap) = gate.decide(code.as_bytes(), t) else { panic!("refused") };
//! assert!(matches!(gate.decide(code.as_bytes(), t), Decision::Reject(_))); // replay
//! // The gate saw only a keyed reference; the back office maps it to the card.
//! assert_ne!(tap.card, CardRef(42));
//! issuer.resolve_taps(std::slice::from_mut(&mut tap));
//! assert_eq!(tap.card, CardRef(42));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Modules
//!
//! - [`data`], [`network`], [`fares`]: fare data files, the network with
//!   precomputed metro distances and bus sections, and the fare engine with
//!   [`FareEngine::quote`] and the allocation-free [`FareEngine::quote_into`];
//! - [`taps`], [`settlement`], [`store`]: taps to trips, day settlement with
//!   [`Settlement`], the [`FarePayments`] port and the [`TransitStore`] port
//!   (memory here, SQLite in `citycard-sqlite`);
//! - [`codes`], [`reader`], [`qr`]: ride-code keys, credentials and payloads,
//!   offline reader decisions, QR rendering (terminal, SVG, PNG);
//! - [`workload`]: a deterministic synthetic city day for benchmarks.
//!
//! ## Design decisions not fixed by the design document
//!
//! - Distance brackets match `min < d ≤ max`: exactly 4 km is ¥2, 4.001 km ¥3.
//! - A leg's fare is: base (rule or maximum fare) → concession % → transfer
//!   adjustment (capped at `transfer_discount_cap`) → monthly tier % on the
//!   month's spend *before* that leg. Percentages round half-up to the fen.
//! - A missing tap-out, a tap-out without tap-in, or more than the network's
//!   time limit is charged the network's maximum fare; such legs neither get
//!   nor open a transfer discount. The 70+ peak window is end-exclusive
//!   (08:30 is off-peak).
//! - "One transfer discount" is `transfers_per_journey = 1`: after a discounted
//!   transfer the next leg pays in full and starts a new journey.
//! - A flat-fare bus leg has no tap-out; its boarding time is also its
//!   arrival for transfer windows (`duration_limit_type` 2 = arrival to departure).
//! - Monthly spend counts what was owed (charged or in arrears) on earlier
//!   civil days of the month, so re-running a day prices it identically.
//! - Each trip is charged once with key `trip-<card>-<tap-in µs>-<n>`; trips
//!   already in the store are skipped, and the payments port's idempotency
//!   covers a crash between charge and record. Payment outages leave trips
//!   pending for the next run. A day run is not itself keyed: the per-trip
//!   keys make it idempotent.
//! - Readers cache verified credentials (keyed by the issuer signature and
//!   compared byte for byte), so a rider's later codes cost one signature
//!   check. The replay cache key is the code use ([`CodeUse`]: credential
//!   key, reference and validity, code timestamp and counter).
//! - A reader's replay cache is its own, so ride-code taps carry their code
//!   use and settlement drops every later tap of a code use already seen
//!   that day ([`dedupe_code_taps`]), counting them in
//!   `TapStats::duplicate_codes`; they are not charged.
//! - Card references are opaque `u64`s ([`CardRef`]); the facade maps card ids
//!   to them. A credential carries a keyed, per-credential encipherment of
//!   the reference, not the reference itself (see [`codes`]); the back
//!   office maps it back with [`Issuer::resolve_taps`] before settlement,
//!   and records issued credentials ([`IssuedCredential`]) so that readers'
//!   deny lists name references ([`reader_deny_list`]).
//! - Key ids carry the issuer id in their high 16 bits, so a reader answers
//!   a foreign issuer's code "wrong issuer" instead of "tampered".
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod codes;
pub mod data;
pub mod error;
pub mod fares;
mod fasthash;
pub use fasthash::{FxBuild, FxHashMap, FxHashSet};
pub mod network;
pub mod plan;
pub mod qr;
pub mod reader;
pub mod settlement;
pub mod store;
pub mod taps;
pub mod workload;

pub use codes::{
    Algorithm, Credential, Issuer, IssuerPublicKey, RideCode, RideCodeWallet, SecretKeyBytes,
    SigningKey,
};
pub use data::{Diagnostic, FareData, Severity};
pub use error::{LoadError, TransitError};
pub use fares::{
    CapApplied, CapPeriod, CardKind, ConcessionApplied, Currency, FareBasis, FareEngine, Journey,
    Leg, LegFare, LoadMode, MaximumFareReason, Medium, Quote, Rider, SpendSoFar, TierApplied,
    TransferApplied, percent_of,
};
pub use network::{NetworkIdx, RouteIdx, StopIdx, TransitNetwork};
pub use plan::{
    ArrearsPlan, ChargePlan, ChunkPlan, MAX_CHARGES_PER_CHUNK, PlannedTrip, SettlementPrefetch,
    plan_chunk, plan_day,
};
pub use reader::{Decision, Reader, ReaderConfig, Rejection};
pub use settlement::{
    ArrearsPayment, CardFailure, ChargeOne, ChargeOutcome, FareCharge, FarePayments,
    MemoryFarePayments, MemoryRiderDirectory, RiderDirectory, Settlement, SettlementReport,
    commit_one_by_one,
};
pub use store::{
    ArrearsEntry, DenyEntry, DenyReason, IssuedCredential, MemoryTransitStore, SettledTrip,
    StoredForChunk, TransitChanges, TransitStore, TripId, TripPayment, reader_deny_list,
};
pub use taps::{
    CardRef, CodeUse, Tap, TapDirection, TapPlace, TapStats, Trip, TripCompleteness,
    assemble_trips, dedupe_code_taps, taps_from_csv,
};
