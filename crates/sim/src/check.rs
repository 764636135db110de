//! The invariants, read through the facade's public reads and the stores,
//! never from what an operation answered.
//!
//! After every step: money is conserved in the ledger and every wallet
//! is within its cap; each cardholder's wallets hold what the acknowledged
//! operations imply; every movement acknowledged in the step is in the
//! ledger; every change acknowledged in the step left its audit record;
//! at most one live binding per card and account (for the cardholders the
//! step touched); no clinic slot the step touched is overbooked; no line
//! of output carries personal data. A full sweep (after each settlement
//! and at the end) adds the stored ledger (every account's balances equal
//! its transfers, every acknowledged movement exactly once) and every
//! settled trip charged exactly once, and checks every cardholder and slot.

// Each arm pairs an answer with the read that checks it.
#![allow(clippy::collapsible_match)]

use std::collections::{BTreeMap, HashMap};

use citycard::binding::BindingState;
use citycard::core::{AuditOutcome, AuditQuery, PersonId, Principal};
use citycard::glue::money::codes;
use citycard::healthcare::AppointmentStatus;
use citycard::ledger::{AccountKind, Owner, TransferFlags, TransferId};
use citycard::transit::{CardRef, TripPayment};

use crate::world::{Action, Outcome, PLATFORMS, World};

/// Where the checker has read up to.
#[derive(Debug, Default)]
pub struct Cursor {
    /// The last audit sequence read.
    pub audit: Option<u64>,
}

/// One failed invariant.
pub type Violation = String;

/// Looks for personal data in `text`: the city's names (`市民…号`), ID
/// numbers (18 characters) and card numbers (16 digits), in one pass over
/// the text (every window of every digit run, every `市民…号`).
pub fn leaks(secrets: &std::collections::HashSet<String>, text: &str) -> Option<String> {
    let found = |s: &str| secrets.contains(s);
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == 'X') {
                i += 1;
            }
            let run: String = chars[start..i].iter().collect();
            for len in [16, 18] {
                if run.len() >= len && (0..=run.len() - len).any(|at| found(&run[at..at + len])) {
                    return Some(format!(
                        "personal data unmasked in: {}",
                        mask_all(secrets, text)
                    ));
                }
            }
            continue;
        }
        if chars[i] == '市' && chars.get(i + 1) == Some(&'民') {
            let end = (i + 2..chars.len().min(i + 10)).find(|&j| chars[j] == '号');
            if let Some(end) = end
                && found(&chars[i..=end].iter().collect::<String>())
            {
                return Some(format!(
                    "personal data unmasked in: {}",
                    mask_all(secrets, text)
                ));
            }
        }
        i += 1;
    }
    None
}

/// `text` with every secret masked (for the failure message itself).
fn mask_all(secrets: &std::collections::HashSet<String>, text: &str) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        out = out.replace(s.as_str(), "***");
    }
    out.chars().take(400).collect()
}

/// Ledger conservation, wallet bounds, and (`per_person`) each
/// cardholder's wallet money (a resumed run checks that once it has
/// replayed the dead run's operations: at its end).
pub async fn money(world: &World, per_person: bool) -> Result<(), Violation> {
    let owners: HashMap<PersonId, usize> = world
        .people
        .iter()
        .enumerate()
        .map(|(i, p)| (p.person.clone(), i))
        .collect();
    let n = world.people.len();
    let (posted, pending, bad, held) = world
        .city
        .ledger()
        .inspect(|engine| {
            let mut posted: i128 = 0;
            let mut pending: i128 = 0;
            let mut bad = Vec::new();
            let mut held = vec![0i64; n];
            for a in engine.accounts() {
                let b = &a.balances;
                posted += i128::from(b.credits_posted.fen()) - i128::from(b.debits_posted.fen());
                pending += i128::from(b.credits_pending.fen()) - i128::from(b.debits_pending.fen());
                if a.kind == AccountKind::E_WALLET {
                    let balance = a.posted();
                    if balance.is_negative() || a.upper_limit.is_some_and(|cap| balance > cap) {
                        bad.push(a.id.to_string());
                    }
                    if let Some(Owner::Person(p)) = &a.owner
                        && let Some(&i) = owners.get(p)
                    {
                        held[i] += balance.fen();
                    }
                }
            }
            (posted, pending, bad, held)
        })
        .await
        .map_err(|e| format!("the ledger cannot be inspected: {e}"))?;
    if posted != 0 || pending != 0 {
        return Err(format!(
            "money is not conserved: posted Σ = {posted} fen, pending Σ = {pending} fen"
        ));
    }
    if !bad.is_empty() {
        return Err(format!("wallets below zero or over their cap: {bad:?}"));
    }
    let expected = world.expected_wallets();
    let unsure = world.unsure();
    for i in (0..n).filter(|i| per_person && !unsure.contains(i)) {
        if held[i] != expected[i] {
            return Err(format!(
                "cardholder {i}'s wallets hold {} fen; the acknowledged operations imply {} fen",
                held[i], expected[i]
            ));
        }
    }
    Ok(())
}

