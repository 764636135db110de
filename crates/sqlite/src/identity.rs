//! The identity stores on SQLite: persons (ciphertext and blind index only)
//! and platform accounts with their failed-verification counters.

use async_trait::async_trait;
use chrono::NaiveDate;
use citycard_core::{CoreChanges, PersonId, Platform, PlatformAccountId, StoreError};
use citycard_identity::{
    BlindIndex, Envelope, PendingFaceCheck, Person, PersonStore, PersonWrite, PlatformAccount,
    PlatformAccountStore, RealNameLevel,
};
use rusqlite::{OptionalExtension, Row, params};

use crate::db::{Database, Migration, corrupt, decode_instant, encode_instant};

/// The schema of the identity component.
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
            verified_at        INTEGER,
            created_at         INTEGER NOT NULL
        );
        CREATE TABLE identity_platform_accounts (
            id           TEXT PRIMARY KEY,
            platform     TEXT NOT NULL,
            external_id  TEXT NOT NULL,
            person_id    TEXT,
            level        TEXT NOT NULL,
            verified_at  INTEGER,
            pending_face TEXT,
            created_at   INTEGER NOT NULL,
            UNIQUE (platform, external_id)
        );
        CREATE INDEX identity_platform_accounts_person ON identity_platform_accounts (person_id, id);
        CREATE TABLE identity_verification_failures (
            account_id TEXT NOT NULL,
            day        TEXT NOT NULL,
            count      INTEGER NOT NULL,
            PRIMARY KEY (account_id, day)
        );
    ",
}];

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Internal(e.to_string()))
}

fn level_of(column: usize, code: &str) -> rusqlite::Result<RealNameLevel> {
    RealNameLevel::from_code(code).ok_or_else(|| corrupt(column, format!("bad level {code:?}")))
}

fn json_of<T: serde::de::DeserializeOwned>(column: usize, text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(|e| corrupt(column, e))
}

fn instant_of(
    column: usize,
    micros: Option<i64>,
) -> rusqlite::Result<Option<chrono::DateTime<chrono::Utc>>> {
    micros
        .map(|m| decode_instant(m).map_err(|e| corrupt(column, e)))
        .transpose()
}

const PERSON_COLUMNS: &str = "id, masked_name, name_envelope, masked_id_number, id_number_envelope, id_number_index, level, verified_at, created_at";

fn read_person(r: &Row<'_>) -> rusqlite::Result<Person> {
    let id: String = r.get(0)?;
    let index: String = r.get(5)?;
    Ok(Person {
        id: PersonId::parse(&id).map_err(|e| corrupt(0, e))?,
        masked_name: r.get(1)?,
        name: json_of::<Envelope>(2, &r.get::<_, String>(2)?)?,
        masked_id_number: r.get(3)?,
        id_number: json_of::<Envelope>(4, &r.get::<_, String>(4)?)?,
        id_number_index: BlindIndex::from_hex(&index)
            .ok_or_else(|| corrupt(5, "bad blind index"))?,
        level: level_of(6, &r.get::<_, String>(6)?)?,
        verified_at: instant_of(7, r.get(7)?)?,
        created_at: instant_of(8, Some(r.get(8)?))?.unwrap_or_default(),
    })
}

/// Persons in the citycard database: only envelopes, masked forms and the
/// blind index are stored, never plaintext.
#[derive(Debug, Clone)]
pub struct SqlitePersonStore {
    db: Database,
}

impl SqlitePersonStore {
    /// The store on an open database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// Inserts a person on `conn` (inside the caller's transaction, if any).
fn insert_person(conn: &rusqlite::Connection, person: &Person) -> Result<(), StoreError> {
    let name = to_json(&person.name)?;
    let number = to_json(&person.id_number)?;
    conn.prepare_cached(
        "INSERT INTO identity_persons (id, masked_name, name_envelope, masked_id_number, id_number_envelope, id_number_index, level, verified_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut stmt| stmt.execute(params![
            person.id.as_str(),
            person.masked_name,
            name,
            person.masked_id_number,
            number,
            person.id_number_index.to_hex(),
            person.level.code(),
            person.verified_at.map(encode_instant),
            encode_instant(person.created_at),
        ]))
    .map_err(|e| crate::to_store_error(&e))?;
    Ok(())
}

