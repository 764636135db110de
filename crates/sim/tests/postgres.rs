//! A handful of seeds on PostgreSQL (every store on a fresh schema), with
//! the same checks as the memory runs. Skipped with a message without a
//! server (`CITYCARD_TEST_POSTGRES`), failing under `CI=true` like the
//! other PostgreSQL tests.

use citycard_sim::Size;
use citycard_sim::pg::{available, run_seed};

#[test]
fn postgres_seeds() {
    if !available() {
        return;
    }
    let size = Size {
        people: 40,
        steps: 80,
        faults: true,
    };
    for seed in 0..5 {
        let report = run_seed(seed, size).unwrap_or_else(|f| {
            panic!(
                "{f}\nlast lines:\n  {}\nreplay: CITYCARD_TEST_POSTGRES=… cargo test -p citycard-sim --test postgres",
                f.trace_tail.join("\n  ")
            )
        });
        assert!(report.sweeps > 0, "{report:?}");
    }
}
