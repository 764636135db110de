//! Money: exact amounts of CNY to the fen.
//!
//! [`Money`] is an amount of renminbi with exactly two decimals. Its public
//! face is `rust_decimal::Decimal` ([`Money::to_decimal`],
//! [`Money::from_decimal`]); inside it is held as a count of fen in an `i64`,
//! which makes addition and comparison single machine instructions and makes
//! overflow checks exact. The range is ±92,233,720,368,547,758.07 yuan, far
//! beyond any card system's totals; anything outside is an overflow error,
//! never a wrap.
//!
//! Parsing never rounds: `"1.234"` is an error. Arithmetic that can produce
//! fractions of a fen (discounts, ratios, percentages) goes through
//! [`round_half_up_to_fen`], the one rounding rule of the whole system.

use std::fmt;
use std::iter::Sum;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{ClassifiedError, ErrorClass};

/// An exact amount of CNY with two decimals (yuan and fen).
///
/// ```
/// use citycard_core::Money;
///
/// let fare: Money = "2.50".parse()?;
/// let topup = Money::from_yuan(50);
/// assert_eq!(topup.checked_sub(fare)?.to_string(), "47.50");
/// assert_eq!(format!("{fare:#}"), "¥2.50");
/// assert_eq!(Money::from_fen(-50).to_string(), "-0.50");
/// # Ok::<(), citycard_core::MoneyError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money {
    fen: i64,
}

/// What went wrong with an amount of money.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MoneyError {
    /// The text was empty (or only spaces).
    #[error("amount is empty: enter an amount such as 12.30")]
    Empty,
    /// The text has a character that cannot be part of an amount.
    #[error(
        "amount has an invalid character {found:?} at position {position}: use digits, one '.', and an optional leading '-'"
    )]
    InvalidCharacter {
        /// The character found.
        found: char,
        /// Its position, counting characters from 0.
        position: usize,
    },
    /// The text is not shaped like an amount (e.g. `"."`, `"-"`, `"1."`, `"1.2.3"`).
    #[error("amount is malformed: write it as yuan with at most two decimals, such as 12.30")]
    Malformed,
    /// More than two decimals: fen is the smallest unit and nothing is rounded silently.
    #[error("amount has {decimals} decimals but at most 2 are allowed (fen is the smallest unit)")]
    TooManyDecimals {
        /// How many decimals the text had.
        decimals: usize,
    },
    /// The amount is outside the range Money can hold.
    #[error("amount is too large to represent")]
    Overflow,
    /// A decimal value with a fraction of a fen was given where an exact amount is needed.
    #[error("amount {0} is not a whole number of fen: round it explicitly first")]
    NotWholeFen(Decimal),
}

impl ClassifiedError for MoneyError {
    fn class(&self) -> ErrorClass {
        ErrorClass::InvalidInput
    }
}

const MAX_INT_DIGITS: usize = 17;

impl Money {
    /// Zero yuan.
    pub const ZERO: Money = Money { fen: 0 };
    /// The largest amount Money can hold.
    pub const MAX: Money = Money { fen: i64::MAX };
    /// The smallest (most negative) amount Money can hold.
    pub const MIN: Money = Money { fen: i64::MIN + 1 };

    /// An amount from a whole number of fen (1 yuan = 100 fen).
    pub const fn from_fen(fen: i64) -> Money {
        // i64::MIN has no negation; it is kept out of range so `checked_neg` is total.
        if fen == i64::MIN {
            Money::MIN
        } else {
            Money { fen }
        }
    }

    /// An amount from a whole number of yuan.
    ///
    /// Saturates at [`Money::MAX`] / [`Money::MIN`]; use
    /// [`Money::checked_from_yuan`] when the input is untrusted.
    pub const fn from_yuan(yuan: i64) -> Money {
        match yuan.checked_mul(100) {
            Some(fen) => Money::from_fen(fen),
            None if yuan > 0 => Money::MAX,
            None => Money::MIN,
        }
    }

