//! # citycard-api
//!
//! The card system as a service that payment platforms (Alipay, WeChat Pay,
//! UnionPay, ...) call over signed HTTP: axum 0.8, JSON under `/v1`, an
//! OpenAPI 3.1 document generated from the code at `/openapi.json`. The
//! library crates stay runtime-free; this crate owns the tokio runtime.
//!
//! - **Signing** ([`signing`], [`auth`]): every request is signed by a
//!   registered platform (RSA-SHA256 or SM2 with SM3) over method, path,
//!   timestamp, nonce and body digest; a timestamp outside ±5 minutes or a
//!   nonce seen before is refused (401); every response is signed with the
//!   card system's key.
//! - **Who acts**: the platform itself ([`citycard::core::Principal::Platform`])
//!   wherever the card system lets a platform act (its accounts, its
//!   bindings, a top-up paid through it), so the domain's own checks keep a
//!   platform to its own accounts and bindings (403 otherwise). Where the
//!   card system wants the cardholder (binding, unbinding, the statement),
//!   the service acts for the real-name holder of the platform account or
//!   binding, after the platform was checked to own it: the platform
//!   vouches for its logged-in user, as Alipay does for its merchants. This
//!   is a decision of this crate.
//! - **Idempotency** ([`idem`]): `Idempotency-Key` per the IETF httpapi draft;
//!   for top-up orders and payments the stored response commits in the
//!   effect's own transaction (one write per request).
//! - **Events** ([`relay`]): the outbox's events go to NATS JetStream
//!   (`Nats-Msg-Id` = outbox id) and as signed webhooks to each platform,
//!   in each card's order, with backoff, jitter and a dead-letter list.
//! - **Errors** ([`problem`]): RFC 9457 problem+json, Chinese by default.
//!
//! Nonces are remembered in memory: one instance, or a load balancer that
//! keeps a platform on one instance (a shared nonce store is future work).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use citycard_api::{ApiConfig, App, auth::Platforms, signing::PrivateKey};
//!
//! let city = Arc::new(citycard::CityCard::builder().in_memory().build().await?);
//! let app = App::new(city, Platforms::new(), PrivateKey::generate_sm2(), ApiConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! citycard_api::serve(app, listener, std::future::pending()).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
pub mod idem;
pub mod problem;
pub mod relay;
mod routes;
pub mod signing;
pub mod views;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::http::HeaderMap;
use citycard::CityCard;
use citycard::binding::Lang;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::{Nonces, PlatformEntry, Platforms};
use crate::signing::{Algorithm, PrivateKey};

/// Limits and windows of the service.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// How far a request's timestamp may be from the card system's clock (5 minutes).
    pub signature_window: chrono::Duration,
    /// The largest request body accepted (64 KiB).
    pub max_body_bytes: usize,
    /// How long a request may take before it is answered 503 (10 s).
    pub request_timeout: std::time::Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            signature_window: chrono::Duration::minutes(5),
            max_body_bytes: 64 * 1024,
            request_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// The service's state: the card system, the platforms, the card system's key.
#[derive(Clone)]
pub struct App {
    /// The card system.
    pub city: Arc<CityCard>,
    /// The registered platforms.
    pub platforms: Arc<Platforms>,
    /// The card system's signing key.
    pub key: Arc<PrivateKey>,
    /// Nonces seen.
    pub nonces: Arc<Nonces>,
    /// Idempotency keys this instance is running a request for.
    pub in_flight: Arc<idem::InFlight>,
    /// Limits.
    pub config: ApiConfig,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("platforms", &self.platforms.len())
            .field("key", &self.key.algorithm())
            .finish_non_exhaustive()
    }
}

impl App {
    /// The service over a card system.
    pub fn new(
        city: Arc<CityCard>,
        platforms: Platforms,
        key: PrivateKey,
        config: ApiConfig,
    ) -> App {
        App {
            city,
            platforms: Arc::new(platforms),
            key: Arc::new(key),
            nonces: Arc::new(Nonces::default()),
            in_flight: Arc::default(),
            config,
        }
    }
}

