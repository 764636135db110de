//! The unit of work: what one operation writes across domains, committed once.
//!
//! Each domain decides its own rows (a ledger batch's [`ChangeSet`], a
//! settlement chunk's [`TransitChanges`], the [`CoreChanges`] of audit records
//! and idempotency outcomes); a [`UnitOfWork`] writes the rows of one
//! operation atomically. On the embedded store that is one SQLite transaction
//! ([`SqliteUnitOfWork`]), on PostgreSQL one transaction too
//! ([`PostgresUnitOfWork`]); [`PortsUnitOfWork`] writes through each domain's
//! store port in turn, for memory stores (which a crash cannot tear) and for
//! stores a host wrapped (see [`crate::CityCardBuilder::wrap_ledger_store`]).

use std::sync::Arc;

use async_trait::async_trait;
use citycard_binding::{CardChangeStore, CardChanges};
use citycard_core::{CoreChanges, StoreError};
use citycard_ledger::{ChangeSet, LedgerStore};
use citycard_sqlite::Database;
use citycard_transit::{TransitChanges, TransitStore};

/// One operation's rows across domains.
#[derive(Debug, Default)]
pub struct CityPlan<'a> {
    /// A ledger batch, decided by the ledger.
    pub ledger: Option<&'a ChangeSet<'a>>,
    /// Transit rows (a settlement chunk, an arrears payment).
    pub transit: Option<&'a TransitChanges>,
    /// Audit records and idempotency outcomes of the operation.
    pub core: CoreChanges,
}

/// A card registry plan in a group commit ([`UnitOfWork::commit_cards`]).
#[derive(Debug, Clone, Copy)]
pub struct CardPlan<'a> {
    /// The registry's rows.
    pub changes: &'a CardChanges,
    /// Their audit records and idempotency outcome.
    pub core: &'a CoreChanges,
}

/// Commits a [`CityPlan`]: all of it, or (on an error) none of it where the
/// backend can promise that.
#[async_trait]
pub trait UnitOfWork: Send + Sync {
    /// Writes the plan.
    async fn commit(&self, plan: CityPlan<'_>) -> Result<(), StoreError>;

    /// Writes a ledger batch (new accounts, say) with its core records, and
    /// card registry plans each on its own: a plan whose precondition fails
    /// is refused alone (its entry is the `Conflict`) and the rest commit.
    /// A lone plan may be refused as the `Err` of the whole call instead.
    /// The `Err` of the whole call means nothing was written where the
    /// backend can promise that. On SQLite it is one transaction, each plan
    /// in a savepoint: concurrent card issues share one fsync.
    async fn commit_cards(
        &self,
        ledger: &ChangeSet<'_>,
        core: &CoreChanges,
        plans: &[CardPlan<'_>],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError>;
}

/// One transaction on the citycard SQLite file: one fsync per operation.
#[derive(Debug, Clone)]
pub struct SqliteUnitOfWork {
    db: Database,
}

impl SqliteUnitOfWork {
    /// The unit of work on an open database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// A plan with at least this many trips (a settlement chunk) commits on a
/// thread of its own, so that the caller's task can decide the next chunk
/// meanwhile; smaller plans commit on the caller's thread.
pub const WRITER_THREAD_TRIPS: usize = 512;

fn write_plan(
    tx: &rusqlite::Transaction<'_>,
    ledger: Option<&ChangeSet<'_>>,
    transit: Option<&TransitChanges>,
    core: &CoreChanges,
) -> Result<(), StoreError> {
    if let Some(ledger) = ledger {
        citycard_sqlite::ledger::write_changes(tx, ledger)?;
    }
    if let Some(transit) = transit {
        citycard_sqlite::transit::write_changes(tx, transit)?;
    }
    citycard_sqlite::write_core_changes(tx, core)
}

/// Joins the commit thread if the commit's future is dropped before it
/// answers: the transaction finishes (or fails) before the caller's locks
/// (the ledger's) are released, so the next holder sees its outcome.
struct JoinOnDrop(Option<std::thread::JoinHandle<()>>);

impl Drop for JoinOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            let _ = handle.join();
        }
    }
}

#[async_trait]
impl UnitOfWork for SqliteUnitOfWork {
    async fn commit(&self, plan: CityPlan<'_>) -> Result<(), StoreError> {
        if plan
            .transit
            .is_none_or(|t| t.trips.len() < WRITER_THREAD_TRIPS)
        {
            return self
                .db
                .transaction(|tx| write_plan(tx, plan.ledger, plan.transit, &plan.core));
        }
        // The rows are copied for the thread: a few milliseconds for a chunk
        // whose commit takes tens.
        let ledger = plan.ledger.map(ChangeSet::to_owned_changes);
        let transit = plan.transit.cloned();
        let core = plan.core;
        let db = self.db.clone();
        let (answer, answered) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("citycard-commit".into())
            .spawn(move || {
                let written = db.transaction(|tx| {
                    let ledger = ledger.as_ref().map(|l| l.as_change_set());
                    write_plan(tx, ledger.as_ref(), transit.as_ref(), &core)
                });
                let _ = answer.send(written);
            })
            .map_err(|e| StoreError::Unavailable(format!("no thread for the commit: {e}")))?;
        let mut guard = JoinOnDrop(Some(thread));
        let written = answered.await.map_err(|_| {
            StoreError::Internal("the commit thread stopped without an answer".into())
        });
        if let Some(thread) = guard.0.take() {
            let _ = thread.join();
        }
        written?
    }

