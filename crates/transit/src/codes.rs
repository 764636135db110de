//! Ride codes (乘车码): issuer keys, user credentials and signed code payloads.
//!
//! Longer than ≈800 lines: the credential and code byte layouts, their
//! writers and their readers are kept in one file so that a format change is
//! made in one place.
//!
//! The issuer certifies a user's public key for one card and a validity
//! period (a [`Credential`]); the phone signs each code with the user's key.
//! A reader holds only the issuer's public keys ([`IssuerPublicKey`]) and
//! verifies both signatures offline (see [`crate::reader`]).
//!
//! SM2 (GB/T 32918, with SM3) is the default algorithm; Ed25519 is available
//! behind the `ed25519` feature.
//!
//! **Key ids identify the issuer.** A key id is the issuer id (high 16 bits,
//! assigned to each issuer by the clearing body) and the issuer's key number
//! (low 16 bits, from 1). Rotation adds a key with the next number, new
//! credentials are certified with it, and older public keys stay on readers
//! until their own validity ends. A reader that holds no key of a code's key
//! id answers "wrong issuer", never "tampered".
//!
//! **Card references are keyed and rotate.** The 8-byte card field of a
//! credential is not the card: it is the card's [`CardRef`] enciphered with
//! a keyed 64-bit permutation (an 8-round Feistel network whose round
//! function is HMAC-SHA256 under a reference key derived from the issuer
//! key's secret), tweaked with the credential's key id and validity. Every
//! credential of a card therefore carries another reference, nobody without
//! the issuer secret can link two credentials or recover the card, and the
//! back office maps a reference back to the card with [`Issuer::card_of`] (or
//! [`Issuer::resolve_taps`]) without keeping a table. Readers never need the
//! card: their deny list holds references. The back office records each
//! credential it certifies ([`crate::IssuedCredential`] in the
//! [`crate::TransitStore`]) and builds readers' lists with
//! [`crate::reader_deny_list`]; [`Issuer::reference_of`] recomputes one.
//!
//! The byte layout (version 2) is documented for gate vendors in the crate's
//! `README.md` ("Ride-code QR payload").

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sm2::dsa::signature::{Signer, Verifier};
use sm2::elliptic_curve::sec1::ToEncodedPoint;
use zeroize::{Zeroize, Zeroizing};

use crate::error::TransitError;
use crate::taps::{CardRef, CodeUse, Tap};

/// The payload version this crate writes and reads (2: issuer id in the key
/// id, keyed card reference; version 1 had neither).
pub const VERSION: u8 = 2;
/// The rounds of the card-reference permutation.
const REFERENCE_ROUNDS: u8 = 8;
const REFERENCE_LABEL: &[u8] = b"citycard/ride-code/card-reference/v1";

/// The issuer id of a key id (its high 16 bits).
pub fn issuer_of_key(key_id: u32) -> u16 {
    (key_id >> 16) as u16
}

/// A key id from an issuer id and the issuer's key number.
pub fn key_id(issuer: u16, number: u16) -> u32 {
    (u32::from(issuer) << 16) | u32::from(number)
}
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
            SigningKey::Sm2(k) => {
                let mut bytes = k.to_bytes();
                let out = SecretKeyBytes::new(bytes.to_vec());
                bytes.as_mut_slice().zeroize();
                out
            }
            #[cfg(feature = "ed25519")]
            SigningKey::Ed25519(k) => SecretKeyBytes::new(Zeroizing::new(k.to_bytes()).to_vec()),
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
                let arr: Zeroizing<[u8; 32]> =
                    Zeroizing::new(bytes.0.as_slice().try_into().map_err(|_| bad())?);
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

/// Secret key material; zeroized on drop, and its Debug never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKeyBytes(Zeroizing<Vec<u8>>);

impl SecretKeyBytes {
    /// Wraps secret bytes (from the host's key store).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
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
    /// The key id (issuer id in the high 16 bits, key number in the low 16).
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

impl IssuerPublicKey {
    /// The issuer this key belongs to.
    pub fn issuer_id(&self) -> u16 {
        issuer_of_key(self.key_id)
    }
}

/// The secret of the card-reference permutation, derived from an issuer key's
/// secret; zeroized on drop, never printed.
#[derive(Clone)]
struct ReferenceKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for ReferenceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReferenceKey(hidden)")
    }
}

fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; the fallback is unreachable.
    <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()))
}

