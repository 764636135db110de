//! `citycard drill` (hidden): crash drills on a SQLite data directory, or
//! with `--database URL` on PostgreSQL (vault keys stay in the directory;
//! there the tests kill the process from outside and `dump` is refused:
//! they read the database themselves).
//!
//! Each scenario does a fixed, seeded amount of work through [`CityCard`] with
//! fixed idempotency keys, so running it again after a crash continues the
//! same work. `dump` prints the state that must not depend on crashes (cards,
//! bindings, trips, ledger transfers and balances, claims left in progress,
//! `PRAGMA integrity_check`) as canonical JSON.
//!
//! With `CITYCARD_DRILL_CRASH_AT_COMMIT=N` in the environment, the process
//! kills itself with SIGKILL inside its Nth SQLite commit (counted from the
//! end of opening the store): everything before that commit is durable, that
//! commit is not. `--attempt K` puts the clock K × 10 minutes later, past the
//! lease of any claim an earlier, killed attempt left behind.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{Duration, NaiveDate, TimeZone, Utc};
use citycard::binding::{
    BindRequest, ConsentInput, DataCategory, PassSerial, PassUpdate, PlatformWallet, PortError,
    RemovalReason, SimulatedWallet, WalletPass,
};
use citycard::core::{
    IdempotencyKey, IdempotencyStore, ManualClock, Money, OperatorRole, Platform, Principal,
    Sensitive,
};
use citycard::identity::{IdNumber, KnownPerson, RealNameRequest, RegionCode, Sex};
use citycard::keys::FileKeyProvider;
use citycard::sqlite::{Database, SqliteIdempotencyStore};
use citycard::transit::taps_from_csv;
use citycard::{Accounts, CityCard, NewCitizenCard};
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::{CliError, runtime};

/// The environment variable naming the commit to die in.
pub const CRASH_AT_COMMIT: &str = "CITYCARD_DRILL_CRASH_AT_COMMIT";

/// Arguments of `citycard drill`.
#[derive(Debug, Args)]
pub struct DrillArgs {
    /// What to do.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// The data directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// How many cardholders.
    #[arg(long, default_value_t = 40)]
    pub cards: u32,
    /// The first cardholder's number (two processes may work on disjoint ranges).
    #[arg(long, default_value_t = 0)]
    pub from: u32,
    /// Work on this PostgreSQL database instead of the directory's SQLite file.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Which run this is (0 first); moves the clock 10 minutes per attempt.
    #[arg(long, default_value_t = 0)]
    pub attempt: u32,
    /// The seed of the tap file.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// A drill scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Enrol, issue a card to and top up every cardholder.
    Populate,
    /// Settle one day of seeded taps of every card.
    Settle,
    /// Register, verify and bind a platform account for every cardholder;
    /// the wallet loses its first answer to every pass.
    Bind,
    /// Enrol every cardholder and issue their cards as batches (chunks of
    /// four: one write transaction each).
    Migrate,
    /// Print the canonical state.
    Dump,
}

fn domain(e: impl std::fmt::Display) -> CliError {
    CliError::Domain(e.to_string())
}

fn key(text: &str) -> Result<IdempotencyKey, CliError> {
    IdempotencyKey::parse(text).map_err(domain)
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 26).unwrap_or_default()
}

/// Cardholder `i`: name, ID number, card number.
fn cardholder(i: u32) -> Result<(String, IdNumber, String), CliError> {
    let birth = NaiveDate::from_ymd_opt(1985, 1, 1).unwrap_or_default()
        + Duration::days(i64::from(i / 400));
    let sex = if i.is_multiple_of(2) {
        Sex::Female
    } else {
        Sex::Male
    };
    let sequence = u16::try_from(i % 400 + 1).map_err(domain)?;
    let id_number = IdNumber::generate(
        RegionCode::new(330106).ok_or_else(|| domain("region 330106"))?,
        birth,
        sex,
        sequence,
    )
    .map_err(domain)?;
    Ok((
        format!("市民{i}"),
        id_number,
        format!("33010{:011}", u64::from(i) + 1),
    ))
}

