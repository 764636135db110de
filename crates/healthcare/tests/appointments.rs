//! The appointment service: real-name, delegation, window, quotas, bans, cut-offs, audit.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use chrono::{Duration, NaiveDate};
use citycard_core::{
    AuditLog, AuditQuery, DelegationId, DelegationScope, ManualClock, MemoryAuditLog, PersonId,
    Principal, SequentialIdGenerator,
};
use citycard_healthcare::{
    AppointmentService, AppointmentStatus, BookRequest, BookingPolicy, CancelledBy,
    HealthcareError, MemoryAppointmentStore, MemoryPatientDirectory, PatientRecord, PersonType,
    SlotStatus,
};
use citycard_testkit::healthcare::slot;
use proptest::prelude::*;

struct World {
    service: AppointmentService,
    clock: Arc<ManualClock>,
    audit: Arc<MemoryAuditLog>,
    directory: Arc<MemoryPatientDirectory>,
}

fn pid(s: &str) -> PersonId {
    s.parse().unwrap()
}

fn operator() -> Principal {
    Principal::Operator {
        operator: "opr-1".parse().unwrap(),
    }
}

fn world() -> World {
    // 09:00 China time on Monday 2026-03-09.
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 3, 9, 1, 0, 0));
    // The store commits its audit records to the same log the service appends to.
    let core = citycard_core::MemoryCore::new();
    let audit = core.audit();
    let directory = Arc::new(MemoryPatientDirectory::new());
    for (p, verified) in [
        ("psn-1", true),
        ("psn-2", true),
        ("psn-3", true),
        ("psn-nrn", false),
    ] {
        directory.put(PatientRecord {
            person: pid(p),
            real_name_verified: verified,
            person_type: Some(PersonType::Resident),
        });
    }
    let service = AppointmentService::new(
        Arc::new(MemoryAppointmentStore::with_core(core)),
        directory.clone(),
        audit.clone(),
        clock.clone(),
        Arc::new(SequentialIdGenerator::new()),
        BookingPolicy::hangzhou().unwrap(),
    );
    World {
        service,
        clock,
        audit,
        directory,
    }
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
}

fn req(slot: &str, patient: &str, key: &str, waitlist: bool) -> BookRequest {
    BookRequest {
        slot: slot.parse().unwrap(),
        patient: pid(patient),
        key: key.parse().unwrap(),
        allow_waitlist: waitlist,
    }
}

fn me(p: &str) -> Principal {
    Principal::cardholder(pid(p))
}

#[tokio::test]
async fn real_name_patients_book_and_retries_replay() {
    let w = world();
    w.service
        .put_slot(&operator(), slot("slot-1", "dep-1", day(10), 2))
        .await
        .unwrap();
    let b = w
        .service
        .book(&me("psn-1"), &req("slot-1", "psn-1", "k1", false))
        .await
        .unwrap();
    assert_eq!(b.appointment.status, AppointmentStatus::Booked);
    assert_eq!(b.appointment.queue_number, Some(1));
    assert!(!b.replayed);
    let again = w
        .service
        .book(&me("psn-1"), &req("slot-1", "psn-1", "k1", false))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.appointment, b.appointment);
    let views = w
        .service
        .slots(&operator(), &"dep-1".parse().unwrap(), day(10))
        .await
        .unwrap();
    assert_eq!(views[0].remaining(), 1);
    assert!(matches!(
        w.service
            .book(&me("psn-nrn"), &req("slot-1", "psn-nrn", "k1", false))
            .await,
        Err(HealthcareError::NotRealName)
    ));
    // A second booking the same day carries a warning count.
    w.service
        .put_slot(&operator(), slot("slot-2", "dep-2", day(10), 2))
        .await
        .unwrap();
    let second = w
        .service
        .book(&me("psn-1"), &req("slot-2", "psn-1", "k3", false))
        .await
        .unwrap();
    assert_eq!(second.same_day_others, 1);
    assert_eq!(b.same_day_others, 0);
    // After the session, a retry still gets the first answer; a new key does not.
    w.clock
        .set(citycard_core::start_of_civil_day(day(10)) + Duration::hours(13));
    let late = w
        .service
        .book(&me("psn-1"), &req("slot-1", "psn-1", "k1", false))
        .await
        .unwrap();
    assert!(late.replayed);
    assert!(matches!(
        w.service
            .book(&me("psn-1"), &req("slot-1", "psn-1", "k2", false))
            .await,
        Err(HealthcareError::NotBookable(_))
    ));
    let booked = w.audit.query(&AuditQuery::all()).await.unwrap();
    assert_eq!(
        booked
            .iter()
            .filter(|e| e.record.action == "appointment.book")
            .count(),
        2
    );
}

