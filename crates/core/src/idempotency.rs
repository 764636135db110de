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
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new and now claimed: run the operation, then complete it.
    Started,
    /// The same request already completed: here is its outcome (JSON).
    Completed(String),
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
            IdempotencyError::Conflict { .. } | IdempotencyError::NotClaimed { .. } => {
                ErrorClass::Conflict
            }
            IdempotencyError::InProgress { .. } => ErrorClass::Unavailable,
            IdempotencyError::Encoding(_) => ErrorClass::Internal,
            IdempotencyError::Store(e) => e.class(),
        }
    }
}

/// The idempotency record store port.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims a key for a request, atomically: [`Claim::Started`] for a new
    /// key, [`Claim::Completed`] for a finished identical request, and
    /// [`IdempotencyError::Conflict`] / [`IdempotencyError::InProgress`] otherwise.
    async fn claim(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        now: DateTime<Utc>,
    ) -> Result<Claim, IdempotencyError>;

    /// Stores the outcome of a claimed request and marks it completed.
    async fn complete(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        outcome: &str,
        now: DateTime<Utc>,
    ) -> Result<(), IdempotencyError>;

    /// Drops an in-progress claim (the operation failed and may be retried).
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
    let fingerprint = Fingerprint::of(request)?;
    match store.claim(scope, key, &fingerprint, now).await? {
        Claim::Completed(stored) => serde_json::from_str(&stored)
            .map_err(|e| IdempotencyError::Encoding(e.to_string()).into()),
        Claim::Started => match operation().await {
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
        },
    }
}

/// Idempotency records in memory.
#[derive(Debug, Default)]
pub struct MemoryIdempotencyStore {
    records: Mutex<HashMap<(String, IdempotencyKey), IdempotencyRecord>>,
}

impl MemoryIdempotencyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

/// The decision every backend makes for a claim on an existing record.
pub fn decide_claim(
    existing: &IdempotencyRecord,
    fingerprint: &Fingerprint,
) -> Result<Claim, IdempotencyError> {
    if existing.fingerprint != *fingerprint {
        return Err(IdempotencyError::Conflict {
            scope: existing.scope.clone(),
            key: existing.key.clone(),
        });
    }
    match (&existing.state, &existing.outcome) {
        (IdempotencyState::Completed, Some(outcome)) => Ok(Claim::Completed(outcome.clone())),
        _ => Err(IdempotencyError::InProgress {
            scope: existing.scope.clone(),
            key: existing.key.clone(),
        }),
    }
}

#[async_trait]
impl IdempotencyStore for MemoryIdempotencyStore {
    async fn claim(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        now: DateTime<Utc>,
    ) -> Result<Claim, IdempotencyError> {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let slot = (scope.to_owned(), key.clone());
        if let Some(existing) = records.get(&slot) {
            return decide_claim(existing, fingerprint);
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
            Some(r) if r.fingerprint == *fingerprint && r.state == IdempotencyState::InProgress => {
                r.state = IdempotencyState::Completed;
                r.outcome = Some(outcome.to_owned());
                r.completed_at = Some(now);
                Ok(())
            }
            _ => Err(IdempotencyError::NotClaimed {
                scope: scope.to_owned(),
                key: key.clone(),
            }),
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
            Some(r) if r.fingerprint == *fingerprint && r.state == IdempotencyState::InProgress => {
                records.remove(&slot);
                Ok(())
            }
            _ => Err(IdempotencyError::NotClaimed {
                scope: scope.to_owned(),
                key: key.clone(),
            }),
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
