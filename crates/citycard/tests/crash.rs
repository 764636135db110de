//! A crash never leaves work stuck: the `citycard` binary is killed with
//! SIGKILL inside seeded commits of a settlement day, of enrolment + card
//! issue + top-up, of a migration (bulk enrolment and bulk issue, chunk by
//! chunk), and of binding (with the wallet's first answer lost), then
//! run again to completion; the result must equal an uninterrupted run: same
//! cardholders, cards, bindings and trips, the same ledger transfers (id,
//! accounts, amount, code) and balances, no claim left in progress, and
//! `PRAGMA integrity_check` ok.
//!
//! The kill points are commits counted by the child (`citycard drill`, with
//! `CITYCARD_DRILL_CRASH_AT_COMMIT=N`), chosen by a seeded generator, so a run
//! is reproducible. One run in three is killed twice before it completes.
//! Defaults keep the test near 10 s (on tmpfs): `CITYCARD_CRASH_POINTS=200`
//! runs 200 kill points per scenario, `CITYCARD_CRASH_SEED` picks other points.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_citycard");

/// splitmix64, seeded: the kill points.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n.max(1)
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A fresh scratch directory, on tmpfs where there is one (commits fsync).
fn scratch(name: &str) -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("citycard-crash-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn drill(scenario: &str, dir: &Path, cards: u32, attempt: u32, crash_at: Option<u64>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["drill", scenario, "--data-dir"])
        .arg(dir)
        .args(["--cards", &cards.to_string()])
        .args(["--attempt", &attempt.to_string()])
        .env_remove("CITYCARD_DRILL_CRASH_AT_COMMIT");
    if let Some(n) = crash_at {
        cmd.env("CITYCARD_DRILL_CRASH_AT_COMMIT", n.to_string());
    }
    cmd.output().unwrap()
}

fn ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn commits(output: &Output) -> u64 {
    let text = String::from_utf8_lossy(&output.stderr);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("drill: ")?
                .strip_suffix(" commits")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no commit count in {text}"))
}

fn dump(dir: &Path) -> serde_json::Value {
    let output = drill("dump", dir, 0, 0, None);
    ok(&output, "dump");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Runs `scenario` on copies of `base` killed at seeded commits, and compares
/// each completed result with the uninterrupted one. Returns the kill count.
fn crash_and_compare(name: &str, setup: &[&str], scenario: &str, cards: u32, seed: u64) -> u64 {
    let root = scratch(name);
    let base = root.join("base");
    std::fs::create_dir_all(&base).unwrap();
    for step in setup {
        ok(&drill(step, &base, cards, 0, None), step);
    }
    let reference = root.join("reference");
    copy_dir(&base, &reference);
    let clean = drill(scenario, &reference, cards, 0, None);
    ok(&clean, "the uninterrupted run");
    let total = commits(&clean);
    assert!(total > 10, "{scenario} makes {total} commits");
    let expected = dump(&reference);
    assert_eq!(expected["integrity"], "ok");
    assert_eq!(expected["claims_in_progress"], serde_json::json!([]));

    let points = env_number("CITYCARD_CRASH_POINTS", 12);
    let mut rng = Rng(env_number("CITYCARD_CRASH_SEED", 21) ^ seed);
    let mut kills = 0;
    for point in 0..points {
        let dir = root.join(format!("run-{point}"));
        copy_dir(&base, &dir);
        // The first and the last commit, then seeded ones.
        let mut crash_at = match point {
            0 => 1,
            1 => total,
            _ => 1 + rng.below(total),
        };
        let times = if point % 3 == 2 { 2 } else { 1 };
        let mut attempt = 0;
        for _ in 0..times {
            let killed = drill(scenario, &dir, cards, attempt, Some(crash_at));
            attempt += 1;
            if killed.status.success() {
                // A resumed run has less left to do than the point asked for.
                break;
            }
            assert_eq!(
                killed.status.signal(),
                Some(9),
                "attempt {attempt} at commit {crash_at} ended otherwise: {}",
                String::from_utf8_lossy(&killed.stderr)
            );
            kills += 1;
            crash_at = 1 + rng.below(total);
        }
        let resumed = drill(scenario, &dir, cards, attempt, None);
        ok(
            &resumed,
            &format!("the run resumed after commit {crash_at}"),
        );
        let recover = Command::new(BIN)
            .args(["recover", "--data-dir"])
            .arg(&dir)
            .output()
            .unwrap();
        ok(&recover, "recover");
        assert!(
            String::from_utf8_lossy(&recover.stdout).contains("nothing to recover"),
            "{}",
            String::from_utf8_lossy(&recover.stdout)
        );
        let got = dump(&dir);
        if got != expected {
            let obj = expected.as_object().unwrap();
            let differ: Vec<&String> = obj.keys().filter(|k| got[k.as_str()] != obj[*k]).collect();
            panic!(
                "{scenario} killed at point {point} (commit {crash_at}) differs from the uninterrupted run in {differ:?}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&root);
    eprintln!("{scenario}: {kills} kills over {points} kill points, {total} commits per clean run");
    kills
}

#[test]
fn settlement_killed_anywhere_resumes_to_the_uninterrupted_result() {
    let kills = crash_and_compare("settle", &["populate"], "settle", 30, 1);
    assert!(kills >= env_number("CITYCARD_CRASH_POINTS", 12));
}

#[test]
fn enrolment_issue_and_top_up_killed_anywhere_resume_to_the_uninterrupted_result() {
    let kills = crash_and_compare("populate", &[], "populate", 12, 2);
    assert!(kills >= env_number("CITYCARD_CRASH_POINTS", 12));
}

#[test]
fn a_migration_killed_between_any_two_chunks_resumes_to_the_uninterrupted_result() {
    // 30 persons and 30 cards in chunks of 4: 16 chunk commits to kill in.
    let kills = crash_and_compare("migrate", &[], "migrate", 30, 4);
    assert!(kills >= env_number("CITYCARD_CRASH_POINTS", 12));
}

#[test]
fn binding_killed_anywhere_with_lost_wallet_answers_resumes_to_the_uninterrupted_result() {
    let kills = crash_and_compare("bind", &["populate"], "bind", 10, 3);
    assert!(kills >= env_number("CITYCARD_CRASH_POINTS", 12));
}
