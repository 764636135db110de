//! Quotes, settlements and reversals through the payments port.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use citycard_core::{
    AuditLog, AuditQuery, IdempotencyKey, ManualClock, MemoryAuditLog, Money, PersonId, Principal,
    SequentialIdGenerator,
};
use citycard_healthcare::SettlementStore;
use citycard_healthcare::{
    AnnualAccumulators, BillRequest, BillingService, CashSource, CatalogueClass, ChargeItem,
    HealthcareError, HospitalLevel, MemoryMedicalPayments, MemoryPatientDirectory,
    MemorySettlementStore, PatientRecord, PaymentAccount, PersonType, SettlementEngine,
    SettlementStatus, VisitType,
};
use citycard_testkit::healthcare::FaultyMedicalPayments;
use citycard_testkit::{Fault, Faults};
use proptest::prelude::*;

fn y(s: &str) -> Money {
    s.parse().unwrap()
}

fn pid(s: &str) -> PersonId {
    s.parse().unwrap()
}

fn key(s: &str) -> IdempotencyKey {
    s.parse().unwrap()
}

fn operator() -> Principal {
    Principal::Operator {
        operator: "opr-1".parse().unwrap(),
    }
}

struct World {
    billing: BillingService,
    payments: Arc<FaultyMedicalPayments<MemoryMedicalPayments>>,
    faults: Faults,
    store: Arc<MemorySettlementStore>,
    audit: Arc<MemoryAuditLog>,
}

fn world() -> World {
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 3, 10, 2, 0, 0));
    let directory = Arc::new(MemoryPatientDirectory::new());
    for (p, t) in [
        ("psn-e", Some(PersonType::EmployeeInService)),
        ("psn-r", Some(PersonType::Resident)),
        ("psn-u", None),
    ] {
        directory.put(PatientRecord {
            person: pid(p),
            real_name_verified: true,
            person_type: t,
        });
    }
    let memory = MemoryMedicalPayments::new();
    memory.set_balance(
        PaymentAccount::CurrentYearAccount(pid("psn-e")),
        y("200.00"),
    );
    memory.set_balance(
        PaymentAccount::AccumulatedAccount(pid("psn-e")),
        y("1000.00"),
    );
    memory.set_balance(PaymentAccount::EWallet(pid("psn-e")), y("500.00"));
    memory.set_balance(PaymentAccount::EWallet(pid("psn-r")), y("500.00"));
    let faults = Faults::new();
    let payments = Arc::new(FaultyMedicalPayments::new(memory, faults.clone()));
    // The store commits its audit records to the same log the service appends to.
    let core = citycard_core::MemoryCore::new();
    let store = Arc::new(MemorySettlementStore::with_core(core.clone()));
    let audit = core.audit();
    let billing = BillingService::new(
        Arc::new(SettlementEngine::hangzhou().unwrap()),
        store.clone(),
        payments.clone(),
        directory,
        audit.clone(),
        clock,
        Arc::new(SequentialIdGenerator::new()),
    );
    World {
        billing,
        payments,
        faults,
        store,
        audit,
    }
}

fn bill(patient: &str, level: HospitalLevel, items: Vec<ChargeItem>) -> BillRequest {
    BillRequest {
        patient: pid(patient),
        hospital: "hsp-1".parse().unwrap(),
        hospital_level: level,
        visit_type: VisitType::Outpatient,
        items,
        cash_source: CashSource::EWallet,
    }
}

fn a(price: &str) -> ChargeItem {
    ChargeItem::new("a", CatalogueClass::A, y(price), 1)
}

fn balance(w: &World, account: PaymentAccount) -> Money {
    w.payments.inner().balance(&account)
}

fn snapshot(w: &World, person: &str) -> [Money; 5] {
    [
        balance(w, PaymentAccount::CurrentYearAccount(pid(person))),
        balance(w, PaymentAccount::AccumulatedAccount(pid(person))),
        balance(w, PaymentAccount::EWallet(pid(person))),
        balance(w, PaymentAccount::PooledFund),
        balance(w, PaymentAccount::Hospital("hsp-1".parse().unwrap())),
    ]
}

