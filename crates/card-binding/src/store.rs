//! Storage ports (cards, bindings, delegations) and their in-memory implementations.
//!
//! Updates are compare-and-swap on the record's `version`: an update whose
//! `version` is not the stored one fails with [`StoreError::Conflict`], and a
//! successful update returns the record with its version bumped by one.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use citycard_core::{DelegationId, PersonId, Platform, PlatformAccountId, StoreError};

use crate::model::{Binding, BindingId, Card, CardId, CardNumber, Delegation};

/// The card registry.
#[async_trait]
pub trait CardStore: Send + Sync {
    /// Stores a new card; a clash on id or number is a conflict.
    async fn insert(&self, card: &Card) -> Result<(), StoreError>;
    /// The card with this id.
    async fn get(&self, id: &CardId) -> Result<Option<Card>, StoreError>;
    /// The card with this printed number.
    async fn by_number(&self, number: &CardNumber) -> Result<Option<Card>, StoreError>;
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

fn conflict(what: impl Into<String>) -> StoreError {
    StoreError::Conflict(what.into())
}

/// Pushes `index` into a per-key list kept in insertion order.
fn index_add<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<usize>>, key: K, index: usize) {
    let list = map.entry(key).or_default();
    let pos = list.partition_point(|i| *i < index);
    list.insert(pos, index);
}

fn index_remove<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<usize>>, key: &K, index: usize) {
    if let Some(list) = map.get_mut(key) {
        list.retain(|i| *i != index);
        if list.is_empty() {
            map.remove(key);
        }
    }
}

// Records live in a vector (insertion order); the maps hold positions, so
// growing a map never moves whole records.
#[derive(Debug, Default)]
struct Cards {
    all: Vec<Card>,
    by_id: HashMap<CardId, usize>,
    by_number: HashMap<CardNumber, usize>,
    by_holder: HashMap<PersonId, Vec<usize>>,
}

impl Cards {
    fn check_update(&self, card: &Card) -> Result<usize, StoreError> {
        let index = *self
            .by_id
            .get(&card.id)
            .ok_or_else(|| conflict(format!("card {} does not exist", card.id)))?;
        let stored = &self.all[index];
        if stored.version != card.version {
            return Err(conflict(format!(
                "card {} was changed concurrently",
                card.id
            )));
        }
        if stored.number != card.number {
            return Err(conflict("a card's number cannot change"));
        }
        Ok(index)
    }

    fn check_insert(&self, card: &Card) -> Result<(), StoreError> {
        if self.by_id.contains_key(&card.id) || self.by_number.contains_key(&card.number) {
            return Err(conflict(format!("card {} already exists", card.id)));
        }
        Ok(())
    }

    fn put_new(&mut self, card: &Card) {
        let index = self.all.len();
        self.all.push(card.clone());
        self.by_number.insert(card.number.clone(), index);
        self.by_id.insert(card.id.clone(), index);
        index_add(&mut self.by_holder, card.holder.clone(), index);
    }

    fn put_update(&mut self, index: usize, card: &Card) -> Card {
        let mut stored = card.clone();
        stored.version += 1;
        let old_holder = std::mem::replace(&mut self.all[index], stored.clone()).holder;
        if old_holder != stored.holder {
            index_remove(&mut self.by_holder, &old_holder, index);
            index_add(&mut self.by_holder, stored.holder.clone(), index);
        }
        stored
    }
}

/// Cards in memory.
#[derive(Debug, Default)]
pub struct MemoryCardStore {
    cards: Mutex<Cards>,
}

