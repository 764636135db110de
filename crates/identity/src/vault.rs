//! The personal-data vault: AEAD envelopes and a keyed blind index.
//!
//! ID numbers and names are stored only as [`Envelope`]s: AES-256-GCM by
//! default, SM4-GCM with the `sm4` feature for deployments that must use the
//! national algorithms. An envelope records its algorithm and key id, so keys
//! rotate: new data is sealed under the provider's current key, old envelopes
//! still open under their own key, and [`Vault::reencrypt`] moves one to the
//! current key. The key management port, [`KeyProvider`], is in `ports.rs`.
//!
//! Each envelope is bound to a *context* string (e.g. `person:psn-1:id_number`)
//! through the AEAD's associated data, so a ciphertext copied to another
//! record or field does not open there.
//!
//! Exact lookup uses a [`BlindIndex`]: HMAC-SHA256, under a dedicated index
//! key, of the normalised 18-character ID number. A plain hash would not do:
//! the space of valid numbers is only about 2^37.
//!
//! Nonces are 96 random bits per envelope; keep well under 2^32 envelopes per
//! key (rotate keys long before that). Key material and decrypted plaintext
//! are zeroized on drop.

use std::fmt;
use std::sync::Arc;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use citycard_core::{ClassifiedError, ErrorClass, Mask, Sensitive};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::id_number::{IdNumber, RegionCheck, ValidationPolicy};
use crate::ports::KeyProvider;

citycard_core::define_id!(
    /// The id of a key held by the host's key provider (KMS).
    KeyId, "key id", "key"
);

/// 256 bits of key material, zeroized on drop, never printed.
#[derive(Clone)]
pub struct SecretKey(Zeroizing<[u8; 32]>);

impl SecretKey {
    /// Wraps key material.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Fresh random key material from the operating system.
    pub fn generate() -> Result<Self, VaultError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut()).map_err(|_| VaultError::Randomness)?;
        Ok(Self(bytes))
    }

    /// The key bytes. Named loudly: keep their use inside crypto code.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// The AEAD that sealed an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Algorithm {
    /// AES-256-GCM (the default).
    Aes256Gcm,
    /// SM4-GCM (GB/T 32907), available with the `sm4` feature.
    Sm4Gcm,
}

impl Algorithm {
    /// A stable code.
    pub fn code(self) -> &'static str {
        match self {
            Algorithm::Aes256Gcm => "aes256gcm",
            Algorithm::Sm4Gcm => "sm4gcm",
        }
    }
}

/// An encrypted value: algorithm, key id, nonce and ciphertext (with tag).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The AEAD.
    pub algorithm: Algorithm,
    /// The key that sealed it.
    pub key_id: KeyId,
    /// The 96-bit nonce.
    #[serde(with = "hex_bytes")]
    pub nonce: Vec<u8>,
    /// Ciphertext followed by the 128-bit tag.
    #[serde(with = "hex_bytes")]
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id)
            .field("bytes", &self.ciphertext.len())
            .finish()
    }
}

/// The keyed blind index of an ID number (HMAC-SHA256), for exact lookup.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlindIndex(#[serde(with = "hex_array")] [u8; 32]);

impl BlindIndex {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From raw bytes (as stored).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex_bytes::encode(&self.0)
    }

    /// From lowercase or uppercase hex.
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = hex_bytes::decode(text)?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for BlindIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlindIndex({}…)", &self.to_hex()[..8])
    }
}

/// What can go wrong in the vault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The key provider has no current key: configure one.
    #[error("the key provider has no current key: configure an encryption key")]
    NoCurrentKey,
    /// An envelope names a key the provider does not have.
    #[error("key {key_id} is not available: restore it in the key provider or contact support")]
    UnknownKey {
        /// The key.
        key_id: KeyId,
    },
    /// The key provider could not be reached.
    #[error("the key provider is unavailable, retry later: {0}")]
    ProviderUnavailable(String),
    /// The envelope did not open: wrong key, wrong context or tampered data.
    #[error(
        "an encrypted value failed authentication: it was tampered with or belongs elsewhere; contact support"
    )]
    Authentication,
    /// The envelope uses an algorithm this build lacks.
    #[error("envelope algorithm {0:?} is not enabled in this build: enable the matching feature")]
    UnsupportedAlgorithm(Algorithm),
    /// The envelope is malformed (bad nonce length).
    #[error("an encrypted value is malformed; contact support")]
    Malformed,
    /// The operating system's random source failed.
    #[error("the random number source failed; retry later")]
    Randomness,
    /// The decrypted value is not what was expected there.
    #[error("a decrypted value is not valid; contact support")]
    InvalidPlaintext,
}

