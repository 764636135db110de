//! The ledger store on SQLite: an append-only log of accounts, transfers,
//! expiries and burnt ids, plus the state a ledger opens on (each account's
//! balances and flags, the live holds, the transfer count), written with one
//! transaction per batch (group commit: one fsync per batch under WAL +
//! `synchronous = FULL`).
//!
//! Rows are compact: ids are `u64` stored bit-for-bit in INTEGER columns
//! (ids above `i64::MAX` read back negative in SQL), amounts are INTEGER fen,
//! instants are INTEGER nanoseconds since the Unix epoch (the ledger's
//! timestamps are unique nanoseconds). Each log table's primary key is the
//! engine's timestamp, so a batch appends at the end of each B-tree.
//! History is read from the store, so transfers are indexed by id (unique:
//! a transfer stored twice is a conflict), by each account and timestamp
//! (statements, balances as of an instant), by the hold they settle and by
//! reference. Schema v2 adds the state tables and indexes and computes them
//! from the stored log once, so a v1 file opens without replay.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use citycard_core::{CoreChanges, Money, StoreError};
use citycard_ledger::{
    Account, AccountBalance, AccountFlags, AccountId, AccountKind, AccountRange, Balances,
    ChangeSet, CreateTransferResult, Currency, Expiry, FailedTransfer, LedgerState, LedgerStore,
    Owner, Prefetched, Reference, Snapshot, Transfer, TransferFlags, TransferId,
};
use rusqlite::{OptionalExtension, Row, params};

use crate::db::{Database, Migration, corrupt, to_store_error};

/// The schema of the ledger component.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
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
    },
    Migration {
        component: "ledger",
        version: 2,
        sql: "
        CREATE UNIQUE INDEX ledger_transfers_id ON ledger_transfers (id);
        CREATE INDEX ledger_transfers_debit ON ledger_transfers (debit_account_id, timestamp);
        CREATE INDEX ledger_transfers_credit ON ledger_transfers (credit_account_id, timestamp);
        CREATE INDEX ledger_transfers_pending ON ledger_transfers (pending_id)
            WHERE pending_id IS NOT NULL;
        CREATE INDEX ledger_transfers_reference ON ledger_transfers (reference)
            WHERE reference IS NOT NULL;
        CREATE INDEX ledger_expiries_transfer ON ledger_expiries (transfer_id);
        CREATE TABLE ledger_live_holds (
            id        INTEGER PRIMARY KEY,
            timestamp INTEGER NOT NULL
        );
        CREATE TABLE ledger_balances (
            account_id      INTEGER PRIMARY KEY,
            debits_pending  INTEGER NOT NULL,
            debits_posted   INTEGER NOT NULL,
            credits_pending INTEGER NOT NULL,
            credits_posted  INTEGER NOT NULL,
            flags           INTEGER NOT NULL
        );
        CREATE TABLE ledger_counters (
            name  TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        );
        -- Holds (flag 2) not posted or voided (a transfer names them) and not expired.
        INSERT INTO ledger_live_holds (id, timestamp)
            SELECT h.id, h.timestamp FROM ledger_transfers h
            WHERE (h.flags & 2) != 0
              AND NOT EXISTS (SELECT 1 FROM ledger_transfers s WHERE s.pending_id = h.id)
              AND NOT EXISTS (SELECT 1 FROM ledger_expiries e WHERE e.transfer_id = h.id);
        -- Posted amounts move with single-phase transfers and posts (not holds, 2, or voids, 8);
        -- pending amounts are the live holds'. An account is closed (32) while a closing hold
        -- (closing debit 64, closing credit 128) on it is neither voided nor expired.
        INSERT INTO ledger_balances
            (account_id, debits_pending, debits_posted, credits_pending, credits_posted, flags)
            SELECT a.id,
                (SELECT coalesce(sum(t.amount), 0) FROM ledger_live_holds l
                    JOIN ledger_transfers t ON t.timestamp = l.timestamp
                    WHERE t.debit_account_id = a.id),
                (SELECT coalesce(sum(t.amount), 0) FROM ledger_transfers t
                    WHERE t.debit_account_id = a.id AND (t.flags & 10) = 0),
                (SELECT coalesce(sum(t.amount), 0) FROM ledger_live_holds l
                    JOIN ledger_transfers t ON t.timestamp = l.timestamp
                    WHERE t.credit_account_id = a.id),
                (SELECT coalesce(sum(t.amount), 0) FROM ledger_transfers t
                    WHERE t.credit_account_id = a.id AND (t.flags & 10) = 0),
                a.flags | CASE WHEN EXISTS (
                    SELECT 1 FROM ledger_transfers h
                    WHERE (h.flags & 2) != 0
                      AND ((h.debit_account_id = a.id AND (h.flags & 64) != 0)
                        OR (h.credit_account_id = a.id AND (h.flags & 128) != 0))
                      AND NOT EXISTS (SELECT 1 FROM ledger_transfers v
                                      WHERE v.pending_id = h.id AND (v.flags & 8) != 0)
                      AND NOT EXISTS (SELECT 1 FROM ledger_expiries e WHERE e.transfer_id = h.id)
                ) THEN 32 ELSE 0 END
            FROM ledger_accounts a;
        INSERT INTO ledger_counters (name, value)
            SELECT 'transfers', count(*) FROM ledger_transfers;
    ",
    },
    // v3: smaller rows and indexes. An index's last key is the row's
    // timestamp (the rowid) already, so the account indexes name only the
    // account; a trip's reference is stored in 17 bytes (see
    // `StoredReference`) instead of ≈48, and keeps the reference index in
    // card order, so a settlement chunk's cards write one stretch of it.
    Migration {
        component: "ledger",
        version: 3,
        sql: "
        DROP INDEX ledger_transfers_debit;
        DROP INDEX ledger_transfers_credit;
        DROP INDEX ledger_transfers_reference;
        UPDATE ledger_transfers SET reference = citycard_stored_reference(reference)
            WHERE reference LIKE 'trip:trip-%';
        CREATE INDEX ledger_transfers_debit ON ledger_transfers (debit_account_id);
        CREATE INDEX ledger_transfers_credit ON ledger_transfers (credit_account_id);
        CREATE INDEX ledger_transfers_reference ON ledger_transfers (reference)
            WHERE reference IS NOT NULL;
    ",
    },
];

