//! The transactional outbox: events committed with the change they describe.
//!
//! A plan that changes what a platform shows (a binding, a balance, a trip,
//! an appointment, a bill) adds [`NewEvent`]s to its [`crate::CoreChanges`];
//! every store writes them in the same transaction as the change, so an
//! event exists exactly when its change committed. The store numbers each
//! event twice: an outbox id (`id`, unique, the de-duplication id of the
//! stream: NATS JetStream's `Nats-Msg-Id`) and a sequence per card
//! (`sequence`, 1, 2, 3 … in commit order), so a consumer can apply a
//! card's events in order and drop a stale one.
//!
//! A relay (the platform API's) reads the [`Outbox`] port: events not yet
//! published to the stream, and webhook deliveries to the platform an event
//! is addressed to, each with its attempts and the dead-letter mark.
//!
//! ```
//! use citycard_core::{CoreChanges, EventKind, MemoryCore, NewEvent, Outbox, Platform};
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! let core = MemoryCore::new();
//! let now = chrono::Utc::now();
//! let mut changes = CoreChanges::default();
//! changes.events.push(NewEvent::new(EventKind::BalanceChanged, "card-1", Some(Platform::Alipay), now,
//!     serde_json::json!({"balance": "50.00"})));
//! core.commit(&changes)?;
//! core.commit(&changes)?;
//! let events = core.outbox().unpublished(10).await?;
//! assert_eq!(events.iter().map(|e| e.sequence).collect::<Vec<_>>(), [1, 2]);
//! core.outbox().mark_published(&[events[0].id]).await?;
//! assert_eq!(core.outbox().unpublished(10).await?.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::principal::Platform;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A card was bound on a platform.
    BindingCreated,
    /// A binding's state or services changed.
    BindingChanged,
    /// A binding was removed (unbound, consent withdrawn, card replaced).
    BindingRemoved,
    /// A card's wallet balance changed.
    BalanceChanged,
    /// A top-up was credited.
    TopUpCompleted,
    /// A trip was settled (charged).
    TripSettled,
    /// A hospital appointment was booked.
    AppointmentBooked,
    /// A hospital appointment was cancelled.
    AppointmentCancelled,
    /// A medical bill was settled.
    BillSettled,
}

impl EventKind {
    /// The event's code (`balance_changed`), its type in the stream's subject and webhooks.
    pub fn code(self) -> &'static str {
        match self {
            EventKind::BindingCreated => "binding_created",
            EventKind::BindingChanged => "binding_changed",
            EventKind::BindingRemoved => "binding_removed",
            EventKind::BalanceChanged => "balance_changed",
            EventKind::TopUpCompleted => "top_up_completed",
            EventKind::TripSettled => "trip_settled",
            EventKind::AppointmentBooked => "appointment_booked",
            EventKind::AppointmentCancelled => "appointment_cancelled",
            EventKind::BillSettled => "bill_settled",
        }
    }

    /// The kind with this code.
    pub fn from_code(code: &str) -> Option<EventKind> {
        Some(match code {
            "binding_created" => EventKind::BindingCreated,
            "binding_changed" => EventKind::BindingChanged,
            "binding_removed" => EventKind::BindingRemoved,
            "balance_changed" => EventKind::BalanceChanged,
            "top_up_completed" => EventKind::TopUpCompleted,
            "trip_settled" => EventKind::TripSettled,
            "appointment_booked" => EventKind::AppointmentBooked,
            "appointment_cancelled" => EventKind::AppointmentCancelled,
            "bill_settled" => EventKind::BillSettled,
            _ => return None,
        })
    }
}

/// An event a plan commits with its change; the store numbers it.
///
/// `data` must carry no unmasked personal data: events leave the card
/// system (masked card numbers, amounts, ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// What happened.
    pub kind: EventKind,
    /// The card it happened to (the stream its sequence counts in).
    pub card: String,
    /// The platform whose webhook it is delivered to, if any.
    pub platform: Option<Platform>,
    /// When the change was decided.
    pub at: DateTime<Utc>,
    /// The event's body.
    pub data: serde_json::Value,
}

impl NewEvent {
    /// An event of `kind` on `card`, for `platform`'s webhook.
    pub fn new(
        kind: EventKind,
        card: impl Into<String>,
        platform: Option<Platform>,
        at: DateTime<Utc>,
        data: serde_json::Value,
    ) -> NewEvent {
        NewEvent {
            kind,
            card: card.into(),
            platform,
            at,
            data,
        }
    }
}

/// An event as committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEvent {
    /// The outbox id: unique, the stream's de-duplication id.
    pub id: u64,
    /// The event's place among its card's events (1, 2, … in commit order).
    pub sequence: u64,
    /// The event.
    pub event: NewEvent,
}

/// A webhook delivery of an event to its platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The event.
    pub event: OutboxEvent,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not before this instant (backoff).
    pub next_attempt: DateTime<Utc>,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// Given up on: in the dead-letter list until replayed.
    pub dead: bool,
}

