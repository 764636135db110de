//! Day settlement: taps → trips → a plan per chunk → one commit per chunk.
//!
//! [`Settlement::settle_day`] assembles a day's taps into trips and settles
//! them in chunks of whole cards (at most [`MAX_CHARGES_PER_CHUNK`] trips).
//! It loads the day's rider profiles from the [`RiderDirectory`] once, up
//! front; then for each chunk it prefetches what the decision needs in bulk
//! (month spend and trips already settled from the [`TransitStore`]),
//! decides purely ([`plan_chunk`]: each
//! card's trips priced in time order as one journey sequence, so transfers
//! and monthly tiers apply), and hands the plan to the [`FarePayments`] port,
//! which charges the chunk's fares as one batch and commits the trips,
//! arrears and denials that follow in the same unit. Each fare's
//! idempotency key is its trip id, so a chunk replayed after a crash charges
//! nothing twice, and a trip already recorded is not planned again. An
//! insufficient balance records arrears and puts the card on the deny list
//! until [`Settlement::pay_arrears`] succeeds. A payment outage leaves the
//! chunk's trips unrecorded ("pending") so a later run charges them with the
//! same keys.
//!
//! Chunks are pipelined: while chunk N commits, chunk N + 1 (other cards) is
//! prefetched and decided on the same task, so a payments port that commits
//! away from the caller's thread (the facade's SQLite unit of work does, for
//! a chunk) keeps both cores busy. Each chunk still commits once, in order.
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
    AuditLog, AuditOutcome, AuditRecord, ClassifiedError, Clock, IdempotencyKey, Money,
    OperatorRole, OperatorRoles, Principal, civil_date,
};
use serde::{Deserialize, Serialize};

use crate::error::TransitError;
use crate::fares::{FareEngine, Rider};
use crate::fasthash::FxHashMap;
use crate::plan::{
    ArrearsPlan, ChargePlan, ChunkPlan, MAX_CHARGES_PER_CHUNK, SettlementPrefetch, chunks,
    plan_chunk,
};
use crate::store::{DenyReason, TransitStore, TripId};
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
    /// The payment side refused this charge (an unknown or closed account,
    /// the key used for another charge); nothing moved, the trip stays
    /// unsettled and its card is reported.
    Refused {
        /// Why.
        reason: String,
    },
}

/// The port through which fares are paid: the facade implements it with the
/// ledger, committing each batch of fares with its trips in one transaction.
#[async_trait]
pub trait FarePayments: Send + Sync {
    /// Charges `plan`'s fares, idempotently by each charge's key, and commits
    /// `plan.resolve(outcomes)` with them as one unit; returns one outcome per
    /// charge.
    ///
    /// A retry with the same key and charge returns the first outcome
    /// ([`ChargeOutcome::AlreadyCharged`], or insufficient funds again); a
    /// charge the payment side refuses is [`ChargeOutcome::Refused`]. An
    /// outage is [`TransitError::PaymentUnavailable`] and commits nothing of
    /// the plan. The rows go to `store`; an implementation on the same
    /// database as `store` writes them in its own transaction instead.
    async fn commit(
        &self,
        plan: &dyn ChargePlan,
        store: &dyn TransitStore,
    ) -> Result<Vec<ChargeOutcome>, TransitError>;
}

/// Charging one fare at a time: how [`MemoryFarePayments`] and test doubles
/// pay, turned into a [`FarePayments`] by [`commit_one_by_one`].
#[async_trait]
pub trait ChargeOne: Send + Sync {
    /// Charges a card, idempotently by `charge.key`; a retry with the same key and
    /// charge returns the first outcome, the same key with another charge is a
    /// [`TransitError::PaymentConflict`]; outages are [`TransitError::PaymentUnavailable`].
    async fn charge(&self, charge: &FareCharge) -> Result<ChargeOutcome, TransitError>;
}

/// [`FarePayments::commit`] for payments that charge one fare at a time:
/// charges in order (a conflict is that charge's [`ChargeOutcome::Refused`];
/// an outage stops the plan and commits nothing), then commits the rows to
/// `store`. Charges and rows are two steps, not one transaction: a stop
/// between them leaves charges that a re-run replays by key.
pub async fn commit_one_by_one(
    payments: &dyn ChargeOne,
    plan: &dyn ChargePlan,
    store: &dyn TransitStore,
) -> Result<Vec<ChargeOutcome>, TransitError> {
    let mut outcomes = Vec::with_capacity(plan.charges().len());
    for charge in plan.charges() {
        outcomes.push(match payments.charge(charge).await {
            Ok(outcome) => outcome,
            Err(TransitError::PaymentConflict(reason)) => ChargeOutcome::Refused { reason },
            Err(e) => return Err(e),
        });
    }
    store.commit(&plan.resolve(&outcomes)).await?;
    Ok(outcomes)
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
    async fn commit(
        &self,
        plan: &dyn ChargePlan,
        store: &dyn TransitStore,
    ) -> Result<Vec<ChargeOutcome>, TransitError> {
        commit_one_by_one(self, plan, store).await
    }
}

