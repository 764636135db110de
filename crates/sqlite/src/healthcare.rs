//! The healthcare stores on SQLite: slots and appointments.
//!
//! Every booking decision runs in one `IMMEDIATE` transaction on the shared connection, so
//! capacity, quotas, queue numbers and waitlist promotion are decided atomically.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use citycard_core::{CivilMonth, IdempotencyKey, Money, PersonId, StoreError};
use citycard_healthcare::appointments::{
    BookingDecision, BookingRequest, CancelDecision, Cancellation, TransitionDecision, check_quota,
};
use citycard_healthcare::billing::{
    BeginDecision, SettlementRecord, SettlementStatus, SettlementStore, shift_accumulators,
};
use citycard_healthcare::{AnnualAccumulators, SettlementId};
use citycard_healthcare::{
    Appointment, AppointmentId, AppointmentStatus, AppointmentStore, ContributionRecord,
    ContributionStatus, DepartmentId, Employer, EmployerId, Insurance, PersonCategory, Session,
    Slot, SlotId, SlotStatus, SlotView, SocialInsuranceRecords,
};
use rusqlite::{OptionalExtension, Row, params};

use crate::db::{Database, Migration, corrupt, decode_instant, encode_instant};

/// The schema of the healthcare component.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
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
            start_at    INTEGER NOT NULL,
            end_at      INTEGER NOT NULL,
            capacity    INTEGER NOT NULL CHECK (capacity > 0),
            status      TEXT NOT NULL,
            booked      INTEGER NOT NULL DEFAULT 0 CHECK (booked >= 0),
            waitlisted  INTEGER NOT NULL DEFAULT 0 CHECK (waitlisted >= 0),
            issued      INTEGER NOT NULL DEFAULT 0 CHECK (issued >= 0)
        );
        CREATE INDEX hc_slots_department ON hc_slots (department, date, start_at);
        CREATE TABLE hc_appointments (
            seq          INTEGER PRIMARY KEY AUTOINCREMENT,
            id           TEXT NOT NULL UNIQUE,
            slot         TEXT NOT NULL REFERENCES hc_slots (id),
            hospital     TEXT NOT NULL,
            department   TEXT NOT NULL,
            date         TEXT NOT NULL,
            session      TEXT NOT NULL,
            start_at     INTEGER NOT NULL,
            end_at       INTEGER NOT NULL,
            patient      TEXT NOT NULL,
            booked_by    TEXT NOT NULL,
            status       TEXT NOT NULL,
            queue_number INTEGER,
            expected_at  INTEGER,
            booking_key  TEXT NOT NULL,
            created_at   INTEGER NOT NULL,
            updated_at   INTEGER NOT NULL,
            cancellation TEXT,
            UNIQUE (patient, booking_key)
        );
        CREATE INDEX hc_appointments_patient ON hc_appointments (patient, seq);
        CREATE INDEX hc_appointments_slot ON hc_appointments (slot, status, seq);
        CREATE INDEX hc_appointments_due ON hc_appointments (status, end_at);
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
            month           INTEGER NOT NULL,
            insurance       INTEGER NOT NULL,
            base            INTEGER NOT NULL,
            employer_amount INTEGER NOT NULL,
            employee_amount INTEGER NOT NULL,
            paid            INTEGER NOT NULL,
            status          TEXT NOT NULL,
            PRIMARY KEY (person, month, insurance, employer)
        );
    ",
    },
    Migration {
        component: "healthcare",
        version: 2,
        sql: "
        CREATE TABLE hc_accumulators (
            person         TEXT NOT NULL,
            year           INTEGER NOT NULL,
            deductible_met INTEGER NOT NULL,
            fund_paid      INTEGER NOT NULL,
            PRIMARY KEY (person, year)
        );
        CREATE TABLE hc_settlements (
            id           TEXT PRIMARY KEY,
            key          TEXT NOT NULL UNIQUE,
            person       TEXT NOT NULL,
            status       TEXT NOT NULL,
            reversal_key TEXT,
            record       TEXT NOT NULL,
            created_at   INTEGER NOT NULL
        );
        CREATE INDEX hc_settlements_person ON hc_settlements (person, created_at);
    ",
    },
];

const SLOT_COLUMNS: &str = "id, hospital, department, doctor, date, session, start_at, end_at, capacity, status, booked, waitlisted, issued";
const APPOINTMENT_COLUMNS: &str = "id, slot, hospital, department, date, session, start_at, end_at, patient, booked_by, status, queue_number, expected_at, booking_key, created_at, updated_at, cancellation";

