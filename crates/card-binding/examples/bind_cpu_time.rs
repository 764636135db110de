//! Binding throughput measured in on-CPU time, for a machine shared with other work.
//!
//! The criterion bench (`benches/binding.rs`) measures wall-clock time, which on a
//! busy machine includes time spent waiting for a core. This example runs the same
//! flow over the memory adapters and reports the best of five runs both as wall time
//! and as the thread's on-CPU time (from `/proc/thread-self/schedstat`, Linux only;
//! elsewhere only wall time is shown).
//!
//! `cargo run --release -p citycard-binding --example bind_cpu_time -- 50000`
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::time::Duration;
#[path = "../benches/common/mod.rs"]
mod common;

use common::{memory_stores, prepare, timed_binds};

fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000)
        .max(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut best_wall = Duration::MAX;
    let mut best_cpu: Option<u64> = None;
    for _ in 0..5 {
        let bench = rt.block_on(prepare(memory_stores(), n));
        let c0 = cpu_ns();
        best_wall = best_wall.min(timed_binds(&rt, &bench) / n as u32);
        if let (Some(c0), Some(c1)) = (c0, cpu_ns()) {
            let per = (c1 - c0) / n;
            best_cpu = Some(best_cpu.map_or(per, |b| b.min(per)));
        }
    }
    let rate = |ns: f64| 1e9 / ns;
    println!(
        "{n} bindings per run, best of 5: wall {best_wall:?} per binding ({:.0}/s)",
        rate(best_wall.as_nanos() as f64)
    );
    if let Some(cpu) = best_cpu {
        println!(
            "on-CPU {cpu} ns per binding ({:.0}/s on one core)",
            rate(cpu as f64)
        );
    }
}
