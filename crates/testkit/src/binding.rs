//! Test support for citycard-binding: conformance suites for its storage ports,
//! fault-injecting doubles of its remote ports, and proptest strategies.
//!
//! [`Faulty`] wraps any implementation of a remote port and consults a
//! [`Faults`] plan at the start of each call; the operation names are the
//! port methods' names (`add_pass`, `update_pass`, `remove_pass`, `pass`,
//! `verify`, `account_holder`, `id_number_is`, `guardian_required`,
//! `is_guardian_of`, `blind_index`, `move_balance`, `refund_balance`,
//! `balance`).

use std::collections::BTreeSet;
use std::future::Future;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use citycard_binding::{
    BalanceSource, BalanceView, Binding, BindingId, BindingState, BlindIndex, Card, CardFunds,
    CardId, CardIssuer, CardKind, CardNumber, CardNumberFormat, CardRules, CardStatus,
    ConsentInput, ConsentRecord, DataCategory, Delegation, IdNumberIndex, IssuerVerdict,
    PassSerial, PassUpdate, PlatformWallet, PortError, RealNameCheck, Relation, RemovalReason,
    Service, ServiceSet, WalletAccountRef, WalletPass,
};
use citycard_core::{
    DelegationId, DelegationScope, IdempotencyKey, Money, PersonId, Platform, PlatformAccountId,
    Principal, Scopes, Sensitive,
};
use proptest::prelude::*;

use crate::faults::{Fault, Faults};

/// An instant for fixtures: `secs` after 2026-09-21.
pub fn fixture_time(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_790_000_000 + secs, 0).unwrap_or_default()
}

/// A card for store tests: number `33010000` followed by `n` in 8 digits.
pub fn sample_card(n: u32, holder: &str) -> Card {
    let format = CardRules::embedded().number_format;
    Card {
        id: CardId::parse(&format!("card-{n}")).unwrap_or_else(|_| unreachable!()),
        number: CardNumber::parse(&format!("33010000{n:08}"), &format)
            .unwrap_or_else(|_| unreachable!()),
        kind: CardKind::Standard,
        holder: PersonId::parse(holder).unwrap_or_else(|_| unreachable!()),
        holder_index: BlindIndex::new(format!("idx-{holder}")),
        wallet_account: WalletAccountRef::parse(&format!("wac-{n}"))
            .unwrap_or_else(|_| unreachable!()),
        services: [Service::Transit, Service::Wallet].into(),
        platforms: [Platform::Alipay, Platform::WechatPay].into(),
        status: CardStatus::Active,
        replaces: None,
        issued_at: fixture_time(0),
        version: 0,
    }
}

/// A binding for store tests.
pub fn sample_binding(
    id: &str,
    card: &CardId,
    platform: Platform,
    account: &str,
    state: BindingState,
) -> Binding {
    Binding {
        id: BindingId::parse(id).unwrap_or_else(|_| unreachable!()),
        card: card.clone(),
        holder: PersonId::parse("psn-holder").unwrap_or_else(|_| unreachable!()),
        platform: platform.clone(),
        account: PlatformAccountId::parse(account).unwrap_or_else(|_| unreachable!()),
        state,
        pass_serial: PassSerial::parse(&format!("pass-{id}")).unwrap_or_else(|_| unreachable!()),
        consent: ConsentRecord {
            recipient: platform,
            given: sample_consent(),
            given_at: fixture_time(1),
            actor: Principal::cardholder(
                PersonId::parse("psn-holder").unwrap_or_else(|_| unreachable!()),
            ),
            guardian: None,
            withdrawn_at: None,
        },
        removal: None,
        created_at: fixture_time(1),
        updated_at: fixture_time(1),
        version: 0,
    }
}

/// A consent input for fixtures.
pub fn sample_consent() -> ConsentInput {
    ConsentInput {
        purpose: "use the citizen card on the platform".into(),
        data_categories: [DataCategory::CardNumber, DataCategory::Balance].into(),
        text_version: "v1".into(),
        channel: "app".into(),
    }
}

/// A delegation for store tests.
pub fn sample_delegation(id: &str, cardholder: &str, delegate: &str) -> Delegation {
    Delegation {
        id: DelegationId::parse(id).unwrap_or_else(|_| unreachable!()),
        cardholder: PersonId::parse(cardholder).unwrap_or_else(|_| unreachable!()),
        delegate: PersonId::parse(delegate).unwrap_or_else(|_| unreachable!()),
        relation: Relation::Family,
        scopes: [DelegationScope::ViewBalance, DelegationScope::Bind]
            .into_iter()
            .collect::<Scopes>(),
        granted_by: PersonId::parse(cardholder).unwrap_or_else(|_| unreachable!()),
        granted_at: fixture_time(0),
        expires_at: fixture_time(86_400),
        revoked_at: None,
    }
}

