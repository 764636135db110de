//! Offline verification at a reader: one call from payload to decision.
//!
//! The reader holds the issuer public keys, a deny list, a replay cache and a
//! cache of credentials it has already verified (so a user's later codes cost
//! one signature check, not two). [`Reader::decide`] returns either a tap
//! record or the one reason for refusal.
//!
//! The reader never learns the card: a tap carries the credential's keyed
//! card reference in `card` and the code use in `code`, and the back office
//! maps the reference back to the card ([`crate::Issuer::resolve_taps`]).
//! The deny list is therefore a list of references. A code whose key id the
//! reader does not hold (another issuer's, whose issuer id differs) is
//! answered [`Rejection::WrongIssuer`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::codes::{IssuerPublicKey, ParseFailure, VerifyingKey, parse};
use crate::store::{DenyEntry, DenyReason};
use crate::taps::{CardRef, CodeUse, Tap, TapDirection, TapPlace};

/// Why a code was refused; each kind of bad code has its own answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Rejection {
    /// Not a ride code of a known shape.
    Malformed,
    /// A payload version this reader does not know.
    UnsupportedVersion,
    /// Signed under an issuer key this reader does not hold (another issuer, or a key not yet distributed).
    WrongIssuer {
        /// The key id in the code.
        key_id: u32,
    },
    /// The issuer key is outside its validity (retired or not yet active).
    IssuerKeyInactive {
        /// The key id.
        key_id: u32,
    },
    /// A signature does not verify: the code or its credential was altered.
    Tampered,
    /// The credential's validity period is over.
    CredentialExpired,
    /// The credential is not valid yet.
    CredentialNotYetValid,
    /// The code is older than the reader accepts.
    Expired,
    /// The code's time is ahead of the reader's clock by more than the tolerated skew.
    FromTheFuture,
    /// This exact code was already accepted.
    Replayed,
    /// The card is on the deny list.
    Denied {
        /// Why.
        deny: DenyReason,
    },
    /// The same card already boarded this vehicle within the repeat window.
    RepeatOnVehicle,
}

/// A reader's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum Decision {
    /// Open the gate; here is the tap to upload.
    Accept(Tap),
    /// Refuse, and why.
    Reject(Rejection),
}

/// How a reader is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReaderConfig {
    /// The reader's number.
    pub reader: u32,
    /// Where it is.
    pub place: TapPlace,
    /// Whether it records taps in or out.
    pub direction: TapDirection,
    /// How old a code may be, in seconds.
    pub max_code_age_seconds: u32,
    /// How far the phone's clock may differ from the reader's, in seconds.
    pub clock_skew_seconds: u32,
    /// The same card is refused on the same vehicle within this many seconds (0 = never).
    pub repeat_window_seconds: u32,
}

const CACHE_LIMIT: usize = 100_000;

/// An offline ride-code reader.
#[derive(Debug, Clone)]
pub struct Reader {
    config: ReaderConfig,
    keys: HashMap<u32, (IssuerPublicKey, VerifyingKey)>,
    deny: HashMap<CardRef, DenyReason>,
    replay: HashMap<CodeUse, i64>,
    last_boarding: HashMap<CardRef, i64>,
    credentials: HashMap<[u8; 64], (Vec<u8>, VerifyingKey)>,
}

impl Reader {
    /// A reader with an issuer key list (unparseable keys are skipped and logged).
    pub fn new(config: ReaderConfig, keys: &[IssuerPublicKey]) -> Self {
        let mut reader = Self {
            config,
            keys: HashMap::new(),
            deny: HashMap::new(),
            replay: HashMap::new(),
            last_boarding: HashMap::new(),
            credentials: HashMap::new(),
        };
        reader.update_keys(keys);
        reader
    }

    /// Replaces the issuer key list.
    pub fn update_keys(&mut self, keys: &[IssuerPublicKey]) {
        self.keys.clear();
        self.credentials.clear();
        for k in keys {
            match VerifyingKey::parse(k.algorithm, &k.public_key) {
                Some(v) => {
                    self.keys.insert(k.key_id, (k.clone(), v));
                }
                None => tracing::warn!(key_id = k.key_id, "issuer key does not parse; skipped"),
            }
        }
    }

