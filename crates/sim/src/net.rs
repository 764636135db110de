//! The platform API's network: Alipay's servers call the `citycard-api`
//! service (signed requests, `Idempotency-Key`s) over a simulated link
//! that drops requests, loses answers, delays requests past later ones and
//! partitions the platform from the card system for whole steps, all from
//! the seed. The link is in process (an equivalent of `turmoil`): each
//! request goes through the service's axum router as a `tower` call, so a
//! seed replays its run exactly, with no sockets and no real time.
//!
//! The platform behaves as a careful integrator: a user's top-up is an
//! order (`POST /v1/top-up-orders`, the order number as its key) and a
//! payment notification (`POST …/payment`, its own key); a request with no
//! answer is sent again later with the same key; every answer's signature
//! is checked; the platform keeps each pass as the last answer it got
//! showed it. Between requests the card system changes cards (lost, found,
//! frozen) and the clock moves.
//!
//! Checked after every step: every answer is signed by the card system;
//! every card whose top-ups are all answered holds exactly the top-ups its
//! users paid (an in-doubt one is held to that once answered); no personal
//! data in any log line. At the end the network heals, delayed requests
//! arrive, the platform retries what was never answered, and then: every
//! user payment moved money exactly once (idempotent retries never double
//! a top-up), and every pass the platform shows converges to its card's
//! state and the ledger's balance after one refresh (and the platform
//! wallet's passes too, [`crate::converge::passes`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Duration;
use citycard::binding::BindingState;
use citycard::core::{Clock, Money, Platform, Principal};
use citycard_api::auth::Platforms;
use citycard_api::signing::{
    PlatformSigner, PrivateKey, PublicKey, RESPONSE_SIGNATURE, RESPONSE_TIMESTAMP, verify_response,
};
use citycard_api::{ApiConfig, App};
use serde::Serialize;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::capture::{Capture, Lines};
use crate::rng::Rng;
use crate::world::{Outcome, Store, World};
use crate::wrap::Mutation;

/// How big a network run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NetSize {
    /// Cardholders (about a third bound on Alipay before the run).
    pub people: usize,
    /// Steps.
    pub steps: usize,
}

impl NetSize {
    /// The size of the CI network runs.
    pub const CI: NetSize = NetSize {
        people: 30,
        steps: 60,
    };
}

/// What a network run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NetReport {
    /// The seed.
    pub seed: u64,
    /// Requests sent (retries included).
    pub requests: u64,
    /// Requests the link dropped (the card system never saw them).
    pub dropped: u64,
    /// Answers the link lost (the card system acted; the platform saw nothing).
    pub lost_answers: u64,
    /// Requests delivered late, after later ones.
    pub delayed: u64,
    /// Steps the platform was partitioned from the card system.
    pub partitioned_steps: u64,
    /// Requests sent again with the same key.
    pub retries: u64,
    /// User payments (top-ups) made.
    pub payments: u64,
    /// Card changes made by the card system meanwhile.
    pub card_changes: u64,
    /// Passes checked at the end.
    pub passes: u64,
}

/// What the link does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Deliver,
    Drop,
    LoseAnswer,
    Delay,
}

/// A user's top-up through the platform.
#[derive(Debug, Clone)]
struct Payment {
    who: usize,
    binding: String,
    yuan: i64,
    order: String,
    stage: Stage,
    /// A request of this payment went unanswered (it may have acted).
    in_doubt: bool,
    /// Orders this payment made (more than one only under the fresh-key mutation).
    orders: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Create,
    Notify,
    /// Paid into the wallet (answered 200).
    Done,
    /// Refused for good (a 4xx): the user is not charged.
    Refused,
}

/// A request on the wire.
#[derive(Debug, Clone)]
struct Sent {
    method: &'static str,
    path: String,
    body: Option<Value>,
    key: Option<String>,
    /// Which payment it advances, if any.
    payment: Option<usize>,
}

/// The platform's side: its signer, the card system's key, its passes.
struct PlatformSide {
    signer: PlatformSigner,
    card_system: PublicKey,
    nonce: u64,
    /// The pass each binding last showed (state, balance text).
    passes: BTreeMap<String, (String, Option<String>)>,
}

