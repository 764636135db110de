//! Platform request signing and the card system's response signatures.
//!
//! A platform signs every request, as Alipay's open platform v3 does:
//!
//! ```text
//! Authorization: CITYCARD-SHA256withRSA platform=alipay,timestamp=<unix ms>,nonce=<unique>,sign=<base64>
//! content signed = "platform=…,timestamp=…,nonce=…\n" + METHOD + "\n" + path-with-query + "\n"
//!                  + base64(SHA-256(body)) + "\n"
//! ```
//!
//! with RSA-SHA256 (PKCS#1 v1.5, the scheme `CITYCARD-SHA256withRSA`) or SM2
//! with SM3 (`CITYCARD-SM2withSM3`, distinguishing id [`SM2_DISTID`]). The
//! body enters as its digest, so the content stays short for large bodies.
//!
//! Every response carries `Citycard-Timestamp` and `Citycard-Signature`
//! over `timestamp + "\n" + request nonce + "\n" + base64(SHA-256(body)) + "\n"`:
//! the request's nonce ties a response to the request it answers (a
//! decision of this crate; Alipay signs with a nonce of its own).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rsa::pkcs1v15;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rsa::signature::{SignatureEncoding, Signer as _, Verifier as _};
use sha2::{Digest, Sha256};

/// The SM2 distinguishing id of platform and card-system signatures.
pub const SM2_DISTID: &str = "1234567812345678";

/// The `Authorization` scheme of RSA-SHA256 requests.
pub const SCHEME_RSA: &str = "CITYCARD-SHA256withRSA";
/// The `Authorization` scheme of SM2-with-SM3 requests.
pub const SCHEME_SM2: &str = "CITYCARD-SM2withSM3";

/// The response header with the card system's timestamp (unix milliseconds).
pub const RESPONSE_TIMESTAMP: &str = "citycard-timestamp";
/// The response header with the card system's signature (`scheme sign=<base64>`).
pub const RESPONSE_SIGNATURE: &str = "citycard-signature";

/// A signature algorithm a platform may register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Algorithm {
    /// RSA with SHA-256, PKCS#1 v1.5 (Alipay's RSA2).
    #[serde(rename = "RSA-SHA256")]
    RsaSha256,
    /// SM2 with SM3 (GM/T 0003, GM/T 0004).
    #[serde(rename = "SM2-SM3")]
    Sm2Sm3,
}

impl Algorithm {
    /// The `Authorization` scheme of this algorithm.
    pub fn scheme(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => SCHEME_RSA,
            Algorithm::Sm2Sm3 => SCHEME_SM2,
        }
    }

    /// The algorithm of an `Authorization` scheme.
    pub fn from_scheme(scheme: &str) -> Option<Algorithm> {
        match scheme {
            SCHEME_RSA => Some(Algorithm::RsaSha256),
            SCHEME_SM2 => Some(Algorithm::Sm2Sm3),
            _ => None,
        }
    }
}

/// A key could not be read or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key material is malformed.
    #[error("malformed {algorithm:?} key: {reason}")]
    Malformed {
        /// The algorithm.
        algorithm: Algorithm,
        /// Why.
        reason: String,
    },
    /// Signing failed.
    #[error("signing failed: {0}")]
    Signing(String),
}

fn malformed(algorithm: Algorithm) -> impl Fn(String) -> KeyError {
    move |reason| KeyError::Malformed { algorithm, reason }
}

/// A public key that verifies signatures; parsed once at registration, so
/// that SM2's identity hash (Z) and RSA's modulus are not redone per request.
#[derive(Clone)]
pub enum PublicKey {
    /// RSA, PKCS#1 v1.5 with SHA-256.
    Rsa(Box<pkcs1v15::VerifyingKey<Sha256>>),
    /// SM2 with SM3.
    Sm2(Box<sm2::dsa::VerifyingKey>),
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({:?})", self.algorithm())
    }
}

