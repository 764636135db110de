//! Card lifecycle on the issuer's side (issuing is in [`super::issue`]): report lost / found, freeze,
//! replace, cancel, and reconciling a card's bindings with its state.
//!
//! A card event is one commit: the card's new status, every settled binding
//! moved to follow it, their audit records and the idempotency outcome. The
//! wallet passes are synced after the commit; a replay syncs them again
//! (idempotent), so a crash between the commit and the wallet is finished by
//! the retry.

use citycard_core::{
    AuditOutcome, AuditRecord, CoreChanges, DelegationScope, IdempotencyKey, OperatorRole,
    PersonId, Principal, principal_scope,
};
use tracing::info;

use super::{CAS_ATTEMPTS, CardService, Decided, KeyRef, is_conflict};
use crate::changes::{CardChanges, stored};
use crate::decide::{self, subject_card};
use crate::error::BindingError;
use crate::model::{BindingId, BindingState, Card, CardId, CardStatus};
use crate::service::{CardChange, ReplaceCard};

impl CardService {
    /// The card with this id, for its holder, a delegate with a viewing scope, or an operator.
    pub async fn card(&self, principal: &Principal, id: &CardId) -> Result<Card, BindingError> {
        let card = self.load_card(id).await?;
        if !(self.back_office(principal, &[OperatorRole::CardDesk, OperatorRole::Auditor])
            || self
                .acts_for(principal, &card.holder, DelegationScope::ViewBalance)
                .await?)
        {
            return Err(self
                .deny(
                    principal,
                    "card.view",
                    subject_card(id),
                    "not the cardholder",
                )
                .await);
        }
        self.audit_read(principal, "card.view", subject_card(id))
            .await?;
        Ok(card)
    }

    /// The cards of a person, for the person, a delegate with a viewing scope, or an operator.
    pub async fn cards_of(
        &self,
        principal: &Principal,
        holder: &PersonId,
    ) -> Result<Vec<Card>, BindingError> {
        if !(self.back_office(principal, &[OperatorRole::CardDesk, OperatorRole::Auditor])
            || self
                .acts_for(principal, holder, DelegationScope::ViewBalance)
                .await?)
        {
            return Err(self
                .deny(
                    principal,
                    "card.list",
                    format!("person:{holder}"),
                    "not the cardholder",
                )
                .await);
        }
        self.audit_read(principal, "card.list", format!("person:{holder}"))
            .await?;
        Ok(self.ports.cards.by_holder(holder).await?)
    }

    /// Reports a card lost (挂失): its bindings are suspended. Holder or operator.
    pub async fn report_lost(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        card: &CardId,
    ) -> Result<CardChange, BindingError> {
        self.change_status(
            principal,
            key,
            card,
            "card.report_lost",
            true,
            |s| matches!(s, CardStatus::Active | CardStatus::Frozen),
            CardStatus::ReportedLost,
        )
        .await
    }

    /// Reports a lost card found (解挂): its bindings resume. Holder or operator.
    pub async fn report_found(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        card: &CardId,
    ) -> Result<CardChange, BindingError> {
        self.change_status(
            principal,
            key,
            card,
            "card.report_found",
            true,
            |s| matches!(s, CardStatus::ReportedLost),
            CardStatus::Active,
        )
        .await
    }

    /// Freezes a card (issuer only): its bindings are suspended.
    pub async fn freeze(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        card: &CardId,
    ) -> Result<CardChange, BindingError> {
        self.change_status(
            principal,
            key,
            card,
            "card.freeze",
            false,
            |s| matches!(s, CardStatus::Active),
            CardStatus::Frozen,
        )
        .await
    }

    /// Unfreezes a card (issuer only): its bindings resume.
    pub async fn unfreeze(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        card: &CardId,
    ) -> Result<CardChange, BindingError> {
        self.change_status(
            principal,
            key,
            card,
            "card.unfreeze",
            false,
            |s| matches!(s, CardStatus::Frozen),
            CardStatus::Active,
        )
        .await
    }

    async fn authorize_card_op(
        &self,
        principal: &Principal,
        card: &Card,
        action: &str,
        holder_allowed: bool,
    ) -> Result<(), BindingError> {
        let allowed = match principal {
            Principal::Operator { .. } | Principal::System => {
                self.back_office(principal, &[OperatorRole::CardDesk])
            }
            Principal::Cardholder { person } => holder_allowed && *person == card.holder,
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(self
                .deny(
                    principal,
                    action,
                    subject_card(&card.id),
                    if holder_allowed {
                        "only the cardholder or the issuer may do this"
                    } else {
                        "only the issuer may do this"
                    },
                )
                .await)
        }
    }

