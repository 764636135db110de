//! Typed identifiers and the `IdGenerator` port.
//!
//! Every entity has its own id type, made by [`define_id!`](crate::define_id):
//! a newtype over a string with a private field, so a card id can never be
//! passed where a person id is expected. Ids are validated on parsing:
//! non-empty, at most [`MAX_ID_LEN`] bytes, and only ASCII letters, digits and
//! `-`, `_`, `.`, `:`. They are not secret and print as they are; personal
//! data never goes into an id.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::{Clock, SystemClock};
use crate::error::{ClassifiedError, ErrorClass};

/// The longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Why a text is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The id was empty.
    #[error("{kind} is empty")]
    Empty {
        /// The id type, e.g. "card id".
        kind: &'static str,
    },
    /// The id was longer than allowed.
    #[error("{kind} is {len} bytes long; at most {max} are allowed")]
    TooLong {
        /// The id type.
        kind: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The id has a character outside the safe set.
    #[error(
        "{kind} has an invalid character {found:?} at position {position}: use letters, digits, '-', '_', '.' or ':'"
    )]
    InvalidCharacter {
        /// The id type.
        kind: &'static str,
        /// The character found.
        found: char,
        /// Its position, counting characters from 0.
        position: usize,
    },
}

impl ClassifiedError for IdError {
    fn class(&self) -> ErrorClass {
        ErrorClass::InvalidInput
    }
}

/// Checks a text against the id rules; used by every id type.
pub fn validate_id(kind: &'static str, text: &str, max: usize) -> Result<(), IdError> {
    if text.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if let Some((position, found)) = text
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(IdError::InvalidCharacter {
            kind,
            found,
            position,
        });
    }
    if text.len() > max {
        return Err(IdError::TooLong {
            kind,
            len: text.len(),
            max,
        });
    }
    Ok(())
}

/// Defines a typed id: a string newtype with validated parsing, `Display`,
/// `AsRef<str>` and serde as a string.
///
/// ```
/// citycard_core::define_id!(
///     /// A bus route's id.
///     RouteId, "route id", "route"
/// );
///
/// let id: RouteId = "B-101".parse()?;
/// assert_eq!(id.as_str(), "B-101");
/// assert!("bad id!".parse::<RouteId>().is_err());
/// let generated = RouteId::generate(&citycard_core::SequentialIdGenerator::new());
/// assert_eq!(generated.as_str(), "route-00000001");
/// # Ok::<(), citycard_core::IdError>(())
/// ```
#[macro_export]
macro_rules! define_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(::std::string::String);

        impl $name {
            /// What this id names, for messages.
            pub const KIND: &'static str = $kind;
            /// The prefix of generated ids of this type.
            pub const PREFIX: &'static str = $prefix;

            /// Parses and validates an id.
            pub fn parse(text: &str) -> ::std::result::Result<Self, $crate::IdError> {
                $crate::ids::validate_id($kind, text, $crate::ids::MAX_ID_LEN)?;
                Ok(Self(text.to_owned()))
            }

            /// A new id from a generator.
            pub fn generate(generator: &dyn $crate::IdGenerator) -> Self {
                Self(generator.next_id($prefix))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id as an owned string.
            pub fn into_string(self) -> ::std::string::String {
                self.0
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::IdError;
            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl ::std::convert::AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl $crate::__private::serde::Serialize for $name {
            fn serialize<S: $crate::__private::serde::Serializer>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> $crate::__private::serde::Deserialize<'de> for $name {
            fn deserialize<D: $crate::__private::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {
                let text = <::std::borrow::Cow<'de, str> as $crate::__private::serde::Deserialize>::deserialize(d)?;
                Self::parse(&text).map_err($crate::__private::serde::de::Error::custom)
            }
        }
    };
}

define_id!(
    /// A person known to the card system (a cardholder, guardian or family member).
    PersonId, "person id", "psn"
);
define_id!(
    /// An operator of the issuer's back office.
    OperatorId, "operator id", "opr"
);
define_id!(
    /// An account on a payment platform (an Alipay or WeChat Pay user, say).
    PlatformAccountId, "platform account id", "pac"
);
define_id!(
    /// A delegation granted by a cardholder to a family member.
    DelegationId, "delegation id", "dlg"
);
define_id!(
    /// One record in the audit log.
    AuditId, "audit id", "aud"
);

/// The port that makes new ids.
///
/// Ids must be unique across the deployment; a host may plug in its own
/// (a database sequence, a snowflake service).
pub trait IdGenerator: Send + Sync {
    /// A new unique id that starts with `prefix` and a `-`.
    fn next_id(&self, prefix: &str) -> String;
}

/// Time-ordered random ids: `prefix-` then 26 Crockford base-32 characters
/// (48 bits of milliseconds and 80 random bits, as in ULID), so ids sort by
/// creation time and never collide in practice.
pub struct TimeOrderedIdGenerator {
    clock: Box<dyn Clock>,
    last: Mutex<(u64, u128)>,
}

impl TimeOrderedIdGenerator {
    /// A generator on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Box::new(SystemClock))
    }

    /// A generator on the given clock.
    pub fn with_clock(clock: Box<dyn Clock>) -> Self {
        Self {
            clock,
            last: Mutex::new((0, 0)),
        }
    }
}