/// A wallet whose first answer to each pass in this process is lost (the pass is added).
#[derive(Default)]
struct LossyWallet {
    inner: SimulatedWallet,
    answered: Mutex<std::collections::HashSet<String>>,
}

#[async_trait]
impl PlatformWallet for LossyWallet {
    async fn add_pass(&self, pass: &WalletPass) -> Result<(), PortError> {
        self.inner.add_pass(pass).await?;
        let first = self
            .answered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pass.serial.to_string());
        if first {
            Err(PortError::UnknownOutcome)
        } else {
            Ok(())
        }
    }

    async fn update_pass(
        &self,
        platform: &Platform,
        serial: &PassSerial,
        update: &PassUpdate,
    ) -> Result<(), PortError> {
        self.inner.update_pass(platform, serial, update).await
    }

    async fn remove_pass(
        &self,
        platform: &Platform,
        serial: &PassSerial,
        reason: RemovalReason,
    ) -> Result<(), PortError> {
        self.inner.remove_pass(platform, serial, reason).await
    }

    async fn pass(
        &self,
        platform: &Platform,
        serial: &PassSerial,
    ) -> Result<Option<WalletPass>, PortError> {
        self.inner.pass(platform, serial).await
    }
}

/// Counts commits; dies with SIGKILL inside the Nth when the environment asks.
fn arm_crash(db: &Database) -> Result<Arc<AtomicU64>, CliError> {
    let at: Option<u64> = match std::env::var(CRASH_AT_COMMIT) {
        Ok(text) => Some(text.parse().map_err(|_| {
            CliError::Usage(format!("{CRASH_AT_COMMIT} must be a number, not {text:?}"))
        })?),
        Err(_) => None,
    };
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    db.lock().commit_hook(Some(move || {
        if Some(counter.fetch_add(1, Ordering::SeqCst) + 1) == at {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &std::process::id().to_string()])
                .status();
            // The signal is on its way; never return into the commit.
            loop {
                std::thread::park();
            }
        }
        false
    }));
    Ok(seen)
}

/// Cards (and persons) per batch chunk in the drill (one write transaction each).
const DRILL_CHUNK_CARDS: usize = 4;

/// Trips per settlement chunk in the drill (one write transaction each).
const DRILL_CHUNK_TRIPS: usize = 4;

async fn open(
    dir: &Path,
    database: Option<&str>,
    attempt: u32,
    lossy: bool,
) -> Result<(CityCard, Arc<AtomicU64>), CliError> {
    std::fs::create_dir_all(dir)?;
    let start = Utc
        .with_ymd_and_hms(2026, 11, 26, 15, 0, 0)
        .single()
        .unwrap_or_default();
    let clock = Arc::new(ManualClock::new(
        start + Duration::minutes(10 * i64::from(attempt)),
    ));
    let keys = Arc::new(FileKeyProvider::open_or_create(dir.join("keys.json")).map_err(domain)?);
    let storage = match database {
        Some(url) => citycard::Storage::Postgres(url.to_owned()),
        None => citycard::Storage::Sqlite(dir.join("citycard.db")),
    };
    let mut builder = CityCard::builder()
        .storage(storage)
        .clock(clock)
        .key_provider(keys)
        // Small chunks: every chunk boundary is a point the drill can be killed at.
        .settlement_chunk_trips(DRILL_CHUNK_TRIPS)
        .issue_chunk_cards(DRILL_CHUNK_CARDS);
    if lossy {
        builder = builder.platform_wallet(Arc::new(LossyWallet::default()));
    }
    let city = builder.build().await.map_err(domain)?;
    // The drill's operator works the card desk and the finance desk.
    if let Principal::Operator { operator } = operator()? {
        for role in [OperatorRole::CardDesk, OperatorRole::Finance] {
            city.operator_roles().grant(operator.clone(), role);
        }
    }
    let commits = match city.database() {
        Some(db) => arm_crash(db)?,
        None => Arc::default(),
    };
    Ok((city, commits))
}

fn operator() -> Result<Principal, CliError> {
    Ok(Principal::Operator {
        operator: "opr-drill".parse().map_err(domain)?,
    })
}

