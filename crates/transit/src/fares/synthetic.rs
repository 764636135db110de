//! A deterministic synthetic GTFS-Fares v2 feed of a large agency, for load
//! and quote benchmarks and for property tests (not real data).
//!
//! The feed prices in USD, puts routes in networks by `routes.network_id`,
//! has zone areas, peak timeframes, four fare media (cash, card, cEMV, app),
//! two rider categories, zone-to-zone leg rules with `rule_priority`, and
//! transfer rules between networks.

use std::fmt::Write as _;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::engine::FareEngine;
use super::model::Leg;
use crate::data::FareData;
use crate::network::{NetworkIdx, RouteIdx, StopIdx};

/// The size of a synthetic feed.
#[derive(Debug, Clone, Copy)]
pub struct FeedSize {
    /// Stops.
    pub stops: usize,
    /// Routes.
    pub routes: usize,
    /// Networks (routes are spread over them).
    pub networks: usize,
    /// Zone areas (stops are spread over them).
    pub zones: usize,
    /// Zone-to-zone leg rules per network (plus one catch-all rule each).
    pub zone_rules_per_network: usize,
}

impl FeedSize {
    /// ≈10,000 stops, 400 routes, 500 leg rules: the large feed.
    pub const LARGE: FeedSize = FeedSize {
        stops: 10_000,
        routes: 400,
        networks: 20,
        zones: 25,
        zone_rules_per_network: 24,
    };

    /// A small feed for property tests.
    pub const SMALL: FeedSize = FeedSize {
        stops: 60,
        routes: 8,
        networks: 3,
        zones: 4,
        zone_rules_per_network: 3,
    };
}

/// A synthetic feed of the given size.
pub fn synthetic_feed(size: FeedSize) -> FareData {
    let networks = size.networks.max(1);
    let zones = size.zones.max(1);
    let mut data = FareData::new();
    let mut s = String::from("stop_id,stop_name,stop_lat,stop_lon\n");
    for i in 0..size.stops {
        let _ = writeln!(s, "s{i},Stop {i},40.{i:05},-73.{i:05}");
    }
    data.insert("stops.txt", s);
    let mut s = String::from("route_id,agency_id,route_short_name,route_type,network_id\n");
    for r in 0..size.routes {
        let _ = writeln!(s, "r{r},agency,{r},3,n{}", r % networks);
    }
    data.insert("routes.txt", s);
    let mut s = String::from("area_id,area_name\n");
    for z in 0..zones {
        let _ = writeln!(s, "z{z},Zone {z}");
    }
    data.insert("areas.txt", s);
    let mut s = String::from("area_id,stop_id\n");
    for i in 0..size.stops {
        let _ = writeln!(s, "z{},s{i}", i % zones);
    }
    data.insert("stop_areas.txt", s);
    data.insert(
        "calendar.txt",
        "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\nweekdays,1,1,1,1,1,0,0,20200101,20351231\n",
    );
    data.insert(
        "timeframes.txt",
        "timeframe_group_id,start_time,end_time,service_id\npeak,07:00:00,09:00:00,weekdays\npeak,16:00:00,19:00:00,weekdays\n",
    );
    data.insert(
        "fare_media.txt",
        "fare_media_id,fare_media_name,fare_media_type\ncash,Cash,0\ncard,Transit card,2\ncemv,Contactless bank card,3\napp,Agency app,4\n",
    );
    data.insert(
        "rider_categories.txt",
        "rider_category_id,rider_category_name,is_default_fare_category\nadult,Adult,1\nsenior,Senior,0\n",
    );
    let mut s = String::from(
        "fare_product_id,fare_product_name,rider_category_id,fare_media_id,amount,currency\n",
    );
    let levels = 10;
    for k in 0..levels {
        let cents = 150 + 25 * k as i64;
        for (media, extra) in [("cash", 50), ("card", 0), ("cemv", 0), ("app", -10)] {
            let c = cents + extra;
            let _ = writeln!(
                s,
                "fare_{k},Fare {k},adult,{media},{}.{:02},USD",
                c / 100,
                c % 100
            );
            let half = c / 2;
            let _ = writeln!(
                s,
                "fare_{k},Fare {k},senior,{media},{}.{:02},USD",
                half / 100,
                half % 100
            );
        }
    }
    s.push_str("transfer,Transfer,,,0.50,USD\n");
    data.insert("fare_products.txt", s);
    let groups = networks.min(4);
    let mut s = String::from(
        "leg_group_id,network_id,from_area_id,to_area_id,from_timeframe_group_id,to_timeframe_group_id,fare_product_id,rule_priority\n",
    );
    for n in 0..networks {
        for k in 0..size.zone_rules_per_network {
            let from = (n + k) % zones;
            let to = (n + 3 * k + 1) % zones;
            let peak = if k % 4 == 0 { "peak" } else { "" };
            let _ = writeln!(
                s,
                "g{},n{n},z{from},z{to},{peak},,fare_{},1",
                n % groups,
                (k + n) % levels
            );
        }
        let _ = writeln!(s, "g{},n{n},,,,,fare_{},0", n % groups, n % levels);
    }
    data.insert("fare_leg_rules.txt", s);
    let mut s = String::from(
        "from_leg_group_id,to_leg_group_id,transfer_count,duration_limit,duration_limit_type,fare_transfer_type,fare_product_id\n",
    );
    for a in 0..groups {
        for b in 0..groups {
            if a == b {
                let _ = writeln!(s, "g{a},g{b},2,7200,1,0,transfer");
            } else {
                let _ = writeln!(s, "g{a},g{b},,7200,1,2,fare_{}", a + b);
            }
        }
    }
    data.insert("fare_transfer_rules.txt", s);
    data
}

/// Deterministic journeys on a synthetic feed: `count` journeys of one to
/// three legs, on weekdays and weekends, peak and off-peak.
pub fn synthetic_journeys(engine: &FareEngine, count: usize, seed: u64) -> Vec<Vec<Leg>> {
    let net = engine.network();
    let stops = net.stops().len().max(1) as u64;
    let routes = net.routes().len().max(1) as u64;
    let mut x = seed | 1;
    let mut next = move || {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let start: DateTime<Utc> = Utc
        .with_ymd_and_hms(2026, 11, 23, 0, 0, 0)
        .single()
        .unwrap_or_default();
    (0..count)
        .map(|_| {
            let mut t = start
                + Duration::days((next() % 7) as i64)
                + Duration::minutes((next() % (20 * 60)) as i64);
            let n = 1 + (next() % 3) as usize;
            (0..n)
                .map(|_| {
                    let route = RouteIdx((next() % routes) as u32);
                    let network = net.route_info(route).map_or(NetworkIdx(0), |r| r.network);
                    let from = StopIdx((next() % stops) as u32);
                    let to = StopIdx((next() % stops) as u32);
                    let ride = Duration::minutes(5 + (next() % 40) as i64);
                    let leg = Leg {
                        network,
                        route: Some(route),
                        from,
                        to: Some(to),
                        board: t,
                        alight: Some(t + ride),
                        medium: None,
                    };
                    t = t + ride + Duration::minutes(3 + (next() % 20) as i64);
                    leg
                })
                .collect()
        })
        .collect()
}
