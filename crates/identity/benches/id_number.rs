//! Parse throughput: full validation with and without the region lookup.
#![allow(missing_docs)]
use std::hint::black_box;

use chrono::NaiveDate;
use citycard_identity::{IdNumber, RegionCheck, ValidationPolicy};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SAMPLES: [&str; 8] = [
    "11010519491231002X",
    "440524188001010014",
    "110101199003078670",
    "440308199901101512",
    "321083197812162119",
    "360426199101010071",
    "330106199003071234",
    "810000199408230021",
];

fn bench(c: &mut Criterion) {
    let today = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap_or_default();
    // Make sure every sample is valid so the bench measures the full path.
    let samples: Vec<String> = SAMPLES
        .iter()
        .map(|s| {
            let body: [u8; 17] = s.as_bytes()[..17].try_into().unwrap_or([b'0'; 17]);
            format!("{}{}", &s[..17], citycard_identity::check_character(&body))
        })
        .collect();
    let mut group = c.benchmark_group("id_number_parse");
    group.throughput(Throughput::Elements(samples.len() as u64));
    for (name, check) in [
        ("no_region_lookup", RegionCheck::Off),
        ("region_existed_any_time", RegionCheck::ExistedAnyTime),
        (
            "region_existed_in_birth_year",
            RegionCheck::ExistedInBirthYear,
        ),
    ] {
        let policy = ValidationPolicy::new().today(today).region_check(check);
        group.bench_function(name, |b| {
            b.iter(|| {
                for s in &samples {
                    let _ = black_box(IdNumber::parse_with(black_box(s), &policy));
                }
            })
        });
    }
    let policy = ValidationPolicy::new().today(today);
    group.bench_function("parse_and_region_names", |b| {
        b.iter(|| {
            for s in &samples {
                if let Ok(id) = IdNumber::parse_with(black_box(s), &policy) {
                    black_box(id.region());
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
