//! Our model onto TigerBeetle's and back: ids `u64 → u128`, currency → `ledger`,
//! kind → account `code`, flags bit for bit (both follow TigerBeetle's layout),
//! references, memos, owners and metadata as 128/64-bit digests in `user_data_*`.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use citycard_core::Money;
use citycard_ledger::{
    AccountFlags, AccountId, Balances, CreateAccountResult as A, CreateTransferResult as R,
    Currency, NewAccount, NewTransfer, TransferFlags, TransferId,
};
use sha2::{Digest, Sha256};
use tigerbeetle_unofficial as tb;

/// A 128-bit digest of a text (the first 16 bytes of its SHA-256), never 0.
pub fn digest_128(domain: &str, text: &str) -> u128 {
    let mut h = Sha256::new();
    h.update(domain.as_bytes());
    h.update([0]);
    h.update(text.as_bytes());
    let out = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&out[..16]);
    u128::from_be_bytes(b).max(1)
}

/// A 64-bit digest of a text, never 0.
pub fn digest_64(domain: &str, text: &str) -> u64 {
    (digest_128(domain, text) >> 64) as u64 | 1
}

/// The `user_data_128` of a transfer with this reference.
pub fn reference_key(reference: &str) -> u128 {
    digest_128("citycard.reference", reference)
}

/// The digests an account's owner and metadata have on the cluster
/// (`user_data_128`, `user_data_64`; 0 when absent).
pub fn account_keys(a: &NewAccount) -> (u128, u64) {
    let owner = a
        .owner
        .as_ref()
        .map_or(0, |o| digest_128("citycard.owner", &o.to_text()));
    let metadata = if a.metadata.is_empty() {
        0
    } else {
        let text = serde_json::to_string(&a.metadata).unwrap_or_default();
        digest_64("citycard.metadata", &text)
    };
    (owner, metadata)
}

/// The digests a transfer's reference and memo have on the cluster
/// (`user_data_128`, `user_data_64`; 0 when absent).
pub fn transfer_keys(t: &NewTransfer) -> (u128, u64) {
    (
        t.reference
            .as_ref()
            .map_or(0, |r| reference_key(r.as_str())),
        t.memo.as_ref().map_or(0, |m| digest_64("citycard.memo", m)),
    )
}

/// An account for the cluster. `Err` holds the result when our rules refuse it
/// before TigerBeetle sees it (checks TigerBeetle does not have).
pub fn account_to_tb(a: &NewAccount) -> Result<tb::Account, A> {
    if a.flags.has_unknown() || a.flags.closed() {
        return Err(A::ReservedFlag);
    }
    let limit = match a.upper_limit {
        None => 0,
        Some(l) if !l.is_positive() => return Err(A::UpperLimitMustBePositive),
        Some(l) => u32::try_from(l.fen()).map_err(|_| A::UpperLimitMustBePositive)?,
    };
    let (owner, metadata) = account_keys(a);
    Ok(
        tb::Account::new(u128::from(a.id.get()), u32::from(a.currency.0), a.kind.0)
            .with_flags(tb::account::Flags::from_bits_retain(a.flags.bits()))
            .with_user_data_128(owner)
            .with_user_data_64(metadata)
            .with_user_data_32(limit),
    )
}

