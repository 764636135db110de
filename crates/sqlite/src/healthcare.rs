//! The healthcare stores on SQLite.

use crate::db::Migration;

/// The schema of the healthcare component.
pub(crate) const MIGRATIONS: &[Migration] = &[];
