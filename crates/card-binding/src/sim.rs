//! In-process implementations of the remote ports: the card-registry issuer,
//! and simulations (wallet, funds, real-name facts, blind index) for tests and the demo.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use citycard_core::{
    Clock, Fingerprint, IdempotencyKey, Money, PersonId, Platform, PlatformAccountId, Sensitive,
};

use crate::error::PortError;
use crate::model::{
    BalanceView, BlindIndex, CardNumber, PassSerial, PassStatus, PassUpdate, RemovalReason,
    WalletAccountRef, WalletPass,
};
use crate::ports::CardStore;
use crate::ports::{
    BalanceSource, CardFunds, CardIssuer, IdNumberIndex, IssuerVerdict, PlatformWallet,
    RealNameCheck,
};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The in-process [`CardIssuer`]: the card registry matched through the blind index.
///
/// A wrong card number and a wrong ID number give the same [`IssuerVerdict::DoNotMatch`],
/// and both paths compute the blind index, so neither the answer nor the work done tells them apart.
pub struct RegistryCardIssuer {
    cards: Arc<dyn CardStore>,
    index: Arc<dyn IdNumberIndex>,
}

impl RegistryCardIssuer {
    /// The issuer over a card registry and an ID-number index.
    pub fn new(cards: Arc<dyn CardStore>, index: Arc<dyn IdNumberIndex>) -> Self {
        Self { cards, index }
    }
}

#[async_trait]
impl CardIssuer for RegistryCardIssuer {
    async fn verify(
        &self,
        number: &CardNumber,
        id_number: &Sensitive<String>,
    ) -> Result<IssuerVerdict, PortError> {
        let index = self.index.blind_index(id_number).await?;
        let card = self
            .cards
            .by_number(number)
            .await
            .map_err(|e| PortError::Unavailable(e.to_string()))?;
        Ok(match card {
            Some(card) if card.holder_index == index => IssuerVerdict::Matched { card: card.id },
            _ => IssuerVerdict::DoNotMatch,
        })
    }
}

/// A keyed SHA-256 blind index for tests and the demo. Production hosts use
/// identity's HMAC blind index with a key from their `KeyProvider`.
#[derive(Clone)]
pub struct KeyedHashIndex {
    key: Vec<u8>,
}

impl KeyedHashIndex {
    /// An index under a key.
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    /// The index computed synchronously.
    pub fn index_of(&self, id_number: &Sensitive<String>) -> BlindIndex {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let id = id_number.expose().trim();
        let mut bytes = Vec::with_capacity(self.key.len() + 1 + id.len());
        bytes.extend_from_slice(&self.key);
        bytes.push(0);
        bytes.extend(id.bytes().map(|b| b.to_ascii_uppercase()));
        let digest = Fingerprint::of_bytes(&bytes);
        let mut hex = String::with_capacity(64);
        for b in digest.as_bytes() {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        BlindIndex::new(hex)
    }
}

impl std::fmt::Debug for KeyedHashIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedHashIndex(..)")
    }
}

#[async_trait]
impl IdNumberIndex for KeyedHashIndex {
    async fn blind_index(&self, id_number: &Sensitive<String>) -> Result<BlindIndex, PortError> {
        Ok(self.index_of(id_number))
    }
}

#[derive(Debug, Default)]
struct People {
    accounts: HashMap<(Platform, PlatformAccountId), PersonId>,
    id_numbers: HashMap<PersonId, BlindIndex>,
    minors: HashSet<PersonId>,
    guardians: HashSet<(PersonId, PersonId)>,
}

/// Real-name facts set up by hand, for tests and the demo. ID numbers are kept as blind indexes only.
#[derive(Debug)]
pub struct StaticRealNames {
    index: KeyedHashIndex,
    people: Mutex<People>,
}

impl StaticRealNames {
    /// Empty facts; ID numbers are indexed with `index`.
    pub fn new(index: KeyedHashIndex) -> Self {
        Self {
            index,
            people: Mutex::default(),
        }
    }