async fn populate(city: &CityCard, cards: std::ops::Range<u32>) -> Result<(), CliError> {
    let operator = operator()?;
    for i in cards {
        let (name, id_number, number) = cardholder(i)?;
        let person = city
            .identity()
            .enroll_person(
                &operator,
                &Sensitive::new(name),
                &id_number.to_sensitive(),
                &key(&format!("enrol-{i}"))?,
            )
            .await
            .map_err(domain)?;
        let card = city
            .issue_card(
                &operator,
                &key(&format!("issue-{i}"))?,
                &NewCitizenCard {
                    number,
                    kind: "standard".into(),
                    holder: person.id.clone(),
                    id_number: id_number.to_sensitive(),
                    services: None,
                },
            )
            .await
            .map_err(domain)?;
        // Every fifth card gets too little for its day of rides: arrears.
        let amount = if i.is_multiple_of(5) {
            Money::from_yuan(1)
        } else {
            Money::from_yuan(20 + i64::from(i % 7))
        };
        city.wallet()
            .top_up(
                &Principal::System,
                &card.id,
                amount,
                &Platform::Alipay,
                &key(&format!("topup-{i}"))?,
            )
            .await
            .map_err(domain)?;
    }
    Ok(())
}

async fn migrate(city: &CityCard, cards: u32) -> Result<(), CliError> {
    let operator = operator()?;
    let mut people = Vec::new();
    let mut numbers = Vec::new();
    for i in 0..cards {
        let (name, id_number, number) = cardholder(i)?;
        people.push((Sensitive::new(name), id_number.to_sensitive()));
        numbers.push(number);
    }
    let persons = city
        .identity()
        .enroll_persons(
            &operator,
            &key("migrate-persons")?,
            &people,
            DRILL_CHUNK_CARDS,
        )
        .await
        .map_err(domain)?;
    let mut batch = Vec::new();
    for ((person, (_, id_number)), number) in persons.into_iter().zip(people).zip(numbers) {
        batch.push(NewCitizenCard {
            number,
            kind: "standard".into(),
            holder: person.map_err(domain)?,
            id_number,
            services: None,
        });
    }
    let report = city
        .issue_cards(&operator, &key("migrate-cards")?, &batch)
        .await
        .map_err(domain)?;
    if let Some((i, reason)) = report.refused().next() {
        return Err(domain(format!("card {i} refused: {reason}")));
    }
    Ok(())
}

/// splitmix64: a small seeded generator for the tap file.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % below.max(1)
    }
}

/// The seeded tap file of every card for the drill day (CSV).
fn tap_file(city: &CityCard, cards: std::ops::Range<u32>, seed: u64) -> Result<String, CliError> {
    const STOPS: [&str; 3] = ["m_xianghu", "m_qianjiang", "m_wulin"];
    let mut rng = Rng(seed);
    let mut csv = String::from("card,direction,network,stop,route,vehicle,reader,at\n");
    for i in cards {
        let (_, _, number) = cardholder(i)?;
        let number = city.cards().parse_card_number(&number).map_err(domain)?;
        let card = Accounts::wallet(&number).get();
        for trip in 0..1 + rng.next(4) {
            let minutes = 7 * 60 + trip * 150 + rng.next(60);
            let at = |m: u64| format!("2026-11-26T{:02}:{:02}:00+08:00", m / 60, m % 60);
            if rng.next(2) == 0 {
                let vehicle = 500 + rng.next(3);
                csv.push_str(&format!("{card},in,,,b7,{vehicle},2,{}\n", at(minutes)));
            } else {
                let from = STOPS[usize::try_from(rng.next(3)).unwrap_or(0)];
                let to = STOPS[usize::try_from(rng.next(3)).unwrap_or(0)];
                csv.push_str(&format!("{card},in,metro,{from},,,1,{}\n", at(minutes)));
                csv.push_str(&format!("{card},out,metro,{to},,,1,{}\n", at(minutes + 35)));
            }
        }
    }
    Ok(csv)
}

