//! Opening the database file, its pragmas, and schema migrations.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use citycard_core::{ClassifiedError, ErrorClass, StoreError};
pub use rusqlite::Connection;
use rusqlite::{ErrorCode, OpenFlags, OptionalExtension, params};

/// `PRAGMA application_id` of a citycard database: "CCRD" in ASCII.
pub const APPLICATION_ID: i32 = 0x4343_5244;

/// How long a connection waits for a lock held by another process before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One schema change of one component (`core`, `ledger`, ...).
///
/// Versions of a component start at 1 and go up by one; each runs once, in
/// its own transaction, and is recorded in the `citycard_schema` table.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The component that owns the tables.
    pub component: &'static str,
    /// The version this migration brings the component to.
    pub version: u32,
    /// The SQL to run (several statements allowed).
    pub sql: &'static str,
}

/// What can go wrong opening or migrating a database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// The file could not be opened or created.
    #[error("cannot open database {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The file is an SQLite database of another application, or not a database at all.
    #[error("{path} is not a citycard database: choose another file or directory")]
    NotCitycard {
        /// The file.
        path: PathBuf,
    },
    /// The file was written by a newer citycard: upgrade the program, never downgrade the data.
    #[error(
        "database schema of {component} is at version {found}, newer than this program supports ({supported}): upgrade citycard"
    )]
    SchemaTooNew {
        /// The component.
        component: String,
        /// The version in the file.
        found: u32,
        /// The newest version this program knows.
        supported: u32,
    },
    /// The file was written by an older citycard and a read-only open cannot migrate it.
    #[error(
        "database schema of {component} is at version {found}, older than this program reads ({supported}): open it once with a writable citycard (e.g. the host application or `citycard demo`) to migrate it"
    )]
    SchemaTooOld {
        /// The component.
        component: String,
        /// The version in the file (0: the component's tables are missing).
        found: u32,
        /// The version this program reads.
        supported: u32,
    },
    /// A migration failed; the database is left at the previous version.
    #[error("migration {component} v{version} failed: {source}")]
    Migration {
        /// The component.
        component: &'static str,
        /// The version that failed.
        version: u32,
        /// Why.
        source: rusqlite::Error,
    },
    /// Any other SQLite failure.
    #[error("sqlite error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl ClassifiedError for SqliteError {
    fn class(&self) -> ErrorClass {
        match self {
            SqliteError::NotCitycard { .. }
            | SqliteError::SchemaTooNew { .. }
            | SqliteError::SchemaTooOld { .. } => ErrorClass::InvalidInput,
            SqliteError::Open { source, .. } | SqliteError::Sqlite(source) => {
                to_store_error(source).class()
            }
            SqliteError::Migration { .. } => ErrorClass::Internal,
        }
    }
}

/// Maps an SQLite error to the storage error every port returns.
pub fn to_store_error(error: &rusqlite::Error) -> StoreError {
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(error.to_string())
        }
        Some(ErrorCode::ConstraintViolation) => StoreError::Conflict(error.to_string()),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            StoreError::Corrupt(error.to_string())
        }
        _ => StoreError::Internal(error.to_string()),
    }
}

/// An open citycard database: one SQLite file holding every store.
///
/// Cloning is cheap and shares the connection. Calls are serialised on one
/// connection: SQLite allows one writer at a time anyway, and each store
/// operation is short, so ports run it on the caller's task. A host that must
/// never block its async workers can wrap calls in `spawn_blocking`.
///
/// Durability: WAL journal with `synchronous = FULL`, so a committed
/// transaction survives power loss. Stores that write many rows (the ledger)
/// group them into one transaction per batch, so the fsync is paid once per
/// batch.
#[derive(Clone)]
pub struct Database {
    // Readers first: fields drop in order, so the writer closes last and
    // checkpoints the WAL into the file (a read-only reader cannot).
    readers: Arc<Readers>,
    conn: Arc<Mutex<Connection>>,
    path: Option<PathBuf>,
    commits: Arc<AtomicU64>,
}

