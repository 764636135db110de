//! Who is calling: registered platforms, their signatures, the time window
//! and the nonces already seen; and the card system's signature on every
//! response.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use axum::body::{Body, to_bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use citycard::core::{Platform, Principal};

use crate::App;
use crate::problem::{ApiError, Kind};
use crate::signing::{
    Algorithm, AuthParams, PublicKey, RESPONSE_SIGNATURE, RESPONSE_TIMESTAMP, body_digest,
    sign_response,
};

/// A platform allowed to call the service, with the key it signs with.
#[derive(Debug, Clone)]
pub struct RegisteredPlatform {
    /// The platform.
    pub platform: Platform,
    /// Its public key.
    pub key: PublicKey,
}

/// The platforms registered with the card system, by code.
#[derive(Debug, Clone, Default)]
pub struct Platforms {
    by_code: HashMap<String, RegisteredPlatform>,
}

/// One platform in `platforms.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PlatformEntry {
    /// The platform's code (`alipay`, `wechat_pay`, ...).
    pub platform: String,
    /// `RSA-SHA256` or `SM2-SM3`.
    pub algorithm: Algorithm,
    /// SPKI PEM for RSA, base64 SEC1 for SM2.
    pub public_key: String,
}

impl Platforms {
    /// No platforms.
    pub fn new() -> Platforms {
        Platforms::default()
    }

    /// Registers (or re-keys) a platform.
    pub fn register(&mut self, platform: Platform, key: PublicKey) {
        self.by_code.insert(
            platform.code().to_owned(),
            RegisteredPlatform { platform, key },
        );
    }

    /// Reads platform entries (the JSON array of `platforms.json`).
    pub fn from_entries(entries: &[PlatformEntry]) -> Result<Platforms, crate::ServeError> {
        let mut platforms = Platforms::new();
        for e in entries {
            let key = PublicKey::parse(e.algorithm, &e.public_key)
                .map_err(|err| crate::ServeError::Config(format!("{}: {err}", e.platform)))?;
            platforms.register(Platform::from_code(&e.platform), key);
        }
        Ok(platforms)
    }

    /// The registered platform with this code.
    pub fn get(&self, code: &str) -> Option<&RegisteredPlatform> {
        self.by_code.get(code)
    }

    /// How many platforms are registered.
    pub fn len(&self) -> usize {
        self.by_code.len()
    }

    /// True when none is.
    pub fn is_empty(&self) -> bool {
        self.by_code.is_empty()
    }
}

/// The nonces seen within the time window: a nonce is refused the second
/// time while the request that first used it could still be accepted.
#[derive(Debug, Default)]
pub struct Nonces {
    inner: Mutex<NonceSet>,
}

#[derive(Debug, Default)]
struct NonceSet {
    seen: HashSet<(String, String)>,
    /// Forget order: (expiry in unix ms, key); expiries are non-decreasing.
    order: VecDeque<(i64, (String, String))>,
}

impl Nonces {
    /// Records a nonce at `now_ms`, kept until `expires_ms`; false when it was already seen.
    pub fn first_use(&self, platform: &str, nonce: &str, now_ms: i64, expires_ms: i64) -> bool {
        let mut set = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while set.order.front().is_some_and(|(e, _)| *e < now_ms) {
            if let Some((_, key)) = set.order.pop_front() {
                set.seen.remove(&key);
            }
        }
        let key = (platform.to_owned(), nonce.to_owned());
        if !set.seen.insert(key.clone()) {
            return false;
        }
        let expires_ms = set
            .order
            .back()
            .map_or(expires_ms, |(e, _)| expires_ms.max(*e));
        set.order.push_back((expires_ms, key));
        true
    }

    /// How many nonces are remembered.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .seen
            .len()
    }

    /// True when none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The platform.
    pub platform: Platform,
    /// The request's nonce.
    pub nonce: String,
    /// Base64 SHA-256 of the request body.
    pub body_digest: String,
}

