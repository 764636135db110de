//! GTFS-Fares v2 as written: the worked examples of gtfs.org's "Fares
//! Examples" page (documentation/schedule/examples/fares-v2) and of the
//! reference (documentation/schedule/reference), each citing its section.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use citycard_core::Money;
use citycard_transit::{
    Currency, FareData, FareEngine, Leg, LegFare, LoadMode, Medium, Rider, Severity, SpendSoFar,
    TransitError,
};

/// A feed from (file, text) pairs; stops and routes as given.
fn feed(files: &[(&str, &str)]) -> FareData {
    let mut data = FareData::new();
    for (name, text) in files {
        data.insert(*name, *text);
    }
    data
}

fn price(e: &FareEngine, medium: Medium, legs: &[Leg]) -> Result<Vec<LegFare>, TransitError> {
    let mut out = Vec::new();
    let rider = Rider {
        medium,
        ..Rider::default()
    };
    e.price_into(&rider, SpendSoFar::default(), legs, &mut out)?;
    Ok(out)
}

fn usd(cents: i64) -> Money {
    Money::from_fen(cents)
}

/// A local civil time at a fixed offset (hours east of UTC).
fn local(offset_h: i64, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap() - Duration::hours(offset_h)
}

fn ride(
    e: &FareEngine,
    route: &str,
    from: &str,
    to: &str,
    board: DateTime<Utc>,
    minutes: i64,
) -> Leg {
    e.route_leg(
        route,
        from,
        Some(to),
        board,
        Some(board + Duration::minutes(minutes)),
    )
    .unwrap()
}

const MTA_STOPS: &str = "stop_id,stop_name\na,A\nb,B\nc,C\nd,D\n";
const MTA_ROUTES: &str = "route_id,agency_id,route_short_name,route_type,network_id\nbus,mta,Bus,3,core\nsubway,mta,Subway,1,core\nrail,mta,Light rail,0,core\n";

fn maryland() -> FareEngine {
    FareEngine::load(&feed(&[
        ("stops.txt", MTA_STOPS),
        ("routes.txt", MTA_ROUTES),
        (
            "fare_products.txt",
            "fare_product_id,fare_product_name,amount,currency\ncore_local_oneway_fare,One Way Full Fare,2.00,USD\ncore_local_1_day_fare,1-Day Pass - Core Service,4.60,USD\ncore_local_31_day_fare,31-Day Pass - Core Service,77.00,USD\ncore_local_7_day_fare,7-Day Pass - Core Service,22.00,USD\n",
        ),
        (
            "fare_leg_rules.txt",
            "leg_group_id,network_id,fare_product_id\ncore_local_one_way_trip,core,core_local_oneway_fare\ncore_local_one_way_trip,core,core_local_1_day_fare\ncore_local_one_way_trip,core,core_local_31_day_fare\ncore_local_one_way_trip,core,core_local_7_day_fare\n",
        ),
        (
            "fare_transfer_rules.txt",
            "from_leg_group_id,to_leg_group_id,duration_limit,duration_limit_type,fare_transfer_type,transfer_count\ncore_local_one_way_trip,core_local_one_way_trip,5400,1,0,-1\n",
        ),
        ("citycard_settings.txt", "key,value\nutc_offset,-05:00\n"),
    ]))
    .unwrap()
}

#[test]
fn examples_define_a_transit_fare_and_single_leg_rules_offer_four_products_and_the_one_way_fare_is_charged()
 {
    // Examples › "Define a transit fare" and "Create rules for single leg
    // journeys" (Maryland MTA): four products match any core leg; the rider pays
    // the cheapest, the $2.00 one-way fare, and the feed prices in USD.
    let e = maryland();
    assert_eq!(e.currency(), Currency::from_code("USD").unwrap());
    let t = local(-5, 2026, 1, 14, 8, 0);
    let q = price(&e, Medium::Card, &[ride(&e, "bus", "a", "b", t, 20)]).unwrap();
    assert_eq!(q[0].paid, usd(200));
    assert_eq!(e.product_id(q[0].product), Some("core_local_oneway_fare"));
}

