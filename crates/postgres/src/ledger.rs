//! The ledger store on PostgreSQL: the SQLite store's append-only log of
//! accounts, transfers, expiries and burnt ids, plus the state a ledger
//! opens on (balances and flags, live holds, the transfer count), written
//! with one transaction per batch; rows go in as arrays (`UNNEST`), one
//! statement per table per batch.
//!
//! Rows are compact as in SQLite: `u64` ids bit-for-bit in `BIGINT`
//! (ids above `i64::MAX` read back negative in SQL), amounts in fen,
//! instants in nanoseconds since the Unix epoch.
//!
//! ## Several instances, one ledger
//!
//! The ledger engine decides a batch in one process's memory, from the
//! state it loaded. Two app instances each run a [`Ledger`](citycard_ledger::Ledger)
//! on the same database, so each must never commit a batch decided on state
//! the other has since changed. The database keeps a **ledger version**
//! (`ledger_counters`, name `version`), bumped by every commit that writes
//! ledger rows (a batch with only its audit record leaves it alone). Each
//! [`PgLedgerStore`] handle remembers the version its ledger's state
//! reflects: read in the same snapshot as the state by
//! [`LedgerStore::load_state`], advanced by its own commits. A commit
//! updates the version row `WHERE value = remembered`; the row lock orders
//! concurrent commits, and a commit whose version moved is refused as
//! [`citycard_ledger::stale_version`] (a [`StoreError::Conflict`]) with
//! nothing written. The ledger then reloads its state from the database and
//! decides the batch again itself, a bounded number of times (a batch with
//! the same transfer ids is safe: an id already stored answers `exists`), so
//! callers do not see the refusal unless instances keep overtaking it. So every acknowledged
//! transfer is in the database exactly once, and every balance was decided
//! from the balances the database held, whichever instance wrote it.
//!
//! A handle that never loaded state (tools, the conformance suite writing
//! change sets directly) commits without the check, and still bumps the
//! version. One handle serves one `Ledger`: give each its own
//! ([`PgLedgerStore::new`] or [`PgLedgerStore::handle`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use citycard_core::{CoreChanges, Money, StoreError};
use citycard_ledger::{
    Account, AccountBalance, AccountFlags, AccountId, AccountKind, AccountRange, Balances,
    ChangeSet, CreateTransferResult, Currency, Expiry, FailedTransfer, LedgerState, LedgerStore,
    Owner, Prefetched, Reference, Snapshot, Transfer, TransferFlags, TransferId,
};
use sqlx::postgres::PgRow;
use sqlx::{Executor, PgConnection, Row};

use crate::db::{Database, Isolation, Migration, SqlResult, corrupt};
use crate::transaction;

