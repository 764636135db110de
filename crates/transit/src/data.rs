//! Fare and network data files: where they come from and how a CSV table is read.
//!
//! A [`FareData`] is a set of named text files in GTFS CSV form (a header row,
//! then one record per line). [`FareData::hangzhou`] returns the embedded
//! Hangzhou set; [`FareData::from_dir`] reads a directory.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use citycard_core::Money;

use crate::error::LoadError;

macro_rules! embed {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../data/hangzhou/", $name)))),*]
    };
}

/// The Hangzhou files, embedded at compile time.
const HANGZHOU: &[(&str, &str)] = embed!(
    "stops.txt",
    "routes.txt",
    "networks.txt",
    "route_networks.txt",
    "areas.txt",
    "stop_areas.txt",
    "calendar.txt",
    "timeframes.txt",
    "fare_media.txt",
    "rider_categories.txt",
    "fare_products.txt",
    "fare_leg_rules.txt",
    "fare_transfer_rules.txt",
    "citycard_metro_links.txt",
    "citycard_route_sections.txt",
    "citycard_concessions.txt",
    "citycard_volume_tiers.txt",
    "citycard_network_limits.txt",
    "citycard_settings.txt",
);

/// Every file name the loader reads; the ones marked optional may be absent.
pub const FILES: &[(&str, bool)] = &[
    ("stops.txt", true),
    ("routes.txt", true),
    ("networks.txt", true),
    ("route_networks.txt", true),
    ("areas.txt", false),
    ("stop_areas.txt", false),
    ("calendar.txt", false),
    ("timeframes.txt", false),
    ("fare_media.txt", false),
    ("rider_categories.txt", false),
    ("fare_products.txt", true),
    ("fare_leg_rules.txt", true),
    ("fare_transfer_rules.txt", false),
    ("citycard_metro_links.txt", false),
    ("citycard_route_sections.txt", false),
    ("citycard_concessions.txt", false),
    ("citycard_volume_tiers.txt", false),
    ("citycard_network_limits.txt", false),
    ("citycard_settings.txt", false),
];

/// A set of fare and network files, by file name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FareData {
    files: BTreeMap<String, String>,
}

impl FareData {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The embedded Hangzhou rule set and sample network.
    pub fn hangzhou() -> Self {
        let mut data = Self::new();
        for (name, text) in HANGZHOU {
            data.insert(*name, *text);
        }
        data
    }

    /// Reads every known file present in a directory.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, LoadError> {
        let mut data = Self::new();
        for (name, required) in FILES {
            let path = dir.as_ref().join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => data.insert(*name, text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {}
                Err(e) => return Err(LoadError::new(*name, 0, "-", format!("cannot read: {e}"))),
            }
        }
        Ok(data)
    }

    /// Adds or replaces one file.
    pub fn insert(&mut self, name: impl Into<String>, text: impl Into<String>) {
        self.files.insert(name.into(), text.into());
    }

    /// Removes one file.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.files.remove(name)
    }

    /// The text of one file.
    pub fn file(&self, name: &str) -> Option<&str> {
        self.files.get(name).map(String::as_str)
    }

    pub(crate) fn table(&self, name: &'static str, required: bool) -> Result<Table, LoadError> {
        match self.file(name) {
            Some(text) => Table::parse(name, text),
            None if required => Err(LoadError::new(name, 0, "-", "file is missing")),
            None => Ok(Table::empty(name)),
        }
    }
}

/// One parsed CSV file.
pub(crate) struct Table {
    pub(crate) file: &'static str,
    columns: HashMap<String, usize>,
    pub(crate) rows: Vec<Row>,
}

/// One record with its line number.
pub(crate) struct Row {
    pub(crate) line: u64,
    fields: Vec<String>,
}

impl Table {
    fn empty(file: &'static str) -> Self {
        Self {
            file,
            columns: HashMap::new(),
            rows: Vec::new(),
        }
    }