/// A reference as stored. A trip's reference in the settlement's own form,
/// `trip:trip-cr{card, 16 hex}-{boarded µs}-{n}`, is a 17-byte blob (the
/// card and the instant big-endian, then `n`), which sorts by card; any
/// other reference is its text. The form is checked by writing it back, so
/// the two are one-to-one.
pub(crate) enum StoredReference<'a> {
    /// A trip's reference, packed.
    Trip([u8; 17]),
    /// Any other reference.
    Text(&'a str),
}

impl<'a> StoredReference<'a> {
    /// The stored form of a reference's text.
    pub(crate) fn of(text: &'a str) -> Self {
        let packed = (|| {
            let rest = text.strip_prefix("trip:trip-cr")?;
            let (card, rest) = rest.split_once('-')?;
            let (micros, n) = rest.split_once('-')?;
            if card.len() != 16 {
                return None;
            }
            let card = u64::from_str_radix(card, 16).ok()?;
            let micros: u64 = micros.parse().ok()?;
            let n: u8 = n.parse().ok()?;
            (format!("trip:trip-cr{card:016x}-{micros}-{n}") == text).then(|| {
                let mut out = [0u8; 17];
                out[..8].copy_from_slice(&card.to_be_bytes());
                out[8..16].copy_from_slice(&micros.to_be_bytes());
                out[16] = n;
                out
            })
        })();
        packed.map_or(StoredReference::Text(text), StoredReference::Trip)
    }

    /// The reference's text from its stored form.
    pub(crate) fn text(value: rusqlite::types::ValueRef<'_>) -> Result<Option<String>, String> {
        use rusqlite::types::ValueRef;
        match value {
            ValueRef::Null => Ok(None),
            ValueRef::Text(t) => std::str::from_utf8(t)
                .map(|t| Some(t.to_owned()))
                .map_err(|e| e.to_string()),
            ValueRef::Blob(b) if b.len() == 17 => {
                let card = u64::from_be_bytes(b[..8].try_into().map_err(|_| "short blob")?);
                let micros = u64::from_be_bytes(b[8..16].try_into().map_err(|_| "short blob")?);
                Ok(Some(format!("trip:trip-cr{card:016x}-{micros}-{}", b[16])))
            }
            other => Err(format!("bad stored reference ({:?})", other.data_type())),
        }
    }
}

impl rusqlite::ToSql for StoredReference<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(match self {
            StoredReference::Trip(bytes) => bytes.as_slice().into(),
            StoredReference::Text(text) => (*text).into(),
        })
    }
}

const INSERT_ACCOUNT: &str = "INSERT INTO ledger_accounts
    (timestamp, id, kind, currency, flags, upper_limit, owner, metadata)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
