//! Keys belong to the principal that chose them, and an interrupted request
//! is recovered: two cardholders (or two operators) using the same key never
//! collide, and a claim left behind by a dead process is taken over once its
//! lease runs out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use citycard::core::{
    IdempotencyKey, ManualClock, Money, OperatorId, Platform, Principal, Sensitive,
    SequentialIdGenerator,
};
use citycard::identity::{IdNumber, RegionCode, Sex};
use citycard::{CityCard, NewCitizenCard};

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::parse(text).expect("valid key")
}

fn operator(n: u32) -> Principal {
    Principal::Operator {
        operator: OperatorId::parse(&format!("opr-{n}")).expect("valid id"),
    }
}

fn id_number(serial: u16) -> IdNumber {
    IdNumber::generate(
        RegionCode::new(330106).expect("region"),
        chrono::NaiveDate::from_ymd_opt(1980, 6, 1).expect("date"),
        Sex::Female,
        serial,
    )
    .expect("valid number")
}

async fn city() -> CityCard {
    let city = CityCard::builder()
        .in_memory()
        .clock(Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0)))
        .id_generator(Arc::new(SequentialIdGenerator::new()))
        .build()
        .await
        .expect("builds");
    for n in [1, 2] {
        city.operator_roles().grant(
            OperatorId::parse(&format!("opr-{n}")).expect("valid id"),
            citycard::core::OperatorRole::CardDesk,
        );
    }
    city
}

#[tokio::test]
async fn two_operators_enrolling_different_people_with_one_key_both_succeed() {
    let city = city().await;
    let a = city
        .identity()
        .enroll_person(
            &operator(1),
            &Sensitive::new("市民甲".to_owned()),
            &id_number(11).to_sensitive(),
            &key("enrol-1"),
        )
        .await
        .expect("the first operator enrols");
    let b = city
        .identity()
        .enroll_person(
            &operator(2),
            &Sensitive::new("市民乙".to_owned()),
            &id_number(12).to_sensitive(),
            &key("enrol-1"),
        )
        .await
        .expect("another operator's identical key is another request");
    assert_ne!(a.id, b.id);
}

#[tokio::test]
async fn two_cardholders_topping_up_with_one_key_both_succeed() {
    let city = city().await;
    let mut cards = Vec::new();
    for (n, number) in [(21u16, "3301000000000021"), (22, "3301000000000022")] {
        let person = city
            .identity()
            .enroll_person(
                &operator(1),
                &Sensitive::new(format!("市民{n}")),
                &id_number(n).to_sensitive(),
                &key(&format!("enrol-{n}")),
            )
            .await
            .expect("enrols");
        let card = city
            .issue_card(
                &operator(1),
                &key(&format!("issue-{n}")),
                &NewCitizenCard {
                    number: number.into(),
                    kind: "standard".into(),
                    holder: person.id.clone(),
                    id_number: id_number(n).to_sensitive(),
                    services: None,
                },
            )
            .await
            .expect("issues");
        cards.push((Principal::cardholder(person.id), card.id));
    }
    // Both pick the same (predictable) key: each is their own request.
    for (who, card) in &cards {
        let receipt = city
            .wallet()
            .top_up(
                who,
                card,
                Money::from_yuan(10),
                &Platform::Alipay,
                &key("topup-1"),
            )
            .await
            .expect("each cardholder's key is their own");
        assert_eq!(receipt.balance, Some(Money::from_yuan(10)));
    }
    // A retry by the first is still a replay, not a second top-up.
    let (who, card) = &cards[0];
    let again = city
        .wallet()
        .top_up(
            who,
            card,
            Money::from_yuan(10),
            &Platform::Alipay,
            &key("topup-1"),
        )
        .await
        .expect("replays");
    assert_eq!(again.balance, Some(Money::from_yuan(10)));
}

#[tokio::test]
async fn a_host_recovers_the_claims_a_dead_process_left_when_it_opens_its_store() {
    use citycard::core::{Clock, Fingerprint, IdempotencyStore};
    use citycard::recovery::Resolution;
    use citycard::sqlite::{Database, SqliteIdempotencyStore};

    let dir = std::env::temp_dir().join(format!("citycard-recover-open-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("citycard.db");
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0));
    let city = CityCard::builder()
        .sqlite(&path)
        .clock(clock.clone())
        .build()
        .await
        .expect("builds");
    // Another process claimed these an hour ago and died.
    let dead = SqliteIdempotencyStore::new(Database::open(&path).unwrap()).handle("dead");
    let fp = Fingerprint::of_bytes(b"request");
    let hour_ago = clock.now() - chrono::Duration::hours(1);
    dead.claim("transit.fare", &key("trip-lost"), &fp, hour_ago)
        .await
        .unwrap();
    dead.claim("card.issue@system", &key("issue-lost"), &fp, hour_ago)
        .await
        .unwrap();

    let done = city.recover_claims().await.expect("recovers");
    let by_key = |k: &str| {
        done.iter()
            .find(|r| r.key == k)
            .unwrap_or_else(|| panic!("{k} in {done:?}"))
            .resolution
            .clone()
    };
    assert_eq!(by_key("trip-lost"), Resolution::Released);
    assert_eq!(by_key("issue-lost"), Resolution::LeftForRetry);
    assert_eq!(
        dead.get("transit.fare", &key("trip-lost")).await.unwrap(),
        None
    );
    let _ = std::fs::remove_dir_all(&dir);
}
