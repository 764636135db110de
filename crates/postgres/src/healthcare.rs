//! The healthcare stores on PostgreSQL: slots and appointments, settlement
//! records and accumulators, social insurance records (the SQLite store's
//! schema v3 in one step).
//!
//! The stores decide nothing: a plan decided by `citycard-healthcare` is
//! committed in one transaction with its core records after its
//! preconditions are checked on locked rows. A slot's version is read
//! `FOR UPDATE`; a patient's version row and a person's accumulators row are
//! created if missing and then locked, so two instances booking the last
//! place of a slot, or settling for one patient, take turns and the second
//! finds its plan stale ([`StoreError::Conflict`], nothing written).
//! `CHECK (booked >= 0)` and the capacity stay in the schema as a last guard.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use citycard_core::{CivilMonth, IdempotencyKey, Money, PersonId, StoreError};
use citycard_healthcare::appointments::decide::{
    AppointmentPlan, PatientState, Precondition, SlotState,
};
use citycard_healthcare::billing::decide::SettlementPlan;
use citycard_healthcare::{
    AnnualAccumulators, Appointment, AppointmentId, AppointmentStatus, AppointmentStore,
    ContributionRecord, ContributionStatus, DepartmentId, Employer, EmployerId, Insurance,
    PersonCategory, Session, SettlementId, SettlementRecord, SettlementStatus, SettlementStore,
    Slot, SlotId, SlotStatus, SlotView, SocialInsuranceRecords,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::db::{
    Database, Isolation, Migration, SqlResult, corrupt, decode_instant, encode_instant,
};
use crate::transaction;

/// The schema of the healthcare component.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    component: "healthcare",
    version: 1,
    sql: "
        CREATE TABLE hc_slots (
            id          TEXT PRIMARY KEY,
            hospital    TEXT NOT NULL,
            department  TEXT NOT NULL,
            doctor      TEXT,
            date        TEXT NOT NULL,
            session     TEXT NOT NULL,
            start_at    BIGINT NOT NULL,
            end_at      BIGINT NOT NULL,
            capacity    BIGINT NOT NULL CHECK (capacity > 0),
            status      TEXT NOT NULL,
            booked      BIGINT NOT NULL DEFAULT 0 CHECK (booked >= 0),
            waitlisted  BIGINT NOT NULL DEFAULT 0 CHECK (waitlisted >= 0),
            issued      BIGINT NOT NULL DEFAULT 0 CHECK (issued >= 0),
            version     BIGINT NOT NULL DEFAULT 0
        );
        CREATE INDEX hc_slots_department ON hc_slots (department, date, start_at);
        CREATE TABLE hc_appointments (
            seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id           TEXT NOT NULL UNIQUE,
            slot         TEXT NOT NULL REFERENCES hc_slots (id),
            hospital     TEXT NOT NULL,
            department   TEXT NOT NULL,
            date         TEXT NOT NULL,
            session      TEXT NOT NULL,
            start_at     BIGINT NOT NULL,
            end_at       BIGINT NOT NULL,
            patient      TEXT NOT NULL,
            booked_by    TEXT NOT NULL,
            status       TEXT NOT NULL,
            queue_number BIGINT,
            expected_at  BIGINT,
            booking_key  TEXT NOT NULL,
            created_at   BIGINT NOT NULL,
            updated_at   BIGINT NOT NULL,
            cancellation TEXT,
            UNIQUE (patient, booking_key)
        );
        CREATE INDEX hc_appointments_patient ON hc_appointments (patient, seq);
        CREATE INDEX hc_appointments_slot ON hc_appointments (slot, status, seq);
        CREATE INDEX hc_appointments_due ON hc_appointments (status, end_at);
        CREATE TABLE hc_patients (
            patient TEXT PRIMARY KEY,
            version BIGINT NOT NULL
        );
        CREATE TABLE hc_employers (
            id       TEXT PRIMARY KEY,
            name     TEXT NOT NULL,
            district TEXT NOT NULL
        );
        CREATE TABLE hc_person_categories (
            person   TEXT PRIMARY KEY,
            category TEXT NOT NULL
        );
        CREATE TABLE hc_contributions (
            person          TEXT NOT NULL,
            employer        TEXT NOT NULL,
            month           BIGINT NOT NULL,
            insurance       BIGINT NOT NULL,
            base            BIGINT NOT NULL,
            employer_amount BIGINT NOT NULL,
            employee_amount BIGINT NOT NULL,
            paid            BIGINT NOT NULL,
            status          TEXT NOT NULL,
            PRIMARY KEY (person, month, insurance, employer)
        );
        CREATE TABLE hc_accumulators (
            person         TEXT NOT NULL,
            year           BIGINT NOT NULL,
            deductible_met BIGINT NOT NULL,
            fund_paid      BIGINT NOT NULL,
            PRIMARY KEY (person, year)
        );
        CREATE TABLE hc_settlements (
            id           TEXT PRIMARY KEY,
            key          TEXT NOT NULL UNIQUE,
            person       TEXT NOT NULL,
            status       TEXT NOT NULL,
            reversal_key TEXT,
            record       TEXT NOT NULL,
            created_at   BIGINT NOT NULL
        );
        CREATE INDEX hc_settlements_person ON hc_settlements (person, created_at);
    ",
}];

