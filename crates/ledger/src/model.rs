//! Accounts, transfers, their flags, balances and per-event results.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use citycard_core::Money;
use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, AccountKind, Currency, Owner, Reference, TransferId};

/// The longest memo, in bytes.
pub const MAX_MEMO_LEN: usize = 256;

macro_rules! flags {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $flag:ident = $bit:expr, $is:ident;)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u16);

        impl $name {
            /// No flag set.
            pub const NONE: $name = $name(0);
            $($(#[$fmeta])* pub const $flag: $name = $name($bit);)*
            /// Every known bit.
            pub const KNOWN: u16 = 0 $(| $bit)*;

            /// True when every bit of `other` is set.
            pub const fn contains(self, other: $name) -> bool {
                self.0 & other.0 == other.0
            }

            /// The union.
            #[must_use]
            pub const fn with(self, other: $name) -> $name {
                $name(self.0 | other.0)
            }

            /// The bits.
            pub const fn bits(self) -> u16 {
                self.0
            }

            /// True when a bit outside the known flags is set.
            pub const fn has_unknown(self) -> bool {
                self.0 & !Self::KNOWN != 0
            }

            $(
                #[doc = concat!("True when `", stringify!($flag), "` is set.")]
                pub const fn $is(self) -> bool {
                    self.0 & $bit != 0
                }
            )*
        }

        impl std::ops::BitOr for $name {
            type Output = $name;
            fn bitor(self, rhs: $name) -> $name {
                self.with(rhs)
            }
        }
    };
}

flags!(
    /// Account flags (as in TigerBeetle).
    AccountFlags {
        /// The account is created together with the next one in the batch: all or none.
        LINKED = 1 << 0, is_linked;
        /// Debits (pending and posted) may never exceed posted credits: no overdraft.
        DEBITS_MUST_NOT_EXCEED_CREDITS = 1 << 1, debits_must_not_exceed_credits;
        /// Credits (pending and posted) may never exceed posted debits.
        CREDITS_MUST_NOT_EXCEED_DEBITS = 1 << 2, credits_must_not_exceed_debits;
        /// Keep a balance snapshot after every change, for balances as of an instant.
        HISTORY = 1 << 3, history;
        /// The account is closed (set by closing transfers, never at creation).
        CLOSED = 1 << 5, closed;
    }
);

flags!(
    /// Transfer flags (as in TigerBeetle).
    TransferFlags {
        /// The transfer succeeds or fails with the next one in the batch.
        LINKED = 1 << 0, is_linked;
        /// A hold (two-phase transfer): reserves the amount until posted, voided or expired.
        PENDING = 1 << 1, pending;
        /// Posts (captures) a pending transfer, fully or partially.
        POST_PENDING_TRANSFER = 1 << 2, post_pending_transfer;
        /// Voids (releases) a pending transfer.
        VOID_PENDING_TRANSFER = 1 << 3, void_pending_transfer;
        /// Moves at most the debit account's spendable credit balance
        /// (credits posted - debits posted - debits pending), whatever its flags.
        BALANCING_DEBIT = 1 << 4, balancing_debit;
        /// Moves at most the room under the credit account's upper limit, or,
        /// without a limit, its debit balance (debits posted - credits posted - credits pending).
        BALANCING_CREDIT = 1 << 5, balancing_credit;
        /// Closes the debit account (pending transfers only; voiding reopens).
        CLOSING_DEBIT = 1 << 6, closing_debit;
        /// Closes the credit account (pending transfers only; voiding reopens).
        CLOSING_CREDIT = 1 << 7, closing_credit;
    }
);

/// Which side an account's balance is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormalSide {
    /// Balance = credits - debits (wallets, revenue, funds: the default).
    Credit,
    /// Balance = debits - credits (accounts flagged `credits_must_not_exceed_debits`).
    Debit,
}

