//! Worked examples of the settlement order and its invariants.
#![allow(clippy::unwrap_used)]

use chrono::{Datelike, NaiveDate};
use citycard_healthcare::{
    AccountBalances, AnnualAccumulators, CatalogueClass, ChargeItem, Confidence, HealthcareError,
    HospitalLevel, PersonType, SettlementBreakdown, SettlementEngine, SettlementInput,
    SettlementParameters, VisitType,
};
use proptest::prelude::*;
use rust_decimal::Decimal;

fn y(s: &str) -> citycard_core::Money {
    s.parse().unwrap()
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 10).unwrap()
}

fn a(price: &str, qty: u32) -> ChargeItem {
    ChargeItem::new("a", CatalogueClass::A, y(price), qty)
}

fn b(share: &str, price: &str, qty: u32) -> ChargeItem {
    ChargeItem::new(
        "b",
        CatalogueClass::B {
            pre_self_pay: share.parse().unwrap(),
        },
        y(price),
        qty,
    )
}

fn c(price: &str, qty: u32) -> ChargeItem {
    ChargeItem::new("c", CatalogueClass::C, y(price), qty)
}

struct Case {
    person: PersonType,
    level: HospitalLevel,
    items: Vec<ChargeItem>,
    current_year: &'static str,
    accumulated: &'static str,
    deductible_met: &'static str,
}

fn run(case: &Case) -> SettlementBreakdown {
    let engine = SettlementEngine::hangzhou().unwrap();
    engine
        .compute(&SettlementInput {
            person_type: case.person,
            hospital_level: case.level,
            visit_type: VisitType::Outpatient,
            date: day(),
            items: &case.items,
            accounts: AccountBalances {
                current_year: y(case.current_year),
                accumulated: y(case.accumulated),
            },
            accumulators: AnnualAccumulators {
                year: 2026,
                deductible_met: y(case.deductible_met),
                fund_paid: citycard_core::Money::ZERO,
            },
        })
        .unwrap()
}

/// (within, cy, deductible, fund, copay, accumulated, cash)
fn parts(s: &SettlementBreakdown) -> [String; 7] {
    [
        s.within_policy,
        s.current_year_account_paid,
        s.deductible_applied,
        s.fund_paid,
        s.co_payment,
        s.accumulated_account_paid,
        s.cash_paid,
    ]
    .map(|m| m.to_string())
}

fn expect(case: Case, want: [&str; 7]) {
    let got = run(&case);
    assert_eq!(parts(&got), want.map(String::from), "{got:#?}");
    // Every example also balances.
    let paid = got.fund_paid.fen()
        + got.current_year_account_paid.fen()
        + got.accumulated_account_paid.fen()
        + got.cash_paid.fen();
    assert_eq!(paid, got.total.fen());
}

#[test]
fn resident_community_class_a_crosses_the_deductible() {
    // 500 within policy; 300 deductible; 70% of the 200 above = 140 fund; 60 co-pay.
    expect(
        Case {
            person: PersonType::Resident,
            level: HospitalLevel::Community,
            items: vec![a("500.00", 1)],
            current_year: "0",
            accumulated: "0",
            deductible_met: "0",
        },
        [
            "500.00", "0.00", "300.00", "140.00", "60.00", "0.00", "360.00",
        ],
    );
}

#[test]
fn resident_tertiary_class_b_pays_the_pre_self_pay_share_first() {
    // 10% of 1000 = 100 pre-self-pay; 900 within; deductible met; fund 40% = 360.
    let s = run(&Case {
        person: PersonType::Resident,
        level: HospitalLevel::Tertiary,
        items: vec![b("0.10", "1000.00", 1)],
        current_year: "0",
        accumulated: "0",
        deductible_met: "300.00",
    });
    assert_eq!(s.pre_self_paid, y("100.00"));
    assert_eq!(
        parts(&s),
        [
            "900.00", "0.00", "0.00", "360.00", "540.00", "0.00", "640.00"
        ]
        .map(String::from)
    );
}

#[test]
fn resident_secondary_class_c_is_fully_self_paid() {
    let s = run(&Case {
        person: PersonType::Resident,
        level: HospitalLevel::Secondary,
        items: vec![c("80.00", 2), a("100.00", 1)],
        current_year: "0",
        accumulated: "0",
        deductible_met: "300.00",
    });
    assert_eq!(s.fully_self_paid, y("160.00"));
    assert_eq!(s.total, y("260.00"));
    assert_eq!(
        parts(&s),
        ["100.00", "0.00", "0.00", "60.00", "40.00", "0.00", "200.00"].map(String::from)
    );
}

