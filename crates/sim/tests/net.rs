//! The platform API's network: Alipay calls the `citycard-api` service over
//! a simulated link that drops requests, loses answers, delays requests
//! past later ones and partitions the platform for whole steps. The CI
//! network seeds pass (every answer signed, no top-up doubled, every pass
//! converges once the network heals); a platform that retries with a new
//! order after a lost answer (the fresh-key-retry mutation) is caught.

use citycard_sim::Mutation;
use citycard_sim::net::{NetSize, run};

fn seeds(range: std::ops::Range<u64>) {
    let mut faults = 0;
    for seed in range {
        let report = run(seed, NetSize::CI, None).unwrap_or_else(|e| panic!("{e}"));
        faults += report.dropped + report.lost_answers + report.delayed;
        assert!(report.payments > 0, "{report:?}");
    }
    assert!(faults > 0, "the link injected no faults");
}

#[test]
fn network_seeds_0_to_11() {
    seeds(0..12);
}

#[test]
fn network_seeds_12_to_23() {
    seeds(12..24);
}

#[test]
fn a_retry_with_a_fresh_key_is_caught_as_a_doubled_top_up() {
    for seed in 0..24 {
        if let Err(e) = run(seed, NetSize::CI, Some(Mutation::FreshKeyRetry)) {
            assert!(
                e.contains("but the platform's users paid"),
                "seed {seed}: {e}"
            );
            return;
        }
    }
    panic!("a retry with a fresh key was not caught within the 24 network seeds");
}