/// Replaces a stored person on `conn`; `false` when there is none with that id.
fn update_person(conn: &rusqlite::Connection, person: &Person) -> Result<bool, StoreError> {
    let name = to_json(&person.name)?;
    let number = to_json(&person.id_number)?;
    let changed = conn
        .prepare_cached(
            "UPDATE identity_persons SET masked_name = ?2, name_envelope = ?3, masked_id_number = ?4,
                id_number_envelope = ?5, id_number_index = ?6, level = ?7, verified_at = ?8, created_at = ?9
             WHERE id = ?1",
        )
        .and_then(|mut stmt| stmt.execute(params![
            person.id.as_str(),
            person.masked_name,
            name,
            person.masked_id_number,
            number,
            person.id_number_index.to_hex(),
            person.level.code(),
            person.verified_at.map(encode_instant),
            encode_instant(person.created_at),
        ]))
        .map_err(|e| crate::to_store_error(&e))?;
    Ok(changed == 1)
}

#[async_trait]
impl PersonStore for SqlitePersonStore {
    async fn commit(&self, person: &PersonWrite, core: &CoreChanges) -> Result<(), StoreError> {
        self.db.transaction(|tx| {
            match person {
                PersonWrite::Insert(p) => insert_person(tx, p)?,
                PersonWrite::Update(p) => {
                    if !update_person(tx, p)? {
                        return Err(StoreError::Conflict(format!("person {} is gone", p.id)));
                    }
                }
                PersonWrite::Unchanged => {}
            }
            crate::write_core_changes(tx, core)
        })
    }

    async fn commit_all(
        &self,
        persons: &[PersonWrite],
        core: &CoreChanges,
    ) -> Result<(), StoreError> {
        self.db.transaction(|tx| {
            for person in persons {
                match person {
                    PersonWrite::Insert(p) => insert_person(tx, p)?,
                    PersonWrite::Update(p) => {
                        if !update_person(tx, p)? {
                            return Err(StoreError::Conflict(format!("person {} is gone", p.id)));
                        }
                    }
                    PersonWrite::Unchanged => {}
                }
            }
            crate::write_core_changes(tx, core)
        })
    }

    async fn insert(&self, person: &Person) -> Result<(), StoreError> {
        let conn = self.db.lock();
        insert_person(&conn, person)
    }

    async fn update(&self, person: &Person) -> Result<bool, StoreError> {
        let conn = self.db.lock();
        update_person(&conn, person)
    }

    async fn get(&self, id: &PersonId) -> Result<Option<Person>, StoreError> {
        self.db.with(|c| {
            c.query_row(
                &format!("SELECT {PERSON_COLUMNS} FROM identity_persons WHERE id = ?1"),
                [id.as_str()],
                read_person,
            )
            .optional()
        })
    }

    async fn find_by_id_number_index(
        &self,
        index: &BlindIndex,
    ) -> Result<Option<Person>, StoreError> {
        self.db.with(|c| {
            c.query_row(
                &format!(
                    "SELECT {PERSON_COLUMNS} FROM identity_persons WHERE id_number_index = ?1"
                ),
                [index.to_hex()],
                read_person,
            )
            .optional()
        })
    }

    async fn list(
        &self,
        after: Option<&PersonId>,
        limit: usize,
    ) -> Result<Vec<Person>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db.with(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {PERSON_COLUMNS} FROM identity_persons WHERE (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![after.map(PersonId::as_str), limit], read_person)?;
            rows.collect()
        })
    }
}

const ACCOUNT_COLUMNS: &str =
    "id, platform, external_id, person_id, level, verified_at, pending_face, created_at";

fn read_account(r: &Row<'_>) -> rusqlite::Result<PlatformAccount> {
    let id: String = r.get(0)?;
    let platform: String = r.get(1)?;
    let person: Option<String> = r.get(3)?;
    let pending: Option<String> = r.get(6)?;
    Ok(PlatformAccount {
        id: PlatformAccountId::parse(&id).map_err(|e| corrupt(0, e))?,
        platform: Platform::from_code(&platform),
        external_id: r.get(2)?,
        person: person
            .map(|p| PersonId::parse(&p).map_err(|e| corrupt(3, e)))
            .transpose()?,
        level: level_of(4, &r.get::<_, String>(4)?)?,
        verified_at: instant_of(5, r.get(5)?)?,
        pending_face: pending
            .map(|p| json_of::<PendingFaceCheck>(6, &p))
            .transpose()?,
        created_at: instant_of(7, Some(r.get(7)?))?.unwrap_or_default(),
    })
}

