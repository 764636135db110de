//! Appointments: hospitals, slots with a capacity, real-name booking, FHIR-like states.
//!
//! Decide, then commit: the [`AppointmentService`] checks who acts, real-name status, the
//! booking window, bans and cut-offs, prefetches the slot and the patient from the
//! [`AppointmentStore`], and [`decide`] turns them into a plan (capacity, quotas, queue
//! numbers, waitlist promotion) that the store commits with its audit records in one
//! transaction. The plan carries the slot's and the patient's versions; a plan decided on a
//! stale read is refused and decided again, so a slot is never overbooked whatever the
//! concurrency.
//!
//! ```
//! use std::sync::Arc;
//! use citycard_core::{ManualClock, MemoryAuditLog, Principal, SequentialIdGenerator};
//! use citycard_healthcare::{
//!     AppointmentService, BookRequest, BookingPolicy, MemoryAppointmentStore,
//!     MemoryPatientDirectory, PatientRecord, ScheduleTemplate, Session, WeeklySession,
//! };
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! let patients = Arc::new(MemoryPatientDirectory::new());
//! let me: citycard_core::PersonId = "psn-1".parse()?;
//! patients.put(PatientRecord { person: me.clone(), real_name_verified: true, person_type: None });
//! let service = AppointmentService::new(
//!     Arc::new(MemoryAppointmentStore::new()),
//!     patients,
//!     Arc::new(MemoryAuditLog::new()),
//!     Arc::new(ManualClock::at_ymd_hms(2026, 3, 9, 1, 0, 0)), // Monday 09:00 in Hangzhou
//!     Arc::new(SequentialIdGenerator::new()),
//!     BookingPolicy::hangzhou()?,
//! );
//! let clinic = ScheduleTemplate {
//!     hospital: "hsp-1".parse()?,
//!     department: "dep-cardiology".parse()?,
//!     doctor: Some("doc-7".parse()?),
//!     sessions: vec![WeeklySession { weekday: chrono::Weekday::Tue, session: Session::Morning, capacity: 30 }],
//! };
//! let day = chrono::NaiveDate::from_ymd_opt(2026, 3, 10).unwrap();
//! let operator = Principal::Operator { operator: "opr-1".parse()? };
//! let slots = service.publish_schedule(&operator, &clinic, day, day).await?;
//! let booking = service
//!     .book(&Principal::cardholder(me.clone()), &BookRequest {
//!         slot: slots[0].id.clone(),
//!         patient: me,
//!         key: "book-1".parse()?,
//!         allow_waitlist: false,
//!     })
//!     .await?;
//! assert_eq!(booking.appointment.queue_number, Some(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

pub mod decide;
mod service;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use citycard_core::{IdempotencyKey, PersonId, Principal};
use serde::{Deserialize, Serialize};

pub use service::{
    AppointmentService, BookRequest, Booking, CancelOutcome, MAX_DECISIONS, NoShowSweep,
    no_show_ban,
};

use crate::error::HealthcareError;
use crate::ids::{AppointmentId, DepartmentId, DoctorId, HospitalId, SlotId};
use crate::settlement::HospitalLevel;

/// A hospital.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hospital {
    /// Its id.
    pub id: HospitalId,
    /// Its public name.
    pub name: String,
    /// Its level.
    pub level: HospitalLevel,
}

/// A department of a hospital.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Department {
    /// Its id.
    pub id: DepartmentId,
    /// The hospital.
    pub hospital: HospitalId,
    /// Its public name.
    pub name: String,
}

/// A doctor (public professional data, not a patient's personal data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Doctor {
    /// Its id.
    pub id: DoctorId,
    /// The department.
    pub department: DepartmentId,
    /// The doctor's public name.
    pub name: String,
    /// The title (主任医师, ...).
    pub title: String,
}

/// A half-day clinic session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Session {
    /// Morning (上午).
    Morning,
    /// Afternoon (下午).
    Afternoon,
    /// Evening (夜门诊).
    Evening,
}

