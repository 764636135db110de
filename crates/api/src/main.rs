//! `citycard-api`: the platform API service (also started by `citycard serve`).
#![forbid(unsafe_code)]

use clap::Parser;

/// The citycard platform API: signed HTTP for payment platforms.
#[derive(Debug, Parser)]
#[command(name = "citycard-api", version, about)]
struct Cli {
    #[command(flatten)]
    serve: citycard_api::ServeArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match citycard_api::run(&cli.serve) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("citycard-api: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
