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

use std::path::PathBuf;

use citycard_core::{ClassifiedError, ErrorClass};
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
