//! The facade on PostgreSQL: two app instances (two `CityCard`s with their
//! own pools) on one database. Skipped without a server, except in CI.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use citycard::core::{ClassifiedError, ErrorClass, ManualClock, Money, Platform, Principal};
use citycard::{CityCard, CityCardError};
use citycard_postgres::testing::{fresh_schema, server_available, server_url};
use common::{enrol_as, issue_as, key};

/// The test server's URL with `schema` as the search path.
fn url_in(schema: &str) -> String {
    let url = server_url().unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

async fn instance(schema: &str, clock: Arc<ManualClock>) -> CityCard {
    CityCard::builder()
        .postgres(url_in(schema))
        .clock(clock)
        .build()
        .await
        .expect("the city opens on PostgreSQL")
}

/// Retries an operation the database refused as stale (another instance
/// committed first), as a client retries with the same idempotency key.
macro_rules! retrying {
    ($op:expr) => {{
        let mut tries = 0;
        loop {
            match $op.await {
                Err(e) if e.class() == ErrorClass::Conflict && tries < 20 => tries += 1,
                other => break other,
            }
        }
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_top_up_once_per_key_and_agree_on_balances() {
    if !server_available() {
        return;
    }
    let schema = fresh_schema().await;
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 26, 0, 30, 0).unwrap(),
    ));
    let a = instance(&schema, clock.clone()).await;
    let b = instance(&schema, clock.clone()).await;
    let system = Principal::System;
    let person = enrol_as(&a, &system, "a", 1, (1980, 1, 1)).await;
    let card = issue_as(&a, &system, &person, "330100000000001", "standard").await;

    // The same top-up key from both instances at once: one transfer.
    let (x, y) = tokio::join!(
        async {
            retrying!(a.wallet().top_up(
                &system,
                &card,
                Money::from_yuan(50),
                &Platform::Alipay,
                &key("t-1")
            ))
        },
        async {
            retrying!(b.wallet().top_up(
                &system,
                &card,
                Money::from_yuan(50),
                &Platform::Alipay,
                &key("t-1")
            ))
        },
    );
    let (x, y): (_, _) = (x.unwrap(), y.unwrap());
    assert_eq!(x, y, "both instances answer with the one top-up");
    // Different keys from both: both count.
    let r: Result<_, CityCardError> = retrying!(b.wallet().top_up(
        &system,
        &card,
        Money::from_yuan(20),
        &Platform::Alipay,
        &key("t-2")
    ));
    r.unwrap();
    let r: Result<_, CityCardError> = retrying!(a.wallet().top_up(
        &system,
        &card,
        Money::from_yuan(30),
        &Platform::Alipay,
        &key("t-3")
    ));
    r.unwrap();
    // A third instance opening now sees exactly the money both moved.
    let c = instance(&schema, clock).await;
    let balance = c.wallet().balance(&system, &card).await.unwrap();
    assert_eq!(balance, Money::from_yuan(100));
    let top_ups = c
        .ledger()
        .export(&system)
        .await
        .unwrap()
        .transfers
        .iter()
        .filter(|t| t.amount == Money::from_yuan(50))
        .count();
    assert_eq!(top_ups, 1, "one transfer for key t-1");
}