impl Session {
    /// A stable code.
    pub fn code(self) -> &'static str {
        match self {
            Session::Morning => "morning",
            Session::Afternoon => "afternoon",
            Session::Evening => "evening",
        }
    }

    /// The session for a code.
    pub fn from_code(code: &str) -> Option<Session> {
        [Session::Morning, Session::Afternoon, Session::Evening]
            .into_iter()
            .find(|s| s.code() == code)
    }
}

/// Whether a slot takes bookings (FHIR Slot.status minus the derived busy states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotStatus {
    /// Open for booking (FHIR `free`, or `busy` once full).
    Open,
    /// Closed by the facility (FHIR `busy-unavailable`).
    Closed,
    /// Created in error (FHIR `entered-in-error`).
    EnteredInError,
}

impl SlotStatus {
    /// A stable code.
    pub fn code(self) -> &'static str {
        match self {
            SlotStatus::Open => "open",
            SlotStatus::Closed => "closed",
            SlotStatus::EnteredInError => "entered_in_error",
        }
    }

    /// The status for a code.
    pub fn from_code(code: &str) -> Option<SlotStatus> {
        [
            SlotStatus::Open,
            SlotStatus::Closed,
            SlotStatus::EnteredInError,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }
}

/// A bookable slot: one clinic session with a capacity (FHIR Slot plus a capacity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// Its id.
    pub id: SlotId,
    /// The hospital.
    pub hospital: HospitalId,
    /// The department.
    pub department: DepartmentId,
    /// The doctor, for a named doctor's clinic.
    pub doctor: Option<DoctorId>,
    /// The civil date.
    pub date: NaiveDate,
    /// The session.
    pub session: Session,
    /// Start of the session.
    pub start: DateTime<Utc>,
    /// End of the session.
    pub end: DateTime<Utc>,
    /// How many patients may be booked.
    pub capacity: u32,
    /// Open, closed or in error.
    pub status: SlotStatus,
}

impl Slot {
    /// The expected time of the `queue_number`-th patient: the session divided evenly.
    pub fn expected_time(&self, queue_number: u32) -> DateTime<Utc> {
        let span = (self.end - self.start).num_seconds().max(0);
        let per = span / i64::from(self.capacity.max(1));
        let offset = per.saturating_mul(i64::from(queue_number.saturating_sub(1)));
        (self.start + Duration::seconds(offset)).min(self.end)
    }
}

/// A slot with its booking counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotView {
    /// The slot.
    pub slot: Slot,
    /// Appointments holding a place (booked, arrived, checked in, fulfilled, no-show).
    pub booked: u32,
    /// Patients on the waitlist.
    pub waitlisted: u32,
    /// Queue numbers issued so far (never reused).
    pub issued: u32,
}

impl SlotView {
    /// Places still free.
    pub fn remaining(&self) -> u32 {
        self.slot.capacity.saturating_sub(self.booked)
    }
}

/// Appointment status, mirroring FHIR R4 `Appointment.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AppointmentStatus {
    /// Proposed, not yet confirmed.
    Proposed,
    /// Pending confirmation.
    Pending,
    /// Booked with a queue number.
    Booked,
    /// The patient has arrived.
    Arrived,
    /// The patient has checked in (报到).
    CheckedIn,
    /// Seen; done.
    Fulfilled,
    /// Cancelled by the patient or the facility.
    Cancelled,
    /// The patient did not come.
    Noshow,
    /// Created in error.
    EnteredInError,
    /// Waiting for a place.
    Waitlist,
}

