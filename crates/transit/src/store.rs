//! What settlement keeps: settled trips, arrears, the deny list, and the
//! ride-code credentials issued (so readers' deny lists can name the keyed
//! reference of each live credential of a denied card, see [`reader_deny_list`]).
//!
//! [`TransitStore`] is the storage port; [`MemoryTransitStore`] keeps it in
//! memory; `citycard-sqlite` has the SQLite implementation, and both run the
//! conformance suite `transit_store_conformance!` from `citycard-testkit`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use citycard_core::{CoreChanges, MemoryCore, Money, StoreError};
use serde::{Deserialize, Serialize};

use crate::fares::SpendSoFar;
use crate::fasthash::{FxHashMap, FxHashSet};
use crate::taps::{CardRef, TripCompleteness};

citycard_core::define_id!(
    /// A settled trip's id; also the idempotency key of its charge.
    TripId, "trip id", "trip"
);

/// How a settled trip was paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TripPayment {
    /// Nothing to pay (free ride or fully discounted).
    Free,
    /// Charged through the payments port.
    Charged,
    /// The balance was insufficient: the amount is in arrears.
    Arrears,
}

impl TripPayment {
    /// A stable code.
    pub fn code(self) -> &'static str {
        match self {
            TripPayment::Free => "free",
            TripPayment::Charged => "charged",
            TripPayment::Arrears => "arrears",
        }
    }

    /// The payment for a code.
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "free" => Some(TripPayment::Free),
            "charged" => Some(TripPayment::Charged),
            "arrears" => Some(TripPayment::Arrears),
            _ => None,
        }
    }
}

impl TripCompleteness {
    /// A stable code.
    pub fn code(self) -> &'static str {
        match self {
            TripCompleteness::Complete => "complete",
            TripCompleteness::MissingTapOut => "missing_tap_out",
            TripCompleteness::MissingTapIn => "missing_tap_in",
        }
    }

    /// The completeness for a code.
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "complete" => Some(TripCompleteness::Complete),
            "missing_tap_out" => Some(TripCompleteness::MissingTapOut),
            "missing_tap_in" => Some(TripCompleteness::MissingTapIn),
            _ => None,
        }
    }
}

/// A trip after settlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettledTrip {
    /// The trip id (deterministic from card and tap-in time).
    pub id: TripId,
    /// The card.
    pub card: CardRef,
    /// The civil day settled.
    pub day: NaiveDate,
    /// The first tap.
    pub started_at: DateTime<Utc>,
    /// The operator credited.
    pub operator: String,
    /// The base fare before discounts.
    pub base: Money,
    /// What the rider owes for it.
    pub amount: Money,
    /// Whether both ends were tapped.
    pub completeness: TripCompleteness,
    /// How it was paid.
    pub payment: TripPayment,
}

/// Money owed for one trip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrearsEntry {
    /// The card.
    pub card: CardRef,
    /// The trip.
    pub trip: TripId,
    /// The amount owed.
    pub amount: Money,
    /// When it was recorded.
    pub at: DateTime<Utc>,
}

/// Why a card is on the deny list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    /// Unpaid fares.
    Arrears,
    /// Reported lost.
    Lost,
    /// The credential was revoked.
    Revoked,
}

impl DenyReason {
    /// A stable code.
    pub fn code(self) -> &'static str {
        match self {
            DenyReason::Arrears => "arrears",
            DenyReason::Lost => "lost",
            DenyReason::Revoked => "revoked",
        }
    }

    /// The reason for a code.
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "arrears" => Some(DenyReason::Arrears),
            "lost" => Some(DenyReason::Lost),
            "revoked" => Some(DenyReason::Revoked),
            _ => None,
        }
    }
}

/// One deny-list entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenyEntry {
    /// The card.
    pub card: CardRef,
    /// Why.
    pub reason: DenyReason,
    /// Since when.
    pub since: DateTime<Utc>,
}

/// A ride-code credential the issuer certified: the card its keyed reference stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCredential {
    /// The card (settlement reference).
    pub card: CardRef,
    /// The issuer key that certified it.
    pub key_id: u32,
    /// The keyed reference the credential carries (what readers see).
    pub reference: CardRef,
    /// Valid from.
    pub valid_from: DateTime<Utc>,
    /// Valid until.
    pub valid_until: DateTime<Utc>,
}

