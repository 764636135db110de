//! The remote ports this crate needs; the facade implements them with identity and the ledger.

use async_trait::async_trait;
use citycard_core::{IdempotencyKey, Money, PersonId, Platform, PlatformAccountId, Sensitive};

use crate::error::PortError;
use crate::model::{
    BalanceView, BlindIndex, CardId, CardNumber, PassSerial, PassUpdate, RemovalReason,
    WalletAccountRef, WalletPass,
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