#[test]
fn the_excess_over_a_price_limit_is_self_paid() {
    // 3 × 120 with a limit of 100: 60 over the limit, 300 within; 70% fund.
    let s = run(&Case {
        person: PersonType::Resident,
        level: HospitalLevel::Community,
        items: vec![a("120.00", 3).with_price_limit(y("100.00"))],
        current_year: "0",
        accumulated: "0",
        deductible_met: "300.00",
    });
    assert_eq!(s.over_limit_self_paid, y("60.00"));
    assert_eq!(
        parts(&s),
        [
            "300.00", "0.00", "0.00", "210.00", "90.00", "0.00", "150.00"
        ]
        .map(String::from)
    );
}

#[test]
fn employee_current_year_account_first_then_deductible_from_accumulated() {
    // cy 200 pays first; 600 deductible and 24% of the 200 above from the accumulated account.
    let s = run(&Case {
        person: PersonType::EmployeeInService,
        level: HospitalLevel::Tertiary,
        items: vec![a("1000.00", 1)],
        current_year: "200.00",
        accumulated: "1000.00",
        deductible_met: "0",
    });
    assert_eq!(
        parts(&s),
        [
            "1000.00", "200.00", "600.00", "152.00", "48.00", "648.00", "0.00"
        ]
        .map(String::from)
    );
    assert_eq!(s.accounts_after.current_year, y("0.00"));
    assert_eq!(s.accounts_after.accumulated, y("352.00"));
    assert_eq!(s.accumulators_after.deductible_met, y("600.00"));
    assert_eq!(s.accumulators_after.fund_paid, y("152.00"));
}

#[test]
fn deductible_crossing_within_one_bill() {
    // 250 of 300 met: 50 deductible, 70% of the other 50 = 35 fund.
    let s = run(&Case {
        person: PersonType::Resident,
        level: HospitalLevel::Community,
        items: vec![a("100.00", 1)],
        current_year: "0",
        accumulated: "0",
        deductible_met: "250.00",
    });
    assert_eq!(
        parts(&s),
        ["100.00", "0.00", "50.00", "35.00", "15.00", "0.00", "65.00"].map(String::from)
    );
    assert_eq!(s.accumulators_after.deductible_met, y("300.00"));
}

#[test]
fn retired_accounts_run_out_and_cash_pays_the_rest() {
    // The unverified 2025 row (retired, secondary: 86%). cy 50 first; 86% of 250 = 215 fund;
    // 35 co-pay: 30 accumulated, 5 cash; class C 20: the accounts are empty, so cash.
    let s = run(&Case {
        person: PersonType::Retired,
        level: HospitalLevel::Secondary,
        items: vec![a("300.00", 1), c("20.00", 1)],
        current_year: "50.00",
        accumulated: "30.00",
        deductible_met: "200.00",
    });
    assert_eq!(
        parts(&s),
        [
            "300.00", "50.00", "0.00", "215.00", "35.00", "30.00", "25.00"
        ]
        .map(String::from)
    );
    assert_eq!(s.accounts_after, AccountBalances::default());
}

#[test]
fn student_tertiary_class_b_with_the_deductible() {
    // 20% of 500 = 100 pre-self-pay; 400 within: 300 deductible; 40% of 100 = 40 fund.
    expect(
        Case {
            person: PersonType::Student,
            level: HospitalLevel::Tertiary,
            items: vec![b("0.20", "500.00", 1)],
            current_year: "0",
            accumulated: "0",
            deductible_met: "0",
        },
        [
            "400.00", "0.00", "300.00", "40.00", "60.00", "0.00", "460.00",
        ],
    );
}

#[test]
fn employee_current_year_account_also_covers_out_of_policy_parts() {
    // within = 200 + 90; pre 10; class C 100; cy 1000 pays all 400.
    let s = run(&Case {
        person: PersonType::EmployeeInService,
        level: HospitalLevel::Community,
        items: vec![a("200.00", 1), c("100.00", 1), b("0.10", "100.00", 1)],
        current_year: "1000.00",
        accumulated: "0",
        deductible_met: "0",
    });
    assert_eq!(
        parts(&s),
        ["290.00", "400.00", "0.00", "0.00", "0.00", "0.00", "0.00"].map(String::from)
    );
    assert_eq!(s.accounts_after.current_year, y("600.00"));
    assert_eq!(s.accumulators_after.deductible_met, y("0.00"));
}

