//! The facade's glue, end to end on the in-memory stores: cancellation
//! refunds and closes the wallet, delegates and platforms top up only within
//! their rights, a minor binds only through a guardian, and a settlement the
//! wallet cannot cover moves nothing.

mod common;
use common::{Person, bind_request, enrol_as, issue_as, key, verified_account};
use std::sync::Arc;

use chrono::Duration;
use citycard::binding::{
    BindingError, BindingState, CardId, CardStatus, GrantDelegation, Relation,
};
use citycard::core::{
    Clock, DelegationScope, ManualClock, Money, OperatorId, OperatorRole, PersonId, Platform,
    Principal, Scopes, SequentialIdGenerator,
};
use citycard::healthcare::{
    BillRequest, CashSource, CatalogueClass, ChargeItem, HospitalId, HospitalLevel, VisitType,
};
use citycard::ledger::Owner;
use citycard::{Accounts, CityCard, CityCardError};

fn operator() -> Principal {
    Principal::Operator {
        operator: OperatorId::parse("opr-1").expect("valid id"),
    }
}

async fn city() -> (CityCard, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0));
    let city = CityCard::builder()
        .in_memory()
        .clock(clock.clone())
        .id_generator(Arc::new(SequentialIdGenerator::new()))
        .build()
        .await
        .expect("builds");
    city.operator_roles().grant(
        OperatorId::parse("opr-1").expect("valid id"),
        OperatorRole::CardDesk,
    );
    (city, clock)
}

async fn enrol(city: &CityCard, tag: &str, born: (i32, u32, u32)) -> Person {
    enrol_as(city, &operator(), tag, 7, born).await
}

async fn issue(city: &CityCard, person: &Person, number: &str, kind: &str) -> CardId {
    issue_as(city, &operator(), person, number, kind).await
}

