//! The people ports of card binding and healthcare, on the identity crate.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use citycard_binding::{
    BlindIndex as CardBlindIndex, CardNumber, CardNumberFormat, CardStore, IdNumberIndex,
    PortError, RealNameCheck,
};
use citycard_core::{
    ClassifiedError, Clock, ErrorClass, GrantVerifier, PersonId, Platform, PlatformAccountId,
    Sensitive, StoreError, civil_date,
};
use citycard_healthcare::{
    PatientDirectory, PatientIdentifier, PatientRecord, PersonCategory, PersonType,
    SocialInsuranceRecords,
};
use citycard_identity::{IdNumber, IdentityService, Person};

/// The age below which a guardian consents for a cardholder (PIPL: under 14).
pub const GUARDIAN_AGE: u32 = 14;

/// Who is whose legal guardian, as registered by the issuer's operators.
///
/// Guardianship is established outside the card system (household register,
/// court); the issuer records it when a guardian applies for a minor's card.
#[derive(Debug, Default)]
pub struct Guardianships {
    pairs: RwLock<HashSet<(PersonId, PersonId)>>,
}

impl Guardianships {
    /// No guardianships.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `guardian` is `ward`'s legal guardian.
    pub fn register(&self, guardian: PersonId, ward: PersonId) {
        self.pairs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert((guardian, ward));
    }

    /// Whether `guardian` is `ward`'s legal guardian.
    pub fn is_guardian_of(&self, guardian: &PersonId, ward: &PersonId) -> bool {
        self.pairs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&(guardian.clone(), ward.clone()))
    }
}

/// A binding port error chosen by the identity error's class: retryable
/// failures stay `Unavailable`, every other class is `Rejected`.
fn port(e: impl ClassifiedError) -> PortError {
    if e.class().is_retryable() {
        PortError::Unavailable(e.to_string())
    } else {
        PortError::Rejected(e.to_string())
    }
}

/// Decrypts a person's ID number (for an age check only; never logged).
///
/// A vault failure (the key service down) is an error for the caller to
/// retry, never "no ID number": an age check that cannot be made must not
/// conclude that a minor is an adult.
pub(crate) async fn id_number_of(
    identity: &IdentityService,
    person: &Person,
) -> Result<IdNumber, citycard_identity::VaultError> {
    identity
        .vault()
        .open_id_number(&person.id_number, &Person::id_number_context(&person.id))
        .await
}

/// Card binding's real-name facts, answered by the identity service.
pub struct IdentityRealNames {
    identity: Arc<IdentityService>,
    guardians: Arc<Guardianships>,
    clock: Arc<dyn Clock>,
}

impl IdentityRealNames {
    /// Real-name facts from this identity service.
    pub fn new(
        identity: Arc<IdentityService>,
        guardians: Arc<Guardianships>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            identity,
            guardians,
            clock,
        }
    }
}

#[async_trait]
impl RealNameCheck for IdentityRealNames {
    async fn account_holder(
        &self,
        platform: &Platform,
        account: &PlatformAccountId,
    ) -> Result<Option<PersonId>, PortError> {
        match self
            .identity
            .real_name_status(&citycard_core::Principal::System, account)
            .await
        {
            Ok(status) if status.platform == *platform && status.level.is_verified() => {
                Ok(status.person)
            }
            Ok(_) => Ok(None),
            Err(citycard_identity::IdentityError::AccountNotFound { .. }) => Ok(None),
            Err(e) => Err(port(e)),
        }
    }

    async fn id_number_is(
        &self,
        person: &PersonId,
        id_number: &Sensitive<String>,
    ) -> Result<bool, PortError> {
        let Ok(id) = IdNumber::parse(id_number.expose()) else {
            return Ok(false);
        };
        self.identity
            .id_number_belongs_to(person, &id)
            .await
            .map_err(port)
    }

    async fn guardian_required(&self, person: &PersonId) -> Result<bool, PortError> {
        let Some(record) = self
            .identity
            .person(&citycard_core::Principal::System, person)
            .await
            .map_err(port)?
        else {
            return Ok(false);
        };
        let today = civil_date(self.clock.now());
        let id = id_number_of(&self.identity, &record).await.map_err(port)?;
        Ok(id.age_on(today).is_some_and(|age| age < GUARDIAN_AGE))
    }

    async fn is_guardian_of(
        &self,
        guardian: &PersonId,
        ward: &PersonId,
    ) -> Result<bool, PortError> {
        Ok(self.guardians.is_guardian_of(guardian, ward))
    }
}

/// Card binding's blind index of ID numbers: identity's keyed HMAC.
///
/// A number that does not parse still gets an index (of its trimmed text),
/// which matches no card: the caller then answers "details do not match"
/// exactly as for a wrong but valid number.
pub struct VaultIdIndex {
    identity: Arc<IdentityService>,
}

