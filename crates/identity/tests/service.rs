//! IdentityService: real-name verification end to end on memory stores.
use std::sync::Arc;

use chrono::Duration;
use citycard_core::{
    AuditLog, AuditOutcome, AuditQuery, ClassifiedError, ErrorClass, IdempotencyError,
    IdempotencyKey, ManualClock, MemoryAuditLog, MemoryIdempotencyStore, OperatorId, PersonId,
    Platform, PlatformAccountId, Principal, SequentialIdGenerator,
};
use citycard_identity::{
    ExtraFactor, Factor, IdNumber, IdentityConfig, IdentityError, IdentityPorts, IdentityService,
    KeyId, KnownPerson, MemoryKeyProvider, MemoryPersonStore, MemoryPlatformAccountStore, Person,
    PersonStore, PlatformAccountStore, RealNameLevel, RealNameRequest, SecretKey,
    SimulatedVerifier, Vault, VerificationOutcome, VerifierError,
};
use citycard_testkit::Fault;
use citycard_testkit::identity::{FaultyKeyProvider, FaultyVerifier};

const ZHANG: &str = "11010519491231002X";
const LI: &str = "110101199003078670";

struct World {
    service: IdentityService,
    sim: Arc<SimulatedVerifier>,
    faulty: FaultyVerifier,
    persons: Arc<MemoryPersonStore>,
    accounts: Arc<MemoryPlatformAccountStore>,
    audit: Arc<MemoryAuditLog>,
    clock: ManualClock,
    keys: MemoryKeyProvider,
    kms: FaultyKeyProvider,
    vault: Vault,
    idempotency: Arc<MemoryIdempotencyStore>,
}

fn world_with(config: IdentityConfig) -> World {
    let sim = Arc::new(SimulatedVerifier::new());
    sim.register(
        &IdNumber::parse(ZHANG).unwrap(),
        KnownPerson::named("张三")
            .with_phone("13812345678")
            .with_bank_card("6222020200112233445"),
    );
    sim.register(&IdNumber::parse(LI).unwrap(), KnownPerson::named("李四"));
    let faulty = FaultyVerifier::new(sim.clone());
    let keys = MemoryKeyProvider::new(
        KeyId::parse("key-1").unwrap(),
        SecretKey::new([3; 32]),
        SecretKey::new([4; 32]),
    );
    let kms = FaultyKeyProvider::new(Arc::new(keys.clone()));
    let vault = Vault::new(Arc::new(kms.clone()));
    // Enrolment commits its audit record and key outcome with the person:
    // the person store shares the core the service reads them from.
    let core = citycard_core::MemoryCore::new();
    let persons = Arc::new(MemoryPersonStore::with_core(core.clone()));
    let accounts = Arc::new(MemoryPlatformAccountStore::new());
    let audit = core.audit();
    let idempotency = core.idempotency();
    // 10:00 in Hangzhou.
    let clock = ManualClock::at_ymd_hms(2026, 11, 26, 10, 0, 0);
    let service = IdentityService::new(
        IdentityPorts {
            persons: persons.clone(),
            accounts: accounts.clone(),
            verifier: Arc::new(faulty.clone()),
            vault: vault.clone(),
            audit: audit.clone(),
            idempotency: idempotency.clone(),
            clock: Arc::new(clock.clone()),
            ids: Arc::new(SequentialIdGenerator::new()),
        },
        config,
    );
    World {
        service,
        sim,
        faulty,
        persons,
        accounts,
        audit,
        clock,
        keys,
        kms,
        vault,
        idempotency,
    }
}

fn world() -> World {
    world_with(IdentityConfig::default())
}

fn alipay() -> Principal {
    Principal::Platform {
        platform: Platform::Alipay,
    }
}

fn operator() -> Principal {
    Principal::Operator {
        operator: OperatorId::parse("opr-1").unwrap(),
    }
}

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).unwrap()
}

async fn account(w: &World, external: &str) -> PlatformAccountId {
    w.service
        .register_account(
            &alipay(),
            Platform::Alipay,
            external,
            &key(&format!("reg-{external}")),
        )
        .await
        .unwrap()
        .id
}

