//! Day settlement as a plan: the pure half of "decide, then commit".
//!
//! [`plan_chunk`] prices a chunk of cards' trips and returns a [`ChunkPlan`]:
//! the fares to charge and the trips to record. It reads nothing but its
//! arguments (the fare engine, the trips, and a [`SettlementPrefetch`] of
//! rider profiles, month spend and trips already settled), so the same
//! inputs always give the same plan. The [`FarePayments`](crate::FarePayments)
//! port then charges the plan's fares as one ledger batch and commits
//! [`ChargePlan::resolve`] — the trips, arrears and denials that follow from
//! each charge's outcome — in the same transaction.
//!
//! [`plan_day`] is the whole day at once, for tests and small days.

use chrono::{DateTime, NaiveDate, Utc};
use citycard_core::{AuditOutcome, AuditRecord, CoreChanges, IdempotencyKey, Money, Principal};
use serde::{Deserialize, Serialize};

use crate::error::TransitError;
use crate::fares::{FareBasis, FareEngine, Leg, LegFare, Rider, SpendSoFar};
use crate::fasthash::{FxHashMap, FxHashSet};
use crate::settlement::{CardFailure, ChargeOutcome, FareCharge, SettlementReport};
use crate::store::{
    ArrearsEntry, DenyEntry, DenyReason, SettledTrip, TransitChanges, TripId, TripPayment,
};
use crate::taps::{CardRef, Trip};

/// The most fares one chunk charges: one ledger batch (TigerBeetle's limit).
pub const MAX_CHARGES_PER_CHUNK: usize = 8_190;

/// What deciding a chunk needs from storage, loaded in one round trip per source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementPrefetch {
    /// Rider profile per card (a card missing here rides as [`Rider::default`]).
    pub riders: FxHashMap<CardRef, Rider>,
    /// What each card paid on earlier days of the week and month (missing:
    /// nothing); the day's own trips are priced as one sequence, so its `day` is zero.
    pub spend: FxHashMap<CardRef, SpendSoFar>,
    /// Trips of these cards already settled for the day.
    pub settled: FxHashSet<TripId>,
}

/// A trip the plan records, and the charge (index into [`ChunkPlan::charges`]) it waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTrip {
    /// The trip as it will be stored (its payment is set by [`ChargePlan::resolve`]).
    pub trip: SettledTrip,
    /// Its charge, when the fare is positive.
    pub charge: Option<usize>,
    /// Whether it was charged the maximum fare.
    pub maximum_fare: bool,
    /// Transfer discount given on it.
    pub transfer_discount: Money,
}

/// A set of fares to charge, and the transit rows that follow from their outcomes.
///
/// The [`FarePayments`](crate::FarePayments) port charges
/// [`ChargePlan::charges`] and commits [`ChargePlan::resolve`] of their
/// outcomes with them, atomically.
pub trait ChargePlan: Send + Sync {
    /// The fares, in order.
    fn charges(&self) -> &[FareCharge];
    /// The rows to commit given one outcome per charge (pure).
    fn resolve(&self, outcomes: &[ChargeOutcome]) -> TransitChanges;
}

/// A chunk of a day's settlement, decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkPlan {
    /// The civil day.
    pub day: NaiveDate,
    /// Who settles (named in the audit records of denials).
    pub principal: Principal,
    /// When the plan was decided (the time of arrears and denials).
    pub at: DateTime<Utc>,
    /// The fares to charge, one per paying trip.
    pub charges: Vec<FareCharge>,
    /// The trips to record.
    pub trips: Vec<PlannedTrip>,
    /// Trips of the chunk already settled by an earlier run.
    pub already_settled: u64,
    /// Cards whose trips could not be priced (nothing planned for them).
    pub unpriced: Vec<CardRef>,
}

impl ChargePlan for ChunkPlan {
    fn charges(&self) -> &[FareCharge] {
        &self.charges
    }

