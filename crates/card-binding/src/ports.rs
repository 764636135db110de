//! Every port of the crate: the storage ports of the card registry (cards,
//! bindings, delegations, and the one commit of a decided change set) and the
//! remote ports the facade implements with identity, the ledger and the
//! platforms.
//!
//! Storage updates are compare-and-swap on the record's `version`: an update
//! whose `version` is not the stored one fails with [`StoreError::Conflict`],
//! and a successful update stores the record with its version bumped by one.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use citycard_core::{
    CoreChanges, DelegationId, IdempotencyKey, Money, PersonId, Platform, PlatformAccountId,
    Sensitive, StoreError,
};

use crate::changes::CardChanges;
use crate::error::PortError;
use crate::model::{
    BalanceView, Binding, BindingId, BlindIndex, Card, CardId, CardNumber, Delegation, PassSerial,
    PassUpdate, RemovalReason, WalletAccountRef, WalletPass,
};

/// Real-name facts about platform accounts and persons (implemented with identity).
#[async_trait]
pub trait RealNameCheck: Send + Sync {
    /// The person a platform account belongs to, or `None` if it is not real-name verified.
    async fn account_holder(
        &self,
        platform: &Platform,
        account: &PlatformAccountId,
    ) -> Result<Option<PersonId>, PortError>;

    /// Whether the ID number is `person`'s.
    async fn id_number_is(
        &self,
        person: &PersonId,
        id_number: &Sensitive<String>,
    ) -> Result<bool, PortError>;

    /// Whether a guardian must consent for this person (a minor under 14).
    async fn guardian_required(&self, person: &PersonId) -> Result<bool, PortError>;

    /// Whether `guardian` is the legal guardian of `ward`.
    async fn is_guardian_of(&self, guardian: &PersonId, ward: &PersonId)
    -> Result<bool, PortError>;
}

/// A keyed blind index of ID numbers, so the card registry never keeps them in plaintext.
#[async_trait]
pub trait IdNumberIndex: Send + Sync {
    /// The blind index of an ID number (same number, same index; no way back).
    async fn blind_index(&self, id_number: &Sensitive<String>) -> Result<BlindIndex, PortError>;

    /// A keyed digest of other personal data (a card number in a request
    /// fingerprint), under the index key. `label` separates the uses; the
    /// default indexes `label:value`, which never parses as an ID number.
    async fn keyed_digest(&self, label: &str, value: &str) -> Result<BlindIndex, PortError> {
        self.blind_index(&Sensitive::new(format!("{label}:{value}")))
            .await
    }
}

/// The issuer's answer to "do these details belong together".
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum IssuerVerdict {
    /// They match; this is the card.
    Matched {
        /// The card.
        card: CardId,
    },
    /// They do not (wrong card number or wrong ID number, indistinguishably).
    DoNotMatch,
}

/// The card issuer's check of a card number against an ID number.
#[async_trait]
pub trait CardIssuer: Send + Sync {
    /// Verifies that the card number and the ID number belong together.
    async fn verify(
        &self,
        number: &CardNumber,
        id_number: &Sensitive<String>,
    ) -> Result<IssuerVerdict, PortError>;
}

/// A platform's card wallet (卡包). Every call is idempotent on the pass serial.
#[async_trait]
pub trait PlatformWallet: Send + Sync {
    /// Adds a pass; adding a pass that is already there with the same serial succeeds.
    async fn add_pass(&self, pass: &WalletPass) -> Result<(), PortError>;
    /// Updates a pass's status or balance.
    async fn update_pass(
        &self,
        platform: &Platform,
        serial: &PassSerial,
        update: &PassUpdate,
    ) -> Result<(), PortError>;
    /// Removes a pass and deletes the platform's copy of the card data; removing a missing pass succeeds.
    async fn remove_pass(
        &self,
        platform: &Platform,
        serial: &PassSerial,
        reason: RemovalReason,
    ) -> Result<(), PortError>;
    /// The pass with this serial, if the wallet holds it (resolves unknown outcomes).
    async fn pass(
        &self,
        platform: &Platform,
        serial: &PassSerial,
    ) -> Result<Option<WalletPass>, PortError>;
}

/// Moves card money in the ledger on replacement and cancellation.
#[async_trait]
pub trait CardFunds: Send + Sync {
    /// Moves the whole balance from one wallet account to another; returns the amount moved.
    async fn move_balance(
        &self,
        from: &WalletAccountRef,
        to: &WalletAccountRef,
        key: &IdempotencyKey,
    ) -> Result<Money, PortError>;
    /// Refunds the whole balance to the cardholder and closes the account; returns the amount.
    async fn refund_balance(
        &self,
        account: &WalletAccountRef,
        key: &IdempotencyKey,
    ) -> Result<Money, PortError>;
}

/// The authoritative balance of a card's e-wallet.
#[async_trait]
pub trait BalanceSource: Send + Sync {
    /// The balance now, with its "as of" time.
    async fn balance(&self, account: &WalletAccountRef) -> Result<BalanceView, PortError>;
}

