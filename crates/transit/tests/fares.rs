//! Table tests for every Hangzhou rule, loading errors, and GTFS features on small data sets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use citycard_core::Money;
use citycard_transit::{
    CardKind, FareBasis, FareData, FareEngine, Journey, Leg, MaximumFareReason, Medium, Rider,
};

/// China civil time (UTC+8) on a day of November 2026 (the 26th is a Thursday, the 28th a Saturday).
fn at(day: u32, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, h, m, 0).unwrap() - Duration::hours(8)
}

fn yuan(s: &str) -> Money {
    s.parse().unwrap()
}

fn engine() -> FareEngine {
    FareEngine::hangzhou().expect("embedded Hangzhou data loads")
}

fn metro(e: &FareEngine, from: &str, to: &str, board: DateTime<Utc>, minutes: i64) -> Leg {
    e.station_leg(
        "metro",
        from,
        Some(to),
        board,
        Some(board + Duration::minutes(minutes)),
    )
    .unwrap()
}

fn bus(e: &FareEngine, board: DateTime<Utc>) -> Leg {
    e.route_leg("b7", "b_wulin", None, board, None).unwrap()
}

fn quote(e: &FareEngine, rider: Rider, legs: Vec<Leg>) -> Vec<Money> {
    let q = e
        .quote(&Journey {
            rider,
            month_spend_before: Money::ZERO,
            legs,
        })
        .unwrap();
    let sum: i64 = q.legs.iter().map(|l| l.paid.fen()).sum();
    assert_eq!(q.total.fen(), sum);
    q.legs.iter().map(|l| l.paid).collect()
}

fn single(e: &FareEngine, rider: Rider, leg: Leg) -> Money {
    quote(e, rider, vec![leg])[0]
}

/// A network of direct links from `x0` with the given lengths in km, to test bracket boundaries exactly.
fn bracket_engine(kms: &[&str]) -> FareEngine {
    let mut data = FareData::hangzhou();
    let mut stops = String::from("stop_id,stop_name\nx0,Origin\n");
    let mut links = String::from("route_id,from_stop_id,to_stop_id,distance_km,is_sample\n");
    for (i, km) in kms.iter().enumerate() {
        stops.push_str(&format!("x{},Stop {}\n", i + 1, i + 1));
        links.push_str(&format!("m1,x0,x{},{km},1\n", i + 1));
    }
    data.insert("stops.txt", stops);
    data.insert("citycard_metro_links.txt", links);
    data.insert(
        "citycard_route_sections.txt",
        "route_id,stop_id,stop_sequence,section\n",
    );
    FareEngine::load(&data).unwrap()
}

#[test]
fn metro_distance_brackets_follow_the_published_steps_with_upper_bounds_inclusive() {
    // (km, yuan): ¥2 up to 4 km; +¥1 per 4 km to 12; +¥1 per 6 km to 24; +¥1 per 8 km beyond.
    let table = [
        ("0.5", "2.00"),
        ("4", "2.00"),
        ("4.001", "3.00"),
        ("8", "3.00"),
        ("8.001", "4.00"),
        ("12", "4.00"),
        ("12.001", "5.00"),
        ("18", "5.00"),
        ("18.001", "6.00"),
        ("24", "6.00"),
        ("24.001", "7.00"),
        ("32", "7.00"),
        ("32.001", "8.00"),
        ("40", "8.00"),
        ("40.001", "9.00"),
        ("48.001", "10.00"),
    ];
    let kms: Vec<&str> = table.iter().map(|(k, _)| *k).collect();
    let e = bracket_engine(&kms);
    for (i, (km, fare)) in table.iter().enumerate() {
        let leg = metro(&e, "x0", &format!("x{}", i + 1), at(26, 10, 0), 30);
        assert_eq!(single(&e, Rider::default(), leg), yuan(fare), "{km} km");
    }
}

