//! Ride codes (乘车码): issuer keys, user credentials and signed code payloads.
//!
//! The issuer certifies a user's public key for one card and a validity
//! period (a [`Credential`]); the phone signs each code with the user's key.
//! A reader holds only the issuer's public keys ([`IssuerPublicKey`]) and
//! verifies both signatures offline (see [`crate::reader`]).
//!
//! SM2 (GB/T 32918, with SM3) is the default algorithm; Ed25519 is available
//! behind the `ed25519` feature. Key ids are `u32`; rotation adds a key with
//! the next id, new credentials are certified with it, and older public keys
//! stay on readers until their own validity ends.
//!
//! # Payload, version 1 (big-endian integers)
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version (1) |
//! | 1 | algorithm (1 = SM2, 2 = Ed25519) |
//! | 4 | issuer key id |
//! | 33 / 32 | user public key (SM2 compressed SEC1 / Ed25519) |
//! | 8 | card reference |
//! | 4 | credential valid from (Unix seconds) |
//! | 4 | credential valid until (Unix seconds) |
//! | 64 | issuer signature over all bytes above |
//! | 4 | code timestamp (Unix seconds) |
//! | 4 | counter |
//! | 64 | user signature over all bytes above |
//!
//! 191 bytes with SM2, 190 with Ed25519; base64url text of 255 / 254 characters.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use sm2::dsa::signature::{Signer, Verifier};
use sm2::elliptic_curve::sec1::ToEncodedPoint;

use crate::error::TransitError;
use crate::taps::CardRef;

/// The payload version this crate writes and reads.
pub const VERSION: u8 = 1;
/// The SM2 distinguishing identifier used for ride-code signatures.
pub const SM2_DISTID: &str = "citycard-ride-code";
const SIG: usize = 64;

/// A signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// SM2 with SM3 (the national standard).
    Sm2,
    /// Ed25519 (feature `ed25519`).
    Ed25519,
}

impl Algorithm {
    /// The payload code.
    pub fn code(self) -> u8 {
        match self {
            Algorithm::Sm2 => 1,
            Algorithm::Ed25519 => 2,
        }
    }

    /// The algorithm for a payload code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Algorithm::Sm2),
            2 => Some(Algorithm::Ed25519),
            _ => None,
        }
    }

    /// Length of a public key.
    pub fn public_key_len(self) -> usize {
        match self {
            Algorithm::Sm2 => 33,
            Algorithm::Ed25519 => 32,
        }
    }

    /// Length of a whole payload.
    pub fn payload_len(self) -> usize {
        6 + self.public_key_len() + 16 + SIG + 8 + SIG
    }
}

/// A private signing key (issuer or user). Its Debug shows only the algorithm.
#[derive(Clone)]
pub enum SigningKey {
    /// SM2.
    Sm2(Box<sm2::dsa::SigningKey>),
    /// Ed25519.
    #[cfg(feature = "ed25519")]
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({:?}, secret hidden)", self.algorithm())
    }
}

impl SigningKey {
    /// A fresh random key.
    pub fn generate(algorithm: Algorithm) -> Result<Self, TransitError> {
        match algorithm {
            Algorithm::Sm2 => {
                let secret = sm2::SecretKey::random(&mut OsRng);
                let key = sm2::dsa::SigningKey::new(SM2_DISTID, &secret)
                    .map_err(|e| TransitError::Code(format!("sm2 key: {e}")))?;
                Ok(SigningKey::Sm2(Box::new(key)))
            }
            #[cfg(feature = "ed25519")]
            Algorithm::Ed25519 => Ok(SigningKey::Ed25519(Box::new(
                ed25519_dalek::SigningKey::generate(&mut OsRng),
            ))),
            #[cfg(not(feature = "ed25519"))]
            Algorithm::Ed25519 => Err(TransitError::Code(
                "ed25519 needs the `ed25519` feature of citycard-transit".into(),
            )),
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            SigningKey::Sm2(_) => Algorithm::Sm2,
            #[cfg(feature = "ed25519")]
            SigningKey::Ed25519(_) => Algorithm::Ed25519,
        }
    }

    /// The public key bytes (SM2 compressed SEC1, or Ed25519).
    pub fn public_key(&self) -> Vec<u8> {
        match self {
            SigningKey::Sm2(k) => k
                .verifying_key()
                .as_affine()
                .to_encoded_point(true)
                .as_bytes()
                .to_vec(),
            #[cfg(feature = "ed25519")]
            SigningKey::Ed25519(k) => k.verifying_key().to_bytes().to_vec(),
        }
    }

