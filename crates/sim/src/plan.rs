//! The operations of a run, drawn from the seed before anything runs, so
//! that a run is a pure function of its plan and a failing plan can be cut
//! to its shortest failing prefix.

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// A remote port the simulator can fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Port {
    /// The real-name provider (`check_factors`).
    Verifier,
    /// The platform card wallet (`add_pass`, `update_pass`, `remove_pass`).
    Wallet,
    /// The vault's key provider (the KMS).
    Keys,
    /// The medical payments port billing pays through (insurance accounts,
    /// the pooled fund and the e-wallet).
    Payments,
}

/// What a rider does with a ride code at the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CodeUse {
    /// A fresh code from the rider's phone.
    Honest,
    /// A fresh code with one byte of its signature changed.
    Tampered,
    /// A code made five minutes before it is shown.
    Expired,
    /// The code already shown at this gate, shown again.
    Replayed,
    /// The same code shown at a second gate too (each gate accepts it; the
    /// back office charges one trip).
    TwoGates,
}

/// What a faulted call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultKind {
    /// Fails before doing anything.
    Fail,
    /// Times out before doing anything.
    Timeout,
    /// Does the work and loses the answer.
    LoseAnswer,
}

/// Who pays a top-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payer {
    /// The cardholder, through a platform.
    Holder,
    /// The cardholder's delegate (elderly cardholders have one).
    Delegate,
    /// The platform the card is bound on, from its clearing account.
    Platform,
    /// A finance operator at the counter.
    Counter,
}

/// One operation of the city, by cardholder index (resolved against the
/// city's state when it runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Register and verify a platform account (the verifier may fail).
    Register {
        /// The cardholder.
        who: usize,
        /// Platform index (Alipay, WeChat Pay, UnionPay).
        platform: usize,
    },
    /// Bind the card on a platform account; `mistyped` sends a wrong ID number.
    Bind {
        /// The cardholder.
        who: usize,
        /// Platform index.
        platform: usize,
        /// Send a mistyped ID number.
        mistyped: bool,
    },
    /// Unbind the card from a platform.
    Unbind {
        /// The cardholder.
        who: usize,
        /// Platform index.
        platform: usize,
    },
    /// Report the card lost (挂失).
    ReportLost {
        /// The cardholder.
        who: usize,
    },
    /// Report a lost card found (解挂).
    ReportFound {
        /// The cardholder.
        who: usize,
    },
    /// Replace a lost card (补卡).
    Replace {
        /// The cardholder.
        who: usize,
    },
    /// Freeze or unfreeze the card (the issuer).
    Freeze {
        /// The cardholder.
        who: usize,
        /// Unfreeze instead.
        thaw: bool,
    },
    /// Top up the wallet.
    TopUp {
        /// The cardholder.
        who: usize,
        /// Yuan.
        yuan: i64,
        /// Who pays.
        payer: Payer,
    },
    /// Refund part of the wallet at the counter.
    Refund {
        /// The cardholder.
        who: usize,
        /// Yuan.
        yuan: i64,
    },
    /// Ride: a bus tap, or a metro trip in and out; taps may be lost or duplicated.
    Ride {
        /// The cardholder.
        who: usize,
        /// Metro (in and out) rather than bus (in only).
        metro: bool,
        /// Stations (metro).
        stations: (usize, usize),
        /// The reader uploads the tap-in twice.
        duplicate: bool,
        /// The tap-out is lost.
        lose_out: bool,
    },
    /// A metro trip or a bus ride paid with a ride code (乘车码) from the
    /// rider's phone: certified on first use, shown at gates that verify
    /// it offline; some codes are forged, expired or replayed.
    CodeRide {
        /// The cardholder.
        who: usize,
        /// Metro (in and out) rather than bus (in only).
        metro: bool,
        /// Stations (metro).
        stations: (usize, usize),
        /// What the rider shows at the first gate.
        code: CodeUse,
    },
    /// Retry a bill or reversal whose answer was lost (same key), or that
    /// failed because a port was down.
    Resume {
        /// Which unresolved one (modulo how many there are).
        pick: usize,
    },
    /// Settle every day with taps so far (again: settled trips are skipped).
    SettleDays,
    /// Book a clinic slot (an elderly cardholder's delegate books for them).
    Book {
        /// The cardholder.
        who: usize,
        /// Clinic (slot) index.
        clinic: usize,
    },
    /// Cancel the cardholder's latest appointment.
    Cancel {
        /// The cardholder.
        who: usize,
    },
    /// Settle an outpatient bill paid from the wallet.
    Bill {
        /// The cardholder.
        who: usize,
        /// Yuan.
        yuan: i64,
    },
    /// Reverse the cardholder's latest completed bill (the hospital).
    ReverseBill {
        /// The cardholder.
        who: usize,
    },
    /// Read the balance, the statement and each wallet view.
    Query {
        /// The cardholder.
        who: usize,
    },
    /// Grant (again) the elderly cardholder's delegation, or revoke it.
    Delegation {
        /// The cardholder.
        who: usize,
        /// Revoke instead.
        revoke: bool,
    },
    /// Repeat an earlier acknowledged operation with its key (a client retry).
    Retry {
        /// Which acknowledged operation (modulo how many there are).
        pick: usize,
    },
    /// The next call of a port is faulted.
    Fault {
        /// The port.
        port: Port,
        /// The fault.
        kind: FaultKind,
    },
    /// The clock moves by this many minutes (negative: skews back).
    Clock {
        /// Minutes.
        minutes: i64,
    },
    /// The host's job that settles pending bindings.
    SettlePending,
}