    fn resolve(&self, outcomes: &[ChargeOutcome]) -> TransitChanges {
        let mut changes = TransitChanges::default();
        let mut denied: Option<CardRef> = None;
        let refused = self.refused_cards(outcomes);
        for planned in &self.trips {
            if refused.contains(&planned.trip.card) {
                continue;
            }
            let payment = match planned.charge.map(|i| outcomes.get(i)) {
                None => TripPayment::Free,
                Some(Some(
                    ChargeOutcome::Charged { .. } | ChargeOutcome::AlreadyCharged { .. },
                )) => TripPayment::Charged,
                Some(Some(ChargeOutcome::InsufficientFunds)) => {
                    let card = planned.trip.card;
                    changes.arrears.push(ArrearsEntry {
                        card,
                        trip: planned.trip.id.clone(),
                        amount: planned.trip.amount,
                        at: self.at,
                    });
                    if denied != Some(card) {
                        denied = Some(card);
                        changes.deny.push(DenyEntry {
                            card,
                            reason: DenyReason::Arrears,
                            since: self.at,
                        });
                        changes.core.audit.push(
                            AuditRecord::new(
                                self.at,
                                self.principal.clone(),
                                "transit.deny",
                                format!("card:{card}"),
                                AuditOutcome::Succeeded,
                            )
                            .with("reason", "arrears"),
                        );
                    }
                    TripPayment::Arrears
                }
                // Missing: the trip stays unsettled for a re-run.
                Some(_) => continue,
            };
            let mut trip = planned.trip.clone();
            trip.payment = payment;
            changes.trips.push(trip);
        }
        changes
    }
}

impl ChunkPlan {
    /// The cards with a refused charge: none of their trips is recorded (a
    /// re-run settles them whole; charges that did go through replay by key).
    fn refused_cards(&self, outcomes: &[ChargeOutcome]) -> FxHashSet<CardRef> {
        self.trips
            .iter()
            .filter(|p| {
                p.charge
                    .and_then(|i| outcomes.get(i))
                    .is_some_and(|o| matches!(o, ChargeOutcome::Refused { .. }))
            })
            .map(|p| p.trip.card)
            .collect()
    }

    /// What this chunk did, given its charges' outcomes (the counts a
    /// [`SettlementReport`] adds up; `day` and `taps` are left empty).
    pub fn tally(&self, outcomes: &[ChargeOutcome]) -> Result<SettlementReport, TransitError> {
        let mut report = SettlementReport {
            trips_already_settled: self.already_settled,
            cards_unpriced: self.unpriced.len() as u64,
            ..SettlementReport::default()
        };
        let mut in_arrears: Option<CardRef> = None;
        let refused = self.refused_cards(outcomes);
        for planned in &self.trips {
            let trip = &planned.trip;
            if refused.contains(&trip.card) {
                // Money this run moved for the card still counts; its trips do not.
                if let Some(ChargeOutcome::Charged { .. }) =
                    planned.charge.and_then(|i| outcomes.get(i))
                {
                    report.charges += 1;
                    report.charged = report.charged.checked_add(trip.amount)?;
                }
                if let Some(ChargeOutcome::Refused { reason }) =
                    planned.charge.and_then(|i| outcomes.get(i))
                    && !report.cards_failed.iter().any(|f| f.card == trip.card)
                {
                    report.cards_failed.push(CardFailure {
                        card: trip.card,
                        reason: reason.clone(),
                    });
                }
                continue;
            }
            if let Some(i) = planned.charge {
                match outcomes.get(i) {
                    Some(ChargeOutcome::Charged { .. }) => {
                        report.charges += 1;
                        report.charged = report.charged.checked_add(trip.amount)?;
                        let revenue = report
                            .revenue_by_operator
                            .entry(trip.operator.clone())
                            .or_insert(Money::ZERO);
                        *revenue = revenue.checked_add(trip.amount)?;
                    }
                    Some(ChargeOutcome::AlreadyCharged { .. }) => report.charges_replayed += 1,
                    Some(ChargeOutcome::InsufficientFunds) => {
                        report.arrears = report.arrears.checked_add(trip.amount)?;
                        if in_arrears != Some(trip.card) {
                            in_arrears = Some(trip.card);
                            report.cards_in_arrears += 1;
                        }
                    }
                    Some(ChargeOutcome::Refused { .. }) | None => {
                        report.trips_pending += 1;
                        continue;
                    }
                }
            }
            report.trips_settled += 1;
            if planned.maximum_fare {
                report.maximum_fares += 1;
            }
            report.base_fares = report.base_fares.checked_add(trip.base)?;
            report.discounts = report
                .discounts
                .checked_add(trip.base.checked_sub(trip.amount)?)?;
            report.transfer_discounts = report
                .transfer_discounts
                .checked_add(planned.transfer_discount)?;
        }
        Ok(report)
    }

