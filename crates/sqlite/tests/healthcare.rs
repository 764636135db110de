//! The healthcare conformance suites run against the SQLite stores, plus what only a file
//! shows: several handles racing for the last places, write transactions per operation,
//! and state surviving a reopen.
#![cfg(feature = "healthcare")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use citycard_core::{
    AuditLog, ManualClock, MemoryAuditLog, PersonId, Principal, SequentialIdGenerator,
};
use citycard_healthcare::{
    AppointmentService, AppointmentStore, BillRequest, BillingService, BookRequest, BookingPolicy,
    CashSource, CatalogueClass, ChargeItem, HospitalLevel, MemoryMedicalPayments,
    MemoryPatientDirectory, PatientRecord, PaymentAccount, PersonType, SettlementEngine,
    SettlementStatus, SettlementStore, VisitType,
};
use citycard_sqlite::healthcare::{SqliteAppointmentStore, SqliteSettlementStore};
use citycard_sqlite::{Database, SqliteAuditLog, SqliteIdempotencyStore};
use citycard_testkit::appointment_store_conformance;
use citycard_testkit::healthcare::{CoreView, slot, suite_date, suite_time};

fn core_view(db: &Database) -> CoreView {
    CoreView {
        audit: Arc::new(SqliteAuditLog::new(db.clone())),
        idempotency: Arc::new(SqliteIdempotencyStore::new(db.clone())),
    }
}

async fn appointment_store() -> (SqliteAppointmentStore, CoreView) {
    let db = Database::open_in_memory().expect("in-memory database opens");
    (SqliteAppointmentStore::new(db.clone()), core_view(&db))
}

appointment_store_conformance!(appointment_store);

async fn social_records() -> citycard_sqlite::healthcare::SqliteSocialInsuranceRecords {
    citycard_sqlite::healthcare::SqliteSocialInsuranceRecords::new(
        Database::open_in_memory().expect("in-memory database opens"),
    )
}

citycard_testkit::social_insurance_records_conformance!(social_records);

async fn settlement_store() -> (SqliteSettlementStore, CoreView) {
    let db = Database::open_in_memory().expect("in-memory database opens");
    (SqliteSettlementStore::new(db.clone()), core_view(&db))
}

citycard_testkit::settlement_store_conformance!(settlement_store);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_handles_on_one_file_never_overbook_the_last_places() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("citycard.db");
    let stores: Vec<Arc<dyn AppointmentStore>> = (0..4)
        .map(|_| {
            Arc::new(SqliteAppointmentStore::new(
                Database::open(&path).expect("opens"),
            )) as Arc<dyn AppointmentStore>
        })
        .collect();
    citycard_testkit::healthcare::appointments::last_seats_race(stores).await;
}

fn patients() -> Arc<MemoryPatientDirectory> {
    let directory = Arc::new(MemoryPatientDirectory::new());
    for p in ["psn-1", "psn-2"] {
        directory.put(PatientRecord {
            person: p.parse().unwrap(),
            real_name_verified: true,
            person_type: Some(PersonType::Resident),
        });
    }
    directory
}

#[tokio::test]
async fn booking_and_cancelling_are_one_write_transaction_each() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Database::open(dir.path().join("citycard.db")).expect("opens");
    let audit = Arc::new(SqliteAuditLog::new(db.clone()));
    let service = AppointmentService::new(
        Arc::new(SqliteAppointmentStore::new(db.clone())),
        patients(),
        audit.clone(),
        // Wednesday before the suite's Monday: inside the window, before the cut-off.
        Arc::new(ManualClock::new(suite_time(-5 * 24))),
        Arc::new(SequentialIdGenerator::new()),
        BookingPolicy::hangzhou().unwrap(),
    );
    let operator = Principal::Operator {
        operator: "opr-1".parse().unwrap(),
    };
    service
        .put_slot(&operator, slot("slot-1", "dep-1", suite_date(), 1))
        .await
        .unwrap();
    let book = |p: &str, key: &str| {
        let patient: PersonId = p.parse().unwrap();
        (
            Principal::cardholder(patient.clone()),
            BookRequest {
                slot: "slot-1".parse().unwrap(),
                patient,
                key: key.parse().unwrap(),
                allow_waitlist: true,
            },
        )
    };
    let (me, request) = book("psn-1", "k-1");
    let before = db.commits();
    let first = service.book(&me, &request).await.unwrap();
    assert_eq!(
        db.commits() - before,
        1,
        "a booking is one write transaction"
    );
    let (other, waiting) = book("psn-2", "k-2");
    let before = db.commits();
    let second = service.book(&other, &waiting).await.unwrap();
    assert_eq!(
        db.commits() - before,
        1,
        "a waitlisting is one write transaction"
    );
    // A retry reads and writes nothing.
    let before = db.commits();
    assert!(service.book(&me, &request).await.unwrap().replayed);
    assert_eq!(db.commits(), before);
    // The cancellation and the waitlist promotion: one transaction.
    let before = db.commits();
    let (_, promoted) = service
        .cancel(&me, &first.appointment.id, "plans changed")
        .await
        .unwrap();
    assert_eq!(
        db.commits() - before,
        1,
        "a cancellation is one write transaction"
    );
    assert_eq!(promoted.unwrap().id, second.appointment.id);
    // Each operation's audit record committed with it.
    let actions: Vec<String> = audit
        .query(&citycard_core::AuditQuery::all())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.record.action)
        .collect();
    for action in [
        "appointment.book",
        "appointment.cancel",
        "appointment.promote",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
}

