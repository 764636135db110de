//! `Idempotency-Key` as the IETF httpapi draft specifies it.
//!
//! Every state-changing request names a key. The service claims it in the
//! card system's idempotency store under the platform's scope
//! (`api@platform:<code>`), with a fingerprint of method, path and body
//! digest:
//!
//! - no key → 400; a key that is not a valid key → 400;
//! - the same key with another payload → 422;
//! - the same key while the first request is still being processed → 409;
//! - a retry of a finished request → the stored status and body.
//!
//! The operation itself runs with a key derived from the platform and the
//! HTTP key ([`IdempotencyKey::scoped_to`]), so its effect commits with its
//! own idempotency record in the facade's one transaction; the stored HTTP
//! response is written after it. A crash between the two leaves the claim
//! to expire; the retry that takes it over runs the operation again, which
//! the facade answers from its record (the effect is not repeated).
//! Retryable answers (429, 5xx) are not stored: the claim is released so a
//! retry runs again. Keys are kept as long as the store keeps its records.
//!
//! ## The record in the effect's transaction ([`idempotent_in_effect`])
//!
//! Top-up orders and payment notifications take no claim: the key is looked
//! up (a read), the operation decides, and the stored response commits as a
//! [`KeyOutcome`] **in the same transaction as the effect** (the order's
//! record and the platform's audited binding read; the ledger transfer and
//! its audit record), so a durable top-up is one write transaction per
//! request instead of three or four. "Still in flight" (409) is known to the
//! instance that runs the request ([`InFlight`], in memory); two instances
//! racing on one key both decide, the store's unique key lets one commit,
//! and the other answers the winner's stored response. A refusal is stored
//! afterwards in a transaction of its own (the effect wrote nothing the
//! response depends on).

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use citycard::binding::Lang;
use citycard::core::{
    Claim, CoreChanges, Fingerprint, IdempotencyError, IdempotencyKey, IdempotencyState,
    KeyOutcome, Principal,
};
use serde::{Deserialize, Serialize};

use crate::App;
use crate::auth::Caller;
use crate::problem::{ApiError, Kind, PROBLEM_JSON, content_language};

/// The request header naming the key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The response header marking a replayed response.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// A successful answer: its status and JSON body.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The body.
    pub body: serde_json::Value,
}

impl Reply {
    /// 200 with a body.
    pub fn ok<T: Serialize>(body: &T) -> Result<Reply, ApiError> {
        Reply::with(StatusCode::OK, body)
    }

    /// 201 with a body.
    pub fn created<T: Serialize>(body: &T) -> Result<Reply, ApiError> {
        Reply::with(StatusCode::CREATED, body)
    }

    /// Any status with a body.
    pub fn with<T: Serialize>(status: StatusCode, body: &T) -> Result<Reply, ApiError> {
        let body = serde_json::to_value(body)
            .map_err(|e| ApiError::Domain(citycard::CityCardError::Config(e.to_string())))?;
        Ok(Reply { status, body })
    }

    /// The JSON response.
    pub fn response(&self, lang: Lang) -> Response {
        let mut r = (self.status, axum::Json(&self.body)).into_response();
        r.headers_mut()
            .insert(header::CONTENT_LANGUAGE, content_language(lang));
        r
    }
}

/// A response as stored under its key.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    status: u16,
    problem: bool,
    lang: String,
    body: serde_json::Value,
}

impl Stored {
    fn response(&self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let lang = if self.lang == "en" {
            Lang::En
        } else {
            Lang::Zh
        };
        let mut r = (status, axum::Json(&self.body)).into_response();
        let headers = r.headers_mut();
        if self.problem {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        }
        headers.insert(header::CONTENT_LANGUAGE, content_language(lang));
        headers.insert(REPLAYED, HeaderValue::from_static("true"));
        r
    }
}

/// The store scope of a platform's HTTP keys.
pub fn scope(caller: &Caller) -> String {
    citycard::core::principal_scope("api", &caller.principal())
}

/// The key an operation runs with for a platform's HTTP key.
pub fn operation_key(caller: &Caller, key: &IdempotencyKey) -> IdempotencyKey {
    key.scoped_to(&Principal::Platform {
        platform: caller.platform.clone(),
    })
}