    /// The cards this chunk plans for, in order (each once).
    pub fn cards(&self) -> Vec<CardRef> {
        let mut cards: Vec<CardRef> = self.trips.iter().map(|t| t.trip.card).collect();
        cards.dedup();
        cards
    }
}

/// Arrears collected in one charge: the card's open arrears cleared and its
/// arrears denial lifted when the charge succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrearsPlan {
    /// The one charge (the sum of the open arrears).
    pub charge: FareCharge,
    /// The trips whose arrears it pays.
    pub trips: Vec<TripId>,
    /// Who collects (audited).
    pub principal: Principal,
}

impl ChargePlan for ArrearsPlan {
    fn charges(&self) -> &[FareCharge] {
        std::slice::from_ref(&self.charge)
    }

    fn resolve(&self, outcomes: &[ChargeOutcome]) -> TransitChanges {
        let mut changes = TransitChanges::default();
        if matches!(
            outcomes.first(),
            Some(ChargeOutcome::Charged { .. } | ChargeOutcome::AlreadyCharged { .. })
        ) {
            let card = self.charge.card;
            changes
                .cleared
                .extend(self.trips.iter().map(|t| (card, t.clone())));
            changes.allow.push((card, DenyReason::Arrears));
            changes.core = CoreChanges::audited(
                AuditRecord::new(
                    self.charge.at,
                    self.principal.clone(),
                    "transit.pay_arrears",
                    format!("card:{card}"),
                    AuditOutcome::Succeeded,
                )
                .with("amount", self.charge.amount.to_string()),
            );
        }
        changes
    }
}

/// The trip id of a trip: card, first-tap time (microseconds) and, for trips
/// of one card starting at the same instant, their order (`occurrence`, from 0).
pub fn trip_id(trip: &Trip, occurrence: u32) -> Result<TripId, TransitError> {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(48);
    let _ = write!(
        text,
        "trip-{}-{}-{occurrence}",
        trip.card,
        trip.leg.board.timestamp_micros()
    );
    TripId::parse(&text).map_err(|e| TransitError::Code(e.to_string()))
}

/// Reusable buffers for planning card after card.
#[derive(Debug, Default)]
struct Scratch {
    legs: Vec<Leg>,
    fares: Vec<LegFare>,
}

/// Decides a chunk of cards' trips (pure).
///
/// `trips` holds whole cards' trips, grouped by card and in time order within
/// a card (as [`crate::assemble_trips`] returns them). A card whose trips
/// cannot be priced (bad tap data) gets nothing planned and is listed in
/// [`ChunkPlan::unpriced`]; a trip in `prefetch.settled` is skipped.
pub fn plan_chunk(
    engine: &FareEngine,
    day: NaiveDate,
    trips: &[Trip],
    prefetch: &SettlementPrefetch,
    principal: &Principal,
    at: DateTime<Utc>,
) -> Result<ChunkPlan, TransitError> {
    let mut plan = ChunkPlan {
        day,
        principal: principal.clone(),
        at,
        charges: Vec::new(),
        trips: Vec::with_capacity(trips.len()),
        already_settled: 0,
        unpriced: Vec::new(),
    };
    let mut scratch = Scratch::default();
    for card_trips in trips.chunk_by(|a, b| a.card == b.card) {
        plan_card(engine, day, card_trips, prefetch, &mut plan, &mut scratch)?;
    }
    Ok(plan)
}

