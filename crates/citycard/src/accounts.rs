//! Where every yuan lives: the ledger accounts of the card system.
//!
//! Account ids are derived from a stable label (`wallet:<card id>`,
//! `clearing:alipay`, `revenue:<operator>`, ...) by SHA-256, so every process
//! that opens the same database names the same accounts without a lookup
//! table, and opening an account twice is an idempotent `exists`.
//!
//! | label | kind | rules |
//! |---|---|---|
//! | `wallet:<card number>` | e-wallet | no overdraft, capped for the card's kind (¥1,000 transit, ¥550 elder card), history |
//! | `clearing:<platform>` | top-up clearing | the platform's settlement account; may go negative |
//! | `revenue:<operator>` | operator revenue | transit operator's takings |
//! | `refunds` | refunds | money paid back to cardholders |
//! | `medical-current:<person>` / `medical-accumulated:<person>` | medical accounts | no overdraft |
//! | `pooled-fund` | pooled fund | the insurance fund; may go negative within the day |
//! | `insurance-funding` | promotions (funding source) | where personal medical accounts are credited from |
//! | `hospital:<hospital>` | hospital receivable | what hospitals are owed |
//! | `control` | control | the counter-account of closing holds |

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use citycard_core::{Fingerprint, Money, PersonId, Platform, Principal};
use citycard_ledger::{
    AccountFlags, AccountId, AccountKind, Ledger, NewAccount, Owner, WalletHolder, WalletLimits,
};

use crate::error::CityCardError;

/// The account id for a label (SHA-256, first 8 bytes; 0 and `u64::MAX` avoided).
pub fn account_id(label: &str) -> AccountId {
    let digest = Fingerprint::of_bytes(label.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_bytes()[..8]);
    match u64::from_le_bytes(first) {
        0 => AccountId::new(1),
        u64::MAX => AccountId::new(u64::MAX - 1),
        n => AccountId::new(n),
    }
}

/// The ledger accounts of the card system, and how to open them.
///
/// Clones share a record of the accounts already opened by this process, so
/// opening an operator's or a hospital's account on every charge costs a
/// set lookup, not a ledger batch (accounts are never deleted, so the
/// record cannot go stale).
#[derive(Clone)]
pub struct Accounts {
    ledger: Arc<Ledger>,
    limits: WalletLimits,
    opened: Arc<Mutex<HashSet<AccountId>>>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("limits", &self.limits)
            .finish()
    }
}

