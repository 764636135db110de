//! Loading `calendar.txt` / `calendar_dates.txt` services and `fare_transfer_rules.txt` rows.

use std::collections::HashMap;

use super::engine::{Service, TransferRule};
use super::loader::{DAYS, flag, gtfs_date_days};
use crate::data::{FareData, Row, Sink, Table};
use crate::error::LoadError;

/// `calendar.txt` (with the citycard `citycard_working_days` column) and `calendar_dates.txt`.
pub(crate) fn load_services(
    data: &FareData,
    sink: &mut Sink,
) -> Result<(Vec<Service>, HashMap<String, u32>), LoadError> {
    let t = data.table_raw("calendar.txt", false)?;
    let mut known = DAYS.to_vec();
    known.extend([
        "service_id",
        "start_date",
        "end_date",
        "citycard_working_days",
    ]);
    sink.table(&t, &known)?;
    let mut services: Vec<Service> = Vec::new();
    let mut index: HashMap<String, u32> = HashMap::new();
    for row in &t.rows {
        let r = (|| {
            let id = t.req(row, "service_id")?;
            if index.contains_key(id) {
                return Err(t.err(row, "service_id", "duplicate service"));
            }
            let mut mask = 0u8;
            for (i, day) in DAYS.iter().enumerate() {
                match t.req(row, day)? {
                    "1" => mask |= 1 << i,
                    "0" => {}
                    other => return Err(t.err(row, day, format!("{other:?} must be 0 or 1"))),
                }
            }
            let date = |field: &str| -> Result<Option<i64>, LoadError> {
                match t.opt(row, field) {
                    None => Ok(None),
                    Some(v) => gtfs_date_days(v)
                        .map(Some)
                        .ok_or_else(|| t.err(row, field, format!("{v:?} is not a YYYYMMDD date"))),
                }
            };
            Ok((
                id,
                Service {
                    weekdays: mask,
                    working_days: flag(&t, row, "citycard_working_days")?,
                    from_day: date("start_date")?.unwrap_or(i64::MIN),
                    to_day: date("end_date")?.unwrap_or(i64::MAX),
                    regular: true,
                    added: Vec::new(),
                    removed: Vec::new(),
                },
            ))
        })();
        if let Some((id, s)) = sink.row(r)? {
            index.insert(id.to_owned(), services.len() as u32);
            services.push(s);
        }
    }
    let t = data.table_raw("calendar_dates.txt", false)?;
    sink.table(&t, &["service_id", "date", "exception_type"])?;
    for row in &t.rows {
        let r = (|| {
            let id = t.req(row, "service_id")?;
            let v = t.req(row, "date")?;
            let day = gtfs_date_days(v)
                .ok_or_else(|| t.err(row, "date", format!("{v:?} is not a YYYYMMDD date")))?;
            let added = match t.req(row, "exception_type")? {
                "1" => true,
                "2" => false,
                other => {
                    return Err(t.err(
                        row,
                        "exception_type",
                        format!("{other:?} must be 1 (added) or 2 (removed)"),
                    ));
                }
            };
            Ok((id, day, added))
        })();
        let Some((id, day, added)) = sink.row(r)? else {
            continue;
        };
        let i = *index.entry(id.to_owned()).or_insert_with(|| {
            services.push(Service::default());
            services.len() as u32 - 1
        });
        if let Some(s) = services.get_mut(i as usize) {
            if added {
                s.added.push(day);
            } else {
                s.removed.push(day);
            }
        }
    }
    for s in &mut services {
        s.added.sort_unstable();
        s.removed.sort_unstable();
    }
    Ok((services, index))
}

pub(crate) fn transfer_rule(
    t: &Table,
    row: &Row,
    leg_group_index: &HashMap<String, u16>,
    product_index: &HashMap<String, u32>,
) -> Result<TransferRule, LoadError> {
    let from_group = t.lookup(row, "from_leg_group_id", leg_group_index)?;
    let to_group = t.lookup(row, "to_leg_group_id", leg_group_index)?;
    let transfer_count: Option<i32> = t.parse_opt(row, "transfer_count")?;
    let same = from_group.is_some() && from_group == to_group;
    let transfer_count = match (transfer_count, same) {
        (None, true) => {
            return Err(t.err(
                row,
                "transfer_count",
                "required when from_leg_group_id equals to_leg_group_id",
            ));
        }
        (Some(_), false) => {
            return Err(t.err(
                row,
                "transfer_count",
                "forbidden when the leg groups differ",
            ));
        }
        (Some(c), true) if c == 0 || c < -1 => {
            return Err(t.err(row, "transfer_count", "must be -1 or at least 1"));
        }
        (c, _) => c.unwrap_or(-1),
    };
    let duration_limit: Option<i64> = t.parse_opt(row, "duration_limit")?;
    let duration_type: Option<u8> = t.parse_opt(row, "duration_limit_type")?;
    let duration_type = match (duration_limit, duration_type) {
        (Some(_), None) => {
            return Err(t.err(
                row,
                "duration_limit_type",
                "required when duration_limit is set",
            ));
        }
        (None, Some(_)) => {
            return Err(t.err(
                row,
                "duration_limit_type",
                "forbidden without duration_limit",
            ));
        }
        (_, Some(d)) if d > 3 => {
            return Err(t.err(row, "duration_limit_type", "must be 0, 1, 2 or 3"));
        }
        (_, d) => d.unwrap_or(0),
    };
    if duration_limit.is_some_and(|d| d <= 0) {
        return Err(t.err(
            row,
            "duration_limit",
            "must be a positive number of seconds",
        ));
    }
    let min_duration: i64 = t.parse_opt(row, "min_duration")?.unwrap_or(0);
    if min_duration < 0 || duration_limit.is_some_and(|d| min_duration > d) {
        return Err(t.err(
            row,
            "min_duration",
            "must be 0 or more seconds and not above duration_limit",
        ));
    }
    let kind: u8 = t.parse_req(row, "fare_transfer_type")?;
    if kind > 2 {
        return Err(t.err(
            row,
            "fare_transfer_type",
            "must be 0 (A+AB), 1 (A+AB+B) or 2 (AB)",
        ));
    }
    Ok(TransferRule {
        from_group,
        to_group,
        transfer_count,
        duration_limit,
        duration_type,
        min_duration,
        kind,
        product: t.lookup(row, "fare_product_id", product_index)?,
        line: row.line,
    })
}
