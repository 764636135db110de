//! Slots and appointments: reads on the reader pool, plans committed in one transaction.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use citycard_core::{IdempotencyKey, PersonId, StoreError};
use citycard_healthcare::appointments::decide::{
    AppointmentPlan, PatientState, Precondition, SlotState,
};
use citycard_healthcare::{
    Appointment, AppointmentId, AppointmentStatus, AppointmentStore, DepartmentId, Session, Slot,
    SlotId, SlotStatus, SlotView,
};
use rusqlite::{OptionalExtension, Row, params};

use super::{parse_at, store_err};
use crate::db::{Database, corrupt, decode_instant, encode_instant};

fn version(row: &Row<'_>, i: usize) -> rusqlite::Result<u64> {
    u64::try_from(row.get::<_, i64>(i)?).map_err(|e| corrupt(i, e))
}

const SLOT_COLUMNS: &str = "id, hospital, department, doctor, date, session, start_at, end_at, capacity, status, booked, waitlisted, issued, version";
const APPOINTMENT_COLUMNS: &str = "id, slot, hospital, department, date, session, start_at, end_at, patient, booked_by, status, queue_number, expected_at, booking_key, created_at, updated_at, cancellation";

fn instant(row: &Row<'_>, i: usize) -> rusqlite::Result<DateTime<Utc>> {
    decode_instant(row.get(i)?).map_err(|e| corrupt(i, e))
}

fn date(row: &Row<'_>, i: usize) -> rusqlite::Result<NaiveDate> {
    NaiveDate::parse_from_str(&row.get::<_, String>(i)?, "%Y-%m-%d").map_err(|e| corrupt(i, e))
}

fn session(row: &Row<'_>, i: usize) -> rusqlite::Result<Session> {
    let code: String = row.get(i)?;
    Session::from_code(&code).ok_or_else(|| corrupt(i, format!("bad session {code:?}")))
}

fn count(row: &Row<'_>, i: usize) -> rusqlite::Result<u32> {
    u32::try_from(row.get::<_, i64>(i)?).map_err(|e| corrupt(i, e))
}

fn read_slot(row: &Row<'_>) -> rusqlite::Result<SlotView> {
    let status: String = row.get(9)?;
    Ok(SlotView {
        slot: Slot {
            id: parse_at(row, 0)?,
            hospital: parse_at(row, 1)?,
            department: parse_at(row, 2)?,
            doctor: row
                .get::<_, Option<String>>(3)?
                .map(|d| d.parse().map_err(|e| corrupt(3, e)))
                .transpose()?,
            date: date(row, 4)?,
            session: session(row, 5)?,
            start: instant(row, 6)?,
            end: instant(row, 7)?,
            capacity: count(row, 8)?,
            status: SlotStatus::from_code(&status)
                .ok_or_else(|| corrupt(9, format!("bad slot status {status:?}")))?,
        },
        booked: count(row, 10)?,
        waitlisted: count(row, 11)?,
        issued: count(row, 12)?,
    })
}

fn read_appointment(row: &Row<'_>) -> rusqlite::Result<Appointment> {
    let status: String = row.get(10)?;
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
        booked_by: serde_json::from_str(&row.get::<_, String>(9)?).map_err(|e| corrupt(9, e))?,
        status: AppointmentStatus::from_code(&status)
            .ok_or_else(|| corrupt(10, format!("bad status {status:?}")))?,
        queue_number: row
            .get::<_, Option<i64>>(11)?
            .map(|q| u32::try_from(q).map_err(|e| corrupt(11, e)))
            .transpose()?,
        expected_at: row
            .get::<_, Option<i64>>(12)?
            .map(|v| decode_instant(v).map_err(|e| corrupt(12, e)))
            .transpose()?,
        booking_key: parse_at(row, 13)?,
        created_at: instant(row, 14)?,
        updated_at: instant(row, 15)?,
        cancellation: row
            .get::<_, Option<String>>(16)?
            .map(|c| serde_json::from_str(&c).map_err(|e| corrupt(16, e)))
            .transpose()?,
    })
}

fn load_slot(tx: &rusqlite::Connection, id: &SlotId) -> rusqlite::Result<Option<(SlotView, u64)>> {
    tx.query_row(
        &format!("SELECT {SLOT_COLUMNS} FROM hc_slots WHERE id = ?1"),
        params![id.as_str()],
        |r| Ok((read_slot(r)?, version(r, 13)?)),
    )
    .optional()
}

fn load_appointment(
    tx: &rusqlite::Connection,
    id: &AppointmentId,
) -> rusqlite::Result<Option<Appointment>> {
    tx.query_row(
        &format!("SELECT {APPOINTMENT_COLUMNS} FROM hc_appointments WHERE id = ?1"),
        params![id.as_str()],
        read_appointment,
    )
    .optional()
}

