//! `citycard ledger export`: the ledger's posted transfers in plain-text
//! accounting formats (hledger journal, beancount, CSV).
//!
//! Every posted movement is exported: single-phase transfers, posts of holds
//! and balancing transfers with their resolved amounts. Holds and voids move
//! no posted money and are left out. Memos are left out too: they are free
//! text and could carry personal data; the reference and reason code remain.
//!
//! Account names follow the card system's (the issuer's) view of the money;
//! the README's "chart of accounts" gives one line of reason per kind. What
//! it holds for someone else (e-wallets, fares payable to operators, amounts
//! payable to hospitals, personal medical accounts and the pooled fund,
//! refunds) is a liability; what platforms and the insurance agency pay in
//! (top-up clearing, insurance funding) is an asset; fees are income;
//! promotions are expenses; the control account is equity. A host's own
//! kinds are assets when debit-normal, liabilities otherwise. The debit
//! account of a transfer gets the positive amount.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use citycard::Accounts;
use citycard_core::{Money, Principal, SystemClock, civil_date};
use citycard_ledger::{Account, AccountId, AccountKind, Ledger, NormalSide, Owner, Transfer};
use clap::{Args, ValueEnum};

use super::{CliError, default_data_dir, open_stores, runtime};

/// Arguments of `citycard ledger export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The accounting format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// The data directory holding `citycard.db`.
    #[arg(long, value_name = "DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// Read the ledger in this PostgreSQL database instead of the
    /// directory's SQLite file (`postgres://user@host:port/db`).
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// A plain-text accounting format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// An hledger (and Ledger) journal.
    Hledger,
    /// A beancount file with `open` directives.
    Beancount,
    /// CSV, one transfer per row, with a header.
    Csv,
}

/// Where an account sits in the chart of accounts, from the issuer's side:
/// its top-level type and the name of its kind.
///
/// The insurance agency's funding account is opened with the promotions kind
/// (`Accounts::insurance_funding`), but it is no promotion: it is recognised by
/// its derived id and exported as what the agency pays in for the personal
/// medical accounts, an asset like top-up clearing.
fn place(a: &Account) -> (&'static str, String) {
    if a.id == Accounts::insurance_funding() {
        return ("assets", "insurance-funding".to_owned());
    }
    let (top, slug) = match a.kind {
        // What platforms and the insurance agency owe the issuer for money paid in.
        AccountKind::TOP_UP_CLEARING => ("assets", None),
        // What the issuer holds for others and must pay out.
        AccountKind::E_WALLET
        | AccountKind::MEDICAL_CURRENT_YEAR
        | AccountKind::MEDICAL_ACCUMULATED
        | AccountKind::POOLED_FUND
        | AccountKind::REFUNDS => ("liabilities", None),
        // Fares collected for transit operators: payable to them, not the issuer's revenue.
        AccountKind::OPERATOR_REVENUE => ("liabilities", Some("operator-fares-payable")),
        // What hospitals are owed for bills settled through the card.
        AccountKind::HOSPITAL_RECEIVABLE => ("liabilities", Some("hospital-payable")),
        // The issuer's own earnings and costs.
        AccountKind::FEES => ("income", None),
        AccountKind::PROMOTIONS => ("expenses", None),
        // The counterpart of closing transfers and adjustments.
        AccountKind::CONTROL => ("equity", None),
        _ => match a.normal_side() {
            NormalSide::Debit => ("assets", None),
            NormalSide::Credit => ("liabilities", None),
        },
    };
    (top, slug.map_or_else(|| kind_slug(a.kind), str::to_owned))
}

fn kind_slug(kind: AccountKind) -> String {
    kind.name()
        .map_or_else(|| format!("kind-{}", kind.0), |n| n.replace('_', "-"))
}

fn owner_slug(owner: &Option<Owner>) -> Option<String> {
    let text = match owner {
        Some(Owner::Person(p)) => format!("person-{p}"),
        Some(Owner::Organisation(o)) => o.clone(),
        None => return None,
    };
    Some(
        text.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect(),
    )
}

