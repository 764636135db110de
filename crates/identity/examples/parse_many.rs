//! Parses N ID numbers of every kind, for allocation and instruction counts:
//! `valgrind --tool=dhat target/release/examples/parse_many 1000` and again
//! with 100000 should report the same number of heap blocks.
use std::hint::black_box;

use chrono::NaiveDate;
use citycard_identity::{IdNumber, RegionCheck, ValidationPolicy};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let samples = [
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
    let today = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap_or_default();
    let policies = [
        ValidationPolicy::new().today(today).region_check(RegionCheck::Off),
        ValidationPolicy::new().today(today),
        ValidationPolicy::new()
            .today(today)
            .region_check(RegionCheck::ExistedInBirthYear),
    ];
    let mut ok = 0usize;
    for i in 0..n {
        let s = samples[i % samples.len()];
        for p in &policies {
            if let Ok(id) = IdNumber::parse_with(black_box(s), p) {
                ok += 1;
                black_box(id.region());
                black_box(id.age_on(today));
            }
        }
    }
    println!("{ok} of {} parses valid", n * policies.len());
}
