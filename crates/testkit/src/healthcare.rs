//! Test support for citycard-healthcare: conformance suites for its storage ports,
//! fault-injecting doubles of its remote ports, and proptest strategies.
//!
//! The helpers below build slots and booking requests for the suites; hosts may use them
//! for their own backends' tests too.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use citycard_core::{IdempotencyKey, PersonId, Principal};
use citycard_healthcare::appointments::{BookingRequest, Quota};
use citycard_healthcare::{
    Appointment, AppointmentId, AppointmentStatus, DepartmentId, HospitalId, Session, Slot, SlotId,
    SlotStatus,
};

/// The civil date used by the suites (a Monday).
pub fn suite_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 9).unwrap_or_default()
}

/// 08:00 China time on the suite date, plus `hours`.
pub fn suite_time(hours: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 9, 0, 0, 0)
        .single()
        .unwrap_or_default()
        + Duration::hours(hours)
}

/// A morning slot of department `dep` on `date`, 08:00-12:00 China time, open.
pub fn slot(id: &str, dep: &str, date: NaiveDate, capacity: u32) -> Slot {
    let day_start = citycard_core::start_of_civil_day(date);
    Slot {
        id: SlotId::parse(id)
            .unwrap_or_else(|_| SlotId::parse("slot-bad").unwrap_or_else(|_| unreachable!())),
        hospital: HospitalId::parse("hsp-1").unwrap_or_else(|_| unreachable!()),
        department: DepartmentId::parse(dep).unwrap_or_else(|_| unreachable!()),
        doctor: None,
        date,
        session: Session::Morning,
        start: day_start + Duration::hours(8),
        end: day_start + Duration::hours(12),
        capacity,
        status: SlotStatus::Open,
    }
}

/// Generous quotas (nothing limits but capacity).
pub fn no_quota() -> Quota {
    Quota {
        per_department_session: 100,
        per_day: 100,
        per_week: 100,
        per_month: 100,
    }
}

/// A booking request for `patient` on `slot` with key `key` and appointment id `id`.
pub fn booking(
    slot: &Slot,
    id: &str,
    patient: &str,
    key: &str,
    quota: Quota,
    waitlist: bool,
) -> BookingRequest {
    let patient = PersonId::parse(patient).unwrap_or_else(|_| unreachable!());
    let at = slot.start - Duration::days(1);
    let date = slot.date;
    BookingRequest {
        appointment: Appointment {
            id: AppointmentId::parse(id).unwrap_or_else(|_| unreachable!()),
            slot: slot.id.clone(),
            hospital: slot.hospital.clone(),
            department: slot.department.clone(),
            date,
            session: slot.session,
            start: slot.start,
            end: slot.end,
            patient: patient.clone(),
            booked_by: Principal::cardholder(patient),
            status: AppointmentStatus::Booked,
            queue_number: None,
            expected_at: None,
            booking_key: IdempotencyKey::parse(key).unwrap_or_else(|_| unreachable!()),
            created_at: at,
            updated_at: at,
            cancellation: None,
        },
        quota,
        week: {
            let monday = date - Duration::days(i64::from(date.weekday().num_days_from_monday()));
            (monday, monday + Duration::days(6))
        },
        month: {
            let first = date.with_day(1).unwrap_or(date);
            (first, first + Duration::days(27))
        },
        allow_waitlist: waitlist,
    }
}

