//! Any feed: generated feeds and mutated rows of the shipped data load or
//! fail with a precise error (file, line, field) and never panic; quotes on
//! them never panic and never go negative. Timings are in `benches/fares.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use citycard_core::Money;
use citycard_transit::fares::synthetic::{FeedSize, synthetic_feed, synthetic_journeys};
use citycard_transit::{FareData, FareEngine, LoadMode, Rider, Severity, SpendSoFar};
use proptest::prelude::*;

/// What a mutation does to one row of one file.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace one field's value.
    Field(usize, String),
    /// Drop the row's last field (wrong field count).
    Shorter,
    /// Add a field (wrong field count).
    Longer,
    /// Repeat the row.
    Duplicate,
}

fn values() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("-1".to_owned()),
        Just("0".to_owned()),
        Just("x".to_owned()),
        Just("99999999999999999999".to_owned()),
        Just("1.23456".to_owned()),
        Just("24:00:01".to_owned()),
        Just("20261301".to_owned()),
        Just("\"unterminated".to_owned()),
        Just("é€".to_owned()),
        Just("nosuch_id".to_owned()),
        "[a-z0-9_:.-]{1,12}",
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (0..16usize, values()).prop_map(|(c, v)| Mutation::Field(c, v)),
        1 => Just(Mutation::Shorter),
        1 => Just(Mutation::Longer),
        1 => Just(Mutation::Duplicate),
    ]
}

/// Applies a mutation to data row `row` (0 = first after the header) of a CSV text.
fn mutate(text: &str, row: usize, m: &Mutation) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if lines.len() < 2 {
        return text.to_owned();
    }
    let i = 1 + row % (lines.len() - 1);
    match m {
        Mutation::Field(c, v) => {
            let mut fields: Vec<String> = lines[i].split(',').map(str::to_owned).collect();
            let c = c % fields.len();
            fields[c] = v.clone();
            lines[i] = fields.join(",");
        }
        Mutation::Shorter => {
            if let Some(p) = lines[i].rfind(',') {
                lines[i].truncate(p);
            }
        }
        Mutation::Longer => lines[i].push_str(",extra"),
        Mutation::Duplicate => {
            let copy = lines[i].clone();
            lines.insert(i, copy);
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// A load of mutated data: never a panic; an error names a file of the feed,
/// a line within it and a field of its header (or `-`).
fn check_mutated(data: &FareData) {
    match FareEngine::load(data) {
        Ok(e) => quote_everything(&e),
        Err(err) => {
            let text = data
                .file(&err.file)
                .unwrap_or_else(|| panic!("error names a file not in the feed: {err}"));
            let lines = text.lines().count() as u64 + 1;
            assert!(err.line <= lines, "line {} past the end: {err}", err.line);
            let header = text.lines().next().unwrap_or_default();
            assert!(
                err.field == "-" || header.split(',').any(|h| h.trim() == err.field),
                "field not in the header of {}: {err}",
                err.file
            );
            assert!(!err.problem.is_empty());
        }
    }
    // Lenient loading never panics either; any error it lists names its row.
    if let Ok((e, found)) = FareEngine::load_with(data, LoadMode::Lenient) {
        for d in found.iter().filter(|d| d.severity == Severity::Error) {
            assert!(d.row_left_out, "{d}");
            assert!(data.file(&d.at.file).is_some(), "{d}");
        }
        quote_everything(&e);
    }
}

fn quote_everything(e: &FareEngine) {
    let mut out = Vec::new();
    for legs in synthetic_journeys(e, 40, 7) {
        out.clear();
        if let Ok(total) = e.price_into(&Rider::default(), SpendSoFar::default(), &legs, &mut out) {
            assert!(total >= Money::ZERO || out.iter().any(|l| l.base.is_negative()));
            assert_eq!(out.len(), legs.len());
        }
    }
}

#[test]
fn the_large_synthetic_feed_loads_and_prices_every_journey() {
    let data = synthetic_feed(FeedSize::LARGE);
    let (e, found) = FareEngine::load_with(&data, LoadMode::Strict).unwrap();
    assert!(found.is_empty(), "{found:?}");
    assert_eq!(e.network().stops().len(), 10_000);
    assert_eq!(e.network().routes().len(), 400);
    let mut out = Vec::new();
    let mut priced = 0;
    for legs in synthetic_journeys(&e, 2_000, 42) {
        out.clear();
        let total = e
            .price_into(&Rider::default(), SpendSoFar::default(), &legs, &mut out)
            .unwrap();
        assert!(total >= Money::ZERO);
        assert!(out.iter().all(|l| l.paid >= Money::ZERO));
        priced += out.len();
    }
    assert!(priced > 2_000);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn a_mutated_row_of_a_generated_feed_is_a_precise_error_never_a_panic(
        file in 0..11usize,
        row in 0..400usize,
        m in mutation(),
    ) {
        let mut data = synthetic_feed(FeedSize::SMALL);
        let names: Vec<String> = data.names().map(str::to_owned).collect();
        let name = &names[file % names.len()];
        let text = data.file(name).unwrap().to_owned();
        data.insert(name.clone(), mutate(&text, row, &m));
        check_mutated(&data);
    }

    #[test]
    fn a_mutated_row_of_the_shipped_hangzhou_data_is_a_precise_error_never_a_panic(
        file in 0..19usize,
        row in 0..60usize,
        m in mutation(),
    ) {
        let mut data = FareData::hangzhou();
        let names: Vec<String> = data.names().map(str::to_owned).collect();
        let name = &names[file % names.len()];
        let text = data.file(name).unwrap().to_owned();
        data.insert(name.clone(), mutate(&text, row, &m));
        check_mutated(&data);
    }

    #[test]
    fn fares_on_generated_feeds_are_never_negative(seed in any::<u64>(), medium in 0usize..4) {
        use citycard_transit::Medium;
        let e = FareEngine::load(&synthetic_feed(FeedSize::SMALL)).unwrap();
        // The feed sells to cash, card, cEMV and app riders; never to paper tickets.
        let media = [Medium::Cash, Medium::Card, Medium::BankCard, Medium::RideCode];
        let rider = Rider {
            medium: media[medium],
            ..Rider::default()
        };
        let paper = Rider { medium: Medium::PaperTicket, ..Rider::default() };
        let legs = &synthetic_journeys(&e, 1, seed)[0];
        let err = e.price_into(&paper, SpendSoFar::default(), legs, &mut Vec::new()).unwrap_err();
        prop_assert!(matches!(err, citycard_transit::TransitError::NoFareForMedium { leg: 0, .. }), "{}", err);
        let mut out = Vec::new();
        for legs in synthetic_journeys(&e, 20, seed) {
            out.clear();
            let total = e.price_into(&rider, SpendSoFar::default(), &legs, &mut out).unwrap();
            prop_assert!(total >= Money::ZERO);
            prop_assert!(out.iter().all(|l| l.paid >= Money::ZERO));
        }
    }
}
