//! One operation, one write transaction: the hot paths commit once each on
//! the embedded store (counted with `Database::commits`). A path that grows a
//! second commit fails here.

mod common;

use chrono::{Duration, TimeZone, Utc};
use citycard::CityCard;
use citycard::core::{ManualClock, Money, Platform, Principal};
use citycard::transit::{CardRef, Tap, TapDirection, TapPlace};
use common::{enrol_as, issue_as, key};
use std::sync::Arc;

async fn city(dir: &std::path::Path, chunk_trips: usize) -> (CityCard, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 26, 0, 30, 0).unwrap(),
    ));
    let city = CityCard::builder()
        .sqlite(dir.join("citycard.db"))
        .clock(clock.clone())
        .settlement_chunk_trips(chunk_trips)
        .build()
        .await
        .expect("the city opens");
    (city, clock)
}

fn commits(city: &CityCard) -> u64 {
    city.database().expect("on SQLite").commits()
}

#[tokio::test]
async fn a_top_up_is_one_write_transaction_and_so_is_its_audited_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (city, _) = city(dir.path(), 8_190).await;
    let system = Principal::System;
    let person = enrol_as(&city, &system, "a", 1, (1980, 1, 1)).await;
    let card = issue_as(&city, &system, &person, "330100000000001", "standard").await;
    let before = commits(&city);
    city.wallet()
        .top_up(
            &system,
            &card,
            Money::from_yuan(50),
            &Platform::Alipay,
            &key("t-1"),
        )
        .await
        .expect("tops up");
    assert_eq!(commits(&city) - before, 1, "a top-up commits once");
    let before = commits(&city);
    city.wallet()
        .top_up(
            &system,
            &card,
            Money::from_yuan(50),
            &Platform::Alipay,
            &key("t-1"),
        )
        .await
        .expect("replays");
    assert_eq!(
        commits(&city) - before,
        1,
        "a replay moves no money and commits only its audit record"
    );
}

#[tokio::test]
async fn a_settlement_chunk_is_one_write_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let (city, clock) = city(dir.path(), 2).await;
    let system = Principal::System;
    let mut refs = Vec::new();
    for (i, tag) in ["a", "b", "c"].iter().enumerate() {
        let person = enrol_as(&city, &system, tag, i as u16 + 1, (1980, 1, 1)).await;
        let number = format!("33010000000000{}", i + 1);
        let card = issue_as(&city, &system, &person, &number, "standard").await;
        city.wallet()
            .top_up(
                &system,
                &card,
                Money::from_yuan(50),
                &Platform::Alipay,
                &key(&format!("t-{i}")),
            )
            .await
            .expect("tops up");
        let issued = city
            .cards()
            .card(&system, &card)
            .await
            .expect("reads the card");
        refs.push(CityCard::card_ref(&issued).expect("card ref"));
    }
    let fares = city.transit().fares();
    let route = fares.network().route("b7").expect("bus 7 runs");
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
    let start = Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
    // Each card rides bus 7 twice, four hours apart (no transfer): 6 trips, 2 per chunk, 3 chunks.
    let taps: Vec<Tap> = refs
        .iter()
        .flat_map(|card: &CardRef| {
            (0..2).map(move |n| Tap {
                card: *card,
                direction: TapDirection::In,
                place: TapPlace::Vehicle {
                    route,
                    vehicle: 7031 + n as u32,
                    stop: None,
                },
                reader: 7031 + n as u32,
                at: start + Duration::hours(1 + 4 * n),
                code: None,
                medium: citycard::transit::Medium::Card,
            })
        })
        .collect();
    // The day before, one ride opens the bus operator's revenue account (a
    // one-off ledger batch), so that what is counted below is the chunks alone.
    let mut eve = taps[0];
    eve.at -= Duration::days(1);
    clock.set(Utc.with_ymd_and_hms(2026, 11, 25, 13, 0, 0).unwrap());
    city.transit()
        .settlement()
        .settle_day(&system, day.pred_opt().unwrap(), vec![eve])
        .await
        .expect("settles the day before");
    clock.set(Utc.with_ymd_and_hms(2026, 11, 26, 13, 0, 0).unwrap());
    let before = commits(&city);
    let report = city
        .transit()
        .settlement()
        .settle_day(&system, day, taps.clone())
        .await
        .expect("settles");
    assert_eq!(report.trips_settled, 6, "{report:?}");
    assert_eq!(report.charges, 6);
    // Three chunks, one commit each, and the day's audit record.
    assert_eq!(commits(&city) - before, 3 + 1);

    // A re-run finds every trip settled: it plans nothing and commits only its audit record.
    let before = commits(&city);
    let again = city
        .transit()
        .settlement()
        .settle_day(&system, day, taps)
        .await
        .expect("settles again");
    assert_eq!(again.trips_already_settled, 6);
    assert_eq!(again.charges + again.charges_replayed, 0);
    assert_eq!(commits(&city) - before, 1);
}

#[tokio::test]
async fn an_enrolment_is_one_write_transaction_and_its_replay_none() {
    let dir = tempfile::tempdir().unwrap();
    let (city, _) = city(dir.path(), 8_190).await;
    let system = Principal::System;
    let before = commits(&city);
    let person = enrol_as(&city, &system, "e", 7, (1980, 1, 1)).await;
    assert_eq!(
        commits(&city) - before,
        1,
        "the person, its audit record and the key's outcome"
    );
    let before = commits(&city);
    let again = enrol_as(&city, &system, "e", 7, (1980, 1, 1)).await;
    assert_eq!(again.id, person.id);
    assert_eq!(
        commits(&city) - before,
        0,
        "a retry reads the stored outcome"
    );
}

#[tokio::test]
async fn a_card_issue_is_one_write_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let (city, _) = city(dir.path(), 8_190).await;
    let system = Principal::System;
    let person = enrol_as(&city, &system, "i", 8, (1980, 1, 1)).await;
    let before = commits(&city);
    issue_as(&city, &system, &person, "330100000000088", "standard").await;
    // The card's ledger accounts (wallet and medical accounts), the card,
    // its audit record and the key's outcome, together.
    assert_eq!(commits(&city) - before, 1);
}