/// Platform accounts in the citycard database.
#[derive(Debug, Clone)]
pub struct SqlitePlatformAccountStore {
    db: Database,
}

impl SqlitePlatformAccountStore {
    /// The store on an open database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl PlatformAccountStore for SqlitePlatformAccountStore {
    async fn insert(&self, account: &PlatformAccount) -> Result<(), StoreError> {
        let pending = account.pending_face.as_ref().map(to_json).transpose()?;
        self.db.with(|c| {
            c.execute(
                "INSERT INTO identity_platform_accounts (id, platform, external_id, person_id, level, verified_at, pending_face, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    account.id.as_str(),
                    account.platform.code(),
                    account.external_id,
                    account.person.as_ref().map(PersonId::as_str),
                    account.level.code(),
                    account.verified_at.map(encode_instant),
                    pending,
                    encode_instant(account.created_at),
                ],
            )?;
            Ok(())
        })
    }

    async fn update(&self, account: &PlatformAccount) -> Result<bool, StoreError> {
        let pending = account.pending_face.as_ref().map(to_json).transpose()?;
        self.db.with(|c| {
            let changed = c.execute(
                "UPDATE identity_platform_accounts SET platform = ?2, external_id = ?3, person_id = ?4,
                    level = ?5, verified_at = ?6, pending_face = ?7, created_at = ?8
                 WHERE id = ?1",
                params![
                    account.id.as_str(),
                    account.platform.code(),
                    account.external_id,
                    account.person.as_ref().map(PersonId::as_str),
                    account.level.code(),
                    account.verified_at.map(encode_instant),
                    pending,
                    encode_instant(account.created_at),
                ],
            )?;
            Ok(changed == 1)
        })
    }

    async fn get(&self, id: &PlatformAccountId) -> Result<Option<PlatformAccount>, StoreError> {
        self.db.with(|c| {
            c.query_row(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM identity_platform_accounts WHERE id = ?1"),
                [id.as_str()],
                read_account,
            )
            .optional()
        })
    }

    async fn find_external(
        &self,
        platform: &Platform,
        external_id: &str,
    ) -> Result<Option<PlatformAccount>, StoreError> {
        self.db.with(|c| {
            c.query_row(
                &format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM identity_platform_accounts WHERE platform = ?1 AND external_id = ?2"
                ),
                params![platform.code(), external_id],
                read_account,
            )
            .optional()
        })
    }

    async fn list_for_person(&self, person: &PersonId) -> Result<Vec<PlatformAccount>, StoreError> {
        self.db.with(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM identity_platform_accounts WHERE person_id = ?1 ORDER BY id"
            ))?;
            let rows = stmt.query_map([person.as_str()], read_account)?;
            rows.collect()
        })
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
        self.db.transaction(|tx| {
            // The conditional upsert returns no row when the limit is reached.
            tx.query_row(
                "INSERT INTO identity_verification_failures (account_id, day, count) VALUES (?1, ?2, 1)
                 ON CONFLICT (account_id, day) DO UPDATE SET count = count + 1 WHERE count < ?3
                 RETURNING count",
                params![id.as_str(), day.to_string(), i64::from(limit)],
                |r| r.get::<_, u32>(0),
            )
            .optional()
            .map_err(|e| crate::to_store_error(&e))
        })
    }

    async fn release_attempt(
        &self,
        id: &PlatformAccountId,
        day: NaiveDate,
    ) -> Result<(), StoreError> {
        self.db.with(|c| {
            c.execute(
                "UPDATE identity_verification_failures SET count = count - 1
                 WHERE account_id = ?1 AND day = ?2 AND count > 0",
                params![id.as_str(), day.to_string()],
            )?;
            Ok(())
        })
    }

    async fn failed_attempts(
        &self,
        id: &PlatformAccountId,
        day: NaiveDate,
    ) -> Result<u32, StoreError> {
        self.db.with(|c| {
            Ok(c.query_row(
                "SELECT count FROM identity_verification_failures WHERE account_id = ?1 AND day = ?2",
                params![id.as_str(), day.to_string()],
                |r| r.get::<_, u32>(0),
            )
            .optional()?
            .unwrap_or(0))
        })
    }
}
