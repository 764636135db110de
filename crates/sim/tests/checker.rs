//! The checker catches what it claims to: each deliberate bug
//! ([`Mutation`]) is caught within the CI seeds, by the invariant meant
//! to catch it.

use citycard_sim::{Mutation, Options, Size, run};

/// The first CI seed whose run fails under `mutation`, with the failure.
fn caught(mutation: Mutation) -> (u64, String) {
    let options = Options {
        mutation: Some(mutation),
        ..Options::memory(Size::CI)
    };
    for seed in 0..200 {
        if let Err(f) = run(seed, &options) {
            return (seed, f.message);
        }
    }
    panic!("{mutation:?} was not caught within the 200 CI seeds");
}

#[test]
fn a_dropped_charge_is_caught() {
    let (seed, message) = caught(Mutation::DropCharge);
    assert!(
        message.contains("transfers sum to") || message.contains("charged"),
        "seed {seed}: {message}"
    );
}

#[test]
fn a_skipped_audit_record_is_caught() {
    let (seed, message) = caught(Mutation::SkipAudit);
    assert!(
        message.contains("left no audit record"),
        "seed {seed}: {message}"
    );
}

#[test]
fn a_second_live_binding_is_caught() {
    let (seed, message) = caught(Mutation::SecondBinding);
    assert!(message.contains("live bindings"), "seed {seed}: {message}");
}

#[test]
fn a_gate_accepting_a_forged_ride_code_is_caught() {
    let (seed, message) = caught(Mutation::AcceptForged);
    assert!(
        message.contains("Tampered ride code"),
        "seed {seed}: {message}"
    );
}

#[test]
fn a_bill_paid_twice_is_caught() {
    let (seed, message) = caught(Mutation::DoubleBill);
    assert!(
        message.contains("which no bill asked for") || message.contains("wallets hold"),
        "seed {seed}: {message}"
    );
}

#[test]
fn an_unmutated_run_passes_the_same_seeds() {
    run(0, &Options::memory(Size::CI)).expect("seed 0 runs clean");
}

#[test]
fn personal_data_is_found_in_any_line_and_masked_data_is_not() {
    let secrets: std::collections::HashSet<String> =
        ["市民7号", "330106195001011234", "3301000000000008"]
            .into_iter()
            .map(String::from)
            .collect();
    let leaks = |t: &str| citycard_sim::check::leaks(&secrets, t).is_some();
    assert!(leaks("INFO bind: name=市民7号 ok"));
    assert!(leaks("id=x330106195001011234y"));
    assert!(leaks("card 3301000000000008 bound"));
    assert!(!leaks(
        "card 330*********0008, 市民17号, 330***********1234"
    ));
    let message = citycard_sim::check::leaks(&secrets, "card 3301000000000008").unwrap_or_default();
    assert!(
        !message.contains("3301000000000008"),
        "the report masks it too: {message}"
    );
}
