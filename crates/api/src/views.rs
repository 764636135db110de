//! The JSON bodies of the API (requests and responses), as the OpenAPI
//! document describes them. Money is a decimal string in yuan (`"50.00"`);
//! card numbers leave the service masked.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Register a platform account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewAccount {
    /// The platform's own id for the account (an Alipay user id, say).
    pub external_id: String,
}

/// A platform account and its real-name result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    /// The card system's id for the account.
    pub id: String,
    /// The platform's code.
    pub platform: String,
    /// The real-name result.
    pub real_name: RealNameView,
}

/// Whether an account is real-name verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RealNameView {
    /// True when verified at any level.
    pub verified: bool,
    /// The level reached (`unverified`, `two_factor`, ...).
    pub level: String,
    /// When.
    pub verified_at: Option<DateTime<Utc>>,
}

/// Verify an account's real name (two factors).
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct RealNameCheck {
    /// The name as on the ID card.
    pub name: String,
    /// The 18-character ID number.
    pub id_number: String,
}

impl std::fmt::Debug for RealNameCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RealNameCheck { .. }")
    }
}

/// The provider's answer to a real-name check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerificationView {
    /// The account.
    pub account: String,
    /// `match`, `mismatch`, `no_record`, ...
    pub outcome: String,
    /// The account's real-name result afterwards.
    pub real_name: RealNameView,
}

/// What the cardholder consents to when binding.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Consent {
    /// Why the data is shared, as shown to the user.
    pub purpose: String,
    /// What is shared: `card_number`, `identity`, `balance`, `transit_records`, ...
    pub data_categories: Vec<String>,
    /// The version of the consent text shown.
    pub text_version: String,
    /// Where consent was given (`alipay_app`, ...).
    pub channel: String,
}

/// Bind a card to a platform account.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct NewBinding {
    /// The platform account (the card system's id).
    pub account: String,
    /// The card number as typed.
    pub card_number: String,
    /// The ID number as typed.
    pub id_number: String,
    /// The consent given.
    pub consent: Consent,
}

impl std::fmt::Debug for NewBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewBinding")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// A binding of a card to a platform account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BindingView {
    /// The binding's id.
    pub id: String,
    /// `pending`, `active`, `suspended` or `removed`.
    pub state: String,
    /// The platform account.
    pub account: String,
    /// The services usable through it.
    pub services: Vec<String>,
    /// Why it was removed, once removed.
    pub removal: Option<String>,
}

/// A list of bindings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BindingList {
    /// The bindings.
    pub bindings: Vec<BindingView>,
}

/// A balance and the instant it is as of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BalanceDto {
    /// Yuan, two decimals.
    pub amount: String,
    /// `CNY`.
    pub currency: String,
    /// When the ledger reported it.
    pub as_of: DateTime<Utc>,
}

/// The card pass a platform shows in its card wallet (卡包).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PassView {
    /// The binding.
    pub binding: String,
    /// The binding's state.
    pub state: String,
    /// The card number, masked.
    pub card_number_masked: String,
    /// The card kind (`standard`, `elderly`, ...).
    pub kind: String,
    /// The services usable through the binding.
    pub services: Vec<String>,
    /// The wallet balance, while the binding is active.
    pub balance: Option<BalanceDto>,
}

/// One entry of the statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecordView {
    /// The ledger transfer.
    pub transfer: String,
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// The change, signed yuan (`"+50.00"`, `"-2.00"`).
    pub amount: String,
    /// The balance after it.
    pub balance_after: String,
    /// `top_up`, `fare`, `medical`, `refund`, `carry` or `other`.
    pub kind: String,
}

/// A page of the statement, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecordsPage {
    /// The entries.
    pub records: Vec<RecordView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Open a top-up order for a bound card.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewTopUpOrder {
    /// The binding whose card is topped up.
    pub binding: String,
    /// Yuan, at most two decimals.
    pub amount: String,
}

/// A top-up order: its id is the platform's Idempotency-Key that created it
/// (the platform's own order number, as Alipay's `out_trade_no`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TopUpOrder {
    /// The order id.
    pub id: String,
    /// The binding.
    pub binding: String,
    /// The card's internal id.
    pub card: String,
    /// Yuan.
    pub amount: String,
    /// `awaiting_payment` or `paid`.
    pub state: String,
    /// The ledger transfer, once paid.
    pub transfer: Option<String>,
}

/// The platform's payment notification for an order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PaymentNotification {
    /// The platform's trade number.
    pub trade_no: String,
    /// Yuan paid: must equal the order's amount.
    pub amount: String,
    /// `paid` (other statuses are refused).
    pub status: String,
}
