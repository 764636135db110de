//! Matching a leg (or an effective fare leg) against `fare_leg_rules.txt`,
//! and finding a product's price for a rider category and medium.

use citycard_core::Money;

use super::engine::{Candidates, Concession, DistanceType, FareEngine, LegRule, civil_parts};
use super::model::{FareBasis, Leg, MaximumFareReason, Medium, Rider};
use crate::error::TransitError;
use crate::network::{NetworkIdx, StopIdx};

/// A leg rule (or maximum fare) chosen for a leg, with its price.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Matched {
    pub(crate) basis: FareBasis,
    pub(crate) rule: Option<u32>,
    pub(crate) product: u32,
    pub(crate) group: Option<u16>,
    pub(crate) amount: Money,
}

/// Why no rule priced a leg.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Miss {
    /// No rule matched.
    NoRule,
    /// Rules matched, but this product has no price for the rider's category and medium.
    NoPrice(u32),
}

/// Which leg rules a pass considers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// Ordinary rules (not `transfer_only`).
    Ordinary,
    /// Only `transfer_only` rules (the leg is reached by a transfer).
    TransferOnly,
}

impl FareEngine {
    /// Whether a service runs on a civil day.
    #[inline]
    fn service_runs(&self, service: u32, day: i64, weekday: u8) -> bool {
        let Some(s) = self.services.get(service as usize) else {
            return false;
        };
        if !s.removed.is_empty() && s.removed.binary_search(&day).is_ok() {
            return false;
        }
        if !s.added.is_empty() && s.added.binary_search(&day).is_ok() {
            return true;
        }
        s.regular
            && day >= s.from_day
            && day <= s.to_day
            && if s.working_days {
                self.working_days.is_working(day, weekday)
            } else {
                s.weekdays & weekday != 0
            }
    }

    #[inline]
    pub(crate) fn in_timeframe(&self, group: u16, at_secs: i64) -> bool {
        let (day, secs, weekday) = civil_parts(at_secs, self.utc_offset);
        self.timeframes.get(group as usize).is_some_and(|frames| {
            frames.iter().any(|f| {
                secs >= f.start && secs < f.end && self.service_runs(f.service, day, weekday)
            })
        })
    }

    #[inline]
    pub(crate) fn in_area(&self, stop: StopIdx, area: u16) -> bool {
        self.stop_areas
            .get(stop.get())
            .is_some_and(|a| a.contains(&area))
    }

    #[inline]
    fn in_any_area(&self, stop: StopIdx, areas: &[u16]) -> bool {
        !areas.is_empty()
            && self
                .stop_areas
                .get(stop.get())
                .is_some_and(|a| a.iter().any(|x| areas.binary_search(x).is_ok()))
    }