    /// Replaces the deny list (one reason per card reference is enough to refuse;
    /// the back office lists the references of a card's live credentials).
    pub fn update_deny_list(&mut self, entries: &[DenyEntry]) {
        self.deny = entries.iter().map(|e| (e.card, e.reason)).collect();
    }

    /// Verifies a payload and decides, in one call. Accepted codes enter the replay cache.
    pub fn decide(&mut self, payload: &[u8], now: DateTime<Utc>) -> Decision {
        match self.check(payload, now) {
            Ok(tap) => Decision::Accept(tap),
            Err(rejection) => {
                tracing::debug!(reader = self.config.reader, ?rejection, "ride code refused");
                Decision::Reject(rejection)
            }
        }
    }

    fn check(&mut self, payload: &[u8], now: DateTime<Utc>) -> Result<Tap, Rejection> {
        let code = parse(payload).map_err(|f| match f {
            ParseFailure::Version => Rejection::UnsupportedVersion,
            ParseFailure::Malformed => Rejection::Malformed,
        })?;
        let key_id = code.issuer_key_id;
        let (issuer, issuer_key) = self
            .keys
            .get(&key_id)
            .ok_or(Rejection::WrongIssuer { key_id })?;
        if issuer.algorithm != code.algorithm {
            return Err(Rejection::WrongIssuer { key_id });
        }
        if now < issuer.valid_from || now > issuer.valid_until {
            return Err(Rejection::IssuerKeyInactive { key_id });
        }
        let sig_key: [u8; 64] = code
            .issuer_signature
            .try_into()
            .map_err(|_| Rejection::Malformed)?;
        let cached = self
            .credentials
            .get(&sig_key)
            .filter(|(bytes, _)| bytes.as_slice() == code.credential)
            .map(|(_, k)| k.clone());
        let user_key = match cached {
            Some(k) => k,
            None => {
                if !issuer_key.verify(code.credential_body, code.issuer_signature) {
                    return Err(Rejection::Tampered);
                }
                let k = VerifyingKey::parse(code.algorithm, code.user_key)
                    .ok_or(Rejection::Tampered)?;
                if self.credentials.len() >= CACHE_LIMIT {
                    self.credentials.clear();
                }
                self.credentials
                    .insert(sig_key, (code.credential.to_vec(), k.clone()));
                k
            }
        };
        if !user_key.verify(code.signed, code.signature) {
            return Err(Rejection::Tampered);
        }
        let now_s = now.timestamp();
        let skew = i64::from(self.config.clock_skew_seconds);
        if now_s > i64::from(code.valid_until) + skew {
            return Err(Rejection::CredentialExpired);
        }
        if now_s + skew < i64::from(code.valid_from) {
            return Err(Rejection::CredentialNotYetValid);
        }
        let ts = i64::from(code.timestamp);
        if ts > now_s + skew {
            return Err(Rejection::FromTheFuture);
        }
        let max_age = i64::from(self.config.max_code_age_seconds);
        if now_s - ts > max_age + skew {
            return Err(Rejection::Expired);
        }
        if let Some(deny) = self.deny.get(&code.card) {
            return Err(Rejection::Denied { deny: *deny });
        }
        let replay_key = code.code_use();
        if self.replay.contains_key(&replay_key) {
            return Err(Rejection::Replayed);
        }
        let window = i64::from(self.config.repeat_window_seconds);
        let on_vehicle = matches!(self.config.place, TapPlace::Vehicle { .. })
            && self.config.direction == TapDirection::In;
        if on_vehicle
            && window > 0
            && self
                .last_boarding
                .get(&code.card)
                .is_some_and(|t| now_s - t < window)
        {
            return Err(Rejection::RepeatOnVehicle);
        }
        if self.replay.len() >= CACHE_LIMIT {
            self.replay.retain(|_, expiry| *expiry >= now_s);
            self.last_boarding.retain(|_, t| now_s - *t < window);
        }
        self.replay.insert(replay_key, ts + max_age + 2 * skew);
        if on_vehicle {
            self.last_boarding.insert(code.card, now_s);
        }
        Ok(Tap {
            card: code.card,
            direction: self.config.direction,
            place: self.config.place,
            reader: self.config.reader,
            at: now,
            code: Some(replay_key),
            medium: crate::fares::Medium::RideCode,
        })
    }
}
