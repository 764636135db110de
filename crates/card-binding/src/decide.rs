//! Pure decisions of the card service: given what was read and the time,
//! what a card event, an activation, an unbinding does to bindings.
//!
//! No I/O and no clock here: the services gather the records, call these,
//! and commit the returned [`CardChanges`] with their audit records.

use chrono::{DateTime, Utc};
use citycard_core::{AuditOutcome, AuditRecord, Principal};

use crate::changes::CardChanges;
use crate::error::BindingError;
use crate::model::{
    Binding, BindingId, BindingState, Card, CardId, CardStatus, PassSerial, RemovalReason,
};

/// The audit subject of a card.
pub(crate) fn subject_card(id: &CardId) -> String {
    format!("card:{id}")
}

/// The audit subject of a binding.
pub(crate) fn subject_binding(id: &BindingId) -> String {
    format!("binding:{id}")
}

/// The state a settled binding takes from its card's status.
pub fn state_for(status: &CardStatus) -> BindingState {
    match status {
        CardStatus::Active => BindingState::Active,
        CardStatus::ReportedLost | CardStatus::Frozen => BindingState::Suspended,
        _ => BindingState::Removed,
    }
}

/// A settled binding brought in line with `card`, the end of its card's
/// replacement chain (its own card when not replaced); `None` when nothing
/// changes. `other_live` is the live binding of `card` on the same account,
/// if any: a binding that would move onto it is superseded (removed).
pub fn follow(
    binding: &Binding,
    card: &Card,
    other_live: Option<&BindingId>,
    now: DateTime<Utc>,
) -> Option<Binding> {
    if !matches!(
        binding.state,
        BindingState::Active | BindingState::Suspended
    ) {
        return None;
    }
    let moved = card.id != binding.card;
    let state = state_for(&card.status);
    if !moved && state == binding.state {
        return None;
    }
    let mut next = binding.clone();
    if moved && other_live.is_some_and(|other| *other != binding.id) {
        next.removal = Some(RemovalReason::CardReplaced);
        next.consent.withdrawn_at = Some(now);
        next.state = BindingState::Removed;
    } else {
        if moved {
            next.card = card.id.clone();
            next.pass_serial = PassSerial::derive(&binding.id, &card.id);
        }
        if state == BindingState::Removed {
            next.removal = Some(RemovalReason::CardCancelled);
            next.consent.withdrawn_at = Some(now);
        }
        next.state = state;
    }
    next.updated_at = now;
    Some(next)
}

/// The audit record of a binding that followed its card.
pub(crate) fn follow_audit(binding: &Binding, now: DateTime<Utc>) -> AuditRecord {
    AuditRecord::new(
        now,
        Principal::System,
        "binding.follow_card",
        subject_binding(&binding.id),
        AuditOutcome::Succeeded,
    )
    .with("state", binding.state.code())
    .with("card", binding.card.as_str())
}

/// Every settled binding of a card moved to follow the card's new state
/// (`card` as it will be stored, or the new card on replacement), and the
/// pending ones expected unchanged (their activation follows the card).
pub fn card_event(
    bindings: &[Binding],
    card: &Card,
    now: DateTime<Utc>,
    changes: &mut CardChanges,
    audit: &mut Vec<AuditRecord>,
) -> Result<Vec<BindingId>, BindingError> {
    let mut changed = Vec::new();
    for b in bindings {
        match b.state {
            BindingState::Pending => {
                changes.expect_binding(b);
            }
            BindingState::Active | BindingState::Suspended => {
                if let Some(next) = follow(b, card, None, now) {
                    audit.push(follow_audit(&next, now));
                    changes.move_binding(b, next)?;
                    changed.push(b.id.clone());
                } else {
                    changes.expect_binding(b);
                }
            }
            BindingState::Removed => {}
        }
    }
    Ok(changed)
}

/// Step 6 of binding: a pending binding whose pass the wallet confirmed
/// becomes active, then follows its card (the end of its replacement chain)
/// if the card changed while the flow ran. Returns the binding as decided
/// and whether it followed the card.
pub fn activate(
    pending: &Binding,
    card: &Card,
    other_live: Option<&BindingId>,
    now: DateTime<Utc>,
) -> (Binding, bool) {
    let mut active = pending.clone();
    active.state = BindingState::Active;
    active.updated_at = now;
    match follow(&active, card, other_live, now) {
        Some(followed) => (followed, true),
        None => (active, false),
    }
}