/// Idle read-only connections to the file (WAL lets them read the last
/// committed state while the writer commits).
#[derive(Default)]
struct Readers {
    /// `false` for an in-memory or read-only database: reads use the one connection.
    enabled: bool,
    idle: Mutex<Vec<Connection>>,
}

/// The writer connection's page cache, in KiB (SQLite's default is 2 MiB).
const WRITER_CACHE_KIB: u32 = 128 * 1024;

/// WAL pages between automatic checkpoints (SQLite's default is 1,000).
const WAL_CHECKPOINT_PAGES: u32 = 16_384;

/// How many idle reader connections a database keeps open.
const MAX_IDLE_READERS: usize = 4;

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.path {
            Some(p) => write!(f, "Database({})", p.display()),
            None => f.write_str("Database(:memory:)"),
        }
    }
}

impl Database {
    /// Opens (or creates) a database file and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Database, SqliteError> {
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(|source| SqliteError::Open {
            path: path.clone(),
            source,
        })?;
        Self::init(conn, Some(path))
    }

    /// Opens an existing citycard database for reading only.
    ///
    /// The file is opened with `SQLITE_OPEN_READ_ONLY`: it is never created,
    /// migrated or changed, and every write through this handle fails. An
    /// empty file, another application's database or any other file is
    /// refused as [`SqliteError::NotCitycard`]; a schema older or newer than
    /// this program's is refused as [`SqliteError::SchemaTooOld`] or
    /// [`SqliteError::SchemaTooNew`]. SQLite may create the WAL index files
    /// (`-wal`, `-shm`) beside the database when the directory is writable;
    /// when it cannot (a read-only directory or mount with no index file),
    /// the file is opened as immutable, which is safe only because nothing
    /// can be writing there either.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Database, SqliteError> {
        let path = path.as_ref().to_path_buf();
        let not_ours = || SqliteError::NotCitycard { path: path.clone() };
        // An empty file is what `Database::open` would turn into a new
        // database; a missing one fails to open below.
        if let Ok(meta) = std::fs::metadata(&path)
            && (!meta.is_file() || meta.len() == 0)
        {
            return Err(not_ours());
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn =
            Connection::open_with_flags(&path, flags).map_err(|source| SqliteError::Open {
                path: path.clone(),
                source,
            })?;
        let probe = |conn: &Connection| -> rusqlite::Result<i32> {
            conn.query_row("PRAGMA application_id", [], |r| r.get(0))
        };
        let (conn, app_id) = match probe(&conn) {
            Ok(id) => (conn, id),
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::NotADatabase) => {
                return Err(not_ours());
            }
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::CannotOpen) => {
                // A WAL database in a directory where the index cannot be made.
                drop(conn);
                let uri = format!("file:{}?immutable=1", uri_path(&path));
                let conn = Connection::open_with_flags(&uri, flags).map_err(|source| {
                    SqliteError::Open {
                        path: path.clone(),
                        source,
                    }
                })?;
                let id = probe(&conn).map_err(|e| match e.sqlite_error_code() {
                    Some(ErrorCode::NotADatabase) => not_ours(),
                    _ => SqliteError::Sqlite(e),
                })?;
                (conn, id)
            }
            Err(e) => return Err(SqliteError::Sqlite(e)),
        };
        if app_id != APPLICATION_ID {
            return Err(not_ours());
        }
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.execute_batch("PRAGMA query_only = ON; PRAGMA foreign_keys = ON;")?;
        check_schema(&conn, &crate::all_migrations())?;
        Ok(Database {
            conn: Arc::new(Mutex::new(conn)),
            path: Some(path),
            readers: Arc::default(),
            commits: Arc::default(),
        })
    }

    /// A private in-memory database (for tests and demos).
    pub fn open_in_memory() -> Result<Database, SqliteError> {
        Self::init(Connection::open_in_memory()?, None)
    }

    fn init(conn: Connection, path: Option<PathBuf>) -> Result<Database, SqliteError> {
        let shown = path.clone().unwrap_or_else(|| PathBuf::from(":memory:"));
        let not_ours = |e: rusqlite::Error| match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => SqliteError::NotCitycard {
                path: shown.clone(),
            },
            _ => SqliteError::Sqlite(e),
        };
        let app_id: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(not_ours)?;
        let table_count: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(not_ours)?;
        if app_id != APPLICATION_ID && (app_id != 0 || table_count > 0) {
            return Err(SqliteError::NotCitycard { path: shown });
        }
        conn.busy_timeout(BUSY_TIMEOUT)?;
        if path.is_some() {
            let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            debug_assert_eq!(mode.to_lowercase(), "wal");
            // The writer's cache holds the hot index pages of a settlement
            // (the ledger's id and account indexes are written at random), and
            // a larger WAL between checkpoints writes a page touched by several
            // chunks back to the file once.
            conn.execute_batch(&format!(
                "PRAGMA cache_size = -{WRITER_CACHE_KIB}; PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES};"
            ))?;
        }
        conn.execute_batch(
            "PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;",
        )?;
        conn.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID};"))?;
        let mut conn = conn;
        migrate(&mut conn, &crate::all_migrations())?;
        // Statement journals (a multi-row insert that may hit a unique key
        // keeps the pages it changes, to undo just itself) in memory, not a
        // temporary file: a settlement chunk's commit spent a fifth of its
        // time writing them. Set after the migrations, whose index builds
        // may sort more than memory should hold.
        conn.execute_batch("PRAGMA temp_store = MEMORY;")?;
        let commits = Arc::new(AtomicU64::new(0));
        let counter = commits.clone();
        conn.commit_hook(Some(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            false
        }));
        Ok(Database {
            conn: Arc::new(Mutex::new(conn)),
            readers: Arc::new(Readers {
                enabled: path.is_some(),
                idle: Mutex::default(),
            }),
            path,
            commits,
        })
    }

    /// The file, or `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Locks the connection for a store operation.
    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the connection, mapping SQLite errors to [`StoreError`].
    pub fn with<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<R>,
    ) -> Result<R, StoreError> {
        let mut conn = self.lock();
        f(&mut conn).map_err(|e| to_store_error(&e))
    }

    /// Runs `f` on a read-only connection: a reader of the file when this is
    /// a file database (so reads do not wait behind the writer's transaction,
    /// and see the last committed state), else the one connection.
    ///
    /// Use it only for reads; a write through it fails (`query_only`).
    pub fn read<R>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<R>,
    ) -> Result<R, StoreError> {
        let Some(path) = self.path.as_ref().filter(|_| self.readers.enabled) else {
            return self.with(|c| f(c));
        };
        let idle = self
            .readers
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_reader(path).map_err(|e| to_store_error(&e))?,
        };
        let out = f(&conn).map_err(|e| to_store_error(&e));
        let mut idle = self.readers.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        out
    }

    /// How many write transactions this handle's connection has committed
    /// since it opened (explicit transactions and single writing
    /// statements alike): the figure the one-commit-per-operation tests and
    /// the benchmarks count.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Runs `f` inside one `IMMEDIATE` transaction: all of it commits or none of it.
    pub fn transaction<R>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| to_store_error(&e))?;
        let out = f(&tx)?;
        tx.commit().map_err(|e| to_store_error(&e))?;
        Ok(out)
    }

    /// The schema version of each component in this file.
    pub fn schema_versions(&self) -> Result<Vec<(String, u32)>, StoreError> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT component, version FROM citycard_schema ORDER BY component")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }
}

