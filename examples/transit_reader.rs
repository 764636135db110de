//! A transit gate reader verifying ride codes offline.
//!
//! The issuer certifies a rider's phone key for a card; the phone makes ride
//! codes with no network; the gate holds only the issuer's public keys and
//! the deny list and decides in one call. The example shows an accepted code,
//! a replay, a tampered code, an expired one and a denied card, each with its
//! own answer.
//!
//! Run with `cargo run --example transit_reader`.

use chrono::{Duration, TimeZone, Utc};
use citycard::transit::codes::{Algorithm, Issuer, RideCodeWallet, SigningKey};
use citycard::transit::{
    CardRef, Decision, DenyEntry, DenyReason, FareEngine, Reader, ReaderConfig, TapDirection,
    TapPlace,
};

fn show(label: &str, decision: &Decision) {
    match decision {
        Decision::Accept(tap) => println!(
            "{label:<24} accepted: card {} at reader {}",
            tap.card, tap.reader
        ),
        Decision::Reject(why) => println!("{label:<24} refused: {why:?}"),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let now = Utc
        .with_ymd_and_hms(2026, 11, 26, 0, 30, 0)
        .single()
        .ok_or("time")?;
    let fares = FareEngine::hangzhou()?;
    let network = fares.network();

    // The issuer's back office: one SM2 key, valid for a month.
    let mut issuer = Issuer::new(1); // the issuer id the clearing body assigned
    issuer.rotate(
        Algorithm::Sm2,
        now - Duration::days(1),
        now + Duration::days(30),
    )?;

    // The rider's phone: its own key, certified for card 42 for a week.
    let phone_key = SigningKey::generate(Algorithm::Sm2)?;
    let credential = issuer.certify(
        &phone_key.public_key(),
        CardRef(42),
        now - Duration::hours(1),
        now + Duration::days(7),
    )?;
    let mut phone = RideCodeWallet::new(phone_key, credential)?;

    // The gate at Wulin Square: public keys and the deny list, nothing else.
    let mut gate = Reader::new(
        ReaderConfig {
            reader: 7,
            place: TapPlace::Station {
                network: network.network("metro").ok_or("no metro network")?,
                stop: network.stop("m_wulin").ok_or("no Wulin Square station")?,
            },
            direction: TapDirection::In,
            max_code_age_seconds: 60,
            clock_skew_seconds: 30,
            repeat_window_seconds: 0,
        },
        &issuer.public_keys(),
    );

    let code = phone.generate(now)?;
    println!(
        "ride code: {} bytes, text form {}…",
        code.as_bytes().len(),
        &code.to_text()[..24]
    );
    show(
        "fresh code",
        &gate.decide(code.as_bytes(), now + Duration::seconds(2)),
    );
    show(
        "same code again",
        &gate.decide(code.as_bytes(), now + Duration::seconds(3)),
    );

    let mut tampered = phone
        .generate(now + Duration::seconds(10))?
        .as_bytes()
        .to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    show(
        "tampered code",
        &gate.decide(&tampered, now + Duration::seconds(11)),
    );

    let old = phone.generate(now + Duration::seconds(20))?;
    show(
        "code five minutes old",
        &gate.decide(old.as_bytes(), now + Duration::minutes(5)),
    );

    // Deny lists name the keyed reference of each live credential of the card.
    let reference = issuer
        .reference_of(
            CardRef(42),
            issuer.current_key_id().ok_or("no issuer key")?,
            u32::try_from((now - Duration::hours(1)).timestamp())?,
            u32::try_from((now + Duration::days(7)).timestamp())?,
        )
        .ok_or("not this issuer's key")?;
    gate.update_deny_list(&[DenyEntry {
        card: reference,
        reason: DenyReason::Lost,
        since: now,
    }]);
    let after_loss = phone.generate(now + Duration::minutes(6))?;
    show(
        "card reported lost",
        &gate.decide(after_loss.as_bytes(), now + Duration::minutes(6)),
    );
    Ok(())
}
