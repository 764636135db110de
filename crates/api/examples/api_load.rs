//! A bounded load run of the platform API on loopback: signed pass (balance)
//! reads per signature algorithm, and durable top-ups (order + payment
//! notification) on SQLite, with the outbox relay delivering their events
//! to a webhook endpoint on loopback (commit-to-webhook lag). The load
//! generator shares the machine.
//!
//! ```text
//! cargo run --release -p citycard-api --example api_load -- [seconds per phase, default 5] [concurrency, default 32]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use citycard::core::{IdempotencyKey, Platform, Principal, Sensitive, SystemClock};
use citycard::identity::{IdNumber, KnownPerson, RegionCode, Sex};
use citycard::{CityCard, NewCitizenCard, Storage};
use citycard_api::auth::Platforms;
use citycard_api::signing::{Algorithm, PlatformSigner, PrivateKey};
use citycard_api::{ApiConfig, App};
use serde_json::{Value, json};

const WECHAT_RSA: &str = include_str!("../tests/keys/wechat-test-rsa.pem");
const MAX_REQUESTS_PER_PHASE: u64 = 200_000;

struct Client {
    signer: PlatformSigner,
    base: String,
    http: reqwest::Client,
    nonce: AtomicU64,
}

impl Client {
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let bytes = body
            .map(|b| serde_json::to_vec(b).unwrap())
            .unwrap_or_default();
        let nonce = format!("n{}", self.nonce.fetch_add(1, Ordering::Relaxed));
        let now = chrono::Utc::now().timestamp_millis();
        let auth = self
            .signer
            .authorization(method, path, &bytes, now, &nonce)
            .unwrap();
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("authorization", auth)
            .header("content-type", "application/json")
            .body(bytes);
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::parse(k).unwrap()
}

