//! The engine's rules, result by result.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use citycard_core::Money;
use citycard_ledger::{
    AccountFlags, AccountId, AccountKind, CreateAccountResult as A, CreateTransferResult as R,
    Currency, Engine, NewAccount, NewTransfer, PendingStatus, Reference, TransferFlags, TransferId,
    WalletHolder, WalletLimits,
};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap()
}

const CLEARING: AccountId = AccountId::new(1);
const WALLET: AccountId = AccountId::new(2);
const METRO: AccountId = AccountId::new(3);
const MIRROR: AccountId = AccountId::new(4);
const USD: AccountId = AccountId::new(5);
const CONTROL: AccountId = AccountId::new(6);

fn yuan(y: i64) -> Money {
    Money::from_yuan(y)
}

fn id(n: u64) -> TransferId {
    TransferId::new(n)
}

fn engine() -> Engine {
    let mut e = Engine::new();
    let mut usd = NewAccount::new(USD, AccountKind::FEES);
    usd.currency = Currency(840);
    let r = e.create_accounts(
        t0(),
        vec![
            NewAccount::new(CLEARING, AccountKind::TOP_UP_CLEARING),
            WalletLimits::default().wallet(WALLET, WalletHolder::Anonymous, None),
            NewAccount::new(METRO, AccountKind::OPERATOR_REVENUE),
            NewAccount::new(MIRROR, AccountKind::HOSPITAL_RECEIVABLE)
                .with_flags(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS),
            usd,
            NewAccount::new(CONTROL, AccountKind::CONTROL),
        ],
    );
    assert!(r.iter().all(|r| *r == A::Ok), "{r:?}");
    e
}

fn one(e: &mut Engine, t: NewTransfer) -> R {
    e.create_transfers(t0() + Duration::seconds(1), vec![t])[0]
}

fn plain(n: u64, debit: AccountId, credit: AccountId, amount: Money) -> NewTransfer {
    NewTransfer::new(id(n), debit, credit, amount, 1)
}

#[test]
fn account_results_follow_their_precedence() {
    let mut e = engine();
    let base = NewAccount::new(AccountId::new(100), AccountKind::FEES);
    let cases = [
        (
            base.clone().with_flags(AccountFlags(1 << 9)),
            A::ReservedFlag,
        ),
        (
            base.clone().with_flags(AccountFlags::CLOSED),
            A::ReservedFlag,
        ),
        (
            NewAccount::new(AccountId::ZERO, AccountKind::FEES),
            A::IdMustNotBeZero,
        ),
        (
            NewAccount::new(AccountId::MAX, AccountKind::FEES),
            A::IdMustNotBeIntMax,
        ),
        (
            base.clone().with_flags(
                AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
                    | AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
            ),
            A::FlagsAreMutuallyExclusive,
        ),
        (
            base.clone().with_upper_limit(Money::ZERO),
            A::UpperLimitMustBePositive,
        ),
        (
            {
                let mut a = base.clone();
                a.currency = Currency(0);
                a
            },
            A::CurrencyMustNotBeZero,
        ),
        (
            NewAccount::new(AccountId::new(100), AccountKind(0)),
            A::KindMustNotBeZero,
        ),
    ];
    for (account, expected) in cases {
        assert_eq!(
            e.create_accounts(t0(), vec![account.clone()]),
            [expected],
            "{account:?}"
        );
    }
    assert_eq!(e.create_accounts(t0(), vec![base.clone()]), [A::Ok]);
    assert_eq!(e.create_accounts(t0(), vec![base.clone()]), [A::Exists]);
    let changed = [
        (
            base.clone().with_flags(AccountFlags::HISTORY),
            A::ExistsWithDifferentFlags,
        ),
        (
            base.clone().with_upper_limit(yuan(1)),
            A::ExistsWithDifferentUpperLimit,
        ),
        (
            base.clone()
                .with_owner(citycard_ledger::Owner::Organisation("x".into())),
            A::ExistsWithDifferentOwner,
        ),
        (
            base.clone().with_metadata("k", "v"),
            A::ExistsWithDifferentMetadata,
        ),
        (
            NewAccount::new(AccountId::new(100), AccountKind::REFUNDS),
            A::ExistsWithDifferentKind,
        ),
    ];
    for (account, expected) in changed {
        assert_eq!(e.create_accounts(t0(), vec![account]), [expected]);
    }
}