#[tokio::test]
async fn delegates_book_only_with_the_scope_and_a_live_grant() {
    let w = world();
    w.service
        .put_slot(&operator(), slot("slot-1", "dep-1", day(10), 5))
        .await
        .unwrap();
    let delegation: DelegationId = "dlg-1".parse().unwrap();
    let son = |scopes: &[DelegationScope]| Principal::Delegate {
        delegate: pid("psn-2"),
        on_behalf_of: pid("psn-1"),
        delegation: delegation.clone(),
        scopes: scopes.iter().copied().collect(),
    };
    // Not granted in the directory yet.
    assert!(matches!(
        w.service
            .book(
                &son(&[DelegationScope::BookAppointments]),
                &req("slot-1", "psn-1", "k1", false)
            )
            .await,
        Err(HealthcareError::Denied(_))
    ));
    w.directory.grant(
        delegation.clone(),
        pid("psn-2"),
        pid("psn-1"),
        [DelegationScope::BookAppointments].into_iter().collect(),
    );
    // Someone else quoting the son's grant, even claiming the scope, books nothing.
    let quoting = Principal::Delegate {
        delegate: pid("psn-3"),
        on_behalf_of: pid("psn-1"),
        delegation: delegation.clone(),
        scopes: [DelegationScope::BookAppointments].into_iter().collect(),
    };
    assert!(matches!(
        w.service
            .book(&quoting, &req("slot-1", "psn-1", "k1", false))
            .await,
        Err(HealthcareError::Denied(_))
    ));
    assert!(matches!(
        w.service
            .book(
                &son(&[DelegationScope::TopUp]),
                &req("slot-1", "psn-1", "k1", false)
            )
            .await,
        Err(HealthcareError::Denied(_))
    ));
    let b = w
        .service
        .book(
            &son(&[DelegationScope::BookAppointments]),
            &req("slot-1", "psn-1", "k1", false),
        )
        .await
        .unwrap();
    assert_eq!(b.appointment.patient, pid("psn-1"));
    // A stranger cannot book for someone else.
    assert!(matches!(
        w.service
            .book(&me("psn-3"), &req("slot-1", "psn-1", "k9", false))
            .await,
        Err(HealthcareError::Denied(_))
    ));
    let denied = w.audit.query(&AuditQuery::all()).await.unwrap();
    assert!(
        denied
            .iter()
            .any(|e| e.record.outcome == citycard_core::AuditOutcome::Denied)
    );
}

#[tokio::test]
async fn the_booking_window_opens_at_the_release_hour() {
    let w = world();
    // Today is the 9th; 7 days ahead is the 16th, released at 08:00; the 17th is too far.
    for (id, d) in [("slot-16", 16), ("slot-17", 17), ("slot-08", 9)] {
        w.service
            .put_slot(&operator(), slot(id, "dep-1", day(d), 5))
            .await
            .unwrap();
    }
    w.clock
        .set(citycard_core::start_of_civil_day(day(9)) + Duration::hours(7));
    assert!(matches!(
        w.service
            .book(&me("psn-1"), &req("slot-16", "psn-1", "k1", false))
            .await,
        Err(HealthcareError::NotBookable(_))
    ));
    w.clock
        .set(citycard_core::start_of_civil_day(day(9)) + Duration::hours(8));
    w.service
        .book(&me("psn-1"), &req("slot-16", "psn-1", "k1", false))
        .await
        .unwrap();
    assert!(matches!(
        w.service
            .book(&me("psn-1"), &req("slot-17", "psn-1", "k2", false))
            .await,
        Err(HealthcareError::NotBookable(_))
    ));
    // Today's morning session is bookable until it ends at 12:00.
    w.service
        .book(&me("psn-2"), &req("slot-08", "psn-2", "k1", false))
        .await
        .unwrap();
    w.clock
        .set(citycard_core::start_of_civil_day(day(9)) + Duration::hours(12));
    assert!(matches!(
        w.service
            .book(&me("psn-3"), &req("slot-08", "psn-3", "k1", false))
            .await,
        Err(HealthcareError::NotBookable(_))
    ));
}