/// A request to create an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAccount {
    /// The id, unique forever.
    pub id: AccountId,
    /// What the account is for.
    pub kind: AccountKind,
    /// The currency.
    pub currency: Currency,
    /// Flags (`closed` may not be set at creation).
    pub flags: AccountFlags,
    /// The largest balance (read on the normal side) the account may hold, pending credits included.
    pub upper_limit: Option<Money>,
    /// Who owns it.
    pub owner: Option<Owner>,
    /// Free-form facts for the host.
    pub metadata: BTreeMap<String, String>,
}

impl NewAccount {
    /// A plain CNY account of a kind, with no flags, limit, owner or metadata.
    pub fn new(id: AccountId, kind: AccountKind) -> Self {
        Self {
            id,
            kind,
            currency: Currency::CNY,
            flags: AccountFlags::NONE,
            upper_limit: None,
            owner: None,
            metadata: BTreeMap::new(),
        }
    }

    /// Sets flags.
    #[must_use]
    pub fn with_flags(mut self, flags: AccountFlags) -> Self {
        self.flags = flags;
        self
    }

    /// Sets the upper limit.
    #[must_use]
    pub fn with_upper_limit(mut self, limit: Money) -> Self {
        self.upper_limit = Some(limit);
        self
    }

    /// Sets the owner.
    #[must_use]
    pub fn with_owner(mut self, owner: Owner) -> Self {
        self.owner = Some(owner);
        self
    }

    /// Adds one metadata entry.
    #[must_use]
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// Debits and credits of an account, pending and posted, in fen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Balances {
    /// Debits reserved by pending transfers.
    pub debits_pending: Money,
    /// Debits posted.
    pub debits_posted: Money,
    /// Credits reserved by pending transfers.
    pub credits_pending: Money,
    /// Credits posted.
    pub credits_posted: Money,
}

impl Balances {
    pub(crate) fn from_fen(raw: [i64; 4]) -> Self {
        Balances {
            debits_pending: Money::from_fen(raw[0]),
            debits_posted: Money::from_fen(raw[1]),
            credits_pending: Money::from_fen(raw[2]),
            credits_posted: Money::from_fen(raw[3]),
        }
    }

    /// The posted balance read on `side`.
    pub fn posted(&self, side: NormalSide) -> Money {
        let (d, c) = (self.debits_posted.fen(), self.credits_posted.fen());
        Money::from_fen(match side {
            NormalSide::Credit => c.saturating_sub(d),
            NormalSide::Debit => d.saturating_sub(c),
        })
    }

    /// The net pending amount read on `side` (incoming holds minus outgoing holds).
    pub fn pending(&self, side: NormalSide) -> Money {
        let (d, c) = (self.debits_pending.fen(), self.credits_pending.fen());
        Money::from_fen(match side {
            NormalSide::Credit => c.saturating_sub(d),
            NormalSide::Debit => d.saturating_sub(c),
        })
    }

    /// What can be spent now: the posted balance less outgoing holds.
    pub fn available(&self, side: NormalSide) -> Money {
        Money::from_fen(match side {
            NormalSide::Credit => self
                .credits_posted
                .fen()
                .saturating_sub(self.debits_posted.fen())
                .saturating_sub(self.debits_pending.fen()),
            NormalSide::Debit => self
                .debits_posted
                .fen()
                .saturating_sub(self.credits_posted.fen())
                .saturating_sub(self.credits_pending.fen()),
        })
    }
}

/// An account as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The id.
    pub id: AccountId,
    /// What the account is for.
    pub kind: AccountKind,
    /// The currency.
    pub currency: Currency,
    /// Flags, `closed` included.
    pub flags: AccountFlags,
    /// The upper balance limit, if any.
    pub upper_limit: Option<Money>,
    /// The owner, if any.
    pub owner: Option<Owner>,
    /// Free-form facts.
    pub metadata: BTreeMap<String, String>,
    /// Debits and credits.
    pub balances: Balances,
    /// When the account was created (unique, engine-assigned).
    pub created_at: DateTime<Utc>,
}