/// The deny list as readers need it: one entry per live credential of each
/// denied card, under the credential's reference (readers never see cards).
/// Sorted by reference, then reason.
pub fn reader_deny_list(deny: &[DenyEntry], live: &[IssuedCredential]) -> Vec<DenyEntry> {
    let mut out: Vec<DenyEntry> = live
        .iter()
        .flat_map(|c| {
            deny.iter().filter(|d| d.card == c.card).map(|d| DenyEntry {
                card: c.reference,
                reason: d.reason,
                since: d.since,
            })
        })
        .collect();
    out.sort_by_key(|e| (e.card, e.reason));
    out.dedup_by_key(|e| (e.card, e.reason));
    out
}

/// What one settlement chunk (or one arrears payment) writes, in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransitChanges {
    /// Trips settled (a trip id already stored is left as it is).
    pub trips: Vec<SettledTrip>,
    /// Arrears recorded (a trip already in arrears is left as it is).
    pub arrears: Vec<ArrearsEntry>,
    /// Arrears paid: (card, trip) entries removed.
    pub cleared: Vec<(CardRef, TripId)>,
    /// Cards put on the deny list (kept once per reason).
    pub deny: Vec<DenyEntry>,
    /// Reasons lifted from cards.
    pub allow: Vec<(CardRef, DenyReason)>,
    /// Audit records and idempotency outcomes committed with the rows.
    pub core: CoreChanges,
}

impl TransitChanges {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.trips.is_empty()
            && self.arrears.is_empty()
            && self.cleared.is_empty()
            && self.deny.is_empty()
            && self.allow.is_empty()
            && self.core.is_empty()
    }
}

/// What the store knows that deciding a chunk of cards needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredForChunk {
    /// The cards' trips already settled for the day.
    pub settled: FxHashSet<TripId>,
    /// What each card paid on earlier days of the day's week (Monday to
    /// Sunday) and month (`day` is zero; cards that paid nothing are absent).
    pub spend: FxHashMap<CardRef, SpendSoFar>,
}

/// The storage port for settlement.
#[async_trait]
pub trait TransitStore: Send + Sync {
    /// Writes one chunk's changes and their core records atomically.
    async fn commit(&self, changes: &TransitChanges) -> Result<(), StoreError>;
    /// What deciding `cards`' trips of `day` needs, in one round trip.
    async fn prefetch(
        &self,
        cards: &[CardRef],
        day: NaiveDate,
    ) -> Result<StoredForChunk, StoreError>;