/// The conformance suite for [`AppointmentStore`](citycard_healthcare::AppointmentStore).
///
/// The factory must return a fresh, empty store that is `Send + Sync + 'static`.
#[macro_export]
macro_rules! appointment_store_conformance {
    ($factory:ident) => {
        #[allow(clippy::unwrap_used, clippy::panic)]
        mod appointment_store_conformance {
            use std::sync::Arc;

            use $crate::__private::citycard_core::Principal;
            use $crate::__private::citycard_healthcare::appointments::{
                BookingDecision, CancelDecision, Cancellation, CancelledBy, QuotaKind,
                TransitionDecision,
            };
            use $crate::__private::citycard_healthcare::{
                AppointmentId, AppointmentStatus, AppointmentStore, DepartmentId, SlotId,
                SlotStatus,
            };
            use $crate::healthcare::{booking, no_quota, slot, suite_date, suite_time};

            fn booked(d: BookingDecision) -> $crate::__private::citycard_healthcare::Appointment {
                match d {
                    BookingDecision::Booked { appointment } => appointment,
                    other => panic!("expected booked, got {other:?}"),
                }
            }

            fn cancellation(by: CancelledBy) -> Cancellation {
                Cancellation {
                    by,
                    reason: "test".into(),
                    at: suite_time(1),
                }
            }

            #[tokio::test]
            async fn slots_are_stored_with_counts_and_listed_in_order() {
                let store = super::$factory().await;
                let late = {
                    let mut s = slot("slot-b", "dep-1", suite_date(), 5);
                    s.start += $crate::__private::chrono::Duration::hours(5);
                    s.end += $crate::__private::chrono::Duration::hours(5);
                    s
                };
                store.put_slot(&late).await.unwrap();
                store
                    .put_slot(&slot("slot-a", "dep-1", suite_date(), 3))
                    .await
                    .unwrap();
                store
                    .put_slot(&slot("slot-c", "dep-2", suite_date(), 3))
                    .await
                    .unwrap();
                let view = store
                    .slot(&SlotId::parse("slot-a").unwrap())
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    (view.booked, view.waitlisted, view.issued, view.remaining()),
                    (0, 0, 0, 3)
                );
                let list = store
                    .department_slots(&DepartmentId::parse("dep-1").unwrap(), suite_date())
                    .await
                    .unwrap();
                let ids: Vec<&str> = list.iter().map(|v| v.slot.id.as_str()).collect();
                assert_eq!(ids, ["slot-a", "slot-b"]);
                assert!(
                    store
                        .slot(&SlotId::parse("slot-x").unwrap())
                        .await
                        .unwrap()
                        .is_none()
                );
            }

            #[tokio::test]
            async fn bookings_fill_capacity_with_queue_numbers_then_refuse_or_waitlist() {
                let store = super::$factory().await;
                let s = slot("slot-1", "dep-1", suite_date(), 2);
                store.put_slot(&s).await.unwrap();
                let a1 = booked(
                    store
                        .book(&booking(&s, "apt-1", "psn-1", "k1", no_quota(), false))
                        .await
                        .unwrap(),
                );
                let a2 = booked(
                    store
                        .book(&booking(&s, "apt-2", "psn-2", "k2", no_quota(), false))
                        .await
                        .unwrap(),
                );
                assert_eq!((a1.queue_number, a2.queue_number), (Some(1), Some(2)));
                assert_eq!(a1.expected_at, Some(s.start));
                assert_eq!(
                    a2.expected_at,
                    Some(s.start + $crate::__private::chrono::Duration::hours(2))
                );
                assert_eq!(a1.status, AppointmentStatus::Booked);
                assert_eq!(
                    store
                        .book(&booking(&s, "apt-3", "psn-3", "k3", no_quota(), false))
                        .await
                        .unwrap(),
                    BookingDecision::Full
                );
                match store
                    .book(&booking(&s, "apt-4", "psn-4", "k4", no_quota(), true))
                    .await
                    .unwrap()
                {
                    BookingDecision::Waitlisted { appointment } => {
                        assert_eq!(appointment.status, AppointmentStatus::Waitlist);
                        assert_eq!(appointment.queue_number, None);
                    }
                    other => panic!("expected waitlisted, got {other:?}"),
                }
                let view = store.slot(&s.id).await.unwrap().unwrap();
                assert_eq!((view.booked, view.waitlisted, view.issued), (2, 1, 2));
                // A refused booking left nothing behind.
                assert!(
                    store
                        .appointment(&AppointmentId::parse("apt-3").unwrap())
                        .await
                        .unwrap()
                        .is_none()
                );
                let stored = store.appointment(&a1.id).await.unwrap().unwrap();
                assert_eq!(stored, a1);
            }

            #[tokio::test]
            async fn the_same_key_replays_and_a_reused_key_is_refused() {
                let store = super::$factory().await;
                let s = slot("slot-1", "dep-1", suite_date(), 3);
                let t = slot("slot-2", "dep-2", suite_date(), 3);
                store.put_slot(&s).await.unwrap();
                store.put_slot(&t).await.unwrap();
                let first = booked(
                    store
                        .book(&booking(&s, "apt-1", "psn-1", "k1", no_quota(), false))
                        .await
                        .unwrap(),
                );
                match store
                    .book(&booking(&s, "apt-9", "psn-1", "k1", no_quota(), false))
                    .await
                    .unwrap()
                {
                    BookingDecision::Duplicate { appointment } => assert_eq!(appointment, first),
                    other => panic!("expected duplicate, got {other:?}"),
                }
                assert_eq!(
                    store
                        .appointment_by_key(&first.patient, &first.booking_key)
                        .await
                        .unwrap(),
                    Some(first.clone())
                );
                assert_eq!(
                    store
                        .appointment_by_key(
                            &first.patient,
                            &$crate::__private::citycard_core::IdempotencyKey::parse("k-none")
                                .unwrap()
                        )
                        .await
                        .unwrap(),
                    None
                );
                assert_eq!(
                    store
                        .book(&booking(&t, "apt-8", "psn-1", "k1", no_quota(), false))
                        .await
                        .unwrap(),
                    BookingDecision::KeyReused
                );
                // Another patient may use the same key string.
                booked(
                    store
                        .book(&booking(&s, "apt-2", "psn-2", "k1", no_quota(), false))
                        .await
                        .unwrap(),
                );
                assert_eq!(store.slot(&s.id).await.unwrap().unwrap().booked, 2);
            }

            #[tokio::test]
            async fn quotas_are_enforced_per_session_day_week_and_month() {
                let store = super::$factory().await;
                let d = suite_date();
                let s1 = slot("slot-1", "dep-1", d, 9);
                let s2 = slot("slot-2", "dep-2", d, 9);
                let s3 = slot(
                    "slot-3",
                    "dep-3",
                    d + $crate::__private::chrono::Duration::days(1),
                    9,
                );
                let s4 = slot(
                    "slot-4",
                    "dep-4",
                    d + $crate::__private::chrono::Duration::days(2),
                    9,
                );
                for s in [&s1, &s2, &s3, &s4] {
                    store.put_slot(s).await.unwrap();
                }
                let mut q = no_quota();
                q.per_department_session = 1;
                q.per_day = 2;
                q.per_week = 3;
                booked(
                    store
                        .book(&booking(&s1, "apt-1", "psn-1", "k1", q, false))
                        .await
                        .unwrap(),
                );
                assert_eq!(
                    store
                        .book(&booking(&s1, "apt-2", "psn-1", "k2", q, false))
                        .await
                        .unwrap(),
                    BookingDecision::QuotaExceeded {
                        kind: QuotaKind::DepartmentSession
                    }
                );
                booked(
                    store
                        .book(&booking(&s2, "apt-3", "psn-1", "k3", q, false))
                        .await
                        .unwrap(),
                );
                let s1b = slot("slot-5", "dep-5", d, 9);
                store.put_slot(&s1b).await.unwrap();
                assert_eq!(
                    store
                        .book(&booking(&s1b, "apt-4", "psn-1", "k4", q, false))
                        .await
                        .unwrap(),
                    BookingDecision::QuotaExceeded {
                        kind: QuotaKind::Day
                    }
                );
                booked(
                    store
                        .book(&booking(&s3, "apt-5", "psn-1", "k5", q, false))
                        .await
                        .unwrap(),
                );
                assert_eq!(
                    store
                        .book(&booking(&s4, "apt-6", "psn-1", "k6", q, false))
                        .await
                        .unwrap(),
                    BookingDecision::QuotaExceeded {
                        kind: QuotaKind::Week
                    }
                );
                q.per_week = 10;
                q.per_month = 3;
                assert_eq!(
                    store
                        .book(&booking(&s4, "apt-7", "psn-1", "k7", q, false))
                        .await
                        .unwrap(),
                    BookingDecision::QuotaExceeded {
                        kind: QuotaKind::Month
                    }
                );
                // A cancelled booking no longer counts.
                store
                    .cancel(
                        &AppointmentId::parse("apt-5").unwrap(),
                        &cancellation(CancelledBy::Patient),
                    )
                    .await
                    .unwrap();
                booked(
                    store
                        .book(&booking(&s4, "apt-8", "psn-1", "k8", q, false))
                        .await
                        .unwrap(),
                );
                // Other patients are not affected.
                booked(
                    store
                        .book(&booking(&s1, "apt-9", "psn-2", "k1", q, false))
                        .await
                        .unwrap(),
                );
            }

            #[tokio::test]
            async fn cancelling_promotes_the_first_waitlisted_patient() {
                let store = super::$factory().await;
                let s = slot("slot-1", "dep-1", suite_date(), 1);
                store.put_slot(&s).await.unwrap();
                let a1 = booked(
                    store
                        .book(&booking(&s, "apt-1", "psn-1", "k1", no_quota(), false))
                        .await
                        .unwrap(),
                );
                store
                    .book(&booking(&s, "apt-2", "psn-2", "k2", no_quota(), true))
                    .await
                    .unwrap();
                store
                    .book(&booking(&s, "apt-3", "psn-3", "k3", no_quota(), true))
                    .await
                    .unwrap();
                match store
                    .cancel(&a1.id, &cancellation(CancelledBy::Patient))
                    .await
                    .unwrap()
                {
                    CancelDecision::Cancelled {
                        cancelled,
                        promoted,
                    } => {
                        assert_eq!(cancelled.status, AppointmentStatus::Cancelled);
                        assert_eq!(cancelled.cancellation.unwrap().by, CancelledBy::Patient);
                        let p = promoted.unwrap();
                        assert_eq!(p.id.as_str(), "apt-2");
                        assert_eq!(p.status, AppointmentStatus::Booked);
                        assert_eq!(p.queue_number, Some(2));
                        assert!(p.expected_at.is_some());
                    }
                    other => panic!("expected cancelled, got {other:?}"),
                }
                let view = store.slot(&s.id).await.unwrap().unwrap();
                assert_eq!((view.booked, view.waitlisted, view.issued), (1, 1, 2));
                // Cancelling a waitlisted patient promotes nobody.
                match store
                    .cancel(
                        &AppointmentId::parse("apt-3").unwrap(),
                        &cancellation(CancelledBy::Facility),
                    )
                    .await
                    .unwrap()
                {
                    CancelDecision::Cancelled { promoted, .. } => assert!(promoted.is_none()),
                    other => panic!("expected cancelled, got {other:?}"),
                }
                assert_eq!(store.slot(&s.id).await.unwrap().unwrap().waitlisted, 0);
                assert_eq!(
                    store
                        .cancel(&a1.id, &cancellation(CancelledBy::Patient))
                        .await
                        .unwrap(),
                    CancelDecision::WrongState {
                        status: AppointmentStatus::Cancelled
                    }
                );
                assert_eq!(
                    store
                        .cancel(
                            &AppointmentId::parse("apt-x").unwrap(),
                            &cancellation(CancelledBy::Patient)
                        )
                        .await
                        .unwrap(),
                    CancelDecision::NotFound
                );
            }

            #[tokio::test]
            async fn closed_and_unknown_slots_are_refused() {
                let store = super::$factory().await;
                let mut s = slot("slot-1", "dep-1", suite_date(), 2);
                s.status = SlotStatus::Closed;
                store.put_slot(&s).await.unwrap();
                assert_eq!(
                    store
                        .book(&booking(&s, "apt-1", "psn-1", "k1", no_quota(), true))
                        .await
                        .unwrap(),
                    BookingDecision::SlotClosed
                );
                let ghost = slot("slot-ghost", "dep-1", suite_date(), 2);
                assert_eq!(
                    store
                        .book(&booking(&ghost, "apt-2", "psn-1", "k2", no_quota(), true))
                        .await
                        .unwrap(),
                    BookingDecision::SlotNotFound
                );
            }

            #[tokio::test]
            async fn transitions_only_move_forward_and_compare_the_current_state() {
                let store = super::$factory().await;
                let s = slot("slot-1", "dep-1", suite_date(), 2);
                store.put_slot(&s).await.unwrap();
                let a = booked(
                    store
                        .book(&booking(&s, "apt-1", "psn-1", "k1", no_quota(), false))
                        .await
                        .unwrap(),
                );
                match store
                    .transition(
                        &a.id,
                        AppointmentStatus::Booked,
                        AppointmentStatus::Arrived,
                        suite_time(2),
                    )
                    .await
                    .unwrap()
                {
                    TransitionDecision::Moved { appointment } => {
                        assert_eq!(appointment.status, AppointmentStatus::Arrived);
                        assert_eq!(appointment.updated_at, suite_time(2));
                    }
                    other => panic!("expected moved, got {other:?}"),
                }
                assert_eq!(
                    store
                        .transition(
                            &a.id,
                            AppointmentStatus::Booked,
                            AppointmentStatus::Arrived,
                            suite_time(3)
                        )
                        .await
                        .unwrap(),
                    TransitionDecision::WrongState {
                        status: AppointmentStatus::Arrived
                    }
                );
                assert_eq!(
                    store
                        .transition(
                            &a.id,
                            AppointmentStatus::Arrived,
                            AppointmentStatus::Booked,
                            suite_time(3)
                        )
                        .await
                        .unwrap(),
                    TransitionDecision::WrongState {
                        status: AppointmentStatus::Arrived
                    }
                );
                assert!(matches!(
                    store
                        .transition(
                            &a.id,
                            AppointmentStatus::Arrived,
                            AppointmentStatus::Fulfilled,
                            suite_time(3)
                        )
                        .await
                        .unwrap(),
                    TransitionDecision::Moved { .. }
                ));
                assert_eq!(
                    store
                        .transition(
                            &AppointmentId::parse("apt-x").unwrap(),
                            AppointmentStatus::Booked,
                            AppointmentStatus::Arrived,
                            suite_time(3)
                        )
                        .await
                        .unwrap(),
                    TransitionDecision::NotFound
                );
                // Cancellation goes through cancel, which frees the place.
                let b = booked(
                    store
                        .book(&booking(&s, "apt-2", "psn-2", "k2", no_quota(), false))
                        .await
                        .unwrap(),
                );
                assert!(matches!(
                    store
                        .transition(
                            &b.id,
                            AppointmentStatus::Booked,
                            AppointmentStatus::Cancelled,
                            suite_time(3)
                        )
                        .await
                        .unwrap(),
                    TransitionDecision::WrongState { .. }
                ));
            }

            #[tokio::test]
            async fn booked_appointments_past_their_session_are_listed_for_no_shows() {
                let store = super::$factory().await;
                let s = slot("slot-1", "dep-1", suite_date(), 3);
                store.put_slot(&s).await.unwrap();
                let a = booked(
                    store
                        .book(&booking(&s, "apt-1", "psn-1", "k1", no_quota(), false))
                        .await
                        .unwrap(),
                );
                let b = booked(
                    store
                        .book(&booking(&s, "apt-2", "psn-2", "k2", no_quota(), false))
                        .await
                        .unwrap(),
                );
                store
                    .transition(
                        &b.id,
                        AppointmentStatus::Booked,
                        AppointmentStatus::CheckedIn,
                        suite_time(1),
                    )
                    .await
                    .unwrap();
                assert!(
                    store
                        .booked_ending_before(s.end, 10)
                        .await
                        .unwrap()
                        .is_empty()
                );
                let due = store
                    .booked_ending_before(
                        s.end + $crate::__private::chrono::Duration::seconds(1),
                        10,
                    )
                    .await
                    .unwrap();
                assert_eq!(
                    due.iter().map(|x| x.id.clone()).collect::<Vec<_>>(),
                    vec![a.id.clone()]
                );
                let mine = store.patient_appointments(&a.patient).await.unwrap();
                assert_eq!(mine, vec![a]);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_bookings_of_one_patient_respect_the_daily_quota() {
                let store = Arc::new(super::$factory().await);
                let mut slots = Vec::new();
                for i in 0..8 {
                    let s = slot(&format!("slot-{i}"), &format!("dep-{i}"), suite_date(), 5);
                    store.put_slot(&s).await.unwrap();
                    slots.push(s);
                }
                let mut quota = no_quota();
                quota.per_day = 2;
                let mut tasks = Vec::new();
                for (i, s) in slots.into_iter().enumerate() {
                    let store = Arc::clone(&store);
                    tasks.push($crate::__private::tokio::spawn(async move {
                        let req = booking(
                            &s,
                            &format!("apt-{i}"),
                            "psn-1",
                            &format!("k{i}"),
                            quota,
                            false,
                        );
                        store.book(&req).await.unwrap()
                    }));
                }
                let mut booked = 0;
                for t in tasks {
                    match t.await.unwrap() {
                        BookingDecision::Booked { .. } => booked += 1,
                        BookingDecision::QuotaExceeded {
                            kind: QuotaKind::Day,
                        } => {}
                        other => panic!("unexpected {other:?}"),
                    }
                }
                assert_eq!(booked, 2);
                let mine = store
                    .patient_appointments(
                        &$crate::__private::citycard_core::PersonId::parse("psn-1").unwrap(),
                    )
                    .await
                    .unwrap();
                assert_eq!(mine.len(), 2);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_bookings_never_overbook() {
                for (n, capacity) in [(20u32, 7u32), (5, 9)] {
                    let store = Arc::new(super::$factory().await);
                    let s = slot("slot-1", "dep-1", suite_date(), capacity);
                    store.put_slot(&s).await.unwrap();
                    let mut tasks = Vec::new();
                    for i in 0..n {
                        let store = Arc::clone(&store);
                        let s = s.clone();
                        tasks.push($crate::__private::tokio::spawn(async move {
                            let req = booking(
                                &s,
                                &format!("apt-{i}"),
                                &format!("psn-{i}"),
                                "k",
                                no_quota(),
                                false,
                            );
                            store.book(&req).await.unwrap()
                        }));
                    }
                    let mut queue_numbers = Vec::new();
                    let mut full = 0;
                    for t in tasks {
                        match t.await.unwrap() {
                            BookingDecision::Booked { appointment } => {
                                queue_numbers.push(appointment.queue_number.unwrap())
                            }
                            BookingDecision::Full => full += 1,
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                    queue_numbers.sort_unstable();
                    let expected: Vec<u32> = (1..=n.min(capacity)).collect();
                    assert_eq!(queue_numbers, expected);
                    assert_eq!(full, n - n.min(capacity));
                    assert_eq!(
                        store.slot(&s.id).await.unwrap().unwrap().booked,
                        n.min(capacity)
                    );
                    let _ = Principal::System;
                }
            }
        }
    };
}

/// A [`MedicalPayments`](citycard_healthcare::MedicalPayments) double that wraps another and
/// injects faults per operation (`"execute"`, `"balances"`): `Fail` and `Timeout` do nothing
/// and report an unknown outcome or a refusal; `UnknownOutcome` executes, then loses the answer.
pub struct FaultyMedicalPayments<P> {
    inner: P,
    faults: crate::Faults,
}

impl<P> FaultyMedicalPayments<P> {
    /// Wraps `inner` with a fault script.
    pub fn new(inner: P, faults: crate::Faults) -> Self {
        Self { inner, faults }
    }

    /// The wrapped port.
    pub fn inner(&self) -> &P {
        &self.inner
    }
}

#[async_trait::async_trait]
impl<P: citycard_healthcare::MedicalPayments> citycard_healthcare::MedicalPayments
    for FaultyMedicalPayments<P>
{
    async fn execute(
        &self,
        key: &IdempotencyKey,
        transfers: &[citycard_healthcare::MedicalTransfer],
    ) -> Result<citycard_healthcare::PaymentReceipt, citycard_healthcare::PaymentError> {
        use citycard_healthcare::PaymentError;
        match self.faults.check("execute") {
            crate::Fault::None => self.inner.execute(key, transfers).await,
            crate::Fault::Fail => Err(PaymentError::Refused("injected failure".into())),
            crate::Fault::Timeout => Err(PaymentError::Unknown("injected timeout".into())),
            crate::Fault::UnknownOutcome => {
                let _ = self.inner.execute(key, transfers).await;
                Err(PaymentError::Unknown("injected lost answer".into()))
            }
        }
    }

    async fn balances(
        &self,
        person: &PersonId,
    ) -> Result<citycard_healthcare::AccountBalances, citycard_healthcare::PaymentError> {
        match self.faults.check("balances") {
            crate::Fault::None => self.inner.balances(person).await,
            _ => Err(citycard_healthcare::PaymentError::Unknown(
                "injected fault".into(),
            )),
        }
    }
}

/// The conformance suite for
/// [`SocialInsuranceRecords`](citycard_healthcare::SocialInsuranceRecords).
#[macro_export]
macro_rules! social_insurance_records_conformance {
    ($factory:ident) => {
        #[allow(clippy::unwrap_used)]
        mod social_insurance_records_conformance {
            use $crate::__private::citycard_core::{CivilMonth, Money, PersonId};
            use $crate::__private::citycard_healthcare::{
                ContributionRecord, ContributionStatus, Employer, EmployerId, Insurance,
                PersonCategory, SocialInsuranceRecords,
            };

            fn m(y: i32, mo: u32) -> CivilMonth {
                CivilMonth::new(y, mo).unwrap()
            }

            fn rec(
                person: &str,
                employer: &str,
                month: CivilMonth,
                insurance: Insurance,
                fen: i64,
            ) -> ContributionRecord {
                ContributionRecord {
                    person: PersonId::parse(person).unwrap(),
                    employer: EmployerId::parse(employer).unwrap(),
                    month,
                    insurance,
                    base: Money::from_fen(fen * 10),
                    employer_amount: Money::from_fen(fen),
                    employee_amount: Money::from_fen(fen / 2),
                    paid: Money::from_fen(fen + fen / 2),
                    status: ContributionStatus::Paid,
                }
            }

            #[tokio::test]
            async fn employers_and_categories_round_trip() {
                let store = super::$factory().await;
                let e = Employer {
                    id: EmployerId::parse("emp-1").unwrap(),
                    name: "杭州示例科技有限公司".into(),
                    district: "西湖区".into(),
                };
                store.put_employer(&e).await.unwrap();
                assert_eq!(store.employer(&e.id).await.unwrap(), Some(e.clone()));
                let renamed = Employer {
                    name: "New name".into(),
                    ..e.clone()
                };
                store.put_employer(&renamed).await.unwrap();
                assert_eq!(store.employer(&e.id).await.unwrap(), Some(renamed));
                assert_eq!(
                    store
                        .employer(&EmployerId::parse("emp-x").unwrap())
                        .await
                        .unwrap(),
                    None
                );
                let p = PersonId::parse("psn-1").unwrap();
                assert_eq!(store.category(&p).await.unwrap(), None);
                store
                    .put_category(&p, PersonCategory::Employee)
                    .await
                    .unwrap();
                store
                    .put_category(&p, PersonCategory::FlexibleEmployment)
                    .await
                    .unwrap();
                assert_eq!(
                    store.category(&p).await.unwrap(),
                    Some(PersonCategory::FlexibleEmployment)
                );
            }

            #[tokio::test]
            async fn records_are_ordered_filtered_and_replaced_by_key() {
                let store = super::$factory().await;
                let p = PersonId::parse("psn-1").unwrap();
                store
                    .upsert(&[
                        rec("psn-1", "emp-b", m(2024, 2), Insurance::Medical, 300),
                        rec("psn-1", "emp-a", m(2024, 2), Insurance::Medical, 200),
                        rec("psn-1", "emp-a", m(2024, 2), Insurance::Pension, 100),
                        rec("psn-1", "emp-a", m(2023, 12), Insurance::Maternity, 50),
                        rec("psn-1", "emp-a", m(2024, 3), Insurance::Pension, 400),
                        rec("psn-2", "emp-a", m(2024, 2), Insurance::Pension, 999),
                    ])
                    .await
                    .unwrap();
                let all = store.contributions(&p, None, None).await.unwrap();
                let keys: Vec<(CivilMonth, Insurance, &str)> = all
                    .iter()
                    .map(|r| (r.month, r.insurance, r.employer.as_str()))
                    .collect();
                assert_eq!(
                    keys,
                    vec![
                        (m(2023, 12), Insurance::Maternity, "emp-a"),
                        (m(2024, 2), Insurance::Pension, "emp-a"),
                        (m(2024, 2), Insurance::Medical, "emp-a"),
                        (m(2024, 2), Insurance::Medical, "emp-b"),
                        (m(2024, 3), Insurance::Pension, "emp-a"),
                    ]
                );
                assert_eq!(
                    all[1],
                    rec("psn-1", "emp-a", m(2024, 2), Insurance::Pension, 100)
                );
                let window = store
                    .contributions(&p, Some(m(2024, 2)), Some(m(2024, 2)))
                    .await
                    .unwrap();
                assert_eq!(window.len(), 3);
                assert_eq!(
                    store
                        .contributions(&p, Some(m(2024, 3)), None)
                        .await
                        .unwrap()
                        .len(),
                    1
                );
                assert_eq!(
                    store
                        .contributions(&p, None, Some(m(2023, 12)))
                        .await
                        .unwrap()
                        .len(),
                    1
                );
                // Same key replaces: arrears paid later.
                let mut fixed = rec("psn-1", "emp-a", m(2024, 3), Insurance::Pension, 400);
                fixed.status = ContributionStatus::Arrears;
                fixed.paid = Money::ZERO;
                store.upsert(&[fixed.clone()]).await.unwrap();
                let after = store
                    .contributions(&p, Some(m(2024, 3)), None)
                    .await
                    .unwrap();
                assert_eq!(after, vec![fixed]);
                assert!(
                    store
                        .contributions(&PersonId::parse("psn-3").unwrap(), None, None)
                        .await
                        .unwrap()
                        .is_empty()
                );
            }
        }
    };
}

/// A settlement record for `person` on 2026-03-10: a resident's class A bill of `bill_fen`
/// at a community hospital, computed from `before` by the Hangzhou engine.
pub fn settlement_record(
    id: &str,
    key: &str,
    person: &str,
    before: citycard_healthcare::AnnualAccumulators,
    bill_fen: i64,
) -> citycard_healthcare::SettlementRecord {
    use citycard_healthcare::{
        AccountBalances, BillRequest, CashSource, CatalogueClass, ChargeItem, HospitalLevel,
        PersonType, SettlementEngine, SettlementInput, SettlementStatus, VisitType,
    };
    let date = NaiveDate::from_ymd_opt(2026, 3, 10).unwrap_or_default();
    let request = BillRequest {
        patient: PersonId::parse(person).unwrap_or_else(|_| unreachable!()),
        hospital: HospitalId::parse("hsp-1").unwrap_or_else(|_| unreachable!()),
        hospital_level: HospitalLevel::Community,
        visit_type: VisitType::Outpatient,
        items: vec![ChargeItem::new(
            "a",
            CatalogueClass::A,
            citycard_core::Money::from_fen(bill_fen),
            1,
        )],
        cash_source: CashSource::Counter,
    };
    let engine = SettlementEngine::hangzhou().unwrap_or_else(|_| unreachable!());
    let breakdown = engine
        .compute(&SettlementInput {
            person_type: PersonType::Resident,
            hospital_level: request.hospital_level,
            visit_type: request.visit_type,
            date,
            items: &request.items,
            accounts: AccountBalances::default(),
            accumulators: before,
        })
        .unwrap_or_else(|_| unreachable!());
    citycard_healthcare::SettlementRecord {
        id: citycard_healthcare::SettlementId::parse(id).unwrap_or_else(|_| unreachable!()),
        key: IdempotencyKey::parse(key).unwrap_or_else(|_| unreachable!()),
        request_fingerprint: citycard_core::Fingerprint::of_bytes(key.as_bytes()),
        transfers: citycard_healthcare::billing::settlement_transfers(
            &request.patient,
            &request.hospital,
            &breakdown,
            request.cash_source,
        ),
        request,
        person_type: PersonType::Resident,
        date,
        breakdown,
        accumulators_before: before,
        status: SettlementStatus::Pending,
        reversal_key: None,
        created_at: suite_time(0),
    }
}

/// The conformance suite for [`SettlementStore`](citycard_healthcare::SettlementStore).
#[macro_export]
macro_rules! settlement_store_conformance {
    ($factory:ident) => {
        #[allow(clippy::unwrap_used, clippy::panic)]
        mod settlement_store_conformance {
            use $crate::__private::citycard_core::{IdempotencyKey, Money, PersonId};
            use $crate::__private::citycard_healthcare::billing::BeginDecision;
            use $crate::__private::citycard_healthcare::{
                AnnualAccumulators, SettlementId, SettlementStatus, SettlementStore,
            };
            use $crate::healthcare::settlement_record;

            fn pid(s: &str) -> PersonId {
                PersonId::parse(s).unwrap()
            }

            fn key(s: &str) -> IdempotencyKey {
                IdempotencyKey::parse(s).unwrap()
            }

            #[tokio::test]
            async fn begin_applies_accumulators_and_replays_by_key() {
                let store = super::$factory().await;
                assert_eq!(
                    store.accumulators(&pid("psn-1"), 2026).await.unwrap(),
                    AnnualAccumulators::new(2026)
                );
                // 500 at a community hospital: 300 deductible, 140 fund.
                let r = settlement_record(
                    "stl-1",
                    "k-1",
                    "psn-1",
                    AnnualAccumulators::new(2026),
                    50_000,
                );
                assert_eq!(store.begin(&r).await.unwrap(), BeginDecision::Started);
                let acc = store.accumulators(&pid("psn-1"), 2026).await.unwrap();
                assert_eq!(
                    (acc.deductible_met, acc.fund_paid),
                    (Money::from_fen(30_000), Money::from_fen(14_000))
                );
                assert_eq!(
                    store.accumulators(&pid("psn-1"), 2025).await.unwrap(),
                    AnnualAccumulators::new(2025)
                );
                assert_eq!(
                    store.accumulators(&pid("psn-2"), 2026).await.unwrap(),
                    AnnualAccumulators::new(2026)
                );
                let stored = store.settlement(&r.id).await.unwrap().unwrap();
                assert_eq!(stored, r);
                let mut retry = r.clone();
                retry.id = SettlementId::parse("stl-other").unwrap();
                assert_eq!(
                    store.begin(&retry).await.unwrap(),
                    BeginDecision::Existing { record: r.clone() }
                );
                assert!(store.settlement(&retry.id).await.unwrap().is_none());
            }

            #[tokio::test]
            async fn a_stale_begin_changes_nothing() {
                let store = super::$factory().await;
                let first = settlement_record(
                    "stl-1",
                    "k-1",
                    "psn-1",
                    AnnualAccumulators::new(2026),
                    10_000,
                );
                store.begin(&first).await.unwrap();
                let stale = settlement_record(
                    "stl-2",
                    "k-2",
                    "psn-1",
                    AnnualAccumulators::new(2026),
                    10_000,
                );
                assert_eq!(
                    store.begin(&stale).await.unwrap(),
                    BeginDecision::Stale {
                        current: first.breakdown.accumulators_after
                    }
                );
                assert!(store.settlement(&stale.id).await.unwrap().is_none());
                let fresh = settlement_record(
                    "stl-2",
                    "k-2",
                    "psn-1",
                    first.breakdown.accumulators_after,
                    10_000,
                );
                assert_eq!(store.begin(&fresh).await.unwrap(), BeginDecision::Started);
                assert_eq!(
                    store
                        .accumulators(&pid("psn-1"), 2026)
                        .await
                        .unwrap()
                        .deductible_met,
                    Money::from_fen(20_000)
                );
            }

            #[tokio::test]
            async fn finishing_completes_or_fails_and_restores() {
                let store = super::$factory().await;
                let a = settlement_record(
                    "stl-1",
                    "k-1",
                    "psn-1",
                    AnnualAccumulators::new(2026),
                    40_000,
                );
                store.begin(&a).await.unwrap();
                let done = store.finish(&a.id, true).await.unwrap().unwrap();
                assert_eq!(done.status, SettlementStatus::Completed);
                // Finishing twice changes nothing.
                assert_eq!(
                    store.finish(&a.id, false).await.unwrap().unwrap().status,
                    SettlementStatus::Completed
                );
                let after_a = store.accumulators(&pid("psn-1"), 2026).await.unwrap();
                assert_eq!(after_a, a.breakdown.accumulators_after);
                let b = settlement_record("stl-2", "k-2", "psn-1", after_a, 40_000);
                store.begin(&b).await.unwrap();
                let failed = store.finish(&b.id, false).await.unwrap().unwrap();
                assert_eq!(failed.status, SettlementStatus::Failed);
                assert_eq!(
                    store.accumulators(&pid("psn-1"), 2026).await.unwrap(),
                    after_a
                );
                assert!(
                    store
                        .finish(&SettlementId::parse("stl-x").unwrap(), true)
                        .await
                        .unwrap()
                        .is_none()
                );
            }

            #[tokio::test]
            async fn reversal_marks_then_restores_exactly_once() {
                let store = super::$factory().await;
                let a = settlement_record(
                    "stl-1",
                    "k-1",
                    "psn-1",
                    AnnualAccumulators::new(2026),
                    40_000,
                );
                store.begin(&a).await.unwrap();
                // A pending settlement is not reversible.
                assert_eq!(
                    store
                        .begin_reversal(&a.id, &key("r-1"))
                        .await
                        .unwrap()
                        .unwrap()
                        .status,
                    SettlementStatus::Pending
                );
                store.finish(&a.id, true).await.unwrap();
                let rev = store
                    .begin_reversal(&a.id, &key("r-1"))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(rev.status, SettlementStatus::Reversing);
                assert_eq!(rev.reversal_key, Some(key("r-1")));
                // A second begin keeps the first key.
                assert_eq!(
                    store
                        .begin_reversal(&a.id, &key("r-2"))
                        .await
                        .unwrap()
                        .unwrap()
                        .reversal_key,
                    Some(key("r-1"))
                );
                let done = store.finish_reversal(&a.id).await.unwrap().unwrap();
                assert_eq!(done.status, SettlementStatus::Reversed);
                assert_eq!(
                    store.accumulators(&pid("psn-1"), 2026).await.unwrap(),
                    AnnualAccumulators::new(2026)
                );
                store.finish_reversal(&a.id).await.unwrap();
                assert_eq!(
                    store.accumulators(&pid("psn-1"), 2026).await.unwrap(),
                    AnnualAccumulators::new(2026)
                );
                assert_eq!(
                    store.settlement(&a.id).await.unwrap().unwrap().status,
                    SettlementStatus::Reversed
                );
                assert!(
                    store
                        .begin_reversal(&SettlementId::parse("stl-x").unwrap(), &key("r-1"))
                        .await
                        .unwrap()
                        .is_none()
                );
            }
        }
    };
}

/// A [`PatientDirectory`](citycard_healthcare::PatientDirectory) double that wraps another and
/// injects faults per operation (`"resolve"`, `"patient"`, `"delegate_allowed"`): every fault is reported
/// as an unavailable store.
pub struct FaultyPatientDirectory<D> {
    inner: D,
    faults: crate::Faults,
}

impl<D> FaultyPatientDirectory<D> {
    /// Wraps `inner` with a fault script.
    pub fn new(inner: D, faults: crate::Faults) -> Self {
        Self { inner, faults }
    }
}

#[async_trait::async_trait]
impl<D: citycard_healthcare::PatientDirectory> citycard_healthcare::PatientDirectory
    for FaultyPatientDirectory<D>
{
    async fn resolve(
        &self,
        identifier: &citycard_healthcare::appointments::PatientIdentifier,
    ) -> Result<Option<PersonId>, citycard_core::StoreError> {
        match self.faults.check("resolve") {
            crate::Fault::None => self.inner.resolve(identifier).await,
            _ => Err(citycard_core::StoreError::Unavailable(
                "injected fault".into(),
            )),
        }
    }

    async fn patient(
        &self,
        person: &PersonId,
    ) -> Result<Option<citycard_healthcare::PatientRecord>, citycard_core::StoreError> {
        match self.faults.check("patient") {
            crate::Fault::None => self.inner.patient(person).await,
            crate::Fault::UnknownOutcome => {
                let _ = self.inner.patient(person).await;
                Err(citycard_core::StoreError::Unavailable(
                    "injected lost answer".into(),
                ))
            }
            _ => Err(citycard_core::StoreError::Unavailable(
                "injected fault".into(),
            )),
        }
    }

    async fn delegate_allowed(
        &self,
        actor: &citycard_core::Principal,
        patient: &PersonId,
        scope: citycard_core::DelegationScope,
    ) -> Result<bool, citycard_core::StoreError> {
        match self.faults.check("delegate_allowed") {
            crate::Fault::None => self.inner.delegate_allowed(actor, patient, scope).await,
            _ => Err(citycard_core::StoreError::Unavailable(
                "injected fault".into(),
            )),
        }
    }
}
