//! Statutory working days: public holidays and make-up working days (调休) as dated data.
//!
//! The State Council publishes each year's holidays in the autumn before. A
//! [`WorkingCalendar`] is loaded from rows of a small CSV file (the shipped
//! [`WorkingCalendar::china`] covers the years its `year` rows declare, each
//! row marked `sourced` or `unverified`); a new year is added with
//! [`WorkingCalendar::extend_csv`] without a release.
//!
//! A date in a year the data does not cover is judged Monday to Friday: the
//! host can check [`WorkingCalendar::covers`] and warn. Rows for a year must
//! be loaded together with that year's `year` row.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate, Weekday};

use crate::error::{ClassifiedError, ErrorClass};

/// The shipped calendar file.
const CHINA_CSV: &str = include_str!("../data/cn_working_calendar.csv");

/// What a calendar row says about its dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayKind {
    /// A public holiday or a day off of the holiday arrangement.
    Holiday,
    /// A make-up working day, usually on a weekend.
    Workday,
}

/// A calendar file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("working calendar line {line}: {message}")]
pub struct CalendarError {
    /// The line in the file (header = the first non-comment line).
    pub line: usize,
    /// What is wrong and what to do.
    pub message: String,
}

impl ClassifiedError for CalendarError {
    fn class(&self) -> ErrorClass {
        ErrorClass::InvalidInput
    }
}

/// Statutory working days: Monday to Friday, minus holidays, plus make-up working days.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkingCalendar {
    exceptions: BTreeMap<NaiveDate, DayKind>,
    years: BTreeSet<i32>,
    unverified: BTreeSet<NaiveDate>,
}

impl WorkingCalendar {
    /// The shipped mainland-China calendar (2025 and 2026, checked against the State Council notices).
    pub fn china() -> Self {
        let mut c = Self::default();
        // The shipped file is tested; a failure here is a build defect, said
        // loudly, and the calendar falls back to Monday to Friday.
        if let Err(e) = c.extend_csv(CHINA_CSV) {
            tracing::error!(error = %e, "the shipped working-day calendar does not load; counting Monday to Friday");
            return Self::default();
        }
        c
    }

    /// An empty calendar: every Monday to Friday is a working day.
    pub fn weekdays_only() -> Self {
        Self::default()
    }

