//! The CI seeds: 200 runs of the simulated city in memory (CI size: 200
//! cardholders, 150 steps, faults on), split in four tests so they run in
//! parallel; a failure prints the seed, the shortest failing prefix and the
//! one-line command that replays it. Plus determinism: the same seed gives
//! the same trace.

use citycard_sim::{Options, Size, replay_command, run, shrink};

fn seeds(range: std::ops::Range<u64>) {
    let options = Options::memory(Size::CI);
    for seed in range {
        if let Err(failure) = run(seed, &options) {
            let (prefix, shrunk) = match failure.step {
                Some(step) => shrink(seed, &options, step),
                None => (0, failure.clone()),
            };
            panic!(
                "{failure}\nlast lines:\n  {}\nshortest failing prefix: {prefix} steps ({shrunk})\nreplay: {}",
                failure.trace_tail.join("\n  "),
                replay_command(
                    seed,
                    Size {
                        steps: prefix.max(1),
                        ..Size::CI
                    },
                    None
                )
            );
        }
    }
}

#[test]
fn ci_seeds_0_to_49() {
    seeds(0..50);
}

#[test]
fn ci_seeds_50_to_99() {
    seeds(50..100);
}

#[test]
fn ci_seeds_100_to_149() {
    seeds(100..150);
}

#[test]
fn ci_seeds_150_to_199() {
    seeds(150..200);
}

#[test]
fn the_same_seed_replays_the_same_trace_and_another_seed_does_not() {
    let size = Size {
        people: 60,
        steps: 120,
        faults: true,
    };
    let a = run(11, &Options::memory(size)).expect("seed 11 runs");
    let b = run(11, &Options::memory(size)).expect("seed 11 runs");
    let c = run(12, &Options::memory(size)).expect("seed 12 runs");
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.operations, b.operations);
    assert_ne!(a.trace_hash, c.trace_hash);
    assert!(
        a.concurrent_steps > 0 && a.faults > 0 && a.clock_moves > 0,
        "{a:?}"
    );
}