impl Account {
    /// The side the balance is read from.
    pub fn normal_side(&self) -> NormalSide {
        normal_side(self.flags)
    }

    /// True when the account is closed.
    pub fn is_closed(&self) -> bool {
        self.flags.closed()
    }

    /// The posted balance.
    pub fn posted(&self) -> Money {
        self.balances.posted(self.normal_side())
    }

    /// The net pending amount.
    pub fn pending(&self) -> Money {
        self.balances.pending(self.normal_side())
    }

    /// The available balance (posted less outgoing holds).
    pub fn available(&self) -> Money {
        self.balances.available(self.normal_side())
    }
}

pub(crate) fn normal_side(flags: AccountFlags) -> NormalSide {
    if flags.credits_must_not_exceed_debits() {
        NormalSide::Debit
    } else {
        NormalSide::Credit
    }
}

/// A request to create a transfer.
///
/// For post and void requests, zero fields inherit from the pending
/// transfer: debit/credit account ids of 0, a currency of 0, a code of 0, and
/// an amount of 0 (post the full amount; void always releases it all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTransfer {
    /// The id, unique forever: resubmitting it is an idempotent replay.
    pub id: TransferId,
    /// The account debited.
    pub debit_account_id: AccountId,
    /// The account credited.
    pub credit_account_id: AccountId,
    /// The amount (for balancing transfers, the most to move).
    pub amount: Money,
    /// The pending transfer a post or void refers to.
    pub pending_id: Option<TransferId>,
    /// Seconds after which a pending transfer expires (0: never).
    pub timeout_secs: u32,
    /// The currency.
    pub currency: Currency,
    /// The host's reason code (non-zero), e.g. fare, top-up, refund.
    pub code: u16,
    /// Flags.
    pub flags: TransferFlags,
    /// What the transfer is about (trip, bill, top-up order).
    pub reference: Option<Reference>,
    /// A short text shown on statements.
    pub memo: Option<String>,
}

impl NewTransfer {
    /// A single-phase CNY transfer.
    pub fn new(
        id: TransferId,
        debit_account_id: AccountId,
        credit_account_id: AccountId,
        amount: Money,
        code: u16,
    ) -> Self {
        Self {
            id,
            debit_account_id,
            credit_account_id,
            amount,
            pending_id: None,
            timeout_secs: 0,
            currency: Currency::CNY,
            code,
            flags: TransferFlags::NONE,
            reference: None,
            memo: None,
        }
    }

    /// A hold (pending transfer) that expires after `timeout_secs` (0: never).
    pub fn pending(
        id: TransferId,
        debit_account_id: AccountId,
        credit_account_id: AccountId,
        amount: Money,
        code: u16,
        timeout_secs: u32,
    ) -> Self {
        let mut t = Self::new(id, debit_account_id, credit_account_id, amount, code);
        t.flags = TransferFlags::PENDING;
        t.timeout_secs = timeout_secs;
        t
    }

    /// Posts a pending transfer: `amount` of `None` posts it in full.
    pub fn post(id: TransferId, pending_id: TransferId, amount: Option<Money>) -> Self {
        Self {
            id,
            debit_account_id: AccountId::ZERO,
            credit_account_id: AccountId::ZERO,
            amount: amount.unwrap_or(Money::ZERO),
            pending_id: Some(pending_id),
            timeout_secs: 0,
            currency: Currency(0),
            code: 0,
            flags: TransferFlags::POST_PENDING_TRANSFER,
            reference: None,
            memo: None,
        }
    }

    /// Voids a pending transfer.
    pub fn void(id: TransferId, pending_id: TransferId) -> Self {
        let mut t = Self::post(id, pending_id, None);
        t.flags = TransferFlags::VOID_PENDING_TRANSFER;
        t
    }

    /// Adds flags.
    #[must_use]
    pub fn with_flags(mut self, flags: TransferFlags) -> Self {
        self.flags = self.flags.with(flags);
        self
    }

