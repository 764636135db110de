//! The `citycard` command's subcommands.

pub mod id;

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
    #[allow(dead_code)]
    Usage(String),
    /// The card system reported an error.
    #[error("{0}")]
    #[allow(dead_code)]
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
