//! The outbox relay: events to NATS JetStream and signed webhooks to platforms.
//!
//! The card system commits events with their changes in its outbox
//! ([`citycard::core::outbox`]). The relay reads what is not yet done and
//! does it, at least once:
//!
//! - **Stream** ([`Stream`]): every event is published to JetStream on
//!   `citycard.events.<kind>` with the header `Nats-Msg-Id` = its outbox id,
//!   so a relay that died after publishing and before marking the events
//!   publishes them again and the stream keeps one copy (within the
//!   stream's duplicate window, [`STREAM_DUPLICATE_WINDOW`]). Events are
//!   published in outbox order and the acknowledgements awaited before
//!   they are marked; a card's events keep their order.
//! - **Webhooks** ([`Webhooks`]): an event addressed to a platform is
//!   POSTed to that platform's endpoint, signed with the card system's key
//!   (`Citycard-Timestamp`, `Citycard-Signature` over
//!   `timestamp\nevent-<id>\nbase64(SHA-256(body))\n`, as responses are). A
//!   card's events go to a platform one at a time, in the card's sequence:
//!   a later event waits while an earlier one is retried. A failure is
//!   retried after an exponential backoff with full jitter (1 s doubling to
//!   5 minutes); after [`RelayConfig::max_attempts`] the delivery is
//!   dead-lettered: listed by [`Outbox::dead_letters`], replayed with
//!   [`Outbox::replay`]. A dead letter no longer holds its card's later
//!   events back (a decision of this crate: a platform that was down for a
//!   minute must catch up; an event carries its card's sequence, so a
//!   replayed older event can be recognised as stale).
//!
//! The relay spawns nothing: [`Relay::run`] is a loop the service runs on
//! its runtime, and [`Relay::publish_once`] / [`Relay::deliver_once`] are
//! its steps (tests drive them with a manual clock). Stopping it loses
//! nothing: what was not marked is done again by the next relay.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use citycard::core::{Clock, Delivery, Outbox, OutboxEvent, Platform, StoreError};
use rand_core::RngCore as _;
use serde::Serialize;

use crate::signing::{PrivateKey, sign_response};

/// The stream's name.
pub const STREAM_NAME: &str = "CITYCARD_EVENTS";
/// The subjects events are published on (`citycard.events.<kind>`).
pub const SUBJECT_PREFIX: &str = "citycard.events";
/// How long the stream remembers message ids to drop duplicates.
pub const STREAM_DUPLICATE_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// The relay failed a step; the next step tries again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The outbox could not be read or marked.
    #[error("outbox: {0}")]
    Store(#[from] StoreError),
    /// NATS refused or did not answer.
    #[error("NATS: {0}")]
    Nats(String),
}

fn nats(e: impl std::fmt::Display) -> RelayError {
    RelayError::Nats(e.to_string())
}

/// An event as published and delivered.
#[derive(Debug, Serialize)]
pub struct EventBody<'a> {
    /// The outbox id (the de-duplication id).
    pub id: u64,
    /// The event's place among its card's events.
    pub sequence: u64,
    /// What happened (`balance_changed`, ...).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The card.
    pub card: &'a str,
    /// The platform it is addressed to.
    pub platform: Option<&'a Platform>,
    /// When the change was decided.
    pub at: DateTime<Utc>,
    /// The event's body.
    pub data: &'a serde_json::Value,
}

