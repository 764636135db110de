//! The domain types: cards, bindings, consent, delegations and wallet passes.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use citycard_core::{
    DelegationId, DelegationScope, Money, PersonId, Platform, PlatformAccountId, Principal, Scopes,
};
use serde::{Deserialize, Serialize};

use crate::error::BindingError;

citycard_core::define_id!(
    /// A card's internal id (not the printed card number).
    CardId, "card id", "card"
);
citycard_core::define_id!(
    /// A binding of a card to a platform account.
    BindingId, "binding id", "bnd"
);
citycard_core::define_id!(
    /// The serial number of a card-wallet pass; every retry of one write uses the same serial.
    PassSerial, "pass serial", "pass"
);
impl PassSerial {
    /// The serial of a binding's pass for one card: derived, so a retry, a resync or a
    /// later clean-up of an earlier card's pass always finds the same serial.
    pub fn derive(binding: &BindingId, card: &CardId) -> PassSerial {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut bytes = Vec::with_capacity(binding.as_str().len() + card.as_str().len() + 1);
        bytes.extend_from_slice(binding.as_str().as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(card.as_str().as_bytes());
        let digest = citycard_core::Fingerprint::of_bytes(&bytes);
        let mut text = String::with_capacity(5 + 32);
        text.push_str("pass-");
        for b in &digest.as_bytes()[..16] {
            text.push(char::from(HEX[usize::from(b >> 4)]));
            text.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        // "pass-" and 32 hex digits: always a valid id.
        PassSerial(text)
    }
}

citycard_core::define_id!(
    /// The card's e-wallet account in the ledger (opaque to this crate).
    WalletAccountRef, "wallet account", "wac"
);

/// A printed card number: an opaque issuer identifier, checked against a [`CardNumberFormat`].
///
/// It is not secret, but it is masked in `Debug` and `Display` (first 3, last 4)
/// because together with a name it identifies a person.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CardNumber(String);

impl CardNumber {
    /// Checks `text` against `format` (spaces are ignored) and returns the number.
    pub fn parse(text: &str, format: &CardNumberFormat) -> Result<CardNumber, BindingError> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        format.check(&compact)?;
        Ok(CardNumber(compact))
    }

    /// The full number, for storage and for the issuer check.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The masked form shown on passes and in logs ([`citycard_core::mask_card_number`]).
    pub fn masked(&self) -> String {
        citycard_core::mask_card_number(&self.0)
    }
}

impl fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardNumber({})", self.masked())
    }
}

impl fmt::Display for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Which characters a card number may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardNumberCharset {
    /// ASCII digits only.
    Digits,
    /// ASCII letters and digits.
    Alphanumeric,
}

/// The configurable format check for card numbers (the printed format is not public).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardNumberFormat {
    /// Fewest characters.
    pub min_len: usize,
    /// Most characters.
    pub max_len: usize,
    /// Allowed characters.
    pub charset: CardNumberCharset,
    /// Allowed prefixes (any when empty).
    #[serde(default)]
    pub prefixes: Vec<String>,
}

impl CardNumberFormat {
    /// Checks a compact number (no spaces).
    pub fn check(&self, number: &str) -> Result<(), BindingError> {
        let len = number.chars().count();
        let charset_ok = match self.charset {
            CardNumberCharset::Digits => number.chars().all(|c| c.is_ascii_digit()),
            CardNumberCharset::Alphanumeric => number.chars().all(|c| c.is_ascii_alphanumeric()),
        };
        let prefix_ok =
            self.prefixes.is_empty() || self.prefixes.iter().any(|p| number.starts_with(p));
        if len < self.min_len || len > self.max_len || !charset_ok || !prefix_ok {
            return Err(BindingError::InvalidCardNumber {
                rule: self.describe(),
            });
        }
        Ok(())
    }

    /// The rule in words, for error messages.
    pub fn describe(&self) -> String {
        let chars = match self.charset {
            CardNumberCharset::Digits => "digits",
            CardNumberCharset::Alphanumeric => "letters and digits",
        };
        let mut s = format!("{} to {} {chars}", self.min_len, self.max_len);
        if !self.prefixes.is_empty() {
            s.push_str(&format!(" starting with {}", self.prefixes.join(" or ")));
        }
        s
    }
}

