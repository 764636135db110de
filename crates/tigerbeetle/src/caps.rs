//! Wallet caps (account upper limits) enforced by the cluster itself.
//!
//! TigerBeetle 0.16 has no upper limit, so every transfer that credits a
//! capped credit-balance account (a wallet) is sent as TigerBeetle's
//! balance-bounds recipe — the transfer and four linked checks, atomic on the
//! cluster, so concurrent writers through any number of clients can never
//! push a wallet past its cap:
//!
//! | # | debit | credit | amount | flags |
//! |---|---|---|---|---|
//! | 1 | source | wallet | the transfer | linked |
//! | 2 | control | operator | cap | linked |
//! | 3 | wallet | control | `u128::MAX` | linked, pending, balancing_debit |
//! | 4 | — | — | void of 3 | linked |
//! | 5 | operator | control | cap | (linked if 1 was) |
//!
//! The control account refuses credits beyond its debits, so 3 fails with
//! `exceeds_debits` exactly when the wallet's balance after 1 is above the
//! cap; that is answered `exceeds_upper_limit` for 1. A capped debit-balance
//! account gets the mirror image (a control refusing debits beyond credits,
//! `balancing_credit`). Decision: this recipe rather than a pre-check by this
//! process, because a pre-check races with other clients.
//!
//! The checks' ids are the transfer's id with 1–4 in the upper 64 bits (never
//! one of ours, which fit in 64 bits; reads leave them out). Being derived,
//! they make a refusal burn the same way as the engine's: a retry of a
//! refused transfer finds check 3's id failed and answers `id_already_failed`.
//! The control and operator accounts (per currency) also live above 2^64.
//!
//! Deviation: the recipe counts the wallet's *available* balance — posted
//! credits minus posted and pending debits — where the engine counts pending
//! credits and ignores pending debits. The card system places no holds on
//! wallets, so the two agree there.

use std::collections::HashMap;
use std::sync::Mutex;

use tigerbeetle_unofficial as tb;

/// `code` of the checks and their accounts.
pub const CHECK_CODE: u16 = u16::MAX;

/// Which side of a capped account a transfer touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A credit-balance account (wallet) being credited.
    Credit,
    /// A debit-balance account being debited.
    Debit,
}

/// What a capped account needs for the recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    /// The upper limit, in fen.
    pub limit: u32,
    /// Whether the account holds a debit balance (`credits_must_not_exceed_debits`).
    pub debit_balance: bool,
}

/// The id of a helper account: `kind` 1 = credit-side control, 2 = debit-side control, 3 = operator.
pub fn helper_account(ledger: u32, kind: u8) -> u128 {
    (0xC17C_u128 << 112) | (u128::from(ledger) << 8) | u128::from(kind)
}

/// The helper accounts of one currency.
pub fn helper_accounts(ledger: u32) -> Vec<tb::Account> {
    use tb::account::Flags;
    vec![
        tb::Account::new(helper_account(ledger, 1), ledger, CHECK_CODE)
            .with_flags(Flags::CREDITS_MUST_NOT_EXCEED_DEBITS),
        tb::Account::new(helper_account(ledger, 2), ledger, CHECK_CODE)
            .with_flags(Flags::DEBITS_MUST_NOT_EXCEED_CREDITS),
        tb::Account::new(helper_account(ledger, 3), ledger, CHECK_CODE),
    ]
}

/// The id of check `k` (1–4) of transfer `id`.
pub fn check_id(id: u128, k: u8) -> u128 {
    (u128::from(k) << 64) | id
}

/// The four checks after transfer `main` (which must be sent with `linked`),
/// for `account` capped at `cap` on `side`; `linked_after` continues the
/// caller's chain past the last check.
pub fn checks(
    main: &tb::Transfer,
    account: u128,
    cap: u32,
    side: Side,
    linked_after: bool,
) -> [tb::Transfer; 4] {
    use tb::transfer::Flags;
    let ledger = main.ledger();
    let id = main.id();
    let limit = u128::from(cap);
    let operator = helper_account(ledger, 3);
    let (fund, probe) = match side {
        // Control's debits become the cap; the probe credits it with the wallet's balance.
        Side::Credit => {
            let control = helper_account(ledger, 1);
            (
                (control, operator),
                (account, control, Flags::BALANCING_DEBIT),
            )
        }
        // Control's credits become the cap; the probe debits it with the account's balance.
        Side::Debit => {
            let control = helper_account(ledger, 2);
            (
                (operator, control),
                (control, account, Flags::BALANCING_CREDIT),
            )
        }
    };
    let base = |k: u8| {
        tb::Transfer::new(check_id(id, k))
            .with_ledger(ledger)
            .with_code(CHECK_CODE)
    };
    [
        base(1)
            .with_debit_account_id(fund.0)
            .with_credit_account_id(fund.1)
            .with_amount(limit)
            .with_flags(Flags::LINKED),
        base(2)
            .with_debit_account_id(probe.0)
            .with_credit_account_id(probe.1)
            .with_amount(u128::MAX)
            .with_flags(Flags::LINKED | Flags::PENDING | probe.2),
        base(3)
            .with_pending_id(check_id(id, 2))
            .with_flags(Flags::LINKED | Flags::VOID_PENDING_TRANSFER),
        base(4)
            .with_debit_account_id(fund.1)
            .with_credit_account_id(fund.0)
            .with_amount(limit)
            .with_flags(if linked_after {
                Flags::LINKED
            } else {
                Flags::empty()
            }),
    ]
}

