//! Test support for citycard-identity: conformance suites for its storage ports,
//! fault-injecting doubles of its remote ports, and proptest strategies.

use chrono::{Datelike, Duration, NaiveDate};
use citycard_identity::region::{self, RegionRecord};
use citycard_identity::{IdNumber, RegionCode, Sex};
use proptest::prelude::*;

/// The parts a valid ID number is generated from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdNumberParts {
    /// Address code (valid in the birth year for residents).
    pub region: RegionCode,
    /// Date of birth.
    pub birth: NaiveDate,
    /// Sex.
    pub sex: Sex,
    /// Sequence pair 0..=499.
    pub sequence: u16,
}

impl IdNumberParts {
    /// The ID number for these parts.
    pub fn build(&self) -> IdNumber {
        IdNumber::generate(self.region, self.birth, self.sex, self.sequence)
            .expect("generated parts are valid")
    }
}

fn county_records() -> Vec<RegionRecord> {
    region::all_records()
        .filter(|r| !r.code.is_province() && !r.code.is_prefecture())
        .collect()
}

fn date_in_years(first: i32, last: i32) -> impl Strategy<Value = NaiveDate> {
    let start = NaiveDate::from_ymd_opt(first, 1, 1).unwrap_or(NaiveDate::MIN);
    let end = NaiveDate::from_ymd_opt(last, 12, 31).unwrap_or(NaiveDate::MIN);
    let span = (end - start).num_days().max(0);
    (0..=span).prop_map(move |d| start + Duration::days(d))
}

/// Parts of a resident ID number whose county-level region code was valid in
/// the birth year (so it passes the strict region check), born 1950..=2024.
pub fn resident_parts() -> impl Strategy<Value = IdNumberParts> {
    let records = county_records();
    (0..records.len(), any::<bool>(), 0u16..500)
        .prop_flat_map(move |(i, male, sequence)| {
            let rec = records[i];
            let first = rec.first_year.map_or(1950, i32::from).max(1950);
            let last = rec.last_year.map_or(2024, i32::from).min(2024);
            let (first, last) = if first <= last {
                (first, last)
            } else {
                (last, last)
            };
            date_in_years(first, last).prop_map(move |birth| IdNumberParts {
                region: rec.code,
                birth,
                sex: if male { Sex::Male } else { Sex::Female },
                sequence,
            })
        })
        .prop_filter("region valid in the birth year", |p| {
            region::validity(p.region, p.birth.year()) == region::Validity::Valid
        })
}

/// A valid 18-digit resident ID number.
pub fn resident_id_number() -> impl Strategy<Value = IdNumber> {
    resident_parts().prop_map(|p| p.build())
}

/// A valid legacy 15-digit number (as text), born 1900..=1999, existing region.
pub fn legacy15_text() -> impl Strategy<Value = String> {
    let records = county_records();
    (0..records.len(), date_in_years(1900, 1999), 0u16..1000).prop_map(move |(i, birth, seq)| {
        format!(
            "{}{:02}{:02}{:02}{:03}",
            records[i].code,
            birth.year() % 100,
            birth.month(),
            birth.day(),
            seq
        )
    })
}

/// A valid foreign permanent resident number (2023 edition): a province
/// that exists and an ISO 3166-1 nationality other than China.
pub fn foreign_id_number() -> impl Strategy<Value = IdNumber> {
    let provinces: Vec<u8> = region::all_records()
        .filter(|r| r.code.is_province() && r.code.get() < 800_000)
        .map(|r| (r.code.get() / 10_000) as u8)
        .collect();
    let nationalities: Vec<u16> = citycard_identity::nationality::countries()
        .map(|c| c.numeric)
        .filter(|n| *n != 156)
        .collect();
    (
        proptest::sample::select(provinces),
        proptest::sample::select(nationalities),
        date_in_years(1930, 2020),
        any::<bool>(),
        0u16..500,
    )
        .prop_map(|(p, nat, birth, male, seq)| {
            IdNumber::generate_foreign(
                p,
                nat,
                birth,
                if male { Sex::Male } else { Sex::Female },
                seq,
            )
            .expect("generated parts are valid")
        })
}