    /// The secret scalar / seed, for the host to keep in its key store.
    pub fn to_secret_bytes(&self) -> SecretKeyBytes {
        match self {
            SigningKey::Sm2(k) => SecretKeyBytes(k.to_bytes().to_vec()),
            #[cfg(feature = "ed25519")]
            SigningKey::Ed25519(k) => SecretKeyBytes(k.to_bytes().to_vec()),
        }
    }

    /// A key from bytes written by [`SigningKey::to_secret_bytes`].
    pub fn from_secret_bytes(
        algorithm: Algorithm,
        bytes: &SecretKeyBytes,
    ) -> Result<Self, TransitError> {
        let bad = || TransitError::Code("secret key bytes are not a valid key".into());
        match algorithm {
            Algorithm::Sm2 => sm2::dsa::SigningKey::from_slice(SM2_DISTID, &bytes.0)
                .map(|k| SigningKey::Sm2(Box::new(k)))
                .map_err(|_| bad()),
            #[cfg(feature = "ed25519")]
            Algorithm::Ed25519 => {
                let arr: [u8; 32] = bytes.0.as_slice().try_into().map_err(|_| bad())?;
                Ok(SigningKey::Ed25519(Box::new(
                    ed25519_dalek::SigningKey::from_bytes(&arr),
                )))
            }
            #[cfg(not(feature = "ed25519"))]
            Algorithm::Ed25519 => Err(TransitError::Code(
                "ed25519 needs the `ed25519` feature of citycard-transit".into(),
            )),
        }
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; SIG], TransitError> {
        match self {
            SigningKey::Sm2(k) => {
                let sig: sm2::dsa::Signature = k
                    .try_sign(message)
                    .map_err(|e| TransitError::Code(format!("sm2 signing failed: {e}")))?;
                Ok(sig.to_bytes())
            }
            #[cfg(feature = "ed25519")]
            SigningKey::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                Ok(k.sign(message).to_bytes())
            }
        }
    }
}

/// Secret key material; its Debug never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKeyBytes(Vec<u8>);

impl SecretKeyBytes {
    /// Wraps secret bytes (from the host's key store).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The bytes; keep them out of logs.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretKeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKeyBytes({} bytes, hidden)", self.0.len())
    }
}

/// A parsed public key ready to verify.
#[derive(Clone, Debug)]
pub enum VerifyingKey {
    /// SM2.
    Sm2(Box<sm2::dsa::VerifyingKey>),
    /// Ed25519.
    #[cfg(feature = "ed25519")]
    Ed25519(Box<ed25519_dalek::VerifyingKey>),
}

impl VerifyingKey {
    /// Parses public key bytes of an algorithm.
    pub fn parse(algorithm: Algorithm, bytes: &[u8]) -> Option<Self> {
        match algorithm {
            Algorithm::Sm2 => sm2::dsa::VerifyingKey::from_sec1_bytes(SM2_DISTID, bytes)
                .ok()
                .map(|k| VerifyingKey::Sm2(Box::new(k))),
            #[cfg(feature = "ed25519")]
            Algorithm::Ed25519 => {
                let arr: [u8; 32] = bytes.try_into().ok()?;
                ed25519_dalek::VerifyingKey::from_bytes(&arr)
                    .ok()
                    .map(|k| VerifyingKey::Ed25519(Box::new(k)))
            }
            #[cfg(not(feature = "ed25519"))]
            Algorithm::Ed25519 => None,
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            VerifyingKey::Sm2(_) => Algorithm::Sm2,
            #[cfg(feature = "ed25519")]
            VerifyingKey::Ed25519(_) => Algorithm::Ed25519,
        }
    }

    /// Whether `signature` is valid for `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = <[u8; SIG]>::try_from(signature) else {
            return false;
        };
        match self {
            VerifyingKey::Sm2(k) => {
                sm2::dsa::Signature::from_bytes(&sig).is_ok_and(|s| k.verify(message, &s).is_ok())
            }
            #[cfg(feature = "ed25519")]
            VerifyingKey::Ed25519(k) => k
                .verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig))
                .is_ok(),
        }
    }
}

/// An issuer public key as distributed to readers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuerPublicKey {
    /// The key id.
    pub key_id: u32,
    /// The algorithm.
    pub algorithm: Algorithm,
    /// The public key bytes.
    pub public_key: Vec<u8>,
    /// Credentials certified by it are accepted from this time.
    pub valid_from: DateTime<Utc>,
    /// ... until this time (the key is retired after it).
    pub valid_until: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct IssuerKey {
    public: IssuerPublicKey,
    secret: SigningKey,
}

