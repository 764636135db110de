//! Persons and platform accounts (their storage ports are in `ports.rs`).
//!
//! A [`Person`] holds only ciphertext ([`Envelope`]s) and a [`BlindIndex`] of
//! the ID number, plus masked forms for display; the plaintext never reaches
//! a store. A [`PlatformAccount`] is a user's account on a payment platform,
//! linked to a person once its real name is verified.

use chrono::{DateTime, Utc};
use citycard_core::{PersonId, Platform, PlatformAccountId};
use serde::{Deserialize, Serialize};

use crate::vault::{BlindIndex, Envelope};

/// How strongly a real name was verified; ordered weakest first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RealNameLevel {
    /// Not verified.
    #[default]
    Unverified,
    /// Name and ID number matched (two-factor).
    TwoFactor,
    /// Name, ID number and a phone number or bank card matched (three-factor).
    ThreeFactor,
    /// A face liveness check against the ID photo passed.
    FaceLiveness,
}

impl RealNameLevel {
    /// A stable code.
    pub fn code(self) -> &'static str {
        match self {
            RealNameLevel::Unverified => "unverified",
            RealNameLevel::TwoFactor => "two_factor",
            RealNameLevel::ThreeFactor => "three_factor",
            RealNameLevel::FaceLiveness => "face_liveness",
        }
    }

    /// The level for a code.
    pub fn from_code(code: &str) -> Option<RealNameLevel> {
        Some(match code {
            "unverified" => RealNameLevel::Unverified,
            "two_factor" => RealNameLevel::TwoFactor,
            "three_factor" => RealNameLevel::ThreeFactor,
            "face_liveness" => RealNameLevel::FaceLiveness,
            _ => return None,
        })
    }

    /// True for any verified level.
    pub fn is_verified(self) -> bool {
        self > RealNameLevel::Unverified
    }
}

impl std::fmt::Display for RealNameLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// A natural person, with personal data only in encrypted form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// The person's id.
    pub id: PersonId,
    /// The name, masked for display (`张**`).
    pub masked_name: String,
    /// The name, encrypted (context `person:<id>:name`).
    pub name: Envelope,
    /// The ID number, masked for display (`110***********002X`).
    pub masked_id_number: String,
    /// The ID number, encrypted (context `person:<id>:id_number`).
    pub id_number: Envelope,
    /// The blind index of the ID number, unique per store.
    pub id_number_index: BlindIndex,
    /// The strongest verification so far.
    pub level: RealNameLevel,
    /// When that verification happened.
    pub verified_at: Option<DateTime<Utc>>,
    /// When the record was created.
    pub created_at: DateTime<Utc>,
}

impl Person {
    /// The masked form of a name kept in [`Person::masked_name`]: only the
    /// first character shows (`张**`), whatever mask the caller's
    /// `Sensitive` carried, so a long name never keeps most of its characters.
    pub fn mask_name(name: &str) -> String {
        citycard_core::Mask::NAME.apply(name.trim())
    }

    /// The vault context of the name envelope.
    pub fn name_context(id: &PersonId) -> String {
        format!("person:{id}:name")
    }

    /// The vault context of the ID-number envelope.
    pub fn id_number_context(id: &PersonId) -> String {
        format!("person:{id}:id_number")
    }
}

/// A face liveness session in progress for an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingFaceCheck {
    /// The provider's session id.
    pub session_id: String,
    /// The blind index of the ID number the session checks.
    pub id_number_index: BlindIndex,
    /// The ID number, encrypted (context `account:<id>:face:id_number`).
    pub id_number: Envelope,
    /// The name, encrypted (context `account:<id>:face:name`).
    pub name: Envelope,
    /// When the session started.
    pub started_at: DateTime<Utc>,
}

/// A user's account on a payment platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformAccount {
    /// Our id for the account.
    pub id: PlatformAccountId,
    /// The platform.
    pub platform: Platform,
    /// The platform's own id for the account (e.g. an Alipay user id).
    pub external_id: String,
    /// The person it belongs to, once verified.
    pub person: Option<PersonId>,
    /// The real-name level reached.
    pub level: RealNameLevel,
    /// When that level was reached.
    pub verified_at: Option<DateTime<Utc>>,
    /// A face check in progress, if any.
    pub pending_face: Option<PendingFaceCheck>,
    /// When the record was created.
    pub created_at: DateTime<Utc>,
}

impl PlatformAccount {
    /// True when verified at any level.
    pub fn is_real_name_verified(&self) -> bool {
        self.level.is_verified() && self.person.is_some()
    }
}