/// Any text that might be typed into an ID number field.
pub fn id_number_like_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9xX]{0,20}",
        "[0-9０-９Ｘｘ ]{14,20}",
        "\\PC{0,24}",
        "\\s*[0-9]{17}[0-9xX]\\s*",
    ]
}

/// Sample records for the identity conformance suites (fake ciphertext; the
/// stores never look inside envelopes).
pub mod samples {
    use chrono::{DateTime, Utc};
    use citycard_core::{PersonId, Platform, PlatformAccountId};
    use citycard_identity::{
        Algorithm, BlindIndex, Envelope, KeyId, PendingFaceCheck, Person, PlatformAccount,
        RealNameLevel,
    };

    /// An instant `secs` after a fixed base.
    pub fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + secs, 0).unwrap_or_default()
    }

    /// A fake envelope whose bytes derive from `seed`.
    pub fn envelope(seed: u8) -> Envelope {
        Envelope {
            algorithm: Algorithm::Aes256Gcm,
            key_id: KeyId::parse("key-1").unwrap_or_else(|_| unreachable!()),
            nonce: vec![seed; 12],
            ciphertext: vec![seed.wrapping_add(1); 34],
        }
    }

    /// A blind index made of one repeated byte.
    pub fn index(byte: u8) -> BlindIndex {
        BlindIndex::from_bytes([byte; 32])
    }

    /// A person with id `psn-<n>` and index byte `n`.
    pub fn person(n: u8) -> Person {
        Person {
            id: PersonId::parse(&format!("psn-{n:03}")).unwrap_or_else(|_| unreachable!()),
            masked_name: "张**".into(),
            name: envelope(n),
            masked_id_number: "110***********002X".into(),
            id_number: envelope(n.wrapping_add(100)),
            id_number_index: index(n),
            level: RealNameLevel::TwoFactor,
            verified_at: Some(at(i64::from(n))),
            created_at: at(0),
        }
    }

    /// An unverified account `pac-<n>` on a platform.
    pub fn account(n: u8, platform: Platform, external: &str) -> PlatformAccount {
        PlatformAccount {
            id: PlatformAccountId::parse(&format!("pac-{n:03}")).unwrap_or_else(|_| unreachable!()),
            platform,
            external_id: external.to_owned(),
            person: None,
            level: RealNameLevel::Unverified,
            verified_at: None,
            pending_face: None,
            created_at: at(0),
        }
    }

    /// A pending face check.
    pub fn pending_face() -> PendingFaceCheck {
        PendingFaceCheck {
            session_id: "face-000001".into(),
            id_number_index: index(9),
            id_number: envelope(9),
            name: envelope(10),
            started_at: at(5),
        }
    }
}

