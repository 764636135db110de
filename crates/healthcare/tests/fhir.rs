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

/// A settled outpatient bill of the worked example (psn-e at hsp-1).
async fn settled() -> citycard_healthcare::SettlementRecord {
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
    billing.settle(&op, &key, &request).await.unwrap()
}

#[tokio::test]
async fn a_settlement_exports_as_claim_and_claim_response_with_adjudication() {
    let record = settled().await;
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

// ---------------------------------------------------------------- transaction bundle

/// FHIR's id pattern, `[A-Za-z0-9\-\.]{1,64}`.
fn is_fhir_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// Every `reference` string anywhere in a JSON value.
fn references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                if k == "reference"
                    && let Some(r) = x.as_str()
                {
                    out.push(r.to_owned());
                }
                references(x, out);
            }
        }
        Value::Array(xs) => xs.iter().for_each(|x| references(x, out)),
        _ => {}
    }
}

/// Every absolute `system` and `url` string anywhere in a JSON value (code
/// systems, extensions, naming systems; not the relative request urls).
fn systems(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                if (k == "system" || k == "url")
                    && let Some(r) = x.as_str()
                    && r.contains("://")
                {
                    out.push(r.to_owned());
                }
                systems(x, out);
            }
        }
        Value::Array(xs) => xs.iter().for_each(|x| systems(x, out)),
        _ => {}
    }
}

/// Parses with the independent fhirbolt R4 model in strict mode (unknown or
/// misplaced elements, wrong types and missing required elements fail).
///
/// fhirbolt 0.4 cannot read a Bundle past its first nested resource (the next
/// primitive fails as "expected Uri"), so a bundle is checked as its envelope
/// ([`envelope`]: entries without their resources) plus each resource alone.
fn parse_r4<T>(v: &Value) -> Result<T, String>
where
    T: for<'a> fhirbolt::serde::DeserializeResource<'a>,
{
    let text = serde_json::to_string(v).unwrap();
    fhirbolt::json::from_str::<T>(&text, None).map_err(|e| e.to_string())
}

/// A bundle with the `resource` of each entry left out.
fn envelope(bundle: &Value) -> Value {
    let mut out = bundle.clone();
    if let Some(entries) = out["entry"].as_array_mut() {
        for e in entries {
            if let Some(map) = e.as_object_mut() {
                map.remove("resource");
            }
        }
    }
    out
}

#[test]
fn the_independent_r4_model_refuses_what_is_not_r4() {
    use fhirbolt::model::r4::Resource;
    let bogus = serde_json::json!({"resourceType": "Claim", "id": "c1", "bogus": 1});
    assert!(
        parse_r4::<Resource>(&bogus).is_err(),
        "unknown elements fail"
    );
    let wrong = serde_json::json!({"resourceType": "Patient", "id": "p1", "active": "yes"});
    assert!(parse_r4::<Resource>(&wrong).is_err(), "wrong types fail");
    let fine = serde_json::json!({"resourceType": "Patient", "id": "p1", "active": true});
    assert!(parse_r4::<Resource>(&fine).is_ok());
}

