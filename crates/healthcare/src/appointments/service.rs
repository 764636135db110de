//! The appointment service: who may book and when; then prefetch, decide, commit.
//!
//! A plan refused as stale (another booking, cancellation or move of the same slot or
//! patient committed first) is decided again from a fresh read, at most [`MAX_DECISIONS`]
//! times. Each refusal means another operation on the same slot or patient committed, so
//! a booking for a slot with `n` free places is refused as stale at most `n` times before
//! it is decided as full; the bound only trips under a sustained stream of changes to one
//! patient or waitlist, and the caller gets a retryable conflict.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc};
use citycard_core::{
    AuditLog, AuditOutcome, AuditRecord, Clock, DelegationScope, IdGenerator, IdempotencyKey,
    PersonId, Principal, StoreError, WorkingCalendar, civil_date, to_civil,
};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::decide::{
    AppointmentPlan, BookingDecision, CancelDecision, TransitionDecision, decide_booking,
    decide_cancel, decide_transition,
};
use super::{
    Appointment, AppointmentStatus, BookingPolicy, BookingRequest, Cancellation, CancelledBy, Slot,
    SlotStatus, SlotView,
};
use crate::error::HealthcareError;
use crate::ids::{AppointmentId, DepartmentId, SlotId};
use crate::ports::{AppointmentStore, PatientDirectory};

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