#[test]
fn metro_fares_use_the_precomputed_shortest_path() {
    let e = engine();
    // Wujiang Rd → Jianshe 1st Rd: 1.2 + 2.5 (line 4) + 2.0 = 5.7 km, not 8.2 km around via Fengqi Rd.
    let n = e.network();
    let d = n
        .metro_distance(n.stop("m_wujiang").unwrap(), n.stop("m_jianshe").unwrap())
        .unwrap();
    assert_eq!(d, 5_700);
    let leg = metro(&e, "m_wujiang", "m_jianshe", at(26, 10, 0), 20);
    assert_eq!(single(&e, Rider::default(), leg), yuan("3.00"));
    // Xianghu → Linping: 32.2 km → ¥8; Xianghu → Binkang 1.6 km → ¥2.
    assert_eq!(
        single(
            &e,
            Rider::default(),
            metro(&e, "m_xianghu", "m_linping", at(26, 10, 0), 60)
        ),
        yuan("8.00")
    );
    assert_eq!(
        single(
            &e,
            Rider::default(),
            metro(&e, "m_xianghu", "m_binkang", at(26, 10, 0), 5)
        ),
        yuan("2.00")
    );
    assert!(n.has_sample_distances());
}

#[test]
fn metro_time_limit_and_missing_tap_out_charge_the_maximum_fare() {
    let e = engine();
    let max = e
        .maximum_fare(e.network().network("metro").unwrap())
        .unwrap();
    assert_eq!(max, yuan("8.00"));
    // Exactly 180 minutes is within the limit.
    assert_eq!(
        single(
            &e,
            Rider::default(),
            metro(&e, "m_xianghu", "m_binkang", at(26, 8, 0), 180)
        ),
        yuan("2.00")
    );
    // Rule (transit.md, metro): an overstay pays the highest single fare from
    // the exit station. From Binkang Road the farthest station is Linping,
    // 30.6 km → ¥7 (24–32 km bracket), below the ¥8 network maximum.
    let over = metro(&e, "m_xianghu", "m_binkang", at(26, 8, 0), 181);
    let q = e
        .quote(&Journey {
            rider: Rider::default(),
            month_spend_before: Money::ZERO,
            legs: vec![over],
        })
        .unwrap();
    assert_eq!(q.total, yuan("7.00"));
    assert!(matches!(
        q.legs[0].basis,
        FareBasis::MaximumFare(MaximumFareReason::OverTimeLimit {
            minutes: 181,
            limit: 180
        })
    ));
    let open = e
        .station_leg("metro", "m_xianghu", None, at(26, 8, 0), None)
        .unwrap();
    let q = e
        .quote(&Journey {
            rider: Rider::default(),
            month_spend_before: Money::ZERO,
            legs: vec![open],
        })
        .unwrap();
    assert_eq!(q.total, max);
    assert_eq!(
        q.legs[0].basis,
        FareBasis::MaximumFare(MaximumFareReason::MissingTapOut)
    );
}

#[test]
fn buses_charge_flat_or_per_section() {
    let e = engine();
    assert_eq!(
        single(&e, Rider::default(), bus(&e, at(26, 9, 0))),
        yuan("2.00")
    );
    let t = at(26, 9, 0);
    let sec = |to: &str| {
        e.route_leg(
            "b500",
            "b_linping",
            Some(to),
            t,
            Some(t + Duration::minutes(20)),
        )
        .unwrap()
    };
    // Sections ridden (both ends count): 1 → ¥2, 2 → ¥2, 3 → ¥3, 4 → ¥4, 5 → ¥5.
    for (to, fare) in [
        ("b_nanyuan", "2.00"),
        ("b_tangqi", "2.00"),
        ("b_chongxian", "3.00"),
        ("b_liangzhu", "4.00"),
        ("b_pingyao", "5.00"),
    ] {
        assert_eq!(single(&e, Rider::default(), sec(to)), yuan(fare), "to {to}");
    }
    // No tap-out on a sectioned route: the route's maximum.
    let open = e.route_leg("b500", "b_tangqi", None, t, None).unwrap();
    assert_eq!(single(&e, Rider::default(), open), yuan("5.00"));
    // Water bus flat ¥3.
    let w = e.route_leg("w1", "w_wulinmen", None, t, None).unwrap();
    assert_eq!(single(&e, Rider::default(), w), yuan("3.00"));
}

