//! A city day through the facade on PostgreSQL, with a second app instance
//! contending: enrols cardholders, issues and tops up their cards (bulk
//! paths, not timed as figures), settles a generated day of taps on one
//! instance, then binds cards and tops up wallets from two instances at once.
//!
//! ```text
//! cargo run --release -p citycard --example pg_day -- --database postgres://… \
//!     [--taps 200000] [--cards 4000] [--binds 2000] [--top-ups 4000] [--bookings 2000] [--concurrency 16]
//! ```
//!
//! Give the database a schema of its own (`?options=-c%20search_path%3Dday1`
//! after `CREATE SCHEMA day1`): the example writes a full city into it.
//! Figures: trips/s and write transactions per trip of the settlement
//! (`citycard_postgres::Database::commits`), binds/s, top-ups/s and bookings/s
//! with two instances (two `CityCard`s, separate pools) working at once,
//! `--concurrency` callers each (bookings: 20 patients per slot, consecutive
//! callers on the same slot). Prints the load average before and after.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use chrono::{Duration, NaiveDate};
use citycard::binding::{BindRequest, CardId, ConsentInput, DataCategory};
use citycard::core::{IdempotencyKey, ManualClock, Money, Platform, Principal, Sensitive};
use citycard::healthcare::{AppointmentStatus, BookRequest, HealthcareError};
use citycard::identity::{IdNumber, KnownPerson, RealNameRequest, RegionCode, Sex};
use citycard::transit::workload::city_day;
use citycard::{CityCard, NewCitizenCard};

struct Args {
    database: String,
    taps: usize,
    cards: usize,
    binds: usize,
    top_ups: usize,
    bookings: usize,
    concurrency: usize,
}

fn args() -> Result<Args, String> {
    let mut out = Args {
        database: String::new(),
        taps: 200_000,
        cards: 4_000,
        binds: 2_000,
        top_ups: 4_000,
        bookings: 2_000,
        concurrency: 16,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{flag} takes a number"))
        };
        match flag.as_str() {
            "--database" => out.database = value.clone(),
            "--taps" => out.taps = number()?,
            "--cards" => out.cards = number()?,
            "--binds" => out.binds = number()?,
            "--top-ups" => out.top_ups = number()?,
            "--bookings" => out.bookings = number()?,
            "--concurrency" => out.concurrency = number()?.max(1),
            other => {
                return Err(format!(
                    "unknown flag {other}: use --database, --taps, --cards, --binds, --top-ups, --bookings, --concurrency"
                ));
            }
        }
    }
    if out.database.is_empty() {
        return Err("--database postgres://… is required".into());
    }
    if out.cards == 0 || out.binds > out.cards || out.bookings > out.cards {
        return Err("--cards must be at least 1 and at least --binds and --bookings".into());
    }
    Ok(out)
}

fn key(text: String) -> IdempotencyKey {
    text.parse().expect("generated keys are valid")
}

fn commits(city: &CityCard) -> u64 {
    city.postgres_database().map_or(0, |db| db.commits())
}