impl Caller {
    /// The platform as a principal.
    pub fn principal(&self) -> Principal {
        Principal::Platform {
            platform: self.platform.clone(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::Service(Kind::Unauthenticated, "no authenticated caller".into())
                .response(crate::lang_of(&parts.headers))
        })
    }
}

fn unauthenticated(why: &str) -> ApiError {
    ApiError::Service(Kind::Unauthenticated, why.to_owned())
}

/// Checks the request's signature, time and nonce; hands the handler a
/// [`Caller`] and the body it verified.
pub async fn authenticate(State(app): State<App>, request: Request, next: Next) -> Response {
    let lang = crate::lang_of(request.headers());
    let (mut parts, body) = request.into_parts();
    let bytes = match to_bytes(body, app.config.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::Service(Kind::TooLarge, "body over the limit".into()).response(lang);
        }
    };
    match verify(&app, &parts, &bytes) {
        Ok(caller) => {
            parts.extensions.insert(caller);
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(e) => e.response(lang),
    }
}

fn verify(app: &App, parts: &Parts, body: &[u8]) -> Result<Caller, ApiError> {
    let header = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unauthenticated("no Authorization header"))?;
    let auth = AuthParams::parse(header).map_err(|e| unauthenticated(&e.to_string()))?;
    let registered = app
        .platforms
        .get(&auth.platform)
        .ok_or_else(|| unauthenticated("unknown platform"))?;
    if registered.key.algorithm() != auth.algorithm {
        return Err(unauthenticated("not the platform's registered algorithm"));
    }
    let now_ms = app.city.clock().now().timestamp_millis();
    let window = app.config.signature_window.num_milliseconds();
    if (now_ms - auth.timestamp).abs() > window {
        return Err(unauthenticated("stale timestamp"));
    }
    let digest = body_digest(body);
    let path = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let content = auth.content(parts.method.as_str(), path, &digest);
    if !registered.key.verify(content.as_bytes(), &auth.sign) {
        return Err(unauthenticated("bad signature"));
    }
    // After the signature: nobody else can burn a platform's nonces.
    // A request stays acceptable until its timestamp plus the window, and
    // timestamps reach up to the window ahead: remember for two windows.
    if !app
        .nonces
        .first_use(&auth.platform, &auth.nonce, now_ms, now_ms + 2 * window)
    {
        return Err(unauthenticated("nonce already used"));
    }
    Ok(Caller {
        platform: registered.platform.clone(),
        nonce: auth.nonce,
        body_digest: digest,
    })
}

/// Signs every response with the card system's key, over the request's nonce.
pub async fn sign_responses(State(app): State<App>, request: Request, next: Next) -> Response {
    let nonce = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| AuthParams::parse(h).ok())
        .map_or_else(|| "-".to_owned(), |a| a.nonce);
    let response = next.run(request).await;
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, usize::MAX).await else {
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let timestamp = app.city.clock().now().timestamp_millis();
    match sign_response(&app.key, timestamp, &nonce, &bytes) {
        Ok(signature) => {
            if let Ok(v) = HeaderValue::from_str(&signature) {
                parts.headers.insert(RESPONSE_SIGNATURE, v);
            }
            parts
                .headers
                .insert(RESPONSE_TIMESTAMP, HeaderValue::from(timestamp));
        }
        Err(e) => tracing::error!(error = %e, "response not signed"),
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_refused_the_second_time_and_forgotten_after_its_expiry() {
        let nonces = Nonces::default();
        assert!(nonces.first_use("alipay", "n1", 0, 100));
        assert!(!nonces.first_use("alipay", "n1", 50, 150));
        assert!(nonces.first_use("wechat_pay", "n1", 50, 150));
        assert!(nonces.first_use("alipay", "n1", 101, 201));
        assert_eq!(nonces.len(), 2);
    }
}
