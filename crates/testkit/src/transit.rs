//! Test support for citycard-transit: conformance suites for its storage ports,
//! fault-injecting doubles of its remote ports, and proptest strategies.

use async_trait::async_trait;
use citycard_core::Money;
use citycard_transit::{
    CardKind, ChargeOne, ChargeOutcome, ChargePlan, FareCharge, FarePayments, Medium,
    MemoryFarePayments, Rider, TransitError, TransitStore,
};
use proptest::prelude::*;

use crate::faults::{Fault, Faults};

/// A [`FarePayments`] double over [`MemoryFarePayments`] that fails, times out or
/// loses answers on command (operation name `"charge"`).
#[derive(Debug)]
pub struct FaultyFarePayments {
    /// The real memory implementation behind the faults.
    pub inner: MemoryFarePayments,
    /// The fault script.
    pub faults: Faults,
}

impl FaultyFarePayments {
    /// A double where every card starts with `default_balance`.
    pub fn new(default_balance: Money) -> Self {
        Self {
            inner: MemoryFarePayments::new(default_balance),
            faults: Faults::new(),
        }
    }
}

#[async_trait]
impl FarePayments for FaultyFarePayments {
    async fn commit(
        &self,
        plan: &dyn ChargePlan,
        store: &dyn TransitStore,
    ) -> Result<Vec<ChargeOutcome>, TransitError> {
        citycard_transit::commit_one_by_one(self, plan, store).await
    }
}

#[async_trait]
impl ChargeOne for FaultyFarePayments {
    async fn charge(&self, charge: &FareCharge) -> Result<ChargeOutcome, TransitError> {
        match self.faults.check("charge") {
            Fault::None => self.inner.charge(charge).await,
            Fault::Fail => Err(TransitError::PaymentUnavailable("injected failure".into())),
            Fault::Timeout => Err(TransitError::PaymentUnavailable("injected timeout".into())),
            Fault::UnknownOutcome => {
                let _ = self.inner.charge(charge).await;
                Err(TransitError::PaymentUnavailable(
                    "injected lost answer".into(),
                ))
            }
        }
    }
}

/// Any rider profile.
pub fn rider() -> impl Strategy<Value = Rider> {
    (
        prop::sample::select(CardKind::ALL.to_vec()),
        prop::option::of(0u8..100),
        prop::bool::ANY,
        prop::bool::ANY,
    )
        .prop_map(|(card_kind, age, code, volume_tiers)| Rider {
            card_kind,
            age,
            medium: if code { Medium::RideCode } else { Medium::Card },
            volume_tiers,
        })
}