impl PublicKey {
    /// Reads a public key: an RSA key as SPKI PEM, an SM2 key as base64 SEC1 bytes.
    pub fn parse(algorithm: Algorithm, text: &str) -> Result<PublicKey, KeyError> {
        match algorithm {
            Algorithm::RsaSha256 => {
                let key = rsa::RsaPublicKey::from_public_key_pem(text.trim())
                    .map_err(|e| malformed(algorithm)(e.to_string()))?;
                Ok(PublicKey::Rsa(Box::new(pkcs1v15::VerifyingKey::new(key))))
            }
            Algorithm::Sm2Sm3 => {
                let bytes = B64
                    .decode(text.trim())
                    .map_err(|e| malformed(algorithm)(e.to_string()))?;
                let key = sm2::dsa::VerifyingKey::from_sec1_bytes(SM2_DISTID, &bytes)
                    .map_err(|e| malformed(algorithm)(e.to_string()))?;
                Ok(PublicKey::Sm2(Box::new(key)))
            }
        }
    }

    /// The key in the text form [`PublicKey::parse`] reads.
    pub fn to_text(&self) -> Result<String, KeyError> {
        match self {
            PublicKey::Rsa(k) => {
                let key: &rsa::RsaPublicKey = k.as_ref().as_ref();
                key.to_public_key_pem(rsa::pkcs8::LineEnding::LF)
                    .map_err(|e| malformed(Algorithm::RsaSha256)(e.to_string()))
            }
            PublicKey::Sm2(k) => Ok(B64.encode(k.to_sec1_bytes())),
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            PublicKey::Rsa(_) => Algorithm::RsaSha256,
            PublicKey::Sm2(_) => Algorithm::Sm2Sm3,
        }
    }

    /// Whether `signature` is this key's over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            PublicKey::Rsa(k) => pkcs1v15::Signature::try_from(signature)
                .is_ok_and(|s| k.verify(message, &s).is_ok()),
            PublicKey::Sm2(k) => sm2::dsa::Signature::from_slice(signature)
                .is_ok_and(|s| k.verify(message, &s).is_ok()),
        }
    }
}

/// A private key that signs: a platform's (in tests and clients) or the card system's.
#[derive(Clone)]
pub enum PrivateKey {
    /// RSA, PKCS#1 v1.5 with SHA-256.
    Rsa(Box<pkcs1v15::SigningKey<Sha256>>),
    /// SM2 with SM3.
    Sm2(Box<sm2::dsa::SigningKey>),
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({:?}, ..)", self.algorithm())
    }
}

impl PrivateKey {
    /// A new random SM2 key.
    pub fn generate_sm2() -> PrivateKey {
        let secret = sm2::SecretKey::random(&mut rand_core::OsRng);
        // A random secret key is never zero, so this cannot fail.
        let key = sm2::dsa::SigningKey::new(SM2_DISTID, &secret)
            .expect("a random SM2 secret key makes a signing key");
        PrivateKey::Sm2(Box::new(key))
    }

    /// A new random RSA key of `bits` bits (2048 for production).
    pub fn generate_rsa(bits: usize) -> Result<PrivateKey, KeyError> {
        let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, bits)
            .map_err(|e| malformed(Algorithm::RsaSha256)(e.to_string()))?;
        Ok(PrivateKey::Rsa(Box::new(pkcs1v15::SigningKey::new(key))))
    }

    /// Reads a private key: RSA as PKCS#8 PEM, SM2 as base64 of the 32-byte scalar.
    pub fn parse(algorithm: Algorithm, text: &str) -> Result<PrivateKey, KeyError> {
        match algorithm {
            Algorithm::RsaSha256 => {
                let key = rsa::RsaPrivateKey::from_pkcs8_pem(text.trim())
                    .map_err(|e| malformed(algorithm)(e.to_string()))?;
                Ok(PrivateKey::Rsa(Box::new(pkcs1v15::SigningKey::new(key))))
            }
            Algorithm::Sm2Sm3 => {
                let bytes = B64
                    .decode(text.trim())
                    .map_err(|e| malformed(algorithm)(e.to_string()))?;
                let key = sm2::dsa::SigningKey::from_slice(SM2_DISTID, &bytes)
                    .map_err(|e| malformed(algorithm)(e.to_string()))?;
                Ok(PrivateKey::Sm2(Box::new(key)))
            }
        }
    }

    /// The key in the text form [`PrivateKey::parse`] reads (secret: store it 0600).
    pub fn to_text(&self) -> Result<String, KeyError> {
        match self {
            PrivateKey::Rsa(k) => {
                let key: &rsa::RsaPrivateKey = k.as_ref().as_ref();
                key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
                    .map(|pem| pem.to_string())
                    .map_err(|e| malformed(Algorithm::RsaSha256)(e.to_string()))
            }
            PrivateKey::Sm2(k) => Ok(B64.encode(k.to_bytes())),
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            PrivateKey::Rsa(_) => Algorithm::RsaSha256,
            PrivateKey::Sm2(_) => Algorithm::Sm2Sm3,
        }
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        match self {
            PrivateKey::Rsa(k) => {
                let key: &rsa::RsaPrivateKey = k.as_ref().as_ref();
                PublicKey::Rsa(Box::new(pkcs1v15::VerifyingKey::new(key.to_public_key())))
            }
            PrivateKey::Sm2(k) => PublicKey::Sm2(Box::new(k.verifying_key().clone())),
        }
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match self {
            PrivateKey::Rsa(k) => k
                .try_sign(message)
                .map(|s| s.to_vec())
                .map_err(|e| KeyError::Signing(e.to_string())),
            PrivateKey::Sm2(k) => {
                let s: sm2::dsa::Signature = k
                    .try_sign(message)
                    .map_err(|e| KeyError::Signing(e.to_string()))?;
                Ok(s.to_bytes().to_vec())
            }
        }
    }
}