    /// Registers a person's ID number.
    pub fn add_person(&self, person: &PersonId, id_number: &Sensitive<String>) {
        let idx = self.index.index_of(id_number);
        lock(&self.people).id_numbers.insert(person.clone(), idx);
    }

    /// Marks a platform account real-name verified as `person`'s.
    pub fn verify_account(
        &self,
        platform: &Platform,
        account: &PlatformAccountId,
        person: &PersonId,
    ) {
        lock(&self.people)
            .accounts
            .insert((platform.clone(), account.clone()), person.clone());
    }

    /// Marks a person a minor under 14 with a guardian.
    pub fn add_minor(&self, minor: &PersonId, guardian: &PersonId) {
        let mut p = lock(&self.people);
        p.minors.insert(minor.clone());
        p.guardians.insert((guardian.clone(), minor.clone()));
    }
}

#[async_trait]
impl RealNameCheck for StaticRealNames {
    async fn account_holder(
        &self,
        platform: &Platform,
        account: &PlatformAccountId,
    ) -> Result<Option<PersonId>, PortError> {
        Ok(lock(&self.people)
            .accounts
            .get(&(platform.clone(), account.clone()))
            .cloned())
    }

    async fn id_number_is(
        &self,
        person: &PersonId,
        id_number: &Sensitive<String>,
    ) -> Result<bool, PortError> {
        let idx = self.index.index_of(id_number);
        Ok(lock(&self.people).id_numbers.get(person) == Some(&idx))
    }

    async fn guardian_required(&self, person: &PersonId) -> Result<bool, PortError> {
        Ok(lock(&self.people).minors.contains(person))
    }

    async fn is_guardian_of(
        &self,
        guardian: &PersonId,
        ward: &PersonId,
    ) -> Result<bool, PortError> {
        Ok(lock(&self.people)
            .guardians
            .contains(&(guardian.clone(), ward.clone())))
    }
}

// Passes boxed, so growing the map moves pointers, not whole passes.
#[derive(Debug, Default)]
struct WalletState {
    passes: HashMap<(Platform, PassSerial), Box<WalletPass>>,
    removals: Vec<(PassSerial, RemovalReason)>,
}

/// A simulated platform card wallet (卡包) holding passes in memory.
#[derive(Debug, Default)]
pub struct SimulatedWallet {
    state: Mutex<WalletState>,
}

impl SimulatedWallet {
    /// An empty wallet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every pass held, in no particular order.
    pub fn passes(&self) -> Vec<WalletPass> {
        lock(&self.state)
            .passes
            .values()
            .map(|p| WalletPass::clone(p))
            .collect()
    }

    /// Every removal so far, in order, with its reason.
    pub fn removals(&self) -> Vec<(PassSerial, RemovalReason)> {
        lock(&self.state).removals.clone()
    }
}

#[async_trait]
impl PlatformWallet for SimulatedWallet {
    async fn add_pass(&self, pass: &WalletPass) -> Result<(), PortError> {
        let mut s = lock(&self.state);
        s.passes
            .entry((pass.platform.clone(), pass.serial.clone()))
            .or_insert_with(|| Box::new(pass.clone()));
        Ok(())
    }

    async fn update_pass(
        &self,
        platform: &Platform,
        serial: &PassSerial,
        update: &PassUpdate,
    ) -> Result<(), PortError> {
        let mut s = lock(&self.state);
        let pass = s
            .passes
            .get_mut(&(platform.clone(), serial.clone()))
            .ok_or_else(|| PortError::Rejected(format!("no pass {serial}")))?;
        match update {
            PassUpdate::Status(status) => pass.status = *status,
            PassUpdate::Balance(view) => {
                // Never let an older balance overwrite a newer one.
                if pass.balance.is_none_or(|b| b.as_of <= view.as_of) {
                    pass.balance = Some(*view);
                }
            }
        }
        Ok(())
    }

