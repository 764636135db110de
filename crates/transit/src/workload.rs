//! A synthetic city day of taps, for benchmarks, examples and load tests.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};

use crate::fares::FareEngine;
use crate::network::{RouteIdx, StopIdx};
use crate::taps::{CardRef, Tap, TapDirection, TapPlace};

/// A small deterministic generator (xorshift64*), so workloads repeat exactly.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from a non-zero seed.
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// About `taps` taps of one civil day: riders mixing metro in/out, flat buses,
/// sectioned buses and water buses, with a few missing tap-outs and repeats.
pub fn city_day(engine: &FareEngine, day: NaiveDate, taps: usize, seed: u64) -> Vec<Tap> {
    let n = engine.network();
    let metro_stops: Vec<StopIdx> = n
        .stops()
        .iter()
        .filter_map(|s| n.stop(&s.id).filter(|i| n.metro_distance(*i, *i).is_some()))
        .collect();
    let metro = n.network("metro");
    let flat: Vec<RouteIdx> = n
        .routes()
        .iter()
        .filter_map(|r| n.route(&r.id))
        .filter(|r| !n.is_sectioned(*r) && Some(n.route_info(*r).map(|i| i.network)) != Some(metro))
        .collect();
    let sectioned: Vec<(RouteIdx, Vec<StopIdx>)> = n
        .routes()
        .iter()
        .filter_map(|r| n.route(&r.id))
        .filter(|r| n.is_sectioned(*r))
        .map(|r| {
            let stops = n
                .stops()
                .iter()
                .filter_map(|s| n.stop(&s.id))
                .filter(|s| n.section(r, *s).is_some())
                .collect();
            (r, stops)
        })
        .collect();
    let start: DateTime<Utc> = chrono::FixedOffset::east_opt(8 * 3600)
        .and_then(|tz| tz.from_local_datetime(&day.and_hms_opt(5, 30, 0)?).single())
        .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
    let mut rng = XorShift::new(seed);
    let mut out = Vec::with_capacity(taps + 8);
    let mut card = 0u64;
    while out.len() < taps {
        card += 1;
        let c = CardRef(card);
        let mut t = start + Duration::minutes(rng.below(16 * 60) as i64);
        let rides = 1 + rng.below(3);
        for _ in 0..rides {
            let kind = rng.below(10);
            if kind < 5 {
                if let (Some(metro), false) = (metro, metro_stops.is_empty()) {
                    let a = metro_stops[rng.below(metro_stops.len() as u64) as usize];
                    let b = metro_stops[rng.below(metro_stops.len() as u64) as usize];
                    out.push(Tap {
                        card: c,
                        direction: TapDirection::In,
                        place: TapPlace::Station {
                            network: metro,
                            stop: a,
                        },
                        reader: 1,
                        at: t,
                        code: None,
                        medium: crate::fares::Medium::Card,
                    });
                    t += Duration::minutes(5 + rng.below(50) as i64);
                    if rng.below(100) != 0 {
                        out.push(Tap {
                            card: c,
                            direction: TapDirection::Out,
                            place: TapPlace::Station {
                                network: metro,
                                stop: b,
                            },
                            reader: 2,
                            at: t,
                            code: None,
                            medium: crate::fares::Medium::Card,
                        });
                    }
                }
            } else if kind < 8 && !flat.is_empty() {
                let r = flat[rng.below(flat.len() as u64) as usize];
                let vehicle = rng.below(5000) as u32;
                let tap = Tap {
                    card: c,
                    direction: TapDirection::In,
                    place: TapPlace::Vehicle {
                        route: r,
                        vehicle,
                        stop: None,
                    },
                    reader: 3,
                    at: t,
                    code: None,
                    medium: crate::fares::Medium::Card,
                };
                out.push(tap);
                if rng.below(200) == 0 {
                    out.push(Tap {
                        at: t + Duration::seconds(30),
                        ..tap
                    });
                }
                t += Duration::minutes(10 + rng.below(30) as i64);
            } else if let Some((r, stops)) = sectioned.first().filter(|(_, s)| !s.is_empty()) {
                let vehicle = rng.below(500) as u32;
                let a = stops[rng.below(stops.len() as u64) as usize];
                let b = stops[rng.below(stops.len() as u64) as usize];
                out.push(Tap {
                    card: c,
                    direction: TapDirection::In,
                    place: TapPlace::Vehicle {
                        route: *r,
                        vehicle,
                        stop: Some(a),
                    },
                    reader: 4,
                    at: t,
                    code: None,
                    medium: crate::fares::Medium::Card,
                });
                t += Duration::minutes(5 + rng.below(40) as i64);
                out.push(Tap {
                    card: c,
                    direction: TapDirection::Out,
                    place: TapPlace::Vehicle {
                        route: *r,
                        vehicle,
                        stop: Some(b),
                    },
                    reader: 4,
                    at: t,
                    code: None,
                    medium: crate::fares::Medium::Card,
                });
            }
            t += Duration::minutes(3 + rng.below(120) as i64);
        }
    }
    out.truncate(taps);
    out
}
