//! Several ledger instances on one store (app processes on one database).
//!
//! Each instance's engine decides in its own memory, so a store shared by
//! several instances must keep them from deciding on stale state, and must
//! let each catch up cheaply with what the others wrote. A store that can
//! be shared says so through [`LedgerStore::shared`] and implements
//! [`SharedLedgerStore`]; an embedded store (memory, SQLite in one process)
//! does not, and the ledger then takes none of the steps below.
//!
//! - **Writes take turns.** Before deciding a batch the ledger asks for a
//!   [`Turn`] ([`SharedLedgerStore::begin_decision`]): the store waits until
//!   no other instance is deciding or committing (PostgreSQL: a row lock held
//!   in a transaction of its own), and hands over what the others changed
//!   since this instance's state ([`CatchUp`]). The ledger applies it, decides,
//!   commits, and ends the turn. Decisions are never stale, so two instances
//!   writing flat out alternate fairly instead of one starving the other;
//!   each batch is decided once. The store's version check on commit
//!   ([`crate::stale_version`]) stays the guarantee; the turn only avoids
//!   wasted decisions (a writer that takes no turns, a tool say, still
//!   makes the others decide again after a reload).
//! - **Catching up is incremental**: only the accounts whose balances or
//!   flags changed since the version this instance knows (with the accounts
//!   created meanwhile), and the live holds on those accounts. Holds this
//!   instance held live on them that the store no longer does were posted,
//!   voided or expired elsewhere; their fate is read with one
//!   [`LedgerStore::prefetch`]. Transfers and failed ids the others stored are
//!   not read: the engine stops considering itself complete and asks the
//!   store for any id a batch names that it does not hold.
//! - **Reads are current**: balance and hold reads first ask the store
//!   whether the version moved ([`SharedLedgerStore::catch_up`], one query
//!   when it did not) and catch up when it did, so a balance read on one
//!   instance right after another acknowledged a top-up shows it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use citycard_core::StoreError;

use crate::engine::Engine;
use crate::ids::TransferId;
use crate::model::{Account, Transfer};
use crate::service::LedgerError;
use crate::store::LedgerStore;

/// What other instances changed in a shared store since the version an
/// instance's state reflects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatchUp {
    /// Accounts whose balances or flags changed, and accounts created, with
    /// their current balances and flags.
    pub accounts: Vec<Account>,
    /// Every live hold with a side among `accounts`.
    pub holds: Vec<Transfer>,
    /// The newest timestamp of any account, transfer or expiry now stored.
    pub last_timestamp: Option<DateTime<Utc>>,
    /// How many transfers the store now holds.
    pub transfer_count: u64,
}

/// An instance's turn to decide and commit on a shared store: no other
/// instance decides until it ends.
#[async_trait]
pub trait DecisionTurn: Send {
    /// Ends the turn (after the batch's commit, whatever its outcome).
    /// Dropping a turn without ending it ends it too, a moment later.
    async fn end(self: Box<Self>);
}

/// A turn with what changed before it began.
pub struct Turn {
    /// What other instances changed since this instance's state, if anything.
    pub catch_up: Option<CatchUp>,
    /// The turn itself, ended after the commit.
    pub turn: Box<dyn DecisionTurn>,
}

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn")
            .field(
                "catch_up",
                &self.catch_up.as_ref().map(|c| c.accounts.len()),
            )
            .finish()
    }
}

/// The part of a [`LedgerStore`] that several instances share (see the
/// module docs). A handle serves one ledger and remembers the version its
/// ledger's state reflects.
#[async_trait]
pub trait SharedLedgerStore: Send + Sync {
    /// Waits for this instance's turn to decide, then says what changed
    /// since its version (and remembers the current one). `None` when the
    /// handle tracks no version (it never loaded a state): decide without a turn.
    async fn begin_decision(&self) -> Result<Option<Turn>, StoreError>;
    /// What changed since this handle's version, without waiting for a turn
    /// (and remembers the current version); `None` when nothing did.
    async fn catch_up(&self) -> Result<Option<CatchUp>, StoreError>;
}

/// Applies a catch-up to the engine, reading the fate of the holds that
/// were released elsewhere.
async fn apply(
    store: &dyn LedgerStore,
    engine: &mut Engine,
    delta: CatchUp,
) -> Result<(), LedgerError> {
    let gone: Vec<TransferId> = engine.catch_up(delta)?;
    if !gone.is_empty() {
        let fetched = store.prefetch(&[], &gone).await?;
        engine.settle_elsewhere(&gone, &fetched);
    }
    Ok(())
}

/// On a shared store: takes this instance's turn and catches the engine up.
/// `None` on an embedded store (nothing to do). On an error the engine may
/// be half caught up: the caller reloads it.
pub(crate) async fn begin_turn(
    store: &dyn LedgerStore,
    engine: &mut Engine,
) -> Result<Option<Box<dyn DecisionTurn>>, LedgerError> {
    let Some(shared) = store.shared() else {
        return Ok(None);
    };
    let Some(turn) = shared.begin_decision().await? else {
        return Ok(None);
    };
    if let Some(delta) = turn.catch_up
        && let Err(e) = apply(store, engine, delta).await
    {
        turn.turn.end().await;
        return Err(e);
    }
    Ok(Some(turn.turn))
}

/// On a shared store: catches the engine up when other instances wrote
/// since its state (reads). On an error the caller reloads the engine.
pub(crate) async fn refresh(
    store: &dyn LedgerStore,
    engine: &mut Engine,
) -> Result<(), LedgerError> {
    let Some(shared) = store.shared() else {
        return Ok(());
    };
    if let Some(delta) = shared.catch_up().await? {
        apply(store, engine, delta).await?;
    }
    Ok(())
}

/// A lock on a ledger's state held together with its turn on a shared
/// store: dropping it ends the turn (the store's turn ends on drop), then
/// unlocks the state.
pub(crate) struct WithTurn<G> {
    /// Dropped first: the turn ends before the state unlocks.
    pub(crate) _turn: Option<Box<dyn DecisionTurn>>,
    pub(crate) guard: G,
}

impl<G> std::ops::Deref for WithTurn<G> {
    type Target = G;
    fn deref(&self) -> &G {
        &self.guard
    }
}

impl<G> std::ops::DerefMut for WithTurn<G> {
    fn deref_mut(&mut self) -> &mut G {
        &mut self.guard
    }
}