#[test]
fn examples_create_rules_for_transfers_unlimited_free_transfers_within_90_minutes_of_the_first_departure()
 {
    // Examples › "Create rules for transfers": transfer_count -1, 5400 s from
    // the first departure (duration_limit_type 1, measured from the first leg of
    // a chain of the same rule, reference › fare_transfer_rules.txt), type 0
    // with no transfer product: A + AB = $2.00 for bus → subway → light rail.
    let e = maryland();
    let t = local(-5, 2026, 1, 14, 8, 0);
    let legs = [
        ride(&e, "bus", "a", "b", t, 20),
        ride(&e, "subway", "b", "c", t + Duration::minutes(30), 20),
        ride(&e, "rail", "c", "d", t + Duration::minutes(85), 10),
    ];
    let q = price(&e, Medium::Card, &legs).unwrap();
    let paid: Vec<Money> = q.iter().map(|l| l.paid).collect();
    assert_eq!(paid, vec![usd(200), usd(0), usd(0)]);
    // A fourth leg 95 minutes after the first departure is outside the 90 minutes.
    let mut more = legs.to_vec();
    more.push(ride(&e, "bus", "d", "a", t + Duration::minutes(95), 10));
    let q = price(&e, Medium::Card, &more).unwrap();
    assert_eq!(q[3].paid, usd(200));
    assert!(q[3].transfer.is_none());
}

#[test]
fn examples_describe_service_locations_in_the_same_fare_zone_bart_origin_destination_fares() {
    // Examples › "Describe service locations in the same fare zone" (BART):
    // ASHB → GLEN $4.75, ASHB → OAKL $9.45.
    let files = |rules: &'static str| {
        feed(&[
            (
                "stops.txt",
                "stop_id,stop_name\nASHB,Ashby\nGLEN,Glen Park\nOAKL,Oakland Airport\n",
            ),
            ("routes.txt", "route_id,agency_id,route_type\nbart,BA,1\n"),
            ("areas.txt", "area_id,area_name\nASHB,\nGLEN,\nOAKL,\n"),
            (
                "stop_areas.txt",
                "area_id,stop_id\nASHB,ASHB\nGLEN,GLEN\nOAKL,OAKL\n",
            ),
            (
                "fare_products.txt",
                "fare_product_id,fare_product_name,amount,currency\nBA:matrix:ASHB-GLEN,generated,4.75,USD\nBA:matrix:ASHB-OAKL,generated,9.45,USD\n",
            ),
            ("fare_leg_rules.txt", rules),
        ])
    };
    let e = FareEngine::load(&files(
        "leg_group_id,from_area_id,to_area_id,fare_product_id\nBA,ASHB,GLEN,BA:matrix:ASHB-GLEN\nBA,ASHB,OAKL,BA:matrix:ASHB-OAKL\n",
    ))
    .unwrap();
    let t = local(-8, 2026, 3, 2, 10, 0);
    assert_eq!(
        price(&e, Medium::Card, &[ride(&e, "bart", "ASHB", "GLEN", t, 25)]).unwrap()[0].paid,
        usd(475)
    );
    assert_eq!(
        price(&e, Medium::Card, &[ride(&e, "bart", "ASHB", "OAKL", t, 40)]).unwrap()[0].paid,
        usd(945)
    );
    // The page's second row reads `ASKB`, an area the feed never defines: a
    // strict load names it; a lenient load leaves that row out and lists it.
    let typo = files(
        "leg_group_id,from_area_id,to_area_id,fare_product_id\nBA,ASHB,GLEN,BA:matrix:ASHB-GLEN\nBA,ASKB,OAKL,BA:matrix:ASHB-OAKL\n",
    );
    let err = FareEngine::load(&typo).unwrap_err();
    assert_eq!(
        (err.file.as_str(), err.line, err.field.as_str()),
        ("fare_leg_rules.txt", 3, "from_area_id")
    );
    let (e, found) = FareEngine::load_with(&typo, LoadMode::Lenient).unwrap();
    assert!(
        found
            .iter()
            .any(|d| d.severity == Severity::Error && d.row_left_out && d.at.line == 3)
    );
    assert!(matches!(
        price(&e, Medium::Card, &[ride(&e, "bart", "ASHB", "OAKL", t, 40)]),
        Err(TransitError::NoFareRule { leg: 0 })
    ));
}

