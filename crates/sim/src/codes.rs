//! Ride codes (乘车码) through the facade's ride-code path: the issuer
//! certifies each rider's phone key on first use
//! ([`citycard::Transit::certify`]), the phone makes codes offline, gates
//! (one [`Reader`] per gate, kept for the whole run, so replays are seen)
//! verify them against the issuer's keys and the facade's reader deny list,
//! and the back office maps accepted taps back to their cards
//! ([`citycard::Transit::resolve_code_taps`]) before they join the day's
//! taps for settlement.
//!
//! Checked on every code ride, against what the rider showed: a tampered
//! code is refused as tampered, an old one as expired, a code shown twice
//! at one gate as replayed; an honest code is accepted unless the card's
//! credential is on the deny list (then refused as denied); every accepted
//! tap maps back to the rider's card and to no other issuer. A code shown
//! at two gates is accepted by both and settled as one trip (the sweep's
//! every-trip-charged-once check covers it).

use std::collections::HashMap;

use chrono::{DateTime, Duration, FixedOffset, Utc};
use citycard::transit::codes::{Algorithm, RideCodeWallet, SigningKey};
use citycard::transit::{
    CardRef, Decision, Reader, ReaderConfig, Rejection, Tap, TapDirection, TapPlace,
};

use crate::plan::{CodeUse, STATIONS};
use crate::world::{Outcome, World};
use crate::wrap::Mutation;

/// Metro stations, as in the card taps.
pub const STATION_IDS: [&str; STATIONS] = ["m_xianghu", "m_qianjiang", "m_wulin"];

/// The CSV columns of a ride-code tap, after the card tap's eight.
pub const CODE_COLUMNS: &str =
    "code_key_id,code_ref,code_valid_from,code_valid_until,code_time,code_counter";

/// Phones (by card reference) and gates (by reader number) of the city.
#[derive(Default)]
pub struct Gates {
    phones: HashMap<u64, (RideCodeWallet, CardRef)>,
    readers: HashMap<u32, Reader>,
}

/// A code ride resolved against the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRide {
    /// The cardholder.
    pub who: usize,
    /// The card the phone's credential is for.
    pub card: CardRef,
    /// When the rider reaches the first gate.
    pub at: DateTime<Utc>,
    /// Metro (in and out) or bus (in only).
    pub metro: bool,
    /// Stations (metro).
    pub stations: (usize, usize),
    /// What the rider shows.
    pub code: CodeUse,
}

/// CSV rows of accepted taps; printed as their count only (references are
/// keyed with the issuer's random key, so a trace stays the same run to run).
#[derive(Clone, PartialEq, Eq)]
pub struct Rows(pub Vec<String>);

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} taps", self.0.len())
    }
}

/// The simulated city's ride-code issuer: one SM2 key, fixed, valid from a
/// year before the run to a year after, so that the keyed card references
/// in a seed's taps are the same run to run (and across a crash's restart).
pub fn issuer() -> Result<citycard::transit::codes::Issuer, String> {
    use citycard::transit::codes::{Issuer, IssuerPublicKey, SecretKeyBytes, key_id};
    let secret = SecretKeyBytes::new((1..=32u8).map(|b| b.wrapping_mul(7)).collect());
    let key = SigningKey::from_secret_bytes(Algorithm::Sm2, &secret).map_err(|e| e.to_string())?;
    let public = IssuerPublicKey {
        key_id: key_id(citycard::DEFAULT_RIDE_CODE_ISSUER_ID, 1),
        algorithm: Algorithm::Sm2,
        public_key: key.public_key(),
        valid_from: crate::world::start() - Duration::days(365),
        valid_until: crate::world::start() + Duration::days(365),
    };
    Issuer::import(vec![(public, secret)]).map_err(|e| e.to_string())
}

fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| unreachable!()))
        .format("%Y-%m-%dT%H:%M:%S+08:00")
        .to_string()
}

/// The CSV row of a resolved ride-code tap; `place` is its
/// `network,stop,route,vehicle` columns.
fn row(tap: &Tap, place: &str) -> Option<String> {
    let code = tap.code?;
    let direction = match tap.direction {
        TapDirection::In => "in",
        TapDirection::Out => "out",
    };
    Some(format!(
        "{},{direction},{place},{},{},{},{},{},{},{},{}",
        tap.card.0,
        tap.reader,
        local(tap.at),
        code.key_id,
        code.reference,
        code.valid_from,
        code.valid_until,
        code.timestamp,
        code.counter
    ))
}