#[async_trait]
impl ChargeOne for MemoryFarePayments {
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
#[async_trait]
pub trait RiderDirectory: Send + Sync {
    /// The rider profiles of `cards` on `day`, loaded in bulk before a chunk
    /// is decided (a card left out rides as [`Rider::default`]).
    async fn riders(
        &self,
        cards: &[CardRef],
        day: NaiveDate,
    ) -> Result<FxHashMap<CardRef, Rider>, TransitError>;
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

#[async_trait]
impl RiderDirectory for MemoryRiderDirectory {
    async fn riders(
        &self,
        cards: &[CardRef],
        _day: NaiveDate,
    ) -> Result<FxHashMap<CardRef, Rider>, TransitError> {
        Ok(cards
            .iter()
            .map(|c| (*c, self.riders.get(c).copied().unwrap_or(self.default)))
            .collect())
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

impl SettlementReport {
    /// Adds a chunk's counts (its `day` and `taps` are ignored).
    pub fn add(&mut self, chunk: SettlementReport) -> Result<(), TransitError> {
        self.trips_settled += chunk.trips_settled;
        self.trips_already_settled += chunk.trips_already_settled;
        self.trips_pending += chunk.trips_pending;
        self.maximum_fares += chunk.maximum_fares;
        self.base_fares = self.base_fares.checked_add(chunk.base_fares)?;
        self.discounts = self.discounts.checked_add(chunk.discounts)?;
        self.transfer_discounts = self
            .transfer_discounts
            .checked_add(chunk.transfer_discounts)?;
        self.charged = self.charged.checked_add(chunk.charged)?;
        self.charges += chunk.charges;
        for (operator, amount) in chunk.revenue_by_operator {
            let total = self
                .revenue_by_operator
                .entry(operator)
                .or_insert(Money::ZERO);
            *total = total.checked_add(amount)?;
        }
        self.arrears = self.arrears.checked_add(chunk.arrears)?;
        self.cards_in_arrears += chunk.cards_in_arrears;
        self.cards_unpriced += chunk.cards_unpriced;
        self.charges_replayed += chunk.charges_replayed;
        self.cards_failed.extend(chunk.cards_failed);
        Ok(())
    }
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
    chunk_trips: usize,
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
            chunk_trips: MAX_CHARGES_PER_CHUNK,
        }
    }