/// A transfer for the cluster, or the result our rules give before it is sent.
pub fn transfer_to_tb(t: &NewTransfer) -> Result<tb::Transfer, R> {
    let f = t.flags;
    let settles = f.post_pending_transfer() || f.void_pending_transfer();
    let closing = f.closing_debit() || f.closing_credit();
    if t.amount.is_negative() {
        return Err(R::AmountMustNotBeNegative);
    }
    if t.amount.is_zero() && !settles && !closing && !f.has_unknown() && !t.id.is_zero() {
        return Err(R::AmountMustNotBeZero);
    }
    if t.memo
        .as_ref()
        .is_some_and(|m| m.len() > citycard_ledger::MAX_MEMO_LEN)
    {
        return Err(R::MemoTooLong);
    }
    // Ours: a post of 0 posts the whole hold; TigerBeetle's "whole hold" is u128::MAX.
    let amount = if f.post_pending_transfer() && t.amount.is_zero() {
        u128::MAX
    } else {
        t.amount.fen() as u128
    };
    let (reference, memo) = transfer_keys(t);
    Ok(tb::Transfer::new(u128::from(t.id.get()))
        .with_debit_account_id(u128::from(t.debit_account_id.get()))
        .with_credit_account_id(u128::from(t.credit_account_id.get()))
        .with_amount(amount)
        .with_pending_id(t.pending_id.map_or(0, |p| u128::from(p.get())))
        .with_timeout(t.timeout_secs)
        .with_ledger(u32::from(t.currency.0))
        .with_code(t.code)
        .with_flags(tb::transfer::Flags::from_bits_retain(t.flags.bits()))
        .with_user_data_128(reference)
        .with_user_data_64(memo))
}

/// TigerBeetle's account result code as ours.
pub fn account_result(code: u32) -> Option<A> {
    Some(match code {
        0 => A::Ok,
        1 => A::LinkedEventFailed,
        2 => A::LinkedEventChainOpen,
        5 => A::ReservedFlag,
        6 => A::IdMustNotBeZero,
        7 => A::IdMustNotBeIntMax,
        15 => A::ExistsWithDifferentFlags,
        16 => A::ExistsWithDifferentOwner,
        17 => A::ExistsWithDifferentMetadata,
        18 => A::ExistsWithDifferentUpperLimit,
        19 => A::ExistsWithDifferentCurrency,
        20 => A::ExistsWithDifferentKind,
        21 => A::Exists,
        8 => A::FlagsAreMutuallyExclusive,
        13 => A::CurrencyMustNotBeZero,
        14 => A::KindMustNotBeZero,
        _ => return None,
    })
}

/// TigerBeetle's `exists_with_different_user_data_32` (ours never differ
/// but for the cap checks' link marker).
pub const EXISTS_WITH_DIFFERENT_USER_DATA_32: u32 = 43;

/// Whether a result is `exists` or one of `exists_with_different_*`.
pub fn is_exists(r: R) -> bool {
    matches!(
        r,
        R::Exists
            | R::ExistsWithDifferentFlags
            | R::ExistsWithDifferentPendingId
            | R::ExistsWithDifferentTimeout
            | R::ExistsWithDifferentDebitAccountId
            | R::ExistsWithDifferentCreditAccountId
            | R::ExistsWithDifferentAmount
            | R::ExistsWithDifferentReference
            | R::ExistsWithDifferentMemo
            | R::ExistsWithDifferentCurrency
            | R::ExistsWithDifferentCode
    )
}

/// TigerBeetle's `linked_event_failed`.
pub const LINKED_EVENT_FAILED: u32 = 1;

/// The result of a capped transfer whose cap check was refused with `code`:
/// the control account's refusal (`exceeds_debits` or `exceeds_credits`) is
/// the cap; a check id already failed is the transfer's own refused before.
pub fn check_result(code: u32) -> Option<R> {
    match code {
        54 | 55 => Some(R::ExceedsUpperLimit),
        _ => transfer_result(code),
    }
}

