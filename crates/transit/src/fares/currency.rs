//! ISO 4217 currencies and their minor units, for feeds priced in any currency.
//!
//! Amounts are kept as integers of the currency's minor unit (fen for CNY,
//! cents for USD, yen for JPY, fils for KWD) inside a [`Money`]; a feed's
//! amount with more decimals than its currency has is an error, never rounded.

use std::fmt;

use citycard_core::Money;
use serde::{Deserialize, Serialize};

/// Active ISO 4217 codes with a minor unit other than 2.
const MINOR_UNITS: &[(&str, u8)] = &[
    ("BHD", 3),
    ("BIF", 0),
    ("CLF", 4),
    ("CLP", 0),
    ("DJF", 0),
    ("GNF", 0),
    ("IQD", 3),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KMF", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("LYD", 3),
    ("OMR", 3),
    ("PYG", 0),
    ("RWF", 0),
    ("TND", 3),
    ("UGX", 0),
    ("UYI", 0),
    ("UYW", 4),
    ("VND", 0),
    ("VUV", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("XPF", 0),
];

/// Active ISO 4217 codes with two decimals.
const TWO_DECIMALS: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV \
BRL BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN \
ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW \
KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN \
NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS \
SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG \
YER ZAR ZMW ZWG ZWL";

/// A currency: its ISO 4217 code and how many decimals its minor unit has.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Currency {
    code: [u8; 3],
    minor_units: u8,
}

impl Currency {
    /// The renminbi, citycard's own currency.
    pub const CNY: Currency = Currency {
        code: *b"CNY",
        minor_units: 2,
    };

    /// The currency of an ISO 4217 code (upper case), if it is an active one.
    pub fn from_code(code: &str) -> Option<Currency> {
        let bytes: [u8; 3] = code.as_bytes().try_into().ok()?;
        if !bytes.iter().all(u8::is_ascii_uppercase) {
            return None;
        }
        let minor_units = match MINOR_UNITS.iter().find(|(c, _)| *c == code) {
            Some((_, m)) => *m,
            None if TWO_DECIMALS.split_ascii_whitespace().any(|c| c == code) => 2,
            None => return None,
        };
        Some(Currency {
            code: bytes,
            minor_units,
        })
    }

    /// The ISO 4217 code.
    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.code).unwrap_or("???")
    }

    /// Decimals of the minor unit (2 for CNY, 0 for JPY, 3 for KWD).
    pub fn minor_units(&self) -> u8 {
        self.minor_units
    }

    /// Reads a decimal amount into minor units; more decimals than the
    /// currency has are an error unless they are zeros.
    pub fn parse_amount(&self, text: &str) -> Option<Money> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if digits.contains('.') && frac.is_empty() {
            return None;
        }
        let places = usize::from(self.minor_units);
        let (kept, dropped) = frac.split_at(frac.len().min(places));
        if dropped.bytes().any(|b| b != b'0') {
            return None;
        }
        let mut value: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
        for _ in 0..places {
            value = value.checked_mul(10)?;
        }
        let mut f: i64 = if kept.is_empty() {
            0
        } else {
            kept.parse().ok()?
        };
        for _ in kept.len()..places {
            f = f.checked_mul(10)?;
        }
        let v = value.checked_add(f)?;
        let v = if negative { v.checked_neg()? } else { v };
        if v == i64::MIN {
            return None;
        }
        Some(Money::from_fen(v))
    }

    /// An amount for people: `¥2.50` for CNY, else `USD 2.75`, `JPY 210`.
    pub fn format(&self, amount: Money) -> String {
        if *self == Currency::CNY {
            return format!("{amount:#}");
        }
        format!("{} {}", self.code(), self.decimal(amount))
    }

    /// An amount as a plain decimal with the currency's places: `2.50`, `210`, `-1.125`.
    pub fn decimal(&self, amount: Money) -> String {
        let minor = amount.fen();
        let sign = if minor < 0 { "-" } else { "" };
        let abs = minor.unsigned_abs();
        if self.minor_units == 0 {
            return format!("{sign}{abs}");
        }
        let scale = 10u64.pow(u32::from(self.minor_units));
        format!(
            "{sign}{}.{:0width$}",
            abs / scale,
            abs % scale,
            width = usize::from(self.minor_units)
        )
    }
}

impl Default for Currency {
    fn default() -> Self {
        Currency::CNY
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.code().to_owned()
    }
}

impl TryFrom<String> for Currency {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Currency::from_code(&s).ok_or_else(|| format!("{s:?} is not an ISO 4217 currency code"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_units_follow_iso_4217() {
        let usd = Currency::from_code("USD").unwrap();
        let jpy = Currency::from_code("JPY").unwrap();
        let kwd = Currency::from_code("KWD").unwrap();
        assert_eq!(usd.parse_amount("2.75"), Some(Money::from_fen(275)));
        assert_eq!(usd.parse_amount("-1.5"), Some(Money::from_fen(-150)));
        assert_eq!(usd.parse_amount("2.750"), Some(Money::from_fen(275)));
        assert_eq!(usd.parse_amount("2.755"), None);
        assert_eq!(jpy.parse_amount("210"), Some(Money::from_fen(210)));
        assert_eq!(jpy.parse_amount("210.5"), None);
        assert_eq!(kwd.parse_amount("0.125"), Some(Money::from_fen(125)));
        assert_eq!(usd.parse_amount("1."), None);
        assert_eq!(usd.parse_amount("abc"), None);
        assert_eq!(usd.parse_amount("99999999999999999999"), None);
        assert_eq!(Currency::from_code("usd"), None);
        assert_eq!(Currency::from_code("XYZ"), None);
        assert_eq!(jpy.format(Money::from_fen(210)), "JPY 210");
        assert_eq!(kwd.format(Money::from_fen(-1125)), "KWD -1.125");
        assert_eq!(Currency::CNY.format(Money::from_fen(250)), "¥2.50");
        assert_eq!(Currency::CNY.decimal(Money::from_fen(-200)), "-2.00");
    }
}
