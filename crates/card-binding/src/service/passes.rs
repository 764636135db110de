//! The wallet pass (卡包) of a binding: keeping it in line with the binding,
//! balance refresh, what the pass lets the holder use; and the binding views.
//!
//! Wallet calls are remote and idempotent by pass serial; they run after the
//! commit that decided the binding's state, never inside it.

use citycard_core::{DelegationScope, OperatorRole, Platform, PlatformAccountId, Principal};

use super::{CardService, WalletView};
use crate::decide::{subject_binding, subject_card};
use crate::error::BindingError;
use crate::model::{
    BalanceView, Binding, BindingId, BindingState, Card, CardId, PassSerial, PassStatus,
    PassUpdate, RemovalReason, Service, ServiceSet, WalletPass,
};

impl CardService {
    pub(super) fn pass_for(
        &self,
        binding: &Binding,
        card: &Card,
        status: PassStatus,
    ) -> WalletPass {
        WalletPass {
            serial: binding.pass_serial.clone(),
            binding: binding.id.clone(),
            platform: binding.platform.clone(),
            account: binding.account.clone(),
            card_number_masked: card.number.masked(),
            kind: card.kind.clone(),
            services: card.services.clone(),
            status,
            balance: None,
        }
    }

    /// Makes the wallet match a settled binding (idempotent); true when the wallet confirmed.
    ///
    /// Passes the binding had for the cards this card replaced are removed too
    /// (their serials are derived), so a failed clean-up is finished by any later sync.
    pub(super) async fn sync_pass(&self, binding: &Binding, card: &Card) -> bool {
        let wallet = &self.ports.wallet;
        let platform = &binding.platform;
        let mut earlier = card.replaces.clone();
        let mut hops = 0;
        while let Some(prev) = earlier {
            hops += 1;
            if hops > 16 {
                return false;
            }
            let old = PassSerial::derive(&binding.id, &prev);
            if self
                .with_retries(|| wallet.remove_pass(platform, &old, RemovalReason::CardReplaced))
                .await
                .is_err()
            {
                return false;
            }
            earlier = match self.ports.cards.get(&prev).await {
                Ok(Some(c)) => c.replaces,
                _ => return false,
            };
        }
        let status = match binding.state {
            BindingState::Pending => return true,
            BindingState::Removed => {
                let reason = binding.removal.unwrap_or(RemovalReason::UserUnbound);
                return self
                    .with_retries(|| wallet.remove_pass(platform, &binding.pass_serial, reason))
                    .await
                    .is_ok();
            }
            BindingState::Active => PassStatus::Active,
            BindingState::Suspended => PassStatus::Suspended,
        };
        let pass = self.pass_for(binding, card, status);
        if self.with_retries(|| wallet.add_pass(&pass)).await.is_err() {
            return false;
        }
        let update = PassUpdate::Status(status);
        self.with_retries(|| wallet.update_pass(platform, &binding.pass_serial, &update))
            .await
            .is_ok()
    }

    /// Pushes a binding's current state to its wallet pass again (after a failed propagation).
    pub async fn resync_pass(
        &self,
        principal: &Principal,
        binding: &BindingId,
    ) -> Result<Binding, BindingError> {
        let b = self.load_binding(binding).await?;
        self.authorize_binding(
            principal,
            &b,
            DelegationScope::ViewBalance,
            "binding.resync",
        )
        .await?;
        if b.state == BindingState::Pending {
            return Err(BindingError::Processing {
                binding: b.id.clone(),
            });
        }
        let card = self.load_card(&b.card).await?;
        if self.sync_pass(&b, &card).await {
            Ok(b)
        } else {
            Err(BindingError::RetryLater {
                reason: "platform wallet: the pass could not be updated".into(),
            })
        }
    }

    /// The services usable through a binding (its card's services while the binding is active).
    pub async fn capabilities(
        &self,
        principal: &Principal,
        binding: &BindingId,
    ) -> Result<ServiceSet, BindingError> {
        let b = self.load_binding(binding).await?;
        self.authorize_binding(
            principal,
            &b,
            DelegationScope::ViewRecords,
            "binding.capabilities",
        )
        .await?;
        self.audit_read(principal, "binding.capabilities", subject_binding(binding))
            .await?;
        if b.state != BindingState::Active {
            return Ok(ServiceSet::new());
        }
        Ok(self.load_card(&b.card).await?.services)
    }

    /// Checks that a service works through a binding: a distinct error names a service not enabled.
    pub async fn ensure_service(
        &self,
        principal: &Principal,
        binding: &BindingId,
        service: &Service,
    ) -> Result<(), BindingError> {
        let b = self.load_binding(binding).await?;
        self.authorize_binding(principal, &b, DelegationScope::ViewRecords, "binding.use")
            .await?;
        let card = self.load_card(&b.card).await?;
        match b.state {
            BindingState::Active => {}
            BindingState::Pending => return Err(BindingError::Processing { binding: b.id }),
            BindingState::Suspended => {
                return Err(BindingError::CardNotActive {
                    status: card.status.code().to_owned(),
                });
            }
            BindingState::Removed => {
                return Err(BindingError::InvalidState {
                    operation: format!("use {service}"),
                    state: "the binding is removed".into(),
                });
            }
        }
        if !card.services.contains(service) {
            return Err(BindingError::ServiceNotEnabled {
                service: service.clone(),
            });
        }
        Ok(())
    }