/// The conformance suite for [`PersonStore`](citycard_identity::PersonStore).
#[macro_export]
macro_rules! person_store_conformance {
    ($factory:ident) => {
        $crate::person_store_conformance!(@suite $factory, $crate::backend_available);
    };
    ($factory:ident, available = $available:ident) => {
        $crate::person_store_conformance!(@suite $factory, super::$available);
    };
    (@suite $factory:ident, $available:path) => {
        #[allow(clippy::unwrap_used)]
        mod person_store_conformance {
            use $crate::__private::citycard_core::StoreError;
            use $crate::__private::citycard_identity::{PersonStore, RealNameLevel};
            use $crate::identity::samples::{at, index, person};

            #[tokio::test]
            async fn inserted_persons_read_back_equal() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let p = person(1);
                store.insert(&p).await.unwrap();
                assert_eq!(store.get(&p.id).await.unwrap(), Some(p.clone()));
                assert_eq!(store.get(&person(2).id).await.unwrap(), None);
            }

            #[tokio::test]
            async fn a_commit_writes_the_person_and_a_refused_one_writes_nothing() {
                if !$available() {
                    return;
                }
                use $crate::__private::citycard_core::{
                    AuditOutcome, AuditRecord, CoreChanges, Fingerprint, KeyOutcome, Principal,
                };
                use $crate::__private::citycard_identity::PersonWrite;
                let store = super::$factory().await;
                let core = |key: &str| CoreChanges {
                    audit: vec![AuditRecord::new(
                        at(1),
                        Principal::System,
                        "identity.enroll_person",
                        "person:1",
                        AuditOutcome::Succeeded,
                    )],
                    outcomes: vec![
                        KeyOutcome::new(
                            "identity.enroll_person",
                            key.parse().unwrap(),
                            Fingerprint::of_bytes(key.as_bytes()),
                            &1,
                            at(1),
                        )
                        .unwrap(),
                    ],
                    events: Vec::new(),
                };
                store
                    .commit(&PersonWrite::Insert(person(1)), &core("k-1"))
                    .await
                    .unwrap();
                assert_eq!(store.get(&person(1).id).await.unwrap(), Some(person(1)));
                // The same key again refuses the whole commit: the new person is not written.
                assert!(matches!(
                    store
                        .commit(&PersonWrite::Insert(person(2)), &core("k-1"))
                        .await,
                    Err(StoreError::Conflict(_))
                ));
                assert_eq!(store.get(&person(2).id).await.unwrap(), None);
                // A taken blind index refuses the commit and its outcome.
                let mut same_number = person(3);
                same_number.id_number_index = index(1);
                assert!(matches!(
                    store
                        .commit(&PersonWrite::Insert(same_number), &core("k-3"))
                        .await,
                    Err(StoreError::Conflict(_))
                ));
                store
                    .commit(&PersonWrite::Unchanged, &core("k-3"))
                    .await
                    .unwrap();
                let mut raised = person(1);
                raised.level = RealNameLevel::ThreeFactor;
                store
                    .commit(
                        &PersonWrite::Update(raised.clone()),
                        &CoreChanges::default(),
                    )
                    .await
                    .unwrap();
                assert_eq!(store.get(&raised.id).await.unwrap(), Some(raised));
            }

            #[tokio::test]
            async fn a_commit_of_many_writes_them_all_or_none() {
                use $crate::__private::citycard_core::{CoreChanges, Fingerprint, KeyOutcome};
                use $crate::__private::citycard_identity::PersonWrite;
                let store = super::$factory().await;
                let core = |key: &str| CoreChanges {
                    audit: Vec::new(),
                    outcomes: vec![
                        KeyOutcome::new(
                            "identity.enroll_persons",
                            key.parse().unwrap(),
                            Fingerprint::of_bytes(key.as_bytes()),
                            &1,
                            at(1),
                        )
                        .unwrap(),
                    ],
                    events: Vec::new(),
                };
                store
                    .commit_all(
                        &[
                            PersonWrite::Insert(person(1)),
                            PersonWrite::Insert(person(2)),
                        ],
                        &core("c-1"),
                    )
                    .await
                    .unwrap();
                assert_eq!(store.get(&person(2).id).await.unwrap(), Some(person(2)));
                // The third write's blind index is the first's: nothing of this commit is written.
                let mut same_number = person(5);
                same_number.id_number_index = index(1);
                let mut raised = person(1);
                raised.level = RealNameLevel::ThreeFactor;
                assert!(matches!(
                    store
                        .commit_all(
                            &[
                                PersonWrite::Insert(person(4)),
                                PersonWrite::Update(raised.clone()),
                                PersonWrite::Insert(same_number),
                            ],
                            &core("c-2"),
                        )
                        .await,
                    Err(StoreError::Conflict(_))
                ));
                assert_eq!(store.get(&person(4).id).await.unwrap(), None);
                assert_eq!(store.get(&person(1).id).await.unwrap(), Some(person(1)));
                // A completed key refuses the whole commit too.
                assert!(matches!(
                    store
                        .commit_all(&[PersonWrite::Insert(person(4))], &core("c-1"))
                        .await,
                    Err(StoreError::Conflict(_))
                ));
                assert_eq!(store.get(&person(4).id).await.unwrap(), None);
                store
                    .commit_all(
                        &[
                            PersonWrite::Insert(person(4)),
                            PersonWrite::Update(raised.clone()),
                        ],
                        &core("c-2"),
                    )
                    .await
                    .unwrap();
                assert_eq!(store.get(&raised.id).await.unwrap(), Some(raised));
            }

            #[tokio::test]
            async fn ids_and_blind_indexes_are_unique() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                store.insert(&person(1)).await.unwrap();
                assert!(matches!(
                    store.insert(&person(1)).await,
                    Err(StoreError::Conflict(_))
                ));
                let mut same_number = person(2);
                same_number.id_number_index = index(1);
                assert!(matches!(
                    store.insert(&same_number).await,
                    Err(StoreError::Conflict(_))
                ));
                assert_eq!(store.get(&same_number.id).await.unwrap(), None);
            }

            #[tokio::test]
            async fn persons_are_found_by_blind_index() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                store.insert(&person(1)).await.unwrap();
                store.insert(&person(2)).await.unwrap();
                assert_eq!(
                    store.find_by_id_number_index(&index(2)).await.unwrap(),
                    Some(person(2))
                );
                assert_eq!(
                    store.find_by_id_number_index(&index(3)).await.unwrap(),
                    None
                );
            }

            #[tokio::test]
            async fn updates_replace_known_persons_only() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                store.insert(&person(1)).await.unwrap();
                store.insert(&person(2)).await.unwrap();
                let mut p = person(1);
                p.level = RealNameLevel::FaceLiveness;
                p.verified_at = Some(at(99));
                p.name = $crate::identity::samples::envelope(42);
                assert!(store.update(&p).await.unwrap());
                assert_eq!(store.get(&p.id).await.unwrap(), Some(p.clone()));
                assert!(!store.update(&person(3)).await.unwrap());
                assert_eq!(store.get(&person(3).id).await.unwrap(), None);
                let mut clash = person(2);
                clash.id_number_index = index(1);
                assert!(matches!(
                    store.update(&clash).await,
                    Err(StoreError::Conflict(_))
                ));
                assert_eq!(store.get(&person(2).id).await.unwrap(), Some(person(2)));
            }

            #[tokio::test]
            async fn listing_pages_in_id_order() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                for n in [3, 1, 2, 5, 4] {
                    store.insert(&person(n)).await.unwrap();
                }
                let first = store.list(None, 2).await.unwrap();
                assert_eq!(first, vec![person(1), person(2)]);
                let rest = store.list(Some(&person(2).id), 10).await.unwrap();
                assert_eq!(rest, vec![person(3), person(4), person(5)]);
                assert!(
                    store
                        .list(Some(&person(5).id), 10)
                        .await
                        .unwrap()
                        .is_empty()
                );
            }
        }
    };
}