/// A file path as the path part of an SQLite URI (`?`, `#` and `%` escaped).
/// A read-only connection to a database file the writer has opened and migrated.
fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch("PRAGMA query_only = ON;")?;
    Ok(conn)
}

fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out
}

/// Checks, without writing, that every component is at the newest known version.
pub fn check_schema(conn: &Connection, migrations: &[Migration]) -> Result<(), SqliteError> {
    let has_table: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'citycard_schema'",
        [],
        |r| r.get(0),
    )?;
    let mut components: Vec<&'static str> = migrations.iter().map(|m| m.component).collect();
    components.sort_unstable();
    components.dedup();
    for component in components {
        let current: u32 = if has_table {
            conn.query_row(
                "SELECT version FROM citycard_schema WHERE component = ?1",
                [component],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0)
        } else {
            0
        };
        let supported = migrations
            .iter()
            .filter(|m| m.component == component)
            .map(|m| m.version)
            .max()
            .unwrap_or(0);
        if current > supported {
            return Err(SqliteError::SchemaTooNew {
                component: component.to_owned(),
                found: current,
                supported,
            });
        }
        if current < supported {
            return Err(SqliteError::SchemaTooOld {
                component: component.to_owned(),
                found: current,
                supported,
            });
        }
    }
    Ok(())
}

