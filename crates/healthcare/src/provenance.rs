//! How far a shipped data row can be trusted: every row of the parameter, rate,
//! base and funding tables carries a confidence mark and its source, which the
//! loaders read and expose. A row without a mark is refused at load.

use serde::{Deserialize, Serialize};

/// The confidence mark of a data row.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// Checked against an official text, named in the source column.
    Sourced,
    /// From the domain notes' reading of official texts, still to be checked
    /// against the text itself.
    Check,
    /// From unofficial or conflicting sources, or a placeholder: never to be
    /// presented as sourced. The default: what a row is when nothing says otherwise.
    #[default]
    Unverified,
}

impl Confidence {
    /// Every mark.
    pub const ALL: [Confidence; 3] = [
        Confidence::Sourced,
        Confidence::Check,
        Confidence::Unverified,
    ];

    /// The mark as written in the data files.
    pub fn code(self) -> &'static str {
        match self {
            Confidence::Sourced => "sourced",
            Confidence::Check => "check",
            Confidence::Unverified => "unverified",
        }
    }

    /// The mark for a code.
    pub fn from_code(code: &str) -> Option<Confidence> {
        Confidence::ALL.into_iter().find(|c| c.code() == code)
    }
}

impl std::fmt::Display for Confidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// Where a row comes from and how far to trust it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Provenance {
    /// The confidence mark.
    pub confidence: Confidence,
    /// The source, as the data file names it.
    pub source: String,
}

/// Reads the `confidence` and `source` columns of a row; a missing or unknown
/// mark is an error message for the loader to wrap.
pub(crate) fn read_provenance(
    confidence: Option<&str>,
    source: Option<&str>,
) -> Result<Provenance, String> {
    let mark = confidence.unwrap_or("").trim();
    if mark.is_empty() {
        return Err(
            "the row has no confidence mark: add sourced, check or unverified (unverified when no official text was found)"
                .into(),
        );
    }
    let confidence = Confidence::from_code(mark).ok_or_else(|| {
        format!("unknown confidence mark {mark:?}: use sourced, check or unverified")
    })?;
    let source = source.unwrap_or("").trim().to_owned();
    if source.is_empty() {
        return Err("the row names no source: say where the figures come from".into());
    }
    Ok(Provenance { confidence, source })
}
