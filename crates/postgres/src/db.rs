//! Connecting to the server, the pool, schema migrations and transactions.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use citycard_core::{ClassifiedError, ErrorClass, StoreError};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, Postgres, Row};

/// One schema change of one component (`core`, `ledger`, ...), as in the
/// SQLite store: versions start at 1 and go up by one, and the version each
/// component reached is kept in the `citycard_schema` table.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The component that owns the tables.
    pub component: &'static str,
    /// The version this migration brings the component to.
    pub version: u32,
    /// The SQL to run (several statements allowed).
    pub sql: &'static str,
}

/// What can go wrong connecting to or migrating a database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// The URL could not be parsed.
    #[error("bad PostgreSQL URL: {0}")]
    Url(String),
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    /// The schema holds tables but no citycard bookkeeping: another application's.
    #[error(
        "schema {schema} is not a citycard database (it has other tables): choose another database or schema"
    )]
    NotCitycard {
        /// The schema (`current_schema()` of the connection).
        schema: String,
    },
    /// The database was written by a newer citycard: upgrade the program, never downgrade the data.
    #[error(
        "database schema of {component} is at version {found}, newer than this program supports ({supported}): upgrade citycard"
    )]
    SchemaTooNew {
        /// The component.
        component: String,
        /// The version in the database.
        found: u32,
        /// The newest version this program knows.
        supported: u32,
    },
    /// A migration failed; the database is left as it was.
    #[error("migration {component} v{version} failed: {message}")]
    Migration {
        /// The component.
        component: &'static str,
        /// The version that failed.
        version: u32,
        /// Why.
        message: String,
    },
    /// Any other failure talking to the server.
    #[error("postgres error: {0}")]
    Sql(String),
}

impl ClassifiedError for PgError {
    fn class(&self) -> ErrorClass {
        match self {
            PgError::Url(_) | PgError::NotCitycard { .. } | PgError::SchemaTooNew { .. } => {
                ErrorClass::InvalidInput
            }
            PgError::Connect(_) => ErrorClass::Unavailable,
            PgError::Migration { .. } | PgError::Sql(_) => ErrorClass::Internal,
        }
    }
}

/// The message prefix of a [`StoreError::Unavailable`] that a transaction
/// retries by itself: serialization failures (SQLSTATE 40001) and deadlocks
/// (40P01). sqlx does not retry them.
const RETRYABLE: &str = "retryable: ";

/// Maps a PostgreSQL error to the storage error every port returns.
///
/// Integrity violations (unique, foreign key, check, exclusion) are
/// conflicts; serialization failures and deadlocks are retryable
/// unavailability; a lost connection or an exhausted pool is unavailability.
pub fn to_store_error(error: &sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match code.as_str() {
                "40001" | "40P01" => StoreError::Unavailable(format!("{RETRYABLE}{db}")),
                c if c.starts_with("23") => StoreError::Conflict(db.to_string()),
                // Connection exceptions, insufficient resources, operator intervention.
                c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57") => {
                    StoreError::Unavailable(db.to_string())
                }
                "XX001" | "XX002" => StoreError::Corrupt(db.to_string()),
                _ => StoreError::Internal(db.to_string()),
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error.to_string()),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(error.to_string())
        }
        _ => StoreError::Internal(error.to_string()),
    }
}

/// `?` on sqlx results inside store code: maps the error with [`to_store_error`].
pub trait SqlResult<T> {
    /// The result with its error mapped to a [`StoreError`].
    fn st(self) -> Result<T, StoreError>;
}

impl<T> SqlResult<T> for Result<T, sqlx::Error> {
    fn st(self) -> Result<T, StoreError> {
        self.map_err(|e| to_store_error(&e))
    }
}

/// Whether a failed transaction may be run again from the start.
pub fn is_retryable(error: &StoreError) -> bool {
    matches!(error, StoreError::Unavailable(m) if m.starts_with(RETRYABLE))
}

/// How many times a write transaction that hit a serialization failure or a
/// deadlock is run again before the failure is returned.
pub const MAX_ATTEMPTS: u32 = 16;

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Connections the pool opens at most (per app instance).
    pub max_connections: u32,
    /// How long a caller waits for a free connection before `Unavailable`.
    pub acquire_timeout: Duration,
    /// Whether statements are prepared and cached per connection. Turn it off
    /// behind PgBouncer in transaction mode before PgBouncer 1.21.
    pub statement_cache: bool,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
            statement_cache: true,
        }
    }
}