/// The issuer's rules kept as data: number format, card kinds, defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardRules {
    /// The card number format.
    pub number_format: CardNumberFormat,
    /// The kind codes the issuer issues.
    pub kinds: Vec<String>,
    /// Services enabled on a new card unless the issuer says otherwise.
    pub default_services: ServiceSet,
    /// Platforms a new card may be bound on unless the issuer says otherwise.
    pub default_platforms: BTreeSet<Platform>,
}

/// The embedded default rules (`data/card_rules.json`).
pub const DEFAULT_CARD_RULES_JSON: &str = include_str!("../data/card_rules.json");

impl CardRules {
    /// Reads rules from JSON (the shape of `data/card_rules.json`).
    pub fn from_json(json: &str) -> Result<CardRules, BindingError> {
        let rules: CardRules = serde_json::from_str(json).map_err(|e| BindingError::Config {
            reason: e.to_string(),
        })?;
        if rules.number_format.min_len == 0
            || rules.number_format.min_len > rules.number_format.max_len
        {
            return Err(BindingError::Config {
                reason: "number_format needs 0 < min_len <= max_len".into(),
            });
        }
        Ok(rules)
    }

    /// The embedded default rules.
    pub fn embedded() -> CardRules {
        // The embedded file is checked by a unit test; fall back to a permissive rule set.
        Self::from_json(DEFAULT_CARD_RULES_JSON).unwrap_or_else(|_| CardRules {
            number_format: CardNumberFormat {
                min_len: 1,
                max_len: 32,
                charset: CardNumberCharset::Alphanumeric,
                prefixes: Vec::new(),
            },
            kinds: vec!["standard".into()],
            default_services: ServiceSet::default(),
            default_platforms: BTreeSet::new(),
        })
    }

    /// The kind for a code, if the issuer issues it.
    pub fn kind(&self, code: &str) -> Result<CardKind, BindingError> {
        if self.kinds.iter().any(|k| k == code) {
            Ok(CardKind::from_code(code))
        } else {
            Err(BindingError::UnknownCardKind {
                kind: code.to_owned(),
            })
        }
    }
}

/// The kind of card; each drives discounts and rules elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum CardKind {
    /// Standard card.
    Standard,
    /// Elderly card: the 70+ card (老年卡); a holder under 70 rides as the
    /// 60–69 elder card. The elder card itself (长者卡) is the kind `elder`.
    Elderly,
    /// Student card.
    Student,
    /// Disabled persons' concession card.
    Disabled,
    /// Any other concession kind, by code.
    Other(String),
}

impl CardKind {
    /// The stable code.
    pub fn code(&self) -> &str {
        match self {
            CardKind::Standard => "standard",
            CardKind::Elderly => "elderly",
            CardKind::Student => "student",
            CardKind::Disabled => "disabled",
            CardKind::Other(c) => c,
        }
    }

    /// The kind for a code.
    pub fn from_code(code: &str) -> CardKind {
        match code {
            "standard" => CardKind::Standard,
            "elderly" => CardKind::Elderly,
            "student" => CardKind::Student,
            "disabled" => CardKind::Disabled,
            other => CardKind::Other(other.to_owned()),
        }
    }
}

impl Serialize for CardKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for CardKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(CardKind::from_code(&String::deserialize(d)?))
    }
}

/// A function of the card.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Service {
    /// Scan-code and tap rides.
    Transit,
    /// Hospital booking and payment.
    Healthcare,
    /// Social-insurance queries.
    SocialInsurance,
    /// The e-wallet: balance, records, top-up.
    Wallet,
    /// Any other service, by code.
    Other(String),
}

impl Service {
    /// The stable code.
    pub fn code(&self) -> &str {
        match self {
            Service::Transit => "transit",
            Service::Healthcare => "healthcare",
            Service::SocialInsurance => "social_insurance",
            Service::Wallet => "wallet",
            Service::Other(c) => c,
        }
    }

    /// The service for a code.
    pub fn from_code(code: &str) -> Service {
        match code {
            "transit" => Service::Transit,
            "healthcare" => Service::Healthcare,
            "social_insurance" => Service::SocialInsurance,
            "wallet" => Service::Wallet,
            other => Service::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Service {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Service {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Service::from_code(&String::deserialize(d)?))
    }
}

/// The set of services enabled on a card (the issuer controls it).
pub type ServiceSet = BTreeSet<Service>;

/// The status of a card.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CardStatus {
    /// In use.
    Active,
    /// Reported lost (挂失); bindings suspended.
    ReportedLost,
    /// Frozen by the issuer; bindings suspended.
    Frozen,
    /// Replaced (补卡) by another card; bindings moved there.
    Replaced {
        /// The new card.
        by: CardId,
    },
    /// Cancelled (注销); bindings removed, balance refunded.
    Cancelled,
}

impl CardStatus {
    /// A stable code: `active`, `reported_lost`, `frozen`, `replaced`, `cancelled`.
    pub fn code(&self) -> &'static str {
        match self {
            CardStatus::Active => "active",
            CardStatus::ReportedLost => "reported_lost",
            CardStatus::Frozen => "frozen",
            CardStatus::Replaced { .. } => "replaced",
            CardStatus::Cancelled => "cancelled",
        }
    }