/// `liabilities:citycard:e-wallet:person-psn-1:1001`.
fn hledger_name(a: &Account) -> String {
    let (top, kind) = place(a);
    let mut name = format!("{top}:citycard:{kind}");
    if let Some(o) = owner_slug(&a.owner) {
        name.push(':');
        name.push_str(&o);
    }
    name.push(':');
    name.push_str(&a.id.to_string());
    name
}

fn capitalise(component: &str) -> String {
    let mut out = String::with_capacity(component.len() + 1);
    for (i, c) in component.chars().enumerate() {
        if i == 0 {
            if c.is_ascii_alphabetic() {
                out.push(c.to_ascii_uppercase());
            } else {
                out.push('X');
                out.push(c);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `Liabilities:Citycard:EWallet:Person-psn-1:Id1001` (beancount-legal components).
fn beancount_name(a: &Account) -> String {
    let (top, kind) = place(a);
    let kind: String = kind.split('-').map(capitalise).collect();
    let mut name = format!("{}:Citycard:{kind}", capitalise(top));
    if let Some(o) = owner_slug(&a.owner) {
        name.push(':');
        name.push_str(&capitalise(&o));
    }
    name.push_str(&format!(":Id{}", a.id));
    name
}

/// A posted movement: single-phase, post or balancing (holds and voids move nothing posted).
fn is_posted(t: &Transfer) -> bool {
    !t.flags.pending() && !t.flags.void_pending_transfer()
}

fn kind_of(t: &Transfer) -> &'static str {
    if t.flags.post_pending_transfer() {
        "post"
    } else if t.flags.balancing_debit() || t.flags.balancing_credit() {
        "balancing"
    } else {
        "single"
    }
}

struct Export {
    accounts: BTreeMap<AccountId, Account>,
    transfers: Vec<Transfer>,
}

fn load(data_dir: &Path, database: Option<&str>) -> Result<Export, CliError> {
    let rt = runtime()?;
    rt.block_on(async {
        let stores = open_stores(data_dir, database, true, "ledger").await?;
        let ledger = Ledger::open(stores.ledger, Arc::new(SystemClock))
            .await
            .map_err(|e| CliError::Domain(format!("cannot open the ledger: {e}")))?;
        let all = ledger
            .export(&Principal::System)
            .await
            .map_err(|e| CliError::Domain(format!("cannot read the ledger: {e}")))?;
        Ok(Export {
            accounts: all.accounts.into_iter().map(|a| (a.id, a)).collect(),
            transfers: all.transfers.into_iter().filter(is_posted).collect(),
        })
    })
}

fn account(e: &Export, id: AccountId) -> Result<&Account, CliError> {
    e.accounts
        .get(&id)
        .ok_or_else(|| CliError::Domain(format!("transfer names unknown account {id}")))
}

fn description(t: &Transfer) -> String {
    t.reference
        .as_ref()
        .map_or_else(|| format!("transfer {}", t.id), |r| r.to_string())
}

fn write_hledger(e: &Export, out: &mut dyn Write) -> Result<(), CliError> {
    writeln!(
        out,
        "; citycard ledger export: {} posted transfers, amounts in CNY",
        e.transfers.len()
    )?;
    writeln!(
        out,
        "; dates are China civil dates (UTC+8); the debit account gets the positive amount"
    )?;
    writeln!(out)?;
    writeln!(out, "commodity 1000.00 CNY")?;
    for a in e.accounts.values() {
        writeln!(out, "account {}", hledger_name(a))?;
    }
    writeln!(out)?;
    for t in &e.transfers {
        let debit = account(e, t.debit_account_id)?;
        let credit = account(e, t.credit_account_id)?;
        writeln!(
            out,
            "{} * {}  ; transfer:{}, code:{}, kind:{}, at:{}",
            civil_date(t.timestamp),
            description(t),
            t.id,
            t.code,
            kind_of(t),
            t.timestamp.to_rfc3339()
        )?;
        writeln!(
            out,
            "    {}  {} {}",
            hledger_name(debit),
            t.amount,
            t.currency
        )?;
        writeln!(
            out,
            "    {}  {} {}",
            hledger_name(credit),
            neg(t.amount)?,
            t.currency
        )?;
        writeln!(out)?;
    }
    Ok(())
}

fn neg(m: Money) -> Result<Money, CliError> {
    m.checked_neg().map_err(CliError::failed)
}

fn write_beancount(e: &Export, out: &mut dyn Write) -> Result<(), CliError> {
    writeln!(
        out,
        "; citycard ledger export: {} posted transfers",
        e.transfers.len()
    )?;
    writeln!(out, "; dates are China civil dates (UTC+8)")?;
    writeln!(out, "option \"title\" \"citycard ledger\"")?;
    writeln!(out, "option \"operating_currency\" \"CNY\"")?;
    writeln!(out)?;
    // Open each account on its creation date, or earlier if a transfer predates it.
    let mut opened: BTreeMap<AccountId, NaiveDate> = e
        .accounts
        .values()
        .map(|a| (a.id, civil_date(a.created_at)))
        .collect();
    for t in &e.transfers {
        let d = civil_date(t.timestamp);
        for id in [t.debit_account_id, t.credit_account_id] {
            if let Some(o) = opened.get_mut(&id)
                && d < *o
            {
                *o = d;
            }
        }
    }
    for a in e.accounts.values() {
        let date = opened
            .get(&a.id)
            .copied()
            .unwrap_or_else(|| civil_date(a.created_at));
        writeln!(out, "{date} open {} {}", beancount_name(a), a.currency)?;
    }
    writeln!(out)?;
    for t in &e.transfers {
        let debit = account(e, t.debit_account_id)?;
        let credit = account(e, t.credit_account_id)?;
        writeln!(out, "{} * \"{}\"", civil_date(t.timestamp), description(t))?;
        writeln!(out, "  transfer_id: \"{}\"", t.id)?;
        writeln!(out, "  code: \"{}\"", t.code)?;
        writeln!(out, "  kind: \"{}\"", kind_of(t))?;
        writeln!(out, "  at: \"{}\"", t.timestamp.to_rfc3339())?;
        writeln!(
            out,
            "  {}  {} {}",
            beancount_name(debit),
            t.amount,
            t.currency
        )?;
        writeln!(
            out,
            "  {}  {} {}",
            beancount_name(credit),
            neg(t.amount)?,
            t.currency
        )?;
        writeln!(out)?;
    }
    Ok(())
}

fn write_csv(e: &Export, out: &mut dyn Write) -> Result<(), CliError> {
    writeln!(
        out,
        "date,timestamp,transfer_id,kind,reference,code,debit_account,credit_account,amount,currency"
    )?;
    for t in &e.transfers {
        let debit = account(e, t.debit_account_id)?;
        let credit = account(e, t.credit_account_id)?;
        writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{}",
            civil_date(t.timestamp),
            t.timestamp.to_rfc3339(),
            t.id,
            kind_of(t),
            t.reference.as_ref().map(|r| r.as_str()).unwrap_or(""),
            t.code,
            hledger_name(debit),
            hledger_name(credit),
            t.amount,
            t.currency
        )?;
    }
    Ok(())
}

/// Runs `citycard ledger export`.
pub fn export(args: &ExportArgs, stdout: &mut dyn Write) -> Result<(), CliError> {
    let e = load(&args.data_dir, args.database.as_deref())?;
    let mut buf: Vec<u8> = Vec::new();
    match args.format {
        ExportFormat::Hledger => write_hledger(&e, &mut buf)?,
        ExportFormat::Beancount => write_beancount(&e, &mut buf)?,
        ExportFormat::Csv => write_csv(&e, &mut buf)?,
    }
    match &args.out {
        Some(path) => std::fs::write(path, &buf)
            .map_err(|err| CliError::Usage(format!("cannot write {}: {err}", path.display())))?,
        None => stdout.write_all(&buf)?,
    }
    Ok(())
}
