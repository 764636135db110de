//! Decide, then commit: the core records every plan carries.
//!
//! A state-changing operation gathers its inputs, decides purely, and commits
//! one plan in one transaction. Besides its domain rows, a plan carries
//! [`CoreChanges`]: the audit records of the operation, the idempotency
//! outcome that answers a retry, and the events it tells the platforms of
//! (the transactional outbox, [`crate::outbox`]). Every store commits them in the same
//! transaction as the domain rows, so an operation is one write transaction
//! and a crash leaves either all of it or none of it.
//!
//! An operation with an idempotency key does not claim the key first:
//! it looks the key up ([`replay`]), decides, and commits its outcome as a
//! [`KeyOutcome`] with the effect. The key is unique in the store, so of two
//! racing identical requests one commits and the other's commit is refused
//! ([`StoreError::Conflict`]); the loser reads the winner's outcome back.
//!
//! ```
//! use citycard_core::{
//!     AuditOutcome, AuditQuery, AuditLog, AuditRecord, CoreChanges, Fingerprint,
//!     IdempotencyKey, KeyOutcome, MemoryCore, Principal, replay,
//! };
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! let core = MemoryCore::new();
//! let key: IdempotencyKey = "topup-7".parse()?;
//! let fingerprint = Fingerprint::of(&("card-1", 5000))?;
//! let now = chrono::Utc::now();
//! assert_eq!(replay::<u32>(core.idempotency().as_ref(), "wallet.top_up", &key, &fingerprint).await?, None);
//!
//! let mut changes = CoreChanges::default();
//! changes.audit.push(AuditRecord::new(now, Principal::System, "wallet.top_up", "card:1", AuditOutcome::Succeeded));
//! changes.outcomes.push(KeyOutcome::new("wallet.top_up", key.clone(), fingerprint, &7u32, now)?);
//! core.commit(&changes)?;
//!
//! // A retry replays; the same key committed again is a conflict.
//! assert_eq!(replay::<u32>(core.idempotency().as_ref(), "wallet.top_up", &key, &fingerprint).await?, Some(7));
//! assert!(core.commit(&changes).is_err());
//! assert_eq!(core.audit().query(&AuditQuery::subject("card:1")).await?.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::audit::{AuditRecord, MemoryAuditLog};
use crate::error::StoreError;
use crate::idempotency::{
    Fingerprint, IdempotencyError, IdempotencyKey, IdempotencyRecord, IdempotencyState,
    IdempotencyStore, MemoryIdempotencyStore,
};
use crate::outbox::{MemoryOutbox, NewEvent};

/// The stored outcome of an idempotent operation, committed with its effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOutcome {
    /// The operation's scope (as for [`crate::run_idempotent`], principal included).
    pub scope: String,
    /// The key.
    pub key: IdempotencyKey,
    /// The request's fingerprint.
    pub fingerprint: Fingerprint,
    /// The outcome, as JSON.
    pub outcome: String,
    /// When the operation was decided.
    pub at: DateTime<Utc>,
}

impl KeyOutcome {
    /// The outcome `value` of the request `fingerprint` under `(scope, key)`.
    pub fn new<T: Serialize + ?Sized>(
        scope: impl Into<String>,
        key: IdempotencyKey,
        fingerprint: Fingerprint,
        value: &T,
        at: DateTime<Utc>,
    ) -> Result<KeyOutcome, IdempotencyError> {
        let outcome =
            serde_json::to_string(value).map_err(|e| IdempotencyError::Encoding(e.to_string()))?;
        Ok(KeyOutcome {
            scope: scope.into(),
            key,
            fingerprint,
            outcome,
            at,
        })
    }

    /// The record this outcome leaves in the store, given what was there.
    ///
    /// This is the one rule every backend applies: a new key gets a completed
    /// record; an in-progress claim on the same request is completed (a saga
    /// step that claimed the key before a remote call); a completed key, or a
    /// key used for another request, refuses the whole commit as a
    /// [`StoreError::Conflict`].
    pub fn apply_to(
        &self,
        existing: Option<&IdempotencyRecord>,
    ) -> Result<IdempotencyRecord, StoreError> {
        let created_at = match existing {
            None => self.at,
            Some(r)
                if r.fingerprint == self.fingerprint && r.state == IdempotencyState::InProgress =>
            {
                r.created_at
            }
            Some(r) if r.fingerprint == self.fingerprint => {
                return Err(StoreError::Conflict(format!(
                    "idempotency key {} in {} already has an outcome",
                    self.key, self.scope
                )));
            }
            Some(_) => {
                return Err(StoreError::Conflict(format!(
                    "idempotency key {} in {} was used for another request",
                    self.key, self.scope
                )));
            }
        };
        Ok(IdempotencyRecord {
            scope: self.scope.clone(),
            key: self.key.clone(),
            fingerprint: self.fingerprint,
            state: IdempotencyState::Completed,
            outcome: Some(self.outcome.clone()),
            created_at,
            completed_at: Some(self.at),
            owner: existing.map(|r| r.owner.clone()).unwrap_or_default(),
            lease_until: None,
        })
    }
}