#[test]
fn concessions_follow_the_card_kind_network_and_working_day_peaks() {
    let e = engine();
    let r = |kind: CardKind, age: u8| Rider {
        card_kind: kind,
        age: Some(age),
        medium: Medium::Card,
        volume_tiers: false,
    };
    let leg5 = |t| metro(&e, "m_xianghu", "m_qianjiang", t, 30); // 14.1 km → ¥5
    // Rules: transit.md "Concessions are attached to card kinds". 2026-11-26 is a
    // Thursday, 2026-11-28 a Saturday.
    let table = [
        // (rider, boarding, paid, why)
        (
            r(CardKind::Senior, 72),
            at(26, 8, 0),
            "2.50",
            "70+ card: metro half fare in the working-day morning peak",
        ),
        (
            r(CardKind::Senior, 72),
            at(26, 17, 30),
            "2.50",
            "70+ card: evening peak half fare",
        ),
        (
            r(CardKind::Senior, 72),
            at(26, 8, 30),
            "0.00",
            "the peak ends at 08:30 (end exclusive)",
        ),
        (
            r(CardKind::Senior, 72),
            at(26, 10, 0),
            "0.00",
            "70+ card off peak rides free",
        ),
        (
            r(CardKind::Senior, 72),
            at(28, 8, 0),
            "0.00",
            "peaks are on working days only",
        ),
        (
            r(CardKind::Ordinary, 72),
            at(26, 10, 0),
            "5.00",
            "age alone gives no concession",
        ),
        (
            r(CardKind::Elder, 65),
            at(26, 10, 0),
            "5.00",
            "the 60-69 elder card has no per-ride metro discount",
        ),
        (
            r(CardKind::Student, 15),
            at(26, 10, 0),
            "2.50",
            "students half price",
        ),
        (
            r(CardKind::Disabled, 40),
            at(26, 8, 0),
            "0.00",
            "disabled riders free",
        ),
        (
            r(CardKind::Military, 50),
            at(26, 8, 0),
            "0.00",
            "serving and disabled soldiers free",
        ),
        (
            r(CardKind::Veteran, 50),
            at(26, 8, 0),
            "5.00",
            "veterans in general: no sourced concession",
        ),
        (
            r(CardKind::BloodDonor, 30),
            at(26, 8, 0),
            "0.00",
            "blood-donor honour certificate free",
        ),
    ];
    for (rider, t, paid, why) in table {
        assert_eq!(single(&e, rider, leg5(t)), yuan(paid), "{why}");
    }
    // Buses: the 70+ card rides designated lines free at any time (route 7 is
    // designated; route 500 is not), the elder card pays half.
    let sectioned = |t| {
        e.route_leg(
            "b500",
            "b_linping",
            Some("b_pingyao"),
            t,
            Some(t + Duration::minutes(40)),
        )
        .unwrap()
    };
    assert_eq!(
        single(&e, r(CardKind::Senior, 72), bus(&e, at(26, 8, 0))),
        yuan("0.00")
    );
    assert_eq!(
        single(&e, r(CardKind::Senior, 72), sectioned(at(26, 10, 0))),
        yuan("5.00")
    );
    assert_eq!(
        single(&e, r(CardKind::Elder, 65), bus(&e, at(26, 10, 0))),
        yuan("1.00")
    );
}

