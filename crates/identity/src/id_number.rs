//! Chinese ID numbers: parsing, validation, accessors and generation.
//!
//! Every kind shares the GB 11643-1999 layout (18 characters, ISO 7064
//! MOD 11-2 check character): resident ID numbers, residence permits for
//! Hong Kong, Macau and Taiwan residents (address codes `810000`, `820000`,
//! `830000`), and the 2023 Foreign Permanent Resident ID Card (leading `9`).
//! Legacy 15-digit numbers (GB 11643-1989) are upgraded to 18 on parse.
//!
//! Parsing never allocates: the normalised characters live in a fixed
//! `[u8; 18]` inside [`IdNumber`].

use std::fmt;

use chrono::{Datelike, NaiveDate};
use citycard_core::{ClassifiedError, ErrorClass, Mask, Sensitive, civil_date};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::region::{self, Region, RegionCode, Validity};

/// ISO 7064 MOD 11-2 weights for positions 1..17.
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// The check character for each `sum mod 11`.
const CHECK: [u8; 11] = *b"10X98765432";

/// The check character for the first 17 digits (ASCII) of an ID number.
///
/// Bytes other than ASCII digits give a meaningless (but defined) answer.
pub fn check_character(body: &[u8; 17]) -> char {
    // Σ (b - '0')·w = Σ b·w - '0'·Σ w, and Σ w = 100: one multiply-add per
    // digit, which the compiler vectorises.
    let mut sum: u32 = 0;
    for (b, w) in body.iter().zip(WEIGHTS) {
        sum = sum.wrapping_add(u32::from(*b) * w);
    }
    let sum = sum.wrapping_sub(u32::from(b'0') * 100);
    char::from(CHECK[(sum % 11) as usize])
}

/// What kind of document an ID number belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum IdNumberKind {
    /// An 18-digit resident ID number (居民身份证).
    Resident,
    /// A legacy 15-digit resident number, upgraded to 18 digits on parse.
    UpgradedLegacy,
    /// Residence permit for Hong Kong residents (港澳居民居住证, `810000`).
    HongKongResidencePermit,
    /// Residence permit for Macau residents (`820000`).
    MacauResidencePermit,
    /// Residence permit for Taiwan residents (台湾居民居住证, `830000`).
    TaiwanResidencePermit,
    /// Foreign Permanent Resident ID Card, 2023 edition (外国人永久居留身份证).
    ForeignPermanentResident,
}

/// Sex as encoded by the sequence number (odd = male).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    /// Odd sequence.
    Male,
    /// Even sequence.
    Female,
}

/// Which region check a parse applies (for foreign permanent resident cards:
/// whether the province of application and the nationality are checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionCheck {
    /// No region check.
    Off,
    /// The address code existed at some time in GB/T 2260 (the default).
    #[default]
    ExistedAnyTime,
    /// The address code was valid in the birth year (strict).
    ExistedInBirthYear,
}

/// How strictly [`IdNumber::parse_with`] validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct ValidationPolicy {
    /// The region check.
    pub region: RegionCheck,
    /// "Today" for the future-birth-date check; `None` means today's civil
    /// date (Asia/Shanghai) from the system clock.
    pub today: Option<NaiveDate>,
    /// The earliest birth year accepted (default 1800, see [`DEFAULT_EARLIEST_BIRTH_YEAR`]).
    pub earliest_birth_year: u16,
}

/// The earliest birth year accepted by default.
///
/// The domain notes both call pre-1900 dates invalid and list
/// `440524188001010014` (born 1880) as a valid sample; 18-digit numbers were
/// issued to people born in the 1880s, so the default follows the sample
/// (and the upstream `id-validator`), and a policy can raise it to 1900.
pub const DEFAULT_EARLIEST_BIRTH_YEAR: u16 = 1800;

impl Default for ValidationPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl ValidationPolicy {
    /// The default: region existed at any time, today from the system clock.
    pub const fn new() -> Self {
        Self {
            region: RegionCheck::ExistedAnyTime,
            today: None,
            earliest_birth_year: DEFAULT_EARLIEST_BIRTH_YEAR,
        }
    }

    /// The same policy with another earliest accepted birth year (e.g. 1900).
    pub const fn earliest_birth_year(mut self, year: u16) -> Self {
        self.earliest_birth_year = year;
        self
    }

