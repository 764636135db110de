//! Statements and reconciliation against an external statement.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use citycard_core::Money;
use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, Reference, TransferId};
use crate::model::{Account, Balances, NormalSide, Transfer, normal_side};

/// One line of a statement: a posted movement of the account's balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementEntry {
    /// The transfer (a single-phase transfer or the post of a hold).
    pub transfer_id: TransferId,
    /// When it was recorded.
    pub timestamp: DateTime<Utc>,
    /// The other account.
    pub counterparty: AccountId,
    /// The change to the balance (positive: in, negative: out), read on the account's normal side.
    pub amount: Money,
    /// The posted balance after this entry.
    pub balance_after: Money,
    /// The transfer's reason code.
    pub code: u16,
    /// The memo.
    pub memo: Option<String>,
    /// The reference (trip, bill, top-up order).
    pub reference: Option<Reference>,
}

/// An account's posted movements over `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// The account.
    pub account_id: AccountId,
    /// Start of the range (inclusive).
    pub from: DateTime<Utc>,
    /// End of the range (exclusive).
    pub to: DateTime<Utc>,
    /// The posted balance at `from`.
    pub opening_balance: Money,
    /// Every posted movement in the range, oldest first.
    pub entries: Vec<StatementEntry>,
    /// The posted balance at `to`.
    pub closing_balance: Money,
}

/// A page of a statement (see [`Ledger::statement_page`](crate::Ledger::statement_page)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementPage {
    /// The page's entries, opening balance (before its first entry) and closing balance.
    pub statement: Statement,
    /// The `from` of the next page; `None` when the range is exhausted.
    pub next: Option<DateTime<Utc>>,
}

/// The signed effect of a transfer on `account`'s posted balance, or `None`
/// when it moves no posted money (a hold, a void).
pub(crate) fn posted_effect(t: &Transfer, account: AccountId, side: NormalSide) -> Option<i64> {
    if t.flags.pending() || t.flags.void_pending_transfer() {
        return None;
    }
    let credit = if t.credit_account_id == account {
        t.amount.fen()
    } else {
        -t.amount.fen()
    };
    Some(match side {
        NormalSide::Credit => credit,
        NormalSide::Debit => -credit,
    })
}

/// Builds a statement from an account's transfers fed oldest first (every
/// transfer before `to`; earlier ones only move the opening balance).
pub(crate) struct StatementBuilder {
    account_id: AccountId,
    side: NormalSide,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    balance: i64,
    opening: Option<i64>,
    entries: Vec<StatementEntry>,
}

impl StatementBuilder {
    pub(crate) fn new(account: &Account, from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        Self {
            account_id: account.id,
            side: normal_side(account.flags),
            from,
            to,
            balance: 0,
            opening: None,
            entries: Vec::new(),
        }
    }

    /// Feeds the next transfer (oldest first); false once past the range.
    pub(crate) fn push(&mut self, t: &Transfer) -> bool {
        if t.timestamp >= self.to {
            return false;
        }
        let Some(effect) = posted_effect(t, self.account_id, self.side) else {
            return true;
        };
        if t.timestamp >= self.from && self.opening.is_none() {
            self.opening = Some(self.balance);
        }
        self.balance = self.balance.saturating_add(effect);
        if t.timestamp >= self.from {
            self.entries.push(StatementEntry {
                transfer_id: t.id,
                timestamp: t.timestamp,
                counterparty: if t.credit_account_id == self.account_id {
                    t.debit_account_id
                } else {
                    t.credit_account_id
                },
                amount: Money::from_fen(effect),
                balance_after: Money::from_fen(self.balance),
                code: t.code,
                memo: t.memo.clone(),
                reference: t.reference.clone(),
            });
        }
        true
    }

    /// How many entries the statement has so far.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn finish(self) -> Statement {
        Statement {
            account_id: self.account_id,
            from: self.from,
            to: self.to,
            opening_balance: Money::from_fen(self.opening.unwrap_or(self.balance)),
            entries: self.entries,
            closing_balance: Money::from_fen(self.balance),
        }
    }
}

/// An account's balances as of an instant, from its transfers up to that
/// instant (any order) and the expiries of its holds.
pub(crate) struct BalanceWalk {
    account: AccountId,
    raw: [i64; 4],
    /// Holds seen and not yet released: id → amount held.
    holds: HashMap<u64, (i64, AccountId, AccountId)>,
}

impl BalanceWalk {
    pub(crate) fn new(account: AccountId) -> Self {
        Self {
            account,
            raw: [0; 4],
            holds: HashMap::new(),
        }
    }

    fn add(&mut self, t_debit: AccountId, t_credit: AccountId, pending: bool, amount: i64) {
        let (d, c) = if pending { (0, 2) } else { (1, 3) };
        if t_debit == self.account {
            self.raw[d] = self.raw[d].saturating_add(amount);
        }
        if t_credit == self.account {
            self.raw[c] = self.raw[c].saturating_add(amount);
        }
    }

