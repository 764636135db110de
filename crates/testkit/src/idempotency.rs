//! A fault-injecting [`IdempotencyStore`] double.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use citycard_core::{
    Claim, Fingerprint, IdempotencyError, IdempotencyKey, IdempotencyRecord, IdempotencyStore,
    StoreError,
};

use crate::faults::{Fault, Faults};

/// An [`IdempotencyStore`] over a real one whose `complete` fails on command
/// (operation name `"complete"`) without storing anything, as when the process
/// dies after the operation's effect and before its outcome is stored: the
/// claim stays in progress until its lease runs out.
#[derive(Debug)]
pub struct CrashingIdempotencyStore<S> {
    /// The real store.
    pub inner: S,
    /// The fault script.
    pub faults: Faults,
}

impl<S> CrashingIdempotencyStore<S> {
    /// The double over `inner`.
    pub fn new(inner: S, faults: Faults) -> Self {
        Self { inner, faults }
    }
}

#[async_trait]
impl<S: IdempotencyStore> IdempotencyStore for CrashingIdempotencyStore<S> {
    fn owner(&self) -> &str {
        self.inner.owner()
    }

    async fn claim(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        now: DateTime<Utc>,
    ) -> Result<Claim, IdempotencyError> {
        self.inner.claim(scope, key, fingerprint, now).await
    }

    async fn complete(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        outcome: &str,
        now: DateTime<Utc>,
    ) -> Result<(), IdempotencyError> {
        match self.faults.check("complete") {
            Fault::None => {
                self.inner
                    .complete(scope, key, fingerprint, outcome, now)
                    .await
            }
            _ => Err(StoreError::Unavailable(
                "injected crash before the outcome was stored".into(),
            )
            .into()),
        }
    }

    async fn release(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
    ) -> Result<(), IdempotencyError> {
        match self.faults.check("release") {
            Fault::None => self.inner.release(scope, key, fingerprint).await,
            _ => Err(StoreError::Unavailable(
                "injected crash before the claim was released".into(),
            )
            .into()),
        }
    }

    async fn get(
        &self,
        scope: &str,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, IdempotencyError> {
        self.inner.get(scope, key).await
    }

    async fn in_progress(&self, limit: usize) -> Result<Vec<IdempotencyRecord>, IdempotencyError> {
        self.inner.in_progress(limit).await
    }
}
