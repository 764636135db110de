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

use std::future::Future;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use citycard::binding::Lang;
use citycard::core::{Claim, Fingerprint, IdempotencyError, IdempotencyKey, Principal};
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