#[test]
fn a_linked_account_chain_is_all_or_nothing() {
    let mut e = engine();
    let linked =
        |n| NewAccount::new(AccountId::new(n), AccountKind::FEES).with_flags(AccountFlags::LINKED);
    let r = e.create_accounts(
        t0(),
        vec![
            linked(200),
            linked(201),
            NewAccount::new(AccountId::ZERO, AccountKind::FEES),
            NewAccount::new(AccountId::new(202), AccountKind::FEES),
            linked(203),
        ],
    );
    assert_eq!(
        r,
        [
            A::LinkedEventFailed,
            A::LinkedEventFailed,
            A::IdMustNotBeZero,
            A::Ok,
            A::LinkedEventChainOpen
        ]
    );
    assert!(e.account(AccountId::new(200)).is_none());
    assert!(e.account(AccountId::new(201)).is_none());
    assert!(e.account(AccountId::new(202)).is_some());
    assert!(e.account(AccountId::new(203)).is_none());
}

#[test]
fn transfer_validation_follows_its_precedence() {
    let mut e = engine();
    let ok = || plain(10, CLEARING, METRO, yuan(1));
    let with = |f: &dyn Fn(&mut NewTransfer)| {
        let mut t = ok();
        f(&mut t);
        t
    };
    let cases: Vec<(NewTransfer, R)> = vec![
        (with(&|t| t.flags = TransferFlags(1 << 12)), R::ReservedFlag),
        (with(&|t| t.id = TransferId::ZERO), R::IdMustNotBeZero),
        (with(&|t| t.id = TransferId::MAX), R::IdMustNotBeIntMax),
        (
            with(&|t| t.flags = TransferFlags::PENDING | TransferFlags::VOID_PENDING_TRANSFER),
            R::FlagsAreMutuallyExclusive,
        ),
        (
            with(&|t| {
                t.flags = TransferFlags::POST_PENDING_TRANSFER | TransferFlags::BALANCING_DEBIT
            }),
            R::FlagsAreMutuallyExclusive,
        ),
        (
            with(&|t| t.debit_account_id = AccountId::ZERO),
            R::DebitAccountIdMustNotBeZero,
        ),
        (
            with(&|t| t.debit_account_id = AccountId::MAX),
            R::DebitAccountIdMustNotBeIntMax,
        ),
        (
            with(&|t| t.credit_account_id = AccountId::ZERO),
            R::CreditAccountIdMustNotBeZero,
        ),
        (
            with(&|t| t.credit_account_id = AccountId::MAX),
            R::CreditAccountIdMustNotBeIntMax,
        ),
        (
            with(&|t| t.credit_account_id = CLEARING),
            R::AccountsMustBeDifferent,
        ),
        (
            with(&|t| t.pending_id = Some(id(3))),
            R::PendingIdMustBeZero,
        ),
        (
            with(&|t| t.timeout_secs = 5),
            R::TimeoutReservedForPendingTransfer,
        ),
        (
            with(&|t| t.flags = TransferFlags::CLOSING_DEBIT),
            R::ClosingTransferMustBePending,
        ),
        (
            with(&|t| t.amount = Money::from_fen(-1)),
            R::AmountMustNotBeNegative,
        ),
        (with(&|t| t.amount = Money::ZERO), R::AmountMustNotBeZero),
        (
            with(&|t| t.currency = Currency(0)),
            R::CurrencyMustNotBeZero,
        ),
        (with(&|t| t.code = 0), R::CodeMustNotBeZero),
        (with(&|t| t.memo = Some("x".repeat(257))), R::MemoTooLong),
        (
            with(&|t| t.debit_account_id = AccountId::new(99)),
            R::DebitAccountNotFound,
        ),
        (
            with(&|t| t.credit_account_id = AccountId::new(99)),
            R::CreditAccountNotFound,
        ),
        (
            with(&|t| t.credit_account_id = USD),
            R::AccountsMustHaveTheSameCurrency,
        ),
        (
            with(&|t| t.currency = Currency(840)),
            R::TransferMustHaveTheSameCurrencyAsAccounts,
        ),
        // Two problems at once: the earlier one in the order wins.
        (
            with(&|t| {
                t.id = TransferId::ZERO;
                t.amount = Money::ZERO;
            }),
            R::IdMustNotBeZero,
        ),
        (
            with(&|t| {
                t.code = 0;
                t.debit_account_id = AccountId::new(99);
            }),
            R::CodeMustNotBeZero,
        ),
    ];
    let before = e.totals();
    for (n, (t, expected)) in cases.into_iter().enumerate() {
        let mut t = t;
        if !t.id.is_zero() && t.id != TransferId::MAX {
            t.id = id(1000 + n as u64);
        }
        assert_eq!(one(&mut e, t.clone()), expected, "{t:?}");
    }
    assert_eq!(e.totals(), before, "rejected transfers change nothing");
    assert_eq!(e.transfer_count(), 0);
}

