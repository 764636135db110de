//! `citycard recover`: resolve the idempotency claims a dead process left behind.
//!
//! Every claim carries an owner and a lease. This command lists the claims
//! still in progress in `DIR/citycard.db` and, for each whose lease has run out:
//!
//! - a fare claim (`transit.fare`, written by versions that claimed fares
//!   separately) is resolved from the ledger: the transfer derived from the
//!   trip key exists → completed as charged; its id failed for want of funds →
//!   completed as insufficient funds; neither → released, so the next
//!   settlement charges the trip;
//! - any other claim (enrolment, card issue, binding, …) needs its request to
//!   read its effect back, and only the caller holds the request: it is listed,
//!   and the caller's next retry with the same key takes it over and reads the
//!   effect back (the card with the number, the binding on the account, the
//!   person with the ID number) before running anything again.
//!
//! Claims whose lease still runs are left alone: a live process may hold them.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use citycard_core::{
    Claim, Clock, IdempotencyRecord, IdempotencyStore, SystemClock, idempotency::Fingerprint,
};
use citycard_ledger::{CreateTransferResult, Ledger};
use citycard_sqlite::ledger::SqliteLedgerStore;
use citycard_sqlite::{Database, SqliteIdempotencyStore};
use clap::Args;
use serde::Serialize;

use super::{CliError, OutputFormat, default_data_dir, runtime};
use citycard::glue::money::{FARE_SCOPE, LedgerFarePayments};

/// How many claims one pass reads.
const PAGE: usize = 10_000;

/// Arguments of `citycard recover`.
#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The data directory holding `citycard.db`.
    #[arg(long, value_name = "DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

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

/// Resolves every expired claim of a store whose ledger is `ledger` (see the module docs).
pub async fn recover(
    store: &dyn IdempotencyStore,
    ledger: &Ledger,
    now: DateTime<Utc>,
) -> Result<Vec<Recovered>, CliError> {
    let domain = |e: &dyn std::fmt::Display| CliError::Domain(e.to_string());
    let mut out = Vec::new();
    for record in store.in_progress(PAGE).await.map_err(|e| domain(&e))? {
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
) -> Result<Resolution, CliError> {
    let domain = |e: &dyn std::fmt::Display| CliError::Domain(e.to_string());
    let fp: &Fingerprint = &record.fingerprint;
    match store
        .claim(&record.scope, &record.key, fp, now)
        .await
        .map_err(|e| domain(&e))?
    {
        Claim::TakenOver { .. } => {}
        // Someone resolved it meanwhile.
        Claim::Completed(outcome) => return Ok(Resolution::Completed { outcome }),
        Claim::Started => return Ok(Resolution::Released),
    }
    let id = LedgerFarePayments::transfer_id(&record.key);
    let (exists, failure) = ledger
        .inspect(|e| (e.transfer(id).is_some(), e.failure(id)))
        .await
        .map_err(|e| domain(&e))?;
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
                .map_err(|e| domain(&e))?;
            Ok(Resolution::Completed { outcome })
        }
        None => {
            store
                .release(&record.scope, &record.key, fp)
                .await
                .map_err(|e| domain(&e))?;
            Ok(Resolution::Released)
        }
    }
}

/// Runs `citycard recover`.
pub fn run(args: &RecoverArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let path = args.data_dir.join("citycard.db");
    if !path.exists() {
        return Err(CliError::Usage(format!(
            "no citycard.db in {}: name the data directory with --data-dir",
            args.data_dir.display()
        )));
    }
    let db = Database::open(&path).map_err(|e| CliError::Domain(e.to_string()))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let done = runtime()?.block_on(async {
        let ledger = Ledger::open(Arc::new(SqliteLedgerStore::new(db.clone())), clock.clone())
            .await
            .map_err(|e| CliError::Domain(e.to_string()))?;
        recover(&SqliteIdempotencyStore::new(db), &ledger, clock.now()).await
    })?;
    print(&done, args.format, out)
}

fn print(done: &[Recovered], format: OutputFormat, out: &mut dyn Write) -> Result<(), CliError> {
    if format == OutputFormat::Json {
        serde_json::to_writer_pretty(&mut *out, done)?;
        writeln!(out)?;
        return Ok(());
    }
    if done.is_empty() {
        writeln!(out, "no claim in progress: nothing to recover")?;
        return Ok(());
    }
    for r in done {
        let what = match &r.resolution {
            Resolution::Completed { outcome } => format!("completed from the ledger: {outcome}"),
            Resolution::Released => "released: nothing had happened; it runs again".to_owned(),
            Resolution::LeftForRetry => {
                "expired: the next retry with this key takes it over and reads its effect back"
                    .to_owned()
            }
            Resolution::Live { lease_until } => match lease_until {
                Some(t) => format!("held by a live process until {t}: left alone"),
                None => "held by a live process: left alone".to_owned(),
            },
        };
        writeln!(out, "{} {} (owner {}): {what}", r.scope, r.key, r.owner)?;
    }
    let count = |f: fn(&Resolution) -> bool| done.iter().filter(|r| f(&r.resolution)).count();
    writeln!(
        out,
        "{} claims: {} completed, {} released, {} left for a retry, {} live",
        done.len(),
        count(|r| matches!(r, Resolution::Completed { .. })),
        count(|r| matches!(r, Resolution::Released)),
        count(|r| matches!(r, Resolution::LeftForRetry)),
        count(|r| matches!(r, Resolution::Live { .. })),
    )?;
    Ok(())
}