/// The conformance suite for [`PlatformAccountStore`](citycard_identity::PlatformAccountStore).
#[macro_export]
macro_rules! platform_account_store_conformance {
    ($factory:ident) => {
        $crate::platform_account_store_conformance!(@suite $factory, $crate::backend_available);
    };
    ($factory:ident, available = $available:ident) => {
        $crate::platform_account_store_conformance!(@suite $factory, super::$available);
    };
    (@suite $factory:ident, $available:path) => {
        #[allow(clippy::unwrap_used)]
        mod platform_account_store_conformance {
            use $crate::__private::chrono::NaiveDate;
            use $crate::__private::citycard_core::{PersonId, Platform, StoreError};
            use $crate::__private::citycard_identity::{PlatformAccountStore, RealNameLevel};
            use $crate::identity::samples::{account, at, pending_face};

            fn day(d: u32) -> NaiveDate {
                NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
            }

            #[tokio::test]
            async fn accounts_read_back_equal_with_every_field() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let mut a = account(1, Platform::Alipay, "2088000000000001");
                a.person = Some(PersonId::parse("psn-001").unwrap());
                a.level = RealNameLevel::ThreeFactor;
                a.verified_at = Some(at(7));
                a.pending_face = Some(pending_face());
                store.insert(&a).await.unwrap();
                assert_eq!(store.get(&a.id).await.unwrap(), Some(a.clone()));
                let other = account(2, Platform::Other("ecny".into()), "x");
                store.insert(&other).await.unwrap();
                assert_eq!(store.get(&other.id).await.unwrap(), Some(other));
                assert_eq!(
                    store
                        .get(&account(3, Platform::Alipay, "y").id)
                        .await
                        .unwrap(),
                    None
                );
            }

            #[tokio::test]
            async fn ids_and_platform_ids_are_unique_per_platform() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                store
                    .insert(&account(1, Platform::Alipay, "u1"))
                    .await
                    .unwrap();
                assert!(matches!(
                    store.insert(&account(1, Platform::Alipay, "u2")).await,
                    Err(StoreError::Conflict(_))
                ));
                assert!(matches!(
                    store.insert(&account(2, Platform::Alipay, "u1")).await,
                    Err(StoreError::Conflict(_))
                ));
                store
                    .insert(&account(3, Platform::WechatPay, "u1"))
                    .await
                    .unwrap();
                assert_eq!(
                    store
                        .find_external(&Platform::WechatPay, "u1")
                        .await
                        .unwrap(),
                    Some(account(3, Platform::WechatPay, "u1"))
                );
                assert_eq!(
                    store.find_external(&Platform::Alipay, "u1").await.unwrap(),
                    Some(account(1, Platform::Alipay, "u1"))
                );
                assert_eq!(
                    store
                        .find_external(&Platform::UnionPay, "u1")
                        .await
                        .unwrap(),
                    None
                );
            }

            #[tokio::test]
            async fn updates_replace_known_accounts_only() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let mut a = account(1, Platform::Alipay, "u1");
                store.insert(&a).await.unwrap();
                a.person = Some(PersonId::parse("psn-007").unwrap());
                a.level = RealNameLevel::TwoFactor;
                a.verified_at = Some(at(3));
                assert!(store.update(&a).await.unwrap());
                assert_eq!(store.get(&a.id).await.unwrap(), Some(a.clone()));
                a.pending_face = Some(pending_face());
                assert!(store.update(&a).await.unwrap());
                assert_eq!(store.get(&a.id).await.unwrap(), Some(a.clone()));
                assert!(
                    !store
                        .update(&account(2, Platform::Alipay, "u2"))
                        .await
                        .unwrap()
                );
                assert_eq!(
                    store
                        .get(&account(2, Platform::Alipay, "u2").id)
                        .await
                        .unwrap(),
                    None
                );
            }

            #[tokio::test]
            async fn accounts_are_listed_per_person() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let p = PersonId::parse("psn-001").unwrap();
                let mut a = account(2, Platform::Alipay, "u1");
                a.person = Some(p.clone());
                let mut b = account(1, Platform::WechatPay, "w1");
                b.person = Some(p.clone());
                store.insert(&a).await.unwrap();
                store.insert(&b).await.unwrap();
                store
                    .insert(&account(3, Platform::UnionPay, "n1"))
                    .await
                    .unwrap();
                assert_eq!(store.list_for_person(&p).await.unwrap(), vec![b, a]);
                assert!(
                    store
                        .list_for_person(&PersonId::parse("psn-404").unwrap())
                        .await
                        .unwrap()
                        .is_empty()
                );
            }

            #[tokio::test]
            async fn attempts_are_reserved_per_account_and_day_up_to_the_limit() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let a = account(1, Platform::Alipay, "u1");
                let b = account(2, Platform::Alipay, "u2");
                store.insert(&a).await.unwrap();
                store.insert(&b).await.unwrap();
                assert_eq!(store.failed_attempts(&a.id, day(26)).await.unwrap(), 0);
                assert_eq!(
                    store.reserve_attempt(&a.id, day(26), 2).await.unwrap(),
                    Some(1)
                );
                assert_eq!(
                    store.reserve_attempt(&a.id, day(26), 2).await.unwrap(),
                    Some(2)
                );
                assert_eq!(
                    store.reserve_attempt(&a.id, day(26), 2).await.unwrap(),
                    None
                );
                assert_eq!(store.failed_attempts(&a.id, day(26)).await.unwrap(), 2);
                assert_eq!(
                    store.reserve_attempt(&a.id, day(27), 2).await.unwrap(),
                    Some(1)
                );
                assert_eq!(
                    store.reserve_attempt(&b.id, day(26), 2).await.unwrap(),
                    Some(1)
                );
                assert_eq!(
                    store.reserve_attempt(&b.id, day(25), 0).await.unwrap(),
                    None
                );
                assert_eq!(store.failed_attempts(&b.id, day(25)).await.unwrap(), 0);
                assert_eq!(store.failed_attempts(&a.id, day(27)).await.unwrap(), 1);
            }

            #[tokio::test]
            async fn released_attempts_free_their_place_and_never_go_negative() {
                if !$available() {
                    return;
                }
                let store = super::$factory().await;
                let a = account(1, Platform::Alipay, "u1");
                store.insert(&a).await.unwrap();
                store.release_attempt(&a.id, day(26)).await.unwrap();
                assert_eq!(store.failed_attempts(&a.id, day(26)).await.unwrap(), 0);
                assert_eq!(
                    store.reserve_attempt(&a.id, day(26), 1).await.unwrap(),
                    Some(1)
                );
                assert_eq!(
                    store.reserve_attempt(&a.id, day(26), 1).await.unwrap(),
                    None
                );
                store.release_attempt(&a.id, day(26)).await.unwrap();
                assert_eq!(store.failed_attempts(&a.id, day(26)).await.unwrap(), 0);
                assert_eq!(
                    store.reserve_attempt(&a.id, day(26), 1).await.unwrap(),
                    Some(1)
                );
                store.release_attempt(&a.id, day(26)).await.unwrap();
                store.release_attempt(&a.id, day(26)).await.unwrap();
                assert_eq!(store.failed_attempts(&a.id, day(26)).await.unwrap(), 0);
            }

            #[tokio::test]
            async fn concurrent_reservations_never_exceed_the_limit() {
                if !$available() {
                    return;
                }
                let store = std::sync::Arc::new(super::$factory().await);
                let a = account(1, Platform::Alipay, "u1");
                store.insert(&a).await.unwrap();
                let mut tasks = Vec::new();
                for _ in 0..20 {
                    let store = store.clone();
                    let id = a.id.clone();
                    tasks.push(tokio::spawn(async move {
                        store.reserve_attempt(&id, day(26), 5).await.unwrap()
                    }));
                }
                let mut granted = Vec::new();
                for t in tasks {
                    if let Some(n) = t.await.unwrap() {
                        granted.push(n);
                    }
                }
                granted.sort_unstable();
                assert_eq!(granted, vec![1, 2, 3, 4, 5]);
                assert_eq!(store.failed_attempts(&a.id, day(26)).await.unwrap(), 5);
            }
        }
    };
}

