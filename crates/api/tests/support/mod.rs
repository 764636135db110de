//! A card system served on 127.0.0.1 and platforms that call it with reqwest.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use citycard::core::{Clock, IdempotencyKey, ManualClock, Platform, Principal, Sensitive};
use citycard::identity::{IdNumber, KnownPerson, RegionCode, Sex};
use citycard::{CityCard, NewCitizenCard};
use citycard_api::auth::Platforms;
use citycard_api::signing::{
    Algorithm, PlatformSigner, PrivateKey, PublicKey, RESPONSE_SIGNATURE, RESPONSE_TIMESTAMP,
    verify_response,
};
use citycard_api::{ApiConfig, App};
use serde_json::Value;

pub const CARD_NUMBER: &str = "3301000011112222";
pub const NAME: &str = "张伟";

/// The test RSA key of the second platform (made once with openssl; tests only).
pub const WECHAT_RSA: &str = include_str!("../keys/wechat-test-rsa.pem");

pub struct Server {
    pub base: String,
    pub city: Arc<CityCard>,
    pub clock: Arc<ManualClock>,
    pub card_system: PublicKey,
    pub id_number: IdNumber,
    pub alipay: Client,
    pub wechat: Client,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

pub struct Client {
    pub signer: PlatformSigner,
    pub base: String,
    pub http: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub card_system: PublicKey,
    nonces: AtomicU64,
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A request to send: method, path, body, key, language, and overrides for the attacks.
#[derive(Clone, Default)]
pub struct Req {
    pub method: &'static str,
    pub path: String,
    pub body: Option<Value>,
    pub key: Option<String>,
    pub lang: Option<&'static str>,
    pub nonce: Option<String>,
    pub timestamp_offset_ms: i64,
    pub tamper_body: bool,
}

pub fn get(path: impl Into<String>) -> Req {
    Req {
        method: "GET",
        path: path.into(),
        ..Req::default()
    }
}

pub fn post(path: impl Into<String>, body: Value, key: &str) -> Req {
    Req {
        method: "POST",
        path: path.into(),
        body: Some(body),
        key: Some(key.to_owned()),
        ..Req::default()
    }
}

impl Client {
    pub async fn send(&self, req: Req) -> Answer {
        let body = req
            .body
            .as_ref()
            .map(|b| serde_json::to_vec(b).unwrap())
            .unwrap_or_default();
        let nonce = req
            .nonce
            .clone()
            .unwrap_or_else(|| format!("n{}", self.nonces.fetch_add(1, Ordering::Relaxed)));
        let timestamp = self.clock.now().timestamp_millis() + req.timestamp_offset_ms;
        let auth = self
            .signer
            .authorization(req.method, &req.path, &body, timestamp, &nonce)
            .unwrap();
        let sent = if req.tamper_body {
            let mut b = body.clone();
            b.push(b' ');
            b
        } else {
            body
        };
        let mut builder = self
            .http
            .request(
                req.method.parse().unwrap(),
                format!("{}{}", self.base, req.path),
            )
            .header("authorization", auth)
            .header("content-type", "application/json")
            .body(sent);
        if let Some(key) = &req.key {
            builder = builder.header("idempotency-key", key);
        }
        if let Some(lang) = req.lang {
            builder = builder.header("accept-language", lang);
        }
        let response = builder.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        // Every response is the card system's, over this request's nonce.
        assert!(
            verify_response(
                &self.card_system,
                headers[RESPONSE_TIMESTAMP].to_str().unwrap(),
                headers[RESPONSE_SIGNATURE].to_str().unwrap(),
                &nonce,
                &bytes,
            ),
            "response signature of {} {}",
            req.method,
            req.path
        );
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Answer {
            status,
            headers,
            body,
        }
    }
}

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::parse(k).unwrap()
}

/// An in-memory card system with one enrolled cardholder and one issued card,
/// served on a free port of 127.0.0.1; Alipay signs with SM2, WeChat Pay with RSA.
pub async fn start() -> Server {
    start_with(CityCard::builder().in_memory()).await
}

/// The server over a card system built by `builder` (its clock is the test's).
pub async fn start_with(builder: citycard::CityCardBuilder) -> Server {
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0));
    let city = Arc::new(builder.clock(clock.clone()).build().await.unwrap());
    let id_number = IdNumber::generate(
        RegionCode::new(330106).unwrap(),
        chrono::NaiveDate::from_ymd_opt(1988, 5, 17).unwrap(),
        Sex::Male,
        3,
    )
    .unwrap();
    let person = city
        .identity()
        .enroll_person(
            &Principal::System,
            &Sensitive::new(NAME.into()),
            &id_number.to_sensitive(),
            &key("enrol-1"),
        )
        .await
        .unwrap();
    city.issue_card(
        &Principal::System,
        &key("issue-1"),
        &NewCitizenCard {
            number: CARD_NUMBER.into(),
            kind: "standard".into(),
            holder: person.id.clone(),
            id_number: id_number.to_sensitive(),
            services: None,
        },
    )
    .await
    .unwrap();
    city.simulated_verifier()
        .unwrap()
        .register(&id_number, KnownPerson::named(NAME));

    let alipay_key = PrivateKey::generate_sm2();
    let wechat_key = PrivateKey::parse(Algorithm::RsaSha256, WECHAT_RSA).unwrap();
    let mut platforms = Platforms::new();
    platforms.register(Platform::Alipay, alipay_key.public_key());
    platforms.register(Platform::WechatPay, wechat_key.public_key());
    let server_key = PrivateKey::generate_sm2();
    let card_system = server_key.public_key();
    let app = App::new(city.clone(), platforms, server_key, ApiConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(citycard_api::serve(app, listener, async {
        let _ = rx.await;
    }));
    let client = |platform: &str, key: PrivateKey| Client {
        signer: PlatformSigner {
            platform: platform.into(),
            key,
        },
        base: base.clone(),
        http: reqwest::Client::new(),
        clock: clock.clone(),
        card_system: card_system.clone(),
        nonces: AtomicU64::new(0),
    };
    Server {
        alipay: client("alipay", alipay_key),
        wechat: client("wechat_pay", wechat_key),
        base: base.clone(),
        city,
        clock,
        card_system,
        id_number,
        _shutdown: tx,
    }
}

pub fn consent() -> Value {
    serde_json::json!({
        "purpose": "use the citizen card in Alipay: rides, balance",
        "data_categories": ["card_number", "identity", "balance", "transit_records"],
        "text_version": "2026-01",
        "channel": "alipay_app"
    })
}

/// A verified Alipay account and an active binding of the card: (account, binding).
pub async fn bound(server: &Server) -> (String, String) {
    let a = server
        .alipay
        .send(post(
            "/v1/accounts",
            serde_json::json!({"external_id": "2088102146225135"}),
            "acct-1",
        ))
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let account = a.body["id"].as_str().unwrap().to_owned();
    let v = server
        .alipay
        .send(post(
            format!("/v1/accounts/{account}/real-name"),
            serde_json::json!({"name": NAME, "id_number": server.id_number.reveal()}),
            "verify-1",
        ))
        .await;
    assert_eq!(v.status, 200, "{}", v.body);
    let b = server
        .alipay
        .send(post(
            "/v1/bindings",
            serde_json::json!({
                "account": account,
                "card_number": CARD_NUMBER,
                "id_number": server.id_number.reveal(),
                "consent": consent(),
            }),
            "bind-1",
        ))
        .await;
    assert_eq!(b.status, 201, "{}", b.body);
    (account, b.body["id"].as_str().unwrap().to_owned())
}
