//! What a real-name provider is asked and answers (the `RealNameVerifier`
//! port itself is in `ports.rs`), and a simulated provider backed by a
//! registry of known people.
//!
//! A provider answers a factor check with [`VerificationOutcome`] (match,
//! mismatch with the factor when known, no record, invalid input) or fails
//! with [`VerifierError`] (rate limited, unavailable: both retryable) — the
//! six outcomes of real providers. Face liveness is two calls: start a
//! session (the client app then does the face check with the provider) and
//! query its result on the server; a client-side "passed" is never trusted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use citycard_core::{ClassifiedError, ErrorClass, Mask, Sensitive};
use serde::{Deserialize, Serialize};

use crate::id_number::IdNumber;
use crate::ports::RealNameVerifier;

/// The extra factor of a three-factor check.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum ExtraFactor {
    /// Two-factor: name and ID number only.
    None,
    /// The phone number registered to the person (masked when printed).
    Phone(Sensitive<String>),
    /// A bank card number of the person (masked when printed).
    BankCard(Sensitive<String>),
}

impl ExtraFactor {
    /// The factor kind, if any.
    pub fn kind(&self) -> Option<Factor> {
        match self {
            ExtraFactor::None => None,
            ExtraFactor::Phone(_) => Some(Factor::Phone),
            ExtraFactor::BankCard(_) => Some(Factor::BankCard),
        }
    }
}

/// One factor of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Factor {
    /// The name.
    Name,
    /// The ID number.
    IdNumber,
    /// The phone number.
    Phone,
    /// The bank card.
    BankCard,
    /// The face.
    Face,
}

/// A factor check to send to the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactorCheck {
    /// The name as on the ID card (masked when printed).
    pub name: Sensitive<String>,
    /// The ID number, already validated locally.
    pub id_number: IdNumber,
    /// The third factor, if any.
    pub extra: ExtraFactor,
}

/// A definitive answer of the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
#[non_exhaustive]
pub enum VerificationOutcome {
    /// Every factor matched.
    Match,
    /// Some factor did not match; which one, if the provider says.
    Mismatch {
        /// The factor that did not match, when known.
        factor: Option<Factor>,
    },
    /// The provider has no record of this ID number.
    NoRecord,
    /// The provider refused the input as malformed (usually not billed).
    InvalidInput,
}

impl VerificationOutcome {
    /// A stable code.
    pub fn code(&self) -> &'static str {
        match self {
            VerificationOutcome::Match => "match",
            VerificationOutcome::Mismatch { .. } => "mismatch",
            VerificationOutcome::NoRecord => "no_record",
            VerificationOutcome::InvalidInput => "invalid_input",
        }
    }
}

/// A provider call that did not produce an answer; both are retryable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifierError {
    /// The provider throttled us.
    #[error("the real-name provider is rate limiting, retry later")]
    RateLimited,
    /// The provider could not be reached, or its answer was lost.
    #[error("the real-name provider is unavailable, retry later: {0}")]
    Unavailable(String),
    /// The face session id is unknown to the provider.
    #[error("the face check session is unknown or expired: start a new one")]
    UnknownSession,
}

impl ClassifiedError for VerifierError {
    fn class(&self) -> ErrorClass {
        match self {
            VerifierError::RateLimited => ErrorClass::RateLimited,
            VerifierError::Unavailable(_) => ErrorClass::Unavailable,
            VerifierError::UnknownSession => ErrorClass::NotFound,
        }
    }
}

/// A face liveness session opened with the provider.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FaceSession {
    /// The provider's session id; the client app uses it for the face check.
    pub session_id: String,
}

/// The server-side result of a face session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FaceResult {
    /// The client has not finished the check.
    Pending,
    /// The live face matched the ID photo.
    Passed,
    /// The face did not match or liveness failed.
    Failed,
    /// The provider has no photo for this ID number.
    NoRecord,
    /// The session expired before completion.
    Expired,
}

/// A person the simulated provider knows (its Debug masks every field).
#[derive(Clone, PartialEq, Eq)]
pub struct KnownPerson {
    /// Name as on the ID card.
    pub name: String,
    /// Registered phone numbers.
    pub phones: Vec<String>,
    /// Bank card numbers.
    pub bank_cards: Vec<String>,
    /// Whether the registry holds an ID photo (face checks need one).
    pub has_photo: bool,
}

impl std::fmt::Debug for KnownPerson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let phones: Vec<String> = self.phones.iter().map(|p| Mask::DEFAULT.apply(p)).collect();
        let cards: Vec<String> = self
            .bank_cards
            .iter()
            .map(|c| citycard_core::mask_card_number(c))
            .collect();
        f.debug_struct("KnownPerson")
            .field("name", &Mask::NAME.apply(&self.name))
            .field("phones", &phones)
            .field("bank_cards", &cards)
            .field("has_photo", &self.has_photo)
            .finish()
    }
}