/// A [`RealNameVerifier`](citycard_identity::RealNameVerifier) double that
/// injects faults in front of another verifier.
///
/// Operations are named `check_factors`, `start_face_session` and
/// `face_result`. On `faults`: [`Fault::Fail`](crate::Fault::Fail) and
/// [`Fault::Timeout`](crate::Fault::Timeout) fail before the inner call;
/// [`Fault::UnknownOutcome`](crate::Fault::UnknownOutcome) makes the inner
/// call and then reports the provider unavailable. Any fault on
/// `rate_limits` answers "rate limited" instead.
#[derive(Clone)]
pub struct FaultyVerifier {
    inner: std::sync::Arc<dyn citycard_identity::RealNameVerifier>,
    /// Faults that make calls fail or lose their answer.
    pub faults: crate::Faults,
    /// Faults that make calls answer "rate limited".
    pub rate_limits: crate::Faults,
}

impl std::fmt::Debug for FaultyVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyVerifier")
            .field("faults", &self.faults)
            .finish()
    }
}

impl FaultyVerifier {
    /// Wraps a verifier with no faults scripted.
    pub fn new(inner: std::sync::Arc<dyn citycard_identity::RealNameVerifier>) -> Self {
        Self {
            inner,
            faults: crate::Faults::new(),
            rate_limits: crate::Faults::new(),
        }
    }