#[tokio::test]
async fn a_quote_changes_nothing_and_a_settlement_moves_exactly_the_split() {
    let w = world();
    let request = bill("psn-e", HospitalLevel::Tertiary, vec![a("1000.00")]);
    let before = snapshot(&w, "psn-e");
    let quote = w.billing.quote(&operator(), &request).await.unwrap();
    assert_eq!(snapshot(&w, "psn-e"), before);
    // Worked example: cy 200 first; 600 deductible and 48 co-pay from the accumulated
    // account; 76% of 200 = 152 from the fund.
    assert_eq!(quote.fund_paid, y("152.00"));
    let s = w
        .billing
        .settle(&operator(), &key("s-1"), &request)
        .await
        .unwrap();
    assert_eq!(s.status, SettlementStatus::Completed);
    assert_eq!(s.breakdown, quote);
    assert_eq!(
        snapshot(&w, "psn-e"),
        [
            y("0.00"),
            y("352.00"),
            y("500.00"),
            y("-152.00"),
            y("1000.00")
        ]
    );
    let acc = w.store.accumulators(&pid("psn-e"), 2026).await.unwrap();
    assert_eq!(
        (acc.deductible_met, acc.fund_paid),
        (y("600.00"), y("152.00"))
    );
    // A retry returns the first result and pays nothing more.
    let again = w
        .billing
        .settle(&operator(), &key("s-1"), &request)
        .await
        .unwrap();
    assert_eq!(again, s);
    assert_eq!(
        balance(&w, PaymentAccount::Hospital("hsp-1".parse().unwrap())),
        y("1000.00")
    );
    // The same key for another bill is refused.
    let other = bill("psn-e", HospitalLevel::Tertiary, vec![a("10.00")]);
    assert!(matches!(
        w.billing.settle(&operator(), &key("s-1"), &other).await,
        Err(HealthcareError::KeyReused)
    ));
    let audit = w.audit.query(&AuditQuery::all()).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.record.action == "healthcare.settle")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_refused_payment_leaves_balances_and_accumulators_untouched() {
    let w = world();
    // Resident: 300 deductible + 60 co-pay = 360 from an e-wallet holding 300 is refused.
    w.payments
        .inner()
        .set_balance(PaymentAccount::EWallet(pid("psn-r")), y("300.00"));
    let request = bill("psn-r", HospitalLevel::Community, vec![a("500.00")]);
    let before = snapshot(&w, "psn-r");
    assert!(matches!(
        w.billing.settle(&operator(), &key("s-1"), &request).await,
        Err(HealthcareError::PaymentRefused(_))
    ));
    assert_eq!(snapshot(&w, "psn-r"), before);
    assert_eq!(
        w.store.accumulators(&pid("psn-r"), 2026).await.unwrap(),
        AnnualAccumulators::new(2026)
    );
    assert!(matches!(
        w.billing.settle(&operator(), &key("s-1"), &request).await,
        Err(HealthcareError::PaymentRefused(_))
    ));
    // Paying the cash share at the counter works.
    let mut at_counter = request.clone();
    at_counter.cash_source = CashSource::Counter;
    let s = w
        .billing
        .settle(&operator(), &key("s-2"), &at_counter)
        .await
        .unwrap();
    assert_eq!(s.breakdown.cash_paid, y("360.00"));
    assert_eq!(
        balance(&w, PaymentAccount::EWallet(pid("psn-r"))),
        y("300.00")
    );
    assert_eq!(
        balance(&w, PaymentAccount::Hospital("hsp-1".parse().unwrap())),
        y("140.00")
    );
}

#[tokio::test]
async fn an_unknown_outcome_is_retried_with_the_same_transfers_and_pays_once() {
    for fault in [Fault::UnknownOutcome, Fault::Timeout] {
        let w = world();
        let request = bill("psn-r", HospitalLevel::Community, vec![a("500.00")]);
        w.faults.next("execute", fault);
        assert!(matches!(
            w.billing.settle(&operator(), &key("s-1"), &request).await,
            Err(HealthcareError::PaymentUnknown)
        ));
        let s = w
            .billing
            .settle(&operator(), &key("s-1"), &request)
            .await
            .unwrap();
        assert_eq!(s.status, SettlementStatus::Completed);
        assert_eq!(
            balance(&w, PaymentAccount::EWallet(pid("psn-r"))),
            y("140.00"),
            "{fault:?}"
        );
        let acc = w.store.accumulators(&pid("psn-r"), 2026).await.unwrap();
        assert_eq!(acc.deductible_met, y("300.00"));
    }
}

