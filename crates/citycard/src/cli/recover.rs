//! `citycard recover`: resolve the idempotency claims a dead process left in
//! `DIR/citycard.db`, or in the PostgreSQL database of `--database`
//! ([`citycard::recovery`] says how), and print what was done.
//!
//! It opens only the database and the ledger: no vault keys are needed.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use citycard::recovery::{Recovered, Resolution, recover_claims};
use citycard_core::{Clock, SystemClock};
use citycard_ledger::Ledger;
use clap::Args;

use super::{CliError, OutputFormat, default_data_dir, open_stores, runtime};

/// Arguments of `citycard recover`.
#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The data directory holding `citycard.db`.
    #[arg(long, value_name = "DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// Recover in this PostgreSQL database instead of the directory's SQLite
    /// file (`postgres://user@host:port/db`, TLS with `?sslmode=require`).
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Runs `citycard recover`.
pub fn run(args: &RecoverArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let done = runtime()?.block_on(async {
        let stores = open_stores(&args.data_dir, args.database.as_deref(), false, "store").await?;
        let ledger = Ledger::open(stores.ledger, clock.clone())
            .await
            .map_err(CliError::failed)?;
        recover_claims(stores.idempotency.as_ref(), &ledger, clock.now())
            .await
            .map_err(CliError::failed)
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
