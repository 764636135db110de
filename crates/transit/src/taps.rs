//! Taps, and how they assemble into trips.
//!
//! A tap is one reader event: tap in or out, at a gated station or on a
//! vehicle. [`assemble_trips`] sorts a day's taps by card and time and turns
//! them into trips:
//!
//! - a tap-in followed by the matching tap-out is a complete trip;
//! - a tap-in on a network that needs a tap-out, followed by anything else
//!   (or nothing), is a trip with a missing tap-out (charged the maximum fare);
//! - a tap-out with no tap-in is a trip with a missing tap-in (also charged
//!   the maximum fare of the network, with the exit as its only stop);
//! - a tap-in on a flat-fare vehicle is a complete trip by itself;
//! - the same card on the same vehicle again within the repeat window
//!   (`same_vehicle_repeat_seconds`) is refused and counted, not charged.
//!
//! A tap made with a ride code carries the code's use ([`CodeUse`]: issuer
//! key, card reference, credential validity, code timestamp and counter).
//! Readers only know the codes they saw themselves, so one code shown at two
//! gates yields two taps; [`dedupe_code_taps`] keeps the first and reports
//! the others, and settlement calls it before assembling trips.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::fares::{FareEngine, Leg, Medium};
use crate::network::{NetworkIdx, RouteIdx, StopIdx};

/// An opaque reference to a card (or ride-code account), never a card number or personal data.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct CardRef(pub u64);

impl fmt::Display for CardRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cr{:016x}", self.0)
    }
}

impl fmt::Debug for CardRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardRef({self})")
    }
}

impl FromStr for CardRef {
    type Err = crate::error::TransitError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.strip_prefix("cr")
            .filter(|h| h.len() == 16)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .map(CardRef)
            .ok_or_else(|| crate::error::TransitError::Unknown {
                kind: "card reference",
                name: s.chars().take(32).collect(),
            })
    }
}

impl Serialize for CardRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CardRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// In or out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TapDirection {
    /// Tap in (进站 / boarding).
    In,
    /// Tap out (出站 / alighting).
    Out,
}

/// Where a reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TapPlace {
    /// A gate at a station of a gated network.
    Station {
        /// The network (e.g. metro).
        network: NetworkIdx,
        /// The station.
        stop: StopIdx,
    },
    /// A reader on a vehicle.
    Vehicle {
        /// The route the vehicle runs.
        route: RouteIdx,
        /// The vehicle's number.
        vehicle: u32,
        /// The stop, where the reader knows it (sectioned routes).
        stop: Option<StopIdx>,
    },
}

/// What identifies one use of a ride code: the code's credential (issuer
/// key, keyed card reference, validity) and the code's own timestamp and
/// counter. Two taps with the same code use are the same code shown twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CodeUse {
    /// The issuer key id of the credential (issuer id in its high 16 bits).
    pub key_id: u32,
    /// The card reference in the credential (keyed; the issuer maps it back to the card).
    pub reference: CardRef,
    /// Credential validity start (Unix seconds).
    pub valid_from: u32,
    /// Credential validity end (Unix seconds).
    pub valid_until: u32,
    /// When the code was made (Unix seconds).
    pub timestamp: u32,
    /// The code's counter.
    pub counter: u32,
}

/// One reader event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tap {
    /// The card.
    pub card: CardRef,
    /// In or out.
    pub direction: TapDirection,
    /// Where.
    pub place: TapPlace,
    /// The reader's number.
    pub reader: u32,
    /// When.
    pub at: DateTime<Utc>,
    /// The ride code used, for taps made with one (`None` for cards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeUse>,
    /// What the rider paid with; taps recorded before the medium was kept are card taps.
    #[serde(default)]
    pub medium: Medium,
}

/// Removes every ride-code tap whose code use was already seen in `taps`
/// and returns them: the earliest tap of a code use (then the lowest reader
/// number) is kept. Taps without a code are never removed. Reorders `taps`
/// by time when any tap carries a code.
///
/// De-duplication covers the taps given at once (a settlement day); a code
/// is valid for about a minute, so both uses of a replayed code fall on the
/// same day except across midnight.
pub fn dedupe_code_taps(taps: &mut Vec<Tap>) -> Vec<Tap> {
    if !taps.iter().any(|t| t.code.is_some()) {
        return Vec::new();
    }
    taps.sort_unstable_by_key(|t| (t.at, t.reader));
    let mut seen: std::collections::HashSet<CodeUse, _> =
        std::collections::HashSet::with_hasher(crate::fasthash::FxBuild::default());
    let mut duplicates = Vec::new();
    taps.retain(|t| match t.code {
        Some(code) if !seen.insert(code) => {
            duplicates.push(*t);
            false
        }
        _ => true,
    });
    if !duplicates.is_empty() {
        tracing::warn!(
            duplicates = duplicates.len(),
            "ride codes used more than once: the later taps are refused, not charged"
        );
    }
    duplicates
}