#[tokio::test]
async fn patients_cancel_before_the_cut_off_and_the_waitlist_moves_up() {
    let w = world();
    w.service
        .put_slot(&operator(), slot("slot-1", "dep-1", day(11), 1))
        .await
        .unwrap();
    let a = w
        .service
        .book(&me("psn-1"), &req("slot-1", "psn-1", "k1", false))
        .await
        .unwrap();
    assert!(matches!(
        w.service
            .book(&me("psn-2"), &req("slot-1", "psn-2", "k1", false))
            .await,
        Err(HealthcareError::SlotFull)
    ));
    let wl = w
        .service
        .book(&me("psn-2"), &req("slot-1", "psn-2", "k2", true))
        .await
        .unwrap();
    assert_eq!(wl.appointment.status, AppointmentStatus::Waitlist);
    // The cut-off is 15:00 on the 10th.
    w.clock
        .set(citycard_core::start_of_civil_day(day(10)) + Duration::hours(15));
    assert!(matches!(
        w.service
            .cancel(&me("psn-1"), &a.appointment.id, "changed plans")
            .await,
        Err(HealthcareError::Conflict(_))
    ));
    w.clock
        .set(citycard_core::start_of_civil_day(day(10)) + Duration::hours(14));
    let (cancelled, promoted) = w
        .service
        .cancel(&me("psn-1"), &a.appointment.id, "changed plans")
        .await
        .unwrap();
    assert_eq!(cancelled.cancellation.unwrap().by, CancelledBy::Patient);
    let promoted = promoted.unwrap();
    assert_eq!(promoted.patient, pid("psn-2"));
    assert_eq!(promoted.queue_number, Some(2));
    // The facility may cancel after the cut-off.
    w.clock
        .set(citycard_core::start_of_civil_day(day(11)) + Duration::hours(7));
    let (c, _) = w
        .service
        .cancel(&operator(), &promoted.id, "doctor on leave")
        .await
        .unwrap();
    assert_eq!(c.cancellation.unwrap().by, CancelledBy::Facility);
}

#[tokio::test]
async fn the_cancellation_cut_off_is_15_00_on_the_working_day_before() {
    // Rule (healthcare.md): cancellation until 15:00 the working day before. A
    // Monday slot's cut-off is the Friday before, not Sunday.
    let w = world();
    w.clock
        .set(citycard_core::start_of_civil_day(day(11)) + Duration::hours(9));
    w.service
        .put_slot(&operator(), slot("slot-1", "dep-1", day(16), 1))
        .await
        .unwrap();
    let a = w
        .service
        .book(&me("psn-1"), &req("slot-1", "psn-1", "k1", false))
        .await
        .unwrap();
    assert_eq!(
        w.service.cancel_cutoff(day(16)),
        citycard_core::start_of_civil_day(day(13)) + Duration::hours(15)
    );
    // Saturday the 14th, 10:00: past Friday's cut-off.
    w.clock
        .set(citycard_core::start_of_civil_day(day(14)) + Duration::hours(10));
    let refused = w
        .service
        .cancel(&me("psn-1"), &a.appointment.id, "changed plans")
        .await;
    match refused {
        Err(HealthcareError::Conflict(m)) => assert!(m.contains("2026-03-13 15:00"), "{m}"),
        other => panic!("expected the cut-off to refuse: {other:?}"),
    }
    // Around National Day 2026 (10-01..07 off): a slot on Thursday 10-08 closes
    // for cancellation at 15:00 on Wednesday 09-30.
    let oct8 = NaiveDate::from_ymd_opt(2026, 10, 8).unwrap();
    assert_eq!(
        w.service.cancel_cutoff(oct8),
        citycard_core::start_of_civil_day(NaiveDate::from_ymd_opt(2026, 9, 30).unwrap())
            + Duration::hours(15)
    );
}