/// A gate, made on first use and brought up to date with the issuer's keys and the deny list.
fn gate<'a>(
    readers: &'a mut HashMap<u32, Reader>,
    keys: &[citycard::transit::codes::IssuerPublicKey],
    deny: &[citycard::transit::DenyEntry],
    number: u32,
    place: TapPlace,
    direction: TapDirection,
) -> &'a mut Reader {
    let reader = readers.entry(number).or_insert_with(|| {
        Reader::new(
            ReaderConfig {
                reader: number,
                place,
                direction,
                max_code_age_seconds: 60,
                clock_skew_seconds: 30,
                repeat_window_seconds: 0,
            },
            keys,
        )
    });
    reader.update_keys(keys);
    reader.update_deny_list(deny);
    reader
}

/// What the gates answered, against what they must answer, and the taps they accepted.
#[derive(Default)]
struct Shown {
    decisions: Vec<(String, String)>,
    accepted: Vec<(Tap, String)>,
}

impl Shown {
    fn show(
        &mut self,
        reader: &mut Reader,
        bytes: &[u8],
        at: DateTime<Utc>,
        want: &str,
        place: &str,
    ) {
        let d = reader.decide(bytes, at);
        let got = match &d {
            Decision::Accept(tap) => {
                self.accepted.push((*tap, place.to_owned()));
                "accept".to_owned()
            }
            Decision::Reject(Rejection::Denied { .. }) => "Denied".to_owned(),
            Decision::Reject(r) => format!("{r:?}"),
        };
        self.decisions.push((got, want.to_owned()));
    }
}