/// Core records committed in the same transaction as a domain change set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreChanges {
    /// Audit records, appended in order.
    pub audit: Vec<AuditRecord>,
    /// Idempotency outcomes (each key must be new or claimed for the same request).
    pub outcomes: Vec<KeyOutcome>,
    /// Events for the outbox, in the order they happened.
    pub events: Vec<NewEvent>,
}

impl CoreChanges {
    /// Changes with one audit record.
    pub fn audited(record: AuditRecord) -> CoreChanges {
        CoreChanges {
            audit: vec![record],
            ..CoreChanges::default()
        }
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.audit.is_empty() && self.outcomes.is_empty() && self.events.is_empty()
    }

    /// Appends `other`'s records after this one's.
    pub fn merge(&mut self, other: CoreChanges) {
        self.audit.extend(other.audit);
        self.outcomes.extend(other.outcomes);
        self.events.extend(other.events);
    }
}

/// The stored outcome of `(scope, key)` for this request, if it completed.
///
/// `Ok(None)`: the key is free, decide and commit. The same key with another
/// request is [`IdempotencyError::Conflict`]; a key still claimed by a saga
/// step is [`IdempotencyError::InProgress`].
pub async fn replay<T: DeserializeOwned>(
    store: &dyn IdempotencyStore,
    scope: &str,
    key: &IdempotencyKey,
    fingerprint: &Fingerprint,
) -> Result<Option<T>, IdempotencyError> {
    let Some(record) = store.get(scope, key).await? else {
        return Ok(None);
    };
    if record.fingerprint != *fingerprint {
        return Err(IdempotencyError::Conflict {
            scope: scope.to_owned(),
            key: key.clone(),
        });
    }
    match (record.state, record.outcome) {
        (IdempotencyState::Completed, Some(outcome)) => serde_json::from_str(&outcome)
            .map(Some)
            .map_err(|e| IdempotencyError::Encoding(e.to_string())),
        _ => Err(IdempotencyError::InProgress {
            scope: scope.to_owned(),
            key: key.clone(),
        }),
    }
}

/// The core stores of a memory backend, shared by its domain stores so that
/// their commits write audit records and idempotency outcomes where the
/// facade reads them.
///
/// A memory commit cannot be torn by a crash; [`MemoryCore::commit`] checks
/// every outcome before writing anything, so a refused commit writes nothing.
#[derive(Debug, Clone, Default)]
pub struct MemoryCore {
    audit: Arc<MemoryAuditLog>,
    idempotency: Arc<MemoryIdempotencyStore>,
    outbox: Arc<MemoryOutbox>,
}

impl MemoryCore {
    /// Empty core stores.
    pub fn new() -> MemoryCore {
        MemoryCore::default()
    }

    /// The audit log.
    pub fn audit(&self) -> Arc<MemoryAuditLog> {
        self.audit.clone()
    }

    /// The idempotency store.
    pub fn idempotency(&self) -> Arc<MemoryIdempotencyStore> {
        self.idempotency.clone()
    }

    /// The outbox.
    pub fn outbox(&self) -> Arc<MemoryOutbox> {
        self.outbox.clone()
    }

    /// Whether `changes` would commit (every outcome's key free or claimed).
    pub fn check(&self, changes: &CoreChanges) -> Result<(), StoreError> {
        self.idempotency.check_outcomes(&changes.outcomes)
    }

    /// Writes `changes`: all of them, or none when an outcome is refused.
    pub fn commit(&self, changes: &CoreChanges) -> Result<(), StoreError> {
        self.idempotency.commit_outcomes(&changes.outcomes)?;
        self.audit.append_all(&changes.audit);
        self.outbox.append_all(&changes.events);
        Ok(())
    }
}