    /// Feeds a transfer touching the account.
    pub(crate) fn push(&mut self, t: &Transfer) {
        let amount = t.amount.fen();
        let (debit, credit) = (t.debit_account_id, t.credit_account_id);
        let f = t.flags;
        if f.pending() {
            self.add(debit, credit, true, amount);
            self.holds.insert(t.id.get(), (amount, debit, credit));
        } else if f.post_pending_transfer() || f.void_pending_transfer() {
            if let Some((held, d, c)) = t.pending_id.and_then(|p| self.holds.remove(&p.get())) {
                self.add(d, c, true, -held);
            }
            if f.post_pending_transfer() {
                self.add(debit, credit, false, amount);
            }
        } else {
            self.add(debit, credit, false, amount);
        }
    }

    /// Holds seen and not released by a post or void.
    pub(crate) fn open_holds(&self) -> Vec<TransferId> {
        self.holds.keys().map(|&id| TransferId::new(id)).collect()
    }

    /// Releases a hold that expired (no-op for a hold not seen).
    pub(crate) fn expire(&mut self, id: TransferId) {
        if let Some((held, d, c)) = self.holds.remove(&id.get()) {
            self.add(d, c, true, -held);
        }
    }

    pub(crate) fn balances(&self) -> Balances {
        Balances::from_fen(self.raw)
    }
}

/// One line of a counterparty's statement (a platform's record, a bank's top-up file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalEntry {
    /// The shared reference (top-up order, trip, bill).
    pub reference: Reference,
    /// The change to the account's balance as the counterparty sees it (positive: in).
    pub amount: Money,
    /// When the counterparty recorded it.
    pub at: DateTime<Utc>,
}

/// A reference present on both sides with equal totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matched {
    /// The reference.
    pub reference: Reference,
    /// The amount on both sides.
    pub amount: Money,
    /// The ledger's transfers with this reference.
    pub transfer_ids: Vec<TransferId>,
}

/// A reference present on both sides with different totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmountMismatch {
    /// The reference.
    pub reference: Reference,
    /// The ledger's total for it.
    pub ledger: Money,
    /// The counterparty's total for it.
    pub external: Money,
    /// The ledger's transfers with this reference.
    pub transfer_ids: Vec<TransferId>,
}

/// The differences between the ledger and an external statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconciliationReport {
    /// The account.
    pub account_id: AccountId,
    /// References on both sides with equal amounts.
    pub matched: Vec<Matched>,
    /// Ledger entries the counterparty does not have (including entries with no reference).
    pub missing_externally: Vec<StatementEntry>,
    /// Counterparty entries the ledger does not have.
    pub missing_in_ledger: Vec<ExternalEntry>,
    /// References whose amounts differ.
    pub amount_mismatches: Vec<AmountMismatch>,
}

impl ReconciliationReport {
    /// True when both sides agree entirely.
    pub fn is_clean(&self) -> bool {
        self.missing_externally.is_empty()
            && self.missing_in_ledger.is_empty()
            && self.amount_mismatches.is_empty()
    }
}

/// Compares a statement's entries with external entries, reference by
/// reference (amounts summed per reference on each side).
pub fn reconcile(statement: &Statement, external: &[ExternalEntry]) -> ReconciliationReport {
    let mut order: Vec<&Reference> = Vec::new();
    let mut ledger: HashMap<&Reference, (i64, Vec<usize>)> = HashMap::new();
    let mut missing_externally = Vec::new();
    for (i, e) in statement.entries.iter().enumerate() {
        match &e.reference {
            Some(r) => {
                let slot = ledger.entry(r).or_insert_with(|| {
                    order.push(r);
                    (0, Vec::new())
                });
                slot.0 = slot.0.saturating_add(e.amount.fen());
                slot.1.push(i);
            }
            None => missing_externally.push(e.clone()),
        }
    }
    let mut theirs: HashMap<&Reference, i64> = HashMap::new();
    let mut missing_in_ledger = Vec::new();
    for x in external {
        if ledger.contains_key(&x.reference) {
            let v = theirs.entry(&x.reference).or_insert(0);
            *v = v.saturating_add(x.amount.fen());
        } else {
            missing_in_ledger.push(x.clone());
        }
    }
    let mut matched = Vec::new();
    let mut amount_mismatches = Vec::new();
    for r in order {
        let Some((ours, lines)) = ledger.get(r) else {
            continue;
        };
        let ids = || {
            lines
                .iter()
                .filter_map(|&i| statement.entries.get(i).map(|e| e.transfer_id))
                .collect()
        };
        match theirs.get(r) {
            None => missing_externally.extend(
                lines
                    .iter()
                    .filter_map(|&i| statement.entries.get(i).cloned()),
            ),
            Some(t) if t == ours => matched.push(Matched {
                reference: r.clone(),
                amount: Money::from_fen(*ours),
                transfer_ids: ids(),
            }),
            Some(t) => amount_mismatches.push(AmountMismatch {
                reference: r.clone(),
                ledger: Money::from_fen(*ours),
                external: Money::from_fen(*t),
                transfer_ids: ids(),
            }),
        }
    }
    missing_externally.sort_by_key(|e| e.timestamp);
    ReconciliationReport {
        account_id: statement.account_id,
        matched,
        missing_externally,
        missing_in_ledger,
        amount_mismatches,
    }
}
