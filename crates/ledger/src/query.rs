//! Statements and reconciliation against an external statement.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use citycard_core::Money;
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::ids::{AccountId, Reference, TransferId};
use crate::model::{NormalSide, Transfer, normal_side};

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

pub(crate) fn statement(
    engine: &Engine,
    account_id: AccountId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Option<Statement> {
    let account = engine.account(account_id)?;
    let side = normal_side(account.flags);
    let mut balance: i64 = 0;
    let mut opening = None;
    let mut entries = Vec::new();
    for t in engine.account_transfers(account_id) {
        if t.timestamp >= to {
            break;
        }
        let Some(effect) = posted_effect(t, account_id, side) else {
            continue;
        };
        if t.timestamp >= from && opening.is_none() {
            opening = Some(balance);
        }
        balance = balance.saturating_add(effect);
        if t.timestamp >= from {
            entries.push(StatementEntry {
                transfer_id: t.id,
                timestamp: t.timestamp,
                counterparty: if t.credit_account_id == account_id {
                    t.debit_account_id
                } else {
                    t.credit_account_id
                },
                amount: Money::from_fen(effect),
                balance_after: Money::from_fen(balance),
                code: t.code,
                memo: t.memo.clone(),
                reference: t.reference.clone(),
            });
        }
    }
    Some(Statement {
        account_id,
        from,
        to,
        opening_balance: Money::from_fen(opening.unwrap_or(balance)),
        entries,
        closing_balance: Money::from_fen(balance),
    })
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
