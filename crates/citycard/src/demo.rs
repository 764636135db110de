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

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use citycard_binding::words::{platform_name, service_name};
use citycard_binding::{
    BindRequest, BindingError, BindingId, BindingState, Card, CardId, CardStatus, ConsentInput,
    DataCategory, Lang, RemovalReason, Service, ServiceSet, UserMessage,
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
use citycard_identity::{
    IdNumber, KnownPerson, RealNameRequest, RegionCode, Sex, VerificationOutcome,
};
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
pub const TOP_UP_YUAN: &str = "400.00";

const CARDHOLDER_NAME: &str = "张伟";
const MOTHER_NAME: &str = "李秀英";
const HOSPITAL: &str = "hsp-hz-first";
const HOSPITAL_NAME: &str = "Hangzhou First People's Hospital";
const HOSPITAL_NAME_ZH: &str = "杭州市第一人民医院";
const DEPARTMENT: &str = "dep-general-medicine";

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
        }
    }

    /// Print in `lang`.
    #[must_use]
    pub fn with_lang(mut self, lang: Lang) -> Self {
        self.lang = lang;
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
    if !keys_path.exists() && holds_personal_data(&dir.join("citycard.db")) {
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
    let city = CityCard::builder()
        .sqlite(&database)
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
    p.raw(options.lang.pick(
        format!(
            "完成。数据：{}（个人信息加密密钥在 {}，仅供演示）。FHIR：{}。再次运行将继续第 {} 天。",
            database.display(),
            dir.join("keys.json").display(),
            dir.join("fhir").display(),
            run + 1
        ),
        format!(
            "Done. Data: {} (vault keys in {}, demos only). FHIR: {}. Run again to continue with day {}.",
            database.display(),
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

    async fn go(&self, p: &mut Printer<'_>) -> Result<DemoSummary, DemoError> {
        let city = self.city;
        let counter = parse::<OperatorId>("opr-counter-1")?;
        city.operator_roles()
            .grant(counter.clone(), OperatorRole::CardDesk);
        let operator = Principal::Operator { operator: counter };
        let system = Principal::System;

        // 1. People and cards.
        p.heading(
            "在市民卡柜台登记并发卡",
            "People enrolled and cards issued (at the issuer's counter)",
        )?;
        let zhang = self
            .enroll(&operator, CARDHOLDER_NAME, cardholder_id_number()?, "zhang")
            .await?;
        let mother = self
            .enroll(&operator, MOTHER_NAME, mother_id_number()?, "mother")
            .await?;
        for person in [&zhang, &mother] {
            let name = mask_name(person.name);
            let id = person.id_number.masked();
            p.say(
                format!(
                    "{}{name}（身份证号 {id}）",
                    self.setup_verb(Lang::Zh, person.created_at, "登记", "enrolled")
                ),
                format!(
                    "{} {name} (ID number {id})",
                    self.setup_verb(Lang::En, person.created_at, "登记", "enrolled")
                ),
            )?;
            p.ids(format!("person {}", person.id))?;
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
        let cap = y(city.accounts().limits().kind_cap(first_card.kind.code()));
        let (zn, zc) = (
            mask_name(zhang.name),
            mask_number(first_card.number.as_str()),
        );
        p.say(
            format!(
                "{}为{zn}发了一张普通市民卡 {zc}，带电子钱包（余额上限 {cap}）",
                self.setup_verb(Lang::Zh, first_card.issued_at, "发卡", "issued")
            ),
            format!(
                "{} {zn}'s standard card {zc} with an e-wallet (up to {cap})",
                self.setup_verb(Lang::En, first_card.issued_at, "发卡", "issued")
            ),
        )?;
        let (mn, mc) = (
            mask_name(mother.name),
            mask_number(mother_card.number.as_str()),
        );
        p.say(
            format!(
                "{}为{mn}发了一张老年卡 {mc}（可用：{}）",
                self.setup_verb(Lang::Zh, mother_card.issued_at, "发卡", "issued"),
                services_text(&mother_card.services, Lang::Zh)
            ),
            format!(
                "{} {mn}'s elderly card {mc} (for {})",
                self.setup_verb(Lang::En, mother_card.issued_at, "发卡", "issued"),
                services_text(&mother_card.services, Lang::En)
            ),
        )?;
        let card = self.current_card(&zhang.id).await?;
        if card.id != first_card.id {
            let cc = mask_number(card.number.as_str());
            p.say(
                format!("{zn}现在用的是补办的新卡 {cc}（第一张卡在之前的运行中已补换）"),
                format!(
                    "{zn}'s current card is the replacement {cc} (the first card was replaced in an earlier run)"
                ),
            )?;
        }
        p.ids("ledger system accounts open: Alipay/WeChat Pay/UnionPay clearing, refunds, pooled fund, insurance funding, control")?;
        self.fund_medical(p, &zhang.id).await?;
        self.social_history(p, &zhang.id).await?;

        // 2. Alipay accounts, real-name verified.
        self.at(8, 10);
        p.heading(
            "注册支付宝账户并完成实名认证",
            "An Alipay account registered and real-name verified",
        )?;
        let zhang_account = self
            .verified_account(p, &zhang, "2088102146225135", "zhang")
            .await?;
        let mother_account = self
            .verified_account(p, &mother, "2088102146227781", "mother")
            .await?;

        // 3. Binding: a mistyped ID number, then the right one.
        self.at(8, 15);
        p.heading("在支付宝绑定市民卡", "Binding the card in Alipay")?;
        let me = Principal::cardholder(zhang.id.clone());
        let mistake = BindRequest {
            platform: Platform::Alipay,
            account: zhang_account.clone(),
            card_number: spaced(card.number.as_str()),
            id_number: Sensitive::new(mistyped(&zhang.id_number)),
            consent: consent(),
        };
        p.say(
            format!("{zn}输入了卡号，但身份证号有两位数字输反了……"),
            format!("{zn} types the card number and an ID number with two digits swapped…"),
        )?;
        match city
            .cards()
            .bind(&me, &self.run_key("bind-mistyped")?, &mistake)
            .await
        {
            Err(e @ BindingError::DetailsDoNotMatch) => {
                p.refusal(&e.user_message(p.lang))?;
            }
            Err(e) => p.refusal(&e.user_message(p.lang))?,
            Ok(_) => {
                return Err(DemoError::Step("a mistyped ID number was accepted".into()));
            }
        }
        let binding = match self.live_binding(&Platform::Alipay, &zhang_account).await? {
            Some(existing) => {
                p.say(
                    "之前的运行中已经绑定，继续使用",
                    "already bound in an earlier run; using that binding",
                )?;
                p.ids(format!("binding {existing}"))?;
                existing
            }
            None => {
                let receipt = city
                    .cards()
                    .bind(
                        &me,
                        &self.run_key("bind")?,
                        &BindRequest {
                            id_number: zhang.id_number.to_sensitive(),
                            ..mistake.clone()
                        },
                    )
                    .await?;
                if receipt.state == BindingState::Active {
                    p.say(
                        "输入正确的身份证号后绑定成功，市民卡已出现在支付宝卡包里",
                        "with the right ID number the card is bound and appears in Alipay's card wallet (卡包)",
                    )?;
                } else {
                    p.say(
                        "输入正确的身份证号后已提交绑定，正在处理",
                        "with the right ID number the binding is submitted and being processed",
                    )?;
                }
                p.ids(format!(
                    "binding {} ({:?}), pass {}",
                    receipt.binding, receipt.state, receipt.pass_serial
                ))?;
                p.say(
                    format!("可以使用：{}", services_text(&receipt.services, Lang::Zh)),
                    format!(
                        "it can be used for {}",
                        services_text(&receipt.services, Lang::En)
                    ),
                )?;
                receipt.binding
            }
        };

        // 4. A service not enabled.
        p.heading("没有开通的服务", "A service that is not enabled")?;
        let mum = Principal::cardholder(mother.id.clone());
        let mother_binding = match self
            .live_binding(&Platform::Alipay, &mother_account)
            .await?
        {
            Some(b) => b,
            None => {
                city.cards()
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
        p.say(
            format!("{mn}的老年卡绑定在她的支付宝里；她打开社保查询……"),
            format!("{mn}'s elderly card is bound in her Alipay; she opens social insurance…"),
        )?;
        p.ids(format!("binding {mother_binding}"))?;
        match city
            .cards()
            .ensure_service(&mum, &mother_binding, &Service::SocialInsurance)
            .await
        {
            Err(e @ BindingError::ServiceNotEnabled { .. }) => {
                p.refusal(&e.user_message(p.lang))?;
            }
            Err(e) => return Err(e.into()),
            Ok(()) => {
                return Err(DemoError::Step(
                    "social insurance worked on a card without it".into(),
                ));
            }
        }
        city.cards()
            .ensure_service(&me, &binding, &Service::SocialInsurance)
            .await?;
        p.say(
            format!("{zn}的卡开通了社保查询，可以正常使用"),
            format!("{zn}'s card has it: social insurance works in his Alipay"),
        )?;

        // 5. Top-up.
        self.at(8, 20);
        p.heading("通过支付宝充值", "Top-up via Alipay")?;
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
                let (a, from) = (y(amount), y(opening_balance));
                let to = receipt.balance.map_or_else(|| "—".to_owned(), y);
                p.say(
                    format!("从支付宝充值 {a}：钱包余额 {from} → {to}"),
                    format!("topped up {a} from Alipay: wallet {from} → {to}"),
                )?;
                amount
            }
            // After many runs the wallet reaches its cap: show the refusal and go on.
            Err(e @ CityCardError::OverCap { .. }) => {
                p.refusal(&e.user_message(p.lang))?;
                Money::ZERO
            }
            Err(e) => return Err(e.into()),
        };
        let view = city.cards().wallet_view(&me, &binding).await?;
        match view.balance {
            Some(b) => {
                let (bal, at) = (y(b.balance), hm(b.as_of));
                p.say(
                    format!("支付宝卡包里的市民卡显示余额 {bal}（{at} 更新）"),
                    format!("the card in Alipay's card wallet shows {bal} (as of {at})"),
                )?
            }
            None => p.say(
                "卡包里暂时还没有显示余额（下次同步时更新）",
                "the card wallet shows no balance yet (it refreshes on the next sync)",
            )?,
        }

        // 6. Ride code.
        self.at(8, 50);
        p.heading(
            "乘车码：地铁闸机离线验码",
            "The ride code (乘车码), verified offline at the metro gate",
        )?;
        let card_ref = CityCard::card_ref(&card)?;
        let now = self.clock.now();
        let phone_key = SigningKey::generate(Algorithm::Sm2)?;
        let credential = city
            .transit()
            .certify(
                &phone_key.public_key(),
                card_ref,
                now - Duration::hours(1),
                now + Duration::days(7),
            )
            .await?;
        let issuer_keys = city.transit().issuer().public_keys();
        let mut ride_wallet = RideCodeWallet::new(phone_key, credential)?;
        let code = ride_wallet.generate(now)?;
        p.say(
            "手机每分钟生成一个新的乘车码，这是现在的码：",
            "the phone shows a new ride code every minute; this is the current one:",
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
                let at = hm(now);
                p.say(
                    format!("武林广场地铁站的闸机不联网就核验了这个码，{at} 放行进站"),
                    format!(
                        "the gate at Wulin Square metro station checked the code without going online and let him in at {at}"
                    ),
                )?;
                p.ids("reader 101")?;
                tap
            }
            Decision::Reject(why) => {
                return Err(DemoError::Step(format!(
                    "the gate refused the code: {why:?}"
                )));
            }
        };
        if let Decision::Reject(why) = gate_in.decide(code.as_bytes(), now) {
            p.say(
                format!(
                    "同一个码再刷一次被拒绝：{}。截图不能重复乘车",
                    rejection_words(&why, Lang::Zh)
                ),
                format!(
                    "the same code shown again is refused: {}; a screenshot cannot ride twice",
                    rejection_words(&why, Lang::En)
                ),
            )?;
            p.ids(format!("rejection {why:?}"))?;
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
        let at = hm(out_at);
        p.say(
            format!("湘湖站出站闸机 {at} 核验了新的码，放行出站"),
            format!("at Xianghu the exit gate accepted a fresh code at {at}"),
        )?;
        p.ids("reader 202")?;

        // 7. Rides and the day's settlement.
        p.heading(
            "一次公交、一次地铁，以及当天的结算",
            "A bus ride, a metro ride, and the day's settlement",
        )?;
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
            code: None,
            medium: citycard_transit::Medium::Card,
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
        let (b, i, o) = (hm(bus_at), hm(tap_in.at), hm(tap_out.at));
        p.say(
            format!("{zn} {b} 在武林广场刷卡上 7 路公交，然后 {i}–{o} 用乘车码坐地铁 武林广场 → 湘湖"),
            format!(
                "{zn} boards bus 7 at Wulin Square at {b} (card tap), then takes the metro Wulin Square → Xianghu {i}–{o} (ride code)"
            ),
        )?;
        let m = hm(mother_tap.at);
        p.say(
            format!("{mn}（74 岁）{m} 乘 7 路公交，非高峰时段"),
            format!("{mn} (74) takes bus 7 at {m}, off-peak"),
        )?;
        let mut taps = vec![bus_tap, tap_in, tap_out, mother_tap];
        self.at(21, 0);
        // The gates saw only the code's keyed card reference: map it back to the card.
        city.transit().resolve_code_taps(&mut taps);
        city.transit().prepare_riders(&taps).await?;
        let report = city
            .transit()
            .settlement()
            .settle_day(&system, self.day, taps)
            .await?;
        let mut fares_charged = Money::ZERO;
        // When each of his rides began, for the statement (fares are settled at 21:00).
        let mut ride_times: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        for (who, r) in [(zhang.name, card_ref), (mother.name, mother_ref)] {
            for trip in city.transit_store().trips(r, self.day).await? {
                let (name, at) = (mask_name(who), hm(trip.started_at));
                let (base, paid) = (y(trip.base), y(trip.amount));
                let how = match trip.payment {
                    TripPayment::Free => ("免费", "free"),
                    TripPayment::Charged => ("已从卡内钱包扣款", "paid from the card's wallet"),
                    TripPayment::Arrears => ("余额不足，记为欠款", "not enough balance: owed"),
                };
                p.say(
                    format!(
                        "{name} {at} 的行程（{}）：票价 {base}，实付 {paid}，{}",
                        operator_name(&trip.operator, Lang::Zh),
                        how.0
                    ),
                    format!(
                        "{name}'s {at} ride ({}): fare {base}, paid {paid}, {}",
                        operator_name(&trip.operator, Lang::En),
                        how.1
                    ),
                )?;
                p.ids(format!("trip {}", trip.id.as_str()))?;
                if r == card_ref {
                    ride_times.insert(format!("trip:{}", trip.id.as_str()), trip.started_at);
                }
                if r == card_ref && trip.payment == TripPayment::Charged {
                    fares_charged = fares_charged
                        .checked_add(trip.amount)
                        .map_err(|e| DemoError::Step(e.to_string()))?;
                }
            }
        }
        let (n, base, disc, transfer, charged) = (
            report.trips_settled,
            y(report.base_fares),
            y(report.discounts),
            y(report.transfer_discounts),
            y(report.charged),
        );
        p.say(
            format!(
                "21:00 结算当天 {n} 个行程：票价合计 {base}，优惠 {disc}（其中换乘优惠 {transfer}），实扣 {charged}"
            ),
            format!(
                "at 21:00 the day's {n} rides were settled: fares {base}, discounts {disc} (of which transfer discount {transfer}), charged {charged}"
            ),
        )?;
        if report.trips_already_settled > 0 {
            let k = report.trips_already_settled;
            p.say(
                format!("另有 {k} 个行程之前已结算"),
                format!("{k} rides had been settled before"),
            )?;
        }
        for (operator_code, revenue) in &report.revenue_by_operator {
            let r = y(*revenue);
            p.say(
                format!("{}收入：{r}", operator_name(operator_code, Lang::Zh)),
                format!("to {}: {r}", operator_name(operator_code, Lang::En)),
            )?;
        }

        // 8. Hospital booking.
        self.at(21, 10);
        p.heading(
            "医院挂号和就诊序号",
            "A hospital booking with a queue number",
        )?;
        let (appointment, queue_number) = self.book(p, &operator, &zhang).await?;

        // 9. Outpatient bill.
        self.at(21, 20);
        p.heading(
            "门诊缴费：医保分担",
            "An outpatient bill settled with the insurance split",
        )?;
        let record = self.bill(p, &me, &zhang).await?;
        let medical_cash = record.breakdown.cash_paid;

        // 10. Social insurance summary.
        p.heading("社保概况", "The social insurance summary")?;
        self.social_summary(p, &me, &zhang.id).await?;

        // 11. Statement.
        self.at(23, 40);
        p.heading("今天的钱包明细", "The wallet statement for today")?;
        let statement = city
            .wallet()
            .statement(
                &me,
                &card.id,
                start_of_civil_day(self.day),
                self.clock.now() + Duration::seconds(1),
            )
            .await?;
        let labels = self.labels(&report.revenue_by_operator, p.lang);
        let opening = y(statement.opening_balance);
        p.say(
            format!("期初余额 {opening}"),
            format!("opening balance {opening}"),
        )?;
        for entry in &statement.entries {
            let amount = format!("{:+}", entry.amount.to_decimal());
            let other = labels
                .get(&entry.counterparty)
                .cloned()
                .unwrap_or_else(|| p.lang.pick("其他账户", "another account").to_owned());
            // A fare is shown at the time of the ride; it was settled later.
            let ride = entry
                .reference
                .as_ref()
                .and_then(|r| ride_times.get(r.as_str()));
            let at = hm(ride.copied().unwrap_or(entry.timestamp));
            let settled = hm(entry.timestamp);
            let what = match (entry.code, ride) {
                (codes::TOP_UP, _) => (format!("充值（{other}）"), format!("top-up ({other})")),
                (codes::FARE, Some(_)) => (
                    format!("乘车（{other}），{settled} 结算"),
                    format!("ride ({other}), settled at {settled}"),
                ),
                (codes::FARE, None) => (format!("乘车（{other}）"), format!("ride ({other})")),
                (codes::MEDICAL, _) => (
                    format!("看病自付部分（{other}）"),
                    format!("hospital bill, own share ({other})"),
                ),
                (codes::REFUND, _) => ("退款".to_owned(), "refund".to_owned()),
                (codes::CARRY, _) => ("余额转移".to_owned(), "balance carried".to_owned()),
                _ => (other.clone(), other.clone()),
            };
            p.say(
                format!("  {at}  {amount:>9}  {}", what.0),
                format!("  {at}  {amount:>9}  {}", what.1),
            )?;
            p.ids(format!(
                "transfer {}, memo {:?}",
                entry.transfer_id,
                entry.memo.as_deref().unwrap_or("-")
            ))?;
        }
        let closing = y(statement.closing_balance);
        p.say(
            format!("期末余额 {closing}"),
            format!("closing balance {closing}"),
        )?;

        // 12. Lost and replaced.
        self.at(23, 45);
        p.heading("挂失并补卡", "The card reported lost and replaced (补卡)")?;
        city.cards()
            .report_lost(&me, &self.run_key("report-lost")?, &card.id)
            .await?;
        let old_no = mask_number(card.number.as_str());
        p.say(
            format!("{zn}挂失了卡 {old_no}：支付宝里的这张卡暂停使用"),
            format!("{zn} reports card {old_no} lost: it is paused in Alipay"),
        )?;
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
        let moved = city.cards().binding(&me, &binding).await?;
        let old_balance = city
            .accounts()
            .balance(
                crate::glue::money::wallet_of(&card.wallet_account)
                    .map_err(CityCardError::Invalid)?,
            )
            .await?;
        let wallet_balance = city.wallet().balance(&me, &new_card.id).await?;
        let new_no = mask_number(new_card.number.as_str());
        let old_replaced = matches!(
            city.cards().card(&me, &card.id).await?.status,
            CardStatus::Replaced { .. }
        );
        if old_replaced {
            p.say(
                format!("补办了新卡 {new_no}；旧卡作废"),
                format!("a new card {new_no} is issued; the old card no longer works"),
            )?;
        } else {
            p.say(
                format!("补办了新卡 {new_no}"),
                format!("a new card {new_no} is issued"),
            )?;
        }
        if moved.card == new_card.id {
            p.say(
                format!("支付宝里的绑定自动转到了新卡 {new_no}，不用重新绑定"),
                format!("the Alipay binding moved to the new card {new_no}: no need to bind again"),
            )?;
        } else {
            p.say(
                "支付宝里的绑定没有转到新卡，需要重新绑定",
                "the Alipay binding did not move to the new card: bind it again",
            )?;
        }
        p.ids(format!("binding {} ({:?})", moved.id, moved.state))?;
        let (c, o, n) = (y(carried), y(old_balance), y(wallet_balance));
        p.say(
            format!("余额 {c} 转到新卡：旧卡 {o}，新卡 {n}"),
            format!("the balance of {c} moved to the new card: old card {o}, new card {n}"),
        )?;
        if let Some(pass) = city
            .simulated_wallet()
            .and_then(|sim| sim.passes().into_iter().find(|x| x.binding == binding))
        {
            let shown = &pass.card_number_masked;
            p.say(
                format!("支付宝卡包里现在显示新卡 {shown}"),
                format!("Alipay's card wallet now shows the new card {shown}"),
            )?;
            p.ids(format!("pass {} ({:?})", pass.serial, pass.status))?;
        }

        // 13. Unbinding.
        self.at(23, 50);
        p.heading("解除绑定（撤回授权）", "Unbinding (consent withdrawn)")?;
        let removed = city
            .cards()
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
        let at = removed.consent.withdrawn_at.map_or("-".into(), hm);
        let unbound = removed.state == BindingState::Removed;
        p.say(
            format!(
                "{}；{at} 撤回了授权；{}",
                if unbound {
                    "市民卡已从支付宝解绑"
                } else {
                    "解绑尚未完成"
                },
                if pass_left {
                    "卡包里还显示这张卡"
                } else {
                    "卡包里已不再显示这张卡"
                }
            ),
            format!(
                "{}; consent withdrawn at {at}; {}",
                if unbound {
                    "the card is unbound from Alipay"
                } else {
                    "unbinding is not finished"
                },
                if pass_left {
                    "the card still shows in the card wallet"
                } else {
                    "the card is gone from Alipay's card wallet"
                }
            ),
        )?;
        p.ids(format!("binding {} ({:?})", removed.id, removed.state))?;

        // 14. FHIR.
        p.heading(
            "挂号和医保结算的 FHIR R4 JSON",
            "FHIR R4 JSON of the appointment and the claim, and a transaction Bundle of both",
        )?;
        let fhir_dir = self.dir.join("fhir");
        let mut fhir_files = Vec::new();
        let payor = "hangzhou-medical-insurance";
        let (claim, response) = fhir::settlement(&record, payor);
        let mut documents = vec![("claim.json", claim), ("claim-response.json", response)];
        let slot_view = match &appointment {
            Some(a) => self.city.appointment_store().slot(&a.slot).await?,
            None => None,
        };
        if let Some(appointment) = &appointment {
            documents.insert(0, ("appointment.json", fhir::appointment(appointment)));
        }
        // Everything together, with the resources they reference: a transaction
        // Bundle in which every reference resolves.
        documents.push((
            "bundle.json",
            fhir::transaction_bundle(&fhir::BundleParts {
                appointment: appointment.as_ref().zip(slot_view.as_ref()),
                settlement: Some(&record),
                payor,
            }),
        ));
        for (name, value) in documents {
            let path = fhir_dir.join(name);
            let text = serde_json::to_string_pretty(&value)
                .map_err(|e| DemoError::Step(format!("FHIR {name}: {e}")))?;
            std::fs::write(&path, text).map_err(io(name))?;
            let kind = value
                .get("resourceType")
                .and_then(|v| v.as_str())
                .unwrap_or("?");
            p.say(
                format!("已写入 {}（{kind}）", path.display()),
                format!("wrote {} ({kind})", path.display()),
            )?;
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
            .cards()
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
        let (c, a) = (y(credit), y(accumulated));
        p.say(
            format!(
                "医保经办机构向他的医保个人账户划入：当年账户 +{c}{}",
                if first {
                    format!("，历年账户 +{a}")
                } else {
                    String::new()
                }
            ),
            format!(
                "the medical insurance agency paid into his medical accounts: this year's +{c}{}",
                if first {
                    format!(", savings of earlier years +{a}")
                } else {
                    String::new()
                }
            ),
        )?;
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
        let n = history.len();
        p.say(
            format!("登记了社保缴费记录：2 家单位共 {n} 条月度记录"),
            format!("social insurance history registered: {n} monthly records with 2 employers"),
        )?;
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
        let (account_no, name) = (mask_number(external), mask_name(person.name));
        if report.outcome == VerificationOutcome::Match {
            p.say(
                format!("{name}的支付宝账户 {account_no}：实名认证通过（姓名和身份证号已核对）"),
                format!(
                    "{name}'s Alipay account {account_no}: real name confirmed (name and ID number checked)"
                ),
            )?;
        } else {
            p.say(
                format!("{name}的支付宝账户 {account_no}：实名认证未通过"),
                format!("{name}'s Alipay account {account_no}: real name not confirmed"),
            )?;
        }
        p.ids(format!(
            "account {}, outcome {:?}, level {:?}",
            account.id, report.outcome, report.level
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
        let (from, to) = (hm(start), hm(end));
        p.say(
            format!("{HOSPITAL_NAME_ZH}放出明天全科上午门诊的号（{date}，{from}–{to}，共 40 个）"),
            format!(
                "{HOSPITAL_NAME} publishes tomorrow's general medicine morning clinic ({date}, {from}–{to}, 40 places)"
            ),
        )?;
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
                let name = mask_name(patient.name);
                let q = a.queue_number.map_or("-".into(), |q| q.to_string());
                let at = a.expected_at.map_or("-".into(), hm);
                if a.status == AppointmentStatus::Booked {
                    p.say(
                        format!("{name}挂号成功：第 {q} 号，预计 {} {at} 就诊", a.date),
                        format!(
                            "{name} booked: queue number {q}, expected at {at} on {}",
                            a.date
                        ),
                    )?;
                } else {
                    p.say(
                        format!("{name}已排队候补（{}）", a.date),
                        format!("{name} is on the waiting list for {}", a.date),
                    )?;
                }
                p.ids(format!("appointment {} ({})", a.id, a.status.code()))?;
                let q = a.queue_number;
                Ok((Some(a), q))
            }
            // After many runs the monthly booking quota is reached: show the refusal and go on.
            Err(e) => {
                let e = CityCardError::from(e);
                p.refusal(&e.user_message(p.lang))?;
                p.ids(format!("booking error: {e}"))?;
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
        let (name, total) = (mask_name(patient.name), y(quote.total));
        p.say(
            format!("{name}在{HOSPITAL_NAME_ZH}（三级医院）看夜间门诊：费用 {total}，付款前先算好各方分担"),
            format!(
                "{name} at {HOSPITAL_NAME}'s evening clinic (tertiary): bill {total}, worked out before paying"
            ),
        )?;
        let record = billing.settle(me, &self.run_key("bill")?, &request).await?;
        let b = &record.breakdown;
        let ratio = (b.fund_ratio * rust_decimal::Decimal::from(100)).normalize();
        let (fund, current, accumulated, cash) = (
            y(b.fund_paid),
            y(b.current_year_account_paid),
            y(b.accumulated_account_paid),
            y(b.cash_paid),
        );
        p.say(
            format!(
                "已结算：医保统筹基金付 {fund}（起付线以上部分的 {ratio}%），当年账户付 {current}，历年账户付 {accumulated}，电子钱包付现金部分 {cash}"
            ),
            format!(
                "paid: the insurance pooled fund {fund} ({ratio}% above the deductible), this year's medical account {current}, savings of earlier years {accumulated}, the e-wallet (cash) {cash}"
            ),
        )?;
        let (within, deductible, co, own) = (
            y(b.within_policy),
            y(b.deductible_applied),
            y(b.co_payment),
            y(b.fully_self_paid),
        );
        p.say(
            format!("医保范围内 {within}，起付线 {deductible}，个人自付 {co}，全自费 {own}"),
            format!(
                "covered by the insurance {within}, deductible {deductible}, co-payment {co}, not covered {own}"
            ),
        )?;
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
        let category = match s.category {
            Some(PersonCategory::Employee) => ("在职职工", "employed"),
            Some(PersonCategory::FlexibleEmployment) => ("灵活就业", "self-employed"),
            Some(PersonCategory::Retired) => ("退休", "retired"),
            Some(PersonCategory::Resident) => ("城乡居民", "resident"),
            _ => ("未知", "unknown"),
        };
        p.say(
            format!("参保身份：{}", category.0),
            format!("insured as: {}", category.1),
        )?;
        for e in &s.employers {
            let (name, district) = (
                e.name.as_deref().unwrap_or(e.id.as_str()),
                e.district.as_deref().unwrap_or("-"),
            );
            let (from, to) = (e.first_month, e.last_month);
            p.say(
                format!("工作单位 {name}（{district}）{from} – {to}"),
                format!("employer {name} ({district}) {from} – {to}"),
            )?;
        }
        for i in &s.insurances {
            use citycard_healthcare::social::{ContributionStatus, Insurance};
            let name = match i.insurance {
                Insurance::Pension => ("养老保险", "pension"),
                Insurance::Medical => ("医疗保险", "medical"),
                Insurance::Unemployment => ("失业保险", "unemployment"),
                Insurance::WorkInjury => ("工伤保险", "work injury"),
                Insurance::Maternity => ("生育保险", "maternity"),
            };
            let latest = match i.current_status {
                Some(ContributionStatus::Paid) => ("已缴", "paid"),
                Some(ContributionStatus::Arrears) => ("欠缴", "unpaid"),
                Some(ContributionStatus::Suspended) => ("暂停", "suspended"),
                None => ("-", "-"),
            };
            let (years, months) = (i.cumulative_months / 12, i.cumulative_months % 12);
            let (base, arrears, employer, employee) = (
                i.current_base.map_or("-".into(), y),
                y(i.arrears),
                y(i.employer_paid_this_year),
                y(i.employee_paid_this_year),
            );
            p.say(
                format!(
                    "{:<6} 累计缴费 {years} 年 {months} 个月；最近一个月{}，缴费基数 {base}；欠缴 {arrears}；{} 年单位缴 {employer}，个人缴 {employee}",
                    name.0, latest.0, s.year
                ),
                format!(
                    "{:<13} {years} years {months} months paid; latest month {} on base {base}; owed {arrears}; paid in {} by the employer {} / by him {employee}",
                    name.1, latest.1, s.year, employer
                ),
            )?;
        }
        if let Some(m) = &s.medical_accounts {
            let (c, a) = (y(m.current_year), y(m.accumulated));
            p.say(
                format!("医保个人账户：当年账户 {c}，历年账户 {a}"),
                format!("medical accounts: this year's {c}, savings of earlier years {a}"),
            )?;
        }
        Ok(())
    }

    /// Names for the accounts a statement may show as counterparties.
    fn labels(
        &self,
        operators: &BTreeMap<String, Money>,
        lang: Lang,
    ) -> BTreeMap<AccountId, String> {
        let mut labels = BTreeMap::new();
        for platform in [Platform::Alipay, Platform::WechatPay, Platform::UnionPay] {
            labels.insert(
                Accounts::clearing(&platform),
                platform_name(&platform, lang),
            );
        }
        for operator in operators
            .keys()
            .map(String::as_str)
            .chain(["hz_bus", "hz_metro"])
        {
            labels.insert(Accounts::revenue(operator), operator_name(operator, lang));
        }
        labels.insert(
            Accounts::hospital(HOSPITAL),
            lang.pick(HOSPITAL_NAME_ZH, HOSPITAL_NAME).to_owned(),
        );
        labels.insert(
            Accounts::pooled_fund(),
            lang.pick("医保统筹基金", "the insurance pooled fund")
                .to_owned(),
        );
        labels.insert(Accounts::refunds(), lang.pick("退款", "refunds").to_owned());
        labels
    }
}

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

/// Why a gate refused a ride code, in words.
fn rejection_words(why: &citycard_transit::Rejection, lang: Lang) -> String {
    use citycard_transit::Rejection;
    match why {
        Rejection::Replayed => lang.pick("这个码已经用过了", "this code was already used"),
        Rejection::Expired => lang.pick("这个码已过期", "this code has expired"),
        Rejection::Tampered => lang.pick("这个码被改动过", "this code was altered"),
        _ => lang.pick("闸机不接受这个码", "the gate does not accept this code"),
    }
    .to_owned()
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