impl AppointmentStatus {
    /// The FHIR code (`checked-in`, `entered-in-error`, ...).
    pub fn code(self) -> &'static str {
        match self {
            AppointmentStatus::Proposed => "proposed",
            AppointmentStatus::Pending => "pending",
            AppointmentStatus::Booked => "booked",
            AppointmentStatus::Arrived => "arrived",
            AppointmentStatus::CheckedIn => "checked-in",
            AppointmentStatus::Fulfilled => "fulfilled",
            AppointmentStatus::Cancelled => "cancelled",
            AppointmentStatus::Noshow => "noshow",
            AppointmentStatus::EnteredInError => "entered-in-error",
            AppointmentStatus::Waitlist => "waitlist",
        }
    }

    /// The status for a FHIR code.
    pub fn from_code(code: &str) -> Option<AppointmentStatus> {
        use AppointmentStatus::*;
        [
            Proposed,
            Pending,
            Booked,
            Arrived,
            CheckedIn,
            Fulfilled,
            Cancelled,
            Noshow,
            EnteredInError,
            Waitlist,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }

    /// True for cancelled, noshow, fulfilled and entered-in-error: nothing follows.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            AppointmentStatus::Fulfilled
                | AppointmentStatus::Cancelled
                | AppointmentStatus::Noshow
                | AppointmentStatus::EnteredInError
        )
    }

    /// Whether the appointment holds one of the slot's places.
    pub fn holds_place(self) -> bool {
        matches!(
            self,
            AppointmentStatus::Booked
                | AppointmentStatus::Arrived
                | AppointmentStatus::CheckedIn
                | AppointmentStatus::Fulfilled
                | AppointmentStatus::Noshow
        )
    }

    /// Whether the appointment counts against the patient's quotas.
    pub fn counts_for_quota(self) -> bool {
        matches!(
            self,
            AppointmentStatus::Booked
                | AppointmentStatus::Arrived
                | AppointmentStatus::CheckedIn
                | AppointmentStatus::Fulfilled
                | AppointmentStatus::Noshow
                | AppointmentStatus::Waitlist
        )
    }

    /// Whether a move to `next` is forward: states only move forward, terminal states never move.
    pub fn can_move_to(self, next: AppointmentStatus) -> bool {
        use AppointmentStatus::*;
        match self {
            Proposed => matches!(
                next,
                Pending | Booked | Waitlist | Cancelled | EnteredInError
            ),
            Pending => matches!(next, Booked | Waitlist | Cancelled | EnteredInError),
            Waitlist => matches!(next, Booked | Cancelled | EnteredInError),
            Booked => matches!(
                next,
                Arrived | CheckedIn | Fulfilled | Cancelled | Noshow | EnteredInError
            ),
            Arrived => matches!(next, CheckedIn | Fulfilled | EnteredInError),
            CheckedIn => matches!(next, Fulfilled | EnteredInError),
            Fulfilled | Cancelled | Noshow | EnteredInError => false,
        }
    }
}

/// Who cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelledBy {
    /// The patient (or a delegate), before the cut-off.
    Patient,
    /// The facility (a doctor's leave, a closed clinic).
    Facility,
}

impl CancelledBy {
    /// A stable code (also the FHIR cancelation-reason code: `pat` / `prov`).
    pub fn code(self) -> &'static str {
        match self {
            CancelledBy::Patient => "pat",
            CancelledBy::Facility => "prov",
        }
    }

    /// The party for a code.
    pub fn from_code(code: &str) -> Option<CancelledBy> {
        match code {
            "pat" => Some(CancelledBy::Patient),
            "prov" => Some(CancelledBy::Facility),
            _ => None,
        }
    }
}

/// A cancellation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancellation {
    /// Patient or facility.
    pub by: CancelledBy,
    /// A short reason (no personal data).
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// An appointment (FHIR Appointment, with a queue number and an expected time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appointment {
    /// Its id.
    pub id: AppointmentId,
    /// The slot.
    pub slot: SlotId,
    /// The hospital.
    pub hospital: HospitalId,
    /// The department.
    pub department: DepartmentId,
    /// The slot's civil date.
    pub date: NaiveDate,
    /// The slot's session.
    pub session: Session,
    /// Session start.
    pub start: DateTime<Utc>,
    /// Session end.
    pub end: DateTime<Utc>,
    /// The patient (a real-name person).
    pub patient: PersonId,
    /// Who booked (the patient, a delegate, an operator).
    pub booked_by: Principal,
    /// The status.
    pub status: AppointmentStatus,
    /// The queue number (挂号序号) once booked.
    pub queue_number: Option<u32>,
    /// The expected time once booked.
    pub expected_at: Option<DateTime<Utc>>,
    /// The booking's idempotency key (unique per patient).
    pub booking_key: IdempotencyKey,
    /// When booked (or waitlisted).
    pub created_at: DateTime<Utc>,
    /// When the status last changed.
    pub updated_at: DateTime<Utc>,
    /// The cancellation, when cancelled.
    pub cancellation: Option<Cancellation>,
}