impl ReferenceKey {
    fn derive(secret: &SigningKey) -> Self {
        let bytes = secret.to_secret_bytes();
        let mut mac = hmac_sha256(bytes.expose());
        mac.update(REFERENCE_LABEL);
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&mac.finalize().into_bytes());
        Self(out)
    }

    /// One Feistel round: the keyed HMAC state is cloned, not re-keyed, per round.
    fn round(keyed: &Hmac<Sha256>, round: u8, tweak: &[u8; 12], half: u32) -> u32 {
        let mut mac = keyed.clone();
        mac.update(&[round]);
        mac.update(tweak);
        mac.update(&half.to_be_bytes());
        let out = mac.finalize().into_bytes();
        u32::from_be_bytes([out[0], out[1], out[2], out[3]])
    }

    fn encipher(&self, tweak: &[u8; 12], value: u64) -> u64 {
        let keyed = hmac_sha256(self.0.as_slice());
        let (mut l, mut r) = ((value >> 32) as u32, value as u32);
        for i in 0..REFERENCE_ROUNDS {
            let f = Self::round(&keyed, i, tweak, r);
            (l, r) = (r, l ^ f);
        }
        (u64::from(l) << 32) | u64::from(r)
    }

    fn decipher(&self, tweak: &[u8; 12], value: u64) -> u64 {
        let keyed = hmac_sha256(self.0.as_slice());
        let (mut l, mut r) = ((value >> 32) as u32, value as u32);
        for i in (0..REFERENCE_ROUNDS).rev() {
            let f = Self::round(&keyed, i, tweak, l);
            (l, r) = (r ^ f, l);
        }
        (u64::from(l) << 32) | u64::from(r)
    }
}

fn reference_tweak(key_id: u32, valid_from: u32, valid_until: u32) -> [u8; 12] {
    let mut t = [0u8; 12];
    t[..4].copy_from_slice(&key_id.to_be_bytes());
    t[4..8].copy_from_slice(&valid_from.to_be_bytes());
    t[8..].copy_from_slice(&valid_until.to_be_bytes());
    t
}

#[derive(Debug, Clone)]
struct IssuerKey {
    public: IssuerPublicKey,
    secret: SigningKey,
    reference: ReferenceKey,
}

impl IssuerKey {
    fn new(public: IssuerPublicKey, secret: SigningKey) -> Self {
        let reference = ReferenceKey::derive(&secret);
        Self {
            public,
            secret,
            reference,
        }
    }
}

/// The issuer's keys: the newest certifies new credentials; all are published to readers.
#[derive(Debug, Clone)]
pub struct Issuer {
    issuer_id: u16,
    keys: Vec<IssuerKey>,
}

fn secs(at: DateTime<Utc>) -> Result<u32, TransitError> {
    u32::try_from(at.timestamp()).map_err(|_| TransitError::Code("time outside 1970–2106".into()))
}

impl Issuer {
    /// An issuer with no keys yet. `issuer_id` is the number the clearing
    /// body assigned to this issuer; two issuers must never share one.
    pub fn new(issuer_id: u16) -> Self {
        Self {
            issuer_id,
            keys: Vec::new(),
        }
    }

    /// The issuer id (the high 16 bits of every key id).
    pub fn issuer_id(&self) -> u16 {
        self.issuer_id
    }

    /// Adds a new key (the next key number) and makes it current; returns its key id.
    pub fn rotate(
        &mut self,
        algorithm: Algorithm,
        valid_from: DateTime<Utc>,
        valid_until: DateTime<Utc>,
    ) -> Result<u32, TransitError> {
        let number = match self.keys.iter().map(|k| k.public.key_id as u16).max() {
            None => 1,
            Some(u16::MAX) => {
                return Err(TransitError::Code(
                    "the issuer has used all 65535 key numbers: retire the issuer id and use a new one".into(),
                ));
            }
            Some(n) => n + 1,
        };
        let secret = SigningKey::generate(algorithm)?;
        let key_id = key_id(self.issuer_id, number);
        self.keys.push(IssuerKey::new(
            IssuerPublicKey {
                key_id,
                algorithm,
                public_key: secret.public_key(),
                valid_from,
                valid_until,
            },
            secret,
        ));
        tracing::info!(
            key_id,
            issuer = self.issuer_id,
            ?algorithm,
            "issuer key rotated"
        );
        Ok(key_id)
    }

    /// Every key with its secret, for the host's key store (oldest first).
    pub fn export(&self) -> Vec<(IssuerPublicKey, SecretKeyBytes)> {
        self.keys
            .iter()
            .map(|k| (k.public.clone(), k.secret.to_secret_bytes()))
            .collect()
    }

    /// An issuer from exported keys; the last one is current. Each secret must
    /// match its public key, and every key must carry the same issuer id.
    pub fn import(keys: Vec<(IssuerPublicKey, SecretKeyBytes)>) -> Result<Self, TransitError> {
        let issuer_id = keys
            .first()
            .map(|(public, _)| public.issuer_id())
            .ok_or_else(|| TransitError::Code("no issuer keys to import".into()))?;
        let mut out = Vec::with_capacity(keys.len());
        for (public, secret) in keys {
            if public.issuer_id() != issuer_id {
                return Err(TransitError::Code(format!(
                    "issuer key {} belongs to issuer {}, not {issuer_id}: import each issuer's keys separately",
                    public.key_id,
                    public.issuer_id()
                )));
            }
            let secret = SigningKey::from_secret_bytes(public.algorithm, &secret)?;
            if secret.public_key() != public.public_key {
                return Err(TransitError::Code(format!(
                    "the secret of issuer key {} does not match its public key",
                    public.key_id
                )));
            }
            out.push(IssuerKey::new(public, secret));
        }
        Ok(Self {
            issuer_id,
            keys: out,
        })
    }