#[test]
fn replays_answer_exists_and_differences_are_named() {
    let mut e = engine();
    let t = plain(10, CLEARING, METRO, yuan(3))
        .with_reference(Reference::bill("B-1").unwrap())
        .with_memo("clinic");
    assert_eq!(one(&mut e, t.clone()), R::Ok);
    assert_eq!(one(&mut e, t.clone()), R::Exists);
    let changed: Vec<(NewTransfer, R)> = vec![
        (
            t.clone().with_flags(TransferFlags::LINKED),
            R::LinkedEventChainOpen,
        ),
        (
            t.clone().with_flags(TransferFlags::BALANCING_DEBIT),
            R::ExistsWithDifferentFlags,
        ),
        (
            {
                let mut x = t.clone();
                x.debit_account_id = MIRROR;
                x
            },
            R::ExistsWithDifferentDebitAccountId,
        ),
        (
            {
                let mut x = t.clone();
                x.credit_account_id = WALLET;
                x
            },
            R::ExistsWithDifferentCreditAccountId,
        ),
        (
            {
                let mut x = t.clone();
                x.amount = yuan(4);
                x
            },
            R::ExistsWithDifferentAmount,
        ),
        (
            t.clone().with_reference(Reference::bill("B-2").unwrap()),
            R::ExistsWithDifferentReference,
        ),
        (t.clone().with_memo("other"), R::ExistsWithDifferentMemo),
        (
            {
                let mut x = t.clone();
                x.code = 2;
                x
            },
            R::ExistsWithDifferentCode,
        ),
    ];
    for (x, expected) in changed {
        assert_eq!(one(&mut e, x), expected);
    }
    assert_eq!(e.transfer_count(), 1);
}

#[test]
fn a_state_dependent_failure_burns_the_id() {
    let mut e = engine();
    let t = plain(10, WALLET, METRO, yuan(1));
    assert_eq!(one(&mut e, t.clone()), R::ExceedsCredits);
    assert_eq!(one(&mut e, plain(11, CLEARING, WALLET, yuan(5))), R::Ok);
    assert_eq!(one(&mut e, t.clone()), R::IdAlreadyFailed);
    assert_eq!(e.failure(id(10)), Some(R::ExceedsCredits));
    // A request-level failure does not burn the id.
    let mut bad = plain(12, CLEARING, METRO, yuan(1));
    bad.code = 0;
    assert_eq!(one(&mut e, bad), R::CodeMustNotBeZero);
    assert_eq!(one(&mut e, plain(12, CLEARING, METRO, yuan(1))), R::Ok);
}

