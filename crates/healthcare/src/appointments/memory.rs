//! The appointment store in memory: one mutex, so every decision is atomic.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use chrono::{DateTime, NaiveDate, Utc};
use citycard_core::{IdempotencyKey, PersonId, StoreError};

use super::{
    Appointment, AppointmentStatus, AppointmentStore, BookingDecision, BookingRequest,
    CancelDecision, Cancellation, SlotStatus, SlotView, TransitionDecision, check_quota,
};
use crate::ids::{AppointmentId, DepartmentId, SlotId};

#[derive(Debug, Default)]
struct Inner {
    slots: HashMap<SlotId, SlotView>,
    waitlists: HashMap<SlotId, VecDeque<AppointmentId>>,
    appointments: HashMap<AppointmentId, Appointment>,
    by_patient: HashMap<PersonId, Vec<AppointmentId>>,
    by_key: HashMap<(PersonId, IdempotencyKey), AppointmentId>,
}

/// Slots and appointments in memory.
#[derive(Debug, Default)]
pub struct MemoryAppointmentStore {
    inner: Mutex<Inner>,
}

impl MemoryAppointmentStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl AppointmentStore for MemoryAppointmentStore {
    async fn put_slot(&self, slot: &super::Slot) -> Result<(), StoreError> {
        let mut inner = self.lock();
        match inner.slots.get_mut(&slot.id) {
            Some(view) => view.slot = slot.clone(),
            None => {
                inner.slots.insert(
                    slot.id.clone(),
                    SlotView {
                        slot: slot.clone(),
                        booked: 0,
                        waitlisted: 0,
                        issued: 0,
                    },
                );
            }
        }
        Ok(())
    }

    async fn slot(&self, id: &SlotId) -> Result<Option<SlotView>, StoreError> {
        Ok(self.lock().slots.get(id).cloned())
    }