    /// Sets the reference.
    #[must_use]
    pub fn with_reference(mut self, reference: Reference) -> Self {
        self.reference = Some(reference);
        self
    }

    /// Sets the memo.
    #[must_use]
    pub fn with_memo(mut self, memo: impl Into<String>) -> Self {
        self.memo = Some(memo.into());
        self
    }
}

/// A transfer as recorded: immutable, with the engine's timestamp and, for
/// posts, voids and balancing transfers, the resolved accounts and amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// The id.
    pub id: TransferId,
    /// The account debited.
    pub debit_account_id: AccountId,
    /// The account credited.
    pub credit_account_id: AccountId,
    /// The amount moved (posted, held, or released by a void).
    pub amount: Money,
    /// The pending transfer a post or void refers to.
    pub pending_id: Option<TransferId>,
    /// Seconds until a pending transfer expires (0: never).
    pub timeout_secs: u32,
    /// The currency.
    pub currency: Currency,
    /// The reason code.
    pub code: u16,
    /// Flags.
    pub flags: TransferFlags,
    /// What the transfer is about.
    pub reference: Option<Reference>,
    /// A short text shown on statements.
    pub memo: Option<String>,
    /// When the ledger recorded it: unique and strictly increasing, nanosecond precision.
    pub timestamp: DateTime<Utc>,
}

/// A pending transfer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingStatus {
    /// Still held.
    Pending,
    /// Posted (fully or partially).
    Posted,
    /// Voided.
    Voided,
    /// Expired: the hold was released when its timeout passed.
    Expired,
}

macro_rules! results {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $code:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// The stable numeric code (stored on disk).
            pub const fn code(self) -> u16 {
                match self { $($name::$variant => $code,)* }
            }

            /// The result for a stored code.
            pub const fn from_code(code: u16) -> Option<Self> {
                match code { $($code => Some($name::$variant),)* _ => None }
            }

            /// Every result, in order of precedence.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
        }
    };
}

results!(
    /// The result of creating one account, in order of precedence (the first
    /// that applies is returned), following TigerBeetle's.
    CreateAccountResult {
        /// Created.
        Ok = 0,
        /// Not created: another account in its linked chain failed.
        LinkedEventFailed = 1,
        /// Not created: the last account of the batch has `linked` set.
        LinkedEventChainOpen = 2,
        /// Not created: an unknown flag bit, or `closed`, is set.
        ReservedFlag = 3,
        /// Not created: the id is 0.
        IdMustNotBeZero = 4,
        /// Not created: the id is `u64::MAX`.
        IdMustNotBeIntMax = 5,
        /// An account with this id exists with different flags.
        ExistsWithDifferentFlags = 6,
        /// An account with this id exists with a different upper limit.
        ExistsWithDifferentUpperLimit = 7,
        /// An account with this id exists with a different owner.
        ExistsWithDifferentOwner = 8,
        /// An account with this id exists with different metadata.
        ExistsWithDifferentMetadata = 9,
        /// An account with this id exists with a different currency.
        ExistsWithDifferentCurrency = 10,
        /// An account with this id exists with a different kind.
        ExistsWithDifferentKind = 11,
        /// The same account exists already: an idempotent replay (success).
        Exists = 12,
        /// Not created: both balance constraints are set.
        FlagsAreMutuallyExclusive = 13,
        /// Not created: the upper limit is zero or negative.
        UpperLimitMustBePositive = 14,
        /// Not created: the currency is 0.
        CurrencyMustNotBeZero = 15,
        /// Not created: the kind is 0.
        KindMustNotBeZero = 16,
    }
);

impl CreateAccountResult {
    /// True for `ok` and `exists` (the account is there as requested).
    pub const fn is_success(self) -> bool {
        matches!(self, CreateAccountResult::Ok | CreateAccountResult::Exists)
    }
}