#[test]
fn balance_constraints_and_the_wallet_cap_hold() {
    let mut e = engine();
    // The anonymous wallet is capped at ¥1,000, pending credits included.
    assert_eq!(
        one(&mut e, plain(1, CLEARING, WALLET, yuan(1001))),
        R::ExceedsUpperLimit
    );
    assert_eq!(
        one(
            &mut e,
            NewTransfer::pending(id(2), CLEARING, WALLET, yuan(600), 1, 0)
        ),
        R::Ok
    );
    assert_eq!(
        one(&mut e, plain(3, CLEARING, WALLET, yuan(401))),
        R::ExceedsUpperLimit
    );
    assert_eq!(one(&mut e, plain(4, CLEARING, WALLET, yuan(400))), R::Ok);
    // No overdraft: pending credits are not spendable, posted ones are.
    assert_eq!(
        one(&mut e, plain(5, WALLET, METRO, Money::from_fen(40_001))),
        R::ExceedsCredits
    );
    assert_eq!(one(&mut e, plain(6, WALLET, METRO, yuan(400))), R::Ok);
    // The mirror constraint.
    assert_eq!(
        one(&mut e, plain(7, CLEARING, MIRROR, yuan(1))),
        R::ExceedsDebits
    );
    assert_eq!(one(&mut e, plain(8, MIRROR, CLEARING, yuan(2))), R::Ok);
    assert_eq!(one(&mut e, plain(9, CLEARING, MIRROR, yuan(2))), R::Ok);
    let w = e.account(WALLET).unwrap();
    assert_eq!(w.posted(), Money::ZERO);
    assert_eq!(w.pending(), yuan(600));
    assert_eq!(w.available(), Money::ZERO);
}

#[test]
fn balancing_transfers_move_what_the_limits_allow() {
    let mut e = engine();
    assert_eq!(one(&mut e, plain(1, CLEARING, WALLET, yuan(30))), R::Ok);
    let drain = plain(2, WALLET, METRO, yuan(100)).with_flags(TransferFlags::BALANCING_DEBIT);
    assert_eq!(one(&mut e, drain.clone()), R::Ok);
    assert_eq!(e.transfer(id(2)).unwrap().amount, yuan(30));
    assert_eq!(e.account(WALLET).unwrap().posted(), Money::ZERO);
    // The replay with the same (larger) maximum is still `exists`.
    assert_eq!(one(&mut e, drain), R::Exists);
    // Topping up "as much as the cap allows".
    assert_eq!(one(&mut e, plain(3, CLEARING, WALLET, yuan(990))), R::Ok);
    let fill = plain(4, CLEARING, WALLET, yuan(50)).with_flags(TransferFlags::BALANCING_CREDIT);
    assert_eq!(one(&mut e, fill), R::Ok);
    assert_eq!(e.transfer(id(4)).unwrap().amount, yuan(10));
    assert_eq!(e.account(WALLET).unwrap().posted(), yuan(1000));
}

#[test]
fn holds_post_partially_once_and_release_the_rest() {
    let mut e = engine();
    assert_eq!(one(&mut e, plain(1, CLEARING, WALLET, yuan(50))), R::Ok);
    assert_eq!(
        one(
            &mut e,
            NewTransfer::pending(id(2), WALLET, METRO, yuan(10), 2, 600)
        ),
        R::Ok
    );
    let w = e.account(WALLET).unwrap();
    assert_eq!(w.available(), yuan(40));
    assert_eq!(w.posted(), yuan(50));
    assert_eq!(
        one(&mut e, NewTransfer::post(id(3), id(2), Some(yuan(11)))),
        R::ExceedsPendingTransferAmount
    );
    assert_eq!(
        one(&mut e, NewTransfer::post(id(4), id(2), Some(yuan(4)))),
        R::Ok
    );
    assert_eq!(e.pending_status(id(2)), Some(PendingStatus::Posted));
    let w = e.account(WALLET).unwrap();
    assert_eq!(w.posted(), yuan(46));
    assert_eq!(w.available(), yuan(46));
    assert_eq!(w.balances.debits_pending, Money::ZERO);
    assert_eq!(
        one(&mut e, NewTransfer::post(id(5), id(2), None)),
        R::PendingTransferAlreadyPosted
    );
    assert_eq!(
        one(&mut e, NewTransfer::void(id(6), id(2))),
        R::PendingTransferAlreadyPosted
    );
    assert_eq!(
        one(&mut e, NewTransfer::post(id(7), id(1), None)),
        R::PendingTransferNotPending
    );
    assert_eq!(
        one(&mut e, NewTransfer::post(id(8), id(99), None)),
        R::PendingTransferNotFound
    );
    assert_eq!(
        one(&mut e, NewTransfer::post(id(9), id(9), None)),
        R::PendingIdMustBeDifferent
    );
}

