//! `citycard settle`: settle a tap file on the Hangzhou fares, in memory.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;

use chrono::NaiveDate;
use citycard_core::{MemoryAuditLog, Money, Principal, SystemClock, civil_date};
use citycard_transit::{
    FareEngine, MemoryFarePayments, MemoryRiderDirectory, MemoryTransitStore, Rider, Settlement,
    SettlementReport, Tap, taps_from_csv,
};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::{CliError, OutputFormat, read_input, runtime};

/// How many cards one settlement call handles (the progress bar moves per batch).
const CARDS_PER_BATCH: usize = 256;

/// Arguments of `citycard settle`.
#[derive(Debug, Args)]
pub struct SettleArgs {
    /// The tap file (CSV with header `card,direction,network,stop,route,vehicle,reader,at`), or `-` for standard input.
    pub taps: String,
    /// Settle only this civil day (YYYY-MM-DD, Hangzhou); by default every day in the file.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: Option<String>,
    /// The balance every card starts with (yuan), in memory.
    #[arg(
        long,
        value_name = "AMOUNT",
        default_value = "100.00",
        conflicts_with_all = ["data_dir", "database"]
    )]
    pub balance: String,
    /// Settle on the store in DIR instead of in memory: fares are charged to
    /// the cards' wallets on its ledger (a tap's card is the wallet account id)
    /// and trips are recorded, so running the same file again resumes.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<std::path::PathBuf>,
    /// Settle on this PostgreSQL database instead of DIR's SQLite file
    /// (`postgres://user@host:port/db`); the vault keys stay in `--data-dir`.
    #[arg(long, value_name = "URL", requires = "data_dir")]
    pub database: Option<String>,
    /// Apply the monthly volume tiers to every card.
    #[arg(long)]
    pub volume_tiers: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

#[derive(Debug, Serialize)]
struct SettleOut {
    file: String,
    /// The store settled on, if not in memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<String>,
    /// Every card's starting balance, in memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    starting_balance: Option<Money>,
    taps_in_file: usize,
    taps_on_other_days: usize,
    days: Vec<SettlementReport>,
}

fn add(a: Money, b: Money) -> Result<Money, CliError> {
    a.checked_add(b).map_err(CliError::failed)
}

/// Adds one batch's report into a day's report.
fn merge(into: &mut SettlementReport, r: &SettlementReport) -> Result<(), CliError> {
    into.taps.taps += r.taps.taps;
    into.taps.repeats_refused += r.taps.repeats_refused;
    into.taps.trips += r.taps.trips;
    into.taps.incomplete += r.taps.incomplete;
    into.trips_settled += r.trips_settled;
    into.trips_already_settled += r.trips_already_settled;
    into.trips_pending += r.trips_pending;
    into.maximum_fares += r.maximum_fares;
    into.base_fares = add(into.base_fares, r.base_fares)?;
    into.discounts = add(into.discounts, r.discounts)?;
    into.transfer_discounts = add(into.transfer_discounts, r.transfer_discounts)?;
    into.charged = add(into.charged, r.charged)?;
    into.charges += r.charges;
    for (op, m) in &r.revenue_by_operator {
        let e = into
            .revenue_by_operator
            .entry(op.clone())
            .or_insert(Money::ZERO);
        *e = add(*e, *m)?;
    }
    into.arrears = add(into.arrears, r.arrears)?;
    into.cards_in_arrears += r.cards_in_arrears;
    into.cards_unpriced += r.cards_unpriced;
    into.charges_replayed += r.charges_replayed;
    into.cards_failed.extend(r.cards_failed.iter().cloned());
    Ok(())
}

fn progress(total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} taps ({elapsed})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// The card system on the store in `dir`, or on the PostgreSQL `database`
/// with its vault keys in `dir` (the database and the keys must exist).
async fn open_store(
    dir: &std::path::Path,
    database: Option<&str>,
) -> Result<citycard::CityCard, CliError> {
    let storage = match database {
        Some(url) => citycard::Storage::Postgres(url.to_owned()),
        None => {
            let db = dir.join("citycard.db");
            if !db.exists() {
                return Err(CliError::Usage(format!(
                    "no citycard.db in {}: name a data directory the card system has written",
                    dir.display()
                )));
            }
            citycard::Storage::Sqlite(db)
        }
    };
    let keys =
        citycard::keys::FileKeyProvider::open(dir.join("keys.json")).map_err(CliError::failed)?;
    citycard::CityCard::builder()
        .storage(storage)
        .key_provider(Arc::new(keys))
        .build()
        .await
        .map_err(CliError::failed)
}

