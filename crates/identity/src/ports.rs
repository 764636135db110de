//! Every port of the identity crate: the storage of persons and platform
//! accounts, the host's key management (KMS) and the real-name provider.
//!
//! The memory implementations are in `memory.rs`; the SQLite ones in
//! `citycard-sqlite`, checked by the conformance suites in `citycard-testkit`.
//! The simulated real-name provider is [`SimulatedVerifier`](crate::SimulatedVerifier).

use async_trait::async_trait;
use chrono::NaiveDate;
use citycard_core::{CoreChanges, PersonId, Platform, PlatformAccountId, Sensitive, StoreError};

use crate::id_number::IdNumber;
use crate::person::{Person, PlatformAccount};
use crate::vault::{BlindIndex, KeyId, SecretKey, VaultError};
use crate::verifier::{FaceResult, FaceSession, FactorCheck, VerificationOutcome, VerifierError};

/// What an enrolment writes to the person store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersonWrite {
    /// A new person (`Conflict` when the id or the blind index is taken).
    Insert(Person),
    /// A known person, changed (`Conflict` when the blind index is another's).
    Update(Person),
    /// Nothing about the person changes (only the core records are written).
    Unchanged,
}

/// Where persons are kept.
#[async_trait]
pub trait PersonStore: Send + Sync {
    /// Writes `person` and `core` (the operation's audit records and
    /// idempotency outcome) atomically: all of it or, on any conflict, none.
    async fn commit(&self, person: &PersonWrite, core: &CoreChanges) -> Result<(), StoreError>;
    /// Writes `persons` in order and `core` atomically, as
    /// [`PersonStore::commit`] does one (a chunk of a bulk enrolment): all of
    /// it or, on any conflict, none.
    async fn commit_all(
        &self,
        persons: &[PersonWrite],
        core: &CoreChanges,
    ) -> Result<(), StoreError>;
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

/// The host's key management: which key seals new data, and key material by id.
#[async_trait]
pub trait KeyProvider: Send + Sync {
    /// The id of the key that seals new envelopes.
    async fn current_key_id(&self) -> Result<KeyId, VaultError>;
    /// Key material by id (current or retired, for opening old envelopes).
    async fn key(&self, id: &KeyId) -> Result<SecretKey, VaultError>;
    /// The key of the blind index. It must stay stable: changing it means
    /// recomputing every stored index.
    async fn blind_index_key(&self) -> Result<SecretKey, VaultError>;
}

/// The real-name verification provider port.
#[async_trait]
pub trait RealNameVerifier: Send + Sync {
    /// Checks name + ID number (+ phone or bank card).
    async fn check_factors(
        &self,
        check: &FactorCheck,
    ) -> Result<VerificationOutcome, VerifierError>;
    /// Opens a face liveness session for a name and ID number.
    async fn start_face_session(
        &self,
        name: &Sensitive<String>,
        id_number: &IdNumber,
    ) -> Result<FaceSession, VerifierError>;
    /// The server-side result of a face session.
    async fn face_result(&self, session_id: &str) -> Result<FaceResult, VerifierError>;
}
