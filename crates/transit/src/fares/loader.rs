//! Loading GTFS-Fares v2 files into a [`FareEngine`]: strict (the first
//! error stops) or lenient (bad rows left out and listed).

use std::collections::HashMap;

use citycard_core::{Money, WorkingCalendar};

use super::currency::Currency;
use super::engine::{
    Candidates, DistanceType, FareEngine, JoinRule, LegRule, Product, Timeframe, TransferRule,
    WorkingDays,
};
use super::extensions::{Extensions, load_extensions};
use super::loader_rows::{load_services, transfer_rule};
use crate::data::{Diagnostic, FareData, Row, Sink, Table, parse_gtfs_time, parse_km};
use crate::error::LoadError;
use crate::network::TransitNetwork;

/// How strictly to load a feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadMode {
    /// The first error stops loading.
    #[default]
    Strict,
    /// Rows with errors are left out and listed; the rest loads.
    Lenient,
}

pub(crate) fn intern(names: &mut Vec<String>, index: &mut HashMap<String, u16>, name: &str) -> u16 {
    if let Some(i) = index.get(name) {
        return *i;
    }
    let i = names.len() as u16;
    names.push(name.to_owned());
    index.insert(name.to_owned(), i);
    i
}

/// Days since 1970-01-01 of a `YYYYMMDD` date.
pub(crate) fn gtfs_date_days(text: &str) -> Option<i64> {
    let d = chrono::NaiveDate::parse_from_str(text, "%Y%m%d").ok()?;
    Some(
        d.signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?)
            .num_days(),
    )
}

pub(crate) fn flag(t: &Table, row: &Row, field: &str) -> Result<bool, LoadError> {
    match t.opt(row, field) {
        None | Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(other) => Err(t.err(row, field, format!("{other:?} must be 0 or 1"))),
    }
}

pub(crate) const DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

impl FareEngine {
    /// Loads a network and rule set; errors name the file, line and field.
    pub fn load(data: &FareData) -> Result<Self, LoadError> {
        Self::load_with(data, LoadMode::Strict).map(|(engine, _)| engine)
    }

    /// Loads a feed and lists what was found: warnings always, and in
    /// [`LoadMode::Lenient`] the errors of the rows left out. Structural
    /// problems (a required file missing, a bad header) stop both modes.
    pub fn load_with(
        data: &FareData,
        mode: LoadMode,
    ) -> Result<(Self, Vec<Diagnostic>), LoadError> {
        let mut sink = match mode {
            LoadMode::Strict => Sink::strict(),
            LoadMode::Lenient => Sink::lenient(),
        };
        let engine = load(data, &mut sink)?;
        Ok((engine, sink.diagnostics))
    }
}