fn parse_at<T: std::str::FromStr>(row: &PgRow, i: usize) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    row.try_get::<String, _>(i).st()?.parse().map_err(corrupt)
}

fn version(row: &PgRow, i: usize) -> Result<u64, StoreError> {
    u64::try_from(row.try_get::<i64, _>(i).st()?).map_err(corrupt)
}

fn count(row: &PgRow, i: usize) -> Result<u32, StoreError> {
    u32::try_from(row.try_get::<i64, _>(i).st()?).map_err(corrupt)
}

fn instant(row: &PgRow, i: usize) -> Result<DateTime<Utc>, StoreError> {
    decode_instant(row.try_get(i).st()?)
}

fn date(row: &PgRow, i: usize) -> Result<NaiveDate, StoreError> {
    NaiveDate::parse_from_str(&row.try_get::<String, _>(i).st()?, "%Y-%m-%d").map_err(corrupt)
}

fn session(row: &PgRow, i: usize) -> Result<Session, StoreError> {
    let code: String = row.try_get(i).st()?;
    Session::from_code(&code).ok_or_else(|| corrupt(format!("bad session {code:?}")))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Internal(e.to_string()))
}

const SLOT_COLUMNS: &str = "id, hospital, department, doctor, date, session, start_at, end_at, capacity, status, booked, waitlisted, issued, version";
const APPOINTMENT_COLUMNS: &str = "id, slot, hospital, department, date, session, start_at, end_at, patient, booked_by, status, queue_number, expected_at, booking_key, created_at, updated_at, cancellation";

fn read_slot(row: &PgRow) -> Result<SlotView, StoreError> {
    let status: String = row.try_get(9).st()?;
    Ok(SlotView {
        slot: Slot {
            id: parse_at(row, 0)?,
            hospital: parse_at(row, 1)?,
            department: parse_at(row, 2)?,
            doctor: row
                .try_get::<Option<String>, _>(3)
                .st()?
                .map(|d| d.parse().map_err(corrupt))
                .transpose()?,
            date: date(row, 4)?,
            session: session(row, 5)?,
            start: instant(row, 6)?,
            end: instant(row, 7)?,
            capacity: count(row, 8)?,
            status: SlotStatus::from_code(&status)
                .ok_or_else(|| corrupt(format!("bad slot status {status:?}")))?,
        },
        booked: count(row, 10)?,
        waitlisted: count(row, 11)?,
        issued: count(row, 12)?,
    })
}