/// Per-person booking quotas (0 means none allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Per department per session per day.
    pub per_department_session: u32,
    /// Per civil day, all departments.
    pub per_day: u32,
    /// Per ISO week (Monday to Sunday), all departments.
    pub per_week: u32,
    /// Per civil month, all departments.
    pub per_month: u32,
}

/// Which quota a booking hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaKind {
    /// Per department per session.
    DepartmentSession,
    /// Per day.
    Day,
    /// Per week.
    Week,
    /// Per month.
    Month,
}

impl QuotaKind {
    /// A stable code.
    pub fn code(self) -> &'static str {
        match self {
            QuotaKind::DepartmentSession => "department_session",
            QuotaKind::Day => "day",
            QuotaKind::Week => "week",
            QuotaKind::Month => "month",
        }
    }
}

/// A booking for [`decide::decide_booking`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingRequest {
    /// The appointment to create; the decision sets status, queue number and expected time.
    pub appointment: Appointment,
    /// The quotas to enforce.
    pub quota: Quota,
    /// The first and last date of the slot date's week.
    pub week: (NaiveDate, NaiveDate),
    /// The first and last date of the slot date's month.
    pub month: (NaiveDate, NaiveDate),
    /// Join the waitlist when the slot is full.
    pub allow_waitlist: bool,
}

/// What the patient directory knows of a person (the facade answers from identity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientRecord {
    /// The person.
    pub person: PersonId,
    /// Whether the person has passed real-name verification.
    pub real_name_verified: bool,
    /// The person's medical insurance category, if insured.
    pub person_type: Option<crate::settlement::PersonType>,
}

/// How a patient presents at a hospital counter or a settlement terminal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum PatientIdentifier {
    /// The dynamic token of the electronic medical insurance credential (医保电子凭证).
    CredentialToken(citycard_core::Sensitive<String>),
    /// The ID number (身份证号).
    IdNumber(citycard_core::Sensitive<String>),
    /// The social security card number (社保卡号).
    SocialSecurityCard(citycard_core::Sensitive<String>),
}

/// Booking policy (a data file per hospital or city; Hangzhou's is marked "check").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingPolicy {
    /// Days ahead that can be booked (today counts as day 0).
    pub window_days: u32,
    /// Civil hour at which the furthest day's slots are released.
    pub release_hour: u32,
    /// Per department per session per day.
    pub per_department_session: u32,
    /// Per day.
    pub per_day: u32,
    /// Per week.
    pub per_week: u32,
    /// Per month.
    pub per_month: u32,
    /// Patients may cancel until `cancel_cutoff_hour` on this many days before the slot date.
    pub cancel_cutoff_days_before: u32,
    /// Whether those days are statutory working days (Hangzhou: "15:00 the working day
    /// before", so a Monday slot's cut-off is the Friday before, or earlier around holidays).
    #[serde(default)]
    pub cancel_cutoff_in_working_days: bool,
    /// The civil hour of the cancellation cut-off.
    pub cancel_cutoff_hour: u32,
    /// Minutes after the session end before a booked appointment becomes a no-show.
    pub no_show_grace_minutes: u32,
    /// No-shows within the window that trigger a ban.
    pub no_show_threshold: u32,
    /// The look-back window for no-shows, in days.
    pub no_show_window_days: u32,
    /// Days of ban after the no-show that reached the threshold.
    pub ban_days: u32,
    /// Civil start and end times of each session.
    pub session_times: SessionTimes,
}

/// Civil start and end times of the sessions (policy data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionTimes {
    /// Morning start and end.
    pub morning: (chrono::NaiveTime, chrono::NaiveTime),
    /// Afternoon start and end.
    pub afternoon: (chrono::NaiveTime, chrono::NaiveTime),
    /// Evening start and end.
    pub evening: (chrono::NaiveTime, chrono::NaiveTime),
}

