//! Booking decisions, pure: a snapshot of what a decision reads in, a plan out.
//!
//! Every appointment operation (booking, cancellation with waitlist promotion, a move at
//! the hospital, a no-show) is decided here from a snapshot the service prefetched, and
//! the resulting [`AppointmentPlan`] is committed by the store in one transaction. The plan
//! names the versions it read ([`Precondition`]); the store refuses it as a
//! [`StoreError::Conflict`](citycard_core::StoreError::Conflict) when any of them moved,
//! and the service reads and decides again. A slot's version moves with every change of
//! its counts, capacity or status (so capacity and queue numbers are safe); a patient's
//! version moves with every change of their appointments (so quotas and booking keys are
//! safe).

use chrono::{DateTime, Utc};
use citycard_core::{AuditOutcome, AuditRecord, CoreChanges, PersonId, Principal};
use serde::{Deserialize, Serialize};

use super::{
    Appointment, AppointmentStatus, BookingRequest, Cancellation, QuotaKind, SlotStatus, SlotView,
};
use crate::ids::SlotId;

/// A slot as a decision reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotState {
    /// The slot and its counts.
    pub view: SlotView,
    /// Moves with every change of the slot's counts, capacity or status.
    pub version: u64,
    /// The slot's first waitlisted appointment (the next to be promoted), if any.
    pub first_waitlisted: Option<Appointment>,
}

/// A patient's appointments as a decision reads them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientState {
    /// The patient.
    pub patient: PersonId,
    /// Moves with every change of the patient's appointments (0: none yet).
    pub version: u64,
    /// Every appointment of the patient, oldest first.
    pub appointments: Vec<Appointment>,
}

/// A version a plan relied on; the store refuses the plan when it moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Precondition {
    /// The slot is still at this version.
    Slot {
        /// The slot.
        slot: SlotId,
        /// Its version when read.
        version: u64,
    },
    /// The patient's appointments are still at this version.
    Patient {
        /// The patient.
        patient: PersonId,
        /// Their version when read (0: no appointments yet).
        version: u64,
    },
}

/// A slot's new counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotCounts {
    /// The slot.
    pub slot: SlotId,
    /// Appointments holding a place.
    pub booked: u32,
    /// Patients on the waitlist.
    pub waitlisted: u32,
    /// Queue numbers issued so far.
    pub issued: u32,
}

/// What one appointment operation writes, committed in one transaction.
///
/// The store checks every precondition, then writes the slot counts (moving each slot's
/// version), inserts and replaces the appointments (moving each of their patients'
/// version) and the core records; a refused precondition, a taken booking key or a
/// refused idempotency outcome writes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppointmentPlan {
    /// The versions the decision read.
    pub preconditions: Vec<Precondition>,
    /// New counts of the slots it changes.
    pub slots: Vec<SlotCounts>,
    /// New appointments (their `(patient, booking_key)` must be free).
    pub inserts: Vec<Appointment>,
    /// Appointments replaced whole (they must exist).
    pub updates: Vec<Appointment>,
    /// Audit records (and idempotency outcomes) of the operation.
    pub core: CoreChanges,
}

impl AppointmentPlan {
    /// The patients whose appointments this plan writes, each once.
    pub fn patients(&self) -> Vec<&PersonId> {
        let mut out: Vec<&PersonId> = Vec::new();
        for a in self.inserts.iter().chain(&self.updates) {
            if !out.contains(&&a.patient) {
                out.push(&a.patient);
            }
        }
        out
    }
}

/// The decision on a booking.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // decided once per call
pub enum BookingDecision {
    /// Book (with a queue number) or waitlist: commit the plan; `appointment` is its insert.
    Book {
        /// The new appointment.
        appointment: Appointment,
        /// What to commit.
        plan: AppointmentPlan,
    },
    /// The same key booked this already: the first result.
    Duplicate {
        /// The stored appointment.
        appointment: Appointment,
    },
    /// The patient used the key for another slot.
    KeyReused,
    /// No such slot.
    SlotNotFound,
    /// The slot is not open.
    SlotClosed,
    /// The slot is full (and the request does not wait).
    Full,
    /// A quota is used up.
    QuotaExceeded {
        /// Which one.
        kind: QuotaKind,
    },
}

