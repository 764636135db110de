//! Day settlement: taps → trips → fares → one idempotent charge per trip.
//!
//! [`Settlement::settle_day`] assembles a day's taps into trips, prices each
//! card's trips in time order as one journey sequence (so transfers and
//! monthly tiers apply), and charges each trip through the [`FarePayments`]
//! port with the trip id as idempotency key. A trip already recorded in the
//! [`TransitStore`] is not charged again; if a run stopped between a charge
//! and its record, the port's idempotency returns the first charge. An
//! insufficient balance records arrears and puts the card on the deny list
//! until [`Settlement::pay_arrears`] succeeds. A payment outage leaves the
//! trip unrecorded ("pending") so a later run charges it with the same key.
//!
//! One card never stops the day: when a card's trips cannot be settled now
//! (a store error, a refused charge) the card is listed in
//! [`SettlementReport::cards_failed`] with the reason, the run goes on with the
//! next card, and a re-run picks it up. A report counts what its own run did:
//! a charge an earlier (interrupted) run already made is counted in
//! [`SettlementReport::charges_replayed`], never in `charged`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use citycard_core::{
    AuditLog, AuditOutcome, AuditRecord, Clock, IdempotencyKey, Money, OperatorRole, OperatorRoles,
    Principal, civil_date,
};
use serde::{Deserialize, Serialize};

use crate::error::TransitError;
use crate::fares::{FareBasis, FareEngine, Leg, LegFare, Rider};
use crate::fasthash::FxHashMap;
use crate::store::{
    ArrearsEntry, DenyEntry, DenyReason, SettledTrip, TransitStore, TripId, TripPayment,
};
use crate::taps::{CardRef, Tap, TapStats, Trip, assemble_trips};

/// One charge for one trip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FareCharge {
    /// Idempotency key: the same key with the same charge returns the first outcome.
    pub key: IdempotencyKey,
    /// The card.
    pub card: CardRef,
    /// The amount (positive).
    pub amount: Money,
    /// The operator to credit.
    pub operator: String,
    /// When the ride started.
    pub at: DateTime<Utc>,
}

/// What a charge did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum ChargeOutcome {
    /// The money moved.
    Charged {
        /// The payment's reference.
        reference: String,
    },
    /// An earlier call with this key moved the money; nothing moved now.
    AlreadyCharged {
        /// The payment's reference.
        reference: String,
    },
    /// The balance does not cover it; nothing moved.
    InsufficientFunds,
}

/// The port through which fares are paid (the facade implements it with the ledger).
#[async_trait]
pub trait FarePayments: Send + Sync {
    /// Charges a card, idempotently by `charge.key`; a retry with the same key and
    /// charge returns the first outcome, the same key with another charge is a
    /// [`TransitError::PaymentConflict`]; outages are [`TransitError::PaymentUnavailable`].
    async fn charge(&self, charge: &FareCharge) -> Result<ChargeOutcome, TransitError>;
}

#[derive(Debug, Default)]
struct PaymentsInner {
    balances: FxHashMap<CardRef, i64>,
    /// Per key: card, amount, and whether it was charged (else insufficient funds).
    done: FxHashMap<IdempotencyKey, (CardRef, Money, bool)>,
    credited: BTreeMap<String, i64>,
    charges: u64,
}

/// An in-memory [`FarePayments`]: balances per card, idempotent by key.
#[derive(Debug)]
pub struct MemoryFarePayments {
    inner: Mutex<PaymentsInner>,
    default_balance: Money,
}

impl MemoryFarePayments {
    /// Payments where unknown cards start with `default_balance`.
    pub fn new(default_balance: Money) -> Self {
        Self::with_capacity(default_balance, 0)
    }

