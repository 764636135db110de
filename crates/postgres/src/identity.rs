//! The identity stores on PostgreSQL: persons (ciphertext and blind index
//! only) and platform accounts with their failed-verification counters.

use async_trait::async_trait;
use chrono::NaiveDate;
use citycard_core::{CoreChanges, PersonId, Platform, PlatformAccountId, StoreError};
use citycard_identity::{
    BlindIndex, Envelope, PendingFaceCheck, Person, PersonStore, PersonWrite, PlatformAccount,
    PlatformAccountStore, RealNameLevel,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::db::{
    Database, Isolation, Migration, SqlResult, corrupt, decode_instant, encode_instant,
};
use crate::transaction;

/// The schema of the identity component (the SQLite store's, in PostgreSQL types).
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    component: "identity",
    version: 1,
    sql: "
        CREATE TABLE identity_persons (
            id                 TEXT PRIMARY KEY,
            masked_name        TEXT NOT NULL,
            name_envelope      TEXT NOT NULL,
            masked_id_number   TEXT NOT NULL,
            id_number_envelope TEXT NOT NULL,
            id_number_index    TEXT NOT NULL UNIQUE,
            level              TEXT NOT NULL,
            verified_at        BIGINT,
            created_at         BIGINT NOT NULL
        );
        CREATE TABLE identity_platform_accounts (
            id           TEXT PRIMARY KEY,
            platform     TEXT NOT NULL,
            external_id  TEXT NOT NULL,
            person_id    TEXT,
            level        TEXT NOT NULL,
            verified_at  BIGINT,
            pending_face TEXT,
            created_at   BIGINT NOT NULL,
            UNIQUE (platform, external_id)
        );
        CREATE INDEX identity_platform_accounts_person ON identity_platform_accounts (person_id, id);
        CREATE TABLE identity_verification_failures (
            account_id TEXT NOT NULL,
            day        TEXT NOT NULL,
            count      BIGINT NOT NULL,
            PRIMARY KEY (account_id, day)
        );
    ",
}];

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Internal(e.to_string()))
}

fn level_of(code: &str) -> Result<RealNameLevel, StoreError> {
    RealNameLevel::from_code(code).ok_or_else(|| corrupt(format!("bad level {code:?}")))
}

fn instant_of(micros: Option<i64>) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
    micros.map(decode_instant).transpose()
}

const PERSON_COLUMNS: &str = "id, masked_name, name_envelope, masked_id_number, id_number_envelope, id_number_index, level, verified_at, created_at";

fn read_person(r: &PgRow) -> Result<Person, StoreError> {
    let id: String = r.try_get(0).st()?;
    let index: String = r.try_get(5).st()?;
    let name: String = r.try_get(2).st()?;
    let number: String = r.try_get(4).st()?;
    Ok(Person {
        id: PersonId::parse(&id).map_err(corrupt)?,
        masked_name: r.try_get(1).st()?,
        name: serde_json::from_str::<Envelope>(&name).map_err(corrupt)?,
        masked_id_number: r.try_get(3).st()?,
        id_number: serde_json::from_str::<Envelope>(&number).map_err(corrupt)?,
        id_number_index: BlindIndex::from_hex(&index).ok_or_else(|| corrupt("bad blind index"))?,
        level: level_of(&r.try_get::<String, _>(6).st()?)?,
        verified_at: instant_of(r.try_get(7).st()?)?,
        created_at: decode_instant(r.try_get(8).st()?)?,
    })
}

/// Persons in the citycard database: only envelopes, masked forms and the
/// blind index are stored, never plaintext. The blind index is unique, so
/// two instances enrolling one person concurrently cannot both succeed.
#[derive(Debug, Clone)]
pub struct PgPersonStore {
    db: Database,
}

