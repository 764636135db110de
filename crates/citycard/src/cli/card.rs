//! `citycard card balance` and `citycard card statement`: a card's e-wallet
//! as a store holds it, read without running the demo.
//!
//! A SQLite store is opened read-only, so a copy on a read-only mount works
//! and nothing is ever written; `--database URL` reads a PostgreSQL database
//! instead. The wallet is
//! found by the printed card number (its ledger account id is derived from
//! it, see [`Accounts::wallet`]); the number is checked against the embedded
//! card rules and printed masked. Memos are not printed: they are free text.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use citycard::Accounts;
use citycard::glue::money::codes;
use citycard_binding::{CardNumber, CardRules};
use citycard_core::{Money, Principal, SystemClock, china_offset, civil_date};
use citycard_ledger::{Account, AccountId, AccountKind, Ledger, Owner, Statement};
use citycard_transit::{CardRef, TransitStore};
use clap::Args;
use serde::Serialize;

use super::{CliError, OutputFormat, default_data_dir, open_stores, runtime};

/// Which card and store.
#[derive(Debug, Args)]
pub struct CardArgs {
    /// The printed card number (spaces allowed).
    #[arg(long, value_name = "NUMBER")]
    pub card: String,
    /// The data directory holding `citycard.db` (e.g. the demo's).
    #[arg(long, value_name = "DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// Read this PostgreSQL database instead of the directory's SQLite file
    /// (`postgres://user@host:port/db`).
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Arguments of `citycard card statement`.
#[derive(Debug, Args)]
pub struct StatementArgs {
    /// The card and store.
    #[command(flatten)]
    pub card: CardArgs,
    /// First day (YYYY-MM-DD, Hangzhou), inclusive; the wallet's first entry by default.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub from: Option<String>,
    /// Last day (YYYY-MM-DD, Hangzhou), inclusive; the last entry by default.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub to: Option<String>,
}

/// A card's balance as JSON.
#[derive(Debug, Serialize)]
struct BalanceOut {
    card: String,
    account: String,
    closed: bool,
    /// What the cardholder can spend: posted less holds.
    available: Money,
    posted: Money,
    on_hold: Money,
}

/// One statement line as JSON.
#[derive(Debug, Serialize)]
struct EntryOut {
    /// When the entry was recorded (for a fare: when the day was settled).
    at: String,
    /// For a fare: when the ride began (the first tap).
    #[serde(skip_serializing_if = "Option::is_none")]
    ride_at: Option<String>,
    what: String,
    amount: Money,
    balance_after: Money,
    reference: Option<String>,
    transfer_id: String,
}

/// A statement as JSON.
#[derive(Debug, Serialize)]
struct StatementOut {
    card: String,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    opening_balance: Money,
    entries: Vec<EntryOut>,
    closing_balance: Money,
}

/// The wallet and what is needed to describe its entries.
struct Loaded {
    card: CardNumber,
    wallet: Account,
    accounts: BTreeMap<AccountId, Account>,
    ledger: Ledger,
    transit: Arc<dyn TransitStore>,
}

fn parse_card(text: &str) -> Result<CardNumber, CliError> {
    CardNumber::parse(text, &CardRules::embedded().number_format).map_err(|e| {
        CliError::Usage(format!(
            "card number: {e}; give the number printed on the card"
        ))
    })
}

async fn load(args: &CardArgs) -> Result<Loaded, CliError> {
    let card = parse_card(&args.card)?;
    let stores = open_stores(&args.data_dir, args.database.as_deref(), true, "store").await?;
    let ledger = Ledger::open(stores.ledger, Arc::new(SystemClock))
        .await
        .map_err(|e| CliError::Domain(format!("cannot open the ledger: {e}")))?;
    let id = Accounts::wallet(&card);
    let accounts = ledger
        .inspect(|engine| {
            engine
                .accounts()
                .map(|a| (a.id, a))
                .collect::<BTreeMap<_, _>>()
        })
        .await
        .map_err(|e| CliError::Domain(format!("cannot read the ledger: {e}")))?;
    let wallet = accounts
        .get(&id)
        .filter(|a| a.kind == AccountKind::E_WALLET)
        .cloned()
        .ok_or_else(|| {
            CliError::Domain(format!(
                "no e-wallet for card {} in {}: check the card number and the --data-dir or --database",
                card.masked(),
                stores.name
            ))
        })?;
    Ok(Loaded {
        card,
        wallet,
        accounts,
        ledger,
        transit: stores.transit,
    })
}

/// When each fare's ride began, by the fare's reference (`trip:<trip id>`),
/// from the trips settled on the days the fares were charged.
async fn ride_times(
    loaded: &Loaded,
    st: &Statement,
) -> Result<BTreeMap<String, DateTime<Utc>>, CliError> {
    let store = &loaded.transit;
    let card = CardRef(loaded.wallet.id.get());
    let mut days: Vec<NaiveDate> = st
        .entries
        .iter()
        .filter(|e| e.code == codes::FARE)
        .map(|e| civil_date(e.timestamp))
        .collect();
    days.dedup();
    let mut out = BTreeMap::new();
    for day in days {
        let trips = store
            .trips(card, day)
            .await
            .map_err(|e| CliError::Domain(format!("cannot read the trips of {day}: {e}")))?;
        for t in trips {
            out.insert(format!("trip:{}", t.id.as_str()), t.started_at);
        }
    }
    Ok(out)
}

fn local(at: DateTime<Utc>) -> String {
    at.with_timezone(&china_offset())
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

/// Runs `citycard card balance`.
pub fn balance(args: &CardArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let loaded = runtime()?.block_on(load(args))?;
    let w = &loaded.wallet;
    let doc = BalanceOut {
        card: loaded.card.masked(),
        account: w.id.to_string(),
        closed: w.is_closed(),
        available: w.available(),
        posted: w.posted(),
        on_hold: w
            .posted()
            .checked_sub(w.available())
            .map_err(CliError::failed)?,
    };
    match args.format {
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?,
        OutputFormat::Text => {
            writeln!(
                out,
                "card {}: balance {:#}{}",
                doc.card,
                doc.available,
                if doc.closed { " (wallet closed)" } else { "" }
            )?;
            if doc.on_hold.is_positive() {
                writeln!(
                    out,
                    "  posted {:#}, of which {:#} on hold for unfinished rides",
                    doc.posted, doc.on_hold
                )?;
            }
        }
    }
    Ok(())
}

fn parse_day(text: &str, flag: &str) -> Result<NaiveDate, CliError> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| CliError::Usage(format!("{flag} {text:?} is not YYYY-MM-DD")))
}