    /// The wallet view of a binding: services and the balance last pushed, with its "as of" time.
    pub async fn wallet_view(
        &self,
        principal: &Principal,
        binding: &BindingId,
    ) -> Result<WalletView, BindingError> {
        let b = self.load_binding(binding).await?;
        self.authorize_binding(
            principal,
            &b,
            DelegationScope::ViewBalance,
            "binding.wallet_view",
        )
        .await?;
        self.audit_read(principal, "binding.wallet_view", subject_binding(binding))
            .await?;
        let card = self.load_card(&b.card).await?;
        let pass = self
            .ports
            .wallet
            .pass(&b.platform, &b.pass_serial)
            .await
            .map_err(|e| e.retry_later("platform wallet"))?;
        Ok(WalletView {
            binding: b.id,
            state: b.state,
            services: card.services,
            balance: pass.and_then(|p| p.balance),
        })
    }

    /// Pulls the authoritative balance and pushes it to the pass (the "refresh" button).
    pub async fn refresh_balance(
        &self,
        principal: &Principal,
        binding: &BindingId,
    ) -> Result<BalanceView, BindingError> {
        let b = self.load_binding(binding).await?;
        self.authorize_binding(
            principal,
            &b,
            DelegationScope::ViewBalance,
            "binding.refresh",
        )
        .await?;
        self.audit_read(principal, "binding.refresh", subject_binding(binding))
            .await?;
        let card = self.load_card(&b.card).await?;
        let view = self
            .ports
            .balances
            .balance(&card.wallet_account)
            .await
            .map_err(|e| e.retry_later("balance source"))?;
        if matches!(b.state, BindingState::Active | BindingState::Suspended) {
            let wallet = &self.ports.wallet;
            let update = PassUpdate::Balance(view);
            self.with_retries(|| wallet.update_pass(&b.platform, &b.pass_serial, &update))
                .await
                .map_err(|e| e.retry_later("platform wallet"))?;
        }
        Ok(view)
    }

    /// Pushes a new balance of a card to every settled binding's pass (called on every ledger change).
    /// Returns the bindings whose pass could not be updated (a refresh will pull it later).
    pub async fn push_balance(
        &self,
        principal: &Principal,
        card: &CardId,
        view: BalanceView,
    ) -> Result<Vec<BindingId>, BindingError> {
        if !self.back_office(principal, &[OperatorRole::CardDesk]) {
            return Err(self
                .deny(
                    principal,
                    "binding.push_balance",
                    subject_card(card),
                    "only the system pushes balances",
                )
                .await);
        }
        let wallet = &self.ports.wallet;
        let update = PassUpdate::Balance(view);
        let mut failed = Vec::new();
        for b in self.ports.bindings.by_card(card).await? {
            if !matches!(b.state, BindingState::Active | BindingState::Suspended) {
                continue;
            }
            if self
                .with_retries(|| wallet.update_pass(&b.platform, &b.pass_serial, &update))
                .await
                .is_err()
            {
                failed.push(b.id);
            }
        }
        Ok(failed)
    }

    pub(super) async fn authorize_binding(
        &self,
        principal: &Principal,
        binding: &Binding,
        scope: DelegationScope,
        action: &str,
    ) -> Result<(), BindingError> {
        let allowed = match principal {
            Principal::Operator { .. } | Principal::System => self.back_office(
                principal,
                if matches!(
                    scope,
                    DelegationScope::ViewBalance | DelegationScope::ViewRecords
                ) {
                    &[OperatorRole::CardDesk, OperatorRole::Auditor]
                } else {
                    &[OperatorRole::CardDesk]
                },
            ),
            Principal::Platform { platform } => *platform == binding.platform,
            _ => self.acts_for(principal, &binding.holder, scope).await?,
        };
        if allowed {
            Ok(())
        } else {
            Err(self
                .deny(
                    principal,
                    action,
                    subject_binding(&binding.id),
                    "not the cardholder, a delegate with this right, or the binding's platform",
                )
                .await)
        }
    }

    /// A binding, for whoever may see it; pending bindings read as "processing" to the caller.
    pub async fn binding(
        &self,
        principal: &Principal,
        id: &BindingId,
    ) -> Result<Binding, BindingError> {
        let b = self.load_binding(id).await?;
        self.authorize_binding(principal, &b, DelegationScope::ViewRecords, "binding.view")
            .await?;
        self.audit_read(principal, "binding.view", subject_binding(id))
            .await?;
        Ok(b)
    }

    /// The bindings of a platform account ("my cards" in the platform app), for the
    /// account's real-name holder, the platform itself, or an operator.
    pub async fn bindings_of_account(
        &self,
        principal: &Principal,
        platform: &Platform,
        account: &PlatformAccountId,
    ) -> Result<Vec<Binding>, BindingError> {
        let allowed = match principal {
            Principal::Operator { .. } | Principal::System => {
                self.back_office(principal, &[OperatorRole::CardDesk, OperatorRole::Auditor])
            }
            Principal::Platform { platform: p } => p == platform,
            Principal::Cardholder { person } => {
                self.ports
                    .real_names
                    .account_holder(platform, account)
                    .await
                    .map_err(|e| e.retry_later("real-name check"))?
                    .as_ref()
                    == Some(person)
            }
            _ => false,
        };
        if !allowed {
            return Err(self
                .deny(
                    principal,
                    "binding.list",
                    format!("account:{platform}:{account}"),
                    "not the account's holder or platform",
                )
                .await);
        }
        self.audit_read(
            principal,
            "binding.list",
            format!("account:{platform}:{account}"),
        )
        .await?;
        Ok(self.ports.bindings.by_account(platform, account).await?)
    }
}
