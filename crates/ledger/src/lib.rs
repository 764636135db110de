//! # citycard-ledger
//!
//! A double-entry ledger in the manner of TigerBeetle: accounts with balance
//! flags and upper limits, immutable transfers (linked, pending, post, void,
//! balancing, closing), precise per-transfer results, statements, balances as
//! of an instant and reconciliation, persisted batch by batch through the
//! [`LedgerStore`] port.
//!
//! ```
//! use std::sync::Arc;
//! use citycard_core::{ManualClock, Money, Principal};
//! use citycard_ledger::{
//!     AccountId, AccountKind, CreateTransferResult, Ledger, MemoryLedgerStore, NewAccount,
//!     NewTransfer, TransferId, WalletHolder, WalletLimits,
//! };
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 8, 0, 0));
//! let ledger = Ledger::open(Arc::new(MemoryLedgerStore::new()), clock.clone()).await?;
//! let system = Principal::System;
//! let (clearing, wallet, metro) = (AccountId::new(1), AccountId::new(2), AccountId::new(3));
//! ledger.create_accounts(&system, vec![
//!     NewAccount::new(clearing, AccountKind::TOP_UP_CLEARING),
//!     WalletLimits::default().wallet(wallet, WalletHolder::Anonymous, None),
//!     NewAccount::new(metro, AccountKind::OPERATOR_REVENUE),
//! ]).await?;
//!
//! // Top up ¥50, then hold ¥4 for a ride and capture ¥3.
//! let top_up = NewTransfer::new(TransferId::new(10), clearing, wallet, Money::from_yuan(50), 1);
//! let hold = NewTransfer::pending(TransferId::new(11), wallet, metro, Money::from_yuan(4), 2, 3600);
//! let post = NewTransfer::post(TransferId::new(12), TransferId::new(11), Some(Money::from_yuan(3)));
//! let results = ledger.create_transfers(&system, vec![top_up.clone(), hold, post]).await?;
//! assert!(results.iter().all(|r| *r == CreateTransferResult::Ok));
//!
//! // Resubmitting is an idempotent replay; a wallet can't go past its ¥1,000 cap.
//! let big = NewTransfer::new(TransferId::new(13), clearing, wallet, Money::from_yuan(990), 1);
//! let again = ledger.create_transfers(&system, vec![top_up, big]).await?;
//! assert_eq!(again, [CreateTransferResult::Exists, CreateTransferResult::ExceedsUpperLimit]);
//!
//! let account = ledger.account(&system, wallet).await?;
//! assert_eq!(account.posted(), Money::from_yuan(47));
//! assert_eq!(account.available(), Money::from_yuan(47));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! ## Design decisions
//!
//! - **Ids are `u64`**, not TigerBeetle's `u128`: they fit SQLite's INTEGER
//!   and hash in one multiply; 0 and `u64::MAX` are reserved. They print and
//!   serialise as decimal strings. [`TransferId::from_idempotency_key`] maps a
//!   host's idempotency key to a transfer id, so the transfer id *is* the
//!   idempotency key (unique forever, replays answer `exists`).
//! - **Amounts are [`Money`](citycard_core::Money)** (i64 fen); balances are
//!   i64 fen with overflow reported as `overflows_*` results.
//! - **Results are dense**: one per event, `ok` included, ordered by
//!   precedence as in TigerBeetle (without its imported/user-data results;
//!   with `exists_with_different_reference/memo`, `amount_must_not_be_negative`,
//!   `memo_too_long` and `exceeds_upper_limit` added).
//! - **Posts and voids inherit** zero fields from the hold; a post of amount 0
//!   posts it all (TigerBeetle posts 0 and takes `u128::MAX` for "in full":
//!   a zero-fen capture has no use in the card system, so 0 keeps meaning
//!   "in full" and `citycard-tigerbeetle` sends `u128::MAX`). A closed
//!   account accepts only the void of a hold, as in TigerBeetle.
//! - **Zero amounts are refused** (`amount_must_not_be_zero`) except for
//!   posts, voids and closing transfers, and an account cannot be created
//!   closed: deliberate deviations from TigerBeetle 0.16 (which accepts
//!   both), because a zero-fen fare or top-up is always a host bug.
//! - **An `exists` inside a linked chain does not break the chain**
//!   (TigerBeetle's does): a host retrying a whole chain under the same
//!   operation keys must read `exists` for every event, the card system's
//!   guarantee that a replay is a success.
//! - **Upper limits** read the balance on the account's normal side (credit
//!   unless `credits_must_not_exceed_debits`) and count incoming holds;
//!   `balancing_credit` on a capped account clamps to the room under the cap.
//! - **The store keeps the log and the state**: accounts, transfers,
//!   expiries and burnt ids are appended once per batch, and the same
//!   commit upserts the touched accounts' balances and flags and the set of
//!   live holds ([`ChangeSet::balances`], [`ChangeSet::released`]). Opening
//!   reads that state ([`LedgerStore::load_state`]): accounts, balances,
//!   live holds, the last timestamp, the transfer count; no history is
//!   replayed. A store failure leaves the batch unacknowledged and the live
//!   ledger reloads the state (or refuses calls until reopened if it cannot).
//! - **Bounded memory**: the engine keeps accounts, balances, live holds and
//!   a window of recent transfers and failed ids of at least
//!   [`DEFAULT_TRANSFER_CACHE`] (65,536) entries, trimmed back to it once it
//!   reaches 1.5 × (so trimming is amortised), configurable with
//!   [`Ledger::with_transfer_cache`]. Positions and counts are `u64`.
//! - **Prefetch, then decide**: before deciding a batch the ledger asks the
//!   store in one round trip ([`LedgerStore::prefetch`]) for the ids the
//!   batch names that the window lacks (to answer `exists`,
//!   `exists_with_different_*`, `id_already_failed`) and for holds it posts
//!   or voids that are not in memory, with the posts, voids and expiries
//!   that settled them. Idempotency is exact for the whole history.
//! - **History queries read the store**: transfer by id (window first),
//!   transfers by reference, statements and balances as of an instant walk
//!   the account's transfers page by page (4,096 a round trip) from an
//!   index on (account, timestamp); no balance snapshots are stored, so a
//!   balance as of an instant costs a walk of the account's history up to
//!   it (cheap for wallets, the `history` accounts) and no bytes per transfer.
//!   [`Ledger::statement_page`] pages a statement: the cursor is the next
//!   page's `from`, so a page cannot be forged into other balances.
//! - **The hot path** keeps accounts in a vector and ids in hash maps with a
//!   seeded hasher that hashes ids in blocks of 64, so ids allocated close
//!   together (sequential or time-based, as TigerBeetle recommends) share
//!   cache lines.
//! - **Statements** list posted movements only (single-phase transfers and
//!   posts); holds show in the `pending`/`available` views. Reconciliation
//!   matches by reference, totals summed per reference on each side.
//! - **Principals**: writes are for the system, operators and platforms (the
//!   facade authorises cardholders' own operations before calling); reads
//!   also for the owner of the account or a delegate with the view scope.
//!   One audit record per batch.
//! - **Expiry follows the clock** at the start of each transfer batch and on
//!   [`Ledger::expire_pending`]; an expired hold can't be posted even before
//!   it is swept. Timestamps are unique nanoseconds, `max(clock, last + 1ns)`.
//! - **Failures burn ids** as in TigerBeetle: only an account or hold
//!   missing, insufficient funds, a closed account (and our wallet cap)
//!   ([`CreateTransferResult::is_transient`]); every other refusal leaves the
//!   id free, so a corrected retry under the same operation key succeeds. A
//!   linked chain's other events (`linked_event_failed`) keep theirs.
//! - **Authorisation is per account** (see [`Ledger`]): only the system and
//!   operators with the finance role write; platforms never write (they top
//!   up through the card system's wallet service) and read only accounts
//!   their organisation owns; a delegate reads a person's accounts only when
//!   the [`citycard_core::GrantVerifier`] finds the grant stored and live.
//!   Denials are audited; a batch whose every transfer already `exists` is
//!   audited as `replayed`, not as a second success.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod engine;
pub mod ids;
pub mod model;
pub mod port;
pub mod query;
pub mod service;
pub mod shared;
pub mod store;

