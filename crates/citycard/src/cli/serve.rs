//! `citycard serve`: runs the platform API service.
//!
//! The service lives in the `citycard-api` crate, which depends on this
//! one; a package cannot depend back on it, so `serve` runs the
//! `citycard-api` program installed beside `citycard` (or on `PATH`) with
//! the same arguments.

use std::path::PathBuf;
use std::process::Command;

use super::CliError;

/// Arguments of `citycard serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The data directory: the SQLite database, vault keys, `api/platforms.json`
    /// and the card system's signing key.
    #[arg(long, value_name = "DIR", default_value = "citycard-data")]
    data_dir: PathBuf,
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Keep the stores in PostgreSQL instead of the directory's SQLite file.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Publish the card system's events to this NATS server's JetStream.
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
}

/// Runs `citycard-api` with these arguments (on Unix, in place of this process).
pub fn run(args: &ServeArgs) -> Result<(), CliError> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("citycard-api")))
        .filter(|p| p.exists());
    let program = beside.unwrap_or_else(|| PathBuf::from("citycard-api"));
    let mut command = Command::new(&program);
    command
        .arg("--data-dir")
        .arg(&args.data_dir)
        .arg("--listen")
        .arg(&args.listen);
    if let Some(url) = &args.database {
        command.arg("--database").arg(url);
    }
    if let Some(url) = &args.nats {
        command.arg("--nats").arg(url);
    }
    // On Unix the service replaces this process, so signals reach it directly.
    #[cfg(unix)]
    {
        let e = std::os::unix::process::CommandExt::exec(&mut command);
        Err(CliError::Usage(format!(
            "cannot run {} (build it with `cargo build -p citycard-api`): {e}",
            program.display()
        )))
    }
    #[cfg(not(unix))]
    {
        let status = command.status().map_err(|e| {
            CliError::Usage(format!(
                "cannot run {} (build it with `cargo build -p citycard-api`): {e}",
                program.display()
            ))
        })?;
        if status.success() {
            Ok(())
        } else {
            Err(CliError::Domain(format!(
                "citycard-api exited with {status}"
            )))
        }
    }
}
