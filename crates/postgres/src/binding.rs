//! The binding stores on PostgreSQL: cards, bindings (with mismatch records)
//! and delegations.
//!
//! As in the SQLite store, each record is kept whole as JSON in `data`,
//! beside the columns that are looked up or constrained. "At most one live
//! binding per card per platform account" is a partial unique index, so two
//! instances binding one card concurrently cannot both succeed. ID numbers
//! never reach these tables.
//!
//! Every write of the card service is one [`PgCardChangeStore::commit`]: the
//! change set's rows ([`write_card_changes`]) and its core records in one
//! transaction. Version preconditions are compare-and-set: a row that is
//! updated is updated `WHERE version = read version`; a row that is only
//! read is locked `FOR SHARE` until the commit, so no other instance changes
//! it in between. Unlike the SQLite store there is no group commit in the
//! process: each commit is its own transaction, and the server's WAL writer
//! groups concurrent commits' flushes.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use citycard_binding::{
    Binding, BindingId, BindingStore, Card, CardChangeStore, CardChanges, CardId, CardNumber,
    CardStore, Delegation, DelegationStore, Mismatch,
};
use citycard_core::{CoreChanges, DelegationId, PersonId, Platform, PlatformAccountId, StoreError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgConnection;

use crate::db::{Database, Isolation, Migration, SqlResult, decode_instant, encode_instant};
use crate::transaction;

/// The schema of the binding component.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    component: "binding",
    version: 1,
    sql: "
        CREATE TABLE binding_cards (
            seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id       TEXT NOT NULL UNIQUE,
            number   TEXT NOT NULL UNIQUE,
            holder   TEXT NOT NULL,
            version  BIGINT NOT NULL,
            data     TEXT NOT NULL
        );
        CREATE INDEX binding_cards_holder ON binding_cards (holder, seq);
        CREATE TABLE binding_bindings (
            seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
            seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id         TEXT NOT NULL UNIQUE,
            cardholder TEXT NOT NULL,
            data       TEXT NOT NULL
        );
        CREATE INDEX binding_delegations_cardholder ON binding_delegations (cardholder, seq);
    ",
}];

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

fn conflict(what: String) -> StoreError {
    StoreError::Conflict(what)
}

/// The `data` column of every row a one-parameter statement selects.
async fn query_data(
    db: &Database,
    statement: &str,
    param: &str,
) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar(statement)
        .bind(param)
        .fetch_all(db.pool())
        .await
        .st()
}

async fn first<T: DeserializeOwned>(
    db: &Database,
    statement: &str,
    param: &str,
) -> Result<Option<T>, StoreError> {
    query_data(db, statement, param)
        .await?
        .first()
        .map(|r| decode(r))
        .transpose()
}

async fn insert_card(c: &mut PgConnection, card: &Card) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO binding_cards (id, number, holder, version, data) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(card.id.as_str())
    .bind(card.number.as_str())
    .bind(card.holder.as_str())
    .bind(version_param(card.version)?)
    .bind(encode(card)?)
    .execute(c)
    .await
    .st()?;
    Ok(())
}

/// Writes `card` (read at `card.version`) with its version bumped, if unchanged since.
async fn update_card(c: &mut PgConnection, card: &Card) -> Result<Card, StoreError> {
    let mut next = card.clone();
    next.version += 1;
    let changed = sqlx::query(
        "UPDATE binding_cards SET version = $1, data = $2, holder = $3
         WHERE id = $4 AND version = $5 AND number = $6",
    )
    .bind(version_param(next.version)?)
    .bind(encode(&next)?)
    .bind(next.holder.as_str())
    .bind(card.id.as_str())
    .bind(version_param(card.version)?)
    .bind(card.number.as_str())
    .execute(c)
    .await
    .st()?
    .rows_affected();
    if changed != 1 {
        return Err(conflict(format!(
            "card {} is missing or was changed concurrently",
            card.id
        )));
    }
    Ok(next)
}