/// The instant a Hangzhou civil day starts.
fn start_of(day: NaiveDate) -> Result<DateTime<Utc>, CliError> {
    china_offset()
        .from_local_datetime(&day.and_time(NaiveTime::MIN))
        .single()
        .map(|at| at.with_timezone(&Utc))
        .ok_or_else(|| CliError::Usage(format!("day {day} has no start in Hangzhou time")))
}

/// Plain words for an entry, from its reason code and the other account.
fn describe(code: u16, amount: Money, other: Option<&Account>) -> String {
    let org = other.and_then(|a| match &a.owner {
        Some(Owner::Organisation(o)) => Some(o.as_str()),
        _ => None,
    });
    let with = |what: &str, prep: &str| match org {
        Some(o) => format!("{what} {prep} {o}"),
        None => what.to_owned(),
    };
    match code {
        codes::TOP_UP => with("top-up", "via"),
        codes::FARE => with("fare", "to"),
        codes::MEDICAL => with("medical bill, own share", "to"),
        codes::REFUND => "refund to the cardholder".to_owned(),
        codes::CARRY if amount.is_positive() => "balance carried from the previous card".to_owned(),
        codes::CARRY => "balance carried to the replacement card".to_owned(),
        codes::CLOSE => "wallet closed".to_owned(),
        other => with(&format!("transfer (code {other})"), "with"),
    }
}