/// A remote-port implementation wrapped with fault injection.
#[derive(Debug, Clone)]
pub struct Faulty<T> {
    inner: T,
    faults: Faults,
}

impl<T> Faulty<T> {
    /// Wraps `inner`; faults are scripted through `faults` (shared by clones).
    pub fn new(inner: T, faults: Faults) -> Self {
        Self { inner, faults }
    }

    /// The wrapped implementation.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// The fault plan.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    async fn call<R>(
        &self,
        operation: &str,
        work: impl Future<Output = Result<R, PortError>>,
    ) -> Result<R, PortError> {
        match self.faults.check(operation) {
            Fault::None => work.await,
            Fault::Fail => Err(PortError::Unavailable(format!(
                "injected failure of {operation}"
            ))),
            Fault::Timeout => Err(PortError::Timeout),
            Fault::UnknownOutcome => {
                let _ = work.await;
                Err(PortError::UnknownOutcome)
            }
        }
    }
}

#[async_trait]
impl<T: PlatformWallet> PlatformWallet for Faulty<T> {
    async fn add_pass(&self, pass: &WalletPass) -> Result<(), PortError> {
        self.call("add_pass", self.inner.add_pass(pass)).await
    }

    async fn update_pass(
        &self,
        platform: &Platform,
        serial: &PassSerial,
        update: &PassUpdate,
    ) -> Result<(), PortError> {
        self.call(
            "update_pass",
            self.inner.update_pass(platform, serial, update),
        )
        .await
    }

    async fn remove_pass(
        &self,
        platform: &Platform,
        serial: &PassSerial,
        reason: RemovalReason,
    ) -> Result<(), PortError> {
        self.call(
            "remove_pass",
            self.inner.remove_pass(platform, serial, reason),
        )
        .await
    }

    async fn pass(
        &self,
        platform: &Platform,
        serial: &PassSerial,
    ) -> Result<Option<WalletPass>, PortError> {
        self.call("pass", self.inner.pass(platform, serial)).await
    }
}

#[async_trait]
impl<T: CardIssuer> CardIssuer for Faulty<T> {
    async fn verify(
        &self,
        number: &CardNumber,
        id_number: &Sensitive<String>,
    ) -> Result<IssuerVerdict, PortError> {
        self.call("verify", self.inner.verify(number, id_number))
            .await
    }
}

#[async_trait]
impl<T: RealNameCheck> RealNameCheck for Faulty<T> {
    async fn account_holder(
        &self,
        platform: &Platform,
        account: &PlatformAccountId,
    ) -> Result<Option<PersonId>, PortError> {
        self.call(
            "account_holder",
            self.inner.account_holder(platform, account),
        )
        .await
    }

    async fn id_number_is(
        &self,
        person: &PersonId,
        id_number: &Sensitive<String>,
    ) -> Result<bool, PortError> {
        self.call("id_number_is", self.inner.id_number_is(person, id_number))
            .await
    }

    async fn guardian_required(&self, person: &PersonId) -> Result<bool, PortError> {
        self.call("guardian_required", self.inner.guardian_required(person))
            .await
    }

    async fn is_guardian_of(
        &self,
        guardian: &PersonId,
        ward: &PersonId,
    ) -> Result<bool, PortError> {
        self.call("is_guardian_of", self.inner.is_guardian_of(guardian, ward))
            .await
    }
}

#[async_trait]
impl<T: IdNumberIndex> IdNumberIndex for Faulty<T> {
    async fn blind_index(&self, id_number: &Sensitive<String>) -> Result<BlindIndex, PortError> {
        self.call("blind_index", self.inner.blind_index(id_number))
            .await
    }
}

#[async_trait]
impl<T: CardFunds> CardFunds for Faulty<T> {
    async fn move_balance(
        &self,
        from: &WalletAccountRef,
        to: &WalletAccountRef,
        key: &IdempotencyKey,
    ) -> Result<Money, PortError> {
        self.call("move_balance", self.inner.move_balance(from, to, key))
            .await
    }

