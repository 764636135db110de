//! The conformance cases of the [`AppointmentStore`] port: reads, versions, and commits of
//! plans (all of a plan with its core records, or nothing of a stale one). The
//! [`appointment_store_conformance!`](crate::appointment_store_conformance) macro expands
//! them into tests for one backend; [`last_seats_race`] also runs on several handles of one
//! database.
#![allow(clippy::unwrap_used, clippy::panic)] // test cases: a failed step is a failed test

use std::sync::Arc;

use chrono::Duration;
use citycard_core::{
    AuditQuery, Fingerprint, IdempotencyKey, KeyOutcome, ManualClock, PersonId, Principal,
    SequentialIdGenerator, StoreError,
};
use citycard_healthcare::appointments::decide::{
    AppointmentPlan, BookingDecision, CancelDecision, PatientState, Precondition, SlotState,
    TransitionDecision, decide_booking, decide_cancel, decide_transition,
};
use citycard_healthcare::appointments::{BookingRequest, Cancellation, CancelledBy};
use citycard_healthcare::{
    Appointment, AppointmentService, AppointmentStatus, AppointmentStore, BookRequest,
    BookingPolicy, DepartmentId, HealthcareError, MemoryPatientDirectory, PatientRecord, SlotId,
    SlotStatus,
};

use super::{CoreView, booking, no_quota, slot, suite_date, suite_time};

async fn states<S: AppointmentStore>(
    store: &S,
    request: &BookingRequest,
) -> (Option<SlotState>, PatientState) {
    let patient = store
        .patient_state(&request.appointment.patient)
        .await
        .unwrap();
    let slot = store.slot_state(&request.appointment.slot).await.unwrap();
    (slot, patient)
}

/// Decides a booking on the store's current state.
pub async fn decide<S: AppointmentStore>(
    store: &S,
    request: &BookingRequest,
) -> (Appointment, AppointmentPlan) {
    let (slot, patient) = states(store, request).await;
    match decide_booking(request, slot.as_ref(), &patient) {
        BookingDecision::Book { appointment, plan } => (appointment, plan),
        other => panic!("expected a booking, got {other:?}"),
    }
}

/// Decides and commits a booking on the store's current state.
pub async fn book<S: AppointmentStore>(store: &S, request: &BookingRequest) -> Appointment {
    let (appointment, plan) = decide(store, request).await;
    store.commit(&plan).await.unwrap();
    appointment
}

fn cancellation(by: CancelledBy) -> Cancellation {
    Cancellation {
        by,
        reason: "test".into(),
        at: suite_time(1),
    }
}

fn is_conflict(result: Result<(), StoreError>) -> bool {
    matches!(result, Err(StoreError::Conflict(_)))
}

