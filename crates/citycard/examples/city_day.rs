//! A city day through the facade on a synced SQLite file: enrols cardholders,
//! issues and tops up their cards, then settles a generated day of taps
//! through `CityCard`, and prints what it cost.
//!
//! ```text
//! cargo run --release -p citycard --example city_day -- --taps 100000 --cards 2000 [--data-dir DIR]
//! ```
//!
//! Figures: cards/s (enrol + issue + top-up), trips/s of the settlement, write
//! transactions per trip (SQLite commits, `Database::commits`),
//! database bytes per trip and the process's peak resident memory. Without
//! `--data-dir` it runs in a fresh directory under the system's temporary
//! directory and removes it afterwards.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, NaiveDate};
use citycard::core::{IdempotencyKey, ManualClock, Money, Platform, Principal, Sensitive};
use citycard::identity::{IdNumber, RegionCode, Sex};
use citycard::ledger::AccountId;
use citycard::transit::workload::city_day;
use citycard::{CityCard, NewCitizenCard};

struct Args {
    taps: usize,
    cards: usize,
    dir: Option<PathBuf>,
}

fn args() -> Result<Args, String> {
    let mut out = Args {
        taps: 100_000,
        cards: 2_000,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--taps" => out.taps = value.parse().map_err(|_| "--taps takes a number")?,
            "--cards" => out.cards = value.parse().map_err(|_| "--cards takes a number")?,
            "--data-dir" => out.dir = Some(PathBuf::from(value)),
            other => {
                return Err(format!(
                    "unknown flag {other}: use --taps, --cards, --data-dir"
                ));
            }
        }
    }
    if out.cards == 0 {
        return Err("--cards must be at least 1".into());
    }
    Ok(out)
}