    /// Like [`MemoryFarePayments::new`], with room for `charges` charges (for large runs).
    pub fn with_capacity(default_balance: Money, charges: usize) -> Self {
        let mut inner = PaymentsInner::default();
        inner.done.reserve(charges);
        inner.balances.reserve(charges / 2);
        Self {
            inner: Mutex::new(inner),
            default_balance,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PaymentsInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets a card's balance.
    pub fn set_balance(&self, card: CardRef, balance: Money) {
        self.lock().balances.insert(card, balance.fen());
    }

    /// A card's balance.
    pub fn balance(&self, card: CardRef) -> Money {
        Money::from_fen(
            self.lock()
                .balances
                .get(&card)
                .copied()
                .unwrap_or(self.default_balance.fen()),
        )
    }

    /// How many charges moved money.
    pub fn charge_count(&self) -> u64 {
        self.lock().charges
    }

    /// Money credited per operator.
    pub fn credited(&self) -> BTreeMap<String, Money> {
        self.lock()
            .credited
            .iter()
            .map(|(k, v)| (k.clone(), Money::from_fen(*v)))
            .collect()
    }
}

#[async_trait]
impl FarePayments for MemoryFarePayments {
    async fn charge(&self, charge: &FareCharge) -> Result<ChargeOutcome, TransitError> {
        let mut inner = self.lock();
        if let Some((card, amount, charged)) = inner.done.get(&charge.key) {
            if *card == charge.card && *amount == charge.amount {
                return Ok(if *charged {
                    ChargeOutcome::AlreadyCharged {
                        reference: charge.key.to_string(),
                    }
                } else {
                    ChargeOutcome::InsufficientFunds
                });
            }
            return Err(TransitError::PaymentConflict(format!(
                "key {} was used for another charge",
                charge.key
            )));
        }
        if !charge.amount.is_positive() {
            return Err(TransitError::PaymentConflict(
                "charges must be positive".into(),
            ));
        }
        let default = self.default_balance.fen();
        let balance = inner.balances.entry(charge.card).or_insert(default);
        let outcome = if *balance >= charge.amount.fen() {
            *balance -= charge.amount.fen();
            inner.charges += 1;
            match inner.credited.get_mut(&charge.operator) {
                Some(total) => *total += charge.amount.fen(),
                None => {
                    inner
                        .credited
                        .insert(charge.operator.clone(), charge.amount.fen());
                }
            }
            ChargeOutcome::Charged {
                reference: charge.key.to_string(),
            }
        } else {
            ChargeOutcome::InsufficientFunds
        };
        let charged = matches!(outcome, ChargeOutcome::Charged { .. });
        inner
            .done
            .insert(charge.key.clone(), (charge.card, charge.amount, charged));
        Ok(outcome)
    }
}

/// Who a card belongs to, as far as fares care.
pub trait RiderDirectory: Send + Sync {
    /// The rider profile of a card on a day.
    fn rider(&self, card: CardRef, day: NaiveDate) -> Rider;
}

/// A [`RiderDirectory`] in memory with a default for unknown cards.
#[derive(Debug, Default)]
pub struct MemoryRiderDirectory {
    riders: FxHashMap<CardRef, Rider>,
    default: Rider,
}

impl MemoryRiderDirectory {
    /// A directory where unknown cards get `default`.
    pub fn new(default: Rider) -> Self {
        Self {
            riders: FxHashMap::default(),
            default,
        }
    }

    /// Sets one card's profile.
    pub fn insert(&mut self, card: CardRef, rider: Rider) {
        self.riders.insert(card, rider);
    }
}

impl RiderDirectory for MemoryRiderDirectory {
    fn rider(&self, card: CardRef, _day: NaiveDate) -> Rider {
        self.riders.get(&card).copied().unwrap_or(self.default)
    }
}

/// What a settlement run did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SettlementReport {
    /// The civil day.
    pub day: Option<NaiveDate>,
    /// Tap counts.
    pub taps: TapStats,
    /// Trips settled in this run (new).
    pub trips_settled: u64,
    /// Trips already settled by an earlier run (skipped).
    pub trips_already_settled: u64,
    /// Trips left for a later run because payments were unavailable.
    pub trips_pending: u64,
    /// Trips charged the maximum fare.
    pub maximum_fares: u64,
    /// Base fares of the trips settled.
    pub base_fares: Money,
    /// Concessions, transfer discounts and tiers given on them.
    pub discounts: Money,
    /// Of which transfer discounts.
    pub transfer_discounts: Money,
    /// Money charged.
    pub charged: Money,
    /// Charges made.
    pub charges: u64,
    /// Revenue per operator.
    pub revenue_by_operator: BTreeMap<String, Money>,
    /// New arrears.
    pub arrears: Money,
    /// Cards that went into arrears.
    pub cards_in_arrears: u64,
    /// Cards whose trips could not be priced (bad tap data); nothing was charged for them.
    pub cards_unpriced: u64,
    /// Trips recorded now whose charge an earlier run had already made (no money moved now).
    pub charges_replayed: u64,
    /// Cards left (partly) unsettled by this run, with why; a re-run picks them up.
    pub cards_failed: Vec<CardFailure>,
}

/// A card a settlement run could not finish, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardFailure {
    /// The card.
    pub card: CardRef,
    /// What went wrong (the error's message).
    pub reason: String,
}

