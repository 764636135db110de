//! Card issue through the facade on a synced SQLite file: `--cards` cards
//! issued one by one by concurrent callers (`CityCard::issue_card`, group
//! commit), then `--cards` more as one batch (`CityCard::issue_cards`, one
//! write transaction per chunk), and what each cost.
//!
//! ```text
//! cargo run --release -p citycard --example issue -- --cards 20000 [--concurrency 256] [--data-dir DIR]
//! ```
//!
//! Issuing needs the holder's id and ID number, not an enrolment, so the
//! holders here are made up (enrolment is measured by `city_day`). Figures:
//! cards/s for each path, write transactions per card (SQLite commits,
//! `Database::commits`; with `synchronous = FULL` each is one WAL fsync),
//! and the machine's load average. Without `--data-dir` it runs in a fresh
//! directory under the system's temporary directory and removes it afterwards.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use chrono::{Duration, NaiveDate};
use citycard::core::{IdempotencyKey, ManualClock, PersonId, Principal};
use citycard::identity::{IdNumber, RegionCode, Sex};
use citycard::{CityCard, NewCitizenCard};

struct Args {
    cards: usize,
    concurrency: usize,
    dir: Option<PathBuf>,
}

fn args() -> Result<Args, String> {
    let mut out = Args {
        cards: 20_000,
        concurrency: 256,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--cards" => out.cards = value.parse().map_err(|_| "--cards takes a number")?,
            "--concurrency" => {
                out.concurrency = value.parse().map_err(|_| "--concurrency takes a number")?
            }
            "--data-dir" => out.dir = Some(PathBuf::from(value)),
            other => {
                return Err(format!(
                    "unknown flag {other}: use --cards, --concurrency, --data-dir"
                ));
            }
        }
    }
    if out.cards == 0 || out.concurrency == 0 {
        return Err("--cards and --concurrency must be at least 1".into());
    }
    Ok(out)
}

fn key(text: String) -> IdempotencyKey {
    text.parse().expect("generated keys are valid")
}

/// Card `i`, its made-up holder and the holder's ID number.
fn card(i: usize) -> Result<NewCitizenCard, Box<dyn std::error::Error>> {
    let region = RegionCode::new(330106).ok_or("region 330106 is valid")?;
    let born = NaiveDate::from_ymd_opt(1950, 1, 1).ok_or("a valid day")?;
    let id_number = IdNumber::generate(
        region,
        born + Duration::days((i / 900) as i64),
        if i.is_multiple_of(2) {
            Sex::Female
        } else {
            Sex::Male
        },
        (i % 900) as u16 + 1,
    )?;
    Ok(NewCitizenCard {
        number: format!("3301{:012}", 100_000 + i),
        kind: if i.is_multiple_of(10) {
            "elderly"
        } else {
            "standard"
        }
        .into(),
        holder: PersonId::parse(&format!("psn-issue-{i}"))?,
        id_number: id_number.to_sensitive(),
        services: None,
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args().map_err(|e| format!("issue: {e}"))?;
    let (dir, temporary) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("citycard-issue-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir)?;
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0));
    let city = Arc::new(
        CityCard::builder()
            .sqlite(dir.join("citycard.db"))
            .clock(clock)
            .build()
            .await?,
    );
    let db = city.database().expect("the example runs on SQLite").clone();
    let system = Principal::System;
    println!("load average before: {}", loadavg());

    // Single issues, `concurrency` callers at once (card desks across the city).
    let singles: Arc<Vec<NewCitizenCard>> =
        Arc::new((0..args.cards).map(card).collect::<Result<_, _>>()?);
    let next = Arc::new(AtomicUsize::new(0));
    let before = db.commits();
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.min(args.cards) {
        let (city, singles, next, system) =
            (city.clone(), singles.clone(), next.clone(), system.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(request) = singles.get(i) else {
                    return Ok::<_, citycard::CityCardError>(());
                };
                city.issue_card(&system, &key(format!("issue-{i}")), request)
                    .await?;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    let single = started.elapsed();
    let single_commits = db.commits() - before;
    println!(
        "single: {} cards through CityCard::issue_card, {} callers at once, in {:.2?} ({:.0} cards/s), {:.3} write transactions per card",
        args.cards,
        args.concurrency,
        single,
        args.cards as f64 / single.as_secs_f64(),
        single_commits as f64 / args.cards as f64
    );
    println!("load average: {}", loadavg());

    // One batch (a card base migrated from an older system).
    let batch: Vec<NewCitizenCard> = (args.cards..2 * args.cards)
        .map(card)
        .collect::<Result<_, _>>()?;
    let before = db.commits();
    let started = Instant::now();
    let report = city
        .issue_cards(&system, &key("migration-1".into()), &batch)
        .await?;
    let bulk = started.elapsed();
    let bulk_commits = db.commits() - before;
    let refused = report.refused().count();
    println!(
        "bulk: {} cards through CityCard::issue_cards in {:.2?} ({:.0} cards/s), {} refused, {} write transactions ({:.5} per card, {} cards per chunk)",
        batch.len(),
        bulk,
        batch.len() as f64 / bulk.as_secs_f64(),
        refused,
        bulk_commits,
        bulk_commits as f64 / batch.len() as f64,
        citycard::ISSUE_CHUNK
    );
    println!("load average: {}", loadavg());

    // A retry of the batch replays it.
    let started = Instant::now();
    let again = city
        .issue_cards(&system, &key("migration-1".into()), &batch)
        .await?;
    assert_eq!(again, report, "a retry replays the batch");
    println!("bulk retry: replayed in {:.2?}", started.elapsed());
    drop(city);
    drop(db);
    if temporary {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