#[tokio::test]
async fn a_transaction_bundle_parses_as_r4_and_every_reference_resolves() {
    use fhirbolt::model::r4::Resource;
    use fhirbolt::model::r4::resources::Bundle;
    // A slot id with colons, as the demo makes them.
    let s = slot("slot:dep-1:20260309:am", "dep-1", suite_date(), 4);
    let mut a = booking(&s, "apt-1", "psn-e", "k1", no_quota(), false).appointment;
    a.queue_number = Some(1);
    let view = SlotView {
        slot: s,
        booked: 1,
        waitlisted: 0,
        issued: 1,
    };
    let record = settled().await;
    let bundle = fhir::transaction_bundle(&fhir::BundleParts {
        appointment: Some((&a, &view)),
        settlement: Some(&record),
        payor: "hz-medical-insurance",
    });

    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "transaction");
    parse_r4::<Bundle>(&envelope(&bundle)).unwrap_or_else(|e| panic!("not an R4 Bundle: {e}"));
    let entries = bundle["entry"].as_array().unwrap();
    let mut full_urls = Vec::new();
    let mut kinds = Vec::new();
    for e in entries {
        let r = &e["resource"];
        let kind = r["resourceType"].as_str().unwrap();
        let id = r["id"].as_str().unwrap();
        parse_r4::<Resource>(r).unwrap_or_else(|err| panic!("{kind}/{id} is not R4: {err}"));
        assert!(is_fhir_id(id), "{kind} id {id:?} breaks FHIR's id pattern");
        assert_eq!(e["request"]["method"], "PUT");
        assert_eq!(e["request"]["url"], format!("{kind}/{id}"));
        let full = e["fullUrl"].as_str().unwrap().to_owned();
        assert_eq!(full, format!("{}/{kind}/{id}", fhir::CITYCARD_FHIR_BASE));
        assert!(!full_urls.contains(&full), "{full} twice");
        full_urls.push(full);
        kinds.push(kind.to_owned());
    }
    for kind in [
        "Patient",
        "Organization",
        "Coverage",
        "HealthcareService",
        "Schedule",
        "Slot",
        "Appointment",
        "Claim",
        "ClaimResponse",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} missing: {kinds:?}");
    }
    assert_eq!(
        kinds.iter().filter(|k| *k == "Organization").count(),
        2,
        "the hospital and the insurer"
    );
    let mut refs = Vec::new();
    references(&bundle, &mut refs);
    assert!(refs.len() >= 10, "{refs:?}");
    for r in &refs {
        let target = format!("{}/{r}", fhir::CITYCARD_FHIR_BASE);
        assert!(
            full_urls.contains(&target),
            "reference {r} does not resolve"
        );
    }
    let mut urls = Vec::new();
    systems(&bundle, &mut urls);
    for u in &urls {
        assert!(
            u.starts_with(fhir::CITYCARD_FHIR_BASE) || u.starts_with("http://terminology.hl7.org/"),
            "{u} is neither citycard's namespace nor HL7's"
        );
    }
    let text = bundle.to_string();
    assert!(!text.contains("example.invalid"), "{text}");
    // Opaque ids only: the patient has no name.
    let patient = entries
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Patient")
        .unwrap();
    assert!(patient["resource"].get("name").is_none());
}

#[test]
fn a_bundle_of_a_doctor_slot_names_the_practitioner() {
    let mut s = slot("slot-9", "dep-1", suite_date(), 2);
    s.doctor = Some("doc-7".parse().unwrap());
    let a = booking(&s, "apt-9", "psn-1", "k9", no_quota(), false).appointment;
    let view = SlotView {
        slot: s,
        booked: 1,
        waitlisted: 0,
        issued: 1,
    };
    let bundle = fhir::transaction_bundle(&fhir::BundleParts {
        appointment: Some((&a, &view)),
        settlement: None,
        payor: "hz-medical-insurance",
    });
    let mut refs = Vec::new();
    references(&bundle, &mut refs);
    assert!(refs.contains(&"Practitioner/doc-7".to_owned()), "{refs:?}");
    let entries = bundle["entry"].as_array().unwrap();
    for r in &refs {
        assert!(
            entries
                .iter()
                .any(|e| e["request"]["url"].as_str() == Some(r.as_str())),
            "reference {r} does not resolve"
        );
    }
    parse_r4::<fhirbolt::model::r4::resources::Bundle>(&envelope(&bundle)).unwrap();
    for e in entries {
        parse_r4::<fhirbolt::model::r4::Resource>(&e["resource"]).unwrap();
    }
}

proptest::proptest! {
    #[test]
    fn fhir_ids_match_the_pattern_keep_valid_ids_and_stay_distinct(
        a in "[ -~]{0,90}",
        b in "[ -~]{0,90}",
    ) {
        let (x, y) = (fhir::fhir_id(&a), fhir::fhir_id(&b));
        proptest::prop_assert!(is_fhir_id(&x), "{a:?} -> {x:?}");
        if is_fhir_id(&a) {
            proptest::prop_assert_eq!(&x, &a);
        }
        if a != b {
            proptest::prop_assert_ne!(x, y);
        }
    }
}
