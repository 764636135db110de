//! A payment platform's integration: its own card-wallet adapter (卡包), and
//! a pre-check of the details a user typed against the issuer's port before
//! the binding flow runs.
//!
//! The issuer's answer never says which detail was wrong, so nobody can use
//! the platform to probe whose card a number is.
//!
//! Run with `cargo run --example platform_integration`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use citycard::binding::{
    BindRequest, BindingState, ConsentInput, DataCategory, IssuerVerdict, PassSerial, PassStatus,
    PassUpdate, PlatformWallet, PortError, RemovalReason, WalletPass,
};
use citycard::core::{
    IdempotencyKey, ManualClock, OperatorId, OperatorRole, Platform, Principal, Sensitive,
};
use citycard::identity::{IdNumber, KnownPerson, RealNameRequest, Sex};
use citycard::{CityCard, NewCitizenCard};

/// The platform's own card wallet: what its app shows in the card list.
#[derive(Default)]
struct AppCardList {
    cards: Mutex<BTreeMap<String, (String, PassStatus)>>,
}

impl AppCardList {
    fn show(&self) {
        let cards = self.cards.lock().unwrap_or_else(|e| e.into_inner());
        if cards.is_empty() {
            println!("  app card list: (empty)");
        }
        for (serial, (number, status)) in cards.iter() {
            println!("  app card list: {number} [{status:?}] (pass {serial})");
        }
    }
}

#[async_trait]
impl PlatformWallet for AppCardList {
    async fn add_pass(&self, pass: &WalletPass) -> Result<(), PortError> {
        let mut cards = self.cards.lock().unwrap_or_else(|e| e.into_inner());
        cards.insert(
            pass.serial.to_string(),
            (pass.card_number_masked.clone(), pass.status),
        );
        Ok(())
    }

    async fn update_pass(
        &self,
        _platform: &Platform,
        serial: &PassSerial,
        update: &PassUpdate,
    ) -> Result<(), PortError> {
        let mut cards = self.cards.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(entry), PassUpdate::Status(status)) = (cards.get_mut(serial.as_str()), update)
        {
            entry.1 = *status;
        }
        Ok(())
    }

    async fn remove_pass(
        &self,
        _platform: &Platform,
        serial: &PassSerial,
        _reason: RemovalReason,
    ) -> Result<(), PortError> {
        self.cards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(serial.as_str());
        Ok(())
    }

    async fn pass(
        &self,
        _platform: &Platform,
        _serial: &PassSerial,
    ) -> Result<Option<WalletPass>, PortError> {
        // This adapter keeps only what the app shows; the flow treats a
        // missing full pass as "not written yet" and writes it again.
        Ok(None)
    }
}

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::parse(text).expect("a valid idempotency key")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let wallet = Arc::new(AppCardList::default());
    let city = CityCard::builder()
        .in_memory()
        .clock(Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 20, 0, 0)))
        .platform_wallet(wallet.clone())
        .build()
        .await?;

    // On the issuer's side, a cardholder with a card.
    let id_number = IdNumber::generate(
        citycard::identity::RegionCode::new(330102).ok_or("region")?,
        chrono::NaiveDate::from_ymd_opt(1995, 2, 14).ok_or("date")?,
        Sex::Female,
        88,
    )?;
    city.operator_roles()
        .grant(OperatorId::parse("opr-1")?, OperatorRole::CardDesk);
    let operator = Principal::Operator {
        operator: OperatorId::parse("opr-1")?,
    };
    let person = city
        .identity()
        .enroll_person(
            &operator,
            &Sensitive::new("陈静".into()),
            &id_number.to_sensitive(),
            &key("enrol"),
        )
        .await?;
    let card = city
        .issue_card(
            &operator,
            &key("issue"),
            &NewCitizenCard {
                number: "3301999988887777".into(),
                kind: "standard".into(),
                holder: person.id.clone(),
                id_number: id_number.to_sensitive(),
                services: None,
            },
        )
        .await?;
    if let Some(sim) = city.simulated_verifier() {
        sim.register(&id_number, KnownPerson::named("陈静"));
    }

    // On the platform's side: the user's account, real-name verified.
    let platform = Principal::Platform {
        platform: Platform::WechatPay,
    };
    let account = city
        .identity()
        .register_account(&platform, Platform::WechatPay, "wx-openid-7", &key("reg"))
        .await?;
    city.identity()
        .verify_real_name(
            &platform,
            &account.id,
            &RealNameRequest::two_factor("陈静", id_number.reveal()),
            &key("verify"),
        )
        .await?;

    // The user types the details; the platform asks the issuer first.
    let typed_number = city.cards().parse_card_number("3301 9999 8888 7777")?;
    let typo = Sensitive::new(format!("{}0", &id_number.reveal()[..17]));
    for (label, typed_id) in [
        ("with a typo", &typo),
        ("as on the card", &id_number.to_sensitive()),
    ] {
        let verdict = city.card_issuer().verify(&typed_number, typed_id).await?;
        match verdict {
            IssuerVerdict::Matched { .. } => println!("issuer check {label}: details match"),
            IssuerVerdict::DoNotMatch => println!(
                "issuer check {label}: details do not match — check the card number and ID number and try again"
            ),
        }
    }

    let me = Principal::cardholder(person.id.clone());
    let receipt = city
        .cards()
        .bind(
            &me,
            &key("bind"),
            &BindRequest {
                platform: Platform::WechatPay,
                account: account.id.clone(),
                card_number: typed_number.as_str().into(),
                id_number: id_number.to_sensitive(),
                consent: ConsentInput {
                    purpose: "ride and pay with the citizen card in WeChat".into(),
                    data_categories: [DataCategory::CardNumber, DataCategory::Balance].into(),
                    text_version: "2026-03".into(),
                    channel: "wechat_app".into(),
                },
            },
        )
        .await?;
    assert_eq!(receipt.state, BindingState::Active);
    println!("bound; services: {:?}", receipt.services);
    wallet.show();

    // The card is reported lost at the issuer: the platform's pass follows.
    city.cards()
        .report_lost(&me, &key("lost"), &card.id)
        .await?;
    println!("after the card was reported lost:");
    wallet.show();
    Ok(())
}
