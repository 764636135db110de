//! Idempotency: retries return the first answer.
//!
//! Every operation that moves money or changes a binding takes an
//! [`IdempotencyKey`]. The service claims the key in an [`IdempotencyStore`]
//! together with a [`Fingerprint`] of the request:
//!
//! - a new key is claimed (`in progress`) and the operation runs; its outcome
//!   is stored and the key becomes `completed`;
//! - the same key with the same request returns the stored outcome without
//!   running anything again;
//! - the same key with a different request is a conflict;
//! - the same key while the first call is still running is "in progress".
//!
//! Keys are scoped by operation (`"ledger.top_up"`, `"binding.bind"`), so one
//! key string can serve different operations without clashing.
//!
//! [`run_idempotent`] does the whole dance. It stores successful outcomes
//! only: when the operation returns an error the claim is released so the
//! caller can retry. An operation whose definitive failures must also be
//! replayed (a refused binding, say) returns them inside its `Ok` outcome.
//!
//! # A claim is never permanent
//!
//! A process can die between claiming a key and completing it. Every claim
//! therefore carries an **owner** (the store handle that took it, one per
//! process unless the host says otherwise) and a **lease** (an expiry taken
//! from the caller's clock, [`DEFAULT_CLAIM_LEASE`] after the claim). While
//! the lease runs, other callers get [`IdempotencyError::InProgress`]; once
//! it has run out, the next claim of the same request takes the key over
//! ([`Claim::TakenOver`]) and [`run_idempotent_recovering`] first reads the
//! effect back (the ledger transfer derived from the key, the card with the
//! number, the binding of the card on the account): found → the claim is
//! completed with the real outcome; not found → the operation runs again.
//! Only the current owner may complete or release a claim, so a process that
//! wakes up after its lease was taken over cannot overwrite the outcome.
//!
//! Where the effect commits in the same transaction as its own idempotency
//! record (a ledger transfer whose id is derived from the key, answered
//! `exists` on resubmission) no claim is taken at all: that is where every
//! local operation is heading (decide, then commit once).
//!
//! # Keys belong to a principal
//!
//! A key chosen by a caller is that caller's: [`principal_scope`] folds the
//! acting principal into the scope, so two cardholders (or two platforms)
//! using the same key string never collide. Keys the system derives itself
//! (a trip id for a fare) name their subject already and stay unscoped.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ClassifiedError, ErrorClass, StoreError};
use crate::principal::Principal;

/// How long a claim holds its key before another owner may take it over (two minutes).
///
/// Longer than any one operation with its remote calls and retries; short
/// enough that a crashed process blocks a key for minutes, never for good.
pub const DEFAULT_CLAIM_LEASE: chrono::Duration = chrono::Duration::minutes(2);

/// The scope of a caller-chosen key: the operation and the principal that chose it.
///
/// Two principals using the same key string get two records (and two ledger
/// transfer ids), so a predictable key cannot be taken by someone else. A
/// delegate's keys are the acting person's, whoever they act for.
pub fn principal_scope(operation: &str, principal: &Principal) -> String {
    match principal {
        Principal::Cardholder { person } => format!("{operation}@person:{person}"),
        Principal::Delegate { delegate, .. } => format!("{operation}@person:{delegate}"),
        Principal::Platform { platform } => format!("{operation}@platform:{}", platform.code()),
        Principal::Operator { operator } => format!("{operation}@operator:{operator}"),
        Principal::System => format!("{operation}@system"),
    }
}

impl IdempotencyKey {
    /// This key as `principal` chose it, for a store that keeps one key
    /// namespace of its own (a bill settlement's key): `sc:` and 40 hex digits
    /// of SHA-256 over [`principal_scope`] and the key. The same principal and
    /// key always give the same scoped key, so retries still replay; another
    /// principal's identical key gives another.
    pub fn scoped_to(&self, principal: &Principal) -> IdempotencyKey {
        let mut hasher = Sha256::new();
        hasher.update(principal_scope("key", principal).as_bytes());
        hasher.update([0]);
        hasher.update(self.as_str().as_bytes());
        let digest = hasher.finalize();
        let mut text = String::with_capacity(43);
        text.push_str("sc:");
        for byte in &digest[..20] {
            text.push_str(&format!("{byte:02x}"));
        }
        IdempotencyKey::parse(&text).unwrap_or_else(|_| self.clone())
    }
}

