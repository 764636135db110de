//! The outbox conformance suite against PostgreSQL.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use citycard_core::{CoreChanges, Outbox, StoreError};
use citycard_postgres::testing::{fresh_database, server_available};

type Commit = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

async fn outbox() -> (impl Fn(CoreChanges) -> Commit, Arc<dyn Outbox>) {
    let db = fresh_database().await;
    let outbox: Arc<dyn Outbox> = Arc::new(citycard_postgres::outbox::PgOutbox::new(db.clone()));
    let commit = move |changes: CoreChanges| -> Commit {
        let db = db.clone();
        Box::pin(async move {
            citycard_postgres::transaction!(db, citycard_postgres::Isolation::ReadCommitted, |tx| {
                citycard_postgres::write_core_changes(&mut tx, &changes).await
            })
        })
    };
    (commit, outbox)
}

citycard_testkit::outbox_conformance!(outbox, available = server_available);