/// The result of paying a card's arrears.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum ArrearsPayment {
    /// Nothing was owed.
    NothingOwed,
    /// Paid; the card is off the deny list for arrears.
    Paid {
        /// The amount.
        amount: Money,
    },
    /// The balance still does not cover it.
    InsufficientFunds {
        /// The amount owed.
        owed: Money,
    },
}

/// Buffers reused from card to card in one run, and the run's revenue (fen per operator).
#[derive(Default)]
struct CardRun {
    revenue: BTreeMap<String, i64>,
    fares: Vec<LegFare>,
    legs: Vec<Leg>,
    settled: Vec<SettledTrip>,
}

/// Day settlement over the fare engine, payments and store.
#[derive(Clone)]
pub struct Settlement {
    engine: Arc<FareEngine>,
    payments: Arc<dyn FarePayments>,
    store: Arc<dyn TransitStore>,
    riders: Arc<dyn RiderDirectory>,
    audit: Arc<dyn AuditLog>,
    clock: Arc<dyn Clock>,
    roles: Arc<OperatorRoles>,
}

impl std::fmt::Debug for Settlement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settlement").finish_non_exhaustive()
    }
}

impl Settlement {
    /// A settlement service.
    pub fn new(
        engine: Arc<FareEngine>,
        payments: Arc<dyn FarePayments>,
        store: Arc<dyn TransitStore>,
        riders: Arc<dyn RiderDirectory>,
        audit: Arc<dyn AuditLog>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            engine,
            payments,
            store,
            riders,
            audit,
            clock,
            roles: Arc::new(OperatorRoles::new()),
        }
    }

    /// Looks operators' roles up in `roles`: settling a day and collecting
    /// arrears need [`OperatorRole::Finance`] (without a registry, only the
    /// system may).
    #[must_use]
    pub fn with_roles(mut self, roles: Arc<OperatorRoles>) -> Self {
        self.roles = roles;
        self
    }

    fn may_settle(&self, principal: &Principal) -> bool {
        self.roles.allows(principal, &[OperatorRole::Finance])
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

    /// Settles one card's trips of the day, in time order, adding to `report`.
    ///
    /// Charges already made are counted as they happen, so a card that fails
    /// half-way still reports the money this run moved.
    async fn settle_card(
        &self,
        principal: &Principal,
        day: NaiveDate,
        card: CardRef,
        card_trips: &[Trip],
        report: &mut SettlementReport,
        run: &mut CardRun,
    ) -> Result<(), TransitError> {
        let done = self.store.trips(card, day).await?;
        let rider = self.riders.rider(card, day);
        let spend = self.store.month_spend_before(card, day).await?;
        let CardRun {
            revenue,
            fares,
            legs,
            settled,
        } = run;
        legs.clear();
        legs.extend(card_trips.iter().map(|t| t.leg));
        fares.clear();
        if let Err(error) = self.engine.quote_into(&rider, spend, legs, fares) {
            // Bad taps for one card (an unknown stop, say) must not stop the city's day.
            tracing::warn!(%card, %error, "trips of this card could not be priced; left unsettled");
            report.cards_unpriced += 1;
            return Ok(());
        }
        settled.clear();
        let mut card_arrears = false;
        let mut last_board = None;
        let mut occurrence = 0u32;
        for (trip, fare) in card_trips.iter().zip(fares.iter()) {
            occurrence = if last_board == Some(trip.leg.board) {
                occurrence + 1
            } else {
                0
            };
            last_board = Some(trip.leg.board);
            let id = Self::trip_id(trip, occurrence)?;
            if done.iter().any(|d| d.id == id) {
                report.trips_already_settled += 1;
                continue;
            }
            let mut operator = self
                .engine
                .network()
                .operator_of(trip.leg.route, trip.leg.from)
                .to_owned();
            let payment = if fare.paid.is_positive() {
                let key = IdempotencyKey::parse(id.as_str())
                    .map_err(|e| TransitError::Code(e.to_string()))?;
                let charge = FareCharge {
                    key,
                    card,
                    amount: fare.paid,
                    operator: std::mem::take(&mut operator),
                    at: trip.leg.board,
                };
                let outcome = self.payments.charge(&charge).await;
                operator = charge.operator;
                match outcome {
                    Ok(ChargeOutcome::Charged { .. }) => {
                        report.charges += 1;
                        report.charged = report.charged.checked_add(fare.paid)?;
                        match revenue.get_mut(&operator) {
                            Some(total) => *total += fare.paid.fen(),
                            None => {
                                revenue.insert(operator.clone(), fare.paid.fen());
                            }
                        }
                        TripPayment::Charged
                    }
                    Ok(ChargeOutcome::AlreadyCharged { .. }) => {
                        report.charges_replayed += 1;
                        TripPayment::Charged
                    }
                    Ok(ChargeOutcome::InsufficientFunds) => {
                        let entry = ArrearsEntry {
                            card,
                            trip: id.clone(),
                            amount: fare.paid,
                            at: self.clock.now(),
                        };
                        if self.store.add_arrears(&entry).await? {
                            report.arrears = report.arrears.checked_add(fare.paid)?;
                        }
                        card_arrears = true;
                        TripPayment::Arrears
                    }
                    Err(TransitError::PaymentUnavailable(reason)) => {
                        tracing::warn!(trip = %id, %reason, "fare payment unavailable; trip left pending");
                        report.trips_pending += 1;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            } else {
                TripPayment::Free
            };
            if matches!(fare.basis, FareBasis::MaximumFare(_)) {
                report.maximum_fares += 1;
            }
            report.base_fares = report.base_fares.checked_add(fare.base)?;
            report.discounts = report
                .discounts
                .checked_add(fare.base.checked_sub(fare.paid)?)?;
            if let Some(t) = fare.transfer {
                report.transfer_discounts = report.transfer_discounts.checked_add(t.discount)?;
            }
            settled.push(SettledTrip {
                id,
                card,
                day,
                started_at: trip.leg.board,
                operator,
                base: fare.base,
                amount: fare.paid,
                completeness: trip.completeness,
                payment,
            });
        }
        if card_arrears {
            report.cards_in_arrears += 1;
            self.store
                .deny(&DenyEntry {
                    card,
                    reason: DenyReason::Arrears,
                    since: self.clock.now(),
                })
                .await?;
            self.audit
                .append(
                    AuditRecord::new(
                        self.clock.now(),
                        principal.clone(),
                        "transit.deny",
                        format!("card:{card}"),
                        AuditOutcome::Succeeded,
                    )
                    .with("reason", "arrears"),
                )
                .await?;
        }
        report.trips_settled += self.store.record_trips(settled).await?;
        Ok(())
    }

    /// Settles one civil day of taps (system or operator only).
    pub async fn settle_day(
        &self,
        principal: &Principal,
        day: NaiveDate,
        mut taps: Vec<Tap>,
    ) -> Result<SettlementReport, TransitError> {
        let span = tracing::info_span!("transit.settle_day", %day, taps = taps.len());
        let _guard = span.enter();
        if !self.may_settle(principal) {
            self.audit
                .append(AuditRecord::new(
                    self.clock.now(),
                    principal.clone(),
                    "transit.settle_day",
                    format!("day:{day}"),
                    AuditOutcome::Denied,
                ))
                .await?;
            return Err(TransitError::Denied {
                principal: principal.to_string(),
                action: "settle a day",
            });
        }
        let duplicate_codes = crate::taps::dedupe_code_taps(&mut taps).len() as u64;
        let (trips, mut stats) = assemble_trips(&self.engine, &mut taps);
        stats.duplicate_codes = duplicate_codes;
        drop(taps);
        let mut report = SettlementReport {
            day: Some(day),
            taps: stats,
            ..SettlementReport::default()
        };
        let mut run = CardRun::default();
        let mut start = 0;
        while start < trips.len() {
            let card = trips[start].card;
            let mut end = start;
            while end < trips.len() && trips[end].card == card {
                end += 1;
            }
            let card_trips = &trips[start..end];
            start = end;
            if let Err(error) = self
                .settle_card(principal, day, card, card_trips, &mut report, &mut run)
                .await
            {
                // One card must not stop the city's day: report it, go on, a re-run retries it.
                tracing::warn!(%card, %error, "trips of this card could not be settled now; left for a re-run");
                report.cards_failed.push(CardFailure {
                    card,
                    reason: error.to_string(),
                });
            }
        }
        let revenue = run.revenue;
        report.revenue_by_operator = revenue
            .into_iter()
            .map(|(k, v)| (k, Money::from_fen(v)))
            .collect();
        self.audit
            .append(
                AuditRecord::new(
                    self.clock.now(),
                    principal.clone(),
                    "transit.settle_day",
                    format!("day:{day}"),
                    AuditOutcome::Succeeded,
                )
                .with("trips_settled", report.trips_settled.to_string())
                .with("charged", report.charged.to_string())
                .with("arrears", report.arrears.to_string())
                .with("pending", report.trips_pending.to_string())
                .with("replayed", report.charges_replayed.to_string())
                .with("cards_failed", report.cards_failed.len().to_string()),
            )
            .await?;
        tracing::info!(
            trips = report.trips_settled,
            charged = %report.charged,
            arrears = %report.arrears,
            pending = report.trips_pending,
            replayed = report.charges_replayed,
            cards_failed = report.cards_failed.len(),
            "day settled"
        );
        Ok(report)
    }

    /// Charges a card's open arrears in one payment; on success clears them and lifts the arrears denial.
    pub async fn pay_arrears(
        &self,
        principal: &Principal,
        card: CardRef,
        key: IdempotencyKey,
    ) -> Result<ArrearsPayment, TransitError> {
        let span = tracing::info_span!("transit.pay_arrears", %card, %key);
        let _guard = span.enter();
        if !(self.may_settle(principal) || matches!(principal, Principal::Platform { .. })) {
            return Err(TransitError::Denied {
                principal: principal.to_string(),
                action: "collect arrears",
            });
        }
        let open = self.store.arrears(card).await?;
        let owed = Money::checked_sum(open.iter().map(|e| e.amount))?;
        if !owed.is_positive() {
            self.store.allow(card, DenyReason::Arrears).await?;
            return Ok(ArrearsPayment::NothingOwed);
        }
        // The caller's key is its own: the charge key names the principal and
        // the key, and never looks like a trip's.
        let scoped = format!(
            "{}\u{0}{key}",
            citycard_core::principal_scope("transit.pay_arrears", principal)
        );
        let key = IdempotencyKey::parse(&format!(
            "arrears-{}",
            &citycard_core::Fingerprint::of_bytes(scoped.as_bytes()).to_hex()[..40]
        ))
        .map_err(|e| TransitError::Code(e.to_string()))?;
        let charge = FareCharge {
            key,
            card,
            amount: owed,
            operator: "arrears".into(),
            at: self.clock.now(),
        };
        match self.payments.charge(&charge).await? {
            ChargeOutcome::Charged { .. } | ChargeOutcome::AlreadyCharged { .. } => {
                let ids: Vec<TripId> = open.iter().map(|e| e.trip.clone()).collect();
                self.store.clear_arrears(card, &ids).await?;
                self.store.allow(card, DenyReason::Arrears).await?;
                self.audit
                    .append(
                        AuditRecord::new(
                            self.clock.now(),
                            principal.clone(),
                            "transit.pay_arrears",
                            format!("card:{card}"),
                            AuditOutcome::Succeeded,
                        )
                        .with("amount", owed.to_string()),
                    )
                    .await?;
                tracing::info!(amount = %owed, "arrears paid");
                Ok(ArrearsPayment::Paid { amount: owed })
            }
            ChargeOutcome::InsufficientFunds => Ok(ArrearsPayment::InsufficientFunds { owed }),
        }
    }

    /// The civil day of an instant (convenience for hosts).
    pub fn day_of(at: DateTime<Utc>) -> NaiveDate {
        civil_date(at)
    }
}
