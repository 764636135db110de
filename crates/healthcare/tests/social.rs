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
    // January raise: 8400 × (10.5% medical + 1.2% maternity, merged) / 2%.
    let med = find(m(2022, 1), Insurance::Medical);
    assert_eq!(
        (med.base, med.employer_amount, med.employee_amount),
        (y("8400.00"), y("982.80"), y("168.00"))
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
    // 62 months × 4 insurances (maternity is part of medical from 2020-01).
    assert_eq!(h.len(), 62 * 4);
    assert!(h.iter().all(|r| r.insurance != Insurance::Maternity));
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
    // 20000 raised 3% each January: 20600, 21218, 21854.54, 22510.18 in 2026, under the
    // (unverified) 2025 upper limit of 25299.
    assert_eq!(pension.current_base, Some(y("22510.18")));
    // February 2026 is due in full: 14% = 3151.4252 -> 3151.43, 8% = 1800.8144 -> 1800.81.
    assert_eq!(pension.arrears, y("4952.24"));
    // Only January 2026 was paid this year.
    assert_eq!(pension.employer_paid_this_year, y("3151.43"));
    assert_eq!(pension.employee_paid_this_year, y("1800.81"));
    // As of March 2026, after the maternity merger: four lines.
    assert_eq!(s.insurances.len(), 4);
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

const RATES_2019: &str = "\
effective_from,insurance,employer_rate,employee_rate,confidence,source
2019-01,pension,0.14,0.08,check,test
2019-01,medical,0.105,0.02,check,test
2019-01,unemployment,0.005,0.005,check,test
2019-01,work_injury,0.004,0,check,test
2019-01,maternity,0.012,0,check,test
";
const BASES_2019: &str = "\
effective_from,base_min,base_max,confidence,source
2019-01,3000.00,17000.00,check,test
";

/// healthcare.md: maternity is part of employee medical insurance since the merger
/// (国办发〔2019〕10号); Hangzhou's shipped merger row (2020-01) is unverified.
async fn merger_summary(as_of: (i32, u32, u32)) -> citycard_healthcare::SocialInsuranceSummary {
    let rates = ContributionRates::from_csv(RATES_2019, BASES_2019)
        .unwrap()
        .with_mergers_csv(citycard_healthcare::social::HANGZHOU_MERGERS_CSV)
        .unwrap();
    let h = generate_history(
        &rates,
        &pid("psn-9"),
        &[EmploymentSpell {
            employer: "emp-a".parse().unwrap(),
            from: m(2019, 10),
            to: m(2020, 2),
            wage: y("10000.00"),
            yearly_raise: "0".parse().unwrap(),
        }],
        &[],
    )
    .unwrap();
    // Oct-Dec 2019: five records a month; Jan-Feb 2020: four.
    assert_eq!(h.len(), 3 * 5 + 2 * 4);
    let store = Arc::new(MemorySocialInsuranceRecords::new());
    store.upsert(&h).await.unwrap();
    let clock = Arc::new(ManualClock::at_ymd_hms(as_of.0, as_of.1, as_of.2, 2, 0, 0));
    let svc =
        SocialInsuranceService::new(store, Arc::new(MemoryPatientDirectory::new()), None, clock);
    svc.summary(&Principal::System, &pid("psn-9"))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_summary_after_the_maternity_merger_has_four_lines_and_before_five() {
    let after = merger_summary((2020, 3, 15)).await;
    let lines: Vec<Insurance> = after.insurances.iter().map(|i| i.insurance).collect();
    assert_eq!(
        lines,
        [
            Insurance::Pension,
            Insurance::Medical,
            Insurance::Unemployment,
            Insurance::WorkInjury
        ]
    );
    let medical = &after.insurances[1];
    assert_eq!(medical.cumulative_months, 5);
    // 2020: January and February, medical 10.5% + maternity 1.2% of 10000 = 1170 each.
    assert_eq!(medical.employer_paid_this_year, y("2340.00"));
    assert_eq!(medical.employee_paid_this_year, y("400.00"));

    // As of December 2019, before the merger: five lines, maternity on its own.
    let before = merger_summary((2019, 12, 15)).await;
    assert_eq!(before.insurances.len(), 5);
    let maternity = before
        .insurances
        .iter()
        .find(|i| i.insurance == Insurance::Maternity)
        .unwrap();
    assert_eq!(maternity.cumulative_months, 3);
    // 2019: October to December, maternity 1.2% of 10000 = 120 each.
    assert_eq!(maternity.employer_paid_this_year, y("360.00"));
    let medical = before
        .insurances
        .iter()
        .find(|i| i.insurance == Insurance::Medical)
        .unwrap();
    assert_eq!(medical.employer_paid_this_year, y("3150.00"));
}

#[test]
fn rates_bases_and_mergers_carry_their_confidence_and_refuse_unmarked_rows() {
    use citycard_healthcare::Confidence;
    let rates = ContributionRates::hangzhou().unwrap();
    let (from, merger) = rates.maternity_merger().unwrap();
    assert_eq!(*from, m(2020, 1));
    assert_eq!(merger.confidence, Confidence::Unverified);
    assert_eq!(
        rates.base_provenance(m(2025, 6)).unwrap().confidence,
        Confidence::Unverified
    );
    assert_eq!(
        rates.base_limits(m(2025, 6)),
        Some((y("4986.00"), y("25299.00")))
    );
    assert_eq!(
        rates.base_provenance(m(2024, 6)).unwrap().confidence,
        Confidence::Check
    );
    assert_eq!(
        rates
            .rate_provenance(Insurance::Pension, m(2021, 1))
            .unwrap()
            .confidence,
        Confidence::Check
    );
    let unmarked_rate = "effective_from,insurance,employer_rate,employee_rate,confidence,source\n2021-01,pension,0.14,0.08\n";
    let unmarked_base =
        "effective_from,base_min,base_max,confidence,source\n2021-01,3000.00,17000.00,,test\n";
    for (r, b) in [(unmarked_rate, BASES_2019), (RATES_2019, unmarked_base)] {
        match ContributionRates::from_csv(r, b) {
            Err(HealthcareError::BadData { message, .. }) => {
                assert!(message.contains("no confidence mark"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }
    let unmarked_merger =
        "effective_from,insurance,merged_into,confidence,source\n2020-01,maternity,medical\n";
    assert!(matches!(
        citycard_healthcare::social::parse_mergers(unmarked_merger),
        Err(HealthcareError::BadData { .. })
    ));
}