impl ClassifiedError for VaultError {
    fn class(&self) -> ErrorClass {
        match self {
            VaultError::ProviderUnavailable(_) | VaultError::Randomness => ErrorClass::Unavailable,
            _ => ErrorClass::Internal,
        }
    }
}

/// The vault: seals and opens envelopes and computes blind indexes.
#[derive(Clone)]
pub struct Vault {
    keys: Arc<dyn KeyProvider>,
    algorithm: Algorithm,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

const INDEX_DOMAIN: &[u8] = b"citycard/id-number/v1:";

fn aad(algorithm: Algorithm, key_id: &KeyId, context: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + key_id.as_str().len() + context.len());
    out.extend_from_slice(algorithm.code().as_bytes());
    out.push(0);
    out.extend_from_slice(key_id.as_str().as_bytes());
    out.push(0);
    out.extend_from_slice(context.as_bytes());
    out
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

impl Vault {
    /// A vault sealing with AES-256-GCM.
    pub fn new(keys: Arc<dyn KeyProvider>) -> Self {
        Self {
            keys,
            algorithm: Algorithm::Aes256Gcm,
        }
    }

    /// A vault sealing new envelopes with a chosen algorithm (SM4-GCM needs
    /// the `sm4` feature; without it, sealing fails with
    /// [`VaultError::UnsupportedAlgorithm`]).
    pub fn with_algorithm(keys: Arc<dyn KeyProvider>, algorithm: Algorithm) -> Self {
        Self { keys, algorithm }
    }

    /// The algorithm new envelopes use.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Seals bytes under the current key, bound to `context`.
    pub async fn seal(&self, plaintext: &[u8], context: &str) -> Result<Envelope, VaultError> {
        let key_id = self.keys.current_key_id().await?;
        let key = self.keys.key(&key_id).await?;
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|_| VaultError::Randomness)?;
        let aad = aad(self.algorithm, &key_id, context);
        let payload = Payload {
            msg: plaintext,
            aad: &aad,
        };
        let ciphertext = match self.algorithm {
            Algorithm::Aes256Gcm => Aes256Gcm::new(key.expose().into())
                .encrypt((&nonce).into(), payload)
                .map_err(|_| VaultError::Authentication)?,
            Algorithm::Sm4Gcm => sm4_gcm::seal(&key, &nonce, payload)?,
        };
        Ok(Envelope {
            algorithm: self.algorithm,
            key_id,
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Opens an envelope sealed for `context`.
    pub async fn open(
        &self,
        envelope: &Envelope,
        context: &str,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let key = self.keys.key(&envelope.key_id).await?;
        let nonce: [u8; 12] = envelope
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| VaultError::Malformed)?;
        let aad = aad(envelope.algorithm, &envelope.key_id, context);
        let payload = Payload {
            msg: &envelope.ciphertext,
            aad: &aad,
        };
        let plain = match envelope.algorithm {
            Algorithm::Aes256Gcm => Aes256Gcm::new(key.expose().into())
                .decrypt((&nonce).into(), payload)
                .map_err(|_| VaultError::Authentication)?,
            Algorithm::Sm4Gcm => sm4_gcm::open(&key, &nonce, payload)?,
        };
        Ok(Zeroizing::new(plain))
    }

    /// Re-seals an envelope under the current key and algorithm.
    pub async fn reencrypt(
        &self,
        envelope: &Envelope,
        context: &str,
    ) -> Result<Envelope, VaultError> {
        let plain = self.open(envelope, context).await?;
        self.seal(&plain, context).await
    }

    /// Seals an ID number (its normalised 18 characters).
    pub async fn seal_id_number(
        &self,
        id: &IdNumber,
        context: &str,
    ) -> Result<Envelope, VaultError> {
        self.seal(id.reveal().as_bytes(), context).await
    }

    /// Opens a sealed ID number.
    pub async fn open_id_number(
        &self,
        envelope: &Envelope,
        context: &str,
    ) -> Result<IdNumber, VaultError> {
        let plain = self.open(envelope, context).await?;
        let text = std::str::from_utf8(&plain).map_err(|_| VaultError::InvalidPlaintext)?;
        // Stored numbers were validated when sealed; do not re-judge the region.
        IdNumber::parse_with(
            text,
            &ValidationPolicy::new().region_check(RegionCheck::Off),
        )
        .map_err(|_| VaultError::InvalidPlaintext)
    }

    /// Seals a name.
    pub async fn seal_name(&self, name: &str, context: &str) -> Result<Envelope, VaultError> {
        self.seal(name.as_bytes(), context).await
    }

    /// Opens a sealed name (masked when printed).
    pub async fn open_name(
        &self,
        envelope: &Envelope,
        context: &str,
    ) -> Result<Sensitive<String>, VaultError> {
        let plain = self.open(envelope, context).await?;
        let text = std::str::from_utf8(&plain).map_err(|_| VaultError::InvalidPlaintext)?;
        Ok(Sensitive::with_mask(text.to_owned(), Mask::NAME))
    }

    /// A keyed digest (HMAC-SHA256 under the index key) of some personal
    /// data, for idempotency fingerprints that must not be a plain hash.
    pub async fn keyed_digest(&self, parts: &[&[u8]]) -> Result<BlindIndex, VaultError> {
        let key = self.keys.blind_index_key().await?;
        let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() * 2 + 1);
        all.push(b"citycard/fingerprint/v1:");
        let lens: Vec<[u8; 8]> = parts
            .iter()
            .map(|p| (p.len() as u64).to_le_bytes())
            .collect();
        for (p, len) in parts.iter().zip(&lens) {
            all.push(len);
            all.push(p);
        }
        Ok(BlindIndex(hmac(key.expose(), &all)))
    }

