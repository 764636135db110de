//! The card's e-wallet (电子钱包): top-up, balance, statement and refund.
//!
//! Money lives in the ledger; this service decides who may move it and
//! keeps the platform wallet passes in step. Every movement is idempotent
//! with a key (the ledger transfer id is derived from it) and authorised for
//! the acting principal:
//!
//! | principal | balance, statement | top-up | refund |
//! |---|---|---|---|
//! | the system | yes | yes | yes |
//! | operator with the finance role | yes | yes | yes |
//! | operator with the auditor role | yes | no | no |
//! | other operators | no | no | no |
//! | the cardholder | yes | yes | no |
//! | a delegate under a live grant | with `ViewBalance` | with `TopUp` | no |
//! | a platform with a live (active) binding of the card | balance only | from its own clearing account | no |
//!
//! A platform's right rests on the card's live bindings, not on the card
//! rules' list of platforms it may be bound on. Whoever may not view the
//! balance learns nothing of it from a top-up: the receipt carries no
//! balance and the over-cap refusal names only the cap. Every refusal is
//! audited, and so is every read; a retried movement the ledger already
//! holds is audited as a replay.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use citycard_binding::{
    BalanceView, BindingState, BindingStore, Card, CardId, CardService, CardStatus,
};
use citycard_core::{
    AuditLog, AuditOutcome, AuditRecord, Clock, CoreChanges, DelegationScope, EventKind,
    GrantVerifier, IdempotencyKey, Money, NewEvent, OperatorRole, OperatorRoles, Platform,
    Principal, StoreError,
};
use citycard_ledger::{
    AccountId, ChangeSet, CreateTransferResult, Ledger, LedgerError, NewTransfer, NormalSide,
    Reference, Statement, TransferId,
};
use serde::{Deserialize, Serialize};

use crate::accounts::Accounts;
use crate::error::CityCardError;
use crate::glue::money::{codes, wallet_of};
use crate::unit::{CityPlan, UnitOfWork};

/// What a top-up or refund did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletReceipt {
    /// The card.
    pub card: CardId,
    /// The ledger transfer.
    pub transfer: TransferId,
    /// The amount moved.
    pub amount: Money,
    /// The wallet balance right after, when the principal may view it.
    pub balance: Option<Money>,
}

/// What a principal wants to do with a wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    Balance,
    Statement,
    TopUp,
    Refund,
}

impl Use {
    fn scope(self) -> DelegationScope {
        match self {
            Use::Balance | Use::Statement => DelegationScope::ViewBalance,
            Use::TopUp | Use::Refund => DelegationScope::TopUp,
        }
    }

    fn roles(self) -> &'static [OperatorRole] {
        match self {
            Use::Balance | Use::Statement => &[OperatorRole::Finance, OperatorRole::Auditor],
            Use::TopUp | Use::Refund => &[OperatorRole::Finance],
        }
    }
}

/// The e-wallet service.
#[derive(Clone)]
pub struct WalletService {
    ledger: Arc<Ledger>,
    cards: Arc<CardService>,
    bindings: Arc<dyn BindingStore>,
    grants: Arc<dyn GrantVerifier>,
    roles: Arc<OperatorRoles>,
    audit: Arc<dyn AuditLog>,
    clock: Arc<dyn Clock>,
    unit: Arc<dyn UnitOfWork>,
}

impl std::fmt::Debug for WalletService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WalletService")
    }
}