    async fn refund_balance(
        &self,
        account: &WalletAccountRef,
        key: &IdempotencyKey,
    ) -> Result<Money, PortError> {
        self.call("refund_balance", self.inner.refund_balance(account, key))
            .await
    }
}

#[async_trait]
impl<T: BalanceSource> BalanceSource for Faulty<T> {
    async fn balance(&self, account: &WalletAccountRef) -> Result<BalanceView, PortError> {
        self.call("balance", self.inner.balance(account)).await
    }
}

/// A card number valid under the embedded rules (8 to 20 digits).
pub fn card_number_text() -> impl Strategy<Value = String> {
    "[0-9]{8,20}"
}

/// Any card kind code of the embedded rules.
pub fn card_kind_code() -> impl Strategy<Value = String> {
    prop::sample::select(CardRules::embedded().kinds)
}

/// A set of services.
pub fn service_set() -> impl Strategy<Value = ServiceSet> {
    prop::collection::btree_set(
        prop_oneof![
            Just(Service::Transit),
            Just(Service::Healthcare),
            Just(Service::SocialInsurance),
            Just(Service::Wallet),
        ],
        0..=4,
    )
}

/// A binding platform.
pub fn platform() -> impl Strategy<Value = Platform> {
    prop_oneof![
        Just(Platform::Alipay),
        Just(Platform::WechatPay),
        Just(Platform::UnionPay)
    ]
}

/// A fault to inject.
pub fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        Just(Fault::None),
        Just(Fault::Fail),
        Just(Fault::Timeout),
        Just(Fault::UnknownOutcome)
    ]
}

/// A card number format that accepts every [`card_number_text`].
pub fn permissive_format() -> CardNumberFormat {
    CardNumberFormat {
        min_len: 8,
        max_len: 20,
        charset: citycard_binding::CardNumberCharset::Digits,
        prefixes: Vec::new(),
    }
}

/// Every platform in a set, for fixtures.
pub fn all_platforms() -> BTreeSet<Platform> {
    [Platform::Alipay, Platform::WechatPay, Platform::UnionPay].into()
}