#[test]
fn shares_round_half_up_to_the_fen() {
    // 15% of 0.10 = 0.015 -> 0.02 pre-self-pay; 60% of 0.08 = 0.048 -> 0.05 fund.
    expect(
        Case {
            person: PersonType::Resident,
            level: HospitalLevel::Secondary,
            items: vec![b("0.15", "0.10", 1)],
            current_year: "0",
            accumulated: "0",
            deductible_met: "300.00",
        },
        ["0.08", "0.00", "0.00", "0.05", "0.03", "0.00", "0.05"],
    );
}

const CUSTOM: &str = "\
# test table
effective_from,person_type,hospital_level,visit_type,deductible,fund_ratio,annual_fund_cap,accounts_cover_self_pay,confidence,source
2024-01-01,resident,community,outpatient,300.00,0.70,,false,check,test
2025-01-01,resident,community,outpatient,400.00,0.70,100.00,false,sourced,test notice
";

/// healthcare.md: employee outpatient values come from one unofficial table effective
/// 2025-01-01 (in service: deductible 600, fund 86% community); shipped as unverified.
#[test]
fn employee_settlement_on_the_unverified_2025_row() {
    let engine = SettlementEngine::hangzhou().unwrap();
    let items = [a("1000.00", 1)];
    let input = |date: NaiveDate| SettlementInput {
        person_type: PersonType::EmployeeInService,
        hospital_level: HospitalLevel::Community,
        visit_type: VisitType::Outpatient,
        date,
        items: &items,
        accounts: AccountBalances {
            current_year: y("100.00"),
            accumulated: y("0"),
        },
        accumulators: AnnualAccumulators::new(date.year()),
    };
    // cy 100 first; 600 deductible in cash; 86% of the 300 above = 258 fund; 42 co-pay in cash.
    let s = engine
        .compute(&input(NaiveDate::from_ymd_opt(2025, 6, 1).unwrap()))
        .unwrap();
    assert_eq!(s.fund_ratio, "0.86".parse::<Decimal>().unwrap());
    assert_eq!(
        parts(&s),
        [
            "1000.00", "100.00", "600.00", "258.00", "42.00", "0.00", "642.00"
        ]
        .map(String::from)
    );
    assert_eq!(s.parameters_confidence, Confidence::Unverified);
    // The 2024 placeholder row (80%): 240 fund, 60 co-pay.
    let s = engine
        .compute(&input(NaiveDate::from_ymd_opt(2024, 6, 1).unwrap()))
        .unwrap();
    assert_eq!((s.fund_paid, s.co_payment), (y("240.00"), y("60.00")));
    assert_eq!(s.parameters_confidence, Confidence::Unverified);
    // Retired at a tertiary hospital, 2025: deductible 200, 82%.
    let row = engine
        .parameters()
        .lookup(
            PersonType::Retired,
            HospitalLevel::Tertiary,
            VisitType::Outpatient,
            NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
        )
        .unwrap();
    assert_eq!(
        (row.deductible, row.fund_ratio),
        (y("200.00"), "0.82".parse::<Decimal>().unwrap())
    );
    assert!(row.provenance.source.contains("unofficial"));
}

#[test]
fn every_shipped_row_is_marked_and_no_employee_row_is_presented_as_sourced() {
    let params = SettlementParameters::hangzhou().unwrap();
    let mut n = 0;
    for (person, _, _, row) in params.rows() {
        n += 1;
        assert!(!row.provenance.source.is_empty());
        if matches!(person, PersonType::EmployeeInService | PersonType::Retired) {
            assert_eq!(row.provenance.confidence, Confidence::Unverified, "{row:?}");
        } else {
            assert_eq!(row.provenance.confidence, Confidence::Check, "{row:?}");
        }
    }
    assert_eq!(n, 30);
    // A resident's breakdown says its row is to be checked.
    let s = run(&Case {
        person: PersonType::Resident,
        level: HospitalLevel::Community,
        items: vec![a("100.00", 1)],
        current_year: "0",
        accumulated: "0",
        deductible_met: "0",
    });
    assert_eq!(s.parameters_confidence, Confidence::Check);
}