impl WalletService {
    /// The service over the ledger, the card service, the bindings (a
    /// platform's rights rest on them), the delegation grants and the
    /// operators' roles.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ledger: Arc<Ledger>,
        cards: Arc<CardService>,
        bindings: Arc<dyn BindingStore>,
        grants: Arc<dyn GrantVerifier>,
        roles: Arc<OperatorRoles>,
        audit: Arc<dyn AuditLog>,
        clock: Arc<dyn Clock>,
        unit: Arc<dyn UnitOfWork>,
    ) -> Self {
        Self {
            ledger,
            cards,
            bindings,
            grants,
            roles,
            audit,
            clock,
            unit,
        }
    }

    /// Whether `principal` may do `what` with `card`'s wallet (see the module docs).
    async fn allowed(
        &self,
        principal: &Principal,
        card: &Card,
        what: Use,
    ) -> Result<bool, CityCardError> {
        Ok(match principal {
            Principal::System | Principal::Operator { .. } => {
                self.roles.allows(principal, what.roles())
            }
            Principal::Platform { platform } => {
                matches!(what, Use::Balance | Use::TopUp)
                    && self
                        .bindings
                        .by_card(&card.id)
                        .await?
                        .iter()
                        .any(|b| b.platform == *platform && b.state == BindingState::Active)
            }
            _ => {
                what != Use::Refund
                    && self
                        .grants
                        .verify(principal, &card.holder, what.scope(), self.clock.now())
                        .await?
            }
        })
    }

    async fn record(
        &self,
        principal: &Principal,
        action: &'static str,
        card: &CardId,
        outcome: AuditOutcome,
    ) -> Result<(), CityCardError> {
        self.audit
            .append(AuditRecord::new(
                self.clock.now(),
                principal.clone(),
                action,
                format!("card:{card}"),
                outcome,
            ))
            .await?;
        Ok(())
    }

    async fn card_for(
        &self,
        principal: &Principal,
        card: &CardId,
        what: Use,
        action: &'static str,
    ) -> Result<(Card, AccountId), CityCardError> {
        let card = self.cards.card(&Principal::System, card).await?;
        if !self.allowed(principal, &card, what).await? {
            self.record(principal, action, &card.id, AuditOutcome::Denied)
                .await?;
            return Err(CityCardError::Denied {
                actor: principal.to_string(),
                action,
            });
        }
        let account = wallet_of(&card.wallet_account).map_err(CityCardError::Invalid)?;
        Ok((card, account))
    }

    /// The wallet balance (what can be spent now).
    #[tracing::instrument(name = "wallet.balance", skip_all, fields(card = %card))]
    pub async fn balance(
        &self,
        principal: &Principal,
        card: &CardId,
    ) -> Result<Money, CityCardError> {
        let (card, account) = self
            .card_for(principal, card, Use::Balance, "wallet.balance")
            .await?;
        let balance = self
            .ledger
            .account(&Principal::System, account)
            .await?
            .available();
        self.record(
            principal,
            "wallet.balance",
            &card.id,
            AuditOutcome::Succeeded,
        )
        .await?;
        Ok(balance)
    }

    /// The statement of a card's wallet over `[from, to)`.
    #[tracing::instrument(name = "wallet.statement", skip_all, fields(card = %card, %from, %to))]
    pub async fn statement(
        &self,
        principal: &Principal,
        card: &CardId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Statement, CityCardError> {
        let (card, account) = self
            .card_for(principal, card, Use::Statement, "wallet.statement")
            .await?;
        let statement = self
            .ledger
            .statement(&Principal::System, account, from, to)
            .await?;
        self.record(
            principal,
            "wallet.statement",
            &card.id,
            AuditOutcome::Succeeded,
        )
        .await?;
        Ok(statement)
    }

    /// Tops up a card's wallet from a platform's clearing account.
    ///
    /// Refused when the card is not active, when the amount is not positive,
    /// and when the wallet would pass its cap (the error says how much fits).
    pub async fn top_up(
        &self,
        principal: &Principal,
        card: &CardId,
        amount: Money,
        via: &Platform,
        key: &IdempotencyKey,
    ) -> Result<WalletReceipt, CityCardError> {
        self.top_up_with(principal, card, amount, via, key, CoreChanges::default())
            .await
    }

    /// [`WalletService::top_up`], committing the caller's own records
    /// (`with`: the platform API's idempotency record of the HTTP request)
    /// in the same transaction as the transfer, when the transfer is made
    /// or was already made; a refused transfer commits without them.
    #[tracing::instrument(name = "wallet.top_up", skip_all, fields(card = %card, %amount, via = %via, key = %key))]
    pub async fn top_up_with(
        &self,
        principal: &Principal,
        card: &CardId,
        amount: Money,
        via: &Platform,
        key: &IdempotencyKey,
        with: CoreChanges,
    ) -> Result<WalletReceipt, CityCardError> {
        if !amount.is_positive() {
            return Err(CityCardError::Invalid(format!(
                "a top-up must be a positive amount, not {amount}"
            )));
        }
        if let Principal::Platform { platform } = principal
            && platform != via
        {
            self.record(principal, "wallet.top_up", card, AuditOutcome::Denied)
                .await?;
            return Err(CityCardError::Denied {
                actor: principal.to_string(),
                action: "top up through another platform",
            });
        }
        let card = self.cards.card(&Principal::System, card).await?;
        let account = wallet_of(&card.wallet_account).map_err(CityCardError::Invalid)?;
        // Keys are the caller's own: another principal's identical key names another transfer.
        let id = TransferId::from_idempotency_key(
            &citycard_core::principal_scope("wallet.top_up", principal),
            key,
        );
        let held = |t: Result<citycard_ledger::Transfer, citycard_ledger::LedgerError>| matches!(t, Ok(t) if t.credit_account_id == account && t.amount == amount);
        // A retry of a top-up the ledger already holds answers as the first
        // time did, even if the principal may no longer top the card up (a
        // platform whose binding was suspended or removed since; found by
        // citycard-sim, crash seed 6 of its third pass). Only the same
        // principal can name the same transfer.
        if !self.allowed(principal, &card, Use::TopUp).await?
            && !held(self.ledger.transfer(&Principal::System, id).await)
        {
            self.record(principal, "wallet.top_up", &card.id, AuditOutcome::Denied)
                .await?;
            return Err(CityCardError::Denied {
                actor: principal.to_string(),
                action: "wallet.top_up",
            });
        }
        if card.status != CardStatus::Active {
            // A retry of a top-up the ledger already holds answers as the
            // first time did, even if the card was reported lost since
            // (found by citycard-sim: crash seeds 6, 7, 11, 12).
            if !held(self.ledger.transfer(&Principal::System, id).await) {
                return Err(CityCardError::Invalid(format!(
                    "card {} is {:?}: only an active card can be topped up",
                    card.id, card.status
                )));
            }
        }
        let reference = Reference::top_up_order(key.as_str())
            .map_err(|e| CityCardError::Invalid(e.to_string()))?;
        let transfer =
            NewTransfer::new(id, Accounts::clearing(via), account, amount, codes::TOP_UP)
                .with_reference(reference)
                .with_memo(format!("top-up via {via}"));
        self.move_money(
            principal,
            &card,
            account,
            id,
            amount,
            transfer,
            "wallet.top_up",
            with,
            Some(via.clone()),
        )
        .await
    }

    /// Refunds part of a card's wallet to the cardholder (to the refunds account).
    #[tracing::instrument(name = "wallet.refund", skip_all, fields(card = %card, %amount, key = %key))]
    pub async fn refund(
        &self,
        principal: &Principal,
        card: &CardId,
        amount: Money,
        key: &IdempotencyKey,
    ) -> Result<WalletReceipt, CityCardError> {
        if !amount.is_positive() {
            return Err(CityCardError::Invalid(format!(
                "a refund must be a positive amount, not {amount}"
            )));
        }
        let (card, account) = self
            .card_for(principal, card, Use::Refund, "wallet.refund")
            .await?;
        let id = TransferId::from_idempotency_key(
            &citycard_core::principal_scope("wallet.refund", principal),
            key,
        );
        let transfer = NewTransfer::new(id, account, Accounts::refunds(), amount, codes::REFUND)
            .with_memo("refund to the cardholder");
        self.move_money(
            principal,
            &card,
            account,
            id,
            amount,
            transfer,
            "wallet.refund",
            CoreChanges::default(),
            None,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn move_money(
        &self,
        principal: &Principal,
        card: &Card,
        account: AccountId,
        id: TransferId,
        amount: Money,
        transfer: NewTransfer,
        action: &'static str,
        with: CoreChanges,
        via: Option<Platform>,
    ) -> Result<WalletReceipt, CityCardError> {
        // The movement, its audit record and the caller's records commit
        // together: one write transaction.
        let now = self.clock.now();
        let record = |results: &[CreateTransferResult]| {
            let made = matches!(
                results.first(),
                Some(CreateTransferResult::Ok | CreateTransferResult::Exists)
            );
            let mut core = CoreChanges::audited(
                AuditRecord::new(
                    now,
                    principal.clone(),
                    action,
                    format!("card:{}", card.id),
                    match results.first() {
                        Some(CreateTransferResult::Exists) => AuditOutcome::Replayed,
                        Some(CreateTransferResult::Ok) => AuditOutcome::Succeeded,
                        _ => AuditOutcome::Failed,
                    },
                )
                .with("amount", amount.to_string())
                .with("transfer", id.to_string()),
            );
            if made {
                core.merge(with.clone());
            }
            core
        };
        // The platforms that hear of the card's balance: its live bindings'.
        let audience: Vec<Platform> = self
            .bindings
            .by_card(&card.id)
            .await?
            .into_iter()
            .filter(|b| matches!(b.state, BindingState::Active | BindingState::Suspended))
            .map(|b| b.platform)
            .collect();
        let events = MovementEvents {
            card: card.id.to_string(),
            account,
            transfer: id,
            amount,
            at: now,
            top_up_via: via,
            audience,
        };
        let (results, ()) = self
            .ledger
            .create_transfers_with(
                &Principal::System,
                vec![transfer],
                WithEvents {
                    unit: self.unit.as_ref(),
                    core: record,
                    events,
                },
            )
            .await?;
        let wallet = self.ledger.account(&Principal::System, account).await?;
        let may_view = self.allowed(principal, card, Use::Balance).await?;
        let outcome = match results.first().copied() {
            Some(CreateTransferResult::Ok | CreateTransferResult::Exists) => Ok(()),
            Some(CreateTransferResult::ExceedsUpperLimit) => {
                let cap = wallet.upper_limit.unwrap_or(Money::MAX);
                let balance = wallet.posted();
                Err(if may_view {
                    CityCardError::OverCap {
                        cap,
                        balance,
                        room: cap
                            .checked_sub(balance)
                            .unwrap_or(Money::ZERO)
                            .max(Money::ZERO),
                    }
                } else {
                    CityCardError::OverCapUndisclosed { cap }
                })
            }
            Some(CreateTransferResult::ExceedsCredits) => Err(if may_view {
                CityCardError::InsufficientBalance {
                    balance: wallet.available(),
                }
            } else {
                CityCardError::InsufficientBalanceUndisclosed
            }),
            Some(result) => Err(CityCardError::LedgerRefused { result }),
            None => Err(CityCardError::Ledger(LedgerError::Corrupt(
                "the ledger returned no result".into(),
            ))),
        };
        if let Err(e) = &outcome {
            tracing::info!(transfer = %id, error = %e, "wallet movement refused");
        }
        outcome?;
        let balance = wallet.available();
        tracing::info!(transfer = %id, %balance, "wallet movement recorded");
        // Keep every wallet pass of the card in step; a pass that cannot be
        // reached now is caught up by the next refresh.
        let _ = self
            .cards
            .push_balance(
                &Principal::System,
                &card.id,
                BalanceView {
                    balance,
                    as_of: now,
                },
            )
            .await;
        Ok(WalletReceipt {
            card: card.id.clone(),
            transfer: id,
            amount,
            balance: may_view.then_some(balance),
        })
    }
}

/// The events of a wallet movement, decided with its batch: the balance as
/// the batch leaves it, for every platform with a live binding of the card,
/// and the completed top-up for the platform it came through.
struct MovementEvents {
    card: String,
    account: AccountId,
    transfer: TransferId,
    amount: Money,
    at: DateTime<Utc>,
    top_up_via: Option<Platform>,
    audience: Vec<Platform>,
}

impl MovementEvents {
    fn events(&self, changes: &ChangeSet<'_>) -> Vec<NewEvent> {
        let Some(balance) = changes
            .balances
            .iter()
            .find(|b| b.id == self.account)
            .map(|b| {
                let side = if b.flags.credits_must_not_exceed_debits() {
                    NormalSide::Debit
                } else {
                    NormalSide::Credit
                };
                b.balances.available(side)
            })
        else {
            return Vec::new();
        };
        let balance_data = serde_json::json!({
            "balance": balance.to_string(),
            "as_of": self.at,
            "transfer": self.transfer.to_string(),
        });
        let mut events: Vec<NewEvent> = self
            .audience
            .iter()
            .map(|p| {
                NewEvent::new(
                    EventKind::BalanceChanged,
                    &self.card,
                    Some(p.clone()),
                    self.at,
                    balance_data.clone(),
                )
            })
            .collect();
        if let Some(via) = &self.top_up_via {
            events.push(NewEvent::new(
                EventKind::TopUpCompleted,
                &self.card,
                Some(via.clone()),
                self.at,
                serde_json::json!({
                    "transfer": self.transfer.to_string(),
                    "amount": self.amount.to_string(),
                    "balance": balance.to_string(),
                    "as_of": self.at,
                }),
            ));
        }
        events
    }
}

/// A wallet movement's batch with its audit record, the caller's records
/// and its events, in one unit of work.
struct WithEvents<'a, F> {
    unit: &'a dyn UnitOfWork,
    core: F,
    events: MovementEvents,
}

#[async_trait::async_trait]
impl<F> citycard_ledger::CommitWith for WithEvents<'_, F>
where
    F: FnMut(&[CreateTransferResult]) -> CoreChanges + Send,
{
    type Output = ();

    async fn commit(
        &mut self,
        results: &[CreateTransferResult],
        changes: &ChangeSet<'_>,
        audit: AuditRecord,
    ) -> Result<(), StoreError> {
        let mut core = CoreChanges::audited(audit);
        core.merge((self.core)(results));
        if matches!(results.first(), Some(CreateTransferResult::Ok)) {
            core.events.extend(self.events.events(changes));
        }
        self.unit
            .commit(CityPlan {
                ledger: Some(changes),
                transit: None,
                core,
            })
            .await
    }
}
