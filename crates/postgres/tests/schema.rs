//! Migrations: each component's version is recorded; a foreign schema or a
//! newer citycard database is refused and left untouched; two instances
//! connecting at once migrate once.
#![allow(clippy::unwrap_used)]

use citycard_postgres::testing::{connect_to, fresh_schema, options_in, server_available};
use citycard_postgres::{Database, PgError, PoolSettings};

async fn try_connect(schema: &str) -> Result<Database, PgError> {
    Database::connect_with(options_in(schema), PoolSettings::default()).await
}

async fn exec(schema: &str, sql: &str) {
    let db = sqlx::PgPool::connect_with(options_in(schema))
        .await
        .unwrap();
    sqlx::raw_sql(sql).execute(&db).await.unwrap();
}

#[tokio::test]
async fn every_component_is_recorded_and_instances_migrate_once() {
    if !server_available() {
        return;
    }
    let schema = fresh_schema().await;
    let (a, b) = tokio::join!(try_connect(&schema), try_connect(&schema));
    let (a, b) = (a.unwrap(), b.unwrap());
    let versions = a.schema_versions().await.unwrap();
    let names: Vec<&str> = versions.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        names,
        [
            "binding",
            "core",
            "healthcare",
            "identity",
            "ledger",
            "outbox",
            "transit"
        ]
    );
    assert_eq!(b.schema_versions().await.unwrap(), versions);
}

#[tokio::test]
async fn another_applications_schema_is_refused_untouched() {
    if !server_available() {
        return;
    }
    let schema = fresh_schema().await;
    exec(
        &schema,
        "CREATE TABLE orders (id INT); INSERT INTO orders VALUES (7);",
    )
    .await;
    assert!(matches!(
        try_connect(&schema).await,
        Err(PgError::NotCitycard { .. })
    ));
    let pool = sqlx::PgPool::connect_with(options_in(&schema))
        .await
        .unwrap();
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(tables, 1, "nothing was created beside the foreign table");
}

#[tokio::test]
async fn a_newer_database_is_refused_untouched() {
    if !server_available() {
        return;
    }
    let schema = fresh_schema().await;
    drop(connect_to(&schema).await);
    exec(
        &schema,
        "UPDATE citycard_schema SET version = 99 WHERE component = 'ledger'",
    )
    .await;
    match try_connect(&schema).await {
        Err(PgError::SchemaTooNew {
            component, found, ..
        }) => assert_eq!((component.as_str(), found), ("ledger", 99)),
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    let pool = sqlx::PgPool::connect_with(options_in(&schema))
        .await
        .unwrap();
    let v: i64 =
        sqlx::query_scalar("SELECT version FROM citycard_schema WHERE component = 'ledger'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(v, 99);
}