#[test]
fn posts_and_voids_check_what_they_name() {
    let mut e = engine();
    assert_eq!(one(&mut e, plain(1, CLEARING, WALLET, yuan(50))), R::Ok);
    assert_eq!(
        one(
            &mut e,
            NewTransfer::pending(id(2), WALLET, METRO, yuan(10), 2, 0)
        ),
        R::Ok
    );
    let mut p = NewTransfer::post(id(3), id(2), None);
    p.debit_account_id = CLEARING;
    assert_eq!(one(&mut e, p), R::PendingTransferHasDifferentDebitAccountId);
    let mut p = NewTransfer::post(id(4), id(2), None);
    p.credit_account_id = CLEARING;
    assert_eq!(
        one(&mut e, p),
        R::PendingTransferHasDifferentCreditAccountId
    );
    let mut p = NewTransfer::post(id(5), id(2), None);
    p.code = 9;
    assert_eq!(one(&mut e, p), R::PendingTransferHasDifferentCode);
    let mut v = NewTransfer::void(id(6), id(2));
    v.amount = yuan(3);
    assert_eq!(one(&mut e, v), R::PendingTransferHasDifferentAmount);
    assert_eq!(one(&mut e, NewTransfer::void(id(7), id(2))), R::Ok);
    assert_eq!(e.pending_status(id(2)), Some(PendingStatus::Voided));
    assert_eq!(e.account(WALLET).unwrap().available(), yuan(50));
    assert_eq!(
        one(&mut e, NewTransfer::post(id(8), id(2), None)),
        R::PendingTransferAlreadyVoided
    );
    // The void records the released amount and the hold's accounts.
    let void = e.transfer(id(7)).unwrap();
    assert_eq!(
        (void.debit_account_id, void.credit_account_id),
        (WALLET, METRO)
    );
    assert_eq!(void.amount, yuan(10));
}

#[test]
fn expired_holds_release_their_amount_and_cannot_be_posted() {
    let mut e = engine();
    assert_eq!(one(&mut e, plain(1, CLEARING, WALLET, yuan(50))), R::Ok);
    assert_eq!(
        one(
            &mut e,
            NewTransfer::pending(id(2), WALLET, METRO, yuan(10), 2, 60)
        ),
        R::Ok
    );
    // 61 s after the hold was placed (at t0 + 1 s) it has expired.
    let later = t0() + Duration::seconds(62);
    let r = e.create_transfers(later, vec![NewTransfer::post(id(3), id(2), None)]);
    assert_eq!(r, [R::PendingTransferExpired]);
    assert_eq!(e.pending_status(id(2)), Some(PendingStatus::Expired));
    assert_eq!(e.account(WALLET).unwrap().available(), yuan(50));
    assert_eq!(
        e.account(METRO).unwrap().balances.credits_pending,
        Money::ZERO
    );
    assert_eq!(e.expiries().count(), 1);
    // Not yet expired at 59 s: it posts.
    assert_eq!(
        one(
            &mut e,
            NewTransfer::pending(id(4), WALLET, METRO, yuan(10), 2, 60)
        ),
        R::Ok
    );
    let r = e.create_transfers(
        t0() + Duration::seconds(60),
        vec![NewTransfer::post(id(5), id(4), None)],
    );
    assert_eq!(r, [R::Ok]);
}

#[test]
fn a_linked_chain_fails_as_one_and_leaves_no_trace() {
    let mut e = engine();
    assert_eq!(one(&mut e, plain(1, CLEARING, WALLET, yuan(10))), R::Ok);
    let before = (e.totals(), e.account(WALLET).unwrap(), e.transfer_count());
    let r = e.create_transfers(
        t0() + Duration::seconds(2),
        vec![
            plain(2, WALLET, METRO, yuan(6)).with_flags(TransferFlags::LINKED),
            NewTransfer::pending(id(3), CLEARING, METRO, yuan(1), 2, 5)
                .with_flags(TransferFlags::LINKED),
            plain(4, WALLET, METRO, yuan(6)).with_flags(TransferFlags::LINKED),
            plain(5, CLEARING, METRO, yuan(1)),
            plain(6, CLEARING, METRO, yuan(1)),
        ],
    );
    assert_eq!(
        r,
        [
            R::LinkedEventFailed,
            R::LinkedEventFailed,
            R::ExceedsCredits,
            R::LinkedEventFailed,
            R::Ok
        ]
    );
    assert_eq!(e.transfer_count(), before.2 + 1);
    assert!(e.transfer(id(2)).is_none() && e.transfer(id(3)).is_none());
    assert_eq!(e.account(WALLET).unwrap(), before.1);
    assert!(e.pending_status(id(3)).is_none());
    // Ids rolled back with the chain are free; the failing one is burnt.
    let r = e.create_transfers(
        t0() + Duration::seconds(3),
        vec![
            plain(2, WALLET, METRO, yuan(6)).with_flags(TransferFlags::LINKED),
            plain(5, CLEARING, METRO, yuan(1)),
            plain(4, WALLET, METRO, yuan(1)),
        ],
    );
    assert_eq!(r, [R::Ok, R::Ok, R::IdAlreadyFailed]);
    let r = e.create_transfers(
        t0() + Duration::seconds(4),
        vec![plain(7, CLEARING, METRO, yuan(1)).with_flags(TransferFlags::LINKED)],
    );
    assert_eq!(r, [R::LinkedEventChainOpen]);
}