#[async_trait]
impl<T: CardFunds + ?Sized> CardFunds for std::sync::Arc<T> {
    async fn move_balance(
        &self,
        from: &WalletAccountRef,
        to: &WalletAccountRef,
        key: &IdempotencyKey,
    ) -> Result<Money, PortError> {
        (**self).move_balance(from, to, key).await
    }

    async fn refund_balance(
        &self,
        account: &WalletAccountRef,
        key: &IdempotencyKey,
    ) -> Result<Money, PortError> {
        (**self).refund_balance(account, key).await
    }
}

#[async_trait]
impl<T: BalanceSource + ?Sized> BalanceSource for std::sync::Arc<T> {
    async fn balance(&self, account: &WalletAccountRef) -> Result<BalanceView, PortError> {
        (**self).balance(account).await
    }
}

// ----- storage ---------------------------------------------------------------

/// The card registry.
#[async_trait]
pub trait CardStore: Send + Sync {
    /// Stores a new card; a clash on id or number is a conflict.
    async fn insert(&self, card: &Card) -> Result<(), StoreError>;
    /// The card with this id.
    async fn get(&self, id: &CardId) -> Result<Option<Card>, StoreError>;
    /// The card with this printed number.
    async fn by_number(&self, number: &CardNumber) -> Result<Option<Card>, StoreError>;
    /// The cards with these printed numbers that exist, in no particular
    /// order (one read for a chunk of a batch issue).
    async fn by_numbers(&self, numbers: &[CardNumber]) -> Result<Vec<Card>, StoreError>;
    /// Every card of a holder, oldest first.
    async fn by_holder(&self, holder: &PersonId) -> Result<Vec<Card>, StoreError>;
    /// Writes a changed card if its version is the stored one; returns it with the version bumped.
    async fn update(&self, card: &Card) -> Result<Card, StoreError>;
    /// Atomically updates `old` (as [`CardStore::update`]) and inserts `new`; returns the updated old card.
    async fn replace(&self, old: &Card, new: &Card) -> Result<Card, StoreError>;
}

/// Bindings and the per-account record of mismatched attempts.
///
/// The store enforces, atomically, at most one live (pending, active or
/// suspended) binding per card per platform account: an insert or update
/// that would make a second one fails with [`StoreError::Conflict`].
#[async_trait]
pub trait BindingStore: Send + Sync {
    /// Stores a new binding.
    async fn insert(&self, binding: &Binding) -> Result<(), StoreError>;
    /// The binding with this id.
    async fn get(&self, id: &BindingId) -> Result<Option<Binding>, StoreError>;
    /// The live binding of a card on a platform account, if any.
    async fn live_for(
        &self,
        card: &CardId,
        platform: &Platform,
        account: &PlatformAccountId,
    ) -> Result<Option<Binding>, StoreError>;
    /// Every binding of a card (any state), oldest first.
    async fn by_card(&self, card: &CardId) -> Result<Vec<Binding>, StoreError>;
    /// Every binding of a platform account (any state), oldest first.
    async fn by_account(
        &self,
        platform: &Platform,
        account: &PlatformAccountId,
    ) -> Result<Vec<Binding>, StoreError>;
    /// Pending bindings, oldest first, at most `limit` (for a settling job).
    async fn pending(&self, limit: usize) -> Result<Vec<Binding>, StoreError>;
    /// Writes a changed binding if its version is the stored one; returns it with the version bumped.
    async fn update(&self, binding: &Binding) -> Result<Binding, StoreError>;
    /// Records a mismatched attempt by an account.
    async fn record_mismatch(
        &self,
        platform: &Platform,
        account: &PlatformAccountId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The account's mismatched attempts at or after `since`, oldest first.
    async fn mismatches_since(
        &self,
        platform: &Platform,
        account: &PlatformAccountId,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, StoreError>;
}

/// Delegation grants.
#[async_trait]
pub trait DelegationStore: Send + Sync {
    /// Stores a new grant.
    async fn insert(&self, delegation: &Delegation) -> Result<(), StoreError>;
    /// The grant with this id.
    async fn get(&self, id: &DelegationId) -> Result<Option<Delegation>, StoreError>;
    /// Marks a grant revoked at `at` (keeps an earlier revocation); returns the grant, if it exists.
    async fn revoke(
        &self,
        id: &DelegationId,
        at: DateTime<Utc>,
    ) -> Result<Option<Delegation>, StoreError>;
    /// Every grant for a cardholder, oldest first.
    async fn for_cardholder(&self, cardholder: &PersonId) -> Result<Vec<Delegation>, StoreError>;
}

/// The one write of the card service: a decided [`CardChanges`] with its core
/// records (audit, idempotency outcome), in one transaction.
///
/// The store checks the change set's preconditions (free ids and numbers,
/// one live binding per card and account, the versions the decision read,
/// an idempotency key that is new or claimed for the same request) and
/// refuses the whole commit with [`StoreError::Conflict`] when one fails:
/// then nothing is written. It never decides anything else.
#[async_trait]
pub trait CardChangeStore: Send + Sync {
    /// Writes `changes` and `core` atomically, or nothing.
    async fn commit(&self, changes: &CardChanges, core: &CoreChanges) -> Result<(), StoreError>;
}
