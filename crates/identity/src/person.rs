//! Persons and platform accounts, and their storage ports.
//!
//! A [`Person`] holds only ciphertext ([`Envelope`]s) and a [`BlindIndex`] of
//! the ID number, plus masked forms for display; the plaintext never reaches
//! a store. A [`PlatformAccount`] is a user's account on a payment platform,
//! linked to a person once its real name is verified.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use citycard_core::{PersonId, Platform, PlatformAccountId, StoreError};
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

/// Where persons are kept.
#[async_trait]
pub trait PersonStore: Send + Sync {
    /// Adds a person; `Conflict` when the id or the blind index is taken.
    async fn insert(&self, person: &Person) -> Result<(), StoreError>;
    /// Replaces a stored person; `false` when there is none with that id.
    /// `Conflict` when the new blind index belongs to another person.
    async fn update(&self, person: &Person) -> Result<bool, StoreError>;
    /// A person by id.
    async fn get(&self, id: &PersonId) -> Result<Option<Person>, StoreError>;
    /// A person by the blind index of their ID number.
    async fn find_by_id_number_index(
        &self,
        index: &BlindIndex,
    ) -> Result<Option<Person>, StoreError>;
    /// Persons in id order after `after` (for re-encryption jobs), at most `limit`.
    async fn list(&self, after: Option<&PersonId>, limit: usize)
    -> Result<Vec<Person>, StoreError>;
}

/// Where platform accounts and their failed-verification counters are kept.
///
/// The service reserves an attempt before each billed provider call (so
/// concurrent requests cannot overshoot the daily limit) and releases it
/// when the answer was not a failure.
#[async_trait]
pub trait PlatformAccountStore: Send + Sync {
    /// Adds an account; `Conflict` when the id or (platform, external id) is taken.
    async fn insert(&self, account: &PlatformAccount) -> Result<(), StoreError>;
    /// Replaces a stored account; `false` when there is none with that id.
    async fn update(&self, account: &PlatformAccount) -> Result<bool, StoreError>;
    /// An account by id.
    async fn get(&self, id: &PlatformAccountId) -> Result<Option<PlatformAccount>, StoreError>;
    /// An account by platform and the platform's id.
    async fn find_external(
        &self,
        platform: &Platform,
        external_id: &str,
    ) -> Result<Option<PlatformAccount>, StoreError>;
    /// The accounts linked to a person, in id order.
    async fn list_for_person(&self, person: &PersonId) -> Result<Vec<PlatformAccount>, StoreError>;
    /// Atomically counts one attempt on a civil day if fewer than `limit`
    /// are counted: the new count, or `None` (nothing counted) at the limit.
    async fn reserve_attempt(
        &self,
        id: &PlatformAccountId,
        day: NaiveDate,
        limit: u32,
    ) -> Result<Option<u32>, StoreError>;
    /// Takes back one attempt counted on a civil day (never below zero).
    async fn release_attempt(
        &self,
        id: &PlatformAccountId,
        day: NaiveDate,
    ) -> Result<(), StoreError>;
    /// The failed verifications counted on a civil day.
    async fn failed_attempts(
        &self,
        id: &PlatformAccountId,
        day: NaiveDate,
    ) -> Result<u32, StoreError>;
}

/// Persons in memory.
#[derive(Debug, Default)]
pub struct MemoryPersonStore {
    persons: Mutex<BTreeMap<PersonId, Person>>,
}

impl MemoryPersonStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl PersonStore for MemoryPersonStore {
    async fn insert(&self, person: &Person) -> Result<(), StoreError> {
        let mut persons = self.persons.lock().unwrap_or_else(|e| e.into_inner());
        if persons.contains_key(&person.id) {
            return Err(StoreError::Conflict(format!("person {} exists", person.id)));
        }
        if persons
            .values()
            .any(|p| p.id_number_index == person.id_number_index)
        {
            return Err(StoreError::Conflict(
                "a person with this id number exists".into(),
            ));
        }
        persons.insert(person.id.clone(), person.clone());
        Ok(())
    }

