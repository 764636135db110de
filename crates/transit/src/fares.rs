//! The fare engine: GTFS-Fares v2 rules plus citycard extensions, and `quote`.
//!
//! # The data model
//!
//! Standard GTFS-Fares v2 files: `fare_media.txt`, `rider_categories.txt`,
//! `fare_products.txt`, `fare_leg_rules.txt`, `fare_transfer_rules.txt`,
//! `areas.txt`, `stop_areas.txt`, `networks.txt`, `route_networks.txt`,
//! `timeframes.txt` (with `calendar.txt` for its `service_id`).
//!
//! Extensions, where the standard stops (all documented in
//! `data/hangzhou/README.md`):
//!
//! - `fare_leg_rules.txt` columns `min_distance`, `max_distance`,
//!   `distance_type` after the open distance proposal: type `1` is kilometres
//!   of shortest metro distance, type `2` (citycard) is the number of fare
//!   sections ridden on a sectioned bus route. A leg matches when
//!   `min_distance < d ≤ max_distance` (an empty minimum means `d ≥ 0`, an
//!   empty maximum means no upper bound): exactly 4 km is still the ¥2 bracket.
//! - `citycard_concessions.txt`: card kind, age range, network and timeframe →
//!   rider category and a percentage of the fare, `volume_tiers` (0 = the
//!   monthly tiers do not apply on top), `status`/`source`; the highest
//!   `rule_priority` wins. Timeframes are judged by the leg's entry time.
//! - `calendar.txt` column `citycard_working_days`: `1` makes the service's
//!   days the statutory working days of the engine's [`WorkingCalendar`]
//!   (holidays off, make-up days on; Monday to Friday in years it does not cover).
//! - `fare_transfer_rules.txt` column `min_duration`: the shortest gap in
//!   seconds, measured like `duration_limit` (Hangzhou: 3 minutes).
//! - `citycard_volume_tiers.txt`: monthly spend before the ride →
//!   percentage, `[min_spend, max_spend)`.
//! - `citycard_network_limits.txt`: per network, whether a tap-out is
//!   required, the time limit and the maximum-fare product charged when the
//!   tap-out is missing or the limit is exceeded; `overstay_fare` =
//!   `exit_station_highest` charges an overstay the highest single fare from
//!   the exit station instead (the fare to the farthest station it reaches).
//! - `citycard_settings.txt`: `transfer_discount_cap`, `transfers_per_journey`,
//!   `same_vehicle_repeat_seconds`.
//!
//! `rule_priority` follows GTFS: when the column is present, empty fields do
//! not affect matching and the highest priority wins (ties: first in file
//! order); when it is absent, an empty field matches only values that no
//! other rule names in that field (inverse matching).
//!
//! # The order of a leg's fare
//!
//! base fare (leg rule or maximum fare) → concession percentage → monthly
//! volume tier percentage → transfer adjustment (Hangzhou: tiers first, then
//! the ¥2 transfer discount, which never exceeds the cap nor the leg's fare
//! after the tier). A concession row with `volume_tiers` 0 (students) excludes
//! the tiers. Legs charged the maximum fare neither receive nor open a
//! transfer discount. A boarding of the
//! same route at the same stop within `same_vehicle_repeat_seconds` (at least
//! the same minute) of the previous one is a repeat: it pays its own fare and
//! is never a transfer. Percentages
//! round half-up to the fen ([`percent_of`], equal to
//! `Money::mul_percent`). When several leg rules of the same priority match,
//! the first in file order is used.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use citycard_core::{Money, WorkingCalendar};
use serde::{Deserialize, Serialize};

use crate::data::{FareData, Table, parse_gtfs_time, parse_km};
use crate::error::{LoadError, TransitError};
use crate::network::{NetworkIdx, RouteIdx, StopIdx, TransitNetwork};

/// The kind of card (or ride-code account) a rider holds; concessions refer to these codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CardKind {
    /// An ordinary card.
    #[default]
    Ordinary,
    /// A student card.
    Student,
    /// The 70+ card (老年卡).
    Senior,
    /// A card for a person with a disability (Hangzhou hukou, or severely disabled).
    Disabled,
    /// A veteran's card: no transit concession is sourced for veterans in general.
    Veteran,
    /// A card for blood-donation honour certificate holders (20+ donations).
    BloodDonor,
    /// The 60–69 elder card (长者卡).
    Elder,
    /// Serving soldiers, disabled soldiers and pre-1949 retired cadres.
    Military,
}

impl CardKind {
    /// Every kind.
    pub const ALL: [CardKind; 8] = [
        CardKind::Ordinary,
        CardKind::Student,
        CardKind::Senior,
        CardKind::Disabled,
        CardKind::Veteran,
        CardKind::BloodDonor,
        CardKind::Elder,
        CardKind::Military,
    ];

    /// The code used in data files.
    pub fn code(self) -> &'static str {
        match self {
            CardKind::Ordinary => "ordinary",
            CardKind::Student => "student",
            CardKind::Senior => "senior",
            CardKind::Disabled => "disabled",
            CardKind::Veteran => "veteran",
            CardKind::BloodDonor => "blood_donor",
            CardKind::Elder => "elder",
            CardKind::Military => "military",
        }
    }

    /// The kind for a code.
    pub fn from_code(code: &str) -> Option<CardKind> {
        CardKind::ALL.into_iter().find(|k| k.code() == code)
    }
}

/// What the rider paid with (GTFS `fare_media_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Medium {
    /// A physical transit card (`fare_media_type` 2).
    #[default]
    Card,
    /// A ride code in a mobile app (`fare_media_type` 4).
    RideCode,
}

/// Who rides: what the concession and tier rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Rider {
    /// The card kind.
    pub card_kind: CardKind,
    /// Age in whole years on the day of travel, when known.
    pub age: Option<u8>,
    /// Card or ride code.
    pub medium: Medium,
    /// Whether monthly volume tiers apply (e.g. topped up at least ¥50).
    pub volume_tiers: bool,
}

/// One ride from boarding to alighting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    /// The fare network.
    pub network: NetworkIdx,
    /// The route, when known (vehicles); `None` at gated stations.
    pub route: Option<RouteIdx>,
    /// Where the rider boarded (tapped in).
    pub from: StopIdx,
    /// Where the rider alighted (tapped out), if they did.
    pub to: Option<StopIdx>,
    /// Boarding time.
    pub board: DateTime<Utc>,
    /// Alighting time, if tapped out.
    pub alight: Option<DateTime<Utc>>,
}

/// A journey to price: a rider, their spend this month before it, and the legs in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journey {
    /// Who rides.
    pub rider: Rider,
    /// What the rider has paid this civil month before the first leg.
    pub month_spend_before: Money,
    /// The legs, in time order.
    pub legs: Vec<Leg>,
}

