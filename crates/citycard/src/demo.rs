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

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use citycard_binding::{
    BindRequest, BindingError, BindingId, BindingState, Card, CardId, CardStatus, ConsentInput,
    DataCategory, RemovalReason, Service, ServiceSet,
};
use citycard_core::{
    CivilMonth, ClassifiedError, Clock, ErrorClass, IdempotencyKey, ManualClock, Money, OperatorId,
    OperatorRole, PersonId, Platform, PlatformAccountId, Principal, Sensitive, start_of_civil_day,
};
use citycard_healthcare::{
    AppointmentStatus, BillRequest, CashSource, CatalogueClass, ChargeItem, ContributionRates,
    Employer, EmploymentSpell, HospitalLevel, PersonCategory, Session, SettlementRecord, Slot,
    SlotStatus, VisitType, fhir,
};
use citycard_identity::{IdNumber, KnownPerson, RealNameRequest, RegionCode, Sex};
use citycard_ledger::{AccountId, CreateTransferResult, NewTransfer, TransferId};
use citycard_transit::codes::{Algorithm, RideCodeWallet, SigningKey};
use citycard_transit::{
    Decision, Reader, ReaderConfig, Tap, TapDirection, TapPlace, TripPayment, qr,
};
use serde::{Deserialize, Serialize};

use crate::accounts::Accounts;
use crate::error::CityCardError;
use crate::glue::money::codes;
use crate::keys::FileKeyProvider;
use crate::system::{CityCard, NewCitizenCard};

/// The first simulated day (run 1); run `n` is `n - 1` days later.
pub const FIRST_DAY: (i32, u32, u32) = (2026, 11, 26);
/// The data directory used when none is given.
pub const DEFAULT_DATA_DIR: &str = "citycard-data";
/// What each run tops up via Alipay.
pub const TOP_UP_YUAN: &str = "300.00";

const CARDHOLDER_NAME: &str = "张伟";
const MOTHER_NAME: &str = "李秀英";
const HOSPITAL: &str = "hsp-hz-first";
const HOSPITAL_NAME: &str = "Hangzhou First People's Hospital";
const DEPARTMENT: &str = "dep-general-medicine";

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOptions {
    /// The data directory (created if missing).
    pub data_dir: PathBuf,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
        }
    }
}

impl DemoOptions {
    /// Run in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
        }
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
    /// A step did not have the outcome the journey needs.
    #[error("demo step failed: {0}")]
    Step(String),
}

