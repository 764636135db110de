//! Pricing journeys: effective fare legs, concessions, tiers, transfers and caps, leg by leg.

use citycard_core::Money;

use super::engine::{FareEngine, TransferRule, civil_parts, periods};
use super::matcher::{Matched, Miss, Pass};
use super::model::{
    CapApplied, CapPeriod, ConcessionApplied, FareBasis, Journey, Leg, LegFare, Medium, Quote,
    Rider, SpendSoFar, TierApplied, TransferApplied, percent_of,
};
use crate::error::TransitError;
use crate::network::{RouteIdx, StopIdx};

/// The previous priced leg of the current journey, as transfers need it.
#[derive(Debug, Clone, Copy)]
struct Prev {
    group: Option<u16>,
    departure: i64,
    arrival: i64,
    paid: Money,
    /// Consecutive transfers between the same pair of leg groups so far.
    chain: u32,
    /// The leg-group pair and rule of the transfer that reached this leg.
    via: Option<(Option<u16>, Option<u16>, u32)>,
    /// Departure and arrival of the first leg of the current transfer sub-journey.
    sub_departure: i64,
    sub_arrival: i64,
}

/// A transfer rule found for a leg, with the chain count it makes.
#[derive(Debug, Clone, Copy)]
struct Found {
    rule: u32,
    amount: Money,
    chain: u32,
}

impl FareEngine {
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

    /// [`FareEngine::price_into`] with only the month's spend known (no
    /// earlier spend in the day or week): what settlement has used so far.
    /// Appends one [`LegFare`] per leg to `out` and returns the total.
    pub fn quote_into(
        &self,
        rider: &Rider,
        month_spend_before: Money,
        legs: &[Leg],
        out: &mut Vec<LegFare>,
    ) -> Result<Money, TransitError> {
        self.price(
            rider,
            None,
            SpendSoFar::month(month_spend_before),
            legs,
            out,
        )
    }

    /// The allocation-free pricing entry point: the rider, what their account
    /// paid earlier in the day, week and month of the first leg (monthly
    /// tiers and fare caps need it), and the legs in time order. Appends one
    /// [`LegFare`] per leg to `out` and returns the total.
    pub fn price_into(
        &self,
        rider: &Rider,
        spend: SpendSoFar,
        legs: &[Leg],
        out: &mut Vec<LegFare>,
    ) -> Result<Money, TransitError> {
        self.price(rider, None, spend, legs, out)
    }

    /// [`FareEngine::price_into`] for a rider category of the feed given
    /// directly ([`FareEngine::rider_category`]) instead of found from the
    /// card kind through concessions (which then do not apply).
    pub fn price_for_category_into(
        &self,
        rider: &Rider,
        category: u16,
        spend: SpendSoFar,
        legs: &[Leg],
        out: &mut Vec<LegFare>,
    ) -> Result<Money, TransitError> {
        self.price(rider, Some(category), spend, legs, out)
    }

    fn miss(&self, leg: usize, miss: Miss, category: Option<u16>, medium: Medium) -> TransitError {
        match miss {
            Miss::NoRule => TransitError::NoFareRule { leg },
            Miss::NoPrice(p) => TransitError::NoFareForMedium {
                leg,
                product: self.product_id(p).unwrap_or("?").to_owned(),
                category: category
                    .and_then(|c| self.categories.get(c as usize))
                    .map_or_else(|| "(none)".to_owned(), |c| c.0.clone()),
                medium: medium.code(),
            },
        }
    }

