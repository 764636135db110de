//! The `/v1` resources: platform accounts, bindings, the card pass, records
//! and top-up orders.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use citycard::binding::{
    BindRequest, Binding, BindingId, BindingState, ConsentInput, DataCategory, RemovalReason,
    ServiceSet,
};
use citycard::core::{AuditOutcome, AuditRecord, Money, PlatformAccountId, Principal, Sensitive};
use citycard::identity::RealNameRequest;
use citycard::ledger::TransferId;
use citycard::unit::CityPlan;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::App;
use crate::auth::Caller;
use crate::idem::{Reply, idempotent, idempotent_in_effect};
use crate::problem::{ApiError, Problem};
use crate::views::*;

/// Every `/v1` route, with its OpenAPI operation.
pub(crate) fn v1(router: OpenApiRouter<App>) -> OpenApiRouter<App> {
    router
        .routes(routes!(register_account))
        .routes(routes!(account))
        .routes(routes!(verify_real_name))
        .routes(routes!(bind, list_bindings))
        .routes(routes!(binding, unbind))
        .routes(routes!(pass))
        .routes(routes!(refresh_pass))
        .routes(routes!(records))
        .routes(routes!(create_top_up_order))
        .routes(routes!(top_up_order))
        .routes(routes!(notify_payment))
}

fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b)
        .map_err(|e| ApiError::invalid(format!("the body is not the expected JSON: {e}")))
}

