//! The binding conformance suites run against the SQLite stores.
#![cfg(feature = "binding")]
use citycard_sqlite::Database;
use citycard_sqlite::binding::{
    SqliteBindingStore, SqliteCardChangeStore, SqliteCardStore, SqliteDelegationStore,
};
use citycard_testkit::binding::CardRegistryUnderTest;
use citycard_testkit::{
    binding_store_conformance, card_change_store_conformance, card_store_conformance,
    delegation_store_conformance,
};

fn db() -> Database {
    Database::open_in_memory().expect("in-memory database opens")
}

async fn card_store() -> SqliteCardStore {
    SqliteCardStore::new(db())
}

async fn binding_store() -> SqliteBindingStore {
    SqliteBindingStore::new(db())
}

async fn delegation_store() -> SqliteDelegationStore {
    SqliteDelegationStore::new(db())
}

async fn registry() -> CardRegistryUnderTest {
    use std::sync::Arc;
    let db = db();
    CardRegistryUnderTest {
        changes: Arc::new(SqliteCardChangeStore::new(db.clone())),
        cards: Arc::new(SqliteCardStore::new(db.clone())),
        bindings: Arc::new(SqliteBindingStore::new(db.clone())),
        delegations: Arc::new(SqliteDelegationStore::new(db.clone())),
        audit: Arc::new(citycard_sqlite::SqliteAuditLog::new(db.clone())),
        idempotency: Arc::new(citycard_sqlite::SqliteIdempotencyStore::new(db)),
    }
}

card_store_conformance!(card_store);
binding_store_conformance!(binding_store);
delegation_store_conformance!(delegation_store);
card_change_store_conformance!(registry);

#[tokio::test]
async fn the_schema_is_recorded_and_a_file_reopens_with_its_data() {
    use citycard_binding::CardStore;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("citycard.db");
    let card = citycard_testkit::binding::sample_card(1, "psn-a");
    {
        let db = Database::open(&path).expect("opens");
        assert!(
            db.schema_versions()
                .expect("versions")
                .contains(&("binding".to_owned(), 1))
        );
        SqliteCardStore::new(db)
            .insert(&card)
            .await
            .expect("insert");
    }
    let db = Database::open(&path).expect("reopens");
    let back = SqliteCardStore::new(db).get(&card.id).await.expect("get");
    assert_eq!(back, Some(card));
}

/// The whole flow over the SQLite stores: issue, bind, replay, report lost, unbind.
#[tokio::test]
async fn the_binding_flow_runs_on_sqlite() {
    use std::sync::Arc;

    use citycard_binding::*;
    use citycard_core::*;
    use citycard_sqlite::{SqliteAuditLog, SqliteIdempotencyStore};

    let db = db();
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0));
    let index = KeyedHashIndex::new(b"k");
    let names = Arc::new(StaticRealNames::new(index.clone()));
    let cards = Arc::new(SqliteCardStore::new(db.clone()));
    let bindings = Arc::new(SqliteBindingStore::new(db.clone()));
    let wallet = Arc::new(SimulatedWallet::new());
    let funds = Arc::new(MemoryFunds::new(clock.clone()));
    let service = CardService::new(
        CardPorts {
            cards: cards.clone(),
            bindings: bindings.clone(),
            delegations: Arc::new(SqliteDelegationStore::new(db.clone())),
            changes: Arc::new(SqliteCardChangeStore::new(db.clone())),
            idempotency: Arc::new(SqliteIdempotencyStore::new(db.clone())),
            audit: Arc::new(SqliteAuditLog::new(db.clone())),
            clock: clock.clone(),
            ids: Arc::new(SequentialIdGenerator::new()),
            real_names: names.clone(),
            id_index: Arc::new(index.clone()),
            issuer: Arc::new(RegistryCardIssuer::new(cards.clone(), Arc::new(index))),
            wallet: wallet.clone(),
            funds: funds.clone(),
            balances: funds,
        },
        BindingConfig::default(),
    );
    let holder = PersonId::parse("psn-li").unwrap();
    let id_number = Sensitive::new("330106199003071234".to_string());
    let acct = PlatformAccountId::parse("pac-li").unwrap();
    names.add_person(&holder, &id_number);
    names.verify_account(&Platform::Alipay, &acct, &holder);
    let operator = Principal::Operator {
        operator: OperatorId::parse("opr-1").unwrap(),
    };
    let card = service
        .issue_card(
            &operator,
            &"i1".parse().unwrap(),
            &IssueCard {
                number: "3301000012345678".into(),
                kind: "student".into(),
                holder: holder.clone(),
                id_number: id_number.clone(),
                wallet_account: WalletAccountRef::parse("wac-1").unwrap(),
                services: None,
                platforms: None,
            },
        )
        .await
        .unwrap();
    let me = Principal::cardholder(holder);
    let request = BindRequest {
        platform: Platform::Alipay,
        account: acct,
        card_number: "3301000012345678".into(),
        id_number,
        consent: citycard_testkit::binding::sample_consent(),
    };
    let r = service
        .bind(&me, &"b1".parse().unwrap(), &request)
        .await
        .unwrap();
    assert_eq!(r.state, BindingState::Active);
    assert_eq!(
        service
            .bind(&me, &"b1".parse().unwrap(), &request)
            .await
            .unwrap(),
        r
    );
    service
        .report_lost(&me, &"l1".parse().unwrap(), &card.id)
        .await
        .unwrap();
    assert_eq!(
        bindings.get(&r.binding).await.unwrap().unwrap().state,
        BindingState::Suspended
    );
    let removed = service
        .unbind(
            &me,
            &"u1".parse().unwrap(),
            &r.binding,
            RemovalReason::UserUnbound,
        )
        .await
        .unwrap();
    assert_eq!(removed.state, BindingState::Removed);
    assert!(wallet.passes().is_empty());
}