/// Why a leg was charged the maximum fare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum MaximumFareReason {
    /// The rider tapped in and never tapped out.
    MissingTapOut,
    /// The rider stayed longer than the network allows.
    OverTimeLimit {
        /// Minutes between tap-in and tap-out.
        minutes: i64,
        /// The limit in minutes.
        limit: u32,
    },
}

/// What a leg's base fare was measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FareBasis {
    /// Shortest metro distance.
    Distance {
        /// Metres.
        metres: u32,
    },
    /// Fare sections ridden.
    Sections {
        /// Number of sections, both ends counted.
        count: u16,
    },
    /// A flat fare.
    Flat,
    /// The maximum fare.
    MaximumFare(MaximumFareReason),
}

/// A concession that changed a leg's fare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConcessionApplied {
    /// Index in `citycard_concessions.txt` order.
    pub concession: u32,
    /// Percentage of the base fare paid.
    pub percent: u16,
}

/// A transfer rule applied to a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferApplied {
    /// Index in `fare_transfer_rules.txt` order.
    pub rule: u32,
    /// How much less the leg costs (negative for a surcharge).
    pub discount: Money,
}

/// A monthly volume tier applied to a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierApplied {
    /// Index in `citycard_volume_tiers.txt` order.
    pub tier: u32,
    /// Percentage paid.
    pub percent: u16,
    /// The month's spend before this leg.
    pub spend_before: Money,
}

/// How one leg was priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegFare {
    /// Index of the leg in the journey.
    pub leg: usize,
    /// What the base fare was measured on.
    pub basis: FareBasis,
    /// The leg rule matched (index in `fare_leg_rules.txt` order), `None` for a maximum fare.
    pub rule: Option<u32>,
    /// The fare product charged.
    pub product: u32,
    /// The product's amount.
    pub base: Money,
    /// The concession applied, if any.
    pub concession: Option<ConcessionApplied>,
    /// The fare after the concession.
    pub after_concession: Money,
    /// The transfer rule applied, if any.
    pub transfer: Option<TransferApplied>,
    /// The monthly tier applied, if any.
    pub tier: Option<TierApplied>,
    /// What the rider pays for this leg.
    pub paid: Money,
}

/// The price of a journey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// One entry per leg.
    pub legs: Vec<LegFare>,
    /// What the rider pays in all.
    pub total: Money,
    /// Base fares minus what is paid (concessions, transfers, tiers).
    pub discounts: Money,
}

impl Quote {
    /// One readable line per leg, in English, naming the rules applied.
    pub fn explain(&self, engine: &FareEngine) -> Vec<String> {
        self.legs.iter().map(|l| engine.explain_leg(l)).collect()
    }
}

