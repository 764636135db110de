//! The requests, answers and configuration of the card service.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use citycard_core::{PersonId, Platform, PlatformAccountId, Scopes, Sensitive};
use serde::{Deserialize, Serialize};

use crate::model::{
    BalanceView, BindingId, BindingState, Card, CardRules, ConsentInput, Relation, ServiceSet,
    WalletAccountRef,
};

/// Tunable rules of the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingConfig {
    /// Card number format, kinds and defaults.
    pub rules: CardRules,
    /// Mismatched attempts allowed per account within the window.
    pub mismatch_limit: u32,
    /// The rate-limit window.
    pub mismatch_window: Duration,
    /// Attempts per wallet write before compensating (same serial each time).
    pub wallet_attempts: u32,
    /// The longest a delegation may run.
    pub max_delegation: Duration,
}

impl Default for BindingConfig {
    fn default() -> Self {
        Self {
            rules: CardRules::embedded(),
            mismatch_limit: 5,
            mismatch_window: Duration::minutes(30),
            wallet_attempts: 3,
            max_delegation: Duration::days(366),
        }
    }
}

/// A request to issue a card.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueCard {
    /// The printed number.
    pub number: String,
    /// The kind code (one of the rules' kinds).
    pub kind: String,
    /// The cardholder.
    pub holder: PersonId,
    /// The cardholder's ID number (kept only as a blind index).
    pub id_number: Sensitive<String>,
    /// The e-wallet account.
    pub wallet_account: WalletAccountRef,
    /// Services (the rules' defaults when `None`).
    pub services: Option<ServiceSet>,
    /// Platforms (the rules' defaults when `None`).
    pub platforms: Option<BTreeSet<Platform>>,
}

/// A request to replace a card (补卡).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaceCard {
    /// The new card's printed number.
    pub new_number: String,
    /// The new card's e-wallet account.
    pub new_wallet_account: WalletAccountRef,
}

/// What a card event did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardChange {
    /// The card after the change.
    pub card: Card,
    /// The new card, on replacement.
    pub new_card: Option<Card>,
    /// Bindings whose state or card changed.
    pub bindings_changed: Vec<BindingId>,
    /// Bindings whose wallet pass could not be updated yet (call [`CardService::resync_pass`]).
    pub passes_unsynced: Vec<BindingId>,
    /// Money moved (replacement) or refunded (cancellation).
    pub funds_moved: Option<citycard_core::Money>,
}

/// A request to bind a card to a platform account (one user action).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindRequest {
    /// The platform.
    pub platform: Platform,
    /// The platform account.
    pub account: PlatformAccountId,
    /// The card number as typed.
    pub card_number: String,
    /// The ID number as typed.
    pub id_number: Sensitive<String>,
    /// What the user consents to.
    pub consent: ConsentInput,
}

// Requests carry card numbers as typed: their Debug masks them (one rule,
// `citycard_core::mask_card_number`), like the ID number's `Sensitive`.
impl std::fmt::Debug for IssueCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssueCard")
            .field("number", &citycard_core::mask_card_number(&self.number))
            .field("kind", &self.kind)
            .field("holder", &self.holder)
            .field("id_number", &self.id_number)
            .field("wallet_account", &self.wallet_account)
            .field("services", &self.services)
            .field("platforms", &self.platforms)
            .finish()
    }
}

impl std::fmt::Debug for ReplaceCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplaceCard")
            .field(
                "new_number",
                &citycard_core::mask_card_number(&self.new_number),
            )
            .field("new_wallet_account", &self.new_wallet_account)
            .finish()
    }
}

impl std::fmt::Debug for BindRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindRequest")
            .field("platform", &self.platform)
            .field("account", &self.account)
            .field(
                "card_number",
                &citycard_core::mask_card_number(&self.card_number),
            )
            .field("id_number", &self.id_number)
            .field("consent", &self.consent)
            .finish()
    }
}

/// A request to grant a delegation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantDelegation {
    /// For whom.
    pub cardholder: PersonId,
    /// Who may act.
    pub delegate: PersonId,
    /// Family helper or guardian.
    pub relation: Relation,
    /// What may be done.
    pub scopes: Scopes,
    /// Until when.
    pub expires_at: DateTime<Utc>,
}

/// The view of a binding's card in the wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletView {
    /// The binding.
    pub binding: BindingId,
    /// Its state.
    pub state: BindingState,
    /// Services enabled on the card.
    pub services: ServiceSet,
    /// The balance last pushed to the pass, with its "as of" time.
    pub balance: Option<BalanceView>,
}
