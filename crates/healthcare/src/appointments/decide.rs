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
#[path = "decide_tests.rs"]
mod tests;