/// Checks a row is still at the version the decision read, and keeps it there
/// until the transaction ends (`FOR SHARE`).
async fn expect_version(
    c: &mut PgConnection,
    table: &str,
    id: &str,
    version: u64,
) -> Result<(), StoreError> {
    let stored: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT version FROM {table} WHERE id = $1 FOR SHARE"
    ))
    .bind(id)
    .fetch_optional(c)
    .await
    .st()?;
    if stored != Some(version_param(version)?) {
        return Err(conflict(format!(
            "{id} is missing or was changed concurrently"
        )));
    }
    Ok(())
}

async fn insert_binding(c: &mut PgConnection, binding: &Binding) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO binding_bindings (id, card_id, platform, account, state, version, data)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(binding.id.as_str())
    .bind(binding.card.as_str())
    .bind(binding.platform.code())
    .bind(binding.account.as_str())
    .bind(binding.state.code())
    .bind(version_param(binding.version)?)
    .bind(encode(binding)?)
    .execute(c)
    .await
    .st()?;
    Ok(())
}

/// Writes `binding` (read at `binding.version`) with its version bumped, if unchanged since.
async fn update_binding(c: &mut PgConnection, binding: &Binding) -> Result<Binding, StoreError> {
    let mut next = binding.clone();
    next.version += 1;
    let changed = sqlx::query(
        "UPDATE binding_bindings
         SET card_id = $1, platform = $2, account = $3, state = $4, version = $5, data = $6
         WHERE id = $7 AND version = $8",
    )
    .bind(binding.card.as_str())
    .bind(binding.platform.code())
    .bind(binding.account.as_str())
    .bind(binding.state.code())
    .bind(version_param(next.version)?)
    .bind(encode(&next)?)
    .bind(binding.id.as_str())
    .bind(version_param(binding.version)?)
    .execute(c)
    .await
    .st()?
    .rows_affected();
    if changed != 1 {
        return Err(conflict(format!(
            "binding {} is missing or was changed concurrently",
            binding.id
        )));
    }
    Ok(next)
}

async fn record_mismatch(c: &mut PgConnection, m: &Mismatch) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO binding_mismatches (platform, account, at) VALUES ($1, $2, $3)")
        .bind(m.platform.code())
        .bind(m.account.as_str())
        .bind(encode_instant(m.at))
        .execute(c)
        .await
        .st()?;
    Ok(())
}

async fn insert_delegation(
    c: &mut PgConnection,
    delegation: &Delegation,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO binding_delegations (id, cardholder, data) VALUES ($1, $2, $3)")
        .bind(delegation.id.as_str())
        .bind(delegation.cardholder.as_str())
        .bind(encode(delegation)?)
        .execute(c)
        .await
        .st()?;
    Ok(())
}

/// Marks a grant revoked at `at`, keeping an earlier revocation; `None` if it does not exist.
async fn revoke(
    c: &mut PgConnection,
    id: &DelegationId,
    at: DateTime<Utc>,
) -> Result<Option<Delegation>, StoreError> {
    let data: Option<String> =
        sqlx::query_scalar("SELECT data FROM binding_delegations WHERE id = $1 FOR UPDATE")
            .bind(id.as_str())
            .fetch_optional(&mut *c)
            .await
            .st()?;
    let Some(data) = data else {
        return Ok(None);
    };
    let mut grant: Delegation = decode(&data)?;
    if grant.revoked_at.is_none() {
        grant.revoked_at = Some(at);
        sqlx::query("UPDATE binding_delegations SET data = $1 WHERE id = $2")
            .bind(encode(&grant)?)
            .bind(id.as_str())
            .execute(c)
            .await
            .st()?;
    }
    Ok(Some(grant))
}

