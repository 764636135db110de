//! The card registry in memory: cards, bindings (with mismatch records) and
//! delegations behind one lock, so a [`CardChanges`] commits atomically.
//!
//! [`MemoryCardRegistry`] holds the records and implements
//! [`CardChangeStore`]; [`MemoryCardStore`], [`MemoryBindingStore`] and
//! [`MemoryDelegationStore`] are handles on a registry (each `new()` makes its
//! own; [`MemoryCardRegistry::cards`] and friends share one). Audit records
//! and idempotency outcomes go to the registry's [`MemoryCore`] (its own
//! unless given one with [`MemoryCardRegistry::with_core`]).
//!
//! A commit applies its rows one by one, checking each against the state
//! left by the ones before, and undoes them in reverse when one is refused:
//! no domain rule lives here, only the stores' preconditions.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use citycard_core::{
    CoreChanges, DelegationId, MemoryCore, PersonId, Platform, PlatformAccountId, StoreError,
};

use crate::changes::{CardChanges, Mismatch};
use crate::model::{Binding, BindingId, BindingState, Card, CardId, CardNumber, Delegation};
use crate::ports::{BindingStore, CardChangeStore, CardStore, DelegationStore};

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

type AccountKey = (Platform, PlatformAccountId);

fn account_key(b: &Binding) -> AccountKey {
    (b.platform.clone(), b.account.clone())
}

// Records live in vectors (insertion order); the maps hold positions, so
// growing a map never moves whole records.
#[derive(Debug, Default)]
struct Registry {
    cards: Vec<Card>,
    card_by_id: HashMap<CardId, usize>,
    card_by_number: HashMap<CardNumber, usize>,
    cards_by_holder: HashMap<PersonId, Vec<usize>>,
    bindings: Vec<Binding>,
    binding_by_id: HashMap<BindingId, usize>,
    bindings_by_card: HashMap<CardId, Vec<usize>>,
    bindings_by_account: HashMap<AccountKey, Vec<usize>>,
    pending: BTreeSet<usize>,
    mismatches: HashMap<AccountKey, Vec<DateTime<Utc>>>,
    delegations: Vec<Delegation>,
    delegation_by_id: HashMap<DelegationId, usize>,
}

/// One applied row, and how to take it back.
enum Undo {
    CardInserted,
    CardUpdated(usize, Card),
    BindingInserted,
    BindingUpdated(usize, Binding),
    Mismatch(AccountKey, DateTime<Utc>),
    DelegationInserted,
    Revoked(usize),
}

impl Registry {
    /// The live binding of a card on an account (a card has few bindings: a scan of its list).
    fn live_index(
        &self,
        card: &CardId,
        platform: &Platform,
        account: &PlatformAccountId,
    ) -> Option<usize> {
        self.bindings_by_card.get(card)?.iter().copied().find(|i| {
            let b = &self.bindings[*i];
            b.state.is_live() && b.platform == *platform && b.account == *account
        })
    }

    fn listed_bindings(&self, list: Option<&Vec<usize>>) -> Vec<Binding> {
        list.map(|l| l.iter().map(|i| self.bindings[*i].clone()).collect())
            .unwrap_or_default()
    }

    fn card_at(&self, id: &CardId, version: u64) -> Result<usize, StoreError> {
        let index = *self
            .card_by_id
            .get(id)
            .ok_or_else(|| conflict(format!("card {id} does not exist")))?;
        if self.cards[index].version != version {
            return Err(conflict(format!("card {id} was changed concurrently")));
        }
        Ok(index)
    }

    fn binding_at(&self, id: &BindingId, version: u64) -> Result<usize, StoreError> {
        let index = *self
            .binding_by_id
            .get(id)
            .ok_or_else(|| conflict(format!("binding {id} does not exist")))?;
        if self.bindings[index].version != version {
            return Err(conflict(format!("binding {id} was changed concurrently")));
        }
        Ok(index)
    }

