//! # citycard-identity
//!
//! Who a cardholder is:
//!
//! - [`IdNumber`]: Chinese ID numbers of every kind — 18-digit resident
//!   numbers (GB 11643-1999), legacy 15-digit numbers (upgraded), residence
//!   permits of Hong Kong, Macau and Taiwan residents, and the 2023 Foreign
//!   Permanent Resident ID Card — with normalisation, precise
//!   [`IdNumberError`]s, a [`ValidationPolicy`], masked printing and a
//!   seeded [`IdNumberGenerator`];
//! - [`region`]: the GB/T 2260 county-level codes 1980–2021 with the years
//!   each was valid, embedded (109 KB) and searched without allocation;
//! - [`Vault`]: AES-256-GCM (or SM4-GCM, feature `sm4`) envelopes with key
//!   rotation through the [`KeyProvider`] port, and an HMAC blind index;
//! - [`Person`] and [`PlatformAccount`] with their storage ports;
//! - the [`RealNameVerifier`] port with a [`SimulatedVerifier`], and
//!   [`IdentityService`], which verifies platform accounts' real names.
//!
//! ```
//! use citycard_identity::{IdNumber, IdNumberError, IdNumberKind, RegionCheck, Sex, ValidationPolicy};
//! use chrono::NaiveDate;
//!
//! let id = IdNumber::parse("610104620927690")?; // legacy 15 digits
//! assert_eq!(id.kind(), IdNumberKind::UpgradedLegacy);
//! assert_eq!(id.reveal(), "610104196209276908");
//! assert_eq!(id.birth_date(), NaiveDate::from_ymd_opt(1962, 9, 27).unwrap());
//! assert_eq!(id.sex(), Sex::Female);
//! assert_eq!(id.to_string(), "610***********6908"); // Display is masked
//! assert_eq!(id.region().unwrap().province, Some("陕西省"));
//!
//! assert_eq!(
//!     IdNumber::parse("11010119900307867X"),
//!     Err(IdNumberError::CheckCharacter { expected: '0', found: 'X' })
//! );
//! let strict = ValidationPolicy::new().region_check(RegionCheck::ExistedInBirthYear);
//! assert!(IdNumber::parse_with("110101199003078670", &strict).is_ok());
//! # Ok::<(), IdNumberError>(())
//! ```
//!
//! Verifying a platform account's real name (memory stores, simulated provider):
//!
//! ```
//! use std::sync::Arc;
//! use citycard_core::*;
//! use citycard_identity::*;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let sim = Arc::new(SimulatedVerifier::new());
//! sim.register(&IdNumber::parse("11010519491231002X")?, KnownPerson::named("张三"));
//! // Every port in memory; a host passes its own stores, KMS and provider.
//! let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0));
//! let service = IdentityService::new(
//!     IdentityPorts::in_memory(sim.clone(), clock)?,
//!     IdentityConfig::default(),
//! );
//! let alipay = Principal::Platform { platform: Platform::Alipay };
//! let account = service
//!     .register_account(&alipay, Platform::Alipay, "2088000000000001", &"reg-1".parse()?)
//!     .await?;
//! let report = service
//!     .verify_real_name(&alipay, &account.id, &RealNameRequest::two_factor("张三", "11010519491231002x"), &"v-1".parse()?)
//!     .await?;
//! assert_eq!(report.outcome, VerificationOutcome::Match);
//! let status = service.real_name_status(&alipay, &account.id).await?;
//! assert!(status.is_verified());
//! let person = status.person.unwrap();
//! assert!(service.id_number_belongs_to(&person, &IdNumber::parse("11010519491231002X")?).await?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! ## Decisions beyond the design
//!
//! - Parsing reports, in order: a stray character (with its position), the
//!   length, the birth date, the region, then the check character, so a
//!   mistyped date or region is reported as such (the domain notes' invalid
//!   samples fail for their stated reasons) rather than as a checksum error.
//! - The earliest accepted birth year defaults to 1800, because the domain
//!   notes list a number born in 1880 as valid; a policy can raise it to 1900.
//! - "Today" for the future-date check is the policy's date, or the system
//!   clock's civil date when unset; the service always passes its `Clock`.
//! - Region history comes from jxlwqq's MIT-licensed timeline plus a small
//!   corrections file (`data/`); municipal-district codes `xxxx01/02/11/20`
//!   missing from the tables are accepted when their prefecture exists.
//! - The account itself is represented by its platform's principal, or by
//!   the cardholder once the account is linked (core has no account principal).
//!   Delegates may not verify real names.
//! - Envelopes are bound to a context string through the AEAD's associated
//!   data; the blind index has its own key that does not rotate with the
//!   encryption keys.
//! - The port traits (`ports.rs`) and memory adapters (`memory.rs`) are
//!   reached only from the crate root (`citycard_identity::PersonStore`,
//!   `citycard_identity::MemoryKeyProvider`, …): their modules are private,
//!   so each name has one public path.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod error;
pub mod generator;
pub mod id_number;
mod memory;
pub mod nationality;
pub mod person;
mod ports;
pub mod region;
pub mod service;
pub mod vault;
pub mod verifier;

pub use error::IdentityError;
pub use generator::IdNumberGenerator;
pub use id_number::{
    DEFAULT_EARLIEST_BIRTH_YEAR, IdNumber, IdNumberError, IdNumberKind, RegionCheck, Sex,
    ValidationPolicy, ValidityNote, check_character,
};
pub use memory::{MemoryKeyProvider, MemoryPersonStore, MemoryPlatformAccountStore};
pub use person::{PendingFaceCheck, Person, PlatformAccount, RealNameLevel};
pub use ports::{KeyProvider, PersonStore, PersonWrite, PlatformAccountStore, RealNameVerifier};
pub use region::{Region, RegionCode, RegionRecord, Validity};
pub use service::{
    IdentityConfig, IdentityPorts, IdentityService, RealNameRequest, RealNameStatus,
    VerificationReport,
};
pub use vault::{Algorithm, BlindIndex, Envelope, KeyId, SecretKey, Vault, VaultError};
pub use verifier::{
    ExtraFactor, FaceResult, FaceSession, Factor, FactorCheck, KnownPerson, SimulatedVerifier,
    VerificationOutcome, VerifierError,
};