results!(
    /// The result of creating one transfer, in order of precedence (the first
    /// that applies is returned), following TigerBeetle's.
    CreateTransferResult {
        /// Created.
        Ok = 0,
        /// Not created: another transfer in its linked chain failed.
        LinkedEventFailed = 1,
        /// Not created: the last transfer of the batch has `linked` set.
        LinkedEventChainOpen = 2,
        /// Not created: an unknown flag bit is set.
        ReservedFlag = 3,
        /// Not created: the id is 0.
        IdMustNotBeZero = 4,
        /// Not created: the id is `u64::MAX`.
        IdMustNotBeIntMax = 5,
        /// A transfer with this id exists with different flags.
        ExistsWithDifferentFlags = 6,
        /// A transfer with this id exists with a different pending id.
        ExistsWithDifferentPendingId = 7,
        /// A transfer with this id exists with a different timeout.
        ExistsWithDifferentTimeout = 8,
        /// A transfer with this id exists with a different debit account.
        ExistsWithDifferentDebitAccountId = 9,
        /// A transfer with this id exists with a different credit account.
        ExistsWithDifferentCreditAccountId = 10,
        /// A transfer with this id exists with a different amount.
        ExistsWithDifferentAmount = 11,
        /// A transfer with this id exists with a different reference.
        ExistsWithDifferentReference = 12,
        /// A transfer with this id exists with a different memo.
        ExistsWithDifferentMemo = 13,
        /// A transfer with this id exists with a different currency.
        ExistsWithDifferentCurrency = 14,
        /// A transfer with this id exists with a different code.
        ExistsWithDifferentCode = 15,
        /// The same transfer exists already: an idempotent replay (success).
        Exists = 16,
        /// This id failed before for a state-dependent reason: retry with a new id.
        IdAlreadyFailed = 17,
        /// Not created: the flags cannot be combined.
        FlagsAreMutuallyExclusive = 18,
        /// Not created: the debit account id is 0.
        DebitAccountIdMustNotBeZero = 19,
        /// Not created: the debit account id is `u64::MAX`.
        DebitAccountIdMustNotBeIntMax = 20,
        /// Not created: the credit account id is 0.
        CreditAccountIdMustNotBeZero = 21,
        /// Not created: the credit account id is `u64::MAX`.
        CreditAccountIdMustNotBeIntMax = 22,
        /// Not created: debit and credit accounts are the same.
        AccountsMustBeDifferent = 23,
        /// Not created: only posts and voids carry a pending id.
        PendingIdMustBeZero = 24,
        /// Not created: a post or void needs a pending id.
        PendingIdMustNotBeZero = 25,
        /// Not created: the pending id is `u64::MAX`.
        PendingIdMustNotBeIntMax = 26,
        /// Not created: the pending id is the transfer's own id.
        PendingIdMustBeDifferent = 27,
        /// Not created: only pending transfers carry a timeout.
        TimeoutReservedForPendingTransfer = 28,
        /// Not created: closing transfers must be pending.
        ClosingTransferMustBePending = 29,
        /// Not created: the amount is negative.
        AmountMustNotBeNegative = 30,
        /// Not created: the amount is zero (allowed only for posts, voids and closing transfers).
        AmountMustNotBeZero = 31,
        /// Not created: the currency is 0.
        CurrencyMustNotBeZero = 32,
        /// Not created: the code is 0.
        CodeMustNotBeZero = 33,
        /// Not created: the memo is longer than 256 bytes.
        MemoTooLong = 34,
        /// Not created: the debit account does not exist.
        DebitAccountNotFound = 35,
        /// Not created: the credit account does not exist.
        CreditAccountNotFound = 36,
        /// Not created: the two accounts have different currencies.
        AccountsMustHaveTheSameCurrency = 37,
        /// Not created: the transfer's currency differs from the accounts'.
        TransferMustHaveTheSameCurrencyAsAccounts = 38,
        /// Not created: the pending transfer does not exist.
        PendingTransferNotFound = 39,
        /// Not created: the referenced transfer is not a pending transfer.
        PendingTransferNotPending = 40,
        /// Not created: the debit account differs from the pending transfer's.
        PendingTransferHasDifferentDebitAccountId = 41,
        /// Not created: the credit account differs from the pending transfer's.
        PendingTransferHasDifferentCreditAccountId = 42,
        /// Not created: the currency differs from the pending transfer's.
        PendingTransferHasDifferentCurrency = 43,
        /// Not created: the code differs from the pending transfer's.
        PendingTransferHasDifferentCode = 44,
        /// Not created: the post amount exceeds the pending amount.
        ExceedsPendingTransferAmount = 45,
        /// Not created: a void names an amount other than the pending amount.
        PendingTransferHasDifferentAmount = 46,
        /// Not created: the pending transfer was already posted.
        PendingTransferAlreadyPosted = 47,
        /// Not created: the pending transfer was already voided.
        PendingTransferAlreadyVoided = 48,
        /// Not created: the pending transfer expired.
        PendingTransferExpired = 49,
        /// Not created: the debit account is closed.
        DebitAccountAlreadyClosed = 50,
        /// Not created: the credit account is closed.
        CreditAccountAlreadyClosed = 51,
        /// Not created: the debit account's pending debits would overflow.
        OverflowsDebitsPending = 52,
        /// Not created: the credit account's pending credits would overflow.
        OverflowsCreditsPending = 53,
        /// Not created: the debit account's posted debits would overflow.
        OverflowsDebitsPosted = 54,
        /// Not created: the credit account's posted credits would overflow.
        OverflowsCreditsPosted = 55,
        /// Not created: the debit account's total debits would overflow.
        OverflowsDebits = 56,
        /// Not created: the credit account's total credits would overflow.
        OverflowsCredits = 57,
        /// Not created: the expiry instant would overflow.
        OverflowsTimeout = 58,
        /// Not created: the debit account's debits would exceed its credits (insufficient funds).
        ExceedsCredits = 59,
        /// Not created: the credit account's credits would exceed its debits.
        ExceedsDebits = 60,
        /// Not created: the account's balance would exceed its upper limit (wallet cap).
        ExceedsUpperLimit = 61,
    }
);

