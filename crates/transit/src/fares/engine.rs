//! The loaded rules ([`FareEngine`]): internal rule records, civil time, and the engine's accessors.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use citycard_core::{Money, WorkingCalendar};

use super::currency::Currency;
use super::model::{CapPeriod, CardKind, Leg, Medium};
use crate::data::FareData;
use crate::error::{LoadError, TransitError};
use crate::network::{NetworkIdx, StopIdx, TransitNetwork};

#[cfg(test)]
mod tests {
    use super::periods;

    #[test]
    fn periods_follow_the_civil_calendar() {
        use chrono::{Datelike, NaiveDate};
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        for d in [-800_000i64, -1, 0, 31, 59, 10_956, 20_454, 20_483, 800_000] {
            let date = epoch + chrono::Duration::days(d);
            let (_, week, month) = periods(d);
            assert_eq!(
                month,
                i64::from(date.year()) * 12 + i64::from(date.month0()),
                "{date}"
            );
            let monday =
                date - chrono::Duration::days(i64::from(date.weekday().num_days_from_monday()));
            assert_eq!(week, periods((monday - epoch).num_days()).1);
            assert_eq!(week, (d + 3).div_euclid(7));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DistanceType {
    None,
    Km,
    Sections,
}

#[derive(Debug, Clone)]
pub(crate) struct LegRule {
    pub(crate) leg_group: Option<u16>,
    pub(crate) network: Option<NetworkIdx>,
    pub(crate) from_area: Option<u16>,
    pub(crate) to_area: Option<u16>,
    pub(crate) from_tf: Option<u16>,
    pub(crate) to_tf: Option<u16>,
    pub(crate) product: u32,
    pub(crate) priority: i32,
    pub(crate) min: Option<u32>,
    pub(crate) max: Option<u32>,
    pub(crate) distance: DistanceType,
    /// Producer extension `transfer_only`: the rule prices only a leg reached by a transfer.
    pub(crate) transfer_only: bool,
    pub(crate) line: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct TransferRule {
    pub(crate) from_group: Option<u16>,
    pub(crate) to_group: Option<u16>,
    /// `-1` = no limit.
    pub(crate) transfer_count: i32,
    pub(crate) duration_limit: Option<i64>,
    pub(crate) duration_type: u8,
    /// Minimum gap in seconds, measured like `duration_limit` (citycard `min_duration`).
    pub(crate) min_duration: i64,
    pub(crate) kind: u8,
    pub(crate) product: Option<u32>,
    pub(crate) line: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct JoinRule {
    pub(crate) from_network: NetworkIdx,
    pub(crate) to_network: NetworkIdx,
    pub(crate) from_stop: Option<StopIdx>,
    pub(crate) to_stop: Option<StopIdx>,
}

#[derive(Debug, Clone)]
pub(crate) struct Product {
    pub(crate) id: String,
    pub(crate) name: String,
    /// (category, media, amount)
    pub(crate) amounts: Vec<(Option<u16>, Option<u16>, Money)>,
}

/// The days of one `service_id` (calendar.txt and calendar_dates.txt).
#[derive(Debug, Clone, Default)]
pub(crate) struct Service {
    pub(crate) weekdays: u8,
    /// The days are the statutory working days of the engine's calendar (weekdays ignored).
    pub(crate) working_days: bool,
    pub(crate) from_day: i64,
    pub(crate) to_day: i64,
    /// Whether calendar.txt defines the service (else only its added dates run).
    pub(crate) regular: bool,
    /// calendar_dates.txt exception_type 1, sorted.
    pub(crate) added: Vec<i64>,
    /// calendar_dates.txt exception_type 2, sorted.
    pub(crate) removed: Vec<i64>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeframe {
    pub(crate) start: u32,
    pub(crate) end: u32,
    pub(crate) service: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Concession {
    pub(crate) id: String,
    pub(crate) card_kind: Option<CardKind>,
    pub(crate) min_age: Option<u8>,
    pub(crate) max_age: Option<u8>,
    pub(crate) timeframe: Option<u16>,
    pub(crate) network: Option<NetworkIdx>,
    pub(crate) category: u16,
    pub(crate) percent: u16,
    pub(crate) priority: i32,
    /// Whether the monthly volume tiers may apply on top.
    pub(crate) volume_tiers: bool,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Tier {
    pub(crate) min: Money,
    pub(crate) max: Option<Money>,
    pub(crate) percent: u16,
}

#[derive(Debug, Clone)]
pub(crate) struct Cap {
    pub(crate) id: String,
    pub(crate) period: CapPeriod,
    pub(crate) amount: Money,
    pub(crate) category: Option<u16>,
    pub(crate) media_type: Option<u8>,
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NetworkLimit {
    pub(crate) requires_tap_out: bool,
    pub(crate) max_duration_minutes: Option<u32>,
    pub(crate) maximum_product: Option<u32>,
    /// An overstay pays the highest single fare from the exit station (not `maximum_product`).
    pub(crate) overstay_from_exit: bool,
}

/// The leg rules that can price a leg of one network, highest priority first,
/// and what inverse matching needs among them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Candidates {
    pub(crate) rules: Vec<u32>,
    /// Whether any candidate is `transfer_only`.
    pub(crate) has_transfer_only: bool,
    /// Values named by some candidate (inverse matching only), sorted.
    pub(crate) from_areas: Vec<u16>,
    pub(crate) to_areas: Vec<u16>,
    pub(crate) from_tfs: Vec<u16>,
    pub(crate) to_tfs: Vec<u16>,
}

/// The loaded network and fare rules, ready to price journeys.
#[derive(Debug, Clone)]
pub struct FareEngine {
    pub(crate) network: TransitNetwork,
    pub(crate) currency: Currency,
    pub(crate) leg_groups: Vec<String>,
    pub(crate) categories: Vec<(String, String)>,
    pub(crate) default_category: Option<u16>,
    /// (id, name, fare_media_type)
    pub(crate) media: Vec<(String, String, u8)>,
    pub(crate) products: Vec<Product>,
    pub(crate) product_index: HashMap<String, u32>,
    pub(crate) leg_rules: Vec<LegRule>,
    /// Whether `fare_leg_rules.txt` has `rule_priority` (else GTFS inverse matching).
    pub(crate) priority_mode: bool,
    pub(crate) candidates: Vec<Candidates>,
    pub(crate) transfer_rules: Vec<TransferRule>,
    /// Leg groups named in `from_leg_group_id` / `to_leg_group_id`, sorted.
    pub(crate) transfer_from_groups: Vec<u16>,
    pub(crate) transfer_to_groups: Vec<u16>,
    pub(crate) join_rules: Vec<JoinRule>,
    pub(crate) services: Vec<Service>,
    pub(crate) timeframes: Vec<Vec<Timeframe>>,
    pub(crate) timeframe_names: Vec<String>,
    pub(crate) areas: Vec<String>,
    pub(crate) stop_areas: Vec<Vec<u16>>,
    pub(crate) concessions: Vec<Concession>,
    pub(crate) tiers: Vec<Tier>,
    pub(crate) caps: Vec<Cap>,
    pub(crate) limits: Vec<NetworkLimit>,
    pub(crate) transfer_cap: Option<Money>,
    pub(crate) transfers_per_journey: Option<u32>,
    pub(crate) same_vehicle_repeat_seconds: u32,
    /// Civil time offset from UTC in seconds (Asia/Shanghai: +8 h).
    pub(crate) utc_offset: i64,
    pub(crate) working_days: WorkingDays,
}

/// Statutory working days as a bitset over the calendar's covered years, for the hot path.
#[derive(Debug, Clone, Default)]
pub(crate) struct WorkingDays {
    /// Days since 1970-01-01 of the first bit.
    first: i64,
    /// Number of days covered.
    len: i64,
    bits: Vec<u64>,
}

impl WorkingDays {
    pub(crate) fn new(calendar: &WorkingCalendar) -> Self {
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
    pub(crate) fn is_working(&self, day: i64, weekday_bit: u8) -> bool {
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

/// Civil parts of an instant: (days since epoch, seconds in day, weekday bit with Monday = 1).
#[inline]
pub(crate) fn civil_parts(at_secs: i64, offset: i64) -> (i64, u32, u8) {
    let local = at_secs + offset;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400) as u32;
    // 1970-01-01 was a Thursday (Monday = 0 → Thursday = 3).
    let weekday = (days + 3).rem_euclid(7) as u8;
    (days, secs, 1 << weekday)
}

/// The civil (day, Monday-based week, month) of a civil day number.
#[inline]
pub(crate) fn periods(day: i64) -> (i64, i64, i64) {
    // Day 0 (1970-01-01) is a Thursday: the week starting Monday 1969-12-29 is week 0.
    let week = (day + 3).div_euclid(7);
    // Civil year and month from days (the proleptic Gregorian "days from civil" inverse).
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month0 = if mp < 10 { mp + 2 } else { mp - 10 };
    let year = yoe + era * 400 + i64::from(month0 <= 1);
    (day, week, year * 12 + month0)
}

impl FareEngine {
    /// The Hangzhou rule set and sample network embedded in the crate.
    pub fn hangzhou() -> Result<Self, LoadError> {
        Self::load(&FareData::hangzhou())
    }

    /// Judges working-day timeframes by this calendar (e.g. one extended with a new year's notice).
    pub fn set_working_calendar(&mut self, calendar: &WorkingCalendar) {
        self.working_days = WorkingDays::new(calendar);
    }

    /// The network the rules apply to.
    pub fn network(&self) -> &TransitNetwork {
        &self.network
    }

    /// The currency every amount of this feed is in (amounts are its minor units).
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// Refuses a feed priced in another currency than `required` (the citycard facade charges CNY).
    pub fn require_currency(&self, required: Currency) -> Result<(), TransitError> {
        if self.currency == required {
            Ok(())
        } else {
            Err(TransitError::WrongCurrency {
                feed: self.currency.code().to_owned(),
                required: required.code().to_owned(),
            })
        }
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

    /// A rider category's index by id (for [`FareEngine::price_for_category_into`]).
    pub fn rider_category(&self, id: &str) -> Option<u16> {
        self.categories
            .iter()
            .position(|(c, _)| c == id)
            .and_then(|i| u16::try_from(i).ok())
    }

    /// A fare medium of the feed by id: its medium type.
    pub fn fare_media(&self, id: &str) -> Option<Medium> {
        self.media
            .iter()
            .find(|(m, _, _)| m == id)
            .and_then(|(_, _, t)| Medium::from_fare_media_type(*t))
    }

    /// The line in `fare_leg_rules.txt` of a leg rule (header = line 1).
    pub fn leg_rule_line(&self, rule: u32) -> Option<u64> {
        self.leg_rules.get(rule as usize).map(|r| r.line)
    }

    /// The line in `fare_transfer_rules.txt` of a transfer rule (header = line 1).
    pub fn transfer_rule_line(&self, rule: u32) -> Option<u64> {
        self.transfer_rules.get(rule as usize).map(|r| r.line)
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
            medium: None,
        })
    }

    /// Builds a gated leg between stations of a network.
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
            medium: None,
        })
    }

    fn stop(&self, id: &str) -> Result<StopIdx, TransitError> {
        self.network.stop(id).ok_or_else(|| TransitError::Unknown {
            kind: "stop",
            name: id.to_owned(),
        })
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