/// The schema of the ledger component (the SQLite store's v1 and v2 in one
/// step, plus the ledger version; v2: per-commit versions on balances and
/// the decision turn).
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        component: "ledger",
        version: 1,
        sql: "
        CREATE TABLE ledger_accounts (
            timestamp   BIGINT PRIMARY KEY,
            id          BIGINT NOT NULL UNIQUE,
            kind        INTEGER NOT NULL,
            currency    INTEGER NOT NULL,
            flags       INTEGER NOT NULL,
            upper_limit BIGINT,
            owner       TEXT,
            metadata    TEXT
        );
        CREATE TABLE ledger_transfers (
            timestamp         BIGINT PRIMARY KEY,
            id                BIGINT NOT NULL,
            debit_account_id  BIGINT NOT NULL,
            credit_account_id BIGINT NOT NULL,
            amount            BIGINT NOT NULL,
            pending_id        BIGINT,
            timeout_secs      BIGINT NOT NULL,
            currency          INTEGER NOT NULL,
            code              INTEGER NOT NULL,
            flags             INTEGER NOT NULL,
            reference         TEXT,
            memo              TEXT
        );
        CREATE UNIQUE INDEX ledger_transfers_id ON ledger_transfers (id);
        CREATE INDEX ledger_transfers_debit ON ledger_transfers (debit_account_id, timestamp);
        CREATE INDEX ledger_transfers_credit ON ledger_transfers (credit_account_id, timestamp);
        CREATE INDEX ledger_transfers_pending ON ledger_transfers (pending_id)
            WHERE pending_id IS NOT NULL;
        CREATE INDEX ledger_transfers_reference ON ledger_transfers (reference)
            WHERE reference IS NOT NULL;
        CREATE TABLE ledger_expiries (
            timestamp   BIGINT PRIMARY KEY,
            transfer_id BIGINT NOT NULL
        );
        CREATE INDEX ledger_expiries_transfer ON ledger_expiries (transfer_id);
        CREATE TABLE ledger_failures (
            id     BIGINT PRIMARY KEY,
            result INTEGER NOT NULL
        );
        CREATE TABLE ledger_live_holds (
            id        BIGINT PRIMARY KEY,
            timestamp BIGINT NOT NULL
        );
        CREATE TABLE ledger_balances (
            account_id      BIGINT PRIMARY KEY,
            debits_pending  BIGINT NOT NULL,
            debits_posted   BIGINT NOT NULL,
            credits_pending BIGINT NOT NULL,
            credits_posted  BIGINT NOT NULL,
            flags           INTEGER NOT NULL
        );
        CREATE TABLE ledger_counters (
            name  TEXT PRIMARY KEY,
            value BIGINT NOT NULL
        );
        INSERT INTO ledger_counters (name, value) VALUES ('transfers', 0), ('version', 0);
    ",
    },
    Migration {
        component: "ledger",
        version: 2,
        // Instances catch up incrementally: each balance row carries the ledger
        // version that last wrote it; the `turn` row is locked by the instance
        // deciding (see `ledger_shared`).
        sql: "
        ALTER TABLE ledger_balances ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
        CREATE INDEX ledger_balances_version ON ledger_balances (version);
        INSERT INTO ledger_counters (name, value) VALUES ('turn', 0);
    ",
    },
];

pub(crate) const TRANSFER_SELECT: &str =
    "SELECT timestamp, id, debit_account_id, credit_account_id, amount,
    pending_id, timeout_secs, currency, code, flags, reference, memo FROM ledger_transfers";

/// The ledger's [`LedgerStore`] in the citycard database (see the module
/// docs for how several instances share it).
#[derive(Debug)]
pub struct PgLedgerStore {
    pub(crate) db: Database,
    /// The ledger version this handle's state reflects (`None`: never loaded).
    version: Arc<Mutex<Option<i64>>>,
}

impl PgLedgerStore {
    /// A handle on a connected database, for one `Ledger`.
    pub fn new(db: Database) -> Self {
        Self {
            db,
            version: Arc::default(),
        }
    }

    /// Another handle on the same database, for another `Ledger`.
    pub fn handle(&self) -> Self {
        Self::new(self.db.clone())
    }

    /// The database.
    pub fn database(&self) -> &Database {
        &self.db
    }