    /// The same policy with another region check.
    pub const fn region_check(mut self, region: RegionCheck) -> Self {
        self.region = region;
        self
    }

    /// The same policy with a fixed "today" (use the service's clock).
    pub const fn today(mut self, today: NaiveDate) -> Self {
        self.today = Some(today);
        self
    }
}

/// Exactly what is wrong with an ID number.
///
/// `Display` and `Debug` name the part that is wrong (birth date, region
/// code, check character) but never echo its digits, so an error can be
/// logged; the fields and `Serialize` keep the values for the caller.
#[derive(Clone, Copy, PartialEq, Eq, Hash, thiserror::Error, Serialize)]
#[serde(rename_all = "snake_case", tag = "error")]
#[non_exhaustive]
pub enum IdNumberError {
    /// Nothing was entered.
    #[error("the id number is empty: enter the 18-character number")]
    Empty,
    /// Neither 15 nor 18 characters.
    #[error(
        "an id number has 18 characters (or 15 for the old format) but this one has {found}: check for missing or extra digits"
    )]
    Length {
        /// Characters found after normalisation.
        found: usize,
    },
    /// A character that cannot appear there.
    #[error(
        "character {found:?} at position {position} is not allowed: only digits, and X as the last of 18 characters"
    )]
    IllegalCharacter {
        /// 1-based position after trimming.
        position: usize,
        /// The character.
        found: char,
    },
    /// The check character does not match the other 17.
    #[error(
        "the check character does not match the other 17 digits: a digit was mistyped, check them"
    )]
    CheckCharacter {
        /// What the first 17 digits require.
        expected: char,
        /// What was entered.
        found: char,
    },
    /// The birth-date digits are no calendar date.
    #[error("the birth-date digits (7 to 14) are no calendar date: check the date digits")]
    ImpossibleBirthDate {
        /// Year digits.
        year: u16,
        /// Month digits.
        month: u8,
        /// Day digits.
        day: u8,
    },
    /// The birth date is after today.
    #[error("the birth date lies in the future: check the date digits")]
    FutureBirthDate,
    /// The birth year is before the policy's earliest year.
    #[error("the birth year is before {earliest_year}: check the date digits")]
    BirthDateTooEarly {
        /// The earliest birth year the policy accepts.
        earliest_year: u16,
    },
    /// The address code never existed in GB/T 2260.
    #[error("the region code (the first six digits) never existed: check the first six digits")]
    UnknownRegion {
        /// The address code.
        code: RegionCode,
    },
    /// The address code existed, but not in the birth year (strict check).
    #[error(
        "the region code (the first six digits) was not in use in the birth year: check the first six digits or relax the region check"
    )]
    RegionNotValidInBirthYear {
        /// The address code.
        code: RegionCode,
        /// The birth year.
        birth_year: u16,
        /// When it was valid instead.
        validity: ValidityNote,
    },
    /// A foreign permanent resident number whose nationality code is no ISO 3166-1 country.
    #[error(
        "the nationality code (digits 4 to 6) of a foreign permanent resident card is no ISO 3166-1 country: check digits 4 to 6"
    )]
    UnknownNationality {
        /// The numeric code.
        code: u16,
    },
    /// A foreign permanent resident number whose province of application is unknown.
    #[error(
        "the province code (digits 2 and 3) of a foreign permanent resident card does not exist: check digits 2 and 3"
    )]
    UnknownProvinceOfApplication {
        /// The province code (`xx0000`).
        code: RegionCode,
    },
}

impl fmt::Debug for IdNumberError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use IdNumberError as E;
        match self {
            E::Empty => f.write_str("Empty"),
            E::Length { found } => f.debug_struct("Length").field("found", found).finish(),
            E::IllegalCharacter { position, found } => f
                .debug_struct("IllegalCharacter")
                .field("position", position)
                .field("found", found)
                .finish(),
            E::CheckCharacter { .. } => f.write_str("CheckCharacter { .. }"),
            E::ImpossibleBirthDate { .. } => f.write_str("ImpossibleBirthDate { .. }"),
            E::FutureBirthDate => f.write_str("FutureBirthDate"),
            E::BirthDateTooEarly { earliest_year } => f
                .debug_struct("BirthDateTooEarly")
                .field("earliest_year", earliest_year)
                .finish(),
            E::UnknownRegion { .. } => f.write_str("UnknownRegion { .. }"),
            E::RegionNotValidInBirthYear { .. } => f.write_str("RegionNotValidInBirthYear { .. }"),
            E::UnknownNationality { .. } => f.write_str("UnknownNationality { .. }"),
            E::UnknownProvinceOfApplication { .. } => {
                f.write_str("UnknownProvinceOfApplication { .. }")
            }
        }
    }
}

