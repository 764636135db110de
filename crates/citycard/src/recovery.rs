//! Recovery of the idempotency claims a dead process left behind.
//!
//! Every claim carries an owner and a lease. [`recover_claims`] looks at the
//! claims still in progress and, for each whose lease has run out:
//!
//! - a fare claim (`transit.fare`, written by versions that claimed fares
//!   separately) is resolved from the ledger: the transfer derived from the
//!   trip key exists → completed as charged; its id failed for want of funds →
//!   completed as insufficient funds; neither → released, so the next
//!   settlement charges the trip;
//! - any other claim (enrolment, card issue, binding, …) needs its request to
//!   read its effect back, and only the caller holds the request: it is left
//!   for the caller's next retry with the same key, which takes it over and
//!   reads the effect back before running anything again.
//!
//! Claims whose lease still runs are left alone: a live process may hold them.
//! A host may call [`CityCard::recover_claims`] when it opens its store; the
//! `citycard recover` command does the same on a data directory.

use chrono::{DateTime, Utc};
use citycard_core::{Claim, IdempotencyRecord, IdempotencyStore, Principal};
use citycard_ledger::{CreateTransferResult, Ledger, LedgerError};
use serde::Serialize;

use crate::CityCard;
use crate::error::CityCardError;
use crate::glue::money::{FARE_SCOPE, LedgerFarePayments};

/// How many claims one pass reads.
const PAGE: usize = 10_000;

/// What recovery did with one claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Resolution {
    /// The effect was found: the claim is completed with it.
    Completed {
        /// The outcome stored.
        outcome: String,
    },
    /// Nothing happened: the claim is released and the operation may run again.
    Released,
    /// The caller's retry with the same key takes it over and reads the effect back.
    LeftForRetry,
    /// The lease still runs: a live process may hold it.
    Live {
        /// Until when.
        lease_until: Option<DateTime<Utc>>,
    },
}

/// One claim and what was done with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recovered {
    /// The operation's scope.
    pub scope: String,
    /// The key.
    pub key: String,
    /// Who held it.
    pub owner: String,
    /// What was done.
    #[serde(flatten)]
    pub resolution: Resolution,
}

/// Resolves every expired claim in `store`, whose money is in `ledger` (see the module docs).
pub async fn recover_claims(
    store: &dyn IdempotencyStore,
    ledger: &Ledger,
    now: DateTime<Utc>,
) -> Result<Vec<Recovered>, CityCardError> {
    let mut out = Vec::new();
    for record in store.in_progress(PAGE).await.map_err(CityCardError::from)? {
        let resolution = if !record.is_expired(now) {
            Resolution::Live {
                lease_until: record.lease_until,
            }
        } else if record.scope == FARE_SCOPE {
            resolve_fare(store, ledger, &record, now).await?
        } else {
            Resolution::LeftForRetry
        };
        out.push(Recovered {
            scope: record.scope,
            key: record.key.to_string(),
            owner: record.owner,
            resolution,
        });
    }
    Ok(out)
}

async fn resolve_fare(
    store: &dyn IdempotencyStore,
    ledger: &Ledger,
    record: &IdempotencyRecord,
    now: DateTime<Utc>,
) -> Result<Resolution, CityCardError> {
    let fp = &record.fingerprint;
    match store
        .claim(&record.scope, &record.key, fp, now)
        .await
        .map_err(CityCardError::from)?
    {
        Claim::TakenOver { .. } => {}
        // Someone resolved it meanwhile.
        Claim::Completed(outcome) => return Ok(Resolution::Completed { outcome }),
        Claim::Started => return Ok(Resolution::Released),
    }
    let id = LedgerFarePayments::transfer_id(&record.key);
    let exists = match ledger.transfer(&Principal::System, id).await {
        Ok(_) => true,
        Err(LedgerError::TransferNotFound(_)) => false,
        Err(e) => return Err(e.into()),
    };
    let failure = ledger.failure(&Principal::System, id).await?;
    let outcome = if exists {
        Some(serde_json::json!({"outcome": "charged", "reference": id.to_string()}).to_string())
    } else if failure == Some(CreateTransferResult::ExceedsCredits) {
        Some(serde_json::json!({"outcome": "insufficient_funds"}).to_string())
    } else {
        None
    };
    match outcome {
        Some(outcome) => {
            store
                .complete(&record.scope, &record.key, fp, &outcome, now)
                .await
                .map_err(CityCardError::from)?;
            Ok(Resolution::Completed { outcome })
        }
        None => {
            store
                .release(&record.scope, &record.key, fp)
                .await
                .map_err(CityCardError::from)?;
            Ok(Resolution::Released)
        }
    }
}

impl CityCard {
    /// Resolves the expired idempotency claims of this card system's store
    /// (see [`recover_claims`]); call it when opening a store a killed process used.
    pub async fn recover_claims(&self) -> Result<Vec<Recovered>, CityCardError> {
        recover_claims(
            self.stores.idempotency.as_ref(),
            self.ledger(),
            self.clock().now(),
        )
        .await
    }
}
