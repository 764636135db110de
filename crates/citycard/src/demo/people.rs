//! Step 1: the cardholder and his mother are enrolled at the issuer's counter
//! and get their cards; his medical accounts are funded and his social
//! insurance history registered (one-time setup, replayed by later runs).

use chrono::{DateTime, NaiveDate, Utc};
use citycard_binding::{Card, CardStatus, Lang, Service, ServiceSet};
use citycard_core::{PersonId, Principal, Sensitive};
use citycard_identity::{IdNumber, RegionCode, Sex};

use super::{
    DemoError, Journey, Printer, bill, key, mask_name, mask_number, services_text, social, y,
};
use crate::error::CityCardError;
use crate::system::NewCitizenCard;

const CARDHOLDER_NAME: &str = "张伟";
const MOTHER_NAME: &str = "李秀英";

/// An enrolled person as the demo knows them.
pub(super) struct Person {
    pub(super) id: PersonId,
    pub(super) created_at: DateTime<Utc>,
    pub(super) id_number: IdNumber,
    pub(super) name: &'static str,
}

impl Person {
    /// The person acting as a cardholder.
    pub(super) fn principal(&self) -> Principal {
        Principal::cardholder(self.id.clone())
    }
}

/// The people and cards of the journey.
pub(super) struct Cast {
    /// The cardholder (张伟).
    pub(super) zhang: Person,
    /// His mother, with an elderly card.
    pub(super) mother: Person,
    /// The mother's card.
    pub(super) mother_card: Card,
    /// His current active card: the first one, or the replacement made by the previous run.
    pub(super) card: Card,
}

/// Enrols both people, issues their cards and does the one-time records setup.
pub(super) async fn enrol_and_issue(
    j: &Journey<'_>,
    p: &mut Printer<'_>,
    operator: &Principal,
) -> Result<Cast, DemoError> {
    let city = j.city;
    p.heading(
        "在市民卡柜台登记并发卡",
        "People enrolled and cards issued (at the issuer's counter)",
    )?;
    let zhang = enroll(
        j,
        operator,
        CARDHOLDER_NAME,
        cardholder_id_number()?,
        "zhang",
    )
    .await?;
    let mother = enroll(j, operator, MOTHER_NAME, mother_id_number()?, "mother").await?;
    for person in [&zhang, &mother] {
        let name = mask_name(person.name);
        let id = person.id_number.masked();
        p.say(
            format!(
                "{}{name}（身份证号 {id}）",
                j.setup_verb(Lang::Zh, person.created_at, "登记", "enrolled")
            ),
            format!(
                "{} {name} (ID number {id})",
                j.setup_verb(Lang::En, person.created_at, "登记", "enrolled")
            ),
        )?;
        p.ids(format!("person {}", person.id))?;
    }
    let all_services: ServiceSet = [
        Service::Transit,
        Service::Healthcare,
        Service::SocialInsurance,
        Service::Wallet,
    ]
    .into();
    let first_card = city
        .issue_card(
            operator,
            &key("demo-setup-issue-zhang")?,
            &NewCitizenCard {
                number: card_number(ZHANG_FIRST_CARD),
                kind: "standard".into(),
                holder: zhang.id.clone(),
                id_number: zhang.id_number.to_sensitive(),
                services: Some(all_services),
            },
        )
        .await?;
    let mother_services: ServiceSet =
        [Service::Transit, Service::Healthcare, Service::Wallet].into();
    let mother_card = city
        .issue_card(
            operator,
            &key("demo-setup-issue-mother")?,
            &NewCitizenCard {
                number: card_number(MOTHER_CARD),
                kind: "elderly".into(),
                holder: mother.id.clone(),
                id_number: mother.id_number.to_sensitive(),
                services: Some(mother_services),
            },
        )
        .await?;
    let cap = y(city.accounts().limits().kind_cap(first_card.kind.code()));
    let (zn, zc) = (
        mask_name(zhang.name),
        mask_number(first_card.number.as_str()),
    );
    p.say(
        format!(
            "{}为{zn}发了一张普通市民卡 {zc}，带电子钱包（余额上限 {cap}）",
            j.setup_verb(Lang::Zh, first_card.issued_at, "发卡", "issued")
        ),
        format!(
            "{} {zn}'s standard card {zc} with an e-wallet (up to {cap})",
            j.setup_verb(Lang::En, first_card.issued_at, "发卡", "issued")
        ),
    )?;
    let (mn, mc) = (
        mask_name(mother.name),
        mask_number(mother_card.number.as_str()),
    );
    p.say(
        format!(
            "{}为{mn}发了一张老年卡 {mc}（可用：{}）",
            j.setup_verb(Lang::Zh, mother_card.issued_at, "发卡", "issued"),
            services_text(&mother_card.services, Lang::Zh)
        ),
        format!(
            "{} {mn}'s elderly card {mc} (for {})",
            j.setup_verb(Lang::En, mother_card.issued_at, "发卡", "issued"),
            services_text(&mother_card.services, Lang::En)
        ),
    )?;
    let card = current_card(j, &zhang.id).await?;
    if card.id != first_card.id {
        let cc = mask_number(card.number.as_str());
        p.say(
            format!("{zn}现在用的是补办的新卡 {cc}（第一张卡在之前的运行中已补换）"),
            format!(
                "{zn}'s current card is the replacement {cc} (the first card was replaced in an earlier run)"
            ),
        )?;
    }
    p.ids("ledger system accounts open: Alipay/WeChat Pay/UnionPay clearing, refunds, pooled fund, insurance funding, control")?;
    bill::fund_accounts(j, p, &zhang.id).await?;
    social::register_history(j, p, &zhang.id).await?;
    Ok(Cast {
        zhang,
        mother,
        mother_card,
        card,
    })
}

