//! The binding stores on SQLite: cards, bindings (with mismatch records) and delegations.
//!
//! Each record is kept whole as JSON in `data`, beside the columns that are
//! looked up or constrained. "At most one live binding per card per platform
//! account" is a partial unique index, so the database enforces it
//! atomically. ID numbers never reach these tables: cards carry only the
//! blind index.
//!
//! Every write of the card service is one [`SqliteCardChangeStore::commit`]:
//! the change set's rows ([`write_card_changes`]) and its core records in one
//! transaction. The adapter checks preconditions (unique keys, the versions
//! the decision read) and maps a failed one to `StoreError::Conflict`, which
//! rolls the whole transaction back; it decides nothing. Reads run on the
//! database's reader connections.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use citycard_binding::{
    Binding, BindingId, BindingStore, Card, CardChangeStore, CardChanges, CardId, CardNumber,
    CardStore, Delegation, DelegationStore, Mismatch,
};
use citycard_core::{CoreChanges, DelegationId, PersonId, Platform, PlatformAccountId, StoreError};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::db::{Database, Migration, decode_instant, encode_instant, to_store_error};

/// The schema of the binding component.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    component: "binding",
    version: 1,
    sql: "
        CREATE TABLE binding_cards (
            seq      INTEGER PRIMARY KEY AUTOINCREMENT,
            id       TEXT NOT NULL UNIQUE,
            number   TEXT NOT NULL UNIQUE,
            holder   TEXT NOT NULL,
            version  BIGINT NOT NULL,
            data     TEXT NOT NULL
        );
        CREATE INDEX binding_cards_holder ON binding_cards (holder, seq);
        CREATE TABLE binding_bindings (
            seq      INTEGER PRIMARY KEY AUTOINCREMENT,
            id       TEXT NOT NULL UNIQUE,
            card_id  TEXT NOT NULL,
            platform TEXT NOT NULL,
            account  TEXT NOT NULL,
            state    TEXT NOT NULL CHECK (state IN ('pending', 'active', 'suspended', 'removed')),
            version  BIGINT NOT NULL,
            data     TEXT NOT NULL
        );
        CREATE UNIQUE INDEX binding_bindings_one_live
            ON binding_bindings (card_id, platform, account) WHERE state <> 'removed';
        CREATE INDEX binding_bindings_card ON binding_bindings (card_id, seq);
        CREATE INDEX binding_bindings_account ON binding_bindings (platform, account, seq);
        CREATE INDEX binding_bindings_state ON binding_bindings (state, seq);
        CREATE TABLE binding_mismatches (
            platform TEXT NOT NULL,
            account  TEXT NOT NULL,
            at       BIGINT NOT NULL
        );
        CREATE INDEX binding_mismatches_account ON binding_mismatches (platform, account, at);
        CREATE TABLE binding_delegations (
            seq        INTEGER PRIMARY KEY AUTOINCREMENT,
            id         TEXT NOT NULL UNIQUE,
            cardholder TEXT NOT NULL,
            data       TEXT NOT NULL
        );
        CREATE INDEX binding_delegations_cardholder ON binding_delegations (cardholder, seq);
    ",
}];

fn sql(e: rusqlite::Error) -> StoreError {
    to_store_error(&e)
}

fn encode<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Internal(e.to_string()))
}

fn decode<T: DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode_all<T: DeserializeOwned>(rows: Vec<String>) -> Result<Vec<T>, StoreError> {
    rows.iter().map(|r| decode(r)).collect()
}

fn version_param(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version).map_err(|_| StoreError::Internal("version out of range".into()))
}

/// The `data` column of every row `statement` selects, read on a reader
/// connection (WAL: the last committed state, without waiting for the writer).
fn query_data(
    db: &Database,
    statement: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<String>, StoreError> {
    db.read(|conn| {
        let mut stmt = conn.prepare_cached(statement)?;
        let rows = stmt.query_map(params, |r| r.get::<_, String>(0))?;
        rows.collect::<Result<Vec<_>, _>>()
    })
}

fn conflict(what: String) -> StoreError {
    StoreError::Conflict(what)
}

fn insert_card(c: &Connection, card: &Card) -> Result<(), StoreError> {
    let (version, data) = (version_param(card.version)?, encode(card)?);
    c.prepare_cached(
        "INSERT INTO binding_cards (id, number, holder, version, data) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            card.id.as_str(),
            card.number.as_str(),
            card.holder.as_str(),
            version,
            data
        ])
    })
    .map_err(sql)?;
    Ok(())
}

