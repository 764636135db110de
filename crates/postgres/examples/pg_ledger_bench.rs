//! The ledger anchor workload durable on PostgreSQL: 10,000 accounts,
//! 1,000,000 transfers between uniformly random accounts, batches of 8,190
//! (TigerBeetle's benchmark, as `citycard-ledger`'s `ledger_bench` runs it on
//! SQLite). Each batch is one transaction: the ledger version check, one
//! `UNNEST` insert of the transfers, one upsert of the touched balances.
//!
//! ```text
//! cargo run --release -p citycard-postgres --example pg_ledger_bench -- URL [transfers]
//! ```
//!
//! It works in a schema of its own, `ledger_bench`, dropped and created
//! afresh (never point it at a schema holding data). Batches are generated
//! outside the timed section; the time is the sum of the `create_transfers`
//! calls. Prints the load average before and after.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use citycard_core::{Money, Principal, SystemClock};
use citycard_ledger::{
    AccountId, AccountKind, CreateTransferResult, Ledger, LedgerStore, NewAccount, NewTransfer,
    TransferId,
};
use citycard_postgres::ledger::PgLedgerStore;
use citycard_postgres::{Database, PoolSettings};
use sqlx::Executor;
use sqlx::postgres::PgConnectOptions;

const ACCOUNTS: u64 = 10_000;
const BATCH: usize = 8_190;
const SCHEMA: &str = "ledger_bench";

/// SplitMix64, as in `ledger_bench`: the same workload for the same seed.
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

fn batch(rng: &mut Rng, next_id: &mut u64, n: usize) -> Vec<NewTransfer> {
    (0..n)
        .map(|_| {
            let debit = 1 + rng.below(ACCOUNTS);
            let mut credit = 1 + rng.below(ACCOUNTS - 1);
            if credit >= debit {
                credit += 1;
            }
            let amount = Money::from_fen(1 + rng.below(10_000) as i64);
            let t = NewTransfer::new(
                TransferId::new(*next_id),
                AccountId::new(debit),
                AccountId::new(credit),
                amount,
                1,
            );
            *next_id += 1;
            t
        })
        .collect()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn percentile(latencies: &mut [Duration], p: f64) -> Duration {
    latencies.sort();
    let rank = ((latencies.len() as f64) * p).ceil() as usize;
    latencies[rank.saturating_sub(1).min(latencies.len() - 1)]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(url) = args.get(1) else {
        eprintln!("usage: pg_ledger_bench URL [transfers]");
        std::process::exit(2);
    };
    let transfers: usize = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mut admin = citycard_postgres::db::connect_once(url).await.unwrap();
    admin
        .execute(format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}").as_str())
        .await
        .unwrap();
    let options = PgConnectOptions::from_str(url)
        .unwrap()
        .options([("search_path", SCHEMA)]);
    let db = Database::connect_with(options, PoolSettings::default())
        .await
        .unwrap();
    let store = Arc::new(PgLedgerStore::new(db.clone()));
    let ledger = Ledger::open(store.clone(), Arc::new(SystemClock))
        .await
        .unwrap();
    let accounts: Vec<NewAccount> = (1..=ACCOUNTS)
        .map(|i| NewAccount::new(AccountId::new(i), AccountKind::E_WALLET))
        .collect();
    assert!(
        ledger
            .create_accounts(&Principal::System, accounts)
            .await
            .unwrap()
            .iter()
            .all(|r| r.is_success())
    );
    println!(
        "workload: {ACCOUNTS} accounts, {transfers} transfers between uniformly random accounts, batches of {BATCH}; PostgreSQL, schema {SCHEMA}"
    );
    println!("load average before: {}", loadavg());
    let wal_before: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(db.pool())
        .await
        .unwrap();
    let (mut rng, mut next_id, mut left) = (Rng(42), 1u64, transfers);
    let mut latencies = Vec::new();
    while left > 0 {
        let n = left.min(BATCH);
        let b = batch(&mut rng, &mut next_id, n);
        let t = Instant::now();
        let results = ledger
            .create_transfers(&Principal::System, b)
            .await
            .unwrap();
        latencies.push(t.elapsed());
        assert!(results.iter().all(|r| *r == CreateTransferResult::Ok));
        left -= n;
    }
    let elapsed: Duration = latencies.iter().sum();
    let load_after = loadavg();
    let p50 = percentile(&mut latencies, 0.50);
    let p99 = percentile(&mut latencies, 0.99);
    println!(
        "durable on PostgreSQL: {transfers} transfers in {:.3} s = {:.0} transfers/s, batch p50 {:.1} ms, p99 {:.1} ms, {} write transactions",
        elapsed.as_secs_f64(),
        transfers as f64 / elapsed.as_secs_f64(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        db.commits(),
    );
    println!("load average after: {load_after}");
    let (wal, size): (i64, i64) = sqlx::query_as(
        "SELECT (pg_current_wal_lsn() - $1::text::pg_lsn)::bigint,
                (SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname LIKE 'ledger%')",
    )
    .bind(&wal_before)
    .fetch_one(db.pool())
    .await
    .unwrap();
    println!(
        "WAL written: {:.0} bytes per transfer; ledger tables with indexes: {:.0} bytes per transfer",
        wal as f64 / transfers as f64,
        size as f64 / transfers as f64
    );
    // The database holds every transfer once, and debits equal credits.
    let state = store.load_state().await.unwrap();
    assert_eq!(state.transfer_count, transfers as u64);
    let (mut debits, mut credits) = (0i64, 0i64);
    for a in &state.accounts {
        debits += a.balances.debits_posted.fen();
        credits += a.balances.credits_posted.fen();
    }
    assert_eq!(debits, credits, "debits equal credits");
    println!("checked: {transfers} transfers stored, debits = credits");
}
