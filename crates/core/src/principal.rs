//! Who acts: principals, platforms and delegation scopes.
//!
//! Every operation is done on behalf of a [`Principal`]; services check it
//! before they touch anything. A family member acting for an elderly
//! cardholder is a [`Principal::Delegate`] carrying the scopes of the grant
//! it acts under; the service that holds delegations still checks that the
//! grant is live (not expired, not revoked) before trusting those scopes.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{DelegationId, OperatorId, PersonId};

/// A payment platform on which a card can be bound.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Platform {
    /// Alipay (支付宝).
    Alipay,
    /// WeChat Pay (微信支付).
    WechatPay,
    /// UnionPay (云闪付).
    UnionPay,
    /// Any other platform, by a short lowercase code.
    Other(String),
}

impl Platform {
    /// A short stable code: `alipay`, `wechat_pay`, `union_pay` or the other platform's code.
    pub fn code(&self) -> &str {
        match self {
            Platform::Alipay => "alipay",
            Platform::WechatPay => "wechat_pay",
            Platform::UnionPay => "union_pay",
            Platform::Other(code) => code,
        }
    }

    /// The platform for a code (unknown codes become [`Platform::Other`]).
    pub fn from_code(code: &str) -> Platform {
        match code {
            "alipay" => Platform::Alipay,
            "wechat_pay" => Platform::WechatPay,
            "union_pay" => Platform::UnionPay,
            other => Platform::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// One right a cardholder can grant to a family member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DelegationScope {
    /// See the wallet balance and statements.
    ViewBalance,
    /// See ride, medical and social-insurance records.
    ViewRecords,
    /// Top up the e-wallet.
    TopUp,
    /// Book and cancel hospital appointments.
    BookAppointments,
    /// Bind the card to a platform account.
    Bind,
    /// Unbind the card from a platform account.
    Unbind,
}

impl DelegationScope {
    /// Every scope, in order.
    pub const ALL: [DelegationScope; 6] = [
        DelegationScope::ViewBalance,
        DelegationScope::ViewRecords,
        DelegationScope::TopUp,
        DelegationScope::BookAppointments,
        DelegationScope::Bind,
        DelegationScope::Unbind,
    ];

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of delegation scopes (a small bit set).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u8);

impl Scopes {
    /// No scopes.
    pub const NONE: Scopes = Scopes(0);

    /// Every scope.
    pub fn all() -> Scopes {
        DelegationScope::ALL.into_iter().collect()
    }

    /// Whether the set holds a scope.
    pub const fn contains(self, scope: DelegationScope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// The set with one more scope.
    pub const fn with(self, scope: DelegationScope) -> Scopes {
        Scopes(self.0 | scope.bit())
    }

    /// The scopes in the set, in order.
    pub fn iter(self) -> impl Iterator<Item = DelegationScope> {
        DelegationScope::ALL
            .into_iter()
            .filter(move |s| self.contains(*s))
    }

    /// True when empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<DelegationScope> for Scopes {
    fn from_iter<I: IntoIterator<Item = DelegationScope>>(iter: I) -> Self {
        iter.into_iter().fold(Scopes::NONE, Scopes::with)
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Serialize for Scopes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Scopes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<DelegationScope>::deserialize(d)?
            .into_iter()
            .collect())
    }
}

/// Who performs an operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Principal {
    /// The cardholder, for themself.
    Cardholder {
        /// The cardholder.
        person: PersonId,
    },
    /// A family member (or guardian) acting for a cardholder under a delegation.
    Delegate {
        /// Who acts.
        delegate: PersonId,
        /// For whom.
        on_behalf_of: PersonId,
        /// The grant acted under.
        delegation: DelegationId,
        /// What the grant allows.
        scopes: Scopes,
    },
    /// A payment platform's service, acting for its own integration.
    Platform {
        /// Which platform.
        platform: Platform,
    },
    /// An issuer's back-office operator.
    Operator {
        /// Which operator.
        operator: OperatorId,
    },
    /// The card system itself (scheduled jobs, settlement, expiry).
    System,
}

impl Principal {
    /// The cardholder principal for a person.
    pub fn cardholder(person: PersonId) -> Principal {
        Principal::Cardholder { person }
    }

    /// True when this principal *claims* to act on `person`'s own things for
    /// `scope`: the person themself, or a delegate for them claiming the scope.
    ///
    /// A delegate's claim proves nothing by itself: authorise through a
    /// [`GrantVerifier`](crate::GrantVerifier), which checks the stored grant.
    /// Operators and the system are not included: services decide separately
    /// which back-office operations they allow.
    pub fn may_act_for(&self, person: &PersonId, scope: DelegationScope) -> bool {
        match self {
            Principal::Cardholder { person: p } => p == person,
            Principal::Delegate {
                on_behalf_of,
                scopes,
                ..
            } => on_behalf_of == person && scopes.contains(scope),
            _ => false,
        }
    }

    /// The person acting, where a person acts.
    pub fn acting_person(&self) -> Option<&PersonId> {
        match self {
            Principal::Cardholder { person } => Some(person),
            Principal::Delegate { delegate, .. } => Some(delegate),
            _ => None,
        }
    }

    /// True for a back-office operator.
    pub fn is_operator(&self) -> bool {
        matches!(self, Principal::Operator { .. })
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Cardholder { person } => write!(f, "cardholder {person}"),
            Principal::Delegate {
                delegate,
                on_behalf_of,
                ..
            } => write!(f, "delegate {delegate} for {on_behalf_of}"),
            Principal::Platform { platform } => write!(f, "platform {platform}"),
            Principal::Operator { operator } => write!(f, "operator {operator}"),
            Principal::System => f.write_str("system"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(s: &str) -> PersonId {
        PersonId::parse(s).unwrap()
    }

    #[test]
    fn delegates_act_only_within_their_scopes_and_person() {
        let grandma = pid("psn-grandma");
        let son = Principal::Delegate {
            delegate: pid("psn-son"),
            on_behalf_of: grandma.clone(),
            delegation: DelegationId::parse("dlg-1").unwrap(),
            scopes: [DelegationScope::TopUp, DelegationScope::ViewBalance]
                .into_iter()
                .collect(),
        };
        assert!(son.may_act_for(&grandma, DelegationScope::TopUp));
        assert!(!son.may_act_for(&grandma, DelegationScope::Bind));
        assert!(!son.may_act_for(&pid("psn-other"), DelegationScope::TopUp));
        assert!(
            Principal::cardholder(grandma.clone()).may_act_for(&grandma, DelegationScope::Bind)
        );
        assert!(!Principal::System.may_act_for(&grandma, DelegationScope::ViewBalance));
    }

    #[test]
    fn scopes_serialize_as_a_list() {
        let s: Scopes = [DelegationScope::Bind, DelegationScope::TopUp]
            .into_iter()
            .collect();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"["top_up","bind"]"#);
        assert_eq!(serde_json::from_str::<Scopes>(&json).unwrap(), s);
        assert_eq!(Scopes::all().iter().count(), 6);
    }

    #[test]
    fn platforms_round_trip_through_codes() {
        for p in [
            Platform::Alipay,
            Platform::WechatPay,
            Platform::UnionPay,
            Platform::Other("ecny".into()),
        ] {
            assert_eq!(Platform::from_code(p.code()), p);
        }
    }
}