/// Writes `card` (read at `card.version`) with its version bumped, if unchanged since.
fn update_card(c: &Connection, card: &Card) -> Result<Card, StoreError> {
    let mut next = card.clone();
    next.version += 1;
    let data = encode(&next)?;
    let (new_version, old_version) = (version_param(next.version)?, version_param(card.version)?);
    let changed = c
        .prepare_cached(
            "UPDATE binding_cards SET version = ?1, data = ?2, holder = ?3
             WHERE id = ?4 AND version = ?5 AND number = ?6",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                new_version,
                data,
                next.holder.as_str(),
                card.id.as_str(),
                old_version,
                card.number.as_str()
            ])
        })
        .map_err(sql)?;
    if changed != 1 {
        return Err(conflict(format!(
            "card {} is missing or was changed concurrently",
            card.id
        )));
    }
    Ok(next)
}

fn expect_version(c: &Connection, table: &str, id: &str, version: u64) -> Result<(), StoreError> {
    let stored: Option<i64> = c
        .prepare_cached(&format!("SELECT version FROM {table} WHERE id = ?1"))
        .and_then(|mut stmt| stmt.query_row([id], |r| r.get(0)).optional())
        .map_err(sql)?;
    if stored != Some(version_param(version)?) {
        return Err(conflict(format!(
            "{id} is missing or was changed concurrently"
        )));
    }
    Ok(())
}

fn insert_binding(c: &Connection, binding: &Binding) -> Result<(), StoreError> {
    let data = encode(binding)?;
    let version = version_param(binding.version)?;
    c.prepare_cached(
        "INSERT INTO binding_bindings (id, card_id, platform, account, state, version, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            binding.id.as_str(),
            binding.card.as_str(),
            binding.platform.code(),
            binding.account.as_str(),
            binding.state.code(),
            version,
            data
        ])
    })
    .map_err(sql)?;
    Ok(())
}

/// Writes `binding` (read at `binding.version`) with its version bumped, if unchanged since.
fn update_binding(c: &Connection, binding: &Binding) -> Result<Binding, StoreError> {
    let mut next = binding.clone();
    next.version += 1;
    let data = encode(&next)?;
    let (new_version, old_version) = (
        version_param(next.version)?,
        version_param(binding.version)?,
    );
    let changed = c
        .prepare_cached(
            "UPDATE binding_bindings
             SET card_id = ?1, platform = ?2, account = ?3, state = ?4, version = ?5, data = ?6
             WHERE id = ?7 AND version = ?8",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                binding.card.as_str(),
                binding.platform.code(),
                binding.account.as_str(),
                binding.state.code(),
                new_version,
                data,
                binding.id.as_str(),
                old_version
            ])
        })
        .map_err(sql)?;
    if changed != 1 {
        return Err(conflict(format!(
            "binding {} is missing or was changed concurrently",
            binding.id
        )));
    }
    Ok(next)
}

fn record_mismatch(c: &Connection, m: &Mismatch) -> Result<(), StoreError> {
    c.prepare_cached("INSERT INTO binding_mismatches (platform, account, at) VALUES (?1, ?2, ?3)")
        .and_then(|mut stmt| {
            stmt.execute(params![
                m.platform.code(),
                m.account.as_str(),
                encode_instant(m.at)
            ])
        })
        .map_err(sql)?;
    Ok(())
}

fn insert_delegation(c: &Connection, delegation: &Delegation) -> Result<(), StoreError> {
    let data = encode(delegation)?;
    c.prepare_cached("INSERT INTO binding_delegations (id, cardholder, data) VALUES (?1, ?2, ?3)")
        .and_then(|mut stmt| {
            stmt.execute(params![
                delegation.id.as_str(),
                delegation.cardholder.as_str(),
                data
            ])
        })
        .map_err(sql)?;
    Ok(())
}