impl KnownPerson {
    /// A known person with a name and a photo, no phones or cards.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            phones: Vec::new(),
            bank_cards: Vec::new(),
            has_photo: true,
        }
    }

    /// The same person with a phone number.
    pub fn with_phone(mut self, phone: &str) -> Self {
        self.phones.push(phone.to_owned());
        self
    }

    /// The same person with a bank card.
    pub fn with_bank_card(mut self, card: &str) -> Self {
        self.bank_cards.push(card.to_owned());
        self
    }
}

struct SimSession {
    id_number: [u8; 18],
    name: String,
    result: FaceResult,
}

/// A simulated provider backed by a registry of known people, for tests and
/// the demo. Face sessions stay pending until [`SimulatedVerifier::finish_face_check`]
/// plays the client's part.
pub struct SimulatedVerifier {
    people: Mutex<HashMap<[u8; 18], KnownPerson>>,
    sessions: Mutex<HashMap<String, SimSession>>,
    next_session: AtomicU64,
    factor_calls: AtomicU64,
}

impl std::fmt::Debug for SimulatedVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedVerifier")
            .field("calls", &self.factor_calls())
            .finish()
    }
}

impl Default for SimulatedVerifier {
    fn default() -> Self {
        Self::new()
    }
}

fn key_of(id: &IdNumber) -> [u8; 18] {
    let mut out = [0u8; 18];
    out.copy_from_slice(id.reveal().as_bytes());
    out
}

impl SimulatedVerifier {
    /// An empty registry.
    pub fn new() -> Self {
        Self {
            people: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            factor_calls: AtomicU64::new(0),
        }
    }

    /// Registers a person under an ID number.
    pub fn register(&self, id_number: &IdNumber, person: KnownPerson) {
        self.people
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key_of(id_number), person);
    }

    /// How many factor checks were made (tests assert the provider was not called).
    pub fn factor_calls(&self) -> u64 {
        self.factor_calls.load(Ordering::Relaxed)
    }

    /// Plays the client's face check: `live_face_matches` says whether the
    /// person in front of the camera is the registered one.
    pub fn finish_face_check(&self, session_id: &str, live_face_matches: bool) -> bool {
        let people = self.people.lock().unwrap_or_else(|e| e.into_inner());
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let Some(session) = sessions.get_mut(session_id) else {
            return false;
        };
        session.result = match people.get(&session.id_number) {
            Some(p) if p.has_photo && p.name == session.name && live_face_matches => {
                FaceResult::Passed
            }
            Some(p) if p.has_photo => FaceResult::Failed,
            _ => FaceResult::NoRecord,
        };
        true
    }

    /// Expires a face session.
    pub fn expire_face_session(&self, session_id: &str) {
        if let Some(s) = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(session_id)
        {
            s.result = FaceResult::Expired;
        }
    }
}

#[async_trait]
impl RealNameVerifier for SimulatedVerifier {
    async fn check_factors(
        &self,
        check: &FactorCheck,
    ) -> Result<VerificationOutcome, VerifierError> {
        self.factor_calls.fetch_add(1, Ordering::Relaxed);
        let name = check.name.expose().trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Ok(VerificationOutcome::InvalidInput);
        }
        let people = self.people.lock().unwrap_or_else(|e| e.into_inner());
        let Some(person) = people.get(&key_of(&check.id_number)) else {
            return Ok(VerificationOutcome::NoRecord);
        };
        if person.name != name {
            return Ok(VerificationOutcome::Mismatch {
                factor: Some(Factor::Name),
            });
        }
        let extra_ok = match &check.extra {
            ExtraFactor::None => true,
            ExtraFactor::Phone(p) => person.phones.iter().any(|x| x == p.expose()),
            ExtraFactor::BankCard(c) => person.bank_cards.iter().any(|x| x == c.expose()),
        };
        if extra_ok {
            Ok(VerificationOutcome::Match)
        } else {
            Ok(VerificationOutcome::Mismatch {
                factor: check.extra.kind(),
            })
        }
    }

    async fn start_face_session(
        &self,
        name: &Sensitive<String>,
        id_number: &IdNumber,
    ) -> Result<FaceSession, VerifierError> {
        let n = self.next_session.fetch_add(1, Ordering::Relaxed);
        let session_id = format!("face-{n:06}");
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                session_id.clone(),
                SimSession {
                    id_number: key_of(id_number),
                    name: name.expose().trim().to_owned(),
                    result: FaceResult::Pending,
                },
            );
        Ok(FaceSession { session_id })
    }

    async fn face_result(&self, session_id: &str) -> Result<FaceResult, VerifierError> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(session_id)
            .map(|s| s.result)
            .ok_or(VerifierError::UnknownSession)
    }
}

/// A name as entered: trimmed, masked when printed.
pub fn sensitive_name(name: &str) -> Sensitive<String> {
    Sensitive::with_mask(name.trim().to_owned(), Mask::NAME)
}
