//! Issue 20: Hangzhou's rules as the sources say, hand-computed from `shared/domain/transit.md`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use citycard_core::{Money, WorkingCalendar};
use citycard_transit::{CardKind, FareBasis, FareEngine, Journey, Leg, LegFare, Medium, Rider};
use proptest::prelude::*;

/// China civil time (UTC+8).
fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap() - Duration::hours(8)
}

fn yuan(s: &str) -> Money {
    s.parse().unwrap()
}

fn engine() -> FareEngine {
    FareEngine::hangzhou().unwrap()
}

/// Xianghu → Qianjiang Road, 14.1 km: ¥5.
fn metro5(e: &FareEngine, board: DateTime<Utc>) -> Leg {
    let alight = board + Duration::minutes(30);
    e.station_leg(
        "metro",
        "m_xianghu",
        Some("m_qianjiang"),
        board,
        Some(alight),
    )
    .unwrap()
}

/// Route 7 (flat ¥2, a designated line), no tap-out.
fn bus(e: &FareEngine, board: DateTime<Utc>) -> Leg {
    e.route_leg("b7", "b_wulin", None, board, None).unwrap()
}

fn rider(kind: CardKind, age: u8, tiers: bool) -> Rider {
    Rider {
        card_kind: kind,
        age: Some(age),
        medium: Medium::Card,
        volume_tiers: tiers,
    }
}

fn quote(e: &FareEngine, rider: Rider, spend: &str, legs: Vec<Leg>) -> Vec<LegFare> {
    e.quote(&Journey {
        rider,
        month_spend_before: yuan(spend),
        legs,
    })
    .unwrap()
    .legs
}

#[test]
fn a_70_plus_card_pays_half_on_the_metro_at_07_30_on_a_monday() {
    // Rule: 70+ card, metro half fare 07:00–08:30 on statutory working days by entry time.
    // 2026-11-23 is a Monday and a working day: ¥5 × 50% = ¥2.50.
    let e = engine();
    let q = quote(
        &e,
        rider(CardKind::Senior, 72, false),
        "0",
        vec![metro5(&e, at(2026, 11, 23, 7, 30))],
    );
    assert_eq!(q[0].paid, yuan("2.50"));
}

#[test]
fn a_70_plus_card_rides_the_metro_free_on_a_public_holiday() {
    // Rule: outside working-day peaks the 70+ card rides free. 2026-10-01 (a Thursday)
    // is National Day under the State Council's 2026 notice.
    let e = engine();
    let q = quote(
        &e,
        rider(CardKind::Senior, 72, false),
        "0",
        vec![metro5(&e, at(2026, 10, 1, 7, 30))],
    );
    assert_eq!(q[0].paid, yuan("0.00"));
    // And a make-up working day on a Saturday (2026-10-10) has the peak: half fare.
    let q = quote(
        &e,
        rider(CardKind::Senior, 72, false),
        "0",
        vec![metro5(&e, at(2026, 10, 10, 7, 30))],
    );
    assert_eq!(q[0].paid, yuan("2.50"));
}

#[test]
fn a_70_plus_card_rides_a_designated_bus_free_at_07_30_on_a_monday() {
    // Rule: 70+ card, buses free on designated lines (1–499, 7xx, BRT) at any time.
    let e = engine();
    let q = quote(
        &e,
        rider(CardKind::Senior, 72, false),
        "0",
        vec![bus(&e, at(2026, 11, 23, 7, 30))],
    );
    assert_eq!(q[0].paid, yuan("0.00"));
}

#[test]
fn a_student_gets_half_fare_and_no_monthly_tier() {
    // Rule: students 50%, excluded from the monthly volume tiers: ¥5 × 50% = ¥2.50, not × 90%.
    let e = engine();
    let q = quote(
        &e,
        rider(CardKind::Student, 15, true),
        "0",
        vec![metro5(&e, at(2026, 11, 23, 10, 0))],
    );
    assert_eq!(q[0].paid, yuan("2.50"));
    assert!(q[0].tier.is_none());
    // An adult with tiers pays 90% on the same ride: the exclusion is the student's.
    let q = quote(
        &e,
        rider(CardKind::Ordinary, 30, true),
        "0",
        vec![metro5(&e, at(2026, 11, 23, 10, 0))],
    );
    assert_eq!(q[0].paid, yuan("4.50"));
}