/// Why a region code was not valid in a year (for [`IdNumberError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidityNote {
    /// First valid in this later year.
    NotYetUntil(u16),
    /// Retired after this year.
    RetiredAfter(u16),
}

impl fmt::Display for ValidityNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValidityNote::NotYetUntil(y) => write!(f, "created in {y}"),
            ValidityNote::RetiredAfter(y) => write!(f, "retired after {y}"),
        }
    }
}

impl ClassifiedError for IdNumberError {
    fn class(&self) -> ErrorClass {
        ErrorClass::InvalidInput
    }
}

/// A validated Chinese ID number.
///
/// `Debug` and `Display` are masked (`110***********002X`); the full value is
/// only available through [`IdNumber::reveal`]. Serde writes the full value,
/// because serialisation is how it reaches encrypted storage.
///
/// Equality and hashing compare the normalised 18 characters only, so a
/// legacy 15-digit entry equals the 18-digit number it upgrades to.
#[derive(Clone, Copy)]
pub struct IdNumber {
    digits: [u8; 18],
    kind: IdNumberKind,
    birth: NaiveDate,
}

/// The normalised characters of an input, before validation.
struct Normalised {
    buf: [u8; 18],
    len: usize,
    illegal: Option<(usize, char)>,
    /// Came through the ASCII fast path: `X` can only be the 18th character.
    fast: bool,
}

/// 18 ASCII characters: digits, and `x`/`X` last. `None` sends the input
/// down the general path, which names what is wrong.
#[inline]
fn fast18(bytes: &[u8; 18]) -> Option<[u8; 18]> {
    let mut bad = false;
    for b in &bytes[..17] {
        bad |= b.wrapping_sub(b'0') > 9;
    }
    let mut out = *bytes;
    if out[17] | 0x20 == b'x' {
        out[17] = b'X';
    } else {
        bad |= out[17].wrapping_sub(b'0') > 9;
    }
    (!bad).then_some(out)
}

/// 15 ASCII digits.
#[inline]
fn fast15(bytes: &[u8; 15]) -> Option<[u8; 18]> {
    let mut bad = false;
    for b in bytes {
        bad |= b.wrapping_sub(b'0') > 9;
    }
    let mut out = [0u8; 18];
    out[..15].copy_from_slice(bytes);
    (!bad).then_some(out)
}

#[inline]
fn normalise(input: &str) -> Normalised {
    let bytes = input.as_bytes();
    let fast = if let Ok(b) = <&[u8; 18]>::try_from(bytes) {
        fast18(b).map(|buf| (buf, 18))
    } else if let Ok(b) = <&[u8; 15]>::try_from(bytes) {
        fast15(b).map(|buf| (buf, 15))
    } else {
        None
    };
    if let Some((buf, len)) = fast {
        return Normalised {
            buf,
            len,
            illegal: None,
            fast: true,
        };
    }
    normalise_slow(input)
}

#[cold]
fn normalise_slow(input: &str) -> Normalised {
    let mut out = Normalised {
        buf: [0; 18],
        len: 0,
        illegal: None,
        fast: false,
    };
    for c in input.trim().chars() {
        let b = match c {
            '0'..='9' => c as u8,
            'X' | 'x' | 'Ｘ' | 'ｘ' => b'X',
            '０'..='９' => b'0' + (c as u32 - '０' as u32) as u8,
            _ => {
                if out.illegal.is_none() {
                    out.illegal = Some((out.len + 1, c));
                }
                b'?'
            }
        };
        if let Some(slot) = out.buf.get_mut(out.len) {
            *slot = b;
        }
        out.len += 1;
    }
    out
}

#[inline]
fn num(digits: &[u8]) -> u32 {
    digits
        .iter()
        .fold(0, |acc, d| acc * 10 + u32::from(d.wrapping_sub(b'0')))
}

fn today_default() -> NaiveDate {
    civil_date(chrono::Utc::now())
}

