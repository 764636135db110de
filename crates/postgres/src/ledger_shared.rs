//! The ledger store's shared side ([`citycard_ledger::SharedLedgerStore`]):
//! several instances take turns to decide, and catch up incrementally.
//!
//! - **Turns**: an instance about to decide a batch opens a transaction of
//!   its own (READ COMMITTED, on a pool connection) and locks the
//!   `ledger_counters` row `turn` `FOR UPDATE`. It holds it while it decides
//!   and while its commit (another transaction, the batch's) runs, then
//!   commits the turn's transaction. PostgreSQL queues the waiters on the
//!   row lock, so instances writing flat out alternate. The turn's
//!   transaction writes nothing; if the instance dies or drops the turn, the
//!   server (or sqlx's rollback on drop) releases it. A turn also sets
//!   `idle_in_transaction_session_timeout` (60 s) so a hung instance cannot
//!   hold it for ever.
//! - **Catch-up**: every balance row carries the ledger version of the commit
//!   that last wrote it. Once it holds the turn, the instance reads the
//!   version; when it moved from the one it remembers, it reads the accounts
//!   whose balances row has a newer version (index `ledger_balances_version`),
//!   the live holds on them, the newest timestamp and the transfer count.
//!   Reads do the same without a turn, in one REPEATABLE READ snapshot, after
//!   one query says the version moved.
//!
//! The version compare-and-set of every commit ([`PgLedgerStore::write_changes`])
//! is unchanged: turns make stale decisions rare, the check makes them harmless.

use async_trait::async_trait;
use citycard_core::StoreError;
use citycard_ledger::{CatchUp, DecisionTurn, SharedLedgerStore, Turn};
use sqlx::{Executor, PgConnection, Postgres, Transaction};

use crate::db::SqlResult;
use crate::ledger::{
    ACCOUNT_COLUMNS, PgLedgerStore, TRANSFER_SELECT, all, at, read_balanced_account, read_transfer,
};

/// A turn: the transaction holding the `turn` row's lock.
struct PgTurn {
    tx: Transaction<'static, Postgres>,
}

#[async_trait]
impl DecisionTurn for PgTurn {
    async fn end(self: Box<Self>) {
        // It wrote nothing: committing only releases the lock. On an error
        // the connection is dropped, which releases it as well.
        let _ = self.tx.commit().await;
    }
}

/// The ledger version now.
async fn version(c: &mut PgConnection) -> Result<i64, StoreError> {
    let v: Option<i64> =
        sqlx::query_scalar("SELECT value FROM ledger_counters WHERE name = 'version'")
            .fetch_optional(c)
            .await
            .st()?;
    Ok(v.unwrap_or(0))
}

/// What commits after version `since` changed, read on `c`.
async fn changes_since(c: &mut PgConnection, since: i64) -> Result<CatchUp, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {ACCOUNT_COLUMNS}
         FROM ledger_balances b JOIN ledger_accounts a ON a.id = b.account_id
         WHERE b.version > $1"
    ))
    .bind(since)
    .fetch_all(&mut *c)
    .await
    .st()?;
    let accounts = all(&rows, read_balanced_account)?;
    let ids: Vec<i64> = rows
        .iter()
        .map(|r| sqlx::Row::try_get::<i64, _>(r, 1))
        .collect::<Result<_, _>>()
        .st()?;
    let holds = if ids.is_empty() {
        Vec::new()
    } else {
        let rows = sqlx::query(&format!(
            "{TRANSFER_SELECT}
             WHERE timestamp IN (SELECT timestamp FROM ledger_live_holds)
               AND (debit_account_id = ANY($1::bigint[]) OR credit_account_id = ANY($1::bigint[]))
             ORDER BY timestamp"
        ))
        .bind(&ids)
        .fetch_all(&mut *c)
        .await
        .st()?;
        all(&rows, read_transfer)?
    };
    let (last, transfers): (Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT greatest((SELECT max(timestamp) FROM ledger_transfers),
                         (SELECT max(timestamp) FROM ledger_expiries),
                         (SELECT max(timestamp) FROM ledger_accounts)),
                (SELECT value FROM ledger_counters WHERE name = 'transfers')",
    )
    .fetch_one(&mut *c)
    .await
    .st()?;
    Ok(CatchUp {
        accounts,
        holds,
        last_timestamp: last.map(at),
        transfer_count: transfers.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
    })
}

#[async_trait]
impl SharedLedgerStore for PgLedgerStore {
    async fn begin_decision(&self) -> Result<Option<Turn>, StoreError> {
        let Some(known) = self.remembered() else {
            return Ok(None);
        };
        let mut tx = self.db.pool().begin().await.st()?;
        tx.execute("SET LOCAL idle_in_transaction_session_timeout = '60s'")
            .await
            .st()?;
        sqlx::query("SELECT value FROM ledger_counters WHERE name = 'turn' FOR UPDATE")
            .fetch_optional(&mut *tx)
            .await
            .st()?;
        // Holding the turn, each statement sees every commit made before it.
        let now = version(&mut tx).await?;
        let catch_up = if now == known {
            None
        } else {
            let delta = changes_since(&mut tx, known).await?;
            self.remember(Some(now));
            Some(delta)
        };
        Ok(Some(Turn {
            catch_up,
            turn: Box::new(PgTurn { tx }),
        }))
    }

    async fn catch_up(&self) -> Result<Option<CatchUp>, StoreError> {
        let Some(known) = self.remembered() else {
            return Ok(None);
        };
        let mut conn = self.db.pool().acquire().await.st()?;
        if version(&mut conn).await? == known {
            return Ok(None);
        }
        let mut tx = sqlx::Connection::begin(&mut *conn).await.st()?;
        tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .st()?;
        let now = version(&mut tx).await?;
        let delta = changes_since(&mut tx, known).await?;
        tx.commit().await.st()?;
        self.remember(Some(now));
        Ok(Some(delta))
    }
}
