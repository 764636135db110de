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
    /// Run the whole journey on the embedded SQLite store, printed step by step.
    ///
    /// Enrolment, cards, real-name verification, a failed and a good binding,
    /// top-up, a ride code, rides and settlement, a hospital booking and bill,
    /// social insurance, the statement, a lost card replaced and unbinding; FHIR
    /// JSON under DIR/fhir/. Running again on the same DIR continues with the next day.
    Demo(DemoArgs),
    /// ID numbers.
    #[command(subcommand)]
    Id(IdCommand),
    /// Fares: the embedded Hangzhou rules or any GTFS-Fares v2 feed.
    #[command(subcommand)]
    Fare(FareCommand),
    /// Ride codes (乘车码): issue one as a QR code, verify one offline.
    #[command(subcommand)]
    Ridecode(RidecodeCommand),
    /// Settle a tap file: trips, fares, charges and revenue per operator.
    ///
    /// Runs in memory (every card starts with `--balance`; nothing is stored),
    /// or on the store in `--data-dir`, where running the file again resumes.
    /// Exits 1 when some card could not be settled now (listed with the reason).
    Settle(cli::settle::SettleArgs),
    /// The ledger of a citycard store.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Resolve the idempotency claims a killed process left in a data directory.
    ///
    /// Fare claims are completed or released from the ledger; other expired
    /// claims are listed and taken over by the caller's next retry with the
    /// same key, which reads their effect back. Claims of a live process are
    /// left alone.
    Recover(cli::recover::RecoverArgs),
    /// Crash drills on a data directory (for the crash tests).
    #[command(hide = true)]
    Drill(cli::drill::DrillArgs),
    /// Run the platform API service (signed HTTP for payment platforms).
    ///
    /// Runs the `citycard-api` program beside this one with these arguments.
    Serve(cli::serve::ServeArgs),
    /// A card's e-wallet in a citycard store, read-only.
    #[command(subcommand)]
    Card(CardCommand),
}

#[derive(Debug, Subcommand)]
enum CardCommand {
    /// The wallet balance of a card.
    Balance(cli::card::CardArgs),
    /// The wallet statement of a card: opening balance, entries, closing balance.
    Statement(cli::card::StatementArgs),
}

#[derive(Debug, Subcommand)]
enum IdCommand {
    /// Check ID numbers: from arguments, or one per line on standard input.
    ///
    /// Prints one JSON object per line; exits 1 when any number is invalid.
    Check(cli::id::CheckArgs),
}

#[derive(Debug, Subcommand)]
enum FareCommand {
    /// Price a journey: the total and how each leg was priced.
    Quote(cli::fare::QuoteArgs),
    /// List the networks, routes and stops a journey may name.
    Stations(cli::fare::StationsArgs),
    /// Check a GTFS-Fares v2 feed: errors and warnings with file, line and field.
    Check(cli::fare::CheckArgs),
}

#[derive(Debug, Subcommand)]
enum RidecodeCommand {
    /// Issue a ride code: write it as a PNG or SVG QR code and print its payload.
    ///
    /// Keys are created on first use and kept under DIR/ridecode/.
    Issue(cli::ridecode::IssueArgs),
    /// Verify a ride code offline with the issuer's public keys in DIR.
    ///
    /// Exits 1 when the code is refused. Accepted codes are remembered in
    /// DIR/ridecode/seen, so the same code is refused as replayed next time.
    Verify(cli::ridecode::VerifyArgs),
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Export the posted transfers as an hledger journal, beancount file or CSV.
    Export(cli::ledger::ExportArgs),
}

#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// Where the demo keeps its database, vault keys and FHIR files.
    #[arg(long, value_name = "DIR", default_value = citycard::demo::DEFAULT_DATA_DIR)]
    data_dir: std::path::PathBuf,
    /// The language of the journey: zh or en (default: Chinese in a Chinese
    /// locale, from LC_ALL or LANG; English otherwise).
    #[arg(long, value_name = "zh|en")]
    lang: Option<citycard::binding::Lang>,
    /// Also print internal ids (persons, bindings, passes, readers, transfers).
    #[arg(long)]
    verbose: bool,
    /// Keep the stores in PostgreSQL instead of the directory's SQLite file
    /// (`postgres://user@host:port/db`, TLS with `?sslmode=require`).
    #[arg(long, value_name = "URL")]
    database: Option<String>,
}

fn run_demo(args: &DemoArgs, out: &mut dyn std::io::Write) -> Result<(), cli::CliError> {
    let env = |name: &str| std::env::var(name).ok();
    let lang = args.lang.unwrap_or_else(|| {
        citycard::binding::Lang::from_locale(env("LC_ALL").as_deref(), env("LANG").as_deref())
            .unwrap_or_default()
    });
    let options = citycard::demo::DemoOptions::new(&args.data_dir)
        .with_lang(lang)
        .with_verbose(args.verbose);
    let options = match &args.database {
        Some(url) => options.with_database(url),
        None => options,
    };
    cli::runtime()?
        .block_on(citycard::demo::run(&options, out))
        .map(|_| ())
        .map_err(cli::CliError::failed)
}

fn exit_if(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut stdout = std::io::stdout().lock();
    let result = match cli.command {
        Command::Demo(args) => run_demo(&args, &mut stdout).map(|()| ExitCode::SUCCESS),
        Command::Id(IdCommand::Check(args)) => {
            cli::id::run(&args, &mut stdout).map(|invalid| exit_if(invalid == 0))
        }
        Command::Fare(FareCommand::Quote(args)) => {
            cli::fare::quote(&args, &mut stdout).map(|()| ExitCode::SUCCESS)
        }
        Command::Fare(FareCommand::Stations(args)) => {
            cli::fare::stations(&args, &mut stdout).map(|()| ExitCode::SUCCESS)
        }
        Command::Fare(FareCommand::Check(args)) => {
            cli::fare::check(&args, &mut stdout).map(exit_if)
        }
        Command::Ridecode(RidecodeCommand::Issue(args)) => {
            cli::ridecode::issue(&args, &mut stdout).map(|()| ExitCode::SUCCESS)
        }
        Command::Ridecode(RidecodeCommand::Verify(args)) => {
            cli::ridecode::verify(&args, &mut stdout).map(exit_if)
        }
        Command::Settle(args) => cli::settle::run(&args, &mut stdout).map(exit_if),
        Command::Ledger(LedgerCommand::Export(args)) => {
            cli::ledger::export(&args, &mut stdout).map(|()| ExitCode::SUCCESS)
        }
        Command::Card(CardCommand::Balance(args)) => {
            cli::card::balance(&args, &mut stdout).map(|()| ExitCode::SUCCESS)
        }
        Command::Card(CardCommand::Statement(args)) => {
            cli::card::statement(&args, &mut stdout).map(|()| ExitCode::SUCCESS)
        }
        Command::Recover(args) => cli::recover::run(&args, &mut stdout).map(|()| ExitCode::SUCCESS),
        Command::Serve(args) => cli::serve::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Drill(args) => cli::drill::run(&args, &mut stdout).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("citycard: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