fn read_appointment(row: &PgRow) -> Result<Appointment, StoreError> {
    let status: String = row.try_get(10).st()?;
    Ok(Appointment {
        id: parse_at(row, 0)?,
        slot: parse_at(row, 1)?,
        hospital: parse_at(row, 2)?,
        department: parse_at(row, 3)?,
        date: date(row, 4)?,
        session: session(row, 5)?,
        start: instant(row, 6)?,
        end: instant(row, 7)?,
        patient: parse_at(row, 8)?,
        booked_by: serde_json::from_str(&row.try_get::<String, _>(9).st()?).map_err(corrupt)?,
        status: AppointmentStatus::from_code(&status)
            .ok_or_else(|| corrupt(format!("bad status {status:?}")))?,
        queue_number: row
            .try_get::<Option<i64>, _>(11)
            .st()?
            .map(|q| u32::try_from(q).map_err(corrupt))
            .transpose()?,
        expected_at: row
            .try_get::<Option<i64>, _>(12)
            .st()?
            .map(decode_instant)
            .transpose()?,
        booking_key: parse_at(row, 13)?,
        created_at: instant(row, 14)?,
        updated_at: instant(row, 15)?,
        cancellation: row
            .try_get::<Option<String>, _>(16)
            .st()?
            .map(|c| serde_json::from_str(&c).map_err(corrupt))
            .transpose()?,
    })
}

/// Slots and appointments in the citycard database.
#[derive(Debug, Clone)]
pub struct PgAppointmentStore {
    db: Database,
}

impl PgAppointmentStore {
    /// The store on a connected database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

async fn load_slot(
    c: &mut PgConnection,
    id: &SlotId,
) -> Result<Option<(SlotView, u64)>, StoreError> {
    sqlx::query(&format!(
        "SELECT {SLOT_COLUMNS} FROM hc_slots WHERE id = $1"
    ))
    .bind(id.as_str())
    .fetch_optional(c)
    .await
    .st()?
    .map(|r| Ok((read_slot(&r)?, version(&r, 13)?)))
    .transpose()
}

/// Appointments matching `where_clause` with up to two text parameters.
async fn load_many(
    c: &mut PgConnection,
    where_clause: &str,
    first: &str,
    second: Option<&str>,
) -> Result<Vec<Appointment>, StoreError> {
    let sql = format!("SELECT {APPOINTMENT_COLUMNS} FROM hc_appointments WHERE {where_clause}");
    let mut q = sqlx::query(&sql).bind(first);
    if let Some(second) = second {
        q = q.bind(second);
    }
    q.fetch_all(c)
        .await
        .st()?
        .iter()
        .map(read_appointment)
        .collect()
}

/// A patient's version, its row created (at 0) and locked when `lock`.
async fn patient_version(
    c: &mut PgConnection,
    patient: &PersonId,
    lock: bool,
) -> Result<u64, StoreError> {
    if lock {
        sqlx::query(
            "INSERT INTO hc_patients (patient, version) VALUES ($1, 0) ON CONFLICT DO NOTHING",
        )
        .bind(patient.as_str())
        .execute(&mut *c)
        .await
        .st()?;
    }
    let sql = if lock {
        "SELECT version FROM hc_patients WHERE patient = $1 FOR UPDATE"
    } else {
        "SELECT version FROM hc_patients WHERE patient = $1"
    };
    let v: Option<i64> = sqlx::query_scalar(sql)
        .bind(patient.as_str())
        .fetch_optional(c)
        .await
        .st()?;
    u64::try_from(v.unwrap_or(0)).map_err(corrupt)
}

async fn check(c: &mut PgConnection, precondition: &Precondition) -> Result<(), StoreError> {
    match precondition {
        Precondition::Slot {
            slot,
            version: expected,
        } => {
            let current: Option<i64> =
                sqlx::query_scalar("SELECT version FROM hc_slots WHERE id = $1 FOR UPDATE")
                    .bind(slot.as_str())
                    .fetch_optional(c)
                    .await
                    .st()?;
            if current.and_then(|v| u64::try_from(v).ok()) != Some(*expected) {
                return Err(StoreError::Conflict(format!(
                    "slot {slot} changed since it was read"
                )));
            }
        }
        Precondition::Patient {
            patient,
            version: expected,
        } => {
            if patient_version(c, patient, true).await? != *expected {
                return Err(StoreError::Conflict(
                    "the patient's appointments changed since they were read".into(),
                ));
            }
        }
    }
    Ok(())
}

async fn insert_appointment(c: &mut PgConnection, a: &Appointment) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO hc_appointments (id, slot, hospital, department, date, session, start_at,
            end_at, patient, booked_by, status, queue_number, expected_at, booking_key, created_at,
            updated_at, cancellation)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(a.id.as_str())
    .bind(a.slot.as_str())
    .bind(a.hospital.as_str())
    .bind(a.department.as_str())
    .bind(a.date.format("%Y-%m-%d").to_string())
    .bind(a.session.code())
    .bind(encode_instant(a.start))
    .bind(encode_instant(a.end))
    .bind(a.patient.as_str())
    .bind(encode(&a.booked_by)?)
    .bind(a.status.code())
    .bind(a.queue_number.map(i64::from))
    .bind(a.expected_at.map(encode_instant))
    .bind(a.booking_key.as_str())
    .bind(encode_instant(a.created_at))
    .bind(encode_instant(a.updated_at))
    .bind(a.cancellation.as_ref().map(encode).transpose()?)
    .execute(c)
    .await
    .st()?;
    Ok(())
}

