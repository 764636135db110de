//! TigerBeetle's benchmark workload on citycard-ledger: 10,000 accounts,
//! 1,000,000 transfers between uniformly random accounts, batches of 8,190.
//!
//! Prints transfers/s and batch latencies for the in-memory engine, the
//! ledger durable on SQLite (a temporary file, WAL + `synchronous = FULL`),
//! and the naive baseline (one SQLite transaction per transfer, on fewer
//! transfers). Batches are generated one at a time, outside the timed
//! section (as a server receives them); the time is the sum of the
//! `create_transfers` calls. Run with `--release`:
//!
//! ```text
//! cargo run --release -p citycard-ledger --example ledger_bench -- [transfers] [naive_transfers] [--engine-only]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use citycard_core::{Money, Principal, SystemClock};
use citycard_ledger::{
    AccountId, AccountKind, CreateTransferResult, Engine, Ledger, NewAccount, NewTransfer,
    Reference, TransferId,
};
use citycard_sqlite::Database;
use citycard_sqlite::ledger::SqliteLedgerStore;

const ACCOUNTS: u64 = 10_000;
const BATCH: usize = 8_190;

/// SplitMix64: a tiny deterministic PRNG (no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn accounts() -> Vec<NewAccount> {
    (1..=ACCOUNTS)
        .map(|i| NewAccount::new(AccountId::new(i), AccountKind::E_WALLET))
        .collect()
}

/// Generates the workload batch by batch (so each batch is fresh in cache
/// when it is submitted, as it would be arriving from a client).
struct Workload {
    rng: Rng,
    next_id: u64,
    left: usize,
    batch: usize,
    references: bool,
}

impl Workload {
    fn new(transfers: usize, batch: usize, seed: u64) -> Self {
        Self {
            rng: Rng(seed),
            next_id: 1,
            left: transfers,
            batch,
            references: false,
        }
    }
}

impl Iterator for Workload {
    type Item = Vec<NewTransfer>;

    fn next(&mut self) -> Option<Vec<NewTransfer>> {
        if self.left == 0 {
            return None;
        }
        let n = self.left.min(self.batch);
        let mut b = Vec::with_capacity(n);
        for _ in 0..n {
            let debit = 1 + self.rng.below(ACCOUNTS);
            let mut credit = 1 + self.rng.below(ACCOUNTS - 1);
            if credit >= debit {
                credit += 1;
            }
            let amount = Money::from_fen(1 + self.rng.below(10_000) as i64);
            let mut t = NewTransfer::new(
                TransferId::new(self.next_id),
                AccountId::new(debit),
                AccountId::new(credit),
                amount,
                1,
            );
            if self.references {
                t.reference = Reference::trip(&format!("T-{}", self.next_id)).ok();
                t.memo = Some("Line 1, Wulin Sq to Longxiangqiao".to_owned());
            }
            b.push(t);
            self.next_id += 1;
        }
        self.left -= n;
        Some(b)
    }
}

/// CPU time of this thread (Linux `schedstat`), to tell work from waiting on a shared machine.
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn percentile(latencies: &mut [Duration], p: f64) -> Duration {
    latencies.sort();
    let rank = ((latencies.len() as f64) * p).ceil() as usize;
    latencies[rank.saturating_sub(1).min(latencies.len() - 1)]
}