impl IdNumber {
    /// Parses and validates with the default [`ValidationPolicy`].
    ///
    /// ```
    /// use citycard_identity::{IdNumber, IdNumberKind, Sex};
    ///
    /// let id = IdNumber::parse(" 11010519491231002x ")?;
    /// assert_eq!(id.kind(), IdNumberKind::Resident);
    /// assert_eq!(id.sex(), Sex::Female);
    /// assert_eq!(id.to_string(), "110***********002X");
    /// assert_eq!(id.reveal(), "11010519491231002X");
    /// # Ok::<(), citycard_identity::IdNumberError>(())
    /// ```
    pub fn parse(input: &str) -> Result<IdNumber, IdNumberError> {
        Self::parse_with(input, &ValidationPolicy::new())
    }

    /// Parses and validates under a policy.
    pub fn parse_with(input: &str, policy: &ValidationPolicy) -> Result<IdNumber, IdNumberError> {
        let n = normalise(input);
        if n.len == 0 {
            return Err(IdNumberError::Empty);
        }
        // A stray character (a space or hyphen inside, a letter) is named
        // before the length, which it usually explains.
        if let Some((position, found)) = n.illegal {
            return Err(IdNumberError::IllegalCharacter { position, found });
        }
        if n.len != 15 && n.len != 18 {
            return Err(IdNumberError::Length { found: n.len });
        }
        // `X` only as the 18th character.
        if !n.fast
            && let Some(pos) = n.buf[..n.len].iter().position(|&b| b == b'X')
            && !(n.len == 18 && pos == 17)
        {
            return Err(IdNumberError::IllegalCharacter {
                position: pos + 1,
                found: 'X',
            });
        }
        let mut digits = [0u8; 18];
        let legacy = n.len == 15;
        if legacy {
            digits[..6].copy_from_slice(&n.buf[..6]);
            digits[6] = b'1';
            digits[7] = b'9';
            digits[8..17].copy_from_slice(&n.buf[6..15]);
        } else {
            digits[..17].copy_from_slice(&n.buf[..17]);
        }
        if legacy {
            let mut body = [0u8; 17];
            body.copy_from_slice(&digits[..17]);
            digits[17] = check_character(&body) as u8;
        } else {
            digits[17] = n.buf[17];
        }
        Self::validate(digits, legacy, policy)
    }

    /// Validates 18 normalised characters: birth date, then region, then the
    /// check character, so a mistyped date or region is named as such.
    fn validate(
        digits: [u8; 18],
        legacy: bool,
        policy: &ValidationPolicy,
    ) -> Result<IdNumber, IdNumberError> {
        let code = num(&digits[..6]);
        let foreign = !legacy && digits[0] == b'9';
        let kind = if legacy {
            IdNumberKind::UpgradedLegacy
        } else if foreign {
            IdNumberKind::ForeignPermanentResident
        } else {
            match code {
                810_000 => IdNumberKind::HongKongResidencePermit,
                820_000 => IdNumberKind::MacauResidencePermit,
                830_000 => IdNumberKind::TaiwanResidencePermit,
                _ => IdNumberKind::Resident,
            }
        };
        let date = &digits[6..14];
        let (year, month, day) = (num(&date[..4]), num(&date[4..6]), num(&date[6..8]));
        let birth = NaiveDate::from_ymd_opt(year as i32, month, day).ok_or(
            IdNumberError::ImpossibleBirthDate {
                year: year as u16,
                month: month as u8,
                day: day as u8,
            },
        )?;
        if year < u32::from(policy.earliest_birth_year) {
            return Err(IdNumberError::BirthDateTooEarly {
                earliest_year: policy.earliest_birth_year,
            });
        }
        let today = policy.today.unwrap_or_else(today_default);
        if birth > today {
            return Err(IdNumberError::FutureBirthDate);
        }
        if foreign {
            let province = RegionCode::from_digits(num(&digits[1..3]) * 10_000);
            if policy.region != RegionCheck::Off && !region::existed(province) {
                return Err(IdNumberError::UnknownProvinceOfApplication { code: province });
            }
            let nationality = num(&digits[3..6]) as u16;
            if policy.region != RegionCheck::Off && !crate::nationality::is_known(nationality) {
                return Err(IdNumberError::UnknownNationality { code: nationality });
            }
        } else if policy.region != RegionCheck::Off {
            let code = RegionCode::from_digits(code);
            match policy.region {
                RegionCheck::Off => {}
                RegionCheck::ExistedAnyTime => {
                    if !region::existed(code) && region::legacy_district_name(code).is_none() {
                        return Err(IdNumberError::UnknownRegion { code });
                    }
                }
                RegionCheck::ExistedInBirthYear => match region::validity(code, year as i32) {
                    Validity::Valid => {}
                    Validity::Unknown => {
                        if region::legacy_district_name(code).is_none() {
                            return Err(IdNumberError::UnknownRegion { code });
                        }
                    }
                    Validity::NotYet { first_year } => {
                        return Err(IdNumberError::RegionNotValidInBirthYear {
                            code,
                            birth_year: year as u16,
                            validity: ValidityNote::NotYetUntil(first_year),
                        });
                    }
                    Validity::NoLonger { last_year } => {
                        return Err(IdNumberError::RegionNotValidInBirthYear {
                            code,
                            birth_year: year as u16,
                            validity: ValidityNote::RetiredAfter(last_year),
                        });
                    }
                },
            }
        }
        let mut body = [0u8; 17];
        body.copy_from_slice(&digits[..17]);
        let expected = check_character(&body);
        let found = char::from(digits[17]);
        if found != expected {
            return Err(IdNumberError::CheckCharacter { expected, found });
        }
        Ok(IdNumber {
            digits,
            kind,
            birth,
        })
    }