#[test]
fn a_row_without_a_confidence_mark_is_refused() {
    let header = "effective_from,person_type,hospital_level,visit_type,deductible,fund_ratio,annual_fund_cap,accounts_cover_self_pay,confidence,source\n";
    for (row, says) in [
        (
            "2024-01-01,resident,community,outpatient,1.00,0.5,,true\n",
            "no confidence mark",
        ),
        (
            "2024-01-01,resident,community,outpatient,1.00,0.5,,true,,somewhere\n",
            "no confidence mark",
        ),
        (
            "2024-01-01,resident,community,outpatient,1.00,0.5,,true,probably,somewhere\n",
            "unknown confidence mark",
        ),
        (
            "2024-01-01,resident,community,outpatient,1.00,0.5,,true,sourced,\n",
            "names no source",
        ),
    ] {
        match SettlementParameters::from_csv(&format!("{header}{row}"), "t") {
            Err(HealthcareError::BadData { message, .. }) => {
                assert!(message.contains(says), "{message}")
            }
            other => panic!("{row}: {other:?}"),
        }
    }
}

fn custom_input(
    date: NaiveDate,
    items: &[ChargeItem],
    acc: AnnualAccumulators,
) -> SettlementInput<'_> {
    SettlementInput {
        person_type: PersonType::Resident,
        hospital_level: HospitalLevel::Community,
        visit_type: VisitType::Outpatient,
        date,
        items,
        accounts: AccountBalances::default(),
        accumulators: acc,
    }
}

#[test]
fn parameters_are_chosen_by_date_and_the_annual_cap_holds() {
    let engine = SettlementEngine::new(SettlementParameters::from_csv(CUSTOM, "custom").unwrap());
    let items = [a("1000.00", 1)];
    let d2024 = NaiveDate::from_ymd_opt(2024, 12, 31).unwrap();
    let s = engine
        .compute(&custom_input(d2024, &items, AnnualAccumulators::new(2024)))
        .unwrap();
    assert_eq!(s.deductible_applied, y("300.00"));
    assert_eq!(s.fund_paid, y("490.00"));
    // 2025: 400 deductible; 70% of 600 = 420 but the cap leaves 100 - 80 = 20.
    let d2025 = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    let acc = AnnualAccumulators {
        year: 2025,
        deductible_met: y("0"),
        fund_paid: y("80.00"),
    };
    let s = engine.compute(&custom_input(d2025, &items, acc)).unwrap();
    assert_eq!(s.deductible_applied, y("400.00"));
    assert_eq!(s.fund_paid, y("20.00"));
    assert_eq!(s.co_payment, y("580.00"));
    let d2023 = NaiveDate::from_ymd_opt(2023, 6, 1).unwrap();
    assert!(matches!(
        engine.compute(&custom_input(d2023, &items, AnnualAccumulators::new(2023))),
        Err(HealthcareError::NoParameters { .. })
    ));
}

#[test]
fn a_new_year_starts_with_fresh_accumulators() {
    let engine = SettlementEngine::new(SettlementParameters::from_csv(CUSTOM, "custom").unwrap());
    let items = [a("100.00", 1)];
    let last_year = AnnualAccumulators {
        year: 2024,
        deductible_met: y("300.00"),
        fund_paid: y("50.00"),
    };
    let d = NaiveDate::from_ymd_opt(2025, 2, 1).unwrap();
    let s = engine.compute(&custom_input(d, &items, last_year)).unwrap();
    assert_eq!(s.deductible_applied, y("100.00"));
    assert_eq!(s.accumulators_after.year, 2025);
}