/// A fresh owner id for a store handle: the process id and 64 random bits.
pub fn new_claim_owner() -> String {
    let mut bytes = [0u8; 8];
    // Without randomness the process id and the time still tell processes apart.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        bytes = nanos.to_le_bytes();
    }
    format!(
        "pid{}-{:016x}",
        std::process::id(),
        u64::from_le_bytes(bytes)
    )
}

crate::define_id!(
    /// A caller-chosen key that makes a request safe to retry.
    IdempotencyKey, "idempotency key", "idem"
);

/// A digest (SHA-256) of a request's canonical JSON, to tell "the same
/// request again" from "a different request with the same key".
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a request's JSON serialisation.
    ///
    /// Serialise maps with a fixed order (`BTreeMap`) so equal requests give
    /// equal fingerprints.
    pub fn of<T: Serialize + ?Sized>(request: &T) -> Result<Fingerprint, IdempotencyError> {
        let bytes =
            serde_json::to_vec(request).map_err(|e| IdempotencyError::Encoding(e.to_string()))?;
        Ok(Self::of_bytes(&bytes))
    }

    /// The fingerprint of raw bytes.
    pub fn of_bytes(bytes: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(bytes).into())
    }

    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        use fmt::Write;
        let mut s = String::with_capacity(64);
        for b in self.0 {
            let _ = write!(s, "{b:02x}");
        }
        s
    }

    /// Parses lowercase or uppercase hex.
    pub fn from_hex(hex: &str) -> Option<Fingerprint> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Fingerprint(out))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", &self.to_hex()[..12])
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Fingerprint::from_hex(&text).ok_or_else(|| serde::de::Error::custom("invalid fingerprint"))
    }
}

/// The state of a claimed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdempotencyState {
    /// The first call is still running.
    InProgress,
    /// The first call finished; its outcome is stored.
    Completed,
}

/// What the store keeps for one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// The operation's scope.
    pub scope: String,
    /// The key.
    pub key: IdempotencyKey,
    /// The first request's fingerprint.
    pub fingerprint: Fingerprint,
    /// In progress or completed.
    pub state: IdempotencyState,
    /// The stored outcome (JSON), once completed.
    pub outcome: Option<String>,
    /// When the key was first claimed.
    pub created_at: DateTime<Utc>,
    /// When the outcome was stored.
    pub completed_at: Option<DateTime<Utc>>,
    /// Who holds (or last held) the claim.
    pub owner: String,
    /// Until when an in-progress claim is held; `None` once completed.
    pub lease_until: Option<DateTime<Utc>>,
}

impl IdempotencyRecord {
    /// True when this is an in-progress claim whose lease has run out at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.state == IdempotencyState::InProgress && self.lease_until.is_none_or(|t| t <= now)
    }
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new and now claimed: run the operation, then complete it.
    Started,
    /// The same request already completed: here is its outcome (JSON).
    Completed(String),
    /// The same request was claimed by another owner whose lease ran out; the
    /// key is now claimed by this caller. Read the effect back before running
    /// the operation again.
    TakenOver {
        /// The owner whose lease ran out.
        previous_owner: String,
        /// When the key was first claimed.
        claimed_at: DateTime<Utc>,
    },
}

