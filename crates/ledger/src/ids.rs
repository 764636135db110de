//! Compact numeric identifiers and small codes: account and transfer ids,
//! currencies, account kinds, owners and references.

use std::fmt;
use std::str::FromStr;

use citycard_core::{ClassifiedError, ErrorClass, PersonId};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an identifier or code could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerIdError {
    /// The text is not a decimal number in range.
    #[error("{kind} {text:?} is not a decimal number from 0 to {max}: pass digits only")]
    NotANumber {
        /// What was parsed.
        kind: &'static str,
        /// The text, cut to 32 characters.
        text: String,
        /// The largest value.
        max: u64,
    },
    /// A reference or owner text is empty, too long, or has a character outside `[A-Za-z0-9-_.:]`.
    #[error(
        "{kind} must be 1 to {max} characters of letters, digits, '-', '_', '.' or ':': fix the text"
    )]
    BadText {
        /// What was parsed.
        kind: &'static str,
        /// The longest allowed text.
        max: usize,
    },
}

impl ClassifiedError for LedgerIdError {
    fn class(&self) -> ErrorClass {
        ErrorClass::InvalidInput
    }
}

macro_rules! numeric_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(u64);

        impl $name {
            /// What the id names, for messages.
            pub const KIND: &'static str = $kind;
            /// The reserved zero id (invalid in requests, "inherit" where documented).
            pub const ZERO: $name = $name(0);
            /// The reserved largest id (never valid).
            pub const MAX: $name = $name(u64::MAX);

            /// The id with this number.
            pub const fn new(value: u64) -> Self {
                Self(value)
            }

            /// The number.
            pub const fn get(self) -> u64 {
                self.0
            }

            /// True for the reserved zero id.
            pub const fn is_zero(self) -> bool {
                self.0 == 0
            }

            /// Parses a decimal number.
            pub fn parse(text: &str) -> Result<Self, LedgerIdError> {
                if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(not_a_number($kind, text));
                }
                text.parse::<u64>().map(Self).map_err(|_| not_a_number($kind, text))
            }
        }

        impl From<u64> for $name {
            fn from(value: u64) -> Self {
                Self(value)
            }
        }

        impl FromStr for $name {
            type Err = LedgerIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn not_a_number(kind: &'static str, text: &str) -> LedgerIdError {
    LedgerIdError::NotANumber {
        kind,
        text: text.chars().take(32).collect(),
        max: u64::MAX,
    }
}

numeric_id!(
    /// An account id: a `u64`, unique forever; 0 and `u64::MAX` are reserved.
    ///
    /// Serialised as a decimal string (JSON numbers lose precision above 2^53).
    AccountId,
    "account id"
);
numeric_id!(
    /// A transfer id: a `u64`, unique forever (it is the transfer's idempotency
    /// key); 0 and `u64::MAX` are reserved.
    TransferId,
    "transfer id"
);

/// A currency as its ISO 4217 numeric code; the ledger only moves money
/// between accounts of the same currency. Citycard uses [`Currency::CNY`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Currency(pub u16);

impl Currency {
    /// Chinese yuan renminbi (156).
    pub const CNY: Currency = Currency(156);

    /// The numeric code.
    pub const fn code(self) -> u16 {
        self.0
    }
}

impl Default for Currency {
    fn default() -> Self {
        Currency::CNY
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Currency::CNY => f.write_str("CNY"),
            Currency(code) => write!(f, "{code:03}"),
        }
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({self})")
    }
}

/// What an account is for: an open set of `u16` codes (0 is reserved).
///
/// The named constants cover the card system; hosts may use any other
/// non-zero code for their own kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountKind(pub u16);