impl PgPersonStore {
    /// The store on a connected database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// Writes a person: an insert, or an update (`false` when there is none with that id).
async fn write_person(
    conn: &mut PgConnection,
    person: &Person,
    insert: bool,
) -> Result<bool, StoreError> {
    let sql = if insert {
        "INSERT INTO identity_persons (id, masked_name, name_envelope, masked_id_number, id_number_envelope, id_number_index, level, verified_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    } else {
        "UPDATE identity_persons SET masked_name = $2, name_envelope = $3, masked_id_number = $4,
            id_number_envelope = $5, id_number_index = $6, level = $7, verified_at = $8, created_at = $9
         WHERE id = $1"
    };
    let changed = sqlx::query(sql)
        .bind(person.id.as_str())
        .bind(&person.masked_name)
        .bind(to_json(&person.name)?)
        .bind(&person.masked_id_number)
        .bind(to_json(&person.id_number)?)
        .bind(person.id_number_index.to_hex())
        .bind(person.level.code())
        .bind(person.verified_at.map(encode_instant))
        .bind(encode_instant(person.created_at))
        .execute(conn)
        .await
        .st()?
        .rows_affected();
    Ok(changed == 1)
}

#[async_trait]
impl PersonStore for PgPersonStore {
    async fn commit(&self, person: &PersonWrite, core: &CoreChanges) -> Result<(), StoreError> {
        transaction!(self.db, Isolation::ReadCommitted, |tx| {
            match person {
                PersonWrite::Insert(p) => {
                    write_person(&mut tx, p, true).await?;
                }
                PersonWrite::Update(p) => {
                    if !write_person(&mut tx, p, false).await? {
                        return Err(StoreError::Conflict(format!("person {} is gone", p.id)));
                    }
                }
                PersonWrite::Unchanged => {}
            }
            crate::write_core_changes(&mut tx, core).await
        })
    }

    async fn commit_all(
        &self,
        persons: &[PersonWrite],
        core: &CoreChanges,
    ) -> Result<(), StoreError> {
        transaction!(self.db, Isolation::ReadCommitted, |tx| {
            for person in persons {
                match person {
                    PersonWrite::Insert(p) => {
                        write_person(&mut tx, p, true).await?;
                    }
                    PersonWrite::Update(p) => {
                        if !write_person(&mut tx, p, false).await? {
                            return Err(StoreError::Conflict(format!("person {} is gone", p.id)));
                        }
                    }
                    PersonWrite::Unchanged => {}
                }
            }
            crate::write_core_changes(&mut tx, core).await
        })
    }

    async fn insert(&self, person: &Person) -> Result<(), StoreError> {
        let mut conn = self.db.pool().acquire().await.st()?;
        write_person(&mut conn, person, true).await.map(|_| ())
    }

    async fn update(&self, person: &Person) -> Result<bool, StoreError> {
        let mut conn = self.db.pool().acquire().await.st()?;
        write_person(&mut conn, person, false).await
    }

    async fn get(&self, id: &PersonId) -> Result<Option<Person>, StoreError> {
        sqlx::query(&format!(
            "SELECT {PERSON_COLUMNS} FROM identity_persons WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(self.db.pool())
        .await
        .st()?
        .as_ref()
        .map(read_person)
        .transpose()
    }

    async fn find_by_id_number_index(
        &self,
        index: &BlindIndex,
    ) -> Result<Option<Person>, StoreError> {
        sqlx::query(&format!(
            "SELECT {PERSON_COLUMNS} FROM identity_persons WHERE id_number_index = $1"
        ))
        .bind(index.to_hex())
        .fetch_optional(self.db.pool())
        .await
        .st()?
        .as_ref()
        .map(read_person)
        .transpose()
    }

    async fn list(
        &self,
        after: Option<&PersonId>,
        limit: usize,
    ) -> Result<Vec<Person>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        sqlx::query(&format!(
            "SELECT {PERSON_COLUMNS} FROM identity_persons
             WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2"
        ))
        .bind(after.map(PersonId::as_str))
        .bind(limit)
        .fetch_all(self.db.pool())
        .await
        .st()?
        .iter()
        .map(read_person)
        .collect()
    }
}

const ACCOUNT_COLUMNS: &str =
    "id, platform, external_id, person_id, level, verified_at, pending_face, created_at";

fn read_account(r: &PgRow) -> Result<PlatformAccount, StoreError> {
    let id: String = r.try_get(0).st()?;
    let platform: String = r.try_get(1).st()?;
    let person: Option<String> = r.try_get(3).st()?;
    let pending: Option<String> = r.try_get(6).st()?;
    Ok(PlatformAccount {
        id: PlatformAccountId::parse(&id).map_err(corrupt)?,
        platform: Platform::from_code(&platform),
        external_id: r.try_get(2).st()?,
        person: person
            .map(|p| PersonId::parse(&p).map_err(corrupt))
            .transpose()?,
        level: level_of(&r.try_get::<String, _>(4).st()?)?,
        verified_at: instant_of(r.try_get(5).st()?)?,
        pending_face: pending
            .map(|p| serde_json::from_str::<PendingFaceCheck>(&p).map_err(corrupt))
            .transpose()?,
        created_at: decode_instant(r.try_get(7).st()?)?,
    })
}

/// Platform accounts in the citycard database.
#[derive(Debug, Clone)]
pub struct PgPlatformAccountStore {
    db: Database,
}

impl PgPlatformAccountStore {
    /// The store on a connected database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    async fn write(&self, account: &PlatformAccount, insert: bool) -> Result<bool, StoreError> {
        let pending = account.pending_face.as_ref().map(to_json).transpose()?;
        let sql = if insert {
            "INSERT INTO identity_platform_accounts (id, platform, external_id, person_id, level, verified_at, pending_face, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        } else {
            "UPDATE identity_platform_accounts SET platform = $2, external_id = $3, person_id = $4,
                level = $5, verified_at = $6, pending_face = $7, created_at = $8
             WHERE id = $1"
        };
        let changed = sqlx::query(sql)
            .bind(account.id.as_str())
            .bind(account.platform.code())
            .bind(&account.external_id)
            .bind(account.person.as_ref().map(PersonId::as_str))
            .bind(account.level.code())
            .bind(account.verified_at.map(encode_instant))
            .bind(pending)
            .bind(encode_instant(account.created_at))
            .execute(self.db.pool())
            .await
            .st()?
            .rows_affected();
        Ok(changed == 1)
    }
}

#[async_trait]
impl PlatformAccountStore for PgPlatformAccountStore {
    async fn insert(&self, account: &PlatformAccount) -> Result<(), StoreError> {
        self.write(account, true).await.map(|_| ())
    }