impl VaultIdIndex {
    /// The index from this identity service's vault.
    pub fn new(identity: Arc<IdentityService>) -> Self {
        Self { identity }
    }
}

#[async_trait]
impl IdNumberIndex for VaultIdIndex {
    async fn blind_index(
        &self,
        id_number: &Sensitive<String>,
    ) -> Result<CardBlindIndex, PortError> {
        let vault = self.identity.vault();
        let index = match IdNumber::parse(id_number.expose()) {
            Ok(id) => vault.blind_index(&id).await,
            Err(_) => {
                vault
                    .keyed_digest(&[b"unparsed", id_number.expose().trim().as_bytes()])
                    .await
            }
        }
        .map_err(port)?;
        Ok(CardBlindIndex::new(index.to_hex()))
    }
}

/// Healthcare's patients: real-name facts from identity, cards from the
/// registry, insured category from social insurance, delegations checked by the
/// one [`GrantVerifier`] (card binding's stored grants).
pub struct Patients {
    identity: Arc<IdentityService>,
    cards: Arc<dyn CardStore>,
    grants: Arc<dyn GrantVerifier>,
    social: Arc<dyn SocialInsuranceRecords>,
    clock: Arc<dyn Clock>,
    card_format: CardNumberFormat,
}

impl Patients {
    /// The directory over these services and stores.
    pub fn new(
        identity: Arc<IdentityService>,
        cards: Arc<dyn CardStore>,
        grants: Arc<dyn GrantVerifier>,
        social: Arc<dyn SocialInsuranceRecords>,
        clock: Arc<dyn Clock>,
        card_format: CardNumberFormat,
    ) -> Self {
        Self {
            identity,
            cards,
            grants,
            social,
            clock,
            card_format,
        }
    }
}

/// A healthcare directory error chosen by the identity error's class:
/// retryable failures stay `Unavailable`, conflicts `Conflict`, and anything
/// else (which a system lookup should never meet) `Internal`.
fn store(e: impl ClassifiedError) -> StoreError {
    match e.class() {
        ErrorClass::Unavailable | ErrorClass::RateLimited => StoreError::Unavailable(e.to_string()),
        ErrorClass::Conflict => StoreError::Conflict(e.to_string()),
        _ => StoreError::Internal(e.to_string()),
    }
}

#[async_trait]
impl PatientDirectory for Patients {
    async fn resolve(
        &self,
        identifier: &PatientIdentifier,
    ) -> Result<Option<PersonId>, StoreError> {
        match identifier {
            PatientIdentifier::IdNumber(number) => {
                let Ok(id) = IdNumber::parse(number.expose()) else {
                    return Ok(None);
                };
                Ok(self
                    .identity
                    .find_person_by_id_number(&citycard_core::Principal::System, &id)
                    .await
                    .map_err(store)?
                    .map(|p| p.id))
            }
            // The citizen card doubles as the social security card.
            PatientIdentifier::SocialSecurityCard(number)
            | PatientIdentifier::CredentialToken(number) => {
                let Ok(number) = CardNumber::parse(number.expose(), &self.card_format) else {
                    return Ok(None);
                };
                Ok(self.cards.by_number(&number).await?.map(|c| c.holder))
            }
        }
    }

    async fn patient(&self, person: &PersonId) -> Result<Option<PatientRecord>, StoreError> {
        let Some(record) = self
            .identity
            .person(&citycard_core::Principal::System, person)
            .await
            .map_err(store)?
        else {
            return Ok(None);
        };
        let category = self.social.category(person).await?;
        let today = civil_date(self.clock.now());
        let person_type = match category {
            Some(PersonCategory::Employee | PersonCategory::FlexibleEmployment) => {
                Some(PersonType::EmployeeInService)
            }
            Some(PersonCategory::Retired) => Some(PersonType::Retired),
            Some(PersonCategory::Resident) => {
                let age = id_number_of(&self.identity, &record)
                    .await
                    .map_err(store)?
                    .age_on(today);
                Some(if age.is_some_and(|a| a < 18) {
                    PersonType::Student
                } else {
                    PersonType::Resident
                })
            }
            _ => None,
        };
        // A person the issuer enrolled at the counter had their documents checked.
        let has_card = !self.cards.by_holder(person).await?.is_empty();
        Ok(Some(PatientRecord {
            person: person.clone(),
            real_name_verified: record.level.is_verified() || has_card,
            person_type,
        }))
    }

    async fn delegate_allowed(
        &self,
        actor: &citycard_core::Principal,
        patient: &PersonId,
        scope: citycard_core::DelegationScope,
    ) -> Result<bool, StoreError> {
        if !matches!(actor, citycard_core::Principal::Delegate { .. }) {
            return Ok(false);
        }
        self.grants
            .verify(actor, patient, scope, self.clock.now())
            .await
    }
}
