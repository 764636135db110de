//! Fare and network data files: where they come from and how a CSV table is read.
//!
//! A [`FareData`] is a set of named text files in GTFS CSV form (a header row,
//! then one record per line). [`FareData::hangzhou`] returns the embedded
//! Hangzhou set; [`FareData::from_dir`] reads a directory.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

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
    ("networks.txt", false),
    ("route_networks.txt", false),
    ("areas.txt", false),
    ("stop_areas.txt", false),
    ("calendar.txt", false),
    ("calendar_dates.txt", false),
    ("timeframes.txt", false),
    ("fare_media.txt", false),
    ("rider_categories.txt", false),
    ("fare_products.txt", true),
    ("fare_leg_rules.txt", true),
    ("fare_leg_join_rules.txt", false),
    ("fare_transfer_rules.txt", false),
    ("citycard_fare_caps.txt", false),
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

    /// One file as a table; a malformed row is an error (see [`Sink::table`] to leave such rows out).
    pub(crate) fn table(&self, name: &'static str, required: bool) -> Result<Table, LoadError> {
        let t = self.table_raw(name, required)?;
        match t.malformed.first() {
            Some(e) => Err(e.clone()),
            None => Ok(t),
        }
    }

    /// One file as a table, malformed rows listed in [`Table::malformed`].
    pub(crate) fn table_raw(&self, name: &'static str, required: bool) -> Result<Table, LoadError> {
        match self.file(name) {
            Some(text) => Table::parse(name, text),
            None if required => Err(LoadError::new(name, 0, "-", "file is missing")),
            None => Ok(Table::empty(name)),
        }
    }

    /// Every file name in the set.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }
}

/// How bad a finding in fare data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Loading stops (strict) or leaves the row out (lenient).
    Error,
    /// The data loads; something is probably not what the producer meant.
    Warning,
}

/// One finding in fare data, with its file, line and field, in the spirit of
/// the canonical GTFS validator's notices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// A short code, e.g. `foreign_key_violation`, `unknown_column`, `unreachable_fare_leg_rule`.
    pub code: String,
    /// The file, line (header = 1, 0 for the whole file), field and problem.
    #[serde(flatten)]
    pub at: LoadError,
    /// Whether lenient loading left the row out.
    pub row_left_out: bool,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{kind} [{}] {} line {}, field {}: {}",
            self.code, self.at.file, self.at.line, self.at.field, self.at.problem
        )?;
        if self.row_left_out {
            f.write_str(" (row left out)")?;
        }
        Ok(())
    }
}

/// Where loaders report problems: strict loading stops at the first error,
/// lenient loading leaves the row out and lists it; warnings never stop.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    pub(crate) lenient: bool,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl Sink {
    pub(crate) fn strict() -> Self {
        Self::default()
    }

    pub(crate) fn lenient() -> Self {
        Self {
            lenient: true,
            diagnostics: Vec::new(),
        }
    }

    /// A row's outcome: its value, or (lenient) `None` with the problem listed, or (strict) the error.
    pub(crate) fn row<T>(&mut self, r: Result<T, LoadError>) -> Result<Option<T>, LoadError> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(e) => self.problem(e).map(|()| None),
        }
    }

    /// An error in a row: strict loading stops; lenient loading lists it.
    pub(crate) fn problem(&mut self, e: LoadError) -> Result<(), LoadError> {
        if !self.lenient {
            return Err(e);
        }
        let code = if e.problem.starts_with("unknown id") {
            "foreign_key_violation"
        } else if e.problem.starts_with("malformed row") {
            "malformed_row"
        } else if e.problem.contains("required") {
            "missing_required_field"
        } else {
            "invalid_row"
        };
        self.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            code: code.to_owned(),
            at: e,
            row_left_out: true,
        });
        Ok(())
    }

    /// A warning: never stops loading.
    pub(crate) fn warn(&mut self, code: &str, e: LoadError) {
        self.diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            code: code.to_owned(),
            at: e,
            row_left_out: false,
        });
    }

    /// Reports a table's malformed rows and the columns no loader reads.
    pub(crate) fn table(&mut self, t: &Table, known: &[&str]) -> Result<(), LoadError> {
        for e in &t.malformed {
            self.problem(e.clone())?;
        }
        self.columns(t, known);
        Ok(())
    }

    /// Warns of each column of `t` that is not in `known`.
    pub(crate) fn columns(&mut self, t: &Table, known: &[&str]) {
        let mut unknown: Vec<&str> = t.column_names().filter(|c| !known.contains(c)).collect();
        unknown.sort_unstable();
        for c in unknown {
            self.warn(
                "unknown_column",
                LoadError::new(
                    t.file,
                    1,
                    c,
                    "ignored column: neither in the GTFS reference nor a citycard extension",
                ),
            );
        }
    }
}

/// One parsed CSV file.
pub(crate) struct Table {
    pub(crate) file: &'static str,
    columns: HashMap<String, usize>,
    pub(crate) rows: Vec<Row>,
    /// Rows the CSV reader could not read, or with the wrong number of fields.
    pub(crate) malformed: Vec<LoadError>,
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
            malformed: Vec::new(),
        }
    }

    fn parse(file: &'static str, text: &str) -> Result<Self, LoadError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .trim(csv::Trim::All)
            .comment(Some(b'#'))
            .from_reader(text.as_bytes());
        let headers = reader
            .headers()
            .map_err(|e| LoadError::new(file, 1, "-", format!("bad header: {e}")))?
            .clone();
        let mut columns = HashMap::new();
        for (i, h) in headers.iter().enumerate() {
            if h.is_empty() {
                return Err(LoadError::new(
                    file,
                    1,
                    "-",
                    format!("column {} has no name", i + 1),
                ));
            }
            if columns.insert(h.to_owned(), i).is_some() {
                return Err(LoadError::new(
                    file,
                    1,
                    h,
                    "the column appears twice in the header",
                ));
            }
        }
        let width = headers.len();
        let mut rows = Vec::new();
        let mut malformed = Vec::new();
        for record in reader.records() {
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    malformed.push(LoadError::new(
                        file,
                        line,
                        "-",
                        format!("malformed row: {e}"),
                    ));
                    // A CSV error the reader cannot step over (bad UTF-8 is one it can).
                    if e.position().is_none() {
                        break;
                    }
                    continue;
                }
            };
            let line = record.position().map_or(0, |p| p.line());
            if record.len() != width {
                malformed.push(LoadError::new(
                    file,
                    line,
                    "-",
                    format!(
                        "malformed row: {} fields where the header has {width}",
                        record.len()
                    ),
                ));
                continue;
            }
            rows.push(Row {
                line,
                fields: record.iter().map(str::to_owned).collect(),
            });
        }
        Ok(Self {
            file,
            columns,
            rows,
            malformed,
        })
    }

    /// The column names, in no particular order.
    pub(crate) fn column_names(&self) -> impl Iterator<Item = &str> {
        self.columns.keys().map(String::as_str)
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
