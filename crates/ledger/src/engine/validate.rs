//! Validation: each request's result in TigerBeetle's order of precedence.

use citycard_core::Money;

use super::{Engine, NANOS_PER_SEC, R, instant};
use crate::ids::{AccountId, TransferId};
use crate::model::{
    Account, AccountFlags, Balances, CreateAccountResult, MAX_MEMO_LEN, NewAccount, NewTransfer,
    PendingStatus, Transfer,
};

impl Engine {
    pub(super) fn create_account(&mut self, now: i64, a: NewAccount) -> CreateAccountResult {
        type A = CreateAccountResult;
        if a.flags.has_unknown() || a.flags.closed() {
            return A::ReservedFlag;
        }
        if a.id.is_zero() {
            return A::IdMustNotBeZero;
        }
        if a.id == AccountId::MAX {
            return A::IdMustNotBeIntMax;
        }
        if let Some(&index) = self.account_index.get(&a.id.get()) {
            let e = &self.accounts[index as usize];
            return if e.flags.0 & !AccountFlags::CLOSED.0 != a.flags.0 {
                A::ExistsWithDifferentFlags
            } else if e.upper_limit != a.upper_limit {
                A::ExistsWithDifferentUpperLimit
            } else if e.owner != a.owner {
                A::ExistsWithDifferentOwner
            } else if e.metadata != a.metadata {
                A::ExistsWithDifferentMetadata
            } else if e.currency != a.currency {
                A::ExistsWithDifferentCurrency
            } else if e.kind != a.kind {
                A::ExistsWithDifferentKind
            } else {
                A::Exists
            };
        }
        if a.flags.debits_must_not_exceed_credits() && a.flags.credits_must_not_exceed_debits() {
            return A::FlagsAreMutuallyExclusive;
        }
        if a.upper_limit.is_some_and(|l| !l.is_positive()) {
            return A::UpperLimitMustBePositive;
        }
        if a.currency.0 == 0 {
            return A::CurrencyMustNotBeZero;
        }
        if a.kind.0 == 0 {
            return A::KindMustNotBeZero;
        }
        let ts = self.next_ts(now);
        self.insert_account(Account {
            id: a.id,
            kind: a.kind,
            currency: a.currency,
            flags: a.flags,
            upper_limit: a.upper_limit,
            owner: a.owner,
            metadata: a.metadata,
            balances: Balances::default(),
            created_at: instant(ts),
        });
        A::Ok
    }

    fn exists(&self, e: &Transfer, t: &NewTransfer) -> R {
        let settles = t.flags.post_pending_transfer() || t.flags.void_pending_transfer();
        let inherit = |req: u64, stored: u64| (settles && req == 0) || req == stored;
        let amount_ok = if t.flags.balancing_debit() || t.flags.balancing_credit() {
            t.amount >= e.amount
        } else if settles {
            t.amount.is_zero() || t.amount == e.amount
        } else {
            t.amount == e.amount
        };
        if e.flags != t.flags {
            R::ExistsWithDifferentFlags
        } else if e.pending_id != t.pending_id {
            R::ExistsWithDifferentPendingId
        } else if e.timeout_secs != t.timeout_secs {
            R::ExistsWithDifferentTimeout
        } else if !inherit(t.debit_account_id.get(), e.debit_account_id.get()) {
            R::ExistsWithDifferentDebitAccountId
        } else if !inherit(t.credit_account_id.get(), e.credit_account_id.get()) {
            R::ExistsWithDifferentCreditAccountId
        } else if !amount_ok {
            R::ExistsWithDifferentAmount
        } else if e.reference != t.reference {
            R::ExistsWithDifferentReference
        } else if e.memo != t.memo {
            R::ExistsWithDifferentMemo
        } else if !inherit(u64::from(t.currency.0), u64::from(e.currency.0)) {
            R::ExistsWithDifferentCurrency
        } else if !inherit(u64::from(t.code), u64::from(e.code)) {
            R::ExistsWithDifferentCode
        } else {
            R::Exists
        }
    }