    async fn update(&self, account: &PlatformAccount) -> Result<bool, StoreError> {
        self.write(account, false).await
    }

    async fn get(&self, id: &PlatformAccountId) -> Result<Option<PlatformAccount>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM identity_platform_accounts WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(self.db.pool())
        .await
        .st()?
        .as_ref()
        .map(read_account)
        .transpose()
    }

    async fn find_external(
        &self,
        platform: &Platform,
        external_id: &str,
    ) -> Result<Option<PlatformAccount>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM identity_platform_accounts
             WHERE platform = $1 AND external_id = $2"
        ))
        .bind(platform.code())
        .bind(external_id)
        .fetch_optional(self.db.pool())
        .await
        .st()?
        .as_ref()
        .map(read_account)
        .transpose()
    }

    async fn list_for_person(&self, person: &PersonId) -> Result<Vec<PlatformAccount>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM identity_platform_accounts WHERE person_id = $1 ORDER BY id"
        ))
        .bind(person.as_str())
        .fetch_all(self.db.pool())
        .await
        .st()?
        .iter()
        .map(read_account)
        .collect()
    }

    async fn reserve_attempt(
        &self,
        id: &PlatformAccountId,
        day: NaiveDate,
        limit: u32,
    ) -> Result<Option<u32>, StoreError> {
        if limit == 0 {
            return Ok(None);
        }
        // One statement: the conditional upsert returns no row when the limit
        // is reached, and the row lock of the upsert orders concurrent attempts.
        let count: Option<i64> = sqlx::query_scalar(
            "INSERT INTO identity_verification_failures AS f (account_id, day, count) VALUES ($1, $2, 1)
             ON CONFLICT (account_id, day) DO UPDATE SET count = f.count + 1 WHERE f.count < $3
             RETURNING count",
        )
        .bind(id.as_str())
        .bind(day.to_string())
        .bind(i64::from(limit))
        .fetch_optional(self.db.pool())
        .await
        .st()?;
        Ok(count.map(|c| u32::try_from(c).unwrap_or(u32::MAX)))
    }

    async fn release_attempt(
        &self,
        id: &PlatformAccountId,
        day: NaiveDate,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE identity_verification_failures SET count = count - 1
             WHERE account_id = $1 AND day = $2 AND count > 0",
        )
        .bind(id.as_str())
        .bind(day.to_string())
        .execute(self.db.pool())
        .await
        .st()?;
        Ok(())
    }

    async fn failed_attempts(
        &self,
        id: &PlatformAccountId,
        day: NaiveDate,
    ) -> Result<u32, StoreError> {
        let count: Option<i64> = sqlx::query_scalar(
            "SELECT count FROM identity_verification_failures WHERE account_id = $1 AND day = $2",
        )
        .bind(id.as_str())
        .bind(day.to_string())
        .fetch_optional(self.db.pool())
        .await
        .st()?;
        Ok(count.map_or(0, |c| u32::try_from(c).unwrap_or(u32::MAX)))
    }
}