#[test]
fn examples_define_price_differences_based_on_fare_media_muni_cash_and_clipper() {
    // Examples › "Describe what fare media is accepted" and "Define price
    // differences based on fare media" (Muni): cash $3, Clipper $2.50; the
    // MuniMobile app has no row for this product, which is said as such.
    let e = FareEngine::load(&feed(&[
        ("stops.txt", "stop_id\nx\ny\n"),
        ("routes.txt", "route_id,route_type\nJ,0\n"),
        ("fare_media.txt", "fare_media_id,fare_media_name,fare_media_type\nclipper,Clipper,2\nmunimobile,SFMTA MuniMobile,4\ncash,Cash,0\n"),
        ("fare_products.txt", "fare_product_id,fare_product_name,amount,currency,fare_media_id\nSF:local:single,Muni single local fare,3,USD,cash\nSF:local:single,Muni single local fare,2.5,USD,clipper\n"),
        ("fare_leg_rules.txt", "fare_product_id\nSF:local:single\n"),
    ]))
    .unwrap();
    let t = local(-8, 2026, 3, 2, 10, 0);
    let leg = [ride(&e, "J", "x", "y", t, 15)];
    assert_eq!(price(&e, Medium::Cash, &leg).unwrap()[0].paid, usd(300));
    assert_eq!(price(&e, Medium::Card, &leg).unwrap()[0].paid, usd(250));
    let err = price(&e, Medium::RideCode, &leg).unwrap_err();
    assert!(
        matches!(err, TransitError::NoFareForMedium { leg: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("ride_code"));
}

#[test]
fn examples_describe_a_contactless_fare_media_option_clean_air_express() {
    // Examples › "Describe a contactless fare media option": tap_to_ride
    // (type 3, cEMV) $6; the row with no fare media (unknown) $7.
    let e = FareEngine::load(&feed(&[
        ("stops.txt", "stop_id\nx\ny\n"),
        ("routes.txt", "route_id,route_type\ncax,3\n"),
        ("fare_media.txt", "fare_media_id,fare_media_name,fare_media_type\ntap_to_ride,Tap to Ride,3\n"),
        ("fare_products.txt", "fare_product_id,fare_product_name,fare_media_id,amount,currency\nsingle-ride,Single Ride,tap_to_ride,6,USD\nsingle-ride,Single Ride,,7,USD\n"),
        ("fare_leg_rules.txt", "fare_product_id\nsingle-ride\n"),
    ]))
    .unwrap();
    let t = local(-8, 2026, 3, 2, 10, 0);
    let leg = [ride(&e, "cax", "x", "y", t, 50)];
    assert_eq!(price(&e, Medium::BankCard, &leg).unwrap()[0].paid, usd(600));
    assert_eq!(price(&e, Medium::Cash, &leg).unwrap()[0].paid, usd(700));
}

#[test]
fn examples_define_price_differences_based_on_time_and_day_of_trip_wmata() {
    // Examples › "Define price differences based on time and day of trip"
    // (WMATA, fictional): 7:30 on a weekday $5 (peak), 11:30 $3 (off-peak),
    // 22:00 $2 (late night), Saturday $2 (weekend; timeframes without times).
    let e = FareEngine::load(&feed(&[
        ("stops.txt", "stop_id\nx\ny\n"),
        ("routes.txt", "route_id,route_type,network_id\nred,1,1\n"),
        ("calendar.txt", "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\nweekday_service,1,1,1,1,1,0,0,20220708,20221231\nsaturday_service,0,0,0,0,0,1,0,20220708,20221231\nsunday_service,0,0,0,0,0,0,1,20220708,20221231\n"),
        ("timeframes.txt", "timeframe_group_id,start_time,end_time,service_id\nweekday_peak,5:00:00,9:30:00,weekday_service\nweekday_offpeak,9:30:00,15:00:00,weekday_service\nweekday_peak,15:00:00,19:00:00,weekday_service\nweekday_offpeak,19:00:00,21:30:00,weekday_service\nweekday_late_night,21:30:00,24:00:00,weekday_service\nweekday_late_night,00:00:00,5:00:00,weekday_service\nweekend,,,saturday_service\nweekend,,,sunday_service\n"),
        ("fare_products.txt", "fare_product_id,fare_product_name,amount,currency\npeak_fare,Peak fare,5,USD\nregular_fare,Off-peak fare,3,USD\nweekend_fare,Weekend Metrorail one-way fare,2,USD\nlate_night_fare,Late Night flat fare (Mon - Fri after 9:30pm),2,USD\n"),
        ("fare_leg_rules.txt", "network_id,fare_product_id,from_timeframe_group_id,to_timeframe_group_id\n1,weekend_fare,weekend,\n1,late_night_fare,weekday_late_night,\n1,peak_fare,weekday_peak,\n1,regular_fare,weekday_offpeak,\n"),
        ("citycard_settings.txt", "key,value\nutc_offset,-04:00\n"),
    ]))
    .unwrap();
    let at = |d, h, m| {
        let t = local(-4, 2022, 9, d, h, m);
        price(&e, Medium::Card, &[ride(&e, "red", "x", "y", t, 20)]).unwrap()[0].paid
    };
    // 2022-09-14 is a Wednesday, 2022-09-17 a Saturday.
    assert_eq!(at(14, 7, 30), usd(500));
    assert_eq!(at(14, 11, 30), usd(300));
    assert_eq!(at(14, 22, 0), usd(200));
    assert_eq!(at(17, 11, 30), usd(200));
}

#[test]
fn examples_define_time_variable_fares_along_with_zone_based_fares_metro_north() {
    // Examples › "Define time-variable fares along with zone based fares"
    // (Metro-North): Grand Central (mnr_1) → Cold Spring (HUD-7) departing
    // 6:45 pm on a weekday pays the peak $20.00; 9:04 pm the off-peak $15.00.
    let e = FareEngine::load(&feed(&[
        ("stops.txt", "stop_id,stop_name,stop_lat,stop_lon\nITO1887,Harlem-125th Street,40.805256,-73.939148\nITO1897,Cold Spring,41.415382,-73.958092\nITO2383,Grand Central,40.752823,-73.977196\nITO1856,Garrison,41.381126,-73.947334\n"),
        ("routes.txt", "route_id,route_type\n669,2\n"),
        ("networks.txt", "network_id,network_name\nmnr_hudson,MNR Hudson Line\n"),
        ("route_networks.txt", "network_id,route_id\nmnr_hudson,669\n"),
        ("areas.txt", "area_id\nmnr_1\nmnr_HUD-7\n"),
        ("stop_areas.txt", "area_id,stop_id\nmnr_1,ITO1887\nmnr_1,ITO2383\nmnr_HUD-7,ITO1856\nmnr_HUD-7,ITO1897\n"),
        ("calendar.txt", "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\nweekdays,1,1,1,1,1,0,0,20220101,20240101\nweekends,0,0,0,0,0,1,1,20220101,20240101\nanyday,1,1,1,1,1,1,1,20220101,20240101\n"),
        ("timeframes.txt", "timeframe_group_id,start_time,end_time,service_id\nanytime,00:00:00,24:00:00,anyday\nweekdays,00:00:00,24:00:00,weekdays\nweekends,00:00:00,24:00:00,weekends\nmnr_ampeak,06:00:00,10:00:00,weekdays\nmnr_notampeak,00:00:00,06:00:00,weekdays\nmnr_notampeak,10:00:00,24:00:00,weekdays\nmnr_am2pmpeak,06:00:00,09:00:00,weekdays\nmnr_am2pmpeak,16:00:00,20:00:00,weekdays\nmnr_notam2pmpeak,00:00:00,06:00:00,weekdays\nmnr_notam2pmpeak,09:00:00,16:00:00,weekdays\nmnr_notam2pmpeak,20:00:00,24:00:00,weekdays\n"),
        ("fare_media.txt", "fare_media_id,fare_media_name,fare_media_type\npaper,Paper ticket,1\n"),
        ("fare_products.txt", "fare_product_id,fare_product_name,fare_media_id,amount,currency\nmnr_1:HUD-7_adult_peak,Outbound Adult Peak Zonal Fare,paper,20.00,USD\nmnr_1:HUD-7_adult,Outbound Adult Off Peak Zonal Fare,paper,15.00,USD\nmnr_HUD-7:1_adult_peak,Inbound Adult Peak Zonal Fare,paper,20.00,USD\nmnr_HUD-7:1_adult,Inbound Adult Off Peak Zonal Fare,paper,15.00,USD\n"),
        ("fare_leg_rules.txt", "network_id,from_area_id,to_area_id,fare_product_id,from_timeframe_group_id,to_timeframe_group_id\nmnr_hudson,mnr_1,mnr_HUD-7,mnr_1:HUD-7_adult,mnr_notam2pmpeak,anytime\nmnr_hudson,mnr_1,mnr_HUD-7,mnr_1:HUD-7_adult,weekends,anytime\nmnr_hudson,mnr_1,mnr_HUD-7,mnr_1:HUD-7_adult_peak,mnr_am2pmpeak,anytime\nmnr_hudson,mnr_HUD-7,mnr_1,mnr_HUD-7:1_adult,weekdays,mnr_notampeak\nmnr_hudson,mnr_HUD-7,mnr_1,mnr_HUD-7:1_adult,weekends,anytime\nmnr_hudson,mnr_HUD-7,mnr_1,mnr_HUD-7:1_adult_peak,weekdays,mnr_ampeak\n"),
        ("citycard_settings.txt", "key,value\nutc_offset,-04:00\n"),
    ]))
    .unwrap();
    // 2023-06-14 is a Wednesday.
    let out = |h, m| {
        let t = local(-4, 2023, 6, 14, h, m);
        price(
            &e,
            Medium::PaperTicket,
            &[ride(&e, "669", "ITO2383", "ITO1897", t, 70)],
        )
        .unwrap()[0]
            .paid
    };
    assert_eq!(out(18, 45), usd(2000));
    assert_eq!(out(21, 4), usd(1500));
    // Inbound arriving at 8:00 (AM peak by arrival) pays the peak fare.
    let t = local(-4, 2023, 6, 14, 7, 0);
    let q = price(
        &e,
        Medium::PaperTicket,
        &[ride(&e, "669", "ITO1897", "ITO2383", t, 60)],
    )
    .unwrap();
    assert_eq!(q[0].paid, usd(2000));
}

/// A two-group feed for the reference's transfer rules: A and B legs cost
/// $2 and $3, the transfer product AB costs `ab`.
fn two_groups(transfer_rows: &str) -> FareEngine {
    FareEngine::load(&feed(&[
        ("stops.txt", "stop_id\nx\ny\nz\n"),
        ("routes.txt", "route_id,route_type,network_id\na,3,na\nb,3,nb\nc,3,nc\n"),
        ("fare_products.txt", "fare_product_id,amount,currency\nA,2.00,EUR\nB,3.00,EUR\nC,4.00,EUR\nAB,1.00,EUR\nBC,0.50,EUR\nfour,4.00,EUR\n"),
        ("fare_leg_rules.txt", "leg_group_id,network_id,fare_product_id\nga,na,A\ngb,nb,B\ngc,nc,C\n"),
        ("fare_transfer_rules.txt", transfer_rows),
        ("citycard_settings.txt", "key,value\nutc_offset,+01:00\n"),
    ]))
    .unwrap()
}

fn journey(e: &FareEngine, routes: &[&str]) -> Vec<Money> {
    let t = local(1, 2026, 5, 6, 9, 0);
    let legs: Vec<Leg> = routes
        .iter()
        .enumerate()
        .map(|(i, r)| ride(e, r, "x", "y", t + Duration::minutes(20 * i as i64), 15))
        .collect();
    price(e, Medium::Card, &legs)
        .unwrap()
        .iter()
        .map(|l| l.paid)
        .collect()
}

#[test]
fn reference_fare_transfer_type_0_1_2_cost_a_plus_ab_a_plus_ab_plus_b_and_ab() {
    // Reference › fare_transfer_rules.txt › fare_transfer_type: 0 = A + AB,
    // 1 = A + AB + B, 2 = AB; the to-leg carries the difference.
    let h = "from_leg_group_id,to_leg_group_id,fare_transfer_type,fare_product_id\n";
    assert_eq!(
        journey(&two_groups(&format!("{h}ga,gb,0,AB\n")), &["a", "b"]),
        vec![usd(200), usd(100)]
    );
    assert_eq!(
        journey(&two_groups(&format!("{h}ga,gb,1,AB\n")), &["a", "b"]),
        vec![usd(200), usd(400)]
    );
    assert_eq!(
        journey(&two_groups(&format!("{h}ga,gb,2,four\n")), &["a", "b"]),
        vec![usd(200), usd(200)]
    );
    // An empty fare_product_id is a transfer that costs 0: type 0 makes B free.
    assert_eq!(
        journey(&two_groups(&format!("{h}ga,gb,0,\n")), &["a", "b"]),
        vec![usd(200), usd(0)]
    );
}

#[test]
fn reference_multiple_transfers_process_s_plus_bc() {
    // Reference › fare_transfer_type, "Cost processing interactions between
    // multiple transfers": for B > C, 0 gives S + BC, 1 gives S + BC + C, 2 gives S + BC.
    let h = "from_leg_group_id,to_leg_group_id,fare_transfer_type,fare_product_id\n";
    let e = two_groups(&format!("{h}ga,gb,2,four\ngb,gc,2,BC\n"));
    // A > B: AB = 4 in all (B pays 2); B > C: S + BC (C pays 0.50).
    assert_eq!(
        journey(&e, &["a", "b", "c"]),
        vec![usd(200), usd(200), usd(50)]
    );
    let e = two_groups(&format!("{h}ga,gb,1,AB\ngb,gc,1,BC\n"));
    assert_eq!(
        journey(&e, &["a", "b", "c"]),
        vec![usd(200), usd(400), usd(450)]
    );
}

#[test]
fn reference_empty_leg_groups_match_the_groups_no_rule_names() {
    // Reference › fare_transfer_rules.txt steps 3–4: an exact match first; an
    // empty from_leg_group_id stands for every group not listed in that field.
    let h = "from_leg_group_id,to_leg_group_id,transfer_count,fare_transfer_type,fare_product_id\n";
    let e = two_groups(&format!("{h}ga,gb,,0,AB\n,gc,,0,\n"));
    // gb → gc: gb is not named as a from group, so the empty one matches: C free.
    assert_eq!(journey(&e, &["b", "c"]), vec![usd(300), usd(0)]);
    // ga → gc: ga is named (first row), so the empty row does not match it.
    assert_eq!(journey(&e, &["a", "c"]), vec![usd(200), usd(400)]);
}

#[test]
fn reference_transfer_count_selects_the_smallest_count_not_below_the_chain() {
    // Reference › transfer_count: "the rule with the minimum transfer_count
    // that is greater than or equal to the current transfer count".
    let h = "from_leg_group_id,to_leg_group_id,transfer_count,fare_transfer_type,fare_product_id\n";
    let e = two_groups(&format!("{h}ga,ga,2,0,\nga,ga,1,0,AB\n"));
    // First transfer: count 1 → the count-1 rule (AB $1); second: count 2 → free; third: none.
    assert_eq!(
        journey(&e, &["a", "a", "a", "a"]),
        vec![usd(200), usd(100), usd(0), usd(200)]
    );
}

#[test]
fn reference_duration_limit_types_measure_between_the_right_validations() {
    // Reference › duration_limit_type: 0 departure→arrival, 1 departure→departure,
    // 2 arrival→departure, 3 arrival→arrival. Legs: 09:00–09:15 and 09:20–09:35.
    let h = "from_leg_group_id,to_leg_group_id,duration_limit,duration_limit_type,fare_transfer_type,fare_product_id\n";
    let paid = |limit: u32, kind: u8| {
        journey(
            &two_groups(&format!("{h}ga,gb,{limit},{kind},0,\n")),
            &["a", "b"],
        )[1]
    };
    assert_eq!(paid(35 * 60, 0), usd(0));
    assert_eq!(paid(34 * 60, 0), usd(300));
    assert_eq!(paid(20 * 60, 1), usd(0));
    assert_eq!(paid(19 * 60, 1), usd(300));
    assert_eq!(paid(5 * 60, 2), usd(0));
    assert_eq!(paid(4 * 60, 2), usd(300));
    assert_eq!(paid(20 * 60, 3), usd(0));
    assert_eq!(paid(19 * 60, 3), usd(300));
}

#[test]
fn reference_fare_leg_join_rules_price_consecutive_legs_as_one_effective_fare_leg() {
    // Reference › fare_leg_join_rules.txt: two legs on one network with the
    // same transfer station are one effective fare leg, matched with the first
    // leg's departure area and the last leg's arrival area.
    let e = FareEngine::load(&feed(&[
        ("stops.txt", "stop_id,parent_station\nhub,\nhub_p1,hub\nhub_p2,hub\nout,\nfar,\n"),
        ("routes.txt", "route_id,route_type,network_id\nl1,1,subway\nl2,1,subway\n"),
        ("areas.txt", "area_id\nzone1\nzone2\n"),
        ("stop_areas.txt", "area_id,stop_id\nzone1,out\nzone1,hub\nzone2,far\n"),
        ("fare_products.txt", "fare_product_id,amount,currency\nin_zone,2.00,GBP\ncross,3.50,GBP\n"),
        ("fare_leg_rules.txt", "network_id,from_area_id,to_area_id,fare_product_id\nsubway,zone1,zone1,in_zone\nsubway,zone1,zone2,cross\n"),
        ("fare_leg_join_rules.txt", "from_network_id,to_network_id\nsubway,subway\n"),
    ]))
    .unwrap();
    let t = local(0, 2026, 5, 6, 9, 0);
    let legs = [
        ride(&e, "l1", "out", "hub_p1", t, 10),
        ride(&e, "l2", "hub_p2", "far", t + Duration::minutes(14), 10),
    ];
    let q = price(&e, Medium::Card, &legs).unwrap();
    // zone1 → zone2 as one leg: £3.50 on the first, the second joined to it.
    assert_eq!(q[0].paid, usd(350));
    assert_eq!((q[1].paid, q[1].joined_to), (usd(0), Some(0)));
    // Platforms of the station inherit its area (reference › stop_areas.txt).
    let q = price(&e, Medium::Card, &legs[..1]).unwrap();
    assert_eq!(q[0].paid, usd(200));
}

#[test]
fn reference_without_rule_priority_an_empty_timeframe_is_judged_among_the_network_own_rules() {
    // Issue 15: a local bus rule naming no timeframe must price buses even
    // though the rail network's rules name timeframes (inverse matching is
    // defined within the candidate rules for the leg).
    let e = FareEngine::load(&feed(&[
        ("stops.txt", "stop_id\nx\ny\n"),
        ("routes.txt", "route_id,route_type,network_id\nbus,3,local\ntrain,2,rail\n"),
        ("calendar.txt", "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday\nall,1,1,1,1,1,1,1\n"),
        ("timeframes.txt", "timeframe_group_id,start_time,end_time,service_id\npeak,07:00:00,09:00:00,all\n"),
        ("fare_products.txt", "fare_product_id,amount,currency\nbus,1.50,EUR\nrail_peak,4.00,EUR\nrail,3.00,EUR\n"),
        ("fare_leg_rules.txt", "network_id,from_timeframe_group_id,fare_product_id\nlocal,,bus\nrail,peak,rail_peak\nrail,,rail\n"),
        ("citycard_settings.txt", "key,value\nutc_offset,+01:00\n"),
    ]))
    .unwrap();
    let t = local(1, 2026, 5, 6, 8, 0);
    assert_eq!(
        price(&e, Medium::Card, &[ride(&e, "bus", "x", "y", t, 10)]).unwrap()[0].paid,
        usd(150)
    );
    assert_eq!(
        price(&e, Medium::Card, &[ride(&e, "train", "x", "y", t, 10)]).unwrap()[0].paid,
        usd(400)
    );
    let noon = local(1, 2026, 5, 6, 12, 0);
    assert_eq!(
        price(&e, Medium::Card, &[ride(&e, "train", "x", "y", noon, 10)]).unwrap()[0].paid,
        usd(300)
    );
}

#[test]
fn producer_extension_transfer_only_rules_price_only_a_leg_reached_by_a_transfer() {
    // Issue 15: `transfer_only` rules must not price ordinary rides.
    let e = FareEngine::load(&feed(&[
        ("stops.txt", "stop_id\nx\ny\n"),
        ("routes.txt", "route_id,route_type,network_id\nbus,3,local\nexpress,3,express\n"),
        ("fare_products.txt", "fare_product_id,amount,currency\nlocal,2.00,USD\nexpress,5.00,USD\nupgrade,3.00,USD\n"),
        ("fare_leg_rules.txt", "leg_group_id,network_id,fare_product_id,rule_priority,transfer_only\nlocal,local,local,0,0\nexpress,express,express,0,0\nupgrade,express,upgrade,1,1\n"),
        ("fare_transfer_rules.txt", "from_leg_group_id,to_leg_group_id,duration_limit,duration_limit_type,fare_transfer_type\nlocal,upgrade,7200,1,1\n"),
    ]))
    .unwrap();
    let t = local(-5, 2026, 5, 6, 9, 0);
    // Express alone: $5 (the transfer-only $3 upgrade does not apply).
    assert_eq!(
        price(&e, Medium::Card, &[ride(&e, "express", "x", "y", t, 30)]).unwrap()[0].paid,
        usd(500)
    );
    // Local then express: $2 + $3 upgrade.
    let legs = [
        ride(&e, "bus", "x", "y", t, 10),
        ride(&e, "express", "y", "x", t + Duration::minutes(15), 30),
    ];
    let q = price(&e, Medium::Card, &legs).unwrap();
    assert_eq!((q[0].paid, q[1].paid), (usd(200), usd(300)));
}

#[test]
fn fare_caps_stop_the_spend_at_the_cap_per_day_and_medium() {
    // citycard extension citycard_fare_caps.txt: a $5 day cap for app users.
    let mut data = FareData::new();
    for (name, text) in [
        ("stops.txt", "stop_id\nx\ny\n"),
        (
            "routes.txt",
            "route_id,route_type,network_id\nbus,3,local\n",
        ),
        (
            "fare_media.txt",
            "fare_media_id,fare_media_type\ncard,2\napp,4\n",
        ),
        (
            "fare_products.txt",
            "fare_product_id,amount,currency\nride,2.00,USD\n",
        ),
        (
            "fare_leg_rules.txt",
            "network_id,fare_product_id\nlocal,ride\n",
        ),
        (
            "citycard_fare_caps.txt",
            "fare_cap_id,period,amount,fare_media_id\napp_day,day,5.00,app\n",
        ),
        ("citycard_settings.txt", "key,value\nutc_offset,-05:00\n"),
    ] {
        data.insert(name, text);
    }
    let e = FareEngine::load(&data).unwrap();
    let t = local(-5, 2026, 5, 6, 9, 0);
    let legs: Vec<Leg> = (0..4)
        .map(|i| ride(&e, "bus", "x", "y", t + Duration::hours(2 * i), 10))
        .collect();
    let paid = |m: Medium, spend: SpendSoFar| -> Vec<Money> {
        let mut out = Vec::new();
        e.price_into(
            &Rider {
                medium: m,
                ..Rider::default()
            },
            spend,
            &legs,
            &mut out,
        )
        .unwrap();
        out.iter().map(|l| l.paid).collect()
    };
    assert_eq!(
        paid(Medium::RideCode, SpendSoFar::default()),
        vec![usd(200), usd(200), usd(100), usd(0)]
    );
    assert_eq!(paid(Medium::Card, SpendSoFar::default()), vec![usd(200); 4]);
    // $4 already spent today: $1 of room left.
    let spent = SpendSoFar {
        day: usd(400),
        ..SpendSoFar::default()
    };
    assert_eq!(
        paid(Medium::RideCode, spent),
        vec![usd(100), usd(0), usd(0), usd(0)]
    );
    // The next day starts from zero.
    let next_day = [ride(&e, "bus", "x", "y", t + Duration::days(1), 10)];
    let mut out = Vec::new();
    e.price_into(
        &Rider {
            medium: Medium::RideCode,
            ..Rider::default()
        },
        spent,
        &[legs[0], next_day[0]],
        &mut out,
    )
    .unwrap();
    assert_eq!((out[0].paid, out[1].paid), (usd(100), usd(200)));
}

#[test]
fn the_facade_can_require_cny_and_says_so() {
    let e = maryland();
    let err = e.require_currency(Currency::CNY).unwrap_err();
    assert!(err.to_string().contains("USD"), "{err}");
    assert!(
        FareEngine::hangzhou()
            .unwrap()
            .require_currency(Currency::CNY)
            .is_ok()
    );
}
