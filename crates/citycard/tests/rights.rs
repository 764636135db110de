//! Focused checks of the rights the facade enforces, one per hole found in
//! review: a platform draining a wallet through the raw ledger, a quoted grant
//! reading a statement, the guardian check with the key service down, a
//! refused replacement opening an account, and retries audited as successes.

mod common;
use common::{Person, bind_request, enrol_as, issue_as, key, verified_account};
use std::sync::Arc;

use chrono::Duration;
use citycard::binding::{BindingError, BindingState, CardId, GrantDelegation, Relation};
use citycard::core::{
    AuditOutcome, AuditQuery, ClassifiedError, Clock, DelegationId, DelegationScope, ErrorClass,
    ManualClock, Money, OperatorId, OperatorRole, Platform, Principal, Scopes,
    SequentialIdGenerator,
};
use citycard::healthcare::{
    BillRequest, CashSource, CatalogueClass, ChargeItem, HospitalId, HospitalLevel, PersonCategory,
    VisitType,
};
use citycard::identity::{KeyProvider, MemoryKeyProvider};
use citycard::ledger::{LedgerError, NewTransfer, TransferId};
use citycard::{Accounts, CityCard, CityCardError};
use citycard_testkit::Fault;
use citycard_testkit::identity::FaultyKeyProvider;

async fn city_with(keys: Option<Arc<dyn KeyProvider>>) -> CityCard {
    let mut builder = CityCard::builder()
        .in_memory()
        .clock(Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0)))
        .id_generator(Arc::new(SequentialIdGenerator::new()));
    if let Some(keys) = keys {
        builder = builder.key_provider(keys);
    }
    builder.build().await.expect("builds")
}

async fn enrol(city: &CityCard, tag: &str, seq: u16, born: (i32, u32, u32)) -> Person {
    enrol_as(city, &Principal::System, tag, seq, born).await
}

async fn issue(city: &CityCard, person: &Person, number: &str, kind: &str) -> CardId {
    issue_as(city, &Principal::System, person, number, kind).await
}

async fn wallet_of(city: &CityCard, card: &CardId) -> citycard::ledger::AccountId {
    let card = city
        .cards()
        .card(&Principal::System, card)
        .await
        .expect("card");
    Accounts::wallet(&card.number)
}

#[tokio::test]
async fn a_platform_without_a_binding_cannot_drain_or_read_a_wallet_through_the_ledger() {
    let city = city_with(None).await;
    let citizen = enrol(&city, "c", 1, (1980, 1, 1)).await;
    let card = issue(&city, &citizen, "3301000000000201", "standard").await;
    city.wallet()
        .top_up(
            &Principal::System,
            &card,
            "123.01".parse().expect("amount"),
            &Platform::Alipay,
            &key("seed"),
        )
        .await
        .expect("tops up");
    let wallet = wallet_of(&city, &card).await;
    let wechat = Principal::Platform {
        platform: Platform::WechatPay,
    };
    let drain = NewTransfer::new(
        TransferId::new(77),
        wallet,
        Accounts::clearing(&Platform::WechatPay),
        Money::from_yuan(100),
        1,
    );
    let moved = city.ledger().create_transfers(&wechat, vec![drain]).await;
    assert!(
        matches!(moved, Err(LedgerError::Denied { .. })),
        "{moved:?}"
    );
    let now = city.clock().now();
    let read = city
        .ledger()
        .statement(&wechat, wallet, now - Duration::days(1), now)
        .await;
    assert!(matches!(read, Err(LedgerError::Denied { .. })), "{read:?}");
    assert_eq!(
        city.accounts().balance(wallet).await.expect("balance"),
        "123.01".parse().expect("amount")
    );
}

