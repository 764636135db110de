//! A claim left in progress by a crash after the effect (the outcome never
//! stored) is taken over once its lease runs out, and the effect is read back:
//! the issued card, the new card status, the binding.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use citycard_binding::*;
use citycard_core::*;
use citycard_testkit::Faults;
use citycard_testkit::binding::sample_consent;
use citycard_testkit::idempotency::CrashingIdempotencyStore;

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).unwrap()
}

fn id_number() -> Sensitive<String> {
    Sensitive::new("330106198001010011".to_owned())
}

struct World {
    service: CardService,
    clock: Arc<ManualClock>,
    cards: Arc<MemoryCardStore>,
    bindings: Arc<MemoryBindingStore>,
    faults: Faults,
    holder: PersonId,
    account: PlatformAccountId,
}

fn world() -> World {
    let faults = Faults::new();
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0));
    let index = KeyedHashIndex::new(b"test key");
    let cards = Arc::new(MemoryCardStore::new());
    let bindings = Arc::new(MemoryBindingStore::new());
    let real_names = StaticRealNames::new(index.clone());
    let holder = PersonId::parse("psn-wang").unwrap();
    let account = PlatformAccountId::parse("pac-wang").unwrap();
    real_names.add_person(&holder, &id_number());
    real_names.verify_account(&Platform::Alipay, &account, &holder);
    let funds = Arc::new(MemoryFunds::new(clock.clone()));
    let service = CardService::new(
        CardPorts {
            cards: cards.clone(),
            bindings: bindings.clone(),
            delegations: Arc::new(MemoryDelegationStore::new()),
            idempotency: Arc::new(CrashingIdempotencyStore::new(
                MemoryIdempotencyStore::new(),
                faults.clone(),
            )),
            audit: Arc::new(MemoryAuditLog::new()),
            clock: clock.clone(),
            ids: Arc::new(SequentialIdGenerator::new()),
            real_names: Arc::new(real_names),
            id_index: Arc::new(index.clone()),
            issuer: Arc::new(RegistryCardIssuer::new(cards.clone(), Arc::new(index))),
            wallet: Arc::new(SimulatedWallet::new()),
            funds: funds.clone(),
            balances: funds,
        },
        BindingConfig::default(),
    );
    World {
        service,
        clock,
        cards,
        bindings,
        faults,
        holder,
        account,
    }
}

fn operator() -> Principal {
    Principal::Operator {
        operator: OperatorId::parse("opr-1").unwrap(),
    }
}

impl World {
    fn issue_request(&self) -> IssueCard {
        IssueCard {
            number: "3301000000000042".into(),
            kind: "standard".into(),
            holder: self.holder.clone(),
            id_number: id_number(),
            wallet_account: WalletAccountRef::parse("wac-42").unwrap(),
            services: None,
            platforms: None,
        }
    }

    async fn issue(&self) -> Result<Card, BindingError> {
        self.service
            .issue_card(&operator(), &key("issue-42"), &self.issue_request())
            .await
    }

    /// The process "dies" after the effect of the next call, before its outcome is stored.
    fn crash_before_completing(&self) {
        self.faults.next("complete", citycard_testkit::Fault::Fail);
    }

    fn lease_runs_out(&self) {
        self.clock.advance(DEFAULT_CLAIM_LEASE);
    }
}

#[tokio::test]
async fn an_issued_card_whose_outcome_was_lost_is_read_back_after_the_lease() {
    let w = world();
    w.crash_before_completing();
    assert!(w.issue().await.is_err());
    let stored = w
        .cards
        .by_number(&w.service.parse_card_number("3301000000000042").unwrap())
        .await
        .unwrap()
        .expect("the card was stored before the crash");
    // While the lease runs, a retry is told to wait.
    assert!(matches!(
        w.issue().await,
        Err(BindingError::Idempotency(
            IdempotencyError::InProgress { .. }
        ))
    ));
    w.lease_runs_out();
    let card = w.issue().await.expect("taken over and read back");
    assert_eq!(card.id, stored.id);
    // Completed now: later retries replay it.
    assert_eq!(w.issue().await.unwrap().id, stored.id);
}

#[tokio::test]
async fn a_status_change_whose_outcome_was_lost_is_read_back_after_the_lease() {
    let w = world();
    let card = w.issue().await.unwrap();
    let holder = Principal::cardholder(w.holder.clone());
    let lost = key("lost-1");
    let report = || w.service.report_lost(&holder, &lost, &card.id);
    w.crash_before_completing();
    assert!(report().await.is_err());
    assert_eq!(
        w.cards.get(&card.id).await.unwrap().unwrap().status,
        CardStatus::ReportedLost
    );
    w.lease_runs_out();
    let change = report().await.expect("taken over and read back");
    assert_eq!(change.card.status, CardStatus::ReportedLost);
}