#[test]
fn closing_transfers_close_and_voiding_reopens() {
    let mut e = engine();
    assert_eq!(one(&mut e, plain(1, CLEARING, WALLET, yuan(10))), R::Ok);
    assert_eq!(
        one(
            &mut e,
            NewTransfer::close_account(id(2), WALLET, CONTROL, 9)
        ),
        R::Ok
    );
    assert!(e.account(WALLET).unwrap().is_closed());
    assert_eq!(
        one(&mut e, plain(3, CLEARING, WALLET, yuan(1))),
        R::CreditAccountAlreadyClosed
    );
    assert_eq!(
        one(&mut e, plain(4, WALLET, METRO, yuan(1))),
        R::DebitAccountAlreadyClosed
    );
    assert_eq!(one(&mut e, NewTransfer::void(id(5), id(2))), R::Ok);
    assert!(!e.account(WALLET).unwrap().is_closed());
    assert_eq!(one(&mut e, plain(6, WALLET, METRO, yuan(1))), R::Ok);
}

#[test]
fn history_answers_balances_as_of_an_instant() {
    let mut e = engine();
    let at = |s| t0() + Duration::seconds(s);
    e.create_transfers(at(10), vec![plain(1, CLEARING, WALLET, yuan(10))]);
    e.create_transfers(at(20), vec![plain(2, WALLET, METRO, yuan(3))]);
    assert_eq!(
        e.balances_at(WALLET, at(5)).unwrap().credits_posted,
        Money::ZERO
    );
    let b = e.balances_at(WALLET, at(15)).unwrap();
    assert_eq!((b.credits_posted, b.debits_posted), (yuan(10), Money::ZERO));
    let b = e.balances_at(WALLET, at(25)).unwrap();
    assert_eq!((b.credits_posted, b.debits_posted), (yuan(10), yuan(3)));
    assert!(e.balances_at(METRO, at(25)).is_none(), "no history flag");
    // Transfers of an account: from its index (history) or by a scan (no history).
    assert_eq!(e.account_transfers(WALLET).len(), 2);
    let metro = e.account_transfers(METRO);
    assert_eq!(metro.len(), 1);
    assert_eq!(metro[0].id, id(2));
}

#[test]
fn ids_and_results_serialise_as_documented() {
    let id = AccountId::new(u64::MAX - 1);
    assert_eq!(
        serde_json::to_string(&id).unwrap(),
        "\"18446744073709551614\""
    );
    assert_eq!(
        serde_json::from_str::<AccountId>("\"42\"").unwrap(),
        AccountId::new(42)
    );
    assert!("4x".parse::<TransferId>().is_err());
    assert!("".parse::<TransferId>().is_err());
    assert_eq!(
        serde_json::to_string(&R::ExistsWithDifferentAmount).unwrap(),
        "\"exists_with_different_amount\""
    );
    for (i, r) in R::ALL.iter().enumerate() {
        assert_eq!(usize::from(r.code()), i, "codes follow the order");
        assert_eq!(R::from_code(r.code()), Some(*r));
    }
    assert!(Reference::parse("trip:T 1").is_err());
    assert_eq!(Reference::trip("T-1").unwrap().as_str(), "trip:T-1");
}

