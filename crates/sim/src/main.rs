//! `citycard-sim`: run seeds of the simulated city.
//!
//! ```text
//! citycard-sim run --seed 42                 # one seed; on failure: shrink, print the replay command
//! citycard-sim seeds --from 0 --count 1000   # many seeds
//! citycard-sim seeds --from 1000 --minutes 60
//! citycard-sim crash --seed 42               # one crash run (child killed in a seeded commit)
//! citycard-sim net --seed 42                 # one network run (the platform API over a faulty link)
//! ```
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Instant;

use citycard_sim::{Mutation, Options, Size, replay_command, run, shrink};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "citycard-sim", about = "Seeded whole-system runs of citycard")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct SizeArgs {
    /// Cardholders.
    #[arg(long, default_value_t = Size::CI.people)]
    people: usize,
    /// Steps.
    #[arg(long, default_value_t = Size::CI.steps)]
    steps: usize,
    /// No remote faults or clock skews.
    #[arg(long)]
    no_faults: bool,
    /// A deliberate bug (drop-charge, skip-audit, second-binding, ack-before-commit).
    #[arg(long)]
    mutation: Option<String>,
}

impl SizeArgs {
    fn size(&self) -> Size {
        Size {
            people: self.people,
            steps: self.steps,
            faults: !self.no_faults,
        }
    }

    fn mutation(&self) -> Result<Option<Mutation>, String> {
        self.mutation
            .as_deref()
            .map(|m| Mutation::parse(m).ok_or_else(|| format!("no mutation named {m}")))
            .transpose()
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run one seed.
    Run {
        /// The seed.
        #[arg(long)]
        seed: u64,
        #[command(flatten)]
        size: SizeArgs,
    },
    /// Run many seeds (a count, or for some minutes).
    Seeds {
        /// The first seed.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// How many seeds.
        #[arg(long)]
        count: Option<u64>,
        /// Or: run for this long.
        #[arg(long)]
        minutes: Option<u64>,
        /// Crash runs instead (a child on SQLite, killed in a seeded commit).
        #[arg(long)]
        crash: bool,
        /// Network runs instead (the platform API over a faulty link; `--people` and `--steps` apply).
        #[arg(long)]
        net: bool,
        #[command(flatten)]
        size: SizeArgs,
    },
    /// One crash run.
    Crash {
        /// The seed.
        #[arg(long)]
        seed: u64,
        #[command(flatten)]
        size: SizeArgs,
    },
    /// One network run: the platform API service over a faulty link.
    Net {
        /// The seed.
        #[arg(long)]
        seed: u64,
        /// Cardholders.
        #[arg(long, default_value_t = citycard_sim::net::NetSize::CI.people)]
        people: usize,
        /// Steps.
        #[arg(long, default_value_t = citycard_sim::net::NetSize::CI.steps)]
        steps: usize,
        /// A deliberate bug (fresh-key-retry).
        #[arg(long)]
        mutation: Option<String>,
    },
    /// The crash child (run by `crash`): plays a seed on a SQLite directory.
    #[command(hide = true)]
    Child(citycard_sim::crash::ChildArgs),
}

fn one(seed: u64, size: Size, mutation: Option<Mutation>) -> Result<citycard_sim::Report, String> {
    let options = Options {
        mutation,
        ..Options::memory(size)
    };
    match run(seed, &options) {
        Ok(report) => Ok(report),
        Err(failure) => {
            let (prefix, shrunk) = match failure.step {
                Some(step) => shrink(seed, &options, step),
                None => (0, failure.clone()),
            };
            let mut text = format!("{failure}\n");
            for line in &shrunk.trace_tail {
                text.push_str(&format!("  {line}\n"));
            }
            text.push_str(&format!(
                "shortest failing prefix: {prefix} steps: {shrunk}\nreplay: {}",
                replay_command(
                    seed,
                    Size {
                        steps: prefix.max(1),
                        ..size
                    },
                    mutation
                )
            ));
            Err(text)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { seed, size } => size.mutation().and_then(|m| {
            let started = Instant::now();
            let report = one(seed, size.size(), m)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            eprintln!("seed {seed}: ok in {:.2?}", started.elapsed());
            Ok(())
        }),
        Command::Seeds {
            from,
            count,
            minutes,
            crash,
            net,
            size,
        } => size.mutation().and_then(|m| {
            let started = Instant::now();
            let deadline = minutes.map(|m| std::time::Duration::from_secs(m * 60));
            let count = count.unwrap_or(if deadline.is_some() { u64::MAX } else { 100 });
            let (mut runs, mut ops, mut faults) = (0u64, 0u64, 0u64);
            for seed in from..from.saturating_add(count) {
                if deadline.is_some_and(|d| started.elapsed() >= d) {
                    break;
                }
                if net {
                    let report = citycard_sim::net::run(
                        seed,
                        citycard_sim::net::NetSize {
                            people: size.people,
                            steps: size.steps,
                        },
                        m,
                    )?;
                    ops += report.requests;
                    faults += report.dropped + report.lost_answers + report.delayed;
                } else if crash {
                    let report = citycard_sim::crash::crash_run(seed, size.size(), m)?;
                    ops += report.acknowledged;
                } else {
                    let report = one(seed, size.size(), m)?;
                    ops += report.operations;
                    faults += report.faults;
                }
                runs += 1;
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{runs} runs in {secs:.1} s ({:.0} runs/min), {ops} operations, {faults} faults",
                runs as f64 * 60.0 / secs.max(1e-9)
            );
            Ok(())
        }),
        Command::Crash { seed, size } => size.mutation().and_then(|m| {
            let report = citycard_sim::crash::crash_run(seed, size.size(), m)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            Ok(())
        }),
        Command::Net {
            seed,
            people,
            steps,
            mutation,
        } => mutation
            .as_deref()
            .map(|m| Mutation::parse(m).ok_or_else(|| format!("no mutation named {m}")))
            .transpose()
            .and_then(|m| {
                let started = Instant::now();
                let report =
                    citycard_sim::net::run(seed, citycard_sim::net::NetSize { people, steps }, m)?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
                eprintln!("network seed {seed}: ok in {:.2?}", started.elapsed());
                Ok(())
            }),
        Command::Child(args) => citycard_sim::crash::child(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