#[tokio::test]
async fn a_two_factor_match_links_the_account_to_an_encrypted_person() {
    let w = world();
    let acc = account(&w, "2088-1").await;
    assert!(
        !w.service
            .real_name_status(&Principal::System, &acc)
            .await
            .unwrap()
            .is_verified()
    );
    let report = w
        .service
        .verify_real_name(
            &alipay(),
            &acc,
            &RealNameRequest::two_factor("张三", ZHANG),
            &key("v1"),
        )
        .await
        .unwrap();
    assert_eq!(report.outcome, VerificationOutcome::Match);
    assert_eq!(report.level, RealNameLevel::TwoFactor);
    let person_id = report.person.clone().unwrap();
    let status = w
        .service
        .real_name_status(&Principal::System, &acc)
        .await
        .unwrap();
    assert!(status.is_verified());
    assert_eq!(status.person.as_ref(), Some(&person_id));
    assert_eq!(status.verified_at, Some(w.clock_now()));

    let person = w.persons.get(&person_id).await.unwrap().unwrap();
    assert_eq!(person.masked_name, "张*");
    assert_eq!(person.masked_id_number, "110***********002X");
    assert_eq!(person.level, RealNameLevel::TwoFactor);
    let json = serde_json::to_string(&person).unwrap();
    assert!(!json.contains(ZHANG) && !json.contains("张三"));
    let opened = w
        .vault
        .open_id_number(&person.id_number, &Person::id_number_context(&person_id))
        .await
        .unwrap();
    assert_eq!(opened.reveal(), ZHANG);

    // The binding glue's checks.
    let zhang = IdNumber::parse(ZHANG).unwrap();
    assert!(
        w.service
            .id_number_belongs_to(&person_id, &zhang)
            .await
            .unwrap()
    );
    assert!(
        !w.service
            .id_number_belongs_to(&person_id, &IdNumber::parse(LI).unwrap())
            .await
            .unwrap()
    );
    assert_eq!(
        w.service
            .find_person_by_id_number(&operator(), &zhang)
            .await
            .unwrap()
            .map(|p| p.id),
        Some(person_id.clone())
    );
    assert!(matches!(
        w.service
            .find_person_by_id_number(&Principal::cardholder(person_id.clone()), &zhang)
            .await,
        Err(IdentityError::Denied { .. })
    ));
    let audit = w
        .audit
        .query(&AuditQuery::subject(format!("platform_account:{acc}")))
        .await
        .unwrap();
    let last = &audit.last().unwrap().record;
    assert_eq!(last.action, "identity.verify_real_name");
    assert_eq!(last.outcome, AuditOutcome::Succeeded);
    assert_eq!(
        last.detail.get("level").map(String::as_str),
        Some("two_factor")
    );
    assert!(
        audit
            .iter()
            .all(|e| !format!("{:?}", e.record).contains(ZHANG))
    );
}

impl World {
    fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use citycard_core::Clock;
        self.clock.now()
    }
}

#[tokio::test]
async fn an_invalid_number_is_refused_locally_without_calling_the_provider() {
    let w = world();
    let acc = account(&w, "2088-2").await;
    for (i, bad) in [
        "11010119900307867X",
        "440308199902301512",
        "111111199901101512",
        "12345",
    ]
    .into_iter()
    .enumerate()
    {
        let err = w
            .service
            .verify_real_name(
                &alipay(),
                &acc,
                &RealNameRequest::two_factor("张三", bad),
                &key(&format!("bad-{i}")),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, IdentityError::InvalidIdNumber(_)), "{err}");
        assert_eq!(err.class(), ErrorClass::InvalidInput);
    }
    assert_eq!(w.sim.factor_calls(), 0);
    assert_eq!(w.faulty.faults.calls("check_factors"), 0);
    let day = citycard_core::civil_date(w.clock_now());
    assert_eq!(w.accounts.failed_attempts(&acc, day).await.unwrap(), 0);
    let failed = w
        .audit
        .query(&AuditQuery::subject(format!("platform_account:{acc}")))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.record.outcome == AuditOutcome::Failed)
        .count();
    assert_eq!(failed, 4);
}