/// Marks a grant revoked at `at`, keeping an earlier revocation; `None` if it does not exist.
fn revoke(
    c: &Connection,
    id: &DelegationId,
    at: DateTime<Utc>,
) -> Result<Option<Delegation>, StoreError> {
    let data: Option<String> = c
        .prepare_cached("SELECT data FROM binding_delegations WHERE id = ?1")
        .and_then(|mut stmt| stmt.query_row([id.as_str()], |r| r.get(0)).optional())
        .map_err(sql)?;
    let Some(data) = data else {
        return Ok(None);
    };
    let mut grant: Delegation = decode(&data)?;
    if grant.revoked_at.is_none() {
        grant.revoked_at = Some(at);
        let data = encode(&grant)?;
        c.prepare_cached("UPDATE binding_delegations SET data = ?1 WHERE id = ?2")
            .and_then(|mut stmt| stmt.execute(params![data, id.as_str()]))
            .map_err(sql)?;
    }
    Ok(Some(grant))
}

/// Writes a card change set inside the caller's transaction: preconditions
/// first, then changed rows before new ones (a binding leaving the live set
/// frees its slot for a new one). A failed precondition or unique key is a
/// `StoreError::Conflict`; the caller's transaction then rolls back.
pub fn write_card_changes(tx: &Transaction<'_>, changes: &CardChanges) -> Result<(), StoreError> {
    for (id, version) in &changes.card_versions {
        expect_version(tx, "binding_cards", id.as_str(), *version)?;
    }
    for (id, version) in &changes.binding_versions {
        expect_version(tx, "binding_bindings", id.as_str(), *version)?;
    }
    for card in &changes.cards {
        update_card(tx, card)?;
    }
    for card in &changes.new_cards {
        insert_card(tx, card)?;
    }
    for binding in &changes.bindings {
        update_binding(tx, binding)?;
    }
    for binding in &changes.new_bindings {
        insert_binding(tx, binding)?;
    }
    for m in &changes.mismatches {
        record_mismatch(tx, m)?;
    }
    for g in &changes.new_delegations {
        insert_delegation(tx, g)?;
    }
    for (id, at) in &changes.revocations {
        if revoke(tx, id, *at)?.is_none() {
            return Err(conflict(format!("delegation {id} does not exist")));
        }
    }
    Ok(())
}

/// The card service's one write on the citycard database, with group commit.
///
/// Commits that arrive together (concurrent binds, say) are written in one
/// transaction, each in its own savepoint: a change set whose precondition
/// fails rolls back alone and gets its `Conflict`, the others commit, and
/// the batch pays one fsync. Every caller is answered only after the
/// transaction is durable. The first caller to find no batch being written
/// writes the waiting ones synchronously inside its own poll (as every other
/// SQLite call here runs on the caller's task), so nothing is spawned and a
/// dropped caller never strands the others.
#[derive(Debug, Clone)]
pub struct SqliteCardChangeStore {
    db: Database,
    queue: Arc<Mutex<Queue>>,
}

#[derive(Debug, Default)]
struct Queue {
    jobs: Vec<Arc<Job>>,
    writing: bool,
}

#[derive(Debug)]
struct Job {
    changes: CardChanges,
    core: CoreChanges,
    slot: Mutex<Slot>,
}

#[derive(Debug, Default)]
struct Slot {
    result: Option<Result<(), StoreError>>,
    waker: Option<Waker>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SqliteCardChangeStore {
    /// The store on an open database.
    pub fn new(db: Database) -> Self {
        Self {
            db,
            queue: Arc::default(),
        }
    }

    /// Writes every waiting change set, batch after batch, until none waits.
    fn drain(&self) {
        /// Gives up the writer's role if a write panics (normally it is given
        /// up under the same lock that finds the queue empty, so a commit
        /// queued meanwhile is never left without a writer).
        struct Writing<'a>(&'a Mutex<Queue>);
        impl Drop for Writing<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    locked(self.0).writing = false;
                }
            }
        }
        let _writing = Writing(&self.queue);
        loop {
            let batch = {
                let mut queue = locked(&self.queue);
                let batch = std::mem::take(&mut queue.jobs);
                if batch.is_empty() {
                    queue.writing = false;
                    return;
                }
                batch
            };
            let results = self.db.transaction(|tx| {
                let mut out = Vec::with_capacity(batch.len());
                // Cached: a batch runs these per change set.
                let run = |statement: &str| {
                    tx.prepare_cached(statement)
                        .and_then(|mut s| s.execute([]))
                        .map_err(sql)
                };
                for job in &batch {
                    run("SAVEPOINT card_change")?;
                    let written = write_card_changes(tx, &job.changes)
                        .and_then(|()| crate::write_core_changes(tx, &job.core));
                    if written.is_err() {
                        run("ROLLBACK TO card_change")?;
                    }
                    run("RELEASE card_change")?;
                    out.push(written);
                }
                Ok(out)
            });
            for (n, job) in batch.iter().enumerate() {
                let result = match &results {
                    Ok(each) => each[n].clone(),
                    Err(e) => Err(e.clone()),
                };
                let waker = {
                    let mut slot = locked(&job.slot);
                    slot.result = Some(result);
                    slot.waker.take()
                };
                if let Some(w) = waker {
                    w.wake();
                }
            }
        }
    }
}

