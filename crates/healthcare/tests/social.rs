//! Social insurance: the memory store's conformance, the generator and the summary.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use citycard_core::{CivilMonth, DelegationScope, ManualClock, Money, PersonId, Principal, Scopes};
use citycard_healthcare::social::generate_history;
use citycard_healthcare::{
    ContributionRates, ContributionStatus, Employer, EmploymentSpell, HealthcareError, Insurance,
    MemoryMedicalPayments, MemoryPatientDirectory, MemorySocialInsuranceRecords, PaymentAccount,
    PersonCategory, SocialInsuranceRecords, SocialInsuranceService,
};
use citycard_testkit::social_insurance_records_conformance;

async fn records() -> MemorySocialInsuranceRecords {
    MemorySocialInsuranceRecords::new()
}

social_insurance_records_conformance!(records);

fn m(y: i32, mo: u32) -> CivilMonth {
    CivilMonth::new(y, mo).unwrap()
}

fn y(s: &str) -> Money {
    s.parse().unwrap()
}

fn pid(s: &str) -> PersonId {
    s.parse().unwrap()
}

fn history() -> Vec<citycard_healthcare::ContributionRecord> {
    let rates = ContributionRates::hangzhou().unwrap();
    generate_history(
        &rates,
        &pid("psn-1"),
        &[
            EmploymentSpell {
                employer: "emp-a".parse().unwrap(),
                from: m(2021, 1),
                to: m(2022, 6),
                wage: y("8000.00"),
                yearly_raise: "0.05".parse().unwrap(),
            },
            EmploymentSpell {
                employer: "emp-b".parse().unwrap(),
                from: m(2022, 9),
                to: m(2026, 2),
                wage: y("20000.00"),
                yearly_raise: "0.03".parse().unwrap(),
            },
        ],
        &[m(2026, 2)],
    )
    .unwrap()
}

#[test]
fn the_generator_applies_rates_base_limits_and_raises() {
    let h = history();
    let find = |month: CivilMonth, ins: Insurance| {
        h.iter()
            .find(|r| r.month == month && r.insurance == ins)
            .unwrap()
            .clone()
    };
    // 8000 × 14% / 8%.
    let p = find(m(2021, 1), Insurance::Pension);
    assert_eq!(
        (p.base, p.employer_amount, p.employee_amount),
        (y("8000.00"), y("1120.00"), y("640.00"))
    );
    assert_eq!(p.paid, y("1760.00"));
    // January raise: 8400 × 10.5% / 2%.
    let med = find(m(2022, 1), Insurance::Medical);
    assert_eq!(
        (med.base, med.employer_amount, med.employee_amount),
        (y("8400.00"), y("882.00"), y("168.00"))
    );
    // Above the cap: base 17880.75; 14% = 2503.305 -> 2503.31; 0.4% = 71.523 -> 71.52.
    let capped = find(m(2023, 5), Insurance::Pension);
    assert_eq!(capped.base, y("17880.75"));
    assert_eq!(capped.employer_amount, y("2503.31"));
    assert_eq!(
        find(m(2023, 5), Insurance::WorkInjury).employer_amount,
        y("71.52")
    );
    // The gap months are suspended with nothing due.
    let gap = find(m(2022, 7), Insurance::Pension);
    assert_eq!(gap.status, ContributionStatus::Suspended);
    assert_eq!(gap.due(), Money::ZERO);
    assert_eq!(
        find(m(2026, 2), Insurance::Medical).status,
        ContributionStatus::Arrears
    );
    // 62 months × 5 insurances.
    assert_eq!(h.len(), 62 * 5);
    // Overlapping spells are refused.
    let rates = ContributionRates::hangzhou().unwrap();
    let spell = EmploymentSpell {
        employer: "emp-a".parse().unwrap(),
        from: m(2021, 1),
        to: m(2021, 6),
        wage: y("8000.00"),
        yearly_raise: "0".parse().unwrap(),
    };
    assert!(generate_history(&rates, &pid("psn-1"), &[spell.clone(), spell], &[]).is_err());
    // Months before the first dated row have no rates.
    let early = EmploymentSpell {
        employer: "emp-a".parse().unwrap(),
        from: m(2020, 12),
        to: m(2021, 1),
        wage: y("8000.00"),
        yearly_raise: "0".parse().unwrap(),
    };
    assert!(matches!(
        generate_history(&rates, &pid("psn-1"), &[early], &[]),
        Err(HealthcareError::BadData { .. })
    ));
}

