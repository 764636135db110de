//! Errors keep their class through the facade: for each `ErrorClass` a real
//! failure is provoked through a public operation and `class()` is checked.
//! A ledger store outage must reach the host as `Unavailable` (retry with the
//! same key), never as `Internal`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use citycard::binding::{BindRequest, CardId, ConsentInput, DataCategory};
use citycard::core::{
    ClassifiedError, ErrorClass, IdempotencyKey, ManualClock, Money, OperatorId, OperatorRole,
    PersonId, Platform, Principal, Sensitive, SequentialIdGenerator, StoreError,
};
use citycard::identity::{
    IdNumber, KnownPerson, MemoryKeyProvider, RealNameRequest, RegionCode, Sex, SimulatedVerifier,
};
use citycard::ledger::{
    Account, AccountId, AccountRange, ChangeSet, LedgerState, LedgerStore, Prefetched, Reference,
    Snapshot, Transfer, TransferId,
};
use citycard::{CityCard, CityCardBuilder, CityCardError, NewCitizenCard};
use citycard_testkit::identity::{FaultyKeyProvider, FaultyVerifier};
use citycard_testkit::ledger::FaultyLedgerStore;
use citycard_testkit::{Fault, Faults};

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::parse(text).expect("valid key")
}

fn operator() -> Principal {
    Principal::Operator {
        operator: OperatorId::parse("opr-1").expect("valid id"),
    }
}

fn builder() -> CityCardBuilder {
    CityCard::builder()
        .in_memory()
        .clock(Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0)))
        .id_generator(Arc::new(SequentialIdGenerator::new()))
}

async fn city_from(builder: CityCardBuilder) -> CityCard {
    let city = builder.build().await.expect("builds");
    city.operator_roles().grant(
        OperatorId::parse("opr-1").expect("valid id"),
        OperatorRole::CardDesk,
    );
    city
}

/// An enrolled person with an active standard card.
async fn cardholder(city: &CityCard, tag: &str, number: &str) -> (PersonId, CardId) {
    let (person, _, card) = cardholder_with_id(city, tag, number).await;
    (person, card)
}

/// As [`cardholder`], with the person's ID number.
async fn cardholder_with_id(
    city: &CityCard,
    tag: &str,
    number: &str,
) -> (PersonId, IdNumber, CardId) {
    let id_number = IdNumber::generate(
        RegionCode::new(330106).expect("region"),
        chrono::NaiveDate::from_ymd_opt(1980, 1, 1).expect("date"),
        Sex::Male,
        u16::from(tag.as_bytes()[0] % 100),
    )
    .expect("valid number");
    let person = city
        .identity()
        .enroll_person(
            &operator(),
            &Sensitive::new(format!("市民{tag}")),
            &id_number.to_sensitive(),
            &key(&format!("enrol-{tag}")),
        )
        .await
        .expect("enrols");
    let card = city
        .issue_card(
            &operator(),
            &key(&format!("issue-{tag}")),
            &NewCitizenCard {
                number: number.into(),
                kind: "standard".into(),
                holder: person.id.clone(),
                id_number: id_number.to_sensitive(),
                services: None,
            },
        )
        .await
        .expect("issues")
        .id;
    (person.id, id_number, card)
}

fn class_of<T: std::fmt::Debug>(result: Result<T, CityCardError>) -> ErrorClass {
    result.expect_err("the operation fails").class()
}

#[tokio::test]
async fn a_malformed_card_number_is_invalid_input() {
    let city = city_from(builder()).await;
    let (holder, _) = cardholder(&city, "a", "3301000000000001").await;
    let issued = city
        .issue_card(
            &operator(),
            &key("issue-bad"),
            &NewCitizenCard {
                number: "33-not-a-number".into(),
                kind: "standard".into(),
                holder,
                id_number: Sensitive::new("330106198001010000".into()),
                services: None,
            },
        )
        .await;
    assert_eq!(class_of(issued), ErrorClass::InvalidInput);
}

#[tokio::test]
async fn an_unknown_card_is_not_found() {
    let city = city_from(builder()).await;
    let balance = city
        .wallet()
        .balance(&Principal::System, &CardId::parse("card-404").expect("id"))
        .await;
    assert_eq!(class_of(balance), ErrorClass::NotFound);
}

