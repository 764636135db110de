//! The fare engine: GTFS-Fares v2 as the reference writes it, plus citycard
//! extensions, and pricing.
//!
//! # The data model
//!
//! Standard GTFS files: `stops.txt` (with `parent_station`), `routes.txt`,
//! networks either as `networks.txt` + `route_networks.txt` or as
//! `routes.network_id`, `areas.txt`, `stop_areas.txt` (a station's areas hold
//! for its platforms that have none of their own), `calendar.txt` and
//! `calendar_dates.txt`, `timeframes.txt`, `rider_categories.txt` (with the
//! default category), `fare_media.txt` (every `fare_media_type`, 0 to 4),
//! `fare_products.txt` (any ISO 4217 currency, one per feed, amounts in its
//! minor units), `fare_leg_rules.txt` (with or without `rule_priority`),
//! `fare_leg_join_rules.txt`, `fare_transfer_rules.txt` (every
//! `duration_limit_type`, `transfer_count` including −1, the three
//! `fare_transfer_type`s, an empty `fare_product_id` for a free transfer).
//!
//! Producer extensions understood: `fare_leg_rules.transfer_only` (`1`: the
//! rule prices a leg only when a transfer rule reaches it from the previous
//! leg). Every other column the reference does not define is reported as an
//! `unknown_column` warning (for example `filter_fare_product_id`,
//! `fare_media_behavior`) and ignored.
//!
//! citycard extensions, where the standard stops (documented in
//! `data/hangzhou/README.md`):
//!
//! - `fare_leg_rules.txt` columns `min_distance`, `max_distance`,
//!   `distance_type` after the open distance proposal: type `1` is kilometres
//!   of shortest metro distance, type `2` (citycard) is the number of fare
//!   sections ridden on a sectioned bus route. A leg matches when
//!   `min_distance < d ≤ max_distance`: exactly 4 km is still the ¥2 bracket.
//! - `citycard_concessions.txt`: card kind, age range, network and timeframe →
//!   rider category and a percentage of the fare, `volume_tiers`; the highest
//!   `rule_priority` wins. Timeframes are judged by the leg's entry time.
//! - `calendar.txt` column `citycard_working_days`: `1` makes the service's
//!   days the statutory working days of the engine's [`WorkingCalendar`].
//! - `fare_transfer_rules.txt` column `min_duration`: the shortest gap in
//!   seconds, measured like `duration_limit` (Hangzhou: 3 minutes).
//! - `citycard_volume_tiers.txt`: monthly spend before the ride → percentage.
//! - `citycard_fare_caps.txt`: `fare_cap_id`, `period` (`day`, `week` Monday
//!   to Sunday, `month`), `amount` (`currency` optional, the feed's),
//!   optional `rider_category_id` and `fare_media_id`: what an account pays in
//!   the period on legs of that category and medium never exceeds the amount.
//! - `citycard_network_limits.txt`: per network, tap-out required, time limit
//!   and maximum-fare product; `overstay_fare` = `exit_station_highest`.
//! - `citycard_settings.txt`: `transfer_discount_cap`, `transfers_per_journey`,
//!   `same_vehicle_repeat_seconds`, `utc_offset` (civil time of the feed,
//!   `+08:00` by default; a fixed offset, no daylight saving).
//!
//! # Matching, as the reference defines it, and what citycard decided
//!
//! - With `rule_priority` in the file, empty fields do not affect matching
//!   and the highest priority wins. Without it, an empty `network_id` matches
//!   the networks no rule names, and an empty area or timeframe field matches
//!   only values that no *candidate* rule (those for the leg's network) names:
//!   inverse matching is judged within the candidates, so one network's
//!   timeframes never exclude another network's rules.
//! - Several rules matching at the chosen priority offer several products;
//!   the rider pays the cheapest that has a price for their category and
//!   medium (file order on ties). A rule that matches but whose product has
//!   no price for the medium is reported as such
//!   ([`TransitError::NoFareForMedium`]), never as "no rule".
//! - A product row for the rider's category beats one for any category; a row
//!   for the medium's type beats one with no medium; a rider whose category
//!   has no row pays the default category's price.
//! - Join rules make consecutive legs one effective fare leg (first leg's
//!   departure, last leg's arrival); its fare is on the first leg's
//!   [`LegFare`], the others carry `joined_to`. Legs without a tap-out never join.
//! - Transfer rules: an empty leg group matches the groups no rule names in
//!   that field; among rules that match, the smallest `transfer_count` not
//!   below the chain's count wins; a transfer product not priced for the
//!   rider's medium means no transfer. `fare_transfer_type` 2 (AB) replaces
//!   A + B on the first transfer of a sub-journey and adds BC after
//!   (the reference's table). The duration of a chain of the same rule is
//!   measured from its first leg.
//! - Civil time is the feed's `utc_offset` (Asia/Shanghai by default).
//!
//! # The order of a leg's fare
//!
//! base fare (leg rule or maximum fare) → concession percentage → monthly
//! volume tier percentage → transfer adjustment (never below zero, the
//! discount never above `transfer_discount_cap`) → fare cap. A concession row
//! with `volume_tiers` 0 (students) excludes the tiers. Legs charged the
//! maximum fare neither receive nor open a transfer. A boarding of the same
//! route at the same stop within `same_vehicle_repeat_seconds` (at least the
//! same minute) is a repeat: it pays its own fare and is never a transfer.
//! Percentages round half-up to the fen ([`percent_of`]).
//!
//! [`WorkingCalendar`]: citycard_core::WorkingCalendar
//! [`TransitError::NoFareForMedium`]: crate::TransitError::NoFareForMedium

mod currency;
mod engine;
mod explain;
mod extensions;
mod loader;
mod loader_rows;
mod matcher;
mod model;
mod pricing;
pub mod synthetic;
mod validation;

pub use currency::Currency;
pub use engine::FareEngine;
pub use loader::LoadMode;
pub use model::{
    CapApplied, CapPeriod, CardKind, ConcessionApplied, FareBasis, Journey, Leg, LegFare,
    MaximumFareReason, Medium, Quote, Rider, SpendSoFar, TierApplied, TransferApplied, percent_of,
};
pub use validation::check;
