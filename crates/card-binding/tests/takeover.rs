//! An effect and its idempotency outcome commit in one transaction, so a crash
//! leaves both or neither: a commit that fails writes nothing and the retry
//! does the work once; a commit whose answer is lost (the process dies after
//! it) is answered by the retry from the stored outcome, never done twice.
//! A claim left in progress by an earlier version is waited for while its
//! lease runs, then taken over.
//!
//! (Before decide-then-commit these tests crashed between the effect and the
//! claim's completion; that window no longer exists.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use async_trait::async_trait;
use citycard_binding::*;
use citycard_core::*;
use citycard_testkit::binding::sample_consent;

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).unwrap()
}

fn id_number() -> Sensitive<String> {
    Sensitive::new("330106198001010011".to_owned())
}

const PASS: u8 = 0;
const FAIL_BEFORE: u8 = 1;
const LOSE_ANSWER: u8 = 2;

/// A registry whose next commit fails before writing, or writes and then
/// loses its answer (the process died right after the commit).
struct Crashing {
    inner: MemoryCardRegistry,
    next: AtomicU8,
}

#[async_trait]
impl CardChangeStore for Crashing {
    async fn commit(&self, changes: &CardChanges, core: &CoreChanges) -> Result<(), StoreError> {
        match self.next.swap(PASS, Ordering::SeqCst) {
            FAIL_BEFORE => Err(StoreError::Unavailable("crashed before the commit".into())),
            LOSE_ANSWER => {
                self.inner.commit(changes, core).await?;
                Err(StoreError::Unavailable("crashed after the commit".into()))
            }
            _ => self.inner.commit(changes, core).await,
        }
    }
}

struct World {
    service: CardService,
    clock: Arc<ManualClock>,
    registry: MemoryCardRegistry,
    crashing: Arc<Crashing>,
    holder: PersonId,
    account: PlatformAccountId,
}

fn world() -> World {
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0));
    let index = KeyedHashIndex::new(b"test key");
    let core = MemoryCore::new();
    let registry = MemoryCardRegistry::with_core(core.clone());
    let crashing = Arc::new(Crashing {
        inner: registry.clone(),
        next: AtomicU8::new(PASS),
    });
    let cards = Arc::new(registry.cards());
    let real_names = StaticRealNames::new(index.clone());
    let holder = PersonId::parse("psn-wang").unwrap();
    let account = PlatformAccountId::parse("pac-wang").unwrap();
    real_names.add_person(&holder, &id_number());
    real_names.verify_account(&Platform::Alipay, &account, &holder);
    let funds = Arc::new(MemoryFunds::new(clock.clone()));
    let service = CardService::new(
        CardPorts {
            cards: cards.clone(),
            bindings: Arc::new(registry.bindings()),
            delegations: Arc::new(registry.delegations()),
            changes: crashing.clone(),
            idempotency: core.idempotency(),
            audit: core.audit(),
            clock: clock.clone(),
            ids: Arc::new(SequentialIdGenerator::new()),
            real_names: Arc::new(real_names),
            id_index: Arc::new(index.clone()),
            issuer: Arc::new(RegistryCardIssuer::new(cards, Arc::new(index))),
            wallet: Arc::new(SimulatedWallet::new()),
            funds: funds.clone(),
            balances: funds,
        },
        BindingConfig::default(),
    );
    World {
        service,
        clock,
        registry,
        crashing,
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
    async fn issue(&self) -> Result<Card, BindingError> {
        self.service
            .issue_card(
                &operator(),
                &key("issue-42"),
                &IssueCard {
                    number: "3301000000000042".into(),
                    kind: "standard".into(),
                    holder: self.holder.clone(),
                    id_number: id_number(),
                    wallet_account: WalletAccountRef::parse("wac-42").unwrap(),
                    services: None,
                    platforms: None,
                },
            )
            .await
    }

    fn crash(&self, how: u8) {
        self.crashing.next.store(how, Ordering::SeqCst);
    }

    fn bind_request(&self, card: &Card) -> BindRequest {
        BindRequest {
            platform: Platform::Alipay,
            account: self.account.clone(),
            card_number: card.number.as_str().to_owned(),
            id_number: id_number(),
            consent: sample_consent(),
        }
    }

    async fn audit_count(&self, action: &str) -> usize {
        self.registry
            .core()
            .audit()
            .query(&AuditQuery::all())
            .await
            .unwrap()
            .iter()
            .filter(|e| e.record.action == action)
            .count()
    }
}

#[tokio::test]
async fn a_failed_issue_writes_nothing_and_a_lost_answer_is_replayed() {
    let w = world();
    w.crash(FAIL_BEFORE);
    assert!(w.issue().await.is_err());
    assert_eq!(
        w.registry.cards().by_holder(&w.holder).await.unwrap(),
        vec![]
    );
    assert_eq!(w.audit_count("card.issue").await, 0);
    w.crash(LOSE_ANSWER);
    assert!(w.issue().await.is_err());
    let stored = w.registry.cards().by_holder(&w.holder).await.unwrap();
    assert_eq!(stored.len(), 1, "the card was stored with its outcome");
    let card = w
        .issue()
        .await
        .expect("the retry replays the stored outcome");
    assert_eq!(card.id, stored[0].id);
    assert_eq!(w.audit_count("card.issue").await, 1, "issued once");
}

