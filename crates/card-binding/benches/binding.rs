//! The full binding flow (steps 1–6: rate-limit check, real-name check, card lookup, issuer
//! verification, consent, wallet pass, activation, audit and idempotency record) per bind.
//!
//! Cards are issued outside the timed part; each timed iteration binds one fresh card.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use citycard_sqlite::Database;
use citycard_sqlite::binding::{SqliteBindingStore, SqliteCardStore, SqliteDelegationStore};
use citycard_sqlite::{SqliteAuditLog, SqliteIdempotencyStore};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod common;

use common::{Stores, memory_stores, prepare, timed_binds};

fn sqlite_stores(db: Database) -> Stores {
    Stores {
        cards: Arc::new(SqliteCardStore::new(db.clone())),
        bindings: Arc::new(SqliteBindingStore::new(db.clone())),
        delegations: Arc::new(SqliteDelegationStore::new(db.clone())),
        changes: Arc::new(citycard_sqlite::binding::SqliteCardChangeStore::new(
            db.clone(),
        )),
        idempotency: Arc::new(SqliteIdempotencyStore::new(db.clone())),
        audit: Arc::new(SqliteAuditLog::new(db)),
    }
}

fn bench_binding(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("binding_flow");
    group.throughput(Throughput::Elements(1));
    group.bench_function("memory", |b| {
        b.iter_custom(|iters| {
            let bench = rt.block_on(prepare(memory_stores(), iters));
            timed_binds(&rt, &bench)
        })
    });
    group.sample_size(10);
    group.bench_function("sqlite_in_memory", |b| {
        b.iter_custom(|iters| {
            let db = Database::open_in_memory().unwrap();
            let bench = rt.block_on(prepare(sqlite_stores(db), iters));
            timed_binds(&rt, &bench)
        })
    });
    group.bench_function("sqlite_file_wal_full_sync", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().unwrap();
            let db = Database::open(dir.path().join("bench.db")).unwrap();
            let bench = rt.block_on(prepare(sqlite_stores(db), iters));
            timed_binds(&rt, &bench)
        })
    });
    group.finish();
}

criterion_group!(benches, bench_binding);
criterion_main!(benches);