/// Each acknowledged answer of a step, read back from the system.
pub async fn acknowledged(
    world: &World,
    done: &[(Action, Outcome, bool)],
) -> Result<(), Violation> {
    for (action, outcome, _) in done {
        match outcome {
            Outcome::Moved(id, amount) => {
                let id: TransferId = id
                    .parse()
                    .map_err(|_| format!("transfer id {id} does not parse"))?;
                let t = world
                    .city
                    .ledger()
                    .transfer(&Principal::System, id)
                    .await
                    .map_err(|e| format!("acknowledged transfer {id} is not in the ledger: {e}"))?;
                if t.amount != *amount {
                    return Err(format!("transfer {id} moved {} not {amount}", t.amount));
                }
            }
            Outcome::Bound(id, _) => {
                world
                    .city
                    .cards()
                    .binding(&Principal::System, id)
                    .await
                    .map_err(|e| format!("acknowledged binding {id} is not stored: {e}"))?;
            }
            Outcome::Booked(id, _) => {
                if world
                    .city
                    .appointment_store()
                    .appointment(id)
                    .await
                    .ok()
                    .flatten()
                    .is_none()
                {
                    return Err(format!("acknowledged appointment {id} is not stored"));
                }
            }
            Outcome::Read(balance, views) if done.len() == 1 => {
                if views.iter().any(|v| v != balance) {
                    return Err(format!(
                        "a refreshed wallet view {views:?} differs from the ledger's {balance} ({action:?})"
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The audit records appended since the cursor: each change acknowledged
/// in the step has one, and none carries personal data.
///
/// A resumed run (`caught_up` false) replays operations the dead run
/// committed with their records: a record of the action anywhere will do.
pub async fn audit(
    world: &World,
    cursor: &mut Cursor,
    done: &[(Action, Outcome, bool)],
    caught_up: bool,
) -> Result<(), Violation> {
    let entries = world
        .city
        .audit()
        .query(&AuditQuery {
            after_sequence: cursor.audit,
            ..AuditQuery::all()
        })
        .await
        .map_err(|e| format!("the audit log cannot be read: {e}"))?;
    if let Some(last) = entries.iter().map(|e| e.sequence).max() {
        cursor.audit = Some(last);
    }
    for e in &entries {
        if let Some(leak) = leaks(&world.secrets, &format!("{:?}", e.record)) {
            return Err(format!("audit record: {leak}"));
        }
    }
    for (action, outcome, first) in done {
        let Some(expected) = action.audited_as() else {
            continue;
        };
        if !*first || !outcome.acknowledged() {
            continue;
        }
        let found = entries.iter().any(|e| {
            e.record.action == expected
                && matches!(
                    e.record.outcome,
                    AuditOutcome::Succeeded | AuditOutcome::Replayed
                )
                && match outcome {
                    Outcome::Moved(id, _) => e.record.detail.get("transfer") == Some(id),
                    _ => true,
                }
        });
        let found = found
            || (!caught_up
                && !world
                    .city
                    .audit()
                    .query(&AuditQuery {
                        action: Some(expected.to_owned()),
                        ..AuditQuery::all()
                    })
                    .await
                    .map_err(|e| format!("the audit log cannot be read: {e}"))?
                    .is_empty());
        if !found {
            return Err(format!(
                "{expected} was acknowledged ({outcome:?}) but left no audit record"
            ));
        }
    }
    Ok(())
}

/// At most one live binding per card and account, for cardholders `who`.
pub async fn bindings(world: &World, who: &[usize]) -> Result<(), Violation> {
    for &i in who {
        for (pi, account) in world.people[i].accounts.iter().enumerate() {
            let Some((account, _)) = account else {
                continue;
            };
            let found = world
                .city
                .cards()
                .bindings_of_account(&Principal::System, &PLATFORMS[pi], account)
                .await
                .map_err(|e| format!("bindings of an account cannot be read: {e}"))?;
            let mut live: BTreeMap<String, usize> = BTreeMap::new();
            for b in found.iter().filter(|b| b.state != BindingState::Removed) {
                *live.entry(b.card.to_string()).or_default() += 1;
            }
            if let Some((card, n)) = live.iter().find(|(_, n)| **n > 1) {
                return Err(format!(
                    "card {card} has {n} live bindings on one {} account",
                    PLATFORMS[pi]
                ));
            }
        }
    }
    Ok(())
}

/// No slot in `slots` holds more places than its capacity, by its counts
/// and by the acknowledged appointments read back one by one.
pub async fn slots(world: &World, slots: &[String]) -> Result<(), Violation> {
    for id in slots {
        let Some(&(_, capacity)) = world.slots.iter().find(|(s, _)| s == id) else {
            continue;
        };
        let slot_id = id.parse().map_err(|_| format!("slot id {id}"))?;
        if let Some(view) = world
            .city
            .appointment_store()
            .slot(&slot_id)
            .await
            .map_err(|e| format!("slot {id} cannot be read: {e}"))?
            && view.booked > capacity
        {
            return Err(format!(
                "slot {id} is overbooked: {} of {capacity}",
                view.booked
            ));
        }
        let mut holding = 0;
        for (appointment, (slot, _, _)) in &world.appointments {
            if slot != id {
                continue;
            }
            let a = world
                .city
                .appointment_store()
                .appointment(
                    &appointment
                        .parse()
                        .map_err(|_| "appointment id".to_owned())?,
                )
                .await
                .map_err(|e| format!("appointment cannot be read: {e}"))?
                .ok_or_else(|| format!("acknowledged appointment {appointment} vanished"))?;
            if matches!(
                a.status,
                AppointmentStatus::Booked
                    | AppointmentStatus::Arrived
                    | AppointmentStatus::CheckedIn
                    | AppointmentStatus::Fulfilled
                    | AppointmentStatus::Noshow
            ) {
                holding += 1;
            }
        }
        if holding > capacity {
            return Err(format!(
                "slot {id} holds {holding} acknowledged bookings for {capacity} places"
            ));
        }
    }
    Ok(())
}

/// The stored ledger and the settled trips; returns the fares charged per cardholder.
///
/// `orphans`: also require every fare in the ledger to belong to a trip
/// the simulator knows of (a resumed run learns the dead run's cards and
/// days as it replays, so it asks this only at its end).
pub async fn sweep(world: &World, orphans: bool) -> Result<HashMap<usize, i64>, Violation> {
    let snapshot = world
        .city
        .ledger()
        .export(&Principal::System)
        .await
        .map_err(|e| format!("the ledger cannot be exported: {e}"))?;
    // Every account's stored balances equal its stored transfers.
    let mut seen = std::collections::HashSet::new();
    let mut sums: HashMap<u64, (i64, i64)> = HashMap::new();
    let mut odd = std::collections::HashSet::new();
    for t in &snapshot.transfers {
        if !seen.insert(t.id) {
            return Err(format!("transfer {} is stored twice", t.id));
        }
        if t.flags != TransferFlags::NONE {
            odd.insert(t.debit_account_id.get());
            odd.insert(t.credit_account_id.get());
            continue;
        }
        sums.entry(t.debit_account_id.get()).or_default().0 += t.amount.fen();
        sums.entry(t.credit_account_id.get()).or_default().1 += t.amount.fen();
    }
    for a in &snapshot.accounts {
        if odd.contains(&a.id.get()) {
            continue;
        }
        let (debits, credits) = sums.get(&a.id.get()).copied().unwrap_or_default();
        if a.balances.debits_posted.fen() != debits || a.balances.credits_posted.fen() != credits {
            return Err(format!(
                "account {} stores debits {} and credits {} fen but its transfers sum to {debits} and {credits}",
                a.id,
                a.balances.debits_posted.fen(),
                a.balances.credits_posted.fen()
            ));
        }
    }
    for id in world.movements.keys() {
        let id: TransferId = id.parse().map_err(|_| format!("transfer id {id}"))?;
        if !seen.contains(&id) {
            return Err(format!(
                "acknowledged movement {id} is not in the stored ledger"
            ));
        }
    }
    crate::medical::bills(world, &snapshot.transfers, orphans).await?;
    // Every settled trip charged exactly once, and no fare without a trip.
    let mut fares: BTreeMap<String, Vec<(u64, i64)>> = BTreeMap::new();
    for t in snapshot.transfers.iter().filter(|t| t.code == codes::FARE) {
        let reference = t
            .reference
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_default();
        fares
            .entry(reference)
            .or_default()
            .push((t.debit_account_id.get(), t.amount.fen()));
    }
    let refs = world.card_refs();
    let mut charged: HashMap<usize, i64> = HashMap::new();
    let mut matched = 0usize;
    for day in world.tap_days() {
        for (&card, &who) in &refs {
            let trips = world
                .city
                .transit_store()
                .trips(CardRef(card), day)
                .await
                .map_err(|e| format!("trips cannot be read: {e}"))?;
            for trip in trips {
                let charges = fares
                    .get(&format!("trip:{}", trip.id))
                    .cloned()
                    .unwrap_or_default();
                match trip.payment {
                    TripPayment::Charged => {
                        if charges.len() != 1 || charges[0] != (card, trip.amount.fen()) {
                            return Err(format!(
                                "trip {} was settled as charged {} but the ledger holds {charges:?}",
                                trip.id, trip.amount
                            ));
                        }
                        matched += 1;
                        *charged.entry(who).or_default() += trip.amount.fen();
                    }
                    _ => {
                        if !charges.is_empty() {
                            return Err(format!(
                                "trip {} was not charged but the ledger holds {charges:?}",
                                trip.id
                            ));
                        }
                    }
                }
            }
        }
    }
    let fare_transfers: usize = fares.values().map(Vec::len).sum();
    if orphans && fare_transfers != matched {
        return Err(format!(
            "{fare_transfers} fares in the ledger but {matched} trips settled as charged"
        ));
    }
    Ok(charged)
}
