//! The binding stores on SQLite.

use crate::db::Migration;

/// The schema of the binding component.
pub(crate) const MIGRATIONS: &[Migration] = &[];
