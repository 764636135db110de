//! Opening a large ledger on SQLite: open time, RSS after open, throughput
//! on the opened file and bytes per transfer.
//!
//! Builds (once) a ledger of `--transfers` transfers (default 1,000,000) over
//! 10,000 accounts in batches of 8,190 in `--dir` (default: a fresh temporary
//! directory), with ids spread like ids derived from idempotency keys. Then a
//! fresh process (this program re-run with `--measure`, so the build's memory
//! does not count) opens the file and prints: the time to open the database
//! and the ledger, the RSS after open, `create_transfers` throughput on the
//! file in batches of 8,190 and of 1, and the file's bytes per transfer.
//!
//! ```text
//! cargo run --release -p citycard-ledger --example open -- [--transfers N] [--dir DIR] [--singles N]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use citycard_core::{Money, Principal, SystemClock};
use citycard_ledger::{
    AccountId, AccountKind, CreateTransferResult, Ledger, NewAccount, NewTransfer, TransferId,
};
use citycard_sqlite::Database;
use citycard_sqlite::ledger::SqliteLedgerStore;

const ACCOUNTS: u64 = 10_000;
const BATCH: usize = 8_190;

/// SplitMix64 of `n`: ids spread over the whole `u64` range, as derived ids are.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).clamp(1, u64::MAX - 1)
}

fn transfer(n: u64) -> NewTransfer {
    let h = mix(n ^ 0x5555);
    let debit = 1 + h % ACCOUNTS;
    let credit = 1 + (debit + (h >> 20) % (ACCOUNTS - 1)) % ACCOUNTS;
    NewTransfer::new(
        TransferId::new(mix(n)),
        AccountId::new(debit),
        AccountId::new(credit),
        Money::from_fen(1 + (h >> 40) as i64 % 500),
        1,
    )
}

fn rss_kb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

struct Args {
    transfers: u64,
    dir: Option<PathBuf>,
    singles: u64,
    measure: bool,
}

fn args() -> Args {
    let mut a = Args {
        transfers: 1_000_000,
        dir: None,
        singles: 300,
        measure: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--transfers" => a.transfers = it.next().and_then(|v| v.parse().ok()).unwrap(),
            "--singles" => a.singles = it.next().and_then(|v| v.parse().ok()).unwrap(),
            "--dir" => a.dir = it.next().map(PathBuf::from),
            "--measure" => a.measure = true,
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

async fn build(path: &Path, transfers: u64) {
    let db = Database::open(path).unwrap();
    let ledger = Ledger::open(Arc::new(SqliteLedgerStore::new(db)), Arc::new(SystemClock))
        .await
        .unwrap();
    let sys = Principal::System;
    let accounts = (1..=ACCOUNTS)
        .map(|i| NewAccount::new(AccountId::new(i), AccountKind::E_WALLET))
        .collect();
    ledger.create_accounts(&sys, accounts).await.unwrap();
    let start = Instant::now();
    let mut n = 0;
    while n < transfers {
        let len = (transfers - n).min(BATCH as u64);
        let batch = (n..n + len).map(transfer).collect();
        let r = ledger.create_transfers(&sys, batch).await.unwrap();
        assert!(r.iter().all(|r| *r == CreateTransferResult::Ok));
        n += len;
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "built {transfers} transfers in {s:.1} s ({:.0} transfers/s on a growing file)",
        transfers as f64 / s
    );
}

async fn measure(path: &Path, transfers: u64, singles: u64) {
    let (rss0, _) = rss_kb();
    let start = Instant::now();
    let db = Database::open(path).unwrap();
    let db_time = start.elapsed();
    let ledger = Ledger::open(
        Arc::new(SqliteLedgerStore::new(db.clone())),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let total = start.elapsed();
    let (rss, hwm) = rss_kb();
    println!(
        "open: database {:.1} ms, ledger {:.1} ms, total {:.1} ms",
        db_time.as_secs_f64() * 1e3,
        (total - db_time).as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3
    );
    println!(
        "RSS after open: {:.1} MB (before open {:.1} MB, peak {:.1} MB)",
        rss as f64 / 1024.0,
        rss0 as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    let sys = Principal::System;
    // Batches of 8,190 on the opened file (new ids beyond the built range).
    let batches = 30u64;
    let first = transfers + 1_000_000;
    let start = Instant::now();
    for b in 0..batches {
        let from = first + b * BATCH as u64;
        let batch = (from..from + BATCH as u64).map(transfer).collect();
        let r = ledger.create_transfers(&sys, batch).await.unwrap();
        assert!(r.iter().all(|r| *r == CreateTransferResult::Ok));
    }
    let s = start.elapsed().as_secs_f64();
    let n = batches * BATCH as u64;
    println!(
        "create_transfers, batches of {BATCH}: {n} in {s:.2} s = {:.0} transfers/s",
        n as f64 / s
    );
    // Replays of old ids (built a while ago): every one answers `exists`.
    let start = Instant::now();
    let old: Vec<NewTransfer> = (0..BATCH as u64)
        .map(|i| transfer(i * (transfers / BATCH as u64).max(1) % transfers.max(1)))
        .collect();
    let r = ledger.create_transfers(&sys, old).await.unwrap();
    let s = start.elapsed().as_secs_f64();
    assert!(r.iter().all(|r| *r == CreateTransferResult::Exists));
    println!(
        "replay of {BATCH} old ids: {:.1} ms = {:.0} transfers/s",
        s * 1e3,
        BATCH as f64 / s
    );
    // Batches of 1.
    let first = first + batches * BATCH as u64;
    let start = Instant::now();
    for i in 0..singles {
        let r = ledger
            .create_transfers(&sys, vec![transfer(first + i)])
            .await
            .unwrap();
        assert_eq!(r, [CreateTransferResult::Ok]);
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "create_transfers, batches of 1: {singles} in {s:.2} s = {:.0} transfers/s",
        singles as f64 / s
    );
    let (rss, hwm) = rss_kb();
    println!(
        "RSS after the batches: {:.1} MB (peak {:.1} MB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    let (pages, page_size, count): (i64, i64, i64) = db
        .read(|c| {
            Ok((
                c.query_row("PRAGMA page_count", [], |r| r.get(0))?,
                c.query_row("PRAGMA page_size", [], |r| r.get(0))?,
                c.query_row("SELECT count(*) FROM ledger_transfers", [], |r| r.get(0))?,
            ))
        })
        .unwrap();
    println!(
        "database: {:.1} MB, {count} transfers, {:.1} bytes per transfer (page_count * page_size / transfers)",
        (pages * page_size) as f64 / 1e6,
        (pages * page_size) as f64 / count as f64
    );
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (dir, temp) = match &a.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("citycard-open-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ledger.db");
    if a.measure {
        rt.block_on(measure(&path, a.transfers, a.singles));
        return;
    }
    if !path.exists() {
        rt.block_on(build(&path, a.transfers));
    }
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--measure",
            "--transfers",
            &a.transfers.to_string(),
            "--singles",
            &a.singles.to_string(),
            "--dir",
            &dir.to_string_lossy(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    if temp {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