impl<'a> EventBody<'a> {
    /// The body of `event`.
    pub fn of(event: &'a OutboxEvent) -> EventBody<'a> {
        EventBody {
            id: event.id,
            sequence: event.sequence,
            kind: event.event.kind.code(),
            card: &event.event.card,
            platform: event.event.platform.as_ref(),
            at: event.event.at,
            data: &event.event.data,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The JetStream stream events are published to.
#[derive(Debug, Clone)]
pub struct Stream {
    js: async_nats::jetstream::Context,
    name: String,
    prefix: String,
}

impl Stream {
    /// Connects to NATS at `url` and makes sure the stream exists
    /// ([`STREAM_NAME`] on `citycard.events.>`, file storage).
    pub async fn connect(url: &str) -> Result<Stream, RelayError> {
        Stream::connect_named(url, STREAM_NAME, SUBJECT_PREFIX).await
    }

    /// As [`Stream::connect`], with another stream name and subject prefix
    /// (several card systems, or tests, on one NATS server).
    pub async fn connect_named(url: &str, name: &str, prefix: &str) -> Result<Stream, RelayError> {
        // Waits for a server that is still starting (the service may start first).
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(url)
            .await
            .map_err(nats)?;
        let js = async_nats::jetstream::new(client);
        let stream = js
            .get_or_create_stream(async_nats::jetstream::stream::Config {
                name: name.into(),
                subjects: vec![format!("{prefix}.>")],
                duplicate_window: STREAM_DUPLICATE_WINDOW,
                ..Default::default()
            })
            .await
            .map_err(nats)?;
        Ok(Stream {
            js,
            name: stream.cached_info().config.name.clone(),
            prefix: prefix.to_owned(),
        })
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The JetStream context (for consumers and tests).
    pub fn context(&self) -> &async_nats::jetstream::Context {
        &self.js
    }

    /// Publishes `events` in order, each with `Nats-Msg-Id` = its outbox id,
    /// and waits for every acknowledgement; returns how many the stream
    /// already held (duplicates it dropped).
    pub async fn publish(&self, events: &[OutboxEvent]) -> Result<usize, RelayError> {
        let mut acks = Vec::with_capacity(events.len());
        for event in events {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, event.id.to_string());
            let subject = format!("{}.{}", self.prefix, event.event.kind.code());
            let ack = self
                .js
                .publish_with_headers(subject, headers, EventBody::of(event).bytes().into())
                .await
                .map_err(nats)?;
            acks.push(ack);
        }
        let mut duplicates = 0;
        for ack in acks {
            if ack.await.map_err(nats)?.duplicate {
                duplicates += 1;
            }
        }
        Ok(duplicates)
    }
}

/// The webhook header carrying the event's outbox id.
pub const EVENT_ID: &str = "citycard-event-id";

/// Signed webhook deliveries to the platforms' endpoints.
#[derive(Debug, Clone)]
pub struct Webhooks {
    endpoints: HashMap<Platform, String>,
    key: Arc<PrivateKey>,
    http: reqwest::Client,
}

impl Webhooks {
    /// Deliveries to `endpoints` (a platform without one gets none: its
    /// events are marked delivered), signed with `key`, each attempt at
    /// most `timeout`.
    pub fn new(
        endpoints: HashMap<Platform, String>,
        key: Arc<PrivateKey>,
        timeout: Duration,
    ) -> Webhooks {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        Webhooks {
            endpoints,
            key,
            http,
        }
    }

    /// POSTs `event` to its platform's endpoint; a 2xx answer is delivered.
    pub async fn deliver(&self, event: &OutboxEvent, now: DateTime<Utc>) -> Result<(), String> {
        let Some(url) = event
            .event
            .platform
            .as_ref()
            .and_then(|p| self.endpoints.get(p))
        else {
            return Ok(());
        };
        let body = EventBody::of(event).bytes();
        let timestamp = now.timestamp_millis();
        let signature = sign_response(&self.key, timestamp, &format!("event-{}", event.id), &body)
            .map_err(|e| e.to_string())?;
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header(EVENT_ID, event.id.to_string())
            .header(crate::signing::RESPONSE_TIMESTAMP, timestamp.to_string())
            .header(crate::signing::RESPONSE_SIGNATURE, signature)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("answered {}", response.status()))
        }
    }
}

/// How the relay paces itself.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Events read per step (256).
    pub batch: usize,
    /// The first retry's backoff (1 s); it doubles per attempt.
    pub backoff_base: chrono::Duration,
    /// The longest backoff (5 minutes).
    pub backoff_max: chrono::Duration,
    /// Failed attempts before a delivery is dead-lettered (12: about half an hour).
    pub max_attempts: u32,
    /// How long [`Relay::run`] waits when there was nothing to do (20 ms).
    pub idle: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch: 256,
            backoff_base: chrono::Duration::seconds(1),
            backoff_max: chrono::Duration::minutes(5),
            max_attempts: 12,
            idle: Duration::from_millis(20),
        }
    }
}

/// The backoff before attempt `attempts + 1`: a uniformly random part of
/// `base · 2^attempts`, capped at `max` ("full jitter"), at least 1 ms.
pub fn backoff(
    attempts: u32,
    base: chrono::Duration,
    max: chrono::Duration,
    random: u64,
) -> chrono::Duration {
    let ceiling = base
        .num_milliseconds()
        .saturating_mul(1i64 << attempts.min(30))
        .min(max.num_milliseconds())
        .max(1);
    let ceiling = u64::try_from(ceiling).unwrap_or(1);
    chrono::Duration::milliseconds(i64::try_from(random % ceiling).unwrap_or(0).max(1))
}

/// The relay (see the module docs).
pub struct Relay {
    outbox: Arc<dyn Outbox>,
    stream: Option<Stream>,
    webhooks: Option<Webhooks>,
    clock: Arc<dyn Clock>,
    config: RelayConfig,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("stream", &self.stream.is_some())
            .field("webhooks", &self.webhooks.is_some())
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay of `outbox` to `stream` and `webhooks` (either may be absent).
    pub fn new(
        outbox: Arc<dyn Outbox>,
        stream: Option<Stream>,
        webhooks: Option<Webhooks>,
        clock: Arc<dyn Clock>,
        config: RelayConfig,
    ) -> Relay {
        Relay {
            outbox,
            stream,
            webhooks,
            clock,
            config,
        }
    }