    /// The full 18-character number. Named loudly: every unmasked use should
    /// be easy to find in review.
    pub fn reveal(&self) -> &str {
        // The digits are ASCII by construction.
        std::str::from_utf8(&self.digits).unwrap_or("")
    }

    /// The full number wrapped in [`Sensitive`] (masked when printed).
    pub fn to_sensitive(&self) -> Sensitive<String> {
        Sensitive::new(self.reveal().to_owned())
    }

    /// The kind of document.
    pub fn kind(&self) -> IdNumberKind {
        self.kind
    }

    /// True when it was entered in the legacy 15-digit form.
    pub fn was_upgraded(&self) -> bool {
        self.kind == IdNumberKind::UpgradedLegacy
    }

    /// The date of birth.
    pub fn birth_date(&self) -> NaiveDate {
        self.birth
    }

    /// Sex from the sequence number (odd = male).
    pub fn sex(&self) -> Sex {
        if (self.digits[16] - b'0') % 2 == 1 {
            Sex::Male
        } else {
            Sex::Female
        }
    }

    /// The 3-digit sequence number.
    pub fn sequence(&self) -> u16 {
        num(&self.digits[14..17]) as u16
    }

    /// Age in whole years on `date` (birthday passed or not); `None` before birth.
    pub fn age_on(&self, date: NaiveDate) -> Option<u32> {
        if date < self.birth {
            return None;
        }
        let mut age = date.year() - self.birth.year();
        if (date.month(), date.day()) < (self.birth.month(), self.birth.day()) {
            age -= 1;
        }
        u32::try_from(age).ok()
    }

    /// The address code (for a foreign permanent resident card, the province
    /// of application as `xx0000`).
    pub fn region_code(&self) -> RegionCode {
        let code = if self.kind == IdNumberKind::ForeignPermanentResident {
            num(&self.digits[1..3]) * 10_000
        } else {
            num(&self.digits[..6])
        };
        RegionCode::from_digits(code)
    }

    /// Province, city and county names as of the birth year, where known.
    pub fn region(&self) -> Option<Region> {
        region::region_as_of(self.region_code(), self.birth.year())
    }

    /// For a foreign permanent resident card, the ISO 3166-1 numeric nationality.
    pub fn nationality(&self) -> Option<u16> {
        (self.kind == IdNumberKind::ForeignPermanentResident)
            .then(|| num(&self.digits[3..6]) as u16)
    }

    /// For a foreign permanent resident card, the country of nationality
    /// (ISO 3166-1), when the code is in the table.
    pub fn nationality_country(&self) -> Option<crate::nationality::Country> {
        self.nationality().and_then(crate::nationality::country)
    }

    /// For a foreign permanent resident card, the province of application (`xx0000`).
    pub fn province_of_application(&self) -> Option<RegionCode> {
        (self.kind == IdNumberKind::ForeignPermanentResident).then(|| self.region_code())
    }

    /// The check character (`0`-`9` or `X`).
    pub fn check_char(&self) -> char {
        char::from(self.digits[17])
    }

    /// The masked form with the default mask (first 3, last 4).
    pub fn masked(&self) -> String {
        Mask::DEFAULT.apply(self.reveal())
    }