impl SessionTimes {
    /// The start and end of a session on a civil date, as instants.
    pub fn bounds(&self, date: NaiveDate, session: Session) -> (DateTime<Utc>, DateTime<Utc>) {
        let (from, to) = match session {
            Session::Morning => self.morning,
            Session::Afternoon => self.afternoon,
            Session::Evening => self.evening,
        };
        let day = citycard_core::start_of_civil_day(date);
        let midnight = chrono::NaiveTime::MIN;
        (day + (from - midnight), day + (to - midnight))
    }
}

/// One weekly sitting of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeeklySession {
    /// The weekday.
    pub weekday: chrono::Weekday,
    /// The session.
    pub session: Session,
    /// Patients per sitting.
    pub capacity: u32,
}

/// A clinic's weekly schedule (FHIR Schedule): the sittings of a doctor or department,
/// from which dated slots are generated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleTemplate {
    /// The hospital.
    pub hospital: HospitalId,
    /// The department.
    pub department: DepartmentId,
    /// The doctor, for a named doctor's clinic.
    pub doctor: Option<DoctorId>,
    /// The weekly sittings.
    pub sessions: Vec<WeeklySession>,
}

impl ScheduleTemplate {
    /// The open slots of the schedule for every date in `[from, to]`, with ids
    /// `slot:<doctor or department>:<yyyymmdd>:<session>`.
    pub fn slots(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        times: &SessionTimes,
    ) -> Result<Vec<Slot>, HealthcareError> {
        use chrono::Datelike;
        let owner = self
            .doctor
            .as_ref()
            .map_or(self.department.as_str(), |d| d.as_str());
        let mut out = Vec::new();
        let mut date = from;
        while date <= to {
            for sitting in self.sessions.iter().filter(|s| s.weekday == date.weekday()) {
                if sitting.capacity == 0 {
                    return Err(HealthcareError::InvalidInput(
                        "a sitting needs a capacity of at least 1".into(),
                    ));
                }
                let (start, end) = times.bounds(date, sitting.session);
                let id = format!(
                    "slot:{owner}:{}:{}",
                    date.format("%Y%m%d"),
                    sitting.session.code()
                );
                out.push(Slot {
                    id: SlotId::parse(&id)
                        .map_err(|e| HealthcareError::InvalidInput(e.to_string()))?,
                    hospital: self.hospital.clone(),
                    department: self.department.clone(),
                    doctor: self.doctor.clone(),
                    date,
                    session: sitting.session,
                    start,
                    end,
                    capacity: sitting.capacity,
                    status: SlotStatus::Open,
                });
            }
            date = match date.succ_opt() {
                Some(next) => next,
                None => break,
            };
        }
        Ok(out)
    }
}

/// Hangzhou's shipped booking policy (marked "check").
pub const HANGZHOU_BOOKING_POLICY_JSON: &str =
    include_str!("../../data/hangzhou_booking_policy.json");

impl BookingPolicy {
    /// Hangzhou's typical policy from the shipped data file (marked "check").
    pub fn hangzhou() -> Result<Self, HealthcareError> {
        Self::from_json(HANGZHOU_BOOKING_POLICY_JSON, "hangzhou_booking_policy.json")
    }

    /// A policy from JSON (unknown fields such as `status` are ignored).
    pub fn from_json(text: &str, source: &str) -> Result<Self, HealthcareError> {
        let policy: BookingPolicy =
            serde_json::from_str(text).map_err(|e| HealthcareError::BadData {
                location: source.to_owned(),
                message: e.to_string(),
            })?;
        if policy.release_hour > 23 || policy.cancel_cutoff_hour > 23 {
            return Err(HealthcareError::BadData {
                location: source.to_owned(),
                message: "hours must be within 0..=23".into(),
            });
        }
        Ok(policy)
    }

    /// The quotas.
    pub fn quota(&self) -> Quota {
        Quota {
            per_department_session: self.per_department_session,
            per_day: self.per_day,
            per_week: self.per_week,
            per_month: self.per_month,
        }
    }
}