    pub(super) fn create_transfer(&mut self, now: i64, mut t: NewTransfer, in_chain: bool) -> R {
        let f = t.flags;
        if f.has_unknown() {
            return R::ReservedFlag;
        }
        if t.id.is_zero() {
            return R::IdMustNotBeZero;
        }
        if t.id == TransferId::MAX {
            return R::IdMustNotBeIntMax;
        }
        if let Some(e) = self.known_transfer(t.id.get()) {
            return self.exists(e, &t);
        }
        if self.failure(t.id).is_some() {
            return R::IdAlreadyFailed;
        }
        let phases = u8::from(f.pending())
            + u8::from(f.post_pending_transfer())
            + u8::from(f.void_pending_transfer());
        let settles = f.post_pending_transfer() || f.void_pending_transfer();
        let balancing = f.balancing_debit() || f.balancing_credit();
        let closing = f.closing_debit() || f.closing_credit();
        if phases > 1 || (settles && (balancing || closing)) {
            return R::FlagsAreMutuallyExclusive;
        }
        if settles {
            return self.settle(now, t, in_chain);
        }
        if t.debit_account_id.is_zero() {
            return R::DebitAccountIdMustNotBeZero;
        }
        if t.debit_account_id == AccountId::MAX {
            return R::DebitAccountIdMustNotBeIntMax;
        }
        if t.credit_account_id.is_zero() {
            return R::CreditAccountIdMustNotBeZero;
        }
        if t.credit_account_id == AccountId::MAX {
            return R::CreditAccountIdMustNotBeIntMax;
        }
        if t.debit_account_id == t.credit_account_id {
            return R::AccountsMustBeDifferent;
        }
        if t.pending_id.is_some() {
            return R::PendingIdMustBeZero;
        }
        if !f.pending() && t.timeout_secs != 0 {
            return R::TimeoutReservedForPendingTransfer;
        }
        if closing && !f.pending() {
            return R::ClosingTransferMustBePending;
        }
        if t.amount.is_negative() {
            return R::AmountMustNotBeNegative;
        }
        if t.amount.is_zero() && !closing {
            return R::AmountMustNotBeZero;
        }
        if t.currency.0 == 0 {
            return R::CurrencyMustNotBeZero;
        }
        if t.code == 0 {
            return R::CodeMustNotBeZero;
        }
        if t.memo.as_ref().is_some_and(|m| m.len() > MAX_MEMO_LEN) {
            return R::MemoTooLong;
        }
        let Some(&dr) = self.account_index.get(&t.debit_account_id.get()) else {
            return R::DebitAccountNotFound;
        };
        let Some(&cr) = self.account_index.get(&t.credit_account_id.get()) else {
            return R::CreditAccountNotFound;
        };
        let d = self.states[dr as usize];
        let c = self.states[cr as usize];
        if d.currency != c.currency {
            return R::AccountsMustHaveTheSameCurrency;
        }
        if t.currency.0 != d.currency {
            return R::TransferMustHaveTheSameCurrencyAsAccounts;
        }
        if d.flags().closed() {
            return R::DebitAccountAlreadyClosed;
        }
        if c.flags().closed() {
            return R::CreditAccountAlreadyClosed;
        }
        let mut amount = t.amount.fen();
        if f.balancing_debit() {
            let room = d
                .credits_posted
                .saturating_sub(d.debits_posted)
                .saturating_sub(d.debits_pending)
                .max(0);
            amount = amount.min(room);
        }
        if f.balancing_credit() {
            let room =
                if c.upper_limit != i64::MAX && !c.flags().credits_must_not_exceed_debits() {
                    c.upper_limit
                        .saturating_sub(c.credits_posted)
                        .saturating_sub(c.credits_pending)
                        .saturating_add(c.debits_posted)
                } else {
                    c.debits_posted
                        .saturating_sub(c.credits_posted)
                        .saturating_sub(c.credits_pending)
                }
                .max(0);
            amount = amount.min(room);
        }
        let pending = f.pending();
        if pending {
            if d.debits_pending.checked_add(amount).is_none() {
                return R::OverflowsDebitsPending;
            }
            if c.credits_pending.checked_add(amount).is_none() {
                return R::OverflowsCreditsPending;
            }
        }
        // As in TigerBeetle, a hold also checks the posted sides: it may be posted later.
        if d.debits_posted.checked_add(amount).is_none() {
            return R::OverflowsDebitsPosted;
        }
        if c.credits_posted.checked_add(amount).is_none() {
            return R::OverflowsCreditsPosted;
        }
        let d_total =
            i128::from(d.debits_pending) + i128::from(d.debits_posted) + i128::from(amount);
        let c_total =
            i128::from(c.credits_pending) + i128::from(c.credits_posted) + i128::from(amount);
        if d_total > i128::from(i64::MAX) {
            return R::OverflowsDebits;
        }
        if c_total > i128::from(i64::MAX) {
            return R::OverflowsCredits;
        }
        if pending
            && t.timeout_secs > 0
            && (i64::from(t.timeout_secs) * NANOS_PER_SEC)
                .checked_add(now.max(self.last_ts + 1))
                .is_none()
        {
            return R::OverflowsTimeout;
        }
        if d.flags().debits_must_not_exceed_credits() && d_total > i128::from(d.credits_posted) {
            return R::ExceedsCredits;
        }
        if c.flags().credits_must_not_exceed_debits() && c_total > i128::from(c.debits_posted) {
            return R::ExceedsDebits;
        }
        if c.upper_limit != i64::MAX
            && !c.flags().credits_must_not_exceed_debits()
            && c_total - i128::from(c.debits_posted) > i128::from(c.upper_limit)
        {
            return R::ExceedsUpperLimit;
        }
        if d.upper_limit != i64::MAX
            && d.flags().credits_must_not_exceed_debits()
            && d_total - i128::from(d.credits_posted) > i128::from(d.upper_limit)
        {
            return R::ExceedsUpperLimit;
        }
        let ts = self.next_ts(now);
        let transfer = Transfer {
            id: t.id,
            debit_account_id: t.debit_account_id,
            credit_account_id: t.credit_account_id,
            amount: Money::from_fen(amount),
            pending_id: None,
            timeout_secs: t.timeout_secs,
            currency: t.currency,
            code: t.code,
            flags: f,
            reference: t.reference.take(),
            memo: t.memo.take(),
            timestamp: instant(ts),
        };
        self.apply(transfer, dr, cr, in_chain);
        R::Ok
    }