async fn service() -> (SocialInsuranceService, Arc<MemoryPatientDirectory>) {
    let store = Arc::new(MemorySocialInsuranceRecords::new());
    store.upsert(&history()).await.unwrap();
    store
        .put_employer(&Employer {
            id: "emp-a".parse().unwrap(),
            name: "杭州甲公司".into(),
            district: "西湖区".into(),
        })
        .await
        .unwrap();
    store
        .put_category(&pid("psn-1"), PersonCategory::Employee)
        .await
        .unwrap();
    let payments = Arc::new(MemoryMedicalPayments::new());
    payments.set_balance(
        PaymentAccount::CurrentYearAccount(pid("psn-1")),
        y("1200.00"),
    );
    payments.set_balance(
        PaymentAccount::AccumulatedAccount(pid("psn-1")),
        y("8800.00"),
    );
    let directory = Arc::new(MemoryPatientDirectory::new());
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 3, 15, 2, 0, 0));
    (
        SocialInsuranceService::new(store, directory.clone(), Some(payments), clock),
        directory,
    )
}

#[tokio::test]
async fn the_summary_shows_what_a_cardholder_sees() {
    let (svc, _) = service().await;
    let s = svc
        .summary(&Principal::cardholder(pid("psn-1")), &pid("psn-1"))
        .await
        .unwrap();
    assert_eq!(s.category, Some(PersonCategory::Employee));
    let employers: Vec<(&str, Option<&str>, CivilMonth, CivilMonth)> = s
        .employers
        .iter()
        .map(|e| {
            (
                e.id.as_str(),
                e.district.as_deref(),
                e.first_month,
                e.last_month,
            )
        })
        .collect();
    assert_eq!(
        employers,
        vec![
            ("emp-a", Some("西湖区"), m(2021, 1), m(2022, 6)),
            ("emp-b", None, m(2022, 9), m(2026, 2)),
        ]
    );
    let pension = s
        .insurances
        .iter()
        .find(|i| i.insurance == Insurance::Pension)
        .unwrap();
    // 18 months at emp-a, 42 at emp-b of which February 2026 is unpaid: 59 months.
    assert_eq!(pension.cumulative_months, 59);
    assert_eq!(pension.cumulative_text, "4 years 11 months");
    assert_eq!(pension.current_status, Some(ContributionStatus::Arrears));
    assert_eq!(pension.current_base, Some(y("17880.75")));
    // February 2026 is due in full: 2503.31 + 8% of 17880.75 (1430.46).
    assert_eq!(pension.arrears, y("3933.77"));
    // Only January 2026 was paid this year.
    assert_eq!(pension.employer_paid_this_year, y("2503.31"));
    assert_eq!(pension.employee_paid_this_year, y("1430.46"));
    let accounts = s.medical_accounts.unwrap();
    assert_eq!(
        (accounts.current_year, accounts.accumulated),
        (y("1200.00"), y("8800.00"))
    );
}

#[tokio::test]
async fn only_the_person_a_scoped_delegate_or_an_operator_may_look() {
    let (svc, directory) = service().await;
    let delegate = |scope: DelegationScope| Principal::Delegate {
        delegate: pid("psn-2"),
        on_behalf_of: pid("psn-1"),
        delegation: "dlg-1".parse().unwrap(),
        scopes: [scope].into_iter().collect(),
    };
    directory.grant(
        "dlg-1".parse().unwrap(),
        pid("psn-2"),
        pid("psn-1"),
        [DelegationScope::ViewRecords].into_iter().collect(),
    );
    directory.grant(
        "dlg-2".parse().unwrap(),
        pid("psn-2"),
        pid("psn-1"),
        [DelegationScope::BookAppointments].into_iter().collect(),
    );
    assert!(
        svc.summary(&delegate(DelegationScope::ViewRecords), &pid("psn-1"))
            .await
            .is_ok()
    );
    // A grant holding only BookAppointments reads nothing, whatever the principal claims.
    let overclaiming = Principal::Delegate {
        delegate: pid("psn-2"),
        on_behalf_of: pid("psn-1"),
        delegation: "dlg-2".parse().unwrap(),
        scopes: Scopes::all(),
    };
    assert!(matches!(
        svc.summary(&overclaiming, &pid("psn-1")).await,
        Err(HealthcareError::Denied(_))
    ));
    // A stranger quoting the family's grant reads nothing.
    let quoting = Principal::Delegate {
        delegate: pid("psn-9"),
        on_behalf_of: pid("psn-1"),
        delegation: "dlg-1".parse().unwrap(),
        scopes: Scopes::all(),
    };
    assert!(matches!(
        svc.summary(&quoting, &pid("psn-1")).await,
        Err(HealthcareError::Denied(_))
    ));
    assert!(matches!(
        svc.summary(&delegate(DelegationScope::TopUp), &pid("psn-1"))
            .await,
        Err(HealthcareError::Denied(_))
    ));
    assert!(matches!(
        svc.summary(&Principal::cardholder(pid("psn-2")), &pid("psn-1"))
            .await,
        Err(HealthcareError::Denied(_))
    ));
    let op = Principal::Operator {
        operator: "opr-1".parse().unwrap(),
    };
    assert!(svc.summary(&op, &pid("psn-1")).await.is_ok());
}
