//! Family delegation (亲情账户): grants, revocation, and the one check of a
//! delegate against the stored grants.
//!
//! A grant and a revocation are each one commit: the grant row (or the
//! revocation instant), its audit record and the idempotency outcome.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use citycard_core::{
    AuditOutcome, AuditRecord, CoreChanges, DelegationId, DelegationScope, GrantVerifier,
    IdempotencyKey, OperatorRole, PersonId, Principal, Scopes, StoreError, principal_scope,
};

use super::{CardService, Decided, GrantDelegation, KeyRef};
use crate::changes::CardChanges;
use crate::error::BindingError;
use crate::model::{Delegation, Relation};
use crate::ports::DelegationStore;

/// The one delegation check: the claimed grant, loaded from the store, must name
/// this delegate and this cardholder, hold `scope` (also claimed: a session may be
/// narrowed), be unexpired at `now` and unrevoked. A claim alone proves nothing.
#[allow(clippy::too_many_arguments)]
pub(super) async fn live_grant(
    delegations: &dyn DelegationStore,
    delegate: &PersonId,
    on_behalf_of: &PersonId,
    delegation: &DelegationId,
    claimed: Scopes,
    person: &PersonId,
    scope: DelegationScope,
    now: DateTime<Utc>,
) -> Result<Option<Delegation>, StoreError> {
    if on_behalf_of != person || !claimed.contains(scope) {
        return Ok(None);
    }
    let grant = delegations.get(delegation).await?;
    Ok(
        grant
            .filter(|g| g.delegate == *delegate && g.cardholder == *person && g.allows(scope, now)),
    )
}

/// The [`GrantVerifier`] over stored delegation grants: the check the card
/// service itself uses, for the ledger, healthcare and the facade.
#[derive(Clone)]
pub struct StoredGrants {
    delegations: Arc<dyn DelegationStore>,
}

impl StoredGrants {
    /// The verifier over this delegation store.
    pub fn new(delegations: Arc<dyn DelegationStore>) -> Self {
        Self { delegations }
    }
}

impl std::fmt::Debug for StoredGrants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredGrants")
    }
}

#[async_trait::async_trait]
impl GrantVerifier for StoredGrants {
    async fn verify(
        &self,
        principal: &Principal,
        person: &PersonId,
        scope: DelegationScope,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(match principal {
            Principal::Cardholder { person: p } => p == person,
            Principal::Delegate {
                delegate,
                on_behalf_of,
                delegation,
                scopes,
            } => live_grant(
                &*self.delegations,
                delegate,
                on_behalf_of,
                delegation,
                *scopes,
                person,
                scope,
                now,
            )
            .await?
            .is_some(),
            _ => false,
        })
    }
}

impl CardService {
    /// Grants a delegation: by the cardholder, or by a guardian for a minor.
    #[tracing::instrument(skip_all, fields(key = %key))]
    pub async fn grant_delegation(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        request: &GrantDelegation,
    ) -> Result<Delegation, BindingError> {
        let now = self.now();
        let subject = format!("person:{}", request.cardholder);
        let Principal::Cardholder { person: grantor } = principal else {
            return Err(self
                .deny(
                    principal,
                    "delegation.grant",
                    subject,
                    "only a cardholder or guardian grants",
                )
                .await);
        };
        let real = &self.ports.real_names;
        let grantor_is_guardian = real
            .is_guardian_of(grantor, &request.cardholder)
            .await
            .map_err(|e| e.retry_later("real-name check"))?;
        if *grantor != request.cardholder && !grantor_is_guardian {
            return Err(self
                .deny(
                    principal,
                    "delegation.grant",
                    subject,
                    "only the cardholder or their guardian grants",
                )
                .await);
        }
        if request.relation == Relation::Guardian
            && !real
                .is_guardian_of(&request.delegate, &request.cardholder)
                .await
                .map_err(|e| e.retry_later("real-name check"))?
        {
            return Err(self
                .deny(
                    principal,
                    "delegation.grant",
                    subject,
                    "the delegate is not the cardholder's guardian",
                )
                .await);
        }
        if request.scopes.is_empty() {
            return Err(BindingError::InvalidState {
                operation: "grant a delegation".into(),
                state: "no scopes were chosen".into(),
            });
        }
        let latest = now
            .checked_add_signed(self.config.max_delegation)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        if request.expires_at <= now || request.expires_at > latest {
            return Err(BindingError::InvalidState {
                operation: "grant a delegation".into(),
                state: format!(
                    "the expiry must be in the future and within {} days",
                    self.config.max_delegation.num_days()
                ),
            });
        }
        let key = KeyRef::new(
            principal_scope("delegation.grant", principal),
            key,
            &(principal, request),
        )?;
        let (grant, _) = self
            .idempotent(&key, || async move {
                let grant = Delegation {
                    id: DelegationId::generate(&*self.ports.ids),
                    cardholder: request.cardholder.clone(),
                    delegate: request.delegate.clone(),
                    relation: request.relation,
                    scopes: request.scopes,
                    granted_by: grantor.clone(),
                    granted_at: now,
                    expires_at: request.expires_at,
                    revoked_at: None,
                };
                let mut changes = CardChanges::new();
                changes.insert_delegation(grant.clone());
                let core = CoreChanges::audited(
                    AuditRecord::new(
                        now,
                        principal.clone(),
                        "delegation.grant",
                        format!("delegation:{}", grant.id),
                        AuditOutcome::Succeeded,
                    )
                    .with("cardholder", grant.cardholder.as_str())
                    .with("delegate", grant.delegate.as_str())
                    .with(
                        "scopes",
                        serde_json::to_string(&grant.scopes).unwrap_or_default(),
                    ),
                );
                Ok(Decided {
                    changes,
                    core,
                    value: grant,
                })
            })
            .await?;
        Ok(grant)
    }