/// The HTTP key of a request, if it has a valid one.
pub fn key_of(headers: &HeaderMap) -> Result<IdempotencyKey, ApiError> {
    let text = headers
        .get(IDEMPOTENCY_KEY)
        .ok_or_else(|| ApiError::Service(Kind::IdempotencyKeyMissing, "no Idempotency-Key".into()))?
        .to_str()
        .map_err(|_| ApiError::invalid("the Idempotency-Key is not text"))?;
    // The draft's keys are structured-header strings: accept them quoted too.
    let text = text.trim().trim_matches('"');
    IdempotencyKey::parse(text).map_err(|e| ApiError::invalid(e.to_string()))
}

/// Runs a state-changing request at most once per key (see the module docs).
pub async fn idempotent<F, Fut>(
    app: &App,
    caller: &Caller,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    lang: Lang,
    run: F,
) -> Response
where
    F: FnOnce(IdempotencyKey) -> Fut,
    Fut: Future<Output = Result<Reply, ApiError>>,
{
    let key = match key_of(headers) {
        Ok(k) => k,
        Err(e) => return e.response(lang),
    };
    let store = app.city.idempotency_store();
    let scope = scope(caller);
    let fingerprint =
        Fingerprint::of_bytes(format!("{method}\n{path}\n{}", caller.body_digest).as_bytes());
    let now = app.city.clock().now();
    match store.claim(&scope, &key, &fingerprint, now).await {
        Ok(Claim::Started | Claim::TakenOver { .. }) => {}
        Ok(Claim::Completed(outcome)) => {
            return match serde_json::from_str::<Stored>(&outcome) {
                Ok(stored) => stored.response(),
                Err(e) => ApiError::Domain(citycard::CityCardError::Config(format!(
                    "stored response for key {key}: {e}"
                )))
                .response(lang),
            };
        }
        Err(IdempotencyError::Conflict { .. }) => {
            return ApiError::Service(Kind::IdempotencyKeyReused, format!("key {key}"))
                .response(lang);
        }
        Err(IdempotencyError::InProgress { .. }) => {
            return ApiError::Service(Kind::IdempotencyKeyInFlight, format!("key {key}"))
                .response(lang);
        }
        Err(e) => return ApiError::Domain(e.into()).response(lang),
    }
    let result = run(operation_key(caller, &key)).await;
    let (stored, response) = match &result {
        Ok(reply) => (
            Stored {
                status: reply.status.as_u16(),
                problem: false,
                lang: lang.pick("zh-CN", "en").to_owned(),
                body: reply.body.clone(),
            },
            reply.response(lang),
        ),
        Err(e) => {
            let problem = e.problem(lang);
            let response = e.response(lang);
            if problem.retryable || problem.status >= 500 {
                if let Err(release) = store.release(&scope, &key, &fingerprint).await {
                    tracing::warn!(error = %release, "claim not released; it expires");
                }
                return response;
            }
            (
                Stored {
                    status: problem.status,
                    problem: true,
                    lang: lang.pick("zh-CN", "en").to_owned(),
                    body: serde_json::to_value(&problem).unwrap_or_default(),
                },
                response,
            )
        }
    };
    let outcome = serde_json::to_string(&stored).unwrap_or_default();
    let now = app.city.clock().now();
    if let Err(e) = store
        .complete(&scope, &key, &fingerprint, &outcome, now)
        .await
    {
        // The effect committed with the facade's own record; a retry after
        // the claim expires is answered from it.
        tracing::warn!(error = %e, "response not stored under its key");
    }
    response
}

/// The keys this instance is running a request for (the 409 of a request
/// still in flight, without a write).
#[derive(Debug, Default)]
pub struct InFlight {
    keys: Mutex<HashSet<(String, String)>>,
}

/// A key held in flight; released when dropped (also when the request is
/// cancelled).
#[derive(Debug)]
struct Held {
    in_flight: Arc<InFlight>,
    entry: (String, String),
}