#[test]
fn monthly_volume_tiers_apply_to_spend_before_each_ride() {
    let e = engine();
    let rider = Rider {
        volume_tiers: true,
        ..Rider::default()
    };
    let leg = metro(&e, "m_xianghu", "m_binhe", at(26, 10, 0), 20); // 5.2 km → ¥3
    for (spend, paid) in [
        ("0.00", "2.70"),
        ("49.99", "2.70"),
        ("50.00", "2.10"),
        ("99.99", "2.10"),
        ("100.00", "1.50"),
        ("500.00", "1.50"),
    ] {
        let q = e
            .quote(&Journey {
                rider,
                month_spend_before: yuan(spend),
                legs: vec![leg],
            })
            .unwrap();
        assert_eq!(q.total, yuan(paid), "spend {spend}");
    }
    // Within a journey the spend grows: 48.00 + 2.70 = 50.70 crosses into the 70% tier.
    let t = at(26, 12, 0);
    let legs = vec![leg, metro(&e, "m_xianghu", "m_binhe", t, 20)];
    let q = e
        .quote(&Journey {
            rider,
            month_spend_before: yuan("48.00"),
            legs,
        })
        .unwrap();
    assert_eq!(q.legs[0].paid, yuan("2.70"));
    assert_eq!(q.legs[1].paid, yuan("2.10"));
    // Riders without tier eligibility pay the full fare.
    assert_eq!(single(&e, Rider::default(), leg), yuan("3.00"));
}

#[test]
fn transfer_discounts_between_bus_metro_and_water_bus() {
    let e = engine();
    let r = Rider::default();
    let t0 = at(26, 8, 0);
    // Bus ¥2 then metro ¥5 after 30 minutes: the dearer ride pays the difference, ¥3.
    assert_eq!(
        quote(
            &e,
            r,
            vec![
                bus(&e, t0),
                metro(
                    &e,
                    "m_xianghu",
                    "m_qianjiang",
                    t0 + Duration::minutes(30),
                    30
                )
            ]
        ),
        vec![yuan("2.00"), yuan("3.00")]
    );
    // Metro ¥5 then a ¥2 bus: the cheaper ride is free.
    assert_eq!(
        quote(
            &e,
            r,
            vec![
                metro(&e, "m_xianghu", "m_qianjiang", t0, 30),
                bus(&e, t0 + Duration::minutes(40))
            ]
        ),
        vec![yuan("5.00"), yuan("0.00")]
    );
    // The discount is at most ¥2 even when the second ride is dear: bus ¥2 → metro ¥8 pays ¥6.
    assert_eq!(
        quote(
            &e,
            r,
            vec![
                bus(&e, t0),
                metro(&e, "m_xianghu", "m_linping", t0 + Duration::minutes(10), 60)
            ]
        ),
        vec![yuan("2.00"), yuan("6.00")]
    );
    // Water bus → bus and bus → water bus.
    let w = |t| e.route_leg("w1", "w_wulinmen", None, t, None).unwrap();
    assert_eq!(
        quote(&e, r, vec![w(t0), bus(&e, t0 + Duration::minutes(50))]),
        vec![yuan("3.00"), yuan("0.00")]
    );
    assert_eq!(
        quote(&e, r, vec![bus(&e, t0), w(t0 + Duration::minutes(50))]),
        vec![yuan("2.00"), yuan("1.00")]
    );
    // Metro → metro gets none.
    assert_eq!(
        quote(
            &e,
            r,
            vec![
                metro(&e, "m_xianghu", "m_binkang", t0, 10),
                metro(&e, "m_binkang", "m_xixing", t0 + Duration::minutes(15), 10)
            ]
        ),
        vec![yuan("2.00"), yuan("2.00")]
    );
    // Exactly 90 minutes after the first ride ends still counts; 91 does not.
    let m1 = metro(&e, "m_xianghu", "m_binkang", t0, 10);
    assert_eq!(
        quote(&e, r, vec![m1, bus(&e, t0 + Duration::minutes(100))]),
        vec![yuan("2.00"), yuan("0.00")]
    );
    assert_eq!(
        quote(&e, r, vec![m1, bus(&e, t0 + Duration::minutes(101))]),
        vec![yuan("2.00"), yuan("2.00")]
    );
    // One discount per journey: bus → metro (discount) → bus pays full.
    assert_eq!(
        quote(
            &e,
            r,
            vec![
                bus(&e, t0),
                metro(&e, "m_xianghu", "m_binhe", t0 + Duration::minutes(10), 20),
                bus(&e, t0 + Duration::minutes(35))
            ]
        ),
        vec![yuan("2.00"), yuan("1.00"), yuan("2.00")]
    );
    // A leg charged the maximum fare neither receives nor gives a discount.
    let open = e.station_leg("metro", "m_xianghu", None, t0, None).unwrap();
    assert_eq!(
        quote(&e, r, vec![open, bus(&e, t0 + Duration::minutes(20))]),
        vec![yuan("8.00"), yuan("2.00")]
    );
    // Concession first, then the transfer: the elder card halves the bus (¥1),
    // not the metro (¥5 − ¥2 = ¥3).
    let senior = Rider {
        card_kind: CardKind::Elder,
        age: Some(65),
        ..r
    };
    assert_eq!(
        quote(
            &e,
            senior,
            vec![
                bus(&e, t0),
                metro(
                    &e,
                    "m_xianghu",
                    "m_qianjiang",
                    t0 + Duration::minutes(30),
                    30
                )
            ]
        ),
        vec![yuan("1.00"), yuan("3.00")]
    );
}

