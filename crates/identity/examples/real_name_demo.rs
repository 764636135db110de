//! A walk through real-name verification with the simulated provider:
//! `cargo run -p citycard-identity --example real_name_demo`.
use std::sync::Arc;

use chrono::NaiveDate;
use citycard_core::{IdempotencyKey, ManualClock, Platform, Principal};
use citycard_identity::{
    IdNumberGenerator, IdentityConfig, IdentityPorts, IdentityService, KnownPerson,
    RealNameRequest, SimulatedVerifier,
};

fn key(s: &str) -> Result<IdempotencyKey, Box<dyn std::error::Error>> {
    Ok(IdempotencyKey::parse(s)?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A few people the provider knows, with reproducible ID numbers.
    let mut ids = IdNumberGenerator::new(2026);
    let (first, last) = (
        NaiveDate::from_ymd_opt(1950, 1, 1).ok_or("date")?,
        NaiveDate::from_ymd_opt(2005, 12, 31).ok_or("date")?,
    );
    let sim = Arc::new(SimulatedVerifier::new());
    let zhang = ids.resident(first, last)?;
    sim.register(&zhang, KnownPerson::named("张三").with_phone("13812345678"));
    println!(
        "张三: {zhang} ({:?}, born {}, {})",
        zhang.sex(),
        zhang.birth_date(),
        zhang.region().map(|r| r.to_string()).unwrap_or_default()
    );

    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0));
    let service = IdentityService::new(
        IdentityPorts::in_memory(sim.clone(), clock)?,
        IdentityConfig::default(),
    );
    let alipay = Principal::Platform {
        platform: Platform::Alipay,
    };
    let account = service
        .register_account(
            &alipay,
            Platform::Alipay,
            "2088000000000001",
            &key("reg-1")?,
        )
        .await?;

    // A typo in the ID number is caught locally: the provider is not called.
    let mut typo = zhang.reveal().to_owned();
    typo.replace_range(16..17, if &typo[16..17] == "1" { "2" } else { "1" });
    let err = service
        .verify_real_name(
            &alipay,
            &account.id,
            &RealNameRequest::two_factor("张三", &typo),
            &key("v-1")?,
        )
        .await
        .err()
        .ok_or("a typo must fail")?;
    println!("typo: {err} (provider calls: {})", sim.factor_calls());

    // The wrong name is a mismatch, counted toward the daily limit.
    let report = service
        .verify_real_name(
            &alipay,
            &account.id,
            &RealNameRequest::two_factor("张四", zhang.reveal()),
            &key("v-2")?,
        )
        .await?;
    println!(
        "wrong name: {:?}, failures today {}",
        report.outcome, report.failures_today
    );

    // Three factors match: the account is real-name verified.
    let report = service
        .verify_real_name(
            &alipay,
            &account.id,
            &RealNameRequest::with_phone("张三", zhang.reveal(), "13812345678"),
            &key("v-3")?,
        )
        .await?;
    let status = service.real_name_status(&alipay, &account.id).await?;
    println!(
        "three factors: {:?}, level {}, person {:?}, verified {}",
        report.outcome,
        status.level,
        status.person,
        status.is_verified()
    );
    if let Some(person) = &status.person {
        let stored = service
            .person(&Principal::System, person)
            .await?
            .ok_or("person")?;
        println!(
            "stored: {} / {} (ciphertext {} bytes under {})",
            stored.masked_name,
            stored.masked_id_number,
            stored.id_number.ciphertext.len(),
            stored.id_number.key_id
        );
    }
    Ok(())
}
