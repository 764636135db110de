//! The `citycard` command: the demo journey, ID checks, fare quotes, ride
//! codes, tap-file settlement and ledger export.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// citycard: a city citizen-card system you can embed, and its tools.
#[derive(Debug, Parser)]
#[command(name = "citycard", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// ID numbers.
    #[command(subcommand)]
    Id(IdCommand),
}

#[derive(Debug, Subcommand)]
enum IdCommand {
    /// Check ID numbers: from arguments, or one per line on standard input.
    ///
    /// Prints one JSON object per line; exits 1 when any number is invalid.
    Check(cli::id::CheckArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut stdout = std::io::stdout().lock();
    let result = match cli.command {
        Command::Id(IdCommand::Check(args)) => cli::id::run(&args, &mut stdout).map(|invalid| {
            if invalid == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("citycard: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