    fn parse(file: &'static str, text: &str) -> Result<Self, LoadError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .comment(Some(b'#'))
            .from_reader(text.as_bytes());
        let headers = reader
            .headers()
            .map_err(|e| LoadError::new(file, 1, "-", format!("bad header: {e}")))?
            .clone();
        let columns = headers
            .iter()
            .enumerate()
            .map(|(i, h)| (h.to_owned(), i))
            .collect();
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line());
                LoadError::new(file, line, "-", format!("malformed row: {e}"))
            })?;
            let line = record.position().map_or(0, |p| p.line());
            rows.push(Row {
                line,
                fields: record.iter().map(str::to_owned).collect(),
            });
        }
        Ok(Self {
            file,
            columns,
            rows,
        })
    }

    /// Whether the file has a column.
    pub(crate) fn has_column(&self, field: &str) -> bool {
        self.columns.contains_key(field)
    }

    /// A field's value, `None` when the column is absent or the value empty.
    pub(crate) fn opt<'a>(&self, row: &'a Row, field: &str) -> Option<&'a str> {
        let i = *self.columns.get(field)?;
        row.fields
            .get(i)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A required field's value.
    pub(crate) fn req<'a>(&self, row: &'a Row, field: &str) -> Result<&'a str, LoadError> {
        self.opt(row, field)
            .ok_or_else(|| self.err(row, field, "value is required"))
    }

    pub(crate) fn err(&self, row: &Row, field: &str, problem: impl Into<String>) -> LoadError {
        LoadError::new(self.file, row.line, field, problem)
    }

    /// An optional field parsed with `FromStr`.
    pub(crate) fn parse_opt<T: std::str::FromStr>(
        &self,
        row: &Row,
        field: &str,
    ) -> Result<Option<T>, LoadError>
    where
        T::Err: std::fmt::Display,
    {
        match self.opt(row, field) {
            None => Ok(None),
            Some(v) => v
                .parse::<T>()
                .map(Some)
                .map_err(|e| self.err(row, field, format!("cannot read {v:?}: {e}"))),
        }
    }

    /// A required field parsed with `FromStr`.
    pub(crate) fn parse_req<T: std::str::FromStr>(
        &self,
        row: &Row,
        field: &str,
    ) -> Result<T, LoadError>
    where
        T::Err: std::fmt::Display,
    {
        self.parse_opt(row, field)?
            .ok_or_else(|| self.err(row, field, "value is required"))
    }

    /// A money field.
    pub(crate) fn money(&self, row: &Row, field: &str) -> Result<Money, LoadError> {
        let v = self.req(row, field)?;
        Money::parse(v).map_err(|e| self.err(row, field, e.to_string()))
    }

    /// A field that names something already loaded.
    pub(crate) fn lookup<T: Copy>(
        &self,
        row: &Row,
        field: &str,
        names: &HashMap<String, T>,
    ) -> Result<Option<T>, LoadError> {
        match self.opt(row, field) {
            None => Ok(None),
            Some(v) => names
                .get(v)
                .copied()
                .map(Some)
                .ok_or_else(|| self.err(row, field, format!("unknown id {v:?}"))),
        }
    }

    /// A required field that names something already loaded.
    pub(crate) fn lookup_req<T: Copy>(
        &self,
        row: &Row,
        field: &str,
        names: &HashMap<String, T>,
    ) -> Result<T, LoadError> {
        self.lookup(row, field, names)?
            .ok_or_else(|| self.err(row, field, "value is required"))
    }
}

/// Parses a GTFS time `HH:MM:SS` (hours may reach 24 and beyond) into seconds.
pub(crate) fn parse_gtfs_time(text: &str) -> Option<u32> {
    let mut parts = text.split(':');
    let h: u32 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let s: u32 = parts.next().map_or(Some(0), |s| s.parse().ok())?;
    if parts.next().is_some() || m > 59 || s > 59 || h > 48 {
        return None;
    }
    Some(h * 3600 + m * 60 + s)
}

/// Parses a decimal number of kilometres into whole metres (at most 3 decimals).
pub(crate) fn parse_km(text: &str) -> Option<u32> {
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, f),
        None => (text, ""),
    };
    if frac.len() > 3 || int.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let km: u32 = int.parse().ok()?;
    let mut metres_frac: u32 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    for _ in frac.len()..3 {
        metres_frac *= 10;
    }
    km.checked_mul(1000)?.checked_add(metres_frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_kilometres_parse() {
        assert_eq!(parse_gtfs_time("07:00:00"), Some(25_200));
        assert_eq!(parse_gtfs_time("24:00:00"), Some(86_400));
        assert_eq!(parse_gtfs_time("7:6"), Some(7 * 3600 + 6 * 60));
        assert_eq!(parse_gtfs_time("07:60:00"), None);
        assert_eq!(parse_km("4"), Some(4000));
        assert_eq!(parse_km("1.25"), Some(1250));
        assert_eq!(parse_km("0.125"), Some(125));
        assert_eq!(parse_km("1.2345"), None);
        assert_eq!(parse_km("-1"), None);
    }
}
