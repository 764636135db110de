//! Unit tests of the booking decisions, without any store.
#![allow(clippy::unwrap_used, clippy::panic)]

use chrono::{Duration, NaiveDate, TimeZone};
use citycard_core::IdempotencyKey;

use super::*;
use crate::appointments::{CancelledBy, Quota, Session, Slot};
use crate::ids::{AppointmentId, DepartmentId, HospitalId};

fn date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 10).unwrap()
}

fn slot(id: &str, dep: &str, date: NaiveDate, capacity: u32) -> Slot {
    let start = Utc.with_ymd_and_hms(2026, 3, 10, 0, 0, 0).unwrap()
        + Duration::days((date - self::date()).num_days());
    Slot {
        id: id.parse().unwrap(),
        hospital: HospitalId::parse("hsp-1").unwrap(),
        department: DepartmentId::parse(dep).unwrap(),
        doctor: None,
        date,
        session: Session::Morning,
        start,
        end: start + Duration::hours(4),
        capacity,
        status: SlotStatus::Open,
    }
}

fn state(slot: Slot, booked: u32, waitlisted: u32) -> SlotState {
    SlotState {
        view: SlotView {
            slot,
            booked,
            waitlisted,
            issued: booked,
        },
        version: 7,
        first_waitlisted: None,
    }
}

fn quota(per_session: u32, per_day: u32, per_week: u32, per_month: u32) -> Quota {
    Quota {
        per_department_session: per_session,
        per_day,
        per_week,
        per_month,
    }
}

fn request(slot: &Slot, id: &str, key: &str, quota: Quota, waitlist: bool) -> BookingRequest {
    let patient: PersonId = "psn-1".parse().unwrap();
    let at = slot.start - Duration::days(1);
    BookingRequest {
        appointment: Appointment {
            id: AppointmentId::parse(id).unwrap(),
            slot: slot.id.clone(),
            hospital: slot.hospital.clone(),
            department: slot.department.clone(),
            date: slot.date,
            session: slot.session,
            start: slot.start,
            end: slot.end,
            patient: patient.clone(),
            booked_by: Principal::cardholder(patient),
            status: AppointmentStatus::Booked,
            queue_number: None,
            expected_at: None,
            booking_key: IdempotencyKey::parse(key).unwrap(),
            created_at: at,
            updated_at: at,
            cancellation: None,
        },
        quota,
        week: (date() - Duration::days(1), date() + Duration::days(5)),
        month: (
            NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            NaiveDate::from_ymd_opt(2026, 3, 31).unwrap(),
        ),
        allow_waitlist: waitlist,
    }
}

fn patient(appointments: Vec<Appointment>) -> PatientState {
    PatientState {
        patient: "psn-1".parse().unwrap(),
        version: 3,
        appointments,
    }
}

fn booked(d: BookingDecision) -> (Appointment, AppointmentPlan) {
    match d {
        BookingDecision::Book { appointment, plan } => (appointment, plan),
        other => panic!("expected a booking, got {other:?}"),
    }
}

#[test]
fn a_free_place_gets_the_next_queue_number_and_names_both_versions() {
    let s = slot("slot-1", "dep-1", date(), 4);
    let (a, plan) = booked(decide_booking(
        &request(&s, "apt-1", "k1", quota(1, 2, 3, 4), false),
        Some(&state(s.clone(), 2, 0)),
        &patient(vec![]),
    ));
    assert_eq!(a.status, AppointmentStatus::Booked);
    assert_eq!(a.queue_number, Some(3));
    assert_eq!(a.expected_at, Some(s.start + Duration::hours(2)));
    assert_eq!(
        plan.preconditions,
        vec![
            Precondition::Slot {
                slot: s.id.clone(),
                version: 7
            },
            Precondition::Patient {
                patient: "psn-1".parse().unwrap(),
                version: 3
            }
        ]
    );
    assert_eq!(
        plan.slots,
        vec![SlotCounts {
            slot: s.id.clone(),
            booked: 3,
            waitlisted: 0,
            issued: 3
        }]
    );
    assert_eq!(plan.inserts, vec![a.clone()]);
    assert_eq!(plan.core.audit.len(), 1);
    assert_eq!(plan.core.audit[0].action, "appointment.book");
}