    /// A card event decided: the card (and new card) with their bindings, in one change set.
    fn decide_card_event(
        &self,
        changed_card: Card,
        new_card: Option<Card>,
        bindings: &[crate::model::Binding],
        audit: AuditRecord,
        funds_moved: Option<citycard_core::Money>,
    ) -> Result<Decided<CardChange>, BindingError> {
        let now = self.now();
        let mut changes = CardChanges::new();
        let mut records = vec![audit];
        let follows = new_card.as_ref().unwrap_or(&changed_card);
        let changed = decide::card_event(bindings, follows, now, &mut changes, &mut records)?;
        changes.update_card(changed_card.clone());
        if let Some(new) = &new_card {
            changes.insert_card(new.clone());
        }
        Ok(Decided {
            changes,
            core: CoreChanges {
                audit: records,
                outcomes: Vec::new(),
                events: Vec::new(),
            },
            value: CardChange {
                card: stored(&changed_card),
                new_card,
                bindings_changed: changed,
                passes_unsynced: Vec::new(),
                funds_moved,
            },
        })
    }

    #[allow(clippy::too_many_arguments)]
    #[tracing::instrument(skip_all, fields(action = %action, card = %card_id, key = %key))]
    async fn change_status(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        card_id: &CardId,
        action: &'static str,
        holder_allowed: bool,
        from: fn(&CardStatus) -> bool,
        to: CardStatus,
    ) -> Result<CardChange, BindingError> {
        let key = KeyRef::new(
            principal_scope(action, principal),
            key,
            &(card_id, principal),
        )?;
        let to = &to;
        let (change, _) = self
            .idempotent(&key, || async move {
                let mut card = self.load_card(card_id).await?;
                self.authorize_card_op(principal, &card, action, holder_allowed)
                    .await?;
                if !from(&card.status) {
                    return Err(BindingError::InvalidState {
                        operation: action.trim_start_matches("card.").replace('_', " "),
                        state: format!("the card is {}", card.status.code()),
                    });
                }
                let bindings = self.ports.bindings.by_card(card_id).await?;
                card.status = to.clone();
                let audit = AuditRecord::new(
                    self.now(),
                    principal.clone(),
                    action,
                    subject_card(card_id),
                    AuditOutcome::Succeeded,
                )
                .with("status", card.status.code());
                self.decide_card_event(card, None, &bindings, audit, None)
            })
            .await?;
        let change = self.sync_after_event(change).await?;
        info!(card = %card_id, action, changed = change.bindings_changed.len(), "card status changed");
        Ok(change)
    }

    /// Pushes the state of a card event's bindings to their passes (idempotent),
    /// filling in the ones the wallet did not confirm.
    async fn sync_after_event(&self, mut change: CardChange) -> Result<CardChange, BindingError> {
        let on = change.new_card.as_ref().unwrap_or(&change.card).id.clone();
        let mut ids: Vec<BindingId> = change.bindings_changed.clone();
        for b in self.ports.bindings.by_card(&on).await? {
            if matches!(b.state, BindingState::Active | BindingState::Suspended)
                && !ids.contains(&b.id)
            {
                ids.push(b.id);
            }
        }
        change.passes_unsynced = self.sync_passes(&ids).await?;
        Ok(change)
    }

    /// Syncs each binding's current state to its pass; returns those not confirmed.
    async fn sync_passes(&self, ids: &[BindingId]) -> Result<Vec<BindingId>, BindingError> {
        let mut unsynced = Vec::new();
        for id in ids {
            let b = self.load_binding(id).await?;
            if b.state == BindingState::Pending {
                continue;
            }
            let card = self.load_card(&b.card).await?;
            if !self.sync_pass(&b, &card).await {
                unsynced.push(b.id);
            }
        }
        Ok(unsynced)
    }

    /// Replaces a card (补卡, issuer only): a new card with a new number; bindings and balance move to it.
    #[tracing::instrument(skip_all, fields(card = %card_id, key = %key))]
    pub async fn replace_card(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        card_id: &CardId,
        request: &ReplaceCard,
    ) -> Result<CardChange, BindingError> {
        let number = self.parse_card_number(&request.new_number)?;
        let card_digest = self.card_digest(&number).await?;
        let money_key = key;
        let key = KeyRef::new(
            principal_scope("card.replace", principal),
            key,
            &(
                card_id,
                principal,
                &card_digest,
                &request.new_wallet_account,
            ),
        )?;
        let number = &number;
        // Saga order: check, move the money (idempotent on the key), then swap the
        // cards and move the bindings in one commit. A retry repeats the steps safely.
        let (change, _) = self
            .idempotent(&key, || async move {
                let mut old = self.load_card(card_id).await?;
                self.authorize_card_op(principal, &old, "card.replace", false)
                    .await?;
                if old.status.is_final() {
                    return Err(BindingError::InvalidState {
                        operation: "replace the card".into(),
                        state: format!("the card is {}", old.status.code()),
                    });
                }
                if self.ports.cards.by_number(number).await?.is_some() {
                    return Err(BindingError::InvalidState {
                        operation: "replace the card".into(),
                        state: "a card with the new number exists".into(),
                    });
                }
                let moved = self
                    .ports
                    .funds
                    .move_balance(&old.wallet_account, &request.new_wallet_account, money_key)
                    .await
                    .map_err(|e| e.retry_later("card funds"))?;
                let bindings = self.ports.bindings.by_card(card_id).await?;
                let now = self.now();
                let new = Card {
                    id: CardId::generate(&*self.ports.ids),
                    number: number.clone(),
                    kind: old.kind.clone(),
                    holder: old.holder.clone(),
                    holder_index: old.holder_index.clone(),
                    wallet_account: request.new_wallet_account.clone(),
                    services: old.services.clone(),
                    platforms: old.platforms.clone(),
                    status: CardStatus::Active,
                    replaces: Some(old.id.clone()),
                    issued_at: now,
                    version: 0,
                };
                old.status = CardStatus::Replaced { by: new.id.clone() };
                let audit = AuditRecord::new(
                    now,
                    principal.clone(),
                    "card.replace",
                    subject_card(card_id),
                    AuditOutcome::Succeeded,
                )
                .with("new_card", new.id.as_str())
                .with("balance_moved", moved.to_string());
                self.decide_card_event(old, Some(new), &bindings, audit, Some(moved))
            })
            .await?;
        let change = self.sync_after_event(change).await?;
        if let Some(new) = &change.new_card {
            info!(card = %card_id, new_card = %new.id, "card replaced");
        }
        Ok(change)
    }