impl MemoryCardStore {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cards> {
        self.cards.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl CardStore for MemoryCardStore {
    async fn insert(&self, card: &Card) -> Result<(), StoreError> {
        let mut cards = self.lock();
        cards.check_insert(card)?;
        cards.put_new(card);
        Ok(())
    }

    async fn get(&self, id: &CardId) -> Result<Option<Card>, StoreError> {
        let cards = self.lock();
        Ok(cards.by_id.get(id).map(|i| cards.all[*i].clone()))
    }

    async fn by_number(&self, number: &CardNumber) -> Result<Option<Card>, StoreError> {
        let cards = self.lock();
        Ok(cards.by_number.get(number).map(|i| cards.all[*i].clone()))
    }

    async fn by_holder(&self, holder: &PersonId) -> Result<Vec<Card>, StoreError> {
        let cards = self.lock();
        Ok(cards
            .by_holder
            .get(holder)
            .map(|list| list.iter().map(|i| cards.all[*i].clone()).collect())
            .unwrap_or_default())
    }

    async fn update(&self, card: &Card) -> Result<Card, StoreError> {
        let mut cards = self.lock();
        let index = cards.check_update(card)?;
        Ok(cards.put_update(index, card))
    }

    async fn replace(&self, old: &Card, new: &Card) -> Result<Card, StoreError> {
        let mut cards = self.lock();
        let index = cards.check_update(old)?;
        cards.check_insert(new)?;
        cards.put_new(new);
        Ok(cards.put_update(index, old))
    }
}

type AccountKey = (Platform, PlatformAccountId);

fn account_key(b: &Binding) -> AccountKey {
    (b.platform.clone(), b.account.clone())
}

#[derive(Debug, Default)]
struct Bindings {
    all: Vec<Binding>,
    by_id: HashMap<BindingId, usize>,
    by_card: HashMap<CardId, Vec<usize>>,
    by_account: HashMap<AccountKey, Vec<usize>>,
    pending: std::collections::BTreeSet<usize>,
    mismatches: HashMap<AccountKey, Vec<DateTime<Utc>>>,
}

impl Bindings {
    /// The live binding of a card on an account (a card has few bindings: a scan of its list).
    fn live_index(
        &self,
        card: &CardId,
        platform: &Platform,
        account: &PlatformAccountId,
    ) -> Option<usize> {
        self.by_card.get(card)?.iter().copied().find(|i| {
            let b = &self.all[*i];
            b.state.is_live() && b.platform == *platform && b.account == *account
        })
    }

