//! Races through the facade on PostgreSQL: two app instances (two
//! `CityCard`s with their own pools) on one database, with no retry in the
//! test: top-ups and fares interleaved and concurrent (the ledger decides
//! again after another instance wrote), the same card bound to the same
//! account from both (one live binding), the last places of a clinic slot
//! booked from both (no overbooking). Skipped without a server, except in CI.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use citycard::binding::CardId;
use citycard::core::{ManualClock, Money, OperatorId, OperatorRole, Platform, Principal};
use citycard::healthcare::BookRequest;
use citycard::transit::taps_from_csv;
use citycard::{Accounts, CityCard};
use citycard_postgres::testing::{fresh_schema, server_available, server_url};
use common::{Person, bind_request, enrol_as, issue_as, key, verified_account};

/// The test server's URL with `schema` as the search path.
fn url_in(schema: &str) -> String {
    let url = server_url().unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// The vault keys every instance of the city shares (a deployment's key service).
fn keys() -> Arc<citycard::identity::MemoryKeyProvider> {
    static KEYS: std::sync::OnceLock<Arc<citycard::identity::MemoryKeyProvider>> =
        std::sync::OnceLock::new();
    KEYS.get_or_init(|| Arc::new(citycard::identity::MemoryKeyProvider::random().unwrap()))
        .clone()
}

async fn instance(schema: &str, clock: Arc<ManualClock>) -> CityCard {
    let city = CityCard::builder()
        .postgres(url_in(schema))
        .clock(clock)
        .key_provider(keys())
        .build()
        .await
        .expect("the city opens on PostgreSQL");
    city.operator_roles()
        .grant(OperatorId::parse("opr-1").unwrap(), OperatorRole::CardDesk);
    city
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 26, 0, 30, 0).unwrap(),
    ))
}

/// Card `i`'s printed number.
fn number(i: usize) -> String {
    format!("33010000000{:05}", i + 1)
}

/// Enrols and issues `n` cardholders on `city`.
async fn cardholders(city: &CityCard, n: usize) -> Vec<(Person, CardId)> {
    let mut out = Vec::new();
    for i in 0..n {
        let seq = u16::try_from(i + 1).unwrap();
        let person = enrol_as(
            city,
            &Principal::System,
            &format!("p{i}"),
            seq,
            (1980, 1, 1),
        )
        .await;
        let card = issue_as(city, &Principal::System, &person, &number(i), "standard").await;
        out.push((person, card));
    }
    out
}

/// One bus ride (¥2 on route b7) per card in `cards`, at minute `m` of the morning.
fn rides(city: &CityCard, cards: &[usize], m: usize) -> Vec<citycard::transit::Tap> {
    let mut csv = String::from("card,direction,network,stop,route,vehicle,reader,at\n");
    for &i in cards {
        let n = city.cards().parse_card_number(&number(i)).unwrap();
        let wallet = Accounts::wallet(&n).get();
        csv.push_str(&format!(
            "{wallet},in,,,b7,500,2,2026-11-26T08:{:02}:{:02}+08:00\n",
            m % 60,
            i % 60
        ));
    }
    taps_from_csv(city.transit().fares(), &csv).unwrap()
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 26).unwrap()
}