    fn before(&self, op: &str) -> Result<bool, citycard_identity::VerifierError> {
        use citycard_identity::VerifierError;
        if self.rate_limits.check(op) != crate::Fault::None {
            return Err(VerifierError::RateLimited);
        }
        match self.faults.check(op) {
            crate::Fault::None => Ok(false),
            crate::Fault::Fail => Err(VerifierError::Unavailable("injected failure".into())),
            crate::Fault::Timeout => Err(VerifierError::Unavailable("timed out".into())),
            crate::Fault::UnknownOutcome => Ok(true),
        }
    }
}

fn lost() -> citycard_identity::VerifierError {
    citycard_identity::VerifierError::Unavailable("the answer was lost".into())
}

#[async_trait::async_trait]
impl citycard_identity::RealNameVerifier for FaultyVerifier {
    async fn check_factors(
        &self,
        check: &citycard_identity::FactorCheck,
    ) -> Result<citycard_identity::VerificationOutcome, citycard_identity::VerifierError> {
        let lose = self.before("check_factors")?;
        let out = self.inner.check_factors(check).await;
        if lose { Err(lost()) } else { out }
    }

    async fn start_face_session(
        &self,
        name: &citycard_core::Sensitive<String>,
        id_number: &IdNumber,
    ) -> Result<citycard_identity::FaceSession, citycard_identity::VerifierError> {
        let lose = self.before("start_face_session")?;
        let out = self.inner.start_face_session(name, id_number).await;
        if lose { Err(lost()) } else { out }
    }

