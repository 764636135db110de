//! Test support for citycard-identity: conformance suites for its storage ports,
//! fault-injecting doubles of its remote ports, and proptest strategies.

use chrono::{Datelike, Duration, NaiveDate};
use citycard_identity::region::{self, RegionRecord};
use citycard_identity::{IdNumber, RegionCode, Sex};
use proptest::prelude::*;

/// The parts a valid ID number is generated from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdNumberParts {
    /// Address code (valid in the birth year for residents).
    pub region: RegionCode,
    /// Date of birth.
    pub birth: NaiveDate,
    /// Sex.
    pub sex: Sex,
    /// Sequence pair 0..=499.
    pub sequence: u16,
}

impl IdNumberParts {
    /// The ID number for these parts.
    pub fn build(&self) -> IdNumber {
        IdNumber::generate(self.region, self.birth, self.sex, self.sequence)
            .expect("generated parts are valid")
    }
}

fn county_records() -> Vec<RegionRecord> {
    region::all_records()
        .filter(|r| !r.code.is_province() && !r.code.is_prefecture())
        .collect()
}

fn date_in_years(first: i32, last: i32) -> impl Strategy<Value = NaiveDate> {
    let start = NaiveDate::from_ymd_opt(first, 1, 1).unwrap_or(NaiveDate::MIN);
    let end = NaiveDate::from_ymd_opt(last, 12, 31).unwrap_or(NaiveDate::MIN);
    let span = (end - start).num_days().max(0);
    (0..=span).prop_map(move |d| start + Duration::days(d))
}

/// Parts of a resident ID number whose county-level region code was valid in
/// the birth year (so it passes the strict region check), born 1950..=2024.
pub fn resident_parts() -> impl Strategy<Value = IdNumberParts> {
    let records = county_records();
    (0..records.len(), any::<bool>(), 0u16..500)
        .prop_flat_map(move |(i, male, sequence)| {
            let rec = records[i];
            let first = rec.first_year.map_or(1950, i32::from).max(1950);
            let last = rec.last_year.map_or(2024, i32::from).min(2024);
            let (first, last) = if first <= last {
                (first, last)
            } else {
                (last, last)
            };
            date_in_years(first, last).prop_map(move |birth| IdNumberParts {
                region: rec.code,
                birth,
                sex: if male { Sex::Male } else { Sex::Female },
                sequence,
            })
        })
        .prop_filter("region valid in the birth year", |p| {
            region::validity(p.region, p.birth.year()) == region::Validity::Valid
        })
}

/// A valid 18-digit resident ID number.
pub fn resident_id_number() -> impl Strategy<Value = IdNumber> {
    resident_parts().prop_map(|p| p.build())
}

/// A valid legacy 15-digit number (as text), born 1900..=1999, existing region.
pub fn legacy15_text() -> impl Strategy<Value = String> {
    let records = county_records();
    (0..records.len(), date_in_years(1900, 1999), 0u16..1000).prop_map(move |(i, birth, seq)| {
        format!(
            "{}{:02}{:02}{:02}{:03}",
            records[i].code,
            birth.year() % 100,
            birth.month(),
            birth.day(),
            seq
        )
    })
}

/// A valid foreign permanent resident number (2023 edition).
pub fn foreign_id_number() -> impl Strategy<Value = IdNumber> {
    let provinces: Vec<u8> = region::all_records()
        .filter(|r| r.code.is_province() && r.code.get() < 800_000)
        .map(|r| (r.code.get() / 10_000) as u8)
        .collect();
    (
        proptest::sample::select(provinces),
        1u16..1000,
        date_in_years(1930, 2020),
        any::<bool>(),
        0u16..500,
    )
        .prop_map(|(p, nat, birth, male, seq)| {
            IdNumber::generate_foreign(
                p,
                nat,
                birth,
                if male { Sex::Male } else { Sex::Female },
                seq,
            )
            .expect("generated parts are valid")
        })
}

/// Any text that might be typed into an ID number field.
pub fn id_number_like_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9xX]{0,20}",
        "[0-9０-９Ｘｘ ]{14,20}",
        "\\PC{0,24}",
        "\\s*[0-9]{17}[0-9xX]\\s*",
    ]
}
