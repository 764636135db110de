//! The ledger store conformance suite run against SQLite.
#![cfg(feature = "ledger")]
use citycard_sqlite::Database;
use citycard_sqlite::ledger::SqliteLedgerStore;
use citycard_testkit::ledger_store_conformance;

async fn ledger_store() -> SqliteLedgerStore {
    SqliteLedgerStore::new(Database::open_in_memory().expect("in-memory database opens"))
}

ledger_store_conformance!(ledger_store);

/// The same state after closing and reopening the file itself.
#[tokio::test]
async fn a_ledger_file_reopens_with_its_acknowledged_state() {
    use std::sync::Arc;

    use citycard_core::{ManualClock, Money, Principal};
    use citycard_ledger::{
        AccountId, AccountKind, CreateTransferResult, Ledger, NewAccount, NewTransfer, Reference,
        TransferId, WalletHolder, WalletLimits,
    };

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("citycard.db");
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 8, 0, 0));
    let sys = Principal::System;
    let (clearing, wallet, metro) = (AccountId::new(1), AccountId::new(2), AccountId::new(3));
    let before = {
        let db = Database::open(&path).expect("file opens");
        let ledger = Ledger::open(Arc::new(SqliteLedgerStore::new(db)), clock.clone())
            .await
            .expect("ledger opens");
        ledger
            .create_accounts(
                &sys,
                vec![
                    NewAccount::new(clearing, AccountKind::TOP_UP_CLEARING),
                    WalletLimits::default().wallet(wallet, WalletHolder::Anonymous, None),
                    NewAccount::new(metro, AccountKind::OPERATOR_REVENUE),
                ],
            )
            .await
            .expect("accounts");
        let batch: Vec<NewTransfer> = (0..200)
            .map(|i| {
                NewTransfer::new(
                    TransferId::new(100 + i),
                    clearing,
                    wallet,
                    Money::from_fen(250),
                    1,
                )
                .with_reference(Reference::top_up_order(&format!("O-{i}")).expect("reference"))
            })
            .collect();
        let results = ledger.create_transfers(&sys, batch).await.expect("batch");
        assert!(results.iter().all(|r| *r == CreateTransferResult::Ok));
        let hold =
            NewTransfer::pending(TransferId::new(1), wallet, metro, Money::from_yuan(2), 2, 0);
        ledger
            .create_transfers(&sys, vec![hold])
            .await
            .expect("hold");
        ledger.account(&sys, wallet).await.expect("wallet")
    };
    let db = Database::open(&path).expect("file reopens");
    let ledger = Ledger::open(Arc::new(SqliteLedgerStore::new(db)), clock)
        .await
        .expect("ledger reopens");
    let after = ledger.account(&sys, wallet).await.expect("wallet");
    assert_eq!(after, before);
    assert_eq!(after.posted(), Money::from_yuan(500));
    assert_eq!(after.available(), Money::from_yuan(498));
    let found = ledger
        .transfers_by_reference(&sys, &Reference::top_up_order("O-7").expect("reference"))
        .await
        .expect("lookup");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, TransferId::new(107));
}

