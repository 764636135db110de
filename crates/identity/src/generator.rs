//! A seeded generator of valid ID numbers, for tests, demos and load data.
//!
//! Deterministic for a seed (SplitMix64), so a demo shows the same people on
//! every run. Region codes are drawn from the embedded GB/T 2260 table and
//! are valid in the generated birth year, so the numbers pass the strict
//! region check.

use chrono::{Datelike, Duration, NaiveDate};

use crate::id_number::{IdNumber, Sex};
use crate::region::{self, RegionCode};

/// A seeded generator of valid ID numbers.
#[derive(Debug, Clone)]
pub struct IdNumberGenerator {
    state: u64,
}

impl IdNumberGenerator {
    /// A generator for a seed.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// A random date from `first` to `last` inclusive (`first` when the range is empty).
    pub fn date_between(&mut self, first: NaiveDate, last: NaiveDate) -> NaiveDate {
        let span = (last - first).num_days().max(0) as u64;
        first + Duration::days(self.below(span + 1) as i64)
    }

    /// A resident ID number of someone born between `first` and `last`
    /// (inclusive) whose county-level region was valid in the birth year.
    /// Fails only for birth dates the format cannot hold (before 1800).
    pub fn resident(
        &mut self,
        first: NaiveDate,
        last: NaiveDate,
    ) -> Result<IdNumber, crate::IdNumberError> {
        let count = region::record_count_embedded() as u64;
        for _ in 0..256 {
            let Some(rec) = region::record_by_index(self.below(count) as usize) else {
                continue;
            };
            if rec.code.is_province() || rec.code.is_prefecture() || rec.code.get() >= 810_000 {
                continue;
            }
            let birth = self.date_between(first, last);
            if rec.valid_in(birth.year()) {
                return self.with_region(rec.code, birth);
            }
        }
        // Xihu district of Hangzhou has existed throughout the table.
        let birth = self.date_between(first, last);
        self.with_region(RegionCode::from_digits(330_106), birth)
    }

    /// A number for a given region and birth date, random sex and sequence.
    pub fn with_region(
        &mut self,
        region: RegionCode,
        birth: NaiveDate,
    ) -> Result<IdNumber, crate::IdNumberError> {
        let sex = if self.below(2) == 0 {
            Sex::Male
        } else {
            Sex::Female
        };
        IdNumber::generate(region, birth, sex, self.below(500) as u16)
    }
}