#[test]
fn a_snapshot_that_does_not_replay_is_refused() {
    let mut e = engine();
    assert_eq!(one(&mut e, plain(1, CLEARING, METRO, yuan(1))), R::Ok);
    let transfers = e.transfers().to_vec();
    // The transfers without their accounts.
    let orphan = citycard_ledger::Snapshot {
        transfers: transfers.clone(),
        ..Default::default()
    };
    assert!(matches!(
        Engine::from_snapshot(orphan),
        Err(citycard_ledger::LedgerError::Corrupt(_))
    ));
    // A post of a hold that was never stored.
    let mut post = transfers[0].clone();
    post.id = id(2);
    post.flags = TransferFlags::POST_PENDING_TRANSFER;
    post.pending_id = Some(id(99));
    let snapshot = citycard_ledger::Snapshot {
        accounts: e.accounts().collect(),
        transfers: vec![transfers[0].clone(), post],
        ..Default::default()
    };
    assert!(Engine::from_snapshot(snapshot).is_err());
}

// ---- issue 14: TigerBeetle's state-machine expectations, one test per cause.

#[test]
fn a_post_or_void_checks_the_hold_not_the_accounts_it_names() {
    let mut e = engine();
    assert_eq!(one(&mut e, plain(1, CLEARING, WALLET, yuan(10))), R::Ok);
    // No hold 99: TigerBeetle answers `pending_transfer_not_found`, never
    // `debit_account_not_found`, even when the named account does not exist.
    let mut post = NewTransfer::post(id(2), id(99), None);
    post.debit_account_id = AccountId::new(777);
    assert_eq!(one(&mut e, post.clone()), R::PendingTransferNotFound);
    // A transfer that is not a hold: `pending_transfer_not_pending`.
    post.id = id(3);
    post.pending_id = Some(id(1));
    assert_eq!(one(&mut e, post.clone()), R::PendingTransferNotPending);
    // A real hold and an unknown debit account: `pending_transfer_has_different_debit_account_id`.
    let hold = NewTransfer::pending(id(4), WALLET, METRO, yuan(4), 2, 3600);
    assert_eq!(one(&mut e, hold), R::Ok);
    post.id = id(5);
    post.pending_id = Some(id(4));
    assert_eq!(
        one(&mut e, post.clone()),
        R::PendingTransferHasDifferentDebitAccountId
    );
    let mut void = NewTransfer::void(id(6), id(4));
    void.credit_account_id = AccountId::new(778);
    assert_eq!(
        one(&mut e, void),
        R::PendingTransferHasDifferentCreditAccountId
    );
}

#[test]
fn a_hold_checks_the_posted_sides_for_overflow_too() {
    let mut e = engine();
    let near = Money::from_fen(i64::MAX - 10);
    assert_eq!(one(&mut e, plain(1, CLEARING, METRO, near)), R::Ok);
    // Pending sides are empty, but a later post would overflow the posted debits.
    let hold = NewTransfer::pending(id(2), CLEARING, METRO, Money::from_fen(20), 2, 0);
    assert_eq!(one(&mut e, hold), R::OverflowsDebitsPosted);
    let hold = NewTransfer::pending(id(3), CONTROL, METRO, Money::from_fen(20), 2, 0);
    assert_eq!(one(&mut e, hold), R::OverflowsCreditsPosted);
}

#[test]
fn a_void_of_more_than_the_hold_exceeds_it_and_of_less_differs() {
    let mut e = engine();
    assert_eq!(one(&mut e, plain(1, CLEARING, WALLET, yuan(10))), R::Ok);
    let hold = NewTransfer::pending(id(2), WALLET, METRO, yuan(4), 2, 3600);
    assert_eq!(one(&mut e, hold), R::Ok);
    let mut void = NewTransfer::void(id(3), id(2));
    void.amount = yuan(5);
    assert_eq!(one(&mut e, void.clone()), R::ExceedsPendingTransferAmount);
    void.id = id(4);
    void.amount = yuan(3);
    assert_eq!(one(&mut e, void), R::PendingTransferHasDifferentAmount);
    assert_eq!(one(&mut e, NewTransfer::void(id(5), id(2))), R::Ok);
}