    /// True for an active card.
    pub fn is_active(&self) -> bool {
        matches!(self, CardStatus::Active)
    }

    /// True when the card can never be active again.
    pub fn is_final(&self) -> bool {
        matches!(self, CardStatus::Replaced { .. } | CardStatus::Cancelled)
    }
}

/// A keyed blind index of an ID number: lets the registry match an ID number
/// without keeping it. Hex text from an [`IdNumberIndex`](crate::IdNumberIndex).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BlindIndex(String);

impl BlindIndex {
    /// Wraps index text produced by an index port.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The index text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BlindIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.0.chars().take(8).collect();
        write!(f, "BlindIndex({shown}…)")
    }
}

/// A citizen card as the issuer keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    /// Internal id.
    pub id: CardId,
    /// Printed number.
    pub number: CardNumber,
    /// Kind.
    pub kind: CardKind,
    /// The cardholder.
    pub holder: PersonId,
    /// Blind index of the holder's ID number (never the number itself).
    pub holder_index: BlindIndex,
    /// The card's e-wallet account.
    pub wallet_account: WalletAccountRef,
    /// Enabled services.
    pub services: ServiceSet,
    /// Platforms on which the card may be bound.
    pub platforms: BTreeSet<Platform>,
    /// Status.
    pub status: CardStatus,
    /// The card this one replaced, if any.
    pub replaces: Option<CardId>,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// Optimistic-concurrency version, bumped by every store update.
    pub version: u64,
}

/// The state of a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingState {
    /// Steps in progress ("processing").
    Pending,
    /// Bound and usable.
    Active,
    /// Temporarily unusable (card lost or frozen).
    Suspended,
    /// Gone; terminal. Binding again creates a new binding.
    Removed,
}

impl BindingState {
    /// A stable code.
    pub fn code(self) -> &'static str {
        match self {
            BindingState::Pending => "pending",
            BindingState::Active => "active",
            BindingState::Suspended => "suspended",
            BindingState::Removed => "removed",
        }
    }

    /// The state for a code.
    pub fn from_code(code: &str) -> Option<BindingState> {
        match code {
            "pending" => Some(BindingState::Pending),
            "active" => Some(BindingState::Active),
            "suspended" => Some(BindingState::Suspended),
            "removed" => Some(BindingState::Removed),
            _ => None,
        }
    }

    /// True while the binding counts against "one live binding per card per account".
    pub fn is_live(self) -> bool {
        !matches!(self, BindingState::Removed)
    }

    /// Whether the state machine allows `self → next`.
    pub fn can_become(self, next: BindingState) -> bool {
        use BindingState::*;
        matches!(
            (self, next),
            (Pending, Active)
                | (Pending, Suspended)
                | (Pending, Removed)
                | (Active, Suspended)
                | (Suspended, Active)
                | (Active, Removed)
                | (Suspended, Removed)
        )
    }
}

/// Why a binding or its pass was removed (Alipay's card-pack deletion reasons and ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RemovalReason {
    /// The user unbound (withdrew consent); may bind again.
    UserUnbound,
    /// The platform account was closed; may not bind again from it.
    AccountClosed,
    /// The account was handed to another person; may bind again.
    HandedToAnotherPerson,
    /// The card was cancelled.
    CardCancelled,
    /// The card was replaced; the binding moved to the new card's pass.
    CardReplaced,
    /// The binding flow failed after retries and was compensated.
    BindingFailed,
}

impl RemovalReason {
    /// A stable code.
    pub fn code(self) -> &'static str {
        match self {
            RemovalReason::UserUnbound => "user_unbound",
            RemovalReason::AccountClosed => "account_closed",
            RemovalReason::HandedToAnotherPerson => "handed_to_another_person",
            RemovalReason::CardCancelled => "card_cancelled",
            RemovalReason::CardReplaced => "card_replaced",
            RemovalReason::BindingFailed => "binding_failed",
        }
    }
}

