//! Measures a reader's full decision (decode, verify, deny list, replay) and prints percentiles.
//!
//! `cargo run --release -p citycard-transit --example reader_latency` (SM2), or
//! `cargo run --release -p citycard-transit --features ed25519 --example reader_latency -- ed25519`.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use citycard_transit::codes::{Algorithm, Issuer, RideCodeWallet, SigningKey};
use citycard_transit::{
    CardRef, Decision, DenyEntry, DenyReason, FareEngine, Reader, ReaderConfig, TapDirection,
    TapPlace,
};

fn main() {
    let alg = match std::env::args().nth(1).as_deref() {
        Some("ed25519") => Algorithm::Ed25519,
        _ => Algorithm::Sm2,
    };
    let e = FareEngine::hangzhou().unwrap();
    let n = e.network();
    let t0 = Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
    let mut issuer = Issuer::new(1);
    issuer
        .rotate(alg, t0 - Duration::days(1), t0 + Duration::days(30))
        .unwrap();
    let config = ReaderConfig {
        reader: 1,
        place: TapPlace::Station {
            network: n.network("metro").unwrap(),
            stop: n.stop("m_wulin").unwrap(),
        },
        direction: TapDirection::In,
        max_code_age_seconds: 60,
        clock_skew_seconds: 30,
        repeat_window_seconds: 0,
    };
    let mut reader = Reader::new(config, &issuer.public_keys());
    // A deny list of 100,000 cards, none of them ours.
    let deny: Vec<DenyEntry> = (1_000_000..1_100_000)
        .map(|c| DenyEntry {
            card: CardRef(c),
            reason: DenyReason::Arrears,
            since: t0,
        })
        .collect();
    reader.update_deny_list(&deny);
    // 200 riders, 10 codes each: the first code of each rider is a cold credential.
    let mut codes = Vec::new();
    for rider in 0..200u64 {
        let user = SigningKey::generate(alg).unwrap();
        let cred = issuer
            .certify(
                &user.public_key(),
                CardRef(rider),
                t0 - Duration::days(1),
                t0 + Duration::days(7),
            )
            .unwrap();
        let mut w = RideCodeWallet::new(user, cred).unwrap();
        for _ in 0..10 {
            codes.push(w.generate(t0).unwrap().as_bytes().to_vec());
        }
    }
    let mut times = Vec::with_capacity(codes.len());
    for code in &codes {
        let start = Instant::now();
        let d = reader.decide(code, t0);
        times.push(start.elapsed());
        assert!(matches!(d, Decision::Accept(_)));
    }
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    println!(
        "{alg:?}: {} decisions (200 cold credentials, 1800 warm): p50 {:.0?}  p90 {:.0?}  p99 {:.0?}  max {:.0?}",
        times.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        times[times.len() - 1]
    );
}