impl ClassifiedError for DemoError {
    fn class(&self) -> ErrorClass {
        match self {
            DemoError::CityCard(e) => e.class(),
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

/// A card or account number with only its last four characters shown.
pub fn mask_number(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    let keep = chars.len().min(4);
    let mut out = "*".repeat(chars.len() - keep);
    out.extend(&chars[chars.len() - keep..]);
    out
}

/// The cardholder's ID number (generated, valid, Hangzhou 西湖区 330106).
pub fn cardholder_id_number() -> Result<IdNumber, CityCardError> {
    generate_id(NaiveDate::from_ymd_opt(1986, 4, 17), Sex::Male, 37)
}

/// The cardholder's mother's ID number (born 1952: an elderly card, 70+).
pub fn mother_id_number() -> Result<IdNumber, CityCardError> {
    generate_id(NaiveDate::from_ymd_opt(1952, 6, 18), Sex::Female, 52)
}

fn generate_id(birth: Option<NaiveDate>, sex: Sex, seq: u16) -> Result<IdNumber, CityCardError> {
    let region = RegionCode::new(330_106)
        .ok_or_else(|| CityCardError::Invalid("region code 330106".into()))?;
    let birth = birth.ok_or_else(|| CityCardError::Invalid("birth date".into()))?;
    IdNumber::generate(region, birth, sex, seq)
        .map_err(|e| CityCardError::Invalid(format!("generated ID number: {e}")))
}

/// The ID number as the user mistypes it: two digits of the sequence swapped,
/// or one changed when they are equal.
pub fn mistyped(id: &IdNumber) -> String {
    let mut digits: Vec<char> = id.reveal().chars().collect();
    if let (Some(&a), Some(&b)) = (digits.get(14), digits.get(15)) {
        if a == b {
            let changed = a
                .to_digit(10)
                .map_or('0', |d| char::from_digit((d + 1) % 10, 10).unwrap_or('0'));
            digits[14] = changed;
        } else {
            digits.swap(14, 15);
        }
    }
    digits.into_iter().collect()
}

/// The printed card number of a sequence (16 digits, Hangzhou prefix).
pub fn card_number(seq: u32) -> String {
    format!("330100{seq:010}")
}

const ZHANG_FIRST_CARD: u32 = 1001;
const MOTHER_CARD: u32 = 5001;

/// The replacement card number made by run `run`.
pub fn replacement_number(run: u32) -> String {
    card_number(ZHANG_FIRST_CARD + run)
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
}

impl Printer<'_> {
    fn heading(&mut self, title: &str) -> Result<(), DemoError> {
        self.step += 1;
        writeln!(self.out, "\n{}. {title}", self.step).map_err(io("the output"))
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
    let run = next_run(dir)?;
    let first = NaiveDate::from_ymd_opt(FIRST_DAY.0, FIRST_DAY.1, FIRST_DAY.2)
        .ok_or_else(|| DemoError::Step("first day".into()))?;
    let day = first + Duration::days(i64::from(run) - 1);
    let clock = Arc::new(ManualClock::new(civil(day, 8, 0)));
    let keys = Arc::new(FileKeyProvider::open_or_create(dir.join("keys.json"))?);
    let database = dir.join("citycard.db");
    let city = CityCard::builder()
        .sqlite(&database)
        .clock(clock.clone())
        .key_provider(keys)
        .build()
        .await?;
    let mut p = Printer { out, step: 0 };
    p.raw(format!(
        "citycard demo — run {run}, {day} (Hangzhou time), data in {}",
        dir.display()
    ))?;
    if run > 1 {
        p.raw("Continuing: setup replays under its fixed keys; today's actions are new.")?;
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
    p.raw(format!(
        "\nLedger: {transfers} transfers; posted debits {} {} posted credits {}.",
        y(fen_total(debits)),
        if debits == credits { "=" } else { "≠" },
        y(fen_total(credits))
    ))?;
    p.raw(format!(
        "Done. Data: {} (vault keys in {}, demos only). FHIR: {}. Run again to continue with day {}.",
        database.display(),
        dir.join("keys.json").display(),
        dir.join("fhir").display(),
        run + 1
    ))?;
    Ok(summary)
}

struct Journey<'a> {
    city: &'a CityCard,
    clock: &'a ManualClock,
    run: u32,
    day: NaiveDate,
    dir: &'a Path,
}

struct Person {
    id: PersonId,
    created_at: DateTime<Utc>,
    id_number: IdNumber,
    name: &'static str,
}

impl Journey<'_> {
    fn run_key(&self, what: &str) -> Result<IdempotencyKey, DemoError> {
        key(&format!("demo-r{}-{what}", self.run))
    }

    /// "issued" for what happened today, "already issued" for a replayed setup.
    fn setup_verb(&self, at: DateTime<Utc>, verb: &str) -> String {
        if at < start_of_civil_day(self.day) {
            format!("already {verb} (replayed):")
        } else {
            verb.to_owned()
        }
    }

    fn at(&self, h: u32, m: u32) {
        self.clock.set(civil(self.day, h, m));
    }

    async fn go(&self, p: &mut Printer<'_>) -> Result<DemoSummary, DemoError> {
        let city = self.city;
        let counter = parse::<OperatorId>("opr-counter-1")?;
        city.operator_roles()
            .grant(counter.clone(), OperatorRole::CardDesk);
        let operator = Principal::Operator { operator: counter };
        let system = Principal::System;

        // 1. People and cards.
        p.heading("People enrolled and cards issued (at the issuer's counter)")?;
        let zhang = self
            .enroll(&operator, CARDHOLDER_NAME, cardholder_id_number()?, "zhang")
            .await?;
        let mother = self
            .enroll(&operator, MOTHER_NAME, mother_id_number()?, "mother")
            .await?;
        for person in [&zhang, &mother] {
            p.line(format!(
                "{} {} (ID {}, person {})",
                self.setup_verb(person.created_at, "enrolled"),
                mask_name(person.name),
                person.id_number.masked(),
                person.id
            ))?;
        }
        let all_services: ServiceSet = [
            Service::Transit,
            Service::Healthcare,
            Service::SocialInsurance,
            Service::Wallet,
        ]
        .into();
        let first_card = city
            .issue_card(
                &operator,
                &key("demo-setup-issue-zhang")?,
                &NewCitizenCard {
                    number: card_number(ZHANG_FIRST_CARD),
                    kind: "standard".into(),
                    holder: zhang.id.clone(),
                    id_number: zhang.id_number.to_sensitive(),
                    services: Some(all_services),
                },
            )
            .await?;
        let mother_services: ServiceSet =
            [Service::Transit, Service::Healthcare, Service::Wallet].into();
        let mother_card = city
            .issue_card(
                &operator,
                &key("demo-setup-issue-mother")?,
                &NewCitizenCard {
                    number: card_number(MOTHER_CARD),
                    kind: "elderly".into(),
                    holder: mother.id.clone(),
                    id_number: mother.id_number.to_sensitive(),
                    services: Some(mother_services),
                },
            )
            .await?;
        p.line(format!(
            "{} {}'s standard card {} with an e-wallet (capped at {})",
            self.setup_verb(first_card.issued_at, "issued"),
            mask_name(zhang.name),
            mask_number(first_card.number.as_str()),
            y(city
                .accounts()
                .limits()
                .cap(citycard_ledger::WalletHolder::Registered))
        ))?;
        p.line(format!(
            "{} {}'s elderly card {} (services: {})",
            self.setup_verb(mother_card.issued_at, "issued"),
            mask_name(mother.name),
            mask_number(mother_card.number.as_str()),
            services_text(&mother_card.services)
        ))?;
        let card = self.current_card(&zhang.id).await?;
        if card.id != first_card.id {
            p.line(format!(
                "{}'s current card is the replacement {} (the first card was replaced in an earlier run)",
                mask_name(zhang.name),
                mask_number(card.number.as_str())
            ))?;
        }
        p.line("ledger system accounts open: Alipay/WeChat Pay/UnionPay clearing, refunds, pooled fund, insurance funding, control")?;
        self.fund_medical(p, &zhang.id).await?;
        self.social_history(p, &zhang.id).await?;

        // 2. Alipay accounts, real-name verified.
        self.at(8, 10);
        p.heading("An Alipay account registered and real-name verified")?;
        let zhang_account = self
            .verified_account(p, &zhang, "2088102146225135", "zhang")
            .await?;
        let mother_account = self
            .verified_account(p, &mother, "2088102146227781", "mother")
            .await?;

        // 3. Binding: a mistyped ID number, then the right one.
        self.at(8, 15);
        p.heading("Binding the card in Alipay")?;
        let me = Principal::cardholder(zhang.id.clone());
        let mistake = BindRequest {
            platform: Platform::Alipay,
            account: zhang_account.clone(),
            card_number: spaced(card.number.as_str()),
            id_number: Sensitive::new(mistyped(&zhang.id_number)),
            consent: consent(),
        };
        p.line(format!(
            "{} types the card number and an ID number with two digits swapped…",
            mask_name(zhang.name)
        ))?;
        match city
            .bindings()
            .bind(&me, &self.run_key("bind-mistyped")?, &mistake)
            .await
        {
            Err(e @ BindingError::DetailsDoNotMatch) => {
                p.line(format!("refused: {e}"))?;
                p.line("what to do next: compare the ID number with the card holder's ID card, digit by digit, and try again (failed attempts are counted)")?;
            }
            Err(e) => p.line(format!("refused: {e}"))?,
            Ok(_) => {
                return Err(DemoError::Step("a mistyped ID number was accepted".into()));
            }
        }
        let binding = match self.live_binding(&Platform::Alipay, &zhang_account).await? {
            Some(existing) => {
                p.line(format!(
                    "already bound from an earlier run as {existing}; using it"
                ))?;
                existing
            }
            None => {
                let receipt = city
                    .bindings()
                    .bind(
                        &me,
                        &self.run_key("bind")?,
                        &BindRequest {
                            id_number: zhang.id_number.to_sensitive(),
                            ..mistake.clone()
                        },
                    )
                    .await?;
                p.line(format!(
                    "with the right ID number: bound as {} ({:?}); pass {} added to the Alipay card wallet",
                    receipt.binding, receipt.state, receipt.pass_serial
                ))?;
                p.line(format!(
                    "services enabled: {}",
                    services_text(&receipt.services)
                ))?;
                receipt.binding
            }
        };

        // 4. A service not enabled.
        p.heading("A service that is not enabled")?;
        let mum = Principal::cardholder(mother.id.clone());
        let mother_binding = match self
            .live_binding(&Platform::Alipay, &mother_account)
            .await?
        {
            Some(b) => b,
            None => {
                city.bindings()
                    .bind(
                        &mum,
                        &self.run_key("bind-mother")?,
                        &BindRequest {
                            platform: Platform::Alipay,
                            account: mother_account.clone(),
                            card_number: mother_card.number.as_str().to_owned(),
                            id_number: mother.id_number.to_sensitive(),
                            consent: consent(),
                        },
                    )
                    .await?
                    .binding
            }
        };
        p.line(format!(
            "{}'s elderly card is bound in her Alipay ({}); she opens social insurance…",
            mask_name(mother.name),
            mother_binding
        ))?;
        match city
            .bindings()
            .ensure_service(&mum, &mother_binding, &Service::SocialInsurance)
            .await
        {
            Err(e @ BindingError::ServiceNotEnabled { .. }) => {
                p.line(format!("refused: {e}"))?;
            }
            Err(e) => return Err(e.into()),
            Ok(()) => {
                return Err(DemoError::Step(
                    "social insurance worked on a card without it".into(),
                ));
            }
        }
        city.bindings()
            .ensure_service(&me, &binding, &Service::SocialInsurance)
            .await?;
        p.line(format!(
            "{}'s card has it: social insurance works through his binding",
            mask_name(zhang.name)
        ))?;

        // 5. Top-up.
        self.at(8, 20);
        p.heading("Top-up via Alipay")?;
        let opening_balance = city.wallet().balance(&me, &card.id).await?;
        let amount = yuan(TOP_UP_YUAN)?;
        let topped_up = match city
            .wallet()
            .top_up(
                &me,
                &card.id,
                amount,
                &Platform::Alipay,
                &self.run_key("top-up")?,
            )
            .await
        {
            Ok(receipt) => {
                p.line(format!(
                    "topped up {} from Alipay: wallet {} → {}",
                    y(amount),
                    y(opening_balance),
                    receipt.balance.map_or_else(|| "(not shown)".to_owned(), y)
                ))?;
                amount
            }
            // After many runs the wallet reaches its cap: show the refusal and go on.
            Err(e @ CityCardError::OverCap { .. }) => {
                p.line(format!("top-up of {} refused: {e}", y(amount)))?;
                Money::ZERO
            }
            Err(e) => return Err(e.into()),
        };
        let view = city.bindings().wallet_view(&me, &binding).await?;
        match view.balance {
            Some(b) => p.line(format!(
                "the pass in the Alipay card wallet shows {} (as of {})",
                y(b.balance),
                hm(b.as_of)
            ))?,
            None => p.line("the pass shows no balance yet (it refreshes on the next sync)")?,
        }

        // 6. Ride code.
        self.at(8, 50);
        p.heading("The ride code (乘车码), verified offline at the metro gate")?;
        let card_ref = CityCard::card_ref(&card)?;
        let now = self.clock.now();
        let phone_key = SigningKey::generate(Algorithm::Sm2)?;
        let (credential, issuer_keys) = {
            let issuer = city.transit().issuer();
            (
                issuer.certify(
                    &phone_key.public_key(),
                    card_ref,
                    now - Duration::hours(1),
                    now + Duration::days(7),
                )?,
                issuer.public_keys(),
            )
        };
        let mut ride_wallet = RideCodeWallet::new(phone_key, credential)?;
        let code = ride_wallet.generate(now)?;
        p.line(
            "the phone signs a fresh code each minute; the issuer certified its key for this card:",
        )?;
        p.raw(qr::to_terminal(&code)?)?;
        let engine = city.transit().fares();
        let network = engine.network();
        let metro = network
            .network("metro")
            .ok_or_else(|| DemoError::Step("no metro network in the fare data".into()))?;
        let stop = |id: &str| {
            network
                .stop(id)
                .ok_or_else(|| DemoError::Step(format!("no stop {id} in the fare data")))
        };
        let mut gate_in = Reader::new(
            ReaderConfig {
                reader: 101,
                place: TapPlace::Station {
                    network: metro,
                    stop: stop("m_wulin")?,
                },
                direction: TapDirection::In,
                max_code_age_seconds: 60,
                clock_skew_seconds: 30,
                repeat_window_seconds: 0,
            },
            &issuer_keys,
        );
        let tap_in = match gate_in.decide(code.as_bytes(), now) {
            Decision::Accept(tap) => {
                p.line(format!(
                    "gate 101 at Wulin Square (metro) checked the signatures offline: accepted at {}",
                    hm(now)
                ))?;
                tap
            }
            Decision::Reject(why) => {
                return Err(DemoError::Step(format!(
                    "the gate refused the code: {why:?}"
                )));
            }
        };
        if let Decision::Reject(why) = gate_in.decide(code.as_bytes(), now) {
            p.line(format!(
                "the same code shown again is refused ({why:?}): a screenshot cannot ride twice"
            ))?;
        }
        self.at(9, 20);
        let out_at = self.clock.now();
        let exit_code = ride_wallet.generate(out_at)?;
        let mut gate_out = Reader::new(
            ReaderConfig {
                reader: 202,
                place: TapPlace::Station {
                    network: metro,
                    stop: stop("m_xianghu")?,
                },
                direction: TapDirection::Out,
                max_code_age_seconds: 60,
                clock_skew_seconds: 30,
                repeat_window_seconds: 0,
            },
            &issuer_keys,
        );
        let tap_out = match gate_out.decide(exit_code.as_bytes(), out_at) {
            Decision::Accept(tap) => tap,
            Decision::Reject(why) => {
                return Err(DemoError::Step(format!("the exit gate refused: {why:?}")));
            }
        };
        p.line(format!(
            "exit gate 202 at Xianghu accepted a new code at {}",
            hm(out_at)
        ))?;

        // 7. Rides and the day's settlement.
        p.heading("A bus ride, a metro ride, and the day's settlement")?;
        let b7 = network
            .route("b7")
            .ok_or_else(|| DemoError::Step("no route b7 in the fare data".into()))?;
        let bus_at = civil(self.day, 8, 30);
        let bus_tap = Tap {
            card: card_ref,
            direction: TapDirection::In,
            place: TapPlace::Vehicle {
                route: b7,
                vehicle: 7031,
                stop: None,
            },
            reader: 7031,
            at: bus_at,
        };
        let mother_ref = CityCard::card_ref(&mother_card)?;
        let mother_tap = Tap {
            card: mother_ref,
            at: civil(self.day, 10, 5),
            reader: 7044,
            place: TapPlace::Vehicle {
                route: b7,
                vehicle: 7044,
                stop: None,
            },
            ..bus_tap
        };
        p.line(format!(
            "{} boards bus 7 at Wulin Square at {} (card tap), then takes the metro Wulin Square → Xianghu {}–{} (ride code)",
            mask_name(zhang.name),
            hm(bus_at),
            hm(tap_in.at),
            hm(tap_out.at)
        ))?;
        p.line(format!(
            "{} (74) takes bus 7 at {}, off-peak",
            mask_name(mother.name),
            hm(mother_tap.at)
        ))?;
        let taps = vec![bus_tap, tap_in, tap_out, mother_tap];
        self.at(21, 0);
        city.transit().prepare_riders(&taps).await?;
        let report = city
            .transit()
            .settlement()
            .settle_day(&system, self.day, taps)
            .await?;
        let mut fares_charged = Money::ZERO;
        for (who, r) in [(zhang.name, card_ref), (mother.name, mother_ref)] {
            for trip in city.transit_store().trips(r, self.day).await? {
                p.line(format!(
                    "trip {} {} on {}: base {}, paid {} ({})",
                    mask_name(who),
                    hm(trip.started_at),
                    trip.operator,
                    y(trip.base),
                    y(trip.amount),
                    trip.payment.code()
                ))?;
                if r == card_ref && trip.payment == TripPayment::Charged {
                    fares_charged = fares_charged
                        .checked_add(trip.amount)
                        .map_err(|e| DemoError::Step(e.to_string()))?;
                }
            }
        }
        p.line(format!(
            "settled {} trips ({} already settled): base fares {}, discounts {} (of which transfer discount {}), charged {}",
            report.trips_settled,
            report.trips_already_settled,
            y(report.base_fares),
            y(report.discounts),
            y(report.transfer_discounts),
            y(report.charged)
        ))?;
        for (operator_code, revenue) in &report.revenue_by_operator {
            p.line(format!("revenue {operator_code}: {}", y(*revenue)))?;
        }

        // 8. Hospital booking.
        self.at(21, 10);
        p.heading("A hospital booking with a queue number")?;
        let (appointment, queue_number) = self.book(p, &operator, &zhang).await?;

        // 9. Outpatient bill.
        self.at(21, 20);
        p.heading("An outpatient bill settled with the insurance split")?;
        let record = self.bill(p, &me, &zhang).await?;
        let medical_cash = record.breakdown.cash_paid;

        // 10. Social insurance summary.
        p.heading("The social insurance summary")?;
        self.social_summary(p, &me, &zhang.id).await?;

        // 11. Statement.
        self.at(23, 40);
        p.heading("The wallet statement for today")?;
        let statement = city
            .wallet()
            .statement(
                &me,
                &card.id,
                start_of_civil_day(self.day),
                self.clock.now() + Duration::seconds(1),
            )
            .await?;
        let labels = self.labels(&report.revenue_by_operator);
        p.line(format!("opening balance {}", y(statement.opening_balance)))?;
        for entry in &statement.entries {
            p.line(format!(
                "  {}  {:>9}  {}  ({})",
                hm(entry.timestamp),
                format!("{:+}", entry.amount.to_decimal()),
                entry.memo.as_deref().unwrap_or("-"),
                labels
                    .get(&entry.counterparty)
                    .cloned()
                    .unwrap_or_else(|| format!("account {}", entry.counterparty))
            ))?;
        }
        p.line(format!("closing balance {}", y(statement.closing_balance)))?;

        // 12. Lost and replaced.
        self.at(23, 45);
        p.heading("The card reported lost and replaced (补卡)")?;
        city.cards()
            .report_lost(&me, &self.run_key("report-lost")?, &card.id)
            .await?;
        p.line(format!(
            "{} reports card {} lost: the binding is suspended",
            mask_name(zhang.name),
            mask_number(card.number.as_str())
        ))?;
        let change = city
            .replace_card(
                &operator,
                &self.run_key("replace")?,
                &card.id,
                &replacement_number(self.run),
            )
            .await?;
        let new_card = change
            .new_card
            .clone()
            .ok_or_else(|| DemoError::Step("the replacement returned no new card".into()))?;
        let carried = change.funds_moved.unwrap_or(Money::ZERO);
        let moved = city.bindings().binding(&me, &binding).await?;
        let old_balance = city
            .accounts()
            .balance(
                crate::glue::money::wallet_of(&card.wallet_account)
                    .map_err(CityCardError::Invalid)?,
            )
            .await?;
        let wallet_balance = city.wallet().balance(&me, &new_card.id).await?;
        p.line(format!(
            "new card {} issued; the old card is {}",
            mask_number(new_card.number.as_str()),
            match &city.cards().card(&me, &card.id).await?.status {
                CardStatus::Replaced { .. } => "replaced".to_owned(),
                other => other.code().to_owned(),
            }
        ))?;
        p.line(format!(
            "binding {} now on card {}: {} (state {:?})",
            moved.id,
            mask_number(new_card.number.as_str()),
            if moved.card == new_card.id {
                "followed the card"
            } else {
                "did NOT follow"
            },
            moved.state
        ))?;
        p.line(format!(
            "balance carried {}: old card {}, new card {}",
            y(carried),
            y(old_balance),
            y(wallet_balance)
        ))?;
        if let Some(pass) = city
            .simulated_wallet()
            .and_then(|sim| sim.passes().into_iter().find(|x| x.binding == binding))
        {
            p.line(format!(
                "the Alipay pass now shows card {} ({:?})",
                pass.card_number_masked, pass.status
            ))?;
        }

        // 13. Unbinding.
        self.at(23, 50);
        p.heading("Unbinding (consent withdrawn)")?;
        let removed = city
            .bindings()
            .unbind(
                &me,
                &self.run_key("unbind")?,
                &binding,
                RemovalReason::UserUnbound,
            )
            .await?;
        let pass_left = city
            .simulated_wallet()
            .is_some_and(|sim| sim.passes().iter().any(|x| x.binding == binding));
        p.line(format!(
            "binding {} is {:?}; consent withdrawn at {}; pass {}",
            removed.id,
            removed.state,
            removed.consent.withdrawn_at.map_or("-".into(), hm),
            if pass_left {
                "still in the wallet"
            } else {
                "removed from the Alipay card wallet"
            }
        ))?;

        // 14. FHIR.
        p.heading("FHIR R4 JSON of the appointment and the claim")?;
        let fhir_dir = self.dir.join("fhir");
        let mut fhir_files = Vec::new();
        let (claim, response) = fhir::settlement(&record, "hangzhou-medical-insurance");
        let mut documents = vec![("claim.json", claim), ("claim-response.json", response)];
        if let Some(appointment) = &appointment {
            documents.insert(0, ("appointment.json", fhir::appointment(appointment)));
        }
        for (name, value) in documents {
            let path = fhir_dir.join(name);
            let text = serde_json::to_string_pretty(&value)
                .map_err(|e| DemoError::Step(format!("FHIR {name}: {e}")))?;
            std::fs::write(&path, text).map_err(io(name))?;
            p.line(format!(
                "wrote {} ({})",
                path.display(),
                value
                    .get("resourceType")
                    .and_then(|v| v.as_str())
                    .unwrap_or("?")
            ))?;
            fhir_files.push(path);
        }

        Ok(DemoSummary {
            run: self.run,
            day: self.day,
            cardholder: zhang.id.clone(),
            card_used: card.id.clone(),
            card: new_card.id.clone(),
            binding: binding.clone(),
            binding_state: removed.state,
            topped_up,
            fares_charged,
            medical_cash,
            opening_balance,
            carried,
            wallet_balance,
            queue_number,
            fhir_files,
            database: self.dir.join("citycard.db"),
        })
    }

    async fn enroll(
        &self,
        operator: &Principal,
        name: &'static str,
        id_number: IdNumber,
        who: &str,
    ) -> Result<Person, DemoError> {
        let person = self
            .city
            .identity()
            .enroll_person(
                operator,
                &Sensitive::new(name.to_owned()),
                &id_number.to_sensitive(),
                &key(&format!("demo-setup-enrol-{who}"))?,
            )
            .await?;
        Ok(Person {
            id: person.id,
            created_at: person.created_at,
            id_number,
            name,
        })
    }

    /// The holder's active card (the newest active one).
    async fn current_card(&self, holder: &PersonId) -> Result<Card, DemoError> {
        let mut cards = self
            .city
            .cards()
            .cards_of(&Principal::System, holder)
            .await?;
        cards.sort_by_key(|c| c.issued_at);
        cards
            .into_iter()
            .rev()
            .find(|c| c.status == CardStatus::Active)
            .ok_or_else(|| {
                DemoError::Step(
                    "the cardholder has no active card: start over in a new directory".into(),
                )
            })
    }

    async fn live_binding(
        &self,
        platform: &Platform,
        account: &PlatformAccountId,
    ) -> Result<Option<BindingId>, DemoError> {
        Ok(self
            .city
            .bindings()
            .bindings_of_account(&Principal::System, platform, account)
            .await?
            .into_iter()
            .find(|b| matches!(b.state, BindingState::Active | BindingState::Suspended))
            .map(|b| b.id))
    }

    async fn transfer(
        &self,
        id: TransferId,
        from: AccountId,
        to: AccountId,
        amount: Money,
        code: u16,
        memo: &str,
    ) -> Result<bool, DemoError> {
        let results = self
            .city
            .ledger()
            .create_transfers(
                &Principal::System,
                vec![NewTransfer::new(id, from, to, amount, code).with_memo(memo)],
            )
            .await?;
        match results.first() {
            Some(CreateTransferResult::Ok) => Ok(true),
            Some(CreateTransferResult::Exists) => Ok(false),
            other => Err(DemoError::Step(format!(
                "the ledger refused {memo}: {other:?}"
            ))),
        }
    }

    async fn fund_medical(&self, p: &mut Printer<'_>, person: &PersonId) -> Result<(), DemoError> {
        let accumulated = yuan("600.00")?;
        let first = self
            .transfer(
                TransferId::from_idempotency_key(
                    "demo.medical_funding",
                    &key("demo-setup-accumulated")?,
                ),
                Accounts::insurance_funding(),
                Accounts::medical_accumulated(person),
                accumulated,
                codes::MEDICAL_FUNDING,
                "accumulated medical account: savings of earlier years",
            )
            .await?;
        let credit = yuan("200.00")?;
        self.transfer(
            TransferId::from_idempotency_key("demo.medical_funding", &self.run_key("credit")?),
            Accounts::insurance_funding(),
            Accounts::medical_current(person),
            credit,
            codes::MEDICAL_FUNDING,
            "current-year medical account credit",
        )
        .await?;
        p.line(format!(
            "medical accounts funded from the insurance agency: current-year +{}{}",
            y(credit),
            if first {
                format!(", accumulated +{}", y(accumulated))
            } else {
                String::new()
            }
        ))?;
        Ok(())
    }

    async fn social_history(
        &self,
        p: &mut Printer<'_>,
        person: &PersonId,
    ) -> Result<(), DemoError> {
        let records = self.city.social_insurance_records();
        let month = |y: i32, m: u32| {
            CivilMonth::new(y, m).ok_or_else(|| DemoError::Step(format!("month {y}-{m}")))
        };
        let employers = [
            Employer {
                id: parse("emp-westlake-software")?,
                name: "西湖软件有限公司".into(),
                district: "西湖区".into(),
            },
            Employer {
                id: parse("emp-qiantang-logistics")?,
                name: "钱塘物流有限公司".into(),
                district: "钱塘区".into(),
            },
        ];
        for e in &employers {
            records.put_employer(e).await?;
        }
        records
            .put_category(person, PersonCategory::Employee)
            .await?;
        let [first, second] = &employers;
        let history = citycard_healthcare::social::generate_history(
            &ContributionRates::hangzhou()?,
            person,
            &[
                EmploymentSpell {
                    employer: first.id.clone(),
                    from: month(2021, 3)?,
                    to: month(2023, 2)?,
                    wage: yuan("8500.00")?,
                    yearly_raise: parse("0.05")?,
                },
                EmploymentSpell {
                    employer: second.id.clone(),
                    from: month(2023, 4)?,
                    to: month(2026, 10)?,
                    wage: yuan("11000.00")?,
                    yearly_raise: parse("0.04")?,
                },
            ],
            &[month(2026, 9)?],
        )?;
        records.upsert(&history).await?;
        p.line(format!(
            "social insurance history registered: {} monthly records with 2 employers",
            history.len()
        ))?;
        Ok(())
    }

    async fn verified_account(
        &self,
        p: &mut Printer<'_>,
        person: &Person,
        external: &str,
        who: &str,
    ) -> Result<PlatformAccountId, DemoError> {
        let identity = self.city.identity();
        let alipay = Principal::Platform {
            platform: Platform::Alipay,
        };
        if let Some(sim) = self.city.simulated_verifier() {
            // The provider's own records (the simulated one lives in memory).
            sim.register(&person.id_number, KnownPerson::named(person.name));
        }
        let account = identity
            .register_account(
                &alipay,
                Platform::Alipay,
                external,
                &key(&format!("demo-setup-alipay-{who}"))?,
            )
            .await?;
        let report = identity
            .verify_real_name(
                &alipay,
                &account.id,
                &RealNameRequest::two_factor(person.name, person.id_number.reveal()),
                &key(&format!("demo-setup-verify-{who}"))?,
            )
            .await?;
        p.line(format!(
            "Alipay account {} of {}: real-name check {:?}, level {:?}",
            mask_number(external),
            mask_name(person.name),
            report.outcome,
            report.level
        ))?;
        if report.person.as_ref() != Some(&person.id) {
            return Err(DemoError::Step(
                "the verified account is not linked to the enrolled person".into(),
            ));
        }
        Ok(account.id)
    }

    async fn book(
        &self,
        p: &mut Printer<'_>,
        operator: &Principal,
        patient: &Person,
    ) -> Result<(Option<citycard_healthcare::Appointment>, Option<u32>), DemoError> {
        let appointments = self.city.healthcare().appointments();
        let date = self.day + Duration::days(1);
        let times = appointments.policy().session_times;
        let (start, end) = times.bounds(date, Session::Morning);
        let slot = Slot {
            id: parse(&format!("slot:{DEPARTMENT}:{}:am", date.format("%Y%m%d")))?,
            hospital: parse(HOSPITAL)?,
            department: parse(DEPARTMENT)?,
            doctor: None,
            date,
            session: Session::Morning,
            start,
            end,
            capacity: 40,
            status: SlotStatus::Open,
        };
        if self
            .city
            .appointment_store()
            .slot(&slot.id)
            .await?
            .is_none()
        {
            appointments.put_slot(operator, slot.clone()).await?;
        }
        p.line(format!(
            "{HOSPITAL_NAME} publishes tomorrow's general medicine morning clinic ({date}, {}–{}, 40 places)",
            hm(start),
            hm(end)
        ))?;
        let me = Principal::cardholder(patient.id.clone());
        match appointments
            .book(
                &me,
                &citycard_healthcare::BookRequest {
                    slot: slot.id.clone(),
                    patient: patient.id.clone(),
                    key: self.run_key("booking")?,
                    allow_waitlist: false,
                },
            )
            .await
        {
            Ok(booking) => {
                let a = booking.appointment;
                let status = if a.status == AppointmentStatus::Booked {
                    "booked"
                } else {
                    a.status.code()
                };
                p.line(format!(
                    "{} {status}: queue number {}, expected at {} on {}",
                    mask_name(patient.name),
                    a.queue_number.map_or("-".into(), |q| q.to_string()),
                    a.expected_at.map_or("-".into(), hm),
                    a.date
                ))?;
                let q = a.queue_number;
                Ok((Some(a), q))
            }
            Err(e) => {
                p.line(format!("booking refused: {e}"))?;
                Ok((None, None))
            }
        }
    }

    async fn bill(
        &self,
        p: &mut Printer<'_>,
        me: &Principal,
        patient: &Person,
    ) -> Result<SettlementRecord, DemoError> {
        let billing = self.city.healthcare().billing();
        let request = BillRequest {
            patient: patient.id.clone(),
            hospital: parse(HOSPITAL)?,
            hospital_level: HospitalLevel::Tertiary,
            visit_type: VisitType::Outpatient,
            items: vec![
                ChargeItem::new("consultation", CatalogueClass::A, yuan("50.00")?, 1),
                ChargeItem::new("blood-test", CatalogueClass::A, yuan("150.00")?, 1),
                ChargeItem::new("ct-scan", CatalogueClass::A, yuan("560.00")?, 1),
                ChargeItem::new("medicine", CatalogueClass::A, yuan("80.00")?, 3),
                ChargeItem::new("vitamin-supplement", CatalogueClass::C, yuan("30.00")?, 1),
            ],
            cash_source: CashSource::EWallet,
        };
        let quote = billing.quote(me, &request).await?;
        p.line(format!(
            "{} at {HOSPITAL_NAME}'s evening clinic (tertiary): bill {}, quoted before paying",
            mask_name(patient.name),
            y(quote.total)
        ))?;
        let record = billing.settle(me, &self.run_key("bill")?, &request).await?;
        let b = &record.breakdown;
        p.line(format!(
            "settled: pooled fund {} ({}% above the deductible), current-year account {}, accumulated account {}, e-wallet (cash) {}",
            y(b.fund_paid),
            (b.fund_ratio * rust_decimal::Decimal::from(100)).normalize(),
            y(b.current_year_account_paid),
            y(b.accumulated_account_paid),
            y(b.cash_paid)
        ))?;
        p.line(format!(
            "within policy {}, deductible applied {}, co-payment {}, fully self-paid {}",
            y(b.within_policy),
            y(b.deductible_applied),
            y(b.co_payment),
            y(b.fully_self_paid)
        ))?;
        Ok(record)
    }

    async fn social_summary(
        &self,
        p: &mut Printer<'_>,
        me: &Principal,
        person: &PersonId,
    ) -> Result<(), DemoError> {
        let s = self
            .city
            .healthcare()
            .social_insurance()
            .summary(me, person)
            .await?;
        p.line(format!(
            "category: {}",
            s.category.map_or("unknown", |c| c.code())
        ))?;
        for e in &s.employers {
            p.line(format!(
                "employer {} ({}) {} – {}",
                e.name.as_deref().unwrap_or(e.id.as_str()),
                e.district.as_deref().unwrap_or("-"),
                e.first_month,
                e.last_month
            ))?;
        }
        for i in &s.insurances {
            p.line(format!(
                "{:<13} {} paid; latest {} on base {}; arrears {}; paid in {} by employer {} / employee {}",
                i.insurance.code(),
                i.cumulative_text,
                i.current_status.map_or("-", |c| c.code()),
                i.current_base.map_or("-".into(), y),
                y(i.arrears),
                s.year,
                y(i.employer_paid_this_year),
                y(i.employee_paid_this_year)
            ))?;
        }
        if let Some(m) = &s.medical_accounts {
            p.line(format!(
                "medical accounts: current-year {}, accumulated {}",
                y(m.current_year),
                y(m.accumulated)
            ))?;
        }
        Ok(())
    }

    /// Names for the accounts a statement may show as counterparties.
    fn labels(&self, operators: &BTreeMap<String, Money>) -> BTreeMap<AccountId, String> {
        let mut labels = BTreeMap::new();
        for platform in [Platform::Alipay, Platform::WechatPay, Platform::UnionPay] {
            labels.insert(
                Accounts::clearing(&platform),
                format!("{platform} top-up clearing"),
            );
        }
        for operator in operators
            .keys()
            .map(String::as_str)
            .chain(["hz_bus", "hz_metro"])
        {
            labels.insert(Accounts::revenue(operator), format!("{operator} revenue"));
        }
        labels.insert(Accounts::hospital(HOSPITAL), HOSPITAL_NAME.to_owned());
        labels.insert(Accounts::pooled_fund(), "pooled fund".to_owned());
        labels.insert(Accounts::refunds(), "refunds".to_owned());
        labels
    }
}

fn services_text(services: &ServiceSet) -> String {
    services
        .iter()
        .map(Service::code)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A card number as people type it, in groups of four.
fn spaced(number: &str) -> String {
    number
        .chars()
        .collect::<Vec<_>>()
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

fn consent() -> ConsentInput {
    ConsentInput {
        purpose: "use the citizen card in Alipay: rides, hospital payments, balance".into(),
        data_categories: [
            DataCategory::CardNumber,
            DataCategory::Identity,
            DataCategory::Balance,
            DataCategory::TransitRecords,
            DataCategory::MedicalRecords,
        ]
        .into(),
        text_version: "2026-01".into(),
        channel: "alipay_app".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_hide_names_and_numbers() {
        assert_eq!(mask_name("张伟"), "张*");
        assert_eq!(mask_name("李秀英"), "李**");
        assert_eq!(mask_number("3301000000001001"), "************1001");
        assert_eq!(mask_number("12"), "12");
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