/// TigerBeetle's transfer result code as ours.
pub fn transfer_result(code: u32) -> Option<R> {
    Some(match code {
        0 => R::Ok,
        1 => R::LinkedEventFailed,
        2 => R::LinkedEventChainOpen,
        4 => R::ReservedFlag,
        5 => R::IdMustNotBeZero,
        6 => R::IdMustNotBeIntMax,
        36 => R::ExistsWithDifferentFlags,
        40 => R::ExistsWithDifferentPendingId,
        44 => R::ExistsWithDifferentTimeout,
        37 => R::ExistsWithDifferentDebitAccountId,
        38 => R::ExistsWithDifferentCreditAccountId,
        39 => R::ExistsWithDifferentAmount,
        41 => R::ExistsWithDifferentReference,
        42 => R::ExistsWithDifferentMemo,
        67 => R::ExistsWithDifferentCurrency,
        45 => R::ExistsWithDifferentCode,
        46 => R::Exists,
        68 => R::IdAlreadyFailed,
        7 => R::FlagsAreMutuallyExclusive,
        8 => R::DebitAccountIdMustNotBeZero,
        9 => R::DebitAccountIdMustNotBeIntMax,
        10 => R::CreditAccountIdMustNotBeZero,
        11 => R::CreditAccountIdMustNotBeIntMax,
        12 => R::AccountsMustBeDifferent,
        13 => R::PendingIdMustBeZero,
        14 => R::PendingIdMustNotBeZero,
        15 => R::PendingIdMustNotBeIntMax,
        16 => R::PendingIdMustBeDifferent,
        17 => R::TimeoutReservedForPendingTransfer,
        64 => R::ClosingTransferMustBePending,
        19 => R::CurrencyMustNotBeZero,
        20 => R::CodeMustNotBeZero,
        21 => R::DebitAccountNotFound,
        22 => R::CreditAccountNotFound,
        23 => R::AccountsMustHaveTheSameCurrency,
        24 => R::TransferMustHaveTheSameCurrencyAsAccounts,
        25 => R::PendingTransferNotFound,
        26 => R::PendingTransferNotPending,
        27 => R::PendingTransferHasDifferentDebitAccountId,
        28 => R::PendingTransferHasDifferentCreditAccountId,
        29 => R::PendingTransferHasDifferentCurrency,
        30 => R::PendingTransferHasDifferentCode,
        31 => R::ExceedsPendingTransferAmount,
        32 => R::PendingTransferHasDifferentAmount,
        33 => R::PendingTransferAlreadyPosted,
        34 => R::PendingTransferAlreadyVoided,
        35 => R::PendingTransferExpired,
        65 => R::DebitAccountAlreadyClosed,
        66 => R::CreditAccountAlreadyClosed,
        47 => R::OverflowsDebitsPending,
        48 => R::OverflowsCreditsPending,
        49 => R::OverflowsDebitsPosted,
        50 => R::OverflowsCreditsPosted,
        51 => R::OverflowsDebits,
        52 => R::OverflowsCredits,
        53 => R::OverflowsTimeout,
        54 => R::ExceedsCredits,
        55 => R::ExceedsDebits,
        _ => return None,
    })
}

/// A cluster amount as fen; `None` beyond `i64`.
pub fn fen(amount: u128) -> Option<Money> {
    i64::try_from(amount).ok().map(Money::from_fen)
}

/// Balances from the cluster's four sums.
pub fn balances(dp: u128, dpo: u128, cp: u128, cpo: u128) -> Option<Balances> {
    Some(Balances {
        debits_pending: fen(dp)?,
        debits_posted: fen(dpo)?,
        credits_pending: fen(cp)?,
        credits_posted: fen(cpo)?,
    })
}

/// A cluster timestamp as an instant.
pub fn instant(at: SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(at)
}

/// An instant as a cluster timestamp (0 before the epoch).
pub fn system_time(at: DateTime<Utc>) -> SystemTime {
    let nanos = at.timestamp_nanos_opt().unwrap_or(0).max(0) as u64;
    UNIX_EPOCH + std::time::Duration::from_nanos(nanos)
}

/// A cluster id back as ours; `None` beyond `u64`.
pub fn account_id(id: u128) -> Option<AccountId> {
    u64::try_from(id).ok().map(AccountId::new)
}

/// A cluster transfer id back as ours.
pub fn transfer_id(id: u128) -> Option<TransferId> {
    u64::try_from(id).ok().map(TransferId::new)
}

/// A cluster ledger back as our currency.
pub fn currency(ledger: u32) -> Currency {
    Currency(u16::try_from(ledger).unwrap_or(0))
}

/// Flags back as ours.
pub fn account_flags(bits: u16) -> AccountFlags {
    AccountFlags(bits)
}

/// Transfer flags back as ours.
pub fn transfer_flags(bits: u16) -> TransferFlags {
    TransferFlags(bits)
}