    fn price(
        &self,
        rider: &Rider,
        forced_category: Option<u16>,
        spend: SpendSoFar,
        legs: &[Leg],
        out: &mut Vec<LegFare>,
    ) -> Result<Money, TransitError> {
        let mut total = Money::ZERO;
        let (mut spend_day, mut spend_week, mut spend_month) = (spend.day, spend.week, spend.month);
        let mut anchor: Option<(i64, i64, i64)> = None;
        let mut prev: Option<Prev> = None;
        // The previous priced vehicle boarding (route, stop, departure), to tell a repeat from a transfer.
        let mut prev_boarding: Option<(RouteIdx, StopIdx, i64)> = None;
        let repeat_window = i64::from(self.same_vehicle_repeat_seconds).max(60);
        let mut transfers_used = 0u32;
        let mut i = 0;
        while i < legs.len() {
            let leg = &legs[i];
            // The effective fare leg: legs joined by fare_leg_join_rules.txt.
            let mut j = i;
            while !self.join_rules.is_empty()
                && j + 1 < legs.len()
                && self.joins(&legs[j], &legs[j + 1])
            {
                j += 1;
            }
            let last = &legs[j];
            let medium = leg.medium.unwrap_or(rider.medium);
            let departure = leg.board.timestamp();
            let arrival = last
                .alight
                .map_or(last.board.timestamp(), |a| a.timestamp());

            // A new day, week or month starts its spend from zero.
            let (day, _, _) = civil_parts(departure, self.utc_offset);
            let now = periods(day);
            if let Some((d, w, m)) = anchor {
                if now.0 != d {
                    spend_day = Money::ZERO;
                }
                if now.1 != w {
                    spend_week = Money::ZERO;
                }
                if now.2 != m {
                    spend_month = Money::ZERO;
                }
            }
            anchor = Some(now);

            let found = match forced_category {
                Some(_) => None,
                None => self.concession(rider, leg.network, departure),
            };
            let tiers_allowed = found.is_none_or(|(_, c)| c.volume_tiers);
            let (category, concession) = match (forced_category, found) {
                (Some(c), _) => (Some(c), None),
                (None, Some((idx, c))) => (
                    Some(c.category),
                    Some(ConcessionApplied {
                        concession: idx,
                        percent: c.percent,
                    }),
                ),
                (None, None) => (self.default_category, None),
            };
            let tier_for = |spend: Money| {
                if !(rider.volume_tiers && tiers_allowed) {
                    return None;
                }
                self.tiers
                    .iter()
                    .enumerate()
                    .find(|(_, t)| spend >= t.min && t.max.is_none_or(|m| spend < m))
                    .map(|(ti, t)| TierApplied {
                        tier: ti as u32,
                        percent: t.percent,
                        spend_before: spend,
                    })
            };
            // Concession first, then the monthly tier on the fare after it.
            let after = |base: Money| {
                let after_concession = match concession {
                    Some(c) => percent_of(base, c.percent),
                    None => base,
                };
                let tier = tier_for(spend_month);
                let after_tier = match tier {
                    Some(t) => percent_of(after_concession, t.percent),
                    None => after_concession,
                };
                (after_concession, tier, after_tier)
            };

            // Boarding the same route at the same stop again within the repeat
            // window (at least the same minute) is a repeat, not a transfer.
            let repeat = leg.route.is_some_and(|route| {
                prev_boarding.is_some_and(|(r, s, t)| {
                    r == route && s == leg.from && (0..repeat_window).contains(&(departure - t))
                })
            });
            if let Some(route) = leg.route {
                prev_boarding = Some((route, leg.from, departure));
            }
            let may_transfer = !repeat
                && self
                    .transfers_per_journey
                    .is_none_or(|m| transfers_used < m);
            let prev_for_transfer = prev.filter(|_| may_transfer);

            // A transfer-only rule prices the leg when a transfer reaches it.
            let mut chosen: Option<(Matched, Option<Found>)> = None;
            if let Some(p) = prev_for_transfer
                && let Ok(m) = self.base_fare(i, leg, last, category, medium, Pass::TransferOnly)?
                && let Some(f) =
                    self.find_transfer(&p, m.group, departure, arrival, category, medium)
            {
                chosen = Some((m, Some(f)));
            }
            let (matched, transfer_found) = match chosen {
                Some(c) => c,
                None => {
                    let m = self
                        .base_fare(i, leg, last, category, medium, Pass::Ordinary)?
                        .map_err(|miss| self.miss(i, miss, category, medium))?;
                    let is_max = matches!(m.basis, FareBasis::MaximumFare(_));
                    let f = match prev_for_transfer {
                        Some(p) if !is_max => {
                            self.find_transfer(&p, m.group, departure, arrival, category, medium)
                        }
                        _ => None,
                    };
                    (m, f)
                }
            };
            let base = matched.amount;
            let (after_concession, tier, after_tier) = after(base);
            let mut paid = after_tier;
            let mut transfer = None;
            let is_max = matches!(matched.basis, FareBasis::MaximumFare(_));
            if is_max {
                prev = None;
                transfers_used = 0;
            } else if !repeat {
                let mut next = Prev {
                    group: matched.group,
                    departure,
                    arrival,
                    paid,
                    chain: 0,
                    via: None,
                    sub_departure: departure,
                    sub_arrival: arrival,
                };
                match (transfer_found, prev) {
                    (Some(f), Some(p)) => {
                        let r = &self.transfer_rules[f.rule as usize];
                        let raw = match r.kind {
                            0 => f.amount.fen(),
                            1 => after_tier.fen().saturating_add(f.amount.fen()),
                            // AB replaces A + B on the first transfer; later ones add BC.
                            _ if p.via.is_some() => f.amount.fen(),
                            _ => f.amount.fen().saturating_sub(p.paid.fen()),
                        };
                        // Never below zero, never a discount above the cap.
                        let mut new_paid = Money::from_fen(raw.max(0));
                        if let Some(cap) = self.transfer_cap
                            && after_tier.fen() - new_paid.fen() > cap.fen()
                        {
                            new_paid = Money::from_fen(after_tier.fen() - cap.fen());
                        }
                        transfer = Some(TransferApplied {
                            rule: f.rule,
                            discount: Money::from_fen(after_tier.fen() - new_paid.fen()),
                        });
                        paid = new_paid;
                        transfers_used += 1;
                        let same_chain = p.via.is_some_and(|(a, b, rule)| {
                            (a, b) == (p.group, matched.group) && rule == f.rule
                        });
                        next.chain = f.chain;
                        next.via = Some((p.group, matched.group, f.rule));
                        next.paid = paid;
                        (next.sub_departure, next.sub_arrival) = if same_chain {
                            (p.sub_departure, p.sub_arrival)
                        } else {
                            (p.departure, p.arrival)
                        };
                    }
                    _ => transfers_used = 0,
                }
                prev = Some(next);
            }

            // Fare caps: the tightest cap whose room this period is below the fare.
            let mut cap = None;
            for (ci, c) in self.caps.iter().enumerate() {
                if c.category.is_some_and(|x| Some(x) != category)
                    || c.media_type.is_some_and(|t| t != medium.fare_media_type())
                {
                    continue;
                }
                let spent = match c.period {
                    CapPeriod::Day => spend_day,
                    CapPeriod::Week => spend_week,
                    CapPeriod::Month => spend_month,
                };
                let room = Money::from_fen(c.amount.fen().saturating_sub(spent.fen()).max(0));
                if paid > room {
                    let reduced_by = Money::from_fen(paid.fen() - room.fen());
                    if cap.is_none_or(|x: CapApplied| reduced_by > x.reduced_by) {
                        cap = Some(CapApplied {
                            cap: ci as u32,
                            period: c.period,
                            reduced_by,
                        });
                    }
                }
            }
            if let Some(c) = cap {
                paid = paid.checked_sub(c.reduced_by)?;
                if let Some(p) = prev.as_mut() {
                    p.paid = paid;
                }
            }

            spend_day = spend_day.checked_add(paid)?;
            spend_week = spend_week.checked_add(paid)?;
            spend_month = spend_month.checked_add(paid)?;
            total = total.checked_add(paid)?;
            out.push(LegFare {
                leg: i,
                basis: matched.basis,
                rule: matched.rule,
                product: matched.product,
                base,
                concession,
                after_concession,
                transfer,
                tier,
                cap,
                joined_to: None,
                medium,
                paid,
            });
            for (k, joined) in legs.iter().enumerate().take(j + 1).skip(i + 1) {
                out.push(LegFare {
                    leg: k,
                    basis: matched.basis,
                    rule: matched.rule,
                    product: matched.product,
                    base: Money::ZERO,
                    concession: None,
                    after_concession: Money::ZERO,
                    transfer: None,
                    tier: None,
                    cap: None,
                    joined_to: Some(i),
                    medium: joined.medium.unwrap_or(rider.medium),
                    paid: Money::ZERO,
                });
            }
            i = j + 1;
        }
        Ok(total)
    }