#[tokio::test]
async fn a_strangers_top_up_is_denied() {
    let city = city_from(builder()).await;
    let (_, card) = cardholder(&city, "a", "3301000000000001").await;
    let (stranger, _) = cardholder(&city, "b", "3301000000000002").await;
    let top_up = city
        .wallet()
        .top_up(
            &Principal::cardholder(stranger),
            &card,
            Money::from_yuan(10),
            &Platform::Alipay,
            &key("t1"),
        )
        .await;
    assert_eq!(class_of(top_up), ErrorClass::Denied);
}

#[tokio::test]
async fn the_same_key_with_another_amount_is_a_conflict() {
    let city = city_from(builder()).await;
    let (holder, card) = cardholder(&city, "a", "3301000000000001").await;
    let me = Principal::cardholder(holder);
    let wallet = city.wallet();
    wallet
        .top_up(
            &me,
            &card,
            Money::from_yuan(10),
            &Platform::Alipay,
            &key("t1"),
        )
        .await
        .expect("tops up");
    let again = wallet
        .top_up(
            &me,
            &card,
            Money::from_yuan(20),
            &Platform::Alipay,
            &key("t1"),
        )
        .await;
    assert_eq!(class_of(again), ErrorClass::Conflict);
}

/// A city whose ledger store is wrapped in a fault-injecting double.
async fn city_with_faulty_ledger() -> (CityCard, Faults) {
    let slot: Arc<OnceLock<Faults>> = Arc::new(OnceLock::new());
    let set = slot.clone();
    let city = city_from(builder().wrap_ledger_store(move |inner| {
        let (store, faults) = FaultyLedgerStore::new(inner);
        set.set(faults).expect("wrapped once");
        Arc::new(store)
    }))
    .await;
    let faults = slot.get().expect("the builder wrapped the store").clone();
    (city, faults)
}

#[tokio::test]
async fn a_ledger_store_outage_is_unavailable_not_internal() {
    let (city, faults) = city_with_faulty_ledger().await;
    let (holder, card) = cardholder(&city, "a", "3301000000000001").await;
    let me = Principal::cardholder(holder);
    faults.next("commit", Fault::Fail);
    let first = city
        .wallet()
        .top_up(
            &me,
            &card,
            Money::from_yuan(10),
            &Platform::Alipay,
            &key("t1"),
        )
        .await;
    assert_eq!(class_of(first), ErrorClass::Unavailable);
    // The retry with the same key succeeds once the store is back (or says the
    // ledger must be reopened, which is still a retryable outage).
    let retry = city
        .wallet()
        .top_up(
            &me,
            &card,
            Money::from_yuan(10),
            &Platform::Alipay,
            &key("t1"),
        )
        .await;
    if let Err(e) = retry {
        assert_eq!(e.class(), ErrorClass::Unavailable, "{e}");
    }
}

#[tokio::test]
async fn a_ledger_store_outage_during_a_balance_move_is_unavailable() {
    let (city, faults) = city_with_faulty_ledger().await;
    let (_, card) = cardholder(&city, "a", "3301000000000001").await;
    faults.always("commit", Fault::Timeout);
    let cancelled = city
        .cards()
        .cancel_card(&operator(), &key("cancel-1"), &card)
        .await
        .map_err(CityCardError::from);
    assert_eq!(class_of(cancelled), ErrorClass::Unavailable);
}

/// A ledger store whose data is corrupt: every commit fails as `Corrupt`.
struct CorruptLedgerStore {
    inner: Arc<dyn LedgerStore>,
    corrupt: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait]
impl LedgerStore for CorruptLedgerStore {
    async fn commit(
        &self,
        changes: &ChangeSet<'_>,
        core: &citycard_core::CoreChanges,
    ) -> Result<(), StoreError> {
        if self.corrupt.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Corrupt("ledger row fails its checksum".into()));
        }
        self.inner.commit(changes, core).await
    }

    async fn load_state(&self) -> Result<LedgerState, StoreError> {
        self.inner.load_state().await
    }

    async fn prefetch(
        &self,
        ids: &[TransferId],
        holds: &[TransferId],
    ) -> Result<Prefetched, StoreError> {
        self.inner.prefetch(ids, holds).await
    }

    async fn accounts(&self, ids: &[AccountId]) -> Result<Vec<Account>, StoreError> {
        self.inner.accounts(ids).await
    }

    async fn account_transfers(&self, range: &AccountRange) -> Result<Vec<Transfer>, StoreError> {
        self.inner.account_transfers(range).await
    }

    async fn transfers_by_reference(
        &self,
        reference: &Reference,
    ) -> Result<Vec<Transfer>, StoreError> {
        self.inner.transfers_by_reference(reference).await
    }

    async fn load(&self) -> Result<Snapshot, StoreError> {
        self.inner.load().await
    }
}