/// Whether a trip has both ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TripCompleteness {
    /// Tapped in and out, or a single-tap flat-fare ride.
    Complete,
    /// Tapped in, never out.
    MissingTapOut,
    /// Tapped out, never in.
    MissingTapIn,
}

/// One ride assembled from taps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trip {
    /// The card.
    pub card: CardRef,
    /// The ride as a fare leg.
    pub leg: Leg,
    /// Whether both ends were seen.
    pub completeness: TripCompleteness,
}

/// Counts of what happened to taps during assembly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TapStats {
    /// Taps read.
    pub taps: u64,
    /// Taps refused as a repeat on the same vehicle within the window.
    pub repeats_refused: u64,
    /// Trips produced.
    pub trips: u64,
    /// Trips missing a tap-in or tap-out.
    pub incomplete: u64,
    /// Ride-code taps refused because the same code was already used (see [`dedupe_code_taps`]).
    #[serde(default)]
    pub duplicate_codes: u64,
}

fn place_network(
    engine: &FareEngine,
    place: &TapPlace,
) -> Option<(NetworkIdx, Option<RouteIdx>, Option<StopIdx>)> {
    match *place {
        TapPlace::Station { network, stop } => Some((network, None, Some(stop))),
        TapPlace::Vehicle { route, stop, .. } => {
            let network = engine.network().route_info(route)?.network;
            Some((network, Some(route), stop))
        }
    }
}

/// Sorts taps by card and time and assembles them into trips, in card then time order.
///
/// Taps naming an unknown route are dropped and not counted as trips. A vehicle
/// tap without a stop on a network that needs a tap-out uses stop 0 as an
/// unknown boarding stop and is charged the maximum fare.
pub fn assemble_trips(engine: &FareEngine, taps: &mut [Tap]) -> (Vec<Trip>, TapStats) {
    taps.sort_unstable_by_key(|t| (t.card, t.at, t.direction == TapDirection::Out));
    let repeat = i64::from(engine.same_vehicle_repeat_seconds());
    let mut trips = Vec::with_capacity(taps.len() / 2 + 1);
    let mut stats = TapStats {
        taps: taps.len() as u64,
        ..TapStats::default()
    };
    let mut i = 0;
    while i < taps.len() {
        let card = taps[i].card;
        let mut open: Option<Tap> = None;
        let mut last_vehicle: Option<(RouteIdx, u32, i64)> = None;
        let close_open = |open: &mut Option<Tap>, trips: &mut Vec<Trip>, stats: &mut TapStats| {
            if let Some(t) = open.take()
                && let Some((network, route, stop)) = place_network(engine, &t.place)
            {
                trips.push(Trip {
                    card,
                    leg: Leg {
                        network,
                        route,
                        from: stop.unwrap_or(StopIdx(0)),
                        to: None,
                        board: t.at,
                        alight: None,
                        medium: Some(t.medium),
                    },
                    completeness: TripCompleteness::MissingTapOut,
                });
                stats.incomplete += 1;
            }
        };
        while i < taps.len() && taps[i].card == card {
            let tap = taps[i];
            i += 1;
            let Some((network, route, stop)) = place_network(engine, &tap.place) else {
                continue;
            };
            if let TapPlace::Vehicle { route, vehicle, .. } = tap.place
                && tap.direction == TapDirection::In
            {
                let now = tap.at.timestamp();
                if let Some((r, v, t)) = last_vehicle
                    && r == route
                    && v == vehicle
                    && now - t < repeat
                {
                    stats.repeats_refused += 1;
                    continue;
                }
                last_vehicle = Some((route, vehicle, now));
            }
            let needs_out = engine.requires_tap_out(network);
            match tap.direction {
                TapDirection::In if needs_out => {
                    close_open(&mut open, &mut trips, &mut stats);
                    open = Some(tap);
                }
                TapDirection::In => {
                    close_open(&mut open, &mut trips, &mut stats);
                    trips.push(Trip {
                        card,
                        leg: Leg {
                            network,
                            route,
                            from: stop.unwrap_or(StopIdx(0)),
                            to: None,
                            board: tap.at,
                            alight: None,
                            medium: Some(tap.medium),
                        },
                        completeness: TripCompleteness::Complete,
                    });
                }
                TapDirection::Out => {
                    let matches = open.is_some_and(|o| match (o.place, tap.place) {
                        (
                            TapPlace::Station { network: a, .. },
                            TapPlace::Station { network: b, .. },
                        ) => a == b,
                        (
                            TapPlace::Vehicle {
                                route: a,
                                vehicle: va,
                                ..
                            },
                            TapPlace::Vehicle {
                                route: b,
                                vehicle: vb,
                                ..
                            },
                        ) => a == b && va == vb,
                        _ => false,
                    });
                    match (matches, open.take(), stop) {
                        (true, Some(o), Some(exit)) => {
                            let from = place_network(engine, &o.place)
                                .and_then(|p| p.2)
                                .unwrap_or(StopIdx(0));
                            trips.push(Trip {
                                card,
                                leg: Leg {
                                    network,
                                    route,
                                    from,
                                    to: Some(exit),
                                    board: o.at,
                                    alight: Some(tap.at),
                                    medium: Some(o.medium),
                                },
                                completeness: TripCompleteness::Complete,
                            });
                        }
                        (_, previous, _) => {
                            open = previous;
                            close_open(&mut open, &mut trips, &mut stats);
                            trips.push(Trip {
                                card,
                                leg: Leg {
                                    network,
                                    route,
                                    from: stop.unwrap_or(StopIdx(0)),
                                    to: None,
                                    board: tap.at,
                                    alight: None,
                                    medium: Some(tap.medium),
                                },
                                completeness: TripCompleteness::MissingTapIn,
                            });
                            stats.incomplete += 1;
                        }
                    }
                }
            }
        }
        close_open(&mut open, &mut trips, &mut stats);
    }
    stats.trips = trips.len() as u64;
    (trips, stats)
}