    /// The transfer rule for a transfer from `p` to a leg of `group`, after
    /// the reference: an empty leg group matches the groups no rule names in
    /// that field; among matching rules, the one with the smallest
    /// `transfer_count` not below the chain's count (file order on ties);
    /// the duration is measured from the first leg of a chain of the same rule.
    #[allow(clippy::too_many_arguments)]
    fn find_transfer(
        &self,
        p: &Prev,
        group: Option<u16>,
        departure: i64,
        arrival: i64,
        category: Option<u16>,
        medium: Medium,
    ) -> Option<Found> {
        let (pg, g) = (p.group?, group?);
        if departure < p.arrival {
            return None;
        }
        let mut best: Option<(u32, Found)> = None;
        for (ri, r) in self.transfer_rules.iter().enumerate() {
            let ri = ri as u32;
            if !self.groups_match(r, pg, g) {
                continue;
            }
            let same_pair = p.via.is_some_and(|(a, b, _)| (a, b) == (Some(pg), Some(g)));
            let chain = if pg == g && same_pair { p.chain + 1 } else { 1 };
            if pg == g && r.transfer_count >= 0 && chain > r.transfer_count as u32 {
                continue;
            }
            let (start_dep, start_arr) = match p.via {
                Some((_, _, rule)) if rule == ri && same_pair => (p.sub_departure, p.sub_arrival),
                _ => (p.departure, p.arrival),
            };
            let gap = match r.duration_type {
                0 => arrival - start_dep,
                1 => departure - start_dep,
                2 => departure - start_arr,
                _ => arrival - start_arr,
            };
            if gap < r.min_duration || r.duration_limit.is_some_and(|d| gap > d) {
                continue;
            }
            let amount = match r.product {
                Some(product) => match self.amount(product, category, medium) {
                    Some(a) => a,
                    // The transfer product is not sold for this medium or category.
                    None => continue,
                },
                None => Money::ZERO,
            };
            let key = if r.transfer_count < 0 {
                u32::MAX
            } else {
                r.transfer_count as u32
            };
            if best.is_none_or(|(k, _)| key < k) {
                best = Some((
                    key,
                    Found {
                        rule: ri,
                        amount,
                        chain,
                    },
                ));
            }
        }
        best.map(|(_, f)| f)
    }

    /// Leg-group matching of a transfer rule, with the reference's inverse
    /// reading of an empty `from_leg_group_id` / `to_leg_group_id`.
    #[inline]
    fn groups_match(&self, r: &TransferRule, from: u16, to: u16) -> bool {
        let from_ok = match r.from_group {
            Some(x) => x == from,
            None => self.transfer_from_groups.binary_search(&from).is_err(),
        };
        let to_ok = match r.to_group {
            Some(x) => x == to,
            None => self.transfer_to_groups.binary_search(&to).is_err(),
        };
        from_ok && to_ok
    }
}