    async fn remove_pass(
        &self,
        platform: &Platform,
        serial: &PassSerial,
        reason: RemovalReason,
    ) -> Result<(), PortError> {
        let mut s = lock(&self.state);
        if s.passes
            .remove(&(platform.clone(), serial.clone()))
            .is_some()
        {
            s.removals.push((serial.clone(), reason));
        }
        Ok(())
    }

    async fn pass(
        &self,
        platform: &Platform,
        serial: &PassSerial,
    ) -> Result<Option<WalletPass>, PortError> {
        Ok(lock(&self.state)
            .passes
            .get(&(platform.clone(), serial.clone()))
            .map(|p| WalletPass::clone(p)))
    }
}

impl SimulatedWallet {
    /// The status of a pass, if held (a convenience for tests).
    pub fn status_of(&self, platform: &Platform, serial: &PassSerial) -> Option<PassStatus> {
        lock(&self.state)
            .passes
            .get(&(platform.clone(), serial.clone()))
            .map(|p| p.status)
    }
}

#[derive(Debug, Default)]
struct Funds {
    balances: HashMap<WalletAccountRef, Money>,
    applied: HashMap<IdempotencyKey, Money>,
    refunded: HashMap<WalletAccountRef, Money>,
}

/// Card e-wallet balances in memory: a simulated ledger for tests and the demo.
pub struct MemoryFunds {
    clock: Arc<dyn Clock>,
    funds: Mutex<Funds>,
}

impl MemoryFunds {
    /// Empty balances; "as of" times come from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            funds: Mutex::default(),
        }
    }

    /// Sets an account's balance.
    pub fn set_balance(&self, account: &WalletAccountRef, balance: Money) {
        lock(&self.funds).balances.insert(account.clone(), balance);
    }

    /// An account's balance (zero when unknown).
    pub fn balance_of(&self, account: &WalletAccountRef) -> Money {
        lock(&self.funds)
            .balances
            .get(account)
            .copied()
            .unwrap_or(Money::ZERO)
    }

    /// What was refunded from an account on cancellation.
    pub fn refunded(&self, account: &WalletAccountRef) -> Money {
        lock(&self.funds)
            .refunded
            .get(account)
            .copied()
            .unwrap_or(Money::ZERO)
    }
}

impl std::fmt::Debug for MemoryFunds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryFunds(..)")
    }
}

#[async_trait]
impl CardFunds for MemoryFunds {
    async fn move_balance(
        &self,
        from: &WalletAccountRef,
        to: &WalletAccountRef,
        key: &IdempotencyKey,
    ) -> Result<Money, PortError> {
        let mut f = lock(&self.funds);
        if let Some(done) = f.applied.get(key) {
            return Ok(*done);
        }
        let amount = f.balances.remove(from).unwrap_or(Money::ZERO);
        let target = f.balances.get(to).copied().unwrap_or(Money::ZERO);
        let sum = target
            .checked_add(amount)
            .map_err(|e| PortError::Rejected(e.to_string()))?;
        f.balances.insert(from.clone(), Money::ZERO);
        f.balances.insert(to.clone(), sum);
        f.applied.insert(key.clone(), amount);
        Ok(amount)
    }

    async fn refund_balance(
        &self,
        account: &WalletAccountRef,
        key: &IdempotencyKey,
    ) -> Result<Money, PortError> {
        let mut f = lock(&self.funds);
        if let Some(done) = f.applied.get(key) {
            return Ok(*done);
        }
        let amount = f
            .balances
            .insert(account.clone(), Money::ZERO)
            .unwrap_or(Money::ZERO);
        let total = f.refunded.get(account).copied().unwrap_or(Money::ZERO);
        let total = total
            .checked_add(amount)
            .map_err(|e| PortError::Rejected(e.to_string()))?;
        f.refunded.insert(account.clone(), total);
        f.applied.insert(key.clone(), amount);
        Ok(amount)
    }
}

#[async_trait]
impl BalanceSource for MemoryFunds {
    async fn balance(&self, account: &WalletAccountRef) -> Result<BalanceView, PortError> {
        Ok(BalanceView {
            balance: self.balance_of(account),
            as_of: self.clock.now(),
        })
    }
}