#[test]
fn bad_bills_and_bad_tables_are_errors_not_panics() {
    let engine = SettlementEngine::hangzhou().unwrap();
    let d = day();
    for items in [
        vec![],
        vec![a("1.00", 0)],
        vec![a("-1.00", 1)],
        vec![b("1.5", "1.00", 1)],
        vec![a("1.00", 1).with_price_limit(y("-1.00"))],
    ] {
        let err = engine.compute(&custom_input(d, &items, AnnualAccumulators::new(2026)));
        assert!(
            matches!(err, Err(HealthcareError::InvalidInput(_))),
            "{items:?}"
        );
    }
    for bad in [
        "effective_from,person_type,hospital_level,visit_type,deductible,fund_ratio,annual_fund_cap,accounts_cover_self_pay\n2024-01-01,alien,community,outpatient,1.00,0.5,,true\n",
        "effective_from,person_type,hospital_level,visit_type,deductible,fund_ratio,annual_fund_cap,accounts_cover_self_pay\n2024-01-01,resident,community,outpatient,1.00,1.5,,true\n",
        "effective_from,person_type,hospital_level,visit_type,deductible,fund_ratio,annual_fund_cap,accounts_cover_self_pay\n2024-01-01,resident,community,outpatient,1.001,0.5,,true\n",
    ] {
        assert!(matches!(
            SettlementParameters::from_csv(bad, "bad"),
            Err(HealthcareError::BadData { .. })
        ));
    }
}

fn class() -> impl Strategy<Value = CatalogueClass> {
    prop_oneof![
        Just(CatalogueClass::A),
        (0u32..=100).prop_map(|p| CatalogueClass::B {
            pre_self_pay: Decimal::new(i64::from(p), 2)
        }),
        Just(CatalogueClass::C),
    ]
}

fn item() -> impl Strategy<Value = ChargeItem> {
    (
        class(),
        0i64..200_000,
        1u32..5,
        proptest::option::of(0i64..200_000),
    )
        .prop_map(|(class, fen, qty, limit)| ChargeItem {
            code: "x".into(),
            class,
            unit_price: citycard_core::Money::from_fen(fen),
            quantity: qty,
            price_limit: limit.map(citycard_core::Money::from_fen),
        })
}

fn person() -> impl Strategy<Value = PersonType> {
    proptest::sample::select(PersonType::ALL.to_vec())
}

fn level() -> impl Strategy<Value = HospitalLevel> {
    proptest::sample::select(HospitalLevel::ALL.to_vec())
}

fn visit() -> impl Strategy<Value = VisitType> {
    proptest::sample::select(VisitType::ALL.to_vec())
}

proptest! {
    #[test]
    fn parts_add_up_and_reversal_restores(
        person in person(), level in level(), visit in visit(),
        items in proptest::collection::vec(item(), 1..8),
        cy in 0i64..300_000, acc in 0i64..300_000, met in 0i64..100_000, fund in 0i64..1_000_000,
    ) {
        let engine = SettlementEngine::hangzhou().unwrap();
        let accounts = AccountBalances {
            current_year: citycard_core::Money::from_fen(cy),
            accumulated: citycard_core::Money::from_fen(acc),
        };
        let accumulators = AnnualAccumulators {
            year: 2026,
            deductible_met: citycard_core::Money::from_fen(met),
            fund_paid: citycard_core::Money::from_fen(fund),
        };
        let s = engine.compute(&SettlementInput {
            person_type: person, hospital_level: level, visit_type: visit, date: day(),
            items: &items, accounts, accumulators,
        }).unwrap();
        let sum_items: i64 = items.iter().map(|i| i.unit_price.fen() * i64::from(i.quantity)).sum();
        prop_assert_eq!(s.total.fen(), sum_items);
        prop_assert_eq!(
            s.fully_self_paid.fen() + s.over_limit_self_paid.fen() + s.pre_self_paid.fen() + s.within_policy.fen(),
            s.total.fen()
        );
        prop_assert_eq!(
            s.fund_paid.fen() + s.current_year_account_paid.fen() + s.accumulated_account_paid.fen() + s.cash_paid.fen(),
            s.total.fen()
        );
        prop_assert!(s.deductible_applied.fen() + s.fund_paid.fen() + s.co_payment.fen() <= s.within_policy.fen());
        for part in [s.fully_self_paid, s.over_limit_self_paid, s.pre_self_paid, s.within_policy,
            s.current_year_account_paid, s.deductible_applied, s.fund_paid, s.co_payment,
            s.accumulated_account_paid, s.cash_paid, s.accounts_after.current_year, s.accounts_after.accumulated] {
            prop_assert!(!part.is_negative());
        }
        // The deductible is never over-applied.
        prop_assert!(s.accumulators_after.deductible_met.fen() <= met.max(s.deductible.fen()));
        let (back_accounts, back_acc) = s.reverse(s.accounts_after, s.accumulators_after).unwrap();
        prop_assert_eq!(back_accounts, accounts);
        prop_assert_eq!(back_acc, accumulators);
    }
}