#[tokio::test]
async fn mismatches_are_limited_per_account_per_civil_day() {
    let w = world_with(IdentityConfig {
        max_failures_per_day: 3,
        ..IdentityConfig::default()
    });
    let acc = account(&w, "2088-3").await;
    let other = account(&w, "2088-4").await;
    for i in 1..=3u32 {
        let report = w
            .service
            .verify_real_name(
                &alipay(),
                &acc,
                &RealNameRequest::two_factor("王五", ZHANG),
                &key(&format!("m{i}")),
            )
            .await
            .unwrap();
        assert_eq!(
            report.outcome,
            VerificationOutcome::Mismatch {
                factor: Some(Factor::Name)
            }
        );
        assert_eq!(report.failures_today, i);
        assert_eq!(report.level, RealNameLevel::Unverified);
    }
    let calls = w.sim.factor_calls();
    let err = w
        .service
        .verify_real_name(
            &alipay(),
            &acc,
            &RealNameRequest::two_factor("张三", ZHANG),
            &key("m4"),
        )
        .await
        .unwrap_err();
    assert_eq!(err, IdentityError::TooManyFailures { limit: 3 });
    assert_eq!(err.class(), ErrorClass::RateLimited);
    assert_eq!(
        w.sim.factor_calls(),
        calls,
        "the provider is not called when limited"
    );
    // Another account is not affected.
    assert_eq!(
        w.service
            .verify_real_name(
                &alipay(),
                &other,
                &RealNameRequest::two_factor("张三", ZHANG),
                &key("o1")
            )
            .await
            .unwrap()
            .outcome,
        VerificationOutcome::Match
    );
    // 23:59 the same civil day: still limited. Midnight in Hangzhou: allowed again.
    w.clock.advance(Duration::hours(13) + Duration::minutes(59));
    assert!(
        w.service
            .verify_real_name(
                &alipay(),
                &acc,
                &RealNameRequest::two_factor("张三", ZHANG),
                &key("m5")
            )
            .await
            .is_err()
    );
    w.clock.advance(Duration::minutes(1));
    assert_eq!(
        w.service
            .verify_real_name(
                &alipay(),
                &acc,
                &RealNameRequest::two_factor("张三", ZHANG),
                &key("m6")
            )
            .await
            .unwrap()
            .outcome,
        VerificationOutcome::Match
    );
}

#[tokio::test]
async fn no_record_counts_as_a_failure_and_three_factor_upgrades_the_level() {
    let w = world();
    let acc = account(&w, "2088-5").await;
    let unknown = "440308199901101512";
    let report = w
        .service
        .verify_real_name(
            &alipay(),
            &acc,
            &RealNameRequest::two_factor("赵六", unknown),
            &key("n1"),
        )
        .await
        .unwrap();
    assert_eq!(report.outcome, VerificationOutcome::NoRecord);
    assert_eq!(report.failures_today, 1);

    let wrong_phone = w
        .service
        .verify_real_name(
            &alipay(),
            &acc,
            &RealNameRequest::with_phone("张三", ZHANG, "13900000000"),
            &key("p1"),
        )
        .await
        .unwrap();
    assert_eq!(
        wrong_phone.outcome,
        VerificationOutcome::Mismatch {
            factor: Some(Factor::Phone)
        }
    );
    let two = w
        .service
        .verify_real_name(
            &alipay(),
            &acc,
            &RealNameRequest::two_factor("张三", ZHANG),
            &key("t1"),
        )
        .await
        .unwrap();
    assert_eq!(two.level, RealNameLevel::TwoFactor);
    // Now linked: the cardholder may upgrade their own account; the legacy
    // 15-digit form is not a different person.
    let me = Principal::cardholder(two.person.clone().unwrap());
    let three = w
        .service
        .verify_real_name(
            &me,
            &acc,
            &RealNameRequest::with_bank_card(" 张三 ", "11010519491231002x", "6222020200112233445"),
            &key("t2"),
        )
        .await
        .unwrap();
    assert_eq!(three.level, RealNameLevel::ThreeFactor);
    assert_eq!(three.person, two.person);
    let person = w
        .persons
        .get(two.person.as_ref().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(person.level, RealNameLevel::ThreeFactor);
    // A weaker later check does not lower the level.
    let again = w
        .service
        .verify_real_name(
            &me,
            &acc,
            &RealNameRequest::two_factor("张三", ZHANG),
            &key("t3"),
        )
        .await
        .unwrap();
    assert_eq!(again.level, RealNameLevel::ThreeFactor);
}

#[tokio::test]
async fn only_the_account_itself_or_an_operator_may_verify() {
    let w = world();
    let acc = account(&w, "2088-6").await;
    let req = RealNameRequest::two_factor("张三", ZHANG);
    for actor in [
        Principal::Platform {
            platform: Platform::WechatPay,
        },
        Principal::cardholder(PersonId::parse("psn-x").unwrap()),
        Principal::System,
    ] {
        let err = w
            .service
            .verify_real_name(&actor, &acc, &req, &key("d1"))
            .await
            .unwrap_err();
        assert!(matches!(err, IdentityError::Denied { .. }), "{actor}");
        assert_eq!(err.class(), ErrorClass::Denied);
    }
    assert_eq!(w.sim.factor_calls(), 0);
    let denied = w
        .audit
        .query(&AuditQuery::subject(format!("platform_account:{acc}")))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.record.outcome == AuditOutcome::Denied)
        .count();
    assert_eq!(denied, 3);
    assert_eq!(
        w.service
            .verify_real_name(&operator(), &acc, &req, &key("d2"))
            .await
            .unwrap()
            .outcome,
        VerificationOutcome::Match
    );
    // A platform may not register accounts on another platform.
    assert!(matches!(
        w.service
            .register_account(&alipay(), Platform::UnionPay, "u-1", &key("r"))
            .await,
        Err(IdentityError::Denied { .. })
    ));
    let refused = w
        .audit
        .query(&AuditQuery::subject("platform:union_pay"))
        .await
        .unwrap();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].record.outcome, AuditOutcome::Denied);
    assert!(matches!(
        w.service
            .verify_real_name(
                &alipay(),
                &PlatformAccountId::parse("pac-404").unwrap(),
                &req,
                &key("d3")
            )
            .await,
        Err(IdentityError::AccountNotFound { .. })
    ));
}