    fn insert_card(&mut self, card: &Card) -> Result<Undo, StoreError> {
        if self.card_by_id.contains_key(&card.id) || self.card_by_number.contains_key(&card.number)
        {
            return Err(conflict(format!("card {} already exists", card.id)));
        }
        let index = self.cards.len();
        self.cards.push(card.clone());
        self.card_by_number.insert(card.number.clone(), index);
        self.card_by_id.insert(card.id.clone(), index);
        index_add(&mut self.cards_by_holder, card.holder.clone(), index);
        Ok(Undo::CardInserted)
    }

    fn update_card(&mut self, card: &Card) -> Result<Undo, StoreError> {
        let index = self.card_at(&card.id, card.version)?;
        if self.cards[index].number != card.number {
            return Err(conflict("a card's number cannot change"));
        }
        let mut next = card.clone();
        next.version += 1;
        Ok(Undo::CardUpdated(index, self.put_card(index, next)))
    }

    /// Writes a card at `index`, keeping the holder index; returns the old record.
    fn put_card(&mut self, index: usize, card: Card) -> Card {
        let old = std::mem::replace(&mut self.cards[index], card);
        let holder = self.cards[index].holder.clone();
        if old.holder != holder {
            index_remove(&mut self.cards_by_holder, &old.holder, index);
            index_add(&mut self.cards_by_holder, holder, index);
        }
        old
    }

    fn insert_binding(&mut self, binding: &Binding) -> Result<Undo, StoreError> {
        if self.binding_by_id.contains_key(&binding.id) {
            return Err(conflict(format!("binding {} already exists", binding.id)));
        }
        if binding.state.is_live()
            && self
                .live_index(&binding.card, &binding.platform, &binding.account)
                .is_some()
        {
            return Err(conflict(
                "the card already has a live binding on this account",
            ));
        }
        let index = self.bindings.len();
        if binding.state == BindingState::Pending {
            self.pending.insert(index);
        }
        self.binding_by_id.insert(binding.id.clone(), index);
        index_add(&mut self.bindings_by_card, binding.card.clone(), index);
        index_add(&mut self.bindings_by_account, account_key(binding), index);
        self.bindings.push(binding.clone());
        Ok(Undo::BindingInserted)
    }

    fn update_binding(&mut self, binding: &Binding) -> Result<Undo, StoreError> {
        let index = self.binding_at(&binding.id, binding.version)?;
        if binding.state.is_live()
            && let Some(other) = self.live_index(&binding.card, &binding.platform, &binding.account)
            && other != index
        {
            return Err(conflict(
                "the card already has a live binding on this account",
            ));
        }
        let mut next = binding.clone();
        next.version += 1;
        Ok(Undo::BindingUpdated(index, self.put_binding(index, next)))
    }

    /// Writes a binding at `index`, keeping every index; returns the old record.
    fn put_binding(&mut self, index: usize, binding: Binding) -> Binding {
        if binding.state == BindingState::Pending {
            self.pending.insert(index);
        } else {
            self.pending.remove(&index);
        }
        let old = std::mem::replace(&mut self.bindings[index], binding);
        let new = &self.bindings[index];
        let (new_card, new_account) = (new.card.clone(), account_key(new));
        if old.card != new_card {
            index_remove(&mut self.bindings_by_card, &old.card, index);
            index_add(&mut self.bindings_by_card, new_card, index);
        }
        let old_account = account_key(&old);
        if old_account != new_account {
            index_remove(&mut self.bindings_by_account, &old_account, index);
            index_add(&mut self.bindings_by_account, new_account, index);
        }
        old
    }

    fn record_mismatch(&mut self, m: &Mismatch) -> Undo {
        let key = (m.platform.clone(), m.account.clone());
        let times = self.mismatches.entry(key.clone()).or_default();
        let pos = times.partition_point(|t| *t <= m.at);
        times.insert(pos, m.at);
        Undo::Mismatch(key, m.at)
    }