    /// The current key id.
    pub fn current_key_id(&self) -> Option<u32> {
        self.keys.last().map(|k| k.public.key_id)
    }

    /// Every public key, for readers.
    pub fn public_keys(&self) -> Vec<IssuerPublicKey> {
        self.keys.iter().map(|k| k.public.clone()).collect()
    }

    fn key(&self, key_id: u32) -> Option<&IssuerKey> {
        self.keys.iter().find(|k| k.public.key_id == key_id)
    }

    /// The reference a credential of `card` carries: under key `key_id`, for
    /// the validity `valid_from`..`valid_until` (Unix seconds). The back office
    /// uses it to put a card's live credentials on readers' deny lists.
    pub fn reference_of(
        &self,
        card: CardRef,
        key_id: u32,
        valid_from: u32,
        valid_until: u32,
    ) -> Option<CardRef> {
        let key = self.key(key_id)?;
        let tweak = reference_tweak(key_id, valid_from, valid_until);
        Some(CardRef(key.reference.encipher(&tweak, card.0)))
    }

    /// The card behind a code's reference (the inverse of [`Issuer::reference_of`]);
    /// `None` when the key is not this issuer's.
    pub fn card_of(&self, code: &CodeUse) -> Option<CardRef> {
        let key = self.key(code.key_id)?;
        let tweak = reference_tweak(code.key_id, code.valid_from, code.valid_until);
        Some(CardRef(key.reference.decipher(&tweak, code.reference.0)))
    }

    /// Maps the reference of every ride-code tap back to its card (taps
    /// without a code are left as they are). Idempotent: the card is always
    /// computed from the reference the tap's code use keeps. Returns the
    /// taps whose key is not this issuer's; they are left unchanged.
    pub fn resolve_taps(&self, taps: &mut [Tap]) -> u64 {
        let mut foreign = 0;
        // A credential's taps (in and out, several rides) share one reference.
        let mut known: crate::fasthash::FxHashMap<(u32, CardRef, u32, u32), CardRef> =
            crate::fasthash::FxHashMap::default();
        for tap in taps.iter_mut() {
            if let Some(code) = &tap.code {
                let credential = (
                    code.key_id,
                    code.reference,
                    code.valid_from,
                    code.valid_until,
                );
                let card = match known.get(&credential) {
                    Some(card) => Some(*card),
                    None => self.card_of(code).inspect(|card| {
                        known.insert(credential, *card);
                    }),
                };
                match card {
                    Some(card) => tap.card = card,
                    None => foreign += 1,
                }
            }
        }
        foreign
    }

    /// Certifies a user's public key for a card and a validity period, with the current key.
    ///
    /// The credential carries the card's keyed reference for this key and
    /// period, never the card itself.
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
        let (from, until) = (secs(valid_from)?, secs(valid_until)?);
        let tweak = reference_tweak(key.public.key_id, from, until);
        let reference = key.reference.encipher(&tweak, card.0);
        let mut bytes = Vec::with_capacity(alg.payload_len());
        bytes.push(VERSION);
        bytes.push(alg.code());
        bytes.extend_from_slice(&key.public.key_id.to_be_bytes());
        bytes.extend_from_slice(user_public_key);
        bytes.extend_from_slice(&reference.to_be_bytes());
        bytes.extend_from_slice(&from.to_be_bytes());
        bytes.extend_from_slice(&until.to_be_bytes());
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

    /// The issuer key id that certified it (`None` when the bytes are too short).
    pub fn key_id(&self) -> Option<u32> {
        be32(&self.bytes, 2)
    }

    /// The keyed card reference it carries (`None` when the bytes are not a credential).
    pub fn reference(&self) -> Option<CardRef> {
        let algorithm = Algorithm::from_code(*self.bytes.get(1)?)?;
        let at = 6 + algorithm.public_key_len();
        let bytes: [u8; 8] = self.bytes.get(at..at + 8)?.try_into().ok()?;
        Some(CardRef(u64::from_be_bytes(bytes)))
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
        if credential.bytes.first() != Some(&VERSION) {
            return Err(TransitError::Code(format!(
                "the credential is not of payload version {VERSION}: certify the key again"
            )));
        }
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
    /// The card's keyed reference for this credential (not the card itself).
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

impl ParsedCode<'_> {
    /// What identifies this use of a code (carried in the tap).
    pub fn code_use(&self) -> CodeUse {
        CodeUse {
            key_id: self.issuer_key_id,
            reference: self.card,
            valid_from: self.valid_from,
            valid_until: self.valid_until,
            timestamp: self.timestamp,
            counter: self.counter,
        }
    }
}

/// Why a payload could not even be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseFailure {
    /// Not the version this crate reads ([`VERSION`]).
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