/// Checks the quotas against a patient's existing appointments.
pub fn check_quota(existing: &[Appointment], request: &BookingRequest) -> Option<QuotaKind> {
    let new = &request.appointment;
    let (mut session, mut day, mut week, mut month) = (0u32, 0u32, 0u32, 0u32);
    for a in existing.iter().filter(|a| a.status.counts_for_quota()) {
        if a.date == new.date {
            day += 1;
            if a.department == new.department && a.session == new.session {
                session += 1;
            }
        }
        if a.date >= request.week.0 && a.date <= request.week.1 {
            week += 1;
        }
        if a.date >= request.month.0 && a.date <= request.month.1 {
            month += 1;
        }
    }
    let q = request.quota;
    if session >= q.per_department_session {
        Some(QuotaKind::DepartmentSession)
    } else if day >= q.per_day {
        Some(QuotaKind::Day)
    } else if week >= q.per_week {
        Some(QuotaKind::Week)
    } else if month >= q.per_month {
        Some(QuotaKind::Month)
    } else {
        None
    }
}

/// Decides a booking: the key, the slot's status, the quotas, then a place or the waitlist.
pub fn decide_booking(
    request: &BookingRequest,
    slot: Option<&SlotState>,
    patient: &PatientState,
) -> BookingDecision {
    let new = &request.appointment;
    if let Some(existing) = patient
        .appointments
        .iter()
        .find(|a| a.booking_key == new.booking_key)
    {
        return if existing.slot == new.slot {
            BookingDecision::Duplicate {
                appointment: existing.clone(),
            }
        } else {
            BookingDecision::KeyReused
        };
    }
    let Some(slot) = slot else {
        return BookingDecision::SlotNotFound;
    };
    let view = &slot.view;
    if view.slot.status != SlotStatus::Open {
        return BookingDecision::SlotClosed;
    }
    if let Some(kind) = check_quota(&patient.appointments, request) {
        return BookingDecision::QuotaExceeded { kind };
    }
    let mut appointment = new.clone();
    appointment.cancellation = None;
    let mut counts = SlotCounts {
        slot: view.slot.id.clone(),
        booked: view.booked,
        waitlisted: view.waitlisted,
        issued: view.issued,
    };
    if view.booked < view.slot.capacity {
        counts.booked += 1;
        counts.issued += 1;
        appointment.status = AppointmentStatus::Booked;
        appointment.queue_number = Some(counts.issued);
        appointment.expected_at = Some(view.slot.expected_time(counts.issued));
    } else if request.allow_waitlist {
        counts.waitlisted += 1;
        appointment.status = AppointmentStatus::Waitlist;
        appointment.queue_number = None;
        appointment.expected_at = None;
    } else {
        return BookingDecision::Full;
    }
    let mut audit = AuditRecord::new(
        appointment.created_at,
        appointment.booked_by.clone(),
        "appointment.book",
        format!("appointment:{}", appointment.id),
        AuditOutcome::Succeeded,
    )
    .with("slot", appointment.slot.as_str())
    .with("status", appointment.status.code());
    if let Some(q) = appointment.queue_number {
        audit = audit.with("queue_number", q.to_string());
    }
    let plan = AppointmentPlan {
        preconditions: vec![
            Precondition::Slot {
                slot: view.slot.id.clone(),
                version: slot.version,
            },
            Precondition::Patient {
                patient: patient.patient.clone(),
                version: patient.version,
            },
        ],
        slots: vec![counts],
        inserts: vec![appointment.clone()],
        updates: Vec::new(),
        core: CoreChanges::audited(audit),
    };
    BookingDecision::Book { appointment, plan }
}

/// The decision on a cancellation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // decided once per call
pub enum CancelDecision {
    /// Cancel: commit the plan.
    Cancel {
        /// The appointment as cancelled.
        cancelled: Appointment,
        /// The first waitlisted appointment, now booked, if a place freed up.
        promoted: Option<Appointment>,
        /// What to commit.
        plan: AppointmentPlan,
    },
    /// Not cancellable from this status.
    WrongState {
        /// The current status.
        status: AppointmentStatus,
    },
}