    pub(crate) fn remembered(&self) -> Option<i64> {
        *self.version.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn remember(&self, version: Option<i64>) {
        *self.version.lock().unwrap_or_else(|e| e.into_inner()) = version;
    }

    /// Writes one ledger batch's rows inside the caller's transaction (the
    /// facade's unit of work commits them with other domains' rows), after
    /// checking and bumping the ledger version. The handle remembers the new
    /// version at once: if the caller's transaction then fails, the ledger
    /// reloads its state (and with it the version) before deciding again.
    pub async fn write_changes(
        &self,
        conn: &mut PgConnection,
        changes: &ChangeSet<'_>,
    ) -> Result<(), StoreError> {
        // A batch that changes no ledger row (only its audit record rides
        // along) leaves the version alone: nothing it decided can go stale.
        if changes.is_empty() {
            return Ok(());
        }
        let expected = self.remembered();
        let next: Option<i64> = sqlx::query_scalar(
            "UPDATE ledger_counters SET value = value + 1
             WHERE name = 'version' AND ($1::bigint IS NULL OR value = $1)
             RETURNING value",
        )
        .bind(expected)
        .fetch_optional(&mut *conn)
        .await
        .st()?;
        let Some(next) = next else {
            return Err(citycard_ledger::stale_version(
                "another instance committed since this one loaded the ledger: reload and decide again",
            ));
        };
        write_rows(conn, changes, next).await?;
        if expected.is_some() {
            self.remember(Some(next));
        }
        Ok(())
    }
}

fn ns(at: DateTime<Utc>) -> Result<i64, StoreError> {
    at.timestamp_nanos_opt()
        .ok_or_else(|| StoreError::Internal(format!("instant {at} out of range")))
}

pub(crate) fn at(ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(ns)
}

/// Stores a `u64` id bit-for-bit.
pub(crate) fn id64(id: u64) -> i64 {
    i64::from_ne_bytes(id.to_ne_bytes())
}

fn uid(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

fn small(row: &PgRow, column: usize) -> Result<u16, StoreError> {
    let v: i32 = row.try_get(column).st()?;
    u16::try_from(v).map_err(|_| corrupt(format!("{v} is not a 16-bit code")))
}

pub(crate) fn read_account(row: &PgRow) -> Result<Account, StoreError> {
    let owner: Option<String> = row.try_get(6).st()?;
    let owner = owner
        .map(|o| Owner::from_text(&o).map_err(corrupt))
        .transpose()?;
    let metadata: Option<String> = row.try_get(7).st()?;
    let metadata: BTreeMap<String, String> = match metadata {
        Some(m) => serde_json::from_str(&m).map_err(corrupt)?,
        None => BTreeMap::new(),
    };
    Ok(Account {
        created_at: at(row.try_get(0).st()?),
        id: AccountId::new(uid(row.try_get(1).st()?)),
        kind: AccountKind(small(row, 2)?),
        currency: Currency(small(row, 3)?),
        flags: AccountFlags(small(row, 4)?),
        upper_limit: row.try_get::<Option<i64>, _>(5).st()?.map(Money::from_fen),
        owner,
        metadata,
        balances: Balances::default(),
    })
}

pub(crate) fn read_transfer(row: &PgRow) -> Result<Transfer, StoreError> {
    let reference: Option<String> = row.try_get(10).st()?;
    let reference = reference
        .map(|r| Reference::parse(&r).map_err(corrupt))
        .transpose()?;
    let timeout: i64 = row.try_get(6).st()?;
    Ok(Transfer {
        timestamp: at(row.try_get(0).st()?),
        id: TransferId::new(uid(row.try_get(1).st()?)),
        debit_account_id: AccountId::new(uid(row.try_get(2).st()?)),
        credit_account_id: AccountId::new(uid(row.try_get(3).st()?)),
        amount: Money::from_fen(row.try_get(4).st()?),
        pending_id: row
            .try_get::<Option<i64>, _>(5)
            .st()?
            .map(|p| TransferId::new(uid(p))),
        timeout_secs: u32::try_from(timeout)
            .map_err(|_| corrupt(format!("timeout {timeout} out of range")))?,
        currency: Currency(small(row, 7)?),
        code: small(row, 8)?,
        flags: TransferFlags(small(row, 9)?),
        reference,
        memo: row.try_get(11).st()?,
    })
}

fn read_expiry(r: &PgRow) -> Result<Expiry, StoreError> {
    Ok(Expiry {
        timestamp: at(r.try_get(0).st()?),
        transfer_id: TransferId::new(uid(r.try_get(1).st()?)),
    })
}

fn read_failure(r: &PgRow) -> Result<FailedTransfer, StoreError> {
    let code = small(r, 1)?;
    Ok(FailedTransfer {
        id: TransferId::new(uid(r.try_get(0).st()?)),
        result: CreateTransferResult::from_code(code)
            .ok_or_else(|| corrupt(format!("unknown result code {code}")))?,
    })
}

pub(crate) fn all<T>(
    rows: &[PgRow],
    read: impl Fn(&PgRow) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    rows.iter().map(read).collect()
}

/// The columns [`read_balanced_account`] reads, from `ledger_accounts a`
/// joined with `ledger_balances b`.
pub(crate) const ACCOUNT_COLUMNS: &str =
    "a.timestamp, a.id, a.kind, a.currency, a.flags, a.upper_limit, a.owner,
     a.metadata, b.debits_pending, b.debits_posted, b.credits_pending,
     b.credits_posted, b.flags";

/// Every account with its balances and current flags, oldest first.
async fn read_accounts(c: &mut PgConnection) -> Result<Vec<Account>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {ACCOUNT_COLUMNS}
         FROM ledger_accounts a LEFT JOIN ledger_balances b ON b.account_id = a.id
         ORDER BY a.timestamp"
    ))
    .fetch_all(c)
    .await
    .st()?;
    all(&rows, read_balanced_account)
}