    async fn commit_cards(
        &self,
        ledger: &ChangeSet<'_>,
        core: &CoreChanges,
        plans: &[CardPlan<'_>],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        self.db.transaction(|tx| {
            citycard_sqlite::ledger::write_changes(tx, ledger)?;
            citycard_sqlite::write_core_changes(tx, core)?;
            let run = |statement: &str| {
                tx.prepare_cached(statement)
                    .and_then(|mut s| s.execute([]))
                    .map(|_| ())
                    .map_err(|e| citycard_sqlite::to_store_error(&e))
            };
            let mut out = Vec::with_capacity(plans.len());
            if let [plan] = plans {
                // One plan (a chunk of a batch): no savepoint, whose journal
                // of every touched page costs a fifth of a chunk's commit. A
                // refusal refuses the whole transaction instead.
                citycard_sqlite::binding::write_card_changes(tx, plan.changes)?;
                citycard_sqlite::write_core_changes(tx, plan.core)?;
                out.push(Ok(()));
                return Ok(out);
            }
            for plan in plans {
                run("SAVEPOINT card_plan")?;
                let written = citycard_sqlite::binding::write_card_changes(tx, plan.changes)
                    .and_then(|()| citycard_sqlite::write_core_changes(tx, plan.core));
                if written.is_err() {
                    run("ROLLBACK TO card_plan")?;
                }
                run("RELEASE card_plan")?;
                out.push(written);
            }
            Ok(out)
        })
    }
}

/// One transaction on the citycard PostgreSQL database. The ledger batch
/// goes through the ledger's own store handle, which checks and bumps the
/// ledger version (a batch decided on state another instance has changed is
/// refused, and nothing of the plan is written).
#[derive(Debug, Clone)]
pub struct PostgresUnitOfWork {
    db: citycard_postgres::Database,
    ledger: Arc<citycard_postgres::ledger::PgLedgerStore>,
}

impl PostgresUnitOfWork {
    /// The unit of work on a connected database, writing ledger batches
    /// through `ledger` (the handle the city's `Ledger` opened on).
    pub fn new(
        db: citycard_postgres::Database,
        ledger: Arc<citycard_postgres::ledger::PgLedgerStore>,
    ) -> Self {
        Self { db, ledger }
    }
}

#[async_trait]
impl UnitOfWork for PostgresUnitOfWork {
    async fn commit(&self, plan: CityPlan<'_>) -> Result<(), StoreError> {
        citycard_postgres::transaction!(
            self.db,
            citycard_postgres::Isolation::ReadCommitted,
            |tx| {
                if let Some(ledger) = plan.ledger {
                    self.ledger.write_changes(&mut tx, ledger).await?;
                }
                if let Some(transit) = plan.transit {
                    citycard_postgres::transit::write_changes(&mut tx, transit).await?;
                }
                citycard_postgres::write_core_changes(&mut tx, &plan.core).await
            }
        )
    }