#[tokio::test]
async fn quoting_another_familys_grant_reads_no_statement() {
    let city = city_with(None).await;
    let mother = enrol(&city, "m", 1, (1950, 1, 1)).await;
    let son = enrol(&city, "s", 2, (1980, 1, 1)).await;
    let stranger = enrol(&city, "x", 3, (1981, 1, 1)).await;
    let card = issue(&city, &mother, "3301000000000202", "elderly").await;
    let grant = city
        .cards()
        .grant_delegation(
            &Principal::cardholder(mother.id.clone()),
            &key("grant"),
            &GrantDelegation {
                cardholder: mother.id.clone(),
                delegate: son.id.clone(),
                relation: Relation::Family,
                scopes: Scopes::all(),
                expires_at: city.clock().now() + Duration::days(30),
            },
        )
        .await
        .expect("grants");
    let as_ = |who: &Person, delegation: DelegationId| Principal::Delegate {
        delegate: who.id.clone(),
        on_behalf_of: mother.id.clone(),
        delegation,
        scopes: Scopes::all(),
    };
    let wallet = wallet_of(&city, &card).await;
    let now = city.clock().now();
    let from = now - Duration::days(1);
    assert!(
        city.ledger()
            .statement(&as_(&son, grant.id.clone()), wallet, from, now)
            .await
            .is_ok()
    );
    let quoted = city
        .ledger()
        .statement(&as_(&stranger, grant.id.clone()), wallet, from, now)
        .await;
    assert!(
        matches!(quoted, Err(LedgerError::Denied { .. })),
        "{quoted:?}"
    );
    let invented = city
        .ledger()
        .statement(
            &as_(&stranger, DelegationId::parse("dlg-made-up").expect("id")),
            wallet,
            from,
            now,
        )
        .await;
    assert!(matches!(invented, Err(LedgerError::Denied { .. })));
}

#[tokio::test]
async fn with_the_key_service_down_a_minor_neither_binds_alone_nor_counts_as_an_adult() {
    let keys = FaultyKeyProvider::new(Arc::new(MemoryKeyProvider::random().expect("keys")));
    let faults = keys.faults.clone();
    let city = city_with(Some(Arc::new(keys))).await;
    let child = enrol(&city, "kid", 1, (2016, 9, 1)).await;
    let number = "3301000000000203";
    issue(&city, &child, number, "student").await;
    let account = verified_account(&city, &child, "2088-kid").await;
    city.social_insurance_records()
        .put_category(&child.id, PersonCategory::Resident)
        .await
        .expect("category");

    faults.always("key", Fault::Fail);
    let alone = city
        .cards()
        .bind(
            &Principal::cardholder(child.id.clone()),
            &key("bind-kid"),
            &bind_request(&account, number, &child.id_number),
        )
        .await;
    match &alone {
        Err(e) => assert_eq!(e.class(), ErrorClass::Unavailable, "{e}"),
        Ok(receipt) => panic!("a minor bound alone: {:?}", receipt.state),
    }
    let bill = BillRequest {
        patient: child.id.clone(),
        hospital: HospitalId::parse("hsp-1").expect("id"),
        hospital_level: HospitalLevel::Community,
        visit_type: VisitType::Outpatient,
        items: vec![ChargeItem::new(
            "consult",
            CatalogueClass::A,
            Money::from_yuan(20),
            1,
        )],
        cash_source: CashSource::EWallet,
    };
    let quote = city
        .healthcare()
        .billing()
        .quote(&Principal::cardholder(child.id.clone()), &bill)
        .await;
    match &quote {
        Err(e) => assert_eq!(e.class(), ErrorClass::Unavailable, "{e}"),
        Ok(q) => panic!("a minor was classified without her age: {q:?}"),
    }

    // With the keys back, the age is known: the child needs a guardian.
    faults.clear();
    let retried = city
        .cards()
        .bind(
            &Principal::cardholder(child.id.clone()),
            &key("bind-kid-2"),
            &bind_request(&account, number, &child.id_number),
        )
        .await;
    assert!(
        matches!(retried, Err(BindingError::GuardianRequired)),
        "{retried:?}"
    );
    assert!(
        city.healthcare()
            .billing()
            .quote(&Principal::cardholder(child.id.clone()), &bill)
            .await
            .is_ok()
    );
    let bindings = city
        .cards()
        .bindings_of_account(&Principal::System, &Platform::Alipay, &account)
        .await
        .expect("bindings");
    assert!(bindings.iter().all(|b| b.state != BindingState::Active));
}

