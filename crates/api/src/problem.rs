//! RFC 9457 `application/problem+json`: one table from [`ErrorClass`] (and
//! the service's own refusals) to status and type, and a body with what to
//! do next in Chinese (the default) or English (`Accept-Language`).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use citycard::CityCardError;
use citycard::binding::{Lang, UserMessage};
use citycard::core::{ClassifiedError, ErrorClass};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The media type of problem bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// What kind of problem: a domain error's class, or one of the service's own refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A card system error of this class.
    Class(ErrorClass),
    /// No valid signature, an unknown platform, a stale timestamp or a reused nonce.
    Unauthenticated,
    /// A state-changing request without an `Idempotency-Key`.
    IdempotencyKeyMissing,
    /// The key was used for another payload.
    IdempotencyKeyReused,
    /// The first request with this key is still being processed.
    IdempotencyKeyInFlight,
    /// The body is larger than the service accepts.
    TooLarge,
}

/// The one table: a problem kind's HTTP status and its `type` (a URN).
pub fn status_and_type(kind: Kind) -> (StatusCode, &'static str) {
    match kind {
        Kind::Class(ErrorClass::InvalidInput) => (
            StatusCode::BAD_REQUEST,
            "urn:citycard:problem:invalid-input",
        ),
        Kind::Class(ErrorClass::NotFound) => {
            (StatusCode::NOT_FOUND, "urn:citycard:problem:not-found")
        }
        Kind::Class(ErrorClass::Conflict) => {
            (StatusCode::CONFLICT, "urn:citycard:problem:conflict")
        }
        Kind::Class(ErrorClass::Denied) => (StatusCode::FORBIDDEN, "urn:citycard:problem:denied"),
        Kind::Class(ErrorClass::RateLimited) => (
            StatusCode::TOO_MANY_REQUESTS,
            "urn:citycard:problem:rate-limited",
        ),
        Kind::Class(ErrorClass::Unavailable) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "urn:citycard:problem:unavailable",
        ),
        Kind::Class(ErrorClass::Internal) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "urn:citycard:problem:internal",
        ),
        Kind::Unauthenticated => (
            StatusCode::UNAUTHORIZED,
            "urn:citycard:problem:unauthenticated",
        ),
        Kind::IdempotencyKeyMissing => (
            StatusCode::BAD_REQUEST,
            "urn:citycard:problem:idempotency-key-missing",
        ),
        Kind::IdempotencyKeyReused => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "urn:citycard:problem:idempotency-key-reused",
        ),
        Kind::IdempotencyKeyInFlight => (
            StatusCode::CONFLICT,
            "urn:citycard:problem:idempotency-key-in-flight",
        ),
        Kind::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "urn:citycard:problem:too-large",
        ),
        // A class added later is a bug until the table names it.
        Kind::Class(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "urn:citycard:problem:internal",
        ),
    }
}

/// Every error class, for tests and documentation of the table.
pub const CLASSES: [ErrorClass; 7] = [
    ErrorClass::InvalidInput,
    ErrorClass::NotFound,
    ErrorClass::Conflict,
    ErrorClass::Denied,
    ErrorClass::RateLimited,
    ErrorClass::Unavailable,
    ErrorClass::Internal,
];

/// An RFC 9457 problem body with the card system's extension members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// The problem type (a URN from the service's table).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short English title of the type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, in the response's language, for the cardholder.
    pub detail: String,
    /// What the cardholder should do next, in the response's language.
    pub next_step: String,
    /// Whether retrying the same request (same key) later may succeed.
    pub retryable: bool,
}

/// Why a request failed: a card system error or one of the service's own refusals.
#[derive(Debug)]
pub enum ApiError {
    /// The card system refused or failed.
    Domain(CityCardError),
    /// The service refused; the message is for logs (English).
    Service(Kind, String),
}

macro_rules! domain_errors {
    ($($error:ty),*) => {
        $(impl From<$error> for ApiError {
            fn from(e: $error) -> Self {
                ApiError::Domain(e.into())
            }
        })*
    };
}

domain_errors!(
    CityCardError,
    citycard::binding::BindingError,
    citycard::identity::IdentityError,
    citycard::healthcare::HealthcareError,
    citycard::core::StoreError
);

impl ApiError {
    /// A request the service reads as invalid input.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::Domain(CityCardError::Invalid(message.into()))
    }

    /// The kind of this problem.
    pub fn kind(&self) -> Kind {
        match self {
            ApiError::Domain(e) => Kind::Class(e.class()),
            ApiError::Service(kind, _) => *kind,
        }
    }

    /// The problem body in `lang`.
    pub fn problem(&self, lang: Lang) -> Problem {
        let kind = self.kind();
        let (status, type_) = status_and_type(kind);
        let message = match self {
            // Invalid input the facade words generically ("something went
            // wrong on our side") is the caller's to fix: say so.
            ApiError::Domain(CityCardError::Invalid(_)) => {
                service_words(Kind::Class(ErrorClass::InvalidInput), lang)
            }
            ApiError::Domain(e) => e.user_message(lang),
            ApiError::Service(kind, _) => service_words(*kind, lang),
        };
        Problem {
            kind: type_.to_owned(),
            title: status.canonical_reason().unwrap_or("Problem").to_owned(),
            status: status.as_u16(),
            detail: message.problem,
            next_step: message.next_step,
            retryable: match kind {
                Kind::Class(c) => c.is_retryable(),
                Kind::IdempotencyKeyInFlight => true,
                _ => false,
            },
        }
    }

    /// The problem response in `lang`.
    pub fn response(&self, lang: Lang) -> Response {
        match self {
            ApiError::Domain(e) => tracing::info!(class = ?e.class(), error = %e, "refused"),
            ApiError::Service(kind, why) => tracing::info!(?kind, why, "refused"),
        }
        problem_response(&self.problem(lang), lang)
    }
}

