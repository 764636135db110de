//! A minimal host: embeds the whole card system in memory and plugs in its
//! own adapters for the outside world — a real-name provider (its KYC
//! service) and a platform card wallet — instead of the simulated ones.
//!
//! Run with `cargo run --example minimal_host`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use citycard::binding::{
    BindRequest, ConsentInput, DataCategory, PassSerial, PassUpdate, PlatformWallet, PortError,
    RemovalReason, WalletPass,
};
use citycard::core::{
    IdempotencyKey, ManualClock, Money, OperatorId, OperatorRole, OperatorRoles, Platform,
    Principal, Sensitive,
};
use citycard::identity::{
    FaceResult, FaceSession, FactorCheck, IdNumber, RealNameRequest, RealNameVerifier, Sex,
    VerificationOutcome, VerifierError,
};
use citycard::{CityCard, NewCitizenCard};

/// The host's KYC service: here a table of the people it knows.
struct HostKyc {
    known: HashMap<String, String>,
}

#[async_trait]
impl RealNameVerifier for HostKyc {
    async fn check_factors(
        &self,
        check: &FactorCheck,
    ) -> Result<VerificationOutcome, VerifierError> {
        Ok(match self.known.get(check.id_number.reveal()) {
            Some(name) if name == check.name.expose().trim() => VerificationOutcome::Match,
            Some(_) => VerificationOutcome::Mismatch { factor: None },
            None => VerificationOutcome::NoRecord,
        })
    }

    async fn start_face_session(
        &self,
        _name: &Sensitive<String>,
        _id_number: &IdNumber,
    ) -> Result<FaceSession, VerifierError> {
        Err(VerifierError::Unavailable(
            "this host offers no face checks".into(),
        ))
    }

    async fn face_result(&self, _session_id: &str) -> Result<FaceResult, VerifierError> {
        Err(VerifierError::Unavailable(
            "this host offers no face checks".into(),
        ))
    }
}

/// The host's card wallet: keeps passes and prints every change.
#[derive(Default)]
struct PrintingWallet {
    passes: Mutex<HashMap<String, WalletPass>>,
}

#[async_trait]
impl PlatformWallet for PrintingWallet {
    async fn add_pass(&self, pass: &WalletPass) -> Result<(), PortError> {
        println!(
            "  [wallet] pass {} added for card {}",
            pass.serial, pass.card_number_masked
        );
        let mut passes = self
            .passes
            .lock()
            .map_err(|_| PortError::Unavailable("poisoned".into()))?;
        passes.insert(pass.serial.to_string(), pass.clone());
        Ok(())
    }

    async fn update_pass(
        &self,
        _platform: &Platform,
        serial: &PassSerial,
        update: &PassUpdate,
    ) -> Result<(), PortError> {
        let mut passes = self
            .passes
            .lock()
            .map_err(|_| PortError::Unavailable("poisoned".into()))?;
        if let Some(pass) = passes.get_mut(serial.as_str()) {
            match update {
                PassUpdate::Status(status) => pass.status = *status,
                PassUpdate::Balance(view) => {
                    println!("  [wallet] pass {serial} shows {:#}", view.balance);
                    pass.balance = Some(*view);
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn remove_pass(
        &self,
        _platform: &Platform,
        serial: &PassSerial,
        reason: RemovalReason,
    ) -> Result<(), PortError> {
        println!("  [wallet] pass {serial} removed ({reason:?})");
        let mut passes = self
            .passes
            .lock()
            .map_err(|_| PortError::Unavailable("poisoned".into()))?;
        passes.remove(serial.as_str());
        Ok(())
    }

    async fn pass(
        &self,
        _platform: &Platform,
        serial: &PassSerial,
    ) -> Result<Option<WalletPass>, PortError> {
        let passes = self
            .passes
            .lock()
            .map_err(|_| PortError::Unavailable("poisoned".into()))?;
        Ok(passes.get(serial.as_str()).cloned())
    }
}

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::parse(text).expect("a valid idempotency key")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let holder_id = IdNumber::generate(
        citycard::identity::RegionCode::new(330106).ok_or("region")?,
        chrono::NaiveDate::from_ymd_opt(1988, 5, 20).ok_or("date")?,
        Sex::Male,
        17,
    )?;
    let kyc = HostKyc {
        known: HashMap::from([(holder_id.reveal().to_owned(), "王小明".to_owned())]),
    };
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0));
    // Operators' roles come from the host's staff directory, never from the caller.
    let roles = Arc::new(OperatorRoles::new());
    roles.grant(OperatorId::parse("opr-counter-7")?, OperatorRole::CardDesk);
    let city = CityCard::builder()
        .in_memory()
        .clock(clock)
        .operator_roles(roles)
        .real_name_verifier(Arc::new(kyc))
        .platform_wallet(Arc::new(PrintingWallet::default()))
        .build()
        .await?;

    // The issuer enrols the cardholder and issues a card.
    let operator = Principal::Operator {
        operator: OperatorId::parse("opr-counter-7")?,
    };
    let person = city
        .identity()
        .enroll_person(
            &operator,
            &Sensitive::new("王小明".into()),
            &holder_id.to_sensitive(),
            &key("enrol-1"),
        )
        .await?;
    let card = city
        .issue_card(
            &operator,
            &key("issue-1"),
            &NewCitizenCard {
                number: "3301200012345678".into(),
                kind: "standard".into(),
                holder: person.id.clone(),
                id_number: holder_id.to_sensitive(),
                services: None,
            },
        )
        .await?;
    println!(
        "card {} issued to {}",
        card.number.as_str(),
        person.masked_name
    );

    // The platform registers its user's account and verifies the real name.
    let platform = Principal::Platform {
        platform: Platform::Alipay,
    };
    let account = city
        .identity()
        .register_account(&platform, Platform::Alipay, "2088-0001", &key("register-1"))
        .await?;
    city.identity()
        .verify_real_name(
            &platform,
            &account.id,
            &RealNameRequest::two_factor("王小明", holder_id.reveal()),
            &key("verify-1"),
        )
        .await?;

    // The cardholder binds the card in the app, then tops up.
    let me = Principal::cardholder(person.id.clone());
    let receipt = city
        .cards()
        .bind(
            &me,
            &key("bind-1"),
            &BindRequest {
                platform: Platform::Alipay,
                account: account.id.clone(),
                card_number: card.number.as_str().into(),
                id_number: holder_id.to_sensitive(),
                consent: ConsentInput {
                    purpose: "use the citizen card in the app".into(),
                    data_categories: [DataCategory::CardNumber, DataCategory::Balance].into(),
                    text_version: "2026-01".into(),
                    channel: "app".into(),
                },
            },
        )
        .await?;
    println!(
        "bound: {:?} with services {:?}",
        receipt.state, receipt.services
    );
    let topped = city
        .wallet()
        .top_up(
            &me,
            &card.id,
            Money::from_yuan(50),
            &Platform::Alipay,
            &key("topup-1"),
        )
        .await?;
    if let Some(balance) = topped.balance {
        println!("balance after top-up: {balance:#}");
    }
    assert_eq!(
        city.wallet().balance(&me, &card.id).await?,
        Money::from_yuan(50)
    );
    Ok(())
}