/// The conformance suite for [`CardStore`](citycard_binding::CardStore).
#[macro_export]
macro_rules! card_store_conformance {
    ($factory:ident) => {
        $crate::card_store_conformance!(@suite $factory, $crate::backend_available);
    };
    ($factory:ident, available = $available:ident) => {
        $crate::card_store_conformance!(@suite $factory, super::$available);
    };
    (@suite $factory:ident, $available:path) => {
        #[allow(clippy::unwrap_used)]
        mod card_store_conformance {
            use $crate::__private::citycard_binding::{CardStatus, CardStore};
            use $crate::__private::citycard_core::{PersonId, StoreError};
            use $crate::binding::sample_card;

            #[tokio::test]
            async fn cards_round_trip_by_id_number_and_holder() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let a = sample_card(1, "psn-a");
                let b = sample_card(2, "psn-b");
                let c = sample_card(3, "psn-a");
                for card in [&a, &b, &c] {
                    store.insert(card).await.unwrap();
                }
                assert_eq!(store.get(&a.id).await.unwrap(), Some(a.clone()));
                assert_eq!(store.by_number(&b.number).await.unwrap(), Some(b.clone()));
                let missing = sample_card(9, "psn-z");
                assert_eq!(store.get(&missing.id).await.unwrap(), None);
                assert_eq!(store.by_number(&missing.number).await.unwrap(), None);
                let held = store
                    .by_holder(&PersonId::parse("psn-a").unwrap())
                    .await
                    .unwrap();
                assert_eq!(held, vec![a, c]);
            }

            #[tokio::test]
            async fn cards_are_read_by_a_list_of_numbers() {
                let store = super::$factory().await;
                let a = sample_card(1, "psn-a");
                let b = sample_card(2, "psn-b");
                let c = sample_card(3, "psn-a");
                for card in [&a, &b, &c] {
                    store.insert(card).await.unwrap();
                }
                assert!(store.by_numbers(&[]).await.unwrap().is_empty());
                let missing = sample_card(9, "psn-z");
                // Missing numbers are skipped; a number listed twice gives its card once.
                let mut found = store
                    .by_numbers(&[
                        c.number.clone(),
                        missing.number.clone(),
                        a.number.clone(),
                        c.number.clone(),
                    ])
                    .await
                    .unwrap();
                found.sort_by(|x, y| x.id.cmp(&y.id));
                assert_eq!(found, vec![a.clone(), c.clone()]);
                assert!(
                    store
                        .by_numbers(&[missing.number])
                        .await
                        .unwrap()
                        .is_empty()
                );
            }

            #[tokio::test]
            async fn a_duplicate_id_or_number_conflicts() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let a = sample_card(1, "psn-a");
                store.insert(&a).await.unwrap();
                assert!(matches!(
                    store.insert(&a).await,
                    Err(StoreError::Conflict(_))
                ));
                let mut same_number = sample_card(2, "psn-b");
                same_number.number = a.number.clone();
                assert!(matches!(
                    store.insert(&same_number).await,
                    Err(StoreError::Conflict(_))
                ));
                assert_eq!(store.get(&same_number.id).await.unwrap(), None);
            }

            #[tokio::test]
            async fn updates_are_compare_and_swap_on_the_version() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let mut a = sample_card(1, "psn-a");
                store.insert(&a).await.unwrap();
                a.status = CardStatus::ReportedLost;
                let stored = store.update(&a).await.unwrap();
                assert_eq!(stored.version, 1);
                assert_eq!(stored.status, CardStatus::ReportedLost);
                assert_eq!(store.get(&a.id).await.unwrap(), Some(stored.clone()));
                // `a` still has version 0: a stale write is refused and changes nothing.
                a.status = CardStatus::Frozen;
                assert!(matches!(
                    store.update(&a).await,
                    Err(StoreError::Conflict(_))
                ));
                assert_eq!(
                    store.get(&a.id).await.unwrap().unwrap().status,
                    CardStatus::ReportedLost
                );
                let ghost = sample_card(7, "psn-a");
                assert!(matches!(
                    store.update(&ghost).await,
                    Err(StoreError::Conflict(_))
                ));
            }

            #[tokio::test]
            async fn replace_is_atomic() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let mut old = sample_card(1, "psn-a");
                store.insert(&old).await.unwrap();
                let taken = sample_card(2, "psn-b");
                store.insert(&taken).await.unwrap();
                let mut new = sample_card(3, "psn-a");
                old.status = CardStatus::Replaced { by: new.id.clone() };
                // A new card whose number is taken: nothing changes.
                let mut clash = new.clone();
                clash.number = taken.number.clone();
                assert!(matches!(
                    store.replace(&old, &clash).await,
                    Err(StoreError::Conflict(_))
                ));
                assert_eq!(
                    store.get(&old.id).await.unwrap().unwrap().status,
                    CardStatus::Active
                );
                assert_eq!(store.get(&clash.id).await.unwrap(), None);
                new.replaces = Some(old.id.clone());
                let updated = store.replace(&old, &new).await.unwrap();
                assert_eq!(updated.version, 1);
                assert_eq!(store.get(&new.id).await.unwrap(), Some(new.clone()));
                assert_eq!(
                    store.get(&old.id).await.unwrap().unwrap().status,
                    CardStatus::Replaced { by: new.id.clone() }
                );
                // Replaying with the stale version conflicts.
                let mut other = sample_card(4, "psn-a");
                other.replaces = Some(old.id.clone());
                assert!(matches!(
                    store.replace(&old, &other).await,
                    Err(StoreError::Conflict(_))
                ));
                assert_eq!(store.get(&other.id).await.unwrap(), None);
            }
        }
    };
}

