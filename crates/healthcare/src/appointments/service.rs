//! The appointment service: who may book, when, and what the store decided.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc};
use citycard_core::{
    AuditLog, AuditOutcome, AuditRecord, Clock, DelegationScope, IdGenerator, IdempotencyKey,
    PersonId, Principal, WorkingCalendar, civil_date, to_civil,
};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{
    Appointment, AppointmentStatus, AppointmentStore, BookingDecision, BookingPolicy,
    BookingRequest, CancelDecision, Cancellation, CancelledBy, PatientDirectory, Slot, SlotStatus,
    SlotView, TransitionDecision,
};
use crate::error::HealthcareError;
use crate::ids::{AppointmentId, DepartmentId, SlotId};

/// A booking request from a patient, a delegate or the counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookRequest {
    /// The slot.
    pub slot: SlotId,
    /// The patient (a real-name person).
    pub patient: PersonId,
    /// Makes the request safe to retry.
    pub key: IdempotencyKey,
    /// Join the waitlist if the slot is full.
    pub allow_waitlist: bool,
}

/// The answer to a booking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booking {
    /// The appointment (booked with a queue number, or waitlisted).
    pub appointment: Appointment,
    /// True when this is the first result of an earlier identical request.
    pub replayed: bool,
    /// Other live bookings of the patient on the same day (a warning for the app to show).
    pub same_day_others: u32,
}

/// What a no-show sweep did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NoShowSweep {
    /// Appointments marked as no-shows.
    pub marked: Vec<AppointmentId>,
}

/// The result of a cancellation.
pub type CancelOutcome = (Appointment, Option<Appointment>);

/// The first civil date on which booking is allowed again, if `today` falls in a ban:
/// at least `no_show_threshold` no-shows dated within the last `no_show_window_days` days ban
/// booking until `ban_days` after the latest of them.
pub fn no_show_ban(
    no_shows: &[NaiveDate],
    today: NaiveDate,
    policy: &BookingPolicy,
) -> Option<NaiveDate> {
    let since = today - Duration::days(i64::from(policy.no_show_window_days));
    let recent: Vec<NaiveDate> = no_shows
        .iter()
        .copied()
        .filter(|d| *d > since && *d <= today)
        .collect();
    let threshold = policy.no_show_threshold as usize;
    if threshold == 0 || recent.len() < threshold {
        return None;
    }
    let latest = recent.iter().max().copied()?;
    Some(latest + Duration::days(i64::from(policy.ban_days))).filter(|until| *until > today)
}

fn booking_result(appointment: Appointment, replayed: bool, mine: &[Appointment]) -> Booking {
    let same_day_others = mine
        .iter()
        .filter(|a| {
            a.id != appointment.id && a.date == appointment.date && a.status.counts_for_quota()
        })
        .count() as u32;
    Booking {
        appointment,
        replayed,
        same_day_others,
    }
}

/// Books, cancels and moves appointments for principals, under a [`BookingPolicy`].
pub struct AppointmentService {
    store: Arc<dyn AppointmentStore>,
    patients: Arc<dyn PatientDirectory>,
    audit: Arc<dyn AuditLog>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    policy: BookingPolicy,
    calendar: WorkingCalendar,
}

impl std::fmt::Debug for AppointmentService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppointmentService")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn week_of(date: NaiveDate) -> (NaiveDate, NaiveDate) {
    let start = date - Duration::days(i64::from(date.weekday().num_days_from_monday()));
    (start, start + Duration::days(6))
}

fn month_of(date: NaiveDate) -> (NaiveDate, NaiveDate) {
    let first = date.with_day(1).unwrap_or(date);
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    };
    (first, next.map_or(date, |n| n - Duration::days(1)))
}

impl AppointmentService {
    /// A service over its ports and a policy.
    pub fn new(
        store: Arc<dyn AppointmentStore>,
        patients: Arc<dyn PatientDirectory>,
        audit: Arc<dyn AuditLog>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        policy: BookingPolicy,
    ) -> Self {
        Self {
            store,
            patients,
            audit,
            clock,
            ids,
            policy,
            calendar: WorkingCalendar::china(),
        }
    }

