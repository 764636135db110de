//! # citycard-sim
//!
//! A simulated city for whole-system runs of citycard, in the manner of
//! TigerBeetle's VOPR: one `u64` seed builds a city (hundreds of
//! cardholders: elderly with delegates, students, three platforms, a
//! community hospital with six clinics) and plays a plan of operations
//! drawn from the seed (accounts and real-name checks, binds with mistyped
//! details, unbinds, lost cards, replacements, freezes, top-ups by
//! holders, delegates, platforms and the counter, refunds, bus and metro
//! taps lost or duplicated, day settlements run again and again, bookings
//! and cancellations, bills and their reversal, balance and statement
//! queries, delegations granted and revoked, retries of acknowledged
//! operations), with faults (the verifier, the platform wallet and the key
//! provider fail, time out or lose the answer), clock jumps and skews, and
//! steps where several operations are in flight and interleave at every
//! store commit and remote call, completed in a seeded order. Every
//! invariant is checked after every step ([`check`]); the same seed gives
//! the same run, byte for byte of its trace ([`Report::trace_hash`]).
//!
//! ```
//! use citycard_sim::{Options, Size, run};
//!
//! let small = Size { people: 12, steps: 20, faults: true };
//! let a = run(7, &Options::memory(small)).expect("no invariant breaks");
//! let b = run(7, &Options::memory(small)).expect("no invariant breaks");
//! assert_eq!(a.trace_hash, b.trace_hash);
//! assert!(a.operations >= 20);
//! ```
//!
//! Crash runs ([`crash`]) play the plan on a SQLite file in a child
//! process (`citycard-sim child`) that is killed with SIGKILL inside a
//! seeded commit (aimed at a day's settlement, a bind saga or a top-up),
//! then reopen the file, resolve the dead process's claims, check that
//! every acknowledged operation survived, sometimes resume in a second
//! child killed again, resume the plan and check everything again.
//!
//! Ride codes ([`codes`]) go through the facade's ride-code path with
//! forged, expired and replayed codes; bills ([`medical`]) pay through a
//! payments port that fails, times out or loses its answer; network runs
//! ([`net`]) drive the `citycard-api` service through a link with
//! partitions, drops, lost answers and delays; a handful of seeds run on
//! PostgreSQL ([`pg`]).
//!
//! Decisions of this crate the design did not make: the simulator is its
//! own crate with a binary (`citycard-sim`), not a test-support module, so
//! long runs and crash children need no test harness; mutations (the
//! checker's own tests) are runtime switches in the simulator's own port
//! wrappers ([`Mutation`]), and the only hook in the facade is the hidden
//! `CityCardBuilder::wrap_binding_store` and `wrap_medical_payments`;
//! crash runs have no remote faults or clock skews, so the resumed run
//! replays the killed run's decisions; the platform API's network is an
//! in-process link through the service's router (a `tower` call per
//! request) rather than `turmoil`: it is deterministic from the seed, needs
//! no simulated sockets or clock, and faults the request and its answer
//! separately, which is what idempotent retries must survive.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod capture;
pub mod check;
pub mod codes;
pub mod converge;
pub mod crash;
pub mod medical;
pub mod net;
pub mod pg;
pub mod plan;
pub mod rng;
pub mod run;
pub mod world;
pub mod wrap;

pub use plan::{Op, Size, Step};
pub use run::{Failure, Options, Report, run, shrink};
pub use world::Store;
pub use wrap::Mutation;

/// The one-line command that replays a seed.
pub fn replay_command(seed: u64, size: Size, mutation: Option<Mutation>) -> String {
    let mut cmd = format!(
        "cargo run -p citycard-sim --release -- run --seed {seed} --people {} --steps {}",
        size.people, size.steps
    );
    if !size.faults {
        cmd.push_str(" --no-faults");
    }
    if let Some(m) = mutation {
        cmd.push_str(&format!(" --mutation {}", m.name()));
    }
    cmd
}
