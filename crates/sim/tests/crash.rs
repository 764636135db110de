//! Crash runs: the city on a SQLite file in a child process, killed with
//! SIGKILL inside a seeded commit, reopened, recovered, checked (every
//! acknowledged operation survived, the stored ledger is whole), resumed
//! and checked again. Seeds 6, 7, 11 and 12 found that a retried top-up
//! was refused once its card was reported lost (fixed in the facade's
//! wallet); with the third pass's plans, seed 6 found that a platform's
//! retried top-up was refused once its binding was suspended (fixed there
//! too). They stay as regression seeds. The ack-before-commit mutation
//! shows a lost acknowledged operation is caught.
#![cfg(unix)]

use std::path::Path;

use citycard_sim::Mutation;
use citycard_sim::crash::{CRASH_SIZE, crash_run_with};

const BIN: &str = env!("CARGO_BIN_EXE_citycard-sim");

#[test]
fn crash_seeds_resume_with_every_acknowledged_operation() {
    let mut acknowledged = 0;
    for seed in 0..16 {
        let report = crash_run_with(Path::new(BIN), seed, CRASH_SIZE, None)
            .unwrap_or_else(|e| panic!("{e}"));
        acknowledged += report.acknowledged;
    }
    assert!(
        acknowledged > 0,
        "the children acknowledged nothing before dying"
    );
}

#[test]
fn regression_a_retried_top_up_replays_after_the_card_is_reported_lost() {
    for seed in [6, 7, 11, 12] {
        crash_run_with(Path::new(BIN), seed, CRASH_SIZE, None).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn regression_a_resumed_run_learns_a_replayed_bill_reversed_since() {
    // The simulator's own model once forgot a bill whose replay answered it
    // reversed, and then took its reversal for a stray payment.
    crash_run_with(Path::new(BIN), 16, CRASH_SIZE, None).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn an_acknowledgement_before_the_commit_is_caught_as_a_lost_operation() {
    for seed in 0..60 {
        if let Err(e) = crash_run_with(
            Path::new(BIN),
            seed,
            CRASH_SIZE,
            Some(Mutation::AckBeforeCommit),
        ) {
            assert!(e.contains("was lost in the crash"), "seed {seed}: {e}");
            return;
        }
    }
    panic!("acknowledging before the commit was not caught within 60 crash seeds");
}