async fn enroll(
    j: &Journey<'_>,
    operator: &Principal,
    name: &'static str,
    id_number: IdNumber,
    who: &str,
) -> Result<Person, DemoError> {
    let person = j
        .city
        .identity()
        .enroll_person(
            operator,
            &Sensitive::new(name.to_owned()),
            &id_number.to_sensitive(),
            &key(&format!("demo-setup-enrol-{who}"))?,
        )
        .await?;
    Ok(Person {
        id: person.id,
        created_at: person.created_at,
        id_number,
        name,
    })
}

/// The holder's active card (the newest active one).
async fn current_card(j: &Journey<'_>, holder: &PersonId) -> Result<Card, DemoError> {
    let mut cards = j.city.cards().cards_of(&Principal::System, holder).await?;
    cards.sort_by_key(|c| c.issued_at);
    cards
        .into_iter()
        .rev()
        .find(|c| c.status == CardStatus::Active)
        .ok_or_else(|| {
            DemoError::Step(
                "the cardholder has no active card: start over in a new directory".into(),
            )
        })
}

/// The cardholder's ID number (generated, valid, Hangzhou 西湖区 330106).
pub fn cardholder_id_number() -> Result<IdNumber, CityCardError> {
    generate_id(NaiveDate::from_ymd_opt(1986, 4, 17), Sex::Male, 37)
}

/// The cardholder's mother's ID number (born 1952: an elderly card, 70+).
pub fn mother_id_number() -> Result<IdNumber, CityCardError> {
    generate_id(NaiveDate::from_ymd_opt(1952, 6, 18), Sex::Female, 52)
}

fn generate_id(birth: Option<NaiveDate>, sex: Sex, seq: u16) -> Result<IdNumber, CityCardError> {
    let region = RegionCode::new(330_106)
        .ok_or_else(|| CityCardError::Invalid("region code 330106".into()))?;
    let birth = birth.ok_or_else(|| CityCardError::Invalid("birth date".into()))?;
    IdNumber::generate(region, birth, sex, seq)
        .map_err(|e| CityCardError::Invalid(format!("generated ID number: {e}")))
}

/// The printed card number of a sequence (16 digits, Hangzhou prefix).
pub fn card_number(seq: u32) -> String {
    format!("330100{seq:010}")
}

const ZHANG_FIRST_CARD: u32 = 1001;
const MOTHER_CARD: u32 = 5001;

/// The replacement card number made by run `run`.
pub fn replacement_number(run: u32) -> String {
    card_number(ZHANG_FIRST_CARD + run)
}
