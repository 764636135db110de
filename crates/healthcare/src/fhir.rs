//! FHIR R4 JSON export: Slot, Appointment, Coverage, and a settlement as Claim plus
//! ClaimResponse with adjudication amounts, alone or together in a `transaction`
//! [`Bundle`](transaction_bundle) in which every reference resolves.
//!
//! Resources are built as `serde_json::Value`s with the standard R4 element names. What FHIR
//! has no element for (a slot's capacity, a queue number, the Chinese settlement parts) goes
//! into extensions, identifiers or adjudication categories under citycard's own URLs.
//!
//! # The citycard namespace
//!
//! Everything local lives under [`CITYCARD_FHIR_BASE`], which is also the `fullUrl`
//! base of bundle entries (so `Patient/psn-1` in a bundle resolves to the entry
//! `{base}/Patient/psn-1`):
//!
//! | URL under the base | what |
//! |---|---|
//! | `CodeSystem/charge-item` | charge item codes of a bill (the hospital's own codes) |
//! | `CodeSystem/settlement-part` | `fully-self-paid`, `over-limit-self-paid`, `pre-self-paid`, `current-year-account`, `accumulated-account`, `cash` |
//! | `CodeSystem/insurance-type` | `basic-medical` |
//! | `CodeSystem/person-type` | the insured person's type (`employee_in_service`, `retired`, …) |
//! | `StructureDefinition/slot-capacity`, `slot-remaining`, `slot-session`, `catalogue-class` | extensions |
//! | `NamingSystem/person`, `hospital`, `department`, `doctor`, `payor` | identifier systems of the opaque ids |
//! | `NamingSystem/queue-number/{slot id}` | queue numbers of one slot |
//!
//! Resource ids follow FHIR's `[A-Za-z0-9\-\.]{1,64}`: citycard ids that do not
//! ([`fhir_id`]: a slot id holds colons) have every other character replaced by `-`
//! and, past 64 characters, a hash suffix. Resources carry opaque ids only, never
//! names or ID numbers.
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

/// The base of citycard's FHIR URLs: code systems, extensions, naming systems and
/// bundle entries (see the module docs). A deployment publishing its own FHIR
/// server puts its base here when it forks the crate's data.
pub const CITYCARD_FHIR_BASE: &str = "https://fhir.citycard.cn";
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

/// A citycard id as a FHIR resource id (`[A-Za-z0-9\-\.]{1,64}`): other characters
/// become `-`; an id longer than 64 keeps 47 characters and a 16-hex-digit hash of the
/// whole id, so distinct long ids stay distinct.
pub fn fhir_id(id: &str) -> String {
    let clean: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let clean = if clean.is_empty() {
        "-".to_owned()
    } else {
        clean
    };
    if clean.len() <= 64 && clean == id {
        return clean;
    }
    if clean.len() <= 64 {
        // Replaced characters could make two ids equal: add the hash when anything changed.
        let hashed = format!("{}-{:016x}", clean, fnv1a(id));
        if hashed.len() <= 64 {
            return hashed;
        }
    }
    format!("{}-{:016x}", &clean[..47], fnv1a(id))
}

/// FNV-1a, 64 bits: a stable hash for id suffixes (not a security measure).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn reference(kind: &str, id: &str) -> Value {
    json!({ "reference": format!("{kind}/{}", fhir_id(id)) })
}