    fn settle(&mut self, now: i64, mut t: NewTransfer, in_chain: bool) -> R {
        let f = t.flags;
        let Some(pending_id) = t.pending_id else {
            return R::PendingIdMustNotBeZero;
        };
        if pending_id.is_zero() {
            return R::PendingIdMustNotBeZero;
        }
        if pending_id == TransferId::MAX {
            return R::PendingIdMustNotBeIntMax;
        }
        if pending_id == t.id {
            return R::PendingIdMustBeDifferent;
        }
        if t.timeout_secs != 0 {
            return R::TimeoutReservedForPendingTransfer;
        }
        if t.amount.is_negative() {
            return R::AmountMustNotBeNegative;
        }
        if t.memo.as_ref().is_some_and(|m| m.len() > MAX_MEMO_LEN) {
            return R::MemoTooLong;
        }
        // As in TigerBeetle, a post or void never answers `*_account_not_found`:
        // the accounts it names are compared with the hold's below.
        let state = match self.pending.get(&pending_id.get()) {
            Some(p) => *p,
            None => match self.fetched_holds.get(&pending_id.get()) {
                Some(p) => *p,
                None if self.known_transfer(pending_id.get()).is_some() => {
                    return R::PendingTransferNotPending;
                }
                None => return R::PendingTransferNotFound,
            },
        };
        let p = state.hold;
        if !t.debit_account_id.is_zero() && t.debit_account_id != p.debit {
            return R::PendingTransferHasDifferentDebitAccountId;
        }
        if !t.credit_account_id.is_zero() && t.credit_account_id != p.credit {
            return R::PendingTransferHasDifferentCreditAccountId;
        }
        if t.currency.0 != 0 && t.currency != p.currency {
            return R::PendingTransferHasDifferentCurrency;
        }
        if t.code != 0 && t.code != p.code {
            return R::PendingTransferHasDifferentCode;
        }
        // An amount of 0 means the whole hold (TigerBeetle: 0 for a void,
        // `u128::MAX` for a post). More than the hold is `exceeds_pending_transfer_amount`
        // for both; a void of less is `pending_transfer_has_different_amount`.
        let amount = if t.amount.is_zero() {
            p.amount
        } else {
            t.amount
        };
        if amount > p.amount {
            return R::ExceedsPendingTransferAmount;
        }
        if f.void_pending_transfer() && amount < p.amount {
            return R::PendingTransferHasDifferentAmount;
        }
        match state.status {
            PendingStatus::Posted => return R::PendingTransferAlreadyPosted,
            PendingStatus::Voided => return R::PendingTransferAlreadyVoided,
            PendingStatus::Expired => return R::PendingTransferExpired,
            PendingStatus::Pending => {}
        }
        if state.expires_at <= now {
            return R::PendingTransferExpired;
        }
        let (debit, credit, currency, code) = (p.debit, p.credit, p.currency, p.code);
        let dr = self.account_index[&debit.get()];
        let cr = self.account_index[&credit.get()];
        if f.post_pending_transfer() {
            let d = self.states[dr as usize];
            let c = self.states[cr as usize];
            // The only movement a closed account accepts is the void of a hold.
            if d.flags().closed() {
                return R::DebitAccountAlreadyClosed;
            }
            if c.flags().closed() {
                return R::CreditAccountAlreadyClosed;
            }
            if d.debits_posted.checked_add(amount.fen()).is_none() {
                return R::OverflowsDebitsPosted;
            }
            if c.credits_posted.checked_add(amount.fen()).is_none() {
                return R::OverflowsCreditsPosted;
            }
        }
        let ts = self.next_ts(now);
        let transfer = Transfer {
            id: t.id,
            debit_account_id: debit,
            credit_account_id: credit,
            amount,
            pending_id: Some(pending_id),
            timeout_secs: 0,
            currency,
            code,
            flags: f,
            reference: t.reference.take(),
            memo: t.memo.take(),
            timestamp: instant(ts),
        };
        self.apply(transfer, dr, cr, in_chain);
        R::Ok
    }
}