impl CreateTransferResult {
    /// True for `ok` and `exists` (the transfer is recorded as requested).
    pub const fn is_success(self) -> bool {
        matches!(
            self,
            CreateTransferResult::Ok | CreateTransferResult::Exists
        )
    }

    /// True for the failures that burn the id ([`CreateTransferResult::IdAlreadyFailed`]
    /// on any retry with it): TigerBeetle's transient set — an account or the
    /// hold missing, insufficient funds (`exceeds_credits`/`exceeds_debits`), a
    /// closed account — and our `exceeds_upper_limit` (a wallet cap, like
    /// insufficient funds). Every other refusal keeps the id free, so a
    /// corrected retry under the same operation key can still succeed.
    pub const fn is_transient(self) -> bool {
        matches!(
            self,
            CreateTransferResult::DebitAccountNotFound
                | CreateTransferResult::CreditAccountNotFound
                | CreateTransferResult::PendingTransferNotFound
                | CreateTransferResult::ExceedsCredits
                | CreateTransferResult::ExceedsDebits
                | CreateTransferResult::DebitAccountAlreadyClosed
                | CreateTransferResult::CreditAccountAlreadyClosed
                | CreateTransferResult::ExceedsUpperLimit
        )
    }
}

/// A transfer the ledger refused for a state-dependent reason: its id stays failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FailedTransfer {
    /// The id.
    pub id: TransferId,
    /// Why it failed.
    pub result: CreateTransferResult,
}

/// A pending transfer that expired, releasing its hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Expiry {
    /// The pending transfer.
    pub transfer_id: TransferId,
    /// When the ledger released it (unique, ordered with transfers).
    pub timestamp: DateTime<Utc>,
}