/// The outbox as a relay reads it.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Up to `limit` events not yet published to the stream, by outbox id.
    async fn unpublished(&self, limit: usize) -> Result<Vec<OutboxEvent>, StoreError>;
    /// Marks events as published (the stream acknowledged them).
    async fn mark_published(&self, ids: &[u64]) -> Result<(), StoreError>;
    /// Up to `limit` webhook deliveries not yet made and not dead, by outbox
    /// id (due or not: the relay keeps a card's order and waits out backoff).
    async fn undelivered(&self, limit: usize) -> Result<Vec<Delivery>, StoreError>;
    /// Marks events delivered to their platforms.
    async fn mark_delivered(&self, ids: &[u64]) -> Result<(), StoreError>;
    /// Records a failed attempt: retry at `next_attempt`, or dead-letter it.
    async fn mark_failed(
        &self,
        id: u64,
        next_attempt: DateTime<Utc>,
        error: &str,
        dead: bool,
    ) -> Result<(), StoreError>;
    /// The dead-letter list (of one platform, or all), by outbox id.
    async fn dead_letters(&self, platform: Option<&Platform>) -> Result<Vec<Delivery>, StoreError>;
    /// Puts a dead letter back to be delivered from `now`; false if there is none with this id.
    async fn replay(&self, id: u64, now: DateTime<Utc>) -> Result<bool, StoreError>;
}

#[derive(Debug, Clone)]
struct Row {
    event: OutboxEvent,
    published: bool,
    delivered: bool,
    attempts: u32,
    next_attempt: DateTime<Utc>,
    last_error: Option<String>,
    dead: bool,
}

impl Row {
    fn delivery(&self) -> Delivery {
        Delivery {
            event: self.event.clone(),
            attempts: self.attempts,
            next_attempt: self.next_attempt,
            last_error: self.last_error.clone(),
            dead: self.dead,
        }
    }
}

#[derive(Debug, Default)]
struct Rows {
    rows: BTreeMap<u64, Row>,
    sequences: HashMap<String, u64>,
}

/// The outbox in memory (a memory backend's, shared through [`crate::MemoryCore`]).
#[derive(Debug, Default)]
pub struct MemoryOutbox {
    rows: Mutex<Rows>,
}

impl MemoryOutbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    fn rows(&self) -> std::sync::MutexGuard<'_, Rows> {
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends events in order (a memory store's commit).
    pub fn append_all(&self, events: &[NewEvent]) {
        let mut rows = self.rows();
        for event in events {
            let id = rows.rows.keys().next_back().copied().unwrap_or(0) + 1;
            let sequence = {
                let s = rows.sequences.entry(event.card.clone()).or_insert(0);
                *s += 1;
                *s
            };
            rows.rows.insert(
                id,
                Row {
                    event: OutboxEvent {
                        id,
                        sequence,
                        event: event.clone(),
                    },
                    published: false,
                    delivered: event.platform.is_none(),
                    attempts: 0,
                    next_attempt: event.at,
                    last_error: None,
                    dead: false,
                },
            );
        }
    }
}

#[async_trait]
impl Outbox for MemoryOutbox {
    async fn unpublished(&self, limit: usize) -> Result<Vec<OutboxEvent>, StoreError> {
        Ok(self
            .rows()
            .rows
            .values()
            .filter(|r| !r.published)
            .take(limit)
            .map(|r| r.event.clone())
            .collect())
    }

    async fn mark_published(&self, ids: &[u64]) -> Result<(), StoreError> {
        let mut rows = self.rows();
        for id in ids {
            if let Some(r) = rows.rows.get_mut(id) {
                r.published = true;
            }
        }
        Ok(())
    }

    async fn undelivered(&self, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        Ok(self
            .rows()
            .rows
            .values()
            .filter(|r| !r.delivered && !r.dead)
            .take(limit)
            .map(Row::delivery)
            .collect())
    }

    async fn mark_delivered(&self, ids: &[u64]) -> Result<(), StoreError> {
        let mut rows = self.rows();
        for id in ids {
            if let Some(r) = rows.rows.get_mut(id) {
                r.delivered = true;
            }
        }
        Ok(())
    }

    async fn mark_failed(
        &self,
        id: u64,
        next_attempt: DateTime<Utc>,
        error: &str,
        dead: bool,
    ) -> Result<(), StoreError> {
        if let Some(r) = self.rows().rows.get_mut(&id) {
            r.attempts += 1;
            r.next_attempt = next_attempt;
            r.last_error = Some(error.to_owned());
            r.dead = dead;
        }
        Ok(())
    }

    async fn dead_letters(&self, platform: Option<&Platform>) -> Result<Vec<Delivery>, StoreError> {
        Ok(self
            .rows()
            .rows
            .values()
            .filter(|r| {
                r.dead && platform.is_none_or(|p| r.event.event.platform.as_ref() == Some(p))
            })
            .map(Row::delivery)
            .collect())
    }

    async fn replay(&self, id: u64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(match self.rows().rows.get_mut(&id) {
            Some(r) if r.dead => {
                r.dead = false;
                r.attempts = 0;
                r.next_attempt = now;
                true
            }
            _ => false,
        })
    }
}