/// An account row with its balances row ([`ACCOUNT_COLUMNS`]).
pub(crate) fn read_balanced_account(r: &PgRow) -> Result<Account, StoreError> {
    {
        let mut a = read_account(r)?;
        if let Some(flags) = r.try_get::<Option<i32>, _>(12).st()? {
            a.balances = Balances {
                debits_pending: Money::from_fen(r.try_get(8).st()?),
                debits_posted: Money::from_fen(r.try_get(9).st()?),
                credits_pending: Money::from_fen(r.try_get(10).st()?),
                credits_posted: Money::from_fen(r.try_get(11).st()?),
            };
            a.flags =
                AccountFlags(u16::try_from(flags).map_err(|_| corrupt(format!("flags {flags}")))?);
        }
        Ok(a)
    }
}

/// The batch's rows, one array statement per table.
async fn write_rows(
    c: &mut PgConnection,
    changes: &ChangeSet<'_>,
    version: i64,
) -> Result<(), StoreError> {
    if !changes.accounts.is_empty() {
        let n = changes.accounts.len();
        let (mut ts, mut id, mut kind, mut cur, mut flags, mut limit, mut owner, mut meta) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for a in changes.accounts {
            ts.push(ns(a.created_at)?);
            id.push(id64(a.id.get()));
            kind.push(i32::from(a.kind.0));
            cur.push(i32::from(a.currency.0));
            flags.push(i32::from(a.flags.0 & !AccountFlags::CLOSED.0));
            limit.push(a.upper_limit.map(Money::fen));
            owner.push(a.owner.as_ref().map(Owner::to_text));
            meta.push(if a.metadata.is_empty() {
                None
            } else {
                Some(
                    serde_json::to_string(&a.metadata)
                        .map_err(|x| StoreError::Internal(x.to_string()))?,
                )
            });
        }
        sqlx::query(
            "INSERT INTO ledger_accounts (timestamp, id, kind, currency, flags, upper_limit, owner, metadata)
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::int[], $4::int[], $5::int[],
                                  $6::bigint[], $7::text[], $8::text[])",
        )
        .bind(ts)
        .bind(id)
        .bind(kind)
        .bind(cur)
        .bind(flags)
        .bind(limit)
        .bind(owner)
        .bind(meta)
        .execute(&mut *c)
        .await
        .st()?;
    }
    if !changes.transfers.is_empty() {
        insert_transfers(c, changes.transfers).await?;
    }
    if !changes.expiries.is_empty() {
        let mut ts = Vec::with_capacity(changes.expiries.len());
        let mut id = Vec::with_capacity(changes.expiries.len());
        for x in changes.expiries {
            ts.push(ns(x.timestamp)?);
            id.push(id64(x.transfer_id.get()));
        }
        sqlx::query(
            "INSERT INTO ledger_expiries (timestamp, transfer_id)
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[])",
        )
        .bind(ts)
        .bind(id)
        .execute(&mut *c)
        .await
        .st()?;
    }
    if !changes.failures.is_empty() {
        let id: Vec<i64> = changes.failures.iter().map(|f| id64(f.id.get())).collect();
        let result: Vec<i32> = changes
            .failures
            .iter()
            .map(|f| i32::from(f.result.code()))
            .collect();
        sqlx::query(
            "INSERT INTO ledger_failures (id, result) SELECT * FROM UNNEST($1::bigint[], $2::int[])",
        )
        .bind(id)
        .bind(result)
        .execute(&mut *c)
        .await
        .st()?;
    }
    write_state(c, changes, version).await
}