#[tokio::test]
async fn reversal_restores_every_balance_and_accumulator() {
    let w = world();
    let before = snapshot(&w, "psn-e");
    let request = bill(
        "psn-e",
        HospitalLevel::Secondary,
        vec![
            a("800.00"),
            ChargeItem::new("c", CatalogueClass::C, y("50.00"), 2),
        ],
    );
    let s = w
        .billing
        .settle(&operator(), &key("s-1"), &request)
        .await
        .unwrap();
    assert_ne!(snapshot(&w, "psn-e"), before);
    assert!(matches!(
        w.billing
            .reverse(&Principal::cardholder(pid("psn-e")), &s.id, &key("r-1"))
            .await,
        Err(HealthcareError::Denied(_))
    ));
    w.faults.next("execute", Fault::UnknownOutcome);
    assert!(matches!(
        w.billing.reverse(&operator(), &s.id, &key("r-1")).await,
        Err(HealthcareError::PaymentUnknown)
    ));
    let r = w
        .billing
        .reverse(&operator(), &s.id, &key("r-1"))
        .await
        .unwrap();
    assert_eq!(r.status, SettlementStatus::Reversed);
    assert_eq!(snapshot(&w, "psn-e"), before);
    assert_eq!(
        w.store.accumulators(&pid("psn-e"), 2026).await.unwrap(),
        AnnualAccumulators::new(2026)
    );
    assert_eq!(
        w.billing
            .reverse(&operator(), &s.id, &key("r-1"))
            .await
            .unwrap(),
        r
    );
    assert!(matches!(
        w.billing.reverse(&operator(), &s.id, &key("r-2")).await,
        Err(HealthcareError::KeyReused)
    ));
}

#[tokio::test]
async fn only_the_patient_or_the_facility_bills_and_the_uninsured_pay_cash() {
    let w = world();
    let request = bill("psn-r", HospitalLevel::Community, vec![a("10.00")]);
    assert!(matches!(
        w.billing
            .settle(&Principal::cardholder(pid("psn-e")), &key("s-1"), &request)
            .await,
        Err(HealthcareError::Denied(_))
    ));
    w.billing
        .settle(&Principal::cardholder(pid("psn-r")), &key("s-1"), &request)
        .await
        .unwrap();
    let uninsured = bill("psn-u", HospitalLevel::Community, vec![a("10.00")]);
    assert!(matches!(
        w.billing.quote(&operator(), &uninsured).await,
        Err(HealthcareError::InvalidInput(_))
    ));
}

#[tokio::test]
async fn the_same_key_from_two_principals_settles_two_bills() {
    let w = world();
    let patient = Principal::cardholder(pid("psn-r"));
    let first = bill("psn-r", HospitalLevel::Community, vec![a("10.00")]);
    let second = bill("psn-r", HospitalLevel::Community, vec![a("20.00")]);
    let by_patient = w
        .billing
        .settle(&patient, &key("bill-1"), &first)
        .await
        .expect("the patient settles under its key");
    let by_hospital = w
        .billing
        .settle(&operator(), &key("bill-1"), &second)
        .await
        .expect("the hospital's identical key is another bill");
    assert_ne!(by_patient.id, by_hospital.id);
    // Each principal's retry still replays its own bill.
    let again = w
        .billing
        .settle(&patient, &key("bill-1"), &first)
        .await
        .unwrap();
    assert_eq!(again.id, by_patient.id);
}

#[tokio::test]
async fn a_stale_begin_is_refused_by_the_store() {
    let w = world();
    let request = bill("psn-r", HospitalLevel::Community, vec![a("500.00")]);
    let s = w
        .billing
        .settle(&operator(), &key("s-1"), &request)
        .await
        .unwrap();
    // Replaying the same record under another key and id finds the accumulators changed.
    let mut replay = s.clone();
    replay.key = key("s-other");
    replay.id = "stl-other".parse().unwrap();
    replay.status = citycard_healthcare::SettlementStatus::Pending;
    let plan = citycard_healthcare::billing::decide::SettlementPlan {
        expected_status: None,
        accumulators: Some(citycard_healthcare::billing::decide::AccumulatorsChange {
            before: replay.accumulators_before,
            after: replay.breakdown.accumulators_after,
        }),
        record: replay.clone(),
        core: Default::default(),
    };
    assert!(matches!(
        w.store.commit(&plan).await,
        Err(citycard_core::StoreError::Conflict(_))
    ));
    assert_eq!(w.store.settlement(&replay.id).await.unwrap(), None);
    let current = w.store.accumulators(&pid("psn-r"), 2026).await.unwrap();
    assert_eq!(current.deductible_met, y("300.00"));
}