/// Runs `citycard card statement`.
pub fn statement(args: &StatementArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let from_day = args
        .from
        .as_deref()
        .map(|d| parse_day(d, "--from"))
        .transpose()?;
    let to_day = args
        .to
        .as_deref()
        .map(|d| parse_day(d, "--to"))
        .transpose()?;
    if let (Some(f), Some(t)) = (from_day, to_day)
        && t < f
    {
        return Err(CliError::Usage(format!(
            "--to {t} is before --from {f}: give the first day first"
        )));
    }
    let from = from_day
        .map(start_of)
        .transpose()?
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let to = match to_day {
        Some(t) => match t.succ_opt() {
            Some(next) => start_of(next)?,
            None => DateTime::<Utc>::MAX_UTC,
        },
        None => DateTime::<Utc>::MAX_UTC,
    };
    let rt = runtime()?;
    let (loaded, st, rides) = rt.block_on(async {
        let loaded = load(&args.card).await?;
        let st = loaded
            .ledger
            .statement(&Principal::System, loaded.wallet.id, from, to)
            .await
            .map_err(|e| CliError::Domain(format!("cannot read the statement: {e}")))?;
        let rides = ride_times(&loaded, &st).await?;
        Ok::<_, CliError>((loaded, st, rides))
    })?;
    let entries: Vec<EntryOut> = st
        .entries
        .iter()
        .map(|e| EntryOut {
            at: local(e.timestamp),
            ride_at: e
                .reference
                .as_ref()
                .and_then(|r| rides.get(r.as_str()))
                .map(|at| local(*at)),
            what: describe(e.code, e.amount, loaded.accounts.get(&e.counterparty)),
            amount: e.amount,
            balance_after: e.balance_after,
            reference: e.reference.as_ref().map(ToString::to_string),
            transfer_id: e.transfer_id.to_string(),
        })
        .collect();
    let doc = StatementOut {
        card: loaded.card.masked(),
        from: from_day,
        to: to_day,
        opening_balance: st.opening_balance,
        entries,
        closing_balance: st.closing_balance,
    };
    match args.card.format {
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?,
        OutputFormat::Text => write_statement(&doc, out)?,
    }
    Ok(())
}

fn write_statement(doc: &StatementOut, out: &mut dyn Write) -> Result<(), CliError> {
    let range = match (doc.from, doc.to) {
        (None, None) => "all entries".to_owned(),
        (Some(f), None) => format!("from {f}"),
        (None, Some(t)) => format!("up to {t}"),
        (Some(f), Some(t)) => format!("{f} to {t}"),
    };
    writeln!(
        out,
        "statement of card {} ({range}, Hangzhou time)",
        doc.card
    )?;
    writeln!(out, "  opening balance {:#}", doc.opening_balance)?;
    for e in &doc.entries {
        let sign = if e.amount.is_negative() { "" } else { "+" };
        // A fare is dated by its ride; the settlement time follows.
        let (at, what) = match &e.ride_at {
            Some(ride) => (
                ride.clone(),
                format!("{} (settled {})", e.what, &e.at[11..]),
            ),
            None => (e.at.clone(), e.what.clone()),
        };
        writeln!(
            out,
            "  {}  {:<44} {sign}{:#}  balance {:#}{}",
            at,
            what,
            e.amount,
            e.balance_after,
            e.reference
                .as_deref()
                .map_or_else(String::new, |r| format!("  ({r})"))
        )?;
    }
    if doc.entries.is_empty() {
        writeln!(out, "  no entries")?;
    }
    writeln!(out, "  closing balance {:#}", doc.closing_balance)?;
    Ok(())
}