    /// The masked form with a chosen mask.
    pub fn masked_with(&self, mask: Mask) -> String {
        mask.apply(self.reveal())
    }

    /// The legacy 15-digit form, where one exists: a resident number of
    /// someone born in the 1900s. Masked when printed.
    ///
    /// Legacy numbers carry no century, and the upgrade rule always inserts
    /// `19`, so people born before 1900 were upgraded wrongly by it (their
    /// 18-digit numbers carry a 19xx date); nothing can be done about that
    /// from the number alone.
    pub fn to_legacy15(&self) -> Option<Sensitive<String>> {
        if !matches!(
            self.kind,
            IdNumberKind::Resident | IdNumberKind::UpgradedLegacy
        ) || &self.digits[6..8] != b"19"
        {
            return None;
        }
        let mut out = String::with_capacity(15);
        out.push_str(std::str::from_utf8(&self.digits[..6]).ok()?);
        out.push_str(std::str::from_utf8(&self.digits[8..17]).ok()?);
        Some(Sensitive::new(out))
    }

    /// Builds a valid resident (or residence-permit) number from its parts;
    /// `sequence` 0..=499 picks the pair of 3-digit sequences, `sex` the one.
    ///
    /// The region is not checked against the table, so tests can build
    /// numbers for retired or made-up codes; the date must be from 1800 on.
    pub fn generate(
        region: RegionCode,
        birth: NaiveDate,
        sex: Sex,
        sequence: u16,
    ) -> Result<IdNumber, IdNumberError> {
        let mut digits = [0u8; 18];
        write_digits(&mut digits[..6], region.get());
        Self::generate_inner(digits, birth, sex, sequence)
    }

    /// Builds a valid foreign permanent resident number (2023 edition).
    /// `province` is the two-digit province of application (e.g. 32),
    /// `nationality` the ISO 3166-1 numeric code.
    pub fn generate_foreign(
        province: u8,
        nationality: u16,
        birth: NaiveDate,
        sex: Sex,
        sequence: u16,
    ) -> Result<IdNumber, IdNumberError> {
        let mut digits = [0u8; 18];
        digits[0] = b'9';
        write_digits(&mut digits[1..3], u32::from(province % 100));
        write_digits(&mut digits[3..6], u32::from(nationality % 1000));
        Self::generate_inner(digits, birth, sex, sequence)
    }

    fn generate_inner(
        mut digits: [u8; 18],
        birth: NaiveDate,
        sex: Sex,
        sequence: u16,
    ) -> Result<IdNumber, IdNumberError> {
        let year = u32::try_from(birth.year()).map_err(|_| IdNumberError::BirthDateTooEarly {
            earliest_year: DEFAULT_EARLIEST_BIRTH_YEAR,
        })?;
        if year > 9999 {
            return Err(IdNumberError::FutureBirthDate);
        }
        write_digits(&mut digits[6..10], year);
        write_digits(&mut digits[10..12], birth.month());
        write_digits(&mut digits[12..14], birth.day());
        let seq = u32::from(sequence % 500) * 2 + u32::from(sex == Sex::Male);
        write_digits(&mut digits[14..17], seq);
        let mut body = [0u8; 17];
        body.copy_from_slice(&digits[..17]);
        digits[17] = check_character(&body) as u8;
        let policy = ValidationPolicy::new()
            .region_check(RegionCheck::Off)
            .today(NaiveDate::MAX);
        Self::validate(digits, false, &policy)
    }
}

fn write_digits(out: &mut [u8], mut value: u32) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

impl PartialEq for IdNumber {
    fn eq(&self, other: &Self) -> bool {
        self.digits == other.digits
    }
}

impl Eq for IdNumber {}

impl std::hash::Hash for IdNumber {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.digits.hash(state);
    }
}

impl fmt::Display for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Mask::DEFAULT.write(self.reveal(), f)
    }
}

impl fmt::Debug for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdNumber(")?;
        Mask::DEFAULT.write(self.reveal(), f)?;
        write!(f, ", {:?})", self.kind)
    }
}

impl std::str::FromStr for IdNumber {
    type Err = IdNumberError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IdNumber::parse(s)
    }
}

impl Serialize for IdNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.reveal())
    }
}

impl<'de> Deserialize<'de> for IdNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        IdNumber::parse_with(
            &text,
            &ValidationPolicy::new().region_check(RegionCheck::Off),
        )
        .map_err(serde::de::Error::custom)
    }
}