impl Accounts {
    /// The directory over a ledger, with the wallet caps to apply.
    pub fn new(ledger: Arc<Ledger>, limits: WalletLimits) -> Self {
        Self {
            ledger,
            limits,
            opened: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// The wallet caps.
    pub fn limits(&self) -> &WalletLimits {
        &self.limits
    }

    /// The e-wallet account of a card, by its printed number.
    pub fn wallet(card: &citycard_binding::CardNumber) -> AccountId {
        account_id(&format!("wallet:{}", card.as_str()))
    }

    /// A platform's top-up clearing account.
    pub fn clearing(platform: &Platform) -> AccountId {
        account_id(&format!("clearing:{}", platform.code()))
    }

    /// A transit operator's revenue account.
    pub fn revenue(operator: &str) -> AccountId {
        account_id(&format!("revenue:{operator}"))
    }

    /// Where refunds go.
    pub fn refunds() -> AccountId {
        account_id("refunds")
    }

    /// A person's current-year medical account.
    pub fn medical_current(person: &PersonId) -> AccountId {
        account_id(&format!("medical-current:{person}"))
    }

    /// A person's accumulated medical account.
    pub fn medical_accumulated(person: &PersonId) -> AccountId {
        account_id(&format!("medical-accumulated:{person}"))
    }

    /// The medical insurance pooled fund.
    pub fn pooled_fund() -> AccountId {
        account_id("pooled-fund")
    }

    /// The source that credits personal medical accounts (the insurance agency).
    pub fn insurance_funding() -> AccountId {
        account_id("insurance-funding")
    }

    /// A hospital's receivable account.
    pub fn hospital(hospital: &str) -> AccountId {
        account_id(&format!("hospital:{hospital}"))
    }

    /// The control account for closing holds.
    pub fn control() -> AccountId {
        account_id("control")
    }

    /// Opens accounts, treating `exists` as success; any other result is an error.
    pub async fn open(&self, batch: Vec<NewAccount>) -> Result<(), CityCardError> {
        let batch: Vec<NewAccount> = {
            let opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
            batch
                .into_iter()
                .filter(|a| !opened.contains(&a.id))
                .collect()
        };
        if batch.is_empty() {
            return Ok(());
        }
        let ids: Vec<AccountId> = batch.iter().map(|a| a.id).collect();
        let results = self
            .ledger
            .create_accounts(&Principal::System, batch)
            .await?;
        for (id, result) in ids.iter().zip(results) {
            if !result.is_success() {
                return Err(CityCardError::AccountNotOpened {
                    account: *id,
                    result,
                });
            }
        }
        self.opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(ids);
        Ok(())
    }

    /// Opens the system's own accounts (clearing, refunds, fund, control).
    pub async fn open_system_accounts(&self) -> Result<(), CityCardError> {
        let org = |code: &str| Owner::Organisation(code.to_owned());
        let mut batch = vec![
            NewAccount::new(Self::refunds(), AccountKind::REFUNDS).with_owner(org("issuer")),
            NewAccount::new(Self::pooled_fund(), AccountKind::POOLED_FUND)
                .with_owner(org("medical-insurance")),
            NewAccount::new(Self::insurance_funding(), AccountKind::PROMOTIONS)
                .with_owner(org("medical-insurance")),
            NewAccount::new(Self::control(), AccountKind::CONTROL).with_owner(org("issuer")),
        ];
        for platform in [Platform::Alipay, Platform::WechatPay, Platform::UnionPay] {
            batch.push(
                NewAccount::new(Self::clearing(&platform), AccountKind::TOP_UP_CLEARING)
                    .with_owner(org(platform.code())),
            );
        }
        self.open(batch).await
    }

    /// Opens a card's e-wallet, capped for the card's kind (a registered card).
    /// The cap is fixed on the account: later changes to the caps leave it as is.
    pub async fn open_wallet(
        &self,
        card: &citycard_binding::CardNumber,
        holder: &PersonId,
        kind: &citycard_binding::CardKind,
    ) -> Result<AccountId, CityCardError> {
        let id = Self::wallet(card);
        self.open(vec![self.wallet_account(card, holder, kind)])
            .await?;
        Ok(id)
    }

    /// Opens a new card's e-wallet and its holder's medical accounts in one
    /// ledger batch (one write transaction); returns the wallet.
    /// [`crate::CityCard::issue_card`] opens them in the card's own
    /// transaction instead ([`Accounts::card_accounts`]).
    pub async fn open_card_accounts(
        &self,
        card: &citycard_binding::CardNumber,
        holder: &PersonId,
        kind: &citycard_binding::CardKind,
    ) -> Result<AccountId, CityCardError> {
        self.open(self.card_accounts(card, holder, kind).to_vec())
            .await?;
        Ok(Self::wallet(card))
    }

    /// A new card's accounts, unopened: its capped e-wallet and its holder's
    /// two medical accounts (which a person's later cards find open).
    pub fn card_accounts(
        &self,
        card: &citycard_binding::CardNumber,
        holder: &PersonId,
        kind: &citycard_binding::CardKind,
    ) -> [NewAccount; 3] {
        let [current, accumulated] = Self::medical_accounts(holder);
        [
            self.wallet_account(card, holder, kind),
            current,
            accumulated,
        ]
    }

    fn wallet_account(
        &self,
        card: &citycard_binding::CardNumber,
        holder: &PersonId,
        kind: &citycard_binding::CardKind,
    ) -> NewAccount {
        self.limits
            .wallet_for_kind(Self::wallet(card), kind.code(), Some(holder.clone()))
            .with_metadata("card_number_suffix", suffix(card.as_str()))
    }

    /// Opens a replacement card's e-wallet with its predecessor's cap when that
    /// is higher than the kind's cap today, so the carried balance always fits
    /// (a wallet keeps the cap it was opened with, across replacements too).
    pub async fn open_replacement_wallet(
        &self,
        card: &citycard_binding::CardNumber,
        holder: &PersonId,
        kind: &citycard_binding::CardKind,
        old_wallet: AccountId,
    ) -> Result<AccountId, CityCardError> {
        let old_cap = self
            .ledger
            .account(&Principal::System, old_wallet)
            .await?
            .upper_limit;
        let id = Self::wallet(card);
        let cap = self
            .limits
            .kind_cap(kind.code())
            .max(old_cap.unwrap_or(Money::ZERO));
        let account = self
            .limits
            .wallet_with_cap(id, WalletHolder::Registered, cap, Some(holder.clone()))
            .with_metadata("card_kind", kind.code())
            .with_metadata("card_number_suffix", suffix(card.as_str()));
        self.open(vec![account]).await?;
        Ok(id)
    }

    /// Opens a person's two medical accounts.
    pub async fn open_medical_accounts(&self, person: &PersonId) -> Result<(), CityCardError> {
        self.open(Self::medical_accounts(person).to_vec()).await
    }

    /// A person's two medical accounts, unopened.
    fn medical_accounts(person: &PersonId) -> [NewAccount; 2] {
        let owner = Owner::Person(person.clone());
        [
            NewAccount::new(
                Self::medical_current(person),
                AccountKind::MEDICAL_CURRENT_YEAR,
            )
            .with_flags(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags::HISTORY)
            .with_owner(owner.clone()),
            NewAccount::new(
                Self::medical_accumulated(person),
                AccountKind::MEDICAL_ACCUMULATED,
            )
            .with_flags(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags::HISTORY)
            .with_owner(owner),
        ]
    }

    /// Opens a transit operator's revenue account.
    pub async fn open_operator(&self, operator: &str) -> Result<AccountId, CityCardError> {
        let id = Self::revenue(operator);
        self.open(vec![
            NewAccount::new(id, AccountKind::OPERATOR_REVENUE)
                .with_owner(Owner::Organisation(operator.to_owned())),
        ])
        .await?;
        Ok(id)
    }

    /// Opens a hospital's receivable account.
    pub async fn open_hospital(&self, hospital: &str) -> Result<AccountId, CityCardError> {
        let id = Self::hospital(hospital);
        self.open(vec![
            NewAccount::new(id, AccountKind::HOSPITAL_RECEIVABLE)
                .with_owner(Owner::Organisation(hospital.to_owned())),
        ])
        .await?;
        Ok(id)
    }

    /// The posted balance of an account as the system sees it: for the host's
    /// own checks; it names no principal, so answer no caller with it (use
    /// [`crate::WalletService::balance`]).
    pub async fn balance(&self, id: AccountId) -> Result<Money, CityCardError> {
        Ok(self.ledger.account(&Principal::System, id).await?.posted())
    }
}

/// The last four characters of a card number, enough for a person to recognise it.
fn suffix(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_give_stable_distinct_ids() {
        assert_eq!(account_id("refunds"), account_id("refunds"));
        assert_ne!(account_id("refunds"), account_id("pooled-fund"));
        assert_ne!(
            Accounts::clearing(&Platform::Alipay),
            Accounts::clearing(&Platform::WechatPay)
        );
        assert!(!account_id("x").is_zero());
    }
}
