//! The outbox relay against a real NATS JetStream server and a real
//! webhook endpoint on 127.0.0.1.
//!
//! NATS: `CITYCARD_TEST_NATS` (as `.ci/run` starts it), else a
//! `nats-server -js` this test starts on a free port; without either, the
//! NATS test says so and passes (the webhook tests need no NATS).

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use citycard::core::{Clock as _, EventKind, IdempotencyKey, Money, Platform, Principal};
use citycard_api::relay::{Relay, RelayConfig, Stream, Webhooks};
use support::*;

struct NatsServer {
    url: String,
    child: Option<std::process::Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn nats_server() -> Option<NatsServer> {
    if let Ok(url) = std::env::var("CITYCARD_TEST_NATS") {
        return Some(NatsServer {
            url,
            child: None,
            _dir: None,
        });
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let dir = tempfile::tempdir().ok()?;
    let child = std::process::Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    Some(NatsServer {
        url: format!("nats://127.0.0.1:{port}"),
        child: Some(child),
        _dir: Some(dir),
    })
}

/// `n` top-ups of 1.00 on the bound card (each: balance_changed, top_up_completed).
async fn top_ups(s: &Server, binding: &str, n: usize, tag: &str) {
    let b = s
        .city
        .cards()
        .binding(
            &Principal::System,
            &citycard::binding::BindingId::parse(binding).unwrap(),
        )
        .await
        .unwrap();
    for i in 0..n {
        s.city
            .wallet()
            .top_up(
                &Principal::System,
                &b.card,
                Money::from_fen(100),
                &Platform::Alipay,
                &IdempotencyKey::parse(&format!("{tag}-{i}")).unwrap(),
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_stream_and_restarted_leaves_every_event_once_in_the_stream_in_card_order()
 {
    let Some(nats) = nats_server() else {
        eprintln!("no NATS server (set CITYCARD_TEST_NATS or install nats-server): not run");
        return;
    };
    let s = start().await;
    let (_, binding) = bound(&s).await;
    top_ups(&s, &binding, 60, "t").await;
    let outbox = s.city.outbox().clone();
    let events = outbox.unpublished(10_000).await.unwrap();
    assert!(events.len() >= 120, "{}", events.len());
    // A stream of this run's own (a shared server may hold earlier runs').
    let run = format!("T{}", std::process::id());
    let stream = Stream::connect_named(
        &nats.url,
        &format!(
            "CITYCARD_TEST_{run}_{}",
            chrono::Utc::now().timestamp_micros()
        ),
        &format!(
            "citycard-test.{run}.{}",
            chrono::Utc::now().timestamp_micros()
        ),
    )
    .await
    .unwrap();
    let relay = |stream: Stream| {
        Relay::new(
            outbox.clone(),
            Some(stream),
            None,
            s.city.clock().clone(),
            RelayConfig {
                batch: 16,
                ..RelayConfig::default()
            },
        )
    };

    // A relay that dies after publishing a batch and before marking it.
    assert_eq!(stream.publish(&events[..40]).await.unwrap(), 0);
    // One that is killed while running (wherever it is).
    let running = tokio::spawn(relay(stream.clone()).run(std::future::pending()));
    let mut js_stream = stream.context().get_stream(stream.name()).await.unwrap();
    while js_stream.info().await.unwrap().state.messages < 60 {
        tokio::task::yield_now().await;
    }
    running.abort();
    let _ = running.await;
    // More events while no relay runs; then a new relay finishes the job.
    top_ups(&s, &binding, 10, "u").await;
    let mut all: Vec<u64> = events.iter().map(|e| e.id).collect();
    all.extend(
        outbox
            .unpublished(10_000)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id),
    );
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), events.len() + 20);
    let restarted = relay(stream.clone());
    while restarted.publish_once().await.unwrap() > 0 {}
    assert!(outbox.unpublished(10).await.unwrap().is_empty());

    let info = js_stream.info().await.unwrap().state.clone();
    assert_eq!(
        info.messages,
        all.len() as u64,
        "exactly once in the stream"
    );
    let mut ids = Vec::new();
    let mut last_sequence: HashMap<String, u64> = HashMap::new();
    for seq in info.first_sequence..=info.last_sequence {
        let m = js_stream.get_raw_message(seq).await.unwrap();
        let msg_id: u64 = m
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .unwrap()
            .as_str()
            .parse()
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(body["id"], msg_id);
        ids.push(msg_id);
        let card = body["card"].as_str().unwrap().to_owned();
        let sequence = body["sequence"].as_u64().unwrap();
        let last = last_sequence.entry(card).or_insert(0);
        assert_eq!(sequence, *last + 1, "the card's events in commit order");
        *last = sequence;
    }
    ids.sort_unstable();
    assert_eq!(ids, all, "every event once");
}

/// A platform's webhook endpoint: answers 503 while `down`, keeps the pass's
/// balance from the events (in the card's order, a stale one ignored).
#[derive(Default)]
struct Endpoint {
    down: bool,
    received: Vec<serde_json::Value>,
    balance: Option<String>,
    last_sequence: u64,
}

async fn endpoint(
    state: Arc<Mutex<Endpoint>>,
    card_system: citycard_api::signing::PublicKey,
) -> String {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/hooks",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (state, card_system) = (state.clone(), card_system.clone());
                async move {
                    let header =
                        |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
                    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(header("citycard-event-id"), event["id"].to_string());
                    assert!(
                        citycard_api::signing::verify_response(
                            &card_system,
                            &header("citycard-timestamp"),
                            &header("citycard-signature"),
                            &format!("event-{}", event["id"]),
                            &body,
                        ),
                        "signed by the card system"
                    );
                    let mut s = state.lock().unwrap();
                    if s.down {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let sequence = event["sequence"].as_u64().unwrap();
                    if sequence > s.last_sequence {
                        s.last_sequence = sequence;
                        if event["type"] == "balance_changed" {
                            s.balance = event["data"]["balance"].as_str().map(str::to_owned);
                        }
                    }
                    s.received.push(event);
                    axum::http::StatusCode::NO_CONTENT
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_with_backoff_dead_lettered_replayed_and_keep_the_pass_current()
{
    let s = start().await;
    let (_, binding) = bound(&s).await;
    let state = Arc::new(Mutex::new(Endpoint {
        down: true,
        ..Endpoint::default()
    }));
    let key = Arc::new(citycard_api::signing::PrivateKey::generate_sm2());
    let url = endpoint(state.clone(), key.public_key()).await;
    let webhooks = Webhooks::new(
        HashMap::from([(Platform::Alipay, url)]),
        key.clone(),
        std::time::Duration::from_secs(5),
    );
    let relay = Relay::new(
        s.city.outbox().clone(),
        None,
        Some(webhooks),
        s.city.clock().clone(),
        RelayConfig {
            max_attempts: 3,
            ..RelayConfig::default()
        },
    );
    top_ups(&s, &binding, 3, "w").await;
    let outbox = s.city.outbox().clone();
    let pending = outbox.undelivered(100).await.unwrap();
    let first_id = pending[0].event.id;

    // The platform is down: one attempt (the card's first event only), then backoff.
    assert_eq!(relay.deliver_once().await.unwrap(), 0);
    let after = outbox.undelivered(100).await.unwrap();
    let head = after.iter().find(|d| d.event.id == first_id).unwrap();
    assert_eq!(head.attempts, 1);
    assert!(head.next_attempt > s.clock.now());
    assert!(after.iter().filter(|d| d.attempts > 0).count() == 1);
    // Not due yet: nothing is attempted.
    assert_eq!(relay.deliver_once().await.unwrap(), 0);
    assert_eq!(
        outbox
            .undelivered(100)
            .await
            .unwrap()
            .iter()
            .find(|d| d.event.id == first_id)
            .unwrap()
            .attempts,
        1
    );
    // Two more failures (after their backoff): dead-lettered.
    for _ in 0..2 {
        s.clock.advance(chrono::Duration::minutes(6));
        relay.deliver_once().await.unwrap();
    }
    let dead = outbox.dead_letters(Some(&Platform::Alipay)).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event.id, first_id);
    assert!(dead[0].last_error.as_deref().unwrap().contains("503"));

    // The platform is back: the rest is delivered in the card's order.
    state.lock().unwrap().down = false;
    s.clock.advance(chrono::Duration::minutes(6));
    while relay.deliver_once().await.unwrap() > 0 {}
    assert!(outbox.undelivered(100).await.unwrap().is_empty());
    // Replay the dead letter: delivered, and the pass ignores it as stale.
    assert!(outbox.replay(first_id, s.clock.now()).await.unwrap());
    assert!(!outbox.replay(first_id, s.clock.now()).await.unwrap());
    while relay.deliver_once().await.unwrap() > 0 {}
    assert!(outbox.dead_letters(None).await.unwrap().is_empty());
    let endpoint = state.lock().unwrap();
    let kinds: Vec<_> = endpoint
        .received
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    let mut in_order = kinds[..kinds.len() - 1].to_vec();
    in_order.sort_unstable();
    assert_eq!(kinds[..kinds.len() - 1], in_order[..], "card order");
    assert_eq!(endpoint.received.len(), pending.len());
    assert_eq!(
        endpoint.balance.as_deref(),
        Some("3.00"),
        "the pass is current"
    );
    assert!(
        endpoint
            .received
            .iter()
            .any(|e| e["type"] == EventKind::TopUpCompleted.code())
    );
}
