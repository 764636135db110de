//! Reads through the port on the cluster: balances as of an instant (from
//! TigerBeetle's account history, with the cap checks of a capped wallet in
//! between) and transfers by reference, oldest first.
//!
//! Needs `CITYCARD_TEST_TIGERBEETLE` (started by `.ci/tigerbeetle.sh`);
//! without it the test prints "skipped" locally and fails under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{Duration, Utc};
use citycard_core::{Money, Principal};
use citycard_ledger::{
    AccountFlags, AccountId, AccountKind, Balances, CreateTransferResult as R, LedgerError,
    LedgerPort, NewAccount, NewTransfer, Reference, TransferId,
};
use citycard_tigerbeetle::{SideStore, TigerBeetleLedger};

#[test]
fn balances_as_of_an_instant_and_transfers_by_reference() {
    let Ok(addresses) = std::env::var("CITYCARD_TEST_TIGERBEETLE") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but CITYCARD_TEST_TIGERBEETLE is not set: run .ci/tigerbeetle.sh"
        );
        eprintln!("skipped: CITYCARD_TEST_TIGERBEETLE is not set (run .ci/tigerbeetle.sh)");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tb = TigerBeetleLedger::connect(0, &addresses, SideStore::in_memory().unwrap()).unwrap();
    let system = Principal::System;
    let base = ((Utc::now().timestamp_nanos_opt().unwrap() as u64 >> 16) & 0x0000_ffff_ffff) << 20;
    let (funding, wallet, plain) = (
        AccountId::new(base + 1),
        AccountId::new(base + 2),
        AccountId::new(base + 3),
    );
    let accounts = vec![
        NewAccount::new(funding, AccountKind::E_WALLET),
        NewAccount::new(wallet, AccountKind::E_WALLET)
            .with_flags(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags::HISTORY)
            .with_upper_limit(Money::from_fen(10_000)),
        NewAccount::new(plain, AccountKind::E_WALLET),
    ];
    rt.block_on(tb.create_accounts(&system, accounts)).unwrap();
    let order_1 = Reference::parse("top-up:order-1").unwrap();
    let order_2 = Reference::parse("top-up:order-2").unwrap();
    let pay = |n: u64, dr: AccountId, cr: AccountId, fen: i64, r: &Reference| {
        NewTransfer::new(
            TransferId::new(base + 100 + n),
            dr,
            cr,
            Money::from_fen(fen),
            1,
        )
        .with_reference(r.clone())
    };
    let mut stamps = Vec::new();
    for t in [
        pay(1, funding, wallet, 300, &order_1),
        pay(2, funding, wallet, 200, &order_2),
        pay(3, wallet, funding, 100, &order_1),
    ] {
        let id = t.id;
        assert_eq!(
            rt.block_on(tb.create_transfers(&system, vec![t])).unwrap(),
            [R::Ok]
        );
        stamps.push(rt.block_on(tb.transfer(&system, id)).unwrap().timestamp);
    }
    let at = |when| rt.block_on(tb.balances_at(&system, wallet, when)).unwrap();
    let credits = |fen| Money::from_fen(fen);
    assert_eq!(
        at(stamps[0] - Duration::nanoseconds(1)),
        Balances::default()
    );
    assert_eq!(at(stamps[0]).credits_posted, credits(300));
    assert_eq!(
        at(stamps[0]).debits_pending,
        Money::ZERO,
        "the cap check's hold is not seen"
    );
    assert_eq!(at(stamps[1]).credits_posted, credits(500));
    let last = at(stamps[2]);
    assert_eq!(
        (last.debits_posted, last.credits_posted),
        (credits(100), credits(500))
    );
    assert_eq!(
        rt.block_on(tb.account(&system, wallet)).unwrap().balances,
        at(Utc::now() + Duration::days(1))
    );
    // An account without history has no past balances.
    assert!(matches!(
        rt.block_on(tb.balances_at(&system, plain, Utc::now())),
        Err(LedgerError::HistoryNotEnabled(_))
    ));

    let by_1 = rt
        .block_on(tb.transfers_by_reference(&system, &order_1))
        .unwrap();
    assert_eq!(
        by_1.iter().map(|t| t.id).collect::<Vec<_>>(),
        [TransferId::new(base + 101), TransferId::new(base + 103)]
    );
    assert!(by_1.iter().all(|t| t.reference.as_ref() == Some(&order_1)));
    let by_2 = rt
        .block_on(tb.transfers_by_reference(&system, &order_2))
        .unwrap();
    assert_eq!(
        by_2.iter().map(|t| t.id).collect::<Vec<_>>(),
        [TransferId::new(base + 102)]
    );
    // A cardholder with no account here sees nothing.
    let stranger = Principal::cardholder(citycard_core::PersonId::parse("psn-nobody").unwrap());
    assert!(
        rt.block_on(tb.transfers_by_reference(&stranger, &order_1))
            .unwrap()
            .is_empty()
    );
}