/// Enrols a person, issues a card, registers and verifies an account on the
/// client's platform and binds the card; returns the binding.
async fn setup(city: &CityCard, client: &Client, n: u32, card_number: &str) -> String {
    let id = IdNumber::generate(
        RegionCode::new(330106).unwrap(),
        chrono::NaiveDate::from_ymd_opt(1980, 1, 1 + n).unwrap(),
        Sex::Female,
        n as u16,
    )
    .unwrap();
    let name = "李娜";
    let person = city
        .identity()
        .enroll_person(
            &Principal::System,
            &Sensitive::new(name.into()),
            &id.to_sensitive(),
            &key(&format!("enrol-{n}")),
        )
        .await
        .unwrap();
    city.issue_card(
        &Principal::System,
        &key(&format!("issue-{n}")),
        &NewCitizenCard {
            number: card_number.into(),
            kind: "standard".into(),
            holder: person.id.clone(),
            id_number: id.to_sensitive(),
            services: None,
        },
    )
    .await
    .unwrap();
    city.simulated_verifier()
        .unwrap()
        .register(&id, KnownPerson::named(name));
    let (_, a) = client
        .send(
            "POST",
            "/v1/accounts",
            Some(&json!({"external_id": format!("ext-{n}")})),
            Some(&format!("acct-{n}")),
        )
        .await;
    let account = a["id"].as_str().unwrap().to_owned();
    client
        .send(
            "POST",
            &format!("/v1/accounts/{account}/real-name"),
            Some(&json!({"name": name, "id_number": id.reveal()})),
            Some(&format!("verify-{n}")),
        )
        .await;
    let (status, b) = client
        .send(
            "POST",
            "/v1/bindings",
            Some(&json!({
                "account": account,
                "card_number": card_number,
                "id_number": id.reveal(),
                "consent": {"purpose": "load", "data_categories": ["balance"], "text_version": "1", "channel": "app"},
            })),
            Some(&format!("bind-{n}")),
        )
        .await;
    assert_eq!(status, 201, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

/// Runs `op` from `concurrency` tasks for `secs` (at most MAX_REQUESTS_PER_PHASE
/// operations); returns (operations/s, p50, p99, failures).
async fn phase<F, Fut>(secs: u64, concurrency: usize, op: F) -> (f64, Duration, Duration, u64)
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let counter = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (op, counter, failures) = (op.clone(), counter.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                if i >= MAX_REQUESTS_PER_PHASE {
                    break;
                }
                let t = Instant::now();
                if !op(i).await {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    (
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        failures.load(Ordering::Relaxed),
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let concurrency: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let dir = tempfile::tempdir().unwrap();
    let city = Arc::new(
        CityCard::builder()
            .storage(Storage::Sqlite(dir.path().join("citycard.db")))
            .clock(Arc::new(SystemClock))
            .build()
            .await
            .unwrap(),
    );
    let alipay_key = PrivateKey::generate_sm2();
    let wechat_key = PrivateKey::parse(Algorithm::RsaSha256, WECHAT_RSA).unwrap();
    let mut platforms = Platforms::new();
    platforms.register(Platform::Alipay, alipay_key.public_key());
    platforms.register(Platform::WechatPay, wechat_key.public_key());
    let app = App::new(
        city.clone(),
        platforms,
        PrivateKey::generate_sm2(),
        ApiConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(citycard_api::serve(app, listener, std::future::pending()));
    let client = |platform: &str, key: PrivateKey| {
        Arc::new(Client {
            signer: PlatformSigner {
                platform: platform.into(),
                key,
            },
            base: base.clone(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .build()
                .unwrap(),
            nonce: AtomicU64::new(0),
        })
    };
    let alipay = client("alipay", alipay_key);
    let wechat = client("wechat_pay", wechat_key);
    // The platforms' webhook endpoint: the lag from the event's decision to its arrival.
    let lags = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    let hook = {
        let lags = lags.clone();
        axum::Router::new().route(
            "/hooks",
            axum::routing::post(move |body: axum::body::Bytes| {
                let lags = lags.clone();
                async move {
                    let event: Value = serde_json::from_slice(&body).unwrap_or_default();
                    if let Some(at) = event["at"]
                        .as_str()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    {
                        let lag = chrono::Utc::now().signed_duration_since(at);
                        lags.lock()
                            .unwrap()
                            .push(lag.num_microseconds().unwrap_or(0) as f64 / 1e3);
                    }
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        )
    };
    let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hooks", hook_listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(hook_listener, hook).await });
    let relay = citycard_api::relay::Relay::new(
        city.outbox().clone(),
        None,
        Some(citycard_api::relay::Webhooks::new(
            [
                (Platform::Alipay, hook_url.clone()),
                (Platform::WechatPay, hook_url),
            ]
            .into_iter()
            .collect(),
            Arc::new(PrivateKey::generate_sm2()),
            Duration::from_secs(5),
        )),
        city.clock().clone(),
        citycard_api::relay::RelayConfig::default(),
    );
    let (stop_relay, relay_stopped) = tokio::sync::oneshot::channel::<()>();
    let relay_task = tokio::spawn(relay.run(async {
        let _ = relay_stopped.await;
    }));

    let sm2_binding = setup(&city, &alipay, 1, "3301000011110001").await;
    let rsa_binding = setup(&city, &wechat, 2, "3301000011110002").await;
    println!(
        "citycard-api load on loopback: {secs} s per phase, {concurrency} concurrent requests, SQLite, release build"
    );
    println!("load average before: {}", loadavg());

    for (name, client, binding) in [
        ("SM2-SM3", alipay.clone(), sm2_binding.clone()),
        ("RSA-SHA256", wechat.clone(), rsa_binding.clone()),
    ] {
        let path = format!("/v1/bindings/{binding}/pass");
        let (rate, p50, p99, failed) = phase(secs, concurrency, move |_| {
            let (client, path) = (client.clone(), path.clone());
            async move { client.send("GET", &path, None, None).await.0 == 200 }
        })
        .await;
        println!(
            "signed pass reads ({name}): {rate:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {failed} failed; load average {}",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            loadavg()
        );
    }

    let (client, binding) = (alipay.clone(), sm2_binding.clone());
    let (rate, p50, p99, failed) = phase(secs, concurrency, move |i| {
        let (client, binding) = (client.clone(), binding.clone());
        async move {
            let order = format!("load-order-{i}");
            let (created, _) = client
                .send(
                    "POST",
                    "/v1/top-up-orders",
                    Some(&json!({"binding": binding, "amount": "0.01"})),
                    Some(&order),
                )
                .await;
            let (paid, _) = client
                .send(
                    "POST",
                    &format!("/v1/top-up-orders/{order}/payment"),
                    Some(&json!({"trade_no": format!("T{i}"), "amount": "0.01", "status": "paid"})),
                    Some(&format!("{order}-paid")),
                )
                .await;
            created == 201 && paid == 200
        }
    })
    .await;
    println!(
        "durable top-ups (order + payment notification, SM2): {rate:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {failed} failed; load average {}",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        loadavg()
    );
    if let Some(db) = city.database() {
        println!("write transactions committed: {}", db.commits());
    }
    // Let the relay catch up (bounded), then the lag figures.
    let drained = Instant::now();
    while !city.outbox().undelivered(1).await.unwrap().is_empty()
        && drained.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_relay.send(());
    let _ = relay_task.await;
    let mut lags = lags.lock().unwrap().clone();
    lags.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lags.get(((lags.len() as f64 * p) as usize).min(lags.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "commit-to-webhook lag: {} events, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (caught up {:.1} s after the load); load average {}",
        lags.len(),
        pct(0.5),
        pct(0.99),
        lags.last().copied().unwrap_or_default(),
        drained.elapsed().as_secs_f64(),
        loadavg()
    );
}