#[tokio::test]
async fn cancelling_a_card_refunds_its_balance_and_closes_the_wallet() {
    let (city, _) = city().await;
    let holder = enrol(&city, "a", (1980, 1, 1)).await;
    let card = issue(&city, &holder, "3301000000000001", "standard").await;
    let me = Principal::cardholder(holder.id.clone());
    city.wallet()
        .top_up(
            &me,
            &card,
            Money::from_fen(8_050),
            &Platform::Alipay,
            &key("t1"),
        )
        .await
        .expect("tops up");

    let change = city
        .cards()
        .cancel_card(&operator(), &key("cancel-1"), &card)
        .await
        .expect("cancels");
    assert_eq!(change.card.status, CardStatus::Cancelled);
    assert_eq!(change.funds_moved, Some(Money::from_fen(8_050)));
    // A retry answers the same and refunds nothing more.
    let again = city
        .cards()
        .cancel_card(&operator(), &key("cancel-1"), &card)
        .await
        .expect("replays");
    assert_eq!(again.funds_moved, Some(Money::from_fen(8_050)));
    assert_eq!(
        city.accounts()
            .balance(Accounts::refunds())
            .await
            .expect("refunds"),
        Money::from_fen(8_050)
    );
    let wallets = city
        .ledger()
        .accounts_of(&Principal::System, &Owner::Person(holder.id.clone()))
        .await
        .expect("accounts");
    let wallet = wallets
        .iter()
        .find(|a| a.kind == citycard::ledger::AccountKind::E_WALLET)
        .expect("the wallet");
    assert!(wallet.is_closed(), "the cancelled card's wallet is closed");
    assert_eq!(wallet.posted(), Money::ZERO);
    let refused = city
        .wallet()
        .top_up(
            &me,
            &card,
            Money::from_yuan(1),
            &Platform::Alipay,
            &key("t2"),
        )
        .await;
    assert!(
        matches!(refused, Err(CityCardError::Invalid(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn delegates_top_up_within_a_live_grant_only() {
    let (city, clock) = city().await;
    let mother = enrol(&city, "mum", (1950, 6, 1)).await;
    let son = enrol(&city, "son", (1980, 6, 1)).await;
    let card = issue(&city, &mother, "3301000000000002", "elderly").await;
    let grant = city
        .cards()
        .grant_delegation(
            &Principal::cardholder(mother.id.clone()),
            &key("grant-1"),
            &GrantDelegation {
                cardholder: mother.id.clone(),
                delegate: son.id.clone(),
                relation: Relation::Family,
                scopes: [DelegationScope::TopUp, DelegationScope::ViewBalance]
                    .into_iter()
                    .collect(),
                expires_at: clock.now() + Duration::days(30),
            },
        )
        .await
        .expect("grants");
    let as_son = |scopes: Scopes| Principal::Delegate {
        delegate: son.id.clone(),
        on_behalf_of: mother.id.clone(),
        delegation: grant.id.clone(),
        scopes,
    };
    let granted: Scopes = [DelegationScope::TopUp, DelegationScope::ViewBalance]
        .into_iter()
        .collect();
    let receipt = city
        .wallet()
        .top_up(
            &as_son(granted),
            &card,
            Money::from_yuan(20),
            &Platform::Alipay,
            &key("son-1"),
        )
        .await
        .expect("the son tops up for his mother");
    assert_eq!(receipt.balance, Some(Money::from_yuan(20)));
    // The son may not act as the mother herself, nor claim scopes he was not given.
    let as_himself = city
        .wallet()
        .top_up(
            &Principal::cardholder(son.id.clone()),
            &card,
            Money::from_yuan(1),
            &Platform::Alipay,
            &key("son-2"),
        )
        .await;
    assert!(matches!(as_himself, Err(CityCardError::Denied { .. })));
    city.cards()
        .revoke_delegation(
            &Principal::cardholder(mother.id.clone()),
            &key("revoke-1"),
            &grant.id,
        )
        .await
        .expect("revokes");
    let after = city
        .wallet()
        .top_up(
            &as_son(granted),
            &card,
            Money::from_yuan(1),
            &Platform::Alipay,
            &key("son-3"),
        )
        .await;
    assert!(
        matches!(after, Err(CityCardError::Denied { .. })),
        "{after:?}"
    );
    let me = Principal::cardholder(mother.id.clone());
    assert_eq!(
        city.wallet().balance(&me, &card).await.expect("balance"),
        Money::from_yuan(20)
    );
}

#[tokio::test]
async fn a_platform_tops_up_only_a_card_bound_on_it_through_its_own_clearing_account() {
    let (city, _) = city().await;
    let holder = enrol(&city, "p", (1990, 1, 1)).await;
    let number = "3301000000000003";
    let card = issue(&city, &holder, number, "standard").await;
    let alipay = Principal::Platform {
        platform: Platform::Alipay,
    };
    // The card rules allow Alipay, but the card is not bound there yet: refused,
    // and the balance is not told either.
    let unbound = city
        .wallet()
        .top_up(
            &alipay,
            &card,
            Money::from_yuan(10),
            &Platform::Alipay,
            &key("p0"),
        )
        .await;
    assert!(
        matches!(unbound, Err(CityCardError::Denied { .. })),
        "{unbound:?}"
    );
    assert!(matches!(
        city.wallet().balance(&alipay, &card).await,
        Err(CityCardError::Denied { .. })
    ));
    let account = verified_account(&city, &holder, "2088-p").await;
    city.cards()
        .bind(
            &Principal::cardholder(holder.id.clone()),
            &key("bind-p"),
            &bind_request(&account, number, &holder.id_number),
        )
        .await
        .expect("binds");
    city.wallet()
        .top_up(
            &alipay,
            &card,
            Money::from_yuan(10),
            &Platform::Alipay,
            &key("p1"),
        )
        .await
        .expect("Alipay tops up a card bound on it, through Alipay");
    assert_eq!(
        city.wallet()
            .balance(&alipay, &card)
            .await
            .expect("balance"),
        Money::from_yuan(10)
    );
    let through_other = city
        .wallet()
        .top_up(
            &alipay,
            &card,
            Money::from_yuan(10),
            &Platform::WechatPay,
            &key("p2"),
        )
        .await;
    assert!(matches!(through_other, Err(CityCardError::Denied { .. })));
    // WeChat Pay has no binding of this card: no top-up, no balance.
    let wechat = Principal::Platform {
        platform: Platform::WechatPay,
    };
    assert!(matches!(
        city.wallet()
            .top_up(
                &wechat,
                &card,
                Money::from_yuan(10),
                &Platform::WechatPay,
                &key("p3"),
            )
            .await,
        Err(CityCardError::Denied { .. })
    ));
    assert_eq!(
        city.accounts()
            .balance(Accounts::clearing(&Platform::WechatPay))
            .await
            .expect("balance"),
        Money::ZERO
    );
}

#[tokio::test]
async fn a_delegate_who_may_only_top_up_learns_nothing_of_the_balance() {
    let (city, clock) = city().await;
    let mother = enrol(&city, "m2", (1950, 6, 1)).await;
    let son = enrol(&city, "s2", (1980, 6, 1)).await;
    let card = issue(&city, &mother, "3301000000000012", "elder").await;
    let me = Principal::cardholder(mother.id.clone());
    city.wallet()
        .top_up(
            &me,
            &card,
            Money::from_yuan(540),
            &Platform::Alipay,
            &key("m-1"),
        )
        .await
        .expect("tops up");
    let grant = city
        .cards()
        .grant_delegation(
            &me,
            &key("grant-m2"),
            &GrantDelegation {
                cardholder: mother.id.clone(),
                delegate: son.id.clone(),
                relation: Relation::Family,
                scopes: [DelegationScope::TopUp].into_iter().collect(),
                expires_at: clock.now() + Duration::days(30),
            },
        )
        .await
        .expect("grants");
    let as_son = Principal::Delegate {
        delegate: son.id.clone(),
        on_behalf_of: mother.id.clone(),
        delegation: grant.id,
        scopes: [DelegationScope::TopUp].into_iter().collect(),
    };
    let over = city
        .wallet()
        .top_up(
            &as_son,
            &card,
            Money::from_yuan(20),
            &Platform::Alipay,
            &key("s-1"),
        )
        .await
        .expect_err("over the cap");
    assert!(
        matches!(over, CityCardError::OverCapUndisclosed { .. }),
        "{over:?}"
    );
    assert!(!over.to_string().contains("540"), "{over}");
    let receipt = city
        .wallet()
        .top_up(
            &as_son,
            &card,
            Money::from_yuan(5),
            &Platform::Alipay,
            &key("s-2"),
        )
        .await
        .expect("fits");
    assert_eq!(receipt.balance, None);
    // The cardholder herself is told how much fits.
    let told = city
        .wallet()
        .top_up(
            &me,
            &card,
            Money::from_yuan(20),
            &Platform::Alipay,
            &key("m-2"),
        )
        .await
        .expect_err("over the cap");
    assert!(told.to_string().contains("top up at most 5.00"), "{told}");
}

/// transit.md: Hangzhou's transit wallets (杭州通 e-wallet) are capped at ¥1,000,
/// below the PBOC ¥5,000 ceiling for registered cards.
#[tokio::test]
async fn a_top_up_past_1000_on_a_transit_wallet_is_refused_with_the_room_left() {
    let (city, _clock) = city().await;
    let person = enrol(&city, "t1", (1990, 3, 1)).await;
    let card = issue(&city, &person, "3301000000000031", "standard").await;
    let me = Principal::cardholder(person.id.clone());
    city.wallet()
        .top_up(
            &me,
            &card,
            Money::from_yuan(800),
            &Platform::Alipay,
            &key("t-1"),
        )
        .await
        .expect("fits under the cap");
    let over = city
        .wallet()
        .top_up(
            &me,
            &card,
            Money::from_yuan(300),
            &Platform::Alipay,
            &key("t-2"),
        )
        .await
        .expect_err("past the transit cap");
    match &over {
        CityCardError::OverCap { cap, balance, room } => {
            assert_eq!(*cap, Money::from_yuan(1_000));
            assert_eq!(*balance, Money::from_yuan(800));
            assert_eq!(*room, Money::from_yuan(200));
        }
        other => panic!("expected OverCap, got {other:?}"),
    }
    assert!(over.to_string().contains("top up at most 200.00"), "{over}");
    assert_eq!(
        city.wallet().balance(&me, &card).await.expect("balance"),
        Money::from_yuan(800),
        "the refused top-up moved nothing"
    );
    city.wallet()
        .top_up(
            &me,
            &card,
            Money::from_yuan(200),
            &Platform::Alipay,
            &key("t-3"),
        )
        .await
        .expect("exactly the room left fits");
}

#[tokio::test]
async fn a_minor_binds_only_through_a_guardian() {
    let (city, clock) = city().await;
    let child = enrol(&city, "kid", (2016, 9, 1)).await;
    let parent = enrol(&city, "parent", (1985, 9, 1)).await;
    let number = "3301000000000004";
    issue(&city, &child, number, "student").await;
    let child_account = verified_account(&city, &child, "2088-kid").await;
    let refused = city
        .cards()
        .bind(
            &Principal::cardholder(child.id.clone()),
            &key("bind-kid"),
            &bind_request(&child_account, number, &child.id_number),
        )
        .await;
    assert!(
        matches!(refused, Err(BindingError::GuardianRequired)),
        "{refused:?}"
    );

    city.guardianships()
        .register(parent.id.clone(), child.id.clone());
    let grant = city
        .cards()
        .grant_delegation(
            &Principal::cardholder(parent.id.clone()),
            &key("grant-kid"),
            &GrantDelegation {
                cardholder: child.id.clone(),
                delegate: parent.id.clone(),
                relation: Relation::Guardian,
                scopes: [DelegationScope::Bind].into_iter().collect(),
                expires_at: clock.now() + Duration::days(300),
            },
        )
        .await
        .expect("the guardian grants");
    let receipt = city
        .cards()
        .bind(
            &Principal::Delegate {
                delegate: parent.id.clone(),
                on_behalf_of: child.id.clone(),
                delegation: grant.id,
                scopes: [DelegationScope::Bind].into_iter().collect(),
            },
            &key("bind-kid-2"),
            &bind_request(&child_account, number, &child.id_number),
        )
        .await
        .expect("the guardian binds for the child");
    assert_eq!(receipt.state, BindingState::Active);
}

#[tokio::test]
async fn a_settlement_the_wallet_cannot_cover_moves_nothing() {
    let (city, _) = city().await;
    let patient = enrol(&city, "pt", (1975, 1, 1)).await;
    issue(&city, &patient, "3301000000000005", "standard").await;
    let transfers_before = city
        .ledger()
        .inspect(|e| e.transfer_count())
        .await
        .expect("inspects");
    let result = city
        .healthcare()
        .billing()
        .settle(
            &Principal::cardholder(patient.id.clone()),
            &key("bill-1"),
            &BillRequest {
                patient: patient.id.clone(),
                hospital: HospitalId::parse("hsp-1").expect("id"),
                hospital_level: HospitalLevel::Community,
                visit_type: VisitType::Outpatient,
                items: vec![ChargeItem::new(
                    "consult",
                    CatalogueClass::C,
                    Money::from_yuan(120),
                    1,
                )],
                cash_source: CashSource::EWallet,
            },
        )
        .await;
    assert!(
        result.is_err(),
        "an empty wallet cannot pay ¥120: {result:?}"
    );
    let transfers_after = city
        .ledger()
        .inspect(|e| e.transfer_count())
        .await
        .expect("inspects");
    assert_eq!(transfers_after, transfers_before, "nothing moved");
    assert_eq!(
        city.accounts()
            .balance(Accounts::hospital("hsp-1"))
            .await
            .unwrap_or(Money::ZERO),
        Money::ZERO
    );
}

#[tokio::test]
async fn an_account_already_opened_is_not_opened_again_on_the_ledger() {
    let (city, _) = city().await;
    let batches = || async {
        city.audit()
            .query(&citycard::core::AuditQuery {
                action: Some("ledger.create_accounts".into()),
                ..citycard::core::AuditQuery::all()
            })
            .await
            .expect("audit")
            .len()
    };
    let id = city.accounts().open_hospital("hsp-9").await.expect("opens");
    let after_first = batches().await;
    // Every settlement leg to a hospital asks for its account; only the first reaches the ledger.
    for _ in 0..3 {
        assert_eq!(
            city.accounts().open_hospital("hsp-9").await.expect("opens"),
            id
        );
    }
    assert_eq!(batches().await, after_first);
    assert_eq!(
        city.accounts()
            .balance(id)
            .await
            .expect("the account exists"),
        Money::ZERO
    );
}

/// A wallet keeps the cap it was opened with: a replacement card's wallet takes over its
/// predecessor's higher cap so the carried balance fits; a new card gets today's cap.
#[tokio::test]
async fn a_replacement_wallet_keeps_the_cap_its_predecessor_was_opened_with() {
    use citycard::binding::{CardKind, CardNumber, CardNumberCharset, CardNumberFormat};
    use citycard::ledger::{Ledger, MemoryLedgerStore, WalletLimits};
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0));
    let ledger = Arc::new(
        Ledger::open(Arc::new(MemoryLedgerStore::new()), clock)
            .await
            .expect("ledger"),
    );
    let format = CardNumberFormat {
        min_len: 8,
        max_len: 20,
        charset: CardNumberCharset::Digits,
        prefixes: vec![],
    };
    let number = |n: &str| CardNumber::parse(n, &format).expect("number");
    let holder = PersonId::parse("psn-cap").expect("person");
    let standard = CardKind::Standard;
    let older = WalletLimits::from_json(
        r#"{"registered":"5000.00","anonymous":"1000.00","other_kinds":"2000.00"}"#,
    )
    .expect("within the ceilings");
    let old_wallet = Accounts::new(ledger.clone(), older)
        .open_wallet(&number("3301000000000041"), &holder, &standard)
        .await
        .expect("old wallet");
    let today = Accounts::new(ledger.clone(), WalletLimits::default());
    let cap_of = |id| {
        let ledger = ledger.clone();
        async move {
            ledger
                .account(&Principal::System, id)
                .await
                .expect("account")
                .upper_limit
        }
    };
    assert_eq!(cap_of(old_wallet).await, Some(Money::from_yuan(2_000)));
    let replacement = today
        .open_replacement_wallet(&number("3301000000000042"), &holder, &standard, old_wallet)
        .await
        .expect("replacement wallet");
    assert_eq!(cap_of(replacement).await, Some(Money::from_yuan(2_000)));
    let new_card = today
        .open_wallet(&number("3301000000000043"), &holder, &standard)
        .await
        .expect("new wallet");
    assert_eq!(cap_of(new_card).await, Some(Money::from_yuan(1_000)));
    let elder = today
        .open_wallet(
            &number("3301000000000044"),
            &holder,
            &CardKind::Other("elder".into()),
        )
        .await
        .expect("elder card wallet");
    assert_eq!(cap_of(elder).await, Some(Money::from_yuan(550)));
    let seventy_plus = today
        .open_wallet(&number("3301000000000045"), &holder, &CardKind::Elderly)
        .await
        .expect("70+ card wallet");
    assert_eq!(cap_of(seventy_plus).await, Some(Money::from_yuan(1_000)));
}
