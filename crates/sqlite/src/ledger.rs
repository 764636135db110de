//! The ledger stores on SQLite.

use crate::db::Migration;

/// The schema of the ledger component.
pub(crate) const MIGRATIONS: &[Migration] = &[];
