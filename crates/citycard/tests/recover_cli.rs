//! `citycard recover`: expired fare claims are resolved from the ledger,
//! other expired claims are left for the caller's retry, live ones alone;
//! `citycard settle --data-dir`: a tap file settled on a store resumes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use citycard::core::{Fingerprint, IdempotencyKey, IdempotencyState, IdempotencyStore};
use citycard::sqlite::{Database, SqliteIdempotencyStore};

const BIN: &str = env!("CARGO_BIN_EXE_citycard");

fn citycard(args: &[&str], dir: &Path) -> std::process::Output {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("CITYCARD_DRILL_CRASH_AT_COMMIT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::parse(text).unwrap()
}

#[tokio::test]
async fn recover_completes_or_releases_expired_fare_claims_and_lists_the_rest() {
    let root = std::env::temp_dir().join(format!("citycard-recover-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dir = root.as_path();
    citycard(&["drill", "populate", "--cards", "10"], dir);
    citycard(&["drill", "settle", "--cards", "10"], dir);
    let dump: serde_json::Value =
        serde_json::from_slice(&citycard(&["drill", "dump"], dir).stdout).unwrap();
    let trip_paid = |payment: &str| -> String {
        dump["trips"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t[7] == payment)
            .unwrap_or_else(|| panic!("a trip paid by {payment}"))[0]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let charged = trip_paid("charged");
    let arrears = trip_paid("arrears");

    // A process that claimed these and died long ago, and one that is running now.
    let db = Database::open(dir.join("citycard.db")).unwrap();
    let dead = SqliteIdempotencyStore::new(db.clone()).handle("dead-process");
    let live = SqliteIdempotencyStore::new(db.clone()).handle("live-process");
    let long_ago = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let fp = Fingerprint::of_bytes(b"request");
    for (scope, k) in [
        ("transit.fare", charged.as_str()),
        ("transit.fare", arrears.as_str()),
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
    drop((dead, live, db));

    let out = citycard(&["recover", "--format", "json"], dir);
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let action = |k: &str| -> serde_json::Value {
        done.as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == k)
            .unwrap_or_else(|| panic!("{k} in {done}"))
            .clone()
    };
    assert_eq!(action(&charged)["action"], "completed");
    assert!(
        action(&charged)["outcome"]
            .as_str()
            .unwrap()
            .contains("charged")
    );
    assert_eq!(action(&arrears)["action"], "completed");
    assert!(
        action(&arrears)["outcome"]
            .as_str()
            .unwrap()
            .contains("insufficient_funds")
    );
    assert_eq!(action("trip-never-charged")["action"], "released");
    assert_eq!(action("issue-9")["action"], "left_for_retry");
    assert_eq!(action("bind-1")["action"], "live");
    assert_eq!(action("issue-9")["owner"], "dead-process");

    let store = SqliteIdempotencyStore::new(Database::open(dir.join("citycard.db")).unwrap());
    let state = |scope: &'static str, k: String| {
        let store = store.clone();
        async move { store.get(scope, &key(&k)).await.unwrap().map(|r| r.state) }
    };
    assert_eq!(
        state("transit.fare", charged).await,
        Some(IdempotencyState::Completed)
    );
    assert_eq!(
        state("transit.fare", "trip-never-charged".into()).await,
        None
    );
    assert_eq!(
        state("card.issue@operator:opr-1", "issue-9".into()).await,
        Some(IdempotencyState::InProgress)
    );

    // Run again: only what is left, in words.
    let text = String::from_utf8(citycard(&["recover"], dir).stdout).unwrap();
    assert!(
        text.contains("2 claims: 0 completed, 0 released, 1 left for a retry, 1 live"),
        "{text}"
    );
    assert!(!text.contains("trip-never-charged"), "{text}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn settling_a_tap_file_on_a_store_twice_charges_once() {
    let root = std::env::temp_dir().join(format!("citycard-settle-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dir = root.as_path();
    citycard(&["drill", "populate", "--cards", "5"], dir);
    let dump: serde_json::Value =
        serde_json::from_slice(&citycard(&["drill", "dump"], dir).stdout).unwrap();
    // The wallets: the accounts the top-ups (code 1) credited.
    let mut csv = String::from("card,direction,network,stop,route,vehicle,reader,at\n");
    for (i, t) in dump["transfers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t[4] == 1)
        .enumerate()
    {
        csv.push_str(&format!(
            "{},in,,,b7,500,2,2026-11-26T08:0{i}:00+08:00\n",
            t[2]
        ));
    }
    let taps = root.join("taps.csv");
    std::fs::write(&taps, csv).unwrap();
    let settle = || -> serde_json::Value {
        let out = Command::new(BIN)
            .arg("settle")
            .arg(&taps)
            .args(["--format", "json", "--data-dir"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let first = settle();
    let day = &first["days"][0];
    assert_eq!(day["trips_settled"], 5);
    // Card 0 was topped up with ¥1: its ¥2 ride goes into arrears.
    assert_eq!(day["charged"], "8.00");
    assert_eq!(day["arrears"], "2.00");
    assert!(first.get("starting_balance").is_none());
    let again = settle();
    let day = &again["days"][0];
    assert_eq!(day["trips_settled"], 0);
    assert_eq!(day["trips_already_settled"], 5);
    assert_eq!(day["charged"], "0.00");
    assert_eq!(day["arrears"], "0.00");
    let _ = std::fs::remove_dir_all(&root);
}
