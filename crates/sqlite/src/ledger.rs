//! The ledger store on SQLite: an append-only log of accounts, transfers,
//! expiries and burnt ids, written with one transaction per batch (group
//! commit: one fsync per batch under WAL + `synchronous = FULL`).
//!
//! Rows are compact: ids are `u64` stored bit-for-bit in INTEGER columns
//! (ids above `i64::MAX` read back negative in SQL), amounts are INTEGER fen,
//! instants are INTEGER nanoseconds since the Unix epoch (the ledger's
//! timestamps are unique nanoseconds). Each table's primary key is the
//! engine's timestamp, so a batch appends at the end of each B-tree; the
//! ledger keeps id uniqueness in memory and answers queries from memory, so no
//! secondary index slows the appends.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use citycard_core::{CoreChanges, Money, StoreError};
use citycard_ledger::{
    Account, AccountFlags, AccountId, AccountKind, Balances, ChangeSet, CreateTransferResult,
    Currency, Expiry, FailedTransfer, LedgerStore, Owner, Reference, Snapshot, Transfer,
    TransferFlags, TransferId,
};
use rusqlite::{Row, params};

use crate::db::{Database, Migration, corrupt, to_store_error};

/// The schema of the ledger component.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    component: "ledger",
    version: 1,
    sql: "
        CREATE TABLE ledger_accounts (
            timestamp   INTEGER PRIMARY KEY,
            id          INTEGER NOT NULL UNIQUE,
            kind        INTEGER NOT NULL,
            currency    INTEGER NOT NULL,
            flags       INTEGER NOT NULL,
            upper_limit INTEGER,
            owner       TEXT,
            metadata    TEXT
        );
        CREATE TABLE ledger_transfers (
            timestamp         INTEGER PRIMARY KEY,
            id                INTEGER NOT NULL,
            debit_account_id  INTEGER NOT NULL,
            credit_account_id INTEGER NOT NULL,
            amount            INTEGER NOT NULL,
            pending_id        INTEGER,
            timeout_secs      INTEGER NOT NULL,
            currency          INTEGER NOT NULL,
            code              INTEGER NOT NULL,
            flags             INTEGER NOT NULL,
            reference         TEXT,
            memo              TEXT
        );
        CREATE TABLE ledger_expiries (
            timestamp   INTEGER PRIMARY KEY,
            transfer_id INTEGER NOT NULL
        );
        CREATE TABLE ledger_failures (
            id     INTEGER PRIMARY KEY,
            result INTEGER NOT NULL
        );
    ",
}];

const INSERT_ACCOUNT: &str = "INSERT INTO ledger_accounts
    (timestamp, id, kind, currency, flags, upper_limit, owner, metadata)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
const INSERT_TRANSFER_HEAD: &str = "INSERT INTO ledger_transfers
    (timestamp, id, debit_account_id, credit_account_id, amount, pending_id, timeout_secs,
     currency, code, flags, reference, memo)
    VALUES";
const ROW_PLACEHOLDERS: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const TRANSFER_COLUMNS: usize = 12;
const INSERT_EXPIRY: &str = "INSERT INTO ledger_expiries (timestamp, transfer_id) VALUES (?1, ?2)";
const INSERT_FAILURE: &str = "INSERT INTO ledger_failures (id, result) VALUES (?1, ?2)";

/// The ledger's [`LedgerStore`] in the citycard database.
#[derive(Debug, Clone)]
pub struct SqliteLedgerStore {
    db: Database,
}

impl SqliteLedgerStore {
    /// The store on an open database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn ns(at: DateTime<Utc>) -> Result<i64, StoreError> {
    at.timestamp_nanos_opt()
        .ok_or_else(|| StoreError::Internal(format!("instant {at} out of range")))
}

fn at(ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(ns)
}

/// Stores a `u64` id bit-for-bit.
fn id64(id: u64) -> i64 {
    i64::from_ne_bytes(id.to_ne_bytes())
}