/// A category of personal data shared with a platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DataCategory {
    /// The card number.
    CardNumber,
    /// Name and ID number (identity).
    Identity,
    /// Wallet balance and transactions.
    Balance,
    /// Ride records.
    TransitRecords,
    /// Medical bookings and payments.
    MedicalRecords,
    /// Social-insurance records.
    SocialInsuranceRecords,
}

/// What the user agrees to when binding (the request part of a consent record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentInput {
    /// Why the data is shared, as shown to the user.
    pub purpose: String,
    /// What is shared.
    pub data_categories: BTreeSet<DataCategory>,
    /// Version of the consent text shown.
    pub text_version: String,
    /// Where consent was given (`alipay_app`, `counter`, ...).
    pub channel: String,
}

/// A recorded consent (PIPL): separate, informed, and withdrawable by unbinding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRecord {
    /// The recipient platform.
    pub recipient: Platform,
    /// Purpose, categories, text version, channel.
    pub given: ConsentInput,
    /// When it was given.
    pub given_at: DateTime<Utc>,
    /// Who gave it.
    pub actor: Principal,
    /// The guardian who consented for a minor, where one acts.
    pub guardian: Option<PersonId>,
    /// When it was withdrawn (unbinding, card cancelled), if it was.
    pub withdrawn_at: Option<DateTime<Utc>>,
}

/// A card bound to a platform account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// Id.
    pub id: BindingId,
    /// The card (moves to the new card on replacement).
    pub card: CardId,
    /// The cardholder.
    pub holder: PersonId,
    /// The platform.
    pub platform: Platform,
    /// The platform account.
    pub account: PlatformAccountId,
    /// State.
    pub state: BindingState,
    /// Serial number of the wallet pass (stable across retries).
    pub pass_serial: PassSerial,
    /// The consent this binding rests on.
    pub consent: ConsentRecord,
    /// Why it was removed, once removed.
    pub removal: Option<RemovalReason>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version, bumped by every store update.
    pub version: u64,
}

/// Whether a family member helps or a legal guardian acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// A family helper (for an elderly cardholder, say).
    Family,
    /// A legal guardian of a minor.
    Guardian,
}

/// A delegation (亲情账户): scoped, expiring, revocable rights to act for a cardholder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    /// Id.
    pub id: DelegationId,
    /// For whom.
    pub cardholder: PersonId,
    /// Who may act.
    pub delegate: PersonId,
    /// Family helper or guardian.
    pub relation: Relation,
    /// What may be done.
    pub scopes: Scopes,
    /// Who granted it (the cardholder, or a guardian for a minor).
    pub granted_by: PersonId,
    /// When.
    pub granted_at: DateTime<Utc>,
    /// Until when.
    pub expires_at: DateTime<Utc>,
    /// When revoked, if revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Delegation {
    /// Live at `now` (not expired, not revoked) and holding `scope`.
    pub fn allows(&self, scope: DelegationScope, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && now < self.expires_at && self.scopes.contains(scope)
    }
}

/// The status shown on a wallet pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PassStatus {
    /// Usable.
    Active,
    /// Suspended (card lost or frozen).
    Suspended,
}

/// A balance with the time it was true ("as of").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceView {
    /// The balance.
    pub balance: Money,
    /// When the authoritative system reported it.
    pub as_of: DateTime<Utc>,
}

/// A card pass in a platform's card wallet (卡包).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletPass {
    /// Serial number (idempotency of the write).
    pub serial: PassSerial,
    /// The binding it shows.
    pub binding: BindingId,
    /// The platform.
    pub platform: Platform,
    /// The account whose wallet holds it.
    pub account: PlatformAccountId,
    /// The card number, masked.
    pub card_number_masked: String,
    /// The card kind.
    pub kind: CardKind,
    /// The services usable from the phone.
    pub services: ServiceSet,
    /// Status.
    pub status: PassStatus,
    /// The last balance pushed, if any.
    pub balance: Option<BalanceView>,
}

/// A change to a pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PassUpdate {
    /// A new status.
    Status(PassStatus),
    /// A new balance.
    Balance(BalanceView),
}

/// What a successful binding returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingReceipt {
    /// The binding.
    pub binding: BindingId,
    /// Its state (active, or suspended when the card was reported lost meanwhile).
    pub state: BindingState,
    /// The card.
    pub card: CardId,
    /// The pass written to the wallet.
    pub pass_serial: PassSerial,
    /// The services enabled on this card.
    pub services: ServiceSet,
}