/// Caps of accounts seen so far (limits and balance sides never change after
/// an account is created; an account not found is looked up again next time).
#[derive(Debug, Default)]
pub struct CapCache {
    known: Mutex<HashMap<u64, Option<Cap>>>,
}

impl CapCache {
    /// The ids among `ids` not known yet.
    pub fn unknown(&self, ids: impl Iterator<Item = u64>) -> Vec<u64> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<u64> = ids.filter(|id| !known.contains_key(id)).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Records an account read from the cluster.
    pub fn learn(&self, a: &tb::Account) {
        let Ok(id) = u64::try_from(a.id()) else {
            return;
        };
        let cap = (a.user_data_32() != 0).then(|| Cap {
            limit: a.user_data_32(),
            debit_balance: a
                .flags()
                .contains(tb::account::Flags::CREDITS_MUST_NOT_EXCEED_DEBITS),
        });
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, cap);
    }

    /// The cap a transfer between `debit` and `credit` must be checked against.
    pub fn cap_for(&self, debit: u64, credit: u64) -> Option<(u64, Cap, Side)> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Some(c)) = known.get(&credit)
            && !c.debit_balance
        {
            return Some((credit, *c, Side::Credit));
        }
        if let Some(Some(c)) = known.get(&debit)
            && c.debit_balance
        {
            return Some((debit, *c, Side::Debit));
        }
        None
    }
}

/// `user_data_32` of a capped transfer whose `linked` flag was added here
/// (the caller's transfer was not linked): a replay compares the caller's
/// flags, not the ones on the wire.
pub const ADDED_LINK: u32 = 1;

/// The flags the caller gave a stored transfer (without a `linked` added here).
pub fn caller_flags(stored: &tb::Transfer) -> u16 {
    let bits = stored.flags().bits();
    if stored.user_data_32() == ADDED_LINK {
        bits & !tb::transfer::Flags::LINKED.bits()
    } else {
        bits
    }
}

/// The engine's `exists` comparison, in its order, of a request against a
/// stored transfer: used when the cluster's own comparison saw flags this
/// adapter changed (a replay of a capped transfer).
pub fn exists_result(
    stored: &tb::Transfer,
    t: &citycard_ledger::NewTransfer,
) -> citycard_ledger::CreateTransferResult {
    use citycard_ledger::CreateTransferResult as R;
    let f = t.flags;
    let settles = f.post_pending_transfer() || f.void_pending_transfer();
    let inherit = |req: u128, stored: u128| (settles && req == 0) || req == stored;
    let amount = t.amount.fen() as u128;
    let amount_ok = if f.balancing_debit() || f.balancing_credit() {
        amount >= stored.amount()
    } else if settles {
        amount == 0 || amount == stored.amount()
    } else {
        amount == stored.amount()
    };
    let (reference, memo) = crate::map::transfer_keys(t);
    if caller_flags(stored) != f.bits() {
        R::ExistsWithDifferentFlags
    } else if stored.pending_id() != t.pending_id.map_or(0, |p| u128::from(p.get())) {
        R::ExistsWithDifferentPendingId
    } else if stored.timeout() != t.timeout_secs {
        R::ExistsWithDifferentTimeout
    } else if !inherit(
        u128::from(t.debit_account_id.get()),
        stored.debit_account_id(),
    ) {
        R::ExistsWithDifferentDebitAccountId
    } else if !inherit(
        u128::from(t.credit_account_id.get()),
        stored.credit_account_id(),
    ) {
        R::ExistsWithDifferentCreditAccountId
    } else if !amount_ok {
        R::ExistsWithDifferentAmount
    } else if !(reference == stored.user_data_128() || settles && reference == 0) {
        R::ExistsWithDifferentReference
    } else if !(memo == stored.user_data_64() || settles && memo == 0) {
        R::ExistsWithDifferentMemo
    } else if !inherit(u128::from(t.currency.0), u128::from(stored.ledger())) {
        R::ExistsWithDifferentCurrency
    } else if !inherit(u128::from(t.code), u128::from(stored.code())) {
        R::ExistsWithDifferentCode
    } else {
        R::Exists
    }
}
