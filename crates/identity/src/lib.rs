//! # citycard-identity
//!
//! Who a cardholder is: Chinese ID numbers (GB 11643-1999 resident numbers,
//! legacy 15-digit numbers, residence permits for Hong Kong, Macau and Taiwan
//! residents, foreign permanent resident cards) with history-aware region
//! codes (GB/T 2260), real-name verification of platform accounts through the
//! `RealNameVerifier` port, and the personal-data vault that keeps ID numbers
//! and names encrypted with a keyed blind index for lookup.
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
//!
//! assert_eq!(
//!     IdNumber::parse("11010119900307867X"),
//!     Err(IdNumberError::CheckCharacter { expected: '0', found: 'X' })
//! );
//! let strict = ValidationPolicy::new().region_check(RegionCheck::ExistedInBirthYear);
//! assert!(IdNumber::parse_with("110101199003078670", &strict).is_ok());
//! # Ok::<(), IdNumberError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod error;
pub mod generator;
pub mod id_number;
pub mod person;
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
pub use person::{
    MemoryPersonStore, MemoryPlatformAccountStore, PendingFaceCheck, Person, PersonStore,
    PlatformAccount, PlatformAccountStore, RealNameLevel,
};
pub use region::{Region, RegionCode, RegionRecord, Validity};
pub use service::{
    IdentityConfig, IdentityPorts, IdentityService, RealNameRequest, RealNameStatus,
    VerificationReport,
};
pub use vault::{
    Algorithm, BlindIndex, Envelope, KeyId, KeyProvider, MemoryKeyProvider, SecretKey, Vault,
    VaultError,
};
pub use verifier::{
    ExtraFactor, FaceResult, FaceSession, Factor, FactorCheck, KnownPerson, RealNameVerifier,
    SimulatedVerifier, VerificationOutcome, VerifierError,
};