impl InFlight {
    fn hold(self: &Arc<Self>, scope: &str, key: &IdempotencyKey) -> Option<Held> {
        let entry = (scope.to_owned(), key.as_str().to_owned());
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.insert(entry.clone()).then(|| Held {
            in_flight: self.clone(),
            entry,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut keys = self
            .in_flight
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        keys.remove(&self.entry);
    }
}

/// The HTTP request's idempotency record, for the operation to commit with
/// its effect ([`idempotent_in_effect`]).
#[derive(Debug, Clone)]
pub struct HttpRecord {
    scope: String,
    key: IdempotencyKey,
    fingerprint: Fingerprint,
    lang: Lang,
}

impl HttpRecord {
    fn outcome(
        &self,
        stored: &Stored,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<KeyOutcome, ApiError> {
        KeyOutcome::new(
            self.scope.clone(),
            self.key.clone(),
            self.fingerprint,
            stored,
            at,
        )
        .map_err(|e| ApiError::Domain(e.into()))
    }

    /// The core records that store `reply` as the answer to this request:
    /// commit them with the effect.
    pub fn changes(
        &self,
        reply: &Reply,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<CoreChanges, ApiError> {
        let stored = Stored {
            status: reply.status.as_u16(),
            problem: false,
            lang: self.lang.pick("zh-CN", "en").to_owned(),
            body: reply.body.clone(),
        };
        Ok(CoreChanges {
            audit: Vec::new(),
            outcomes: vec![self.outcome(&stored, at)?],
            events: Vec::new(),
        })
    }
}

/// What the store holds for a request's key.
enum Found {
    /// Nothing: run it.
    Free,
    /// An answer to return.
    Answer(Response),
}

async fn look_up(
    app: &App,
    scope: &str,
    key: &IdempotencyKey,
    fingerprint: &Fingerprint,
    lang: Lang,
) -> Found {
    let record = match app.city.idempotency_store().get(scope, key).await {
        Ok(record) => record,
        Err(e) => return Found::Answer(ApiError::Domain(e.into()).response(lang)),
    };
    let Some(record) = record else {
        return Found::Free;
    };
    if record.fingerprint != *fingerprint {
        return Found::Answer(
            ApiError::Service(Kind::IdempotencyKeyReused, format!("key {key}")).response(lang),
        );
    }
    match (record.state, record.outcome) {
        (IdempotencyState::Completed, Some(outcome)) => {
            Found::Answer(match serde_json::from_str::<Stored>(&outcome) {
                Ok(stored) => stored.response(),
                Err(e) => ApiError::Domain(citycard::CityCardError::Config(format!(
                    "stored response for key {key}: {e}"
                )))
                .response(lang),
            })
        }
        _ => Found::Answer(
            ApiError::Service(Kind::IdempotencyKeyInFlight, format!("key {key}")).response(lang),
        ),
    }
}

/// Runs a state-changing request at most once per key, its stored response
/// committed by `run` with the effect (see the module docs): `run` gets the
/// operation's key and the [`HttpRecord`] whose [`HttpRecord::changes`] it
/// must commit with its effect when it answers `Ok`.
pub async fn idempotent_in_effect<F, Fut>(
    app: &App,
    caller: &Caller,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    lang: Lang,
    run: F,
) -> Response
where
    F: FnOnce(IdempotencyKey, HttpRecord) -> Fut,
    Fut: Future<Output = Result<Reply, ApiError>>,
{
    let key = match key_of(headers) {
        Ok(k) => k,
        Err(e) => return e.response(lang),
    };
    let scope = scope(caller);
    let Some(_held) = app.in_flight.hold(&scope, &key) else {
        return ApiError::Service(Kind::IdempotencyKeyInFlight, format!("key {key}"))
            .response(lang);
    };
    let fingerprint =
        Fingerprint::of_bytes(format!("{method}\n{path}\n{}", caller.body_digest).as_bytes());
    if let Found::Answer(response) = look_up(app, &scope, &key, &fingerprint, lang).await {
        return response;
    }
    let record = HttpRecord {
        scope: scope.clone(),
        key: key.clone(),
        fingerprint,
        lang,
    };
    let e = match run(operation_key(caller, &key), record.clone()).await {
        Ok(reply) => return reply.response(lang),
        Err(e) => e,
    };
    // Another instance may have committed this key first: answer as it did.
    if let Found::Answer(response) = look_up(app, &scope, &key, &fingerprint, lang).await {
        return response;
    }
    let problem = e.problem(lang);
    let response = e.response(lang);
    if problem.retryable || problem.status >= 500 {
        return response;
    }
    let stored = Stored {
        status: problem.status,
        problem: true,
        lang: lang.pick("zh-CN", "en").to_owned(),
        body: serde_json::to_value(&problem).unwrap_or_default(),
    };
    let committed = match record.outcome(&stored, app.city.clock().now()) {
        Ok(outcome) => {
            app.city
                .unit_of_work()
                .commit(citycard::unit::CityPlan {
                    ledger: None,
                    transit: None,
                    core: CoreChanges {
                        audit: Vec::new(),
                        outcomes: vec![outcome],
                        events: Vec::new(),
                    },
                })
                .await
        }
        Err(e) => Err(citycard::core::StoreError::Internal(format!("{e:?}"))),
    };
    if let Err(e) = committed {
        tracing::warn!(error = %e, "refusal not stored under its key");
    }
    response
}