fn plan_card(
    engine: &FareEngine,
    day: NaiveDate,
    card_trips: &[Trip],
    prefetch: &SettlementPrefetch,
    plan: &mut ChunkPlan,
    scratch: &mut Scratch,
) -> Result<(), TransitError> {
    let Some(card) = card_trips.first().map(|t| t.card) else {
        return Ok(());
    };
    let rider = prefetch.riders.get(&card).copied().unwrap_or_default();
    let spend = prefetch.spend.get(&card).copied().unwrap_or_default();
    scratch.legs.clear();
    scratch.legs.extend(card_trips.iter().map(|t| t.leg));
    scratch.fares.clear();
    if let Err(error) = engine.price_into(&rider, spend, &scratch.legs, &mut scratch.fares) {
        // Bad taps for one card (an unknown stop, say) must not stop the city's day.
        tracing::warn!(%card, %error, "trips of this card could not be priced; left unsettled");
        plan.unpriced.push(card);
        return Ok(());
    }
    let mut last_board = None;
    let mut occurrence = 0u32;
    for (trip, fare) in card_trips.iter().zip(scratch.fares.iter()) {
        occurrence = if last_board == Some(trip.leg.board) {
            occurrence + 1
        } else {
            0
        };
        last_board = Some(trip.leg.board);
        let id = trip_id(trip, occurrence)?;
        if prefetch.settled.contains(&id) {
            plan.already_settled += 1;
            continue;
        }
        let operator = engine
            .network()
            .operator_of(trip.leg.route, trip.leg.from)
            .to_owned();
        let charge = if fare.paid.is_positive() {
            let key = IdempotencyKey::parse(id.as_str())
                .map_err(|e| TransitError::Code(e.to_string()))?;
            plan.charges.push(FareCharge {
                key,
                card,
                amount: fare.paid,
                operator: operator.clone(),
                at: trip.leg.board,
            });
            Some(plan.charges.len() - 1)
        } else {
            None
        };
        plan.trips.push(PlannedTrip {
            trip: SettledTrip {
                id,
                card,
                day,
                started_at: trip.leg.board,
                operator,
                base: fare.base,
                amount: fare.paid,
                completeness: trip.completeness,
                payment: TripPayment::Free,
            },
            charge,
            maximum_fare: matches!(fare.basis, FareBasis::MaximumFare(_)),
            transfer_discount: fare.transfer.map_or(Money::ZERO, |t| t.discount),
        });
    }
    Ok(())
}

/// Splits a day's trips (grouped by card) into chunks of whole cards of at
/// most `max_trips` trips each (a card with more trips than that is a chunk
/// of its own).
pub fn chunks(trips: &[Trip], max_trips: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut end = 0;
    for card_trips in trips.chunk_by(|a, b| a.card == b.card) {
        if end > start && end - start + card_trips.len() > max_trips {
            out.push(start..end);
            start = end;
        }
        end += card_trips.len();
    }
    if end > start {
        out.push(start..end);
    }
    out
}

/// Decides a whole day at once (pure): one plan per chunk of at most
/// [`MAX_CHARGES_PER_CHUNK`] trips.
pub fn plan_day(
    engine: &FareEngine,
    day: NaiveDate,
    trips: &[Trip],
    prefetch: &SettlementPrefetch,
    principal: &Principal,
    at: DateTime<Utc>,
) -> Result<Vec<ChunkPlan>, TransitError> {
    chunks(trips, MAX_CHARGES_PER_CHUNK)
        .into_iter()
        .map(|range| plan_chunk(engine, day, &trips[range], prefetch, principal, at))
        .collect()
}