/// A binding removed (unbound, or compensated after a failed wallet write).
pub fn remove(binding: &Binding, reason: RemovalReason, now: DateTime<Utc>) -> Binding {
    let mut next = binding.clone();
    next.state = BindingState::Removed;
    next.removal = Some(reason);
    next.consent.withdrawn_at = Some(now);
    next.updated_at = now;
    next
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::{
        BlindIndex, CardKind, CardNumber, CardRules, ConsentInput, ConsentRecord, DataCategory,
        WalletAccountRef,
    };
    use citycard_core::{PersonId, Platform, PlatformAccountId};
    use proptest::prelude::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + s, 0).unwrap()
    }

    fn card(id: &str, status: CardStatus) -> Card {
        Card {
            id: CardId::parse(id).unwrap(),
            number: CardNumber::parse("3301000000000001", &CardRules::embedded().number_format)
                .unwrap(),
            kind: CardKind::Standard,
            holder: PersonId::parse("psn-a").unwrap(),
            holder_index: BlindIndex::new("idx".to_owned()),
            wallet_account: WalletAccountRef::parse("wac-1").unwrap(),
            services: Default::default(),
            platforms: Default::default(),
            status,
            replaces: None,
            issued_at: at(0),
            version: 3,
        }
    }

    fn binding(id: &str, card: &str, state: BindingState) -> Binding {
        let id = BindingId::parse(id).unwrap();
        let card = CardId::parse(card).unwrap();
        Binding {
            pass_serial: PassSerial::derive(&id, &card),
            id,
            card,
            holder: PersonId::parse("psn-a").unwrap(),
            platform: Platform::Alipay,
            account: PlatformAccountId::parse("pac-a").unwrap(),
            state,
            consent: ConsentRecord {
                recipient: Platform::Alipay,
                given: ConsentInput {
                    purpose: "p".into(),
                    data_categories: [DataCategory::Balance].into(),
                    text_version: "v".into(),
                    channel: "c".into(),
                },
                given_at: at(0),
                actor: Principal::System,
                guardian: None,
                withdrawn_at: None,
            },
            removal: None,
            created_at: at(0),
            updated_at: at(0),
            version: 1,
        }
    }

    fn status() -> impl Strategy<Value = CardStatus> {
        prop_oneof![
            Just(CardStatus::Active),
            Just(CardStatus::ReportedLost),
            Just(CardStatus::Frozen),
            Just(CardStatus::Cancelled),
        ]
    }

    fn state() -> impl Strategy<Value = BindingState> {
        prop_oneof![
            Just(BindingState::Pending),
            Just(BindingState::Active),
            Just(BindingState::Suspended),
            Just(BindingState::Removed),
        ]
    }

    proptest! {
        /// Whatever a card event meets, the bindings it changes only move forward,
        /// every settled binding ends in the card's state, and pending ones are
        /// only expected (their activation follows the card).
        #[test]
        fn card_events_move_bindings_forward_only(
            states in proptest::collection::vec(state(), 0..6),
            to in status(),
        ) {
            let bindings: Vec<Binding> = states
                .iter()
                .enumerate()
                .map(|(i, s)| binding(&format!("bnd-{i}"), "card-1", *s))
                .collect();
            let card = card("card-1", to.clone());
            let mut changes = CardChanges::new();
            let mut audit = Vec::new();
            let changed = card_event(&bindings, &card, at(5), &mut changes, &mut audit).unwrap();
            prop_assert_eq!(changed.len(), changes.bindings.len());
            prop_assert_eq!(audit.len(), changes.bindings.len());
            for after in &changes.bindings {
                let before = bindings.iter().find(|b| b.id == after.id).unwrap();
                prop_assert!(before.state.can_become(after.state));
                prop_assert_eq!(after.state, state_for(&to));
                prop_assert_eq!(after.version, before.version);
            }
            let pending = bindings.iter().filter(|b| b.state == BindingState::Pending).count();
            prop_assert!(changes.binding_versions.len() >= pending);
        }
    }

    #[test]
    fn a_binding_activated_on_a_replaced_card_moves_with_a_new_serial() {
        let pending = binding("bnd-1", "card-1", BindingState::Pending);
        let new = card("card-2", CardStatus::Active);
        let (b, followed) = activate(&pending, &new, None, at(9));
        assert!(followed);
        assert_eq!(b.state, BindingState::Active);
        assert_eq!(b.card, new.id);
        assert_eq!(b.pass_serial, PassSerial::derive(&b.id, &new.id));
        // Another live binding of the new card on the account: superseded.
        let other = BindingId::parse("bnd-9").unwrap();
        let (b, _) = activate(&pending, &new, Some(&other), at(9));
        assert_eq!(b.state, BindingState::Removed);
        assert_eq!(b.removal, Some(RemovalReason::CardReplaced));
        // The same card, still active: plain activation.
        let (b, followed) = activate(&pending, &card("card-1", CardStatus::Active), None, at(9));
        assert!(!followed);
        assert_eq!(b.state, BindingState::Active);
    }

    #[test]
    fn a_change_set_refuses_a_backward_move() {
        let removed = binding("bnd-1", "card-1", BindingState::Removed);
        let mut revived = removed.clone();
        revived.state = BindingState::Active;
        assert!(CardChanges::new().move_binding(&removed, revived).is_err());
        let active = binding("bnd-2", "card-1", BindingState::Active);
        let mut pending = active.clone();
        pending.state = BindingState::Pending;
        assert!(CardChanges::new().move_binding(&active, pending).is_err());
    }
}