pub use engine::{DEFAULT_TRANSFER_CACHE, Engine};
pub use ids::{
    AccountId, AccountKind, Currency, LedgerIdError, MAX_REFERENCE_LEN, Owner, Reference,
    TransferId,
};
pub use model::{
    Account, AccountFlags, Balances, CreateAccountResult, CreateTransferResult, Expiry,
    FailedTransfer, MAX_MEMO_LEN, NewAccount, NewTransfer, NormalSide, PendingStatus, Transfer,
    TransferFlags,
};
pub use port::LedgerPort;
pub use query::{
    AmountMismatch, ExternalEntry, Matched, ReconciliationReport, Statement, StatementEntry,
    StatementPage, reconcile,
};
pub use service::{
    CommitAccountsWith, CommitWith, Ledger, LedgerError, MAX_DECISIONS, PBOC_ANONYMOUS_CEILING,
    PBOC_REGISTERED_CEILING, WalletHolder, WalletLimits, WalletLimitsError,
};
pub use shared::{CatchUp, DecisionTurn, SharedLedgerStore, Turn};
pub use store::{
    AccountBalance, AccountRange, ChangeSet, LedgerState, LedgerStore, MemoryLedgerStore,
    OwnedChangeSet, Prefetched, STALE_VERSION, Snapshot, is_stale_version, stale_version,
};