    fn listed(&self, list: Option<&Vec<usize>>) -> Vec<Binding> {
        list.map(|l| l.iter().map(|i| self.all[*i].clone()).collect())
            .unwrap_or_default()
    }
}

/// Bindings in memory.
#[derive(Debug, Default)]
pub struct MemoryBindingStore {
    bindings: Mutex<Bindings>,
}

impl MemoryBindingStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bindings> {
        self.bindings.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl BindingStore for MemoryBindingStore {
    async fn insert(&self, binding: &Binding) -> Result<(), StoreError> {
        let mut s = self.lock();
        if s.by_id.contains_key(&binding.id) {
            return Err(conflict(format!("binding {} already exists", binding.id)));
        }
        if binding.state.is_live()
            && s.live_index(&binding.card, &binding.platform, &binding.account)
                .is_some()
        {
            return Err(conflict(
                "the card already has a live binding on this account",
            ));
        }
        let index = s.all.len();
        if binding.state == crate::model::BindingState::Pending {
            s.pending.insert(index);
        }
        s.by_id.insert(binding.id.clone(), index);
        index_add(&mut s.by_card, binding.card.clone(), index);
        index_add(&mut s.by_account, account_key(binding), index);
        s.all.push(binding.clone());
        Ok(())
    }

    async fn get(&self, id: &BindingId) -> Result<Option<Binding>, StoreError> {
        let s = self.lock();
        Ok(s.by_id.get(id).map(|i| s.all[*i].clone()))
    }

    async fn live_for(
        &self,
        card: &CardId,
        platform: &Platform,
        account: &PlatformAccountId,
    ) -> Result<Option<Binding>, StoreError> {
        let s = self.lock();
        Ok(s.live_index(card, platform, account)
            .map(|i| s.all[i].clone()))
    }

    async fn by_card(&self, card: &CardId) -> Result<Vec<Binding>, StoreError> {
        let s = self.lock();
        Ok(s.listed(s.by_card.get(card)))
    }

    async fn by_account(
        &self,
        platform: &Platform,
        account: &PlatformAccountId,
    ) -> Result<Vec<Binding>, StoreError> {
        let s = self.lock();
        Ok(s.listed(s.by_account.get(&(platform.clone(), account.clone()))))
    }

    async fn pending(&self, limit: usize) -> Result<Vec<Binding>, StoreError> {
        let s = self.lock();
        Ok(s.pending
            .iter()
            .take(limit)
            .map(|i| s.all[*i].clone())
            .collect())
    }

    async fn update(&self, binding: &Binding) -> Result<Binding, StoreError> {
        let mut s = self.lock();
        let index = *s
            .by_id
            .get(&binding.id)
            .ok_or_else(|| conflict(format!("binding {} does not exist", binding.id)))?;
        let stored = &s.all[index];
        if stored.version != binding.version {
            return Err(conflict(format!(
                "binding {} was changed concurrently",
                binding.id
            )));
        }
        let old_account = account_key(stored);
        let old_card = stored.card.clone();
        if binding.state.is_live()
            && let Some(other) = s.live_index(&binding.card, &binding.platform, &binding.account)
            && other != index
        {
            return Err(conflict(
                "the card already has a live binding on this account",
            ));
        }
        if binding.state == crate::model::BindingState::Pending {
            s.pending.insert(index);
        } else {
            s.pending.remove(&index);
        }
        if old_card != binding.card {
            index_remove(&mut s.by_card, &old_card, index);
            index_add(&mut s.by_card, binding.card.clone(), index);
        }
        let new_account = account_key(binding);
        if old_account != new_account {
            index_remove(&mut s.by_account, &old_account, index);
            index_add(&mut s.by_account, new_account, index);
        }
        let mut next = binding.clone();
        next.version += 1;
        s.all[index] = next.clone();
        Ok(next)
    }

    async fn record_mismatch(
        &self,
        platform: &Platform,
        account: &PlatformAccountId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut s = self.lock();
        let times = s
            .mismatches
            .entry((platform.clone(), account.clone()))
            .or_default();
        let pos = times.partition_point(|t| *t <= at);
        times.insert(pos, at);
        Ok(())
    }

    async fn mismatches_since(
        &self,
        platform: &Platform,
        account: &PlatformAccountId,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let s = self.lock();
        Ok(s.mismatches
            .get(&(platform.clone(), account.clone()))
            .map(|v| v.iter().copied().filter(|t| *t >= since).collect())
            .unwrap_or_default())
    }
}

/// Delegations in memory.
#[derive(Debug, Default)]
pub struct MemoryDelegationStore {
    grants: Mutex<Vec<Delegation>>,
}

impl MemoryDelegationStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Delegation>> {
        self.grants.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl DelegationStore for MemoryDelegationStore {
    async fn insert(&self, delegation: &Delegation) -> Result<(), StoreError> {
        let mut grants = self.lock();
        if grants.iter().any(|g| g.id == delegation.id) {
            return Err(conflict(format!(
                "delegation {} already exists",
                delegation.id
            )));
        }
        grants.push(delegation.clone());
        Ok(())
    }

    async fn get(&self, id: &DelegationId) -> Result<Option<Delegation>, StoreError> {
        Ok(self.lock().iter().find(|g| g.id == *id).cloned())
    }

    async fn revoke(
        &self,
        id: &DelegationId,
        at: DateTime<Utc>,
    ) -> Result<Option<Delegation>, StoreError> {
        let mut grants = self.lock();
        Ok(grants.iter_mut().find(|g| g.id == *id).map(|g| {
            if g.revoked_at.is_none() {
                g.revoked_at = Some(at);
            }
            g.clone()
        }))
    }

    async fn for_cardholder(&self, cardholder: &PersonId) -> Result<Vec<Delegation>, StoreError> {
        Ok(self
            .lock()
            .iter()
            .filter(|g| g.cardholder == *cardholder)
            .cloned()
            .collect())
    }
}
