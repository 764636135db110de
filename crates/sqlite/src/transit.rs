//! The transit stores on SQLite.

use crate::db::Migration;

/// The schema of the transit component.
pub(crate) const MIGRATIONS: &[Migration] = &[];