fn load_many(
    tx: &rusqlite::Connection,
    where_clause: &str,
    args: impl rusqlite::Params,
) -> rusqlite::Result<Vec<Appointment>> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {APPOINTMENT_COLUMNS} FROM hc_appointments WHERE {where_clause}"
    ))?;
    let rows = stmt.query_map(args, read_appointment)?;
    rows.collect()
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Internal(e.to_string()))
}

fn insert_appointment(tx: &rusqlite::Connection, a: &Appointment) -> Result<(), StoreError> {
    let cancellation = a.cancellation.as_ref().map(encode).transpose()?;
    let booked_by = encode(&a.booked_by)?;
    tx.prepare_cached(
        "INSERT INTO hc_appointments (id, slot, hospital, department, date, session, start_at,
            end_at, patient, booked_by, status, queue_number, expected_at, booking_key, created_at,
            updated_at, cancellation)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            a.id.as_str(),
            a.slot.as_str(),
            a.hospital.as_str(),
            a.department.as_str(),
            a.date.format("%Y-%m-%d").to_string(),
            a.session.code(),
            encode_instant(a.start),
            encode_instant(a.end),
            a.patient.as_str(),
            booked_by,
            a.status.code(),
            a.queue_number.map(i64::from),
            a.expected_at.map(encode_instant),
            a.booking_key.as_str(),
            encode_instant(a.created_at),
            encode_instant(a.updated_at),
            cancellation,
        ])
    })
    .map_err(store_err)?;
    Ok(())
}

/// Replaces the mutable part of a stored appointment (its status and what follows from it).
fn update_appointment(tx: &rusqlite::Connection, a: &Appointment) -> Result<(), StoreError> {
    let cancellation = a.cancellation.as_ref().map(encode).transpose()?;
    let changed = tx
        .prepare_cached(
            "UPDATE hc_appointments SET status = ?4, queue_number = ?5, expected_at = ?6,
                updated_at = ?7, cancellation = ?8
             WHERE id = ?1 AND patient = ?2 AND slot = ?3",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                a.id.as_str(),
                a.patient.as_str(),
                a.slot.as_str(),
                a.status.code(),
                a.queue_number.map(i64::from),
                a.expected_at.map(encode_instant),
                encode_instant(a.updated_at),
                cancellation,
            ])
        })
        .map_err(store_err)?;
    if changed == 0 {
        return Err(StoreError::Conflict(format!(
            "appointment {} is not stored as planned",
            a.id
        )));
    }
    Ok(())
}

fn patient_version(tx: &rusqlite::Connection, patient: &PersonId) -> rusqlite::Result<u64> {
    let mut stmt = tx.prepare_cached("SELECT version FROM hc_patients WHERE patient = ?1")?;
    let v = stmt
        .query_row(params![patient.as_str()], |r| version(r, 0))
        .optional()?;
    Ok(v.unwrap_or(0))
}