#[tokio::test]
async fn retries_with_the_same_key_replay_the_first_report() {
    let w = world();
    let acc = account(&w, "2088-7").await;
    let req = RealNameRequest::two_factor("王五", ZHANG);
    let first = w
        .service
        .verify_real_name(&alipay(), &acc, &req, &key("same"))
        .await
        .unwrap();
    let again = w
        .service
        .verify_real_name(&alipay(), &acc, &req, &key("same"))
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(w.sim.factor_calls(), 1);
    let day = citycard_core::civil_date(w.clock_now());
    assert_eq!(w.accounts.failed_attempts(&acc, day).await.unwrap(), 1);
    let err = w
        .service
        .verify_real_name(
            &alipay(),
            &acc,
            &RealNameRequest::two_factor("张三", ZHANG),
            &key("same"),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        IdentityError::Idempotency(IdempotencyError::Conflict { .. })
    ));
    // Registering twice returns the same account.
    let again = w
        .service
        .register_account(&alipay(), Platform::Alipay, "2088-7", &key("another"))
        .await
        .unwrap();
    assert_eq!(again.id, acc);
}

#[tokio::test]
async fn provider_outages_are_retryable_and_not_counted() {
    let w = world();
    let acc = account(&w, "2088-8").await;
    let req = RealNameRequest::two_factor("张三", ZHANG);
    w.faulty.faults.next("check_factors", Fault::Timeout);
    let err = w
        .service
        .verify_real_name(&alipay(), &acc, &req, &key("k"))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        IdentityError::Provider(VerifierError::Unavailable(_))
    ));
    assert!(err.class().is_retryable());
    w.faulty.faults.next("check_factors", Fault::UnknownOutcome);
    assert!(
        w.service
            .verify_real_name(&alipay(), &acc, &req, &key("k"))
            .await
            .is_err()
    );
    w.faulty.rate_limits.next("check_factors", Fault::Fail);
    let err = w
        .service
        .verify_real_name(&alipay(), &acc, &req, &key("k"))
        .await
        .unwrap_err();
    assert_eq!(err, IdentityError::Provider(VerifierError::RateLimited));
    assert_eq!(err.class(), ErrorClass::RateLimited);
    let day = citycard_core::civil_date(w.clock_now());
    assert_eq!(w.accounts.failed_attempts(&acc, day).await.unwrap(), 0);
    assert!(
        !w.service
            .real_name_status(&Principal::System, &acc)
            .await
            .unwrap()
            .is_verified()
    );
    // The same key works once the provider is back.
    let report = w
        .service
        .verify_real_name(&alipay(), &acc, &req, &key("k"))
        .await
        .unwrap();
    assert_eq!(report.outcome, VerificationOutcome::Match);
}