/// `OR ROLLBACK`: a transfer id stored twice refuses the whole batch (as
/// any failed insert does), so SQLite keeps no statement journal to undo
/// just the one multi-row statement (a fifth of a chunk's commit did that).
const INSERT_TRANSFER_HEAD: &str = "INSERT OR ROLLBACK INTO ledger_transfers
    (timestamp, id, debit_account_id, credit_account_id, amount, pending_id, timeout_secs,
     currency, code, flags, reference, memo)
    VALUES";
const ROW_PLACEHOLDERS: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const TRANSFER_COLUMNS: usize = 12;
const INSERT_EXPIRY: &str = "INSERT INTO ledger_expiries (timestamp, transfer_id) VALUES (?1, ?2)";
const INSERT_FAILURE: &str = "INSERT INTO ledger_failures (id, result) VALUES (?1, ?2)";
const UPSERT_BALANCE: &str = "INSERT INTO ledger_balances
    (account_id, debits_pending, debits_posted, credits_pending, credits_posted, flags)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)
    ON CONFLICT (account_id) DO UPDATE SET
        debits_pending = excluded.debits_pending, debits_posted = excluded.debits_posted,
        credits_pending = excluded.credits_pending, credits_posted = excluded.credits_posted,
        flags = excluded.flags";
const INSERT_LIVE_HOLD: &str = "INSERT INTO ledger_live_holds (id, timestamp) VALUES (?1, ?2)";
const DELETE_LIVE_HOLD: &str = "DELETE FROM ledger_live_holds WHERE id = ?1";
const COUNT_TRANSFERS: &str = "INSERT INTO ledger_counters (name, value) VALUES ('transfers', ?1)
    ON CONFLICT (name) DO UPDATE SET value = value + excluded.value";
const TRANSFER_SELECT: &str = "SELECT timestamp, id, debit_account_id, credit_account_id, amount,
    pending_id, timeout_secs, currency, code, flags, reference, memo FROM ledger_transfers";

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
    let reference = StoredReference::text(row.get_ref(10)?).map_err(|e| corrupt(10, e))?;
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

fn read_expiry(r: &Row<'_>) -> rusqlite::Result<Expiry> {
    Ok(Expiry {
        timestamp: at(r.get(0)?),
        transfer_id: TransferId::new(uid(r.get(1)?)),
    })
}

fn read_failure(r: &Row<'_>) -> rusqlite::Result<FailedTransfer> {
    let code = small(r, 1)?;
    Ok(FailedTransfer {
        id: TransferId::new(uid(r.get(0)?)),
        result: CreateTransferResult::from_code(code)
            .ok_or_else(|| corrupt(1, format!("unknown result code {code}")))?,
    })
}

/// Every account with its balances and current flags, oldest first.
/// An account row joined with its balances (the columns `account_row` reads).
const ACCOUNT_SELECT: &str = "SELECT a.timestamp, a.id, a.kind, a.currency, a.flags, a.upper_limit,
        a.owner, a.metadata, b.debits_pending, b.debits_posted, b.credits_pending,
        b.credits_posted, b.flags
     FROM ledger_accounts a LEFT JOIN ledger_balances b ON b.account_id = a.id";

fn account_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    let mut a = read_account(r)?;
    if let Some(flags) = r.get::<_, Option<i64>>(12)? {
        a.balances = Balances {
            debits_pending: Money::from_fen(r.get(8)?),
            debits_posted: Money::from_fen(r.get(9)?),
            credits_pending: Money::from_fen(r.get(10)?),
            credits_posted: Money::from_fen(r.get(11)?),
        };
        a.flags =
            AccountFlags(u16::try_from(flags).map_err(|_| corrupt(12, format!("flags {flags}")))?);
    }
    Ok(a)
}

fn read_accounts(c: &rusqlite::Connection) -> rusqlite::Result<Vec<Account>> {
    c.prepare(&format!("{ACCOUNT_SELECT} ORDER BY a.timestamp"))?
        .query_map([], account_row)?
        .collect()
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
    stmt.raw_bind_parameter(
        first + 10,
        t.reference
            .as_ref()
            .map(|r| StoredReference::of(r.as_str())),
    )
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
    write_state(tx, changes)
}