struct Net {
    world: World,
    router: axum::Router,
    side: PlatformSide,
    payments: Vec<Payment>,
    delayed: Vec<Sent>,
    partition_left: u64,
    report: NetReport,
    mutation: Option<Mutation>,
    lines: Lines,
    trace: Vec<String>,
}

/// Runs one network seed.
pub fn run(seed: u64, size: NetSize, mutation: Option<Mutation>) -> Result<NetReport, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| format!("no runtime: {e}"))?;
    let (capture, lines) = Capture::new();
    let _guard = tracing::subscriber::set_default(capture);
    runtime
        .block_on(run_async(seed, size, mutation, lines))
        .map_err(|(m, tail)| {
            format!(
                "network seed {seed} broke an invariant: {m}\nlast lines:\n  {}\nreplay: cargo run -p citycard-sim --release -- net --seed {seed} --people {} --steps {}{}",
                tail.join("\n  "),
                size.people,
                size.steps,
                mutation
                    .map(|m| format!(" --mutation {}", m.name()))
                    .unwrap_or_default()
            )
        })
}

type Broke = (String, Vec<String>);

async fn run_async(
    seed: u64,
    size: NetSize,
    mutation: Option<Mutation>,
    lines: Lines,
) -> Result<NetReport, Broke> {
    let verifier = Arc::new(citycard::identity::SimulatedVerifier::new());
    let mut world = World::open(&Store::Memory, None, Duration::zero(), verifier.clone())
        .await
        .map_err(|e| (e, Vec::new()))?;
    world
        .populate(seed, size.people, &verifier)
        .await
        .map_err(|e| (e, Vec::new()))?;
    let alipay = PrivateKey::generate_sm2();
    let mut platforms = Platforms::new();
    platforms.register(Platform::Alipay, alipay.public_key());
    let server = PrivateKey::generate_sm2();
    let card_system = server.public_key();
    let app = App::new(world.city.clone(), platforms, server, ApiConfig::default());
    let (router, _) = citycard_api::router_and_doc(app);
    let mut net = Net {
        world,
        router,
        side: PlatformSide {
            signer: PlatformSigner {
                platform: Platform::Alipay.code().to_owned(),
                key: alipay,
            },
            card_system,
            nonce: 0,
            passes: BTreeMap::new(),
        },
        payments: Vec::new(),
        delayed: Vec::new(),
        partition_left: 0,
        report: NetReport {
            seed,
            ..NetReport::default()
        },
        mutation,
        lines,
        trace: Vec::new(),
    };
    let mut rng = Rng::new(seed).fork(0x4e7);
    for step in 0..size.steps {
        net.step(step, &mut rng).await.map_err(|m| net.broke(m))?;
        net.check(false).await.map_err(|m| net.broke(m))?;
    }
    net.heal().await.map_err(|m| net.broke(m))?;
    net.check(true).await.map_err(|m| net.broke(m))?;
    net.converge().await.map_err(|m| net.broke(m))?;
    Ok(net.report)
}

fn yuan(money: Money) -> String {
    format!("{:.2}", money.to_decimal())
}

impl Net {
    fn broke(&self, message: String) -> Broke {
        (message, self.trace.clone())
    }

    fn trace(&mut self, line: String) {
        if std::env::var_os("CITYCARD_SIM_TRACE").is_some() {
            eprintln!("net: {line}");
        }
        self.trace.push(line);
        if self.trace.len() > 40 {
            self.trace.remove(0);
        }
    }