#[tokio::test]
async fn states_only_move_forward_and_only_the_facility_moves_them() {
    let w = world();
    w.service
        .put_slot(&operator(), slot("slot-1", "dep-1", day(10), 3))
        .await
        .unwrap();
    let a = w
        .service
        .book(&me("psn-1"), &req("slot-1", "psn-1", "k1", false))
        .await
        .unwrap()
        .appointment;
    assert!(matches!(
        w.service
            .advance(&me("psn-1"), &a.id, AppointmentStatus::CheckedIn)
            .await,
        Err(HealthcareError::Denied(_))
    ));
    w.service
        .advance(&operator(), &a.id, AppointmentStatus::CheckedIn)
        .await
        .unwrap();
    assert!(matches!(
        w.service
            .advance(&operator(), &a.id, AppointmentStatus::Arrived)
            .await,
        Err(HealthcareError::Conflict(_))
    ));
    let done = w
        .service
        .advance(&operator(), &a.id, AppointmentStatus::Fulfilled)
        .await
        .unwrap();
    assert_eq!(done.status, AppointmentStatus::Fulfilled);
    assert!(matches!(
        w.service.cancel(&operator(), &a.id, "late").await,
        Err(HealthcareError::Conflict(_))
    ));
}

#[tokio::test]
async fn three_no_shows_in_a_year_ban_booking_for_ninety_days() {
    let w = world();
    // Three sessions on the 9th, 10th and 11th; the patient never comes.
    for d in [9u32, 10, 11] {
        let mut s = slot(&format!("slot-{d}"), &format!("dep-{d}"), day(d), 5);
        s.start += Duration::hours(6); // afternoon, so today's session is still bookable
        s.end += Duration::hours(6);
        w.service.put_slot(&operator(), s).await.unwrap();
        w.service
            .book(
                &me("psn-1"),
                &req(&format!("slot-{d}"), "psn-1", &format!("k{d}"), false),
            )
            .await
            .unwrap();
    }
    w.service
        .put_slot(&operator(), slot("slot-20", "dep-1", day(15), 5))
        .await
        .unwrap();
    // The session on the 9th ends at 18:00; with 30 minutes' grace nothing is due at 18:29.
    w.clock
        .set(citycard_core::start_of_civil_day(day(9)) + Duration::minutes(18 * 60 + 29));
    assert!(
        w.service
            .mark_no_shows(100)
            .await
            .unwrap()
            .marked
            .is_empty()
    );
    w.clock
        .set(citycard_core::start_of_civil_day(day(12)) + Duration::hours(9));
    let sweep = w.service.mark_no_shows(100).await.unwrap();
    assert_eq!(sweep.marked.len(), 3);
    assert_eq!(
        w.service
            .banned_until(&me("psn-1"), &pid("psn-1"))
            .await
            .unwrap(),
        Some(day(11) + Duration::days(90))
    );
    // Someone else learns nothing of the ban, and the attempt is audited.
    assert!(matches!(
        w.service.banned_until(&me("psn-2"), &pid("psn-1")).await,
        Err(HealthcareError::Denied(_))
    ));
    assert!(
        w.audit
            .query(&AuditQuery::all())
            .await
            .unwrap()
            .iter()
            .any(|e| e.record.action == "appointment.banned_until"
                && e.record.outcome == citycard_core::AuditOutcome::Denied)
    );
    assert!(matches!(
        w.service
            .book(&me("psn-1"), &req("slot-20", "psn-1", "k20", false))
            .await,
        Err(HealthcareError::Banned { .. })
    ));
    // Others are not banned; the ban ends after 90 days.
    w.service
        .book(&me("psn-2"), &req("slot-20", "psn-2", "k20", false))
        .await
        .unwrap();
    w.clock.set(citycard_core::start_of_civil_day(
        day(11) + Duration::days(90),
    ));
    assert_eq!(
        w.service
            .banned_until(&me("psn-1"), &pid("psn-1"))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn facility_slot_rules_are_checked() {
    let w = world();
    assert!(matches!(
        w.service
            .put_slot(&me("psn-1"), slot("slot-1", "dep-1", day(10), 3))
            .await,
        Err(HealthcareError::Denied(_))
    ));
    assert!(matches!(
        w.service
            .put_slot(&operator(), slot("slot-1", "dep-1", day(10), 0))
            .await,
        Err(HealthcareError::InvalidInput(_))
    ));
    let mut closed = slot("slot-2", "dep-1", day(10), 3);
    closed.status = SlotStatus::Closed;
    w.service.put_slot(&operator(), closed).await.unwrap();
    assert!(matches!(
        w.service
            .book(&me("psn-1"), &req("slot-2", "psn-1", "k1", true))
            .await,
        Err(HealthcareError::NotBookable(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// Whatever a patient tries, the per-department-session, day, week and month quotas hold.
    #[test]
    fn quotas_hold_for_any_sequence_of_attempts(attempts in proptest::collection::vec((0u32..8, 0u32..3), 1..30)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let w = world();
            let policy = w.service.policy().clone();
            for d in 9..=16u32 {
                for dep in 0..3u32 {
                    w.service.put_slot(&operator(), {
                        let mut s = slot(&format!("slot-{d}-{dep}"), &format!("dep-{dep}"), day(d), 50);
                        s.start += Duration::hours(4);
                        s.end += Duration::hours(4);
                        s
                    }).await.unwrap();
                }
            }
            w.clock.set(citycard_core::start_of_civil_day(day(9)) + Duration::hours(9));
            let mut booked: Vec<(u32, u32)> = Vec::new();
            for (i, (offset, dep)) in attempts.iter().enumerate() {
                let d = 9 + offset;
                let r = w.service.book(&me("psn-1"), &req(&format!("slot-{d}-{dep}"), "psn-1", &format!("k{i}"), false)).await;
                if r.is_ok() { booked.push((d, *dep)); }
            }
            for d in 9..=16u32 {
                let same_day = booked.iter().filter(|(x, _)| *x == d).count() as u32;
                assert!(same_day <= policy.per_day);
                for dep in 0..3u32 {
                    assert!(booked.iter().filter(|b| **b == (d, dep)).count() as u32 <= policy.per_department_session);
                }
            }
            // 9-15 March is one ISO week (Mon-Sun); the 16th starts the next.
            assert!(booked.iter().filter(|(x, _)| *x <= 15).count() as u32 <= policy.per_week);
            assert!(booked.len() as u32 <= policy.per_month);
            assert!(!booked.is_empty());
        });
    }
}

#[tokio::test]
async fn a_weekly_schedule_publishes_dated_slots_at_policy_times() {
    use citycard_healthcare::{ScheduleTemplate, Session, WeeklySession};
    let w = world();
    let template = ScheduleTemplate {
        hospital: "hsp-1".parse().unwrap(),
        department: "dep-1".parse().unwrap(),
        doctor: Some("doc-7".parse().unwrap()),
        sessions: vec![
            WeeklySession {
                weekday: chrono::Weekday::Mon,
                session: Session::Morning,
                capacity: 30,
            },
            WeeklySession {
                weekday: chrono::Weekday::Wed,
                session: Session::Afternoon,
                capacity: 20,
            },
        ],
    };
    // 9 March 2026 is a Monday: two weeks hold four sittings.
    let slots = w
        .service
        .publish_schedule(&operator(), &template, day(9), day(22))
        .await
        .unwrap();
    let got: Vec<(String, NaiveDate)> = slots.iter().map(|s| (s.id.to_string(), s.date)).collect();
    assert_eq!(
        got,
        vec![
            ("slot:doc-7:20260309:morning".to_string(), day(9)),
            ("slot:doc-7:20260311:afternoon".to_string(), day(11)),
            ("slot:doc-7:20260316:morning".to_string(), day(16)),
            ("slot:doc-7:20260318:afternoon".to_string(), day(18)),
        ]
    );
    // 13:30-17:00 China time is 05:30-09:00 UTC.
    assert_eq!(slots[1].start.to_rfc3339(), "2026-03-11T05:30:00+00:00");
    assert_eq!(slots[1].end.to_rfc3339(), "2026-03-11T09:00:00+00:00");
    let listed = w
        .service
        .slots(&operator(), &"dep-1".parse().unwrap(), day(11))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].remaining(), 20);
    assert!(matches!(
        w.service
            .publish_schedule(&me("psn-1"), &template, day(9), day(22))
            .await,
        Err(HealthcareError::Denied(_))
    ));
}

#[tokio::test]
async fn an_unavailable_directory_fails_the_booking_without_booking() {
    use citycard_testkit::healthcare::FaultyPatientDirectory;
    use citycard_testkit::{Fault, Faults};
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 3, 9, 1, 0, 0));
    let inner = MemoryPatientDirectory::new();
    inner.put(PatientRecord {
        person: pid("psn-1"),
        real_name_verified: true,
        person_type: None,
    });
    let faults = Faults::new();
    let store = Arc::new(MemoryAppointmentStore::new());
    let service = AppointmentService::new(
        store.clone(),
        Arc::new(FaultyPatientDirectory::new(inner, faults.clone())),
        Arc::new(MemoryAuditLog::new()),
        clock,
        Arc::new(SequentialIdGenerator::new()),
        BookingPolicy::hangzhou().unwrap(),
    );
    service
        .put_slot(&operator(), slot("slot-1", "dep-1", day(10), 2))
        .await
        .unwrap();
    faults.next("patient", Fault::Timeout);
    let err = service
        .book(&me("psn-1"), &req("slot-1", "psn-1", "k1", false))
        .await
        .unwrap_err();
    assert_eq!(
        citycard_core::ClassifiedError::class(&err),
        citycard_core::ErrorClass::Unavailable
    );
    use citycard_healthcare::AppointmentStore as _;
    assert_eq!(
        store
            .slot(&"slot-1".parse().unwrap())
            .await
            .unwrap()
            .unwrap()
            .booked,
        0
    );
    // The retry with the same key books once.
    let b = service
        .book(&me("psn-1"), &req("slot-1", "psn-1", "k1", false))
        .await
        .unwrap();
    assert!(!b.replayed);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    /// Fewer no-shows than the threshold never ban; a ban ends `ban_days` after the latest
    /// recent no-show; one more no-show never shortens a ban.
    #[test]
    fn no_show_bans_hold(days in proptest::collection::vec(0i64..500, 0..8), extra in 0i64..500, today_offset in 0i64..500) {
        use citycard_healthcare::appointments::no_show_ban;
        let policy = BookingPolicy::hangzhou().unwrap();
        let base = day(1) - Duration::days(500);
        let today = base + Duration::days(today_offset);
        let dates: Vec<NaiveDate> = days.iter().map(|d| base + Duration::days(*d)).collect();
        let ban = no_show_ban(&dates, today, &policy);
        let recent: Vec<&NaiveDate> = dates.iter()
            .filter(|d| **d <= today && (today - **d).num_days() < i64::from(policy.no_show_window_days))
            .collect();
        if (recent.len() as u32) < policy.no_show_threshold {
            prop_assert_eq!(ban, None);
        }
        if let Some(until) = ban {
            prop_assert!(until > today);
            let latest = **recent.iter().max().unwrap();
            prop_assert_eq!(until, latest + Duration::days(i64::from(policy.ban_days)));
        }
        let mut more = dates.clone();
        more.push(base + Duration::days(extra));
        if let Some(until) = ban {
            prop_assert!(no_show_ban(&more, today, &policy).is_some_and(|u| u >= until));
        }
    }
}
