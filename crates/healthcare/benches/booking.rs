//! Bookings per second with the memory store (target: at least 50,000 on one core).
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use citycard_core::{ManualClock, MemoryAuditLog, PersonId, Principal, SequentialIdGenerator};
use citycard_healthcare::{
    AppointmentService, AppointmentStore, BookRequest, BookingPolicy, MemoryAppointmentStore,
    MemoryPatientDirectory, PatientRecord, PersonType,
};
use citycard_testkit::healthcare::{booking, no_quota, slot, suite_date};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn people(n: u64) -> Vec<PersonId> {
    (0..n)
        .map(|i| format!("psn-{i}").parse().unwrap())
        .collect()
}

fn bookings(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("booking");
    group.throughput(Throughput::Elements(1));
    group.bench_function("service_book_memory_store", |b| {
        b.iter_custom(|iters| {
            // Setup (not timed): a fresh store, one big slot, `iters` real-name patients.
            let directory = Arc::new(MemoryPatientDirectory::new());
            let patients = people(iters);
            for p in &patients {
                directory.put(PatientRecord {
                    person: p.clone(),
                    real_name_verified: true,
                    person_type: Some(PersonType::Resident),
                });
            }
            let store = Arc::new(MemoryAppointmentStore::new());
            let service = AppointmentService::new(
                store,
                directory,
                Arc::new(MemoryAuditLog::new()),
                Arc::new(ManualClock::at_ymd_hms(2026, 3, 8, 1, 0, 0)),
                Arc::new(SequentialIdGenerator::new()),
                BookingPolicy::hangzhou().unwrap(),
            );
            let s = slot("slot-1", "dep-1", suite_date(), u32::MAX);
            let op = Principal::Operator {
                operator: "opr-1".parse().unwrap(),
            };
            rt.block_on(service.put_slot(&op, s)).unwrap();
            let requests: Vec<(Principal, BookRequest)> = patients
                .iter()
                .map(|p| {
                    (
                        Principal::cardholder(p.clone()),
                        BookRequest {
                            slot: "slot-1".parse().unwrap(),
                            patient: p.clone(),
                            key: "k-1".parse().unwrap(),
                            allow_waitlist: false,
                        },
                    )
                })
                .collect();
            rt.block_on(async {
                let start = Instant::now();
                for (actor, request) in &requests {
                    service.book(actor, request).await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("decide_commit_memory", |b| {
        b.iter_custom(|iters| {
            let store = MemoryAppointmentStore::new();
            let s = slot("slot-1", "dep-1", suite_date(), u32::MAX);
            rt.block_on(store.put_slot(&s)).unwrap();
            let requests: Vec<_> = (0..iters)
                .map(|i| {
                    booking(
                        &s,
                        &format!("apt-{i}"),
                        &format!("psn-{i}"),
                        "k",
                        no_quota(),
                        false,
                    )
                })
                .collect();
            rt.block_on(async {
                let start = Instant::now();
                for r in &requests {
                    // Prefetch, decide, commit: what the service does after its checks.
                    citycard_testkit::healthcare::appointments::book(&store, r).await;
                }
                let elapsed: Duration = start.elapsed();
                elapsed
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bookings);
criterion_main!(benches);