    /// Cardholders with a live Alipay binding, as the model knows them.
    fn bound(&self) -> Vec<(usize, String)> {
        self.world
            .people
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.bindings[0].as_ref().map(|b| (i, b.to_string())))
            .collect()
    }

    async fn step(&mut self, step: usize, rng: &mut Rng) -> Result<(), String> {
        self.world
            .clock
            .advance(Duration::minutes(1 + rng.below(4) as i64));
        if self.partition_left > 0 {
            self.partition_left -= 1;
            self.report.partitioned_steps += 1;
        } else if rng.chance(4) {
            self.partition_left = 1 + rng.below(3);
            self.trace(format!(
                "{step} partition for {} steps",
                self.partition_left
            ));
        }
        // Requests delayed last step arrive now, before this step's.
        for sent in std::mem::take(&mut self.delayed) {
            self.deliver(step, sent, Fate::Deliver).await?;
        }
        let bound = self.bound();
        if bound.is_empty() {
            return Ok(());
        }
        match rng.below(100) {
            0..=44 => {
                let (who, binding) = bound[rng.index(bound.len())].clone();
                let n = self.payments.len();
                self.payments.push(Payment {
                    who,
                    binding,
                    yuan: 1 + rng.below(200) as i64,
                    order: format!("ord-{step}-{n}"),
                    stage: Stage::Create,
                    in_doubt: false,
                    orders: 1,
                });
                self.report.payments += 1;
            }
            45..=64 => {
                let (_, binding) = bound[rng.index(bound.len())].clone();
                let fate = self.fate(rng);
                self.send(step, get(format!("/v1/bindings/{binding}/pass")), fate)
                    .await?;
            }
            65..=74 => {
                let (_, binding) = bound[rng.index(bound.len())].clone();
                let fate = self.fate(rng);
                let sent = Sent {
                    method: "POST",
                    path: format!("/v1/bindings/{binding}/pass/refresh"),
                    body: None,
                    key: None,
                    payment: None,
                };
                self.send(step, sent, fate).await?;
            }
            _ => {
                // The card system changes a bound card meanwhile (not through the API).
                let (who, _) = bound[rng.index(bound.len())];
                let change = match rng.below(4) {
                    0 => "lost",
                    1 => "found",
                    2 => "freeze",
                    _ => "thaw",
                };
                let op = match change {
                    "lost" => crate::Op::ReportLost { who },
                    "found" => crate::Op::ReportFound { who },
                    _ => crate::Op::Freeze {
                        who,
                        thaw: change == "thaw",
                    },
                };
                let action = self
                    .world
                    .resolve(&op, step as u64, 0)
                    .map_err(|e| format!("resolve: {e}"))?;
                let outcome = self.world.exec(&action).await;
                self.world.learn(&action, &outcome, false);
                self.report.card_changes += 1;
                self.trace(format!(
                    "{step} card {change} of {who} -> {}",
                    short(&outcome)
                ));
            }
        }
        // The platform advances up to three open payments, one request each.
        let open: Vec<usize> = (0..self.payments.len())
            .filter(|&i| matches!(self.payments[i].stage, Stage::Create | Stage::Notify))
            .take(3)
            .collect();
        for i in open {
            let fate = self.fate(rng);
            let sent = self.next_request(i);
            self.send(step, sent, fate).await?;
        }
        Ok(())
    }

    fn fate(&mut self, rng: &mut Rng) -> Fate {
        if self.partition_left > 0 {
            return Fate::Drop;
        }
        match rng.below(100) {
            0..=69 => Fate::Deliver,
            70..=79 => Fate::Drop,
            80..=89 => Fate::LoseAnswer,
            _ => Fate::Delay,
        }
    }

    fn next_request(&self, i: usize) -> Sent {
        let p = &self.payments[i];
        match p.stage {
            Stage::Create => Sent {
                method: "POST",
                path: "/v1/top-up-orders".into(),
                body: Some(json!({"binding": p.binding, "amount": yuan(Money::from_yuan(p.yuan))})),
                key: Some(p.order.clone()),
                payment: Some(i),
            },
            _ => Sent {
                method: "POST",
                path: format!("/v1/top-up-orders/{}/payment", p.order),
                body: Some(json!({
                    "trade_no": format!("2026{}", p.order),
                    "amount": yuan(Money::from_yuan(p.yuan)),
                    "status": "paid",
                })),
                key: Some(format!("pay-{}", p.order)),
                payment: Some(i),
            },
        }
    }

    async fn send(&mut self, step: usize, sent: Sent, fate: Fate) -> Result<(), String> {
        self.report.requests += 1;
        if let Some(i) = sent.payment
            && self.payments[i].in_doubt
        {
            self.report.retries += 1;
        }
        match fate {
            Fate::Drop => {
                self.report.dropped += 1;
                self.trace(format!("{step} {} {} dropped", sent.method, sent.path));
                self.unanswered(&sent);
                Ok(())
            }
            Fate::Delay => {
                self.report.delayed += 1;
                self.trace(format!("{step} {} {} delayed", sent.method, sent.path));
                self.unanswered(&sent);
                self.delayed.push(sent);
                Ok(())
            }
            _ => self.deliver(step, sent, fate).await,
        }
    }

    /// No answer came: the platform will send it again, with the same key
    /// (or, under the fresh-key mutation, a new order).
    fn unanswered(&mut self, sent: &Sent) {
        if let Some(i) = sent.payment {
            let fresh = self.mutation == Some(Mutation::FreshKeyRetry);
            let p = &mut self.payments[i];
            if matches!(p.stage, Stage::Create | Stage::Notify) {
                p.in_doubt = true;
                if fresh && p.stage == Stage::Notify {
                    p.orders += 1;
                    p.order = format!("{}-r{}", p.order, p.orders);
                    p.stage = Stage::Create;
                }
            }
        }
    }

    /// Delivers a request to the service; the answer reaches the platform unless lost.
    async fn deliver(&mut self, step: usize, sent: Sent, fate: Fate) -> Result<(), String> {
        let body = sent
            .body
            .as_ref()
            .map(|b| serde_json::to_vec(b).unwrap_or_default())
            .unwrap_or_default();
        self.side.nonce += 1;
        let nonce = format!("n{}", self.side.nonce);
        let timestamp = self.world.clock.now().timestamp_millis();
        let auth = self
            .side
            .signer
            .authorization(sent.method, &sent.path, &body, timestamp, &nonce)
            .map_err(|e| format!("signing: {e}"))?;
        let mut request = Request::builder()
            .method(sent.method)
            .uri(&sent.path)
            .header("authorization", auth)
            .header("content-type", "application/json");
        if let Some(key) = &sent.key {
            request = request.header("idempotency-key", key);
        }
        let request = request
            .body(Body::from(body))
            .map_err(|e| format!("request: {e}"))?;
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| format!("the service failed: {e:?}"))?;
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let (ts, sig) = (header(RESPONSE_TIMESTAMP), header(RESPONSE_SIGNATURE));
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .map_err(|e| format!("the answer's body: {e}"))?;
        if fate == Fate::LoseAnswer {
            self.report.lost_answers += 1;
            self.trace(format!(
                "{step} {} {} -> {} (answer lost)",
                sent.method,
                sent.path,
                status.as_u16()
            ));
            self.unanswered(&sent);
            return Ok(());
        }
        if !verify_response(&self.side.card_system, &ts, &sig, &nonce, &bytes) {
            return Err(format!(
                "the answer to {} {} is not signed by the card system",
                sent.method, sent.path
            ));
        }
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        self.trace(format!(
            "{step} {} {} -> {}",
            sent.method,
            sent.path,
            status.as_u16()
        ));
        self.answered(&sent, status, &value)
    }

    fn answered(&mut self, sent: &Sent, status: StatusCode, value: &Value) -> Result<(), String> {
        if sent.path.ends_with("/pass") && status == StatusCode::OK {
            let binding = value["binding"].as_str().unwrap_or_default().to_owned();
            let state = value["state"].as_str().unwrap_or_default().to_owned();
            let balance = value["balance"]["amount"].as_str().map(str::to_owned);
            self.side.passes.insert(binding, (state, balance));
        }
        if sent.path.ends_with("/pass/refresh") && status == StatusCode::OK {
            let binding = sent
                .path
                .trim_start_matches("/v1/bindings/")
                .trim_end_matches("/pass/refresh")
                .to_owned();
            if let Some(amount) = value["amount"].as_str()
                && let Some(pass) = self.side.passes.get_mut(&binding)
            {
                pass.1 = Some(amount.to_owned());
            }
        }
        let Some(i) = sent.payment else {
            return Ok(());
        };
        let p = &mut self.payments[i];
        // An answer to an order this payment no longer uses (fresh-key retries).
        if !sent.path.contains(&p.order) && sent.key.as_deref() != Some(p.order.as_str()) {
            return Ok(());
        }
        match (p.stage, status.as_u16()) {
            (Stage::Create, 201) => p.stage = Stage::Notify,
            (Stage::Notify, 200) => {
                p.stage = Stage::Done;
                p.in_doubt = false;
            }
            (Stage::Create | Stage::Notify, 400..=499) => {
                // Refused for good (the binding or card is not active): the
                // platform refunds its user; a refused notification moved
                // nothing (a 5xx is no answer: sent again).
                p.stage = Stage::Refused;
                p.in_doubt = false;
            }
            _ => {}
        }
        Ok(())
    }

    /// What each cardholder's wallet must hold: the payments answered as paid.
    fn expected(&self) -> BTreeMap<usize, (i64, bool)> {
        let mut out: BTreeMap<usize, (i64, bool)> = BTreeMap::new();
        for p in &self.payments {
            let e = out.entry(p.who).or_default();
            if p.stage == Stage::Done {
                e.0 += p.yuan * 100;
            }
            if p.in_doubt && p.stage != Stage::Done {
                e.1 = true;
            }
        }
        out
    }

    async fn check(&mut self, end: bool) -> Result<(), String> {
        for line in self.lines.drain() {
            if let Some(leak) = crate::check::leaks(&self.world.secrets, &line) {
                return Err(format!("log line: {leak}"));
            }
        }
        crate::check::money(&self.world, false).await?;
        for (who, (fen, doubt)) in self.expected() {
            if doubt && !end {
                continue;
            }
            let card = self.world.people[who].card.clone();
            let held = self
                .world
                .city
                .wallet()
                .balance(&Principal::System, &card)
                .await
                .map_err(|e| format!("balance of cardholder {who}: {e}"))?;
            if held.fen() != fen {
                return Err(format!(
                    "cardholder {who}'s wallet holds {held} but the platform's users paid {} in top-ups answered as paid",
                    Money::from_fen(fen)
                ));
            }
        }
        Ok(())
    }

    /// The network heals: delayed requests arrive, and the platform sends
    /// every unanswered request again until it is answered.
    async fn heal(&mut self) -> Result<(), String> {
        self.partition_left = 0;
        for sent in std::mem::take(&mut self.delayed) {
            self.deliver(usize::MAX, sent, Fate::Deliver).await?;
        }
        for _ in 0..4 {
            let open: Vec<usize> = (0..self.payments.len())
                .filter(|&i| matches!(self.payments[i].stage, Stage::Create | Stage::Notify))
                .collect();
            for i in open {
                let sent = self.next_request(i);
                self.report.requests += 1;
                self.deliver(usize::MAX, sent, Fate::Deliver).await?;
            }
        }
        if let Some(p) = self
            .payments
            .iter()
            .find(|p| matches!(p.stage, Stage::Create | Stage::Notify))
        {
            return Err(format!(
                "a top-up stays unanswered once the network healed: {p:?}"
            ));
        }
        // A payment refused after an unanswered notification moved nothing.
        for p in &mut self.payments {
            p.in_doubt = false;
        }
        Ok(())
    }

    /// Every pass the platform shows converges to its card once it refreshes.
    async fn converge(&mut self) -> Result<(), String> {
        let bindings: Vec<(usize, String)> = self.bound();
        for (who, binding) in bindings {
            let refresh = Sent {
                method: "POST",
                path: format!("/v1/bindings/{binding}/pass/refresh"),
                body: None,
                key: None,
                payment: None,
            };
            self.deliver(usize::MAX, refresh, Fate::Deliver).await?;
            self.deliver(
                usize::MAX,
                get(format!("/v1/bindings/{binding}/pass")),
                Fate::Deliver,
            )
            .await?;
            self.report.passes += 1;
            let id = binding
                .parse()
                .map_err(|_| format!("binding id {binding}"))?;
            let b = self
                .world
                .city
                .cards()
                .binding(&Principal::System, &id)
                .await
                .map_err(|e| format!("binding {binding}: {e}"))?;
            let shown = self.side.passes.get(&binding).cloned();
            let state = serde_json::to_value(b.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let balance = if b.state == BindingState::Active {
                let m = self
                    .world
                    .city
                    .wallet()
                    .balance(&Principal::System, &b.card)
                    .await
                    .map_err(|e| format!("balance: {e}"))?;
                Some(yuan(m))
            } else {
                None
            };
            let want = (state, balance);
            if shown.as_ref() != Some(&want) {
                return Err(format!(
                    "cardholder {who}'s pass on the platform shows {shown:?} once the network healed; the card is {want:?}"
                ));
            }
        }
        crate::converge::passes(&self.world).await
    }
}

fn get(path: String) -> Sent {
    Sent {
        method: "GET",
        path,
        body: None,
        key: None,
        payment: None,
    }
}

fn short(outcome: &Outcome) -> String {
    format!("{outcome:?}").chars().take(60).collect()
}