#[test]
fn a_second_boarding_of_the_same_route_at_the_same_stop_is_a_repeat_not_a_transfer() {
    let e = engine();
    let r = Rider::default();
    let t0 = at(26, 8, 0);
    // Same route, same stop, same minute: both pay the flat ¥2.
    assert_eq!(
        quote(
            &e,
            r,
            vec![bus(&e, t0), bus(&e, t0 + Duration::seconds(20))]
        ),
        vec![yuan("2.00"), yuan("2.00")]
    );
    let q = e
        .quote(&Journey {
            rider: r,
            month_spend_before: Money::ZERO,
            legs: vec![bus(&e, t0), bus(&e, t0)],
        })
        .unwrap();
    assert!(q.legs[1].transfer.is_none(), "{:?}", q.legs[1]);
    // The journey goes on from the first boarding: the metro after it still gets the discount.
    assert_eq!(
        quote(
            &e,
            r,
            vec![
                bus(&e, t0),
                bus(&e, t0),
                metro(
                    &e,
                    "m_xianghu",
                    "m_qianjiang",
                    t0 + Duration::minutes(30),
                    30
                )
            ]
        ),
        vec![yuan("2.00"), yuan("2.00"), yuan("3.00")]
    );
    // The same route boarded again after a real ride (past the repeat window) is a transfer.
    assert_eq!(
        quote(
            &e,
            r,
            vec![bus(&e, t0), bus(&e, t0 + Duration::minutes(40))]
        ),
        vec![yuan("2.00"), yuan("0.00")]
    );
}

#[test]
fn quotes_explain_each_leg_for_the_cardholder() {
    let e = engine();
    let t0 = at(26, 8, 0);
    let q = e
        .quote(&Journey {
            rider: Rider {
                volume_tiers: true,
                ..Rider::default()
            },
            month_spend_before: yuan("60.00"),
            legs: vec![
                bus(&e, t0),
                metro(
                    &e,
                    "m_xianghu",
                    "m_qianjiang",
                    t0 + Duration::minutes(30),
                    30,
                ),
            ],
        })
        .unwrap();
    // Tiers first, then the transfer: bus ¥2 × 70% = ¥1.40; metro ¥5 × 70% − ¥2 = ¥1.50.
    assert_eq!(q.total, yuan("2.90"));
    assert_eq!(q.discounts, yuan("4.10"));
    let lines = q.explain(&e);
    assert_eq!(lines.len(), 2);
    assert!(lines[1].contains("14.100 km"), "{}", lines[1]);
    assert!(lines[1].contains("fare_leg_rules.txt line"), "{}", lines[1]);
    assert!(lines[1].contains("transfer discount ¥2.00"), "{}", lines[1]);
    assert!(lines[1].contains("monthly tier 70%"), "{}", lines[1]);
    assert!(
        lines[1].find("monthly tier") < lines[1].find("transfer discount"),
        "{}",
        lines[1]
    );
    assert!(lines[1].ends_with("you pay ¥1.50"), "{}", lines[1]);
}