    /// Uses this calendar of statutory working days for cut-offs (the default is
    /// [`WorkingCalendar::china`]; extend it with a new year's notice).
    pub fn with_calendar(mut self, calendar: WorkingCalendar) -> Self {
        self.calendar = calendar;
        self
    }

    /// The instant from which patients may no longer cancel an appointment on `date`.
    pub fn cancel_cutoff(&self, date: NaiveDate) -> DateTime<Utc> {
        let n = self.policy.cancel_cutoff_days_before;
        let day = if self.policy.cancel_cutoff_in_working_days {
            self.calendar.working_days_before(date, n)
        } else {
            date - Duration::days(i64::from(n))
        };
        citycard_core::start_of_civil_day(day)
            + Duration::hours(i64::from(self.policy.cancel_cutoff_hour))
    }

    /// The policy in force.
    pub fn policy(&self) -> &BookingPolicy {
        &self.policy
    }

    async fn audit(&self, record: AuditRecord) -> Result<(), HealthcareError> {
        self.audit.append(record).await?;
        Ok(())
    }

    async fn deny(
        &self,
        actor: &Principal,
        action: &str,
        subject: String,
        why: &str,
    ) -> HealthcareError {
        let record = AuditRecord::new(
            self.clock.now(),
            actor.clone(),
            action,
            subject,
            AuditOutcome::Denied,
        )
        .with("reason", why);
        if let Err(e) = self.audit.append(record).await {
            warn!(error = %e, "audit append failed for a denied request");
        }
        HealthcareError::Denied(why.to_owned())
    }

    /// Opens or changes a slot (operators and the system only).
    pub async fn put_slot(&self, actor: &Principal, slot: Slot) -> Result<(), HealthcareError> {
        if !(actor.is_operator() || matches!(actor, Principal::System)) {
            return Err(self
                .deny(
                    actor,
                    "appointment.put_slot",
                    format!("slot:{}", slot.id),
                    "only the facility manages slots",
                )
                .await);
        }
        if slot.capacity == 0 || slot.end <= slot.start {
            return Err(HealthcareError::InvalidInput(
                "a slot needs a capacity of at least 1 and an end after its start".into(),
            ));
        }
        if civil_date(slot.start) != slot.date {
            return Err(HealthcareError::InvalidInput(
                "a slot's start must fall on its civil date".into(),
            ));
        }
        self.store.put_slot(&slot).await?;
        self.audit(
            AuditRecord::new(
                self.clock.now(),
                actor.clone(),
                "appointment.put_slot",
                format!("slot:{}", slot.id),
                AuditOutcome::Succeeded,
            )
            .with("capacity", slot.capacity.to_string())
            .with("status", slot.status.code()),
        )
        .await
    }