/// How many times an operation decides before giving up on a contended slot or patient.
pub const MAX_DECISIONS: usize = 16;

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

    /// Commits a plan; `Ok(false)` when it was decided on a stale read (decide again).
    async fn commit(&self, plan: &AppointmentPlan) -> Result<bool, HealthcareError> {
        match self.store.commit(plan).await {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict(why)) => {
                debug!(%why, "stale appointment plan, deciding again");
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn contended() -> HealthcareError {
        HealthcareError::Conflict(format!(
            "the slot or the patient's bookings changed {MAX_DECISIONS} times while deciding: retry"
        ))
    }

    /// Books a slot for a patient: real-name, window and ban, then a decision on the slot's
    /// and the patient's state committed in one transaction (decided again on a stale read).
    #[tracing::instrument(skip_all, fields(slot = %request.slot, key = %request.key))]
    pub async fn book(
        &self,
        actor: &Principal,
        request: &BookRequest,
    ) -> Result<Booking, HealthcareError> {
        let subject = format!("slot:{}", request.slot);
        self.authorize_for(actor, &request.patient, "appointment.book", subject.clone())
            .await?;
        let mut checked = false;
        for _ in 0..MAX_DECISIONS {
            let mine = self.store.patient_state(&request.patient).await?;
            // A retry returns the first result even if the window or the slot changed since.
            if let Some(existing) = mine
                .appointments
                .iter()
                .find(|a| a.booking_key == request.key)
            {
                if existing.slot != request.slot {
                    return Err(HealthcareError::KeyReused);
                }
                return Ok(booking_result(existing.clone(), true, &mine.appointments));
            }
            if !checked {
                self.check_real_name(&request.patient).await?;
            }
            let slot = self.store.slot_state(&request.slot).await?;
            let now = self.clock.now();
            let Some(state) = slot.as_ref() else {
                return Err(HealthcareError::NotFound(format!("slot {}", request.slot)));
            };
            if !checked {
                self.check_window(&state.view.slot, now)?;
                checked = true;
            }
            let today = civil_date(now);
            let no_shows: Vec<NaiveDate> = mine
                .appointments
                .iter()
                .filter(|a| a.status == AppointmentStatus::Noshow)
                .map(|a| a.date)
                .collect();
            if let Some(until) = no_show_ban(&no_shows, today, &self.policy) {
                return Err(HealthcareError::Banned { until });
            }
            let slot = &state.view.slot;
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
            let booking = BookingRequest {
                appointment,
                quota: self.policy.quota(),
                week: week_of(slot.date),
                month: month_of(slot.date),
                allow_waitlist: request.allow_waitlist,
            };
            match decide_booking(&booking, Some(state), &mine) {
                BookingDecision::Book { appointment, plan } => {
                    if !self.commit(&plan).await? {
                        continue;
                    }
                    info!(appointment = %appointment.id, status = appointment.status.code(), "booked");
                    return Ok(booking_result(appointment, false, &mine.appointments));
                }
                BookingDecision::Duplicate { appointment } => {
                    return Ok(booking_result(appointment, true, &mine.appointments));
                }
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
            }
        }
        Err(Self::contended())
    }

    /// The patient has passed real-name verification.
    async fn check_real_name(&self, patient: &PersonId) -> Result<(), HealthcareError> {
        let record = self
            .patients
            .patient(patient)
            .await?
            .ok_or_else(|| HealthcareError::NotFound("patient".into()))?;
        if !record.real_name_verified {
            return Err(HealthcareError::NotRealName);
        }
        Ok(())
    }

    /// The slot is within the booking window now.
    fn check_window(&self, slot: &Slot, now: DateTime<Utc>) -> Result<(), HealthcareError> {
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
        Ok(())
    }

    /// Cancels an appointment. Patients and their delegates cancel before the cut-off;
    /// operators and the system cancel for the facility at any time. A freed place goes to
    /// the first waitlisted patient, in the same transaction.
    #[tracing::instrument(skip_all, fields(appointment = %id))]
    pub async fn cancel(
        &self,
        actor: &Principal,
        id: &AppointmentId,
        reason: &str,
    ) -> Result<CancelOutcome, HealthcareError> {
        let subject = format!("appointment:{id}");
        let mut authorized = false;
        for _ in 0..MAX_DECISIONS {
            let appointment = self
                .store
                .appointment(id)
                .await?
                .ok_or_else(|| HealthcareError::NotFound(format!("appointment {id}")))?;
            let now = self.clock.now();
            let by = match actor {
                Principal::Operator { .. } | Principal::System => CancelledBy::Facility,
                _ => {
                    if !authorized {
                        self.authorize_for(
                            actor,
                            &appointment.patient,
                            "appointment.cancel",
                            subject.clone(),
                        )
                        .await?;
                        authorized = true;
                    }
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
            let patient = self.store.patient_state(&appointment.patient).await?;
            // The appointment as of the patient's version, so the plan's precondition covers it.
            let Some(current) = patient.appointments.iter().find(|a| &a.id == id) else {
                continue;
            };
            let slot = self.store.slot_state(&current.slot).await?;
            match decide_cancel(
                current,
                patient.version,
                slot.as_ref(),
                &cancellation,
                actor,
            ) {
                CancelDecision::Cancel {
                    cancelled,
                    promoted,
                    plan,
                } => {
                    if !self.commit(&plan).await? {
                        continue;
                    }
                    info!(promoted = promoted.is_some(), "cancelled");
                    return Ok((cancelled, promoted));
                }
                CancelDecision::WrongState { status } => {
                    return Err(HealthcareError::Conflict(format!(
                        "an appointment in status {} cannot be cancelled",
                        status.code()
                    )));
                }
            }
        }
        Err(Self::contended())
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
        for _ in 0..MAX_DECISIONS {
            let (current, version) = self.current(id).await?;
            let now = self.clock.now();
            match decide_transition(
                &current,
                version,
                current.status,
                to,
                now,
                actor,
                "appointment.advance",
            ) {
                TransitionDecision::Move { appointment, plan } => {
                    if self.commit(&plan).await? {
                        return Ok(appointment);
                    }
                }
                TransitionDecision::WrongState { status } => {
                    return Err(HealthcareError::Conflict(format!(
                        "cannot move from {} to {}: states only move forward",
                        status.code(),
                        to.code()
                    )));
                }
            }
        }
        Err(Self::contended())
    }

    /// An appointment as of its patient's version.
    async fn current(&self, id: &AppointmentId) -> Result<(Appointment, u64), HealthcareError> {
        let not_found = || HealthcareError::NotFound(format!("appointment {id}"));
        let appointment = self.store.appointment(id).await?.ok_or_else(not_found)?;
        let patient = self.store.patient_state(&appointment.patient).await?;
        let current = patient
            .appointments
            .into_iter()
            .find(|a| &a.id == id)
            .ok_or_else(not_found)?;
        Ok((current, patient.version))
    }

    /// Marks as no-shows the booked appointments whose session ended more than the grace
    /// period ago, at most `limit` per call (run it from a scheduler); one transaction each.
    pub async fn mark_no_shows(&self, limit: usize) -> Result<NoShowSweep, HealthcareError> {
        let now = self.clock.now();
        let before = now - Duration::minutes(i64::from(self.policy.no_show_grace_minutes));
        let mut sweep = NoShowSweep::default();
        for a in self.store.booked_ending_before(before, limit).await? {
            for _ in 0..MAX_DECISIONS {
                let (current, version) = self.current(&a.id).await?;
                match decide_transition(
                    &current,
                    version,
                    AppointmentStatus::Booked,
                    AppointmentStatus::Noshow,
                    now,
                    &Principal::System,
                    "appointment.noshow",
                ) {
                    TransitionDecision::Move { plan, .. } => {
                        if self.commit(&plan).await? {
                            sweep.marked.push(a.id.clone());
                            break;
                        }
                    }
                    // Moved on meanwhile (arrived, cancelled): not a no-show.
                    TransitionDecision::WrongState { .. } => break,
                }
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