#[test]
fn loading_errors_name_file_line_and_field() {
    let mut data = FareData::hangzhou();
    let products = data.file("fare_products.txt").unwrap().replace(
        "bus_flat,Bus flat fare,,,2.00",
        "bus_flat,Bus flat fare,,,2.005",
    );
    data.insert("fare_products.txt", products);
    let err = FareEngine::load(&data).unwrap_err();
    assert_eq!(err.file, "fare_products.txt");
    assert_eq!(err.field, "amount");
    // Header is line 1, then metro_2..metro_16 (15 rows) and metro_max: bus_flat is line 18.
    assert_eq!(err.line, 18);
    assert!(
        err.to_string()
            .contains("fare_products.txt line 18, field amount")
    );

    let mut data = FareData::hangzhou();
    data.insert(
        "fare_leg_rules.txt",
        "leg_group_id,network_id,fare_product_id\nmetro,tram,metro_2\n",
    );
    let err = FareEngine::load(&data).unwrap_err();
    assert_eq!(
        (err.file.as_str(), err.line, err.field.as_str()),
        ("fare_leg_rules.txt", 2, "network_id")
    );

    let mut data = FareData::hangzhou();
    data.insert("fare_transfer_rules.txt", "from_leg_group_id,to_leg_group_id,transfer_count,duration_limit,duration_limit_type,fare_transfer_type\nbus,bus,,5400,2,1\n");
    let err = FareEngine::load(&data).unwrap_err();
    assert_eq!((err.line, err.field.as_str()), (2, "transfer_count"));

    let mut data = FareData::hangzhou();
    data.remove("fare_products.txt");
    let err = FareEngine::load(&data).unwrap_err();
    assert_eq!((err.file.as_str(), err.line), ("fare_products.txt", 0));
}

#[test]
fn areas_timeframes_and_priorities_from_gtfs_select_the_rule() {
    // A small data set: an off-peak water-bus fare, and an airport area with a dearer fare taking priority.
    let mut data = FareData::hangzhou();
    data.insert("areas.txt", "area_id,area_name\nlake,West Lake piers\n");
    data.insert(
        "stop_areas.txt",
        "area_id,stop_id\nlake,w_wulinmen\nlake,w_xinyifang\n",
    );
    data.insert(
        "timeframes.txt",
        "timeframe_group_id,start_time,end_time,service_id\npeak,07:00:00,08:30:00,working_days\npeak,17:00:00,18:30:00,working_days\nevening,19:00:00,24:00:00,working_days\n",
    );
    let mut products = data.file("fare_products.txt").unwrap().to_owned();
    products.push_str("lake_tour,Lake crossing,,,5.00,CNY\nevening_boat,Evening boat,,,1.00,CNY\n");
    data.insert("fare_products.txt", products);
    let mut rules = data.file("fare_leg_rules.txt").unwrap().to_owned();
    rules.push_str("waterbus,waterbus,lake,lake,,,lake_tour,10,,,\nwaterbus,waterbus,,,evening,,evening_boat,5,,,\n");
    data.insert("fare_leg_rules.txt", rules);
    let e = FareEngine::load(&data).unwrap();
    let leg = |from: &str, to: &str, t: DateTime<Utc>| {
        e.route_leg("w1", from, Some(to), t, Some(t + Duration::minutes(15)))
            .unwrap()
    };
    assert_eq!(
        single(
            &e,
            Rider::default(),
            leg("w_wulinmen", "w_xinyifang", at(26, 10, 0))
        ),
        yuan("5.00")
    );
    assert_eq!(
        single(
            &e,
            Rider::default(),
            leg("w_wulinmen", "w_gongchen", at(26, 20, 0))
        ),
        yuan("1.00")
    );
    assert_eq!(
        single(
            &e,
            Rider::default(),
            leg("w_wulinmen", "w_gongchen", at(26, 10, 0))
        ),
        yuan("3.00")
    );
    // Saturday evening is not in the weekday timeframe.
    assert_eq!(
        single(
            &e,
            Rider::default(),
            leg("w_wulinmen", "w_gongchen", at(28, 20, 0))
        ),
        yuan("3.00")
    );
}