fn load(data: &FareData, sink: &mut Sink) -> Result<FareEngine, LoadError> {
    let network = TransitNetwork::load_with(data, sink)?;

    // Rider categories.
    let t = data.table_raw("rider_categories.txt", false)?;
    sink.table(
        &t,
        &[
            "rider_category_id",
            "rider_category_name",
            "is_default_fare_category",
            "eligibility_url",
        ],
    )?;
    let mut categories: Vec<(String, String)> = Vec::new();
    let mut category_index: HashMap<String, u16> = HashMap::new();
    let mut default_category = None;
    for row in &t.rows {
        let r = (|| {
            let id = t.req(row, "rider_category_id")?;
            if category_index.contains_key(id) {
                return Err(t.err(row, "rider_category_id", "duplicate rider category"));
            }
            Ok((id, flag(&t, row, "is_default_fare_category")?))
        })();
        let Some((id, is_default)) = sink.row(r)? else {
            continue;
        };
        let idx = categories.len() as u16;
        category_index.insert(id.to_owned(), idx);
        categories.push((
            id.to_owned(),
            t.opt(row, "rider_category_name").unwrap_or(id).to_owned(),
        ));
        if is_default {
            if default_category.is_some() {
                sink.warn(
                    "multiple_default_rider_categories",
                    t.err(
                        row,
                        "is_default_fare_category",
                        "a second default rider category: the first one is used",
                    ),
                );
            } else {
                default_category = Some(idx);
            }
        }
    }

    // Fare media.
    let t = data.table_raw("fare_media.txt", false)?;
    sink.table(&t, &["fare_media_id", "fare_media_name", "fare_media_type"])?;
    let mut media: Vec<(String, String, u8)> = Vec::new();
    let mut media_index: HashMap<String, u16> = HashMap::new();
    for row in &t.rows {
        let r = (|| {
            let id = t.req(row, "fare_media_id")?;
            let kind: u8 = t.parse_req(row, "fare_media_type")?;
            if kind > 4 {
                return Err(t.err(row, "fare_media_type", "fare_media_type must be 0 to 4"));
            }
            if media_index.contains_key(id) {
                return Err(t.err(row, "fare_media_id", "duplicate fare media"));
            }
            Ok((id, kind))
        })();
        let Some((id, kind)) = sink.row(r)? else {
            continue;
        };
        if let Some((other, _, _)) = media.iter().find(|(_, _, k)| *k == kind) {
            sink.warn(
                "fare_media_same_type",
                t.err(
                    row,
                    "fare_media_type",
                    format!(
                        "{other:?} has the same type {kind}: citycard prices a medium by its type, so their prices must agree"
                    ),
                ),
            );
        }
        media_index.insert(id.to_owned(), media.len() as u16);
        media.push((
            id.to_owned(),
            t.opt(row, "fare_media_name").unwrap_or(id).to_owned(),
            kind,
        ));
    }

    // Fare products, all in one currency.
    let t = data.table_raw("fare_products.txt", true)?;
    sink.table(
        &t,
        &[
            "fare_product_id",
            "fare_product_name",
            "rider_category_id",
            "fare_media_id",
            "amount",
            "currency",
        ],
    )?;
    let mut currency: Option<Currency> = None;
    let mut products: Vec<Product> = Vec::new();
    let mut product_index: HashMap<String, u32> = HashMap::new();
    for row in &t.rows {
        let r = (|| {
            let id = t.req(row, "fare_product_id")?;
            let code = t.req(row, "currency")?;
            let c = Currency::from_code(code).ok_or_else(|| {
                t.err(
                    row,
                    "currency",
                    format!("{code:?} is not an ISO 4217 currency code"),
                )
            })?;
            if let Some(feed) = currency
                && feed != c
            {
                return Err(t.err(
                    row,
                    "currency",
                    format!(
                        "{code} differs from the feed's {feed}: a feed is priced in one currency"
                    ),
                ));
            }
            let text = t.req(row, "amount")?;
            let amount = c.parse_amount(text).ok_or_else(|| {
                t.err(
                    row,
                    "amount",
                    format!(
                        "{text:?} is not an amount in {c} ({} decimal places at most, no rounding)",
                        c.minor_units()
                    ),
                )
            })?;
            let category = t.lookup(row, "rider_category_id", &category_index)?;
            let medium = t.lookup(row, "fare_media_id", &media_index)?;
            if let Some(p) = product_index
                .get(id)
                .and_then(|i| products.get(*i as usize))
                && p.amounts
                    .iter()
                    .any(|(c, m, _)| *c == category && *m == medium)
            {
                return Err(t.err(
                    row,
                    "fare_product_id",
                    "duplicate product row for this rider category and fare media",
                ));
            }
            Ok((id, c, amount, category, medium))
        })();
        let Some((id, c, amount, category, medium)) = sink.row(r)? else {
            continue;
        };
        currency = Some(c);
        let idx = *product_index.entry(id.to_owned()).or_insert_with(|| {
            products.push(Product {
                id: id.to_owned(),
                name: t.opt(row, "fare_product_name").unwrap_or(id).to_owned(),
                amounts: Vec::new(),
            });
            (products.len() - 1) as u32
        });
        if let Some(p) = products.get_mut(idx as usize) {
            p.amounts.push((category, medium, amount));
        }
    }

    // Areas; a station's areas hold for its platforms unless they have their own.
    let t = data.table_raw("areas.txt", false)?;
    sink.table(&t, &["area_id", "area_name"])?;
    let mut areas = Vec::new();
    let mut area_index: HashMap<String, u16> = HashMap::new();
    for row in &t.rows {
        let r = t.req(row, "area_id").and_then(|id| {
            if area_index.contains_key(id) {
                Err(t.err(row, "area_id", "duplicate area"))
            } else {
                Ok(id)
            }
        });
        if let Some(id) = sink.row(r)? {
            intern(&mut areas, &mut area_index, id);
        }
    }
    let t = data.table_raw("stop_areas.txt", false)?;
    sink.table(&t, &["area_id", "stop_id"])?;
    let mut stop_areas: Vec<Vec<u16>> = vec![Vec::new(); network.stops.len()];
    for row in &t.rows {
        let r = (|| {
            let area = t.lookup_req(row, "area_id", &area_index)?;
            let stop = t.lookup_req(row, "stop_id", &network.stop_index)?;
            Ok((area, stop))
        })();
        if let Some((area, stop)) = sink.row(r)?
            && let Some(list) = stop_areas.get_mut(stop.get())
            && !list.contains(&area)
        {
            list.push(area);
        }
    }
    for i in 0..stop_areas.len() {
        if stop_areas[i].is_empty()
            && let Some(parent) = network.parent_station(crate::network::StopIdx(i as u32))
        {
            stop_areas[i] = stop_areas.get(parent.get()).cloned().unwrap_or_default();
        }
    }

    // Service calendars and timeframes.
    let (services, service_index) = load_services(data, sink)?;
    let t = data.table_raw("timeframes.txt", false)?;
    sink.table(
        &t,
        &["timeframe_group_id", "start_time", "end_time", "service_id"],
    )?;
    let mut timeframe_names = Vec::new();
    let mut timeframe_index: HashMap<String, u16> = HashMap::new();
    let mut timeframes: Vec<Vec<Timeframe>> = Vec::new();
    for row in &t.rows {
        let r = (|| {
            let id = t.req(row, "timeframe_group_id")?;
            let time = |field: &str| -> Result<Option<u32>, LoadError> {
                match t.opt(row, field) {
                    None => Ok(None),
                    Some(v) => match parse_gtfs_time(v) {
                        Some(s) if s <= 86_400 => Ok(Some(s)),
                        Some(_) => Err(t.err(row, field, "values above 24:00:00 are forbidden")),
                        None => Err(t.err(row, field, format!("{v:?} is not HH:MM:SS"))),
                    },
                }
            };
            let (start, end) = match (time("start_time")?, time("end_time")?) {
                (Some(s), Some(e)) => (s, e),
                (None, None) => (0, 86_400),
                (Some(_), None) => {
                    return Err(t.err(row, "end_time", "required when start_time is set"));
                }
                (None, Some(_)) => {
                    return Err(t.err(row, "start_time", "required when end_time is set"));
                }
            };
            if end <= start {
                return Err(t.err(row, "end_time", "end_time must be after start_time"));
            }
            let service = t.req(row, "service_id")?;
            let service = *service_index.get(service).ok_or_else(|| {
                t.err(
                    row,
                    "service_id",
                    format!(
                        "service {service:?} is in neither calendar.txt nor calendar_dates.txt"
                    ),
                )
            })?;
            Ok((
                id,
                Timeframe {
                    start,
                    end,
                    service,
                },
            ))
        })();
        let Some((id, tf)) = sink.row(r)? else {
            continue;
        };
        let g = intern(&mut timeframe_names, &mut timeframe_index, id);
        if timeframes.len() <= g as usize {
            timeframes.push(Vec::new());
        }
        let group = &mut timeframes[g as usize];
        if group
            .iter()
            .any(|o| o.service == tf.service && o.start < tf.end && tf.start < o.end)
        {
            sink.warn(
                "timeframe_overlap",
                t.err(
                    row,
                    "start_time",
                    format!("overlaps another timeframe of group {id:?} with the same service"),
                ),
            );
        }
        group.push(tf);
    }

    // Leg rules.
    let t = data.table_raw("fare_leg_rules.txt", true)?;
    sink.table(
        &t,
        &[
            "leg_group_id",
            "network_id",
            "from_area_id",
            "to_area_id",
            "from_timeframe_group_id",
            "to_timeframe_group_id",
            "fare_product_id",
            "rule_priority",
            "min_distance",
            "max_distance",
            "distance_type",
            "transfer_only",
        ],
    )?;
    let priority_mode = t.has_column("rule_priority");
    let mut leg_groups = Vec::new();
    let mut leg_group_index: HashMap<String, u16> = HashMap::new();
    let mut leg_rules: Vec<LegRule> = Vec::new();
    for row in &t.rows {
        let r = leg_rule(
            &t,
            row,
            &network,
            &area_index,
            &timeframe_index,
            &product_index,
        );
        let Some(mut rule) = sink.row(r)? else {
            continue;
        };
        rule.leg_group = t
            .opt(row, "leg_group_id")
            .map(|g| intern(&mut leg_groups, &mut leg_group_index, g));
        leg_rules.push(rule);
    }
    let candidates = candidates(&leg_rules, network.networks.len(), priority_mode);

    // Leg join rules (effective fare legs).
    let t = data.table_raw("fare_leg_join_rules.txt", false)?;
    sink.table(
        &t,
        &[
            "from_network_id",
            "to_network_id",
            "from_stop_id",
            "to_stop_id",
        ],
    )?;
    let mut join_rules = Vec::new();
    for row in &t.rows {
        let r = (|| {
            let from_network = t.lookup_req(row, "from_network_id", &network.network_index)?;
            let to_network = t.lookup_req(row, "to_network_id", &network.network_index)?;
            let from_stop = t.lookup(row, "from_stop_id", &network.stop_index)?;
            let to_stop = t.lookup(row, "to_stop_id", &network.stop_index)?;
            match (from_stop, to_stop) {
                (Some(_), None) => {
                    Err(t.err(row, "to_stop_id", "required when from_stop_id is set"))
                }
                (None, Some(_)) => {
                    Err(t.err(row, "from_stop_id", "required when to_stop_id is set"))
                }
                _ => Ok(JoinRule {
                    from_network,
                    to_network,
                    from_stop,
                    to_stop,
                }),
            }
        })();
        if let Some(rule) = sink.row(r)? {
            if rule.from_network != rule.to_network {
                sink.warn(
                    "fare_leg_join_rule_networks_differ",
                    t.err(
                        row,
                        "to_network_id",
                        "the reference matches an effective fare leg on one network: the joined leg is matched with the first leg's network",
                    ),
                );
            }
            join_rules.push(rule);
        }
    }

    // Transfer rules.
    let t = data.table_raw("fare_transfer_rules.txt", false)?;
    sink.table(
        &t,
        &[
            "from_leg_group_id",
            "to_leg_group_id",
            "transfer_count",
            "duration_limit",
            "duration_limit_type",
            "fare_transfer_type",
            "fare_product_id",
            "min_duration",
        ],
    )?;
    let mut transfer_rules = Vec::new();
    for row in &t.rows {
        let r = transfer_rule(&t, row, &leg_group_index, &product_index);
        if let Some(rule) = sink.row(r)? {
            transfer_rules.push(rule);
        }
    }
    let named = |f: &dyn Fn(&TransferRule) -> Option<u16>| -> Vec<u16> {
        let mut v: Vec<u16> = transfer_rules.iter().filter_map(f).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let transfer_from_groups = named(&|r| r.from_group);
    let transfer_to_groups = named(&|r| r.to_group);

    let Extensions {
        concessions,
        tiers,
        caps,
        limits,
        transfer_cap,
        transfers_per_journey,
        same_vehicle_repeat_seconds,
        utc_offset,
    } = load_extensions(
        data,
        sink,
        &network,
        &category_index,
        &media,
        &media_index,
        &timeframe_index,
        &product_index,
        currency.unwrap_or_default(),
    )?;

    Ok(FareEngine {
        network,
        currency: currency.unwrap_or_default(),
        leg_groups,
        categories,
        default_category,
        media,
        products,
        product_index,
        leg_rules,
        priority_mode,
        candidates,
        transfer_rules,
        transfer_from_groups,
        transfer_to_groups,
        join_rules,
        services,
        timeframes,
        timeframe_names,
        areas,
        stop_areas,
        concessions,
        tiers,
        caps,
        limits,
        transfer_cap,
        transfers_per_journey,
        same_vehicle_repeat_seconds,
        utc_offset,
        working_days: WorkingDays::new(&WorkingCalendar::china()),
    })
}

fn leg_rule(
    t: &Table,
    row: &Row,
    network: &TransitNetwork,
    area_index: &HashMap<String, u16>,
    timeframe_index: &HashMap<String, u16>,
    product_index: &HashMap<String, u32>,
) -> Result<LegRule, LoadError> {
    let distance = match t.opt(row, "distance_type") {
        None => DistanceType::None,
        Some("1") => DistanceType::Km,
        Some("2") => DistanceType::Sections,
        Some(other) => {
            return Err(t.err(
                row,
                "distance_type",
                format!("{other:?} is not supported: use 1 (kilometres) or 2 (fare sections)"),
            ));
        }
    };
    let bound = |field: &str| -> Result<Option<u32>, LoadError> {
        let Some(v) = t.opt(row, field) else {
            return Ok(None);
        };
        let parsed = match distance {
            DistanceType::Km => parse_km(v),
            DistanceType::Sections => v.parse::<u32>().ok(),
            DistanceType::None => {
                return Err(t.err(row, field, "a distance needs distance_type"));
            }
        };
        parsed
            .map(Some)
            .ok_or_else(|| t.err(row, field, format!("{v:?} is not a valid distance")))
    };
    let min = bound("min_distance")?;
    let max = bound("max_distance")?;
    if let (Some(a), Some(b)) = (min, max)
        && b <= a
    {
        return Err(t.err(row, "max_distance", "max_distance must exceed min_distance"));
    }
    let priority: i32 = t.parse_opt(row, "rule_priority")?.unwrap_or(0);
    if priority < 0 {
        return Err(t.err(row, "rule_priority", "must be a non-negative integer"));
    }
    Ok(LegRule {
        leg_group: None,
        network: t.lookup(row, "network_id", &network.network_index)?,
        from_area: t.lookup(row, "from_area_id", area_index)?,
        to_area: t.lookup(row, "to_area_id", area_index)?,
        from_tf: t.lookup(row, "from_timeframe_group_id", timeframe_index)?,
        to_tf: t.lookup(row, "to_timeframe_group_id", timeframe_index)?,
        product: t.lookup_req(row, "fare_product_id", product_index)?,
        priority,
        min,
        max,
        distance,
        transfer_only: flag(t, row, "transfer_only")?,
        line: row.line,
    })
}

/// The candidate rules of each network, highest priority first (file order
/// within a priority). Without `rule_priority`, a rule with an empty
/// `network_id` is a candidate only on networks no rule names, and the values
/// named among a network's candidates drive inverse matching of the other fields.
fn candidates(rules: &[LegRule], networks: usize, priority_mode: bool) -> Vec<Candidates> {
    let mut named_networks = vec![false; networks];
    for r in rules {
        if let Some(n) = r.network
            && let Some(x) = named_networks.get_mut(n.get())
        {
            *x = true;
        }
    }
    (0..networks)
        .map(|n| {
            let mut c = Candidates::default();
            for (i, r) in rules.iter().enumerate() {
                let matches = match r.network {
                    Some(x) => x.get() == n,
                    None => priority_mode || !named_networks[n],
                };
                if matches {
                    c.rules.push(i as u32);
                    c.has_transfer_only |= r.transfer_only;
                }
            }
            c.rules
                .sort_by_key(|i| std::cmp::Reverse(rules[*i as usize].priority));
            if !priority_mode {
                let named = |f: &dyn Fn(&LegRule) -> Option<u16>| {
                    let mut v: Vec<u16> = c
                        .rules
                        .iter()
                        .filter_map(|i| f(&rules[*i as usize]))
                        .collect();
                    v.sort_unstable();
                    v.dedup();
                    v
                };
                c.from_areas = named(&|r| r.from_area);
                c.to_areas = named(&|r| r.to_area);
                c.from_tfs = named(&|r| r.from_tf);
                c.to_tfs = named(&|r| r.to_tf);
            }
            c
        })
        .collect()
}

/// A percentage field (0–100).
pub(crate) fn percent_field(t: &Table, row: &Row, field: &str) -> Result<u16, LoadError> {
    let p: u16 = t.parse_req(row, field)?;
    if p > 100 {
        return Err(t.err(row, field, "a percentage must be between 0 and 100"));
    }
    Ok(p)
}

/// A money field in the feed's currency.
pub(crate) fn amount_field(
    t: &Table,
    row: &Row,
    field: &str,
    currency: Currency,
) -> Result<Money, LoadError> {
    let v = t.req(row, field)?;
    currency.parse_amount(v).ok_or_else(|| {
        t.err(
            row,
            field,
            format!(
                "{v:?} is not an amount in {currency} ({} decimal places at most)",
                currency.minor_units()
            ),
        )
    })
}
