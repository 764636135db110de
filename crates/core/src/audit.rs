//! The audit trail: an append-only log of every state change that matters.
//!
//! Binding, unbinding, lost reports, transfers, settlements, bookings and
//! denied attempts each leave an [`AuditRecord`]. Records carry ids and
//! outcomes, never personal data: put masked values in `detail` if anything.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::principal::Principal;

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditOutcome {
    /// The action took effect.
    Succeeded,
    /// The principal was not allowed to do it.
    Denied,
    /// It was attempted and failed.
    Failed,
    /// A retry of an action that had already taken effect: nothing changed.
    Replayed,
}

impl AuditOutcome {
    /// A stable lowercase code.
    pub fn code(self) -> &'static str {
        match self {
            AuditOutcome::Succeeded => "succeeded",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Failed => "failed",
            AuditOutcome::Replayed => "replayed",
        }
    }

    /// The outcome for a code.
    pub fn from_code(code: &str) -> Option<AuditOutcome> {
        match code {
            "succeeded" => Some(AuditOutcome::Succeeded),
            "denied" => Some(AuditOutcome::Denied),
            "failed" => Some(AuditOutcome::Failed),
            "replayed" => Some(AuditOutcome::Replayed),
            _ => None,
        }
    }
}

/// One audited event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When it happened (from the service's clock).
    pub at: DateTime<Utc>,
    /// Who acted.
    pub actor: Principal,
    /// What was done, as `domain.verb`, e.g. `binding.bind`, `card.report_lost`.
    pub action: String,
    /// What it was done to, as `kind:id`, e.g. `card:c-1`.
    pub subject: String,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// Further facts (ids, reasons, amounts); never unmasked personal data.
    pub detail: BTreeMap<String, String>,
}

impl AuditRecord {
    /// A record with no detail.
    pub fn new(
        at: DateTime<Utc>,
        actor: Principal,
        action: impl Into<String>,
        subject: impl Into<String>,
        outcome: AuditOutcome,
    ) -> Self {
        Self {
            at,
            actor,
            action: action.into(),
            subject: subject.into(),
            outcome,
            detail: BTreeMap::new(),
        }
    }

    /// Adds one detail.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.detail.insert(key.into(), value.into());
        self
    }
}

/// A stored record with its position in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, starting at 1, strictly increasing.
    pub sequence: u64,
    /// The record.
    pub record: AuditRecord,
}

/// Which records to read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only records about this subject.
    pub subject: Option<String>,
    /// Only records with this action.
    pub action: Option<String>,
    /// Only records with a sequence above this one (for paging).
    pub after_sequence: Option<u64>,
    /// At most this many records (all when `None`).
    pub limit: Option<usize>,
}

impl AuditQuery {
    /// Every record.
    pub fn all() -> Self {
        Self::default()
    }

    /// Records about one subject.
    pub fn subject(subject: impl Into<String>) -> Self {
        Self {
            subject: Some(subject.into()),
            ..Self::default()
        }
    }

    /// Whether a record passes the filters (not the paging).
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        self.subject
            .as_ref()
            .is_none_or(|s| *s == entry.record.subject)
            && self
                .action
                .as_ref()
                .is_none_or(|a| *a == entry.record.action)
            && self
                .after_sequence
                .is_none_or(|after| entry.sequence > after)
    }
}

/// The append-only audit log port. Records are never changed or removed.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends a record and returns its sequence number.
    async fn append(&self, record: AuditRecord) -> Result<u64, StoreError>;
    /// Reads records in sequence order.
    async fn query(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
}

/// An audit log in memory.
#[derive(Debug, Default)]
pub struct MemoryAuditLog {
    entries: Mutex<Vec<AuditEntry>>,
}

impl MemoryAuditLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends records in order (a memory store's commit).
    pub fn append_all(&self, records: &[AuditRecord]) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for record in records {
            let sequence = entries.len() as u64 + 1;
            entries.push(AuditEntry {
                sequence,
                record: record.clone(),
            });
        }
    }
}

#[async_trait]
impl AuditLog for MemoryAuditLog {
    async fn append(&self, record: AuditRecord) -> Result<u64, StoreError> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let sequence = entries.len() as u64 + 1;
        entries.push(AuditEntry { sequence, record });
        Ok(sequence)
    }

    async fn query(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        Ok(entries
            .iter()
            .filter(|e| query.matches(e))
            .take(query.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }
}
