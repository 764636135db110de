//! `Sensitive<T>`: personal data that never prints in full.
//!
//! ID numbers, names and phone numbers are wrapped in [`Sensitive`]. Its
//! `Debug` and `Display` show a masked form (first 3 and last 4 characters by
//! default), so the value cannot leak through logs, errors or `{:?}`. Serde
//! keeps the real value, because serialisation is how it reaches encrypted
//! storage; never serialise a `Sensitive` into a log line.
//!
//! Card numbers have one masking rule wherever they are shown (Debug and
//! Display of card types and requests, the command line, the demo):
//! [`mask_card_number`], first 3 and last 4 characters (`330*********1003`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How much of a sensitive value stays visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mask {
    /// Characters kept at the start.
    pub keep_first: u8,
    /// Characters kept at the end.
    pub keep_last: u8,
}

impl Mask {
    /// First 3 and last 4 kept: `330***********123X`, `138****5678`.
    pub const DEFAULT: Mask = Mask {
        keep_first: 3,
        keep_last: 4,
    };
    /// Only the first character kept, as for a name: `张**`.
    pub const NAME: Mask = Mask {
        keep_first: 1,
        keep_last: 0,
    };
    /// First 3 and last 4 kept, the one rule for card numbers: `330*********1003`.
    pub const CARD_NUMBER: Mask = Mask {
        keep_first: 3,
        keep_last: 4,
    };
    /// Nothing kept.
    pub const FULL: Mask = Mask {
        keep_first: 0,
        keep_last: 0,
    };

    /// Writes the masked form of `value`: each hidden character becomes `*`.
    /// A value too short to hide anything between the kept ends is masked whole.
    pub fn write(self, value: &str, out: &mut dyn fmt::Write) -> fmt::Result {
        let len = value.chars().count();
        let (first, last) = (usize::from(self.keep_first), usize::from(self.keep_last));
        if len <= first + last {
            for _ in 0..len {
                out.write_char('*')?;
            }
            return Ok(());
        }
        for (i, c) in value.chars().enumerate() {
            if i < first || i >= len - last {
                out.write_char(c)?;
            } else {
                out.write_char('*')?;
            }
        }
        Ok(())
    }

    /// The masked form as a string.
    pub fn apply(self, value: &str) -> String {
        let mut out = String::with_capacity(value.len());
        // Writing to a String cannot fail.
        let _ = self.write(value, &mut out);
        out
    }
}

/// A card number as every `Debug`, `Display`, CLI and demo line shows it:
/// [`Mask::CARD_NUMBER`] over the number without spaces (`330*********1003`).
pub fn mask_card_number(number: &str) -> String {
    let compact: String = number.chars().filter(|c| !c.is_whitespace()).collect();
    Mask::CARD_NUMBER.apply(&compact)
}

impl Default for Mask {
    fn default() -> Self {
        Mask::DEFAULT
    }
}

/// A value whose `Debug` and `Display` are masked.
///
/// ```
/// use citycard_core::{Mask, Sensitive};
///
/// let phone = Sensitive::new("13812345678".to_string());
/// assert_eq!(phone.to_string(), "138****5678");
/// assert_eq!(format!("{phone:?}"), "Sensitive(138****5678)");
/// let name = Sensitive::with_mask("张三丰".to_string(), Mask::NAME);
/// assert_eq!(name.to_string(), "张**");
/// assert_eq!(phone.expose(), "13812345678");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Sensitive<T> {
    value: T,
    mask: Mask,
}

impl<T> Sensitive<T> {
    /// Wraps a value with the default mask.
    pub fn new(value: T) -> Self {
        Self::with_mask(value, Mask::DEFAULT)
    }

    /// Wraps a value with a chosen mask.
    pub fn with_mask(value: T, mask: Mask) -> Self {
        Self { value, mask }
    }

    /// The real value. Named loudly so every unmasked use is easy to find in review.
    pub fn expose(&self) -> &T {
        &self.value
    }

    /// Unwraps the real value.
    pub fn into_exposed(self) -> T {
        self.value
    }

    /// The mask in use.
    pub fn mask(&self) -> Mask {
        self.mask
    }
}

impl<T: AsRef<str>> Sensitive<T> {
    /// The masked text.
    pub fn masked(&self) -> String {
        self.mask.apply(self.value.as_ref())
    }
}

impl<T: AsRef<str>> fmt::Display for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.mask.write(self.value.as_ref(), f)
    }
}

impl<T: AsRef<str>> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sensitive(")?;
        self.mask.write(self.value.as_ref(), f)?;
        f.write_str(")")
    }
}

impl<T: Serialize> Serialize for Sensitive<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Sensitive<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Sensitive::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn masks_id_numbers_phones_and_names() {
        let id = Sensitive::new("33010619900307123X");
        assert_eq!(id.to_string(), "330***********123X");
        assert_eq!(format!("{id:?}"), "Sensitive(330***********123X)");
        assert_eq!(Sensitive::with_mask("李四", Mask::NAME).to_string(), "李*");
        assert_eq!(Sensitive::new("1234567").to_string(), "*******");
        assert_eq!(Sensitive::with_mask("abc", Mask::FULL).to_string(), "***");
    }

    #[test]
    fn card_numbers_are_masked_one_way() {
        assert_eq!(mask_card_number("3301000000001003"), "330*********1003");
        assert_eq!(mask_card_number("3301 0000 0000 1003"), "330*********1003");
        assert_eq!(mask_card_number("1234567"), "*******");
    }

    #[test]
    fn serde_keeps_the_real_value() {
        let s = Sensitive::new("13812345678".to_string());
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"13812345678\"");
        let back: Sensitive<String> = serde_json::from_str(&json).unwrap();
        assert_eq!(back.expose(), "13812345678");
    }

    proptest! {
        #[test]
        fn the_hidden_middle_never_shows(value in "[0-9]{8,20}") {
            let shown = Sensitive::new(value.clone()).to_string();
            prop_assert_eq!(shown.chars().count(), value.chars().count());
            let n = value.len();
            prop_assert_eq!(&shown[3..n - 4], "*".repeat(n - 7));
            prop_assert_eq!(&shown[..3], &value[..3]);
        }
    }
}
