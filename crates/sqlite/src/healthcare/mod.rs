//! The healthcare stores on SQLite: slots and appointments, settlement records and
//! accumulators, social insurance records.
//!
//! The stores decide nothing: a plan decided by `citycard-healthcare` is committed in one
//! `IMMEDIATE` transaction with its core records ([`crate::write_core_changes`]) after its
//! preconditions are checked (a slot's or a patient's version, a settlement's status, the
//! accumulators' values); a stale plan is refused as [`StoreError::Conflict`] and nothing
//! is written. Reads go through [`Database::read`](crate::Database::read).

use citycard_core::StoreError;
use rusqlite::Row;

use crate::db::{Migration, corrupt};

mod appointments;
mod settlements;
mod social;

pub use appointments::SqliteAppointmentStore;
pub use settlements::SqliteSettlementStore;
pub use social::SqliteSocialInsuranceRecords;

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
    Migration {
        component: "healthcare",
        version: 3,
        sql: "
        ALTER TABLE hc_slots ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE hc_patients (
            patient TEXT PRIMARY KEY,
            version INTEGER NOT NULL
        );
    ",
    },
];

fn parse_at<T: std::str::FromStr>(row: &Row<'_>, i: usize) -> rusqlite::Result<T>
where
    T::Err: std::fmt::Display,
{
    row.get::<_, String>(i)?.parse().map_err(|e| corrupt(i, e))
}

fn store_err(e: rusqlite::Error) -> StoreError {
    crate::to_store_error(&e)
}