/// Brings every component up to the newest known version.
pub fn migrate(conn: &mut Connection, migrations: &[Migration]) -> Result<(), SqliteError> {
    // Functions the migrations' SQL calls (the ledger's v3 packs references).
    #[cfg(feature = "ledger")]
    conn.create_scalar_function(
        "citycard_stored_reference",
        1,
        rusqlite::functions::FunctionFlags::SQLITE_UTF8
            | rusqlite::functions::FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            use rusqlite::types::Value;
            Ok(match ctx.get::<Option<String>>(0)? {
                None => Value::Null,
                Some(text) => match crate::ledger::StoredReference::of(&text) {
                    crate::ledger::StoredReference::Trip(b) => Value::Blob(b.to_vec()),
                    crate::ledger::StoredReference::Text(t) => Value::Text(t.to_owned()),
                },
            })
        },
    )?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS citycard_schema (
            component  TEXT PRIMARY KEY,
            version    INTEGER NOT NULL,
            applied_at INTEGER NOT NULL
        );",
    )?;
    let mut components: Vec<&'static str> = migrations.iter().map(|m| m.component).collect();
    components.sort_unstable();
    components.dedup();
    for component in components {
        let current: u32 = conn
            .query_row(
                "SELECT version FROM citycard_schema WHERE component = ?1",
                [component],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let mut steps: Vec<&Migration> = migrations
            .iter()
            .filter(|m| m.component == component)
            .collect();
        steps.sort_by_key(|m| m.version);
        let supported = steps.last().map_or(0, |m| m.version);
        if current > supported {
            return Err(SqliteError::SchemaTooNew {
                component: component.to_owned(),
                found: current,
                supported,
            });
        }
        for step in steps.into_iter().filter(|m| m.version > current) {
            let fail = |source| SqliteError::Migration {
                component,
                version: step.version,
                source,
            };
            let tx = conn.transaction().map_err(fail)?;
            tx.execute_batch(step.sql).map_err(fail)?;
            tx.execute(
                "INSERT INTO citycard_schema (component, version, applied_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (component) DO UPDATE SET version = excluded.version, applied_at = excluded.applied_at",
                params![component, step.version, Utc::now().timestamp()],
            )
            .map_err(fail)?;
            tx.commit().map_err(fail)?;
        }
    }
    Ok(())
}

/// Stores an instant as microseconds since the Unix epoch (portable `BIGINT`).
pub fn encode_instant(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// Reads an instant stored by [`encode_instant`].
pub fn decode_instant(micros: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::Corrupt(format!("instant {micros} out of range")))
}

/// A column-level decoding failure, for `query_row` closures.
pub fn corrupt(column: usize, message: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Text,
        message.to_string().into(),
    )
}