/// A problem body as a response, with its media type and language.
pub fn problem_response(problem: &Problem, lang: Lang) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    headers.insert(header::CONTENT_LANGUAGE, content_language(lang));
    (status, headers, body).into_response()
}

/// The `Content-Language` of a language.
pub fn content_language(lang: Lang) -> HeaderValue {
    HeaderValue::from_static(lang.pick("zh-CN", "en"))
}

fn both(lang: Lang, zh: (&str, &str), en: (&str, &str)) -> UserMessage {
    let (problem, next_step) = lang.pick(zh, en);
    UserMessage {
        problem: problem.to_owned(),
        next_step: next_step.to_owned(),
    }
}

/// The words of the service's own refusals (read by the platform's
/// developers first, but shown to cardholders when passed on).
fn service_words(kind: Kind, lang: Lang) -> UserMessage {
    match kind {
        Kind::Unauthenticated => both(
            lang,
            (
                "请求未通过签名验证。",
                "请在应用中重试；如果一直不行，请联系市民卡客服。",
            ),
            (
                "The request could not be authenticated.",
                "Try again in the app; if it keeps happening, contact citizen card customer service.",
            ),
        ),
        Kind::IdempotencyKeyMissing => both(
            lang,
            ("请求缺少幂等键。", "请更新应用后重试。"),
            (
                "The request has no Idempotency-Key.",
                "Update the app and try again.",
            ),
        ),
        Kind::IdempotencyKeyReused => both(
            lang,
            ("这个请求与之前的请求冲突。", "请重新发起操作。"),
            (
                "This request clashes with an earlier one.",
                "Start the operation again.",
            ),
        ),
        Kind::IdempotencyKeyInFlight => both(
            lang,
            ("上一次请求还在处理中。", "请稍等几秒再查看结果。"),
            (
                "The previous request is still being processed.",
                "Wait a few seconds, then check the result.",
            ),
        ),
        Kind::TooLarge => both(
            lang,
            ("请求内容过大。", "请减少内容后重试。"),
            ("The request is too large.", "Send less and try again."),
        ),
        Kind::Class(ErrorClass::InvalidInput) => both(
            lang,
            ("填写的信息不正确。", "请核对后重新填写。"),
            (
                "Some of the details are not valid.",
                "Check them and enter them again.",
            ),
        ),
        Kind::Class(ErrorClass::NotFound) => both(
            lang,
            ("没有找到要办理的记录。", "请核对后重试。"),
            (
                "What you asked for was not found.",
                "Check it and try again.",
            ),
        ),
        Kind::Class(_) => CityCardError::Config(String::new()).user_message(lang),
    }
}

/// The cardholder's language from `Accept-Language`: English when English
/// ranks above Chinese, Chinese otherwise (the default).
pub fn negotiate(accept_language: Option<&str>) -> Lang {
    let Some(header) = accept_language else {
        return Lang::Zh;
    };
    let mut best: Option<(Lang, f32)> = None;
    for item in header.split(',') {
        let mut parts = item.trim().split(';');
        let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q=").map(str::to_owned))
            .and_then(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let lang = if tag == "zh" || tag.starts_with("zh-") {
            Lang::Zh
        } else if tag == "en" || tag.starts_with("en-") {
            Lang::En
        } else {
            continue;
        };
        if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((lang, q));
        }
    }
    best.map_or(Lang::Zh, |(l, _)| l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_its_own_type_and_an_error_status() {
        let mut types = std::collections::BTreeSet::new();
        for class in CLASSES {
            let (status, type_) = status_and_type(Kind::Class(class));
            assert!(status.is_client_error() || status.is_server_error());
            assert!(types.insert(type_), "{type_} used twice");
        }
    }

    #[test]
    fn chinese_is_the_default_and_english_wins_only_when_preferred() {
        assert_eq!(negotiate(None), Lang::Zh);
        assert_eq!(negotiate(Some("en-US,en;q=0.9")), Lang::En);
        assert_eq!(negotiate(Some("zh-CN,en;q=0.8")), Lang::Zh);
        assert_eq!(negotiate(Some("fr, en;q=0.5, zh;q=0.9")), Lang::Zh);
        assert_eq!(negotiate(Some("fr")), Lang::Zh);
        assert_eq!(negotiate(Some("en;q=0")), Lang::Zh);
    }
}