/// Decides a cancellation of a booked or waitlisted appointment; a freed place of an open
/// slot goes to its first waitlisted patient.
pub fn decide_cancel(
    appointment: &Appointment,
    patient_version: u64,
    slot: Option<&SlotState>,
    cancellation: &Cancellation,
    actor: &Principal,
) -> CancelDecision {
    let was = appointment.status;
    if !matches!(was, AppointmentStatus::Booked | AppointmentStatus::Waitlist) {
        return CancelDecision::WrongState { status: was };
    }
    let at = cancellation.at;
    let mut cancelled = appointment.clone();
    cancelled.status = AppointmentStatus::Cancelled;
    cancelled.updated_at = at;
    cancelled.cancellation = Some(cancellation.clone());
    let mut plan = AppointmentPlan {
        preconditions: vec![Precondition::Patient {
            patient: appointment.patient.clone(),
            version: patient_version,
        }],
        ..AppointmentPlan::default()
    };
    plan.core.audit.push(
        AuditRecord::new(
            at,
            actor.clone(),
            "appointment.cancel",
            format!("appointment:{}", appointment.id),
            AuditOutcome::Succeeded,
        )
        .with("by", cancellation.by.code()),
    );
    let mut promoted = None;
    if let Some(state) = slot {
        let view = &state.view;
        plan.preconditions.push(Precondition::Slot {
            slot: view.slot.id.clone(),
            version: state.version,
        });
        let mut counts = SlotCounts {
            slot: view.slot.id.clone(),
            booked: view.booked,
            waitlisted: view.waitlisted,
            issued: view.issued,
        };
        if was == AppointmentStatus::Waitlist {
            counts.waitlisted = counts.waitlisted.saturating_sub(1);
        } else {
            counts.booked = counts.booked.saturating_sub(1);
            if view.slot.status == SlotStatus::Open
                && let Some(next) = state
                    .first_waitlisted
                    .as_ref()
                    .filter(|n| n.id != appointment.id)
            {
                counts.waitlisted = counts.waitlisted.saturating_sub(1);
                counts.booked += 1;
                counts.issued += 1;
                let mut next = next.clone();
                next.status = AppointmentStatus::Booked;
                next.queue_number = Some(counts.issued);
                next.expected_at = Some(view.slot.expected_time(counts.issued));
                next.updated_at = at;
                plan.core.audit.push(
                    AuditRecord::new(
                        at,
                        Principal::System,
                        "appointment.promote",
                        format!("appointment:{}", next.id),
                        AuditOutcome::Succeeded,
                    )
                    .with("queue_number", counts.issued.to_string()),
                );
                promoted = Some(next);
            }
        }
        plan.slots.push(counts);
    }
    plan.updates.push(cancelled.clone());
    if let Some(p) = &promoted {
        plan.updates.push(p.clone());
    }
    CancelDecision::Cancel {
        cancelled,
        promoted,
        plan,
    }
}

/// The decision on a move at the hospital (arrived, checked in, fulfilled, no-show).
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // decided once per call
pub enum TransitionDecision {
    /// Move: commit the plan.
    Move {
        /// The appointment after the move.
        appointment: Appointment,
        /// What to commit.
        plan: AppointmentPlan,
    },
    /// The current status is not `from`, or the move is not forward, or it would take or
    /// free a place (cancellation and promotion have their own decisions).
    WrongState {
        /// The current status.
        status: AppointmentStatus,
    },
}

/// Decides a move of `appointment` from `from` to `to`, audited as `action` by `actor`.
pub fn decide_transition(
    appointment: &Appointment,
    patient_version: u64,
    from: AppointmentStatus,
    to: AppointmentStatus,
    at: DateTime<Utc>,
    actor: &Principal,
    action: &str,
) -> TransitionDecision {
    let status = appointment.status;
    if status != from || !from.can_move_to(to) || from.holds_place() != to.holds_place() {
        return TransitionDecision::WrongState { status };
    }
    let mut moved = appointment.clone();
    moved.status = to;
    moved.updated_at = at;
    let audit = AuditRecord::new(
        at,
        actor.clone(),
        action,
        format!("appointment:{}", appointment.id),
        AuditOutcome::Succeeded,
    )
    .with("from", from.code())
    .with("to", to.code());
    TransitionDecision::Move {
        plan: AppointmentPlan {
            preconditions: vec![Precondition::Patient {
                patient: appointment.patient.clone(),
                version: patient_version,
            }],
            slots: Vec::new(),
            inserts: Vec::new(),
            updates: vec![moved.clone()],
            core: CoreChanges::audited(audit),
        },
        appointment: moved,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
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
            + Duration::days((date - super::tests::date()).num_days());
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
}
