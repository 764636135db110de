//! `citycard demo`: the whole journey on the embedded SQLite store, printed
//! so a person can follow it.
//!
//! [`run`] opens (or creates) a data directory — `./citycard-data` by
//! default — holding `citycard.db` (every store), `keys.json` (the vault
//! keys, see [`crate::keys`]), `demo-state.json` (the run counter) and
//! `fhir/` (the FHIR JSON written by the last run).
//!
//! ## How a re-run continues
//!
//! - Each run is one simulated civil day: the clock is a manual clock at
//!   08:00 on 2026-11-26 plus one day per earlier run, moved forward as the
//!   journey goes on. The run counter is written before the journey starts,
//!   so even a run that failed half-way leaves the next one a fresh day.
//! - One-time setup (enrolment, card issuance, the platform accounts and
//!   their real-name verification, the accumulated medical account's opening
//!   balance, the social insurance history) uses fixed idempotency keys, so
//!   later runs replay it and get the same people, cards and accounts.
//! - Daily actions (binding, top-up, rides, booking, bill, loss and
//!   replacement, unbinding) use per-run keys, so they happen again each run.
//! - The card used is the cardholder's current active card: the replacement
//!   made by the previous run. Each run reports that card lost and replaces
//!   it again, so every run shows the whole journey.
//! - Simulated adapters (the real-name provider, the platform card wallet,
//!   the ride-code issuer's keys) live in memory and start afresh each run;
//!   everything the card system owns is in the database.
//!
//! ## Words
//!
//! The journey is printed for a cardholder's relative, in [`DemoOptions::lang`]:
//! plain sentences, refusals as the binding crate words them for cardholders
//! (`BindingError::user_message`), and internal ids or enum names only with
//! [`DemoOptions::verbose`]. Refusals of other crates that the demo meets
//! (the wallet cap, the booking quota) are worded by the facade
//! (`CityCardError::user_message`, `src/words.rs`).
//!
//! ## Layout
//!
//! This module is the driver: the options, the run loop ([`run`]), the
//! printing helpers and the order of the steps. Each step of the journey is
//! a module with one function taking the demo context (the card system, the
//! clock, the run and its day) and the printer, returning what later steps
//! need: `people` (1, with the one-time setup), `account` (2), `binding` (3),
//! `services` (4), `top_up` (5), `ride_code` (6), `rides` (7, settlement),
//! `booking` (8), `bill` (9), `social` (10), `statement` (11), `replacement`
//! (12), `unbinding` (13) and `fhir_export` (14).

mod account;
mod bill;
mod binding;
mod booking;
mod fhir_export;
mod people;
mod replacement;
mod ride_code;
mod rides;
mod services;
mod social;
mod statement;
mod top_up;
mod unbinding;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use citycard_binding::words::service_name;
use citycard_binding::{BindingId, BindingState, CardId, Lang, ServiceSet, UserMessage};
use citycard_core::{
    ClassifiedError, ErrorClass, IdempotencyKey, ManualClock, Money, OperatorId, OperatorRole,
    PersonId, Principal, start_of_civil_day,
};
use serde::{Deserialize, Serialize};

pub use binding::mistyped;
pub use people::{card_number, cardholder_id_number, mother_id_number, replacement_number};

use crate::error::CityCardError;
use crate::keys::FileKeyProvider;
use crate::system::CityCard;

/// The first simulated day (run 1); run `n` is `n - 1` days later.
pub const FIRST_DAY: (i32, u32, u32) = (2026, 11, 26);
/// The data directory used when none is given.
pub const DEFAULT_DATA_DIR: &str = "citycard-data";
/// What each run tops up via Alipay.
pub const TOP_UP_YUAN: &str = "400.00";

const HOSPITAL: &str = "hsp-hz-first";
const HOSPITAL_NAME: &str = "Hangzhou First People's Hospital";
const HOSPITAL_NAME_ZH: &str = "杭州市第一人民医院";

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOptions {
    /// The data directory (created if missing).
    pub data_dir: PathBuf,
    /// The language of the printed journey (English by default; the command
    /// picks Chinese in a Chinese locale).
    pub lang: Lang,
    /// Also print the internal ids (persons, bindings, passes, readers).
    pub verbose: bool,
    /// A PostgreSQL URL to keep the stores in, instead of the directory's
    /// SQLite file (the vault keys and FHIR files stay in the directory).
    pub database: Option<String>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self::new(DEFAULT_DATA_DIR)
    }
}