async fn settle(
    city: &CityCard,
    cards: std::ops::Range<u32>,
    seed: u64,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let taps =
        taps_from_csv(city.transit().fares(), &tap_file(city, cards, seed)?).map_err(domain)?;
    let report = city
        .transit()
        .settlement()
        .settle_day(&Principal::System, day(), taps)
        .await
        .map_err(domain)?;
    serde_json::to_writer(&mut *out, &report)?;
    writeln!(out)?;
    Ok(())
}

async fn bind(city: &CityCard, cards: std::ops::Range<u32>) -> Result<(), CliError> {
    let operator = operator()?;
    let platform = Principal::Platform {
        platform: Platform::Alipay,
    };
    let verifier = city
        .simulated_verifier()
        .ok_or_else(|| domain("the drill needs the simulated verifier"))?;
    for i in cards {
        let (name, id_number, number) = cardholder(i)?;
        verifier.register(&id_number, KnownPerson::named(&name));
        // A replay of the enrolment: the person it made.
        let person = city
            .identity()
            .enroll_person(
                &operator,
                &Sensitive::new(name.clone()),
                &id_number.to_sensitive(),
                &key(&format!("enrol-{i}"))?,
            )
            .await
            .map_err(domain)?;
        let account = city
            .identity()
            .register_account(
                &platform,
                Platform::Alipay,
                &format!("ext-{i}"),
                &key(&format!("reg-{i}"))?,
            )
            .await
            .map_err(domain)?;
        city.identity()
            .verify_real_name(
                &platform,
                &account.id,
                &RealNameRequest::two_factor(&name, id_number.reveal()),
                &key(&format!("verify-{i}"))?,
            )
            .await
            .map_err(domain)?;
        city.cards()
            .bind(
                &Principal::cardholder(person.id),
                &key(&format!("bind-{i}"))?,
                &BindRequest {
                    platform: Platform::Alipay,
                    account: account.id,
                    card_number: number,
                    id_number: id_number.to_sensitive(),
                    consent: ConsentInput {
                        purpose: "use the citizen card in Alipay".into(),
                        data_categories: [DataCategory::CardNumber, DataCategory::Balance].into(),
                        text_version: "2026-01".into(),
                        channel: "alipay_app".into(),
                    },
                },
            )
            .await
            .map_err(domain)?;
    }
    Ok(())
}

/// A trip row: id, card, day, operator, base and amount (fen), completeness, payment.
type TripRow = (String, i64, String, String, i64, i64, String, String);

/// The state a crash must not change.
#[derive(Debug, Serialize)]
struct Dump {
    persons: i64,
    platform_accounts: Vec<(String, String, String)>,
    cards: Vec<(String, String)>,
    bindings: Vec<(String, String, Option<String>, String)>,
    trips: Vec<TripRow>,
    arrears: Vec<(i64, String, i64)>,
    deny_list: Vec<(i64, String)>,
    transfers: Vec<(u64, u64, u64, i64, u16)>,
    failed_transfers: Vec<(u64, String)>,
    balances: Vec<(u64, i64)>,
    claims_in_progress: Vec<(String, String)>,
    integrity: String,
}