/// A step: one operation, or several in flight at once, completed in a seeded order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// One operation.
    One(Op),
    /// Operations in flight together; `order` seeds the interleaving.
    Together(Vec<Op>, u64),
}

/// How big a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Size {
    /// Cardholders enrolled before the first step.
    pub people: usize,
    /// Steps.
    pub steps: usize,
    /// Remote faults and clock skews (off in crash runs, whose resumed run
    /// must replay the same decisions).
    pub faults: bool,
}

impl Size {
    /// The size of the CI runs.
    pub const CI: Size = Size {
        people: 200,
        steps: 150,
        faults: true,
    };
}

/// Clinics (slots) in the hospital.
pub const CLINICS: usize = 6;
/// Metro stations riders use.
pub const STATIONS: usize = 3;

fn op(rng: &mut Rng, size: Size) -> Op {
    let who = rng.index(size.people);
    let platform = if rng.chance(70) { 0 } else { 1 + rng.index(2) };
    let roll = rng.below(100);
    match roll {
        0..=5 => Op::Register { who, platform },
        6..=14 => Op::Bind {
            who,
            platform,
            mistyped: rng.chance(15),
        },
        15..=17 => Op::Unbind { who, platform },
        18..=19 => Op::ReportLost { who },
        20 => Op::ReportFound { who },
        21..=22 => Op::Replace { who },
        23 => Op::Freeze {
            who,
            thaw: rng.chance(50),
        },
        24..=37 => Op::TopUp {
            who,
            yuan: 1 + rng.below(300) as i64,
            payer: match rng.below(10) {
                0..=4 => Payer::Holder,
                5..=6 => Payer::Delegate,
                7..=8 => Payer::Platform,
                _ => Payer::Counter,
            },
        },
        38..=39 => Op::Refund {
            who,
            yuan: 1 + rng.below(50) as i64,
        },
        40..=57 => Op::Ride {
            who,
            metro: rng.chance(50),
            stations: (rng.index(STATIONS), rng.index(STATIONS)),
            duplicate: rng.chance(10),
            lose_out: rng.chance(10),
        },
        58..=60 => Op::SettleDays,
        61..=66 => Op::Book {
            who,
            clinic: rng.index(CLINICS),
        },
        67..=68 => Op::Cancel { who },
        69..=72 => Op::Bill {
            who,
            yuan: 1 + rng.below(200) as i64,
        },
        73 => Op::ReverseBill { who },
        74..=79 => Op::Query { who },
        80..=81 => Op::Delegation {
            who,
            revoke: rng.chance(50),
        },
        82..=86 => Op::Retry {
            pick: rng.index(1 << 16),
        },
        87..=92 if size.faults => Op::Fault {
            port: match rng.below(3) {
                0 => Port::Verifier,
                1 => Port::Wallet,
                _ => Port::Keys,
            },
            kind: match rng.below(3) {
                0 => FaultKind::Fail,
                1 => FaultKind::Timeout,
                _ => FaultKind::LoseAnswer,
            },
        },
        93..=96 => Op::Clock {
            minutes: if size.faults && rng.chance(25) {
                -(1 + rng.below(3) as i64)
            } else {
                30 + rng.below(8 * 60) as i64
            },
        },
        97 => Op::SettlePending,
        _ => Op::Query { who },
    }
}

/// An operation added in the third pass (ride codes, medical payment
/// faults, resumed bills), drawn from its own stream so the first pass's
/// operations keep their draws.
fn extra(rng: &mut Rng, size: Size) -> Op {
    let who = rng.index(size.people);
    match rng.below(100) {
        0..=54 => Op::CodeRide {
            who,
            metro: rng.chance(60),
            stations: (rng.index(STATIONS), rng.index(STATIONS)),
            code: match rng.below(100) {
                0..=69 => CodeUse::Honest,
                70..=77 => CodeUse::Tampered,
                78..=85 => CodeUse::Expired,
                86..=92 => CodeUse::Replayed,
                _ => CodeUse::TwoGates,
            },
        },
        55..=69 if size.faults => Op::Fault {
            port: Port::Payments,
            kind: match rng.below(3) {
                0 => FaultKind::Fail,
                1 => FaultKind::Timeout,
                _ => FaultKind::LoseAnswer,
            },
        },
        55..=79 => Op::Bill {
            who,
            yuan: 1 + rng.below(300) as i64,
        },
        80..=89 => Op::Resume {
            pick: rng.index(1 << 16),
        },
        _ => Op::ReverseBill { who },
    }
}

/// The plan of a run: `size.steps` steps drawn from `seed`.
///
/// The first pass's operations come from one stream; the third pass's
/// (ride codes, payment faults, resumed bills) from another, placed as
/// extra steps after about one step in five.
pub fn plan(seed: u64, size: Size) -> Vec<Step> {
    let mut rng = Rng::new(seed).fork(0x51u64);
    let mut more = Rng::new(seed).fork(0x52u64);
    let mut steps = Vec::with_capacity(size.steps + size.steps / 4);
    while steps.len() < size.steps {
        if rng.chance(15) {
            let n = 2 + rng.index(3);
            steps.push(Step::Together(
                (0..n).map(|_| op(&mut rng, size)).collect(),
                rng.next_u64(),
            ));
        } else {
            steps.push(Step::One(op(&mut rng, size)));
        }
        if steps.len() < size.steps && more.chance(20) {
            if more.chance(20) {
                let n = 2 + more.index(2);
                steps.push(Step::Together(
                    (0..n).map(|_| extra(&mut more, size)).collect(),
                    more.next_u64(),
                ));
            } else {
                steps.push(Step::One(extra(&mut more, size)));
            }
        }
    }
    steps
}