/// Base64 of SHA-256 of a body: the digest requests and responses sign.
pub fn body_digest(body: &[u8]) -> String {
    B64.encode(Sha256::digest(body))
}

/// The parameters of a request's `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthParams {
    /// The algorithm (from the scheme).
    pub algorithm: Algorithm,
    /// The platform's code.
    pub platform: String,
    /// Unix milliseconds.
    pub timestamp: i64,
    /// Unique per request within the time window.
    pub nonce: String,
    /// The signature bytes.
    pub sign: Vec<u8>,
}

/// Why an `Authorization` header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed Authorization header: {0}")]
pub struct MalformedAuth(pub String);

/// The longest nonce accepted.
pub const MAX_NONCE: usize = 64;

impl AuthParams {
    /// Reads `SCHEME platform=…,timestamp=…,nonce=…,sign=…`.
    pub fn parse(header: &str) -> Result<AuthParams, MalformedAuth> {
        let bad = |why: &str| MalformedAuth(why.to_owned());
        let (scheme, rest) = header
            .trim()
            .split_once(' ')
            .ok_or_else(|| bad("no scheme"))?;
        let algorithm = Algorithm::from_scheme(scheme).ok_or_else(|| bad("unknown scheme"))?;
        let (mut platform, mut timestamp, mut nonce, mut sign) = (None, None, None, None);
        for part in rest.split(',') {
            let (name, value) = part.trim().split_once('=').ok_or_else(|| bad("no '='"))?;
            match name {
                "platform" => platform = Some(value.to_owned()),
                "timestamp" => {
                    timestamp = Some(value.parse::<i64>().map_err(|_| bad("timestamp"))?)
                }
                "nonce" => nonce = Some(value.to_owned()),
                // Base64 may end in '=': the value is the rest of the part.
                "sign" => sign = Some(part.trim()["sign=".len()..].to_owned()),
                _ => return Err(bad("unknown parameter")),
            }
        }
        let nonce = nonce.ok_or_else(|| bad("no nonce"))?;
        if nonce.is_empty()
            || nonce.len() > MAX_NONCE
            || !nonce
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad("nonce must be 1-64 letters, digits, '-' or '_'"));
        }
        let sign = B64
            .decode(sign.ok_or_else(|| bad("no sign"))?)
            .map_err(|_| bad("sign is not base64"))?;
        Ok(AuthParams {
            algorithm,
            platform: platform.ok_or_else(|| bad("no platform"))?,
            timestamp: timestamp.ok_or_else(|| bad("no timestamp"))?,
            nonce,
            sign,
        })
    }

    /// The content a request's signature covers.
    pub fn content(&self, method: &str, path_and_query: &str, digest: &str) -> String {
        request_content(
            &self.platform,
            self.timestamp,
            &self.nonce,
            method,
            path_and_query,
            digest,
        )
    }
}

/// The content a request's signature covers.
pub fn request_content(
    platform: &str,
    timestamp: i64,
    nonce: &str,
    method: &str,
    path_and_query: &str,
    digest: &str,
) -> String {
    format!(
        "platform={platform},timestamp={timestamp},nonce={nonce}\n{method}\n{path_and_query}\n{digest}\n"
    )
}

/// The content a response's signature covers.
pub fn response_content(timestamp: i64, request_nonce: &str, digest: &str) -> String {
    format!("{timestamp}\n{request_nonce}\n{digest}\n")
}