    /// The blind index of an ID number (over its normalised 18 characters).
    pub async fn blind_index(&self, id: &IdNumber) -> Result<BlindIndex, VaultError> {
        let key = self.keys.blind_index_key().await?;
        Ok(BlindIndex(hmac(
            key.expose(),
            &[INDEX_DOMAIN, id.reveal().as_bytes()],
        )))
    }
}

#[cfg(feature = "sm4")]
mod sm4_gcm {
    use aes_gcm::AesGcm;
    use aes_gcm::aead::consts::U12;
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    use zeroize::Zeroize;

    use super::{SecretKey, VaultError, hmac};

    const SM4_KEY_LABEL: &[u8] = b"citycard/sm4-gcm-key/v1";

    type Sm4Gcm = AesGcm<sm4::Sm4, U12>;

    fn cipher(key: &SecretKey) -> Result<Sm4Gcm, VaultError> {
        // SM4 keys are 128 bits: derive one from the 256-bit key.
        let mut derived = hmac(key.expose(), &[SM4_KEY_LABEL]);
        let cipher = Sm4Gcm::new_from_slice(&derived[..16]).map_err(|_| VaultError::Malformed);
        derived.zeroize();
        cipher
    }

    pub(super) fn seal(
        key: &SecretKey,
        nonce: &[u8; 12],
        payload: Payload<'_, '_>,
    ) -> Result<Vec<u8>, VaultError> {
        cipher(key)?
            .encrypt(nonce.into(), payload)
            .map_err(|_| VaultError::Authentication)
    }

    pub(super) fn open(
        key: &SecretKey,
        nonce: &[u8; 12],
        payload: Payload<'_, '_>,
    ) -> Result<Vec<u8>, VaultError> {
        cipher(key)?
            .decrypt(nonce.into(), payload)
            .map_err(|_| VaultError::Authentication)
    }
}

#[cfg(not(feature = "sm4"))]
mod sm4_gcm {
    use aes_gcm::aead::Payload;

    use super::{Algorithm, SecretKey, VaultError};

    pub(super) fn seal(
        _key: &SecretKey,
        _nonce: &[u8; 12],
        _payload: Payload<'_, '_>,
    ) -> Result<Vec<u8>, VaultError> {
        Err(VaultError::UnsupportedAlgorithm(Algorithm::Sm4Gcm))
    }

    pub(super) fn open(
        _key: &SecretKey,
        _nonce: &[u8; 12],
        _payload: Payload<'_, '_>,
    ) -> Result<Vec<u8>, VaultError> {
        Err(VaultError::UnsupportedAlgorithm(Algorithm::Sm4Gcm))
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn encode(bytes: &[u8]) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
        out
    }

    pub fn decode(text: &str) -> Option<Vec<u8>> {
        if !text.len().is_multiple_of(2) {
            return None;
        }
        text.as_bytes()
            .chunks(2)
            .map(|pair| {
                let hi = char::from(pair[0]).to_digit(16)?;
                let lo = char::from(pair[1]).to_digit(16)?;
                u8::try_from(hi * 16 + lo).ok()
            })
            .collect()
    }

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        decode(&text).ok_or_else(|| serde::de::Error::custom("invalid hex"))
    }
}

mod hex_array {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        super::hex_bytes::serialize(bytes, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        super::hex_bytes::deserialize(d)?
            .try_into()
            .map_err(|_| serde::de::Error::custom("expected 32 bytes"))
    }
}