/// Replaces the mutable part of a stored appointment (its status and what follows from it).
async fn update_appointment(c: &mut PgConnection, a: &Appointment) -> Result<(), StoreError> {
    let changed = sqlx::query(
        "UPDATE hc_appointments SET status = $4, queue_number = $5, expected_at = $6,
            updated_at = $7, cancellation = $8
         WHERE id = $1 AND patient = $2 AND slot = $3",
    )
    .bind(a.id.as_str())
    .bind(a.patient.as_str())
    .bind(a.slot.as_str())
    .bind(a.status.code())
    .bind(a.queue_number.map(i64::from))
    .bind(a.expected_at.map(encode_instant))
    .bind(encode_instant(a.updated_at))
    .bind(a.cancellation.as_ref().map(encode).transpose()?)
    .execute(c)
    .await
    .st()?
    .rows_affected();
    if changed == 0 {
        return Err(StoreError::Conflict(format!(
            "appointment {} is not stored as planned",
            a.id
        )));
    }
    Ok(())
}

#[async_trait]
impl AppointmentStore for PgAppointmentStore {
    async fn put_slot(&self, slot: &Slot) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO hc_slots (id, hospital, department, doctor, date, session, start_at,
                end_at, capacity, status)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (id) DO UPDATE SET hospital = excluded.hospital,
                department = excluded.department, doctor = excluded.doctor,
                date = excluded.date, session = excluded.session,
                start_at = excluded.start_at, end_at = excluded.end_at,
                capacity = excluded.capacity, status = excluded.status,
                version = hc_slots.version + 1",
        )
        .bind(slot.id.as_str())
        .bind(slot.hospital.as_str())
        .bind(slot.department.as_str())
        .bind(slot.doctor.as_ref().map(|d| d.as_str()))
        .bind(slot.date.format("%Y-%m-%d").to_string())
        .bind(slot.session.code())
        .bind(encode_instant(slot.start))
        .bind(encode_instant(slot.end))
        .bind(i64::from(slot.capacity))
        .bind(slot.status.code())
        .execute(self.db.pool())
        .await
        .st()?;
        Ok(())
    }

    async fn slot(&self, id: &SlotId) -> Result<Option<SlotView>, StoreError> {
        let mut c = self.db.pool().acquire().await.st()?;
        Ok(load_slot(&mut c, id).await?.map(|(view, _)| view))
    }

    async fn slot_state(&self, id: &SlotId) -> Result<Option<SlotState>, StoreError> {
        let mut c = self.db.pool().acquire().await.st()?;
        // The slot row (counts and version together) first: a waitlist read
        // after it can only be newer, which makes a plan stale, never wrong.
        let Some((view, version)) = load_slot(&mut c, id).await? else {
            return Ok(None);
        };
        let first_waitlisted = load_many(
            &mut c,
            "slot = $1 AND status = 'waitlist' ORDER BY seq LIMIT 1",
            id.as_str(),
            None,
        )
        .await?
        .into_iter()
        .next();
        Ok(Some(SlotState {
            view,
            version,
            first_waitlisted,
        }))
    }

    async fn patient_state(&self, patient: &PersonId) -> Result<PatientState, StoreError> {
        let mut c = self.db.pool().acquire().await.st()?;
        // The version first: appointments read after it can only be newer.
        let version = patient_version(&mut c, patient, false).await?;
        let appointments =
            load_many(&mut c, "patient = $1 ORDER BY seq", patient.as_str(), None).await?;
        Ok(PatientState {
            patient: patient.clone(),
            version,
            appointments,
        })
    }

    async fn department_slots(
        &self,
        department: &DepartmentId,
        date: NaiveDate,
    ) -> Result<Vec<SlotView>, StoreError> {
        sqlx::query(&format!(
            "SELECT {SLOT_COLUMNS} FROM hc_slots WHERE department = $1 AND date = $2
             ORDER BY start_at, id"
        ))
        .bind(department.as_str())
        .bind(date.format("%Y-%m-%d").to_string())
        .fetch_all(self.db.pool())
        .await
        .st()?
        .iter()
        .map(read_slot)
        .collect()
    }

    async fn commit(&self, plan: &AppointmentPlan) -> Result<(), StoreError> {
        transaction!(self.db, Isolation::ReadCommitted, |tx| {
            for p in &plan.preconditions {
                check(&mut tx, p).await?;
            }
            for c in &plan.slots {
                let changed = sqlx::query(
                    "UPDATE hc_slots SET booked = $2, waitlisted = $3, issued = $4,
                        version = version + 1
                     WHERE id = $1",
                )
                .bind(c.slot.as_str())
                .bind(i64::from(c.booked))
                .bind(i64::from(c.waitlisted))
                .bind(i64::from(c.issued))
                .execute(&mut *tx)
                .await
                .st()?
                .rows_affected();
                if changed == 0 {
                    return Err(StoreError::Conflict(format!("slot {} is unknown", c.slot)));
                }
            }
            for patient in plan.patients() {
                sqlx::query(
                    "INSERT INTO hc_patients (patient, version) VALUES ($1, 1)
                     ON CONFLICT (patient) DO UPDATE SET version = hc_patients.version + 1",
                )
                .bind(patient.as_str())
                .execute(&mut *tx)
                .await
                .st()?;
            }
            for a in &plan.inserts {
                insert_appointment(&mut tx, a).await?;
            }
            for a in &plan.updates {
                update_appointment(&mut tx, a).await?;
            }
            crate::write_core_changes(&mut tx, &plan.core).await
        })
    }

    async fn appointment(&self, id: &AppointmentId) -> Result<Option<Appointment>, StoreError> {
        let mut c = self.db.pool().acquire().await.st()?;
        Ok(load_many(&mut c, "id = $1", id.as_str(), None)
            .await?
            .into_iter()
            .next())
    }

    async fn appointment_by_key(
        &self,
        patient: &PersonId,
        key: &IdempotencyKey,
    ) -> Result<Option<Appointment>, StoreError> {
        let mut c = self.db.pool().acquire().await.st()?;
        Ok(load_many(
            &mut c,
            "patient = $1 AND booking_key = $2",
            patient.as_str(),
            Some(key.as_str()),
        )
        .await?
        .into_iter()
        .next())
    }

    async fn patient_appointments(
        &self,
        patient: &PersonId,
    ) -> Result<Vec<Appointment>, StoreError> {
        let mut c = self.db.pool().acquire().await.st()?;
        load_many(&mut c, "patient = $1 ORDER BY seq", patient.as_str(), None).await
    }

    async fn booked_ending_before(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Appointment>, StoreError> {
        sqlx::query(&format!(
            "SELECT {APPOINTMENT_COLUMNS} FROM hc_appointments
             WHERE status = 'booked' AND end_at < $1 ORDER BY end_at, id LIMIT $2"
        ))
        .bind(encode_instant(before))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.db.pool())
        .await
        .st()?
        .iter()
        .map(read_appointment)
        .collect()
    }
}