    /// Settles in chunks of at most `trips` trips (default and ceiling
    /// [`MAX_CHARGES_PER_CHUNK`]; at least 1). Smaller chunks commit more
    /// often; tests use them to crash between chunks.
    #[must_use]
    pub fn with_chunk_trips(mut self, trips: usize) -> Self {
        self.chunk_trips = trips.clamp(1, MAX_CHARGES_PER_CHUNK);
        self
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

    /// The trip id of a trip (see [`crate::plan::trip_id`]).
    pub fn trip_id(trip: &Trip, occurrence: u32) -> Result<TripId, TransitError> {
        crate::plan::trip_id(trip, occurrence)
    }

    /// Prefetches and decides one chunk of whole cards' trips (no writes).
    /// `riders` holds the day's rider profiles when they were loaded up
    /// front; otherwise the chunk's are looked up.
    async fn prepare_chunk(
        &self,
        principal: &Principal,
        day: NaiveDate,
        trips: &[Trip],
        riders: Option<&FxHashMap<CardRef, Rider>>,
    ) -> Result<ChunkPlan, TransitError> {
        let mut cards: Vec<CardRef> = trips.iter().map(|t| t.card).collect();
        cards.dedup();
        let stored = self.store.prefetch(&cards, day).await?;
        let riders = match riders {
            Some(day_riders) => cards
                .iter()
                .filter_map(|c| day_riders.get(c).map(|r| (*c, *r)))
                .collect(),
            None => self.riders.riders(&cards, day).await?,
        };
        let prefetch = SettlementPrefetch {
            riders,
            spend: stored.spend,
            settled: stored.settled,
        };
        plan_chunk(
            &self.engine,
            day,
            trips,
            &prefetch,
            principal,
            self.clock.now(),
        )
    }

    /// Commits a decided chunk: its charges, trips and arrears in one unit.
    async fn commit_chunk(
        &self,
        plan: ChunkPlan,
    ) -> Result<(ChunkPlan, Vec<ChargeOutcome>), TransitError> {
        let outcomes = if plan.trips.is_empty() {
            Vec::new()
        } else {
            self.payments.commit(&plan, self.store.as_ref()).await?
        };
        Ok((plan, outcomes))
    }

    /// Adds a committed chunk to the report, or reports the chunk as left
    /// for a re-run: its trips as pending (a retryable failure) or its cards
    /// as failed.
    fn finish_chunk(
        done: Result<(ChunkPlan, Vec<ChargeOutcome>), TransitError>,
        trips: &[Trip],
        report: &mut SettlementReport,
    ) {
        let error = match done.and_then(|(plan, outcomes)| plan.tally(&outcomes)) {
            Ok(tally) => match report.add(tally) {
                Ok(()) => return,
                Err(e) => e,
            },
            Err(e) => e,
        };
        // One chunk must not stop the city's day: report it, go on, a re-run retries it.
        tracing::warn!(%error, trips = trips.len(), "a chunk could not be settled now; left for a re-run");
        if error.class().is_retryable() {
            report.trips_pending += trips.len() as u64;
        } else {
            let mut cards: Vec<CardRef> = trips.iter().map(|t| t.card).collect();
            cards.dedup();
            report
                .cards_failed
                .extend(cards.into_iter().map(|card| CardFailure {
                    card,
                    reason: error.to_string(),
                }));
        }
    }

    /// Settles one civil day of taps (the system, or an operator with the
    /// finance role).
    ///
    /// The day is settled chunk by chunk, each chunk one commit; a chunk that
    /// cannot be settled now (a store or payment outage) is reported — its
    /// trips as pending, or its cards in `cards_failed` — and the day goes
    /// on. Running the day again picks up exactly what is left.
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
        // The day's rider profiles up front (one bulk look-up), so that
        // deciding a chunk reads nothing the commit of the one before holds;
        // if that fails, each chunk looks its own up.
        let mut cards: Vec<CardRef> = trips.iter().map(|t| t.card).collect();
        cards.dedup();
        let day_riders = match self.riders.riders(&cards, day).await {
            Ok(riders) => Some(riders),
            Err(error) => {
                tracing::warn!(%error, "rider profiles not loaded up front; loading them per chunk");
                None
            }
        };
        drop(cards);
        // Pipelined: chunk N commits while chunk N + 1 is prefetched and
        // decided (its cards are others, so nothing it reads is being written).
        type Committing<'s> = std::pin::Pin<
            Box<
                dyn std::future::Future<
                        Output = Result<(ChunkPlan, Vec<ChargeOutcome>), TransitError>,
                    > + Send
                    + 's,
            >,
        >;
        let mut in_flight: Option<(std::ops::Range<usize>, Committing<'_>)> = None;
        for range in chunks(&trips, self.chunk_trips) {
            let chunk = &trips[range.clone()];
            let prepare = self.prepare_chunk(principal, day, chunk, day_riders.as_ref());
            let prepared = match in_flight.take() {
                Some((previous, committing)) => {
                    let (done, prepared) = both(committing, prepare).await;
                    Self::finish_chunk(done, &trips[previous], &mut report);
                    prepared
                }
                None => prepare.await,
            };
            match prepared {
                Ok(plan) => in_flight = Some((range, Box::pin(self.commit_chunk(plan)))),
                Err(error) => Self::finish_chunk(Err(error), chunk, &mut report),
            }
        }
        if let Some((previous, committing)) = in_flight {
            Self::finish_chunk(committing.await, &trips[previous], &mut report);
        }
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
        let plan = ArrearsPlan {
            charge,
            trips: open.iter().map(|e| e.trip.clone()).collect(),
            principal: principal.clone(),
        };
        let outcomes = self.payments.commit(&plan, self.store.as_ref()).await?;
        match outcomes.into_iter().next() {
            Some(ChargeOutcome::Charged { .. } | ChargeOutcome::AlreadyCharged { .. }) => {
                tracing::info!(amount = %owed, "arrears paid");
                Ok(ArrearsPayment::Paid { amount: owed })
            }
            Some(ChargeOutcome::InsufficientFunds) => {
                Ok(ArrearsPayment::InsufficientFunds { owed })
            }
            Some(ChargeOutcome::Refused { reason }) => Err(TransitError::PaymentConflict(reason)),
            None => Err(TransitError::PaymentUnavailable(
                "the payment side returned no outcome".into(),
            )),
        }
    }

    /// The civil day of an instant (convenience for hosts).
    pub fn day_of(at: DateTime<Utc>) -> NaiveDate {
        civil_date(at)
    }
}

/// Runs two futures together on the caller's task (no runtime needed):
/// while one waits (a commit on its writer thread), the other runs.
async fn both<A, B>(a: A, b: B) -> (A::Output, B::Output)
where
    A: std::future::Future,
    B: std::future::Future,
{
    use std::task::Poll;
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    let (mut first, mut second) = (None, None);
    std::future::poll_fn(|cx| {
        if first.is_none()
            && let Poll::Ready(v) = a.as_mut().poll(cx)
        {
            first = Some(v);
        }
        if second.is_none()
            && let Poll::Ready(v) = b.as_mut().poll(cx)
        {
            second = Some(v);
        }
        match (first.take(), second.take()) {
            (Some(x), Some(y)) => Poll::Ready((x, y)),
            (x, y) => {
                first = x;
                second = y;
                Poll::Pending
            }
        }
    })
    .await
}