impl DemoOptions {
    /// Run in `data_dir`, in English, without ids.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            lang: Lang::En,
            verbose: false,
            database: None,
        }
    }

    /// Print in `lang`.
    #[must_use]
    pub fn with_lang(mut self, lang: Lang) -> Self {
        self.lang = lang;
        self
    }

    /// Keep the stores in the PostgreSQL database at `url`.
    #[must_use]
    pub fn with_database(mut self, url: impl Into<String>) -> Self {
        self.database = Some(url.into());
        self
    }

    /// Print the internal ids too.
    #[must_use]
    pub fn with_verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }
}

/// What one run did, for tests and hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemoSummary {
    /// The run number (1 for a new directory).
    pub run: u32,
    /// The simulated civil day.
    pub day: NaiveDate,
    /// The cardholder.
    pub cardholder: PersonId,
    /// The card used during the run (reported lost at its end).
    pub card_used: CardId,
    /// The cardholder's current card after the run (the replacement).
    pub card: CardId,
    /// The Alipay binding (on the replacement card, unbound at the end).
    pub binding: BindingId,
    /// Its state at the end of the run.
    pub binding_state: BindingState,
    /// Topped up this run.
    pub topped_up: Money,
    /// Fares charged to the cardholder's wallet this run.
    pub fares_charged: Money,
    /// The cash part of the bill, paid from the wallet.
    pub medical_cash: Money,
    /// The wallet balance when the run started.
    pub opening_balance: Money,
    /// The balance carried to the replacement card.
    pub carried: Money,
    /// The replacement card's wallet balance at the end.
    pub wallet_balance: Money,
    /// The queue number of the booking, when booked.
    pub queue_number: Option<u32>,
    /// The FHIR files written.
    pub fhir_files: Vec<PathBuf>,
    /// The database.
    pub database: PathBuf,
}

/// A demo failure: the card system's error, or the data directory's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// The card system refused or failed.
    #[error(transparent)]
    CityCard(#[from] CityCardError),
    /// The data directory or the output could not be written.
    #[error("the demo could not write {what}: {source}; check the directory and its permissions")]
    Io {
        /// What.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// The demo's state file is damaged.
    #[error("the demo state {path} is damaged ({reason}): delete it to start the day count again")]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The data directory holds personal data but not the vault keys it was sealed with.
    #[error(
        "the data directory {dir} holds personal data but its vault keys ({keys}) are missing: the stored ID numbers and names cannot be read without them; restore keys.json from a backup, or start over with an empty data directory"
    )]
    VaultKeysMissing {
        /// The data directory.
        dir: PathBuf,
        /// Where the keys should be.
        keys: PathBuf,
    },
    /// A step did not have the outcome the journey needs.
    #[error("demo step failed: {0}")]
    Step(String),
}

impl ClassifiedError for DemoError {
    fn class(&self) -> ErrorClass {
        match self {
            DemoError::CityCard(e) => e.class(),
            DemoError::VaultKeysMissing { .. } => ErrorClass::InvalidInput,
            DemoError::Io { .. } | DemoError::State { .. } | DemoError::Step(_) => {
                ErrorClass::Internal
            }
        }
    }
}

macro_rules! via_citycard {
    ($($t:ty),*) => {$(
        impl From<$t> for DemoError {
            fn from(e: $t) -> Self {
                DemoError::CityCard(CityCardError::from(e))
            }
        }
    )*};
}
via_citycard!(
    citycard_identity::IdentityError,
    citycard_binding::BindingError,
    citycard_ledger::LedgerError,
    citycard_transit::TransitError,
    citycard_healthcare::HealthcareError,
    citycard_core::StoreError
);

fn io(what: &str) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        what: what.to_owned(),
        source,
    }
}

fn key(text: &str) -> Result<IdempotencyKey, DemoError> {
    text.parse()
        .map_err(|e| DemoError::Step(format!("idempotency key {text}: {e}")))
}

fn parse<T: std::str::FromStr>(text: &str) -> Result<T, DemoError>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| DemoError::Step(format!("{text}: {e}")))
}

fn yuan(text: &str) -> Result<Money, DemoError> {
    Money::parse(text).map_err(|e| DemoError::Step(format!("amount {text}: {e}")))
}