    /// Cancels a card (注销, issuer only): bindings removed, balance refunded.
    #[tracing::instrument(skip_all, fields(card = %card_id, key = %key))]
    pub async fn cancel_card(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        card_id: &CardId,
    ) -> Result<CardChange, BindingError> {
        let money_key = key;
        let key = KeyRef::new(
            principal_scope("card.cancel", principal),
            key,
            &(card_id, principal),
        )?;
        // Saga order: refund (idempotent on the key; the ledger closes the account),
        // then cancel the card and remove its bindings in one commit.
        let (change, _) = self
            .idempotent(&key, || async move {
                let mut card = self.load_card(card_id).await?;
                self.authorize_card_op(principal, &card, "card.cancel", false)
                    .await?;
                if card.status.is_final() {
                    return Err(BindingError::InvalidState {
                        operation: "cancel the card".into(),
                        state: format!("the card is {}", card.status.code()),
                    });
                }
                let refunded = self
                    .ports
                    .funds
                    .refund_balance(&card.wallet_account, money_key)
                    .await
                    .map_err(|e| e.retry_later("card funds"))?;
                let bindings = self.ports.bindings.by_card(card_id).await?;
                card.status = CardStatus::Cancelled;
                let audit = AuditRecord::new(
                    self.now(),
                    principal.clone(),
                    "card.cancel",
                    subject_card(card_id),
                    AuditOutcome::Succeeded,
                )
                .with("refunded", refunded.to_string());
                self.decide_card_event(card, None, &bindings, audit, Some(refunded))
            })
            .await?;
        // Removed bindings' passes are removed with the others' sync.
        let change = self.sync_after_event(change).await?;
        info!(card = %card_id, "card cancelled");
        Ok(change)
    }

    /// Applies a card's current state to its bindings and passes again (issuer or system),
    /// e.g. after a card event whose propagation failed half-way.
    pub async fn reconcile_card(
        &self,
        principal: &Principal,
        card_id: &CardId,
    ) -> Result<CardChange, BindingError> {
        let card = self.load_card(card_id).await?;
        self.authorize_card_op(principal, &card, "card.reconcile", false)
            .await?;
        let changed = self.follow_all(card_id).await?;
        let mut ids = changed.clone();
        for b in self.ports.bindings.by_card(card_id).await? {
            if b.state != BindingState::Pending && !ids.contains(&b.id) {
                ids.push(b.id);
            }
        }
        let unsynced = self.sync_passes(&ids).await?;
        Ok(CardChange {
            card,
            new_card: None,
            bindings_changed: changed,
            passes_unsynced: unsynced,
            funds_moved: None,
        })
    }

    /// Brings every settled binding of a card in line with its card (following
    /// replacements), in one commit; returns the bindings that changed.
    pub(crate) async fn follow_all(
        &self,
        card_id: &CardId,
    ) -> Result<Vec<BindingId>, BindingError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let bindings = self.ports.bindings.by_card(card_id).await?;
            let mut changes = CardChanges::new();
            let mut audit = Vec::new();
            let mut changed = Vec::new();
            let now = self.now();
            for b in bindings
                .iter()
                .filter(|b| matches!(b.state, BindingState::Active | BindingState::Suspended))
            {
                let card = self.load_card(&b.card).await?;
                let current = self.current_card(card).await?;
                let other = self
                    .ports
                    .bindings
                    .live_for(&current.id, &b.platform, &b.account)
                    .await?
                    .map(|o| o.id);
                changes.expect_card(&current);
                if let Some(next) = decide::follow(b, &current, other.as_ref(), now) {
                    audit.push(decide::follow_audit(&next, now));
                    changes.move_binding(b, next)?;
                    changed.push(b.id.clone());
                }
            }
            if changed.is_empty() {
                return Ok(changed);
            }
            let core = CoreChanges {
                audit,
                outcomes: Vec::new(),
                events: Vec::new(),
            };
            match self.commit(&changes, &core).await {
                Ok(()) => return Ok(changed),
                Err(e) if is_conflict(&e) && attempt < CAS_ATTEMPTS => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