/// Why an idempotent call could not proceed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdempotencyError {
    /// The key was used before for a different request.
    #[error(
        "idempotency key {key} was already used for a different request in {scope}: use a new key for a new request"
    )]
    Conflict {
        /// The scope.
        scope: String,
        /// The key.
        key: IdempotencyKey,
    },
    /// The first call with this key has not finished.
    #[error(
        "a request with idempotency key {key} in {scope} is still being processed: poll again shortly"
    )]
    InProgress {
        /// The scope.
        scope: String,
        /// The key.
        key: IdempotencyKey,
    },
    /// `complete` or `release` was called for a key that is not claimed in progress with this request.
    #[error("idempotency key {key} in {scope} is not claimed in progress for this request")]
    NotClaimed {
        /// The scope.
        scope: String,
        /// The key.
        key: IdempotencyKey,
    },
    /// `complete` or `release` by a caller that no longer holds the claim (its lease was taken over).
    #[error(
        "idempotency key {key} in {scope} was taken over by another process after its lease ran out: read the outcome with a retry"
    )]
    NotOwner {
        /// The scope.
        scope: String,
        /// The key.
        key: IdempotencyKey,
    },
    /// A request or outcome could not be encoded or decoded.
    #[error("idempotency record could not be encoded or decoded: {0}")]
    Encoding(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ClassifiedError for IdempotencyError {
    fn class(&self) -> ErrorClass {
        match self {
            IdempotencyError::Conflict { .. }
            | IdempotencyError::NotClaimed { .. }
            | IdempotencyError::NotOwner { .. } => ErrorClass::Conflict,
            IdempotencyError::InProgress { .. } => ErrorClass::Unavailable,
            IdempotencyError::Encoding(_) => ErrorClass::Internal,
            IdempotencyError::Store(e) => e.class(),
        }
    }
}

/// The idempotency record store port.
///
/// A store handle has an owner ([`IdempotencyStore::owner`]) and a lease
/// length: its claims carry that owner and expire `lease` after `now`.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// The owner this handle claims keys as.
    fn owner(&self) -> &str;

    /// Claims a key for a request, atomically: [`Claim::Started`] for a new
    /// key, [`Claim::Completed`] for a finished identical request,
    /// [`Claim::TakenOver`] for an identical request whose claim expired
    /// (held by another owner, or by this one), and
    /// [`IdempotencyError::Conflict`] / [`IdempotencyError::InProgress`] otherwise.
    async fn claim(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        now: DateTime<Utc>,
    ) -> Result<Claim, IdempotencyError>;

    /// Stores the outcome of a claimed request and marks it completed; only
    /// the claim's owner may ([`IdempotencyError::NotOwner`] otherwise).
    async fn complete(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        outcome: &str,
        now: DateTime<Utc>,
    ) -> Result<(), IdempotencyError>;

    /// Drops an in-progress claim (the operation failed and may be retried);
    /// only the claim's owner may ([`IdempotencyError::NotOwner`] otherwise).
    async fn release(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
    ) -> Result<(), IdempotencyError>;

    /// Reads the record for a key.
    async fn get(
        &self,
        scope: &str,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, IdempotencyError>;

    /// Up to `limit` in-progress claims, oldest first (expired or not), for recovery.
    async fn in_progress(&self, limit: usize) -> Result<Vec<IdempotencyRecord>, IdempotencyError>;
}

/// Runs `operation` at most once per `(scope, key)` and returns the first
/// successful outcome to every identical retry.
///
/// ```
/// use citycard_core::{run_idempotent, IdempotencyError, IdempotencyKey, MemoryIdempotencyStore};
///
/// # tokio_test();
/// # fn tokio_test() {
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let store = MemoryIdempotencyStore::new();
/// let key: IdempotencyKey = "topup-42".parse().unwrap();
/// let now = chrono::Utc::now();
/// let mut runs = 0;
/// for _ in 0..3 {
///     let out: Result<u32, IdempotencyError> =
///         run_idempotent(&store, "demo.top_up", &key, &("card-1", 5000), now, || {
///             runs += 1;
///             async { Ok(7) }
///         })
///         .await;
///     assert_eq!(out.unwrap(), 7);
/// }
/// assert_eq!(runs, 1);
/// # });
/// # }
/// ```
pub async fn run_idempotent<Req, Out, E, F, Fut>(
    store: &dyn IdempotencyStore,
    scope: &str,
    key: &IdempotencyKey,
    request: &Req,
    now: DateTime<Utc>,
    operation: F,
) -> Result<Out, E>
where
    Req: Serialize + ?Sized,
    Out: Serialize + DeserializeOwned,
    E: From<IdempotencyError>,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Out, E>>,
{
    run_idempotent_recovering(
        store,
        scope,
        key,
        request,
        now,
        || async { Ok(None) },
        operation,
    )
    .await
}

/// [`run_idempotent`] for an operation whose effect can be read back: when
/// the key is taken over from an expired claim, `recover` runs first and a
/// `Some(outcome)` completes the claim without running `operation`; `None`
/// (nothing happened) runs `operation` as for a new key.
///
/// Use plain [`run_idempotent`] only where running the operation again after
/// a crash is itself safe (it finds its own earlier effect, or has none that
/// matters); say why at the call site.
pub async fn run_idempotent_recovering<Req, Out, E, R, RFut, F, Fut>(
    store: &dyn IdempotencyStore,
    scope: &str,
    key: &IdempotencyKey,
    request: &Req,
    now: DateTime<Utc>,
    recover: R,
    operation: F,
) -> Result<Out, E>
where
    Req: Serialize + ?Sized,
    Out: Serialize + DeserializeOwned,
    E: From<IdempotencyError>,
    R: FnOnce() -> RFut,
    RFut: Future<Output = Result<Option<Out>, E>>,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Out, E>>,
{
    let fingerprint = Fingerprint::of(request)?;
    let recovered = match store.claim(scope, key, &fingerprint, now).await? {
        Claim::Completed(stored) => {
            return serde_json::from_str(&stored)
                .map_err(|e| IdempotencyError::Encoding(e.to_string()).into());
        }
        Claim::Started => None,
        Claim::TakenOver { previous_owner, .. } => {
            tracing::warn!(%scope, %key, %previous_owner, "expired claim taken over; reading its effect back");
            match recover().await {
                Ok(found) => found,
                Err(error) => {
                    store.release(scope, key, &fingerprint).await?;
                    return Err(error);
                }
            }
        }
    };
    let result = match recovered {
        Some(outcome) => Ok(outcome),
        None => operation().await,
    };
    match result {
        Ok(outcome) => {
            let encoded = serde_json::to_string(&outcome)
                .map_err(|e| IdempotencyError::Encoding(e.to_string()))?;
            store
                .complete(scope, key, &fingerprint, &encoded, now)
                .await?;
            Ok(outcome)
        }
        Err(error) => {
            store.release(scope, key, &fingerprint).await?;
            Err(error)
        }
    }
}

/// Idempotency records in memory.
///
/// [`MemoryIdempotencyStore::handle`] gives another owner on the same records
/// (a second process, in tests).
#[derive(Debug, Clone)]
pub struct MemoryIdempotencyStore {
    records: std::sync::Arc<Mutex<HashMap<(String, IdempotencyKey), IdempotencyRecord>>>,
    owner: String,
    lease: chrono::Duration,
}

impl Default for MemoryIdempotencyStore {
    fn default() -> Self {
        Self {
            records: std::sync::Arc::default(),
            owner: new_claim_owner(),
            lease: DEFAULT_CLAIM_LEASE,
        }
    }
}

impl MemoryIdempotencyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Another handle on the same records, claiming as `owner`.
    pub fn handle(&self, owner: &str) -> Self {
        Self {
            records: self.records.clone(),
            owner: owner.to_owned(),
            lease: self.lease,
        }
    }

    /// This handle with claims held for `lease`.
    pub fn with_lease(mut self, lease: chrono::Duration) -> Self {
        self.lease = lease;
        self
    }
}