/// Every account's posted balance equals the sum of its transfers, and no
/// e-wallet is below zero.
async fn ledger_sums(city: &CityCard) -> BTreeMap<u64, i64> {
    let all = city.ledger().export(&Principal::System).await.unwrap();
    let mut sums: BTreeMap<u64, i64> = BTreeMap::new();
    for t in &all.transfers {
        if t.flags.contains(citycard::ledger::TransferFlags::PENDING) {
            continue;
        }
        *sums.entry(t.debit_account_id.get()).or_default() -= t.amount.fen();
        *sums.entry(t.credit_account_id.get()).or_default() += t.amount.fen();
    }
    for a in &all.accounts {
        let net = a.balances.credits_posted.fen() - a.balances.debits_posted.fen();
        assert_eq!(
            net,
            sums.get(&a.id.get()).copied().unwrap_or(0),
            "account {} equals the sum of its transfers",
            a.id
        );
        if a.kind == citycard::ledger::AccountKind::E_WALLET {
            assert!(net >= 0, "wallet {} overdrawn", a.id);
        }
    }
    sums
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_interleave_top_ups_and_fares_without_a_retry_in_the_caller() {
    if !server_available() {
        return;
    }
    let schema = fresh_schema().await;
    // After the day's last ride: its trips are settled, none left pending.
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 26, 16, 30, 0).unwrap(),
    ));
    let a = instance(&schema, clock.clone()).await;
    let b = instance(&schema, clock.clone()).await;
    let holders = cardholders(&a, 6).await;
    let system = Principal::System;
    async fn top_up(
        city: &CityCard,
        card: &CardId,
        yuan: i64,
        k: String,
    ) -> Result<citycard::WalletReceipt, citycard::CityCardError> {
        city.wallet()
            .top_up(
                &Principal::System,
                card,
                Money::from_yuan(yuan),
                &Platform::Alipay,
                &key(&k),
            )
            .await
    }
    // Alternating: every call lands on an instance whose state the other
    // has just moved; none may fail.
    for round in 0..4 {
        for (i, (_, card)) in holders.iter().enumerate() {
            let city = if (round + i) % 2 == 0 { &a } else { &b };
            top_up(city, card, 5, format!("alt-{round}-{i}"))
                .await
                .unwrap();
        }
        // Fares settled on the other instance than the last top-up.
        let settler = if round % 2 == 0 { &b } else { &a };
        let cards: Vec<usize> = (0..6).collect();
        let report = settler
            .transit()
            .settlement()
            .settle_day(&system, day(), rides(settler, &cards, round))
            .await
            .unwrap();
        assert_eq!(report.trips_settled, 6, "round {round}: {report:?}");
        assert!(report.cards_failed.is_empty(), "{:?}", report.cards_failed);
    }
    // Concurrent: both instances at once, distinct keys.
    let (x, y) = tokio::join!(
        async {
            for (i, (_, card)) in holders.iter().enumerate() {
                top_up(&a, card, 1, format!("con-a-{i}")).await.unwrap();
            }
        },
        async {
            for (i, (_, card)) in holders.iter().enumerate().rev() {
                top_up(&b, card, 2, format!("con-b-{i}")).await.unwrap();
            }
        },
    );
    let ((), ()) = (x, y);
    // Each card: 4 × ¥5 + ¥1 + ¥2 in, 4 × ¥2 out = ¥15. Read on an instance
    // opened now: an instance's reads come from the ledger state it last
    // loaded or wrote, so they may lag another instance's writes (see the
    // crate README of citycard-postgres).
    let c = instance(&schema, clock.clone()).await;
    for (_, card) in &holders {
        assert_eq!(
            c.wallet().balance(&system, card).await.unwrap(),
            Money::from_yuan(15)
        );
    }
    let all = a.ledger().export(&system).await.unwrap();
    assert_eq!(
        all.transfers
            .iter()
            .filter(|t| t.code == citycard::glue::money::codes::TOP_UP)
            .count(),
        6 * 6,
        "every acknowledged top-up once"
    );
    ledger_sums(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_card_bound_to_the_same_account_from_two_instances_is_one_live_binding() {
    if !server_available() {
        return;
    }
    let schema = fresh_schema().await;
    let clock = clock();
    let a = instance(&schema, clock.clone()).await;
    let b = instance(&schema, clock.clone()).await;
    let holders = cardholders(&a, 4).await;
    for (i, (person, _)) in holders.iter().enumerate() {
        let account = verified_account(&a, person, &format!("ext-{i}")).await;
        let request = bind_request(&account, &number(i), &person.id_number);
        let holder = Principal::cardholder(person.id.clone());
        // Two taps of "bind" in the app, each with its own key, landing on both instances.
        let (ka, kb) = (key(&format!("bind-a-{i}")), key(&format!("bind-b-{i}")));
        let (x, y) = tokio::join!(
            a.cards().bind(&holder, &ka, &request),
            b.cards().bind(&holder, &kb, &request),
        );
        assert!(x.is_ok() || y.is_ok(), "one bind succeeds: {x:?} / {y:?}");
        let platform = Principal::Platform {
            platform: Platform::Alipay,
        };
        for city in [&a, &b] {
            let live: Vec<_> = city
                .cards()
                .bindings_of_account(&platform, &Platform::Alipay, &account)
                .await
                .unwrap()
                .into_iter()
                .filter(|b| !matches!(b.state, citycard::binding::BindingState::Removed))
                .collect();
            assert_eq!(live.len(), 1, "card {i}: one live binding, {live:?}");
        }
        if let (Ok(x), Ok(y)) = (&x, &y) {
            assert_eq!(x.binding, y.binding, "both answer with the one binding");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_last_places_of_a_slot_booked_from_two_instances_are_never_overbooked() {
    if !server_available() {
        return;
    }
    let schema = fresh_schema().await;
    let clock = clock();
    let a = instance(&schema, clock.clone()).await;
    let b = instance(&schema, clock.clone()).await;
    let holders = cardholders(&a, 8).await;
    let capacity = 3;
    let slot = citycard_testkit::healthcare::slot("slot-1", "dep-1", day().succ_opt().unwrap(), 3);
    a.healthcare()
        .appointments()
        .put_slot(&Principal::System, slot)
        .await
        .unwrap();
    async fn book(
        city: &CityCard,
        person: &citycard::core::PersonId,
        i: usize,
    ) -> Result<citycard::healthcare::Booking, citycard::healthcare::HealthcareError> {
        city.healthcare()
            .appointments()
            .book(
                &Principal::cardholder(person.clone()),
                &BookRequest {
                    slot: "slot-1".parse().unwrap(),
                    patient: person.clone(),
                    key: key(&format!("book-{i}")),
                    allow_waitlist: false,
                },
            )
            .await
    }
    let (x, y) = tokio::join!(
        async {
            let mut out = Vec::new();
            for i in (0..8).step_by(2) {
                out.push(book(&a, &holders[i].0.id, i).await);
            }
            out
        },
        async {
            let mut out = Vec::new();
            for i in (1..8).step_by(2) {
                out.push(book(&b, &holders[i].0.id, i).await);
            }
            out
        },
    );
    let results: Vec<_> = x.into_iter().chain(y).collect();
    let booked: Vec<_> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter(|b| b.appointment.status == citycard::healthcare::AppointmentStatus::Booked)
        .collect();
    assert_eq!(booked.len(), capacity, "{results:?}");
    let mut numbers: Vec<_> = booked.iter().map(|b| b.appointment.queue_number).collect();
    numbers.sort();
    numbers.dedup();
    assert_eq!(numbers.len(), capacity, "queue numbers are distinct");
    for r in &results {
        if let Err(e) = r {
            assert!(
                !matches!(e, citycard::healthcare::HealthcareError::Store(_)),
                "a refusal is the full slot, never a storage failure: {e:?}"
            );
        }
    }
}