#[test]
fn a_full_slot_refuses_or_waitlists() {
    let s = slot("slot-1", "dep-1", date(), 2);
    let full = state(s.clone(), 2, 0);
    assert_eq!(
        decide_booking(
            &request(&s, "apt-1", "k1", quota(9, 9, 9, 9), false),
            Some(&full),
            &patient(vec![])
        ),
        BookingDecision::Full
    );
    let (a, plan) = booked(decide_booking(
        &request(&s, "apt-1", "k1", quota(9, 9, 9, 9), true),
        Some(&full),
        &patient(vec![]),
    ));
    assert_eq!(
        (a.status, a.queue_number),
        (AppointmentStatus::Waitlist, None)
    );
    assert_eq!(
        (
            plan.slots[0].booked,
            plan.slots[0].waitlisted,
            plan.slots[0].issued
        ),
        (2, 1, 2)
    );
}

#[test]
fn keys_replay_or_are_refused_and_closed_or_missing_slots_are_refused() {
    let s = slot("slot-1", "dep-1", date(), 2);
    let t = slot("slot-2", "dep-2", date(), 2);
    let (first, _) = booked(decide_booking(
        &request(&s, "apt-1", "k1", quota(9, 9, 9, 9), false),
        Some(&state(s.clone(), 0, 0)),
        &patient(vec![]),
    ));
    let mine = patient(vec![first.clone()]);
    assert_eq!(
        decide_booking(
            &request(&s, "apt-9", "k1", quota(9, 9, 9, 9), false),
            Some(&state(s.clone(), 1, 0)),
            &mine
        ),
        BookingDecision::Duplicate { appointment: first }
    );
    assert_eq!(
        decide_booking(
            &request(&t, "apt-9", "k1", quota(9, 9, 9, 9), false),
            Some(&state(t.clone(), 0, 0)),
            &mine
        ),
        BookingDecision::KeyReused
    );
    assert_eq!(
        decide_booking(
            &request(&t, "apt-9", "k2", quota(9, 9, 9, 9), false),
            None,
            &mine
        ),
        BookingDecision::SlotNotFound
    );
    let mut closed = state(t.clone(), 0, 0);
    closed.view.slot.status = SlotStatus::Closed;
    assert_eq!(
        decide_booking(
            &request(&t, "apt-9", "k2", quota(9, 9, 9, 9), true),
            Some(&closed),
            &mine
        ),
        BookingDecision::SlotClosed
    );
}

#[test]
fn quotas_count_live_and_waitlisted_bookings_per_session_day_week_and_month() {
    let d = date();
    let on = |id: &str, dep: &str, days: i64, status: AppointmentStatus| {
        let s = slot(id, dep, d + Duration::days(days), 9);
        let mut a = request(
            &s,
            &format!("apt-{id}"),
            &format!("k-{id}"),
            quota(9, 9, 9, 9),
            false,
        )
        .appointment;
        a.status = status;
        a
    };
    let target = slot("slot-t", "dep-1", d, 9);
    let decide = |mine: Vec<Appointment>, q: Quota| {
        decide_booking(
            &request(&target, "apt-new", "k-new", q, false),
            Some(&state(target.clone(), 0, 0)),
            &patient(mine),
        )
    };
    let quota_hit = |d: BookingDecision| match d {
        BookingDecision::QuotaExceeded { kind } => Some(kind),
        BookingDecision::Book { .. } => None,
        other => panic!("unexpected {other:?}"),
    };
    let same_session = on("slot-a", "dep-1", 0, AppointmentStatus::Waitlist);
    assert_eq!(
        quota_hit(decide(vec![same_session.clone()], quota(1, 9, 9, 9))),
        Some(QuotaKind::DepartmentSession)
    );
    let other_dep = on("slot-b", "dep-2", 0, AppointmentStatus::Booked);
    assert_eq!(
        quota_hit(decide(vec![other_dep.clone()], quota(1, 1, 9, 9))),
        Some(QuotaKind::Day)
    );
    let tomorrow = on("slot-c", "dep-3", 1, AppointmentStatus::Noshow);
    assert_eq!(
        quota_hit(decide(
            vec![other_dep.clone(), tomorrow.clone()],
            quota(1, 9, 2, 9)
        )),
        Some(QuotaKind::Week)
    );
    let next_week = on("slot-d", "dep-4", 14, AppointmentStatus::Booked);
    assert_eq!(
        quota_hit(decide(
            vec![tomorrow.clone(), next_week.clone()],
            quota(1, 9, 9, 2)
        )),
        Some(QuotaKind::Month)
    );
    // Cancelled bookings do not count.
    let cancelled = on("slot-e", "dep-1", 0, AppointmentStatus::Cancelled);
    assert_eq!(quota_hit(decide(vec![cancelled], quota(1, 1, 1, 1))), None);
}

fn cancellation(by: CancelledBy) -> Cancellation {
    Cancellation {
        by,
        reason: "test".into(),
        at: Utc.with_ymd_and_hms(2026, 3, 9, 1, 0, 0).unwrap(),
    }
}