    /// Stores settled trips; a trip id already stored is left as it is. Returns how many were new.
    async fn record_trips(&self, trips: &[SettledTrip]) -> Result<u64, StoreError>;
    /// The trips of a card settled for a civil day, by start time.
    async fn trips(&self, card: CardRef, day: NaiveDate) -> Result<Vec<SettledTrip>, StoreError>;
    /// What a card owed for trips in the civil month of `day`, on days before `day`.
    async fn month_spend_before(&self, card: CardRef, day: NaiveDate) -> Result<Money, StoreError>;
    /// Records arrears for a trip; returns false when that trip was already in arrears.
    async fn add_arrears(&self, entry: &ArrearsEntry) -> Result<bool, StoreError>;
    /// A card's open arrears, oldest first.
    async fn arrears(&self, card: CardRef) -> Result<Vec<ArrearsEntry>, StoreError>;
    /// Clears a card's arrears for the given trips; returns the amount cleared.
    async fn clear_arrears(&self, card: CardRef, trips: &[TripId]) -> Result<Money, StoreError>;
    /// Puts a card on the deny list for a reason (kept once per reason).
    async fn deny(&self, entry: &DenyEntry) -> Result<(), StoreError>;
    /// Removes one reason for a card; returns whether it was there.
    async fn allow(&self, card: CardRef, reason: DenyReason) -> Result<bool, StoreError>;
    /// The whole deny list, by card then reason.
    async fn deny_list(&self) -> Result<Vec<DenyEntry>, StoreError>;
    /// Records a certified ride-code credential (the same one twice is kept once).
    async fn record_credential(&self, credential: &IssuedCredential) -> Result<(), StoreError>;
    /// The credentials valid at `at`, by card, then key id, reference and start.
    async fn live_credentials(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Vec<IssuedCredential>, StoreError>;
}

#[derive(Debug, Default)]
struct Inner {
    /// Trips per card and civil day (a handful each), in insertion order.
    trips: FxHashMap<(CardRef, NaiveDate), Vec<SettledTrip>>,
    /// Per card and civil month: (day of month, amount in fen) of each day with trips.
    month: FxHashMap<(CardRef, i32, u32), Vec<(u32, i64)>>,
    arrears: FxHashMap<CardRef, Vec<ArrearsEntry>>,
    deny: BTreeMap<(CardRef, DenyReason), DateTime<Utc>>,
    /// Issued credentials by (key id, reference, valid from, valid until).
    credentials: BTreeMap<(u32, CardRef, DateTime<Utc>, DateTime<Utc>), CardRef>,
}

/// The transit store in memory (core records go to its [`MemoryCore`]).
#[derive(Debug, Default)]
pub struct MemoryTransitStore {
    inner: Mutex<Inner>,
    core: MemoryCore,
}

impl Inner {
    fn record_trip(&mut self, t: &SettledTrip) -> bool {
        let list = self.trips.entry((t.card, t.day)).or_default();
        if list.iter().any(|x| x.id == t.id) {
            return false;
        }
        list.push(t.clone());
        let days = self
            .month
            .entry((t.card, t.day.year(), t.day.month()))
            .or_default();
        match days.iter_mut().find(|(d, _)| *d == t.day.day()) {
            Some((_, fen)) => *fen += t.amount.fen(),
            None => days.push((t.day.day(), t.amount.fen())),
        }
        true
    }

    fn add_arrears(&mut self, entry: &ArrearsEntry) -> bool {
        let list = self.arrears.entry(entry.card).or_default();
        if list.iter().any(|e| e.trip == entry.trip) {
            return false;
        }
        list.push(entry.clone());
        true
    }

    fn clear_arrears(&mut self, card: CardRef, trips: &[TripId]) -> i64 {
        let mut cleared = 0i64;
        if let Some(list) = self.arrears.get_mut(&card) {
            list.retain(|e| {
                let hit = trips.contains(&e.trip);
                if hit {
                    cleared += e.amount.fen();
                }
                !hit
            });
            if list.is_empty() {
                self.arrears.remove(&card);
            }
        }
        cleared
    }

    fn week_spend_before(&self, card: CardRef, day: NaiveDate) -> i64 {
        let monday = day - chrono::Duration::days(i64::from(day.weekday().num_days_from_monday()));
        monday
            .iter_days()
            .take_while(|d| *d < day)
            .map(|d| {
                self.month
                    .get(&(card, d.year(), d.month()))
                    .and_then(|days| days.iter().find(|(n, _)| *n == d.day()))
                    .map_or(0, |(_, fen)| *fen)
            })
            .sum()
    }

    fn month_spend_before(&self, card: CardRef, day: NaiveDate) -> i64 {
        self.month
            .get(&(card, day.year(), day.month()))
            .map_or(0, |days| {
                days.iter()
                    .filter(|(d, _)| *d < day.day())
                    .map(|(_, f)| *f)
                    .sum()
            })
    }
}

impl MemoryTransitStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store with room for `card_days` cards' days of trips (for large runs).
    pub fn with_capacity(card_days: usize) -> Self {
        let mut inner = Inner::default();
        inner.trips.reserve(card_days);
        inner.month.reserve(card_days);
        Self {
            inner: Mutex::new(inner),
            core: MemoryCore::new(),
        }
    }

