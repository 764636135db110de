//! Criterion benchmarks on TigerBeetle's workload shape: 10,000 accounts,
//! transfers between uniformly random accounts, batches of 8,190.
//!
//! - `engine/create_transfers/8190`: the in-memory engine alone;
//! - `durable_sqlite/create_transfers/8190`: the `Ledger` on SQLite (a
//!   temporary file, WAL + `synchronous = FULL`), one commit per batch;
//! - `naive_sqlite/create_transfers/1`: one transfer per batch, so one
//!   SQLite transaction per transfer (the baseline).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use citycard_core::{Money, Principal, SystemClock};
use citycard_ledger::{
    AccountId, AccountKind, Engine, Ledger, NewAccount, NewTransfer, TransferId,
};
use citycard_sqlite::Database;
use citycard_sqlite::ledger::SqliteLedgerStore;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const ACCOUNTS: u64 = 10_000;
const BATCH: usize = 8_190;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn accounts() -> Vec<NewAccount> {
    (1..=ACCOUNTS)
        .map(|i| NewAccount::new(AccountId::new(i), AccountKind::E_WALLET))
        .collect()
}

fn batch(rng: &mut Rng, next_id: &mut u64, n: usize) -> Vec<NewTransfer> {
    (0..n)
        .map(|_| {
            let debit = 1 + rng.next() % ACCOUNTS;
            let credit = 1 + (debit + rng.next() % (ACCOUNTS - 1)) % ACCOUNTS;
            *next_id += 1;
            NewTransfer::new(
                TransferId::new(*next_id),
                AccountId::new(debit),
                AccountId::new(credit),
                Money::from_fen(1 + (rng.next() % 10_000) as i64),
                1,
            )
        })
        .collect()
}

fn engine(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut e = Engine::new();
    let now = chrono::Utc::now();
    e.create_accounts(now, accounts());
    let mut rng = Rng(1);
    let mut next_id = 0;
    group.bench_function("create_transfers/8190", |b| {
        b.iter_batched(
            || batch(&mut rng, &mut next_id, BATCH),
            |work| e.create_transfers(now, work),
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

fn sqlite(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let dir =
        std::env::temp_dir().join(format!("citycard-ledger-criterion-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = Database::open(dir.join("ledger.db")).unwrap();
    let ledger = rt.block_on(async {
        let ledger = Ledger::open(Arc::new(SqliteLedgerStore::new(db)), Arc::new(SystemClock))
            .await
            .unwrap();
        ledger
            .create_accounts(&Principal::System, accounts())
            .await
            .unwrap();
        ledger
    });
    let mut rng = Rng(2);
    let mut next_id = 0;
    for (name, size) in [("durable_sqlite", BATCH), ("naive_sqlite", 1)] {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(size as u64));
        group.sample_size(10);
        group.bench_function(format!("create_transfers/{size}"), |b| {
            b.iter_batched(
                || batch(&mut rng, &mut next_id, size),
                |work| {
                    rt.block_on(ledger.create_transfers(&Principal::System, work))
                        .unwrap()
                },
                BatchSize::LargeInput,
            );
        });
        group.finish();
    }
    drop(ledger);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, engine, sqlite);
criterion_main!(benches);
