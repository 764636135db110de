//! Medical payments with faults: bills are booked, quoted, settled and
//! reversed through billing, which pays through the payments port
//! ([`crate::wrap::SimPayments`]) that fails (refused: nothing moved),
//! times out, or pays and loses the answer. A bill or reversal whose
//! outcome the caller cannot know is retried with its key (`Resume` steps,
//! and every one at the end once faults stop); until then its cardholder's
//! money is not held to the model.
//!
//! Checked at every sweep, from the stored ledger and the settlement
//! records: each batch of medical transfers in the ledger is one batch
//! billing asked for, whole and once (a bill settled at most once); each
//! acknowledged bill's split adds up (pooled fund + personal accounts +
//! self-pay = the total, and its transfers move the total); a completed
//! bill's transfers are in the ledger, a reversed bill's reversal too.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use citycard::core::{Money, Principal};
use citycard::glue::money::codes;
use citycard::healthcare::SettlementStatus;
use citycard::ledger::{Reference, Transfer};

use crate::check::Violation;
use crate::world::{Action, World};

impl World {
    /// Cardholders with a bill or reversal whose outcome is not known yet.
    pub fn unsure(&self) -> BTreeSet<usize> {
        self.uncertain
            .iter()
            .filter_map(|a| match a {
                Action::Bill { who, .. } | Action::Reverse { who, .. } => Some(*who),
                _ => None,
            })
            .collect()
    }
}

fn reference(key: &str) -> Result<String, Violation> {
    Reference::bill(key)
        .map(|r| r.to_string())
        .map_err(|e| format!("a bill key makes no reference: {e}"))
}

/// The medical transfers of the stored ledger against the bills.
///
/// `caught_up`: the model knows every bill the store holds (a restarted
/// process learns the dead one's bills as its resumed run replays them, so
/// it asks for every transfer to belong to a known bill only at its end).
pub async fn bills(
    world: &World,
    transfers: &[Transfer],
    caught_up: bool,
) -> Result<(), Violation> {
    let mut stored: BTreeMap<String, (i64, usize)> = BTreeMap::new();
    for t in transfers.iter().filter(|t| t.code == codes::MEDICAL) {
        let r = t
            .reference
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_default();
        let e = stored.entry(r).or_default();
        e.0 += t.amount.fen();
        e.1 += 1;
    }
    let asked: HashMap<String, (i64, usize)> = world
        .payments
        .asked()
        .into_iter()
        .map(|(r, fen, n)| (r, (fen, n)))
        .collect();
    let mut known: BTreeSet<String> = asked.keys().cloned().collect();
    for (id, (who, _, reversed)) in &world.bills {
        let id = id.parse().map_err(|_| format!("settlement id {id}"))?;
        let record = world
            .city
            .healthcare()
            .billing()
            .settlement(&Principal::System, &id)
            .await
            .map_err(|e| format!("acknowledged bill {id} cannot be read: {e}"))?;
        let b = &record.breakdown;
        let parts = b.fund_paid.fen() + b.account_paid().fen() + b.cash_paid.fen();
        if parts != b.total.fen() {
            return Err(format!(
                "bill {id} of cardholder {who}: the pooled fund {} + personal accounts {} + self-pay {} is not the total {}",
                b.fund_paid,
                b.account_paid(),
                b.cash_paid,
                b.total
            ));
        }
        let moved: i64 = record.transfers.iter().map(|t| t.amount.fen()).sum();
        if moved != b.total.fen() {
            return Err(format!(
                "bill {id}'s transfers move {} but its total is {}",
                Money::from_fen(moved),
                b.total
            ));
        }
        let paid = reference(record.key.as_str())?;
        known.insert(paid.clone());
        let want = (
            moved,
            record
                .transfers
                .iter()
                .filter(|t| t.amount.fen() > 0)
                .count(),
        );
        if matches!(
            record.status,
            SettlementStatus::Completed | SettlementStatus::Reversing | SettlementStatus::Reversed
        ) && moved > 0
            && stored.get(&paid) != Some(&want)
        {
            return Err(format!(
                "bill {id} is {:?} but the ledger holds {:?} under its reference, not {want:?}",
                record.status,
                stored.get(&paid)
            ));
        }
        if let Some(rk) = &record.reversal_key {
            known.insert(reference(rk.as_str())?);
        }
        if *reversed {
            if record.status != SettlementStatus::Reversed {
                return Err(format!(
                    "bill {id}'s reversal was acknowledged but it is {:?}",
                    record.status
                ));
            }
            let back = match &record.reversal_key {
                Some(rk) => stored.get(&reference(rk.as_str())?).map(|s| s.0),
                None => None,
            };
            if moved > 0 && back != Some(moved) {
                return Err(format!(
                    "bill {id} was reversed but the ledger moved back {back:?} fen of {moved}"
                ));
            }
        }
    }
    for (r, (fen, n)) in &stored {
        if caught_up && !known.contains(r) {
            return Err(format!(
                "the ledger holds {n} medical transfers ({fen} fen) under {r}, which no bill asked for"
            ));
        }
        if let Some(&(want_fen, want_n)) = asked.get(r)
            && (want_fen, want_n) != (*fen, *n)
            && want_n > 0
        {
            return Err(format!(
                "the ledger holds {n} medical transfers ({fen} fen) under {r}; the bill asked for {want_n} ({want_fen} fen) once"
            ));
        }
    }
    Ok(())
}