/// The conformance suite for [`TransitStore`](citycard_transit::TransitStore).
#[macro_export]
macro_rules! transit_store_conformance {
    ($factory:ident) => {
        $crate::transit_store_conformance!(@suite $factory, $crate::backend_available);
    };
    ($factory:ident, available = $available:ident) => {
        $crate::transit_store_conformance!(@suite $factory, super::$available);
    };
    (@suite $factory:ident, $available:path) => {
        #[allow(clippy::unwrap_used)]
        mod transit_store_conformance {
            use $crate::__private::chrono::{DateTime, NaiveDate, Utc};
            use $crate::__private::citycard_core::Money;
            use $crate::__private::citycard_transit::{
                ArrearsEntry, CardRef, DenyEntry, DenyReason, IssuedCredential, SettledTrip,
                TransitChanges, TransitStore, TripCompleteness, TripId, TripPayment,
            };

            fn at(secs: i64) -> DateTime<Utc> {
                DateTime::from_timestamp(1_790_000_000 + secs, 0).unwrap()
            }

            fn day(d: u32) -> NaiveDate {
                NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
            }

            fn trip(id: &str, card: u64, d: u32, start: i64, fen: i64) -> SettledTrip {
                SettledTrip {
                    id: TripId::parse(id).unwrap(),
                    card: CardRef(card),
                    day: day(d),
                    started_at: at(start),
                    operator: "hz_metro".into(),
                    base: Money::from_fen(fen + 100),
                    amount: Money::from_fen(fen),
                    completeness: TripCompleteness::Complete,
                    payment: TripPayment::Charged,
                }
            }

            #[tokio::test]
            async fn trips_are_recorded_once_and_read_back_in_order() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let a = trip("t-a", 1, 26, 200, 300);
                let b = trip("t-b", 1, 26, 100, 200);
                let other_day = trip("t-c", 1, 25, 50, 400);
                assert_eq!(
                    store
                        .record_trips(&[a.clone(), b.clone(), other_day.clone()])
                        .await
                        .unwrap(),
                    3
                );
                assert_eq!(
                    store.record_trips(std::slice::from_ref(&a)).await.unwrap(),
                    0
                );
                let mut changed = a.clone();
                changed.amount = Money::from_fen(1);
                assert_eq!(store.record_trips(&[changed]).await.unwrap(), 0);
                assert_eq!(store.trips(CardRef(1), day(26)).await.unwrap(), vec![b, a]);
                assert_eq!(
                    store.trips(CardRef(1), day(25)).await.unwrap(),
                    vec![other_day]
                );
                assert!(store.trips(CardRef(2), day(26)).await.unwrap().is_empty());
            }

            #[tokio::test]
            async fn a_chunk_commits_its_trips_arrears_and_denials_together_and_prefetch_reads_them() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let earlier = trip("t-earlier", 1, 20, 10, 250);
                store.record_trips(std::slice::from_ref(&earlier)).await.unwrap();
                let paid = trip("t-paid", 1, 26, 100, 300);
                let mut owed = trip("t-owed", 2, 26, 110, 400);
                owed.payment = TripPayment::Arrears;
                let changes = TransitChanges {
                    trips: vec![paid.clone(), owed.clone()],
                    arrears: vec![ArrearsEntry {
                        card: CardRef(2),
                        trip: owed.id.clone(),
                        amount: owed.amount,
                        at: at(500),
                    }],
                    deny: vec![DenyEntry {
                        card: CardRef(2),
                        reason: DenyReason::Arrears,
                        since: at(500),
                    }],
                    ..TransitChanges::default()
                };
                store.commit(&changes).await.unwrap();
                // Committing the same chunk again changes nothing.
                store.commit(&changes).await.unwrap();
                assert_eq!(store.trips(CardRef(1), day(26)).await.unwrap(), vec![paid.clone()]);
                assert_eq!(store.arrears(CardRef(2)).await.unwrap().len(), 1);
                assert_eq!(store.deny_list().await.unwrap().len(), 1);

                let cards = [CardRef(1), CardRef(2), CardRef(3)];
                let got = store.prefetch(&cards, day(26)).await.unwrap();
                let mut settled: Vec<&str> = got.settled.iter().map(|t| t.as_str()).collect();
                settled.sort_unstable();
                assert_eq!(settled, vec!["t-owed", "t-paid"]);
                // 2026-11-20 is a Friday: in the month of the 26th, not in its week (from Monday the 23rd).
                let spend = got.spend.get(&CardRef(1)).copied().unwrap();
                assert_eq!(spend.month, Money::from_fen(250));
                assert_eq!(spend.week, Money::ZERO);
                assert_eq!(spend.day, Money::ZERO);
                assert_eq!(got.spend.get(&CardRef(2)), None);
                let on_the_22nd = store.prefetch(&cards, day(22)).await.unwrap();
                let spend = on_the_22nd.spend.get(&CardRef(1)).copied().unwrap();
                assert_eq!((spend.week, spend.month), (Money::from_fen(250), Money::from_fen(250)));

                // Paying the arrears clears them and lifts the denial in one commit.
                store
                    .commit(&TransitChanges {
                        cleared: vec![(CardRef(2), owed.id.clone())],
                        allow: vec![(CardRef(2), DenyReason::Arrears)],
                        ..TransitChanges::default()
                    })
                    .await
                    .unwrap();
                assert!(store.arrears(CardRef(2)).await.unwrap().is_empty());
                assert!(store.deny_list().await.unwrap().is_empty());
            }

            #[tokio::test]
            async fn month_spend_counts_earlier_days_of_the_same_month_only() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let october = SettledTrip {
                    day: NaiveDate::from_ymd_opt(2026, 10, 31).unwrap(),
                    ..trip("t-oct", 5, 1, 0, 999)
                };
                store
                    .record_trips(&[
                        trip("t-1", 5, 1, 0, 250),
                        trip("t-2", 5, 10, 10, 300),
                        trip("t-3", 5, 26, 20, 700),
                        trip("t-4", 6, 10, 30, 5000),
                        october,
                    ])
                    .await
                    .unwrap();
                assert_eq!(
                    store.month_spend_before(CardRef(5), day(26)).await.unwrap(),
                    Money::from_fen(550)
                );
                assert_eq!(
                    store.month_spend_before(CardRef(5), day(27)).await.unwrap(),
                    Money::from_fen(1250)
                );
                assert_eq!(
                    store.month_spend_before(CardRef(5), day(1)).await.unwrap(),
                    Money::ZERO
                );
                assert_eq!(
                    store.month_spend_before(CardRef(7), day(26)).await.unwrap(),
                    Money::ZERO
                );
            }

            #[tokio::test]
            async fn arrears_are_added_once_per_trip_and_cleared_by_trip() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let e1 = ArrearsEntry {
                    card: CardRef(3),
                    trip: TripId::parse("t-1").unwrap(),
                    amount: Money::from_fen(300),
                    at: at(1),
                };
                let e2 = ArrearsEntry {
                    card: CardRef(3),
                    trip: TripId::parse("t-2").unwrap(),
                    amount: Money::from_fen(200),
                    at: at(2),
                };
                assert!(store.add_arrears(&e1).await.unwrap());
                assert!(!store.add_arrears(&e1).await.unwrap());
                assert!(store.add_arrears(&e2).await.unwrap());
                assert_eq!(
                    store.arrears(CardRef(3)).await.unwrap(),
                    vec![e1.clone(), e2.clone()]
                );
                assert_eq!(
                    store
                        .clear_arrears(CardRef(3), std::slice::from_ref(&e1.trip))
                        .await
                        .unwrap(),
                    Money::from_fen(300)
                );
                assert_eq!(store.arrears(CardRef(3)).await.unwrap(), vec![e2.clone()]);
                assert_eq!(
                    store
                        .clear_arrears(CardRef(3), std::slice::from_ref(&e1.trip))
                        .await
                        .unwrap(),
                    Money::ZERO
                );
                assert_eq!(
                    store
                        .clear_arrears(CardRef(3), std::slice::from_ref(&e2.trip))
                        .await
                        .unwrap(),
                    Money::from_fen(200)
                );
                assert!(store.arrears(CardRef(3)).await.unwrap().is_empty());
            }

            #[tokio::test]
            async fn the_deny_list_keeps_one_entry_per_card_and_reason() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let arrears = DenyEntry {
                    card: CardRef(9),
                    reason: DenyReason::Arrears,
                    since: at(5),
                };
                let lost = DenyEntry {
                    card: CardRef(9),
                    reason: DenyReason::Lost,
                    since: at(6),
                };
                let other = DenyEntry {
                    card: CardRef(2),
                    reason: DenyReason::Revoked,
                    since: at(7),
                };
                store.deny(&arrears).await.unwrap();
                store
                    .deny(&DenyEntry {
                        since: at(99),
                        ..arrears.clone()
                    })
                    .await
                    .unwrap();
                store.deny(&lost).await.unwrap();
                store.deny(&other).await.unwrap();
                assert_eq!(
                    store.deny_list().await.unwrap(),
                    vec![other.clone(), arrears.clone(), lost.clone()]
                );
                assert!(store.allow(CardRef(9), DenyReason::Arrears).await.unwrap());
                assert!(!store.allow(CardRef(9), DenyReason::Arrears).await.unwrap());
                assert_eq!(store.deny_list().await.unwrap(), vec![other, lost]);
            }

            #[tokio::test]
            async fn issued_credentials_are_kept_once_and_listed_while_live() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let credential = |card: u64, key_id: u32, reference: u64, from: i64, until: i64| {
                    IssuedCredential {
                        card: CardRef(card),
                        key_id,
                        reference: CardRef(reference),
                        valid_from: at(from),
                        valid_until: at(until),
                    }
                };
                // References span the whole u64 range (they are keyed permutations).
                let a = credential(7, 65_537, u64::MAX - 3, 0, 100);
                let b = credential(7, 65_538, 11, 50, 200);
                let c = credential(3, 65_537, 12, 150, 300);
                for x in [&a, &b, &c, &a] {
                    store.record_credential(x).await.unwrap();
                }
                assert!(store.live_credentials(at(-1)).await.unwrap().is_empty());
                assert_eq!(
                    store.live_credentials(at(0)).await.unwrap(),
                    vec![a.clone()]
                );
                assert_eq!(
                    store.live_credentials(at(100)).await.unwrap(),
                    vec![a.clone(), b.clone()]
                );
                assert_eq!(
                    store.live_credentials(at(150)).await.unwrap(),
                    vec![c.clone(), b.clone()]
                );
                assert!(store.live_credentials(at(301)).await.unwrap().is_empty());
            }
        }
    };
}