async fn insert_transfers(c: &mut PgConnection, transfers: &[Transfer]) -> Result<(), StoreError> {
    let n = transfers.len();
    let mut ts = Vec::with_capacity(n);
    let mut id = Vec::with_capacity(n);
    let mut debit = Vec::with_capacity(n);
    let mut credit = Vec::with_capacity(n);
    let mut amount = Vec::with_capacity(n);
    let mut pending = Vec::with_capacity(n);
    let mut timeout = Vec::with_capacity(n);
    let mut cur = Vec::with_capacity(n);
    let mut code = Vec::with_capacity(n);
    let mut flags = Vec::with_capacity(n);
    let mut reference = Vec::with_capacity(n);
    let mut memo = Vec::with_capacity(n);
    for t in transfers {
        ts.push(ns(t.timestamp)?);
        id.push(id64(t.id.get()));
        debit.push(id64(t.debit_account_id.get()));
        credit.push(id64(t.credit_account_id.get()));
        amount.push(t.amount.fen());
        pending.push(t.pending_id.map(|p| id64(p.get())));
        timeout.push(i64::from(t.timeout_secs));
        cur.push(i32::from(t.currency.0));
        code.push(i32::from(t.code));
        flags.push(i32::from(t.flags.0));
        reference.push(t.reference.as_ref().map(|r| r.as_str().to_owned()));
        memo.push(t.memo.clone());
    }
    sqlx::query(
        "INSERT INTO ledger_transfers
            (timestamp, id, debit_account_id, credit_account_id, amount, pending_id, timeout_secs,
             currency, code, flags, reference, memo)
         SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[],
                              $6::bigint[], $7::bigint[], $8::int[], $9::int[], $10::int[],
                              $11::text[], $12::text[])",
    )
    .bind(ts)
    .bind(id)
    .bind(debit)
    .bind(credit)
    .bind(amount)
    .bind(pending)
    .bind(timeout)
    .bind(cur)
    .bind(code)
    .bind(flags)
    .bind(reference)
    .bind(memo)
    .execute(c)
    .await
    .st()?;
    Ok(())
}

/// The state a ledger opens on: new and touched accounts' balances, live
/// holds in and out, the transfer count. Balance rows carry `version`, the
/// ledger version this commit makes, so other instances catch up on them.
async fn write_state(
    c: &mut PgConnection,
    changes: &ChangeSet<'_>,
    version: i64,
) -> Result<(), StoreError> {
    if !changes.accounts.is_empty() || !changes.balances.is_empty() {
        let created = changes.accounts.iter().map(|a| AccountBalance {
            id: a.id,
            balances: a.balances,
            flags: a.flags,
        });
        // The last word per account wins (an account created and touched in one batch).
        let mut last: BTreeMap<u64, AccountBalance> = BTreeMap::new();
        for b in created.chain(changes.balances.iter().copied()) {
            last.insert(b.id.get(), b);
        }
        let n = last.len();
        let (mut id, mut dp, mut dpo, mut cp, mut cpo, mut flags) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for b in last.values() {
            id.push(id64(b.id.get()));
            dp.push(b.balances.debits_pending.fen());
            dpo.push(b.balances.debits_posted.fen());
            cp.push(b.balances.credits_pending.fen());
            cpo.push(b.balances.credits_posted.fen());
            flags.push(i32::from(b.flags.0));
        }
        sqlx::query(
            "INSERT INTO ledger_balances
                (account_id, debits_pending, debits_posted, credits_pending, credits_posted, flags,
                 version)
             SELECT *, $7::bigint FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[],
                                              $4::bigint[], $5::bigint[], $6::int[])
             ON CONFLICT (account_id) DO UPDATE SET
                debits_pending = excluded.debits_pending, debits_posted = excluded.debits_posted,
                credits_pending = excluded.credits_pending, credits_posted = excluded.credits_posted,
                flags = excluded.flags, version = excluded.version",
        )
        .bind(id)
        .bind(dp)
        .bind(dpo)
        .bind(cp)
        .bind(cpo)
        .bind(flags)
        .bind(version)
        .execute(&mut *c)
        .await
        .st()?;
    }
    let holds: Vec<&Transfer> = changes
        .transfers
        .iter()
        .filter(|t| t.flags.pending())
        .collect();
    if !holds.is_empty() {
        let id: Vec<i64> = holds.iter().map(|t| id64(t.id.get())).collect();
        let ts = holds
            .iter()
            .map(|t| ns(t.timestamp))
            .collect::<Result<Vec<_>, _>>()?;
        sqlx::query(
            "INSERT INTO ledger_live_holds (id, timestamp) SELECT * FROM UNNEST($1::bigint[], $2::bigint[])",
        )
        .bind(id)
        .bind(ts)
        .execute(&mut *c)
        .await
        .st()?;
    }
    if !changes.released.is_empty() {
        let id: Vec<i64> = changes.released.iter().map(|t| id64(t.get())).collect();
        sqlx::query("DELETE FROM ledger_live_holds WHERE id = ANY($1::bigint[])")
            .bind(id)
            .execute(&mut *c)
            .await
            .st()?;
    }
    if !changes.transfers.is_empty() {
        sqlx::query("UPDATE ledger_counters SET value = value + $1 WHERE name = 'transfers'")
            .bind(i64::try_from(changes.transfers.len()).unwrap_or(i64::MAX))
            .execute(&mut *c)
            .await
            .st()?;
    }
    Ok(())
}