#[tokio::test]
async fn a_status_change_whose_answer_was_lost_is_replayed() {
    let w = world();
    let card = w.issue().await.unwrap();
    let holder = Principal::cardholder(w.holder.clone());
    let lost = key("lost-1");
    w.crash(LOSE_ANSWER);
    assert!(
        w.service
            .report_lost(&holder, &lost, &card.id)
            .await
            .is_err()
    );
    let change = w
        .service
        .report_lost(&holder, &lost, &card.id)
        .await
        .expect("replayed, not refused as already lost");
    assert_eq!(change.card.status, CardStatus::ReportedLost);
    assert_eq!(w.audit_count("card.report_lost").await, 1);
}

#[tokio::test]
async fn a_binding_whose_activation_answer_was_lost_is_replayed() {
    let w = world();
    let card = w.issue().await.unwrap();
    let request = w.bind_request(&card);
    let holder = Principal::cardholder(w.holder.clone());
    // A first binding, unbound: the card may bind again on the account.
    let first = w
        .service
        .bind(&holder, &key("bind-0"), &request)
        .await
        .unwrap();
    w.service
        .unbind(
            &holder,
            &key("unbind-0"),
            &first.binding,
            RemovalReason::UserUnbound,
        )
        .await
        .unwrap();
    let k = key("bind-1");
    let bind = || w.service.bind(&holder, &k, &request);
    w.crash(LOSE_ANSWER);
    // The first commit of this bind is the pending binding: it lands, the answer is lost.
    assert!(bind().await.is_err());
    let live = w
        .registry
        .bindings()
        .live_for(&card.id, &Platform::Alipay, &w.account)
        .await
        .unwrap()
        .expect("the pending binding was committed before the wallet was called");
    assert_eq!(live.state, BindingState::Pending);
    // The retry settles that binding (same pass serial), it does not make another.
    let receipt = bind().await.expect("the retry settles the pending binding");
    assert_eq!(receipt.binding, live.id);
    assert_eq!(receipt.state, BindingState::Active);
    assert_eq!(bind().await.unwrap(), receipt, "and replays after");
}

#[tokio::test]
async fn an_unbinding_whose_answer_was_lost_is_replayed() {
    let w = world();
    let card = w.issue().await.unwrap();
    let holder = Principal::cardholder(w.holder.clone());
    let receipt = w
        .service
        .bind(&holder, &key("bind-1"), &w.bind_request(&card))
        .await
        .unwrap();
    let k = key("unbind-1");
    let unbind = || {
        w.service
            .unbind(&holder, &k, &receipt.binding, RemovalReason::UserUnbound)
    };
    w.crash(LOSE_ANSWER);
    assert!(unbind().await.is_err());
    let removed = unbind().await.expect("replayed");
    assert_eq!(removed.id, receipt.binding);
    assert_eq!(removed.state, BindingState::Removed);
    assert_eq!(w.audit_count("binding.unbind").await, 1);
}

#[tokio::test]
async fn a_replacement_or_cancellation_whose_answer_was_lost_is_replayed() {
    let w = world();
    let card = w.issue().await.unwrap();
    let op = operator();
    let request = ReplaceCard {
        new_number: "3301000000000043".into(),
        new_wallet_account: WalletAccountRef::parse("wac-43").unwrap(),
    };
    w.crash(LOSE_ANSWER);
    assert!(
        w.service
            .replace_card(&op, &key("replace-1"), &card.id, &request)
            .await
            .is_err()
    );
    let change = w
        .service
        .replace_card(&op, &key("replace-1"), &card.id, &request)
        .await
        .expect("replayed");
    let new = change.new_card.expect("the new card");
    assert_eq!(new.number.as_str(), "3301000000000043");
    assert_eq!(
        change.card.status,
        CardStatus::Replaced { by: new.id.clone() }
    );
    w.crash(FAIL_BEFORE);
    assert!(
        w.service
            .cancel_card(&op, &key("cancel-1"), &new.id)
            .await
            .is_err()
    );
    let cancelled = w
        .service
        .cancel_card(&op, &key("cancel-1"), &new.id)
        .await
        .expect("the retry cancels");
    assert_eq!(cancelled.card.status, CardStatus::Cancelled);
}

#[tokio::test]
async fn a_grant_whose_answer_was_lost_is_replayed_not_made_twice() {
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
    w.crash(LOSE_ANSWER);
    assert!(
        w.service
            .grant_delegation(&holder, &k, &request)
            .await
            .is_err()
    );
    let first = w
        .service
        .grant_delegation(&holder, &k, &request)
        .await
        .expect("replayed");
    let all = w.service.delegations(&holder, &w.holder).await.unwrap();
    assert_eq!(all.len(), 1, "one grant, not two");
    assert_eq!(all[0].id, first.id);
}

#[tokio::test]
async fn a_claim_an_earlier_version_left_in_progress_is_taken_over_after_its_lease() {
    let w = world();
    let card = w.issue().await.unwrap();
    let holder = Principal::cardholder(w.holder.clone());
    let k = key("lost-1");
    let scope = principal_scope("card.report_lost", &holder);
    let fingerprint = Fingerprint::of(&(&card.id, &holder)).unwrap();
    w.registry
        .core()
        .idempotency()
        .handle("dead-process")
        .claim(&scope, &k, &fingerprint, w.clock.now())
        .await
        .unwrap();
    assert!(matches!(
        w.service.report_lost(&holder, &k, &card.id).await,
        Err(BindingError::Idempotency(
            IdempotencyError::InProgress { .. }
        ))
    ));
    w.clock.advance(DEFAULT_CLAIM_LEASE);
    let change = w
        .service
        .report_lost(&holder, &k, &card.id)
        .await
        .expect("taken over");
    assert_eq!(change.card.status, CardStatus::ReportedLost);
    let record = w
        .registry
        .core()
        .idempotency()
        .get(&scope, &k)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, IdempotencyState::Completed);
}