/// Slots are stored with zero counts, listed by department and date in start order.
pub async fn slots_are_stored_with_counts_and_listed_in_order<S: AppointmentStore>(
    store: S,
    _core: CoreView,
) {
    let late = {
        let mut s = slot("slot-b", "dep-1", suite_date(), 5);
        s.start += Duration::hours(5);
        s.end += Duration::hours(5);
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
    assert!(
        store
            .slot_state(&SlotId::parse("slot-x").unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

/// A plan writes its appointment, the slot's counts and its core records together, and
/// moves the slot's and the patient's versions.
pub async fn a_plan_commits_rows_and_core_records_together<S: AppointmentStore>(
    store: S,
    core: CoreView,
) {
    let s = slot("slot-1", "dep-1", suite_date(), 2);
    store.put_slot(&s).await.unwrap();
    let request = booking(&s, "apt-1", "psn-1", "k1", no_quota(), false);
    let (slot_before, patient_before) = states(&store, &request).await;
    assert_eq!(patient_before.version, 0);
    assert!(patient_before.appointments.is_empty());
    let (appointment, mut plan) = decide(&store, &request).await;
    let key = IdempotencyKey::parse("k1").unwrap();
    let fingerprint = Fingerprint::of_bytes(b"book");
    plan.core.outcomes.push(
        KeyOutcome::new(
            "appointment.book",
            key.clone(),
            fingerprint,
            &appointment.id,
            suite_time(0),
        )
        .unwrap(),
    );
    store.commit(&plan).await.unwrap();
    assert_eq!(
        store.appointment(&appointment.id).await.unwrap(),
        Some(appointment.clone())
    );
    assert_eq!(appointment.queue_number, Some(1));
    assert_eq!(
        store
            .appointment_by_key(&appointment.patient, &appointment.booking_key)
            .await
            .unwrap(),
        Some(appointment.clone())
    );
    let slot_after = store.slot_state(&s.id).await.unwrap().unwrap();
    assert_eq!(
        (
            slot_after.view.booked,
            slot_after.view.waitlisted,
            slot_after.view.issued
        ),
        (1, 0, 1)
    );
    assert_ne!(slot_after.version, slot_before.unwrap().version);
    let patient_after = store.patient_state(&appointment.patient).await.unwrap();
    assert_ne!(patient_after.version, patient_before.version);
    assert_eq!(patient_after.appointments, vec![appointment.clone()]);
    let audit = core
        .audit
        .query(&AuditQuery::subject(format!(
            "appointment:{}",
            appointment.id
        )))
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].record.action, "appointment.book");
    let outcome = core
        .idempotency
        .get("appointment.book", &key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.fingerprint, fingerprint);
    // A facility change of the slot moves its version and keeps its counts.
    let mut closed = s.clone();
    closed.status = SlotStatus::Closed;
    store.put_slot(&closed).await.unwrap();
    let after_close = store.slot_state(&s.id).await.unwrap().unwrap();
    assert_ne!(after_close.version, slot_after.version);
    assert_eq!(
        (after_close.view.booked, after_close.view.slot.status),
        (1, SlotStatus::Closed)
    );
}

/// A plan decided on a stale slot or patient is refused and writes nothing.
pub async fn a_stale_plan_is_refused_and_writes_nothing<S: AppointmentStore>(
    store: S,
    core: CoreView,
) {
    let s = slot("slot-1", "dep-1", suite_date(), 1);
    store.put_slot(&s).await.unwrap();
    // Two patients decide on the same state for the last place: one wins.
    let (first, first_plan) = decide(
        &store,
        &booking(&s, "apt-1", "psn-1", "k1", no_quota(), false),
    )
    .await;
    let (second, second_plan) = decide(
        &store,
        &booking(&s, "apt-2", "psn-2", "k2", no_quota(), false),
    )
    .await;
    store.commit(&first_plan).await.unwrap();
    let audit_before = core.audit.query(&AuditQuery::all()).await.unwrap().len();
    assert!(is_conflict(store.commit(&second_plan).await));
    assert_eq!(store.appointment(&second.id).await.unwrap(), None);
    let view = store.slot(&s.id).await.unwrap().unwrap();
    assert_eq!((view.booked, view.issued), (1, 1));
    assert_eq!(
        store.patient_state(&second.patient).await.unwrap().version,
        0
    );
    assert_eq!(
        core.audit.query(&AuditQuery::all()).await.unwrap().len(),
        audit_before
    );
    // Decided again, the loser is told the slot is full.
    let request = booking(&s, "apt-2", "psn-2", "k2", no_quota(), false);
    let (slot_now, patient_now) = states(&store, &request).await;
    assert_eq!(
        decide_booking(&request, slot_now.as_ref(), &patient_now),
        BookingDecision::Full
    );
    // A stale patient version alone refuses a plan too.
    let t = slot("slot-2", "dep-2", suite_date(), 5);
    store.put_slot(&t).await.unwrap();
    let (other, other_plan) = decide(
        &store,
        &booking(&t, "apt-3", "psn-1", "k3", no_quota(), false),
    )
    .await;
    let (_, moved) = match decide_transition(
        &first,
        store.patient_state(&first.patient).await.unwrap().version,
        AppointmentStatus::Booked,
        AppointmentStatus::Arrived,
        suite_time(1),
        &Principal::System,
        "appointment.advance",
    ) {
        TransitionDecision::Move { appointment, plan } => (appointment, plan),
        other => panic!("expected a move, got {other:?}"),
    };
    store.commit(&moved).await.unwrap();
    assert!(is_conflict(store.commit(&other_plan).await));
    assert_eq!(store.appointment(&other.id).await.unwrap(), None);
    assert_eq!(store.slot(&t.id).await.unwrap().unwrap().booked, 0);
}

/// A taken booking key or a refused idempotency outcome refuses the plan; nothing is written.
pub async fn a_taken_key_or_refused_outcome_writes_nothing<S: AppointmentStore>(
    store: S,
    core: CoreView,
) {
    let s = slot("slot-1", "dep-1", suite_date(), 5);
    store.put_slot(&s).await.unwrap();
    let first = book(
        &store,
        &booking(&s, "apt-1", "psn-1", "k1", no_quota(), false),
    )
    .await;
    // The same key for the same patient, with fresh versions: the key is still taken.
    let (slot_now, patient_now) = states(
        &store,
        &booking(&s, "apt-2", "psn-1", "k1", no_quota(), false),
    )
    .await;
    let slot_now = slot_now.unwrap();
    let mut dup = first.clone();
    dup.id = "apt-2".parse().unwrap();
    let plan = AppointmentPlan {
        preconditions: vec![
            Precondition::Slot {
                slot: s.id.clone(),
                version: slot_now.version,
            },
            Precondition::Patient {
                patient: first.patient.clone(),
                version: patient_now.version,
            },
        ],
        slots: Vec::new(),
        inserts: vec![dup.clone()],
        updates: Vec::new(),
        core: Default::default(),
    };
    assert!(is_conflict(store.commit(&plan).await));
    assert_eq!(store.appointment(&dup.id).await.unwrap(), None);
    // Another patient may use the same key string.
    book(
        &store,
        &booking(&s, "apt-3", "psn-2", "k1", no_quota(), false),
    )
    .await;
    // An outcome whose key is already completed refuses the whole plan.
    let key = IdempotencyKey::parse("k-used").unwrap();
    let outcome = KeyOutcome::new(
        "appointment.test",
        key.clone(),
        Fingerprint::of_bytes(b"x"),
        &1u8,
        suite_time(0),
    )
    .unwrap();
    let (_, mut once) = decide(
        &store,
        &booking(&s, "apt-4", "psn-3", "k4", no_quota(), false),
    )
    .await;
    once.core.outcomes.push(outcome.clone());
    store.commit(&once).await.unwrap();
    let audit_before = core.audit.query(&AuditQuery::all()).await.unwrap().len();
    let (fifth, mut twice) = decide(
        &store,
        &booking(&s, "apt-5", "psn-4", "k5", no_quota(), false),
    )
    .await;
    twice.core.outcomes.push(outcome);
    assert!(is_conflict(store.commit(&twice).await));
    assert_eq!(store.appointment(&fifth.id).await.unwrap(), None);
    assert_eq!(store.slot(&s.id).await.unwrap().unwrap().booked, 3);
    assert_eq!(
        core.audit.query(&AuditQuery::all()).await.unwrap().len(),
        audit_before
    );
}

/// The waitlist is read in booking order; a cancellation's plan replaces both appointments
/// and the counts in one commit.
pub async fn cancellations_replace_appointments_and_the_waitlist_moves_on<S: AppointmentStore>(
    store: S,
    core: CoreView,
) {
    let s = slot("slot-1", "dep-1", suite_date(), 1);
    store.put_slot(&s).await.unwrap();
    let a1 = book(
        &store,
        &booking(&s, "apt-1", "psn-1", "k1", no_quota(), false),
    )
    .await;
    let a2 = book(
        &store,
        &booking(&s, "apt-2", "psn-2", "k2", no_quota(), true),
    )
    .await;
    book(
        &store,
        &booking(&s, "apt-3", "psn-3", "k3", no_quota(), true),
    )
    .await;
    assert_eq!(a2.status, AppointmentStatus::Waitlist);
    let state = store.slot_state(&s.id).await.unwrap().unwrap();
    assert_eq!(
        state.first_waitlisted.as_ref().map(|a| a.id.as_str()),
        Some("apt-2")
    );
    assert_eq!((state.view.booked, state.view.waitlisted), (1, 2));
    let version = store.patient_state(&a1.patient).await.unwrap().version;
    let CancelDecision::Cancel { promoted, plan, .. } = decide_cancel(
        &a1,
        version,
        Some(&state),
        &cancellation(CancelledBy::Patient),
        &Principal::cardholder(a1.patient.clone()),
    ) else {
        panic!("expected a cancellation")
    };
    store.commit(&plan).await.unwrap();
    let promoted = promoted.unwrap();
    assert_eq!(
        store.appointment(&a2.id).await.unwrap(),
        Some(promoted.clone())
    );
    assert_eq!(promoted.queue_number, Some(2));
    let cancelled = store.appointment(&a1.id).await.unwrap().unwrap();
    assert_eq!(cancelled.status, AppointmentStatus::Cancelled);
    assert_eq!(cancelled.cancellation.unwrap().by, CancelledBy::Patient);
    let state = store.slot_state(&s.id).await.unwrap().unwrap();
    assert_eq!(
        (state.view.booked, state.view.waitlisted, state.view.issued),
        (1, 1, 2)
    );
    assert_eq!(
        state.first_waitlisted.as_ref().map(|a| a.id.as_str()),
        Some("apt-3")
    );
    let audit = core
        .audit
        .query(&AuditQuery::subject(format!("appointment:{}", a2.id)))
        .await
        .unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.record.action == "appointment.promote")
    );
    // The plan that was just committed is stale now.
    assert!(is_conflict(store.commit(&plan).await));
}