/// A citycard database on a PostgreSQL server: a connection pool whose
/// connections all work in one schema, migrated when connecting.
///
/// Cloning is cheap and shares the pool. Every write goes through
/// [`Database::begin`] / [`Database::finish`] (or the `transaction!` macro of
/// this crate), which runs a transaction again when the server reports a
/// serialization failure or a deadlock.
#[derive(Clone)]
pub struct Database {
    pool: PgPool,
    schema: Arc<str>,
    commits: Arc<AtomicU64>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: show only the schema.
        write!(f, "PgDatabase(schema {})", self.schema)
    }
}

/// What [`Database::finish`] tells the caller's loop.
#[derive(Debug)]
pub enum Finish<R> {
    /// Committed (or failed for good): return this.
    Done(Result<R, StoreError>),
    /// Rolled back on a serialization failure or deadlock: run the transaction again.
    Retry,
}

impl Database {
    /// Connects with a URL (`postgres://user:password@host:port/db?sslmode=require`)
    /// and default pool settings, and brings the schema up to date.
    ///
    /// TLS follows `sslmode` in the URL (rustls, with the platform's web PKI
    /// roots, or `sslrootcert`); loopback tests may use `sslmode=disable`.
    pub async fn connect(url: &str) -> Result<Database, PgError> {
        let options = PgConnectOptions::from_str(url).map_err(|e| PgError::Url(e.to_string()))?;
        Self::connect_with(options, PoolSettings::default()).await
    }

    /// Connects with explicit options and pool settings, and migrates.
    ///
    /// Set the schema with `options.options([("search_path", "name")])`;
    /// by default the server's search path applies (usually `public`).
    pub async fn connect_with(
        options: PgConnectOptions,
        settings: PoolSettings,
    ) -> Result<Database, PgError> {
        let options = if settings.statement_cache {
            options
        } else {
            options.statement_cache_capacity(0)
        };
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| PgError::Connect(e.to_string()))?;
        let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
            .fetch_one(&pool)
            .await
            .map_err(|e| PgError::Connect(e.to_string()))?;
        let db = Database {
            pool,
            schema: schema.into(),
            commits: Arc::default(),
        };
        db.migrate(&crate::all_migrations()).await?;
        Ok(db)
    }

    /// The connection pool (for reads that need no transaction).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema every connection works in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// How many write transactions this handle has committed since it connected.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Starts a write transaction at the given isolation.
    pub async fn begin(
        &self,
        isolation: Isolation,
    ) -> Result<sqlx::Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await.st()?;
        if isolation == Isolation::Serializable {
            tx.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                .await
                .st()?;
        }
        Ok(tx)
    }

    /// Ends a transaction started by [`Database::begin`]: commits on `Ok`,
    /// rolls back on `Err`, and asks for another attempt when the body or the
    /// commit hit a serialization failure or a deadlock (at most
    /// [`MAX_ATTEMPTS`] attempts in all).
    pub async fn finish<R>(
        &self,
        tx: sqlx::Transaction<'static, Postgres>,
        result: Result<R, StoreError>,
        attempt: u32,
    ) -> Finish<R> {
        let outcome = match result {
            Ok(value) => match tx.commit().await.st() {
                Ok(()) => {
                    self.commits.fetch_add(1, Ordering::Relaxed);
                    Ok(value)
                }
                Err(e) => Err(e),
            },
            Err(e) => {
                // Dropping the transaction rolls it back; say so explicitly so
                // the connection returns to the pool clean.
                let _ = tx.rollback().await;
                Err(e)
            }
        };
        match outcome {
            Err(e) if is_retryable(&e) && attempt + 1 < MAX_ATTEMPTS => Finish::Retry,
            other => Finish::Done(other),
        }
    }

    /// The schema version of each component in this database.
    pub async fn schema_versions(&self) -> Result<Vec<(String, u32)>, StoreError> {
        let rows = sqlx::query("SELECT component, version FROM citycard_schema ORDER BY component")
            .fetch_all(&self.pool)
            .await
            .st()?;
        rows.iter()
            .map(|r| {
                let v: i64 = r.try_get(1).st()?;
                Ok((r.try_get(0).st()?, u32::try_from(v).unwrap_or(u32::MAX)))
            })
            .collect()
    }

    /// Brings every component up to the newest known version.
    ///
    /// One transaction for all components, holding an advisory lock on the
    /// schema, so two instances starting together migrate once and a failed
    /// migration leaves the database exactly as it was. A schema with tables
    /// but no `citycard_schema`, or with a component newer than this
    /// program, is refused and not touched.
    async fn migrate(&self, migrations: &[Migration]) -> Result<(), PgError> {
        let sql = |e: sqlx::Error| PgError::Sql(e.to_string());
        let mut conn = self.pool.acquire().await.map_err(sql)?;
        let mut tx = conn.begin().await.map_err(sql)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('citycard:' || current_schema()))")
            .execute(&mut *tx)
            .await
            .map_err(sql)?;
        let has_bookkeeping: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_tables
                            WHERE schemaname = current_schema() AND tablename = 'citycard_schema')",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(sql)?;
        if !has_bookkeeping {
            let others: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'v', 'm', 'p', 'f')",
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(sql)?;
            if others > 0 {
                return Err(PgError::NotCitycard {
                    schema: self.schema.to_string(),
                });
            }
            tx.execute(
                "CREATE TABLE citycard_schema (
                    component  TEXT PRIMARY KEY,
                    version    BIGINT NOT NULL,
                    applied_at BIGINT NOT NULL
                )",
            )
            .await
            .map_err(sql)?;
        }
        let mut components: Vec<&'static str> = migrations.iter().map(|m| m.component).collect();
        components.sort_unstable();
        components.dedup();
        // Refuse a newer component before changing anything.
        let mut plan: Vec<&Migration> = Vec::new();
        for component in components {
            let current: Option<i64> =
                sqlx::query_scalar("SELECT version FROM citycard_schema WHERE component = $1")
                    .bind(component)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(sql)?;
            let current = u32::try_from(current.unwrap_or(0)).unwrap_or(u32::MAX);
            let mut steps: Vec<&Migration> = migrations
                .iter()
                .filter(|m| m.component == component)
                .collect();
            steps.sort_by_key(|m| m.version);
            let supported = steps.last().map_or(0, |m| m.version);
            if current > supported {
                return Err(PgError::SchemaTooNew {
                    component: component.to_owned(),
                    found: current,
                    supported,
                });
            }
            plan.extend(steps.into_iter().filter(|m| m.version > current));
        }
        for step in plan {
            let fail = |e: sqlx::Error| PgError::Migration {
                component: step.component,
                version: step.version,
                message: e.to_string(),
            };
            tx.execute(step.sql).await.map_err(fail)?;
            sqlx::query(
                "INSERT INTO citycard_schema (component, version, applied_at) VALUES ($1, $2, $3)
                 ON CONFLICT (component) DO UPDATE
                 SET version = excluded.version, applied_at = excluded.applied_at",
            )
            .bind(step.component)
            .bind(i64::from(step.version))
            .bind(Utc::now().timestamp())
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        }
        tx.commit().await.map_err(sql)?;
        Ok(())
    }
}