/// The printed form of money: `¥12.30`.
fn y(m: Money) -> String {
    format!("{m:#}")
}

/// A ledger total in fen as money (saturating; totals of a demo are small).
fn fen_total(fen: i128) -> Money {
    Money::from_fen(i64::try_from(fen).unwrap_or(i64::MAX))
}

/// A name with all but its first character masked: 张伟 → 张*.
pub fn mask_name(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => std::iter::once(first).chain(chars.map(|_| '*')).collect(),
        None => String::new(),
    }
}

/// A card or account number masked by the one rule for card numbers
/// ([`citycard_core::mask_card_number`]: first 3 and last 4 shown).
pub fn mask_number(number: &str) -> String {
    citycard_core::mask_card_number(number)
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct DemoState {
    runs: u32,
}

fn next_run(dir: &Path) -> Result<u32, DemoError> {
    let path = dir.join("demo-state.json");
    let state = if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(io("demo-state.json"))?;
        serde_json::from_str::<DemoState>(&text).map_err(|e| DemoError::State {
            path: path.clone(),
            reason: e.to_string(),
        })?
    } else {
        DemoState::default()
    };
    let run = state.runs.saturating_add(1);
    let text =
        serde_json::to_string_pretty(&DemoState { runs: run }).map_err(|e| DemoError::State {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    std::fs::write(&path, text).map_err(io("demo-state.json"))?;
    Ok(run)
}

/// Civil time `h:m` on `day`, as an instant.
fn civil(day: NaiveDate, h: u32, m: u32) -> DateTime<Utc> {
    start_of_civil_day(day) + Duration::hours(i64::from(h)) + Duration::minutes(i64::from(m))
}

fn hm(at: DateTime<Utc>) -> String {
    (at + Duration::hours(8)).format("%H:%M").to_string()
}

struct Printer<'a> {
    out: &'a mut dyn Write,
    step: u32,
    lang: Lang,
    verbose: bool,
}

impl Printer<'_> {
    fn heading(&mut self, zh: &str, en: &str) -> Result<(), DemoError> {
        self.step += 1;
        let title = self.lang.pick(zh, en);
        writeln!(self.out, "\n{}. {title}", self.step).map_err(io("the output"))
    }

    /// One line in the reader's language.
    fn say(
        &mut self,
        zh: impl std::fmt::Display,
        en: impl std::fmt::Display,
    ) -> Result<(), DemoError> {
        match self.lang {
            Lang::Zh => self.line(zh),
            Lang::En => self.line(en),
        }
    }

    /// Internal ids, printed only with `--verbose`.
    fn ids(&mut self, text: impl std::fmt::Display) -> Result<(), DemoError> {
        if self.verbose {
            writeln!(self.out, "     [{text}]").map_err(io("the output"))?;
        }
        Ok(())
    }

    /// A refusal as the cardholder sees it: the problem and what to do next.
    fn refusal(&mut self, m: &UserMessage) -> Result<(), DemoError> {
        self.say(
            format!("被拒绝：{}", m.problem),
            format!("refused: {}", m.problem),
        )?;
        self.say(
            format!("下一步：{}", m.next_step),
            format!("what to do next: {}", m.next_step),
        )
    }

    fn line(&mut self, text: impl std::fmt::Display) -> Result<(), DemoError> {
        writeln!(self.out, "   {text}").map_err(io("the output"))
    }

    fn raw(&mut self, text: impl std::fmt::Display) -> Result<(), DemoError> {
        writeln!(self.out, "{text}").map_err(io("the output"))
    }
}