impl MemoryIdempotencyStore {
    /// Whether every outcome would commit ([`crate::KeyOutcome::apply_to`]).
    pub fn check_outcomes(&self, outcomes: &[crate::KeyOutcome]) -> Result<(), StoreError> {
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        for o in outcomes {
            o.apply_to(records.get(&(o.scope.clone(), o.key.clone())))?;
        }
        Ok(())
    }

    /// Commits outcomes with their effect: all of them, or none when one is refused.
    pub fn commit_outcomes(&self, outcomes: &[crate::KeyOutcome]) -> Result<(), StoreError> {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let mut written = Vec::with_capacity(outcomes.len());
        for o in outcomes {
            let slot = (o.scope.clone(), o.key.clone());
            let already = written
                .iter()
                .find(|(s, _): &&((String, IdempotencyKey), IdempotencyRecord)| *s == slot)
                .map(|(_, r)| r);
            let record = o.apply_to(already.or(records.get(&slot)))?;
            written.push((slot, record));
        }
        records.extend(written);
        Ok(())
    }
}

/// What a claim on an existing record decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimDecision {
    /// Answer the caller with this, leaving the record as it is.
    Answer(Claim),
    /// Take the expired claim over: set the owner and lease, answer [`Claim::TakenOver`].
    TakeOver(Claim),
}

/// The decision every backend makes for a claim on an existing record.
pub fn decide_claim(
    existing: &IdempotencyRecord,
    fingerprint: &Fingerprint,
    now: DateTime<Utc>,
) -> Result<ClaimDecision, IdempotencyError> {
    if existing.fingerprint != *fingerprint {
        return Err(IdempotencyError::Conflict {
            scope: existing.scope.clone(),
            key: existing.key.clone(),
        });
    }
    match (&existing.state, &existing.outcome) {
        (IdempotencyState::Completed, Some(outcome)) => {
            Ok(ClaimDecision::Answer(Claim::Completed(outcome.clone())))
        }
        _ if existing.is_expired(now) => Ok(ClaimDecision::TakeOver(Claim::TakenOver {
            previous_owner: existing.owner.clone(),
            claimed_at: existing.created_at,
        })),
        _ => Err(IdempotencyError::InProgress {
            scope: existing.scope.clone(),
            key: existing.key.clone(),
        }),
    }
}