/// The service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Reading or writing a file, or the socket, failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// A configuration file is wrong: fix it.
    #[error("configuration: {0}")]
    Config(String),
    /// The card system could not be opened.
    #[error(transparent)]
    City(#[from] citycard::CityCardError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// The language of a request (`Accept-Language`; Chinese by default).
pub fn lang_of(headers: &HeaderMap) -> Lang {
    problem::negotiate(
        headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    )
}

/// The OpenAPI document's frame (routes add their paths).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "citycard platform API",
        description = "The city card system for payment platforms: accounts, bindings, the card pass, records and top-ups. Every request is signed (see the Authorization scheme); state-changing requests carry an Idempotency-Key; errors are RFC 9457 problem+json in zh-CN or en."
    ),
    components(schemas(problem::Problem))
)]
struct ApiDoc;

/// The routes and the OpenAPI document they describe.
pub fn router_and_doc(app: App) -> (Router, utoipa::openapi::OpenApi) {
    let (v1, doc) = routes::v1(OpenApiRouter::with_openapi(ApiDoc::openapi())).split_for_parts();
    let v1 = v1.layer(axum::middleware::from_fn_with_state(
        app.clone(),
        auth::authenticate,
    ));
    let doc_json = doc.to_pretty_json().unwrap_or_default();
    let router = Router::new()
        .merge(v1)
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc_json.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        doc,
                    )
                }
            }),
        )
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::sign_responses,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            app.config.request_timeout,
        ))
        .layer(axum::middleware::from_fn(request_id))
        .with_state(app);
    (router, doc)
}

/// The header carrying a request's id (the caller's, if it sent a usable
/// one, else one made here); answered on every response.
pub const REQUEST_ID: &str = "x-request-id";

static REQUEST_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Gives every request an id, traced in a span around its handling and
/// returned in `X-Request-Id`.
async fn request_id(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument as _;
    let given = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned);
    let id = given.unwrap_or_else(|| {
        let n = REQUEST_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("req-{:x}-{n:x}", std::process::id())
    });
    let span = tracing::info_span!("request", id = %id, method = %request.method(), path = %request.uri().path());
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = axum::http::HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// The OpenAPI document of the service.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::v1(OpenApiRouter::<App>::with_openapi(ApiDoc::openapi()))
        .split_for_parts()
        .1
}

/// Serves until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    app: App,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (router, _) = router_and_doc(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(io("serving"))
}

/// What `citycard serve` (and `citycard-api`) is started with.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The data directory: the SQLite database, the vault keys, and
    /// `api/platforms.json` and `api/card-system-key.json`.
    #[arg(long, value_name = "DIR", default_value = "citycard-data")]
    pub data_dir: PathBuf,
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Keep the stores in PostgreSQL instead of the directory's SQLite file.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Publish the outbox's events to this NATS server's JetStream
    /// (`nats://127.0.0.1:4222`); webhooks go to the endpoints in
    /// `api/webhooks.json` (`{"alipay": "https://…"}`) either way.
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
}

/// The platforms' webhook endpoints in `dir/api/webhooks.json` (none when absent).
pub fn load_webhooks(
    dir: &Path,
) -> Result<std::collections::HashMap<citycard::core::Platform, String>, ServeError> {
    let path = dir.join("api").join("webhooks.json");
    if !path.exists() {
        return Ok(std::collections::HashMap::new());
    }
    let text = std::fs::read_to_string(&path).map_err(io(path.display().to_string()))?;
    serde_json::from_str(&text).map_err(|e| ServeError::Config(format!("{}: {e}", path.display())))
}

/// The card system's key as kept in the data directory.
#[derive(serde::Serialize, serde::Deserialize)]
struct KeyFile {
    algorithm: Algorithm,
    private_key: String,
}