#[test]
fn the_tier_applies_before_the_transfer_discount() {
    // Rule: tiers first, then the ¥2 transfer discount. Bus ¥2 × 90% = ¥1.80;
    // metro ¥5 × 90% − ¥2 = ¥2.50 (not (¥5 − ¥2) × 90% = ¥2.70).
    let e = engine();
    let t0 = at(2026, 11, 23, 10, 0);
    let q = quote(
        &e,
        rider(CardKind::Ordinary, 30, true),
        "0",
        vec![bus(&e, t0), metro5(&e, t0 + Duration::minutes(30))],
    );
    assert_eq!(q[0].paid, yuan("1.80"));
    assert_eq!(q[1].paid, yuan("2.50"));
    assert_eq!(q[1].transfer.unwrap().discount, yuan("2.00"));
}

#[test]
fn a_transfer_needs_three_minutes_counted_from_bus_boarding_or_metro_exit() {
    // Rule: 3–90 minutes; bus first leg: boarding → boarding; metro first leg: exit → entry.
    let e = engine();
    let r = rider(CardKind::Ordinary, 30, false);
    let t0 = at(2026, 11, 23, 10, 0);
    // Bus at 10:00, metro entry at 10:02: 2 minutes, no discount.
    let q = quote(
        &e,
        r,
        "0",
        vec![bus(&e, t0), metro5(&e, t0 + Duration::minutes(2))],
    );
    assert!(q[1].transfer.is_none());
    assert_eq!(q[1].paid, yuan("5.00"));
    // At 10:03: ¥5 − ¥2.
    let q = quote(
        &e,
        r,
        "0",
        vec![bus(&e, t0), metro5(&e, t0 + Duration::minutes(3))],
    );
    assert_eq!(q[1].paid, yuan("3.00"));
    // Metro 10:00–10:30, bus at 10:32 (2 minutes after the exit): none; at 10:33: ¥2 − ¥2.
    let q = quote(
        &e,
        r,
        "0",
        vec![metro5(&e, t0), bus(&e, t0 + Duration::minutes(32))],
    );
    assert_eq!(q[1].paid, yuan("2.00"));
    let q = quote(
        &e,
        r,
        "0",
        vec![metro5(&e, t0), bus(&e, t0 + Duration::minutes(33))],
    );
    assert_eq!(q[1].paid, yuan("0.00"));
    // Bus → metro 89 minutes after boarding still counts; 91 minutes does not (clock from boarding).
    let q = quote(
        &e,
        r,
        "0",
        vec![bus(&e, t0), metro5(&e, t0 + Duration::minutes(90))],
    );
    assert_eq!(q[1].paid, yuan("3.00"));
    let q = quote(
        &e,
        r,
        "0",
        vec![bus(&e, t0), metro5(&e, t0 + Duration::minutes(91))],
    );
    assert_eq!(q[1].paid, yuan("5.00"));
}

#[test]
fn a_200_minute_stay_pays_the_highest_single_fare_from_the_exit_station() {
    // Rule: over 180 minutes pays 出闸站线网最高单程票价. Exit at Fengqi Road: the
    // farthest station is Linping, 17.2 km → ¥5; exit at Binkang Road: Linping,
    // 30.6 km → ¥7. The sample network's maximum is ¥8.
    let e = engine();
    let t0 = at(2026, 11, 23, 10, 0);
    let stay = |to: &str| {
        e.station_leg(
            "metro",
            "m_xianghu",
            Some(to),
            t0,
            Some(t0 + Duration::minutes(200)),
        )
        .unwrap()
    };
    let r = rider(CardKind::Ordinary, 30, false);
    let q = quote(&e, r, "0", vec![stay("m_fengqi")]);
    assert_eq!(q[0].paid, yuan("5.00"));
    assert!(matches!(q[0].basis, FareBasis::MaximumFare(_)));
    let q = quote(&e, r, "0", vec![stay("m_binkang")]);
    assert_eq!(q[0].paid, yuan("7.00"));
}