    /// An amount from a whole number of yuan, or an overflow error.
    pub const fn checked_from_yuan(yuan: i64) -> Result<Money, MoneyError> {
        match yuan.checked_mul(100) {
            Some(fen) if fen != i64::MIN => Ok(Money { fen }),
            _ => Err(MoneyError::Overflow),
        }
    }

    /// An amount from a decimal number of yuan that must be a whole number of fen.
    pub fn from_decimal(yuan: Decimal) -> Result<Money, MoneyError> {
        let fen = yuan
            .checked_mul(Decimal::ONE_HUNDRED)
            .ok_or(MoneyError::Overflow)?;
        if !fen.fract().is_zero() {
            return Err(MoneyError::NotWholeFen(yuan));
        }
        let fen: i64 = fen.trunc().try_into().map_err(|_| MoneyError::Overflow)?;
        if fen == i64::MIN {
            return Err(MoneyError::Overflow);
        }
        Ok(Money { fen })
    }

    /// The amount as a count of fen.
    pub const fn fen(self) -> i64 {
        self.fen
    }

    /// The amount in yuan as a `Decimal` with scale 2.
    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.fen, 2)
    }

    /// True for zero.
    pub const fn is_zero(self) -> bool {
        self.fen == 0
    }

    /// True for amounts above zero.
    pub const fn is_positive(self) -> bool {
        self.fen > 0
    }

    /// True for amounts below zero.
    pub const fn is_negative(self) -> bool {
        self.fen < 0
    }

    /// The absolute value (always representable).
    pub const fn abs(self) -> Money {
        Money {
            fen: self.fen.abs(),
        }
    }

    /// `self + other`, or an overflow error.
    #[inline]
    pub const fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        match self.fen.checked_add(other.fen) {
            Some(fen) if fen != i64::MIN => Ok(Money { fen }),
            _ => Err(MoneyError::Overflow),
        }
    }

    /// `self - other`, or an overflow error.
    #[inline]
    pub const fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        match self.fen.checked_sub(other.fen) {
            Some(fen) if fen != i64::MIN => Ok(Money { fen }),
            _ => Err(MoneyError::Overflow),
        }
    }

    /// `-self`; never fails because the range is symmetric.
    #[inline]
    pub const fn checked_neg(self) -> Result<Money, MoneyError> {
        Ok(Money { fen: -self.fen })
    }

    /// The smaller of two amounts.
    pub fn min(self, other: Money) -> Money {
        Ord::min(self, other)
    }

    /// The larger of two amounts.
    pub fn max(self, other: Money) -> Money {
        Ord::max(self, other)
    }

    /// `self × ratio`, rounded half-up to the fen by [`round_half_up_to_fen`].
    ///
    /// ```
    /// use citycard_core::Money;
    /// use rust_decimal::Decimal;
    ///
    /// let fare = Money::from_fen(250);
    /// // 90% of ¥2.50 is ¥2.25; 85% is ¥2.125 which rounds half-up to ¥2.13.
    /// assert_eq!(fare.mul_ratio(Decimal::new(90, 2))?, Money::from_fen(225));
    /// assert_eq!(fare.mul_ratio(Decimal::new(85, 2))?, Money::from_fen(213));
    /// # Ok::<(), citycard_core::MoneyError>(())
    /// ```
    pub fn mul_ratio(self, ratio: Decimal) -> Result<Money, MoneyError> {
        let exact = self
            .to_decimal()
            .checked_mul(ratio)
            .ok_or(MoneyError::Overflow)?;
        round_half_up_to_fen(exact)
    }

    /// `self × percent / 100`, rounded half-up to the fen.
    pub fn mul_percent(self, percent: Decimal) -> Result<Money, MoneyError> {
        let ratio = percent
            .checked_div(Decimal::ONE_HUNDRED)
            .ok_or(MoneyError::Overflow)?;
        self.mul_ratio(ratio)
    }

    /// `self × count` (a whole number), or an overflow error.
    pub const fn checked_mul_int(self, count: i64) -> Result<Money, MoneyError> {
        match self.fen.checked_mul(count) {
            Some(fen) if fen != i64::MIN => Ok(Money { fen }),
            _ => Err(MoneyError::Overflow),
        }
    }

    /// Sums amounts, failing on overflow instead of wrapping.
    pub fn checked_sum<I: IntoIterator<Item = Money>>(items: I) -> Result<Money, MoneyError> {
        items
            .into_iter()
            .try_fold(Money::ZERO, |acc, m| acc.checked_add(m))
    }

    /// Parses an amount of yuan: optional `-`, digits, optionally `.` and one or two digits.
    ///
    /// Surrounding ASCII spaces are ignored; nothing else is accepted (no `+`,
    /// no exponent, no thousands separators, no currency sign).
    pub fn parse(text: &str) -> Result<Money, MoneyError> {
        let trimmed = text.trim_matches(' ');
        let bytes = trimmed.as_bytes();
        if bytes.is_empty() {
            return Err(MoneyError::Empty);
        }
        let lead = text.len() - text.trim_start_matches(' ').len();
        let (negative, digits) = match bytes[0] {
            b'-' => (true, &bytes[1..]),
            _ => (false, bytes),
        };
        let offset = lead + usize::from(negative);
        let mut int_part: i64 = 0;
        let mut int_digits = 0usize;
        let mut has_int = false;
        let mut frac: i64 = 0;
        let mut frac_digits = 0usize;
        let mut seen_dot = false;
        for (i, &b) in digits.iter().enumerate() {
            match b {
                b'0'..=b'9' => {
                    let d = i64::from(b - b'0');
                    if seen_dot {
                        frac_digits += 1;
                        if frac_digits <= 2 {
                            frac = frac * 10 + d;
                        }
                    } else {
                        has_int = true;
                        // Leading zeros do not count towards the range.
                        if int_part != 0 || d != 0 {
                            int_digits += 1;
                        }
                        if int_digits > MAX_INT_DIGITS {
                            return Err(MoneyError::Overflow);
                        }
                        int_part = int_part * 10 + d;
                    }
                }
                b'.' if !seen_dot => seen_dot = true,
                b'.' => return Err(MoneyError::Malformed),
                _ => {
                    let position = char_position(text, offset + i);
                    let found = text[offset + i..].chars().next().unwrap_or('\u{fffd}');
                    return Err(MoneyError::InvalidCharacter { found, position });
                }
            }
        }
        if !has_int || (seen_dot && frac_digits == 0) {
            return Err(MoneyError::Malformed);
        }
        if frac_digits > 2 {
            return Err(MoneyError::TooManyDecimals {
                decimals: frac_digits,
            });
        }
        if frac_digits == 1 {
            frac *= 10;
        }
        let fen = int_part
            .checked_mul(100)
            .and_then(|f| f.checked_add(frac))
            .ok_or(MoneyError::Overflow)?;
        Ok(Money {
            fen: if negative { -fen } else { fen },
        })
    }
}