/// Runs the demo journey in `options.data_dir`, printing to `out`.
///
/// A new directory starts at run 1; running again on the same directory
/// continues with the next day (see the module docs).
pub async fn run(options: &DemoOptions, out: &mut dyn Write) -> Result<DemoSummary, DemoError> {
    let dir = &options.data_dir;
    std::fs::create_dir_all(dir.join("fhir")).map_err(io("the data directory"))?;
    let keys_path = dir.join("keys.json");
    // (On PostgreSQL the check is the server's to make: a database sealed
    // with lost keys shows unreadable names in the journey, it is not refused.)
    if !keys_path.exists()
        && options.database.is_none()
        && holds_personal_data(&dir.join("citycard.db"))
    {
        // New keys would seal new records and leave the old ones unreadable.
        return Err(DemoError::VaultKeysMissing {
            dir: dir.clone(),
            keys: keys_path,
        });
    }
    let run = next_run(dir)?;
    let first = NaiveDate::from_ymd_opt(FIRST_DAY.0, FIRST_DAY.1, FIRST_DAY.2)
        .ok_or_else(|| DemoError::Step("first day".into()))?;
    let day = first + Duration::days(i64::from(run) - 1);
    let clock = Arc::new(ManualClock::new(civil(day, 8, 0)));
    let keys = Arc::new(FileKeyProvider::open_or_create(&keys_path)?);
    let database = dir.join("citycard.db");
    let storage = match &options.database {
        Some(url) => crate::Storage::Postgres(url.clone()),
        None => crate::Storage::Sqlite(database.clone()),
    };
    let city = CityCard::builder()
        .storage(storage)
        .clock(clock.clone())
        .key_provider(keys)
        .build()
        .await?;
    let mut p = Printer {
        out,
        step: 0,
        lang: options.lang,
        verbose: options.verbose,
    };
    p.raw(options.lang.pick(
        format!(
            "citycard 演示 — 第 {run} 次运行，{day}（杭州时间），数据在 {}",
            dir.display()
        ),
        format!(
            "citycard demo — run {run}, {day} (Hangzhou time), data in {}",
            dir.display()
        ),
    ))?;
    if run > 1 {
        p.raw(options.lang.pick(
            "继续：沿用之前运行登记的人和发的卡；今天的操作是新的。",
            "Continuing: the people and cards from earlier runs are reused; today's actions are new.",
        ))?;
    }
    let summary = Journey {
        city: &city,
        clock: &clock,
        run,
        day,
        dir,
    }
    .go(&mut p)
    .await?;
    let (transfers, [_, debits, _, credits]) = city
        .ledger()
        .inspect(|e| (e.transfer_count(), e.totals()))
        .await
        .map_err(CityCardError::from)?;
    let sign = if debits == credits { "=" } else { "≠" };
    p.raw(options.lang.pick(
        format!(
            "\n账本：{transfers} 笔转账；借方合计 {} {sign} 贷方合计 {}。",
            y(fen_total(debits)),
            y(fen_total(credits))
        ),
        format!(
            "\nLedger: {transfers} transfers; posted debits {} {sign} posted credits {}.",
            y(fen_total(debits)),
            y(fen_total(credits))
        ),
    ))?;
    // A URL may hold a password: name the server's database only as PostgreSQL.
    let data = match &options.database {
        Some(_) => "PostgreSQL (--database)".to_owned(),
        None => database.display().to_string(),
    };
    p.raw(options.lang.pick(
        format!(
            "完成。数据：{}（个人信息加密密钥在 {}，仅供演示）。FHIR：{}。再次运行将继续第 {} 天。",
            data,
            dir.join("keys.json").display(),
            dir.join("fhir").display(),
            run + 1
        ),
        format!(
            "Done. Data: {} (vault keys in {}, demos only). FHIR: {}. Run again to continue with day {}.",
            data,
            dir.join("keys.json").display(),
            dir.join("fhir").display(),
            run + 1
        ),
    ))?;
    Ok(summary)
}

/// Whether a store holds persons sealed by the vault (read-only; a missing,
/// empty or unreadable file holds none).
fn holds_personal_data(database: &Path) -> bool {
    let Ok(db) = citycard_sqlite::Database::open_read_only(database) else {
        return false;
    };
    db.with(|c| {
        c.query_row("SELECT count(*) > 0 FROM identity_persons", [], |r| {
            r.get(0)
        })
    })
    .unwrap_or(false)
}

/// The demo context every step takes: the card system, its clock, the run and its day.
struct Journey<'a> {
    city: &'a CityCard,
    clock: &'a ManualClock,
    run: u32,
    day: NaiveDate,
    dir: &'a Path,
}