impl Default for TimeOrderedIdGenerator {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TimeOrderedIdGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TimeOrderedIdGenerator")
    }
}

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

impl IdGenerator for TimeOrderedIdGenerator {
    fn next_id(&self, prefix: &str) -> String {
        let millis =
            u64::try_from(self.clock.now().timestamp_millis()).unwrap_or(0) & ((1 << 48) - 1);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        // Within one millisecond the random part counts up, keeping ids ordered.
        let random = if millis <= last.0 {
            last.1.wrapping_add(1) & ((1u128 << 80) - 1)
        } else {
            let mut bytes = [0u8; 16];
            // Without system randomness fall back to the monotonic counter; ids stay unique.
            let _ = getrandom::fill(&mut bytes[..10]);
            u128::from_le_bytes(bytes) & ((1u128 << 80) - 1)
        };
        let millis = millis.max(last.0);
        *last = (millis, random);
        drop(last);
        let value = (u128::from(millis) << 80) | random;
        let mut out = String::with_capacity(prefix.len() + 27);
        out.push_str(prefix);
        out.push('-');
        for i in (0..26).rev() {
            let index = ((value >> (i * 5)) & 31) as usize;
            out.push(char::from(CROCKFORD[index]));
        }
        out
    }
}

/// Deterministic ids for tests and demos: `prefix-00000001`, `prefix-00000002`, …
/// with one counter shared by all prefixes.
#[derive(Debug, Default)]
pub struct SequentialIdGenerator {
    next: AtomicU64,
}

impl SequentialIdGenerator {
    /// A generator that starts at 1.
    pub fn new() -> Self {
        Self::starting_at(1)
    }

    /// A generator whose first id has the given number.
    pub fn starting_at(first: u64) -> Self {
        Self {
            next: AtomicU64::new(first),
        }
    }
}

impl IdGenerator for SequentialIdGenerator {
    fn next_id(&self, prefix: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{n:08}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn ids_validate() {
        assert!(PersonId::parse("psn-1").is_ok());
        assert_eq!(
            PersonId::parse(""),
            Err(IdError::Empty { kind: "person id" })
        );
        assert_eq!(
            PersonId::parse("a b"),
            Err(IdError::InvalidCharacter {
                kind: "person id",
                found: ' ',
                position: 1
            })
        );
        assert!(matches!(
            PersonId::parse(&"a".repeat(65)),
            Err(IdError::TooLong { len: 65, .. })
        ));
        assert!(PersonId::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn ids_serialize_as_strings_and_validate_on_the_way_in() {
        let id = PersonId::parse("psn-7").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"psn-7\"");
        assert!(serde_json::from_str::<PersonId>("\"no way\"").is_err());
    }

    #[test]
    fn time_ordered_ids_are_unique_ordered_and_valid() {
        let clock = ManualClock::at_ymd_hms(2026, 1, 1, 8, 0, 0);
        let generator = TimeOrderedIdGenerator::with_clock(Box::new(clock.clone()));
        let mut ids = Vec::new();
        for i in 0..1000 {
            if i % 100 == 0 {
                clock.advance(chrono::Duration::milliseconds(1));
            }
            ids.push(PersonId::generate(&generator));
        }
        let unique: HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids);
        assert!(
            ids.iter()
                .all(|id| id.as_str().starts_with("psn-") && id.as_str().len() == 30)
        );
    }

    #[test]
    fn sequential_ids_are_deterministic() {
        let g = SequentialIdGenerator::new();
        assert_eq!(PersonId::generate(&g).as_str(), "psn-00000001");
        assert_eq!(OperatorId::generate(&g).as_str(), "opr-00000002");
    }

    proptest! {
        #[test]
        fn valid_ids_round_trip(text in "[A-Za-z0-9_.:-]{1,64}") {
            let id = PersonId::parse(&text).unwrap();
            prop_assert_eq!(id.to_string(), text.clone());
            prop_assert_eq!(id.to_string().parse::<PersonId>().unwrap(), id);
        }

        #[test]
        fn parsing_any_text_never_panics(text in "\\PC{0,80}") {
            let _ = PersonId::parse(&text);
        }
    }
}