fn ids(list: &[TransferId]) -> Vec<i64> {
    list.iter().map(|id| id64(id.get())).collect()
}

#[async_trait]
impl LedgerStore for PgLedgerStore {
    async fn commit(&self, changes: &ChangeSet<'_>, core: &CoreChanges) -> Result<(), StoreError> {
        if changes.is_empty() && core.is_empty() {
            return Ok(());
        }
        transaction!(self.db, Isolation::ReadCommitted, |tx| {
            self.write_changes(&mut tx, changes).await?;
            crate::write_core_changes(&mut tx, core).await
        })
    }

    async fn load_state(&self) -> Result<LedgerState, StoreError> {
        // One snapshot: the version read is the version of the state read.
        let mut tx = self.db.pool().begin().await.st()?;
        tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .st()?;
        let version: Option<i64> =
            sqlx::query_scalar("SELECT value FROM ledger_counters WHERE name = 'version'")
                .fetch_optional(&mut *tx)
                .await
                .st()?;
        let accounts = read_accounts(&mut tx).await?;
        let holds = sqlx::query(&format!(
            "{TRANSFER_SELECT} WHERE timestamp IN (SELECT timestamp FROM ledger_live_holds)
             ORDER BY timestamp"
        ))
        .fetch_all(&mut *tx)
        .await
        .st()?;
        let holds = all(&holds, read_transfer)?;
        let last: Option<i64> = sqlx::query_scalar(
            "SELECT greatest((SELECT max(timestamp) FROM ledger_transfers),
                             (SELECT max(timestamp) FROM ledger_expiries),
                             (SELECT max(timestamp) FROM ledger_accounts))",
        )
        .fetch_one(&mut *tx)
        .await
        .st()?;
        let transfer_count: Option<i64> =
            sqlx::query_scalar("SELECT value FROM ledger_counters WHERE name = 'transfers'")
                .fetch_optional(&mut *tx)
                .await
                .st()?;
        let failure_count: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_failures")
            .fetch_one(&mut *tx)
            .await
            .st()?;
        tx.commit().await.st()?;
        self.remember(Some(version.unwrap_or(0)));
        Ok(LedgerState {
            accounts,
            holds,
            last_timestamp: last.map(at),
            transfer_count: u64::try_from(transfer_count.unwrap_or(0)).unwrap_or(0),
            failure_count: u64::try_from(failure_count).unwrap_or(0),
        })
    }

    async fn prefetch(
        &self,
        ids_wanted: &[TransferId],
        holds: &[TransferId],
    ) -> Result<Prefetched, StoreError> {
        let mut wanted: Vec<TransferId> = ids_wanted.iter().chain(holds).copied().collect();
        wanted.sort_unstable();
        wanted.dedup();
        let pool = self.db.pool();
        let transfers = sqlx::query(&format!("{TRANSFER_SELECT} WHERE id = ANY($1::bigint[])"))
            .bind(ids(&wanted))
            .fetch_all(pool)
            .await
            .st()?;
        let failures =
            sqlx::query("SELECT id, result FROM ledger_failures WHERE id = ANY($1::bigint[])")
                .bind(ids(ids_wanted))
                .fetch_all(pool)
                .await
                .st()?;
        let (settlements, expiries) = if holds.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            (
                sqlx::query(&format!("{TRANSFER_SELECT} WHERE pending_id = ANY($1::bigint[])"))
                    .bind(ids(holds))
                    .fetch_all(pool)
                    .await
                    .st()?,
                sqlx::query(
                    "SELECT timestamp, transfer_id FROM ledger_expiries WHERE transfer_id = ANY($1::bigint[])",
                )
                .bind(ids(holds))
                .fetch_all(pool)
                .await
                .st()?,
            )
        };
        Ok(Prefetched {
            transfers: all(&transfers, read_transfer)?,
            settlements: all(&settlements, read_transfer)?,
            expiries: all(&expiries, read_expiry)?,
            failures: all(&failures, read_failure)?,
        })
    }

    async fn accounts(&self, ids: &[AccountId]) -> Result<Vec<Account>, StoreError> {
        let ids: Vec<i64> = ids.iter().map(|id| id64(id.get())).collect();
        let rows = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS}
             FROM ledger_accounts a LEFT JOIN ledger_balances b ON b.account_id = a.id
             WHERE a.id = ANY($1)"
        ))
        .bind(&ids)
        .fetch_all(self.db.pool())
        .await
        .st()?;
        all(&rows, read_balanced_account)
    }

    async fn account_transfers(&self, range: &AccountRange) -> Result<Vec<Transfer>, StoreError> {
        let (from, to) = (ns(range.from)?, ns(range.to)?);
        let limit = i64::try_from(range.limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(&format!(
            "SELECT * FROM (
                (SELECT * FROM ({TRANSFER_SELECT} WHERE debit_account_id = $1
                    AND timestamp >= $2 AND timestamp < $3 ORDER BY timestamp LIMIT $4) d)
                UNION ALL
                (SELECT * FROM ({TRANSFER_SELECT} WHERE credit_account_id = $1
                    AND timestamp >= $2 AND timestamp < $3 ORDER BY timestamp LIMIT $4) c)
             ) t ORDER BY timestamp LIMIT $4"
        ))
        .bind(id64(range.account.get()))
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await
        .st()?;
        all(&rows, read_transfer)
    }

    async fn transfers_by_reference(
        &self,
        reference: &Reference,
    ) -> Result<Vec<Transfer>, StoreError> {
        let rows = sqlx::query(&format!(
            "{TRANSFER_SELECT} WHERE reference = $1 ORDER BY timestamp"
        ))
        .bind(reference.as_str())
        .fetch_all(self.db.pool())
        .await
        .st()?;
        all(&rows, read_transfer)
    }

    async fn load(&self) -> Result<Snapshot, StoreError> {
        let mut tx = self.db.pool().begin().await.st()?;
        tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .st()?;
        let accounts = read_accounts(&mut tx).await?;
        let transfers = sqlx::query(&format!("{TRANSFER_SELECT} ORDER BY timestamp"))
            .fetch_all(&mut *tx)
            .await
            .st()?;
        let expiries =
            sqlx::query("SELECT timestamp, transfer_id FROM ledger_expiries ORDER BY timestamp")
                .fetch_all(&mut *tx)
                .await
                .st()?;
        let failures = sqlx::query("SELECT id, result FROM ledger_failures ORDER BY id")
            .fetch_all(&mut *tx)
            .await
            .st()?;
        tx.commit().await.st()?;
        Ok(Snapshot {
            accounts,
            transfers: all(&transfers, read_transfer)?,
            expiries: all(&expiries, read_expiry)?,
            failures: all(&failures, read_failure)?,
        })
    }

    fn shared(&self) -> Option<&dyn citycard_ledger::SharedLedgerStore> {
        Some(self)
    }
}