    /// Publishes one batch of unpublished events; returns how many.
    pub async fn publish_once(&self) -> Result<usize, RelayError> {
        let Some(stream) = &self.stream else {
            return Ok(0);
        };
        let events = self.outbox.unpublished(self.config.batch).await?;
        if events.is_empty() {
            return Ok(0);
        }
        let duplicates = stream.publish(&events).await?;
        if duplicates > 0 {
            tracing::info!(
                duplicates,
                "the stream already held events a relay published before"
            );
        }
        let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
        self.outbox.mark_published(&ids).await?;
        Ok(events.len())
    }

    /// Attempts the due webhook deliveries of one batch: for each platform
    /// and card, its events in sequence, one at a time, until one fails
    /// (the card's order); cards at once. Returns how many were delivered.
    pub async fn deliver_once(&self) -> Result<usize, RelayError> {
        let Some(webhooks) = &self.webhooks else {
            return Ok(0);
        };
        let pending = self.outbox.undelivered(self.config.batch).await?;
        let now = self.clock.now();
        // Per platform and card, by sequence (ids are commit order on
        // SQLite, not always on PostgreSQL).
        let mut by_card: HashMap<(Option<Platform>, String), Vec<Delivery>> = HashMap::new();
        for d in pending {
            by_card
                .entry((d.event.event.platform.clone(), d.event.event.card.clone()))
                .or_default()
                .push(d);
        }
        let cards = by_card.into_values().filter_map(|mut queue| {
            queue.sort_by_key(|d| d.event.sequence);
            (queue.first()?.next_attempt <= now).then_some(queue)
        });
        let runs = cards.map(|queue| async move {
            let mut delivered = Vec::new();
            for d in queue {
                if let Err(error) = webhooks.deliver(&d.event, now).await {
                    return (delivered, Some((d, error)));
                }
                delivered.push(d.event.id);
            }
            (delivered, None)
        });
        let mut delivered = Vec::new();
        for (done, failed) in futures_join_all(runs).await {
            delivered.extend(done);
            if let Some((d, error)) = failed {
                let attempts = d.attempts + 1;
                let dead = attempts >= self.config.max_attempts;
                let wait = backoff(
                    d.attempts,
                    self.config.backoff_base,
                    self.config.backoff_max,
                    rand_core::OsRng.next_u64(),
                );
                tracing::warn!(event = d.event.id, attempts, dead, %error, "webhook not delivered");
                self.outbox
                    .mark_failed(d.event.id, now + wait, &error, dead)
                    .await?;
            }
        }
        self.outbox.mark_delivered(&delivered).await?;
        Ok(delivered.len())
    }

    /// Publishes and delivers until `stop` resolves, then does one last
    /// round (what is left is done by the next relay).
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        loop {
            let worked = self.round().await;
            if !worked {
                tokio::select! {
                    () = &mut stop => break,
                    () = tokio::time::sleep(self.config.idle) => {}
                }
            } else if futures_ready(&mut stop).await {
                break;
            }
        }
        self.round().await;
    }

    async fn round(&self) -> bool {
        let published = self.publish_once().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "events not published; retrying");
            0
        });
        let delivered = self.deliver_once().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "webhooks not attempted; retrying");
            0
        });
        published + delivered > 0
    }
}

/// Runs the futures concurrently on the caller's task; answers in their order.
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// Whether `stop` has resolved, without waiting.
async fn futures_ready<F: std::future::Future<Output = ()>>(
    stop: &mut std::pin::Pin<&mut F>,
) -> bool {
    std::future::poll_fn(|cx| std::task::Poll::Ready(stop.as_mut().poll(cx).is_ready())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_below_it() {
        let base = chrono::Duration::seconds(1);
        let max = chrono::Duration::minutes(5);
        assert_eq!(
            backoff(0, base, max, 999),
            chrono::Duration::milliseconds(999)
        );
        assert_eq!(
            backoff(0, base, max, 1000),
            chrono::Duration::milliseconds(1)
        );
        assert_eq!(
            backoff(3, base, max, 7_999),
            chrono::Duration::milliseconds(7_999)
        );
        assert_eq!(
            backoff(20, base, max, u64::MAX),
            chrono::Duration::milliseconds(i64::try_from(u64::MAX % 300_000).unwrap())
        );
        assert!(backoff(40, base, max, 12345) <= max);
    }
}