    /// A product's price for a category and medium: a row for the category
    /// beats one for any category, a row for the medium beats one with no
    /// medium; a rider whose category has no row may pay the default
    /// category's price.
    #[inline]
    pub(crate) fn amount(
        &self,
        product: u32,
        category: Option<u16>,
        medium: Medium,
    ) -> Option<Money> {
        let p = self.products.get(product as usize)?;
        let media_type = medium.fare_media_type();
        let mut best: Option<(u8, Money)> = None;
        for (c, m, amount) in &p.amounts {
            if let Some(m) = m
                && self
                    .media
                    .get(*m as usize)
                    .is_none_or(|(_, _, t)| *t != media_type)
            {
                continue;
            }
            let score = match (
                c.is_some() && *c == category,
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

    pub(crate) fn concession(
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

    /// Whether `fare_leg_join_rules.txt` joins leg `b` to the leg `a` before it.
    pub(crate) fn joins(&self, a: &Leg, b: &Leg) -> bool {
        let Some(a_end) = a.to else {
            return false;
        };
        if a.alight.is_none() || (self.requires_tap_out(b.network) && b.to.is_none()) {
            return false;
        }
        self.join_rules.iter().any(|r| {
            r.from_network == a.network
                && r.to_network == b.network
                && match (r.from_stop, r.to_stop) {
                    (Some(f), Some(t)) => {
                        self.network.station_of(a_end) == self.network.station_of(f)
                            && self.network.station_of(b.from) == self.network.station_of(t)
                    }
                    _ => self.network.station_of(a_end) == self.network.station_of(b.from),
                }
        })
    }

    /// Whether a rule's travel fields match the effective leg `first..=last`.
    #[inline]
    fn rule_matches(
        &self,
        r: &LegRule,
        c: &Candidates,
        first: &Leg,
        last: &Leg,
        departure: i64,
        arrival: i64,
    ) -> bool {
        let from_ok = match r.from_area {
            Some(a) => self.in_area(first.from, a),
            None => self.priority_mode || !self.in_any_area(first.from, &c.from_areas),
        };
        let to_ok = match (r.to_area, last.to) {
            (Some(a), Some(to)) => self.in_area(to, a),
            (Some(_), None) => false,
            (None, Some(to)) => self.priority_mode || !self.in_any_area(to, &c.to_areas),
            (None, None) => true,
        };
        let from_tf_ok = match r.from_tf {
            Some(tf) => self.in_timeframe(tf, departure),
            None => {
                self.priority_mode
                    || !c
                        .from_tfs
                        .iter()
                        .any(|tf| self.in_timeframe(*tf, departure))
            }
        };
        let to_tf_ok = match r.to_tf {
            Some(tf) => self.in_timeframe(tf, arrival),
            None => {
                self.priority_mode || !c.to_tfs.iter().any(|tf| self.in_timeframe(*tf, arrival))
            }
        };
        from_ok && to_ok && from_tf_ok && to_tf_ok
    }

    /// The base fare of the effective fare leg `first..=last` (one leg when
    /// they are the same): the highest-priority matching rules, and among them
    /// the cheapest priced for the category and medium.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn base_fare(
        &self,
        i: usize,
        first: &Leg,
        last: &Leg,
        category: Option<u16>,
        medium: Medium,
        pass: Pass,
    ) -> Result<Result<Matched, Miss>, TransitError> {
        let invalid = |reason: &str| TransitError::InvalidLeg {
            leg: i,
            reason: reason.to_owned(),
        };
        let departure = first.board.timestamp();
        let arrival = last.alight.map_or(departure, |a| a.timestamp());
        let n = first.network.get();
        let c = self
            .candidates
            .get(n)
            .ok_or_else(|| invalid("unknown network"))?;
        if pass == Pass::TransferOnly && !c.has_transfer_only {
            return Ok(Err(Miss::NoRule));
        }
        for leg in [first, last] {
            if leg.alight.is_some_and(|a| a < leg.board) {
                return Err(invalid("alighting is before boarding"));
            }
            if leg.to.is_some() != leg.alight.is_some() {
                return Err(invalid("a tap-out needs both a stop and a time"));
            }
        }
        let single = std::ptr::eq(first, last);
        let mut overstay = None;
        if single && pass == Pass::Ordinary {
            let limit = self.limits.get(n).copied().unwrap_or_default();
            if limit.requires_tap_out {
                let reason = match first.alight {
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
                    let group = c
                        .rules
                        .first()
                        .and_then(|r| self.leg_rules.get(*r as usize))
                        .and_then(|r| r.leg_group);
                    return Ok(match self.amount(p, category, medium) {
                        Some(amount) => Ok(Matched {
                            basis: FareBasis::MaximumFare(reason),
                            rule: None,
                            product: p,
                            group,
                            amount,
                        }),
                        None => Err(Miss::NoPrice(p)),
                    });
                }
            }
        }
        let metres = match (last.to, overstay) {
            (Some(to), Some(_)) => Some(
                self.network
                    .farthest_metro_distance(to)
                    .ok_or_else(|| invalid("the exit station has no metro distances"))?,
            ),
            (Some(to), None) => self.network.metro_distance(first.from, to),
            (None, _) => None,
        };
        let sections = match (first.route, last.to) {
            (Some(r), Some(to)) if last.route == Some(r) => {
                self.network.sections_ridden(r, first.from, to)
            }
            _ => None,
        };
        let mut best: Option<Matched> = None;
        let mut unpriced: Option<u32> = None;
        let mut chosen_priority: Option<i32> = None;
        for &ri in &c.rules {
            let Some(r) = self.leg_rules.get(ri as usize) else {
                continue;
            };
            if chosen_priority.is_some_and(|p| r.priority < p) {
                break;
            }
            if r.transfer_only != (pass == Pass::TransferOnly) {
                continue;
            }
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
            if !self.rule_matches(r, c, first, last, departure, arrival) {
                continue;
            }
            chosen_priority = Some(r.priority);
            let Some(amount) = self.amount(r.product, category, medium) else {
                unpriced.get_or_insert(r.product);
                continue;
            };
            if best.is_none_or(|b| amount < b.amount) {
                best = Some(Matched {
                    basis: match overstay {
                        Some(reason) => FareBasis::MaximumFare(reason),
                        None => basis,
                    },
                    rule: Some(ri),
                    product: r.product,
                    group: r.leg_group,
                    amount,
                });
            }
        }
        Ok(match (best, unpriced) {
            (Some(m), _) => Ok(m),
            (None, Some(p)) => Err(Miss::NoPrice(p)),
            (None, None) => Err(Miss::NoRule),
        })
    }
}