fn key(text: String) -> IdempotencyKey {
    text.parse().expect("generated keys are valid")
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// User + system CPU seconds of this process so far (`/proc/self/stat`).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Bytes this process has caused to be written to storage (`/proc/self/io`).
fn written_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    let line = io.lines().find(|l| l.starts_with("write_bytes:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn db_bytes(dir: &std::path::Path) -> u64 {
    ["citycard.db", "citycard.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

// Two workers: the settlement on one, a balance reader on the other.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args().map_err(|e| format!("city_day: {e}"))?;
    let (dir, temporary) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("citycard-city-day-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir)?;
    let day = NaiveDate::from_ymd_opt(2026, 11, 26).expect("a valid day");
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 25, 9, 0, 0));
    let city = Arc::new(
        CityCard::builder()
            .sqlite(dir.join("citycard.db"))
            .clock(clock.clone())
            .build()
            .await?,
    );
    let db = city.database().expect("the example runs on SQLite").clone();
    let system = Principal::System;

    // Cardholders, cards and top-ups, through the bulk paths (a card base
    // migrated from an older system): one enrolment batch, one issue batch,
    // top-ups in ledger batches of 8,190 from the Alipay clearing account.
    let started = Instant::now();
    let before = db.commits();
    let region = RegionCode::new(330106).ok_or("region 330106 is valid")?;
    let born = NaiveDate::from_ymd_opt(1960, 1, 1).expect("a valid day");
    let mut people = Vec::with_capacity(args.cards);
    for i in 0..args.cards {
        let number = IdNumber::generate(
            region,
            born + Duration::days((i / 900) as i64),
            if i % 2 == 0 { Sex::Female } else { Sex::Male },
            (i % 900) as u16 + 1,
        )?;
        people.push((Sensitive::new(format!("市民{i}")), number.to_sensitive()));
    }
    let persons = city
        .identity()
        .enroll_persons(
            &system,
            &key("enrol-all".into()),
            &people,
            citycard::ISSUE_CHUNK,
        )
        .await?;
    let mut cards = Vec::with_capacity(args.cards);
    for (i, (person, (_, id_number))) in persons.into_iter().zip(&people).enumerate() {
        cards.push(NewCitizenCard {
            number: format!("3301{:012}", 500_000 + i),
            kind: "standard".into(),
            holder: person.map_err(|reason| format!("enrolment {i} refused: {reason}"))?,
            id_number: id_number.clone(),
            services: None,
        });
    }
    drop(people);
    let report = city
        .issue_cards(&system, &key("issue-all".into()), &cards)
        .await?;
    if let Some((i, reason)) = report.refused().next() {
        return Err(format!("card {i} refused: {reason}").into());
    }
    let mut refs = Vec::with_capacity(args.cards);
    let mut top_ups = Vec::with_capacity(8_190);
    for (i, card) in cards.iter().enumerate() {
        let wallet = citycard::Accounts::wallet(&city.cards().parse_card_number(&card.number)?);
        refs.push(citycard::transit::CardRef(wallet.get()));
        top_ups.push(citycard::ledger::NewTransfer::new(
            citycard::ledger::TransferId::from_idempotency_key(
                "city-day.top_up",
                &key(format!("topup-{i}")),
            ),
            citycard::Accounts::clearing(&Platform::Alipay),
            wallet,
            Money::from_yuan(500),
            citycard::glue::money::codes::TOP_UP,
        ));
        if top_ups.len() == 8_190 || i + 1 == cards.len() {
            let batch = std::mem::take(&mut top_ups);
            for result in city.ledger().create_transfers(&system, batch).await? {
                if !result.is_success() {
                    return Err(format!("a top-up was refused: {result:?}").into());
                }
            }
        }
    }
    drop(cards);
    let setup = started.elapsed();
    let setup_commits = db.commits() - before;

    // The day's taps, on the cards just issued.
    let mut taps = city_day(city.transit().fares(), day, args.taps, 42);
    for tap in &mut taps {
        tap.card = refs[(tap.card.0 as usize - 1) % refs.len()];
    }
    clock.set(chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 11, 26, 15, 0, 0).unwrap());
    // The database's size is measured with the WAL written back to the file
    // and emptied (the WAL is bounded working space, not stored data).
    let checkpoint = || db.with(|c| c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);"));
    checkpoint()?;
    let bytes_before = db_bytes(&dir);
    let written_before = written_bytes();
    let before = db.commits();
    // Cardholders reading their balance while the day settles: one read
    // every millisecond, as an app's traffic would come, not a spinning loop
    // that takes a core from the settlement.
    let settling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reader = {
        let (city, settling) = (city.clone(), settling.clone());
        let wallets: Vec<AccountId> = refs.iter().map(|r| AccountId::new(r.0)).collect();
        tokio::spawn(async move {
            let mut took = Vec::new();
            let mut i = 0usize;
            let mut pace = tokio::time::interval(std::time::Duration::from_millis(1));
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while settling.load(std::sync::atomic::Ordering::Relaxed) {
                pace.tick().await;
                let at = Instant::now();
                city.accounts().balance(wallets[i % wallets.len()]).await?;
                took.push(at.elapsed());
                i += 1;
            }
            Ok::<_, citycard::CityCardError>(took)
        })
    };
    let cpu_before = cpu_seconds();
    eprintln!("city_day: settling {} taps", taps.len());
    let started = Instant::now();
    let report = city
        .transit()
        .settlement()
        .settle_day(&system, day, taps)
        .await?;
    let settle = started.elapsed();
    let cpu = cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
    settling.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut reads = reader.await??;
    reads.sort_unstable();
    let quantile = |q: f64| {
        reads
            .get(((reads.len() as f64 * q) as usize).min(reads.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let settle_commits = db.commits() - before;
    let trips = report.trips_settled.max(1);
    checkpoint()?;
    let grown = db_bytes(&dir).saturating_sub(bytes_before);
    let written = written_bytes()
        .zip(written_before)
        .map(|(after, before)| after.saturating_sub(before));

    println!(
        "cards: {} enrolled, issued and topped up in {:.2?} ({:.0} cards/s, {:.4} write transactions per card)",
        args.cards,
        setup,
        args.cards as f64 / setup.as_secs_f64(),
        setup_commits as f64 / args.cards as f64
    );
    println!(
        "settlement: {} taps → {} trips in {:.2?} ({:.0} trips/s, {} CPU per trip), {} charged, {} cards failed",
        report.taps.taps,
        report.trips_settled,
        settle,
        report.trips_settled as f64 / settle.as_secs_f64(),
        cpu.map_or_else(
            || "unknown".to_owned(),
            |c| format!("{:.1} µs", c * 1e6 / trips as f64)
        ),
        report.charged,
        report.cards_failed.len()
    );
    println!(
        "per trip: {:.2} write transactions, {:.0} database bytes, {} written; peak RSS {}",
        settle_commits as f64 / trips as f64,
        grown as f64 / trips as f64,
        written.map_or_else(
            || "unknown bytes".to_owned(),
            |w| format!("{:.0} bytes", w as f64 / trips as f64)
        ),
        peak_rss_mib().map_or_else(|| "unknown".to_owned(), |m| format!("{m:.0} MiB"))
    );
    println!(
        "balance reads while settling: {} reads, p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        reads.len(),
        quantile(0.50),
        quantile(0.99),
        reads.last().copied().unwrap_or_default()
    );
    drop(city);
    if temporary {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
