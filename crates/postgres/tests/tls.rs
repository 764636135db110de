//! TLS to the server through `sslmode` in the URL (rustls): run when
//! `CITYCARD_TEST_POSTGRES_TLS` holds the URL of a server with TLS on, e.g.
//! `postgres://postgres@127.0.0.1:PORT/postgres?sslmode=verify-full&sslrootcert=/path/root.crt`
//! (a certificate for `127.0.0.1` signed by that root). Skipped without it
//! (`.ci/run`'s server listens without TLS).
#![allow(clippy::unwrap_used)]

use citycard_postgres::Database;

#[tokio::test]
async fn sslmode_in_the_url_encrypts_the_connection() {
    let Some(url) = std::env::var("CITYCARD_TEST_POSTGRES_TLS")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        println!("skipped: no TLS server (set CITYCARD_TEST_POSTGRES_TLS)");
        return;
    };
    let db = Database::connect(&url).await.unwrap();
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert!(ssl, "the connection is encrypted");
    // A root that did not sign the server's certificate is refused.
    if url.contains("sslmode=verify-full") || url.contains("sslmode=verify-ca") {
        let wrong =
            std::env::temp_dir().join(format!("citycard-wrong-root-{}.crt", std::process::id()));
        std::fs::write(&wrong, WRONG_ROOT).unwrap();
        let mut bad = url.clone();
        if let Some(start) = bad.find("sslrootcert=") {
            let end = bad[start..].find('&').map_or(bad.len(), |e| start + e);
            bad.replace_range(start..end, &format!("sslrootcert={}", wrong.display()));
        }
        assert!(
            Database::connect(&bad).await.is_err(),
            "an unknown root is refused"
        );
        let _ = std::fs::remove_file(wrong);
    }
}

/// A self-signed certificate no server here uses.
const WRONG_ROOT: &str = include_str!("wrong_root.crt");
