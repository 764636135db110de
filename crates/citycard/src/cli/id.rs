//! `citycard id check`: validate ID numbers, one JSON object per line.

use std::io::{BufRead, Write};

use citycard_identity::{IdNumber, RegionCheck, ValidationPolicy};
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::CliError;

/// Arguments of `citycard id check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// ID numbers to check; without any, one number per line is read from standard input.
    pub numbers: Vec<String>,
    /// Print the input and the normalised number in full instead of masked.
    #[arg(long)]
    pub reveal: bool,
    /// Which region check to apply.
    #[arg(long, value_enum, default_value_t = RegionArg::AnyTime)]
    pub region_check: RegionArg,
}

/// The region check, as a command-line choice.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RegionArg {
    /// No region check.
    Off,
    /// The region code existed at some time (the default).
    AnyTime,
    /// The region code was valid in the birth year.
    BirthYear,
}

/// One line of output.
#[derive(Debug, Serialize)]
pub struct CheckLine {
    /// The input line number, when reading standard input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// What was given (masked unless `--reveal`).
    pub input: String,
    /// Whether it is a valid ID number.
    pub valid: bool,
    /// The kind of number.
    pub kind: Option<String>,
    /// The normalised 18-character number (masked unless `--reveal`).
    pub normalized: Option<String>,
    /// The birth date.
    pub birth_date: Option<String>,
    /// `male` or `female`.
    pub sex: Option<String>,
    /// The six-digit region code.
    pub region_code: Option<String>,
    /// Province, city and county names, where known.
    pub region: Option<String>,
    /// Why the number is invalid.
    pub error: Option<String>,
}

/// Checks one input.
pub fn check_one(input: &str, policy: &ValidationPolicy, reveal: bool) -> CheckLine {
    let shown_input = if reveal {
        input.to_owned()
    } else {
        citycard_core::Mask::DEFAULT.apply(input.trim())
    };
    match IdNumber::parse_with(input, policy) {
        Ok(id) => CheckLine {
            line: None,
            input: shown_input,
            valid: true,
            kind: Some(kind_code(&id)),
            normalized: Some(if reveal {
                id.reveal().to_owned()
            } else {
                id.masked()
            }),
            birth_date: Some(id.birth_date().to_string()),
            sex: serde_json::to_value(id.sex())
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned)),
            region_code: Some(id.region_code().to_string()),
            region: id.region().map(|r| {
                [r.province, r.city, r.county]
                    .into_iter()
                    .flatten()
                    .filter(|name| !matches!(*name, "市辖区" | "县"))
                    .collect::<Vec<_>>()
                    .join("")
            }),
            error: None,
        },
        Err(e) => CheckLine {
            line: None,
            input: shown_input,
            valid: false,
            kind: None,
            normalized: None,
            birth_date: None,
            sex: None,
            region_code: None,
            region: None,
            error: Some(e.to_string()),
        },
    }
}

fn kind_code(id: &IdNumber) -> String {
    serde_json::to_value(id.kind())
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{:?}", id.kind()))
}

/// Runs the command; returns how many inputs were invalid.
pub fn run(args: &CheckArgs, out: &mut dyn Write) -> Result<usize, CliError> {
    let policy = ValidationPolicy::new().region_check(match args.region_check {
        RegionArg::Off => RegionCheck::Off,
        RegionArg::AnyTime => RegionCheck::ExistedAnyTime,
        RegionArg::BirthYear => RegionCheck::ExistedInBirthYear,
    });
    let mut invalid = 0;
    let mut emit = |line: CheckLine, out: &mut dyn Write| -> Result<(), CliError> {
        if !line.valid {
            invalid += 1;
        }
        writeln!(out, "{}", serde_json::to_string(&line)?)?;
        Ok(())
    };
    if args.numbers.is_empty() {
        // Read bytes, not text: a line that is not UTF-8 is reported as an
        // invalid input with its number, and the lines after it are checked.
        for (i, bytes) in std::io::stdin().lock().split(b'\n').enumerate() {
            let bytes = bytes?;
            let bytes = bytes.strip_suffix(b"\r").unwrap_or(&bytes);
            let number = i + 1;
            let result = match std::str::from_utf8(bytes) {
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => check_one(text, &policy, args.reveal),
                Err(_) => not_text(bytes, number, args.reveal),
            };
            emit(
                CheckLine {
                    line: Some(number),
                    ..result
                },
                out,
            )?;
        }
    } else {
        for n in &args.numbers {
            emit(check_one(n, &policy, args.reveal), out)?;
        }
    }
    Ok(invalid)
}

/// The output for an input line that is not UTF-8 text.
fn not_text(bytes: &[u8], number: usize, reveal: bool) -> CheckLine {
    let lossy = String::from_utf8_lossy(bytes);
    CheckLine {
        line: Some(number),
        input: if reveal {
            lossy.into_owned()
        } else {
            citycard_core::Mask::DEFAULT.apply(lossy.trim())
        },
        valid: false,
        kind: None,
        normalized: None,
        birth_date: None,
        sex: None,
        region_code: None,
        region: None,
        error: Some(format!(
            "line {number} is not UTF-8 text: save the input as UTF-8 and check this line again"
        )),
    }
}
