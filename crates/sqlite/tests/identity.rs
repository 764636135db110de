//! The identity conformance suites run against the SQLite stores, plus a
//! check that nothing personal is stored in plaintext.
#![cfg(feature = "identity")]
use std::sync::Arc;

use citycard_core::PersonId;
use citycard_identity::{IdNumber, KeyId, MemoryKeyProvider, PersonStore, SecretKey, Vault};
use citycard_sqlite::Database;
use citycard_sqlite::identity::{SqlitePersonStore, SqlitePlatformAccountStore};
use citycard_testkit::{person_store_conformance, platform_account_store_conformance};

async fn person_store() -> SqlitePersonStore {
    SqlitePersonStore::new(Database::open_in_memory().expect("in-memory database opens"))
}

async fn account_store() -> SqlitePlatformAccountStore {
    SqlitePlatformAccountStore::new(Database::open_in_memory().expect("in-memory database opens"))
}

person_store_conformance!(person_store);
platform_account_store_conformance!(account_store);

#[tokio::test]
async fn the_database_file_holds_no_plaintext_id_number_or_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("citycard.db");
    let db = Database::open(&path).unwrap();
    let store = SqlitePersonStore::new(db.clone());
    let vault = Vault::new(Arc::new(MemoryKeyProvider::new(
        KeyId::parse("key-1").unwrap(),
        SecretKey::new([1; 32]),
        SecretKey::new([2; 32]),
    )));
    let id = IdNumber::parse("11010519491231002X").unwrap();
    let pid = PersonId::parse("psn-1").unwrap();
    let mut person = citycard_testkit::identity::samples::person(1);
    person.id = pid.clone();
    person.name = vault
        .seal_name("张三丰", &citycard_identity::Person::name_context(&pid))
        .await
        .unwrap();
    person.id_number = vault
        .seal_id_number(&id, &citycard_identity::Person::id_number_context(&pid))
        .await
        .unwrap();
    person.id_number_index = vault.blind_index(&id).await.unwrap();
    store.insert(&person).await.unwrap();
    let found = store
        .find_by_id_number_index(&vault.blind_index(&id).await.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        vault
            .open_id_number(
                &found.id_number,
                &citycard_identity::Person::id_number_context(&pid)
            )
            .await
            .unwrap(),
        id
    );
    drop(store);
    drop(db);
    let mut bytes = std::fs::read(&path).unwrap();
    for wal in ["citycard.db-wal"] {
        if let Ok(more) = std::fs::read(dir.path().join(wal)) {
            bytes.extend(more);
        }
    }
    let hay = String::from_utf8_lossy(&bytes);
    assert!(!hay.contains("11010519491231002X"));
    assert!(!hay.contains("19491231"));
    assert!(!hay.contains("张三丰"));
}

#[tokio::test]
async fn the_identity_service_runs_on_sqlite_and_stores_no_plaintext() {
    use citycard_core::{IdempotencyKey, ManualClock, Platform, Principal, SequentialIdGenerator};
    use citycard_identity::{
        IdentityConfig, IdentityPorts, IdentityService, KnownPerson, RealNameLevel,
        RealNameRequest, SimulatedVerifier, VerificationOutcome,
    };
    use citycard_sqlite::{SqliteAuditLog, SqliteIdempotencyStore};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("citycard.db");
    let number = "33010619900307123X";
    let body: [u8; 17] = number.as_bytes()[..17].try_into().unwrap();
    let number = format!(
        "{}{}",
        &number[..17],
        citycard_identity::check_character(&body)
    );
    {
        let db = Database::open(&path).unwrap();
        let sim = Arc::new(SimulatedVerifier::new());
        sim.register(
            &IdNumber::parse(&number).unwrap(),
            KnownPerson::named("钱七").with_phone("13700001111"),
        );
        let service = IdentityService::new(
            IdentityPorts {
                persons: Arc::new(SqlitePersonStore::new(db.clone())),
                accounts: Arc::new(SqlitePlatformAccountStore::new(db.clone())),
                verifier: sim,
                vault: Vault::new(Arc::new(MemoryKeyProvider::new(
                    KeyId::parse("key-1").unwrap(),
                    SecretKey::new([1; 32]),
                    SecretKey::new([2; 32]),
                ))),
                audit: Arc::new(SqliteAuditLog::new(db.clone())),
                idempotency: Arc::new(SqliteIdempotencyStore::new(db.clone())),
                clock: Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0)),
                ids: Arc::new(SequentialIdGenerator::new()),
            },
            IdentityConfig::default(),
        );
        let alipay = Principal::Platform {
            platform: Platform::Alipay,
        };
        let account = service
            .register_account(
                &alipay,
                Platform::Alipay,
                "2088000000000009",
                &IdempotencyKey::parse("reg").unwrap(),
            )
            .await
            .unwrap();
        let report = service
            .verify_real_name(
                &alipay,
                &account.id,
                &RealNameRequest::with_phone("钱七", &number, "13700001111"),
                &IdempotencyKey::parse("v").unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(report.outcome, VerificationOutcome::Match);
        assert_eq!(report.level, RealNameLevel::ThreeFactor);
        let person = service
            .find_person_by_id_number(&Principal::System, &IdNumber::parse(&number).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(Some(person.id), report.person);
    }
    let mut bytes = std::fs::read(&path).unwrap();
    if let Ok(more) = std::fs::read(dir.path().join("citycard.db-wal")) {
        bytes.extend(more);
    }
    let hay = String::from_utf8_lossy(&bytes);
    assert!(hay.contains("2088000000000009"), "the file was read");
    for secret in [number.as_str(), &number[6..14], "钱七", "13700001111"] {
        assert!(
            !hay.contains(secret),
            "plaintext found in the database file"
        );
    }
}