/// The conformance suite for [`BindingStore`](citycard_binding::BindingStore).
#[macro_export]
macro_rules! binding_store_conformance {
    ($factory:ident) => {
        $crate::binding_store_conformance!(@suite $factory, $crate::backend_available);
    };
    ($factory:ident, available = $available:ident) => {
        $crate::binding_store_conformance!(@suite $factory, super::$available);
    };
    (@suite $factory:ident, $available:path) => {
        #[allow(clippy::unwrap_used)]
        mod binding_store_conformance {
            use $crate::__private::citycard_binding::{BindingState, BindingStore, CardId};
            use $crate::__private::citycard_core::{Platform, PlatformAccountId, StoreError};
            use $crate::binding::{fixture_time, sample_binding};

            fn card(s: &str) -> CardId {
                CardId::parse(s).unwrap()
            }

            fn account(s: &str) -> PlatformAccountId {
                PlatformAccountId::parse(s).unwrap()
            }

            #[tokio::test]
            async fn bindings_round_trip_and_are_listed_oldest_first() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let c = card("card-1");
                let b1 =
                    sample_binding("bnd-1", &c, Platform::Alipay, "pac-1", BindingState::Active);
                let b2 = sample_binding(
                    "bnd-2",
                    &c,
                    Platform::WechatPay,
                    "pac-1",
                    BindingState::Pending,
                );
                let b3 = sample_binding(
                    "bnd-3",
                    &card("card-2"),
                    Platform::Alipay,
                    "pac-1",
                    BindingState::Suspended,
                );
                for b in [&b1, &b2, &b3] {
                    store.insert(b).await.unwrap();
                }
                assert_eq!(store.get(&b1.id).await.unwrap(), Some(b1.clone()));
                assert_eq!(
                    store.by_card(&c).await.unwrap(),
                    vec![b1.clone(), b2.clone()]
                );
                assert_eq!(
                    store
                        .by_account(&Platform::Alipay, &account("pac-1"))
                        .await
                        .unwrap(),
                    vec![b1.clone(), b3.clone()]
                );
                assert_eq!(
                    store
                        .live_for(&c, &Platform::WechatPay, &account("pac-1"))
                        .await
                        .unwrap(),
                    Some(b2.clone())
                );
                assert_eq!(
                    store
                        .live_for(&c, &Platform::UnionPay, &account("pac-1"))
                        .await
                        .unwrap(),
                    None
                );
                assert_eq!(store.pending(10).await.unwrap(), vec![b2]);
                assert!(store.pending(0).await.unwrap().is_empty());
            }

            #[tokio::test]
            async fn at_most_one_live_binding_per_card_and_account() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let c = card("card-1");
                let first = sample_binding(
                    "bnd-1",
                    &c,
                    Platform::Alipay,
                    "pac-1",
                    BindingState::Pending,
                );
                store.insert(&first).await.unwrap();
                let second =
                    sample_binding("bnd-2", &c, Platform::Alipay, "pac-1", BindingState::Active);
                assert!(matches!(
                    store.insert(&second).await,
                    Err(StoreError::Conflict(_))
                ));
                assert_eq!(store.get(&second.id).await.unwrap(), None);
                // Another account or another platform is fine.
                store
                    .insert(&sample_binding(
                        "bnd-3",
                        &c,
                        Platform::Alipay,
                        "pac-2",
                        BindingState::Active,
                    ))
                    .await
                    .unwrap();
                store
                    .insert(&sample_binding(
                        "bnd-4",
                        &c,
                        Platform::WechatPay,
                        "pac-1",
                        BindingState::Active,
                    ))
                    .await
                    .unwrap();
                // Once removed, the card may bind again on that account.
                let mut removed = first.clone();
                removed.state = BindingState::Removed;
                store.update(&removed).await.unwrap();
                store.insert(&second).await.unwrap();
                assert_eq!(
                    store
                        .live_for(&c, &Platform::Alipay, &account("pac-1"))
                        .await
                        .unwrap()
                        .unwrap()
                        .id,
                    second.id
                );
                // A removed binding may not come back to life beside the new one.
                let mut revived = store.get(&first.id).await.unwrap().unwrap();
                revived.state = BindingState::Active;
                assert!(matches!(
                    store.update(&revived).await,
                    Err(StoreError::Conflict(_))
                ));
            }

            #[tokio::test]
            async fn updates_are_compare_and_swap_and_keep_uniqueness_when_moving_cards() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let old = card("card-1");
                let new = card("card-2");
                let mut b = sample_binding(
                    "bnd-1",
                    &old,
                    Platform::Alipay,
                    "pac-1",
                    BindingState::Active,
                );
                store.insert(&b).await.unwrap();
                store
                    .insert(&sample_binding(
                        "bnd-2",
                        &new,
                        Platform::Alipay,
                        "pac-9",
                        BindingState::Active,
                    ))
                    .await
                    .unwrap();
                b.card = new.clone();
                let moved = store.update(&b).await.unwrap();
                assert_eq!(moved.version, 1);
                assert!(store.by_card(&old).await.unwrap().is_empty());
                assert_eq!(store.by_card(&new).await.unwrap().len(), 2);
                assert!(
                    store
                        .live_for(&old, &Platform::Alipay, &account("pac-1"))
                        .await
                        .unwrap()
                        .is_none()
                );
                // Stale version.
                assert!(matches!(
                    store.update(&b).await,
                    Err(StoreError::Conflict(_))
                ));
                // Moving a second binding onto a live (card, account) pair conflicts.
                let mut c = store.get(&"bnd-2".parse().unwrap()).await.unwrap().unwrap();
                c.account = account("pac-1");
                assert!(matches!(
                    store.update(&c).await,
                    Err(StoreError::Conflict(_))
                ));
            }

            #[tokio::test]
            async fn mismatches_are_counted_per_account_within_a_window() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let a = account("pac-1");
                for s in [30, 10, 20] {
                    store
                        .record_mismatch(&Platform::Alipay, &a, fixture_time(s))
                        .await
                        .unwrap();
                }
                store
                    .record_mismatch(&Platform::WechatPay, &a, fixture_time(25))
                    .await
                    .unwrap();
                assert_eq!(
                    store
                        .mismatches_since(&Platform::Alipay, &a, fixture_time(15))
                        .await
                        .unwrap(),
                    vec![fixture_time(20), fixture_time(30)]
                );
                assert_eq!(
                    store
                        .mismatches_since(&Platform::Alipay, &a, fixture_time(0))
                        .await
                        .unwrap()
                        .len(),
                    3
                );
                assert!(
                    store
                        .mismatches_since(&Platform::Alipay, &account("pac-2"), fixture_time(0))
                        .await
                        .unwrap()
                        .is_empty()
                );
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_inserts_for_one_card_and_account_admit_one() {
                let store = std::sync::Arc::new(super::$factory().await);
                let mut tasks = Vec::new();
                for i in 0..16 {
                    let store = store.clone();
                    tasks.push($crate::__private::tokio::spawn(async move {
                        let b = sample_binding(
                            &format!("bnd-{i}"),
                            &card("card-1"),
                            Platform::Alipay,
                            "pac-1",
                            BindingState::Pending,
                        );
                        store.insert(&b).await
                    }));
                }
                let mut ok = 0;
                for t in tasks {
                    match t.await.unwrap() {
                        Ok(()) => ok += 1,
                        Err(StoreError::Conflict(_)) => {}
                        Err(other) => panic!("unexpected {other:?}"),
                    }
                }
                assert_eq!(ok, 1);
                assert_eq!(store.by_card(&card("card-1")).await.unwrap().len(), 1);
            }
        }
    };
}

