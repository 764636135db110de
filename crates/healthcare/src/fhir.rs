//! FHIR R4 JSON export: Slot, Appointment, Coverage, and a settlement as Claim plus
//! ClaimResponse with adjudication amounts.
//!
//! Resources are built as `serde_json::Value`s with the standard R4 element names. What FHIR
//! has no element for (a slot's capacity, a queue number, the Chinese settlement parts) goes
//! into extensions, identifiers or adjudication categories under citycard's own URLs.
//!
//! Decision: JSON numbers for money. FHIR's `Money.value` is a JSON number, and serde_json
//! (without its `arbitrary_precision` feature, which would change number handling for the
//! whole workspace) holds numbers as `f64`. Amounts are converted from their exact decimal
//! text only here, at the serialisation boundary; every amount of at most 13 digits of yuan
//! prints back exactly (f64 keeps 15 significant digits), which a test checks.

use chrono::{DateTime, SecondsFormat, Utc};
use citycard_core::{Money, PersonId, to_civil};
use serde_json::{Value, json};

use crate::appointments::{Appointment, AppointmentStatus, SlotStatus, SlotView};
use crate::billing::{SettlementRecord, SettlementStatus};
use crate::settlement::{CatalogueClass, PersonType, VisitType};

/// The base of citycard's FHIR extension and code system URLs.
pub const CITYCARD_FHIR_BASE: &str = "https://example.invalid/citycard/fhir";
/// The HL7 adjudication code system.
pub const ADJUDICATION_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/adjudication";

fn url(path: &str) -> String {
    format!("{CITYCARD_FHIR_BASE}/{path}")
}

fn instant(at: DateTime<Utc>) -> String {
    to_civil(at).to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// FHIR `Money` (`{"value": 12.3, "currency": "CNY"}`).
pub fn money(amount: Money) -> Value {
    let value: Value = serde_json::from_str(&amount.to_string()).unwrap_or(Value::Null);
    json!({ "value": value, "currency": "CNY" })
}

fn coding(system: &str, code: &str) -> Value {
    json!({ "coding": [{ "system": system, "code": code }] })
}

fn patient_ref(person: &PersonId) -> Value {
    json!({ "reference": format!("Patient/{person}") })
}

/// FHIR `Slot.status` for a slot and its counts.
pub fn slot_status(view: &SlotView) -> &'static str {
    match view.slot.status {
        SlotStatus::Closed => "busy-unavailable",
        SlotStatus::EnteredInError => "entered-in-error",
        SlotStatus::Open if view.remaining() == 0 => "busy",
        SlotStatus::Open => "free",
    }
}

/// A slot as a FHIR R4 `Slot`, with capacity and remaining places as extensions.
pub fn slot(view: &SlotView) -> Value {
    let s = &view.slot;
    let schedule = match &s.doctor {
        Some(doctor) => format!("Schedule/{doctor}"),
        None => format!("Schedule/{}", s.department),
    };
    json!({
        "resourceType": "Slot",
        "id": s.id.as_str(),
        "schedule": { "reference": schedule },
        "status": slot_status(view),
        "start": instant(s.start),
        "end": instant(s.end),
        "overbooked": false,
        "extension": [
            { "url": url("StructureDefinition/slot-capacity"), "valueUnsignedInt": s.capacity },
            { "url": url("StructureDefinition/slot-remaining"), "valueUnsignedInt": view.remaining() },
            { "url": url("StructureDefinition/slot-session"), "valueCode": s.session.code() }
        ]
    })
}

/// An appointment as a FHIR R4 `Appointment`, with the queue number as an identifier.
pub fn appointment(a: &Appointment) -> Value {
    let mut out = json!({
        "resourceType": "Appointment",
        "id": a.id.as_str(),
        "status": a.status.code(),
        "start": instant(a.expected_at.unwrap_or(a.start)),
        "end": instant(a.end),
        "created": instant(a.created_at),
        "slot": [{ "reference": format!("Slot/{}", a.slot) }],
        "participant": [
            { "actor": patient_ref(&a.patient), "required": "required", "status": "accepted" },
            {
                "actor": { "reference": format!("HealthcareService/{}", a.department) },
                "required": "required",
                "status": "accepted"
            }
        ]
    });
    if let Some(q) = a.queue_number {
        out["identifier"] = json!([{
            "system": url(&format!("queue-number/{}", a.slot)),
            "value": q.to_string()
        }]);
    }
    if matches!(
        a.status,
        AppointmentStatus::Cancelled | AppointmentStatus::Noshow
    ) {
        let reason = match (&a.cancellation, a.status) {
            (Some(c), _) => json!({
                "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason",
                    "code": c.by.code()
                }],
                "text": c.reason
            }),
            (None, _) => json!({ "text": "no-show" }),
        };
        out["cancelationReason"] = reason;
    }
    out
}

/// A person's medical insurance as a FHIR R4 `Coverage`.
pub fn coverage(person: &PersonId, person_type: PersonType, payor: &str) -> Value {
    json!({
        "resourceType": "Coverage",
        "id": format!("cov-{person}"),
        "status": "active",
        "type": coding(&url("CodeSystem/insurance-type"), "basic-medical"),
        "subscriber": patient_ref(person),
        "beneficiary": patient_ref(person),
        "relationship": coding("http://terminology.hl7.org/CodeSystem/subscriber-relationship", "self"),
        "payor": [{ "reference": format!("Organization/{payor}") }],
        "class": [{
            "type": coding("http://terminology.hl7.org/CodeSystem/coverage-class", "plan"),
            "value": person_type.code()
        }]
    })
}