    /// Adds the rows of a calendar CSV (`start,end,kind,name,status,source`; `#` lines are comments).
    ///
    /// `kind` is `year` (declares the year covered), `holiday` or `workday`;
    /// `status` is `sourced` or `unverified`. Nothing is added when a row is wrong.
    pub fn extend_csv(&mut self, text: &str) -> Result<(), CalendarError> {
        let mut next = self.clone();
        let mut header_seen = false;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let row = raw.trim();
            if row.is_empty() || row.starts_with('#') {
                continue;
            }
            if !header_seen {
                header_seen = true;
                if row.starts_with("start,") {
                    continue;
                }
            }
            let err = |message: String| CalendarError { line, message };
            let fields: Vec<&str> = row.splitn(6, ',').map(str::trim).collect();
            if fields.len() < 5 {
                return Err(err(
                    "expected start,end,kind,name,status[,source]: add the missing fields".into(),
                ));
            }
            let date = |s: &str| {
                NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map_err(|_| err(format!("{s:?} is not a YYYY-MM-DD date")))
            };
            let start = date(fields[0])?;
            let end = date(fields[1])?;
            if end < start {
                return Err(err("end is before start: swap the dates".into()));
            }
            let unverified = match fields[4] {
                "sourced" => false,
                "unverified" => true,
                other => {
                    return Err(err(format!(
                        "status {other:?} is unknown: use sourced or unverified"
                    )));
                }
            };
            let kind = match fields[2] {
                "year" => {
                    if start.year() != end.year() {
                        return Err(err("a year row must stay within one year".into()));
                    }
                    next.years.insert(start.year());
                    continue;
                }
                "holiday" => DayKind::Holiday,
                "workday" => DayKind::Workday,
                other => {
                    return Err(err(format!(
                        "kind {other:?} is unknown: use year, holiday or workday"
                    )));
                }
            };
            if (end - start).num_days() > 31 {
                return Err(err("a holiday or workday row spans at most 32 days".into()));
            }
            let mut d = start;
            while d <= end {
                if let Some(old) = next.exceptions.insert(d, kind)
                    && old != kind
                {
                    return Err(err(format!("{d} is already listed as {old:?}")));
                }
                if unverified {
                    next.unverified.insert(d);
                }
                d = d
                    .succ_opt()
                    .ok_or_else(|| err("date out of range".into()))?;
            }
        }
        for d in next.exceptions.keys() {
            if !next.years.contains(&d.year()) {
                return Err(CalendarError {
                    line: 0,
                    message: format!(
                        "{d} is in {}, which no year row declares: add one",
                        d.year()
                    ),
                });
            }
        }
        *self = next;
        Ok(())
    }

    /// Whether the data covers a year (otherwise its dates follow Monday to Friday).
    pub fn covers(&self, year: i32) -> bool {
        self.years.contains(&year)
    }

    /// The years covered.
    pub fn years(&self) -> impl Iterator<Item = i32> + '_ {
        self.years.iter().copied()
    }

    /// The exception on a date, if any.
    pub fn exception(&self, date: NaiveDate) -> Option<DayKind> {
        self.exceptions.get(&date).copied()
    }

    /// Whether the row that lists this date is marked unverified.
    pub fn is_unverified(&self, date: NaiveDate) -> bool {
        self.unverified.contains(&date)
    }

    /// Whether a date is a statutory working day.
    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        match self.exceptions.get(&date) {
            Some(DayKind::Holiday) => false,
            Some(DayKind::Workday) => true,
            None => !matches!(date.weekday(), Weekday::Sat | Weekday::Sun),
        }
    }

    /// The last working day strictly before `date`.
    pub fn working_day_before(&self, date: NaiveDate) -> NaiveDate {
        let mut d = date;
        // Holidays never run longer than a few weeks, so this ends quickly.
        loop {
            match d.pred_opt() {
                Some(p) => d = p,
                None => return d,
            }
            if self.is_working_day(d) {
                return d;
            }
        }
    }

    /// The `n`-th working day before `date` (`n = 0` gives `date` itself).
    pub fn working_days_before(&self, date: NaiveDate, n: u32) -> NaiveDate {
        (0..n).fold(date, |d, _| self.working_day_before(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn shipped_calendar_follows_the_notices() {
        let c = WorkingCalendar::china();
        assert!(c.covers(2025) && c.covers(2026) && !c.covers(2027));
        // 2026 notice: National Day 10-01..07 off, 09-20 (Sunday) and 10-10 (Saturday) worked.
        assert!(!c.is_working_day(d(2026, 10, 1)));
        assert!(!c.is_working_day(d(2026, 10, 7)));
        assert!(c.is_working_day(d(2026, 9, 20)));
        assert!(c.is_working_day(d(2026, 10, 10)));
        assert!(c.is_working_day(d(2026, 10, 12)));
        // 2025 notice: Spring Festival 01-28..02-04 off, 01-26 (Sunday) worked.
        assert!(!c.is_working_day(d(2025, 2, 3)));
        assert!(c.is_working_day(d(2025, 1, 26)));
        // Ordinary weekend.
        assert!(!c.is_working_day(d(2026, 11, 28)));
        assert!(!c.is_unverified(d(2026, 10, 1)));
    }

    #[test]
    fn working_day_before_skips_holidays() {
        let c = WorkingCalendar::china();
        // The working day before Thursday 2026-10-08 is Wednesday 09-30.
        assert_eq!(c.working_day_before(d(2026, 10, 8)), d(2026, 9, 30));
        // Before Monday 2026-10-12 is the make-up Saturday 10-10.
        assert_eq!(c.working_day_before(d(2026, 10, 12)), d(2026, 10, 10));
        assert_eq!(c.working_days_before(d(2026, 10, 12), 0), d(2026, 10, 12));
    }

    proptest::proptest! {
        /// The working day before a date is earlier, a working day, and no working day lies between.
        #[test]
        fn the_working_day_before_is_the_nearest_earlier_working_day(offset in 0i64..800) {
            let c = WorkingCalendar::china();
            let date = d(2025, 1, 10) + chrono::Duration::days(offset);
            let before = c.working_day_before(date);
            proptest::prop_assert!(before < date);
            proptest::prop_assert!(c.is_working_day(before));
            let mut x = before.succ_opt().unwrap();
            while x < date {
                proptest::prop_assert!(!c.is_working_day(x));
                x = x.succ_opt().unwrap();
            }
        }
    }

    #[test]
    fn a_new_year_loads_and_a_bad_row_adds_nothing() {
        let mut c = WorkingCalendar::china();
        c.extend_csv(
            "start,end,kind,name,status,source\n2027-01-01,2027-12-31,year,2027,unverified,\n2027-01-01,2027-01-01,holiday,New Year,unverified,\n",
        )
        .unwrap();
        assert!(c.covers(2027));
        assert!(!c.is_working_day(d(2027, 1, 1)));
        assert!(c.is_unverified(d(2027, 1, 1)));
        let before = c.clone();
        let e = c
            .extend_csv("2028-01-01,2028-01-01,holiday,x,sourced,\n")
            .unwrap_err();
        assert!(e.message.contains("no year row"), "{e}");
        let e = c
            .extend_csv("2028-01-01,2028-12-31,year,2028,maybe,\n")
            .unwrap_err();
        assert_eq!(e.line, 1);
        assert_eq!(c, before);
    }
}