#[tokio::test]
async fn a_settlement_and_a_reversal_are_two_write_transactions_each() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Database::open(dir.path().join("citycard.db")).expect("opens");
    let payments = Arc::new(MemoryMedicalPayments::new());
    let patient: PersonId = "psn-1".parse().unwrap();
    payments.set_balance(
        PaymentAccount::EWallet(patient.clone()),
        "900.00".parse().unwrap(),
    );
    let store = Arc::new(SqliteSettlementStore::new(db.clone()));
    let billing = BillingService::new(
        Arc::new(SettlementEngine::hangzhou().unwrap()),
        store.clone(),
        payments,
        patients(),
        Arc::new(MemoryAuditLog::new()),
        Arc::new(ManualClock::at_ymd_hms(2026, 3, 10, 10, 0, 0)),
        Arc::new(SequentialIdGenerator::new()),
    );
    let request = BillRequest {
        patient: patient.clone(),
        hospital: "hsp-1".parse().unwrap(),
        hospital_level: HospitalLevel::Community,
        visit_type: VisitType::Outpatient,
        items: vec![ChargeItem::new(
            "consult",
            CatalogueClass::A,
            "500.00".parse().unwrap(),
            1,
        )],
        cash_source: CashSource::EWallet,
    };
    let operator = Principal::Operator {
        operator: "opr-1".parse().unwrap(),
    };
    let before = db.commits();
    let settled = billing
        .settle(&operator, &"bill-1".parse().unwrap(), &request)
        .await
        .unwrap();
    // Begin (pending record and accumulators), then complete (record and audit); the
    // payment is the payments port's own.
    assert_eq!(db.commits() - before, 2);
    assert_eq!(settled.status, SettlementStatus::Completed);
    let audit = SqliteAuditLog::new(db.clone());
    let subject = format!("settlement:{}", settled.id);
    let records = audit
        .query(&citycard_core::AuditQuery::subject(subject.clone()))
        .await
        .unwrap();
    assert_eq!(
        records.len(),
        1,
        "the completion's audit record is in the file"
    );
    let before = db.commits();
    let reversed = billing
        .reverse(&operator, &settled.id, &"rev-1".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(db.commits() - before, 2);
    assert_eq!(reversed.status, SettlementStatus::Reversed);
    assert_eq!(
        store.accumulators(&patient, 2026).await.unwrap(),
        citycard_healthcare::AnnualAccumulators::new(2026)
    );
}

#[tokio::test]
async fn bookings_and_accumulators_survive_reopening_the_file() {
    use citycard_healthcare::AnnualAccumulators;
    use citycard_testkit::healthcare::appointments::book;
    use citycard_testkit::healthcare::settlements::begin_plan;
    use citycard_testkit::healthcare::{booking, no_quota, settlement_record};

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("citycard.db");
    let s = slot("slot-1", "dep-1", suite_date(), 2);
    let version = {
        let db = Database::open(&path).expect("opens");
        let store = SqliteAppointmentStore::new(db.clone());
        store.put_slot(&s).await.expect("slot stored");
        book(
            &store,
            &booking(&s, "apt-1", "psn-1", "k1", no_quota(), false),
        )
        .await;
        let settlements = SqliteSettlementStore::new(db);
        let r = settlement_record(
            "stl-1",
            "k-1",
            "psn-1",
            AnnualAccumulators::new(2026),
            50_000,
        );
        settlements.commit(&begin_plan(r)).await.expect("begun");
        store.slot_state(&s.id).await.unwrap().unwrap().version
    };
    let db = Database::open(&path).expect("reopens");
    let store = SqliteAppointmentStore::new(db.clone());
    let state = store
        .slot_state(&s.id)
        .await
        .expect("read")
        .expect("slot kept");
    assert_eq!((state.view.booked, state.view.issued), (1, 1));
    assert_eq!(state.version, version);
    let mine = store
        .patient_state(&"psn-1".parse().unwrap())
        .await
        .unwrap();
    assert_eq!((mine.version, mine.appointments.len()), (1, 1));
    let settlements = SqliteSettlementStore::new(db);
    let acc = settlements
        .accumulators(&"psn-1".parse().expect("id"), 2026)
        .await
        .expect("read");
    assert_eq!(acc.deductible_met, citycard_core::Money::from_fen(30_000));
}