/// Runs `work(instance, i)` for `i` in `0..n`, `concurrency` callers on each
/// of the two instances, taking items from one shared counter; returns the seconds.
async fn contended<F, Fut>(
    instances: [Arc<CityCard>; 2],
    n: usize,
    concurrency: usize,
    work: F,
) -> Result<f64, Box<dyn std::error::Error + Send + Sync>>
where
    F: Fn(Arc<CityCard>, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>> + Send,
{
    let work = Arc::new(work);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for city in &instances {
        for _ in 0..concurrency {
            let (city, next, work) = (city.clone(), next.clone(), work.clone());
            workers.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(());
                    }
                    work(city.clone(), i).await?;
                }
            });
        }
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(started.elapsed().as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = args().map_err(|e| format!("pg_day: {e}"))?;
    println!("load average before: {}", loadavg());
    let day = NaiveDate::from_ymd_opt(2026, 11, 26).expect("a valid day");
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 25, 9, 0, 0));
    // Both instances share the vault keys (a deployment's key service):
    // blind indexes and sealed personal data must agree across instances.
    let keys = Arc::new(citycard::identity::MemoryKeyProvider::random()?);
    let open = || async {
        CityCard::builder()
            .postgres(args.database.clone())
            .clock(clock.clone())
            .key_provider(keys.clone())
            .build()
            .await
    };
    let a = Arc::new(open().await?);
    let b = Arc::new(open().await?);
    let system = Principal::System;

    // Setup: bulk enrolment and issue, top-ups in ledger batches of 8,190.
    let started = Instant::now();
    let region = RegionCode::new(330106).ok_or("region 330106 is valid")?;
    let born = NaiveDate::from_ymd_opt(1960, 1, 1).expect("a valid day");
    let mut people = Vec::with_capacity(args.cards);
    let mut numbers = Vec::with_capacity(args.cards);
    for i in 0..args.cards {
        let number = IdNumber::generate(
            region,
            born + Duration::days((i / 900) as i64),
            if i % 2 == 0 { Sex::Female } else { Sex::Male },
            (i % 900) as u16 + 1,
        )?;
        numbers.push(number);
        people.push((Sensitive::new(format!("市民{i}")), number.to_sensitive()));
    }
    let persons = a
        .identity()
        .enroll_persons(
            &system,
            &key("enrol-all".into()),
            &people,
            citycard::ISSUE_CHUNK,
        )
        .await?;
    let mut cards = Vec::with_capacity(args.cards);
    let mut holders = Vec::with_capacity(args.cards);
    for (i, (person, (_, id_number))) in persons.into_iter().zip(&people).enumerate() {
        let holder = person.map_err(|reason| format!("enrolment {i} refused: {reason}"))?;
        holders.push(holder.clone());
        cards.push(NewCitizenCard {
            number: format!("3301{:012}", 500_000 + i),
            kind: "standard".into(),
            holder,
            id_number: id_number.clone(),
            services: None,
        });
    }
    let report = a
        .issue_cards(&system, &key("issue-all".into()), &cards)
        .await?;
    if let Some((i, reason)) = report.refused().next() {
        return Err(format!("card {i} refused: {reason}").into());
    }
    let card_ids: Vec<CardId> = report.issued().map(|(_, id)| id.clone()).collect();
    let mut refs = Vec::with_capacity(args.cards);
    let mut top_ups = Vec::with_capacity(8_190);
    for (i, card) in cards.iter().enumerate() {
        let wallet = citycard::Accounts::wallet(&a.cards().parse_card_number(&card.number)?);
        refs.push(citycard::transit::CardRef(wallet.get()));
        top_ups.push(citycard::ledger::NewTransfer::new(
            citycard::ledger::TransferId::from_idempotency_key(
                "pg-day.top_up",
                &key(format!("topup-{i}")),
            ),
            citycard::Accounts::clearing(&Platform::Alipay),
            wallet,
            Money::from_yuan(500),
            citycard::glue::money::codes::TOP_UP,
        ));
        if top_ups.len() == 8_190 || i + 1 == cards.len() {
            let batch = std::mem::take(&mut top_ups);
            for result in a.ledger().create_transfers(&system, batch).await? {
                if !result.is_success() {
                    return Err(format!("a top-up was refused: {result:?}").into());
                }
            }
        }
    }
    println!(
        "setup: {} cardholders enrolled, issued and topped up in {:.2?}",
        args.cards,
        started.elapsed()
    );

    // The day's taps, settled on instance A.
    let mut taps = city_day(a.transit().fares(), day, args.taps, 42);
    for tap in &mut taps {
        tap.card = refs[(tap.card.0 as usize - 1) % refs.len()];
    }
    clock.set(chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 11, 26, 15, 0, 0).unwrap());
    let before = commits(&a);
    let started = Instant::now();
    let report = a
        .transit()
        .settlement()
        .settle_day(&system, day, taps)
        .await?;
    let settle = started.elapsed();
    let trips = report.trips_settled.max(1);
    println!(
        "settlement: {} taps → {} trips in {:.2?} ({:.0} trips/s), {:.4} write transactions per trip, {} charged, {} cards failed",
        report.taps.taps,
        report.trips_settled,
        settle,
        report.trips_settled as f64 / settle.as_secs_f64(),
        (commits(&a) - before) as f64 / trips as f64,
        report.charged,
        report.cards_failed.len()
    );

    // Binds from both instances at once (accounts verified beforehand, not timed).
    let alipay = Principal::Platform {
        platform: Platform::Alipay,
    };
    let verifier = a.simulated_verifier().ok_or("the simulated verifier")?;
    let mut requests = Vec::with_capacity(args.binds);
    for i in 0..args.binds {
        let name = format!("市民{i}");
        verifier.register(&numbers[i], KnownPerson::named(&name));
        let account = a
            .identity()
            .register_account(
                &alipay,
                Platform::Alipay,
                &format!("ext-{i}"),
                &key(format!("reg-{i}")),
            )
            .await?;
        a.identity()
            .verify_real_name(
                &alipay,
                &account.id,
                &RealNameRequest::two_factor(&name, numbers[i].reveal()),
                &key(format!("verify-{i}")),
            )
            .await?;
        requests.push((
            Principal::cardholder(holders[i].clone()),
            BindRequest {
                platform: Platform::Alipay,
                account: account.id,
                card_number: cards[i].number.clone(),
                id_number: numbers[i].to_sensitive(),
                consent: ConsentInput {
                    purpose: "use the citizen card in Alipay".into(),
                    data_categories: [DataCategory::CardNumber, DataCategory::Balance].into(),
                    text_version: "2026-01".into(),
                    channel: "alipay_app".into(),
                },
            },
        ));
    }
    let requests = Arc::new(requests);
    let before = commits(&a) + commits(&b);
    let seconds = contended([a.clone(), b.clone()], args.binds, args.concurrency, {
        let requests = requests.clone();
        move |city, i| {
            let requests = requests.clone();
            async move {
                let (holder, request) = &requests[i];
                city.cards()
                    .bind(holder, &key(format!("bind-{i}")), request)
                    .await?;
                Ok(())
            }
        }
    })
    .await?;
    println!(
        "binds: {} from two instances, {} callers each, in {seconds:.2} s ({:.0} binds/s), {:.2} write transactions per bind",
        args.binds,
        args.concurrency,
        args.binds as f64 / seconds,
        (commits(&a) + commits(&b) - before) as f64 / args.binds.max(1) as f64
    );

    // Top-ups from both instances at once: every one moves the shared ledger.
    let card_ids = Arc::new(card_ids);
    let before = commits(&a) + commits(&b);
    let seconds = contended([a.clone(), b.clone()], args.top_ups, args.concurrency, {
        let card_ids = card_ids.clone();
        move |city, i| {
            let card_ids = card_ids.clone();
            async move {
                city.wallet()
                    .top_up(
                        &Principal::System,
                        &card_ids[i % card_ids.len()],
                        Money::from_yuan(1),
                        &Platform::Alipay,
                        &key(format!("contended-{i}")),
                    )
                    .await?;
                Ok(())
            }
        }
    })
    .await?;
    println!(
        "top-ups: {} from two instances, {} callers each, in {seconds:.2} s ({:.0} top-ups/s), {:.2} write transactions per top-up",
        args.top_ups,
        args.concurrency,
        args.top_ups as f64 / seconds,
        (commits(&a) + commits(&b) - before) as f64 / args.top_ups.max(1) as f64
    );

    // Bookings from both instances at once: 20 places per slot, patients
    // taken in order so concurrent callers book the same slot.
    const PLACES: usize = 20;
    let visit = day.succ_opt().ok_or("a next day")?;
    for s in 0..args.bookings.div_ceil(PLACES) {
        a.healthcare()
            .appointments()
            .put_slot(
                &system,
                citycard_testkit::healthcare::slot(
                    &format!("slot-{s}"),
                    &format!("dep-{s}"),
                    visit,
                    20,
                ),
            )
            .await?;
    }
    let holders = Arc::new(holders);
    let retried = Arc::new(AtomicUsize::new(0));
    let before = commits(&a) + commits(&b);
    let seconds = contended([a.clone(), b.clone()], args.bookings, args.concurrency, {
        let holders = holders.clone();
        let retried = retried.clone();
        move |city, i| {
            let holders = holders.clone();
            let retried = retried.clone();
            async move {
                let patient = holders[i].clone();
                let request = BookRequest {
                    slot: format!("slot-{}", i / PLACES).parse()?,
                    patient: patient.clone(),
                    key: key(format!("book-{i}")),
                    allow_waitlist: false,
                };
                // A hot slot can change more often than the service decides
                // again (`Conflict`): the caller retries with the same key.
                let booking = loop {
                    match city
                        .healthcare()
                        .appointments()
                        .book(&Principal::cardholder(patient.clone()), &request)
                        .await
                    {
                        Err(HealthcareError::Conflict(_)) => {
                            retried.fetch_add(1, Ordering::Relaxed);
                        }
                        other => break other?,
                    }
                };
                if booking.appointment.status != AppointmentStatus::Booked {
                    return Err(format!("booking {i} not booked: {booking:?}").into());
                }
                Ok(())
            }
        }
    })
    .await?;
    println!(
        "bookings: {} from two instances, {} callers each, {PLACES} per slot, in {seconds:.2} s ({:.0} bookings/s), {:.2} write transactions per booking, {} caller retries after the service's own bound",
        args.bookings,
        args.concurrency,
        args.bookings as f64 / seconds,
        (commits(&a) + commits(&b) - before) as f64 / args.bookings.max(1) as f64,
        retried.load(Ordering::Relaxed)
    );
    println!("load average after: {}", loadavg());
    Ok(())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