    fn insert_delegation(&mut self, grant: &Delegation) -> Result<Undo, StoreError> {
        if self.delegation_by_id.contains_key(&grant.id) {
            return Err(conflict(format!("delegation {} already exists", grant.id)));
        }
        self.delegation_by_id
            .insert(grant.id.clone(), self.delegations.len());
        self.delegations.push(grant.clone());
        Ok(Undo::DelegationInserted)
    }

    fn revoke(&mut self, id: &DelegationId, at: DateTime<Utc>) -> Result<Option<Undo>, StoreError> {
        let index = *self
            .delegation_by_id
            .get(id)
            .ok_or_else(|| conflict(format!("delegation {id} does not exist")))?;
        let grant = &mut self.delegations[index];
        if grant.revoked_at.is_some() {
            return Ok(None);
        }
        grant.revoked_at = Some(at);
        Ok(Some(Undo::Revoked(index)))
    }

    fn undo(&mut self, step: Undo) {
        match step {
            Undo::CardInserted => {
                if let Some(card) = self.cards.pop() {
                    let index = self.cards.len();
                    self.card_by_id.remove(&card.id);
                    self.card_by_number.remove(&card.number);
                    index_remove(&mut self.cards_by_holder, &card.holder, index);
                }
            }
            Undo::CardUpdated(index, old) => {
                self.put_card(index, old);
            }
            Undo::BindingInserted => {
                if let Some(b) = self.bindings.pop() {
                    let index = self.bindings.len();
                    self.pending.remove(&index);
                    self.binding_by_id.remove(&b.id);
                    index_remove(&mut self.bindings_by_card, &b.card, index);
                    index_remove(&mut self.bindings_by_account, &account_key(&b), index);
                }
            }
            Undo::BindingUpdated(index, old) => {
                self.put_binding(index, old);
            }
            Undo::Mismatch(key, at) => {
                if let Some(times) = self.mismatches.get_mut(&key)
                    && let Some(pos) = times.iter().position(|t| *t == at)
                {
                    times.remove(pos);
                }
            }
            Undo::DelegationInserted => {
                if let Some(g) = self.delegations.pop() {
                    self.delegation_by_id.remove(&g.id);
                }
            }
            Undo::Revoked(index) => self.delegations[index].revoked_at = None,
        }
    }

    /// Applies every row of `changes`, or none (undoing what was applied).
    fn apply(&mut self, changes: &CardChanges) -> Result<Vec<Undo>, StoreError> {
        let mut done = Vec::new();
        match self.apply_each(changes, &mut done) {
            Ok(()) => Ok(done),
            Err(e) => {
                self.rollback(done);
                Err(e)
            }
        }
    }

    fn rollback(&mut self, done: Vec<Undo>) {
        for step in done.into_iter().rev() {
            self.undo(step);
        }
    }

    fn apply_each(&mut self, c: &CardChanges, done: &mut Vec<Undo>) -> Result<(), StoreError> {
        for (id, version) in &c.card_versions {
            self.card_at(id, *version)?;
        }
        for (id, version) in &c.binding_versions {
            self.binding_at(id, *version)?;
        }
        for card in &c.cards {
            done.push(self.update_card(card)?);
        }
        for card in &c.new_cards {
            done.push(self.insert_card(card)?);
        }
        // Changed bindings first: one leaving the live set frees its slot for a new one.
        for b in &c.bindings {
            done.push(self.update_binding(b)?);
        }
        for b in &c.new_bindings {
            done.push(self.insert_binding(b)?);
        }
        for m in &c.mismatches {
            done.push(self.record_mismatch(m));
        }
        for g in &c.new_delegations {
            done.push(self.insert_delegation(g)?);
        }
        for (id, at) in &c.revocations {
            if let Some(step) = self.revoke(id, *at)? {
                done.push(step);
            }
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<Registry>,
    core: MemoryCore,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn commit(&self, changes: &CardChanges, core: &CoreChanges) -> Result<(), StoreError> {
        let mut state = self.lock();
        let done = state.apply(changes)?;
        if let Err(e) = self.core.commit(core) {
            state.rollback(done);
            return Err(e);
        }
        Ok(())
    }
}

/// The card registry in memory (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct MemoryCardRegistry {
    shared: Arc<Shared>,
}

impl MemoryCardRegistry {
    /// An empty registry with its own core stores.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty registry whose commits write audit records and idempotency
    /// outcomes to `core` (the facade's shared memory core).
    pub fn with_core(core: MemoryCore) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::default(),
                core,
            }),
        }
    }

    /// The core stores commits write to.
    pub fn core(&self) -> &MemoryCore {
        &self.shared.core
    }

    /// The cards of this registry.
    pub fn cards(&self) -> MemoryCardStore {
        MemoryCardStore {
            shared: self.shared.clone(),
        }
    }

    /// The bindings of this registry.
    pub fn bindings(&self) -> MemoryBindingStore {
        MemoryBindingStore {
            shared: self.shared.clone(),
        }
    }

    /// The delegations of this registry.
    pub fn delegations(&self) -> MemoryDelegationStore {
        MemoryDelegationStore {
            shared: self.shared.clone(),
        }
    }
}

