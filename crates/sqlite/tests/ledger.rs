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
