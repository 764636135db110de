//! Fare quote throughput: legs priced per second.
#![allow(clippy::unwrap_used, missing_docs)]

use chrono::{Duration, TimeZone, Utc};
use citycard_core::Money;
use citycard_transit::fares::synthetic::{FeedSize, synthetic_feed, synthetic_journeys};
use citycard_transit::{CardKind, FareEngine, Leg, LegFare, Medium, Rider, SpendSoFar};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn journeys(e: &FareEngine) -> Vec<Vec<Leg>> {
    let t = Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
    let stations: Vec<&str> = e
        .network()
        .stops()
        .iter()
        .filter(|s| s.id.starts_with("m_"))
        .map(|s| s.id.as_str())
        .collect();
    let mut out = Vec::new();
    for (i, a) in stations.iter().enumerate() {
        let b = stations[(i * 7 + 3) % stations.len()];
        let board = t + Duration::minutes(i as i64 * 3);
        out.push(vec![
            e.route_leg("b7", "b_wulin", None, board, None).unwrap(),
            e.station_leg(
                "metro",
                a,
                Some(b),
                board + Duration::minutes(20),
                Some(board + Duration::minutes(50)),
            )
            .unwrap(),
            e.route_leg(
                "b500",
                "b_linping",
                Some("b_liangzhu"),
                board + Duration::minutes(60),
                Some(board + Duration::minutes(90)),
            )
            .unwrap(),
            e.station_leg(
                "metro",
                b,
                Some(a),
                board + Duration::minutes(120),
                Some(board + Duration::minutes(150)),
            )
            .unwrap(),
        ]);
    }
    out
}

fn bench(c: &mut Criterion) {
    let e = FareEngine::hangzhou().unwrap();
    let js = journeys(&e);
    let legs: u64 = js.iter().map(|j| j.len() as u64).sum();
    let riders = [
        Rider::default(),
        Rider {
            card_kind: CardKind::Senior,
            age: Some(72),
            volume_tiers: true,
            ..Rider::default()
        },
        Rider {
            card_kind: CardKind::Student,
            age: Some(15),
            volume_tiers: true,
            ..Rider::default()
        },
    ];
    let mut out: Vec<LegFare> = Vec::with_capacity(8);
    let mut g = c.benchmark_group("fare_quote");
    g.throughput(Throughput::Elements(legs * riders.len() as u64));
    g.bench_function("hangzhou_mixed_legs", |b| {
        b.iter(|| {
            let mut total = Money::ZERO;
            for r in &riders {
                for j in &js {
                    out.clear();
                    total = total
                        .checked_add(
                            e.quote_into(r, Money::from_fen(5_000), j, &mut out)
                                .unwrap(),
                        )
                        .unwrap();
                }
            }
            black_box(total)
        })
    });
    g.finish();

    // A large agency's feed: ≈10,000 stops, 400 routes, 500 leg rules.
    let data = synthetic_feed(FeedSize::LARGE);
    let mut g = c.benchmark_group("large_feed");
    g.sample_size(20);
    g.bench_function("load_10k_stops_400_routes_500_rules", |b| {
        b.iter(|| black_box(FareEngine::load(black_box(&data)).unwrap()))
    });
    let e = FareEngine::load(&data).unwrap();
    let js = synthetic_journeys(&e, 2_000, 1);
    let legs: u64 = js.iter().map(|j| j.len() as u64).sum();
    let riders = [
        Rider {
            medium: Medium::BankCard,
            ..Rider::default()
        },
        Rider {
            medium: Medium::RideCode,
            ..Rider::default()
        },
    ];
    g.throughput(Throughput::Elements(legs * riders.len() as u64));
    g.bench_function("quote_mixed_legs", |b| {
        b.iter(|| {
            let mut total = Money::ZERO;
            for r in &riders {
                for j in &js {
                    out.clear();
                    total = total
                        .checked_add(e.price_into(r, SpendSoFar::default(), j, &mut out).unwrap())
                        .unwrap();
                }
            }
            black_box(total)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