/// A file written by schema v1 (a log, no balances) opens on v2 with the
/// balances, closed flags and live holds computed from its log once.
#[tokio::test]
async fn a_v1_ledger_file_is_upgraded_from_its_log() {
    use std::sync::Arc;

    use chrono::Duration;
    use citycard_core::{Clock, ManualClock, Principal};
    use citycard_ledger::{AccountFlags, AccountId, Engine, Ledger, NewTransfer, TransferId};
    use citycard_sqlite::db::{Connection, migrate};
    use citycard_testkit::ledger::{funding_batch, random_accounts, random_batches};

    let bits = |id: u64| i64::from_ne_bytes(id.to_ne_bytes());
    let ns = |at: chrono::DateTime<chrono::Utc>| at.timestamp_nanos_opt().expect("in range");
    for seed in 0..4u64 {
        let clock = ManualClock::at_ymd_hms(2026, 11, 26, 8, 0, 0);
        let mut reference = Engine::new();
        reference.create_accounts(clock.now(), random_accounts(seed, 6));
        reference.create_transfers(clock.now(), funding_batch(6));
        for (secs, batch) in random_batches(seed, 12, 6, 60) {
            clock.advance(Duration::seconds(secs));
            reference.create_transfers(clock.now(), batch);
        }
        // Closings: account 1 stays closed, account 2 is closed then reopened.
        let id = TransferId::new;
        reference.create_transfers(
            clock.now(),
            vec![
                NewTransfer::close_account(id(9_001), AccountId::new(1), AccountId::new(6), 9),
                NewTransfer::close_account(id(9_002), AccountId::new(2), AccountId::new(6), 9),
            ],
        );
        reference.create_transfers(clock.now(), vec![NewTransfer::void(id(9_003), id(9_002))]);
        clock.advance(Duration::hours(2));
        reference.expire_pending(clock.now());

        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("citycard.db");
        {
            let mut conn = Connection::open(&path).expect("file");
            conn.execute_batch("PRAGMA application_id = 1128485444;")
                .expect("id");
            let v1: Vec<_> = citycard_sqlite::all_migrations()
                .into_iter()
                .filter(|m| m.component != "ledger" || m.version == 1)
                .collect();
            migrate(&mut conn, &v1).expect("v1 schema");
            let tx = conn.transaction().expect("tx");
            for a in reference.accounts() {
                tx.execute(
                    "INSERT INTO ledger_accounts (timestamp, id, kind, currency, flags, upper_limit)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    (
                        ns(a.created_at),
                        bits(a.id.get()),
                        a.kind.0,
                        a.currency.0,
                        a.flags.0 & !AccountFlags::CLOSED.0,
                        a.upper_limit.map(|l| l.fen()),
                    ),
                )
                .expect("account");
            }
            for t in reference.transfers() {
                tx.execute(
                    "INSERT INTO ledger_transfers (timestamp, id, debit_account_id,
                        credit_account_id, amount, pending_id, timeout_secs, currency, code,
                        flags, reference, memo)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    rusqlite::params![
                        ns(t.timestamp),
                        bits(t.id.get()),
                        bits(t.debit_account_id.get()),
                        bits(t.credit_account_id.get()),
                        t.amount.fen(),
                        t.pending_id.map(|p| bits(p.get())),
                        t.timeout_secs,
                        t.currency.0,
                        t.code,
                        t.flags.0,
                        t.reference.as_ref().map(|r| r.as_str().to_owned()),
                        t.memo.clone(),
                    ],
                )
                .expect("transfer");
            }
            for e in reference.expiries() {
                tx.execute(
                    "INSERT INTO ledger_expiries (timestamp, transfer_id) VALUES (?1, ?2)",
                    (ns(e.timestamp), bits(e.transfer_id.get())),
                )
                .expect("expiry");
            }
            for f in reference.failures() {
                tx.execute(
                    "INSERT INTO ledger_failures (id, result) VALUES (?1, ?2)",
                    (bits(f.id.get()), f.result.code()),
                )
                .expect("failure");
            }
            tx.commit().expect("commit");
        }
        let db = Database::open(&path).expect("v1 file migrates");
        let ledger = Ledger::open(
            Arc::new(SqliteLedgerStore::new(db)),
            Arc::new(ManualClock::new(clock.now())),
        )
        .await
        .expect("ledger opens");
        let (accounts, holds, count) = ledger
            .inspect(|e| {
                (
                    e.accounts().collect::<Vec<_>>(),
                    e.live_holds(),
                    e.transfer_count(),
                )
            })
            .await
            .expect("state");
        assert_eq!(
            accounts,
            reference.accounts().collect::<Vec<_>>(),
            "seed {seed}"
        );
        assert!(accounts[0].is_closed() && !accounts[1].is_closed());
        assert_eq!(holds, reference.live_holds(), "seed {seed}");
        assert_eq!(count, reference.transfer_count(), "seed {seed}");
        // References are found through the upgraded (keyed) index.
        let mut references: Vec<_> = reference
            .transfers()
            .iter()
            .filter_map(|t| t.reference.clone())
            .collect();
        references.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        references.dedup();
        assert!(
            !references.is_empty(),
            "seed {seed}: the history has references"
        );
        for r in &references {
            let found = ledger
                .transfers_by_reference(&Principal::System, r)
                .await
                .expect("by reference");
            let expected: Vec<_> = reference
                .transfers()
                .iter()
                .filter(|t| t.reference.as_ref() == Some(r))
                .cloned()
                .collect();
            assert_eq!(found, expected, "seed {seed}: {r}");
        }
        // Old ids replay exactly after the upgrade.
        let again: Vec<NewTransfer> = reference
            .transfers()
            .iter()
            .filter(|t| !t.flags.post_pending_transfer() && !t.flags.void_pending_transfer())
            .take(20)
            .map(|t| {
                let mut n = NewTransfer::new(
                    t.id,
                    t.debit_account_id,
                    t.credit_account_id,
                    t.amount,
                    t.code,
                );
                n.flags = t.flags;
                n.timeout_secs = t.timeout_secs;
                n.reference = t.reference.clone();
                n.memo = t.memo.clone();
                n
            })
            .collect();
        let results = ledger
            .create_transfers(&Principal::System, again)
            .await
            .expect("replays");
        assert!(
            results
                .iter()
                .all(|r| *r == citycard_ledger::CreateTransferResult::Exists),
            "seed {seed}: {results:?}"
        );
    }
}

