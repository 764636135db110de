//! The identity stores on SQLite.

use crate::db::Migration;

/// The schema of the identity component.
pub(crate) const MIGRATIONS: &[Migration] = &[];