/// Reads taps from CSV text with the header
/// `card,direction,network,stop,route,vehicle,reader,at` and, for ride-code
/// taps, the optional columns
/// `code_key_id,code_ref,code_valid_from,code_valid_until,code_time,code_counter`.
///
/// - `card`: a card reference (`cr` + 16 hex digits) or a decimal number;
/// - `direction`: `in` or `out`;
/// - a gate tap names `network` and `stop`; a vehicle tap names `route` and
///   `vehicle` (and `stop` where the reader knows it);
/// - `reader`: a number; `at`: an RFC 3339 instant;
/// - `medium` (optional): `card`, `ride_code`, `bank_card`, `cash` or
///   `paper_ticket`; when absent, `ride_code` for a tap with code columns and
///   `card` otherwise;
/// - the `code_*` columns are empty for card taps and all filled for a
///   ride-code tap: the issuer key id, the credential's card reference
///   (`cr` + 16 hex digits), its validity and the code's timestamp (Unix
///   seconds) and counter. Files without them (older files) still load.
///
/// Errors name the line and field, like the fare data loader.
pub fn taps_from_csv(engine: &FareEngine, text: &str) -> Result<Vec<Tap>, crate::error::LoadError> {
    let mut data = crate::data::FareData::new();
    data.insert("taps.csv", text);
    let t = data.table("taps.csv", true)?;
    let net = engine.network();
    let mut taps = Vec::with_capacity(t.rows.len());
    for row in &t.rows {
        let card_text = t.req(row, "card")?;
        let card = card_text
            .parse::<CardRef>()
            .ok()
            .or_else(|| card_text.parse::<u64>().ok().map(CardRef))
            .ok_or_else(|| {
                t.err(
                    row,
                    "card",
                    "not a card reference (cr + 16 hex digits, or a number)",
                )
            })?;
        let direction = match t.req(row, "direction")? {
            "in" => TapDirection::In,
            "out" => TapDirection::Out,
            other => return Err(t.err(row, "direction", format!("{other:?} must be in or out"))),
        };
        let stop = t.lookup(row, "stop", &net.stop_index)?;
        let place = match t.lookup(row, "route", &net.route_index)? {
            Some(route) => TapPlace::Vehicle {
                route,
                vehicle: t.parse_req(row, "vehicle")?,
                stop,
            },
            None => TapPlace::Station {
                network: t.lookup_req(row, "network", &net.network_index)?,
                stop: stop.ok_or_else(|| t.err(row, "stop", "a gate tap needs a stop"))?,
            },
        };
        let at_text = t.req(row, "at")?;
        let at = DateTime::parse_from_rfc3339(at_text)
            .map_err(|e| {
                t.err(
                    row,
                    "at",
                    format!("{at_text:?} is not an RFC 3339 time: {e}"),
                )
            })?
            .with_timezone(&Utc);
        let code = match t.parse_opt::<u32>(row, "code_key_id")? {
            None => None,
            Some(key_id) => {
                let reference = t.req(row, "code_ref")?;
                Some(CodeUse {
                    key_id,
                    reference: reference.parse().map_err(|_| {
                        t.err(row, "code_ref", "not a card reference (cr + 16 hex digits)")
                    })?,
                    valid_from: t.parse_req(row, "code_valid_from")?,
                    valid_until: t.parse_req(row, "code_valid_until")?,
                    timestamp: t.parse_req(row, "code_time")?,
                    counter: t.parse_req(row, "code_counter")?,
                })
            }
        };
        let medium = match t.opt(row, "medium") {
            None if code.is_some() => Medium::RideCode,
            None => Medium::Card,
            Some(m) => Medium::ALL
                .into_iter()
                .find(|x| x.code() == m)
                .ok_or_else(|| {
                    t.err(
                        row,
                        "medium",
                        format!("{m:?} is not a medium: use card, ride_code, bank_card, cash or paper_ticket"),
                    )
                })?,
        };
        taps.push(Tap {
            card,
            direction,
            place,
            reader: t.parse_opt(row, "reader")?.unwrap_or(0),
            at,
            code,
            medium,
        });
    }
    Ok(taps)
}
