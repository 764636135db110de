//! The memory adapters of the identity ports: persons, platform accounts and
//! a key provider, for tests, examples and the demo.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use chrono::NaiveDate;
use citycard_core::{CoreChanges, MemoryCore, PersonId, Platform, PlatformAccountId, StoreError};

use crate::person::{Person, PlatformAccount};
use crate::ports::{KeyProvider, PersonStore, PersonWrite, PlatformAccountStore};
use crate::vault::{BlindIndex, KeyId, SecretKey, VaultError};

/// Persons in memory (core records go to its [`MemoryCore`]).
#[derive(Debug, Default)]
pub struct MemoryPersonStore {
    persons: Mutex<BTreeMap<PersonId, Person>>,
    core: MemoryCore,
}

impl MemoryPersonStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that writes core records (audit, idempotency outcomes) to `core`.
    pub fn with_core(core: MemoryCore) -> Self {
        Self {
            persons: Mutex::default(),
            core,
        }
    }
}

/// Whether `person` may be stored beside `persons` (its blind index is its own).
fn index_free(persons: &BTreeMap<PersonId, Person>, person: &Person) -> Result<(), StoreError> {
    if persons
        .values()
        .any(|p| p.id != person.id && p.id_number_index == person.id_number_index)
    {
        return Err(StoreError::Conflict(
            "a person with this id number exists".into(),
        ));
    }
    Ok(())
}

#[async_trait]
impl PersonStore for MemoryPersonStore {
    async fn commit(&self, person: &PersonWrite, core: &CoreChanges) -> Result<(), StoreError> {
        let mut persons = self.persons.lock().unwrap_or_else(|e| e.into_inner());
        match person {
            PersonWrite::Insert(p) => {
                if persons.contains_key(&p.id) {
                    return Err(StoreError::Conflict(format!("person {} exists", p.id)));
                }
                index_free(&persons, p)?;
            }
            PersonWrite::Update(p) => {
                if !persons.contains_key(&p.id) {
                    return Err(StoreError::Conflict(format!("person {} is gone", p.id)));
                }
                index_free(&persons, p)?;
            }
            PersonWrite::Unchanged => {}
        }
        self.core.check(core)?;
        if let PersonWrite::Insert(p) | PersonWrite::Update(p) = person {
            persons.insert(p.id.clone(), p.clone());
        }
        self.core.commit(core)
    }

    async fn commit_all(
        &self,
        writes: &[PersonWrite],
        core: &CoreChanges,
    ) -> Result<(), StoreError> {
        let mut persons = self.persons.lock().unwrap_or_else(|e| e.into_inner());
        // Checked against a copy with the earlier writes applied, then swapped in.
        let mut next = persons.clone();
        for write in writes {
            match write {
                PersonWrite::Insert(p) => {
                    if next.contains_key(&p.id) {
                        return Err(StoreError::Conflict(format!("person {} exists", p.id)));
                    }
                    index_free(&next, p)?;
                    next.insert(p.id.clone(), p.clone());
                }
                PersonWrite::Update(p) => {
                    if !next.contains_key(&p.id) {
                        return Err(StoreError::Conflict(format!("person {} is gone", p.id)));
                    }
                    index_free(&next, p)?;
                    next.insert(p.id.clone(), p.clone());
                }
                PersonWrite::Unchanged => {}
            }
        }
        self.core.check(core)?;
        *persons = next;
        self.core.commit(core)
    }

    async fn insert(&self, person: &Person) -> Result<(), StoreError> {
        let mut persons = self.persons.lock().unwrap_or_else(|e| e.into_inner());
        if persons.contains_key(&person.id) {
            return Err(StoreError::Conflict(format!("person {} exists", person.id)));
        }
        if persons
            .values()
            .any(|p| p.id_number_index == person.id_number_index)
        {
            return Err(StoreError::Conflict(
                "a person with this id number exists".into(),
            ));
        }
        persons.insert(person.id.clone(), person.clone());
        Ok(())
    }

