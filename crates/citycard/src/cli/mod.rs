//! The `citycard` command's subcommands.

// DEMO: the lead adds `pub mod demo;` here.
pub mod card;
pub mod drill;
pub mod fare;
pub mod id;
pub mod ledger;
pub mod recover;
pub mod ridecode;
pub mod settle;

use std::path::PathBuf;

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
}

impl CliError {
    /// The process exit code: 2 for bad usage or input, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            _ => 1,
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
