//! The card registry's change set: what one decision writes, and what it relied on.
//!
//! Every state change of the card service is gather → pure decision → one
//! commit. The decision returns a [`CardChanges`] (cards, bindings, mismatch
//! records and grants to write, plus the versions of the records it read and
//! relied on) together with the core records of the operation
//! ([`CoreChanges`](citycard_core::CoreChanges): audit records and the
//! idempotency outcome). A [`CardChangeStore`](crate::CardChangeStore)
//! writes both in one transaction, or nothing:
//!
//! - a new card clashes on id or number, a new or changed binding would make
//!   a second live binding of a card on one platform account, a changed or
//!   expected record is not at the version the decision read → the whole
//!   commit is refused as [`StoreError::Conflict`](citycard_core::StoreError),
//!   and the service reads again and decides again (a bounded number of times);
//! - otherwise every changed record is stored with its version bumped by one.
//!
//! The builder methods carry the invariants, so no decision can express a
//! backward move: a binding's state only moves along
//! [`BindingState::can_become`], a revocation keeps the first instant.

use chrono::{DateTime, Utc};
use citycard_core::{DelegationId, Platform, PlatformAccountId};

use crate::error::BindingError;
use crate::model::{Binding, BindingId, Card, CardId, Delegation};

/// A mismatched bind attempt by a platform account (for the rate limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The platform.
    pub platform: Platform,
    /// The account that typed details that do not match.
    pub account: PlatformAccountId,
    /// When.
    pub at: DateTime<Utc>,
}

/// The rows one decision writes to the card registry, with its preconditions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardChanges {
    /// New cards: id and number must be free.
    pub new_cards: Vec<Card>,
    /// Changed cards, each carrying the version it was read at.
    pub cards: Vec<Card>,
    /// Cards read and relied on, unchanged: (id, version read).
    pub card_versions: Vec<(CardId, u64)>,
    /// New bindings: id free, at most one live per card and account.
    pub new_bindings: Vec<Binding>,
    /// Changed bindings, each carrying the version it was read at.
    pub bindings: Vec<Binding>,
    /// Bindings read and relied on, unchanged: (id, version read).
    pub binding_versions: Vec<(BindingId, u64)>,
    /// Mismatched attempts to record.
    pub mismatches: Vec<Mismatch>,
    /// New delegation grants.
    pub new_delegations: Vec<Delegation>,
    /// Revocations: the grant must exist; an earlier revocation is kept.
    pub revocations: Vec<(DelegationId, DateTime<Utc>)>,
}

impl CardChanges {
    /// No changes.
    pub fn new() -> CardChanges {
        CardChanges::default()
    }

    /// True when there is nothing to write or check.
    pub fn is_empty(&self) -> bool {
        self.new_cards.is_empty()
            && self.cards.is_empty()
            && self.card_versions.is_empty()
            && self.new_bindings.is_empty()
            && self.bindings.is_empty()
            && self.binding_versions.is_empty()
            && self.mismatches.is_empty()
            && self.new_delegations.is_empty()
            && self.revocations.is_empty()
    }

    /// Stores a new card.
    pub fn insert_card(&mut self, card: Card) -> &mut Self {
        self.new_cards.push(card);
        self
    }

    /// Writes `card` (read at `card.version`) if it is still at that version.
    pub fn update_card(&mut self, card: Card) -> &mut Self {
        self.cards.push(card);
        self
    }

    /// Relies on `card` staying at the version read.
    pub fn expect_card(&mut self, card: &Card) -> &mut Self {
        self.card_versions.push((card.id.clone(), card.version));
        self
    }

    /// Stores a new binding.
    pub fn insert_binding(&mut self, binding: Binding) -> &mut Self {
        self.new_bindings.push(binding);
        self
    }

    /// Moves `before` (as read) to `after`: the state may stay or move forward
    /// only ([`BindingState::can_become`](crate::BindingState::can_become)).
    pub fn move_binding(
        &mut self,
        before: &Binding,
        after: Binding,
    ) -> Result<&mut Self, BindingError> {
        if before.id != after.id || before.version != after.version {
            return Err(BindingError::InvalidState {
                operation: "change a binding".into(),
                state: "the change is not of the binding read".into(),
            });
        }
        if before.state != after.state && !before.state.can_become(after.state) {
            return Err(BindingError::InvalidState {
                operation: format!("move a binding to {}", after.state.code()),
                state: format!("the binding is {}", before.state.code()),
            });
        }
        self.bindings.push(after);
        Ok(self)
    }

    /// Relies on `binding` staying at the version read.
    pub fn expect_binding(&mut self, binding: &Binding) -> &mut Self {
        self.binding_versions
            .push((binding.id.clone(), binding.version));
        self
    }

    /// Records a mismatched attempt.
    pub fn record_mismatch(
        &mut self,
        platform: Platform,
        account: PlatformAccountId,
        at: DateTime<Utc>,
    ) -> &mut Self {
        self.mismatches.push(Mismatch {
            platform,
            account,
            at,
        });
        self
    }

    /// Stores a new grant.
    pub fn insert_delegation(&mut self, delegation: Delegation) -> &mut Self {
        self.new_delegations.push(delegation);
        self
    }

    /// Revokes a grant at `at` (an earlier revocation stays).
    pub fn revoke_delegation(&mut self, id: DelegationId, at: DateTime<Utc>) -> &mut Self {
        self.revocations.push((id, at));
        self
    }

    /// Appends `other`'s changes after this one's.
    pub fn merge(&mut self, other: CardChanges) {
        self.new_cards.extend(other.new_cards);
        self.cards.extend(other.cards);
        self.card_versions.extend(other.card_versions);
        self.new_bindings.extend(other.new_bindings);
        self.bindings.extend(other.bindings);
        self.binding_versions.extend(other.binding_versions);
        self.mismatches.extend(other.mismatches);
        self.new_delegations.extend(other.new_delegations);
        self.revocations.extend(other.revocations);
    }
}

/// A record as the store keeps it after a commit: version bumped by one.
pub(crate) fn stored<T: Clone + Versioned>(record: &T) -> T {
    let mut next = record.clone();
    next.bump();
    next
}

/// Records with an optimistic-concurrency version.
pub(crate) trait Versioned {
    fn bump(&mut self);
}

impl Versioned for Card {
    fn bump(&mut self) {
        self.version += 1;
    }
}

impl Versioned for Binding {
    fn bump(&mut self) {
        self.version += 1;
    }
}