fn parse_at<T: std::str::FromStr>(row: &Row<'_>, i: usize) -> rusqlite::Result<T>
where
    T::Err: std::fmt::Display,
{
    row.get::<_, String>(i)?.parse().map_err(|e| corrupt(i, e))
}

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

fn store_err(e: rusqlite::Error) -> StoreError {
    crate::to_store_error(&e)
}

fn load_slot(tx: &rusqlite::Connection, id: &SlotId) -> Result<Option<SlotView>, StoreError> {
    tx.query_row(
        &format!("SELECT {SLOT_COLUMNS} FROM hc_slots WHERE id = ?1"),
        params![id.as_str()],
        read_slot,
    )
    .optional()
    .map_err(store_err)
}

fn load_appointment(
    tx: &rusqlite::Connection,
    id: &AppointmentId,
) -> Result<Option<Appointment>, StoreError> {
    tx.query_row(
        &format!("SELECT {APPOINTMENT_COLUMNS} FROM hc_appointments WHERE id = ?1"),
        params![id.as_str()],
        read_appointment,
    )
    .optional()
    .map_err(store_err)
}

fn load_many(
    tx: &rusqlite::Connection,
    where_clause: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Appointment>, StoreError> {
    let mut stmt = tx
        .prepare_cached(&format!(
            "SELECT {APPOINTMENT_COLUMNS} FROM hc_appointments WHERE {where_clause}"
        ))
        .map_err(store_err)?;
    let rows = stmt.query_map(args, read_appointment).map_err(store_err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(store_err)
}

fn insert_appointment(tx: &rusqlite::Connection, a: &Appointment) -> Result<(), StoreError> {
    let booked_by =
        serde_json::to_string(&a.booked_by).map_err(|e| StoreError::Internal(e.to_string()))?;
    let cancellation = a
        .cancellation
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Internal(e.to_string()))?;
    tx.execute(
        "INSERT INTO hc_appointments (id, slot, hospital, department, date, session, start_at,
            end_at, patient, booked_by, status, queue_number, expected_at, booking_key, created_at,
            updated_at, cancellation)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        params![
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
        ],
    )
    .map_err(store_err)?;
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
                    capacity = excluded.capacity, status = excluded.status",
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
        let conn = self.db.lock();
        load_slot(&conn, id)
    }

    async fn department_slots(
        &self,
        department: &DepartmentId,
        date: NaiveDate,
    ) -> Result<Vec<SlotView>, StoreError> {
        self.db.with(|c| {
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

    async fn book(&self, request: &BookingRequest) -> Result<BookingDecision, StoreError> {
        self.db.transaction(|tx| {
            let new = &request.appointment;
            let existing = load_many(
                tx,
                "patient = ?1 AND booking_key = ?2",
                params![new.patient.as_str(), new.booking_key.as_str()],
            )?;
            if let Some(existing) = existing.into_iter().next() {
                return Ok(if existing.slot == new.slot {
                    BookingDecision::Duplicate {
                        appointment: existing,
                    }
                } else {
                    BookingDecision::KeyReused
                });
            }
            let Some(view) = load_slot(tx, &new.slot)? else {
                return Ok(BookingDecision::SlotNotFound);
            };
            if view.slot.status != SlotStatus::Open {
                return Ok(BookingDecision::SlotClosed);
            }
            let mine = load_many(
                tx,
                "patient = ?1 ORDER BY seq",
                params![new.patient.as_str()],
            )?;
            let refs: Vec<&Appointment> = mine.iter().collect();
            if let Some(kind) = check_quota(&refs, request) {
                return Ok(BookingDecision::QuotaExceeded { kind });
            }
            let mut appointment = new.clone();
            appointment.cancellation = None;
            let booked = view.booked < view.slot.capacity;
            if booked {
                let queue = view.issued + 1;
                appointment.status = AppointmentStatus::Booked;
                appointment.queue_number = Some(queue);
                appointment.expected_at = Some(view.slot.expected_time(queue));
                tx.execute(
                    "UPDATE hc_slots SET booked = booked + 1, issued = issued + 1 WHERE id = ?1",
                    params![new.slot.as_str()],
                )
                .map_err(store_err)?;
            } else if request.allow_waitlist {
                appointment.status = AppointmentStatus::Waitlist;
                appointment.queue_number = None;
                appointment.expected_at = None;
                tx.execute(
                    "UPDATE hc_slots SET waitlisted = waitlisted + 1 WHERE id = ?1",
                    params![new.slot.as_str()],
                )
                .map_err(store_err)?;
            } else {
                return Ok(BookingDecision::Full);
            }
            insert_appointment(tx, &appointment)?;
            Ok(if booked {
                BookingDecision::Booked { appointment }
            } else {
                BookingDecision::Waitlisted { appointment }
            })
        })
    }

    async fn cancel(
        &self,
        id: &AppointmentId,
        cancellation: &Cancellation,
    ) -> Result<CancelDecision, StoreError> {
        self.db.transaction(|tx| {
            let Some(mut appointment) = load_appointment(tx, id)? else {
                return Ok(CancelDecision::NotFound);
            };
            let was = appointment.status;
            if !matches!(was, AppointmentStatus::Booked | AppointmentStatus::Waitlist) {
                return Ok(CancelDecision::WrongState { status: was });
            }
            let encoded = serde_json::to_string(cancellation)
                .map_err(|e| StoreError::Internal(e.to_string()))?;
            tx.execute(
                "UPDATE hc_appointments SET status = 'cancelled', updated_at = ?2, cancellation = ?3
                 WHERE id = ?1",
                params![id.as_str(), encode_instant(cancellation.at), encoded],
            )
            .map_err(store_err)?;
            appointment.status = AppointmentStatus::Cancelled;
            appointment.updated_at = cancellation.at;
            appointment.cancellation = Some(cancellation.clone());
            let mut promoted = None;
            if was == AppointmentStatus::Waitlist {
                tx.execute(
                    "UPDATE hc_slots SET waitlisted = waitlisted - 1 WHERE id = ?1",
                    params![appointment.slot.as_str()],
                )
                .map_err(store_err)?;
            } else {
                tx.execute(
                    "UPDATE hc_slots SET booked = booked - 1 WHERE id = ?1",
                    params![appointment.slot.as_str()],
                )
                .map_err(store_err)?;
                if let Some(view) = load_slot(tx, &appointment.slot)?
                    && view.slot.status == SlotStatus::Open
                    && let Some(mut next) = load_many(
                        tx,
                        "slot = ?1 AND status = 'waitlist' ORDER BY seq LIMIT 1",
                        params![appointment.slot.as_str()],
                    )?
                    .into_iter()
                    .next()
                {
                    let queue = view.issued + 1;
                    next.status = AppointmentStatus::Booked;
                    next.queue_number = Some(queue);
                    next.expected_at = Some(view.slot.expected_time(queue));
                    next.updated_at = cancellation.at;
                    tx.execute(
                        "UPDATE hc_appointments SET status = 'booked', queue_number = ?2,
                            expected_at = ?3, updated_at = ?4 WHERE id = ?1",
                        params![
                            next.id.as_str(),
                            i64::from(queue),
                            next.expected_at.map(encode_instant),
                            encode_instant(cancellation.at)
                        ],
                    )
                    .map_err(store_err)?;
                    tx.execute(
                        "UPDATE hc_slots SET booked = booked + 1, issued = issued + 1,
                            waitlisted = waitlisted - 1 WHERE id = ?1",
                        params![appointment.slot.as_str()],
                    )
                    .map_err(store_err)?;
                    promoted = Some(next);
                }
            }
            Ok(CancelDecision::Cancelled {
                cancelled: appointment,
                promoted,
            })
        })
    }

    async fn transition(
        &self,
        id: &AppointmentId,
        from: AppointmentStatus,
        to: AppointmentStatus,
        at: DateTime<Utc>,
    ) -> Result<TransitionDecision, StoreError> {
        self.db.transaction(|tx| {
            let Some(mut appointment) = load_appointment(tx, id)? else {
                return Ok(TransitionDecision::NotFound);
            };
            if appointment.status != from
                || !from.can_move_to(to)
                || from.holds_place() != to.holds_place()
            {
                return Ok(TransitionDecision::WrongState {
                    status: appointment.status,
                });
            }
            tx.execute(
                "UPDATE hc_appointments SET status = ?2, updated_at = ?3 WHERE id = ?1",
                params![id.as_str(), to.code(), encode_instant(at)],
            )
            .map_err(store_err)?;
            appointment.status = to;
            appointment.updated_at = at;
            Ok(TransitionDecision::Moved { appointment })
        })
    }

    async fn appointment(&self, id: &AppointmentId) -> Result<Option<Appointment>, StoreError> {
        let conn = self.db.lock();
        load_appointment(&conn, id)
    }

    async fn appointment_by_key(
        &self,
        patient: &PersonId,
        key: &IdempotencyKey,
    ) -> Result<Option<Appointment>, StoreError> {
        let conn = self.db.lock();
        Ok(load_many(
            &conn,
            "patient = ?1 AND booking_key = ?2",
            params![patient.as_str(), key.as_str()],
        )?
        .into_iter()
        .next())
    }

    async fn patient_appointments(
        &self,
        patient: &PersonId,
    ) -> Result<Vec<Appointment>, StoreError> {
        let conn = self.db.lock();
        load_many(
            &conn,
            "patient = ?1 ORDER BY seq",
            params![patient.as_str()],
        )
    }

    async fn booked_ending_before(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Appointment>, StoreError> {
        let conn = self.db.lock();
        load_many(
            &conn,
            "status = 'booked' AND end_at < ?1 ORDER BY end_at, id LIMIT ?2",
            params![
                encode_instant(before),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
        )
    }
}

fn insurance_ordinal(insurance: Insurance) -> i64 {
    Insurance::ALL
        .iter()
        .position(|i| *i == insurance)
        .map_or(0, |p| p as i64)
}

fn month_code(month: CivilMonth) -> i64 {
    i64::from(month.year) * 100 + i64::from(month.month)
}

fn read_contribution(row: &Row<'_>) -> rusqlite::Result<ContributionRecord> {
    let month: i64 = row.get(2)?;
    let month = i32::try_from(month / 100)
        .ok()
        .and_then(|y| CivilMonth::new(y, u32::try_from(month % 100).ok()?))
        .ok_or_else(|| corrupt(2, format!("bad month {month}")))?;
    let ordinal: i64 = row.get(3)?;
    let insurance = usize::try_from(ordinal)
        .ok()
        .and_then(|i| Insurance::ALL.get(i).copied())
        .ok_or_else(|| corrupt(3, format!("bad insurance {ordinal}")))?;
    let status: String = row.get(8)?;
    Ok(ContributionRecord {
        person: parse_at(row, 0)?,
        employer: parse_at(row, 1)?,
        month,
        insurance,
        base: Money::from_fen(row.get(4)?),
        employer_amount: Money::from_fen(row.get(5)?),
        employee_amount: Money::from_fen(row.get(6)?),
        paid: Money::from_fen(row.get(7)?),
        status: ContributionStatus::from_code(&status)
            .ok_or_else(|| corrupt(8, format!("bad status {status:?}")))?,
    })
}

/// Social insurance records in the citycard database.
#[derive(Debug, Clone)]
pub struct SqliteSocialInsuranceRecords {
    db: Database,
}

impl SqliteSocialInsuranceRecords {
    /// The store on an open database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl SocialInsuranceRecords for SqliteSocialInsuranceRecords {
    async fn put_employer(&self, employer: &Employer) -> Result<(), StoreError> {
        self.db.with(|c| {
            c.execute(
                "INSERT INTO hc_employers (id, name, district) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, district = excluded.district",
                params![employer.id.as_str(), employer.name, employer.district],
            )
        })?;
        Ok(())
    }

    async fn employer(&self, id: &EmployerId) -> Result<Option<Employer>, StoreError> {
        self.db.with(|c| {
            c.query_row(
                "SELECT id, name, district FROM hc_employers WHERE id = ?1",
                params![id.as_str()],
                |r| {
                    Ok(Employer {
                        id: parse_at(r, 0)?,
                        name: r.get(1)?,
                        district: r.get(2)?,
                    })
                },
            )
            .optional()
        })
    }

    async fn put_category(
        &self,
        person: &PersonId,
        category: PersonCategory,
    ) -> Result<(), StoreError> {
        self.db.with(|c| {
            c.execute(
                "INSERT INTO hc_person_categories (person, category) VALUES (?1, ?2)
                 ON CONFLICT (person) DO UPDATE SET category = excluded.category",
                params![person.as_str(), category.code()],
            )
        })?;
        Ok(())
    }

    async fn category(&self, person: &PersonId) -> Result<Option<PersonCategory>, StoreError> {
        self.db.with(|c| {
            let code: Option<String> = c
                .query_row(
                    "SELECT category FROM hc_person_categories WHERE person = ?1",
                    params![person.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            code.map(|code| {
                PersonCategory::from_code(&code)
                    .ok_or_else(|| corrupt(0, format!("bad category {code:?}")))
            })
            .transpose()
        })
    }

    async fn upsert(&self, records: &[ContributionRecord]) -> Result<(), StoreError> {
        self.db.transaction(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO hc_contributions (person, employer, month, insurance, base,
                        employer_amount, employee_amount, paid, status)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (person, month, insurance, employer) DO UPDATE SET
                        base = excluded.base, employer_amount = excluded.employer_amount,
                        employee_amount = excluded.employee_amount, paid = excluded.paid,
                        status = excluded.status",
                )
                .map_err(store_err)?;
            for r in records {
                stmt.execute(params![
                    r.person.as_str(),
                    r.employer.as_str(),
                    month_code(r.month),
                    insurance_ordinal(r.insurance),
                    r.base.fen(),
                    r.employer_amount.fen(),
                    r.employee_amount.fen(),
                    r.paid.fen(),
                    r.status.code(),
                ])
                .map_err(store_err)?;
            }
            Ok(())
        })
    }

    async fn contributions(
        &self,
        person: &PersonId,
        from: Option<CivilMonth>,
        to: Option<CivilMonth>,
    ) -> Result<Vec<ContributionRecord>, StoreError> {
        self.db.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT person, employer, month, insurance, base, employer_amount,
                    employee_amount, paid, status
                 FROM hc_contributions
                 WHERE person = ?1 AND month >= ?2 AND month <= ?3
                 ORDER BY month, insurance, employer",
            )?;
            let rows = stmt.query_map(
                params![
                    person.as_str(),
                    from.map_or(i64::MIN, month_code),
                    to.map_or(i64::MAX, month_code)
                ],
                read_contribution,
            )?;
            rows.collect()
        })
    }
}

fn read_accumulators(
    tx: &rusqlite::Connection,
    person: &PersonId,
    year: i32,
) -> Result<AnnualAccumulators, StoreError> {
    Ok(tx
        .query_row(
            "SELECT deductible_met, fund_paid FROM hc_accumulators WHERE person = ?1 AND year = ?2",
            params![person.as_str(), year],
            |r| {
                Ok(AnnualAccumulators {
                    year,
                    deductible_met: Money::from_fen(r.get(0)?),
                    fund_paid: Money::from_fen(r.get(1)?),
                })
            },
        )
        .optional()
        .map_err(store_err)?
        .unwrap_or(AnnualAccumulators::new(year)))
}

fn write_accumulators(
    tx: &rusqlite::Connection,
    person: &PersonId,
    acc: &AnnualAccumulators,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO hc_accumulators (person, year, deductible_met, fund_paid)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (person, year) DO UPDATE SET deductible_met = excluded.deductible_met,
            fund_paid = excluded.fund_paid",
        params![
            person.as_str(),
            acc.year,
            acc.deductible_met.fen(),
            acc.fund_paid.fen()
        ],
    )
    .map_err(store_err)?;
    Ok(())
}

fn read_settlement(row: &Row<'_>) -> rusqlite::Result<SettlementRecord> {
    let mut record: SettlementRecord =
        serde_json::from_str(&row.get::<_, String>(0)?).map_err(|e| corrupt(0, e))?;
    let status: String = row.get(1)?;
    record.status = SettlementStatus::from_code(&status)
        .ok_or_else(|| corrupt(1, format!("bad settlement status {status:?}")))?;
    record.reversal_key = row
        .get::<_, Option<String>>(2)?
        .map(|k| k.parse().map_err(|e| corrupt(2, e)))
        .transpose()?;
    Ok(record)
}

fn load_settlement(
    tx: &rusqlite::Connection,
    column: &str,
    value: &str,
) -> Result<Option<SettlementRecord>, StoreError> {
    tx.query_row(
        &format!("SELECT record, status, reversal_key FROM hc_settlements WHERE {column} = ?1"),
        params![value],
        read_settlement,
    )
    .optional()
    .map_err(store_err)
}

fn set_status(
    tx: &rusqlite::Connection,
    id: &SettlementId,
    status: SettlementStatus,
    reversal_key: Option<&IdempotencyKey>,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE hc_settlements SET status = ?2, reversal_key = COALESCE(?3, reversal_key)
         WHERE id = ?1",
        params![id.as_str(), status.code(), reversal_key.map(|k| k.as_str())],
    )
    .map_err(store_err)?;
    Ok(())
}