/// Booked appointments past their session are listed for the no-show sweep.
pub async fn booked_appointments_past_their_session_are_listed<S: AppointmentStore>(
    store: S,
    _core: CoreView,
) {
    let s = slot("slot-1", "dep-1", suite_date(), 3);
    store.put_slot(&s).await.unwrap();
    let a = book(
        &store,
        &booking(&s, "apt-1", "psn-1", "k1", no_quota(), false),
    )
    .await;
    let b = book(
        &store,
        &booking(&s, "apt-2", "psn-2", "k2", no_quota(), false),
    )
    .await;
    let version = store.patient_state(&b.patient).await.unwrap().version;
    let TransitionDecision::Move { plan, .. } = decide_transition(
        &b,
        version,
        AppointmentStatus::Booked,
        AppointmentStatus::CheckedIn,
        suite_time(1),
        &Principal::System,
        "appointment.advance",
    ) else {
        panic!("expected a move")
    };
    store.commit(&plan).await.unwrap();
    assert!(
        store
            .booked_ending_before(s.end, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let due = store
        .booked_ending_before(s.end + Duration::seconds(1), 10)
        .await
        .unwrap();
    assert_eq!(
        due.iter().map(|x| x.id.clone()).collect::<Vec<_>>(),
        vec![a.id.clone()]
    );
    assert_eq!(
        store.patient_appointments(&a.patient).await.unwrap(),
        vec![a]
    );
}

/// A store that yields to other tasks after every read, so that racing decisions interleave
/// between their prefetch and their commit even on a store whose calls never wait.
pub struct Interleaving(pub Arc<dyn AppointmentStore>);

#[async_trait::async_trait]
impl AppointmentStore for Interleaving {
    async fn put_slot(&self, slot: &citycard_healthcare::Slot) -> Result<(), StoreError> {
        self.0.put_slot(slot).await
    }
    async fn slot(&self, id: &SlotId) -> Result<Option<citycard_healthcare::SlotView>, StoreError> {
        self.0.slot(id).await
    }
    async fn slot_state(&self, id: &SlotId) -> Result<Option<SlotState>, StoreError> {
        let out = self.0.slot_state(id).await;
        tokio::task::yield_now().await;
        out
    }
    async fn patient_state(&self, patient: &PersonId) -> Result<PatientState, StoreError> {
        let out = self.0.patient_state(patient).await;
        tokio::task::yield_now().await;
        out
    }
    async fn department_slots(
        &self,
        department: &DepartmentId,
        date: chrono::NaiveDate,
    ) -> Result<Vec<citycard_healthcare::SlotView>, StoreError> {
        self.0.department_slots(department, date).await
    }
    async fn commit(&self, plan: &AppointmentPlan) -> Result<(), StoreError> {
        self.0.commit(plan).await
    }
    async fn appointment(
        &self,
        id: &citycard_healthcare::AppointmentId,
    ) -> Result<Option<Appointment>, StoreError> {
        self.0.appointment(id).await
    }
    async fn appointment_by_key(
        &self,
        patient: &PersonId,
        key: &IdempotencyKey,
    ) -> Result<Option<Appointment>, StoreError> {
        self.0.appointment_by_key(patient, key).await
    }
    async fn patient_appointments(
        &self,
        patient: &PersonId,
    ) -> Result<Vec<Appointment>, StoreError> {
        self.0.patient_appointments(patient).await
    }
    async fn booked_ending_before(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<Appointment>, StoreError> {
        self.0.booked_ending_before(before, limit).await
    }
}

fn race_service(
    store: Arc<dyn AppointmentStore>,
    ids: Arc<SequentialIdGenerator>,
    patients: usize,
    per_day: u32,
) -> AppointmentService {
    let directory = Arc::new(MemoryPatientDirectory::new());
    for i in 0..patients {
        directory.put(PatientRecord {
            person: PersonId::parse(&format!("psn-{i}")).unwrap(),
            real_name_verified: true,
            person_type: None,
        });
    }
    let mut policy = BookingPolicy::hangzhou().unwrap();
    policy.per_day = per_day;
    policy.per_department_session = 100;
    policy.per_week = 100;
    policy.per_month = 100;
    AppointmentService::new(
        Arc::new(Interleaving(store)),
        directory,
        Arc::new(citycard_core::MemoryAuditLog::new()),
        // The day before the suite date, 08:00 in Hangzhou: inside the booking window.
        Arc::new(ManualClock::new(suite_time(-24))),
        ids,
        policy,
    )
}

/// Many patients race through the [`AppointmentService`] for the last places of a slot, each
/// on one of `stores` (handles of one database, or one store): exactly the free places are
/// booked with distinct queue numbers, every other request is refused as full, and the slot
/// never holds more than its capacity.
pub async fn last_seats_race(stores: Vec<Arc<dyn AppointmentStore>>) {
    let capacity = 12u32;
    let taken = 9u32;
    let contenders = 40usize;
    let s = slot("slot-race", "dep-1", suite_date(), capacity);
    stores[0].put_slot(&s).await.unwrap();
    // One id generator for every handle, as one process would have.
    let ids = Arc::new(SequentialIdGenerator::new());
    let services: Vec<Arc<AppointmentService>> = stores
        .iter()
        .map(|store| {
            Arc::new(race_service(
                store.clone(),
                ids.clone(),
                contenders + taken as usize,
                100,
            ))
        })
        .collect();
    for i in 0..taken as usize {
        let p = PersonId::parse(&format!("psn-{}", contenders + i)).unwrap();
        services[0]
            .book(
                &Principal::cardholder(p.clone()),
                &BookRequest {
                    slot: s.id.clone(),
                    patient: p,
                    key: IdempotencyKey::parse(&format!("pre-{i}")).unwrap(),
                    allow_waitlist: false,
                },
            )
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..contenders {
        let service = services[i % services.len()].clone();
        let slot = s.id.clone();
        tasks.push(tokio::spawn(async move {
            let p = PersonId::parse(&format!("psn-{i}")).unwrap();
            service
                .book(
                    &Principal::cardholder(p.clone()),
                    &BookRequest {
                        slot,
                        patient: p,
                        key: IdempotencyKey::parse(&format!("race-{i}")).unwrap(),
                        allow_waitlist: false,
                    },
                )
                .await
        }));
    }
    let mut queue_numbers = Vec::new();
    let mut full = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(b) => queue_numbers.push(b.appointment.queue_number.unwrap()),
            Err(HealthcareError::SlotFull) => full += 1,
            Err(other) => panic!("a refusal other than full: {other:?}"),
        }
    }
    queue_numbers.sort_unstable();
    assert_eq!(queue_numbers, ((taken + 1)..=capacity).collect::<Vec<_>>());
    assert_eq!(full, contenders - (capacity - taken) as usize);
    let view = stores[0].slot(&s.id).await.unwrap().unwrap();
    assert_eq!((view.booked, view.issued), (capacity, capacity));
}

/// One patient books eight slots of one day at once under a daily quota of two: two win,
/// the others are refused by the quota, whatever the interleaving.
pub async fn concurrent_bookings_of_one_patient_respect_the_daily_quota(
    store: Arc<dyn AppointmentStore>,
) {
    let ids = Arc::new(SequentialIdGenerator::new());
    let service = Arc::new(race_service(store.clone(), ids, 1, 2));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = slot(&format!("slot-{i}"), &format!("dep-{i}"), suite_date(), 5);
        store.put_slot(&s).await.unwrap();
        let service = service.clone();
        tasks.push(tokio::spawn(async move {
            let p = PersonId::parse("psn-0").unwrap();
            service
                .book(
                    &Principal::cardholder(p.clone()),
                    &BookRequest {
                        slot: s.id.clone(),
                        patient: p,
                        key: IdempotencyKey::parse(&format!("k{i}")).unwrap(),
                        allow_waitlist: false,
                    },
                )
                .await
        }));
    }
    let mut booked = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => booked += 1,
            Err(HealthcareError::QuotaExceeded(kind)) => assert_eq!(kind, "day"),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(booked, 2);
    let mine = store
        .patient_appointments(&PersonId::parse("psn-0").unwrap())
        .await
        .unwrap();
    assert_eq!(mine.len(), 2);
}

/// The conformance suite for [`AppointmentStore`].
///
/// The factory must return a fresh, empty store that is `Send + Sync + 'static` and a
/// [`CoreView`] of where its commits write audit records and idempotency outcomes.
#[macro_export]
macro_rules! appointment_store_conformance {
    ($factory:ident) => {
        $crate::appointment_store_conformance!(@suite $factory, $crate::backend_available);
    };
    ($factory:ident, available = $available:ident) => {
        $crate::appointment_store_conformance!(@suite $factory, super::$available);
    };
    (@suite $factory:ident, $available:path) => {
        mod appointment_store_conformance {
            use std::sync::Arc;

            use $crate::healthcare::appointments as suite;

            #[tokio::test]
            async fn slots_are_stored_with_counts_and_listed_in_order() {
                if !$available() {
                    return;
                }
                let (store, core) = super::$factory().await;
                suite::slots_are_stored_with_counts_and_listed_in_order(store, core).await;
            }

            #[tokio::test]
            async fn a_plan_commits_rows_and_core_records_together() {
                if !$available() {
                    return;
                }
                let (store, core) = super::$factory().await;
                suite::a_plan_commits_rows_and_core_records_together(store, core).await;
            }

            #[tokio::test]
            async fn a_stale_plan_is_refused_and_writes_nothing() {
                if !$available() {
                    return;
                }
                let (store, core) = super::$factory().await;
                suite::a_stale_plan_is_refused_and_writes_nothing(store, core).await;
            }

            #[tokio::test]
            async fn a_taken_key_or_refused_outcome_writes_nothing() {
                if !$available() {
                    return;
                }
                let (store, core) = super::$factory().await;
                suite::a_taken_key_or_refused_outcome_writes_nothing(store, core).await;
            }

            #[tokio::test]
            async fn cancellations_replace_appointments_and_the_waitlist_moves_on() {
                if !$available() {
                    return;
                }
                let (store, core) = super::$factory().await;
                suite::cancellations_replace_appointments_and_the_waitlist_moves_on(store, core)
                    .await;
            }

            #[tokio::test]
            async fn booked_appointments_past_their_session_are_listed() {
                if !$available() {
                    return;
                }
                let (store, core) = super::$factory().await;
                suite::booked_appointments_past_their_session_are_listed(store, core).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_bookings_for_the_last_seats_never_overbook() {
                let (store, _) = super::$factory().await;
                suite::last_seats_race(vec![Arc::new(store)]).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_bookings_of_one_patient_respect_the_daily_quota() {
                let (store, _) = super::$factory().await;
                suite::concurrent_bookings_of_one_patient_respect_the_daily_quota(Arc::new(store))
                    .await;
            }
        }
    };
}