    async fn commit_cards(
        &self,
        ledger: &ChangeSet<'_>,
        core: &CoreChanges,
        plans: &[CardPlan<'_>],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        citycard_postgres::transaction!(
            self.db,
            citycard_postgres::Isolation::ReadCommitted,
            |tx| {
                self.ledger.write_changes(&mut tx, ledger).await?;
                citycard_postgres::write_core_changes(&mut tx, core).await?;
                let mut out = Vec::with_capacity(plans.len());
                for plan in plans {
                    // Each plan in a savepoint: a refused one is undone alone.
                    citycard_postgres::db::execute(&mut tx, "SAVEPOINT card_plan").await?;
                    let written =
                        match citycard_postgres::binding::write_card_changes(&mut tx, plan.changes)
                            .await
                        {
                            Ok(()) => {
                                citycard_postgres::write_core_changes(&mut tx, plan.core).await
                            }
                            Err(e) => Err(e),
                        };
                    if written.is_err() {
                        citycard_postgres::db::execute(&mut tx, "ROLLBACK TO SAVEPOINT card_plan")
                            .await?;
                    }
                    citycard_postgres::db::execute(&mut tx, "RELEASE SAVEPOINT card_plan").await?;
                    out.push(written);
                }
                Ok(out)
            }
        )
    }
}

/// Each domain's store port in turn (the ledger's first, with the core records).
#[derive(Clone)]
pub struct PortsUnitOfWork {
    ledger: Arc<dyn LedgerStore>,
    transit: Arc<dyn TransitStore>,
    cards: Arc<dyn CardChangeStore>,
}

impl PortsUnitOfWork {
    /// The unit of work over these stores.
    pub fn new(
        ledger: Arc<dyn LedgerStore>,
        transit: Arc<dyn TransitStore>,
        cards: Arc<dyn CardChangeStore>,
    ) -> Self {
        Self {
            ledger,
            transit,
            cards,
        }
    }
}

#[async_trait]
impl UnitOfWork for PortsUnitOfWork {
    async fn commit(&self, plan: CityPlan<'_>) -> Result<(), StoreError> {
        let empty = ChangeSet::default();
        self.ledger
            .commit(plan.ledger.unwrap_or(&empty), &plan.core)
            .await?;
        if let Some(transit) = plan.transit {
            self.transit.commit(transit).await?;
        }
        Ok(())
    }

    async fn commit_cards(
        &self,
        ledger: &ChangeSet<'_>,
        core: &CoreChanges,
        plans: &[CardPlan<'_>],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        // The accounts first: a card never names a wallet that is not there.
        self.ledger.commit(ledger, core).await?;
        let mut out = Vec::with_capacity(plans.len());
        for plan in plans {
            out.push(self.cards.commit(plan.changes, plan.core).await);
        }
        Ok(out)
    }
}

/// The caller's half of a ledger batch that commits with the caller's own
/// core records (a wallet movement's audit record, say): the ledger's rows,
/// its batch record and `core(results)` in one unit of work.
pub struct WithCore<'a, F> {
    unit: &'a dyn UnitOfWork,
    core: F,
}

impl<'a, F> WithCore<'a, F>
where
    F: FnMut(&[citycard_ledger::CreateTransferResult]) -> CoreChanges + Send,
{
    /// Commits through `unit`, adding `core(results)` to the batch's records.
    pub fn new(unit: &'a dyn UnitOfWork, core: F) -> Self {
        Self { unit, core }
    }
}

#[async_trait]
impl<F> citycard_ledger::CommitWith for WithCore<'_, F>
where
    F: FnMut(&[citycard_ledger::CreateTransferResult]) -> CoreChanges + Send,
{
    type Output = ();

    async fn commit(
        &mut self,
        results: &[citycard_ledger::CreateTransferResult],
        changes: &ChangeSet<'_>,
        audit: citycard_core::AuditRecord,
    ) -> Result<(), StoreError> {
        let mut core = CoreChanges::audited(audit);
        core.merge((self.core)(results));
        self.unit
            .commit(CityPlan {
                ledger: Some(changes),
                transit: None,
                core,
            })
            .await
    }
}
