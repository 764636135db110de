//! Settlement throughput: a synthetic day of 1 million taps, end to end in memory.
//! (The 10-million-tap city day is `cargo run --release --example settle_city_day`.)
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use chrono::NaiveDate;
use citycard_core::{ManualClock, MemoryAuditLog, Money, Principal};
use citycard_transit::workload::city_day;
use citycard_transit::{
    FareEngine, MemoryFarePayments, MemoryRiderDirectory, MemoryTransitStore, Rider, Settlement,
};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let engine = Arc::new(FareEngine::hangzhou().unwrap());
    let day = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
    let taps = city_day(&engine, day, 1_000_000, 7);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("settlement");
    g.sample_size(10);
    g.throughput(Throughput::Elements(taps.len() as u64));
    g.bench_function("day_1m_taps", |b| {
        b.iter_batched(
            || {
                let s = Settlement::new(
                    engine.clone(),
                    Arc::new(MemoryFarePayments::with_capacity(
                        Money::from_yuan(1_000),
                        taps.len() * 2 / 3,
                    )),
                    Arc::new(MemoryTransitStore::with_capacity(taps.len() / 3)),
                    Arc::new(MemoryRiderDirectory::new(Rider {
                        volume_tiers: true,
                        ..Rider::default()
                    })),
                    Arc::new(MemoryAuditLog::new()),
                    Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 16, 0, 0)),
                );
                (s, taps.clone())
            },
            |(s, taps)| {
                rt.block_on(s.settle_day(&Principal::System, day, taps))
                    .unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