#[tokio::test]
async fn a_binding_whose_outcome_was_lost_is_read_back_after_the_lease() {
    let w = world();
    let card = w.issue().await.unwrap();
    let request = BindRequest {
        platform: Platform::Alipay,
        account: w.account.clone(),
        card_number: card.number.as_str().to_owned(),
        id_number: id_number(),
        consent: sample_consent(),
    };
    let holder = Principal::cardholder(w.holder.clone());
    let k = key("bind-1");
    let bind = || w.service.bind(&holder, &k, &request);
    w.crash_before_completing();
    assert!(bind().await.is_err());
    let live = w
        .bindings
        .live_for(&card.id, &Platform::Alipay, &w.account)
        .await
        .unwrap()
        .expect("the binding was made before the crash");
    assert_eq!(live.state, BindingState::Active);
    w.lease_runs_out();
    let receipt = bind()
        .await
        .expect("taken over and read back, not refused as bound");
    assert_eq!(receipt.binding, live.id);
    assert_eq!(receipt.state, BindingState::Active);
}

#[tokio::test]
async fn an_unbinding_whose_outcome_was_lost_is_read_back_after_the_lease() {
    let w = world();
    let card = w.issue().await.unwrap();
    let holder = Principal::cardholder(w.holder.clone());
    let receipt = w
        .service
        .bind(
            &holder,
            &key("bind-1"),
            &BindRequest {
                platform: Platform::Alipay,
                account: w.account.clone(),
                card_number: card.number.as_str().to_owned(),
                id_number: id_number(),
                consent: sample_consent(),
            },
        )
        .await
        .unwrap();
    let k = key("unbind-1");
    let unbind = || {
        w.service
            .unbind(&holder, &k, &receipt.binding, RemovalReason::UserUnbound)
    };
    w.crash_before_completing();
    assert!(unbind().await.is_err());
    w.lease_runs_out();
    let removed = unbind().await.expect("taken over and read back");
    assert_eq!(removed.id, receipt.binding);
    assert_eq!(removed.state, BindingState::Removed);
}

#[tokio::test]
async fn a_replacement_whose_outcome_was_lost_is_read_back_after_the_lease() {
    let w = world();
    let card = w.issue().await.unwrap();
    let k = key("replace-1");
    let request = ReplaceCard {
        new_number: "3301000000000043".into(),
        new_wallet_account: WalletAccountRef::parse("wac-43").unwrap(),
    };
    let op = operator();
    let replace = || w.service.replace_card(&op, &k, &card.id, &request);
    w.crash_before_completing();
    assert!(replace().await.is_err());
    w.lease_runs_out();
    let change = replace().await.expect("taken over and read back");
    let new = change.new_card.expect("the new card");
    assert_eq!(new.number.as_str(), "3301000000000043");
    assert_eq!(
        change.card.status,
        CardStatus::Replaced { by: new.id.clone() }
    );
}

#[tokio::test]
async fn a_cancellation_whose_outcome_was_lost_is_read_back_after_the_lease() {
    let w = world();
    let card = w.issue().await.unwrap();
    let k = key("cancel-1");
    let op = operator();
    let cancel = || w.service.cancel_card(&op, &k, &card.id);
    w.crash_before_completing();
    assert!(cancel().await.is_err());
    w.lease_runs_out();
    let change = cancel().await.expect("taken over and read back");
    assert_eq!(change.card.status, CardStatus::Cancelled);
}

#[tokio::test]
async fn a_grant_whose_outcome_was_lost_is_read_back_after_the_lease_not_made_twice() {
    let w = world();
    let holder = Principal::cardholder(w.holder.clone());
    let request = GrantDelegation {
        cardholder: w.holder.clone(),
        delegate: PersonId::parse("psn-son").unwrap(),
        relation: Relation::Family,
        scopes: [DelegationScope::TopUp].into_iter().collect(),
        expires_at: w.clock.now() + chrono::Duration::days(30),
    };
    let k = key("grant-1");
    let grant = || w.service.grant_delegation(&holder, &k, &request);
    w.crash_before_completing();
    assert!(grant().await.is_err());
    w.lease_runs_out();
    let first = grant().await.expect("taken over and read back");
    let all = w.service.delegations(&holder, &w.holder).await.unwrap();
    assert_eq!(all.len(), 1, "one grant, not two");
    assert_eq!(all[0].id, first.id);
}