fn char_position(text: &str, byte_index: usize) -> usize {
    text.char_indices()
        .take_while(|(i, _)| *i < byte_index)
        .count()
}

/// Rounds a decimal amount of yuan half-up (away from zero at .5) to the fen.
///
/// This is the one rounding rule of citycard: every discount, ratio and
/// insurance share passes through it. `2.125 → 2.13`, `-2.125 → -2.13`,
/// `2.124 → 2.12`.
pub fn round_half_up_to_fen(yuan: Decimal) -> Result<Money, MoneyError> {
    Money::from_decimal(yuan.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero))
}

impl FromStr for Money {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Money::parse(s)
    }
}

impl fmt::Display for Money {
    /// `12.30`, or with the alternate flag `{:#}`, `¥12.30`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.fen < 0 { "-" } else { "" };
        let abs = self.fen.unsigned_abs();
        let currency = if f.alternate() { "¥" } else { "" };
        write!(f, "{sign}{currency}{}.{:02}", abs / 100, abs % 100)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({self})")
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Money::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Checked sum: `iter.sum::<Result<Money, MoneyError>>()`.
///
/// There is deliberately no `Sum for Money`: a sum that could only report
/// overflow by panicking has no place near money.
impl Sum<Money> for Result<Money, MoneyError> {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Self {
        Money::checked_sum(iter)
    }
}

/// Checked sum over references.
impl<'a> Sum<&'a Money> for Result<Money, MoneyError> {
    fn sum<I: Iterator<Item = &'a Money>>(iter: I) -> Self {
        Money::checked_sum(iter.copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_accepted_forms() {
        assert_eq!(Money::parse("12").unwrap().fen(), 1200);
        assert_eq!(Money::parse("12.3").unwrap().fen(), 1230);
        assert_eq!(Money::parse("12.30").unwrap().fen(), 1230);
        assert_eq!(Money::parse("-0.50").unwrap().fen(), -50);
        assert_eq!(Money::parse("0").unwrap(), Money::ZERO);
        assert_eq!(Money::parse(" 7.05 ").unwrap().fen(), 705);
        assert_eq!(Money::parse("-0").unwrap(), Money::ZERO);
        assert_eq!(Money::parse("000000000000000000001.5").unwrap().fen(), 150);
    }

    #[test]
    fn rejects_each_bad_form_with_its_own_error() {
        assert_eq!(
            Money::parse("1.234"),
            Err(MoneyError::TooManyDecimals { decimals: 3 })
        );
        assert_eq!(
            Money::parse("abc"),
            Err(MoneyError::InvalidCharacter {
                found: 'a',
                position: 0
            })
        );
        assert_eq!(Money::parse(""), Err(MoneyError::Empty));
        assert_eq!(Money::parse("   "), Err(MoneyError::Empty));
        assert_eq!(
            Money::parse("1e3"),
            Err(MoneyError::InvalidCharacter {
                found: 'e',
                position: 1
            })
        );
        assert_eq!(
            Money::parse("99999999999999999999"),
            Err(MoneyError::Overflow)
        );
        assert_eq!(Money::parse("."), Err(MoneyError::Malformed));
        assert_eq!(Money::parse("-"), Err(MoneyError::Malformed));
        assert_eq!(Money::parse("1."), Err(MoneyError::Malformed));
        assert_eq!(Money::parse(".5"), Err(MoneyError::Malformed));
        assert_eq!(Money::parse("1.2.3"), Err(MoneyError::Malformed));
        assert_eq!(
            Money::parse("+1"),
            Err(MoneyError::InvalidCharacter {
                found: '+',
                position: 0
            })
        );
        assert_eq!(
            Money::parse("¥1"),
            Err(MoneyError::InvalidCharacter {
                found: '¥',
                position: 0
            })
        );
    }

    #[test]
    fn the_largest_seventeen_digit_amount_still_parses() {
        let m = Money::parse("92233720368547758.07").unwrap();
        assert_eq!(m, Money::MAX);
        assert_eq!(
            Money::parse("92233720368547758.08"),
            Err(MoneyError::Overflow)
        );
    }

    #[test]
    fn displays_plain_and_with_the_yuan_sign() {
        assert_eq!(Money::from_fen(1230).to_string(), "12.30");
        assert_eq!(Money::from_fen(-50).to_string(), "-0.50");
        assert_eq!(format!("{:#}", Money::from_fen(1230)), "¥12.30");
        assert_eq!(format!("{:#}", Money::from_fen(-5)), "-¥0.05");
        assert_eq!(format!("{:?}", Money::from_fen(1)), "Money(0.01)");
    }

    #[test]
    fn checked_arithmetic_reports_overflow() {
        assert_eq!(
            Money::MAX.checked_add(Money::from_fen(1)),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            Money::MIN.checked_sub(Money::from_fen(1)),
            Err(MoneyError::Overflow)
        );
        assert_eq!(Money::MIN.checked_neg(), Ok(Money::MAX));
        assert_eq!(Money::from_fen(i64::MIN), Money::MIN);
        assert_eq!(
            Money::checked_from_yuan(i64::MAX),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            [Money::MAX, Money::from_fen(1)]
                .into_iter()
                .sum::<Result<Money, _>>(),
            Err(MoneyError::Overflow)
        );
    }

    #[test]
    fn rounding_is_half_up_away_from_zero() {
        let r = |s: &str| round_half_up_to_fen(s.parse().unwrap()).unwrap().fen();
        assert_eq!(r("2.125"), 213);
        assert_eq!(r("2.124"), 212);
        assert_eq!(r("-2.125"), -213);
        assert_eq!(r("0.005"), 1);
        assert_eq!(r("0.0049999"), 0);
    }

    #[test]
    fn decimals_with_fractions_of_a_fen_are_refused() {
        assert_eq!(
            Money::from_decimal("1.005".parse().unwrap()),
            Err(MoneyError::NotWholeFen("1.005".parse().unwrap()))
        );
        assert_eq!(
            Money::from_decimal("1.50".parse().unwrap()),
            Ok(Money::from_fen(150))
        );
    }

    #[test]
    fn serde_is_a_string() {
        let json = serde_json::to_string(&Money::from_fen(1230)).unwrap();
        assert_eq!(json, "\"12.30\"");
        let back: Money = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Money::from_fen(1230));
        assert!(serde_json::from_str::<Money>("\"1.234\"").is_err());
    }