    /// Publishes a weekly schedule as slots for every date in `[from, to]` (operators and the
    /// system only); returns the slots written. Existing slots with the same ids are updated.
    pub async fn publish_schedule(
        &self,
        actor: &Principal,
        template: &super::ScheduleTemplate,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<Slot>, HealthcareError> {
        let slots = template.slots(from, to, &self.policy.session_times)?;
        for slot in &slots {
            self.put_slot(actor, slot.clone()).await?;
        }
        Ok(slots)
    }

    /// The slots of a department on a date with their remaining capacity (a
    /// published schedule, no personal data: any principal may look).
    pub async fn slots(
        &self,
        actor: &Principal,
        department: &DepartmentId,
        date: NaiveDate,
    ) -> Result<Vec<SlotView>, HealthcareError> {
        tracing::debug!(actor = %actor, department = %department, %date, "slots read");
        Ok(self.store.department_slots(department, date).await?)
    }

    /// The first civil date on which a patient may book again, if banned now:
    /// for whoever may book for the patient (the patient, a delegate under a
    /// live grant to book, operators, the system); audited.
    pub async fn banned_until(
        &self,
        actor: &Principal,
        patient: &PersonId,
    ) -> Result<Option<NaiveDate>, HealthcareError> {
        let subject = format!("person:{patient}");
        self.authorize_for(actor, patient, "appointment.banned_until", subject.clone())
            .await?;
        if !matches!(actor, Principal::System) {
            self.audit(AuditRecord::new(
                self.clock.now(),
                actor.clone(),
                "appointment.banned_until",
                subject,
                AuditOutcome::Succeeded,
            ))
            .await?;
        }
        let today = civil_date(self.clock.now());
        let no_shows: Vec<NaiveDate> = self
            .store
            .patient_appointments(patient)
            .await?
            .into_iter()
            .filter(|a| a.status == AppointmentStatus::Noshow)
            .map(|a| a.date)
            .collect();
        Ok(no_show_ban(&no_shows, today, &self.policy))
    }

    async fn authorize_for(
        &self,
        actor: &Principal,
        patient: &PersonId,
        action: &str,
        subject: String,
    ) -> Result<(), HealthcareError> {
        match actor {
            Principal::Cardholder { person } if person == patient => Ok(()),
            Principal::Delegate { .. } => {
                if self
                    .patients
                    .delegate_allowed(actor, patient, DelegationScope::BookAppointments)
                    .await?
                {
                    Ok(())
                } else {
                    Err(self
                        .deny(
                            actor,
                            action,
                            subject,
                            "no live grant lets this delegate book for this patient",
                        )
                        .await)
                }
            }
            Principal::Operator { .. } | Principal::System => Ok(()),
            _ => Err(self
                .deny(
                    actor,
                    action,
                    subject,
                    "the principal may not book for this patient",
                )
                .await),
        }
    }

    /// Books a slot for a patient: real-name, window, ban, then the store's atomic decision.
    #[tracing::instrument(skip_all, fields(slot = %request.slot, key = %request.key))]
    pub async fn book(
        &self,
        actor: &Principal,
        request: &BookRequest,
    ) -> Result<Booking, HealthcareError> {
        let subject = format!("slot:{}", request.slot);
        self.authorize_for(actor, &request.patient, "appointment.book", subject.clone())
            .await?;
        // A retry returns the first result even if the window or the slot changed since.
        if let Some(existing) = self
            .store
            .appointment_by_key(&request.patient, &request.key)
            .await?
        {
            if existing.slot != request.slot {
                return Err(HealthcareError::KeyReused);
            }
            let mine = self.store.patient_appointments(&request.patient).await?;
            return Ok(booking_result(existing, true, &mine));
        }
        let record = self
            .patients
            .patient(&request.patient)
            .await?
            .ok_or_else(|| HealthcareError::NotFound("patient".into()))?;
        if !record.real_name_verified {
            return Err(HealthcareError::NotRealName);
        }
        let view = self
            .store
            .slot(&request.slot)
            .await?
            .ok_or_else(|| HealthcareError::NotFound(format!("slot {}", request.slot)))?;
        let slot = &view.slot;
        let now = self.clock.now();
        let today = civil_date(now);
        let last_day = today + Duration::days(i64::from(self.policy.window_days));
        if now >= slot.end || slot.date < today {
            return Err(HealthcareError::NotBookable("the session is over".into()));
        }
        if slot.date > last_day
            || (slot.date == last_day && to_civil(now).hour() < self.policy.release_hour)
        {
            return Err(HealthcareError::NotBookable(format!(
                "outside the booking window: slots open {} days ahead at {:02}:00",
                self.policy.window_days, self.policy.release_hour
            )));
        }
        // One read of the patient's appointments serves the ban check and the same-day warning.
        let mine = self.store.patient_appointments(&request.patient).await?;
        let no_shows: Vec<NaiveDate> = mine
            .iter()
            .filter(|a| a.status == AppointmentStatus::Noshow)
            .map(|a| a.date)
            .collect();
        if let Some(until) = no_show_ban(&no_shows, today, &self.policy) {
            return Err(HealthcareError::Banned { until });
        }
        let appointment = Appointment {
            id: AppointmentId::generate(self.ids.as_ref()),
            slot: slot.id.clone(),
            hospital: slot.hospital.clone(),
            department: slot.department.clone(),
            date: slot.date,
            session: slot.session,
            start: slot.start,
            end: slot.end,
            patient: request.patient.clone(),
            booked_by: actor.clone(),
            status: AppointmentStatus::Booked,
            queue_number: None,
            expected_at: None,
            booking_key: request.key.clone(),
            created_at: now,
            updated_at: now,
            cancellation: None,
        };
        let decision = self
            .store
            .book(&BookingRequest {
                appointment,
                quota: self.policy.quota(),
                week: week_of(slot.date),
                month: month_of(slot.date),
                allow_waitlist: request.allow_waitlist,
            })
            .await?;
        let (appointment, replayed) = match decision {
            BookingDecision::Booked { appointment }
            | BookingDecision::Waitlisted { appointment } => (appointment, false),
            BookingDecision::Duplicate { appointment } => (appointment, true),
            BookingDecision::KeyReused => return Err(HealthcareError::KeyReused),
            BookingDecision::SlotNotFound => {
                return Err(HealthcareError::NotFound(format!("slot {}", request.slot)));
            }
            BookingDecision::SlotClosed => {
                return Err(HealthcareError::NotBookable("the slot is closed".into()));
            }
            BookingDecision::Full => return Err(HealthcareError::SlotFull),
            BookingDecision::QuotaExceeded { kind } => {
                return Err(HealthcareError::QuotaExceeded(kind.code().into()));
            }
        };
        if !replayed {
            let mut rec = AuditRecord::new(
                now,
                actor.clone(),
                "appointment.book",
                format!("appointment:{}", appointment.id),
                AuditOutcome::Succeeded,
            )
            .with("slot", appointment.slot.as_str())
            .with("status", appointment.status.code());
            if let Some(q) = appointment.queue_number {
                rec = rec.with("queue_number", q.to_string());
            }
            self.audit(rec).await?;
        }
        info!(appointment = %appointment.id, status = appointment.status.code(), replayed, "booked");
        Ok(booking_result(appointment, replayed, &mine))
    }

    /// Cancels an appointment. Patients and their delegates cancel before the cut-off;
    /// operators and the system cancel for the facility at any time. A freed place goes to
    /// the first waitlisted patient.
    #[tracing::instrument(skip_all, fields(appointment = %id))]
    pub async fn cancel(
        &self,
        actor: &Principal,
        id: &AppointmentId,
        reason: &str,
    ) -> Result<CancelOutcome, HealthcareError> {
        let subject = format!("appointment:{id}");
        let appointment = self
            .store
            .appointment(id)
            .await?
            .ok_or_else(|| HealthcareError::NotFound(format!("appointment {id}")))?;
        let now = self.clock.now();
        let by = match actor {
            Principal::Operator { .. } | Principal::System => CancelledBy::Facility,
            _ => {
                self.authorize_for(
                    actor,
                    &appointment.patient,
                    "appointment.cancel",
                    subject.clone(),
                )
                .await?;
                if appointment.status == AppointmentStatus::Booked {
                    let cutoff = self.cancel_cutoff(appointment.date);
                    if now >= cutoff {
                        return Err(HealthcareError::Conflict(format!(
                            "the cancellation cut-off ({}) has passed: ask the hospital",
                            to_civil(cutoff).format("%Y-%m-%d %H:%M")
                        )));
                    }
                }
                CancelledBy::Patient
            }
        };
        let cancellation = Cancellation {
            by,
            reason: reason.to_owned(),
            at: now,
        };
        match self.store.cancel(id, &cancellation).await? {
            CancelDecision::Cancelled {
                cancelled,
                promoted,
            } => {
                self.audit(
                    AuditRecord::new(
                        now,
                        actor.clone(),
                        "appointment.cancel",
                        subject,
                        AuditOutcome::Succeeded,
                    )
                    .with("by", by.code()),
                )
                .await?;
                if let Some(p) = &promoted {
                    self.audit(
                        AuditRecord::new(
                            now,
                            Principal::System,
                            "appointment.promote",
                            format!("appointment:{}", p.id),
                            AuditOutcome::Succeeded,
                        )
                        .with("queue_number", p.queue_number.unwrap_or(0).to_string()),
                    )
                    .await?;
                }
                info!(promoted = promoted.is_some(), "cancelled");
                Ok((cancelled, promoted))
            }
            CancelDecision::NotFound => Err(HealthcareError::NotFound(format!("appointment {id}"))),
            CancelDecision::WrongState { status } => Err(HealthcareError::Conflict(format!(
                "an appointment in status {} cannot be cancelled",
                status.code()
            ))),
        }
    }

    /// Moves an appointment forward at the hospital (arrived, checked in, fulfilled):
    /// operators and the system only.
    pub async fn advance(
        &self,
        actor: &Principal,
        id: &AppointmentId,
        to: AppointmentStatus,
    ) -> Result<Appointment, HealthcareError> {
        let subject = format!("appointment:{id}");
        if !(actor.is_operator() || matches!(actor, Principal::System)) {
            return Err(self
                .deny(
                    actor,
                    "appointment.advance",
                    subject,
                    "only the facility records visits",
                )
                .await);
        }
        let current = self
            .store
            .appointment(id)
            .await?
            .ok_or_else(|| HealthcareError::NotFound(format!("appointment {id}")))?;
        let now = self.clock.now();
        match self.store.transition(id, current.status, to, now).await? {
            TransitionDecision::Moved { appointment } => {
                self.audit(
                    AuditRecord::new(
                        now,
                        actor.clone(),
                        "appointment.advance",
                        subject,
                        AuditOutcome::Succeeded,
                    )
                    .with("from", current.status.code())
                    .with("to", to.code()),
                )
                .await?;
                Ok(appointment)
            }
            TransitionDecision::NotFound => {
                Err(HealthcareError::NotFound(format!("appointment {id}")))
            }
            TransitionDecision::WrongState { status } => Err(HealthcareError::Conflict(format!(
                "cannot move from {} to {}: states only move forward",
                status.code(),
                to.code()
            ))),
        }
    }

    /// Marks as no-shows the booked appointments whose session ended more than the grace
    /// period ago, at most `limit` per call (run it from a scheduler).
    pub async fn mark_no_shows(&self, limit: usize) -> Result<NoShowSweep, HealthcareError> {
        let now = self.clock.now();
        let before = now - Duration::minutes(i64::from(self.policy.no_show_grace_minutes));
        let mut sweep = NoShowSweep::default();
        for a in self.store.booked_ending_before(before, limit).await? {
            if let TransitionDecision::Moved { .. } = self
                .store
                .transition(
                    &a.id,
                    AppointmentStatus::Booked,
                    AppointmentStatus::Noshow,
                    now,
                )
                .await?
            {
                self.audit(AuditRecord::new(
                    now,
                    Principal::System,
                    "appointment.noshow",
                    format!("appointment:{}", a.id),
                    AuditOutcome::Succeeded,
                ))
                .await?;
                sweep.marked.push(a.id);
            }
        }
        info!(marked = sweep.marked.len(), "no-show sweep");
        Ok(sweep)
    }

    /// One appointment, for its patient, a delegate with the booking scope, or the facility.
    pub async fn appointment(
        &self,
        actor: &Principal,
        id: &AppointmentId,
    ) -> Result<Appointment, HealthcareError> {
        let a = self
            .store
            .appointment(id)
            .await?
            .ok_or_else(|| HealthcareError::NotFound(format!("appointment {id}")))?;
        self.authorize_for(
            actor,
            &a.patient,
            "appointment.read",
            format!("appointment:{id}"),
        )
        .await?;
        Ok(a)
    }

    /// Whether a slot is open for booking at all (not closed or in error).
    pub fn is_open(slot: &Slot) -> bool {
        slot.status == SlotStatus::Open
    }
}