/// The card system's signing key in `dir/api/card-system-key.json`, made
/// (SM2) on first start; the public half is written beside it for platforms.
pub fn load_or_create_key(dir: &Path) -> Result<PrivateKey, ServeError> {
    let path = dir.join("api").join("card-system-key.json");
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(io(path.display().to_string()))?;
        let file: KeyFile =
            serde_json::from_str(&text).map_err(|e| ServeError::Config(e.to_string()))?;
        return PrivateKey::parse(file.algorithm, &file.private_key)
            .map_err(|e| ServeError::Config(e.to_string()));
    }
    std::fs::create_dir_all(dir.join("api")).map_err(io("the api directory"))?;
    let key = PrivateKey::generate_sm2();
    let file = KeyFile {
        algorithm: key.algorithm(),
        private_key: key
            .to_text()
            .map_err(|e| ServeError::Config(e.to_string()))?,
    };
    let text =
        serde_json::to_string_pretty(&file).map_err(|e| ServeError::Config(e.to_string()))?;
    write_private(&path, &text)?;
    let public = key
        .public_key()
        .to_text()
        .map_err(|e| ServeError::Config(e.to_string()))?;
    let public_path = dir.join("api").join("card-system-public-key.txt");
    std::fs::write(&public_path, public).map_err(io(public_path.display().to_string()))?;
    Ok(key)
}

fn write_private(path: &Path, text: &str) -> Result<(), ServeError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io(path.display().to_string()))?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io(path.display().to_string()))
}

/// The platforms in `dir/api/platforms.json` (none when the file is absent).
pub fn load_platforms(dir: &Path) -> Result<Platforms, ServeError> {
    let path = dir.join("api").join("platforms.json");
    if !path.exists() {
        return Ok(Platforms::new());
    }
    let text = std::fs::read_to_string(&path).map_err(io(path.display().to_string()))?;
    let entries: Vec<PlatformEntry> = serde_json::from_str(&text)
        .map_err(|e| ServeError::Config(format!("{}: {e}", path.display())))?;
    Platforms::from_entries(&entries)
}

/// Runs the service as `citycard serve` does, until Ctrl-C or SIGTERM.
pub fn run(args: &ServeArgs) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(io("the runtime"))?;
    runtime.block_on(async {
        std::fs::create_dir_all(&args.data_dir).map_err(io("the data directory"))?;
        let keys = citycard::keys::FileKeyProvider::open_or_create(args.data_dir.join("keys.json"))
            .map_err(|e| ServeError::Config(e.to_string()))?;
        let storage = match &args.database {
            Some(url) => citycard::Storage::Postgres(url.clone()),
            None => citycard::Storage::Sqlite(args.data_dir.join("citycard.db")),
        };
        let city = CityCard::builder()
            .storage(storage)
            .key_provider(Arc::new(keys))
            .build()
            .await?;
        let platforms = load_platforms(&args.data_dir)?;
        let key = load_or_create_key(&args.data_dir)?;
        let app = App::new(Arc::new(city), platforms, key, ApiConfig::default());
        let stream = match &args.nats {
            Some(url) => Some(
                relay::Stream::connect(url)
                    .await
                    .map_err(|e| ServeError::Config(e.to_string()))?,
            ),
            None => None,
        };
        let endpoints = load_webhooks(&args.data_dir)?;
        let webhooks = (!endpoints.is_empty()).then(|| {
            relay::Webhooks::new(endpoints, app.key.clone(), std::time::Duration::from_secs(10))
        });
        let relay = relay::Relay::new(
            app.city.outbox().clone(),
            stream,
            webhooks,
            app.city.clock().clone(),
            relay::RelayConfig::default(),
        );
        let (stop_relay, relay_stops) = tokio::sync::oneshot::channel::<()>();
        let relay = tokio::spawn(relay.run(async {
            let _ = relay_stops.await;
        }));
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(io(format!("listening on {}", args.listen)))?;
        let local = listener.local_addr().map_err(io("the socket"))?;
        println!(
            "citycard serving on http://{local} ({} platforms registered; OpenAPI at /openapi.json)",
            app.platforms.len()
        );
        let served = serve(app, listener, shutdown_signal()).await;
        // The requests in flight are answered: the relay's last round
        // publishes and delivers what they committed.
        let _ = stop_relay.send(());
        let _ = relay.await;
        served
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