    async fn department_slots(
        &self,
        department: &DepartmentId,
        date: NaiveDate,
    ) -> Result<Vec<SlotView>, StoreError> {
        let inner = self.lock();
        let mut out: Vec<SlotView> = inner
            .slots
            .values()
            .filter(|v| &v.slot.department == department && v.slot.date == date)
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.slot.start, &a.slot.id).cmp(&(b.slot.start, &b.slot.id)));
        Ok(out)
    }

    async fn book(&self, request: &BookingRequest) -> Result<BookingDecision, StoreError> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let new = &request.appointment;
        let key = (new.patient.clone(), new.booking_key.clone());
        if let Some(existing) = inner
            .by_key
            .get(&key)
            .and_then(|id| inner.appointments.get(id))
        {
            return Ok(if existing.slot == new.slot {
                BookingDecision::Duplicate {
                    appointment: existing.clone(),
                }
            } else {
                BookingDecision::KeyReused
            });
        }
        let Some(view) = inner.slots.get_mut(&new.slot) else {
            return Ok(BookingDecision::SlotNotFound);
        };
        if view.slot.status != SlotStatus::Open {
            return Ok(BookingDecision::SlotClosed);
        }
        let mine: Vec<&Appointment> = inner
            .by_patient
            .get(&new.patient)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| inner.appointments.get(id))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(kind) = check_quota(&mine, request) {
            return Ok(BookingDecision::QuotaExceeded { kind });
        }
        let mut appointment = new.clone();
        appointment.cancellation = None;
        let booked = view.booked < view.slot.capacity;
        if booked {
            view.booked += 1;
            view.issued += 1;
            appointment.status = AppointmentStatus::Booked;
            appointment.queue_number = Some(view.issued);
            appointment.expected_at = Some(view.slot.expected_time(view.issued));
        } else if request.allow_waitlist {
            view.waitlisted += 1;
            appointment.status = AppointmentStatus::Waitlist;
            appointment.queue_number = None;
            appointment.expected_at = None;
            inner
                .waitlists
                .entry(new.slot.clone())
                .or_default()
                .push_back(new.id.clone());
        } else {
            return Ok(BookingDecision::Full);
        }
        inner.by_key.insert(key, new.id.clone());
        inner
            .by_patient
            .entry(new.patient.clone())
            .or_default()
            .push(new.id.clone());
        inner
            .appointments
            .insert(new.id.clone(), appointment.clone());
        Ok(if booked {
            BookingDecision::Booked { appointment }
        } else {
            BookingDecision::Waitlisted { appointment }
        })
    }

    async fn cancel(
        &self,
        id: &AppointmentId,
        cancellation: &Cancellation,
    ) -> Result<CancelDecision, StoreError> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(appointment) = inner.appointments.get_mut(id) else {
            return Ok(CancelDecision::NotFound);
        };
        let was = appointment.status;
        if !matches!(was, AppointmentStatus::Booked | AppointmentStatus::Waitlist) {
            return Ok(CancelDecision::WrongState { status: was });
        }
        appointment.status = AppointmentStatus::Cancelled;
        appointment.updated_at = cancellation.at;
        appointment.cancellation = Some(cancellation.clone());
        let cancelled = appointment.clone();
        let slot_id = cancelled.slot.clone();
        let mut promoted = None;
        if let Some(view) = inner.slots.get_mut(&slot_id) {
            let queue = inner.waitlists.entry(slot_id).or_default();
            if was == AppointmentStatus::Waitlist {
                queue.retain(|w| w != id);
                view.waitlisted = view.waitlisted.saturating_sub(1);
            } else {
                view.booked = view.booked.saturating_sub(1);
                if view.slot.status == SlotStatus::Open
                    && let Some(next) = queue.pop_front()
                    && let Some(next_appointment) = inner.appointments.get_mut(&next)
                {
                    view.waitlisted = view.waitlisted.saturating_sub(1);
                    view.booked += 1;
                    view.issued += 1;
                    next_appointment.status = AppointmentStatus::Booked;
                    next_appointment.queue_number = Some(view.issued);
                    next_appointment.expected_at = Some(view.slot.expected_time(view.issued));
                    next_appointment.updated_at = cancellation.at;
                    promoted = Some(next_appointment.clone());
                }
            }
        }
        Ok(CancelDecision::Cancelled {
            cancelled,
            promoted,
        })
    }

    async fn transition(
        &self,
        id: &AppointmentId,
        from: AppointmentStatus,
        to: AppointmentStatus,
        at: DateTime<Utc>,
    ) -> Result<TransitionDecision, StoreError> {
        let mut inner = self.lock();
        let Some(appointment) = inner.appointments.get_mut(id) else {
            return Ok(TransitionDecision::NotFound);
        };
        let holds_place = |s: AppointmentStatus| s.holds_place();
        if appointment.status != from
            || !from.can_move_to(to)
            || holds_place(from) != holds_place(to)
        {
            return Ok(TransitionDecision::WrongState {
                status: appointment.status,
            });
        }
        appointment.status = to;
        appointment.updated_at = at;
        Ok(TransitionDecision::Moved {
            appointment: appointment.clone(),
        })
    }

    async fn appointment(&self, id: &AppointmentId) -> Result<Option<Appointment>, StoreError> {
        Ok(self.lock().appointments.get(id).cloned())
    }

    async fn appointment_by_key(
        &self,
        patient: &PersonId,
        key: &IdempotencyKey,
    ) -> Result<Option<Appointment>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .by_key
            .get(&(patient.clone(), key.clone()))
            .and_then(|id| inner.appointments.get(id))
            .cloned())
    }

    async fn patient_appointments(
        &self,
        patient: &PersonId,
    ) -> Result<Vec<Appointment>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .by_patient
            .get(patient)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| inner.appointments.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn booked_ending_before(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Appointment>, StoreError> {
        let inner = self.lock();
        let mut out: Vec<Appointment> = inner
            .appointments
            .values()
            .filter(|a| a.status == AppointmentStatus::Booked && a.end < before)
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.end, &a.id).cmp(&(b.end, &b.id)));
        out.truncate(limit);
        Ok(out)
    }
}
