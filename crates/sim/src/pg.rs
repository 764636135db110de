//! Runs on PostgreSQL: the same seeds, plans and checks as the memory runs,
//! with every store on a PostgreSQL database (a fresh schema per run on the
//! server named by `CITYCARD_TEST_POSTGRES`, as the other PostgreSQL tests
//! use). Settlement commits in chunks of four trips there too.

use crate::plan::Size;
use crate::run::{Failure, Options, Report, run};
use crate::world::Store;

/// Whether a PostgreSQL server is configured (in CI, a missing one fails:
/// see `citycard_postgres::testing::server_available`).
pub fn available() -> bool {
    citycard_postgres::testing::server_available()
}

/// The server's URL with `schema` as the search path.
fn url_in(schema: &str) -> Result<String, String> {
    let url = citycard_postgres::testing::server_url()
        .ok_or_else(|| format!("no PostgreSQL: set {}", citycard_postgres::testing::URL_VAR))?;
    let sep = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{sep}options=-c%20search_path%3D{schema}"))
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> Result<T, String> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(f))
}

/// Runs `seed` on a fresh schema; the schema is dropped after a passing run
/// and kept (named in the failure) after a failing one.
pub fn run_seed(seed: u64, size: Size) -> Result<Report, Failure> {
    let fail = |message: String| Failure {
        seed,
        step: None,
        message,
        trace_tail: Vec::new(),
    };
    let schema = block_on(citycard_postgres::testing::fresh_schema()).map_err(fail)?;
    let url = url_in(&schema).map_err(fail)?;
    let options = Options {
        store: Store::Postgres(url),
        ..Options::memory(size)
    };
    match run(seed, &options) {
        Ok(report) => {
            let _ = block_on(async {
                let server = citycard_postgres::testing::server_url().unwrap_or_default();
                if let Ok(mut conn) = citycard_postgres::db::connect_once(&server).await {
                    let _ = citycard_postgres::db::execute(
                        &mut conn,
                        &format!("DROP SCHEMA {schema} CASCADE"),
                    )
                    .await;
                }
            });
            Ok(report)
        }
        Err(mut failure) => {
            failure.message = format!("{} (PostgreSQL schema {schema})", failure.message);
            Err(failure)
        }
    }
}
