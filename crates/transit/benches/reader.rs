//! A reader's full decision: decode, verify, deny list, replay.
#![allow(clippy::unwrap_used, missing_docs)]

use chrono::{Duration, TimeZone, Utc};
use citycard_transit::codes::{Algorithm, Issuer, RideCodeWallet, SigningKey};
use citycard_transit::{
    CardRef, Decision, FareEngine, Reader, ReaderConfig, TapDirection, TapPlace,
};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let e = FareEngine::hangzhou().unwrap();
    let n = e.network();
    let t0 = Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
    let mut issuer = Issuer::new(1);
    issuer
        .rotate(
            Algorithm::Sm2,
            t0 - Duration::days(1),
            t0 + Duration::days(30),
        )
        .unwrap();
    let user = SigningKey::generate(Algorithm::Sm2).unwrap();
    let cred = issuer
        .certify(
            &user.public_key(),
            CardRef(42),
            t0 - Duration::days(1),
            t0 + Duration::days(7),
        )
        .unwrap();
    let mut wallet = RideCodeWallet::new(user, cred).unwrap();
    let codes: Vec<Vec<u8>> = (0..256)
        .map(|_| wallet.generate(t0).unwrap().as_bytes().to_vec())
        .collect();
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
    let keys = issuer.public_keys();
    let mut g = c.benchmark_group("reader_decision");
    // Credential already verified once on this reader (the usual case: a rider's codes share a credential).
    let mut warm = Reader::new(config, &keys);
    assert!(matches!(warm.decide(&codes[0], t0), Decision::Accept(_)));
    let mut i = 0usize;
    g.bench_function("sm2_warm_credential", |b| {
        b.iter_batched(
            || {
                i += 1;
                let mut w = warm.clone();
                w.update_deny_list(&[]);
                (w, codes[1 + i % (codes.len() - 1)].clone())
            },
            |(mut r, code)| assert!(matches!(r.decide(&code, t0), Decision::Accept(_))),
            BatchSize::SmallInput,
        )
    });
    // First sight of the credential: two SM2 verifications.
    g.bench_function("sm2_cold_credential", |b| {
        b.iter_batched(
            || (Reader::new(config, &keys), codes[1].clone()),
            |(mut r, code)| assert!(matches!(r.decide(&code, t0), Decision::Accept(_))),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    // The back office maps keyed card references back to cards: 1,000 ride-code
    // taps of 1,000 different credentials (no two share a cached reference).
    let mut taps = Vec::with_capacity(1000);
    for n in 0..1000u64 {
        let user = SigningKey::generate(Algorithm::Sm2).unwrap();
        let cred = issuer
            .certify(
                &user.public_key(),
                CardRef(n + 1),
                t0 - Duration::days(1),
                t0 + Duration::days(7),
            )
            .unwrap();
        let code = RideCodeWallet::new(user, cred)
            .unwrap()
            .generate(t0)
            .unwrap();
        match Reader::new(config, &keys).decide(code.as_bytes(), t0) {
            Decision::Accept(tap) => taps.push(tap),
            other => panic!("{other:?}"),
        }
    }
    let mut g = c.benchmark_group("back_office");
    g.throughput(criterion::Throughput::Elements(taps.len() as u64));
    g.bench_function("resolve_1000_code_taps", |b| {
        b.iter_batched(
            || taps.clone(),
            |mut t| assert_eq!(issuer.resolve_taps(&mut t), 0),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
