//! Transit's rider directory, answered from the card registry.
//!
//! A transit `CardRef` is the card's wallet account id. Settlement asks for
//! the profiles of each chunk's cards at once; the directory looks each card
//! up the first time it is asked (ledger account → owner → the owner's card
//! with that wallet → kind; the person's birth date → age) and keeps the
//! kind and birth date for later chunks and days (the age is computed for
//! the day asked).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::NaiveDate;
use citycard_binding::{CardKind as IssuerCardKind, CardStore};
use citycard_core::ClassifiedError;
use citycard_core::Principal;
use citycard_identity::IdentityService;
use citycard_ledger::{AccountId, Ledger, Owner};
use citycard_transit::{CardKind, CardRef, FxHashMap, Rider, RiderDirectory, TransitError};

use crate::error::CityCardError;
use crate::glue::money::wallet_of;
use crate::glue::people::id_number_of;

/// The transit card kind for an issuer card kind.
///
/// The issuer's `elderly` kind is the 70+ card (老年卡, [`CardKind::Senior`]);
/// a holder who is not yet 70 on the day of travel rides as the 60–69 elder
/// card (see [`transit_kind_on`]). The issuer's `elder` kind is the elder card
/// (长者卡, [`CardKind::Elder`]). `military` and `blood_donor` issuer codes map
/// to their free-travel kinds; `veteran` keeps a kind with no concession.
pub fn transit_kind(kind: &IssuerCardKind) -> CardKind {
    match kind {
        IssuerCardKind::Elderly => CardKind::Senior,
        IssuerCardKind::Student => CardKind::Student,
        IssuerCardKind::Disabled => CardKind::Disabled,
        IssuerCardKind::Other(code) if code == "elder" => CardKind::Elder,
        IssuerCardKind::Other(code) if code == "veteran" => CardKind::Veteran,
        IssuerCardKind::Other(code) if code == "military" => CardKind::Military,
        IssuerCardKind::Other(code) if code == "blood_donor" => CardKind::BloodDonor,
        _ => CardKind::Ordinary,
    }
}

/// The transit card kind on a day: an elderly card is the 70+ card from the
/// holder's 70th birthday, the 60–69 elder card before (or when the age is unknown).
pub fn transit_kind_on(kind: CardKind, age: Option<u8>) -> CardKind {
    match (kind, age) {
        (CardKind::Senior, Some(a)) if a >= 70 => CardKind::Senior,
        (CardKind::Senior, _) => CardKind::Elder,
        (k, _) => k,
    }
}

/// Rider profiles of cards, loaded before settlement.
pub struct CardRiders {
    ledger: Arc<Ledger>,
    cards: Arc<dyn CardStore>,
    identity: Arc<IdentityService>,
    known: RwLock<HashMap<CardRef, (CardKind, Option<NaiveDate>)>>,
}

impl CardRiders {
    /// The directory over the ledger, the card registry and identity.
    pub fn new(
        ledger: Arc<Ledger>,
        cards: Arc<dyn CardStore>,
        identity: Arc<IdentityService>,
    ) -> Self {
        Self {
            ledger,
            cards,
            identity,
            known: RwLock::new(HashMap::new()),
        }
    }

    /// Loads the profiles of the cards not yet known.
    async fn prepare(&self, cards: &[CardRef]) -> Result<(), CityCardError> {
        for &card_ref in cards {
            if self
                .known
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&card_ref)
            {
                continue;
            }
            let profile = self.profile(card_ref).await?;
            self.known
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(card_ref, profile);
        }
        Ok(())
    }

    async fn profile(
        &self,
        card_ref: CardRef,
    ) -> Result<(CardKind, Option<NaiveDate>), CityCardError> {
        let account = AccountId::new(card_ref.0);
        let Ok(wallet) = self.ledger.account(&Principal::System, account).await else {
            return Ok((CardKind::Ordinary, None));
        };
        let Some(Owner::Person(holder)) = wallet.owner else {
            return Ok((CardKind::Ordinary, None));
        };
        let kind = self
            .cards
            .by_holder(&holder)
            .await?
            .into_iter()
            .find(|c| wallet_of(&c.wallet_account).is_ok_and(|a| a == account))
            .map_or(CardKind::Ordinary, |c| transit_kind(&c.kind));
        let birth = match self.identity.person(&Principal::System, &holder).await? {
            Some(person) => Some(
                id_number_of(&self.identity, &person)
                    .await
                    .map_err(citycard_identity::IdentityError::from)?
                    .birth_date(),
            ),
            None => None,
        };
        Ok((kind, birth))
    }
}

#[async_trait::async_trait]
impl RiderDirectory for CardRiders {
    async fn riders(
        &self,
        cards: &[CardRef],
        day: NaiveDate,
    ) -> Result<FxHashMap<CardRef, Rider>, TransitError> {
        self.prepare(cards).await.map_err(|e| {
            if e.class().is_retryable() {
                TransitError::PaymentUnavailable(e.to_string())
            } else {
                TransitError::PaymentConflict(e.to_string())
            }
        })?;
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        Ok(cards
            .iter()
            .map(|card| {
                let rider = known
                    .get(card)
                    .map_or_else(Rider::default, |(kind, birth)| {
                        let age = birth.and_then(|b| u8::try_from(day.years_since(b)?).ok());
                        Rider {
                            card_kind: transit_kind_on(*kind, age),
                            age,
                            ..Rider::default()
                        }
                    });
                (*card, rider)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_elderly_card_is_the_70_plus_card_from_the_70th_birthday() {
        let issued = transit_kind(&IssuerCardKind::Elderly);
        assert_eq!(transit_kind_on(issued, Some(72)), CardKind::Senior);
        assert_eq!(transit_kind_on(issued, Some(70)), CardKind::Senior);
        assert_eq!(transit_kind_on(issued, Some(69)), CardKind::Elder);
        assert_eq!(transit_kind_on(issued, None), CardKind::Elder);
        assert_eq!(
            transit_kind_on(CardKind::Student, Some(80)),
            CardKind::Student
        );
        assert_eq!(
            transit_kind(&IssuerCardKind::Other("military".into())),
            CardKind::Military
        );
        let elder = transit_kind(&IssuerCardKind::Other("elder".into()));
        assert_eq!(transit_kind_on(elder, Some(65)), CardKind::Elder);
        assert_eq!(transit_kind_on(elder, Some(75)), CardKind::Elder);
    }
}