#[async_trait]
impl CardChangeStore for MemoryCardRegistry {
    async fn commit(&self, changes: &CardChanges, core: &CoreChanges) -> Result<(), StoreError> {
        self.shared.commit(changes, core)
    }
}

/// Cards in memory (a handle on a [`MemoryCardRegistry`]).
#[derive(Debug, Clone, Default)]
pub struct MemoryCardStore {
    shared: Arc<Shared>,
}

impl MemoryCardStore {
    /// An empty registry's cards.
    pub fn new() -> Self {
        Self::default()
    }
}

fn one<F: FnOnce(&mut CardChanges)>(f: F) -> CardChanges {
    let mut c = CardChanges::new();
    f(&mut c);
    c
}

#[async_trait]
impl CardStore for MemoryCardStore {
    async fn insert(&self, card: &Card) -> Result<(), StoreError> {
        let c = one(|c| {
            c.insert_card(card.clone());
        });
        self.shared.commit(&c, &CoreChanges::default())
    }

    async fn get(&self, id: &CardId) -> Result<Option<Card>, StoreError> {
        let s = self.shared.lock();
        Ok(s.card_by_id.get(id).map(|i| s.cards[*i].clone()))
    }

    async fn by_number(&self, number: &CardNumber) -> Result<Option<Card>, StoreError> {
        let s = self.shared.lock();
        Ok(s.card_by_number.get(number).map(|i| s.cards[*i].clone()))
    }

    async fn by_numbers(&self, numbers: &[CardNumber]) -> Result<Vec<Card>, StoreError> {
        let s = self.shared.lock();
        let mut seen = std::collections::HashSet::new();
        Ok(numbers
            .iter()
            .filter_map(|n| s.card_by_number.get(n))
            .filter(|i| seen.insert(**i))
            .map(|i| s.cards[*i].clone())
            .collect())
    }

    async fn by_holder(&self, holder: &PersonId) -> Result<Vec<Card>, StoreError> {
        let s = self.shared.lock();
        Ok(s.cards_by_holder
            .get(holder)
            .map(|list| list.iter().map(|i| s.cards[*i].clone()).collect())
            .unwrap_or_default())
    }

    async fn update(&self, card: &Card) -> Result<Card, StoreError> {
        let c = one(|c| {
            c.update_card(card.clone());
        });
        self.shared.commit(&c, &CoreChanges::default())?;
        Ok(crate::changes::stored(card))
    }

    async fn replace(&self, old: &Card, new: &Card) -> Result<Card, StoreError> {
        let c = one(|c| {
            c.update_card(old.clone()).insert_card(new.clone());
        });
        self.shared.commit(&c, &CoreChanges::default())?;
        Ok(crate::changes::stored(old))
    }
}

/// Bindings and mismatch records in memory (a handle on a [`MemoryCardRegistry`]).
#[derive(Debug, Clone, Default)]
pub struct MemoryBindingStore {
    shared: Arc<Shared>,
}