/// The issuer's keys: the newest certifies new credentials; all are published to readers.
#[derive(Debug, Clone, Default)]
pub struct Issuer {
    keys: Vec<IssuerKey>,
}

fn secs(at: DateTime<Utc>) -> Result<u32, TransitError> {
    u32::try_from(at.timestamp()).map_err(|_| TransitError::Code("time outside 1970–2106".into()))
}

impl Issuer {
    /// An issuer with no keys yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a new key (the next key id) and makes it current; returns its id.
    pub fn rotate(
        &mut self,
        algorithm: Algorithm,
        valid_from: DateTime<Utc>,
        valid_until: DateTime<Utc>,
    ) -> Result<u32, TransitError> {
        let secret = SigningKey::generate(algorithm)?;
        let key_id = self
            .keys
            .iter()
            .map(|k| k.public.key_id)
            .max()
            .map_or(1, |m| m + 1);
        self.keys.push(IssuerKey {
            public: IssuerPublicKey {
                key_id,
                algorithm,
                public_key: secret.public_key(),
                valid_from,
                valid_until,
            },
            secret,
        });
        tracing::info!(key_id, ?algorithm, "issuer key rotated");
        Ok(key_id)
    }

    /// Every key with its secret, for the host's key store (oldest first).
    pub fn export(&self) -> Vec<(IssuerPublicKey, SecretKeyBytes)> {
        self.keys
            .iter()
            .map(|k| (k.public.clone(), k.secret.to_secret_bytes()))
            .collect()
    }

    /// An issuer from exported keys; the last one is current. Each secret must match its public key.
    pub fn import(keys: Vec<(IssuerPublicKey, SecretKeyBytes)>) -> Result<Self, TransitError> {
        let mut out = Vec::with_capacity(keys.len());
        for (public, secret) in keys {
            let secret = SigningKey::from_secret_bytes(public.algorithm, &secret)?;
            if secret.public_key() != public.public_key {
                return Err(TransitError::Code(format!(
                    "the secret of issuer key {} does not match its public key",
                    public.key_id
                )));
            }
            out.push(IssuerKey { public, secret });
        }
        Ok(Self { keys: out })
    }

    /// The current key id.
    pub fn current_key_id(&self) -> Option<u32> {
        self.keys.last().map(|k| k.public.key_id)
    }

    /// Every public key, for readers.
    pub fn public_keys(&self) -> Vec<IssuerPublicKey> {
        self.keys.iter().map(|k| k.public.clone()).collect()
    }

    /// Certifies a user's public key for a card and a validity period, with the current key.
    pub fn certify(
        &self,
        user_public_key: &[u8],
        card: CardRef,
        valid_from: DateTime<Utc>,
        valid_until: DateTime<Utc>,
    ) -> Result<Credential, TransitError> {
        let key = self.keys.last().ok_or_else(|| {
            TransitError::Code("the issuer has no key: rotate one in first".into())
        })?;
        let alg = key.public.algorithm;
        if user_public_key.len() != alg.public_key_len()
            || VerifyingKey::parse(alg, user_public_key).is_none()
        {
            return Err(TransitError::Code(
                "the user public key is not a valid key of the issuer's algorithm".into(),
            ));
        }
        if valid_until <= valid_from {
            return Err(TransitError::Code(
                "a credential must end after it starts".into(),
            ));
        }
        let mut bytes = Vec::with_capacity(alg.payload_len());
        bytes.push(VERSION);
        bytes.push(alg.code());
        bytes.extend_from_slice(&key.public.key_id.to_be_bytes());
        bytes.extend_from_slice(user_public_key);
        bytes.extend_from_slice(&card.0.to_be_bytes());
        bytes.extend_from_slice(&secs(valid_from)?.to_be_bytes());
        bytes.extend_from_slice(&secs(valid_until)?.to_be_bytes());
        let sig = key.secret.sign(&bytes)?;
        bytes.extend_from_slice(&sig);
        Ok(Credential { bytes })
    }
}

/// A user's public key certified by the issuer for one card and a period (the first part of every code).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    bytes: Vec<u8>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential({} bytes)", self.bytes.len())
    }
}

impl Credential {
    /// The encoded credential (header included).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// A phone's ride-code generator: the user's key, its credential and a counter.
#[derive(Debug, Clone)]
pub struct RideCodeWallet {
    key: SigningKey,
    credential: Credential,
    counter: u32,
}

impl RideCodeWallet {
    /// A wallet from a user key and the credential certifying it.
    pub fn new(key: SigningKey, credential: Credential) -> Result<Self, TransitError> {
        let alg = key.algorithm();
        let pk = key.public_key();
        let start = 6;
        if credential.bytes.get(1) != Some(&alg.code())
            || credential.bytes.get(start..start + pk.len()) != Some(pk.as_slice())
        {
            return Err(TransitError::Code(
                "the credential does not certify this key".into(),
            ));
        }
        Ok(Self {
            key,
            credential,
            counter: 0,
        })
    }