/// Settlement records and annual accumulators in the citycard database.
#[derive(Debug, Clone)]
pub struct SqliteSettlementStore {
    db: Database,
}

impl SqliteSettlementStore {
    /// The store on an open database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl SettlementStore for SqliteSettlementStore {
    async fn accumulators(
        &self,
        person: &PersonId,
        year: i32,
    ) -> Result<AnnualAccumulators, StoreError> {
        let conn = self.db.lock();
        read_accumulators(&conn, person, year)
    }

    async fn begin(&self, record: &SettlementRecord) -> Result<BeginDecision, StoreError> {
        self.db.transaction(|tx| {
            if let Some(existing) = load_settlement(tx, "key", record.key.as_str())? {
                return Ok(BeginDecision::Existing { record: existing });
            }
            let person = &record.request.patient;
            let current = read_accumulators(tx, person, record.accumulators_before.year)?;
            if current != record.accumulators_before {
                return Ok(BeginDecision::Stale { current });
            }
            write_accumulators(tx, person, &record.breakdown.accumulators_after)?;
            let mut stored = record.clone();
            stored.status = SettlementStatus::Pending;
            let json =
                serde_json::to_string(&stored).map_err(|e| StoreError::Internal(e.to_string()))?;
            tx.execute(
                "INSERT INTO hc_settlements (id, key, person, status, reversal_key, record, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    stored.id.as_str(),
                    stored.key.as_str(),
                    person.as_str(),
                    stored.status.code(),
                    stored.reversal_key.as_ref().map(|k| k.as_str()),
                    json,
                    encode_instant(stored.created_at)
                ],
            )
            .map_err(store_err)?;
            Ok(BeginDecision::Started)
        })
    }

    async fn finish(
        &self,
        id: &SettlementId,
        paid: bool,
    ) -> Result<Option<SettlementRecord>, StoreError> {
        self.db.transaction(|tx| {
            let Some(mut record) = load_settlement(tx, "id", id.as_str())? else {
                return Ok(None);
            };
            if record.status != SettlementStatus::Pending {
                return Ok(Some(record));
            }
            if paid {
                record.status = SettlementStatus::Completed;
            } else {
                let person = &record.request.patient;
                let current = read_accumulators(tx, person, record.accumulators_before.year)?;
                write_accumulators(
                    tx,
                    person,
                    &shift_accumulators(current, &record.breakdown, false)?,
                )?;
                record.status = SettlementStatus::Failed;
            }
            set_status(tx, id, record.status, None)?;
            Ok(Some(record))
        })
    }

    async fn begin_reversal(
        &self,
        id: &SettlementId,
        key: &IdempotencyKey,
    ) -> Result<Option<SettlementRecord>, StoreError> {
        self.db.transaction(|tx| {
            let Some(mut record) = load_settlement(tx, "id", id.as_str())? else {
                return Ok(None);
            };
            if record.status == SettlementStatus::Completed {
                record.status = SettlementStatus::Reversing;
                record.reversal_key = Some(key.clone());
                set_status(tx, id, record.status, Some(key))?;
            }
            Ok(Some(record))
        })
    }

    async fn finish_reversal(
        &self,
        id: &SettlementId,
    ) -> Result<Option<SettlementRecord>, StoreError> {
        self.db.transaction(|tx| {
            let Some(mut record) = load_settlement(tx, "id", id.as_str())? else {
                return Ok(None);
            };
            if record.status != SettlementStatus::Reversing {
                return Ok(Some(record));
            }
            let person = &record.request.patient;
            let current = read_accumulators(tx, person, record.accumulators_before.year)?;
            write_accumulators(
                tx,
                person,
                &shift_accumulators(current, &record.breakdown, false)?,
            )?;
            record.status = SettlementStatus::Reversed;
            set_status(tx, id, record.status, None)?;
            Ok(Some(record))
        })
    }

    async fn settlement(&self, id: &SettlementId) -> Result<Option<SettlementRecord>, StoreError> {
        let conn = self.db.lock();
        load_settlement(&conn, "id", id.as_str())
    }
}