/// The state a ledger opens on: new accounts' and touched accounts'
/// balances, live holds in and out, the transfer count.
fn write_state(tx: &rusqlite::Transaction<'_>, changes: &ChangeSet<'_>) -> Result<(), StoreError> {
    let e = |e: rusqlite::Error| to_store_error(&e);
    if !changes.accounts.is_empty() || !changes.balances.is_empty() {
        let mut stmt = tx.prepare_cached(UPSERT_BALANCE).map_err(e)?;
        let created = changes.accounts.iter().map(|a| AccountBalance {
            id: a.id,
            balances: a.balances,
            flags: a.flags,
        });
        for b in created.chain(changes.balances.iter().copied()) {
            let r = b.balances;
            stmt.execute(params![
                id64(b.id.get()),
                r.debits_pending.fen(),
                r.debits_posted.fen(),
                r.credits_pending.fen(),
                r.credits_posted.fen(),
                b.flags.0,
            ])
            .map_err(e)?;
        }
    }
    if changes.transfers.iter().any(|t| t.flags.pending()) {
        let mut stmt = tx.prepare_cached(INSERT_LIVE_HOLD).map_err(e)?;
        for t in changes.transfers.iter().filter(|t| t.flags.pending()) {
            stmt.execute(params![id64(t.id.get()), ns(t.timestamp)?])
                .map_err(e)?;
        }
    }
    if !changes.released.is_empty() {
        let mut stmt = tx.prepare_cached(DELETE_LIVE_HOLD).map_err(e)?;
        for id in changes.released {
            stmt.execute(params![id64(id.get())]).map_err(e)?;
        }
    }
    if !changes.transfers.is_empty() {
        tx.prepare_cached(COUNT_TRANSFERS)
            .map_err(e)?
            .execute(params![changes.transfers.len() as i64])
            .map_err(e)?;
    }
    Ok(())
}

/// Rows per `IN (...)` lookup.
const LOOKUP_CHUNK: usize = 256;

/// Runs `sql` (with `{}` standing for a list of placeholders) for `ids` in
/// chunks, collecting what `row` reads.
fn lookup<T>(
    c: &rusqlite::Connection,
    sql: &str,
    ids: &[TransferId],
    mut row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(LOOKUP_CHUNK) {
        let marks = if chunk.len() == LOOKUP_CHUNK {
            FULL_MARKS.with(|m| m.clone())
        } else {
            vec!["?"; chunk.len()].join(", ")
        };
        let mut stmt = c.prepare_cached(&sql.replace("{}", &marks))?;
        let mut rows = stmt.query(rusqlite::params_from_iter(
            chunk.iter().map(|id| id64(id.get())),
        ))?;
        while let Some(r) = rows.next()? {
            out.push(row(r)?);
        }
    }
    Ok(out)
}