#[tokio::test]
async fn a_refused_replacement_opens_no_account() {
    let city = city_with(None).await;
    city.operator_roles().grant(
        OperatorId::parse("opr-auditor").expect("id"),
        OperatorRole::Auditor,
    );
    let holder = enrol(&city, "h", 1, (1980, 1, 1)).await;
    let card = issue(&city, &holder, "3301000000000204", "standard").await;
    let accounts = || async {
        city.ledger()
            .inspect(|e| e.account_count())
            .await
            .expect("inspects")
    };
    let before = accounts().await;
    for (i, principal) in [
        Principal::cardholder(holder.id.clone()),
        Principal::Operator {
            operator: OperatorId::parse("opr-auditor").expect("id"),
        },
        Principal::Platform {
            platform: Platform::Alipay,
        },
    ]
    .into_iter()
    .enumerate()
    {
        let refused = city
            .replace_card(
                &principal,
                &key(&format!("replace-{i}")),
                &card,
                "3301000000000299",
            )
            .await;
        assert!(
            matches!(refused, Err(CityCardError::Denied { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(
        accounts().await,
        before,
        "a refused replacement opened an account"
    );
    let denied = city
        .audit()
        .query(&AuditQuery::all())
        .await
        .expect("audit")
        .into_iter()
        .filter(|e| e.record.action == "card.replace" && e.record.outcome == AuditOutcome::Denied)
        .count();
    assert_eq!(denied, 3);
}

#[tokio::test]
async fn retries_with_one_key_are_audited_as_replays() {
    let city = city_with(None).await;
    let holder = enrol(&city, "r", 1, (1980, 1, 1)).await;
    let card = issue(&city, &holder, "3301000000000205", "standard").await;
    let me = Principal::cardholder(holder.id.clone());
    for _ in 0..20 {
        city.wallet()
            .top_up(
                &me,
                &card,
                Money::from_yuan(10),
                &Platform::Alipay,
                &key("once"),
            )
            .await
            .expect("tops up");
    }
    assert_eq!(
        city.wallet().balance(&me, &card).await.expect("balance"),
        Money::from_yuan(10)
    );
    let entries = city.audit().query(&AuditQuery::all()).await.expect("audit");
    let outcomes = |action: &str| -> (usize, usize) {
        let of: Vec<_> = entries
            .iter()
            .filter(|e| e.record.action == action)
            .map(|e| e.record.outcome)
            .collect();
        (
            of.iter().filter(|o| **o == AuditOutcome::Succeeded).count(),
            of.iter().filter(|o| **o == AuditOutcome::Replayed).count(),
        )
    };
    assert_eq!(outcomes("wallet.top_up"), (1, 19));
    // The seeding of the medical accounts is the only other ledger write.
    let (_, replayed) = outcomes("ledger.create_transfers");
    assert_eq!(replayed, 19);
}

#[tokio::test]
async fn a_delegate_whose_grant_holds_only_booking_reads_no_social_insurance() {
    let city = city_with(None).await;
    let mother = enrol(&city, "sm", 1, (1950, 1, 1)).await;
    let son = enrol(&city, "ss", 2, (1980, 1, 1)).await;
    let stranger = enrol(&city, "sx", 3, (1981, 1, 1)).await;
    let grant = city
        .cards()
        .grant_delegation(
            &Principal::cardholder(mother.id.clone()),
            &key("grant-book"),
            &GrantDelegation {
                cardholder: mother.id.clone(),
                delegate: son.id.clone(),
                relation: Relation::Family,
                scopes: Scopes::NONE.with(DelegationScope::BookAppointments),
                expires_at: city.clock().now() + Duration::days(30),
            },
        )
        .await
        .expect("grants");
    let social = city.healthcare().social_insurance();
    for who in [&son, &stranger] {
        let overclaiming = Principal::Delegate {
            delegate: who.id.clone(),
            on_behalf_of: mother.id.clone(),
            delegation: grant.id.clone(),
            scopes: Scopes::all(),
        };
        let read = social.summary(&overclaiming, &mother.id).await;
        assert_eq!(
            read.as_ref().err().map(ClassifiedError::class),
            Some(ErrorClass::Denied),
            "{read:?}"
        );
    }
}