impl World {
    /// Rides with a ride code; returns the gates' decisions and the accepted
    /// taps as CSV rows, or [`Outcome::Broken`] when a gate or the back
    /// office answered what it must not.
    pub async fn code_ride(&self, ride: &CodeRide) -> Outcome {
        let city = &self.city;
        let net = city.transit().fares().network();
        let (Some(metro), Some(b7)) = (net.network("metro"), net.route("b7")) else {
            return Outcome::Failed("InvalidInput: the fare data has no metro or route b7".into());
        };
        // The phone: certified once per card (a replaced card needs a new credential).
        let has_phone = self.gates().phones.contains_key(&ride.card.0);
        if !has_phone {
            let key = match SigningKey::generate(Algorithm::Sm2) {
                Ok(k) => k,
                Err(e) => return Outcome::Failed(format!("Internal: {e}")),
            };
            let credential = match city
                .transit()
                .certify(
                    &key.public_key(),
                    ride.card,
                    ride.at - Duration::hours(1),
                    ride.at + Duration::days(30),
                )
                .await
            {
                Ok(c) => c,
                Err(e) => return Outcome::Failed(format!("{:?}: {e}", classify(&e))),
            };
            let Some(reference) = credential.reference() else {
                return Outcome::Broken("the issuer made a credential without a reference".into());
            };
            match RideCodeWallet::new(key, credential) {
                Ok(w) => {
                    self.gates().phones.insert(ride.card.0, (w, reference));
                }
                Err(e) => return Outcome::Failed(format!("Internal: {e}")),
            }
        }
        let deny = match city.transit().reader_deny_list(ride.at).await {
            Ok(d) => d,
            Err(e) => return Outcome::Failed(format!("{:?}: {e}", classify(&e))),
        };
        let keys = city.transit().issuer().public_keys();
        let mut gates = self.gates();
        let Gates { phones, readers } = &mut *gates;
        let Some((phone, reference)) = phones.get_mut(&ride.card.0) else {
            return Outcome::Failed("Internal: no phone".into());
        };
        let listed = deny.iter().any(|e| e.card == *reference);
        let (from, to) = ride.stations;
        let (entry_place, entry_csv, entry_reader) = if ride.metro {
            let Some(stop) = net.stop(STATION_IDS[from]) else {
                return Outcome::Failed("InvalidInput: no station".into());
            };
            (
                TapPlace::Station {
                    network: metro,
                    stop,
                },
                format!("metro,{},,", STATION_IDS[from]),
                300 + from as u32,
            )
        } else {
            let vehicle = 600 + (ride.who % 3) as u32;
            (
                TapPlace::Vehicle {
                    route: b7,
                    vehicle,
                    stop: None,
                },
                format!(",,b7,{vehicle}"),
                vehicle,
            )
        };
        let honest = if listed { "Denied" } else { "accept" };
        let made = match ride.code {
            CodeUse::Expired => phone.generate(ride.at - Duration::minutes(5)),
            _ => phone.generate(ride.at),
        };
        let code = match made {
            Ok(c) => c,
            Err(e) => return Outcome::Failed(format!("Internal: {e}")),
        };
        let mut shown = code.as_bytes().to_vec();
        // The accept-forged mutation: the gate is shown the untampered code
        // (as if it did not check the signature).
        if ride.code == CodeUse::Tampered && self.mutation != Some(Mutation::AcceptForged) {
            let last = shown.len() - 1;
            shown[last] ^= 0x01;
        }
        let want = match ride.code {
            CodeUse::Tampered => format!("{:?}", Rejection::Tampered),
            CodeUse::Expired => format!("{:?}", Rejection::Expired),
            _ => honest.to_owned(),
        };
        let mut seen = Shown::default();
        let entry = gate(
            readers,
            &keys,
            &deny,
            entry_reader,
            entry_place,
            TapDirection::In,
        );
        seen.show(entry, &shown, ride.at, &want, &entry_csv);
        match ride.code {
            CodeUse::Replayed => {
                let want = if listed {
                    "Denied".to_owned()
                } else {
                    format!("{:?}", Rejection::Replayed)
                };
                let entry = gate(
                    readers,
                    &keys,
                    &deny,
                    entry_reader,
                    entry_place,
                    TapDirection::In,
                );
                seen.show(
                    entry,
                    &shown,
                    ride.at + Duration::seconds(2),
                    &want,
                    &entry_csv,
                );
            }
            CodeUse::TwoGates if ride.metro => {
                let second = gate(
                    readers,
                    &keys,
                    &deny,
                    350 + from as u32,
                    entry_place,
                    TapDirection::In,
                );
                seen.show(
                    second,
                    &shown,
                    ride.at + Duration::seconds(20),
                    honest,
                    &entry_csv,
                );
            }
            _ => {}
        }
        if ride.metro {
            let out_at = ride.at + Duration::minutes(25);
            let exit = match phone.generate(out_at) {
                Ok(c) => c,
                Err(e) => return Outcome::Failed(format!("Internal: {e}")),
            };
            let Some(stop) = net.stop(STATION_IDS[to]) else {
                return Outcome::Failed("InvalidInput: no station".into());
            };
            let place = TapPlace::Station {
                network: metro,
                stop,
            };
            let out = gate(
                readers,
                &keys,
                &deny,
                400 + to as u32,
                place,
                TapDirection::Out,
            );
            seen.show(
                out,
                exit.as_bytes(),
                out_at,
                honest,
                &format!("metro,{},,", STATION_IDS[to]),
            );
        }
        drop(gates);
        if let Some((got, want)) = seen.decisions.iter().find(|(got, want)| got != want) {
            return Outcome::Broken(format!(
                "a gate answered {got} to a {:?} ride code; it must answer {want}",
                ride.code
            ));
        }
        // The back office maps the keyed references back to cards.
        let mut taps: Vec<Tap> = seen.accepted.iter().map(|(t, _)| *t).collect();
        let foreign = city.transit().resolve_code_taps(&mut taps);
        if foreign != 0 || taps.iter().any(|t| t.card != ride.card) {
            return Outcome::Broken(format!(
                "ride-code taps of one card resolved to {} other cards ({foreign} of another issuer)",
                taps.iter().filter(|t| t.card != ride.card).count()
            ));
        }
        let mut rows = Vec::new();
        for (tap, (_, place)) in taps.iter().zip(&seen.accepted) {
            match row(tap, place) {
                Some(r) => rows.push(r),
                None => return Outcome::Broken("an accepted ride code left no code use".into()),
            }
        }
        let names = seen.decisions.into_iter().map(|(got, _)| got).collect();
        Outcome::Coded(names, Rows(rows))
    }

    fn gates(&self) -> std::sync::MutexGuard<'_, Gates> {
        self.gates.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn classify(e: &citycard::CityCardError) -> citycard::core::ErrorClass {
    use citycard::core::ClassifiedError;
    e.class()
}