/// The conformance suite for [`DelegationStore`](citycard_binding::DelegationStore).
#[macro_export]
macro_rules! delegation_store_conformance {
    ($factory:ident) => {
        $crate::delegation_store_conformance!(@suite $factory, $crate::backend_available);
    };
    ($factory:ident, available = $available:ident) => {
        $crate::delegation_store_conformance!(@suite $factory, super::$available);
    };
    (@suite $factory:ident, $available:path) => {
        #[allow(clippy::unwrap_used)]
        mod delegation_store_conformance {
            use $crate::__private::citycard_binding::DelegationStore;
            use $crate::__private::citycard_core::{PersonId, StoreError};
            use $crate::binding::{fixture_time, sample_delegation};

            #[tokio::test]
            async fn grants_round_trip_and_list_by_cardholder() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let a = sample_delegation("dlg-1", "psn-grandma", "psn-son");
                let b = sample_delegation("dlg-2", "psn-grandpa", "psn-son");
                let c = sample_delegation("dlg-3", "psn-grandma", "psn-daughter");
                for g in [&a, &b, &c] {
                    store.insert(g).await.unwrap();
                }
                assert_eq!(store.get(&a.id).await.unwrap(), Some(a.clone()));
                assert_eq!(
                    store
                        .for_cardholder(&PersonId::parse("psn-grandma").unwrap())
                        .await
                        .unwrap(),
                    vec![a.clone(), c]
                );
                assert!(matches!(
                    store.insert(&a).await,
                    Err(StoreError::Conflict(_))
                ));
            }

            #[tokio::test]
            async fn revocation_is_kept_from_the_first_time() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let a = sample_delegation("dlg-1", "psn-grandma", "psn-son");
                store.insert(&a).await.unwrap();
                let r = store
                    .revoke(&a.id, fixture_time(100))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(r.revoked_at, Some(fixture_time(100)));
                let again = store
                    .revoke(&a.id, fixture_time(200))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(again.revoked_at, Some(fixture_time(100)));
                assert_eq!(
                    store.get(&a.id).await.unwrap().unwrap().revoked_at,
                    Some(fixture_time(100))
                );
                assert_eq!(
                    store
                        .revoke(&"dlg-none".parse().unwrap(), fixture_time(1))
                        .await
                        .unwrap(),
                    None
                );
            }
        }
    };
}

pub use crate::binding_changes::{CardRegistryUnderTest, sample_audit, sample_outcome};