    async fn update(&self, person: &Person) -> Result<bool, StoreError> {
        let mut persons = self.persons.lock().unwrap_or_else(|e| e.into_inner());
        if persons
            .values()
            .any(|p| p.id != person.id && p.id_number_index == person.id_number_index)
        {
            return Err(StoreError::Conflict(
                "a person with this id number exists".into(),
            ));
        }
        match persons.get_mut(&person.id) {
            Some(slot) => {
                *slot = person.clone();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn get(&self, id: &PersonId) -> Result<Option<Person>, StoreError> {
        let persons = self.persons.lock().unwrap_or_else(|e| e.into_inner());
        Ok(persons.get(id).cloned())
    }

    async fn find_by_id_number_index(
        &self,
        index: &BlindIndex,
    ) -> Result<Option<Person>, StoreError> {
        let persons = self.persons.lock().unwrap_or_else(|e| e.into_inner());
        Ok(persons
            .values()
            .find(|p| p.id_number_index == *index)
            .cloned())
    }

    async fn list(
        &self,
        after: Option<&PersonId>,
        limit: usize,
    ) -> Result<Vec<Person>, StoreError> {
        let persons = self.persons.lock().unwrap_or_else(|e| e.into_inner());
        Ok(persons
            .values()
            .filter(|p| after.is_none_or(|a| p.id > *a))
            .take(limit)
            .cloned()
            .collect())
    }
}

/// Platform accounts in memory.
#[derive(Debug, Default)]
pub struct MemoryPlatformAccountStore {
    accounts: Mutex<BTreeMap<PlatformAccountId, PlatformAccount>>,
    failures: Mutex<HashMap<(PlatformAccountId, NaiveDate), u32>>,
}

impl MemoryPlatformAccountStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl PlatformAccountStore for MemoryPlatformAccountStore {
    async fn insert(&self, account: &PlatformAccount) -> Result<(), StoreError> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        if accounts.contains_key(&account.id) {
            return Err(StoreError::Conflict(format!(
                "platform account {} exists",
                account.id
            )));
        }
        if accounts
            .values()
            .any(|a| a.platform == account.platform && a.external_id == account.external_id)
        {
            return Err(StoreError::Conflict(format!(
                "an account with this {} id exists",
                account.platform
            )));
        }
        accounts.insert(account.id.clone(), account.clone());
        Ok(())
    }

    async fn update(&self, account: &PlatformAccount) -> Result<bool, StoreError> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        if accounts.values().any(|a| {
            a.id != account.id
                && a.platform == account.platform
                && a.external_id == account.external_id
        }) {
            return Err(StoreError::Conflict(format!(
                "an account with this {} id exists",
                account.platform
            )));
        }
        match accounts.get_mut(&account.id) {
            Some(slot) => {
                *slot = account.clone();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn get(&self, id: &PlatformAccountId) -> Result<Option<PlatformAccount>, StoreError> {
        let accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        Ok(accounts.get(id).cloned())
    }

    async fn find_external(
        &self,
        platform: &Platform,
        external_id: &str,
    ) -> Result<Option<PlatformAccount>, StoreError> {
        let accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        Ok(accounts
            .values()
            .find(|a| a.platform == *platform && a.external_id == external_id)
            .cloned())
    }

    async fn list_for_person(&self, person: &PersonId) -> Result<Vec<PlatformAccount>, StoreError> {
        let accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        Ok(accounts
            .values()
            .filter(|a| a.person.as_ref() == Some(person))
            .cloned()
            .collect())
    }

    async fn reserve_attempt(
        &self,
        id: &PlatformAccountId,
        day: NaiveDate,
        limit: u32,
    ) -> Result<Option<u32>, StoreError> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let count = failures.entry((id.clone(), day)).or_default();
        if *count >= limit {
            return Ok(None);
        }
        *count += 1;
        Ok(Some(*count))
    }

    async fn release_attempt(
        &self,
        id: &PlatformAccountId,
        day: NaiveDate,
    ) -> Result<(), StoreError> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = failures.get_mut(&(id.clone(), day)) {
            *count = count.saturating_sub(1);
        }
        Ok(())
    }

    async fn failed_attempts(
        &self,
        id: &PlatformAccountId,
        day: NaiveDate,
    ) -> Result<u32, StoreError> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        Ok(failures.get(&(id.clone(), day)).copied().unwrap_or(0))
    }
}

#[derive(Default)]
struct MemoryKeys {
    current: Option<KeyId>,
    keys: BTreeMap<KeyId, SecretKey>,
    index: Option<SecretKey>,
}

/// A key provider in memory, for tests and the demo.
#[derive(Clone, Default)]
pub struct MemoryKeyProvider {
    inner: Arc<RwLock<MemoryKeys>>,
}

impl fmt::Debug for MemoryKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("MemoryKeyProvider")
            .field("current", &inner.current)
            .field("keys", &inner.keys.len())
            .finish()
    }
}

impl MemoryKeyProvider {
    /// A provider with one current encryption key and an index key.
    pub fn new(current: KeyId, key: SecretKey, index_key: SecretKey) -> Self {
        let provider = Self::default();
        {
            let mut inner = provider.inner.write().unwrap_or_else(|e| e.into_inner());
            inner.keys.insert(current.clone(), key);
            inner.current = Some(current);
            inner.index = Some(index_key);
        }
        provider
    }

    /// A provider with random keys; the encryption key is `key-1`.
    pub fn random() -> Result<Self, VaultError> {
        let id = KeyId::parse("key-1").map_err(|_| VaultError::Randomness)?;
        Ok(Self::new(
            id,
            SecretKey::generate()?,
            SecretKey::generate()?,
        ))
    }

    /// Adds a key and makes it current (old keys stay available for reading).
    pub fn rotate(&self, id: KeyId, key: SecretKey) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.keys.insert(id.clone(), key);
        inner.current = Some(id);
    }

    /// Forgets a key (envelopes under it no longer open).
    pub fn retire(&self, id: &KeyId) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.keys.remove(id);
    }
}

#[async_trait]
impl KeyProvider for MemoryKeyProvider {
    async fn current_key_id(&self) -> Result<KeyId, VaultError> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.current.clone().ok_or(VaultError::NoCurrentKey)
    }

    async fn key(&self, id: &KeyId) -> Result<SecretKey, VaultError> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner
            .keys
            .get(id)
            .cloned()
            .ok_or_else(|| VaultError::UnknownKey { key_id: id.clone() })
    }

    async fn blind_index_key(&self) -> Result<SecretKey, VaultError> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.index.clone().ok_or(VaultError::NoCurrentKey)
    }
}