fn patient_ref(person: &PersonId) -> Value {
    reference("Patient", person.as_str())
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
    json!({
        "resourceType": "Slot",
        "id": fhir_id(s.id.as_str()),
        "schedule": reference("Schedule", &schedule_id(s)),
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

/// The id of the schedule a slot belongs to: its doctor's, else its department's.
fn schedule_id(s: &crate::appointments::Slot) -> String {
    match &s.doctor {
        Some(doctor) => doctor.to_string(),
        None => s.department.to_string(),
    }
}

/// An appointment as a FHIR R4 `Appointment`, with the queue number as an identifier.
pub fn appointment(a: &Appointment) -> Value {
    let mut out = json!({
        "resourceType": "Appointment",
        "id": fhir_id(a.id.as_str()),
        "status": a.status.code(),
        "start": instant(a.expected_at.unwrap_or(a.start)),
        "end": instant(a.end),
        "created": instant(a.created_at),
        "slot": [reference("Slot", a.slot.as_str())],
        "participant": [
            { "actor": patient_ref(&a.patient), "required": "required", "status": "accepted" },
            {
                "actor": reference("HealthcareService", a.department.as_str()),
                "required": "required",
                "status": "accepted"
            }
        ]
    });
    if let Some(q) = a.queue_number {
        out["identifier"] = json!([{
            "system": url(&format!("NamingSystem/queue-number/{}", fhir_id(a.slot.as_str()))),
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

fn coverage_id(person: &PersonId) -> String {
    fhir_id(&format!("cov-{person}"))
}

/// A person's medical insurance as a FHIR R4 `Coverage`.
pub fn coverage(person: &PersonId, person_type: PersonType, payor: &str) -> Value {
    json!({
        "resourceType": "Coverage",
        "id": coverage_id(person),
        "status": "active",
        "type": coding(&url("CodeSystem/insurance-type"), "basic-medical"),
        "subscriber": patient_ref(person),
        "beneficiary": patient_ref(person),
        "relationship": coding("http://terminology.hl7.org/CodeSystem/subscriber-relationship", "self"),
        "payor": [reference("Organization", payor)],
        "class": [{
            "type": coding("http://terminology.hl7.org/CodeSystem/coverage-class", "plan"),
            "value": person_type.code(),
            "name": person_type.code()
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
    let claim_id = fhir_id(&format!("claim-{}", record.id));
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
        "provider": reference("Organization", r.hospital.as_str()),
        "priority": coding("http://terminology.hl7.org/CodeSystem/processpriority", "normal"),
        "insurance": [{
            "sequence": 1,
            "focal": true,
            "coverage": reference("Coverage", &coverage_id(&r.patient))
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
        "id": fhir_id(&format!("claimresponse-{}", record.id)),
        "status": status,
        "type": claim_type(r.visit_type),
        "use": "claim",
        "patient": patient_ref(&r.patient),
        "created": instant(created),
        "insurer": reference("Organization", payor),
        "requestor": reference("Organization", r.hospital.as_str()),
        "request": reference("Claim", &claim_id),
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
        actors.push(reference("Practitioner", doctor.as_str()));
    }
    actors.push(reference("HealthcareService", template.department.as_str()));
    json!({
        "resourceType": "Schedule",
        "id": fhir_id(id),
        "active": true,
        "actor": actors,
        "planningHorizon": { "start": instant(horizon.0), "end": instant(horizon.1) }
    })
}

/// What a [`transaction_bundle`] holds: an appointment with its slot, a settlement,
/// or both, and the insurer that adjudicates the settlement.
#[derive(Debug, Clone, Copy)]
pub struct BundleParts<'a> {
    /// An appointment and the slot it was booked in.
    pub appointment: Option<(&'a Appointment, &'a SlotView)>,
    /// A settled bill (Claim and ClaimResponse).
    pub settlement: Option<&'a SettlementRecord>,
    /// The insurer's organisation id (the Claim's coverage payor, the response's insurer).
    pub payor: &'a str,
}

/// The resources of a bundle, each once, in the order first added.
#[derive(Default)]
struct Resources(Vec<Value>);

impl Resources {
    fn add(&mut self, resource: Value) {
        let key = |v: &Value| (v["resourceType"].clone(), v["id"].clone());
        if !self.0.iter().any(|r| key(r) == key(&resource)) {
            self.0.push(resource);
        }
    }
}

fn identified(kind: &str, id: &str, naming: &str) -> Value {
    json!({
        "resourceType": kind,
        "id": fhir_id(id),
        "identifier": [{ "system": url(&format!("NamingSystem/{naming}")), "value": id }]
    })
}

/// A patient by opaque person id only: no name, no ID number.
fn patient(person: &PersonId) -> Value {
    let mut p = identified("Patient", person.as_str(), "person");
    p["active"] = json!(true);
    p
}

fn organization(id: &str, kind: &str, naming: &str) -> Value {
    let mut o = identified("Organization", id, naming);
    o["active"] = json!(true);
    o["type"] = json!([coding(
        "http://terminology.hl7.org/CodeSystem/organization-type",
        kind
    )]);
    o
}

fn healthcare_service(department: &str, hospital: &str) -> Value {
    let mut h = identified("HealthcareService", department, "department");
    h["active"] = json!(true);
    h["providedBy"] = reference("Organization", hospital);
    h
}

/// A FHIR R4 `transaction` Bundle of an appointment and/or a settlement, with every
/// resource they reference (Patient, Organization, Coverage, HealthcareService,
/// Schedule, Practitioner, Slot), so that every reference resolves inside it.
///
/// Each entry has `fullUrl` `{CITYCARD_FHIR_BASE}/{type}/{id}` and a `PUT {type}/{id}`
/// request, so a server applies it idempotently.
pub fn transaction_bundle(parts: &BundleParts<'_>) -> Value {
    let mut out = Resources::default();
    if let Some((a, view)) = parts.appointment {
        let s = &view.slot;
        out.add(patient(&a.patient));
        out.add(organization(a.hospital.as_str(), "prov", "hospital"));
        out.add(healthcare_service(
            a.department.as_str(),
            a.hospital.as_str(),
        ));
        if s.hospital != a.hospital || s.department != a.department {
            out.add(organization(s.hospital.as_str(), "prov", "hospital"));
            out.add(healthcare_service(
                s.department.as_str(),
                s.hospital.as_str(),
            ));
        }
        if let Some(doctor) = &s.doctor {
            let mut p = identified("Practitioner", doctor.as_str(), "doctor");
            p["active"] = json!(true);
            out.add(p);
        }
        let mut actors = Vec::new();
        if let Some(doctor) = &s.doctor {
            actors.push(reference("Practitioner", doctor.as_str()));
        }
        actors.push(reference("HealthcareService", s.department.as_str()));
        out.add(json!({
            "resourceType": "Schedule",
            "id": fhir_id(&schedule_id(s)),
            "active": true,
            "actor": actors
        }));
        out.add(slot(view));
        out.add(appointment(a));
    }
    if let Some(record) = parts.settlement {
        let r = &record.request;
        out.add(patient(&r.patient));
        out.add(organization(r.hospital.as_str(), "prov", "hospital"));
        out.add(organization(parts.payor, "ins", "payor"));
        out.add(coverage(&r.patient, record.person_type, parts.payor));
        let (claim, response) = settlement(record, parts.payor);
        out.add(claim);
        out.add(response);
    }
    let entries: Vec<Value> = out
        .0
        .into_iter()
        .map(|resource| {
            let path = format!(
                "{}/{}",
                resource["resourceType"].as_str().unwrap_or_default(),
                resource["id"].as_str().unwrap_or_default()
            );
            // `request` before `resource`: JSON member order carries no meaning in
            // FHIR, and fhirbolt 0.4 (the tests' independent model) misreads a
            // `request.method` that follows a nested resource.
            json!({
                "fullUrl": format!("{CITYCARD_FHIR_BASE}/{path}"),
                "request": { "method": "PUT", "url": path },
                "resource": resource
            })
        })
        .collect();
    json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": entries
    })
}