fn check(tx: &rusqlite::Connection, precondition: &Precondition) -> Result<(), StoreError> {
    match precondition {
        Precondition::Slot {
            slot,
            version: expected,
        } => {
            let current: Option<u64> = tx
                .prepare_cached("SELECT version FROM hc_slots WHERE id = ?1")
                .and_then(|mut stmt| {
                    stmt.query_row(params![slot.as_str()], |r| version(r, 0))
                        .optional()
                })
                .map_err(store_err)?;
            if current != Some(*expected) {
                return Err(StoreError::Conflict(format!(
                    "slot {slot} changed since it was read"
                )));
            }
        }
        Precondition::Patient {
            patient,
            version: expected,
        } => {
            if patient_version(tx, patient).map_err(store_err)? != *expected {
                return Err(StoreError::Conflict(
                    "the patient's appointments changed since they were read".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Slots and appointments in the citycard database.
#[derive(Debug, Clone)]
pub struct SqliteAppointmentStore {
    db: Database,
}

impl SqliteAppointmentStore {
    /// The store on an open database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl AppointmentStore for SqliteAppointmentStore {
    async fn put_slot(&self, slot: &Slot) -> Result<(), StoreError> {
        self.db.with(|c| {
            c.execute(
                "INSERT INTO hc_slots (id, hospital, department, doctor, date, session, start_at,
                    end_at, capacity, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (id) DO UPDATE SET hospital = excluded.hospital,
                    department = excluded.department, doctor = excluded.doctor,
                    date = excluded.date, session = excluded.session,
                    start_at = excluded.start_at, end_at = excluded.end_at,
                    capacity = excluded.capacity, status = excluded.status,
                    version = hc_slots.version + 1",
                params![
                    slot.id.as_str(),
                    slot.hospital.as_str(),
                    slot.department.as_str(),
                    slot.doctor.as_ref().map(|d| d.as_str()),
                    slot.date.format("%Y-%m-%d").to_string(),
                    slot.session.code(),
                    encode_instant(slot.start),
                    encode_instant(slot.end),
                    i64::from(slot.capacity),
                    slot.status.code(),
                ],
            )
        })?;
        Ok(())
    }

    async fn slot(&self, id: &SlotId) -> Result<Option<SlotView>, StoreError> {
        self.db
            .read(|c| load_slot(c, id))
            .map(|s| s.map(|(view, _)| view))
    }

    async fn slot_state(&self, id: &SlotId) -> Result<Option<SlotState>, StoreError> {
        self.db.read(|c| {
            // The slot row (counts and version together) first: a waitlist read after it can
            // only be newer, which makes a plan stale, never wrong.
            let Some((view, version)) = load_slot(c, id)? else {
                return Ok(None);
            };
            let first_waitlisted = load_many(
                c,
                "slot = ?1 AND status = 'waitlist' ORDER BY seq LIMIT 1",
                params![id.as_str()],
            )?
            .into_iter()
            .next();
            Ok(Some(SlotState {
                view,
                version,
                first_waitlisted,
            }))
        })
    }

    async fn patient_state(&self, patient: &PersonId) -> Result<PatientState, StoreError> {
        self.db.read(|c| {
            // The version first: appointments read after it can only be newer.
            let version = patient_version(c, patient)?;
            let appointments =
                load_many(c, "patient = ?1 ORDER BY seq", params![patient.as_str()])?;
            Ok(PatientState {
                patient: patient.clone(),
                version,
                appointments,
            })
        })
    }

    async fn department_slots(
        &self,
        department: &DepartmentId,
        date: NaiveDate,
    ) -> Result<Vec<SlotView>, StoreError> {
        self.db.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {SLOT_COLUMNS} FROM hc_slots WHERE department = ?1 AND date = ?2
                 ORDER BY start_at, id"
            ))?;
            let rows = stmt.query_map(
                params![department.as_str(), date.format("%Y-%m-%d").to_string()],
                read_slot,
            )?;
            rows.collect()
        })
    }

    async fn commit(&self, plan: &AppointmentPlan) -> Result<(), StoreError> {
        self.db.transaction(|tx| {
            for p in &plan.preconditions {
                check(tx, p)?;
            }
            for c in &plan.slots {
                let changed = tx
                    .prepare_cached(
                        "UPDATE hc_slots SET booked = ?2, waitlisted = ?3, issued = ?4,
                            version = version + 1
                         WHERE id = ?1",
                    )
                    .and_then(|mut stmt| {
                        stmt.execute(params![
                            c.slot.as_str(),
                            i64::from(c.booked),
                            i64::from(c.waitlisted),
                            i64::from(c.issued)
                        ])
                    })
                    .map_err(store_err)?;
                if changed == 0 {
                    return Err(StoreError::Conflict(format!("slot {} is unknown", c.slot)));
                }
            }
            for patient in plan.patients() {
                tx.prepare_cached(
                    "INSERT INTO hc_patients (patient, version) VALUES (?1, 1)
                     ON CONFLICT (patient) DO UPDATE SET version = hc_patients.version + 1",
                )
                .and_then(|mut stmt| stmt.execute(params![patient.as_str()]))
                .map_err(store_err)?;
            }
            for a in &plan.inserts {
                insert_appointment(tx, a)?;
            }
            for a in &plan.updates {
                update_appointment(tx, a)?;
            }
            crate::write_core_changes(tx, &plan.core)
        })
    }

    async fn appointment(&self, id: &AppointmentId) -> Result<Option<Appointment>, StoreError> {
        self.db.read(|c| load_appointment(c, id))
    }

    async fn appointment_by_key(
        &self,
        patient: &PersonId,
        key: &IdempotencyKey,
    ) -> Result<Option<Appointment>, StoreError> {
        self.db.read(|c| {
            Ok(load_many(
                c,
                "patient = ?1 AND booking_key = ?2",
                params![patient.as_str(), key.as_str()],
            )?
            .into_iter()
            .next())
        })
    }

    async fn patient_appointments(
        &self,
        patient: &PersonId,
    ) -> Result<Vec<Appointment>, StoreError> {
        self.db
            .read(|c| load_many(c, "patient = ?1 ORDER BY seq", params![patient.as_str()]))
    }

    async fn booked_ending_before(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Appointment>, StoreError> {
        self.db.read(|c| {
            load_many(
                c,
                "status = 'booked' AND end_at < ?1 ORDER BY end_at, id LIMIT ?2",
                params![
                    encode_instant(before),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
            )
        })
    }
}