fn code<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Object(map)) => map
            .values()
            .find_map(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn yuan(money: Money) -> String {
    format!("{:.2}", money.to_decimal())
}

fn parse_yuan(text: &str) -> Result<Money, ApiError> {
    Money::parse(text).map_err(|e| ApiError::invalid(format!("amount {text:?}: {e}")))
}

fn services(set: &ServiceSet) -> Vec<String> {
    set.iter().map(|s| s.code().to_owned()).collect()
}

fn account_id(text: &str) -> Result<PlatformAccountId, ApiError> {
    PlatformAccountId::parse(text).map_err(|e| ApiError::invalid(e.to_string()))
}

fn binding_id(text: &str) -> Result<BindingId, ApiError> {
    BindingId::parse(text).map_err(|e| ApiError::invalid(e.to_string()))
}

fn real_name(
    level: &citycard::identity::RealNameLevel,
    person: bool,
    at: Option<chrono::DateTime<chrono::Utc>>,
) -> RealNameView {
    RealNameView {
        verified: level.is_verified() && person,
        level: code(level),
        verified_at: at,
    }
}

fn binding_view(b: &Binding, services_now: Vec<String>) -> BindingView {
    BindingView {
        id: b.id.to_string(),
        state: code(&b.state),
        account: b.account.to_string(),
        services: services_now,
        removal: b.removal.map(|r| r.code().to_owned()),
    }
}

/// A binding of the caller's platform (the card system refuses another's: 403).
async fn own_binding(app: &App, caller: &Caller, id: &str) -> Result<Binding, ApiError> {
    Ok(app
        .city
        .cards()
        .binding(&caller.principal(), &binding_id(id)?)
        .await?)
}

/// Registers a platform account (or answers the one already registered).
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts",
    params(("Idempotency-Key" = String, Header, description = "unique per operation")),
    request_body = NewAccount,
    responses((status = 201, body = AccountView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn register_account(
    State(app): State<App>,
    caller: Caller,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    request: Result<Json<NewAccount>, JsonRejection>,
) -> Response {
    let lang = crate::lang_of(&headers);
    let (app, caller) = (&app, &caller);
    idempotent(
        app,
        caller,
        &method,
        uri.path(),
        &headers,
        lang,
        |key| async move {
            let request = body(request)?;
            let account = app
                .city
                .identity()
                .register_account(
                    &caller.principal(),
                    caller.platform.clone(),
                    &request.external_id,
                    &key,
                )
                .await?;
            Reply::created(&AccountView {
                id: account.id.to_string(),
                platform: account.platform.code().to_owned(),
                real_name: real_name(
                    &account.level,
                    account.person.is_some(),
                    account.verified_at,
                ),
            })
        },
    )
    .await
}

/// A platform account and its real-name result (the platform's own accounts only).
#[utoipa::path(get, path = "/v1/accounts/{id}", tag = "accounts",
    params(("id" = String, Path)),
    responses((status = 200, body = AccountView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn account(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let lang = crate::lang_of(&headers);
    let result = async {
        let status = app
            .city
            .identity()
            .real_name_status(&caller.principal(), &account_id(&id)?)
            .await?;
        Reply::ok(&AccountView {
            id: status.account.to_string(),
            platform: status.platform.code().to_owned(),
            real_name: real_name(&status.level, status.person.is_some(), status.verified_at),
        })
    }
    .await;
    respond(result, lang)
}

fn respond(result: Result<Reply, ApiError>, lang: citycard::binding::Lang) -> Response {
    match result {
        Ok(reply) => reply.response(lang),
        Err(e) => e.response(lang),
    }
}

/// Verifies an account's real name with name and ID number.
#[utoipa::path(post, path = "/v1/accounts/{id}/real-name", tag = "accounts",
    params(("id" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = RealNameCheck,
    responses((status = 200, body = VerificationView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn verify_real_name(
    State(app): State<App>,
    caller: Caller,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    request: Result<Json<RealNameCheck>, JsonRejection>,
) -> Response {
    let lang = crate::lang_of(&headers);
    let (app, caller) = (&app, &caller);
    idempotent(
        app,
        caller,
        &method,
        uri.path(),
        &headers,
        lang,
        |key| async move {
            let request = body(request)?;
            let report = app
                .city
                .identity()
                .verify_real_name(
                    &caller.principal(),
                    &account_id(&id)?,
                    &RealNameRequest::two_factor(&request.name, &request.id_number),
                    &key,
                )
                .await?;
            Reply::ok(&VerificationView {
                account: report.account.to_string(),
                outcome: code(&report.outcome),
                real_name: real_name(&report.level, report.person.is_some(), None),
            })
        },
    )
    .await
}

fn consent(c: &Consent) -> Result<ConsentInput, ApiError> {
    let data_categories = c
        .data_categories
        .iter()
        .map(|d| {
            serde_json::from_value::<DataCategory>(serde_json::Value::String(d.clone()))
                .map_err(|_| ApiError::invalid(format!("unknown data category {d:?}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(ConsentInput {
        purpose: c.purpose.clone(),
        data_categories,
        text_version: c.text_version.clone(),
        channel: c.channel.clone(),
    })
}

/// Binds a card to a platform account: the card number and ID number must
/// belong together, the account must be real-name verified as the cardholder.
/// A refusal is a problem whose `next_step` says what to do.
#[utoipa::path(post, path = "/v1/bindings", tag = "bindings",
    params(("Idempotency-Key" = String, Header)),
    request_body = NewBinding,
    responses((status = 201, body = BindingView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn bind(
    State(app): State<App>,
    caller: Caller,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    request: Result<Json<NewBinding>, JsonRejection>,
) -> Response {
    let lang = crate::lang_of(&headers);
    let (app, caller) = (&app, &caller);
    idempotent(
        app,
        caller,
        &method,
        uri.path(),
        &headers,
        lang,
        |key| async move {
            let request = body(request)?;
            let account = account_id(&request.account)?;
            // The platform's own account (403 otherwise); the service acts for its holder.
            let status = app
                .city
                .identity()
                .real_name_status(&caller.principal(), &account)
                .await?;
            let principal = match &status.person {
                Some(person) if status.is_verified() => Principal::cardholder(person.clone()),
                // Unverified: the card system refuses with "verify your real name first".
                _ => caller.principal(),
            };
            let receipt = app
                .city
                .cards()
                .bind(
                    &principal,
                    &key,
                    &BindRequest {
                        platform: caller.platform.clone(),
                        account: account.clone(),
                        card_number: request.card_number.clone(),
                        id_number: Sensitive::new(request.id_number.clone()),
                        consent: consent(&request.consent)?,
                    },
                )
                .await?;
            Reply::created(&BindingView {
                id: receipt.binding.to_string(),
                state: code(&receipt.state),
                account: account.to_string(),
                services: services(&receipt.services),
                removal: None,
            })
        },
    )
    .await
}

/// Which account's bindings to list.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
struct AccountQuery {
    /// The platform account.
    account: String,
}

/// The bindings of one of the platform's accounts ("my cards").
#[utoipa::path(get, path = "/v1/bindings", tag = "bindings",
    params(AccountQuery),
    responses((status = 200, body = BindingList), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_bindings(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    query: Result<Query<AccountQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let lang = crate::lang_of(&headers);
    let result = async {
        let Query(query) = query.map_err(|e| ApiError::invalid(e.to_string()))?;
        let account = account_id(&query.account)?;
        // Another platform's account is refused (403), not answered empty.
        app.city
            .identity()
            .real_name_status(&caller.principal(), &account)
            .await?;
        let list = app
            .city
            .cards()
            .bindings_of_account(&caller.principal(), &caller.platform, &account)
            .await?;
        Reply::ok(&BindingList {
            bindings: list.iter().map(|b| binding_view(b, Vec::new())).collect(),
        })
    }
    .await;
    respond(result, lang)
}

/// One of the platform's bindings.
#[utoipa::path(get, path = "/v1/bindings/{id}", tag = "bindings",
    params(("id" = String, Path)),
    responses((status = 200, body = BindingView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn binding(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let lang = crate::lang_of(&headers);
    let result = async {
        let b = own_binding(&app, &caller, &id).await?;
        let card = app.city.cards().card(&Principal::System, &b.card).await?;
        let now = if b.state == BindingState::Active {
            services(&card.services)
        } else {
            Vec::new()
        };
        Reply::ok(&binding_view(&b, now))
    }
    .await;
    respond(result, lang)
}

/// Unbinds: the cardholder withdrew consent in the platform's app.
#[utoipa::path(delete, path = "/v1/bindings/{id}", tag = "bindings",
    params(("id" = String, Path), ("Idempotency-Key" = String, Header)),
    responses((status = 200, body = BindingView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn unbind(
    State(app): State<App>,
    caller: Caller,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let lang = crate::lang_of(&headers);
    let (app, caller) = (&app, &caller);
    idempotent(
        app,
        caller,
        &method,
        uri.path(),
        &headers,
        lang,
        |key| async move {
            let b = own_binding(app, caller, &id).await?;
            let removed = app
                .city
                .cards()
                .unbind(
                    &Principal::cardholder(b.holder.clone()),
                    &key,
                    &b.id,
                    RemovalReason::UserUnbound,
                )
                .await?;
            Reply::ok(&binding_view(&removed, Vec::new()))
        },
    )
    .await
}

async fn balance_of(app: &App, card: &citycard::binding::Card) -> Result<BalanceDto, ApiError> {
    let account = citycard::glue::money::wallet_of(&card.wallet_account)
        .map_err(|e| ApiError::Domain(citycard::CityCardError::Config(e)))?;
    let as_of = app.city.clock().now();
    let balance = app
        .city
        .ledger()
        .account(&Principal::System, account)
        .await
        .map_err(citycard::CityCardError::from)?
        .available();
    Ok(BalanceDto {
        amount: yuan(balance),
        currency: "CNY".into(),
        as_of,
    })
}

/// The card pass: masked number, services, and the balance with the instant it is as of.
#[utoipa::path(get, path = "/v1/bindings/{id}/pass", tag = "pass",
    params(("id" = String, Path)),
    responses((status = 200, body = PassView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn pass(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let lang = crate::lang_of(&headers);
    let result = async {
        let b = own_binding(&app, &caller, &id).await?;
        let card = app.city.cards().card(&Principal::System, &b.card).await?;
        let active = b.state == BindingState::Active;
        let balance = if active {
            Some(balance_of(&app, &card).await?)
        } else {
            None
        };
        Reply::ok(&PassView {
            binding: b.id.to_string(),
            state: code(&b.state),
            card_number_masked: citycard::core::mask_card_number(card.number.as_str()),
            kind: card.kind.code().to_owned(),
            services: if active {
                services(&card.services)
            } else {
                Vec::new()
            },
            balance,
        })
    }
    .await;
    respond(result, lang)
}

/// Pulls the authoritative balance and pushes it to the platform's pass (the
/// "refresh" button). Safe to repeat: it needs no Idempotency-Key.
#[utoipa::path(post, path = "/v1/bindings/{id}/pass/refresh", tag = "pass",
    params(("id" = String, Path)),
    responses((status = 200, body = BalanceDto), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn refresh_pass(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let lang = crate::lang_of(&headers);
    let result = async {
        let view = app
            .city
            .cards()
            .refresh_balance(&caller.principal(), &binding_id(&id)?)
            .await?;
        Reply::ok(&BalanceDto {
            amount: yuan(view.balance),
            currency: "CNY".into(),
            as_of: view.as_of,
        })
    }
    .await;
    respond(result, lang)
}

/// A page of the statement.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
struct RecordsQuery {
    /// From the `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Entries per page (1-200, default 50).
    limit: Option<usize>,
}

const RECORDS_SINCE_DAYS: i64 = 180;

fn record_kind(code: u16) -> &'static str {
    use citycard::glue::money::codes;
    match code {
        codes::TOP_UP => "top_up",
        codes::FARE => "fare",
        codes::MEDICAL => "medical",
        codes::REFUND => "refund",
        codes::CARRY => "carry",
        _ => "other",
    }
}

fn cursor_of(at: chrono::DateTime<chrono::Utc>, transfer: TransferId) -> String {
    format!("{}.{}", at.timestamp_micros(), transfer)
}

fn parse_cursor(text: &str) -> Result<(chrono::DateTime<chrono::Utc>, String), ApiError> {
    let bad = || ApiError::invalid("the cursor is not one this service gave");
    let (micros, transfer) = text.split_once('.').ok_or_else(bad)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(chrono::DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    Ok((at, transfer.to_owned()))
}

/// The card's wallet statement of the last 180 days, oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/bindings/{id}/records", tag = "records",
    params(("id" = String, Path), RecordsQuery),
    responses((status = 200, body = RecordsPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn records(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<RecordsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let lang = crate::lang_of(&headers);
    let result = async {
        let Query(query) = query.map_err(|e| ApiError::invalid(e.to_string()))?;
        let limit = query.limit.unwrap_or(50);
        if !(1..=200).contains(&limit) {
            return Err(ApiError::invalid("limit is 1 to 200"));
        }
        let b = own_binding(&app, &caller, &id).await?;
        let now = app.city.clock().now();
        let after = query.cursor.as_deref().map(parse_cursor).transpose()?;
        let from = after.as_ref().map_or(
            now - chrono::Duration::days(RECORDS_SINCE_DAYS),
            |(at, _)| *at,
        );
        let statement = app
            .city
            .wallet()
            .statement(
                &Principal::cardholder(b.holder.clone()),
                &b.card,
                from,
                now + chrono::Duration::seconds(1),
            )
            .await?;
        let entries = &statement.entries;
        let start = match &after {
            None => 0,
            Some((at, transfer)) => entries
                .iter()
                .position(|e| e.timestamp == *at && e.transfer_id.to_string() == *transfer)
                .map_or_else(
                    || entries.iter().take_while(|e| e.timestamp <= *at).count(),
                    |i| i + 1,
                ),
        };
        let page: Vec<_> = entries.iter().skip(start).take(limit).collect();
        let next_cursor = (start + page.len() < entries.len())
            .then(|| page.last().map(|e| cursor_of(e.timestamp, e.transfer_id)))
            .flatten();
        Reply::ok(&RecordsPage {
            records: page
                .iter()
                .map(|e| RecordView {
                    transfer: e.transfer_id.to_string(),
                    at: e.timestamp,
                    amount: format!("{:+.2}", e.amount.to_decimal()),
                    balance_after: yuan(e.balance_after),
                    kind: record_kind(e.code).to_owned(),
                })
                .collect(),
            next_cursor,
        })
    }
    .await;
    respond(result, lang)
}

/// The transfer a paid order makes: derived from the platform and the order id.
fn order_transfer(caller: &Caller, order: &citycard::core::IdempotencyKey) -> TransferId {
    TransferId::from_idempotency_key(
        &citycard::core::principal_scope("wallet.top_up", &caller.principal()),
        &crate::idem::operation_key(caller, order),
    )
}

/// Opens a top-up order for one of the platform's active bindings. The
/// order's id is this request's Idempotency-Key (the platform's order number).
#[utoipa::path(post, path = "/v1/top-up-orders", tag = "top-ups",
    params(("Idempotency-Key" = String, Header, description = "the platform's order number")),
    request_body = NewTopUpOrder,
    responses((status = 201, body = TopUpOrder), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn create_top_up_order(
    State(app): State<App>,
    caller: Caller,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    request: Result<Json<NewTopUpOrder>, JsonRejection>,
) -> Response {
    let lang = crate::lang_of(&headers);
    let order_id = crate::idem::key_of(&headers).ok();
    let (app, caller) = (&app, &caller);
    idempotent_in_effect(
        app,
        caller,
        &method,
        uri.path(),
        &headers,
        lang,
        |_, record| async move {
            let request = body(request)?;
            let amount = parse_yuan(&request.amount)?;
            if !amount.is_positive() {
                return Err(ApiError::invalid("a top-up must be a positive amount"));
            }
            // Read as the system, checked here, audited in the order's own
            // commit (one write for the order, not two).
            let b = app
                .city
                .cards()
                .binding(&Principal::System, &binding_id(&request.binding)?)
                .await?;
            let b = if b.platform == caller.platform {
                b
            } else {
                // Another platform's binding: the card system refuses and audits it.
                own_binding(app, caller, &request.binding).await?
            };
            if b.state != BindingState::Active {
                return Err(citycard::binding::BindingError::InvalidState {
                    operation: "top up".into(),
                    state: format!("the binding is {}", code(&b.state)),
                }
                .into());
            }
            let id = order_id.ok_or_else(|| ApiError::invalid("no order id"))?;
            let reply = Reply::created(&TopUpOrder {
                id: id.to_string(),
                binding: b.id.to_string(),
                card: b.card.to_string(),
                amount: yuan(amount),
                state: "awaiting_payment".into(),
                transfer: None,
            })?;
            let now = app.city.clock().now();
            let mut core = record.changes(&reply, now)?;
            core.audit.push(AuditRecord::new(
                now,
                caller.principal(),
                "binding.view",
                format!("binding:{}", b.id),
                AuditOutcome::Succeeded,
            ));
            app.city
                .unit_of_work()
                .commit(CityPlan {
                    ledger: None,
                    transit: None,
                    core,
                })
                .await
                .map_err(citycard::CityCardError::from)?;
            Ok(reply)
        },
    )
    .await
}

/// The order as created, with its state read from the ledger.
async fn load_order(app: &App, caller: &Caller, id: &str) -> Result<TopUpOrder, ApiError> {
    let key =
        citycard::core::IdempotencyKey::parse(id).map_err(|e| ApiError::invalid(e.to_string()))?;
    let record = app
        .city
        .idempotency_store()
        .get(&crate::idem::scope(caller), &key)
        .await
        .map_err(citycard::CityCardError::from)?;
    let order = record
        .and_then(|r| r.outcome)
        .and_then(|o| serde_json::from_str::<serde_json::Value>(&o).ok())
        .filter(|stored| stored["status"] == 201 && stored["body"]["state"].is_string())
        .and_then(|stored| serde_json::from_value::<TopUpOrder>(stored["body"].clone()).ok());
    let Some(mut order) = order else {
        return Err(ApiError::Domain(citycard::CityCardError::Binding(
            citycard::binding::BindingError::NotFound {
                what: format!("top-up order {id}"),
            },
        )));
    };
    let transfer = order_transfer(caller, &key);
    if app
        .city
        .ledger()
        .transfer(&Principal::System, transfer)
        .await
        .is_ok()
    {
        order.state = "paid".into();
        order.transfer = Some(transfer.to_string());
    }
    Ok(order)
}

/// A top-up order and whether it was paid.
#[utoipa::path(get, path = "/v1/top-up-orders/{id}", tag = "top-ups",
    params(("id" = String, Path)),
    responses((status = 200, body = TopUpOrder), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn top_up_order(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let lang = crate::lang_of(&headers);
    let result = async { Reply::ok(&load_order(&app, &caller, &id).await?) }.await;
    respond(result, lang)
}

/// The platform's payment notification: the order's amount moves from the
/// platform's clearing account into the card's wallet, once however often
/// the notification comes.
#[utoipa::path(post, path = "/v1/top-up-orders/{id}/payment", tag = "top-ups",
    params(("id" = String, Path), ("Idempotency-Key" = String, Header)),
    request_body = PaymentNotification,
    responses((status = 200, body = TopUpOrder), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn notify_payment(
    State(app): State<App>,
    caller: Caller,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    request: Result<Json<PaymentNotification>, JsonRejection>,
) -> Response {
    let lang = crate::lang_of(&headers);
    let (app, caller) = (&app, &caller);
    idempotent_in_effect(
        app,
        caller,
        &method,
        uri.path(),
        &headers,
        lang,
        |_, record| async move {
            let request = body(request)?;
            if request.status != "paid" {
                return Err(ApiError::invalid("only a paid notification is accepted"));
            }
            let mut order = load_order(app, caller, &id).await?;
            let amount = parse_yuan(&order.amount)?;
            if parse_yuan(&request.amount)? != amount {
                return Err(ApiError::invalid(
                    "the amount paid is not the order's amount",
                ));
            }
            let card = citycard::binding::CardId::parse(&order.card)
                .map_err(|e| ApiError::invalid(e.to_string()))?;
            let order_key = citycard::core::IdempotencyKey::parse(&id)
                .map_err(|e| ApiError::invalid(e.to_string()))?;
            // The answer is known before the transfer (its id is derived
            // from the order): it commits with the transfer.
            let transfer = order_transfer(caller, &order_key);
            order.state = "paid".into();
            order.transfer = Some(transfer.to_string());
            let reply = Reply::ok(&order)?;
            let with = record.changes(&reply, app.city.clock().now())?;
            let receipt = app
                .city
                .wallet()
                .top_up_with(
                    &caller.principal(),
                    &card,
                    amount,
                    &caller.platform,
                    &crate::idem::operation_key(caller, &order_key),
                    with,
                )
                .await?;
            if receipt.transfer != transfer {
                tracing::error!(%transfer, made = %receipt.transfer, "the order's transfer id differs from the wallet's");
            }
            Ok(reply)
        },
    )
    .await
}