fn claim_type(visit: VisitType) -> Value {
    let code = match visit {
        VisitType::Outpatient => "professional",
        VisitType::Inpatient => "institutional",
    };
    coding("http://terminology.hl7.org/CodeSystem/claim-type", code)
}

fn class_code(class: CatalogueClass) -> &'static str {
    match class {
        CatalogueClass::A => "a",
        CatalogueClass::B { .. } => "b",
        CatalogueClass::C => "c",
    }
}

fn adjudication(system: &str, code: &str, amount: Money) -> Value {
    json!({ "category": coding(system, code), "amount": money(amount) })
}

/// A settlement as a FHIR R4 `Claim` (the bill) and `ClaimResponse` (the adjudication).
///
/// Totals use the HL7 adjudication codes (`submitted`, `eligible`, `deductible`, `benefit`,
/// `copay`) and citycard codes for the Chinese parts (fully self-paid, over-limit,
/// pre-self-pay, current-year and accumulated account, cash).
pub fn settlement(record: &SettlementRecord, payor: &str) -> (Value, Value) {
    let r = &record.request;
    let b = &record.breakdown;
    let claim_id = format!("claim-{}", record.id);
    let created = record.created_at;
    let items: Vec<Value> = r
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            json!({
                "sequence": i + 1,
                "productOrService": coding(&url("CodeSystem/charge-item"), &item.code),
                "quantity": { "value": item.quantity },
                "unitPrice": money(item.unit_price),
                "net": money(item.unit_price.checked_mul_int(i64::from(item.quantity)).unwrap_or(Money::MAX)),
                "extension": [{
                    "url": url("StructureDefinition/catalogue-class"),
                    "valueCode": class_code(item.class)
                }]
            })
        })
        .collect();
    let claim = json!({
        "resourceType": "Claim",
        "id": claim_id,
        "status": "active",
        "type": claim_type(r.visit_type),
        "use": "claim",
        "patient": patient_ref(&r.patient),
        "created": instant(created),
        "provider": { "reference": format!("Organization/{}", r.hospital) },
        "priority": coding("http://terminology.hl7.org/CodeSystem/processpriority", "normal"),
        "insurance": [{
            "sequence": 1,
            "focal": true,
            "coverage": { "reference": format!("Coverage/cov-{}", r.patient) }
        }],
        "item": items,
        "total": money(b.total)
    });
    let own = url("CodeSystem/settlement-part");
    let response_items: Vec<Value> = r
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let split = item.split().ok();
            let gross = split.map_or(Money::ZERO, |s| s.gross);
            let eligible = split.map_or(Money::ZERO, |s| s.within_policy);
            json!({
                "itemSequence": i + 1,
                "adjudication": [
                    adjudication(ADJUDICATION_SYSTEM, "submitted", gross),
                    adjudication(ADJUDICATION_SYSTEM, "eligible", eligible)
                ]
            })
        })
        .collect();
    let status = match record.status {
        SettlementStatus::Reversed | SettlementStatus::Failed => "cancelled",
        _ => "active",
    };
    let outcome = match record.status {
        SettlementStatus::Pending | SettlementStatus::Reversing => "queued",
        SettlementStatus::Failed => "error",
        _ => "complete",
    };
    let response = json!({
        "resourceType": "ClaimResponse",
        "id": format!("claimresponse-{}", record.id),
        "status": status,
        "type": claim_type(r.visit_type),
        "use": "claim",
        "patient": patient_ref(&r.patient),
        "created": instant(created),
        "insurer": { "reference": format!("Organization/{payor}") },
        "requestor": { "reference": format!("Organization/{}", r.hospital) },
        "request": { "reference": format!("Claim/{claim_id}") },
        "outcome": outcome,
        "item": response_items,
        "total": [
            adjudication(ADJUDICATION_SYSTEM, "submitted", b.total),
            adjudication(ADJUDICATION_SYSTEM, "eligible", b.within_policy),
            adjudication(ADJUDICATION_SYSTEM, "deductible", b.deductible_applied),
            adjudication(ADJUDICATION_SYSTEM, "benefit", b.fund_paid),
            adjudication(ADJUDICATION_SYSTEM, "copay", b.co_payment),
            adjudication(&own, "fully-self-paid", b.fully_self_paid),
            adjudication(&own, "over-limit-self-paid", b.over_limit_self_paid),
            adjudication(&own, "pre-self-paid", b.pre_self_paid),
            adjudication(&own, "current-year-account", b.current_year_account_paid),
            adjudication(&own, "accumulated-account", b.accumulated_account_paid),
            adjudication(&own, "cash", b.cash_paid)
        ],
        "payment": {
            "type": coding("http://terminology.hl7.org/CodeSystem/ex-paymenttype", "complete"),
            "amount": money(b.fund_paid)
        }
    });
    (claim, response)
}

/// A weekly schedule as a FHIR R4 `Schedule` with a planning horizon.
pub fn schedule(
    id: &str,
    template: &crate::appointments::ScheduleTemplate,
    horizon: (DateTime<Utc>, DateTime<Utc>),
) -> Value {
    let mut actors = Vec::new();
    if let Some(doctor) = &template.doctor {
        actors.push(json!({ "reference": format!("Practitioner/{doctor}") }));
    }
    actors.push(json!({ "reference": format!("HealthcareService/{}", template.department) }));
    json!({
        "resourceType": "Schedule",
        "id": id,
        "active": true,
        "actor": actors,
        "planningHorizon": { "start": instant(horizon.0), "end": instant(horizon.1) }
    })
}