/// `amount × percent / 100`, rounded half-up to the fen (exactly `Money::mul_percent`, without decimals).
#[inline]
pub fn percent_of(amount: Money, percent: u16) -> Money {
    let fen = i128::from(amount.fen()) * i128::from(percent);
    let rounded = if fen >= 0 {
        (fen + 50) / 100
    } else {
        (fen - 50) / 100
    };
    Money::from_fen(i64::try_from(rounded).unwrap_or(if fen >= 0 { i64::MAX } else { i64::MIN }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DistanceType {
    None,
    Km,
    Sections,
}

#[derive(Debug, Clone)]
struct LegRule {
    leg_group: Option<u16>,
    network: Option<NetworkIdx>,
    from_area: Option<u16>,
    to_area: Option<u16>,
    from_tf: Option<u16>,
    to_tf: Option<u16>,
    product: u32,
    priority: i32,
    min: Option<u32>,
    max: Option<u32>,
    distance: DistanceType,
    line: u64,
}

#[derive(Debug, Clone)]
struct TransferRule {
    from_group: Option<u16>,
    to_group: Option<u16>,
    transfer_count: i32,
    duration_limit: Option<i64>,
    duration_type: u8,
    /// Minimum gap in seconds, measured like `duration_limit` (citycard `min_duration`).
    min_duration: i64,
    kind: u8,
    product: Option<u32>,
    line: u64,
}

#[derive(Debug, Clone)]
struct Product {
    id: String,
    name: String,
    /// (category, media, amount)
    amounts: Vec<(Option<u16>, Option<u16>, Money)>,
}

#[derive(Debug, Clone, Copy)]
struct Timeframe {
    start: u32,
    end: u32,
    weekdays: u8,
    /// The days are the statutory working days of the engine's calendar (weekdays ignored).
    working_days: bool,
    from_day: i64,
    to_day: i64,
}

#[derive(Debug, Clone)]
struct Concession {
    id: String,
    card_kind: Option<CardKind>,
    min_age: Option<u8>,
    max_age: Option<u8>,
    timeframe: Option<u16>,
    network: Option<NetworkIdx>,
    category: u16,
    percent: u16,
    priority: i32,
    /// Whether the monthly volume tiers may apply on top.
    volume_tiers: bool,
}

#[derive(Debug, Clone, Copy)]
struct Tier {
    min: Money,
    max: Option<Money>,
    percent: u16,
}

/// What GTFS "inverse matching" needs (rules loaded without `rule_priority`).
#[derive(Debug, Clone, Default)]
struct InverseMatch {
    enabled: bool,
    /// Per stop: whether it is in an area named in `from_area_id` by some rule.
    from_area_stops: Vec<bool>,
    /// Per stop: whether it is in an area named in `to_area_id` by some rule.
    to_area_stops: Vec<bool>,
    from_timeframes: Vec<u16>,
    to_timeframes: Vec<u16>,
}

#[derive(Debug, Clone, Copy, Default)]
struct NetworkLimit {
    requires_tap_out: bool,
    max_duration_minutes: Option<u32>,
    maximum_product: Option<u32>,
    /// An overstay pays the highest single fare from the exit station (not `maximum_product`).
    overstay_from_exit: bool,
}

/// The loaded network and fare rules, ready to price journeys.
#[derive(Debug, Clone)]
pub struct FareEngine {
    network: TransitNetwork,
    leg_groups: Vec<String>,
    categories: Vec<(String, String)>,
    default_category: Option<u16>,
    media: Vec<(String, u8)>,
    products: Vec<Product>,
    product_index: HashMap<String, u32>,
    leg_rules: Vec<LegRule>,
    rules_by_network: Vec<Vec<u32>>,
    transfer_rules: Vec<TransferRule>,
    timeframes: Vec<Vec<Timeframe>>,
    timeframe_names: Vec<String>,
    areas: Vec<String>,
    stop_areas: Vec<Vec<u16>>,
    inverse: InverseMatch,
    concessions: Vec<Concession>,
    tiers: Vec<Tier>,
    limits: Vec<NetworkLimit>,
    transfer_cap: Option<Money>,
    transfers_per_journey: Option<u32>,
    same_vehicle_repeat_seconds: u32,
    working_days: WorkingDays,
}

/// Statutory working days as a bitset over the calendar's covered years, for the hot path.
#[derive(Debug, Clone, Default)]
struct WorkingDays {
    /// Days since 1970-01-01 of the first bit.
    first: i64,
    /// Number of days covered.
    len: i64,
    bits: Vec<u64>,
}

impl WorkingDays {
    fn new(calendar: &WorkingCalendar) -> Self {
        let (Some(lo), Some(hi)) = (calendar.years().min(), calendar.years().max()) else {
            return Self::default();
        };
        let (Some(start), Some(end)) = (
            chrono::NaiveDate::from_ymd_opt(lo, 1, 1),
            chrono::NaiveDate::from_ymd_opt(hi, 12, 31),
        ) else {
            return Self::default();
        };
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or(start);
        let first = (start - epoch).num_days();
        let n = (end - start).num_days() as usize + 1;
        let mut bits = vec![0u64; n.div_ceil(64)];
        for (i, d) in start.iter_days().take(n).enumerate() {
            if calendar.is_working_day(d) {
                bits[i / 64] |= 1 << (i % 64);
            }
        }
        Self {
            first,
            len: n as i64,
            bits,
        }
    }

    /// Whether a civil day (days since epoch, weekday bit with Monday = 1) is a working day.
    #[inline]
    fn is_working(&self, day: i64, weekday_bit: u8) -> bool {
        let i = day - self.first;
        if (0..self.len).contains(&i) {
            let i = i as usize;
            self.bits
                .get(i / 64)
                .is_some_and(|w| w & (1 << (i % 64)) != 0)
        } else {
            weekday_bit & 0b1_1111 != 0
        }
    }
}

fn intern(names: &mut Vec<String>, index: &mut HashMap<String, u16>, name: &str) -> u16 {
    if let Some(i) = index.get(name) {
        return *i;
    }
    let i = names.len() as u16;
    names.push(name.to_owned());
    index.insert(name.to_owned(), i);
    i
}

fn percent_field(t: &Table, row: &crate::data::Row, field: &str) -> Result<u16, LoadError> {
    let p: u16 = t.parse_req(row, field)?;
    if p > 100 {
        return Err(t.err(row, field, "a percentage must be between 0 and 100"));
    }
    Ok(p)
}

/// Days since 1970-01-01 of a `YYYYMMDD` date.
fn gtfs_date_days(text: &str) -> Option<i64> {
    let d = chrono::NaiveDate::parse_from_str(text, "%Y%m%d").ok()?;
    Some(
        d.signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?)
            .num_days(),
    )
}

/// China civil time of an instant as (days since epoch, seconds in day, weekday bit with Monday = 1).
#[inline]
fn civil_parts(at_secs: i64) -> (i64, u32, u8) {
    let local = at_secs + 8 * 3600;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400) as u32;
    // 1970-01-01 was a Thursday (Monday = 0 → Thursday = 3).
    let weekday = (days + 3).rem_euclid(7) as u8;
    (days, secs, 1 << weekday)
}

impl FareEngine {
    /// The Hangzhou rule set and sample network embedded in the crate.
    pub fn hangzhou() -> Result<Self, LoadError> {
        Self::load(&FareData::hangzhou())
    }

    /// Loads a network and rule set; errors name the file, line and field.
    pub fn load(data: &FareData) -> Result<Self, LoadError> {
        let network = TransitNetwork::load(data)?;

        // Rider categories.
        let t = data.table("rider_categories.txt", false)?;
        let mut categories = Vec::new();
        let mut category_index: HashMap<String, u16> = HashMap::new();
        let mut default_category = None;
        for row in &t.rows {
            let id = t.req(row, "rider_category_id")?;
            let name = t.opt(row, "rider_category_name").unwrap_or(id);
            let idx = categories.len() as u16;
            if category_index.insert(id.to_owned(), idx).is_some() {
                return Err(t.err(row, "rider_category_id", "duplicate rider category"));
            }
            categories.push((id.to_owned(), name.to_owned()));
            if t.opt(row, "is_default_fare_category") == Some("1") {
                default_category = Some(idx);
            }
        }

        // Fare media.
        let t = data.table("fare_media.txt", false)?;
        let mut media = Vec::new();
        let mut media_index: HashMap<String, u16> = HashMap::new();
        for row in &t.rows {
            let id = t.req(row, "fare_media_id")?;
            let kind: u8 = t.parse_req(row, "fare_media_type")?;
            if kind > 4 {
                return Err(t.err(row, "fare_media_type", "fare_media_type must be 0 to 4"));
            }
            media_index.insert(id.to_owned(), media.len() as u16);
            media.push((id.to_owned(), kind));
        }

        // Fare products.
        let t = data.table("fare_products.txt", true)?;
        let mut products: Vec<Product> = Vec::new();
        let mut product_index: HashMap<String, u32> = HashMap::new();
        for row in &t.rows {
            let id = t.req(row, "fare_product_id")?;
            let currency = t.req(row, "currency")?;
            if currency != "CNY" {
                return Err(t.err(row, "currency", format!("currency {currency:?} is not CNY")));
            }
            let amount = t.money(row, "amount")?;
            let category = t.lookup(row, "rider_category_id", &category_index)?;
            let medium = t.lookup(row, "fare_media_id", &media_index)?;
            let idx = *product_index.entry(id.to_owned()).or_insert_with(|| {
                products.push(Product {
                    id: id.to_owned(),
                    name: t.opt(row, "fare_product_name").unwrap_or(id).to_owned(),
                    amounts: Vec::new(),
                });
                (products.len() - 1) as u32
            });
            let p = &mut products[idx as usize];
            if p.amounts
                .iter()
                .any(|(c, m, _)| *c == category && *m == medium)
            {
                return Err(t.err(
                    row,
                    "fare_product_id",
                    "duplicate product row for this rider category and fare media",
                ));
            }
            p.amounts.push((category, medium, amount));
        }

        // Areas.
        let t = data.table("areas.txt", false)?;
        let mut areas = Vec::new();
        let mut area_index: HashMap<String, u16> = HashMap::new();
        for row in &t.rows {
            let id = t.req(row, "area_id")?;
            intern(&mut areas, &mut area_index, id);
        }
        let t = data.table("stop_areas.txt", false)?;
        let mut stop_areas = vec![Vec::new(); network.stops.len()];
        for row in &t.rows {
            let area = t.lookup_req(row, "area_id", &area_index)?;
            let stop = t.lookup_req(row, "stop_id", &network.stop_index)?;
            stop_areas[stop.get()].push(area);
        }

        // Calendar and timeframes.
        let t = data.table("calendar.txt", false)?;
        let mut services: HashMap<String, (u8, bool, i64, i64)> = HashMap::new();
        const DAYS: [&str; 7] = [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ];
        for row in &t.rows {
            let id = t.req(row, "service_id")?;
            let mut mask = 0u8;
            for (i, day) in DAYS.iter().enumerate() {
                match t.req(row, day)? {
                    "1" => mask |= 1 << i,
                    "0" => {}
                    other => return Err(t.err(row, day, format!("{other:?} must be 0 or 1"))),
                }
            }
            let date = |field: &str| -> Result<Option<i64>, LoadError> {
                match t.opt(row, field) {
                    None => Ok(None),
                    Some(v) => gtfs_date_days(v)
                        .map(Some)
                        .ok_or_else(|| t.err(row, field, format!("{v:?} is not a YYYYMMDD date"))),
                }
            };
            let from = date("start_date")?.unwrap_or(i64::MIN);
            let to = date("end_date")?.unwrap_or(i64::MAX);
            let working_days = match t.opt(row, "citycard_working_days") {
                None | Some("0") => false,
                Some("1") => true,
                Some(other) => {
                    return Err(t.err(
                        row,
                        "citycard_working_days",
                        format!("{other:?} must be 0 or 1"),
                    ));
                }
            };
            services.insert(id.to_owned(), (mask, working_days, from, to));
        }
        let t = data.table("timeframes.txt", false)?;
        let mut timeframe_names = Vec::new();
        let mut timeframe_index: HashMap<String, u16> = HashMap::new();
        let mut timeframes: Vec<Vec<Timeframe>> = Vec::new();
        for row in &t.rows {
            let id = t.req(row, "timeframe_group_id")?;
            let g = intern(&mut timeframe_names, &mut timeframe_index, id);
            if timeframes.len() <= g as usize {
                timeframes.push(Vec::new());
            }
            let time = |field: &str, default: u32| -> Result<u32, LoadError> {
                match t.opt(row, field) {
                    None => Ok(default),
                    Some(v) => parse_gtfs_time(v)
                        .ok_or_else(|| t.err(row, field, format!("{v:?} is not HH:MM:SS"))),
                }
            };
            let start = time("start_time", 0)?;
            let end = time("end_time", 86_400)?;
            if end <= start {
                return Err(t.err(row, "end_time", "end_time must be after start_time"));
            }
            let service = t.req(row, "service_id")?;
            let (weekdays, working_days, from_day, to_day) =
                *services.get(service).ok_or_else(|| {
                    t.err(
                        row,
                        "service_id",
                        format!("service {service:?} is not in calendar.txt"),
                    )
                })?;
            timeframes[g as usize].push(Timeframe {
                start,
                end,
                weekdays,
                working_days,
                from_day,
                to_day,
            });
        }

        // Leg rules.
        let t = data.table("fare_leg_rules.txt", true)?;
        let mut leg_groups = Vec::new();
        let mut leg_group_index: HashMap<String, u16> = HashMap::new();
        let mut leg_rules = Vec::new();
        for row in &t.rows {
            let leg_group = t
                .opt(row, "leg_group_id")
                .map(|g| intern(&mut leg_groups, &mut leg_group_index, g));
            let distance = match t.opt(row, "distance_type") {
                None => DistanceType::None,
                Some("1") => DistanceType::Km,
                Some("2") => DistanceType::Sections,
                Some(other) => {
                    return Err(t.err(
                        row,
                        "distance_type",
                        format!(
                            "{other:?} is not supported: use 1 (kilometres) or 2 (fare sections)"
                        ),
                    ));
                }
            };
            let bound = |field: &str| -> Result<Option<u32>, LoadError> {
                let Some(v) = t.opt(row, field) else {
                    return Ok(None);
                };
                let parsed = match distance {
                    DistanceType::Km => parse_km(v),
                    DistanceType::Sections => v.parse::<u32>().ok(),
                    DistanceType::None => {
                        return Err(t.err(row, field, "a distance needs distance_type"));
                    }
                };
                parsed
                    .map(Some)
                    .ok_or_else(|| t.err(row, field, format!("{v:?} is not a valid distance")))
            };
            let min = bound("min_distance")?;
            let max = bound("max_distance")?;
            if let (Some(a), Some(b)) = (min, max)
                && b <= a
            {
                return Err(t.err(row, "max_distance", "max_distance must exceed min_distance"));
            }
            leg_rules.push(LegRule {
                leg_group,
                network: t.lookup(row, "network_id", &network.network_index)?,
                from_area: t.lookup(row, "from_area_id", &area_index)?,
                to_area: t.lookup(row, "to_area_id", &area_index)?,
                from_tf: t.lookup(row, "from_timeframe_group_id", &timeframe_index)?,
                to_tf: t.lookup(row, "to_timeframe_group_id", &timeframe_index)?,
                product: t.lookup_req(row, "fare_product_id", &product_index)?,
                priority: t.parse_opt(row, "rule_priority")?.unwrap_or(0),
                min,
                max,
                distance,
                line: row.line,
            });
        }
        // Without `rule_priority`, GTFS reads an empty field as "any value not
        // named in that field by another rule" (inverse match).
        let inverse = !leg_rules.is_empty() && !t.has_column("rule_priority");
        let mut inverse_match = InverseMatch::default();
        if inverse {
            let named = |f: &dyn Fn(&LegRule) -> Option<u16>| -> Vec<u16> {
                let mut v: Vec<u16> = leg_rules.iter().filter_map(f).collect();
                v.sort_unstable();
                v.dedup();
                v
            };
            let from_areas = named(&|r| r.from_area);
            let to_areas = named(&|r| r.to_area);
            inverse_match = InverseMatch {
                enabled: true,
                from_area_stops: stop_areas
                    .iter()
                    .map(|a| a.iter().any(|x| from_areas.contains(x)))
                    .collect(),
                to_area_stops: stop_areas
                    .iter()
                    .map(|a| a.iter().any(|x| to_areas.contains(x)))
                    .collect(),
                from_timeframes: named(&|r| r.from_tf),
                to_timeframes: named(&|r| r.to_tf),
            };
        }
        let named_networks: Vec<usize> = leg_rules
            .iter()
            .filter_map(|r| r.network.map(NetworkIdx::get))
            .collect();
        let mut rules_by_network = vec![Vec::new(); network.networks.len()];
        for (n, list) in rules_by_network.iter_mut().enumerate() {
            for (i, r) in leg_rules.iter().enumerate() {
                let matches = match r.network {
                    Some(x) => x.get() == n,
                    None => !inverse || !named_networks.contains(&n),
                };
                if matches {
                    list.push(i as u32);
                }
            }
            list.sort_by_key(|i| std::cmp::Reverse(leg_rules[*i as usize].priority));
        }

        // Transfer rules.
        let t = data.table("fare_transfer_rules.txt", false)?;
        let mut transfer_rules = Vec::new();
        for row in &t.rows {
            let from_group = t.lookup(row, "from_leg_group_id", &leg_group_index)?;
            let to_group = t.lookup(row, "to_leg_group_id", &leg_group_index)?;
            let transfer_count: Option<i32> = t.parse_opt(row, "transfer_count")?;
            let same = from_group.is_some() && from_group == to_group;
            let transfer_count = match (transfer_count, same) {
                (None, true) => {
                    return Err(t.err(
                        row,
                        "transfer_count",
                        "required when from_leg_group_id equals to_leg_group_id",
                    ));
                }
                (Some(_), false) => {
                    return Err(t.err(
                        row,
                        "transfer_count",
                        "forbidden when the leg groups differ",
                    ));
                }
                (Some(c), true) if c == 0 || c < -1 => {
                    return Err(t.err(row, "transfer_count", "must be -1 or at least 1"));
                }
                (c, _) => c.unwrap_or(-1),
            };
            let duration_limit: Option<i64> = t.parse_opt(row, "duration_limit")?;
            let duration_type: Option<u8> = t.parse_opt(row, "duration_limit_type")?;
            let duration_type = match (duration_limit, duration_type) {
                (Some(_), None) => {
                    return Err(t.err(
                        row,
                        "duration_limit_type",
                        "required when duration_limit is set",
                    ));
                }
                (None, Some(_)) => {
                    return Err(t.err(
                        row,
                        "duration_limit_type",
                        "forbidden without duration_limit",
                    ));
                }
                (_, Some(d)) if d > 3 => {
                    return Err(t.err(row, "duration_limit_type", "must be 0, 1, 2 or 3"));
                }
                (_, d) => d.unwrap_or(0),
            };
            if duration_limit.is_some_and(|d| d <= 0) {
                return Err(t.err(
                    row,
                    "duration_limit",
                    "must be a positive number of seconds",
                ));
            }
            let min_duration: i64 = t.parse_opt(row, "min_duration")?.unwrap_or(0);
            if min_duration < 0 || duration_limit.is_some_and(|d| min_duration > d) {
                return Err(t.err(
                    row,
                    "min_duration",
                    "must be 0 or more seconds and not above duration_limit",
                ));
            }
            let kind: u8 = t.parse_req(row, "fare_transfer_type")?;
            if kind > 2 {
                return Err(t.err(
                    row,
                    "fare_transfer_type",
                    "must be 0 (A+AB), 1 (A+AB+B) or 2 (AB)",
                ));
            }
            transfer_rules.push(TransferRule {
                from_group,
                to_group,
                transfer_count,
                duration_limit,
                duration_type,
                min_duration,
                kind,
                product: t.lookup(row, "fare_product_id", &product_index)?,
                line: row.line,
            });
        }

        // Concessions.
        let t = data.table("citycard_concessions.txt", false)?;
        let mut concessions = Vec::new();
        for row in &t.rows {
            let card_kind =
                match t.opt(row, "card_kind") {
                    None => None,
                    Some(k) => Some(CardKind::from_code(k).ok_or_else(|| {
                        t.err(row, "card_kind", format!("unknown card kind {k:?}"))
                    })?),
                };
            concessions.push(Concession {
                id: t.req(row, "concession_id")?.to_owned(),
                card_kind,
                min_age: t.parse_opt(row, "min_age")?,
                max_age: t.parse_opt(row, "max_age")?,
                timeframe: t.lookup(row, "timeframe_group_id", &timeframe_index)?,
                network: t.lookup(row, "network_id", &network.network_index)?,
                category: t.lookup_req(row, "rider_category_id", &category_index)?,
                percent: percent_field(&t, row, "percent")?,
                priority: t.parse_opt(row, "rule_priority")?.unwrap_or(0),
                volume_tiers: match t.opt(row, "volume_tiers") {
                    None | Some("1") => true,
                    Some("0") => false,
                    Some(other) => {
                        return Err(t.err(
                            row,
                            "volume_tiers",
                            format!("{other:?} must be 0 or 1"),
                        ));
                    }
                },
            });
            if let Some(status) = t.opt(row, "status")
                && status != "sourced"
                && status != "unverified"
            {
                return Err(t.err(
                    row,
                    "status",
                    format!("{status:?} is unknown: use sourced or unverified"),
                ));
            }
        }
        let mut order: Vec<usize> = (0..concessions.len()).collect();
        order.sort_by_key(|i| std::cmp::Reverse(concessions[*i].priority));
        let concessions: Vec<Concession> =
            order.into_iter().map(|i| concessions[i].clone()).collect();

        // Volume tiers.
        let t = data.table("citycard_volume_tiers.txt", false)?;
        let mut tiers = Vec::new();
        for row in &t.rows {
            let min = t.money(row, "min_spend")?;
            let max = match t.opt(row, "max_spend") {
                None => None,
                Some(_) => Some(t.money(row, "max_spend")?),
            };
            if max.is_some_and(|m| m <= min) {
                return Err(t.err(row, "max_spend", "max_spend must exceed min_spend"));
            }
            tiers.push(Tier {
                min,
                max,
                percent: percent_field(&t, row, "percent")?,
            });
        }

        // Network limits.
        let t = data.table("citycard_network_limits.txt", false)?;
        let mut limits = vec![NetworkLimit::default(); network.networks.len()];
        for row in &t.rows {
            let n = t.lookup_req(row, "network_id", &network.network_index)?;
            limits[n.get()] = NetworkLimit {
                requires_tap_out: t.opt(row, "requires_tap_out") == Some("1"),
                max_duration_minutes: t.parse_opt(row, "max_duration_minutes")?,
                maximum_product: t.lookup(row, "maximum_fare_product_id", &product_index)?,
                overstay_from_exit: match t.opt(row, "overstay_fare") {
                    None | Some("maximum_fare") => false,
                    Some("exit_station_highest") => true,
                    Some(other) => {
                        return Err(t.err(
                            row,
                            "overstay_fare",
                            format!(
                                "{other:?} is unknown: use maximum_fare or exit_station_highest"
                            ),
                        ));
                    }
                },
            };
            if limits[n.get()].requires_tap_out && limits[n.get()].maximum_product.is_none() {
                return Err(t.err(
                    row,
                    "maximum_fare_product_id",
                    "required when requires_tap_out is 1",
                ));
            }
        }

        // Settings.
        let t = data.table("citycard_settings.txt", false)?;
        let mut transfer_cap = None;
        let mut transfers_per_journey = None;
        let mut same_vehicle_repeat_seconds = 0;
        for row in &t.rows {
            match t.req(row, "key")? {
                "transfer_discount_cap" => transfer_cap = Some(t.money(row, "value")?),
                "transfers_per_journey" => transfers_per_journey = Some(t.parse_req(row, "value")?),
                "same_vehicle_repeat_seconds" => {
                    same_vehicle_repeat_seconds = t.parse_req(row, "value")?
                }
                other => return Err(t.err(row, "key", format!("unknown setting {other:?}"))),
            }
        }

        Ok(Self {
            network,
            leg_groups,
            categories,
            default_category,
            media,
            products,
            product_index,
            leg_rules,
            rules_by_network,
            transfer_rules,
            timeframes,
            timeframe_names,
            areas,
            stop_areas,
            inverse: inverse_match,
            concessions,
            tiers,
            limits,
            transfer_cap,
            transfers_per_journey,
            same_vehicle_repeat_seconds,
            working_days: WorkingDays::new(&WorkingCalendar::china()),
        })
    }

    /// Judges working-day timeframes by this calendar (e.g. one extended with a new year's notice).
    pub fn set_working_calendar(&mut self, calendar: &WorkingCalendar) {
        self.working_days = WorkingDays::new(calendar);
    }

    /// The network the rules apply to.
    pub fn network(&self) -> &TransitNetwork {
        &self.network
    }

    /// The transfer-discount cap, if the data sets one.
    pub fn transfer_discount_cap(&self) -> Option<Money> {
        self.transfer_cap
    }

    /// Seconds within which the same code is refused on the same vehicle (0 = no rule).
    pub fn same_vehicle_repeat_seconds(&self) -> u32 {
        self.same_vehicle_repeat_seconds
    }

    /// Whether legs in a network need a tap-out.
    pub fn requires_tap_out(&self, network: NetworkIdx) -> bool {
        self.limits
            .get(network.get())
            .is_some_and(|l| l.requires_tap_out)
    }

    /// The maximum fare of a network (before concessions and tiers), if it has one.
    pub fn maximum_fare(&self, network: NetworkIdx) -> Option<Money> {
        let p = self.limits.get(network.get())?.maximum_product?;
        self.amount(p, self.default_category, Medium::Card)
    }

    /// A fare product's id.
    pub fn product_id(&self, product: u32) -> Option<&str> {
        self.products.get(product as usize).map(|p| p.id.as_str())
    }

    /// A fare product's index by id.
    pub fn product(&self, id: &str) -> Option<u32> {
        self.product_index.get(id).copied()
    }

    /// Builds a leg on a route (resolving its network).
    pub fn route_leg(
        &self,
        route: &str,
        from: &str,
        to: Option<&str>,
        board: DateTime<Utc>,
        alight: Option<DateTime<Utc>>,
    ) -> Result<Leg, TransitError> {
        let r = self
            .network
            .route(route)
            .ok_or_else(|| TransitError::Unknown {
                kind: "route",
                name: route.to_owned(),
            })?;
        let network = self.network.routes[r.get()].network;
        Ok(Leg {
            network,
            route: Some(r),
            from: self.stop(from)?,
            to: to.map(|s| self.stop(s)).transpose()?,
            board,
            alight,
        })
    }

    /// Builds a gated metro leg between stations of a network.
    pub fn station_leg(
        &self,
        network: &str,
        from: &str,
        to: Option<&str>,
        board: DateTime<Utc>,
        alight: Option<DateTime<Utc>>,
    ) -> Result<Leg, TransitError> {
        let n = self
            .network
            .network(network)
            .ok_or_else(|| TransitError::Unknown {
                kind: "network",
                name: network.to_owned(),
            })?;
        Ok(Leg {
            network: n,
            route: None,
            from: self.stop(from)?,
            to: to.map(|s| self.stop(s)).transpose()?,
            board,
            alight,
        })
    }

    fn stop(&self, id: &str) -> Result<StopIdx, TransitError> {
        self.network.stop(id).ok_or_else(|| TransitError::Unknown {
            kind: "stop",
            name: id.to_owned(),
        })
    }

    #[inline]
    fn amount(&self, product: u32, category: Option<u16>, medium: Medium) -> Option<Money> {
        let p = self.products.get(product as usize)?;
        let media_type = match medium {
            Medium::Card => 2,
            Medium::RideCode => 4,
        };
        let media_ok = |m: Option<u16>| {
            m.is_none_or(|m| {
                self.media
                    .get(m as usize)
                    .is_some_and(|(_, t)| *t == media_type)
            })
        };
        let mut best: Option<(u8, Money)> = None;
        for (c, m, amount) in &p.amounts {
            if !media_ok(*m) {
                continue;
            }
            let score = match (
                *c == category && c.is_some(),
                m.is_some(),
                c.is_none() || *c == self.default_category,
            ) {
                (true, true, _) => 4,
                (true, false, _) => 3,
                (false, true, true) => 2,
                (false, false, true) => 1,
                _ => continue,
            };
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, *amount));
            }
        }
        best.map(|(_, a)| a)
    }

    #[inline]
    fn in_timeframe(&self, group: u16, at_secs: i64) -> bool {
        let (day, secs, weekday) = civil_parts(at_secs);
        self.timeframes.get(group as usize).is_some_and(|frames| {
            frames.iter().any(|f| {
                (if f.working_days {
                    self.working_days.is_working(day, weekday)
                } else {
                    f.weekdays & weekday != 0
                }) && day >= f.from_day
                    && day <= f.to_day
                    && secs >= f.start
                    && secs < f.end
            })
        })
    }

    #[inline]
    fn in_area(&self, stop: StopIdx, area: u16) -> bool {
        self.stop_areas
            .get(stop.get())
            .is_some_and(|a| a.contains(&area))
    }

    fn concession(
        &self,
        rider: &Rider,
        network: NetworkIdx,
        at: i64,
    ) -> Option<(u32, &Concession)> {
        self.concessions.iter().enumerate().find_map(|(i, c)| {
            let ok = c.card_kind.is_none_or(|k| k == rider.card_kind)
                && c.network.is_none_or(|n| n == network)
                && c.min_age.is_none_or(|m| rider.age.is_some_and(|a| a >= m))
                && c.max_age.is_none_or(|m| rider.age.is_some_and(|a| a <= m))
                && c.timeframe.is_none_or(|tf| self.in_timeframe(tf, at));
            ok.then_some((i as u32, c))
        })
    }

    /// Prices a journey: the total and how each leg was priced.
    pub fn quote(&self, journey: &Journey) -> Result<Quote, TransitError> {
        let mut legs = Vec::with_capacity(journey.legs.len());
        let total = self.quote_into(
            &journey.rider,
            journey.month_spend_before,
            &journey.legs,
            &mut legs,
        )?;
        let mut base = Money::ZERO;
        for l in &legs {
            base = base.checked_add(l.base)?;
        }
        Ok(Quote {
            legs,
            total,
            discounts: base.checked_sub(total)?,
        })
    }

    /// The allocation-free core of [`FareEngine::quote`]: appends one [`LegFare`] per leg to `out` and returns the total.
    pub fn quote_into(
        &self,
        rider: &Rider,
        month_spend_before: Money,
        legs: &[Leg],
        out: &mut Vec<LegFare>,
    ) -> Result<Money, TransitError> {
        let mut total = Money::ZERO;
        let mut spend = month_spend_before;
        // The previous leg of the current journey: (group, departure, arrival, paid after concession, same-group chain).
        let mut prev: Option<(Option<u16>, i64, i64, Money, u32)> = None;
        // The previous priced vehicle boarding (route, stop, departure), to tell a repeat from a transfer.
        let mut prev_boarding: Option<(RouteIdx, StopIdx, i64)> = None;
        let repeat_window = i64::from(self.same_vehicle_repeat_seconds).max(60);
        let mut transfers_used = 0u32;
        for (i, leg) in legs.iter().enumerate() {
            let departure = leg.board.timestamp();
            let arrival = leg.alight.map_or(departure, |a| a.timestamp());
            let (basis, rule, product, group) = self.base_fare(i, leg, departure, arrival)?;
            let found = self.concession(rider, leg.network, departure);
            let tiers_allowed = found.is_none_or(|(_, c)| c.volume_tiers);
            let (category, concession) = match found {
                Some((idx, c)) => (
                    Some(c.category),
                    Some(ConcessionApplied {
                        concession: idx,
                        percent: c.percent,
                    }),
                ),
                None => (self.default_category, None),
            };
            let base = self
                .amount(product, category, rider.medium)
                .ok_or(TransitError::NoFareRule { leg: i })?;
            let after_concession = match concession {
                Some(c) => percent_of(base, c.percent),
                None => base,
            };
            // The monthly volume tier applies first, on the fare after the concession.
            let mut paid = after_concession;
            let mut tier = None;
            if rider.volume_tiers
                && tiers_allowed
                && let Some((ti, t)) = self
                    .tiers
                    .iter()
                    .enumerate()
                    .find(|(_, t)| spend >= t.min && t.max.is_none_or(|m| spend < m))
            {
                tier = Some(TierApplied {
                    tier: ti as u32,
                    percent: t.percent,
                    spend_before: spend,
                });
                paid = percent_of(paid, t.percent);
            }
            let after_tier = paid;
            let mut transfer = None;
            let is_max = matches!(basis, FareBasis::MaximumFare(_));
            // Boarding the same route at the same stop again within the repeat
            // window (at least the same minute) is a repeat, not a transfer: the
            // rider never rode anywhere. It pays its own fare and the journey
            // goes on from the first boarding.
            let repeat = leg.route.is_some_and(|route| {
                prev_boarding.is_some_and(|(r, s, t)| {
                    r == route && s == leg.from && (0..repeat_window).contains(&(departure - t))
                })
            });
            if let Some(route) = leg.route {
                prev_boarding = Some((route, leg.from, departure));
            }
            if is_max {
                prev = None;
                transfers_used = 0;
            } else if !repeat {
                let mut chain = 0;
                if let Some((pgroup, pdep, parr, pa, pchain)) = prev {
                    let within_journey = self
                        .transfers_per_journey
                        .is_none_or(|m| transfers_used < m);
                    let found = if within_journey {
                        self.transfer_rules.iter().enumerate().find(|(_, r)| {
                            let groups = r.from_group.is_none_or(|g| Some(g) == pgroup)
                                && r.to_group.is_none_or(|g| Some(g) == group);
                            let same = pgroup.is_some() && pgroup == group;
                            let count_ok =
                                !same || r.transfer_count < 0 || pchain < r.transfer_count as u32;
                            let gap = match r.duration_type {
                                0 => arrival - pdep,
                                1 => departure - pdep,
                                2 => departure - parr,
                                _ => arrival - parr,
                            };
                            let time_ok = departure >= parr
                                && gap >= r.min_duration
                                && r.duration_limit.is_none_or(|d| gap <= d);
                            groups && count_ok && time_ok
                        })
                    } else {
                        None
                    };
                    if let Some((ri, r)) = found {
                        let ab = match r.product {
                            Some(p) => self
                                .amount(p, category, rider.medium)
                                .unwrap_or(Money::ZERO),
                            None => Money::ZERO,
                        };
                        let raw = match r.kind {
                            0 => ab.fen(),
                            1 => after_tier.fen().saturating_add(ab.fen()),
                            _ => ab.fen().saturating_sub(pa.fen()),
                        };
                        // Never below zero, never a discount above the cap.
                        let mut new_paid = Money::from_fen(raw.max(0));
                        if let Some(cap) = self.transfer_cap
                            && after_tier.fen() - new_paid.fen() > cap.fen()
                        {
                            new_paid = Money::from_fen(after_tier.fen() - cap.fen());
                        }
                        transfer = Some(TransferApplied {
                            rule: ri as u32,
                            discount: Money::from_fen(after_tier.fen() - new_paid.fen()),
                        });
                        paid = new_paid;
                        transfers_used += 1;
                        chain = if pgroup == group { pchain + 1 } else { 0 };
                    } else {
                        transfers_used = 0;
                    }
                }
                prev = Some((group, departure, arrival, paid, chain));
            }
            spend = spend.checked_add(paid)?;
            total = total.checked_add(paid)?;
            out.push(LegFare {
                leg: i,
                basis,
                rule,
                product,
                base,
                concession,
                after_concession,
                transfer,
                tier,
                paid,
            });
        }
        Ok(total)
    }

    /// The base fare of one leg: basis, rule, product and leg group.
    #[inline]
    fn base_fare(
        &self,
        i: usize,
        leg: &Leg,
        departure: i64,
        arrival: i64,
    ) -> Result<(FareBasis, Option<u32>, u32, Option<u16>), TransitError> {
        let invalid = |reason: &str| TransitError::InvalidLeg {
            leg: i,
            reason: reason.to_owned(),
        };
        let n = leg.network.get();
        let rules = self
            .rules_by_network
            .get(n)
            .ok_or_else(|| invalid("unknown network"))?;
        let limit = self.limits.get(n).copied().unwrap_or_default();
        let group_of_network = || {
            rules
                .first()
                .and_then(|r| self.leg_rules.get(*r as usize))
                .and_then(|r| r.leg_group)
        };
        if arrival < departure {
            return Err(invalid("alighting is before boarding"));
        }
        if leg.to.is_some() != leg.alight.is_some() {
            return Err(invalid("a tap-out needs both a stop and a time"));
        }
        let mut overstay = None;
        if limit.requires_tap_out {
            let reason = match leg.alight {
                None => Some(MaximumFareReason::MissingTapOut),
                Some(_) => {
                    let minutes = (arrival - departure) / 60;
                    limit
                        .max_duration_minutes
                        .filter(|l| minutes > i64::from(*l))
                        .map(|l| MaximumFareReason::OverTimeLimit { minutes, limit: l })
                }
            };
            if let Some(MaximumFareReason::OverTimeLimit { .. }) = reason
                && limit.overstay_from_exit
            {
                overstay = reason;
            } else if let (Some(reason), Some(p)) = (reason, limit.maximum_product) {
                return Ok((FareBasis::MaximumFare(reason), None, p, group_of_network()));
            }
        }
        let metres = match (leg.to, overstay) {
            (Some(to), Some(_)) => Some(
                self.network
                    .farthest_metro_distance(to)
                    .ok_or_else(|| invalid("the exit station has no metro distances"))?,
            ),
            (Some(to), None) => self.network.metro_distance(leg.from, to),
            (None, _) => None,
        };
        let sections = match (leg.route, leg.to) {
            (Some(r), Some(to)) => self.network.sections_ridden(r, leg.from, to),
            _ => None,
        };
        for &ri in rules {
            let Some(r) = self.leg_rules.get(ri as usize) else {
                continue;
            };
            let (value, basis) = match r.distance {
                DistanceType::None => (None, FareBasis::Flat),
                DistanceType::Km => match metres {
                    Some(m) => (Some(m), FareBasis::Distance { metres: m }),
                    None => continue,
                },
                DistanceType::Sections => match sections {
                    Some(s) => (Some(u32::from(s)), FareBasis::Sections { count: s }),
                    None => continue,
                },
            };
            if let Some(v) = value
                && (r.min.is_some_and(|m| v <= m) || r.max.is_some_and(|m| v > m))
            {
                continue;
            }
            if r.from_area.is_some_and(|a| !self.in_area(leg.from, a))
                || r.to_area
                    .is_some_and(|a| leg.to.is_none_or(|to| !self.in_area(to, a)))
                || r.from_tf
                    .is_some_and(|tf| !self.in_timeframe(tf, departure))
                || r.to_tf.is_some_and(|tf| !self.in_timeframe(tf, arrival))
            {
                continue;
            }
            if self.inverse.enabled && self.excluded_by_inverse_match(r, leg, departure, arrival) {
                continue;
            }
            let basis = match overstay {
                Some(reason) => FareBasis::MaximumFare(reason),
                None => basis,
            };
            return Ok((basis, Some(ri), r.product, r.leg_group));
        }
        Err(TransitError::NoFareRule { leg: i })
    }

    /// Under inverse matching, an empty field must not match a value another rule names.
    fn excluded_by_inverse_match(
        &self,
        r: &LegRule,
        leg: &Leg,
        departure: i64,
        arrival: i64,
    ) -> bool {
        let inv = &self.inverse;
        (r.from_area.is_none()
            && inv
                .from_area_stops
                .get(leg.from.get())
                .copied()
                .unwrap_or(false))
            || (r.to_area.is_none()
                && leg
                    .to
                    .is_some_and(|to| inv.to_area_stops.get(to.get()).copied().unwrap_or(false)))
            || (r.from_tf.is_none()
                && inv
                    .from_timeframes
                    .iter()
                    .any(|tf| self.in_timeframe(*tf, departure)))
            || (r.to_tf.is_none()
                && inv
                    .to_timeframes
                    .iter()
                    .any(|tf| self.in_timeframe(*tf, arrival)))
    }

    /// A readable line for one priced leg.
    pub fn explain_leg(&self, l: &LegFare) -> String {
        let mut s = String::new();
        let product = self.products.get(l.product as usize);
        let pname = product.map_or("?", |p| p.name.as_str());
        let _ = write!(s, "leg {}: ", l.leg + 1);
        match l.basis {
            FareBasis::Distance { metres } => {
                let _ = write!(
                    s,
                    "{}.{:03} km by the shortest metro path",
                    metres / 1000,
                    metres % 1000
                );
            }
            FareBasis::Sections { count } => {
                let _ = write!(s, "{count} fare section(s)");
            }
            FareBasis::Flat => s.push_str("flat fare"),
            FareBasis::MaximumFare(MaximumFareReason::MissingTapOut) => {
                s.push_str("no tap-out recorded, so the maximum fare applies");
            }
            FareBasis::MaximumFare(MaximumFareReason::OverTimeLimit { minutes, limit }) => {
                let _ = write!(
                    s,
                    "{minutes} minutes in the system exceeds the {limit}-minute limit, so the maximum fare applies"
                );
                if l.rule.is_some() {
                    s.push_str(" (the highest single fare from the exit station)");
                }
            }
        }
        if let Some(rule) = l.rule.and_then(|r| self.leg_rules.get(r as usize)) {
            let _ = write!(
                s,
                "; fare_leg_rules.txt line {} gives {pname} {:#}",
                rule.line, l.base
            );
        } else {
            let _ = write!(s, "; {pname} {:#}", l.base);
        }
        if let Some(c) = l.concession
            && let Some(con) = self.concessions.get(c.concession as usize)
        {
            let cat = self
                .categories
                .get(con.category as usize)
                .map_or("?", |c| c.1.as_str());
            let _ = write!(
                s,
                "; concession {} ({cat}) pays {}% → {:#}",
                con.id, c.percent, l.after_concession
            );
        }
        if let Some(t) = l.tier {
            let _ = write!(
                s,
                "; monthly tier {}% (spent {:#} this month before this ride)",
                t.percent, t.spend_before
            );
        }
        if let Some(t) = l.transfer {
            let line = self
                .transfer_rules
                .get(t.rule as usize)
                .map_or(0, |r| r.line);
            let _ = write!(
                s,
                "; transfer discount {:#} (fare_transfer_rules.txt line {line})",
                t.discount
            );
        }
        let _ = write!(s, "; you pay {:#}", l.paid);
        s
    }

    /// The leg-group name of a leg rule (for reports).
    pub fn leg_group_of_rule(&self, rule: u32) -> Option<&str> {
        let g = self.leg_rules.get(rule as usize)?.leg_group?;
        self.leg_groups.get(g as usize).map(String::as_str)
    }

    /// Area and timeframe names, for reports and debugging.
    pub fn names(&self) -> (Vec<&str>, Vec<&str>) {
        (
            self.areas.iter().map(String::as_str).collect(),
            self.timeframe_names.iter().map(String::as_str).collect(),
        )
    }
}