    /// Signs a new code for this instant; each call uses the next counter value.
    pub fn generate(&mut self, now: DateTime<Utc>) -> Result<RideCode, TransitError> {
        self.counter = self.counter.wrapping_add(1);
        let mut bytes = Vec::with_capacity(self.key.algorithm().payload_len());
        bytes.extend_from_slice(&self.credential.bytes);
        bytes.extend_from_slice(&secs(now)?.to_be_bytes());
        bytes.extend_from_slice(&self.counter.to_be_bytes());
        let sig = self.key.sign(&bytes)?;
        bytes.extend_from_slice(&sig);
        Ok(RideCode { bytes })
    }
}

/// A signed ride code payload.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RideCode {
    bytes: Vec<u8>,
}

impl fmt::Debug for RideCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RideCode({} bytes)", self.bytes.len())
    }
}

impl RideCode {
    /// The binary payload (what the QR code carries).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// A code from raw bytes (not verified).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self { bytes }
    }

    /// The payload as base64url text without padding.
    pub fn to_text(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.bytes)
    }

    /// Reads base64url text (not verified).
    pub fn from_text(text: &str) -> Result<Self, TransitError> {
        URL_SAFE_NO_PAD
            .decode(text.trim())
            .map(|bytes| Self { bytes })
            .map_err(|e| TransitError::Code(format!("not base64url: {e}")))
    }
}

/// The fields of a payload, parsed but not yet verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedCode<'a> {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// The issuer key id.
    pub issuer_key_id: u32,
    /// The credential bytes without the issuer signature.
    pub credential_body: &'a [u8],
    /// The issuer signature.
    pub issuer_signature: &'a [u8],
    /// The whole credential (body and signature).
    pub credential: &'a [u8],
    /// The user public key.
    pub user_key: &'a [u8],
    /// The card.
    pub card: CardRef,
    /// Credential validity start (Unix seconds).
    pub valid_from: u32,
    /// Credential validity end (Unix seconds).
    pub valid_until: u32,
    /// When the code was made (Unix seconds).
    pub timestamp: u32,
    /// The counter.
    pub counter: u32,
    /// Everything the user signed.
    pub signed: &'a [u8],
    /// The user signature.
    pub signature: &'a [u8],
}

/// Why a payload could not even be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseFailure {
    /// Not version 1.
    Version,
    /// Wrong length or unknown algorithm.
    Malformed,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Splits a payload into its fields without verifying anything.
pub fn parse(bytes: &[u8]) -> Result<ParsedCode<'_>, ParseFailure> {
    match bytes.first() {
        Some(&VERSION) => {}
        Some(_) => return Err(ParseFailure::Version),
        None => return Err(ParseFailure::Malformed),
    }
    let algorithm = bytes
        .get(1)
        .and_then(|c| Algorithm::from_code(*c))
        .ok_or(ParseFailure::Malformed)?;
    if bytes.len() != algorithm.payload_len() {
        return Err(ParseFailure::Malformed);
    }
    let pk = algorithm.public_key_len();
    let m = ParseFailure::Malformed;
    let issuer_key_id = be32(bytes, 2).ok_or(m)?;
    let card_at = 6 + pk;
    let card = u64::from_be_bytes(
        bytes
            .get(card_at..card_at + 8)
            .ok_or(m)?
            .try_into()
            .map_err(|_| m)?,
    );
    let body_end = card_at + 16;
    let cred_end = body_end + SIG;
    let sig_at = cred_end + 8;
    Ok(ParsedCode {
        algorithm,
        issuer_key_id,
        credential_body: bytes.get(..body_end).ok_or(m)?,
        issuer_signature: bytes.get(body_end..cred_end).ok_or(m)?,
        credential: bytes.get(..cred_end).ok_or(m)?,
        user_key: bytes.get(6..card_at).ok_or(m)?,
        card: CardRef(card),
        valid_from: be32(bytes, card_at + 8).ok_or(m)?,
        valid_until: be32(bytes, card_at + 12).ok_or(m)?,
        timestamp: be32(bytes, cred_end).ok_or(m)?,
        counter: be32(bytes, cred_end + 4).ok_or(m)?,
        signed: bytes.get(..sig_at).ok_or(m)?,
        signature: bytes.get(sig_at..).ok_or(m)?,
    })
}
