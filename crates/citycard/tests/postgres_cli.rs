//! The `citycard` binary on PostgreSQL (`--database`): a tap file settled
//! twice charges once, `recover` resolves a dead process's claims, two OS
//! processes work on one database at once, and a process killed inside a
//! settlement commit resumes to the uninterrupted result. Skipped without a
//! server, except in CI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use chrono::NaiveDate;
use citycard::core::{Fingerprint, IdempotencyKey, IdempotencyStore, ManualClock, Principal};
use citycard::transit::{CardRef, TransitStore};
use citycard::{Accounts, CityCard};
use citycard_postgres::testing::{fresh_schema, server_available, server_url};
use citycard_postgres::{Database, PgIdempotencyStore};

const BIN: &str = env!("CARGO_BIN_EXE_citycard");

/// The test server's URL with `schema` as the search path.
fn url_in(schema: &str) -> String {
    let url = server_url().unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// A data directory for the vault keys, unique to this test.
fn data_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("citycard-pg-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `citycard ARGS --database URL --data-dir DIR`; it must succeed.
fn citycard(args: &[&str], url: &str, dir: &Path) -> Output {
    let out = drill_command(args, url, dir).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn drill_command(args: &[&str], url: &str, dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .args(["--database", url, "--data-dir"])
        .arg(dir)
        .env_remove("CITYCARD_DRILL_CRASH_AT_COMMIT");
    c
}

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::parse(text).unwrap()
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 26).unwrap()
}

/// The drill's card `i` (see `citycard drill`): its wallet account id.
fn wallet(city: &CityCard, i: u32) -> u64 {
    let n = city
        .cards()
        .parse_card_number(&format!("33010{:011}", u64::from(i) + 1))
        .unwrap();
    Accounts::wallet(&n).get()
}

/// A reader of the schema (no vault keys needed for the ledger).
async fn reader(schema: &str) -> CityCard {
    CityCard::builder()
        .postgres(url_in(schema))
        .clock(Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 16, 0, 0)))
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settle_twice_charges_once_and_recover_resolves_a_dead_processs_claims() {
    if !server_available() {
        return;
    }
    let schema = fresh_schema().await;
    let url = url_in(&schema);
    let dir = data_dir("settle");
    citycard(&["drill", "populate", "--cards", "5"], &url, &dir);
    let city = reader(&schema).await;
    let mut csv = String::from("card,direction,network,stop,route,vehicle,reader,at\n");
    for i in 0..5 {
        csv.push_str(&format!(
            "{},in,,,b7,500,2,2026-11-26T08:0{i}:00+08:00\n",
            wallet(&city, i)
        ));
    }
    let taps = dir.join("taps.csv");
    std::fs::write(&taps, csv).unwrap();
    let settle = || -> serde_json::Value {
        let out = citycard(
            &["settle", taps.to_str().unwrap(), "--format", "json"],
            &url,
            &dir,
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let first = settle();
    let d = &first["days"][0];
    assert_eq!(d["trips_settled"], 5);
    // Card 0 was topped up with ¥1: its ¥2 ride goes into arrears.
    assert_eq!(d["charged"], "8.00");
    assert_eq!(d["arrears"], "2.00");
    assert_eq!(first["store"], "PostgreSQL (--database)", "no URL printed");
    let again = settle();
    let d = &again["days"][0];
    assert_eq!(d["trips_settled"], 0);
    assert_eq!(d["trips_already_settled"], 5);
    assert_eq!(d["charged"], "0.00");

    // A charged trip's fare claim left in progress by a dead process, one
    // that never charged, another kind of claim, and a live one.
    let db = Database::connect(&url).await.unwrap();
    let trips = citycard_postgres::transit::PgTransitStore::new(db.clone())
        .trips(CardRef(wallet(&city, 1)), day())
        .await
        .unwrap();
    let charged = trips[0].id.as_str().to_owned();
    let dead = PgIdempotencyStore::new(db.clone()).handle("dead-process");
    let live = PgIdempotencyStore::new(db.clone()).handle("live-process");
    let long_ago = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let fp = Fingerprint::of_bytes(b"request");
    for (scope, k) in [
        ("transit.fare", charged.as_str()),
        ("transit.fare", "trip-never-charged"),
        ("card.issue@operator:opr-1", "issue-9"),
    ] {
        dead.claim(scope, &key(k), &fp, long_ago).await.unwrap();
    }
    live.claim(
        "binding.bind@system",
        &key("bind-1"),
        &fp,
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let out = citycard(&["recover", "--format", "json"], &url, &dir);
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let action = |k: &str| -> serde_json::Value {
        done.as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == k)
            .unwrap_or_else(|| panic!("{k} in {done}"))["action"]
            .clone()
    };
    assert_eq!(action(&charged), "completed");
    assert_eq!(action("trip-never-charged"), "released");
    assert_eq!(action("issue-9"), "left_for_retry");
    assert_eq!(action("bind-1"), "live");
    assert_eq!(
        PgIdempotencyStore::new(db)
            .get("transit.fare", &key("trip-never-charged"))
            .await
            .unwrap(),
        None
    );
    // The read commands take --database too.
    let out = citycard(&["ledger", "export", "--format", "csv"], &url, &dir);
    let csv = String::from_utf8(out.stdout).unwrap();
    // The five top-ups and the four fares charged (the fifth is in arrears).
    let rows = |what: &str| csv.lines().filter(|l| l.contains(what)).count();
    assert_eq!((rows(",topup:"), rows(",trip:")), (5, 4), "{csv}");
    let out = citycard(
        &[
            "card",
            "balance",
            "--card",
            "3301 0000 0000 0002",
            "--format",
            "json",
        ],
        &url,
        &dir,
    );
    let balance: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Card 1: ¥21 topped up, one ¥2 ride.
    assert_eq!(balance["available"], "19.00");
    let _ = std::fs::remove_dir_all(&dir);
}

/// What must not depend on how the work was split or interrupted: every
/// transfer (id, accounts, amount, code), every balance, and the trips.
async fn state(schema: &str) -> (BTreeSet<(u64, u64, u64, i64, u16)>, Vec<(u64, i64)>, i64) {
    let city = reader(schema).await;
    let all = city.ledger().export(&Principal::System).await.unwrap();
    let transfers: BTreeSet<_> = all
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
    assert_eq!(transfers.len(), all.transfers.len(), "no transfer twice");
    let mut sums = std::collections::BTreeMap::<u64, i64>::new();
    for t in &all.transfers {
        *sums.entry(t.debit_account_id.get()).or_default() -= t.amount.fen();
        *sums.entry(t.credit_account_id.get()).or_default() += t.amount.fen();
    }
    let mut balances = Vec::new();
    for a in &all.accounts {
        let net = a.balances.credits_posted.fen() - a.balances.debits_posted.fen();
        assert_eq!(net, sums.get(&a.id.get()).copied().unwrap_or(0), "{}", a.id);
        if a.kind == citycard::ledger::AccountKind::E_WALLET {
            assert!(net >= 0, "wallet {} overdrawn", a.id);
        }
        // Accounts with random ids (per run) hold nothing: compare the rest.
        if net != 0 {
            balances.push((a.id.get(), net));
        }
    }
    balances.sort_unstable();
    let db = Database::connect(&url_in(schema)).await.unwrap();
    let trips: i64 = sqlx::query_scalar("SELECT count(*) FROM transit_trips")
        .fetch_one(db.pool())
        .await
        .unwrap();
    (transfers, balances, trips)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_top_up_and_bind_on_one_database_and_every_acknowledged_operation_is_stored_once()
 {
    if !server_available() {
        return;
    }
    let schema = fresh_schema().await;
    let url = url_in(&schema);
    let dir = data_dir("two-processes");
    // The vault keys and the schema first (two processes must share the keys).
    citycard(&["drill", "populate", "--cards", "0"], &url, &dir);
    let both = |scenario: &str| {
        let spawn = |from: &str| {
            drill_command(
                &["drill", scenario, "--from", from, "--cards", "12"],
                &url,
                &dir,
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        };
        let (a, b) = (spawn("0"), spawn("12"));
        for child in [a, b] {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{scenario}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    // Enrol, issue and top up 12 cardholders each, at the same time; then
    // verify and bind their accounts, at the same time.
    both("populate");
    both("bind");
    // The same work again from both: every operation replays, nothing is added.
    let (transfers, balances, _) = state(&schema).await;
    both("populate");
    let (again, balances_again, _) = state(&schema).await;
    assert_eq!(transfers, again, "replays add no transfer");
    assert_eq!(balances, balances_again);

    let top_ups: Vec<_> = transfers
        .iter()
        .filter(|t| t.4 == citycard::glue::money::codes::TOP_UP)
        .collect();
    assert_eq!(top_ups.len(), 24, "one top-up per cardholder");
    let city = reader(&schema).await;
    for i in 0..24 {
        let w = wallet(&city, i);
        let expected = if i % 5 == 0 {
            100
        } else {
            (20 + i64::from(i % 7)) * 100
        };
        let mine: Vec<_> = top_ups.iter().filter(|t| t.2 == w).collect();
        assert_eq!(mine.len(), 1, "card {i}: one top-up");
        assert_eq!(mine[0].3, expected, "card {i}: its amount");
    }
    let db = Database::connect(&url).await.unwrap();
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(db.pool())
                .await
                .unwrap()
        }
    };
    assert_eq!(count("SELECT count(*) FROM identity_persons").await, 24);
    assert_eq!(count("SELECT count(*) FROM binding_cards").await, 24);
    assert_eq!(
        count("SELECT count(*) FROM binding_bindings WHERE state = 'active'").await,
        24,
        "one live binding per card"
    );
    assert_eq!(
        count("SELECT count(DISTINCT card_id) FROM binding_bindings WHERE state <> 'removed'")
            .await,
        24
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_inside_a_settlement_commit_resumes_to_the_uninterrupted_result() {
    if !server_available() {
        return;
    }
    let cards = "40";
    // The uninterrupted run.
    let whole = fresh_schema().await;
    let dir = data_dir("settle-whole");
    citycard(
        &["drill", "populate", "--cards", cards],
        &url_in(&whole),
        &dir,
    );
    citycard(
        &["drill", "settle", "--cards", cards],
        &url_in(&whole),
        &dir,
    );
    let expected = state(&whole).await;
    assert!(expected.2 > 40, "a day of trips: {}", expected.2);

    // The killed run: its third ledger commit of the settlement waits on a
    // lock this test holds, inside the commit's transaction; the process is
    // killed there, then the lock is let go (the server rolls the commit back).
    let schema = fresh_schema().await;
    let url = url_in(&schema);
    let dir = data_dir("settle-killed");
    citycard(&["drill", "populate", "--cards", cards], &url, &dir);
    let db = Database::connect(&url).await.unwrap();
    let lock_key: i64 = 7_400_000 + i64::from(std::process::id() % 100_000);
    let version: i64 =
        sqlx::query_scalar("SELECT value FROM ledger_counters WHERE name = 'version'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    let mut holder = db.pool().acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(lock_key)
        .execute(&mut *holder)
        .await
        .unwrap();
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.value = {at} THEN PERFORM pg_advisory_xact_lock({lock_key}); END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER hold_commit BEFORE UPDATE ON ledger_counters
           FOR EACH ROW WHEN (NEW.name = 'version') EXECUTE FUNCTION hold_commit();",
        at = version + 3
    ))
    .execute(db.pool())
    .await
    .unwrap();
    let mut child = drill_command(&["drill", "settle", "--cards", cards], &url, &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the drill to block inside its commit (a condition, not a time).
    let mut waited = 0u64;
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
             AND ((classid::bigint << 32) | objid::bigint) = $1",
        )
        .bind(lock_key)
        .fetch_one(db.pool())
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the drill finished without reaching the held commit"
        );
        waited += 1;
        tokio::task::yield_now().await;
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed");
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(lock_key)
        .execute(&mut *holder)
        .await
        .unwrap();
    drop(holder);
    sqlx::raw_sql("DROP TRIGGER hold_commit ON ledger_counters; DROP FUNCTION hold_commit();")
        .execute(db.pool())
        .await
        .unwrap();
    let partial = state(&schema).await;
    assert!(
        partial.2 < expected.2,
        "killed mid-day: {} of {} trips (polled {waited} times)",
        partial.2,
        expected.2
    );
    // Resume (past the dead process's claim leases): the same day, once.
    citycard(
        &["drill", "settle", "--cards", cards, "--attempt", "1"],
        &url,
        &dir,
    );
    assert_eq!(state(&schema).await, expected);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_settling_the_same_day_at_once_charge_every_trip_once() {
    if !server_available() {
        return;
    }
    let cards = "24";
    let whole = fresh_schema().await;
    let dir = data_dir("settle-one");
    citycard(
        &["drill", "populate", "--cards", cards],
        &url_in(&whole),
        &dir,
    );
    let one = citycard(
        &["drill", "settle", "--cards", cards],
        &url_in(&whole),
        &dir,
    );
    let charged_once = fen(&serde_json::from_slice(&one.stdout).unwrap());
    let expected = state(&whole).await;

    let schema = fresh_schema().await;
    let url = url_in(&schema);
    let dir = data_dir("settle-both");
    citycard(&["drill", "populate", "--cards", cards], &url, &dir);
    let spawn = || {
        drill_command(&["drill", "settle", "--cards", cards], &url, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let mut charged = 0;
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        charged += fen(&report);
    }
    // A card one process was charging when the other reached it is left
    // for a re-run (its claim is in progress); the re-run finishes the day.
    let rerun = citycard(
        &["drill", "settle", "--cards", cards, "--attempt", "1"],
        &url,
        &dir,
    );
    charged += fen(&serde_json::from_slice(&rerun.stdout).unwrap());
    assert_eq!(state(&schema).await, expected);
    // The runs' reports agree: what they charged adds up to one day's fares
    // (a fare another run made is reported as replayed, not charged).
    assert_eq!(charged, charged_once);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `charged` of a settlement report, in fen.
fn fen(report: &serde_json::Value) -> i64 {
    let text = report["charged"].as_str().unwrap();
    let (yuan, fen) = text.split_once('.').unwrap();
    yuan.parse::<i64>().unwrap() * 100 + fen.parse::<i64>().unwrap()
}
