//! Settles a synthetic city day (10 million taps by default) in memory and prints the timing.
//!
//! `cargo run --release -p citycard-transit --example settle_city_day -- 10000000`
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use chrono::NaiveDate;
use citycard_core::{ManualClock, MemoryAuditLog, Money, Principal};
use citycard_transit::workload::city_day;
use citycard_transit::{
    FareEngine, MemoryFarePayments, MemoryRiderDirectory, MemoryTransitStore, Rider, Settlement,
};

fn main() {
    let taps: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let engine = Arc::new(FareEngine::hangzhou().unwrap());
    let day = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
    let generated = Instant::now();
    let taps = city_day(&engine, day, taps, 42);
    println!(
        "generated {} taps in {:.2?}",
        taps.len(),
        generated.elapsed()
    );
    let settlement = Settlement::new(
        engine,
        Arc::new(MemoryFarePayments::with_capacity(
            Money::from_yuan(1_000),
            taps.len() * 2 / 3,
        )),
        Arc::new(MemoryTransitStore::with_capacity(taps.len() / 3)),
        Arc::new(MemoryRiderDirectory::new(Rider {
            volume_tiers: true,
            ..Rider::default()
        })),
        Arc::new(MemoryAuditLog::new()),
        Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 16, 0, 0)),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let start = Instant::now();
    let report = rt
        .block_on(settlement.settle_day(&Principal::System, day, taps))
        .unwrap();
    let elapsed = start.elapsed();
    println!(
        "settled {} taps → {} trips ({} incomplete, {} repeats refused) in {:.2?}: {} charges, {:#} charged, {:#} discounts",
        report.taps.taps,
        report.trips_settled,
        report.taps.incomplete,
        report.taps.repeats_refused,
        elapsed,
        report.charges,
        report.charged,
        report.discounts
    );
    for (operator, revenue) in &report.revenue_by_operator {
        println!("  {operator}: {revenue:#}");
    }
}
