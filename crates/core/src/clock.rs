//! The `Clock` port and China civil time.
//!
//! Every rule that depends on time asks a [`Clock`] (or takes an explicit
//! instant), so tests drive time with a [`ManualClock`] and never sleep.
//! Instants are `DateTime<Utc>`; days and months are civil ones in China
//! Standard Time, UTC+8 all year with no daylight saving time.

use std::fmt;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// The source of "now".
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to; clones share the same time.
///
/// ```
/// use citycard_core::{Clock, ManualClock};
/// use chrono::Duration;
///
/// let clock = ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0); // 09:00 Beijing time
/// let seen_by_service = clock.clone();
/// clock.advance(Duration::minutes(90));
/// assert_eq!(seen_by_service.now(), clock.now());
/// assert_eq!(citycard_core::civil_date(clock.now()).to_string(), "2026-11-26");
/// ```
#[derive(Clone)]
pub struct ManualClock {
    now: Arc<RwLock<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock standing at the given instant.
    pub fn new(at: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(RwLock::new(at)),
        }
    }

    /// A clock standing at a civil (UTC+8) date and time.
    ///
    /// Out-of-range fields fall back to 2026-01-01 00:00 Beijing time; tests
    /// that need validation should build the instant themselves.
    pub fn at_ymd_hms(year: i32, month: u32, day: u32, hour: u32, min: u32, sec: u32) -> Self {
        let at = china_offset()
            .with_ymd_and_hms(year, month, day, hour, min, sec)
            .single()
            .or_else(|| {
                china_offset()
                    .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                    .single()
            })
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        Self::new(at)
    }

    /// Sets the time (it may go backwards, to test clock skew).
    pub fn set(&self, at: DateTime<Utc>) {
        *self.now.write().unwrap_or_else(|e| e.into_inner()) = at;
    }

    /// Moves the time forward (or backward, for a negative duration).
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.write().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ManualClock({})", self.now())
    }
}

const CHINA_OFFSET_SECONDS: i32 = 8 * 3600;

/// China Standard Time, UTC+8 (no daylight saving time since 1991).
pub fn china_offset() -> FixedOffset {
    FixedOffset::east_opt(CHINA_OFFSET_SECONDS).expect("UTC+8 is a valid offset")
}

/// The instant in China civil time.
pub fn to_civil(instant: DateTime<Utc>) -> DateTime<FixedOffset> {
    instant.with_timezone(&china_offset())
}

/// The civil date (in UTC+8) of an instant.
pub fn civil_date(instant: DateTime<Utc>) -> NaiveDate {
    to_civil(instant).date_naive()
}

/// A civil month in China time, e.g. 2026-11.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CivilMonth {
    /// The year.
    pub year: i32,
    /// The month, 1 to 12.
    pub month: u32,
}

impl CivilMonth {
    /// The month of a date, or `None` for a month outside 1..=12.
    pub fn new(year: i32, month: u32) -> Option<Self> {
        (1..=12).contains(&month).then_some(Self { year, month })
    }

    /// The civil month of an instant.
    pub fn of(instant: DateTime<Utc>) -> Self {
        let date = civil_date(instant);
        Self {
            year: date.year(),
            month: date.month(),
        }
    }

    /// Its first day.
    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or(NaiveDate::MIN)
    }

    /// The month after this one.
    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// The instant it starts (00:00 UTC+8 on its first day).
    pub fn start(self) -> DateTime<Utc> {
        start_of_civil_day(self.first_day())
    }

    /// The instant it ends: the start of the next month (exclusive).
    pub fn end(self) -> DateTime<Utc> {
        self.next().start()
    }
}

impl fmt::Display for CivilMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// The civil month (in UTC+8) of an instant.
pub fn civil_month(instant: DateTime<Utc>) -> CivilMonth {
    CivilMonth::of(instant)
}

/// The instant a civil day starts: 00:00 UTC+8, which is 16:00 UTC the day before.
pub fn start_of_civil_day(date: NaiveDate) -> DateTime<Utc> {
    let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    DateTime::<Utc>::from_naive_utc_and_offset(midnight, Utc)
        - Duration::seconds(i64::from(CHINA_OFFSET_SECONDS))
}

/// The instant a civil day ends: the start of the next day (exclusive).
pub fn end_of_civil_day(date: NaiveDate) -> DateTime<Utc> {
    start_of_civil_day(date) + Duration::days(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn civil_day_starts_at_16_utc_the_day_before() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
        assert_eq!(start_of_civil_day(d), utc("2026-11-25T16:00:00Z"));
        assert_eq!(end_of_civil_day(d), utc("2026-11-26T16:00:00Z"));
        assert_eq!(
            civil_date(utc("2026-11-25T15:59:59Z")).to_string(),
            "2026-11-25"
        );
        assert_eq!(
            civil_date(utc("2026-11-25T16:00:00Z")).to_string(),
            "2026-11-26"
        );
    }

    #[test]
    fn civil_months_roll_over_the_year() {
        let dec = CivilMonth::of(utc("2026-12-31T17:00:00Z"));
        assert_eq!(dec.to_string(), "2027-01");
        let m = CivilMonth::new(2026, 12).unwrap();
        assert_eq!(m.start(), utc("2026-11-30T16:00:00Z"));
        assert_eq!(m.end(), utc("2026-12-31T16:00:00Z"));
        assert!(CivilMonth::new(2026, 13).is_none());
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(utc("2026-01-01T00:00:00Z"));
        let t0 = c.now();
        assert_eq!(c.now(), t0);
        c.advance(Duration::seconds(5));
        assert_eq!(c.now(), t0 + Duration::seconds(5));
        c.set(t0);
        assert_eq!(c.now(), t0);
    }

    proptest! {
        #[test]
        fn every_instant_lies_in_its_civil_day_and_month(secs in 0i64..4_102_444_800) {
            let t = DateTime::<Utc>::from_timestamp(secs, 0).unwrap();
            let d = civil_date(t);
            prop_assert!(start_of_civil_day(d) <= t && t < end_of_civil_day(d));
            let m = civil_month(t);
            prop_assert!(m.start() <= t && t < m.end());
        }
    }
}
