//! The `citycard` command's subcommands.

pub mod card;
pub mod drill;
pub mod fare;
pub mod id;
pub mod ledger;
pub mod recover;
pub mod ridecode;
pub mod serve;
pub mod settle;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use citycard_core::{ClassifiedError, ErrorClass, IdempotencyStore};
use citycard_ledger::LedgerStore;
use citycard_transit::TransitStore;
use clap::ValueEnum;

/// A failure of the command line tool, with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Reading input or writing output failed.
    #[error("input/output error: {0}")]
    Io(#[from] std::io::Error),
    /// Output could not be encoded.
    #[error("could not encode output: {0}")]
    Json(#[from] serde_json::Error),
    /// The user's input was wrong.
    #[error("{0}")]
    Usage(String),
    /// The card system reported an error.
    #[error("{0}")]
    Domain(String),
    /// A card system error, kept typed so its class survives.
    #[error("{0}")]
    Failed(Box<dyn ClassifiedError + Send + Sync>),
}

impl CliError {
    /// The process exit code: 2 for bad usage or input, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }

    /// A card system error, with its class.
    pub fn failed(e: impl ClassifiedError + Send + Sync + 'static) -> Self {
        CliError::Failed(Box::new(e))
    }
}

impl ClassifiedError for CliError {
    fn class(&self) -> ErrorClass {
        match self {
            CliError::Usage(_) => ErrorClass::InvalidInput,
            CliError::Failed(e) => e.class(),
            CliError::Io(_) | CliError::Json(_) | CliError::Domain(_) => ErrorClass::Internal,
        }
    }
}

/// How a subcommand prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    /// Readable text (the default).
    #[default]
    Text,
    /// One JSON document.
    Json,
}

/// The default data directory of the standalone subcommands.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("citycard-data")
}

/// The stores a maintenance command reads (and `recover` writes): the
/// SQLite file `citycard.db` in a data directory, or a PostgreSQL database
/// named by `--database` (which then replaces the file; vault keys stay in
/// the data directory).
pub struct Stores {
    /// The ledger's store.
    pub ledger: Arc<dyn LedgerStore>,
    /// Trips and settlement records.
    pub transit: Arc<dyn TransitStore>,
    /// Idempotency claims.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// Where the stores are, for messages (never a URL: it may hold a password).
    pub name: String,
}

/// Opens the stores of `--data-dir` (read-only when `read_only`) or of
/// `--database`; a data directory without a store is refused as "no `what`
/// at …" and nothing is created. On PostgreSQL a command connects as any app instance does,
/// which brings an older schema up to date; it writes nothing else unless
/// the command does.
pub async fn open_stores(
    data_dir: &Path,
    database: Option<&str>,
    read_only: bool,
    what: &str,
) -> Result<Stores, CliError> {
    if let Some(url) = database {
        let db = citycard_postgres::Database::connect(url)
            .await
            .map_err(CliError::failed)?;
        return Ok(Stores {
            ledger: Arc::new(citycard_postgres::ledger::PgLedgerStore::new(db.clone())),
            transit: Arc::new(citycard_postgres::transit::PgTransitStore::new(db.clone())),
            idempotency: Arc::new(citycard_postgres::PgIdempotencyStore::new(db.clone())),
            name: format!("PostgreSQL (--database, schema {})", db.schema()),
        });
    }
    let path = data_dir.join("citycard.db");
    if !path.is_file() {
        return Err(CliError::Domain(format!(
            "no {what} at {}: give the --data-dir of a citycard store (e.g. one made by `citycard demo`) or --database URL",
            path.display()
        )));
    }
    let db = if read_only {
        citycard_sqlite::Database::open_read_only(&path)
    } else {
        citycard_sqlite::Database::open(&path)
    }
    .map_err(CliError::failed)?;
    Ok(Stores {
        ledger: Arc::new(citycard_sqlite::ledger::SqliteLedgerStore::new(db.clone())),
        transit: Arc::new(citycard_sqlite::transit::SqliteTransitStore::new(
            db.clone(),
        )),
        idempotency: Arc::new(citycard_sqlite::SqliteIdempotencyStore::new(db)),
        name: path.display().to_string(),
    })
}

/// A single-threaded runtime for the async domain services.
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Io)
}

/// Reads a file, or standard input for `-`, naming the file on failure.
pub fn read_input(path: &str) -> Result<String, CliError> {
    if path == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("cannot read {path}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citycard_core::StoreError;

    #[test]
    fn a_failed_command_keeps_the_class_and_the_message_of_its_error() {
        let source = citycard_ledger::LedgerError::Store(StoreError::Unavailable(
            "database is locked".into(),
        ));
        let message = source.to_string();
        let e = CliError::failed(source);
        assert_eq!(e.class(), ErrorClass::Unavailable);
        assert_eq!(e.to_string(), message);
        assert_eq!(e.exit_code(), 1);
        assert_eq!(
            CliError::Usage("no such stop".into()).class(),
            ErrorClass::InvalidInput
        );
    }
}
