//! The citycard extension files: concessions, monthly volume tiers, fare caps,
//! network limits and settings (documented in `data/hangzhou/README.md`).

use std::collections::HashMap;

use citycard_core::Money;

use super::currency::Currency;
use super::engine::{Cap, Concession, NetworkLimit, Tier};
use super::loader::{amount_field, percent_field};
use super::model::{CapPeriod, CardKind};
use crate::data::{FareData, Sink};
use crate::error::LoadError;
use crate::network::TransitNetwork;

/// What the extension files add to an engine.
pub(crate) struct Extensions {
    pub(crate) concessions: Vec<Concession>,
    pub(crate) tiers: Vec<Tier>,
    pub(crate) caps: Vec<Cap>,
    pub(crate) limits: Vec<NetworkLimit>,
    pub(crate) transfer_cap: Option<Money>,
    pub(crate) transfers_per_journey: Option<u32>,
    pub(crate) same_vehicle_repeat_seconds: u32,
    pub(crate) utc_offset: i64,
}

/// Asia/Shanghai, the default civil time of a feed.
const CHINA_OFFSET: i64 = 8 * 3600;

#[allow(clippy::too_many_arguments)]
pub(crate) fn load_extensions(
    data: &FareData,
    sink: &mut Sink,
    network: &TransitNetwork,
    category_index: &HashMap<String, u16>,
    media: &[(String, String, u8)],
    media_index: &HashMap<String, u16>,
    timeframe_index: &HashMap<String, u16>,
    product_index: &HashMap<String, u32>,
    currency: Currency,
) -> Result<Extensions, LoadError> {
    // Concessions.
    let t = data.table_raw("citycard_concessions.txt", false)?;
    sink.table(
        &t,
        &[
            "concession_id",
            "card_kind",
            "min_age",
            "max_age",
            "network_id",
            "timeframe_group_id",
            "rider_category_id",
            "percent",
            "rule_priority",
            "volume_tiers",
            "status",
            "source",
        ],
    )?;
    let mut concessions = Vec::new();
    for row in &t.rows {
        let r = (|| {
            let card_kind =
                match t.opt(row, "card_kind") {
                    None => None,
                    Some(k) => Some(CardKind::from_code(k).ok_or_else(|| {
                        t.err(row, "card_kind", format!("unknown card kind {k:?}"))
                    })?),
                };
            if let Some(status) = t.opt(row, "status")
                && status != "sourced"
                && status != "unverified"
            {
                return Err(t.err(
                    row,
                    "status",
                    format!("{status:?} is unknown: use sourced or unverified"),
                ));
            }
            Ok(Concession {
                id: t.req(row, "concession_id")?.to_owned(),
                card_kind,
                min_age: t.parse_opt(row, "min_age")?,
                max_age: t.parse_opt(row, "max_age")?,
                timeframe: t.lookup(row, "timeframe_group_id", timeframe_index)?,
                network: t.lookup(row, "network_id", &network.network_index)?,
                category: t.lookup_req(row, "rider_category_id", category_index)?,
                percent: percent_field(&t, row, "percent")?,
                priority: t.parse_opt(row, "rule_priority")?.unwrap_or(0),
                volume_tiers: match t.opt(row, "volume_tiers") {
                    None | Some("1") => true,
                    Some("0") => false,
                    Some(other) => {
                        return Err(t.err(
                            row,
                            "volume_tiers",
                            format!("{other:?} must be 0 or 1"),
                        ));
                    }
                },
            })
        })();
        if let Some(c) = sink.row(r)? {
            concessions.push(c);
        }
    }
    // Highest priority first; the sort is stable, so file order within a priority.
    concessions.sort_by_key(|c| std::cmp::Reverse(c.priority));

    // Volume tiers.
    let t = data.table_raw("citycard_volume_tiers.txt", false)?;
    sink.table(&t, &["min_spend", "max_spend", "percent"])?;
    let mut tiers = Vec::new();
    for row in &t.rows {
        let r = (|| {
            let min = amount_field(&t, row, "min_spend", currency)?;
            let max = match t.opt(row, "max_spend") {
                None => None,
                Some(_) => Some(amount_field(&t, row, "max_spend", currency)?),
            };
            if max.is_some_and(|m| m <= min) {
                return Err(t.err(row, "max_spend", "max_spend must exceed min_spend"));
            }
            Ok(Tier {
                min,
                max,
                percent: percent_field(&t, row, "percent")?,
            })
        })();
        if let Some(tier) = sink.row(r)? {
            tiers.push(tier);
        }
    }

    // Fare caps.
    let t = data.table_raw("citycard_fare_caps.txt", false)?;
    sink.table(
        &t,
        &[
            "fare_cap_id",
            "period",
            "amount",
            "currency",
            "rider_category_id",
            "fare_media_id",
        ],
    )?;
    let mut caps = Vec::new();
    for row in &t.rows {
        let r = (|| {
            let period = match t.req(row, "period")? {
                "day" => CapPeriod::Day,
                "week" => CapPeriod::Week,
                "month" => CapPeriod::Month,
                other => {
                    return Err(t.err(
                        row,
                        "period",
                        format!("{other:?} is unknown: use day, week or month"),
                    ));
                }
            };
            if let Some(code) = t.opt(row, "currency")
                && code != currency.code()
            {
                return Err(t.err(
                    row,
                    "currency",
                    format!("{code} differs from the feed's {currency}"),
                ));
            }
            let amount = amount_field(&t, row, "amount", currency)?;
            if amount.is_negative() {
                return Err(t.err(row, "amount", "a cap must not be negative"));
            }
            let media_type = t
                .lookup(row, "fare_media_id", media_index)?
                .and_then(|m| media.get(m as usize))
                .map(|(_, _, ty)| *ty);
            Ok(Cap {
                id: t.req(row, "fare_cap_id")?.to_owned(),
                period,
                amount,
                category: t.lookup(row, "rider_category_id", category_index)?,
                media_type,
            })
        })();
        if let Some(cap) = sink.row(r)? {
            caps.push(cap);
        }
    }

    // Network limits.
    let t = data.table_raw("citycard_network_limits.txt", false)?;
    sink.table(
        &t,
        &[
            "network_id",
            "max_duration_minutes",
            "maximum_fare_product_id",
            "requires_tap_out",
            "overstay_fare",
        ],
    )?;
    let mut limits = vec![NetworkLimit::default(); network.networks.len()];
    for row in &t.rows {
        let r = (|| {
            let n = t.lookup_req(row, "network_id", &network.network_index)?;
            let limit = NetworkLimit {
                requires_tap_out: t.opt(row, "requires_tap_out") == Some("1"),
                max_duration_minutes: t.parse_opt(row, "max_duration_minutes")?,
                maximum_product: t.lookup(row, "maximum_fare_product_id", product_index)?,
                overstay_from_exit: match t.opt(row, "overstay_fare") {
                    None | Some("maximum_fare") => false,
                    Some("exit_station_highest") => true,
                    Some(other) => {
                        return Err(t.err(
                            row,
                            "overstay_fare",
                            format!(
                                "{other:?} is unknown: use maximum_fare or exit_station_highest"
                            ),
                        ));
                    }
                },
            };
            if limit.requires_tap_out && limit.maximum_product.is_none() {
                return Err(t.err(
                    row,
                    "maximum_fare_product_id",
                    "required when requires_tap_out is 1",
                ));
            }
            Ok((n, limit))
        })();
        if let Some((n, limit)) = sink.row(r)?
            && let Some(slot) = limits.get_mut(n.get())
        {
            *slot = limit;
        }
    }

    // Settings.
    let t = data.table_raw("citycard_settings.txt", false)?;
    sink.table(&t, &["key", "value"])?;
    let mut transfer_cap = None;
    let mut transfers_per_journey = None;
    let mut same_vehicle_repeat_seconds = 0;
    let mut utc_offset = CHINA_OFFSET;
    for row in &t.rows {
        let r = (|| {
            match t.req(row, "key")? {
                "transfer_discount_cap" => {
                    transfer_cap = Some(amount_field(&t, row, "value", currency)?)
                }
                "transfers_per_journey" => transfers_per_journey = Some(t.parse_req(row, "value")?),
                "same_vehicle_repeat_seconds" => {
                    same_vehicle_repeat_seconds = t.parse_req(row, "value")?
                }
                "utc_offset" => {
                    let v = t.req(row, "value")?;
                    utc_offset = parse_offset(v).ok_or_else(|| {
                        t.err(row, "value", format!("{v:?} is not an offset like +08:00"))
                    })?;
                }
                other => return Err(t.err(row, "key", format!("unknown setting {other:?}"))),
            }
            Ok(())
        })();
        sink.row(r)?;
    }

    Ok(Extensions {
        concessions,
        tiers,
        caps,
        limits,
        transfer_cap,
        transfers_per_journey,
        same_vehicle_repeat_seconds,
        utc_offset,
    })
}

/// `+08:00`, `-05:00`, `+0530` → seconds east of UTC.
fn parse_offset(text: &str) -> Option<i64> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i64 = digits[..2].parse().ok()?;
    let m: i64 = digits[2..].parse().ok()?;
    (h <= 14 && m < 60).then_some(sign * (h * 3600 + m * 60))
}