/// A platform's side of signing: builds `Authorization` headers and checks
/// the card system's response signatures (tests, examples and integrators).
#[derive(Debug, Clone)]
pub struct PlatformSigner {
    /// The platform's code.
    pub platform: String,
    /// The platform's private key.
    pub key: PrivateKey,
}

impl PlatformSigner {
    /// The `Authorization` header of a request.
    pub fn authorization(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        timestamp: i64,
        nonce: &str,
    ) -> Result<String, KeyError> {
        let content = request_content(
            &self.platform,
            timestamp,
            nonce,
            method,
            path_and_query,
            &body_digest(body),
        );
        let sign = B64.encode(self.key.sign(content.as_bytes())?);
        Ok(format!(
            "{} platform={},timestamp={timestamp},nonce={nonce},sign={sign}",
            self.key.algorithm().scheme(),
            self.platform
        ))
    }
}

/// Whether a response's signature header is the card system's over the body.
pub fn verify_response(
    card_system: &PublicKey,
    timestamp: &str,
    signature_header: &str,
    request_nonce: &str,
    body: &[u8],
) -> bool {
    let Ok(timestamp) = timestamp.parse::<i64>() else {
        return false;
    };
    let Some((scheme, sign)) = signature_header.split_once(" sign=") else {
        return false;
    };
    if Algorithm::from_scheme(scheme) != Some(card_system.algorithm()) {
        return false;
    }
    let Ok(sign) = B64.decode(sign) else {
        return false;
    };
    let content = response_content(timestamp, request_nonce, &body_digest(body));
    card_system.verify(content.as_bytes(), &sign)
}

/// The card system's response signature header for a body.
pub fn sign_response(
    key: &PrivateKey,
    timestamp: i64,
    request_nonce: &str,
    body: &[u8],
) -> Result<String, KeyError> {
    let content = response_content(timestamp, request_nonce, &body_digest(body));
    Ok(format!(
        "{} sign={}",
        key.algorithm().scheme(),
        B64.encode(key.sign(content.as_bytes())?)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sm2_signed_request_verifies_and_any_change_is_caught() {
        let signer = PlatformSigner {
            platform: "alipay".into(),
            key: PrivateKey::generate_sm2(),
        };
        let header = signer
            .authorization("POST", "/v1/bindings", b"{}", 1_700_000_000_000, "n-1")
            .unwrap();
        let params = AuthParams::parse(&header).unwrap();
        assert_eq!(params.algorithm, Algorithm::Sm2Sm3);
        let public = PublicKey::parse(
            Algorithm::Sm2Sm3,
            &signer.key.public_key().to_text().unwrap(),
        )
        .unwrap();
        let good = params.content("POST", "/v1/bindings", &body_digest(b"{}"));
        assert!(public.verify(good.as_bytes(), &params.sign));
        for (method, path, body) in [
            ("GET", "/v1/bindings", &b"{}"[..]),
            ("POST", "/v1/binding", &b"{}"[..]),
            ("POST", "/v1/bindings", &b"{ }"[..]),
        ] {
            let other = params.content(method, path, &body_digest(body));
            assert!(!public.verify(other.as_bytes(), &params.sign));
        }
    }

    #[test]
    fn malformed_headers_are_refused_with_a_reason() {
        for header in [
            "",
            "Bearer x",
            "CITYCARD-SM2withSM3 platform=a,timestamp=x,nonce=n,sign=AA==",
            "CITYCARD-SM2withSM3 platform=a,timestamp=1,nonce=a b,sign=AA==",
            "CITYCARD-SM2withSM3 platform=a,timestamp=1,sign=AA==",
            "CITYCARD-SM2withSM3 platform=a,timestamp=1,nonce=n,sign=!!",
        ] {
            assert!(AuthParams::parse(header).is_err(), "{header}");
        }
    }

    #[test]
    fn a_response_signature_names_the_request_nonce() {
        let key = PrivateKey::generate_sm2();
        let header = sign_response(&key, 5, "n-1", b"body").unwrap();
        let public = key.public_key();
        assert!(verify_response(&public, "5", &header, "n-1", b"body"));
        assert!(!verify_response(&public, "5", &header, "n-2", b"body"));
        assert!(!verify_response(&public, "6", &header, "n-1", b"body"));
        assert!(!verify_response(&public, "5", &header, "n-1", b"bodY"));
    }
}