fn uid(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

fn small(row: &Row<'_>, column: usize) -> rusqlite::Result<u16> {
    let v: i64 = row.get(column)?;
    u16::try_from(v).map_err(|_| corrupt(column, format!("{v} is not a 16-bit code")))
}

fn read_account(row: &Row<'_>) -> rusqlite::Result<Account> {
    let owner: Option<String> = row.get(6)?;
    let owner = owner
        .map(|o| Owner::from_text(&o).map_err(|e| corrupt(6, e)))
        .transpose()?;
    let metadata: Option<String> = row.get(7)?;
    let metadata: BTreeMap<String, String> = match metadata {
        Some(m) => serde_json::from_str(&m).map_err(|e| corrupt(7, e))?,
        None => BTreeMap::new(),
    };
    Ok(Account {
        created_at: at(row.get(0)?),
        id: AccountId::new(uid(row.get(1)?)),
        kind: AccountKind(small(row, 2)?),
        currency: Currency(small(row, 3)?),
        flags: AccountFlags(small(row, 4)?),
        upper_limit: row.get::<_, Option<i64>>(5)?.map(Money::from_fen),
        owner,
        metadata,
        balances: Balances::default(),
    })
}

fn read_transfer(row: &Row<'_>) -> rusqlite::Result<Transfer> {
    let reference: Option<String> = row.get(10)?;
    let reference = reference
        .map(|r| Reference::parse(&r).map_err(|e| corrupt(10, e)))
        .transpose()?;
    let timeout: i64 = row.get(6)?;
    Ok(Transfer {
        timestamp: at(row.get(0)?),
        id: TransferId::new(uid(row.get(1)?)),
        debit_account_id: AccountId::new(uid(row.get(2)?)),
        credit_account_id: AccountId::new(uid(row.get(3)?)),
        amount: Money::from_fen(row.get(4)?),
        pending_id: row
            .get::<_, Option<i64>>(5)?
            .map(|p| TransferId::new(uid(p))),
        timeout_secs: u32::try_from(timeout)
            .map_err(|_| corrupt(6, format!("timeout {timeout} out of range")))?,
        currency: Currency(small(row, 7)?),
        code: small(row, 8)?,
        flags: TransferFlags(small(row, 9)?),
        reference,
        memo: row.get(11)?,
    })
}

/// Rows per multi-row INSERT (12 parameters each, well under SQLite's limit).
const CHUNK: usize = 64;

fn insert_transfers(
    tx: &rusqlite::Transaction<'_>,
    transfers: &[Transfer],
) -> Result<(), StoreError> {
    let e = |e: rusqlite::Error| to_store_error(&e);
    let mut chunks = transfers.chunks_exact(CHUNK);
    if transfers.len() >= CHUNK {
        let sql = format!(
            "{INSERT_TRANSFER_HEAD} {}",
            vec![ROW_PLACEHOLDERS; CHUNK].join(", ")
        );
        let mut stmt = tx.prepare_cached(&sql).map_err(e)?;
        for chunk in chunks.by_ref() {
            let mut i = 1;
            for t in chunk {
                bind_transfer(&mut stmt, i, t)?;
                i += TRANSFER_COLUMNS;
            }
            stmt.raw_execute().map_err(e)?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut stmt = tx
            .prepare_cached(&format!("{INSERT_TRANSFER_HEAD} {ROW_PLACEHOLDERS}"))
            .map_err(e)?;
        for t in rest {
            bind_transfer(&mut stmt, 1, t)?;
            stmt.raw_execute().map_err(e)?;
        }
    }
    Ok(())
}

fn bind_transfer(
    stmt: &mut rusqlite::CachedStatement<'_>,
    first: usize,
    t: &Transfer,
) -> Result<(), StoreError> {
    let e = |e: rusqlite::Error| to_store_error(&e);
    stmt.raw_bind_parameter(first, ns(t.timestamp)?)
        .map_err(e)?;
    stmt.raw_bind_parameter(first + 1, id64(t.id.get()))
        .map_err(e)?;
    stmt.raw_bind_parameter(first + 2, id64(t.debit_account_id.get()))
        .map_err(e)?;
    stmt.raw_bind_parameter(first + 3, id64(t.credit_account_id.get()))
        .map_err(e)?;
    stmt.raw_bind_parameter(first + 4, t.amount.fen())
        .map_err(e)?;
    stmt.raw_bind_parameter(first + 5, t.pending_id.map(|p| id64(p.get())))
        .map_err(e)?;
    stmt.raw_bind_parameter(first + 6, t.timeout_secs)
        .map_err(e)?;
    stmt.raw_bind_parameter(first + 7, t.currency.0)
        .map_err(e)?;
    stmt.raw_bind_parameter(first + 8, t.code).map_err(e)?;
    stmt.raw_bind_parameter(first + 9, t.flags.0).map_err(e)?;
    stmt.raw_bind_parameter(first + 10, t.reference.as_ref().map(Reference::as_str))
        .map_err(e)?;
    stmt.raw_bind_parameter(first + 11, t.memo.as_deref())
        .map_err(e)?;
    Ok(())
}

/// Writes one ledger batch's rows inside the caller's transaction (the
/// facade's unit of work commits them with other domains' rows).
pub fn write_changes(
    tx: &rusqlite::Transaction<'_>,
    changes: &ChangeSet<'_>,
) -> Result<(), StoreError> {
    let e = |e: rusqlite::Error| to_store_error(&e);
    if !changes.accounts.is_empty() {
        let mut stmt = tx.prepare_cached(INSERT_ACCOUNT).map_err(e)?;
        for a in changes.accounts {
            let metadata = if a.metadata.is_empty() {
                None
            } else {
                Some(
                    serde_json::to_string(&a.metadata)
                        .map_err(|x| StoreError::Internal(x.to_string()))?,
                )
            };
            stmt.execute(params![
                ns(a.created_at)?,
                id64(a.id.get()),
                a.kind.0,
                a.currency.0,
                a.flags.0 & !AccountFlags::CLOSED.0,
                a.upper_limit.map(Money::fen),
                a.owner.as_ref().map(Owner::to_text),
                metadata,
            ])
            .map_err(e)?;
        }
    }
    if !changes.transfers.is_empty() {
        insert_transfers(tx, changes.transfers)?;
    }
    if !changes.expiries.is_empty() {
        let mut stmt = tx.prepare_cached(INSERT_EXPIRY).map_err(e)?;
        for x in changes.expiries {
            stmt.execute(params![ns(x.timestamp)?, id64(x.transfer_id.get())])
                .map_err(e)?;
        }
    }
    if !changes.failures.is_empty() {
        let mut stmt = tx.prepare_cached(INSERT_FAILURE).map_err(e)?;
        for f in changes.failures {
            stmt.execute(params![id64(f.id.get()), f.result.code()])
                .map_err(e)?;
        }
    }
    Ok(())
}

#[async_trait]
impl LedgerStore for SqliteLedgerStore {
    async fn commit(&self, changes: &ChangeSet<'_>, core: &CoreChanges) -> Result<(), StoreError> {
        if changes.is_empty() && core.is_empty() {
            return Ok(());
        }
        self.db.transaction(|tx| {
            write_changes(tx, changes)?;
            crate::write_core_changes(tx, core)
        })
    }

    async fn load(&self) -> Result<Snapshot, StoreError> {
        self.db.with(|c| {
            let accounts = c
                .prepare(
                    "SELECT timestamp, id, kind, currency, flags, upper_limit, owner, metadata
                     FROM ledger_accounts ORDER BY timestamp",
                )?
                .query_map([], read_account)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let transfers = c
                .prepare(
                    "SELECT timestamp, id, debit_account_id, credit_account_id, amount, pending_id,
                            timeout_secs, currency, code, flags, reference, memo
                     FROM ledger_transfers ORDER BY timestamp",
                )?
                .query_map([], read_transfer)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let expiries = c
                .prepare("SELECT timestamp, transfer_id FROM ledger_expiries ORDER BY timestamp")?
                .query_map([], |r| {
                    Ok(Expiry {
                        timestamp: at(r.get(0)?),
                        transfer_id: TransferId::new(uid(r.get(1)?)),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let failures = c
                .prepare("SELECT id, result FROM ledger_failures ORDER BY id")?
                .query_map([], |r| {
                    let code = small(r, 1)?;
                    Ok(FailedTransfer {
                        id: TransferId::new(uid(r.get(0)?)),
                        result: CreateTransferResult::from_code(code)
                            .ok_or_else(|| corrupt(1, format!("unknown result code {code}")))?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Snapshot {
                accounts,
                transfers,
                expiries,
                failures,
            })
        })
    }
}
