//! Who may do what: the delegation-grant port and operators' roles.
//!
//! A [`Principal::Delegate`] only *claims* a grant. Every service that lets a
//! delegate act checks the claim against the stored grant through one
//! [`GrantVerifier`] (implemented once, over the card-binding crate's
//! delegation store), comparing the grant's cardholder, delegate, scopes,
//! expiry and revocation. Operators' roles are looked up in an
//! [`OperatorRoles`] registry the host configures, never claimed: an operator
//! the registry does not know has no roles.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::ids::{OperatorId, PersonId};
use crate::principal::{DelegationScope, Principal};

/// Checks a principal's right to act for a person against stored grants.
#[async_trait::async_trait]
pub trait GrantVerifier: Send + Sync {
    /// Whether `principal` may act for `person` with `scope` at `now`: the
    /// person themself, or a delegate whose claimed grant is stored, names
    /// this delegate and this cardholder, holds `scope` (also claimed), has
    /// not expired and is not revoked. Every other principal gets `false`.
    async fn verify(
        &self,
        principal: &Principal,
        person: &PersonId,
        scope: DelegationScope,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// A back-office role, given to operators by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OperatorRole {
    /// The card desk: enrol persons, issue, replace and cancel cards, read persons and cards.
    CardDesk,
    /// Finance: refunds, raw ledger writes, read wallets and statements.
    Finance,
    /// Auditors: read persons, cards, wallets and statements; change nothing.
    Auditor,
}

/// Which operator holds which roles (empty by default: no operator has any role).
#[derive(Debug, Default)]
pub struct OperatorRoles {
    roles: RwLock<HashMap<OperatorId, HashSet<OperatorRole>>>,
}

impl OperatorRoles {
    /// A registry in which no operator has a role.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives `operator` a role.
    pub fn grant(&self, operator: OperatorId, role: OperatorRole) {
        self.roles
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(operator)
            .or_default()
            .insert(role);
    }

    /// Takes a role away from `operator`.
    pub fn revoke(&self, operator: &OperatorId, role: OperatorRole) {
        if let Some(set) = self
            .roles
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(operator)
        {
            set.remove(&role);
        }
    }

    /// Whether `operator` holds `role`.
    pub fn has(&self, operator: &OperatorId, role: OperatorRole) -> bool {
        self.roles
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(operator)
            .is_some_and(|s| s.contains(&role))
    }

    /// Whether `principal` is the system, or an operator holding one of `roles`.
    pub fn allows(&self, principal: &Principal, roles: &[OperatorRole]) -> bool {
        match principal {
            Principal::System => true,
            Principal::Operator { operator } => roles.iter().any(|r| self.has(operator, *r)),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_operators_have_no_roles_and_roles_are_revocable() {
        let roles = OperatorRoles::new();
        let desk = OperatorId::parse("opr-desk").unwrap();
        let op = Principal::Operator {
            operator: desk.clone(),
        };
        assert!(!roles.allows(&op, &[OperatorRole::CardDesk]));
        roles.grant(desk.clone(), OperatorRole::CardDesk);
        assert!(roles.allows(&op, &[OperatorRole::CardDesk]));
        assert!(!roles.allows(&op, &[OperatorRole::Finance]));
        roles.revoke(&desk, OperatorRole::CardDesk);
        assert!(!roles.allows(&op, &[OperatorRole::CardDesk]));
        assert!(roles.allows(&Principal::System, &[OperatorRole::Finance]));
        assert!(!roles.allows(
            &Principal::cardholder(PersonId::parse("psn-1").unwrap()),
            &[OperatorRole::Auditor]
        ));
    }
}