/// Runs `citycard settle`; `false` when some card could not be settled now
/// (listed in the report; running the same file again retries it).
pub fn run(args: &SettleArgs, out: &mut dyn Write) -> Result<bool, CliError> {
    let only_day = args
        .date
        .as_deref()
        .map(|d| {
            NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d")
                .map_err(|_| CliError::Usage(format!("--date {d:?} is not YYYY-MM-DD")))
        })
        .transpose()?;
    let balance = Money::parse(args.balance.trim())
        .map_err(|e| CliError::Usage(format!("--balance {:?}: {e}", args.balance)))?;
    let engine =
        Arc::new(FareEngine::hangzhou().map_err(|e| CliError::Domain(format!("fare data: {e}")))?);
    let text = read_input(&args.taps)?;
    let taps = taps_from_csv(&engine, &text)
        .map_err(|e| CliError::Usage(format!("{}: {e}", args.taps)))?;
    let taps_in_file = taps.len();
    // Day → card → taps.
    let mut by_day: BTreeMap<NaiveDate, BTreeMap<u64, Vec<Tap>>> = BTreeMap::new();
    let mut other_days = 0;
    for tap in taps {
        let day = civil_date(tap.at);
        if only_day.is_some_and(|d| d != day) {
            other_days += 1;
            continue;
        }
        by_day
            .entry(day)
            .or_default()
            .entry(tap.card.0)
            .or_default()
            .push(tap);
    }
    if let Some(d) = only_day
        && by_day.is_empty()
    {
        return Err(CliError::Domain(format!(
            "{} has no taps on {d} ({taps_in_file} taps on other days)",
            args.taps
        )));
    }
    let rt = runtime()?;
    let city = match &args.data_dir {
        Some(dir) => Some(rt.block_on(open_store(dir, args.database.as_deref()))?),
        None => None,
    };
    let settlement = match &city {
        Some(city) => city.transit().settlement().clone(),
        None => Settlement::new(
            engine,
            Arc::new(MemoryFarePayments::new(balance)),
            Arc::new(MemoryTransitStore::new()),
            Arc::new(MemoryRiderDirectory::new(Rider {
                volume_tiers: args.volume_tiers,
                ..Rider::default()
            })),
            Arc::new(MemoryAuditLog::new()),
            Arc::new(SystemClock),
        ),
    };
    let to_settle = (taps_in_file - other_days) as u64;
    let bar = progress(to_settle);
    let mut days = Vec::with_capacity(by_day.len());
    for (day, cards) in by_day {
        bar.set_message(day.to_string());
        let mut report = SettlementReport {
            day: Some(day),
            ..SettlementReport::default()
        };
        let cards: Vec<Vec<Tap>> = cards.into_values().collect();
        for batch in cards.chunks(CARDS_PER_BATCH) {
            let taps: Vec<Tap> = batch.iter().flatten().copied().collect();
            let n = taps.len() as u64;
            let r = rt
                .block_on(settlement.settle_day(&Principal::System, day, taps))
                .map_err(|e| CliError::Domain(format!("settling {day}: {e}")))?;
            merge(&mut report, &r)?;
            bar.inc(n);
        }
        days.push(report);
    }
    bar.finish_and_clear();
    let doc = SettleOut {
        file: args.taps.clone(),
        // A URL may hold a password: name the server only as PostgreSQL.
        store: match (&args.database, &args.data_dir) {
            (Some(_), _) => Some("PostgreSQL (--database)".to_owned()),
            (None, d) => d.as_ref().map(|d| d.display().to_string()),
        },
        starting_balance: city.is_none().then_some(balance),
        taps_in_file,
        taps_on_other_days: other_days,
        days,
    };
    match args.format {
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?,
        OutputFormat::Text => write_text(&doc, out)?,
    }
    Ok(doc.days.iter().all(|d| d.cards_failed.is_empty()))
}

fn write_text(doc: &SettleOut, out: &mut dyn Write) -> Result<(), CliError> {
    match (&doc.store, doc.starting_balance) {
        (Some(store), _) => writeln!(
            out,
            "settled {} ({} taps; on the store in {store})",
            doc.file, doc.taps_in_file
        )?,
        (None, balance) => writeln!(
            out,
            "settled {} ({} taps; every card starting at {:#})",
            doc.file,
            doc.taps_in_file,
            balance.unwrap_or(Money::ZERO)
        )?,
    }
    if doc.taps_on_other_days > 0 {
        writeln!(
            out,
            "  {} taps on other days skipped",
            doc.taps_on_other_days
        )?;
    }
    for r in &doc.days {
        let day = r.day.map(|d| d.to_string()).unwrap_or_default();
        writeln!(out, "day {day}")?;
        writeln!(
            out,
            "  taps {}, trips {} ({} incomplete), repeats refused {}",
            r.taps.taps, r.taps.trips, r.taps.incomplete, r.taps.repeats_refused
        )?;
        writeln!(
            out,
            "  trips settled {}, already settled {}, pending {}",
            r.trips_settled, r.trips_already_settled, r.trips_pending
        )?;
        writeln!(
            out,
            "  base fares        {:>10}",
            format!("{:#}", r.base_fares)
        )?;
        writeln!(
            out,
            "  discounts         {:>10}  (transfer discounts {:#})",
            format!("{:#}", r.discounts),
            r.transfer_discounts
        )?;
        writeln!(
            out,
            "  charged           {:>10}  in {} charges",
            format!("{:#}", r.charged),
            r.charges
        )?;
        writeln!(
            out,
            "  arrears           {:>10}  ({} cards in arrears)",
            format!("{:#}", r.arrears),
            r.cards_in_arrears
        )?;
        writeln!(out, "  maximum fares     {:>10}", r.maximum_fares)?;
        if r.cards_unpriced > 0 {
            writeln!(
                out,
                "  cards unpriced    {:>10}  (bad tap data; nothing charged)",
                r.cards_unpriced
            )?;
        }
        if r.charges_replayed > 0 {
            writeln!(
                out,
                "  charges replayed  {:>10}  (made by an earlier run; not counted above)",
                r.charges_replayed
            )?;
        }
        for f in &r.cards_failed {
            writeln!(
                out,
                "  card {} not settled now (a re-run retries it): {}",
                f.card, f.reason
            )?;
        }
        writeln!(out, "  revenue by operator:")?;
        for (op, m) in &r.revenue_by_operator {
            writeln!(out, "    {op:<14} {:>10}", format!("{m:#}"))?;
        }
    }
    Ok(())
}
