//! The pure half of settlement: plans are decided from their inputs alone,
//! and resolving a plan's charge outcomes gives the rows to commit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use citycard_core::{Money, Principal};
use citycard_transit::plan::chunks;
use citycard_transit::{
    CardRef, ChargeOutcome, ChargePlan, FareEngine, Medium, SettlementPrefetch, Tap, TapDirection,
    TapPlace, TripPayment, assemble_trips, plan_chunk, plan_day,
};
use proptest::prelude::*;

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, h, m, 0).unwrap() - Duration::hours(8)
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 26).unwrap()
}

fn bus(e: &FareEngine, card: u64, vehicle: u32, t: DateTime<Utc>) -> Tap {
    Tap {
        card: CardRef(card),
        direction: TapDirection::In,
        place: TapPlace::Vehicle {
            route: e.network().route("b7").unwrap(),
            vehicle,
            stop: None,
        },
        reader: 2,
        at: t,
        code: None,
        medium: Medium::Card,
    }
}

/// Three cards, two paying bus rides each, four hours apart.
fn day_of_rides(e: &FareEngine) -> Vec<citycard_transit::Trip> {
    let mut taps: Vec<Tap> = (1..=3)
        .flat_map(|c| {
            [
                bus(e, c, 100 + c as u32, at(8, 0)),
                bus(e, c, 200 + c as u32, at(12, 0)),
            ]
        })
        .collect();
    assemble_trips(e, &mut taps).0
}

#[test]
fn a_plan_depends_only_on_its_inputs_and_skips_settled_trips() {
    let e = FareEngine::hangzhou().unwrap();
    let trips = day_of_rides(&e);
    let prefetch = SettlementPrefetch::default();
    let a = plan_chunk(&e, day(), &trips, &prefetch, &Principal::System, at(23, 0)).unwrap();
    let b = plan_chunk(&e, day(), &trips, &prefetch, &Principal::System, at(23, 0)).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.trips.len(), 6);
    assert_eq!(a.charges.len(), 6);
    assert!(a.charges.iter().all(|c| c.amount.is_positive()));

    // The first trip already settled by an earlier run is not planned again.
    let mut settled = prefetch.clone();
    settled.settled.insert(a.trips[0].trip.id.clone());
    let c = plan_chunk(&e, day(), &trips, &settled, &Principal::System, at(23, 0)).unwrap();
    assert_eq!(c.already_settled, 1);
    assert_eq!(c.trips.len(), 5);
    assert!(c.trips.iter().all(|t| t.trip.id != a.trips[0].trip.id));
}

#[test]
fn resolving_outcomes_records_arrears_once_per_card_and_leaves_refused_cards_whole() {
    let e = FareEngine::hangzhou().unwrap();
    let trips = day_of_rides(&e);
    let plan = plan_chunk(
        &e,
        day(),
        &trips,
        &SettlementPrefetch::default(),
        &Principal::System,
        at(23, 0),
    )
    .unwrap();
    let card_of = |i: usize| plan.charges[i].card;
    let outcomes: Vec<ChargeOutcome> = (0..plan.charges.len())
        .map(|i| match card_of(i).0 {
            1 => ChargeOutcome::Charged {
                reference: format!("r{i}"),
            },
            2 => ChargeOutcome::InsufficientFunds,
            _ if i % 2 == 0 => ChargeOutcome::Refused {
                reason: "closed".into(),
            },
            _ => ChargeOutcome::Charged {
                reference: format!("r{i}"),
            },
        })
        .collect();
    let rows = plan.resolve(&outcomes);
    // Card 1 charged, card 2 in arrears for both rides but denied once, card 3 refused: nothing recorded.
    assert_eq!(rows.trips.len(), 4);
    assert!(rows.trips.iter().all(|t| t.card != CardRef(3)));
    assert!(
        rows.trips
            .iter()
            .filter(|t| t.card == CardRef(1))
            .all(|t| t.payment == TripPayment::Charged)
    );
    assert_eq!(rows.arrears.len(), 2);
    assert_eq!(rows.deny.len(), 1);
    assert_eq!(rows.core.audit.len(), 1);

    let report = plan.tally(&outcomes).unwrap();
    assert_eq!(report.trips_settled, 4);
    assert_eq!(report.cards_in_arrears, 1);
    assert_eq!(report.cards_failed.len(), 1);
    assert_eq!(report.cards_failed[0].card, CardRef(3));
    // Card 3's second ride was charged before the card was left unsettled: the money moved counts.
    assert_eq!(report.charges, 3);
    let arrears: Money = Money::checked_sum(rows.arrears.iter().map(|a| a.amount)).unwrap();
    assert_eq!(report.arrears, arrears);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Chunks hold whole cards, cover every trip once in order, and a day
    /// planned in chunks of any size charges exactly what it charges whole.
    #[test]
    fn chunking_changes_no_charge(
        rides in proptest::collection::vec((1u64..12, 0u32..900), 1..60),
        size in 1usize..20,
    ) {
        let e = FareEngine::hangzhou().unwrap();
        let mut taps: Vec<Tap> = rides
            .iter()
            .enumerate()
            .map(|(i, (card, minute))| bus(&e, *card, i as u32, at(6, 0) + Duration::minutes(i64::from(*minute))))
            .collect();
        let trips = assemble_trips(&e, &mut taps).0;
        let ranges = chunks(&trips, size);
        let mut next = 0;
        for r in &ranges {
            prop_assert_eq!(r.start, next);
            next = r.end;
            let cards: Vec<CardRef> = trips[r.clone()].iter().map(|t| t.card).collect();
            // A card never spans two chunks.
            if let (Some(first), Some(last)) = (cards.first(), cards.last())
                && r.start > 0 {
                prop_assert_ne!(trips[r.start - 1].card, *first);
                prop_assert!(r.end == trips.len() || trips[r.end].card != *last);
            }
            prop_assert!(r.len() <= size || cards.iter().all(|c| *c == cards[0]));
        }
        prop_assert_eq!(next, trips.len());

        let prefetch = SettlementPrefetch::default();
        let whole = plan_chunk(&e, day(), &trips, &prefetch, &Principal::System, at(23, 0)).unwrap();
        let mut pieces = Vec::new();
        for r in ranges {
            pieces.extend(plan_chunk(&e, day(), &trips[r], &prefetch, &Principal::System, at(23, 0)).unwrap().charges);
        }
        prop_assert_eq!(&pieces, &whole.charges);
        let by_day: Vec<_> = plan_day(&e, day(), &trips, &prefetch, &Principal::System, at(23, 0))
            .unwrap()
            .into_iter()
            .flat_map(|p| p.charges)
            .collect();
        prop_assert_eq!(by_day, whole.charges);
    }
}
