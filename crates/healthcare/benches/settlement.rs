//! Settlements computed per second (target: at least 1,000,000 on one core).
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use chrono::NaiveDate;
use citycard_core::Money;
use citycard_healthcare::{
    AccountBalances, AnnualAccumulators, CatalogueClass, ChargeItem, HospitalLevel, PersonType,
    SettlementEngine, SettlementInput, VisitType,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn bill() -> Vec<ChargeItem> {
    vec![
        ChargeItem::new("consult", CatalogueClass::A, Money::from_fen(2500), 1),
        ChargeItem::new(
            "drug-b",
            CatalogueClass::B {
                pre_self_pay: "0.10".parse().unwrap(),
            },
            Money::from_fen(3875),
            3,
        ),
        ChargeItem::new("test", CatalogueClass::A, Money::from_fen(12000), 1)
            .with_price_limit(Money::from_fen(10000)),
        ChargeItem::new("vitamin", CatalogueClass::C, Money::from_fen(1990), 2),
    ]
}

fn settlement(c: &mut Criterion) {
    let engine = SettlementEngine::hangzhou().unwrap();
    let items = bill();
    let date = NaiveDate::from_ymd_opt(2026, 3, 10).unwrap();
    let mut group = c.benchmark_group("settlement");
    group.throughput(Throughput::Elements(1));
    group.bench_function("compute_4_items_employee", |b| {
        b.iter(|| {
            let input = SettlementInput {
                person_type: PersonType::EmployeeInService,
                hospital_level: HospitalLevel::Tertiary,
                visit_type: VisitType::Outpatient,
                date,
                items: black_box(&items),
                accounts: AccountBalances {
                    current_year: Money::from_fen(5000),
                    accumulated: Money::from_fen(100_000),
                },
                accumulators: AnnualAccumulators {
                    year: 2026,
                    deductible_met: Money::from_fen(40_000),
                    fund_paid: Money::ZERO,
                },
            };
            black_box(engine.compute(black_box(&input)).unwrap())
        })
    });
    group.bench_function("compute_4_items_resident", |b| {
        b.iter(|| {
            let input = SettlementInput {
                person_type: PersonType::Resident,
                hospital_level: HospitalLevel::Community,
                visit_type: VisitType::Outpatient,
                date,
                items: black_box(&items),
                accounts: AccountBalances::default(),
                accumulators: AnnualAccumulators::new(2026),
            };
            black_box(engine.compute(black_box(&input)).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, settlement);
criterion_main!(benches);