    /// An empty store that writes core records (audit, idempotency outcomes) to `core`.
    pub fn with_core(core: MemoryCore) -> Self {
        Self {
            inner: Mutex::default(),
            core,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl TransitStore for MemoryTransitStore {
    async fn commit(&self, changes: &TransitChanges) -> Result<(), StoreError> {
        let mut inner = self.lock();
        self.core.check(&changes.core)?;
        for t in &changes.trips {
            inner.record_trip(t);
        }
        for a in &changes.arrears {
            inner.add_arrears(a);
        }
        for (card, trip) in &changes.cleared {
            inner.clear_arrears(*card, std::slice::from_ref(trip));
        }
        for d in &changes.deny {
            inner.deny.entry((d.card, d.reason)).or_insert(d.since);
        }
        for (card, reason) in &changes.allow {
            inner.deny.remove(&(*card, *reason));
        }
        self.core.commit(&changes.core)
    }

    async fn prefetch(
        &self,
        cards: &[CardRef],
        day: NaiveDate,
    ) -> Result<StoredForChunk, StoreError> {
        let inner = self.lock();
        let mut out = StoredForChunk::default();
        for card in cards {
            if let Some(trips) = inner.trips.get(&(*card, day)) {
                out.settled.extend(trips.iter().map(|t| t.id.clone()));
            }
            let month = inner.month_spend_before(*card, day);
            let week = inner.week_spend_before(*card, day);
            if month != 0 || week != 0 {
                out.spend.insert(
                    *card,
                    SpendSoFar {
                        day: Money::ZERO,
                        week: Money::from_fen(week),
                        month: Money::from_fen(month),
                    },
                );
            }
        }
        Ok(out)
    }

    async fn record_trips(&self, trips: &[SettledTrip]) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        Ok(trips.iter().filter(|t| inner.record_trip(t)).count() as u64)
    }

    async fn trips(&self, card: CardRef, day: NaiveDate) -> Result<Vec<SettledTrip>, StoreError> {
        let inner = self.lock();
        let mut out = inner.trips.get(&(card, day)).cloned().unwrap_or_default();
        out.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        Ok(out)
    }

    async fn month_spend_before(&self, card: CardRef, day: NaiveDate) -> Result<Money, StoreError> {
        Ok(Money::from_fen(self.lock().month_spend_before(card, day)))
    }

    async fn add_arrears(&self, entry: &ArrearsEntry) -> Result<bool, StoreError> {
        Ok(self.lock().add_arrears(entry))
    }

    async fn arrears(&self, card: CardRef) -> Result<Vec<ArrearsEntry>, StoreError> {
        let inner = self.lock();
        let mut list = inner.arrears.get(&card).cloned().unwrap_or_default();
        list.sort_by(|a, b| (a.at, &a.trip).cmp(&(b.at, &b.trip)));
        Ok(list)
    }

    async fn clear_arrears(&self, card: CardRef, trips: &[TripId]) -> Result<Money, StoreError> {
        Ok(Money::from_fen(self.lock().clear_arrears(card, trips)))
    }

    async fn deny(&self, entry: &DenyEntry) -> Result<(), StoreError> {
        self.lock()
            .deny
            .entry((entry.card, entry.reason))
            .or_insert(entry.since);
        Ok(())
    }

    async fn allow(&self, card: CardRef, reason: DenyReason) -> Result<bool, StoreError> {
        Ok(self.lock().deny.remove(&(card, reason)).is_some())
    }

    async fn deny_list(&self) -> Result<Vec<DenyEntry>, StoreError> {
        Ok(self
            .lock()
            .deny
            .iter()
            .map(|((card, reason), since)| DenyEntry {
                card: *card,
                reason: *reason,
                since: *since,
            })
            .collect())
    }

    async fn record_credential(&self, credential: &IssuedCredential) -> Result<(), StoreError> {
        self.lock()
            .credentials
            .entry((
                credential.key_id,
                credential.reference,
                credential.valid_from,
                credential.valid_until,
            ))
            .or_insert(credential.card);
        Ok(())
    }

    async fn live_credentials(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Vec<IssuedCredential>, StoreError> {
        let mut out: Vec<IssuedCredential> = self
            .lock()
            .credentials
            .iter()
            .filter(|((_, _, from, until), _)| *from <= at && at <= *until)
            .map(
                |((key_id, reference, valid_from, valid_until), card)| IssuedCredential {
                    card: *card,
                    key_id: *key_id,
                    reference: *reference,
                    valid_from: *valid_from,
                    valid_until: *valid_until,
                },
            )
            .collect();
        out.sort_by_key(|c| (c.card, c.key_id, c.reference, c.valid_from));
        Ok(out)
    }
}
