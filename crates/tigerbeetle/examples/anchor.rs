//! The anchor workload through the adapter and through `tigerbeetle benchmark`,
//! on the same cluster in the same run: 10,000 accounts, 1,000,000 transfers
//! between uniformly chosen accounts, one batch in flight at a time, batches of
//! [`BATCH_MAX`] (8,189: TigerBeetle 0.16's largest request; 8,190 would go out
//! as two requests).
//!
//! ```sh
//! . .ci/tigerbeetle.sh start     # or any 1-replica cluster 0 started without --development
//! cargo run --release -p citycard-tigerbeetle --example anchor
//! ```
//!
//! Reads `CITYCARD_TEST_TIGERBEETLE` (addresses of cluster 0),
//! `CITYCARD_TEST_TIGERBEETLE_BIN` (the `tigerbeetle` binary) and, for the
//! replica's RSS, `CITYCARD_TEST_TIGERBEETLE_DATA`. `ANCHOR_TRANSFERS` and
//! `ANCHOR_ROUNDS` (adapter runs, at least 2) scale it. Prints transfers per second, p50/p99 batch
//! latency and the load average beside each figure.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Instant;

use citycard_core::{Money, Principal};
use citycard_ledger::{
    AccountFlags, AccountId, AccountKind, CreateAccountResult, CreateTransferResult, LedgerPort,
    NewAccount, NewTransfer, TransferId,
};
use citycard_tigerbeetle::{BATCH_MAX, SideStore, TigerBeetleLedger};

const ACCOUNTS: u64 = 10_000;

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn replica_rss() -> String {
    let Ok(data) = std::env::var("CITYCARD_TEST_TIGERBEETLE_DATA") else {
        return "?".into();
    };
    let Ok(pid) = std::fs::read_to_string(format!("{data}/pid_0_0")) else {
        return "?".into();
    };
    std::fs::read_to_string(format!("/proc/{}/status", pid.trim()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.trim_start_matches("VmRSS:").trim().to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

/// A small xorshift: the same uniform choice of accounts as the benchmark's, without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

async fn adapter_run(tb: &TigerBeetleLedger, transfers: u64, seed: u64) -> (f64, f64, f64) {
    let base = (seed & 0x0000_00ff_ffff_ffff) << 24;
    let accounts: Vec<NewAccount> = (1..=ACCOUNTS)
        .map(|n| {
            NewAccount::new(AccountId::new(base + n), AccountKind::E_WALLET)
                .with_flags(AccountFlags::HISTORY)
        })
        .collect();
    for chunk in accounts.chunks(BATCH_MAX) {
        let results = tb
            .create_accounts(&Principal::System, chunk.to_vec())
            .await
            .unwrap();
        assert!(results.iter().all(|r| *r == CreateAccountResult::Ok));
    }
    let mut rng = Rng(seed | 1);
    let mut latencies = Vec::new();
    let mut sent = 0u64;
    let started = Instant::now();
    while sent < transfers {
        let n = (transfers - sent).min(BATCH_MAX as u64);
        let batch: Vec<NewTransfer> = (0..n)
            .map(|i| {
                let dr = rng.next() % ACCOUNTS;
                let cr = (dr + 1 + rng.next() % (ACCOUNTS - 1)) % ACCOUNTS;
                NewTransfer::new(
                    TransferId::new(base + (1 << 23) + sent + i),
                    AccountId::new(base + dr + 1),
                    AccountId::new(base + cr + 1),
                    Money::from_fen((rng.next() % 10_000 + 1) as i64),
                    1,
                )
            })
            .collect();
        let t = Instant::now();
        let results = tb
            .create_transfers(&Principal::System, batch)
            .await
            .unwrap();
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(results.iter().all(|r| *r == CreateTransferResult::Ok));
        sent += n;
    }
    let rate = transfers as f64 / started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    (rate, at(0.5), at(0.99))
}

fn benchmark_run(bin: &str, addresses: &str, transfers: u64) -> (Option<f64>, String) {
    let out = Command::new(bin)
        .arg("benchmark")
        .arg(format!("--addresses={addresses}"))
        .arg(format!("--account-count={ACCOUNTS}"))
        .arg(format!("--transfer-count={transfers}"))
        .arg(format!("--transfer-batch-count={BATCH_MAX}"))
        .arg("--query-count=0")
        .output()
        .expect("run tigerbeetle benchmark");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("load accepted = "))
        .and_then(|l| l.trim_end_matches(" tx/s").trim().parse().ok());
    let mut summary = text
        .lines()
        .filter(|l| l.contains("batch latency") || l.starts_with("load accepted"))
        .collect::<Vec<_>>()
        .join("; ");
    if rate.is_none() {
        summary = format!(
            "failed (its accounts 1..=10,000 exist after a first run: it needs a fresh cluster): {}",
            text.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
        );
    }
    (rate, summary)
}

fn main() {
    let addresses = std::env::var("CITYCARD_TEST_TIGERBEETLE").expect(
        "CITYCARD_TEST_TIGERBEETLE: the addresses of cluster 0 (. .ci/tigerbeetle.sh start)",
    );
    let bin = std::env::var("CITYCARD_TEST_TIGERBEETLE_BIN")
        .expect("CITYCARD_TEST_TIGERBEETLE_BIN: the tigerbeetle binary");
    let transfers: u64 = std::env::var("ANCHOR_TRANSFERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: u64 = std::env::var("ANCHOR_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tb = TigerBeetleLedger::connect(0, &addresses, SideStore::in_memory().unwrap()).unwrap();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!(
        "anchor: {ACCOUNTS} accounts, {transfers} transfers, batches of {BATCH_MAX}, cluster {addresses}"
    );
    // TigerBeetle's benchmark runs once, with its defaults (sequential ids, its best case: its
    // account ids 1..=10,000 cannot be created twice on one cluster); the adapter runs before
    // and after it, with sequential ids too.
    let mut best_adapter = 0f64;
    let mut best_tb = 0f64;
    for round in 0..rounds.max(2) {
        if round == 1 {
            let before = loadavg();
            let (rate, summary) = benchmark_run(&bin, &addresses, transfers);
            println!(
                "tigerbeetle benchmark: {:>9.0} transfers/s — {summary} (loadavg before {before}, after {}; replica RSS {})",
                rate.unwrap_or(f64::NAN),
                loadavg(),
                replica_rss()
            );
            best_tb = rate.unwrap_or(0.0);
        }
        let before = loadavg();
        let (rate, p50, p99) = rt.block_on(adapter_run(&tb, transfers, seed + round));
        println!(
            "adapter run {round}:         {rate:>9.0} transfers/s, batch p50 {p50:.1} ms p99 {p99:.1} ms (loadavg before {before}, after {}; replica RSS {})",
            loadavg(),
            replica_rss()
        );
        best_adapter = best_adapter.max(rate);
    }
    println!(
        "adapter best {best_adapter:.0}/s, tigerbeetle benchmark {best_tb:.0}/s: adapter at {:.0}% (target ≥ 80%)",
        100.0 * best_adapter / best_tb
    );
}
