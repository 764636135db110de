//! The side store: what has no place on a TigerBeetle cluster — the texts of
//! references and memos per transfer, owners, metadata and upper limits per
//! account — in a SQLite file of its own (two tables, `tb_transfer_text` and
//! `tb_account_text`).
//!
//! Decision: a small table set here rather than `citycard-sqlite`'s ledger
//! tables. Those hold the embedded engine's whole state (balances, versions,
//! history); the side store holds only texts keyed by what the cluster
//! stores, and it is the same whichever database the other stores use.
//!
//! A row is keyed by the event's id **and the digests written to the
//! cluster** (`user_data_128`/`user_data_64`), and written before the batch is
//! sent (`INSERT OR IGNORE`): an acknowledged event always has its texts, even
//! if the process stops right after the acknowledgement, and a refused event
//! leaves a row that no cluster object will ever match. A read takes the row
//! whose digests match what the cluster holds (a digest of 0 in the row
//! matches anything: a post inherits its hold's `user_data` on the cluster).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use citycard_core::{Money, StoreError};
use citycard_ledger::{
    AccountId, LedgerError, NewAccount, NewTransfer, Owner, Reference, TransferId,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::map;

/// The texts of one transfer: reference and memo.
pub(crate) type TransferSide = (Option<Reference>, Option<String>);
/// The texts of one account: owner, metadata, upper limit.
pub(crate) type AccountSide = (Option<Owner>, BTreeMap<String, String>, Option<Money>);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tb_transfer_text (
    id INTEGER NOT NULL,
    reference_key BLOB NOT NULL,
    memo_key INTEGER NOT NULL,
    reference TEXT,
    memo TEXT,
    PRIMARY KEY (id, reference_key, memo_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tb_account_text (
    id INTEGER NOT NULL,
    owner_key BLOB NOT NULL,
    metadata_key INTEGER NOT NULL,
    owner TEXT,
    metadata TEXT NOT NULL,
    upper_limit INTEGER,
    PRIMARY KEY (id, owner_key, metadata_key)
) WITHOUT ROWID;
";

fn store_error(e: rusqlite::Error) -> LedgerError {
    LedgerError::Store(StoreError::Unavailable(format!(
        "TigerBeetle side store: {e}"
    )))
}

/// Texts the cluster cannot hold, in SQLite (a file, or memory for tests).
#[derive(Debug)]
pub struct SideStore {
    conn: Mutex<Connection>,
}

impl SideStore {
    /// Opens (creating if missing) the side store in the SQLite file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, LedgerError> {
        let conn = Connection::open(path).map_err(store_error)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(store_error)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(store_error)?;
        Self::with_connection(conn)
    }

    /// A side store in memory (tests; lost when the process ends).
    pub fn in_memory() -> Result<Self, LedgerError> {
        Self::with_connection(Connection::open_in_memory().map_err(store_error)?)
    }

    fn with_connection(conn: Connection) -> Result<Self, LedgerError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(store_error)?;
        conn.execute_batch(SCHEMA).map_err(store_error)?;
        Ok(SideStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the texts of transfers about to be sent (one transaction).
    pub(crate) fn remember_transfers<'a>(
        &self,
        batch: impl Iterator<Item = &'a NewTransfer>,
    ) -> Result<(), LedgerError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(store_error)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO tb_transfer_text (id, reference_key, memo_key, reference, memo)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(store_error)?;
            for t in batch {
                if t.reference.is_none() && t.memo.is_none() {
                    continue;
                }
                let (reference_key, memo_key) = map::transfer_keys(t);
                insert
                    .execute(params![
                        t.id.get() as i64,
                        reference_key.to_be_bytes().to_vec(),
                        memo_key as i64,
                        t.reference.as_ref().map(|r| r.as_str().to_owned()),
                        t.memo,
                    ])
                    .map_err(store_error)?;
            }
        }
        tx.commit().map_err(store_error)
    }

    /// Records the texts of accounts about to be sent (one transaction).
    pub(crate) fn remember_accounts<'a>(
        &self,
        batch: impl Iterator<Item = &'a NewAccount>,
    ) -> Result<(), LedgerError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(store_error)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO tb_account_text (id, owner_key, metadata_key, owner, metadata, upper_limit)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(store_error)?;
            for a in batch {
                let (owner_key, metadata_key) = map::account_keys(a);
                let metadata = serde_json::to_string(&a.metadata)
                    .map_err(|e| LedgerError::Corrupt(format!("account metadata: {e}")))?;
                insert
                    .execute(params![
                        a.id.get() as i64,
                        owner_key.to_be_bytes().to_vec(),
                        metadata_key as i64,
                        a.owner.as_ref().map(Owner::to_text),
                        metadata,
                        a.upper_limit.map(Money::fen),
                    ])
                    .map_err(store_error)?;
            }
        }
        tx.commit().map_err(store_error)
    }

    /// The texts of a transfer whose cluster digests are `reference_key` and `memo_key`.
    pub(crate) fn transfer(
        &self,
        id: TransferId,
        reference_key: u128,
        memo_key: u64,
    ) -> Result<TransferSide, LedgerError> {
        let conn = self.conn();
        let mut select = conn
            .prepare_cached(
                "SELECT reference_key, memo_key, reference, memo FROM tb_transfer_text WHERE id = ?1",
            )
            .map_err(store_error)?;
        let rows = select
            .query_map(params![id.get() as i64], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .map_err(store_error)?;
        for row in rows {
            let (rk, mk, reference, memo) = row.map_err(store_error)?;
            let rk = u128::from_be_bytes(rk.try_into().unwrap_or([0; 16]));
            let matches = (rk == reference_key || rk == 0) && (mk == memo_key || mk == 0);
            if matches {
                let reference =
                    match reference {
                        Some(r) => Some(Reference::parse(&r).map_err(|e| {
                            LedgerError::Corrupt(format!("side store reference: {e}"))
                        })?),
                        None => None,
                    };
                return Ok((reference, memo));
            }
        }
        Ok((None, None))
    }

    /// The texts of an account whose cluster digests are `owner_key` and `metadata_key`.
    pub(crate) fn account(
        &self,
        id: AccountId,
        owner_key: u128,
        metadata_key: u64,
    ) -> Result<AccountSide, LedgerError> {
        let conn = self.conn();
        let mut select = conn
            .prepare_cached(
                "SELECT owner, metadata, upper_limit FROM tb_account_text
                 WHERE id = ?1 AND owner_key = ?2 AND metadata_key = ?3",
            )
            .map_err(store_error)?;
        let row = select
            .query_row(
                params![
                    id.get() as i64,
                    owner_key.to_be_bytes().to_vec(),
                    metadata_key as i64
                ],
                |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(store_error)?;
        let Some((owner, metadata, limit)) = row else {
            return Ok((None, BTreeMap::new(), None));
        };
        let owner = match owner {
            Some(o) => Some(
                Owner::from_text(&o)
                    .map_err(|e| LedgerError::Corrupt(format!("side store owner: {e}")))?,
            ),
            None => None,
        };
        let metadata = serde_json::from_str(&metadata)
            .map_err(|e| LedgerError::Corrupt(format!("side store metadata: {e}")))?;
        Ok((owner, metadata, limit.map(Money::from_fen)))
    }

    /// How many transfers have texts here.
    pub fn transfer_count(&self) -> Result<usize, LedgerError> {
        self.conn()
            .query_row("SELECT count(*) FROM tb_transfer_text", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as usize)
            .map_err(store_error)
    }
}