#[tokio::test]
async fn an_account_cannot_switch_to_another_person() {
    let w = world();
    let acc = account(&w, "2088-9").await;
    w.service
        .verify_real_name(
            &alipay(),
            &acc,
            &RealNameRequest::two_factor("张三", ZHANG),
            &key("a"),
        )
        .await
        .unwrap();
    let calls = w.sim.factor_calls();
    let err = w
        .service
        .verify_real_name(
            &alipay(),
            &acc,
            &RealNameRequest::two_factor("李四", LI),
            &key("b"),
        )
        .await
        .unwrap_err();
    assert_eq!(err, IdentityError::AccountBelongsToAnotherPerson);
    assert_eq!(w.sim.factor_calls(), calls);
    // Two accounts of one person share the person record.
    let wechat_like = account(&w, "2088-10").await;
    let r = w
        .service
        .verify_real_name(
            &alipay(),
            &wechat_like,
            &RealNameRequest::two_factor("张三", "11010519491231002X"),
            &key("c"),
        )
        .await
        .unwrap();
    assert_eq!(
        r.person,
        w.service
            .real_name_status(&Principal::System, &acc)
            .await
            .unwrap()
            .person
    );
    assert_eq!(w.persons.list(None, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn face_liveness_is_judged_by_the_server_side_result() {
    let w = world();
    let acc = account(&w, "2088-11").await;
    let session = w
        .service
        .start_face_check(&alipay(), &acc, "李四", LI, &key("f1"))
        .await
        .unwrap();
    let stored = w.accounts.get(&acc).await.unwrap().unwrap();
    let pending = stored.pending_face.unwrap();
    assert_eq!(pending.session_id, session.session_id);
    assert!(!serde_json::to_string(&pending).unwrap().contains(LI));
    let err = w
        .service
        .complete_face_check(&alipay(), &acc, &key("f2"))
        .await
        .unwrap_err();
    assert_eq!(err, IdentityError::FaceCheckPending);
    assert!(w.sim.finish_face_check(&session.session_id, true));
    let report = w
        .service
        .complete_face_check(&alipay(), &acc, &key("f2"))
        .await
        .unwrap();
    assert_eq!(report.outcome, VerificationOutcome::Match);
    assert_eq!(report.level, RealNameLevel::FaceLiveness);
    let status = w
        .service
        .real_name_status(&Principal::System, &acc)
        .await
        .unwrap();
    assert_eq!(status.level, RealNameLevel::FaceLiveness);
    assert!(
        w.accounts
            .get(&acc)
            .await
            .unwrap()
            .unwrap()
            .pending_face
            .is_none()
    );
    assert!(
        w.service
            .id_number_belongs_to(
                status.person.as_ref().unwrap(),
                &IdNumber::parse(LI).unwrap()
            )
            .await
            .unwrap()
    );
    // Replay returns the same report.
    assert_eq!(
        w.service
            .complete_face_check(&alipay(), &acc, &key("f2"))
            .await
            .unwrap(),
        report
    );
}

#[tokio::test]
async fn a_failed_or_expired_face_check_does_not_verify() {
    let w = world();
    let acc = account(&w, "2088-12").await;
    let s = w
        .service
        .start_face_check(&alipay(), &acc, "李四", LI, &key("g1"))
        .await
        .unwrap();
    w.sim.finish_face_check(&s.session_id, false);
    let report = w
        .service
        .complete_face_check(&alipay(), &acc, &key("g2"))
        .await
        .unwrap();
    assert_eq!(
        report.outcome,
        VerificationOutcome::Mismatch {
            factor: Some(Factor::Face)
        }
    );
    assert_eq!(report.failures_today, 1);
    assert_eq!(report.level, RealNameLevel::Unverified);
    assert_eq!(
        w.service
            .complete_face_check(&alipay(), &acc, &key("g3"))
            .await
            .unwrap_err(),
        IdentityError::NoFaceCheckPending
    );
    let s = w
        .service
        .start_face_check(&alipay(), &acc, "李四", LI, &key("g4"))
        .await
        .unwrap();
    w.sim.expire_face_session(&s.session_id);
    assert_eq!(
        w.service
            .complete_face_check(&alipay(), &acc, &key("g5"))
            .await
            .unwrap_err(),
        IdentityError::FaceCheckExpired
    );
    assert!(
        !w.service
            .real_name_status(&Principal::System, &acc)
            .await
            .unwrap()
            .is_verified()
    );
    // Invalid numbers never open a session.
    assert!(matches!(
        w.service
            .start_face_check(&alipay(), &acc, "李四", "110101199003078671", &key("g6"))
            .await,
        Err(IdentityError::InvalidIdNumber(_))
    ));
    assert_eq!(w.faulty.faults.calls("start_face_session"), 2);
}

#[tokio::test]
async fn persons_are_reencrypted_under_a_rotated_key() {
    let w = world();
    for (i, (name, number)) in [("张三", ZHANG), ("李四", LI)].into_iter().enumerate() {
        let acc = account(&w, &format!("r-{i}")).await;
        w.service
            .verify_real_name(
                &alipay(),
                &acc,
                &RealNameRequest::two_factor(name, number),
                &key(&format!("r{i}")),
            )
            .await
            .unwrap();
    }
    w.keys
        .rotate(KeyId::parse("key-2").unwrap(), SecretKey::new([5; 32]));
    assert!(matches!(
        w.service.reencrypt_persons(&alipay(), None, 10).await,
        Err(IdentityError::Denied { .. })
    ));
    let last = w
        .service
        .reencrypt_persons(&Principal::System, None, 1)
        .await
        .unwrap();
    let last = w
        .service
        .reencrypt_persons(&Principal::System, last.as_ref(), 1)
        .await
        .unwrap();
    assert!(last.is_some());
    assert_eq!(
        w.service
            .reencrypt_persons(&Principal::System, last.as_ref(), 1)
            .await
            .unwrap(),
        None
    );
    w.keys.retire(&KeyId::parse("key-1").unwrap());
    for p in w.persons.list(None, 10).await.unwrap() {
        assert_eq!(p.id_number.key_id.as_str(), "key-2");
        assert_eq!(p.name.key_id.as_str(), "key-2");
        let id = w
            .vault
            .open_id_number(&p.id_number, &Person::id_number_context(&p.id))
            .await
            .unwrap();
        assert!(id.reveal() == ZHANG || id.reveal() == LI);
        // The blind index does not change with the encryption key.
        assert_eq!(p.id_number_index, w.vault.blind_index(&id).await.unwrap());
    }
    let _ = ExtraFactor::None;
}

#[tokio::test]
async fn a_key_provider_outage_is_retryable_and_leaves_nothing_half_done() {
    let w = world();
    let acc = account(&w, "2088-kms").await;
    let req = RealNameRequest::two_factor("张三", ZHANG);
    // The blind index key is unreachable: nothing is sent to the provider.
    w.kms.faults.next("blind_index_key", Fault::Timeout);
    let err = w
        .service
        .verify_real_name(&alipay(), &acc, &req, &key("kms"))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        IdentityError::Vault(citycard_identity::VaultError::ProviderUnavailable(_))
    ));
    assert!(err.class().is_retryable());
    assert_eq!(w.sim.factor_calls(), 0);
    // Sealing fails after a match: the person is not created, the account not linked.
    w.kms.faults.next("current_key_id", Fault::Fail);
    assert!(
        w.service
            .verify_real_name(&alipay(), &acc, &req, &key("kms"))
            .await
            .is_err()
    );
    assert!(w.persons.list(None, 10).await.unwrap().is_empty());
    assert!(
        !w.service
            .real_name_status(&Principal::System, &acc)
            .await
            .unwrap()
            .is_verified()
    );
    // The retry with the same key succeeds.
    let report = w
        .service
        .verify_real_name(&alipay(), &acc, &req, &key("kms"))
        .await
        .unwrap();
    assert_eq!(report.outcome, VerificationOutcome::Match);
    assert_eq!(w.persons.list(None, 10).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_mismatches_never_overshoot_the_daily_limit() {
    let w = world_with(IdentityConfig {
        max_failures_per_day: 3,
        ..IdentityConfig::default()
    });
    let acc = account(&w, "2088-race").await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let service = w.service.clone();
        let acc = acc.clone();
        tasks.push(tokio::spawn(async move {
            service
                .verify_real_name(
                    &alipay(),
                    &acc,
                    &RealNameRequest::two_factor("王五", ZHANG),
                    &key(&format!("race-{i}")),
                )
                .await
        }));
    }
    let (mut mismatches, mut limited) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => {
                assert!(matches!(r.outcome, VerificationOutcome::Mismatch { .. }));
                mismatches += 1;
            }
            Err(IdentityError::TooManyFailures { limit: 3 }) => limited += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((mismatches, limited), (3, 9));
    assert_eq!(
        w.sim.factor_calls(),
        3,
        "the provider is billed only within the limit"
    );
}

#[tokio::test]
async fn operators_enrol_persons_once_and_verification_finds_the_same_person() {
    let w = world();
    let operator = Principal::Operator {
        operator: OperatorId::parse("opr-counter-1").unwrap(),
    };
    let name = citycard_core::Sensitive::new("张三".to_string());
    let number = citycard_core::Sensitive::new(ZHANG.to_string());
    let enrolled = w
        .service
        .enroll_person(
            &operator,
            &name,
            &number,
            &IdempotencyKey::parse("enrol-1").unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(enrolled.level, RealNameLevel::Unverified);
    assert!(!enrolled.masked_id_number.contains("19491231"));
    // A retry and a second enrolment under another key both give the same person.
    let again = w
        .service
        .enroll_person(
            &operator,
            &name,
            &number,
            &IdempotencyKey::parse("enrol-1").unwrap(),
        )
        .await
        .unwrap();
    let other_key = w
        .service
        .enroll_person(
            &operator,
            &name,
            &number,
            &IdempotencyKey::parse("enrol-2").unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(again.id, enrolled.id);
    assert_eq!(other_key.id, enrolled.id);
    assert!(
        w.service
            .id_number_belongs_to(&enrolled.id, &IdNumber::parse(ZHANG).unwrap())
            .await
            .unwrap()
    );
    // Cardholders cannot enrol anyone; invalid numbers never get stored.
    let denied = w
        .service
        .enroll_person(
            &Principal::cardholder(enrolled.id.clone()),
            &name,
            &number,
            &IdempotencyKey::parse("enrol-3").unwrap(),
        )
        .await;
    assert!(matches!(denied, Err(IdentityError::Denied { .. })));
    let invalid = w
        .service
        .enroll_person(
            &operator,
            &name,
            &citycard_core::Sensitive::new("110105194912310021".to_string()),
            &IdempotencyKey::parse("enrol-4").unwrap(),
        )
        .await;
    assert!(matches!(invalid, Err(IdentityError::InvalidIdNumber(_))));
    assert_eq!(invalid.unwrap_err().class(), ErrorClass::InvalidInput);
}

#[tokio::test]
async fn the_enrolment_fingerprint_is_keyed_and_retries_still_replay() {
    use citycard_core::{Fingerprint, IdempotencyStore};
    let w = world();
    let name = citycard_core::Sensitive::new("张三".to_string());
    let number = citycard_core::Sensitive::new(ZHANG.to_string());
    let k = key("enrol-fp");
    let first = w
        .service
        .enroll_person(&operator(), &name, &number, &k)
        .await
        .unwrap();
    let stored = w
        .idempotency
        .get(
            &citycard_core::principal_scope("identity.enroll_person", &operator()),
            &k,
        )
        .await
        .unwrap()
        .expect("the enrolment is recorded under its key");
    // What someone holding only the database could compute: the blind index is
    // stored with the person, the name is a guess from a dictionary.
    let index = w
        .vault
        .blind_index(&IdNumber::parse(ZHANG).unwrap())
        .await
        .unwrap();
    let plain = Fingerprint::of(&(
        index.to_hex(),
        Fingerprint::of_bytes("张三".as_bytes()).to_hex(),
    ))
    .unwrap();
    assert_ne!(stored.fingerprint, plain);
    // Under another index key the same request gives another fingerprint.
    let other_keys = MemoryKeyProvider::new(
        KeyId::parse("key-1").unwrap(),
        SecretKey::new([3; 32]),
        SecretKey::new([9; 32]),
    );
    let other = Vault::new(Arc::new(other_keys));
    let other_index = other
        .blind_index(&IdNumber::parse(ZHANG).unwrap())
        .await
        .unwrap();
    let other_digest = other
        .keyed_digest(&[b"enroll-name", "张三".as_bytes()])
        .await
        .unwrap();
    let under_other_key = Fingerprint::of(&(other_index.to_hex(), other_digest.to_hex())).unwrap();
    assert_ne!(stored.fingerprint, under_other_key);
    // A retry with the same key and request replays the first person.
    let again = w
        .service
        .enroll_person(&operator(), &name, &number, &k)
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    // The same key with another name is refused as another request.
    let changed = w
        .service
        .enroll_person(
            &operator(),
            &citycard_core::Sensitive::new("张四".to_string()),
            &number,
            &k,
        )
        .await;
    assert!(changed.is_err());
}

#[tokio::test]
async fn a_long_name_keeps_only_its_first_character_whatever_the_callers_mask() {
    let w = world();
    // The caller wraps the name with the default mask (first 3, last 4 kept).
    let name = citycard_core::Sensitive::new("阿卜杜热合曼·买买提".to_string());
    let number = citycard_core::Sensitive::new(LI.to_string());
    let person = w
        .service
        .enroll_person(&operator(), &name, &number, &key("enrol-long"))
        .await
        .unwrap();
    assert_eq!(person.masked_name, "阿*********");
    assert_eq!(Person::mask_name(" 张三 "), "张*");
}

#[test]
fn a_known_person_of_the_simulated_provider_prints_masked() {
    let known = KnownPerson::named("张三丰")
        .with_phone("13812345678")
        .with_bank_card("6222020200112233445");
    let shown = format!("{known:?}");
    for secret in ["三丰", "1234", "020200112"] {
        assert!(!shown.contains(secret), "{shown} shows {secret}");
    }
    assert!(shown.contains("张**"), "{shown}");
}

#[tokio::test]
async fn reads_name_their_principal_are_audited_and_stay_within_rights() {
    let w = world();
    let acc = account(&w, "2088-r").await;
    let report = w
        .service
        .verify_real_name(
            &alipay(),
            &acc,
            &RealNameRequest::two_factor("张三", ZHANG),
            &key("vr"),
        )
        .await
        .unwrap();
    let zhang = report.person.unwrap();
    let before = w.audit.query(&AuditQuery::all()).await.unwrap().len();
    let wechat = Principal::Platform {
        platform: Platform::WechatPay,
    };
    let stranger = Principal::cardholder(PersonId::parse("psn-stranger").unwrap());
    let me = Principal::cardholder(zhang.clone());
    // Allowed: the account's platform, the verified person, the system.
    assert!(w.service.real_name_status(&alipay(), &acc).await.is_ok());
    assert!(w.service.real_name_status(&me, &acc).await.is_ok());
    assert!(w.service.person(&me, &zhang).await.unwrap().is_some());
    assert!(
        w.service
            .find_account(&alipay(), &Platform::Alipay, "2088-r")
            .await
            .unwrap()
            .is_some()
    );
    // Denied: another platform, a stranger.
    for denied in [
        w.service.real_name_status(&wechat, &acc).await.err(),
        w.service.real_name_status(&stranger, &acc).await.err(),
        w.service.person(&stranger, &zhang).await.err(),
        w.service.person(&wechat, &zhang).await.err(),
        w.service
            .find_account(&wechat, &Platform::Alipay, "2088-r")
            .await
            .err(),
    ] {
        assert!(
            matches!(denied, Some(IdentityError::Denied { .. })),
            "{denied:?}"
        );
    }
    let entries = w.audit.query(&AuditQuery::all()).await.unwrap();
    let outcomes: Vec<AuditOutcome> = entries[before..].iter().map(|e| e.record.outcome).collect();
    assert_eq!(outcomes.len(), 9, "every read by a principal is audited");
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == AuditOutcome::Denied)
            .count(),
        5
    );
}