#[test]
fn invalid_legs_are_errors_not_panics() {
    let e = engine();
    let t = at(26, 10, 0);
    let backwards = e
        .station_leg(
            "metro",
            "m_xianghu",
            Some("m_binkang"),
            t,
            Some(t - Duration::minutes(1)),
        )
        .unwrap();
    let j = Journey {
        rider: Rider::default(),
        month_spend_before: Money::ZERO,
        legs: vec![backwards],
    };
    assert!(e.quote(&j).is_err());
    assert!(e.station_leg("metro", "nowhere", None, t, None).is_err());
    assert!(e.route_leg("b999", "b_wulin", None, t, None).is_err());
}

#[test]
fn products_can_differ_by_rider_category_and_fare_media() {
    let mut data = FareData::hangzhou();
    let mut products = data.file("fare_products.txt").unwrap().to_owned();
    products.push_str("bus_flat,Bus flat fare (ride code),,qr,1.80,CNY\nbus_flat,Bus flat fare (student card),student,card,1.00,CNY\n");
    data.insert("fare_products.txt", products);
    // Students keep their category but pay 100% of their own product here.
    data.insert(
        "citycard_concessions.txt",
        "concession_id,card_kind,min_age,max_age,timeframe_group_id,rider_category_id,percent,rule_priority\nstudent,student,,,,student,100,10\n",
    );
    let e = FareEngine::load(&data).unwrap();
    let t = at(26, 10, 0);
    let card = Rider::default();
    let code = Rider {
        medium: Medium::RideCode,
        ..Rider::default()
    };
    let student_card = Rider {
        card_kind: CardKind::Student,
        ..Rider::default()
    };
    let student_code = Rider {
        card_kind: CardKind::Student,
        medium: Medium::RideCode,
        ..Rider::default()
    };
    assert_eq!(single(&e, card, bus(&e, t)), yuan("2.00"));
    assert_eq!(single(&e, code, bus(&e, t)), yuan("1.80"));
    assert_eq!(single(&e, student_card, bus(&e, t)), yuan("1.00"));
    // No student ride-code row: the default category's ride-code row applies.
    assert_eq!(single(&e, student_code, bus(&e, t)), yuan("1.80"));
}

#[test]
fn without_rule_priority_empty_fields_match_only_values_no_rule_names() {
    let lake = |rules: &str| {
        let mut data = FareData::hangzhou();
        data.insert("areas.txt", "area_id,area_name\nlake,West Lake piers\n");
        data.insert(
            "stop_areas.txt",
            "area_id,stop_id\nlake,w_wulinmen\nlake,w_xinyifang\n",
        );
        let mut products = data.file("fare_products.txt").unwrap().to_owned();
        products.push_str("lake_tour,Lake crossing,,,5.00,CNY\n");
        data.insert("fare_products.txt", products);
        data.insert("fare_leg_rules.txt", rules);
        FareEngine::load(&data).unwrap()
    };
    let t = at(26, 10, 0);
    let ride = |e: &FareEngine, from: &str| {
        let leg = e
            .route_leg(
                "w1",
                from,
                Some("w_gongchen"),
                t,
                Some(t + Duration::minutes(15)),
            )
            .unwrap();
        single(e, Rider::default(), leg)
    };
    // The generic rule comes first in the file.
    let body = "waterbus,waterbus,,,waterbus\nwaterbus,waterbus,lake,,lake_tour\nbus,bus,,,bus_flat\nmetro,metro,,,metro_2\n";
    // Without rule_priority: the empty from_area excludes the lake piers, so the lake rule applies there.
    let inverse = lake(&format!(
        "leg_group_id,network_id,from_area_id,to_area_id,fare_product_id\n{body}"
    ));
    assert_eq!(ride(&inverse, "w_wulinmen"), yuan("5.00"));
    assert_eq!(ride(&inverse, "w_gongchen"), yuan("3.00"));
    // With rule_priority (all equal): empty fields match anything and the first rule in the file wins.
    let priority = lake(&format!(
        "leg_group_id,network_id,from_area_id,to_area_id,fare_product_id,rule_priority\n{}",
        body.replace('\n', ",0\n")
    ));
    assert_eq!(ride(&priority, "w_wulinmen"), yuan("3.00"));
}