    async fn face_result(
        &self,
        session_id: &str,
    ) -> Result<citycard_identity::FaceResult, citycard_identity::VerifierError> {
        let lose = self.before("face_result")?;
        let out = self.inner.face_result(session_id).await;
        if lose { Err(lost()) } else { out }
    }
}

/// A [`KeyProvider`](citycard_identity::KeyProvider) double (the host's KMS)
/// that injects faults in front of another provider.
///
/// Operations are named `current_key_id`, `key` and `blind_index_key`; any
/// fault makes the call fail with `VaultError::ProviderUnavailable` (an
/// unknown outcome of a read is just a failure).
#[derive(Clone)]
pub struct FaultyKeyProvider {
    inner: std::sync::Arc<dyn citycard_identity::KeyProvider>,
    /// The fault script.
    pub faults: crate::Faults,
}

impl std::fmt::Debug for FaultyKeyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyKeyProvider")
            .field("faults", &self.faults)
            .finish()
    }
}

impl FaultyKeyProvider {
    /// Wraps a provider with no faults scripted.
    pub fn new(inner: std::sync::Arc<dyn citycard_identity::KeyProvider>) -> Self {
        Self {
            inner,
            faults: crate::Faults::new(),
        }
    }

    fn before(&self, op: &str) -> Result<(), citycard_identity::VaultError> {
        match self.faults.check(op) {
            crate::Fault::None => Ok(()),
            fault => Err(citycard_identity::VaultError::ProviderUnavailable(format!(
                "injected {fault:?}"
            ))),
        }
    }
}

#[async_trait::async_trait]
impl citycard_identity::KeyProvider for FaultyKeyProvider {
    async fn current_key_id(
        &self,
    ) -> Result<citycard_identity::KeyId, citycard_identity::VaultError> {
        self.before("current_key_id")?;
        self.inner.current_key_id().await
    }

    async fn key(
        &self,
        id: &citycard_identity::KeyId,
    ) -> Result<citycard_identity::SecretKey, citycard_identity::VaultError> {
        self.before("key")?;
        self.inner.key(id).await
    }

    async fn blind_index_key(
        &self,
    ) -> Result<citycard_identity::SecretKey, citycard_identity::VaultError> {
        self.before("blind_index_key")?;
        self.inner.blind_index_key().await
    }
}