/// Writes a card change set inside the caller's transaction: preconditions
/// first, then changed rows before new ones (a binding leaving the live set
/// frees its slot for a new one). A failed precondition or unique key is a
/// `StoreError::Conflict`; the caller's transaction then rolls back.
pub async fn write_card_changes(
    tx: &mut PgConnection,
    changes: &CardChanges,
) -> Result<(), StoreError> {
    for (id, version) in &changes.card_versions {
        expect_version(tx, "binding_cards", id.as_str(), *version).await?;
    }
    for (id, version) in &changes.binding_versions {
        expect_version(tx, "binding_bindings", id.as_str(), *version).await?;
    }
    for card in &changes.cards {
        update_card(tx, card).await?;
    }
    for card in &changes.new_cards {
        insert_card(tx, card).await?;
    }
    for binding in &changes.bindings {
        update_binding(tx, binding).await?;
    }
    for binding in &changes.new_bindings {
        insert_binding(tx, binding).await?;
    }
    for m in &changes.mismatches {
        record_mismatch(tx, m).await?;
    }
    for g in &changes.new_delegations {
        insert_delegation(tx, g).await?;
    }
    for (id, at) in &changes.revocations {
        if revoke(tx, id, *at).await?.is_none() {
            return Err(conflict(format!("delegation {id} does not exist")));
        }
    }
    Ok(())
}

/// The card service's one write: a change set and its core records in one transaction.
#[derive(Debug, Clone)]
pub struct PgCardChangeStore {
    db: Database,
}

impl PgCardChangeStore {
    /// The store on a connected database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl CardChangeStore for PgCardChangeStore {
    async fn commit(&self, changes: &CardChanges, core: &CoreChanges) -> Result<(), StoreError> {
        if changes.is_empty() && core.is_empty() {
            return Ok(());
        }
        transaction!(self.db, Isolation::ReadCommitted, |tx| {
            write_card_changes(&mut tx, changes).await?;
            crate::write_core_changes(&mut tx, core).await
        })
    }
}

/// Cards in the citycard database.
#[derive(Debug, Clone)]
pub struct PgCardStore {
    db: Database,
}

impl PgCardStore {
    /// The store on a connected database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl CardStore for PgCardStore {
    async fn insert(&self, card: &Card) -> Result<(), StoreError> {
        transaction!(self.db, Isolation::ReadCommitted, |tx| {
            insert_card(&mut tx, card).await
        })
    }

    async fn get(&self, id: &CardId) -> Result<Option<Card>, StoreError> {
        first(
            &self.db,
            "SELECT data FROM binding_cards WHERE id = $1",
            id.as_str(),
        )
        .await
    }

    async fn by_number(&self, number: &CardNumber) -> Result<Option<Card>, StoreError> {
        first(
            &self.db,
            "SELECT data FROM binding_cards WHERE number = $1",
            number.as_str(),
        )
        .await
    }

    async fn by_numbers(&self, numbers: &[CardNumber]) -> Result<Vec<Card>, StoreError> {
        if numbers.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<&str> = numbers.iter().map(CardNumber::as_str).collect();
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT data FROM binding_cards WHERE number = ANY($1)")
                .bind(&list)
                .fetch_all(self.db.pool())
                .await
                .st()?;
        decode_all(rows)
    }

    async fn by_holder(&self, holder: &PersonId) -> Result<Vec<Card>, StoreError> {
        decode_all(
            query_data(
                &self.db,
                "SELECT data FROM binding_cards WHERE holder = $1 ORDER BY seq",
                holder.as_str(),
            )
            .await?,
        )
    }

    async fn update(&self, card: &Card) -> Result<Card, StoreError> {
        transaction!(self.db, Isolation::ReadCommitted, |tx| {
            update_card(&mut tx, card).await
        })
    }

    async fn replace(&self, old: &Card, new: &Card) -> Result<Card, StoreError> {
        transaction!(self.db, Isolation::ReadCommitted, |tx| {
            let updated = update_card(&mut tx, old).await?;
            insert_card(&mut tx, new).await?;
            Ok(updated)
        })
    }
}

/// Bindings and mismatch records in the citycard database.
#[derive(Debug, Clone)]
pub struct PgBindingStore {
    db: Database,
}

impl PgBindingStore {
    /// The store on a connected database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl BindingStore for PgBindingStore {
    async fn insert(&self, binding: &Binding) -> Result<(), StoreError> {
        transaction!(self.db, Isolation::ReadCommitted, |tx| {
            insert_binding(&mut tx, binding).await
        })
    }