#[test]
fn an_open_chain_is_reported_before_a_broken_one() {
    let mut e = engine();
    let r = e.create_transfers(
        t0() + Duration::seconds(1),
        vec![
            plain(1, WALLET, METRO, yuan(1)).with_flags(TransferFlags::LINKED),
            plain(2, CLEARING, METRO, yuan(1)).with_flags(TransferFlags::LINKED),
        ],
    );
    assert_eq!(r, [R::ExceedsCredits, R::LinkedEventChainOpen]);
    let linked = AccountFlags::LINKED;
    let r = e.create_accounts(
        t0() + Duration::seconds(2),
        vec![
            NewAccount::new(AccountId::ZERO, AccountKind::FEES).with_flags(linked),
            NewAccount::new(AccountId::new(50), AccountKind::FEES).with_flags(linked),
        ],
    );
    assert_eq!(r, [A::IdMustNotBeZero, A::LinkedEventChainOpen]);
}

#[test]
fn a_closed_account_accepts_only_voids() {
    let mut e = engine();
    assert_eq!(one(&mut e, plain(1, CLEARING, WALLET, yuan(10))), R::Ok);
    let hold = NewTransfer::pending(id(2), WALLET, METRO, yuan(4), 2, 3600);
    assert_eq!(one(&mut e, hold), R::Ok);
    let hold = NewTransfer::pending(id(3), CLEARING, METRO, yuan(4), 2, 3600);
    assert_eq!(one(&mut e, hold), R::Ok);
    assert_eq!(
        one(
            &mut e,
            NewTransfer::close_account(id(4), WALLET, CONTROL, 9)
        ),
        R::Ok
    );
    assert_eq!(
        one(&mut e, NewTransfer::post(id(5), id(2), None)),
        R::DebitAccountAlreadyClosed
    );
    // Closing the credit side of another hold, then posting it.
    assert_eq!(
        one(
            &mut e,
            NewTransfer::pending(id(6), CONTROL, METRO, Money::ZERO, 9, 0)
                .with_flags(TransferFlags::CLOSING_CREDIT)
        ),
        R::Ok
    );
    assert_eq!(
        one(&mut e, NewTransfer::post(id(7), id(3), None)),
        R::CreditAccountAlreadyClosed
    );
    assert_eq!(one(&mut e, NewTransfer::void(id(8), id(2))), R::Ok);
    assert_eq!(e.pending_status(id(2)), Some(PendingStatus::Voided));
}

#[test]
fn only_tigerbeetles_transient_results_burn_the_id() {
    let mut e = engine();
    assert_eq!(one(&mut e, plain(1, CLEARING, WALLET, yuan(10))), R::Ok);
    let hold = NewTransfer::pending(id(2), WALLET, METRO, yuan(4), 2, 3600);
    assert_eq!(one(&mut e, hold), R::Ok);
    assert_eq!(one(&mut e, NewTransfer::post(id(3), id(2), None)), R::Ok);
    // Posting again is not transient: the id stays free for a corrected request.
    assert_eq!(
        one(&mut e, NewTransfer::post(id(4), id(2), None)),
        R::PendingTransferAlreadyPosted
    );
    assert_eq!(e.failure(id(4)), None);
    assert_eq!(one(&mut e, plain(4, CLEARING, METRO, yuan(1))), R::Ok);
    // A different-currency refusal is not transient either.
    assert_eq!(
        one(&mut e, plain(5, CLEARING, USD, yuan(1))),
        R::AccountsMustHaveTheSameCurrency
    );
    assert_eq!(one(&mut e, plain(5, CLEARING, METRO, yuan(1))), R::Ok);
    // Insufficient funds, a missing account and a missing hold are.
    for (t, r) in [
        (plain(6, WALLET, METRO, yuan(100)), R::ExceedsCredits),
        (
            plain(7, CLEARING, AccountId::new(999), yuan(1)),
            R::CreditAccountNotFound,
        ),
        (
            NewTransfer::post(id(8), id(98), None),
            R::PendingTransferNotFound,
        ),
    ] {
        let n = t.id;
        assert_eq!(one(&mut e, t), r);
        assert_eq!(e.failure(n), Some(r));
        assert_eq!(
            one(&mut e, plain(n.get(), CLEARING, METRO, yuan(1))),
            R::IdAlreadyFailed
        );
    }
}