impl Journey<'_> {
    fn run_key(&self, what: &str) -> Result<IdempotencyKey, DemoError> {
        key(&format!("demo-r{}-{what}", self.run))
    }

    /// "issued" for what happened today, "already issued in an earlier run" for a replayed setup.
    fn setup_verb(&self, lang: Lang, at: DateTime<Utc>, zh: &str, en: &str) -> String {
        let earlier = at < start_of_civil_day(self.day);
        match (lang, earlier) {
            (Lang::Zh, true) => format!("之前已{zh}："),
            (Lang::Zh, false) => format!("{zh}："),
            (Lang::En, true) => format!("already {en} in an earlier run:"),
            (Lang::En, false) => en.to_owned(),
        }
    }

    fn at(&self, h: u32, m: u32) {
        self.clock.set(civil(self.day, h, m));
    }

    /// The journey, step by step: each step prints its heading and its lines
    /// and hands the next steps what they need.
    async fn go(&self, p: &mut Printer<'_>) -> Result<DemoSummary, DemoError> {
        let counter = parse::<OperatorId>("opr-counter-1")?;
        self.city
            .operator_roles()
            .grant(counter.clone(), OperatorRole::CardDesk);
        let operator = Principal::Operator { operator: counter };

        let cast = people::enrol_and_issue(self, p, &operator).await?;
        let accounts = account::register_verified(self, p, &cast).await?;
        let binding = binding::bind(self, p, &cast, &accounts.zhang).await?;
        services::not_enabled(self, p, &cast, &accounts.mother, &binding).await?;
        let top_up = top_up::top_up(self, p, &cast, &binding).await?;
        let gates = ride_code::through_the_gates(self, p, &cast).await?;
        let rides = rides::settle_the_day(self, p, &cast, gates).await?;
        let booking = booking::book(self, p, &operator, &cast.zhang).await?;
        let record = bill::pay(self, p, &cast.zhang).await?;
        social::summary(self, p, &cast.zhang).await?;
        statement::print(self, p, &cast, &rides).await?;
        let replaced = replacement::replace(self, p, &operator, &cast, &binding).await?;
        let removed = unbinding::unbind(self, p, &cast, &binding).await?;
        let fhir_files = fhir_export::write(self, p, booking.appointment.as_ref(), &record).await?;

        Ok(DemoSummary {
            run: self.run,
            day: self.day,
            cardholder: cast.zhang.id.clone(),
            card_used: cast.card.id.clone(),
            card: replaced.new_card.id.clone(),
            binding: binding.clone(),
            binding_state: removed.state,
            topped_up: top_up.topped_up,
            fares_charged: rides.fares_charged,
            medical_cash: record.breakdown.cash_paid,
            opening_balance: top_up.opening_balance,
            carried: replaced.carried,
            wallet_balance: replaced.wallet_balance,
            queue_number: booking.queue_number,
            fhir_files,
            database: self.dir.join("citycard.db"),
        })
    }
}

/// A card's services in words, as a list.
fn services_text(services: &ServiceSet, lang: Lang) -> String {
    services
        .iter()
        .map(|s| service_name(s, lang))
        .collect::<Vec<_>>()
        .join(lang.pick("、", ", "))
}

/// A transit operator's name for people.
fn operator_name(code: &str, lang: Lang) -> String {
    match code {
        "hz_bus" => lang.pick("杭州公交", "Hangzhou Bus"),
        "hz_metro" => lang.pick("杭州地铁", "Hangzhou Metro"),
        "hz_water_bus" => lang.pick("杭州水上巴士", "Hangzhou Water Bus"),
        other => other,
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::binding::spaced;
    use super::*;
    use citycard_identity::IdNumber;

    #[test]
    fn masks_hide_names_and_numbers() {
        assert_eq!(mask_name("张伟"), "张*");
        assert_eq!(mask_name("李秀英"), "李**");
        assert_eq!(mask_number("3301000000001001"), "330*********1001");
        assert_eq!(mask_number("12"), "**");
        assert_eq!(spaced("3301000000001001"), "3301 0000 0000 1001");
    }

    #[test]
    fn the_mistyped_number_differs_and_generated_ones_are_valid() {
        let id = cardholder_id_number().unwrap();
        assert_eq!(IdNumber::parse(id.reveal()).unwrap(), id);
        let typo = mistyped(&id);
        assert_ne!(typo, id.reveal());
        assert_eq!(typo.len(), 18);
        assert!(
            mother_id_number()
                .unwrap()
                .age_on(NaiveDate::from_ymd_opt(2026, 11, 26).unwrap())
                >= Some(70)
        );
    }
}