impl AccountKind {
    /// A cardholder's e-wallet (stored value).
    pub const E_WALLET: AccountKind = AccountKind(1);
    /// Top-up clearing with a bank or payment platform.
    pub const TOP_UP_CLEARING: AccountKind = AccountKind(2);
    /// A transit operator's fare revenue.
    pub const OPERATOR_REVENUE: AccountKind = AccountKind(3);
    /// A hospital's receivables.
    pub const HOSPITAL_RECEIVABLE: AccountKind = AccountKind(4);
    /// A medical insurance personal account, current year (当年).
    pub const MEDICAL_CURRENT_YEAR: AccountKind = AccountKind(5);
    /// A medical insurance personal account, accumulated (历年).
    pub const MEDICAL_ACCUMULATED: AccountKind = AccountKind(6);
    /// The medical insurance pooled fund (统筹基金).
    pub const POOLED_FUND: AccountKind = AccountKind(7);
    /// Refunds.
    pub const REFUNDS: AccountKind = AccountKind(8);
    /// Fees.
    pub const FEES: AccountKind = AccountKind(9);
    /// Promotions and discounts funded by the issuer.
    pub const PROMOTIONS: AccountKind = AccountKind(10);
    /// A control account, counterpart of closing transfers and adjustments.
    pub const CONTROL: AccountKind = AccountKind(11);

    /// The name of a known kind, `None` for a host's own code.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "e_wallet",
            2 => "top_up_clearing",
            3 => "operator_revenue",
            4 => "hospital_receivable",
            5 => "medical_current_year",
            6 => "medical_accumulated",
            7 => "pooled_fund",
            8 => "refunds",
            9 => "fees",
            10 => "promotions",
            11 => "control",
            _ => return None,
        })
    }
}

fn valid_text(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The longest reference, in bytes.
pub const MAX_REFERENCE_LEN: usize = 64;

/// What a transfer is about, outside the ledger: a trip, a bill, a top-up
/// order. Written as `kind:id` (for example `trip:T-20261126-1`); at most
/// [`MAX_REFERENCE_LEN`] characters of `[A-Za-z0-9-_.:]`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Reference(String);

impl Reference {
    /// Parses a reference.
    pub fn parse(text: &str) -> Result<Reference, LedgerIdError> {
        if valid_text(text, MAX_REFERENCE_LEN) {
            Ok(Reference(text.to_owned()))
        } else {
            Err(LedgerIdError::BadText {
                kind: "reference",
                max: MAX_REFERENCE_LEN,
            })
        }
    }

    fn prefixed(prefix: &str, id: &str) -> Result<Reference, LedgerIdError> {
        Reference::parse(&format!("{prefix}:{id}"))
    }

    /// A trip (`trip:<id>`).
    pub fn trip(id: &str) -> Result<Reference, LedgerIdError> {
        Self::prefixed("trip", id)
    }

    /// A bill (`bill:<id>`).
    pub fn bill(id: &str) -> Result<Reference, LedgerIdError> {
        Self::prefixed("bill", id)
    }

    /// A top-up order (`topup:<id>`).
    pub fn top_up_order(id: &str) -> Result<Reference, LedgerIdError> {
        Self::prefixed("topup", id)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Reference {
    type Err = LedgerIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({})", self.0)
    }
}

impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Reference::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Who owns an account: a person (a cardholder) or an organisation (an
/// operator, a hospital, a fund, the issuer), by reference only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Owner {
    /// A person.
    Person(PersonId),
    /// An organisation, by its code.
    Organisation(String),
}

impl Owner {
    /// The compact text form: `person:<id>` or `org:<code>`.
    pub fn to_text(&self) -> String {
        match self {
            Owner::Person(p) => format!("person:{p}"),
            Owner::Organisation(o) => format!("org:{o}"),
        }
    }

    /// Parses [`Owner::to_text`]'s form.
    pub fn from_text(text: &str) -> Result<Owner, LedgerIdError> {
        let bad = || LedgerIdError::BadText {
            kind: "owner",
            max: 64,
        };
        if let Some(p) = text.strip_prefix("person:") {
            PersonId::parse(p).map(Owner::Person).map_err(|_| bad())
        } else if let Some(o) = text.strip_prefix("org:") {
            if valid_text(o, 64) {
                Ok(Owner::Organisation(o.to_owned()))
            } else {
                Err(bad())
            }
        } else {
            Err(bad())
        }
    }
}