/// Yields once, so that the other ready tasks queue their commits first.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A queued commit's answer.
struct Committed<'a> {
    store: &'a SqliteCardChangeStore,
    job: Arc<Job>,
}

impl Future for Committed<'_> {
    type Output = Result<(), StoreError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(result) = locked(&self.job.slot).result.take() {
            return Poll::Ready(result);
        }
        let write = {
            let mut queue = locked(&self.store.queue);
            !std::mem::replace(&mut queue.writing, true)
        };
        if write {
            self.store.drain();
        }
        let mut slot = locked(&self.job.slot);
        match slot.result.take() {
            Some(result) => Poll::Ready(result),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[async_trait]
impl CardChangeStore for SqliteCardChangeStore {
    async fn commit(&self, changes: &CardChanges, core: &CoreChanges) -> Result<(), StoreError> {
        if changes.is_empty() && core.is_empty() {
            return Ok(());
        }
        let job = Arc::new(Job {
            changes: changes.clone(),
            core: core.clone(),
            slot: Mutex::default(),
        });
        locked(&self.queue).jobs.push(job.clone());
        YieldOnce(false).await;
        Committed { store: self, job }.await
    }
}

/// Cards in the citycard database.
#[derive(Debug, Clone)]
pub struct SqliteCardStore {
    db: Database,
}

impl SqliteCardStore {
    /// The store on an open database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl CardStore for SqliteCardStore {
    async fn insert(&self, card: &Card) -> Result<(), StoreError> {
        self.db.transaction(|tx| insert_card(tx, card))
    }

    async fn get(&self, id: &CardId) -> Result<Option<Card>, StoreError> {
        let rows = query_data(
            &self.db,
            "SELECT data FROM binding_cards WHERE id = ?1",
            [id.as_str()],
        )?;
        rows.first().map(|r| decode(r)).transpose()
    }

    async fn by_number(&self, number: &CardNumber) -> Result<Option<Card>, StoreError> {
        let rows = query_data(
            &self.db,
            "SELECT data FROM binding_cards WHERE number = ?1",
            [number.as_str()],
        )?;
        rows.first().map(|r| decode(r)).transpose()
    }

    async fn by_numbers(&self, numbers: &[CardNumber]) -> Result<Vec<Card>, StoreError> {
        if numbers.is_empty() {
            return Ok(Vec::new());
        }
        // One statement for the whole list: the numbers as a JSON array.
        let list = encode(&numbers.iter().map(CardNumber::as_str).collect::<Vec<_>>())?;
        decode_all(query_data(
            &self.db,
            "SELECT data FROM binding_cards WHERE number IN (SELECT value FROM json_each(?1))",
            [list],
        )?)
    }

    async fn by_holder(&self, holder: &PersonId) -> Result<Vec<Card>, StoreError> {
        decode_all(query_data(
            &self.db,
            "SELECT data FROM binding_cards WHERE holder = ?1 ORDER BY seq",
            [holder.as_str()],
        )?)
    }

    async fn update(&self, card: &Card) -> Result<Card, StoreError> {
        self.db.transaction(|tx| update_card(tx, card))
    }

    async fn replace(&self, old: &Card, new: &Card) -> Result<Card, StoreError> {
        self.db.transaction(|tx| {
            let updated = update_card(tx, old)?;
            insert_card(tx, new)?;
            Ok(updated)
        })
    }
}

/// Bindings and mismatch records in the citycard database.
#[derive(Debug, Clone)]
pub struct SqliteBindingStore {
    db: Database,
}

impl SqliteBindingStore {
    /// The store on an open database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl BindingStore for SqliteBindingStore {
    async fn insert(&self, binding: &Binding) -> Result<(), StoreError> {
        self.db.transaction(|tx| insert_binding(tx, binding))
    }

    async fn get(&self, id: &BindingId) -> Result<Option<Binding>, StoreError> {
        let rows = query_data(
            &self.db,
            "SELECT data FROM binding_bindings WHERE id = ?1",
            [id.as_str()],
        )?;
        rows.first().map(|r| decode(r)).transpose()
    }

    async fn live_for(
        &self,
        card: &CardId,
        platform: &Platform,
        account: &PlatformAccountId,
    ) -> Result<Option<Binding>, StoreError> {
        let rows = query_data(
            &self.db,
            "SELECT data FROM binding_bindings
             WHERE card_id = ?1 AND platform = ?2 AND account = ?3 AND state <> 'removed'",
            params![card.as_str(), platform.code(), account.as_str()],
        )?;
        rows.first().map(|r| decode(r)).transpose()
    }

    async fn by_card(&self, card: &CardId) -> Result<Vec<Binding>, StoreError> {
        decode_all(query_data(
            &self.db,
            "SELECT data FROM binding_bindings WHERE card_id = ?1 ORDER BY seq",
            [card.as_str()],
        )?)
    }

    async fn by_account(
        &self,
        platform: &Platform,
        account: &PlatformAccountId,
    ) -> Result<Vec<Binding>, StoreError> {
        decode_all(query_data(
            &self.db,
            "SELECT data FROM binding_bindings WHERE platform = ?1 AND account = ?2 ORDER BY seq",
            params![platform.code(), account.as_str()],
        )?)
    }

    async fn pending(&self, limit: usize) -> Result<Vec<Binding>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        decode_all(query_data(
            &self.db,
            "SELECT data FROM binding_bindings WHERE state = 'pending' ORDER BY seq LIMIT ?1",
            [limit],
        )?)
    }

    async fn update(&self, binding: &Binding) -> Result<Binding, StoreError> {
        self.db.transaction(|tx| update_binding(tx, binding))
    }

    async fn record_mismatch(
        &self,
        platform: &Platform,
        account: &PlatformAccountId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let m = Mismatch {
            platform: platform.clone(),
            account: account.clone(),
            at,
        };
        self.db.transaction(|tx| record_mismatch(tx, &m))
    }

    async fn mismatches_since(
        &self,
        platform: &Platform,
        account: &PlatformAccountId,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let micros: Vec<i64> = self.db.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT at FROM binding_mismatches
                 WHERE platform = ?1 AND account = ?2 AND at >= ?3 ORDER BY at",
            )?;
            let rows = stmt.query_map(
                params![platform.code(), account.as_str(), encode_instant(since)],
                |r| r.get::<_, i64>(0),
            )?;
            rows.collect()
        })?;
        micros.into_iter().map(decode_instant).collect()
    }
}

/// Delegations in the citycard database.
#[derive(Debug, Clone)]
pub struct SqliteDelegationStore {
    db: Database,
}

impl SqliteDelegationStore {
    /// The store on an open database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl DelegationStore for SqliteDelegationStore {
    async fn insert(&self, delegation: &Delegation) -> Result<(), StoreError> {
        self.db.transaction(|tx| insert_delegation(tx, delegation))
    }

    async fn get(&self, id: &DelegationId) -> Result<Option<Delegation>, StoreError> {
        let rows = query_data(
            &self.db,
            "SELECT data FROM binding_delegations WHERE id = ?1",
            [id.as_str()],
        )?;
        rows.first().map(|r| decode(r)).transpose()
    }

    async fn revoke(
        &self,
        id: &DelegationId,
        at: DateTime<Utc>,
    ) -> Result<Option<Delegation>, StoreError> {
        self.db.transaction(|tx| revoke(tx, id, at))
    }

    async fn for_cardholder(&self, cardholder: &PersonId) -> Result<Vec<Delegation>, StoreError> {
        decode_all(query_data(
            &self.db,
            "SELECT data FROM binding_delegations WHERE cardholder = ?1 ORDER BY seq",
            [cardholder.as_str()],
        )?)
    }
}
