//! Binding through the facade on a synced SQLite file: enrols cardholders,
//! issues their cards and real-name verifies their Alipay accounts (setup,
//! not timed), then binds every card to its holder's account through
//! `CityCard` and prints what it cost.
//!
//! ```text
//! cargo run --release -p citycard --example binds -- --binds 5000 [--concurrency 64] [--data-dir DIR]
//! ```
//!
//! `--concurrency` binds run at once (cardholders binding at the same time;
//! 1 binds one after another). Concurrent commits of the card service share
//! one SQLite transaction (group commit), so the fsyncs per bind fall as the
//! concurrency rises.
//!
//! Figures: binds/s, write transactions per bind (SQLite commits, counted by
//! `Database::commits`) and, since the file is in WAL mode with
//! `synchronous = FULL`, the fsyncs those commits cost (one per commit; a
//! checkpoint adds a few, which `strace -f -c -e trace=fsync,fdatasync` shows
//! when run around the example). Without `--data-dir` it runs in a fresh
//! directory under the system's temporary directory and removes it afterwards.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use chrono::{Duration, NaiveDate};
use citycard::binding::{BindRequest, BindingState, ConsentInput, DataCategory};
use citycard::core::{IdempotencyKey, ManualClock, Platform, Principal, Sensitive};
use citycard::identity::{IdNumber, KnownPerson, RealNameRequest, RegionCode, Sex};
use citycard::{CityCard, NewCitizenCard};

struct Args {
    binds: usize,
    concurrency: usize,
    dir: Option<PathBuf>,
}

fn args() -> Result<Args, String> {
    let mut out = Args {
        binds: 2_000,
        concurrency: 64,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--binds" => out.binds = value.parse().map_err(|_| "--binds takes a number")?,
            "--concurrency" => {
                out.concurrency = value.parse().map_err(|_| "--concurrency takes a number")?
            }
            "--data-dir" => out.dir = Some(PathBuf::from(value)),
            other => {
                return Err(format!(
                    "unknown flag {other}: use --binds, --concurrency, --data-dir"
                ));
            }
        }
    }
    if out.binds == 0 || out.concurrency == 0 {
        return Err("--binds and --concurrency must be at least 1".into());
    }
    Ok(out)
}

fn key(text: String) -> IdempotencyKey {
    text.parse().expect("generated keys are valid")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args().map_err(|e| format!("binds: {e}"))?;
    let (dir, temporary) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("citycard-binds-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir)?;
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0));
    let city = Arc::new(
        CityCard::builder()
            .sqlite(dir.join("citycard.db"))
            .clock(clock.clone())
            .build()
            .await?,
    );
    let db = city.database().expect("the example runs on SQLite").clone();
    let system = Principal::System;
    let alipay = Principal::Platform {
        platform: Platform::Alipay,
    };
    let verifier = city
        .simulated_verifier()
        .expect("the example uses the simulated verifier")
        .clone();

    // Setup (not timed): cardholders, cards, verified Alipay accounts.
    let started = Instant::now();
    let region = RegionCode::new(330106).ok_or("region 330106 is valid")?;
    let born = NaiveDate::from_ymd_opt(1960, 1, 1).expect("a valid day");
    let mut requests = Vec::with_capacity(args.binds);
    for i in 0..args.binds {
        let id_number = IdNumber::generate(
            region,
            born + Duration::days((i / 900) as i64),
            if i % 2 == 0 { Sex::Female } else { Sex::Male },
            (i % 900) as u16 + 1,
        )?;
        let name = format!("市民{i}");
        let person = city
            .identity()
            .enroll_person(
                &system,
                &Sensitive::new(name.clone()),
                &id_number.to_sensitive(),
                &key(format!("enrol-{i}")),
            )
            .await?;
        let number = format!("3301{:012}", 500_000 + i);
        city.issue_card(
            &system,
            &key(format!("issue-{i}")),
            &NewCitizenCard {
                number: number.clone(),
                kind: "standard".into(),
                holder: person.id.clone(),
                id_number: id_number.to_sensitive(),
                services: None,
            },
        )
        .await?;
        verifier.register(&id_number, KnownPerson::named(&name));
        let account = city
            .identity()
            .register_account(
                &alipay,
                Platform::Alipay,
                &format!("ext-{i}"),
                &key(format!("reg-{i}")),
            )
            .await?;
        city.identity()
            .verify_real_name(
                &alipay,
                &account.id,
                &RealNameRequest::two_factor(&name, id_number.reveal()),
                &key(format!("verify-{i}")),
            )
            .await?;
        requests.push((
            Principal::cardholder(person.id),
            BindRequest {
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
        ));
    }
    let setup = started.elapsed();

    // The binds, `concurrency` at a time, as cardholders tapping "bind" in Alipay.
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let before = db.commits();
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.min(args.binds) {
        let (city, requests, next) = (city.clone(), requests.clone(), next.clone());
        workers.spawn(async move {
            let mut active = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((holder, request)) = requests.get(i) else {
                    return Ok::<_, citycard::binding::BindingError>(active);
                };
                let receipt = city
                    .cards()
                    .bind(holder, &key(format!("bind-{i}")), request)
                    .await?;
                if receipt.state == BindingState::Active {
                    active += 1;
                }
            }
        });
    }
    let mut active = 0usize;
    while let Some(done) = workers.join_next().await {
        active += done??;
    }
    let elapsed = started.elapsed();
    let commits = db.commits() - before;

    println!(
        "setup: {} cardholders enrolled, issued a card and verified in Alipay in {:.2?}",
        args.binds, setup
    );
    println!(
        "binds: {} through CityCard, {} at a time, in {:.2?} ({:.0} binds/s), {} active",
        args.binds,
        args.concurrency,
        elapsed,
        args.binds as f64 / elapsed.as_secs_f64(),
        active
    );
    println!(
        "per bind: {:.2} write transactions (≈ as many WAL fsyncs, synchronous = FULL)",
        commits as f64 / args.binds as f64
    );
    drop(city);
    drop(db);
    if temporary {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
