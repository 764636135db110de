//! Money parsing and arithmetic. Targets: add under 10 ns, parse under 60 ns.
#![allow(missing_docs)]

use std::hint::black_box;

use citycard_core::Money;
use criterion::{Criterion, criterion_group, criterion_main};

fn money(c: &mut Criterion) {
    let a = Money::from_fen(123_456);
    let b = Money::from_fen(-7_890);
    c.bench_function("money/checked_add", |bench| {
        bench.iter(|| black_box(a).checked_add(black_box(b)))
    });
    c.bench_function("money/parse \"12345.67\"", |bench| {
        bench.iter(|| Money::parse(black_box("12345.67")))
    });
    c.bench_function("money/parse \"-0.5\"", |bench| {
        bench.iter(|| Money::parse(black_box("-0.5")))
    });
    c.bench_function("money/display", |bench| {
        bench.iter(|| black_box(a).to_string())
    });
}

criterion_group!(benches, money);
criterion_main!(benches);