    /// Revokes a delegation: by the grantor, the cardholder, the delegate or an operator.
    #[tracing::instrument(skip_all, fields(delegation = %id, key = %key))]
    pub async fn revoke_delegation(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        id: &DelegationId,
    ) -> Result<Delegation, BindingError> {
        let key = KeyRef::new(
            principal_scope("delegation.revoke", principal),
            key,
            &(principal, id),
        )?;
        let (revoked, _) = self
            .idempotent(&key, || async move {
                let grant = self.ports.delegations.get(id).await?.ok_or_else(|| {
                    BindingError::NotFound {
                        what: format!("delegation {id}"),
                    }
                })?;
                let allowed = match principal {
                    Principal::Operator { .. } | Principal::System => {
                        self.back_office(principal, &[OperatorRole::CardDesk])
                    }
                    Principal::Cardholder { person } => {
                        *person == grant.granted_by
                            || *person == grant.cardholder
                            || *person == grant.delegate
                    }
                    _ => false,
                };
                if !allowed {
                    return Err(self
                        .deny(
                            principal,
                            "delegation.revoke",
                            format!("delegation:{id}"),
                            "only the grantor, cardholder, delegate or issuer revokes",
                        )
                        .await);
                }
                let now = self.now();
                let mut changes = CardChanges::new();
                changes.revoke_delegation(id.clone(), now);
                let mut revoked = grant;
                revoked.revoked_at = revoked.revoked_at.or(Some(now));
                let core = CoreChanges::audited(AuditRecord::new(
                    now,
                    principal.clone(),
                    "delegation.revoke",
                    format!("delegation:{id}"),
                    AuditOutcome::Succeeded,
                ));
                Ok(Decided {
                    changes,
                    core,
                    value: revoked,
                })
            })
            .await?;
        Ok(revoked)
    }

    /// The delegations of a cardholder (for the cardholder, a guardian, or an operator).
    pub async fn delegations(
        &self,
        principal: &Principal,
        cardholder: &PersonId,
    ) -> Result<Vec<Delegation>, BindingError> {
        let allowed = match principal {
            Principal::Operator { .. } | Principal::System => {
                self.back_office(principal, &[OperatorRole::CardDesk, OperatorRole::Auditor])
            }
            Principal::Cardholder { person } => {
                person == cardholder
                    || self
                        .ports
                        .real_names
                        .is_guardian_of(person, cardholder)
                        .await
                        .map_err(|e| e.retry_later("real-name check"))?
            }
            _ => false,
        };
        if !allowed {
            return Err(self
                .deny(
                    principal,
                    "delegation.list",
                    format!("person:{cardholder}"),
                    "not the cardholder",
                )
                .await);
        }
        self.audit_read(principal, "delegation.list", format!("person:{cardholder}"))
            .await?;
        Ok(self.ports.delegations.for_cardholder(cardholder).await?)
    }

    /// Checks that the principal may act for `person` with `scope` (for other crates' operations via the facade);
    /// a denial is audited.
    pub async fn authorize(
        &self,
        principal: &Principal,
        person: &PersonId,
        scope: DelegationScope,
        action: &str,
    ) -> Result<(), BindingError> {
        if self.acts_for(principal, person, scope).await? {
            Ok(())
        } else {
            Err(self
                .deny(
                    principal,
                    action,
                    format!("person:{person}"),
                    "outside any live grant",
                )
                .await)
        }
    }
}
