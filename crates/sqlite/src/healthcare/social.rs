//! Social insurance records: employers, person categories and monthly contributions.

use async_trait::async_trait;
use citycard_core::{CivilMonth, Money, PersonId, StoreError};
use citycard_healthcare::{
    ContributionRecord, ContributionStatus, Employer, EmployerId, Insurance, PersonCategory,
    SocialInsuranceRecords,
};
use rusqlite::{OptionalExtension, Row, params};

use super::{parse_at, store_err};
use crate::db::{Database, corrupt};

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
        self.db.read(|c| {
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
        self.db.read(|c| {
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
        self.db.read(|c| {
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