    proptest! {
        #[test]
        fn parse_of_display_is_identity(fen in (i64::MIN + 1)..=i64::MAX) {
            let m = Money::from_fen(fen);
            prop_assert_eq!(Money::parse(&m.to_string()), Ok(m));
        }

        #[test]
        fn decimal_round_trip(fen in (i64::MIN + 1)..=i64::MAX) {
            let m = Money::from_fen(fen);
            prop_assert_eq!(Money::from_decimal(m.to_decimal()), Ok(m));
        }

        #[test]
        fn checked_sum_equals_exact_decimal_sum(fens in proptest::collection::vec(any::<i64>(), 0..20)) {
            let items: Vec<Money> = fens.iter().map(|&f| Money::from_fen(f)).collect();
            let exact: i128 = items.iter().map(|m| i128::from(m.fen())).sum();
            match Money::checked_sum(items) {
                Ok(sum) => prop_assert_eq!(i128::from(sum.fen()), exact),
                // Overflow may only be reported when some prefix really leaves the range.
                Err(e) => {
                    prop_assert_eq!(e, MoneyError::Overflow);
                    let mut acc: i128 = 0;
                    let mut left = false;
                    for f in &fens {
                        acc += i128::from(Money::from_fen(*f).fen());
                        if acc > i128::from(i64::MAX) || acc <= i128::from(i64::MIN) { left = true; }
                    }
                    prop_assert!(left);
                }
            }
        }

        #[test]
        fn rounding_is_half_up_at_every_midpoint(fen in -1_000_000_000i64..1_000_000_000) {
            // fen + 0.5 fen is a midpoint; it rounds away from zero.
            let midpoint = Decimal::new(fen * 10 + if fen < 0 { -5 } else { 5 }, 3);
            let expected = if fen < 0 { fen - 1 } else { fen + 1 };
            prop_assert_eq!(round_half_up_to_fen(midpoint).unwrap().fen(), expected);
            // Just below the midpoint rounds toward zero.
            let below = Decimal::new(fen * 100 + if fen < 0 { -49 } else { 49 }, 4);
            prop_assert_eq!(round_half_up_to_fen(below).unwrap().fen(), fen);
        }

        #[test]
        fn parsing_any_text_never_panics(s in "\\PC{0,30}") {
            let _ = Money::parse(&s);
        }

        #[test]
        fn add_then_sub_restores(a in -(1i64<<60)..(1i64<<60), b in -(1i64<<60)..(1i64<<60)) {
            let (a, b) = (Money::from_fen(a), Money::from_fen(b));
            prop_assert_eq!(a.checked_add(b).unwrap().checked_sub(b).unwrap(), a);
            prop_assert_eq!(a.checked_add(b), b.checked_add(a));
        }
    }
}