impl MemoryBindingStore {
    /// An empty registry's bindings.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl BindingStore for MemoryBindingStore {
    async fn insert(&self, binding: &Binding) -> Result<(), StoreError> {
        let c = one(|c| {
            c.insert_binding(binding.clone());
        });
        self.shared.commit(&c, &CoreChanges::default())
    }

    async fn get(&self, id: &BindingId) -> Result<Option<Binding>, StoreError> {
        let s = self.shared.lock();
        Ok(s.binding_by_id.get(id).map(|i| s.bindings[*i].clone()))
    }

    async fn live_for(
        &self,
        card: &CardId,
        platform: &Platform,
        account: &PlatformAccountId,
    ) -> Result<Option<Binding>, StoreError> {
        let s = self.shared.lock();
        Ok(s.live_index(card, platform, account)
            .map(|i| s.bindings[i].clone()))
    }

    async fn by_card(&self, card: &CardId) -> Result<Vec<Binding>, StoreError> {
        let s = self.shared.lock();
        Ok(s.listed_bindings(s.bindings_by_card.get(card)))
    }

    async fn by_account(
        &self,
        platform: &Platform,
        account: &PlatformAccountId,
    ) -> Result<Vec<Binding>, StoreError> {
        let s = self.shared.lock();
        Ok(s.listed_bindings(
            s.bindings_by_account
                .get(&(platform.clone(), account.clone())),
        ))
    }

    async fn pending(&self, limit: usize) -> Result<Vec<Binding>, StoreError> {
        let s = self.shared.lock();
        Ok(s.pending
            .iter()
            .take(limit)
            .map(|i| s.bindings[*i].clone())
            .collect())
    }

    async fn update(&self, binding: &Binding) -> Result<Binding, StoreError> {
        let c = one(|c| {
            c.bindings.push(binding.clone());
        });
        self.shared.commit(&c, &CoreChanges::default())?;
        Ok(crate::changes::stored(binding))
    }

    async fn record_mismatch(
        &self,
        platform: &Platform,
        account: &PlatformAccountId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let c = one(|c| {
            c.record_mismatch(platform.clone(), account.clone(), at);
        });
        self.shared.commit(&c, &CoreChanges::default())
    }

    async fn mismatches_since(
        &self,
        platform: &Platform,
        account: &PlatformAccountId,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let s = self.shared.lock();
        Ok(s.mismatches
            .get(&(platform.clone(), account.clone()))
            .map(|v| v.iter().copied().filter(|t| *t >= since).collect())
            .unwrap_or_default())
    }
}

/// Delegations in memory (a handle on a [`MemoryCardRegistry`]).
#[derive(Debug, Clone, Default)]
pub struct MemoryDelegationStore {
    shared: Arc<Shared>,
}

impl MemoryDelegationStore {
    /// An empty registry's delegations.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl DelegationStore for MemoryDelegationStore {
    async fn insert(&self, delegation: &Delegation) -> Result<(), StoreError> {
        let c = one(|c| {
            c.insert_delegation(delegation.clone());
        });
        self.shared.commit(&c, &CoreChanges::default())
    }

    async fn get(&self, id: &DelegationId) -> Result<Option<Delegation>, StoreError> {
        let s = self.shared.lock();
        Ok(s.delegation_by_id
            .get(id)
            .map(|i| s.delegations[*i].clone()))
    }

    async fn revoke(
        &self,
        id: &DelegationId,
        at: DateTime<Utc>,
    ) -> Result<Option<Delegation>, StoreError> {
        let mut s = self.shared.lock();
        let Some(index) = s.delegation_by_id.get(id).copied() else {
            return Ok(None);
        };
        let _ = s.revoke(id, at)?;
        Ok(Some(s.delegations[index].clone()))
    }

    async fn for_cardholder(&self, cardholder: &PersonId) -> Result<Vec<Delegation>, StoreError> {
        Ok(self
            .shared
            .lock()
            .delegations
            .iter()
            .filter(|g| g.cardholder == *cardholder)
            .cloned()
            .collect())
    }
}