/// The error for `complete`/`release` on a record that is not this owner's claim.
pub fn not_held(
    existing: Option<&IdempotencyRecord>,
    fingerprint: &Fingerprint,
    scope: &str,
    key: &IdempotencyKey,
) -> IdempotencyError {
    match existing {
        Some(r) if r.state == IdempotencyState::InProgress && r.fingerprint == *fingerprint => {
            IdempotencyError::NotOwner {
                scope: scope.to_owned(),
                key: key.clone(),
            }
        }
        _ => IdempotencyError::NotClaimed {
            scope: scope.to_owned(),
            key: key.clone(),
        },
    }
}

fn held_by(r: &IdempotencyRecord, fingerprint: &Fingerprint, owner: &str) -> bool {
    r.fingerprint == *fingerprint && r.state == IdempotencyState::InProgress && r.owner == owner
}

#[async_trait]
impl IdempotencyStore for MemoryIdempotencyStore {
    fn owner(&self) -> &str {
        &self.owner
    }

    async fn claim(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        now: DateTime<Utc>,
    ) -> Result<Claim, IdempotencyError> {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let slot = (scope.to_owned(), key.clone());
        let lease_until = now.checked_add_signed(self.lease).unwrap_or(now);
        if let Some(existing) = records.get_mut(&slot) {
            return match decide_claim(existing, fingerprint, now)? {
                ClaimDecision::Answer(claim) => Ok(claim),
                ClaimDecision::TakeOver(claim) => {
                    existing.owner = self.owner.clone();
                    existing.lease_until = Some(lease_until);
                    Ok(claim)
                }
            };
        }
        records.insert(
            slot,
            IdempotencyRecord {
                scope: scope.to_owned(),
                key: key.clone(),
                fingerprint: *fingerprint,
                state: IdempotencyState::InProgress,
                outcome: None,
                created_at: now,
                completed_at: None,
                owner: self.owner.clone(),
                lease_until: Some(lease_until),
            },
        );
        Ok(Claim::Started)
    }

    async fn complete(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        outcome: &str,
        now: DateTime<Utc>,
    ) -> Result<(), IdempotencyError> {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        match records.get_mut(&(scope.to_owned(), key.clone())) {
            Some(r) if held_by(r, fingerprint, &self.owner) => {
                r.state = IdempotencyState::Completed;
                r.outcome = Some(outcome.to_owned());
                r.completed_at = Some(now);
                r.lease_until = None;
                Ok(())
            }
            other => Err(not_held(other.map(|r| &*r), fingerprint, scope, key)),
        }
    }

    async fn release(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
    ) -> Result<(), IdempotencyError> {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let slot = (scope.to_owned(), key.clone());
        match records.get(&slot) {
            Some(r) if held_by(r, fingerprint, &self.owner) => {
                records.remove(&slot);
                Ok(())
            }
            other => Err(not_held(other, fingerprint, scope, key)),
        }
    }

    async fn get(
        &self,
        scope: &str,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, IdempotencyError> {
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        Ok(records.get(&(scope.to_owned(), key.clone())).cloned())
    }

    async fn in_progress(&self, limit: usize) -> Result<Vec<IdempotencyRecord>, IdempotencyError> {
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<IdempotencyRecord> = records
            .values()
            .filter(|r| r.state == IdempotencyState::InProgress)
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            (a.created_at, &a.scope, a.key.as_str()).cmp(&(b.created_at, &b.scope, b.key.as_str()))
        });
        out.truncate(limit);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_hex_round_trips() {
        let a = Fingerprint::of(&("card-1", 500)).unwrap();
        let b = Fingerprint::of(&("card-1", 500)).unwrap();
        let c = Fingerprint::of(&("card-1", 501)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(Fingerprint::from_hex(&a.to_hex()), Some(a));
        assert_eq!(Fingerprint::from_hex("zz"), None);
        // SHA-256 of the JSON text `["card-1",500]`, computed independently.
        assert_eq!(a, Fingerprint::of_bytes(br#"["card-1",500]"#));
    }
}