    async fn get(&self, id: &BindingId) -> Result<Option<Binding>, StoreError> {
        first(
            &self.db,
            "SELECT data FROM binding_bindings WHERE id = $1",
            id.as_str(),
        )
        .await
    }

    async fn live_for(
        &self,
        card: &CardId,
        platform: &Platform,
        account: &PlatformAccountId,
    ) -> Result<Option<Binding>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT data FROM binding_bindings
             WHERE card_id = $1 AND platform = $2 AND account = $3 AND state <> 'removed'",
        )
        .bind(card.as_str())
        .bind(platform.code())
        .bind(account.as_str())
        .fetch_all(self.db.pool())
        .await
        .st()?;
        rows.first().map(|r| decode(r)).transpose()
    }

    async fn by_card(&self, card: &CardId) -> Result<Vec<Binding>, StoreError> {
        decode_all(
            query_data(
                &self.db,
                "SELECT data FROM binding_bindings WHERE card_id = $1 ORDER BY seq",
                card.as_str(),
            )
            .await?,
        )
    }

    async fn by_account(
        &self,
        platform: &Platform,
        account: &PlatformAccountId,
    ) -> Result<Vec<Binding>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT data FROM binding_bindings WHERE platform = $1 AND account = $2 ORDER BY seq",
        )
        .bind(platform.code())
        .bind(account.as_str())
        .fetch_all(self.db.pool())
        .await
        .st()?;
        decode_all(rows)
    }

    async fn pending(&self, limit: usize) -> Result<Vec<Binding>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT data FROM binding_bindings WHERE state = 'pending' ORDER BY seq LIMIT $1",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.db.pool())
        .await
        .st()?;
        decode_all(rows)
    }

    async fn update(&self, binding: &Binding) -> Result<Binding, StoreError> {
        transaction!(self.db, Isolation::ReadCommitted, |tx| {
            update_binding(&mut tx, binding).await
        })
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
        let mut conn = self.db.pool().acquire().await.st()?;
        record_mismatch(&mut conn, &m).await
    }

    async fn mismatches_since(
        &self,
        platform: &Platform,
        account: &PlatformAccountId,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let micros: Vec<i64> = sqlx::query_scalar(
            "SELECT at FROM binding_mismatches
             WHERE platform = $1 AND account = $2 AND at >= $3 ORDER BY at",
        )
        .bind(platform.code())
        .bind(account.as_str())
        .bind(encode_instant(since))
        .fetch_all(self.db.pool())
        .await
        .st()?;
        micros.into_iter().map(decode_instant).collect()
    }
}

/// Delegations in the citycard database.
#[derive(Debug, Clone)]
pub struct PgDelegationStore {
    db: Database,
}

impl PgDelegationStore {
    /// The store on a connected database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl DelegationStore for PgDelegationStore {
    async fn insert(&self, delegation: &Delegation) -> Result<(), StoreError> {
        let mut conn = self.db.pool().acquire().await.st()?;
        insert_delegation(&mut conn, delegation).await
    }

    async fn get(&self, id: &DelegationId) -> Result<Option<Delegation>, StoreError> {
        first(
            &self.db,
            "SELECT data FROM binding_delegations WHERE id = $1",
            id.as_str(),
        )
        .await
    }

    async fn revoke(
        &self,
        id: &DelegationId,
        at: DateTime<Utc>,
    ) -> Result<Option<Delegation>, StoreError> {
        transaction!(self.db, Isolation::ReadCommitted, |tx| {
            revoke(&mut tx, id, at).await
        })
    }

    async fn for_cardholder(&self, cardholder: &PersonId) -> Result<Vec<Delegation>, StoreError> {
        decode_all(
            query_data(
                &self.db,
                "SELECT data FROM binding_delegations WHERE cardholder = $1 ORDER BY seq",
                cardholder.as_str(),
            )
            .await?,
        )
    }
}