/// Trip references in the settlement's own form (stored packed) and any
/// other reference are found by reference, and read back as written, after
/// reopening the file.
#[tokio::test]
async fn trip_references_are_found_and_read_back() {
    use std::sync::Arc;

    use citycard_core::{ManualClock, Money, Principal};
    use citycard_ledger::{
        AccountId, AccountKind, CreateTransferResult, Ledger, NewAccount, NewTransfer, Reference,
        TransferId,
    };

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("citycard.db");
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 8, 0, 0));
    let sys = Principal::System;
    let references: Vec<Reference> = [
        "trip:trip-cr81bad7386645ee7b-1795645920000000-0".to_owned(),
        "trip:trip-cr81bad7386645ee7b-1795645920000000-1".to_owned(),
        "trip:trip-cr0000000000000002-1795645920000000-0".to_owned(),
        "trip:T-7".to_owned(),
        "topup:O-1".to_owned(),
    ]
    .iter()
    .map(|r| Reference::parse(r).expect("reference"))
    .collect();
    {
        let db = Database::open(&path).expect("file opens");
        let ledger = Ledger::open(Arc::new(SqliteLedgerStore::new(db)), clock.clone())
            .await
            .expect("ledger");
        ledger
            .create_accounts(
                &sys,
                vec![
                    NewAccount::new(AccountId::new(1), AccountKind::TOP_UP_CLEARING),
                    NewAccount::new(AccountId::new(2), AccountKind::OPERATOR_REVENUE),
                ],
            )
            .await
            .expect("accounts");
        let batch = references
            .iter()
            .enumerate()
            .map(|(i, r)| {
                NewTransfer::new(
                    TransferId::new(100 + i as u64),
                    AccountId::new(1),
                    AccountId::new(2),
                    Money::from_fen(200),
                    1,
                )
                .with_reference(r.clone())
            })
            .collect();
        let results = ledger.create_transfers(&sys, batch).await.expect("batch");
        assert!(
            results.iter().all(|r| *r == CreateTransferResult::Ok),
            "{results:?}"
        );
    }
    let db = Database::open(&path).expect("file reopens");
    let ledger = Ledger::open(Arc::new(SqliteLedgerStore::new(db)), clock)
        .await
        .expect("ledger reopens");
    for (i, r) in references.iter().enumerate() {
        let found = ledger.transfers_by_reference(&sys, r).await.expect("found");
        assert_eq!(found.len(), 1, "{r}");
        assert_eq!(found[0].id, TransferId::new(100 + i as u64), "{r}");
        assert_eq!(found[0].reference.as_ref(), Some(r));
    }
    let none = Reference::parse("trip:trip-cr81bad7386645ee7b-1795645920000000-2").expect("ref");
    assert!(
        ledger
            .transfers_by_reference(&sys, &none)
            .await
            .expect("none")
            .is_empty()
    );
}