#[tokio::test]
async fn a_corrupt_ledger_store_is_internal() {
    let corrupt = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = corrupt.clone();
    let city = city_from(builder().wrap_ledger_store(move |inner| {
        Arc::new(CorruptLedgerStore {
            inner,
            corrupt: flag,
        })
    }))
    .await;
    let (holder, card) = cardholder(&city, "a", "3301000000000001").await;
    corrupt.store(true, std::sync::atomic::Ordering::SeqCst);
    let top_up = city
        .wallet()
        .top_up(
            &Principal::cardholder(holder),
            &card,
            Money::from_yuan(10),
            &Platform::Alipay,
            &key("t1"),
        )
        .await;
    assert_eq!(class_of(top_up), ErrorClass::Internal);
}

fn alipay() -> Principal {
    Principal::Platform {
        platform: Platform::Alipay,
    }
}

#[tokio::test]
async fn a_throttled_real_name_provider_is_rate_limited() {
    let simulated = Arc::new(SimulatedVerifier::new());
    let verifier = FaultyVerifier::new(simulated.clone());
    let throttle = verifier.rate_limits.clone();
    let city = city_from(builder().real_name_verifier(Arc::new(verifier))).await;
    let (_, id_number, _) = cardholder_with_id(&city, "a", "3301000000000001").await;
    simulated.register(&id_number, KnownPerson::named("市民a"));
    let account = city
        .identity()
        .register_account(&alipay(), Platform::Alipay, "2088-a", &key("reg-a"))
        .await
        .expect("registers");
    throttle.always("*", Fault::Fail);
    let verified = city
        .identity()
        .verify_real_name(
            &alipay(),
            &account.id,
            &RealNameRequest::two_factor("市民a", id_number.reveal()),
            &key("verify-a"),
        )
        .await
        .map_err(CityCardError::from);
    assert_eq!(class_of(verified), ErrorClass::RateLimited);
}

#[tokio::test]
async fn a_key_service_outage_during_a_bind_is_unavailable() {
    let keys = FaultyKeyProvider::new(Arc::new(MemoryKeyProvider::random().expect("keys")));
    let outage = keys.faults.clone();
    let city = city_from(builder().key_provider(Arc::new(keys))).await;
    let (holder, id_number, _) = cardholder_with_id(&city, "a", "3301000000000001").await;
    city.simulated_verifier()
        .expect("simulated provider")
        .register(&id_number, KnownPerson::named("市民a"));
    let account = city
        .identity()
        .register_account(&alipay(), Platform::Alipay, "2088-a", &key("reg-a"))
        .await
        .expect("registers");
    city.identity()
        .verify_real_name(
            &alipay(),
            &account.id,
            &RealNameRequest::two_factor("市民a", id_number.reveal()),
            &key("verify-a"),
        )
        .await
        .expect("verifies");
    outage.always("*", Fault::Fail);
    let bound = city
        .cards()
        .bind(
            &Principal::cardholder(holder),
            &key("bind-a"),
            &BindRequest {
                platform: Platform::Alipay,
                account: account.id,
                card_number: "3301000000000001".into(),
                id_number: id_number.to_sensitive(),
                consent: ConsentInput {
                    purpose: "use the citizen card in Alipay".into(),
                    data_categories: [DataCategory::CardNumber, DataCategory::Balance].into(),
                    text_version: "2026-01".into(),
                    channel: "alipay_app".into(),
                },
            },
        )
        .await
        .map_err(CityCardError::from);
    assert_eq!(class_of(bound), ErrorClass::Unavailable);
}

/// Wallets hold CNY: a fare feed priced in another currency is refused when
/// the city is built, with a message that says so.
#[tokio::test]
async fn a_fare_feed_in_another_currency_is_refused_at_build() {
    use citycard::transit::{FareData, FareEngine};
    let mut data = FareData::hangzhou();
    let products = data
        .file("fare_products.txt")
        .expect("Hangzhou has fare products")
        .replace("CNY", "USD");
    data.insert("fare_products.txt", products);
    let engine = FareEngine::load(&data).expect("the feed loads in USD");
    let err = match citycard::CityCard::builder()
        .in_memory()
        .fare_engine(engine)
        .build()
        .await
    {
        Ok(_) => panic!("a USD feed must be refused"),
        Err(e) => e,
    };
    assert!(matches!(err, citycard::CityCardError::Config(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains("CNY") && text.contains("USD"), "{text}");
}