thread_local! {
    static FULL_MARKS: String = vec!["?"; LOOKUP_CHUNK].join(", ");
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

    async fn load_state(&self) -> Result<LedgerState, StoreError> {
        self.db.read(|c| {
            let accounts = read_accounts(c)?;
            let holds = c
                .prepare(&format!(
                    "{TRANSFER_SELECT} WHERE timestamp IN (SELECT timestamp FROM ledger_live_holds)
                     ORDER BY timestamp"
                ))?
                .query_map([], read_transfer)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let last: Option<i64> = c.query_row(
                "SELECT max(ts) FROM (
                    SELECT max(timestamp) AS ts FROM ledger_transfers
                    UNION ALL SELECT max(timestamp) FROM ledger_expiries
                    UNION ALL SELECT max(timestamp) FROM ledger_accounts)",
                [],
                |r| r.get(0),
            )?;
            let transfer_count: i64 = c
                .query_row(
                    "SELECT value FROM ledger_counters WHERE name = 'transfers'",
                    [],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(0);
            let failure_count: i64 =
                c.query_row("SELECT count(*) FROM ledger_failures", [], |r| r.get(0))?;
            Ok(LedgerState {
                accounts,
                holds,
                last_timestamp: last.map(at),
                transfer_count: u64::try_from(transfer_count).unwrap_or(0),
                failure_count: u64::try_from(failure_count).unwrap_or(0),
            })
        })
    }

    async fn prefetch(
        &self,
        ids: &[TransferId],
        holds: &[TransferId],
    ) -> Result<Prefetched, StoreError> {
        let mut wanted: Vec<TransferId> = ids.iter().chain(holds).copied().collect();
        wanted.sort_unstable();
        wanted.dedup();
        self.db.read(|c| {
            let transfers = lookup(
                c,
                &format!("{TRANSFER_SELECT} WHERE id IN ({{}})"),
                &wanted,
                read_transfer,
            )?;
            let failures = lookup(
                c,
                "SELECT id, result FROM ledger_failures WHERE id IN ({})",
                ids,
                read_failure,
            )?;
            let settlements = lookup(
                c,
                &format!("{TRANSFER_SELECT} WHERE pending_id IN ({{}})"),
                holds,
                read_transfer,
            )?;
            let expiries = lookup(
                c,
                "SELECT timestamp, transfer_id FROM ledger_expiries WHERE transfer_id IN ({})",
                holds,
                read_expiry,
            )?;
            Ok(Prefetched {
                transfers,
                settlements,
                expiries,
                failures,
            })
        })
    }

    async fn accounts(&self, ids: &[AccountId]) -> Result<Vec<Account>, StoreError> {
        self.db.read(|c| {
            let mut stmt = c.prepare_cached(&format!("{ACCOUNT_SELECT} WHERE a.id = ?1"))?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(a) = stmt.query_row([id64(id.get())], account_row).optional()? {
                    out.push(a);
                }
            }
            Ok(out)
        })
    }

    async fn account_transfers(&self, range: &AccountRange) -> Result<Vec<Transfer>, StoreError> {
        let (from, to) = (ns(range.from)?, ns(range.to)?);
        let limit = i64::try_from(range.limit).unwrap_or(i64::MAX);
        let account = id64(range.account.get());
        self.db.read(|c| {
            c.prepare_cached(&format!(
                "SELECT * FROM (
                    SELECT * FROM ({TRANSFER_SELECT} WHERE debit_account_id = ?1
                        AND timestamp >= ?2 AND timestamp < ?3 ORDER BY timestamp LIMIT ?4)
                    UNION ALL
                    SELECT * FROM ({TRANSFER_SELECT} WHERE credit_account_id = ?1
                        AND timestamp >= ?2 AND timestamp < ?3 ORDER BY timestamp LIMIT ?4)
                 ) ORDER BY timestamp LIMIT ?4"
            ))?
            .query_map(params![account, from, to, limit], read_transfer)?
            .collect()
        })
    }

    async fn transfers_by_reference(
        &self,
        reference: &Reference,
    ) -> Result<Vec<Transfer>, StoreError> {
        self.db.read(|c| {
            c.prepare_cached(&format!(
                "{TRANSFER_SELECT} WHERE reference = ?1 ORDER BY timestamp"
            ))?
            .query_map([StoredReference::of(reference.as_str())], read_transfer)?
            .collect()
        })
    }

    async fn load(&self) -> Result<Snapshot, StoreError> {
        self.db.read(|c| {
            let accounts = read_accounts(c)?;
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
                .query_map([], read_expiry)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let failures = c
                .prepare("SELECT id, result FROM ledger_failures ORDER BY id")?
                .query_map([], read_failure)?
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

#[cfg(test)]
mod tests {
    use super::StoredReference;
    use proptest::prelude::*;
    use rusqlite::types::ValueRef;

    fn round_trip(text: &str) -> (bool, String) {
        match StoredReference::of(text) {
            StoredReference::Trip(b) => (
                true,
                StoredReference::text(ValueRef::Blob(&b))
                    .expect("decodes")
                    .expect("some"),
            ),
            StoredReference::Text(t) => (false, t.to_owned()),
        }
    }

    #[test]
    fn only_the_settlements_own_form_is_packed() {
        let own = "trip:trip-cr81bad7386645ee7b-1795645920000000-0";
        assert_eq!(round_trip(own), (true, own.to_owned()));
        for other in [
            "trip:trip-cr81BAD7386645ee7b-1795645920000000-0",
            "trip:trip-cr1bad7386645ee7b-1795645920000000-0",
            "trip:trip-cr81bad7386645ee7b-01795645920000000-0",
            "trip:trip-cr81bad7386645ee7b-1795645920000000-256",
            "trip:trip-cr81bad7386645ee7b-1795645920000000-00",
            "trip:trip-cr81bad7386645ee7b-1795645920000000",
            "trip:T-1",
            "bill:trip-cr81bad7386645ee7b-1795645920000000-0",
        ] {
            assert_eq!(round_trip(other), (false, other.to_owned()), "{other}");
        }
    }

    proptest! {
        /// Packing is one-to-one: every packed reference reads back as the
        /// same text, and packed references sort by card, then instant.
        #[test]
        fn packed_references_read_back(card: u64, micros: u64, n: u8, other_card: u64) {
            let text = format!("trip:trip-cr{card:016x}-{micros}-{n}");
            prop_assert_eq!(round_trip(&text), (true, text.clone()));
            let a = StoredReference::of(&text);
            let other = format!("trip:trip-cr{other_card:016x}-0-0");
            let b = StoredReference::of(&other);
            if let (StoredReference::Trip(a), StoredReference::Trip(b)) = (a, b) {
                prop_assert_eq!(a.cmp(&b), (card, micros, n).cmp(&(other_card, 0, 0)));
            }
        }
    }
}
