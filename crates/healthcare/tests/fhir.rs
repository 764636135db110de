//! FHIR R4 export: required elements, standard names and consistent amounts.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use citycard_core::{
    IdempotencyKey, ManualClock, MemoryAuditLog, Money, PersonId, Principal, SequentialIdGenerator,
};
use citycard_healthcare::appointments::{Cancellation, CancelledBy};
use citycard_healthcare::fhir;
use citycard_healthcare::{
    AppointmentStatus, BillRequest, BillingService, CashSource, CatalogueClass, ChargeItem,
    HospitalLevel, MemoryMedicalPayments, MemoryPatientDirectory, MemorySettlementStore,
    PatientRecord, PaymentAccount, PersonType, SettlementEngine, SlotStatus, SlotView, VisitType,
};
use citycard_testkit::healthcare::{booking, no_quota, slot, suite_date};
use serde_json::Value;

fn pid(s: &str) -> PersonId {
    s.parse().unwrap()
}

fn amount(v: &Value) -> Money {
    assert_eq!(v["currency"], "CNY");
    assert!(v["value"].is_number(), "{v}");
    v["value"].to_string().parse().unwrap()
}

#[test]
fn slots_carry_status_times_and_capacity() {
    let s = slot("slot-1", "dep-1", suite_date(), 3);
    let mut view = SlotView {
        slot: s,
        booked: 1,
        waitlisted: 0,
        issued: 1,
    };
    let v = fhir::slot(&view);
    assert_eq!(v["resourceType"], "Slot");
    assert_eq!(v["id"], "slot-1");
    assert_eq!(v["schedule"]["reference"], "Schedule/dep-1");
    assert_eq!(v["status"], "free");
    assert_eq!(v["start"], "2026-03-09T08:00:00+08:00");
    assert_eq!(v["end"], "2026-03-09T12:00:00+08:00");
    let ext = v["extension"].as_array().unwrap();
    assert!(ext.iter().any(
        |e| e["url"].as_str().unwrap().ends_with("slot-capacity") && e["valueUnsignedInt"] == 3
    ));
    assert!(
        ext.iter()
            .any(|e| e["url"].as_str().unwrap().ends_with("slot-remaining")
                && e["valueUnsignedInt"] == 2)
    );
    view.booked = 3;
    assert_eq!(fhir::slot(&view)["status"], "busy");
    view.slot.status = SlotStatus::Closed;
    assert_eq!(fhir::slot(&view)["status"], "busy-unavailable");
}

#[test]
fn appointments_have_participants_and_a_reason_only_when_cancelled() {
    let s = slot("slot-1", "dep-1", suite_date(), 4);
    let mut a = booking(&s, "apt-1", "psn-1", "k1", no_quota(), false).appointment;
    a.queue_number = Some(2);
    a.expected_at = Some(s.start + chrono::Duration::hours(1));
    let v = fhir::appointment(&a);
    assert_eq!(v["resourceType"], "Appointment");
    assert_eq!(v["status"], "booked");
    assert_eq!(v["start"], "2026-03-09T09:00:00+08:00");
    assert_eq!(v["end"], "2026-03-09T12:00:00+08:00");
    assert_eq!(v["slot"][0]["reference"], "Slot/slot-1");
    let participants = v["participant"].as_array().unwrap();
    assert!(!participants.is_empty());
    for p in participants {
        assert!(p["actor"]["reference"].is_string());
        assert!(p["status"].is_string());
    }
    assert_eq!(participants[0]["actor"]["reference"], "Patient/psn-1");
    assert_eq!(v["identifier"][0]["value"], "2");
    assert!(v.get("cancelationReason").is_none());
    a.status = AppointmentStatus::CheckedIn;
    assert_eq!(fhir::appointment(&a)["status"], "checked-in");
    a.status = AppointmentStatus::Cancelled;
    a.cancellation = Some(Cancellation {
        by: CancelledBy::Facility,
        reason: "doctor on leave".into(),
        at: s.start,
    });
    let v = fhir::appointment(&a);
    assert_eq!(v["cancelationReason"]["coding"][0]["code"], "prov");
    assert_eq!(v["cancelationReason"]["text"], "doctor on leave");
}

#[test]
fn coverage_names_beneficiary_payor_and_plan() {
    let v = fhir::coverage(&pid("psn-1"), PersonType::Retired, "hz-medical-insurance");
    assert_eq!(v["resourceType"], "Coverage");
    assert_eq!(v["status"], "active");
    assert_eq!(v["beneficiary"]["reference"], "Patient/psn-1");
    assert_eq!(
        v["payor"][0]["reference"],
        "Organization/hz-medical-insurance"
    );
    assert_eq!(v["class"][0]["value"], "retired");
    assert!(v["class"][0]["type"]["coding"][0]["code"].is_string());
}