fn rows<T>(
    db: &Database,
    sql: &str,
    f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, CliError> {
    db.with(|c| {
        let mut stmt = c.prepare(sql)?;
        stmt.query_map([], f)?.collect()
    })
    .map_err(domain)
}

async fn dump(city: &CityCard, out: &mut dyn Write) -> Result<(), CliError> {
    let db = city
        .database()
        .ok_or_else(|| domain("the drill's dump reads SQLite: on PostgreSQL read the database"))?;
    let status = |data: String| -> String {
        serde_json::from_str::<serde_json::Value>(&data)
            .ok()
            .and_then(|v| v.get("status").map(|s| s.to_string()))
            .unwrap_or_default()
    };
    let (transfers, failed, balances) = {
        let e = city
            .ledger()
            .export(&Principal::System)
            .await
            .map_err(domain)?;
        let mut transfers: Vec<_> = e
            .transfers
            .iter()
            .map(|t| {
                (
                    t.id.get(),
                    t.debit_account_id.get(),
                    t.credit_account_id.get(),
                    t.amount.fen(),
                    t.code,
                )
            })
            .collect();
        transfers.sort_unstable();
        let failed: Vec<_> = e
            .failures
            .iter()
            .map(|f| (f.id.get(), format!("{:?}", f.result)))
            .collect();
        let mut balances: Vec<_> = e
            .accounts
            .iter()
            .filter(|a| !a.posted().is_zero())
            .map(|a| (a.id.get(), a.posted().fen()))
            .collect();
        balances.sort_unstable();
        (transfers, failed, balances)
    };
    let claims = SqliteIdempotencyStore::new(db.clone())
        .in_progress(1000)
        .await
        .map_err(domain)?
        .into_iter()
        .map(|r| (r.scope, r.key.to_string()))
        .collect();
    let dump = Dump {
        persons: rows(db, "SELECT count(*) FROM identity_persons", |r| r.get(0))?
            .first()
            .copied()
            .unwrap_or_default(),
        platform_accounts: rows(
            db,
            "SELECT platform, external_id, level FROM identity_platform_accounts ORDER BY 1, 2",
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?,
        cards: rows(
            db,
            "SELECT number, data FROM binding_cards ORDER BY number",
            |r| Ok((r.get(0)?, r.get::<_, String>(1)?)),
        )?
        .into_iter()
        .map(|(n, d)| (n, status(d)))
        .collect(),
        bindings: rows(
            db,
            "SELECT c.number, b.platform, a.external_id, b.state FROM binding_bindings b
             JOIN binding_cards c ON c.id = b.card_id
             LEFT JOIN identity_platform_accounts a ON a.id = b.account
             ORDER BY 1, 2, 3, 4",
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?,
        trips: rows(
            db,
            // The stored forms written out (see the SQLite transit schema v4).
            "SELECT id, card, day, operator, base_fen, amount_fen, completeness, payment FROM (
                SELECT CASE WHEN typeof(trip) = 'integer'
                        THEN 'trip-' || printf('cr%016x', card) || '-' || (trip >> 8) || '-'
                            || (trip & 255)
                        ELSE trip END AS id,
                    card, date(day * 86400, 'unixepoch') AS day, operator, base_fen, amount_fen,
                    CASE completeness WHEN 0 THEN 'complete' WHEN 1 THEN 'missing_tap_out'
                        ELSE 'missing_tap_in' END AS completeness,
                    CASE payment WHEN 0 THEN 'charged' WHEN 1 THEN 'free' ELSE 'arrears' END
                        AS payment
                FROM transit_trips)
             ORDER BY id",
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            },
        )?,
        arrears: rows(
            db,
            "SELECT card, trip, amount_fen FROM transit_arrears ORDER BY 1, 2",
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?,
        deny_list: rows(
            db,
            "SELECT card, reason FROM transit_deny_list ORDER BY 1, 2",
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?,
        transfers,
        failed_transfers: failed,
        balances,
        claims_in_progress: claims,
        integrity: rows(db, "PRAGMA integrity_check", |r| r.get::<_, String>(0))?.join("; "),
    };
    serde_json::to_writer_pretty(&mut *out, &dump)?;
    writeln!(out)?;
    Ok(())
}

/// Runs `citycard drill`.
pub fn run(args: &DrillArgs, out: &mut dyn Write) -> Result<(), CliError> {
    runtime()?.block_on(async {
        let lossy = args.scenario == Scenario::Bind;
        let (city, commits) = open(
            &args.data_dir,
            args.database.as_deref(),
            args.attempt,
            lossy,
        )
        .await?;
        let cards = args.from..args.from.saturating_add(args.cards);
        match args.scenario {
            Scenario::Populate => populate(&city, cards).await,
            Scenario::Settle => settle(&city, cards, args.seed, out).await,
            Scenario::Bind => bind(&city, cards).await,
            Scenario::Migrate => migrate(&city, args.cards).await,
            Scenario::Dump => dump(&city, out).await,
        }?;
        // The crash tests pick their kill points from this count.
        eprintln!("drill: {} commits", commits.load(Ordering::SeqCst));
        Ok(())
    })
}