fn item() -> impl Strategy<Value = ChargeItem> {
    (0u8..3, 1i64..50_000, 1u32..3).prop_map(|(c, fen, q)| {
        let class = match c {
            0 => CatalogueClass::A,
            1 => CatalogueClass::B {
                pre_self_pay: rust_decimal::Decimal::new(15, 2),
            },
            _ => CatalogueClass::C,
        };
        ChargeItem::new("x", class, Money::from_fen(fen), q)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Settle several bills, reverse them all in any order: every balance and accumulator
    /// returns exactly to where it started.
    #[test]
    fn reversing_every_settlement_in_any_order_restores_the_start(
        bills in proptest::collection::vec((proptest::collection::vec(item(), 1..4), 0usize..3), 1..6),
        order in proptest::collection::vec(any::<proptest::sample::Index>(), 6),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let w = world();
            w.payments.inner().set_balance(PaymentAccount::EWallet(pid("psn-e")), y("100000.00"));
            let before = snapshot(&w, "psn-e");
            let mut ids = Vec::new();
            for (i, (items, level)) in bills.iter().enumerate() {
                let request = bill("psn-e", HospitalLevel::ALL[*level], items.clone());
                let s = w.billing.settle(&operator(), &key(&format!("s-{i}")), &request).await.unwrap();
                let t = s.breakdown;
                assert_eq!(t.fund_paid.fen() + t.account_paid().fen() + t.cash_paid.fen(), t.total.fen());
                ids.push(s.id);
            }
            let mut k = 0;
            while !ids.is_empty() {
                let idx = order[k % order.len()].index(ids.len());
                let id = ids.remove(idx);
                w.billing.reverse(&operator(), &id, &key(&format!("r-{k}"))).await.unwrap();
                k += 1;
            }
            assert_eq!(snapshot(&w, "psn-e"), before);
            assert_eq!(w.store.accumulators(&pid("psn-e"), 2026).await.unwrap(), AnnualAccumulators::new(2026));
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_settlements_for_one_person_apply_the_deductible_once() {
    let w = Arc::new(world());
    w.payments
        .inner()
        .set_balance(PaymentAccount::EWallet(pid("psn-r")), y("10000.00"));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let w = Arc::clone(&w);
        tasks.push(tokio::spawn(async move {
            let request = bill("psn-r", HospitalLevel::Community, vec![a("100.00")]);
            w.billing
                .settle(&operator(), &key(&format!("c-{i}")), &request)
                .await
        }));
    }
    let mut deductible = 0i64;
    let mut fund = 0i64;
    let mut settled = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(s) => {
                deductible += s.breakdown.deductible_applied.fen();
                fund += s.breakdown.fund_paid.fen();
                settled += 1;
            }
            // Under heavy contention a settlement may give up; it then changed nothing.
            Err(HealthcareError::Conflict(_)) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(settled >= 1);
    let acc = w.store.accumulators(&pid("psn-r"), 2026).await.unwrap();
    assert_eq!(acc.deductible_met.fen(), deductible);
    assert_eq!(acc.fund_paid.fen(), fund);
    // 300 deductible in all: the first three bills pay it, the rest get 70% from the fund.
    assert_eq!(deductible, 30_000.min(settled * 10_000));
    assert_eq!(-balance(&w, PaymentAccount::PooledFund).fen(), fund);
    assert_eq!(
        balance(&w, PaymentAccount::Hospital("hsp-1".parse().unwrap())).fen(),
        settled * 10_000
    );
}

#[tokio::test]
async fn the_hospital_identifies_patients_by_credential_and_nothing_leaks_in_debug() {
    use citycard_core::Sensitive;
    use citycard_healthcare::PatientIdentifier;
    let directory = MemoryPatientDirectory::new();
    let token = PatientIdentifier::CredentialToken(Sensitive::new("QR-8F3A9C2D7E".to_string()));
    let id_number = PatientIdentifier::IdNumber(Sensitive::new("330106199001011234".to_string()));
    directory.link(token.clone(), pid("psn-r"));
    directory.link(id_number.clone(), pid("psn-r"));
    let billing = BillingService::new(
        Arc::new(SettlementEngine::hangzhou().unwrap()),
        Arc::new(MemorySettlementStore::new()),
        Arc::new(MemoryMedicalPayments::new()),
        Arc::new(directory),
        Arc::new(MemoryAuditLog::new()),
        Arc::new(ManualClock::at_ymd_hms(2026, 3, 10, 2, 0, 0)),
        Arc::new(SequentialIdGenerator::new()),
    );
    assert_eq!(
        billing.identify(&operator(), &token).await.unwrap(),
        pid("psn-r")
    );
    assert_eq!(
        billing.identify(&operator(), &id_number).await.unwrap(),
        pid("psn-r")
    );
    assert!(matches!(
        billing
            .identify(&Principal::cardholder(pid("psn-r")), &token)
            .await,
        Err(HealthcareError::Denied(_))
    ));
    let unknown = PatientIdentifier::SocialSecurityCard(Sensitive::new("A12345678".to_string()));
    assert!(matches!(
        billing.identify(&operator(), &unknown).await,
        Err(HealthcareError::NotFound(_))
    ));
    let shown = format!("{id_number:?} {token:?}");
    assert!(!shown.contains("330106199001011234"), "{shown}");
    assert!(!shown.contains("QR-8F3A9C2D7E"), "{shown}");
}