/// The isolation of a write transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// READ COMMITTED: for transactions that lock what they read (`FOR UPDATE`)
    /// or only insert under unique constraints.
    ReadCommitted,
    /// SERIALIZABLE: for read-then-write transactions; a conflict with another
    /// transaction aborts one of them (40001) and it is run again.
    Serializable,
}

/// Runs a block in a write transaction, again on serialization failures and
/// deadlocks: `transaction!(db, Isolation::Serializable, |tx| { ...; Ok(x) })`.
/// Inside the block `tx` is the `sqlx::Transaction`; use `&mut *tx` as the
/// executor. The block is an `async` block returning `Result<_, StoreError>`.
#[macro_export]
macro_rules! transaction {
    ($db:expr, $isolation:expr, |$tx:ident| $body:block) => {{
        let db: &$crate::Database = &$db;
        let mut attempt = 0u32;
        loop {
            let mut $tx = db.begin($isolation).await?;
            let result = async { $body }.await;
            match db.finish($tx, result, attempt).await {
                $crate::db::Finish::Done(r) => break r,
                $crate::db::Finish::Retry => attempt += 1,
            }
        }
    }};
}

/// Stores an instant as microseconds since the Unix epoch (as the SQLite store does).
pub fn encode_instant(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// Reads an instant stored by [`encode_instant`].
pub fn decode_instant(micros: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::Corrupt(format!("instant {micros} out of range")))
}

/// A stored value that does not decode: the store is corrupt.
pub fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// A connection that is not in a transaction (for tests and tools).
pub async fn connect_once(url: &str) -> Result<PgConnection, PgError> {
    PgConnection::connect(url)
        .await
        .map_err(|e| PgError::Connect(e.to_string()))
}

/// Runs one statement without parameters (a savepoint, say) on a
/// connection or inside a transaction.
pub async fn execute(conn: &mut PgConnection, statement: &str) -> Result<(), StoreError> {
    sqlx::query(statement).execute(conn).await.map(|_| ()).st()
}