#[test]
fn a_new_years_calendar_can_be_loaded() {
    // 2027 is not shipped: Friday 2027-01-01 counts as a working day until its notice is loaded.
    let mut e = engine();
    let r = |tiers| rider(CardKind::Senior, 72, tiers);
    let ride = metro5(&e, at(2027, 1, 1, 7, 30));
    assert_eq!(quote(&e, r(false), "0", vec![ride])[0].paid, yuan("2.50"));
    let mut cal = WorkingCalendar::china();
    cal.extend_csv(
        "start,end,kind,name,status,source\n2027-01-01,2027-12-31,year,2027,unverified,\n2027-01-01,2027-01-01,holiday,New Year,unverified,\n",
    )
    .unwrap();
    e.set_working_calendar(&cal);
    assert_eq!(quote(&e, r(false), "0", vec![ride])[0].paid, yuan("0.00"));
}

#[test]
fn bad_values_in_the_new_columns_name_file_line_and_field() {
    use citycard_transit::FareData;
    let cases = [
        (
            "fare_transfer_rules.txt",
            ",transfer_discount,180\n",
            ",transfer_discount,9000\n",
            "min_duration",
        ),
        (
            "citycard_network_limits.txt",
            "exit_station_highest",
            "exit_station",
            "overstay_fare",
        ),
        (
            "calendar.txt",
            "20991231,1",
            "20991231,yes",
            "citycard_working_days",
        ),
        (
            "citycard_concessions.txt",
            "student,50,10,0,sourced",
            "student,50,10,2,sourced",
            "volume_tiers",
        ),
        (
            "citycard_concessions.txt",
            "student,50,10,0,sourced",
            "student,50,10,0,guessed",
            "status",
        ),
    ];
    for (file, from, to, field) in cases {
        let mut data = FareData::hangzhou();
        let text = data.file(file).unwrap();
        assert!(text.contains(from), "{file} {from}");
        let changed = text.replacen(from, to, 1);
        data.insert(file, changed);
        let err = FareEngine::load(&data).unwrap_err();
        assert_eq!(
            (err.file.as_str(), err.field.as_str()),
            (file, field),
            "{err}"
        );
        assert!(err.line >= 2, "{err}");
    }
}

fn kinds() -> impl Strategy<Value = CardKind> {
    prop::sample::select(CardKind::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Fares are never negative, and a transfer discount never exceeds ¥2 nor the leg's fare after the tier.
    #[test]
    fn fares_never_negative_and_transfer_discounts_bounded(
        kind in kinds(),
        age in 0u8..100,
        tiers in any::<bool>(),
        spend in 0i64..20_000,
        day in 1u32..=28,
        start_minute in 0i64..1440,
        gaps in prop::collection::vec((0u8..3, 0i64..120, 1i64..240, 0usize..22), 1..6),
    ) {
        let e = engine();
        let stations: Vec<&str> = e.network().stops().iter().filter(|s| s.id.starts_with("m_")).map(|s| s.id.as_str()).collect();
        let mut t = at(2026, 10, day, 0, 0) + Duration::minutes(start_minute);
        let mut legs = Vec::new();
        for (mode, gap, ride, st) in gaps {
            t += Duration::minutes(gap);
            let leg = match mode {
                0 => bus(&e, t),
                1 => e.route_leg("w1", "w_wulinmen", None, t, None).unwrap(),
                _ => e
                    .station_leg("metro", "m_xianghu", Some(stations[st % stations.len()]), t, Some(t + Duration::minutes(ride)))
                    .unwrap(),
            };
            t += Duration::minutes(if mode == 2 { ride } else { 0 });
            legs.push(leg);
        }
        let q = e
            .quote(&Journey { rider: Rider { card_kind: kind, age: Some(age), medium: Medium::Card, volume_tiers: tiers }, month_spend_before: Money::from_fen(spend), legs })
            .unwrap();
        for l in &q.legs {
            prop_assert!(l.paid.fen() >= 0, "{l:?}");
            if let Some(tr) = l.transfer {
                prop_assert!(tr.discount.fen() >= 0 && tr.discount <= yuan("2.00"), "{l:?}");
                let before = l.paid.fen() + tr.discount.fen();
                let after_tier = match l.tier {
                    Some(ti) => citycard_transit::percent_of(l.after_concession, ti.percent).fen(),
                    None => l.after_concession.fen(),
                };
                prop_assert_eq!(before, after_tier);
                prop_assert!(tr.discount.fen() <= after_tier);
            }
        }
        prop_assert!(q.total.fen() >= 0);
    }
}
