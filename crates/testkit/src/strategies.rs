//! proptest strategies for core types.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use citycard_core::{Money, PersonId};
use proptest::prelude::*;

/// Any representable amount.
pub fn any_money() -> impl Strategy<Value = Money> {
    ((i64::MIN + 1)..=i64::MAX).prop_map(Money::from_fen)
}

/// An amount from 0.01 up to and including `max`, as a card system sees them.
pub fn positive_money(max: Money) -> impl Strategy<Value = Money> {
    (1..=max.fen().max(1)).prop_map(Money::from_fen)
}

/// An amount from `-max` to `max`.
pub fn money_within(max: Money) -> impl Strategy<Value = Money> {
    let m = max.fen().abs();
    (-m..=m).prop_map(Money::from_fen)
}

/// A valid person id.
pub fn person_id() -> impl Strategy<Value = PersonId> {
    "psn-[a-z0-9]{1,20}".prop_map(|s| PersonId::parse(&s).expect("pattern matches the id rules"))
}

/// Any text that might be typed as an id, valid or not.
pub fn id_like_text() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9_.:-]{0,70}", "\\PC{0,70}"]
}

/// An instant between 2000-01-01 and 2099-12-31 (whole seconds).
pub fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    (946_684_800i64..4_102_358_400)
        .prop_map(|s| DateTime::<Utc>::from_timestamp(s, 0).unwrap_or_default())
}

/// An instant within `span` after `start`, to the millisecond.
pub fn instant_within(
    start: DateTime<Utc>,
    span: Duration,
) -> impl Strategy<Value = DateTime<Utc>> {
    (0..=span.num_milliseconds().max(0)).prop_map(move |ms| start + Duration::milliseconds(ms))
}

/// A calendar date between 1900-01-01 and 2099-12-31.
pub fn date() -> impl Strategy<Value = NaiveDate> {
    let first = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or(NaiveDate::MIN);
    (0i64..73_048).prop_map(move |d| first + Duration::days(d))
}
