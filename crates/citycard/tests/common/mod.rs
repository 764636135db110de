//! Scaffolding shared by the facade's integration tests: people, cards,
//! verified platform accounts and binding requests.
#![allow(dead_code)]

use citycard::binding::{BindRequest, CardId, ConsentInput, DataCategory};
use citycard::core::{IdempotencyKey, PersonId, Platform, PlatformAccountId, Principal, Sensitive};
use citycard::identity::{IdNumber, KnownPerson, RealNameRequest, RegionCode, Sex};
use citycard::{CityCard, NewCitizenCard};

/// A key from a literal.
pub fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::parse(text).expect("valid key")
}

/// An enrolled person, with what the tests need to act as them.
pub struct Person {
    pub id: PersonId,
    pub id_number: IdNumber,
    pub name: String,
}

/// Enrols `市民{tag}` born on `born` (ID-number sequence `seq`), as `actor`.
pub async fn enrol_as(
    city: &CityCard,
    actor: &Principal,
    tag: &str,
    seq: u16,
    born: (i32, u32, u32),
) -> Person {
    let id_number = IdNumber::generate(
        RegionCode::new(330106).expect("region"),
        chrono::NaiveDate::from_ymd_opt(born.0, born.1, born.2).expect("date"),
        Sex::Male,
        seq,
    )
    .expect("valid number");
    let name = format!("市民{tag}");
    let person = city
        .identity()
        .enroll_person(
            actor,
            &Sensitive::new(name.clone()),
            &id_number.to_sensitive(),
            &key(&format!("enrol-{tag}")),
        )
        .await
        .expect("enrols");
    Person {
        id: person.id,
        id_number,
        name,
    }
}

/// Issues card `number` of `kind` to `person`, as `actor`.
pub async fn issue_as(
    city: &CityCard,
    actor: &Principal,
    person: &Person,
    number: &str,
    kind: &str,
) -> CardId {
    city.issue_card(
        actor,
        &key(&format!("issue-{number}")),
        &NewCitizenCard {
            number: number.into(),
            kind: kind.into(),
            holder: person.id.clone(),
            id_number: person.id_number.to_sensitive(),
            services: None,
        },
    )
    .await
    .expect("issues")
    .id
}

/// An Alipay account `external`, real-name verified as `person` (simulated provider).
pub async fn verified_account(
    city: &CityCard,
    person: &Person,
    external: &str,
) -> PlatformAccountId {
    city.simulated_verifier()
        .expect("simulated provider")
        .register(&person.id_number, KnownPerson::named(&person.name));
    let alipay = Principal::Platform {
        platform: Platform::Alipay,
    };
    let account = city
        .identity()
        .register_account(
            &alipay,
            Platform::Alipay,
            external,
            &key(&format!("reg-{external}")),
        )
        .await
        .expect("registers");
    city.identity()
        .verify_real_name(
            &alipay,
            &account.id,
            &RealNameRequest::two_factor(&person.name, person.id_number.reveal()),
            &key(&format!("verify-{external}")),
        )
        .await
        .expect("verifies");
    account.id
}

/// A request to bind card `number` in Alipay account `account`, with full consent.
pub fn bind_request(
    account: &PlatformAccountId,
    number: &str,
    id_number: &IdNumber,
) -> BindRequest {
    BindRequest {
        platform: Platform::Alipay,
        account: account.clone(),
        card_number: number.into(),
        id_number: id_number.to_sensitive(),
        consent: ConsentInput {
            purpose: "use the citizen card in Alipay".into(),
            data_categories: [DataCategory::CardNumber, DataCategory::Balance].into(),
            text_version: "2026-01".into(),
            channel: "alipay_app".into(),
        },
    }
}