fn report(name: &str, transfers: usize, elapsed: Duration, latencies: &mut [Duration]) -> f64 {
    let rate = transfers as f64 / elapsed.as_secs_f64();
    let p50 = percentile(latencies, 0.50);
    let p99 = percentile(latencies, 0.99);
    println!(
        "{name:<36} {transfers:>9} transfers in {:>8.3} s = {rate:>11.0} transfers/s  batch p50 {:>8.2} ms  p99 {:>8.2} ms",
        elapsed.as_secs_f64(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
    );
    rate
}

fn temp_db(name: &str) -> (Database, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "citycard-ledger-bench-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = Database::open(dir.join("ledger.db")).unwrap();
    (db, dir)
}

fn engine_phase(name: &str, transfers: usize, references: bool) {
    let mut work = Workload::new(transfers, BATCH, 42);
    work.references = references;
    let mut engine = Engine::new();
    engine.reserve(ACCOUNTS as usize, transfers);
    let now = chrono::Utc::now();
    assert!(
        engine
            .create_accounts(now, accounts())
            .iter()
            .all(|r| r.is_success())
    );
    let mut latencies = Vec::new();
    let mut cpu = Duration::ZERO;
    for batch in work {
        let c = thread_cpu();
        let t = Instant::now();
        let results = engine.create_transfers(now, batch);
        latencies.push(t.elapsed());
        if let (Some(before), Some(after)) = (c, thread_cpu()) {
            cpu += after.saturating_sub(before);
        }
        debug_assert!(results.iter().all(|r| *r == CreateTransferResult::Ok));
        std::hint::black_box(results);
    }
    let elapsed: Duration = latencies.iter().sum();
    assert_eq!(engine.transfer_count(), transfers as u64);
    let totals = engine.totals();
    assert_eq!(totals[1], totals[3], "debits equal credits");
    report(name, transfers, elapsed, &mut latencies);
    if !cpu.is_zero() {
        println!(
            "{:<34} {:.3} s of CPU = {:.0} transfers per CPU-second (one core)",
            "",
            cpu.as_secs_f64(),
            transfers as f64 / cpu.as_secs_f64()
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let transfers: usize = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let naive: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5_000);
    println!(
        "workload: {ACCOUNTS} accounts, {transfers} transfers between uniformly random accounts, batches of {BATCH}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    // 1. The in-memory engine alone, then with a reference and memo on every transfer.
    engine_phase("in-memory engine", transfers, false);
    engine_phase("in-memory engine, reference + memo", transfers, true);
    if args.iter().any(|a| a == "--engine-only") {
        return;
    }

    // 2. Durable on SQLite: the Ledger service, one commit per batch.
    let (db, dir) = temp_db("durable");
    let work = Workload::new(transfers, BATCH, 42);
    let rate = rt.block_on(async {
        let ledger = Ledger::open(
            Arc::new(SqliteLedgerStore::new(db.clone())),
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        let system = Principal::System;
        ledger.create_accounts(&system, accounts()).await.unwrap();
        let mut latencies = Vec::new();
        let mut cpu = Duration::ZERO;
        for batch in work {
            let c = thread_cpu();
            let t = Instant::now();
            let results = ledger.create_transfers(&system, batch).await.unwrap();
            latencies.push(t.elapsed());
            if let (Some(before), Some(after)) = (c, thread_cpu()) {
                cpu += after.saturating_sub(before);
            }
            assert!(results.iter().all(|r| *r == CreateTransferResult::Ok));
        }
        let elapsed: Duration = latencies.iter().sum();
        let rate = report(
            "durable, SQLite (group commit)",
            transfers,
            elapsed,
            &mut latencies,
        );
        if !cpu.is_zero() {
            println!(
                "{:<34} {:.3} s of CPU; the rest is waiting on fsync (or the scheduler)",
                "",
                cpu.as_secs_f64(),
            );
        }
        rate
    });
    drop(db);
    let size = std::fs::metadata(dir.join("ledger.db")).map_or(0, |m| m.len())
        + std::fs::metadata(dir.join("ledger.db-wal")).map_or(0, |m| m.len());
    println!(
        "{:<34} {:.1} bytes per transfer on disk (db + wal)",
        "",
        size as f64 / transfers as f64
    );
    let _ = std::fs::remove_dir_all(&dir);

    // 3. The naive baseline: one SQLite transaction per transfer.
    let (db, dir) = temp_db("naive");
    let work = Workload::new(naive, 1, 7);
    let naive_rate = rt.block_on(async {
        let ledger = Ledger::open(
            Arc::new(SqliteLedgerStore::new(db.clone())),
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        let system = Principal::System;
        ledger.create_accounts(&system, accounts()).await.unwrap();
        let mut latencies = Vec::new();
        for batch in work {
            let t = Instant::now();
            let results = ledger.create_transfers(&system, batch).await.unwrap();
            latencies.push(t.elapsed());
            assert_eq!(results, [CreateTransferResult::Ok]);
        }
        let elapsed: Duration = latencies.iter().sum();
        report(
            "naive, one SQLite tx per transfer",
            naive,
            elapsed,
            &mut latencies,
        )
    });
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "group commit is {:.0}x the naive baseline; the naive baseline would take {:.0} s for {transfers} transfers",
        rate / naive_rate,
        transfers as f64 / naive_rate
    );

    // 4. Reopen cost: rebuild from a durable file of `transfers` transfers.
    let (db, dir) = temp_db("reopen");
    rt.block_on(async {
        let store = Arc::new(SqliteLedgerStore::new(db.clone()));
        let ledger = Ledger::open(store.clone(), Arc::new(SystemClock))
            .await
            .unwrap();
        let system = Principal::System;
        ledger.create_accounts(&system, accounts()).await.unwrap();
        for batch in Workload::new(transfers, BATCH, 42) {
            ledger.create_transfers(&system, batch).await.unwrap();
        }
        drop(ledger);
        let start = Instant::now();
        let reopened = Ledger::open(store, Arc::new(SystemClock)).await.unwrap();
        let elapsed = start.elapsed();
        let count = reopened.inspect(|e| e.transfer_count()).await.unwrap();
        println!(
            "{:<34} {count:>9} transfers in {:>8.3} s = {:>11.0} transfers/s",
            "reopen (load + replay)",
            elapsed.as_secs_f64(),
            count as f64 / elapsed.as_secs_f64()
        );
    });
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}