/// A person's accumulators for a year; `lock` creates the row (at zero) if
/// missing and locks it until the transaction ends.
async fn read_accumulators(
    c: &mut PgConnection,
    person: &PersonId,
    year: i32,
    lock: bool,
) -> Result<AnnualAccumulators, StoreError> {
    if lock {
        sqlx::query(
            "INSERT INTO hc_accumulators (person, year, deductible_met, fund_paid)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(person.as_str())
        .bind(i64::from(year))
        .bind(AnnualAccumulators::new(year).deductible_met.fen())
        .bind(AnnualAccumulators::new(year).fund_paid.fen())
        .execute(&mut *c)
        .await
        .st()?;
    }
    let sql = if lock {
        "SELECT deductible_met, fund_paid FROM hc_accumulators WHERE person = $1 AND year = $2 FOR UPDATE"
    } else {
        "SELECT deductible_met, fund_paid FROM hc_accumulators WHERE person = $1 AND year = $2"
    };
    let row = sqlx::query(sql)
        .bind(person.as_str())
        .bind(i64::from(year))
        .fetch_optional(c)
        .await
        .st()?;
    match row {
        Some(r) => Ok(AnnualAccumulators {
            year,
            deductible_met: Money::from_fen(r.try_get(0).st()?),
            fund_paid: Money::from_fen(r.try_get(1).st()?),
        }),
        None => Ok(AnnualAccumulators::new(year)),
    }
}

fn read_settlement(row: &PgRow) -> Result<SettlementRecord, StoreError> {
    let mut record: SettlementRecord =
        serde_json::from_str(&row.try_get::<String, _>(0).st()?).map_err(corrupt)?;
    let status: String = row.try_get(1).st()?;
    record.status = SettlementStatus::from_code(&status)
        .ok_or_else(|| corrupt(format!("bad settlement status {status:?}")))?;
    record.reversal_key = row
        .try_get::<Option<String>, _>(2)
        .st()?
        .map(|k| k.parse().map_err(corrupt))
        .transpose()?;
    Ok(record)
}

async fn load_settlement(
    c: &mut PgConnection,
    column: &str,
    value: &str,
    lock: bool,
) -> Result<Option<SettlementRecord>, StoreError> {
    sqlx::query(&format!(
        "SELECT record, status, reversal_key FROM hc_settlements WHERE {column} = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    ))
    .bind(value)
    .fetch_optional(c)
    .await
    .st()?
    .as_ref()
    .map(read_settlement)
    .transpose()
}

async fn check_settlement(c: &mut PgConnection, plan: &SettlementPlan) -> Result<(), StoreError> {
    let record = &plan.record;
    let stored = load_settlement(c, "id", record.id.as_str(), true).await?;
    match plan.expected_status {
        None => {
            // A racing insert of the same id or key meets the unique indexes.
            if stored.is_some()
                || load_settlement(c, "key", record.key.as_str(), false)
                    .await?
                    .is_some()
            {
                return Err(StoreError::Conflict(format!(
                    "settlement key {} is already used",
                    record.key
                )));
            }
        }
        Some(expected) => {
            if stored.is_none_or(|s| s.status != expected) {
                return Err(StoreError::Conflict(format!(
                    "settlement {} is no longer {}",
                    record.id,
                    expected.code()
                )));
            }
        }
    }
    if let Some(change) = &plan.accumulators
        && read_accumulators(c, plan.person(), change.before.year, true).await? != change.before
    {
        return Err(StoreError::Conflict(
            "the patient's accumulators changed since they were read".into(),
        ));
    }
    Ok(())
}

/// Settlement records and annual accumulators in the citycard database.
#[derive(Debug, Clone)]
pub struct PgSettlementStore {
    db: Database,
}

impl PgSettlementStore {
    /// The store on a connected database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl SettlementStore for PgSettlementStore {
    async fn accumulators(
        &self,
        person: &PersonId,
        year: i32,
    ) -> Result<AnnualAccumulators, StoreError> {
        let mut c = self.db.pool().acquire().await.st()?;
        read_accumulators(&mut c, person, year, false).await
    }

    async fn commit(&self, plan: &SettlementPlan) -> Result<(), StoreError> {
        transaction!(self.db, Isolation::ReadCommitted, |tx| {
            check_settlement(&mut tx, plan).await?;
            if let Some(change) = &plan.accumulators {
                let acc = &change.after;
                sqlx::query(
                    "INSERT INTO hc_accumulators (person, year, deductible_met, fund_paid)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (person, year) DO UPDATE SET deductible_met = excluded.deductible_met,
                        fund_paid = excluded.fund_paid",
                )
                .bind(plan.person().as_str())
                .bind(i64::from(acc.year))
                .bind(acc.deductible_met.fen())
                .bind(acc.fund_paid.fen())
                .execute(&mut *tx)
                .await
                .st()?;
            }
            let record = &plan.record;
            let json = encode(record)?;
            let key = record.reversal_key.as_ref().map(|k| k.as_str());
            if plan.expected_status.is_none() {
                sqlx::query(
                    "INSERT INTO hc_settlements (id, key, person, status, reversal_key, record,
                        created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(record.id.as_str())
                .bind(record.key.as_str())
                .bind(plan.person().as_str())
                .bind(record.status.code())
                .bind(key)
                .bind(json)
                .bind(encode_instant(record.created_at))
                .execute(&mut *tx)
                .await
                .st()?;
            } else {
                sqlx::query(
                    "UPDATE hc_settlements SET status = $2, reversal_key = $3, record = $4
                     WHERE id = $1",
                )
                .bind(record.id.as_str())
                .bind(record.status.code())
                .bind(key)
                .bind(json)
                .execute(&mut *tx)
                .await
                .st()?;
            }
            crate::write_core_changes(&mut tx, &plan.core).await
        })
    }

    async fn settlement(&self, id: &SettlementId) -> Result<Option<SettlementRecord>, StoreError> {
        let mut c = self.db.pool().acquire().await.st()?;
        load_settlement(&mut c, "id", id.as_str(), false).await
    }

    async fn settlement_by_key(
        &self,
        key: &IdempotencyKey,
    ) -> Result<Option<SettlementRecord>, StoreError> {
        let mut c = self.db.pool().acquire().await.st()?;
        load_settlement(&mut c, "key", key.as_str(), false).await
    }
}

fn insurance_ordinal(insurance: Insurance) -> i64 {
    Insurance::ALL
        .iter()
        .position(|i| *i == insurance)
        .map_or(0, |p| i64::try_from(p).unwrap_or(0))
}

fn month_code(month: CivilMonth) -> i64 {
    i64::from(month.year) * 100 + i64::from(month.month)
}

fn read_contribution(row: &PgRow) -> Result<ContributionRecord, StoreError> {
    let month: i64 = row.try_get(2).st()?;
    let month = i32::try_from(month / 100)
        .ok()
        .and_then(|y| CivilMonth::new(y, u32::try_from(month % 100).ok()?))
        .ok_or_else(|| corrupt(format!("bad month {month}")))?;
    let ordinal: i64 = row.try_get(3).st()?;
    let insurance = usize::try_from(ordinal)
        .ok()
        .and_then(|i| Insurance::ALL.get(i).copied())
        .ok_or_else(|| corrupt(format!("bad insurance {ordinal}")))?;
    let status: String = row.try_get(8).st()?;
    Ok(ContributionRecord {
        person: parse_at(row, 0)?,
        employer: parse_at(row, 1)?,
        month,
        insurance,
        base: Money::from_fen(row.try_get(4).st()?),
        employer_amount: Money::from_fen(row.try_get(5).st()?),
        employee_amount: Money::from_fen(row.try_get(6).st()?),
        paid: Money::from_fen(row.try_get(7).st()?),
        status: ContributionStatus::from_code(&status)
            .ok_or_else(|| corrupt(format!("bad status {status:?}")))?,
    })
}

/// Social insurance records in the citycard database.
#[derive(Debug, Clone)]
pub struct PgSocialInsuranceRecords {
    db: Database,
}

impl PgSocialInsuranceRecords {
    /// The store on a connected database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl SocialInsuranceRecords for PgSocialInsuranceRecords {
    async fn put_employer(&self, employer: &Employer) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO hc_employers (id, name, district) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, district = excluded.district",
        )
        .bind(employer.id.as_str())
        .bind(&employer.name)
        .bind(&employer.district)
        .execute(self.db.pool())
        .await
        .st()?;
        Ok(())
    }

    async fn employer(&self, id: &EmployerId) -> Result<Option<Employer>, StoreError> {
        sqlx::query("SELECT id, name, district FROM hc_employers WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.db.pool())
            .await
            .st()?
            .map(|r| {
                Ok(Employer {
                    id: parse_at(&r, 0)?,
                    name: r.try_get(1).st()?,
                    district: r.try_get(2).st()?,
                })
            })
            .transpose()
    }

    async fn put_category(
        &self,
        person: &PersonId,
        category: PersonCategory,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO hc_person_categories (person, category) VALUES ($1, $2)
             ON CONFLICT (person) DO UPDATE SET category = excluded.category",
        )
        .bind(person.as_str())
        .bind(category.code())
        .execute(self.db.pool())
        .await
        .st()?;
        Ok(())
    }

    async fn category(&self, person: &PersonId) -> Result<Option<PersonCategory>, StoreError> {
        let code: Option<String> =
            sqlx::query_scalar("SELECT category FROM hc_person_categories WHERE person = $1")
                .bind(person.as_str())
                .fetch_optional(self.db.pool())
                .await
                .st()?;
        code.map(|code| {
            PersonCategory::from_code(&code)
                .ok_or_else(|| corrupt(format!("bad category {code:?}")))
        })
        .transpose()
    }

    async fn upsert(&self, records: &[ContributionRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        // The last record per key wins, as with one upsert after another.
        let mut last = std::collections::BTreeMap::new();
        for r in records {
            last.insert(
                (
                    r.person.as_str().to_owned(),
                    month_code(r.month),
                    insurance_ordinal(r.insurance),
                    r.employer.as_str().to_owned(),
                ),
                r,
            );
        }
        let rows: Vec<&ContributionRecord> = last.into_values().collect();
        let col = |f: &dyn Fn(&ContributionRecord) -> i64| {
            rows.iter().map(|r| f(r)).collect::<Vec<i64>>()
        };
        sqlx::query(
            "INSERT INTO hc_contributions (person, employer, month, insurance, base,
                employer_amount, employee_amount, paid, status)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
                                  $6::bigint[], $7::bigint[], $8::bigint[], $9::text[])
             ON CONFLICT (person, month, insurance, employer) DO UPDATE SET
                base = excluded.base, employer_amount = excluded.employer_amount,
                employee_amount = excluded.employee_amount, paid = excluded.paid,
                status = excluded.status",
        )
        .bind(
            rows.iter()
                .map(|r| r.person.as_str().to_owned())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|r| r.employer.as_str().to_owned())
                .collect::<Vec<_>>(),
        )
        .bind(col(&|r| month_code(r.month)))
        .bind(col(&|r| insurance_ordinal(r.insurance)))
        .bind(col(&|r| r.base.fen()))
        .bind(col(&|r| r.employer_amount.fen()))
        .bind(col(&|r| r.employee_amount.fen()))
        .bind(col(&|r| r.paid.fen()))
        .bind(
            rows.iter()
                .map(|r| r.status.code().to_owned())
                .collect::<Vec<_>>(),
        )
        .execute(self.db.pool())
        .await
        .st()?;
        Ok(())
    }

    async fn contributions(
        &self,
        person: &PersonId,
        from: Option<CivilMonth>,
        to: Option<CivilMonth>,
    ) -> Result<Vec<ContributionRecord>, StoreError> {
        sqlx::query(
            "SELECT person, employer, month, insurance, base, employer_amount,
                employee_amount, paid, status
             FROM hc_contributions
             WHERE person = $1 AND month >= $2 AND month <= $3
             ORDER BY month, insurance, employer",
        )
        .bind(person.as_str())
        .bind(from.map_or(i64::MIN, month_code))
        .bind(to.map_or(i64::MAX, month_code))
        .fetch_all(self.db.pool())
        .await
        .st()?
        .iter()
        .map(read_contribution)
        .collect()
    }
}
