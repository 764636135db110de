//! Personal-account funding as dated data (healthcare.md: outpatient mutual aid).
#![allow(clippy::unwrap_used)]

use citycard_core::{CivilMonth, Money};
use citycard_healthcare::{AccountFunding, Confidence, FundingInputs, HealthcareError, PersonType};

fn m(y: i32, mo: u32) -> CivilMonth {
    CivilMonth::new(y, mo).unwrap()
}

fn y(s: &str) -> Money {
    s.parse().unwrap()
}

#[test]
fn shipped_rows_fund_the_current_year_account_and_are_unverified() {
    let f = AccountFunding::hangzhou().unwrap();
    assert!(
        f.rows()
            .iter()
            .all(|r| r.provenance.confidence == Confidence::Unverified)
    );
    // In service: 2% of a 10000.55 base = 200.011 -> 200.01 a month.
    let inputs = FundingInputs {
        contribution_base: y("10000.55"),
        average_pension: Some(y("4321.00")),
    };
    let (deposit, row) = f
        .monthly_deposit(PersonType::EmployeeInService, m(2025, 3), inputs)
        .unwrap()
        .unwrap();
    assert_eq!(deposit, y("200.01"));
    assert_eq!(row.effective_from, m(2024, 1));
    // Retired: 2% of the average pension 4321 = 86.42 a month; January to June = 518.52.
    assert_eq!(
        f.deposits_between(PersonType::Retired, m(2025, 1), m(2025, 6), inputs)
            .unwrap(),
        y("518.52")
    );
    // Residents have no personal account; before the first row nothing is deposited.
    assert_eq!(
        f.monthly_deposit(PersonType::Resident, m(2025, 3), inputs)
            .unwrap(),
        None
    );
    assert_eq!(
        f.deposits_between(
            PersonType::EmployeeInService,
            m(2023, 1),
            m(2023, 12),
            inputs
        )
        .unwrap(),
        Money::ZERO
    );
    // A retiree's deposit needs the average pension.
    assert!(matches!(
        f.monthly_deposit(
            PersonType::Retired,
            m(2025, 3),
            FundingInputs {
                contribution_base: y("1.00"),
                average_pension: None
            }
        ),
        Err(HealthcareError::InvalidInput(_))
    ));
}

#[test]
fn a_new_dated_row_takes_over_and_unmarked_rows_are_refused() {
    let text = "\
effective_from,person_type,basis,value,confidence,source
2020-01,employee_in_service,share_of_base,0.05,check,pre-reform test row
2024-07,employee_in_service,fixed_monthly,150.00,sourced,test notice
";
    let f = AccountFunding::from_csv(text, "t").unwrap();
    let inputs = FundingInputs {
        contribution_base: y("8000.00"),
        average_pension: None,
    };
    // January to June 2024 at 5% of 8000 (400), July to December fixed 150.
    assert_eq!(
        f.deposits_between(
            PersonType::EmployeeInService,
            m(2024, 1),
            m(2024, 12),
            inputs
        )
        .unwrap(),
        y("3300.00")
    );
    for bad in [
        "effective_from,person_type,basis,value,confidence,source\n2024-01,retired,share_of_base,0.02\n",
        "effective_from,person_type,basis,value,confidence,source\n2024-01,retired,share_of_base,0.02,maybe,x\n",
        "effective_from,person_type,basis,value,confidence,source\n2024-01,retired,share_of_base,1.5,check,x\n",
        "effective_from,person_type,basis,value,confidence,source\n2024-01,retired,by_mood,0.02,check,x\n",
    ] {
        assert!(
            matches!(
                AccountFunding::from_csv(bad, "bad"),
                Err(HealthcareError::BadData { .. })
            ),
            "{bad}"
        );
    }
}