    async fn update(&self, person: &Person) -> Result<bool, StoreError> {
        let mut persons = self.persons.lock().unwrap_or_else(|e| e.into_inner());
        if persons
            .values()
            .any(|p| p.id != person.id && p.id_number_index == person.id_number_index)
        {
            return Err(StoreError::Conflict(
                "a person with this id number exists".into(),
            ));
        }
        match persons.get_mut(&person.id) {
            Some(slot) => {
                *slot = person.clone();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn get(&self, id: &PersonId) -> Result<Option<Person>, StoreError> {
        let persons = self.persons.lock().unwrap_or_else(|e| e.into_inner());
        Ok(persons.get(id).cloned())
    }

    async fn find_by_id_number_index(
        &self,
        index: &BlindIndex,
    ) -> Result<Option<Person>, StoreError> {
        let persons = self.persons.lock().unwrap_or_else(|e| e.into_inner());
        Ok(persons
            .values()
            .find(|p| p.id_number_index == *index)
            .cloned())
    }

    async fn list(
        &self,
        after: Option<&PersonId>,
        limit: usize,
    ) -> Result<Vec<Person>, StoreError> {
        let persons = self.persons.lock().unwrap_or_else(|e| e.into_inner());
        Ok(persons
            .values()
            .filter(|p| after.is_none_or(|a| p.id > *a))
            .take(limit)
            .cloned()
            .collect())
    }
}

/// Platform accounts in memory.
#[derive(Debug, Default)]
pub struct MemoryPlatformAccountStore {
    accounts: Mutex<BTreeMap<PlatformAccountId, PlatformAccount>>,
    failures: Mutex<HashMap<(PlatformAccountId, NaiveDate), u32>>,
}

impl MemoryPlatformAccountStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl PlatformAccountStore for MemoryPlatformAccountStore {
    async fn insert(&self, account: &PlatformAccount) -> Result<(), StoreError> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        if accounts.contains_key(&account.id) {
            return Err(StoreError::Conflict(format!(
                "platform account {} exists",
                account.id
            )));
        }
        if accounts
            .values()
            .any(|a| a.platform == account.platform && a.external_id == account.external_id)
        {
            return Err(StoreError::Conflict(format!(
                "an account with this {} id exists",
                account.platform
            )));
        }
        accounts.insert(account.id.clone(), account.clone());
        Ok(())
    }

    async fn update(&self, account: &PlatformAccount) -> Result<bool, StoreError> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        if accounts.values().any(|a| {
            a.id != account.id
                && a.platform == account.platform
                && a.external_id == account.external_id
        }) {
            return Err(StoreError::Conflict(format!(
                "an account with this {} id exists",
                account.platform
            )));
        }
        match accounts.get_mut(&account.id) {
            Some(slot) => {
                *slot = account.clone();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn get(&self, id: &PlatformAccountId) -> Result<Option<PlatformAccount>, StoreError> {
        let accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        Ok(accounts.get(id).cloned())
    }

    async fn find_external(
        &self,
        platform: &Platform,
        external_id: &str,
    ) -> Result<Option<PlatformAccount>, StoreError> {
        let accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        Ok(accounts
            .values()
            .find(|a| a.platform == *platform && a.external_id == external_id)
            .cloned())
    }

    async fn list_for_person(&self, person: &PersonId) -> Result<Vec<PlatformAccount>, StoreError> {
        let accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        Ok(accounts
            .values()
            .filter(|a| a.person.as_ref() == Some(person))
            .cloned()
            .collect())
    }

    async fn reserve_attempt(
        &self,
        id: &PlatformAccountId,
        day: NaiveDate,
        limit: u32,
    ) -> Result<Option<u32>, StoreError> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let count = failures.entry((id.clone(), day)).or_default();
        if *count >= limit {
            return Ok(None);
        }
        *count += 1;
        Ok(Some(*count))
    }

    async fn release_attempt(
        &self,
        id: &PlatformAccountId,
        day: NaiveDate,
    ) -> Result<(), StoreError> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = failures.get_mut(&(id.clone(), day)) {
            *count = count.saturating_sub(1);
        }
        Ok(())
    }

    async fn failed_attempts(
        &self,
        id: &PlatformAccountId,
        day: NaiveDate,
    ) -> Result<u32, StoreError> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        Ok(failures.get(&(id.clone(), day)).copied().unwrap_or(0))
    }
}