#[test]
fn cancelling_a_booking_promotes_the_first_waitlisted_patient() {
    let s = slot("slot-1", "dep-1", date(), 1);
    let mut a = request(&s, "apt-1", "k1", quota(9, 9, 9, 9), false).appointment;
    a.queue_number = Some(1);
    let mut w = request(&s, "apt-2", "k2", quota(9, 9, 9, 9), true).appointment;
    w.patient = "psn-2".parse().unwrap();
    w.status = AppointmentStatus::Waitlist;
    let mut st = state(s.clone(), 1, 2);
    st.first_waitlisted = Some(w.clone());
    let CancelDecision::Cancel {
        cancelled,
        promoted,
        plan,
    } = decide_cancel(
        &a,
        3,
        Some(&st),
        &cancellation(CancelledBy::Patient),
        &Principal::System,
    )
    else {
        panic!("expected a cancellation")
    };
    assert_eq!(cancelled.status, AppointmentStatus::Cancelled);
    assert_eq!(cancelled.cancellation.unwrap().by, CancelledBy::Patient);
    let p = promoted.unwrap();
    assert_eq!(
        (p.id.as_str(), p.status, p.queue_number),
        ("apt-2", AppointmentStatus::Booked, Some(2))
    );
    assert_eq!(
        (
            plan.slots[0].booked,
            plan.slots[0].waitlisted,
            plan.slots[0].issued
        ),
        (1, 1, 2)
    );
    assert_eq!(plan.updates.len(), 2);
    assert_eq!(plan.core.audit.len(), 2);
    assert_eq!(plan.patients().len(), 2);
    // A closed slot promotes nobody.
    st.view.slot.status = SlotStatus::Closed;
    let CancelDecision::Cancel { promoted, plan, .. } = decide_cancel(
        &a,
        3,
        Some(&st),
        &cancellation(CancelledBy::Facility),
        &Principal::System,
    ) else {
        panic!("expected a cancellation")
    };
    assert!(promoted.is_none());
    assert_eq!((plan.slots[0].booked, plan.slots[0].waitlisted), (0, 2));
}

#[test]
fn cancelling_a_waitlisted_patient_frees_no_place_and_terminal_states_stay() {
    let s = slot("slot-1", "dep-1", date(), 1);
    let mut w = request(&s, "apt-2", "k2", quota(9, 9, 9, 9), true).appointment;
    w.status = AppointmentStatus::Waitlist;
    let mut st = state(s.clone(), 1, 1);
    st.first_waitlisted = Some(w.clone());
    let CancelDecision::Cancel { promoted, plan, .. } = decide_cancel(
        &w,
        1,
        Some(&st),
        &cancellation(CancelledBy::Patient),
        &Principal::System,
    ) else {
        panic!("expected a cancellation")
    };
    assert!(promoted.is_none());
    assert_eq!((plan.slots[0].booked, plan.slots[0].waitlisted), (1, 0));
    let mut done = w.clone();
    done.status = AppointmentStatus::Cancelled;
    assert_eq!(
        decide_cancel(
            &done,
            1,
            Some(&st),
            &cancellation(CancelledBy::Patient),
            &Principal::System
        ),
        CancelDecision::WrongState {
            status: AppointmentStatus::Cancelled
        }
    );
}

#[test]
fn moves_go_forward_only_and_never_take_or_free_a_place() {
    let s = slot("slot-1", "dep-1", date(), 1);
    let a = request(&s, "apt-1", "k1", quota(9, 9, 9, 9), false).appointment;
    let at = Utc.with_ymd_and_hms(2026, 3, 10, 1, 0, 0).unwrap();
    let sys = Principal::System;
    let TransitionDecision::Move { appointment, plan } = decide_transition(
        &a,
        4,
        AppointmentStatus::Booked,
        AppointmentStatus::Arrived,
        at,
        &sys,
        "appointment.advance",
    ) else {
        panic!("expected a move")
    };
    assert_eq!(
        (appointment.status, appointment.updated_at),
        (AppointmentStatus::Arrived, at)
    );
    assert!(plan.slots.is_empty());
    for (from, to) in [
        (AppointmentStatus::Arrived, AppointmentStatus::Fulfilled),
        (AppointmentStatus::Booked, AppointmentStatus::Cancelled),
    ] {
        assert_eq!(
            decide_transition(&a, 4, from, to, at, &sys, "appointment.advance"),
            TransitionDecision::WrongState {
                status: AppointmentStatus::Booked
            }
        );
    }
}
