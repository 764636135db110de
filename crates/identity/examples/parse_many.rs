//! Parses N ID numbers, for allocation and instruction counts that do not
//! depend on machine load:
//!
//! ```sh
//! valgrind --tool=dhat target/release/examples/parse_many 1000 mixed
//! valgrind --tool=cachegrind --cache-sim=no target/release/examples/parse_many 100000 off
//! ```
//!
//! Modes: `mixed` (every kind, valid and invalid, all policies, with region
//! names), `off`, `any`, `strict` (valid 18-digit samples under one policy),
//! and `best` (N batches of 100 000 parses per policy; prints the fastest
//! batch, an estimate of uncontended single-core speed on a shared machine).
use std::hint::black_box;

use chrono::NaiveDate;
use citycard_identity::{IdNumber, RegionCheck, ValidationPolicy};

const MIXED: [&str; 10] = [
    "11010519491231002X",
    " 11010519491231002x ",
    "１１０１０５１９４９１２３１００２Ｘ",
    "610104620927690",
    "810000199408230021",
    "932682198501010017",
    "11010119900307867X",
    "440308199902301512",
    "111111199901101512",
    "1101051949123100",
];

const VALID: [&str; 8] = [
    "11010519491231002X",
    "440524188001010014",
    "110101199003078670",
    "440308199901101512",
    "321083197812162119",
    "360426199101010071",
    "810000199408230021",
    "932682198501010017",
];

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let mode = args.next().unwrap_or_else(|| "mixed".to_owned());
    let today = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap_or_default();
    let policy = |check| ValidationPolicy::new().today(today).region_check(check);
    let mut ok = 0usize;
    match mode.as_str() {
        "best" => {
            for (name, check) in [
                ("region check off", RegionCheck::Off),
                ("existed any time", RegionCheck::ExistedAnyTime),
                ("existed in birth year", RegionCheck::ExistedInBirthYear),
            ] {
                let p = policy(check);
                let mut best = f64::INFINITY;
                for _ in 0..n {
                    let start = std::time::Instant::now();
                    for i in 0..100_000 {
                        if IdNumber::parse_with(black_box(VALID[i % VALID.len()]), &p).is_ok() {
                            ok += 1;
                        }
                    }
                    best = best.min(start.elapsed().as_secs_f64());
                }
                println!(
                    "{name}: best batch {:.1} ns/parse = {:.1} million parses/s",
                    best * 1e9 / 100_000.0,
                    100_000.0 / best / 1e6
                );
            }
        }
        "off" | "any" | "strict" => {
            let p = policy(match mode.as_str() {
                "off" => RegionCheck::Off,
                "any" => RegionCheck::ExistedAnyTime,
                _ => RegionCheck::ExistedInBirthYear,
            });
            for i in 0..n {
                if IdNumber::parse_with(black_box(VALID[i % VALID.len()]), &p).is_ok() {
                    ok += 1;
                }
            }
        }
        _ => {
            let policies = [
                policy(RegionCheck::Off),
                policy(RegionCheck::ExistedAnyTime),
                policy(RegionCheck::ExistedInBirthYear),
            ];
            for i in 0..n {
                for p in &policies {
                    if let Ok(id) = IdNumber::parse_with(black_box(MIXED[i % MIXED.len()]), p) {
                        ok += 1;
                        black_box(id.region());
                        black_box(id.age_on(today));
                    }
                }
            }
        }
    }
    println!("{ok} parses valid");
}