#[tokio::test]
async fn a_settlement_exports_as_claim_and_claim_response_with_adjudication() {
    let directory = Arc::new(MemoryPatientDirectory::new());
    directory.put(PatientRecord {
        person: pid("psn-e"),
        real_name_verified: true,
        person_type: Some(PersonType::EmployeeInService),
    });
    let payments = Arc::new(MemoryMedicalPayments::new());
    payments.set_balance(
        PaymentAccount::CurrentYearAccount(pid("psn-e")),
        "200.00".parse().unwrap(),
    );
    payments.set_balance(
        PaymentAccount::AccumulatedAccount(pid("psn-e")),
        "1000.00".parse().unwrap(),
    );
    payments.set_balance(
        PaymentAccount::EWallet(pid("psn-e")),
        "500.00".parse().unwrap(),
    );
    let billing = BillingService::new(
        Arc::new(SettlementEngine::hangzhou().unwrap()),
        Arc::new(MemorySettlementStore::new()),
        payments,
        directory,
        Arc::new(MemoryAuditLog::new()),
        Arc::new(ManualClock::at_ymd_hms(2026, 3, 10, 2, 0, 0)),
        Arc::new(SequentialIdGenerator::new()),
    );
    let request = BillRequest {
        patient: pid("psn-e"),
        hospital: "hsp-1".parse().unwrap(),
        hospital_level: HospitalLevel::Tertiary,
        visit_type: VisitType::Outpatient,
        items: vec![
            ChargeItem::new("consult", CatalogueClass::A, "1000.00".parse().unwrap(), 1),
            ChargeItem::new("vitamins", CatalogueClass::C, "12.34".parse().unwrap(), 2),
        ],
        cash_source: CashSource::EWallet,
    };
    let key: IdempotencyKey = "s-1".parse().unwrap();
    let op = Principal::Operator {
        operator: "opr-1".parse().unwrap(),
    };
    let record = billing.settle(&op, &key, &request).await.unwrap();
    let (claim, response) = fhir::settlement(&record, "hz-medical-insurance");

    for field in [
        "status",
        "type",
        "use",
        "patient",
        "created",
        "provider",
        "priority",
        "insurance",
        "total",
    ] {
        assert!(claim.get(field).is_some(), "Claim.{field} missing");
    }
    assert_eq!(claim["resourceType"], "Claim");
    assert_eq!(claim["use"], "claim");
    assert_eq!(claim["type"]["coding"][0]["code"], "professional");
    assert_eq!(claim["insurance"][0]["focal"], true);
    assert_eq!(
        claim["insurance"][0]["coverage"]["reference"],
        "Coverage/cov-psn-e"
    );
    assert_eq!(claim["item"][1]["sequence"], 2);
    assert_eq!(amount(&claim["item"][1]["net"]), "24.68".parse().unwrap());
    assert_eq!(amount(&claim["total"]), "1024.68".parse().unwrap());

    for field in [
        "status", "type", "use", "patient", "created", "insurer", "outcome",
    ] {
        assert!(
            response.get(field).is_some(),
            "ClaimResponse.{field} missing"
        );
    }
    assert_eq!(response["resourceType"], "ClaimResponse");
    assert_eq!(response["outcome"], "complete");
    assert_eq!(
        response["request"]["reference"],
        format!("Claim/{}", claim["id"].as_str().unwrap())
    );
    let total = |code: &str| {
        response["total"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["category"]["coding"][0]["code"] == code)
            .map(|t| amount(&t["amount"]))
            .unwrap()
    };
    // The worked example: 76% of 200 above the 600 deductible after cy 200.
    assert_eq!(total("submitted"), "1024.68".parse().unwrap());
    assert_eq!(total("eligible"), "1000.00".parse().unwrap());
    assert_eq!(total("deductible"), "600.00".parse().unwrap());
    assert_eq!(total("benefit"), "152.00".parse().unwrap());
    assert_eq!(total("copay"), "48.00".parse().unwrap());
    assert_eq!(total("fully-self-paid"), "24.68".parse().unwrap());
    let paid = total("benefit").fen()
        + total("current-year-account").fen()
        + total("accumulated-account").fen()
        + total("cash").fen();
    assert_eq!(paid, total("submitted").fen());
    assert_eq!(
        amount(&response["payment"]["amount"]),
        "152.00".parse().unwrap()
    );
    let items = response["item"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1]["itemSequence"], 2);
    assert_eq!(
        items[1]["adjudication"][1]["category"]["coding"][0]["code"],
        "eligible"
    );
    assert_eq!(amount(&items[1]["adjudication"][1]["amount"]), Money::ZERO);
}

#[test]
fn money_values_print_exactly() {
    for text in ["0.01", "12.30", "2503.31", "12345678901.23", "-5.05"] {
        let m: Money = text.parse().unwrap();
        assert_eq!(amount(&fhir::money(m)), m, "{text}");
    }
}

#[test]
fn schedules_name_their_actors_and_horizon() {
    use citycard_healthcare::{ScheduleTemplate, Session, WeeklySession};
    let template = ScheduleTemplate {
        hospital: "hsp-1".parse().unwrap(),
        department: "dep-1".parse().unwrap(),
        doctor: Some("doc-7".parse().unwrap()),
        sessions: vec![WeeklySession {
            weekday: chrono::Weekday::Mon,
            session: Session::Morning,
            capacity: 30,
        }],
    };
    let start = citycard_core::start_of_civil_day(suite_date());
    let v = fhir::schedule(
        "doc-7",
        &template,
        (start, start + chrono::Duration::days(7)),
    );
    assert_eq!(v["resourceType"], "Schedule");
    assert_eq!(v["actor"][0]["reference"], "Practitioner/doc-7");
    assert_eq!(v["actor"][1]["reference"], "HealthcareService/dep-1");
    assert_eq!(v["planningHorizon"]["start"], "2026-03-09T00:00:00+08:00");
    assert_eq!(v["planningHorizon"]["end"], "2026-03-16T00:00:00+08:00");
}
