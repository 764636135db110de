//! The Ledger service: principals, acknowledgement after commit, statements,
//! reconciliation and audit.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::sync::Arc;

use chrono::Duration;
use citycard_core::{
    AuditLog, AuditQuery, Clock, DelegationId, DelegationScope, GrantVerifier, ManualClock, Money,
    OperatorId, OperatorRole, OperatorRoles, PersonId, Platform, Principal, Scopes,
};
use citycard_ledger::{
    AccountId, AccountKind, CreateTransferResult as R, ExternalEntry, Ledger, LedgerError,
    LedgerStore, MemoryLedgerStore, NewAccount, NewTransfer, Owner, Reference, TransferId,
    WalletHolder, WalletLimits,
};
use citycard_testkit::Fault;
use citycard_testkit::ledger::FaultyLedgerStore;

const CLEARING: AccountId = AccountId::new(1);
const WALLET: AccountId = AccountId::new(2);
const METRO: AccountId = AccountId::new(3);
const OTHER_WALLET: AccountId = AccountId::new(4);

fn person(s: &str) -> PersonId {
    PersonId::parse(s).unwrap()
}

async fn setup(store: Arc<dyn LedgerStore>) -> (Ledger, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 8, 0, 0));
    let ledger = Ledger::open(store, clock.clone()).await.unwrap();
    let limits = WalletLimits::default();
    ledger
        .create_accounts(
            &Principal::System,
            vec![
                NewAccount::new(CLEARING, AccountKind::TOP_UP_CLEARING),
                limits.wallet(WALLET, WalletHolder::Registered, Some(person("psn-ann"))),
                NewAccount::new(METRO, AccountKind::OPERATOR_REVENUE),
                limits.wallet(
                    OTHER_WALLET,
                    WalletHolder::Anonymous,
                    Some(person("psn-bo")),
                ),
            ],
        )
        .await
        .unwrap();
    (ledger, clock)
}

fn id(n: u64) -> TransferId {
    TransferId::new(n)
}

#[tokio::test]
async fn registered_and_anonymous_caps_are_configurable() {
    let (ledger, _) = setup(Arc::new(MemoryLedgerStore::new())).await;
    let sys = Principal::System;
    assert_eq!(
        ledger.account(&sys, WALLET).await.unwrap().upper_limit,
        Some(Money::from_yuan(5000))
    );
    assert_eq!(
        ledger
            .account(&sys, OTHER_WALLET)
            .await
            .unwrap()
            .upper_limit,
        Some(Money::from_yuan(1000))
    );
    let r = ledger
        .create_transfers(
            &sys,
            vec![
                NewTransfer::new(id(1), CLEARING, WALLET, Money::from_yuan(5000), 1),
                NewTransfer::new(id(2), CLEARING, OTHER_WALLET, Money::from_fen(100_001), 1),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r, [R::Ok, R::ExceedsUpperLimit]);
    let custom: WalletLimits =
        serde_json::from_str(r#"{"registered":"2000.00","anonymous":"500.00"}"#).unwrap();
    assert_eq!(custom.cap(WalletHolder::Anonymous), Money::from_yuan(500));
}

/// ledger.md: ¥5,000 / ¥1,000 are the PBOC ceilings no configured cap may exceed.
#[test]
fn a_wallet_cap_above_the_pboc_ceiling_is_refused_at_load() {
    let err = WalletLimits::from_json(r#"{"registered":"5000.01","anonymous":"1000.00"}"#)
        .expect_err("registered above ¥5,000");
    assert!(err.to_string().contains("exceeds 5000.00"), "{err}");
    let err = WalletLimits::from_json(r#"{"registered":"5000.00","anonymous":"1500.00"}"#)
        .expect_err("anonymous above ¥1,000");
    assert!(err.to_string().contains("anonymous"), "{err}");
    let err = WalletLimits::from_json(
        r#"{"registered":"2000.00","anonymous":"1000.00","kinds":{"student":"3000.00"}}"#,
    )
    .expect_err("a kind above the registered cap");
    assert!(err.to_string().contains("kind student"), "{err}");
    let err = WalletLimits::from_json(
        r#"{"registered":"5000.00","anonymous":"1000.00","other_kinds":"6000.00"}"#,
    )
    .expect_err("other kinds above the ceiling");
    assert!(err.to_string().contains("other_kinds"), "{err}");
    let ok = WalletLimits::from_json(
        r#"{"registered":"5000.00","anonymous":"1000.00","kinds":{"elder":"550.00"},"other_kinds":"1000.00"}"#,
    )
    .expect("within the ceilings");
    assert_eq!(ok, WalletLimits::default());
    assert!(WalletLimits::default().validate().is_ok());
}

/// transit.md: transit wallets ¥1,000, the elder card (长者卡) ¥550.
#[test]
fn wallet_caps_follow_the_card_kind() {
    let limits = WalletLimits::default();
    assert_eq!(limits.kind_cap("standard"), Money::from_yuan(1_000));
    assert_eq!(limits.kind_cap("student"), Money::from_yuan(1_000));
    assert_eq!(limits.kind_cap("elder"), Money::from_yuan(550));
    assert_eq!(
        limits.kind_cap("elderly"),
        Money::from_yuan(1_000),
        "the 70+ card"
    );
    let wallet = limits.wallet_for_kind(AccountId::new(9), "elder", None);
    assert_eq!(wallet.upper_limit, Some(Money::from_yuan(550)));
    let no_default: WalletLimits =
        serde_json::from_str(r#"{"registered":"2000.00","anonymous":"500.00"}"#).unwrap();
    assert_eq!(no_default.kind_cap("standard"), Money::from_yuan(2_000));
}

/// Grants as a verifier would find them stored: (grant, delegate, cardholder, scopes, live).
struct Grants(Vec<(&'static str, &'static str, &'static str, Scopes, bool)>);

#[async_trait::async_trait]
impl GrantVerifier for Grants {
    async fn verify(
        &self,
        principal: &Principal,
        person: &PersonId,
        scope: DelegationScope,
        _now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, citycard_core::StoreError> {
        Ok(match principal {
            Principal::Cardholder { person: p } => p == person,
            Principal::Delegate {
                delegate,
                on_behalf_of,
                delegation,
                scopes,
            } => {
                on_behalf_of == person
                    && scopes.contains(scope)
                    && self.0.iter().any(|(id, d, c, s, live)| {
                        delegation.as_str() == *id
                            && delegate.as_str() == *d
                            && person.as_str() == *c
                            && s.contains(scope)
                            && *live
                    })
            }
            _ => false,
        })
    }
}

fn delegate(who: &str, grant: &str, scopes: Scopes) -> Principal {
    Principal::Delegate {
        delegate: person(who),
        on_behalf_of: person("psn-ann"),
        delegation: DelegationId::parse(grant).unwrap(),
        scopes,
    }
}

#[tokio::test]
async fn cardholders_read_their_own_accounts_and_write_nothing() {
    let (ledger, _) = setup(Arc::new(MemoryLedgerStore::new())).await;
    let roles = Arc::new(OperatorRoles::new());
    let finance = OperatorId::parse("opr-1").unwrap();
    roles.grant(finance.clone(), OperatorRole::Finance);
    let ledger = ledger.with_roles(roles).with_grants(Arc::new(Grants(vec![
        (
            "dlg-1",
            "psn-kid",
            "psn-ann",
            Scopes::default().with(DelegationScope::ViewBalance),
            true,
        ),
        (
            "dlg-old",
            "psn-kid",
            "psn-ann",
            Scopes::default().with(DelegationScope::ViewBalance),
            false,
        ),
    ])));
    let ann = Principal::cardholder(person("psn-ann"));
    let t = NewTransfer::new(id(1), CLEARING, WALLET, Money::from_yuan(5), 1);
    assert!(matches!(
        ledger.create_transfers(&ann, vec![t.clone()]).await,
        Err(LedgerError::Denied { .. })
    ));
    let operator = Principal::Operator { operator: finance };
    assert_eq!(
        ledger.create_transfers(&operator, vec![t]).await.unwrap(),
        [R::Ok]
    );
    assert_eq!(
        ledger.account(&ann, WALLET).await.unwrap().posted(),
        Money::from_yuan(5)
    );
    assert!(matches!(
        ledger.account(&ann, OTHER_WALLET).await,
        Err(LedgerError::Denied { .. })
    ));
    assert!(ledger.transfer(&ann, id(1)).await.is_ok());
    // A delegate needs the view scope, claimed and held by a live stored grant.
    let viewer = Scopes::default().with(DelegationScope::ViewBalance);
    assert!(
        ledger
            .account(&delegate("psn-kid", "dlg-1", viewer), WALLET)
            .await
            .is_ok()
    );
    for refused in [
        delegate(
            "psn-kid",
            "dlg-1",
            Scopes::default().with(DelegationScope::BookAppointments),
        ),
        delegate("psn-kid", "dlg-old", viewer),
        delegate("psn-stranger", "dlg-1", viewer),
        delegate("psn-kid", "dlg-unknown", Scopes::all()),
    ] {
        assert!(
            matches!(
                ledger.account(&refused, WALLET).await,
                Err(LedgerError::Denied { .. })
            ),
            "{refused:?}"
        );
    }
    assert!(matches!(
        ledger.account(&Principal::System, AccountId::new(77)).await,
        Err(LedgerError::AccountNotFound(_))
    ));
    // Anyone else cannot tell a missing id from another's account.
    assert!(matches!(
        ledger.account(&ann, AccountId::new(77)).await,
        Err(LedgerError::Denied { .. })
    ));
    assert!(matches!(
        ledger.transfer(&ann, id(99)).await,
        Err(LedgerError::Denied { .. })
    ));
}

#[tokio::test]
async fn without_a_grant_verifier_a_claimed_grant_reads_nothing() {
    let (ledger, _) = setup(Arc::new(MemoryLedgerStore::new())).await;
    let claimed = delegate("psn-stranger", "dlg-anything", Scopes::all());
    assert!(matches!(
        ledger.account(&claimed, WALLET).await,
        Err(LedgerError::Denied { .. })
    ));
    assert!(matches!(
        ledger
            .statement(
                &claimed,
                WALLET,
                chrono::DateTime::UNIX_EPOCH,
                chrono::Utc::now()
            )
            .await,
        Err(LedgerError::Denied { .. })
    ));
}

#[tokio::test]
async fn platforms_and_operators_without_a_role_move_no_money_and_read_no_wallet() {
    // Batch records commit with the batch, so the store writes them to the log.
    let core = citycard_core::MemoryCore::new();
    let audit = core.audit();
    let (ledger, _) = setup(Arc::new(MemoryLedgerStore::with_core(core))).await;
    let ledger = ledger.with_audit(audit.clone());
    let sys = Principal::System;
    ledger
        .create_transfers(
            &sys,
            vec![NewTransfer::new(
                id(1),
                CLEARING,
                WALLET,
                Money::from_yuan(100),
                1,
            )],
        )
        .await
        .unwrap();
    let owned_by = |code: &str| {
        NewAccount::new(AccountId::new(9), AccountKind::TOP_UP_CLEARING)
            .with_owner(Owner::Organisation(code.into()))
    };
    ledger
        .create_accounts(&sys, vec![owned_by("wechat_pay")])
        .await
        .unwrap();
    let wechat = Principal::Platform {
        platform: Platform::WechatPay,
    };
    let unroled = Principal::Operator {
        operator: OperatorId::parse("opr-9").unwrap(),
    };
    let before = audit.query(&AuditQuery::default()).await.unwrap().len();
    for p in [&wechat, &unroled] {
        let drain = NewTransfer::new(id(2), WALLET, AccountId::new(9), Money::from_yuan(100), 1);
        assert!(matches!(
            ledger.create_transfers(p, vec![drain]).await,
            Err(LedgerError::Denied { .. })
        ));
        assert!(matches!(
            ledger.account(p, WALLET).await,
            Err(LedgerError::Denied { .. })
        ));
        assert!(matches!(
            ledger.transfer(p, id(1)).await,
            Err(LedgerError::Denied { .. })
        ));
    }
    assert_eq!(
        ledger.account(&sys, WALLET).await.unwrap().posted(),
        Money::from_yuan(100)
    );
    // Each refusal is audited as a denial.
    let after = audit.query(&AuditQuery::default()).await.unwrap();
    let denied = after[before..]
        .iter()
        .filter(|e| e.record.outcome == citycard_core::AuditOutcome::Denied)
        .count();
    assert_eq!(denied, 6);
    // A platform reads its own clearing account, and no other organisation's.
    assert!(ledger.account(&wechat, AccountId::new(9)).await.is_ok());
    assert!(ledger.account(&wechat, CLEARING).await.is_err());
}

#[tokio::test]
async fn a_resubmitted_transfer_is_audited_as_a_replay() {
    // Batch records commit with the batch, so the store writes them to the log.
    let core = citycard_core::MemoryCore::new();
    let audit = core.audit();
    let (ledger, _) = setup(Arc::new(MemoryLedgerStore::with_core(core))).await;
    let ledger = ledger.with_audit(audit.clone());
    let t = NewTransfer::new(id(1), CLEARING, WALLET, Money::from_yuan(5), 1);
    for _ in 0..3 {
        ledger
            .create_transfers(&Principal::System, vec![t.clone()])
            .await
            .unwrap();
    }
    let outcomes: Vec<_> = audit
        .query(&AuditQuery::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.record.action == "ledger.create_transfers")
        .map(|e| e.record.outcome)
        .collect();
    use citycard_core::AuditOutcome::{Replayed, Succeeded};
    assert_eq!(outcomes, [Succeeded, Replayed, Replayed]);
}

#[tokio::test]
async fn a_batch_is_acknowledged_only_after_its_commit() {
    let inner: Arc<dyn LedgerStore> = Arc::new(MemoryLedgerStore::new());
    let (faulty, faults) = FaultyLedgerStore::new(inner.clone());
    let (ledger, clock) = setup(Arc::new(faulty)).await;
    let sys = Principal::System;
    let batch = vec![NewTransfer::new(
        id(1),
        CLEARING,
        WALLET,
        Money::from_yuan(5),
        1,
    )];
    faults.next("commit", Fault::Fail);
    assert!(matches!(
        ledger.create_transfers(&sys, batch.clone()).await,
        Err(LedgerError::Store(_))
    ));
    // Nothing was acknowledged, and the live ledger forgot it too.
    assert!(ledger.transfer(&sys, id(1)).await.is_err());
    assert_eq!(
        ledger.account(&sys, WALLET).await.unwrap().posted(),
        Money::ZERO
    );
    // The lost acknowledgement: committed, reported as failed; the retry answers exists.
    faults.next("commit", Fault::UnknownOutcome);
    assert!(ledger.create_transfers(&sys, batch.clone()).await.is_err());
    assert_eq!(
        ledger.create_transfers(&sys, batch).await.unwrap(),
        [R::Exists]
    );
    // If the store cannot even be reloaded, the ledger refuses until reopened.
    faults.next("commit", Fault::Fail);
    faults.next("load", Fault::Fail);
    clock.advance(Duration::seconds(1));
    let more = vec![NewTransfer::new(
        id(2),
        CLEARING,
        WALLET,
        Money::from_yuan(1),
        1,
    )];
    assert!(ledger.create_transfers(&sys, more.clone()).await.is_err());
    assert!(matches!(
        ledger.create_transfers(&sys, more).await,
        Err(LedgerError::Poisoned)
    ));
    // Balance reads come from the store: they still answer what was committed.
    assert_eq!(
        ledger.account(&sys, WALLET).await.unwrap().posted(),
        Money::from_yuan(5)
    );
    let reopened = Ledger::open(inner, clock).await.unwrap();
    assert_eq!(
        reopened.account(&sys, WALLET).await.unwrap().posted(),
        Money::from_yuan(5)
    );
}

#[tokio::test]
async fn statements_show_opening_entries_and_closing_balance() {
    let (ledger, clock) = setup(Arc::new(MemoryLedgerStore::new())).await;
    let sys = Principal::System;
    let start = clock.now();
    let step = |c: &ManualClock| c.advance(Duration::minutes(10));
    ledger
        .create_transfers(
            &sys,
            vec![
                NewTransfer::new(id(1), CLEARING, WALLET, Money::from_yuan(100), 1)
                    .with_reference(Reference::top_up_order("O-1").unwrap()),
            ],
        )
        .await
        .unwrap();
    step(&clock);
    let from = clock.now();
    ledger
        .create_transfers(
            &sys,
            vec![
                NewTransfer::pending(id(2), WALLET, METRO, Money::from_yuan(5), 2, 0)
                    .with_reference(Reference::trip("T-1").unwrap()),
                NewTransfer::post(id(3), id(2), Some(Money::from_yuan(3)))
                    .with_reference(Reference::trip("T-1").unwrap())
                    .with_memo("Line 1, Wulin Sq to Longxiangqiao"),
            ],
        )
        .await
        .unwrap();
    step(&clock);
    ledger
        .create_transfers(
            &sys,
            vec![
                NewTransfer::new(id(4), CLEARING, WALLET, Money::from_yuan(20), 1)
                    .with_reference(Reference::top_up_order("O-2").unwrap()),
            ],
        )
        .await
        .unwrap();
    step(&clock);
    let to = clock.now();
    ledger
        .create_transfers(
            &sys,
            vec![NewTransfer::new(
                id(5),
                WALLET,
                METRO,
                Money::from_yuan(1),
                2,
            )],
        )
        .await
        .unwrap();
    let s = ledger.statement(&sys, WALLET, from, to).await.unwrap();
    assert_eq!(s.opening_balance, Money::from_yuan(100));
    assert_eq!(s.entries.len(), 2, "the hold itself moves no posted money");
    assert_eq!(s.entries[0].transfer_id, id(3));
    assert_eq!(s.entries[0].amount, Money::from_yuan(-3));
    assert_eq!(s.entries[0].counterparty, METRO);
    assert_eq!(
        s.entries[0].memo.as_deref(),
        Some("Line 1, Wulin Sq to Longxiangqiao")
    );
    assert_eq!(s.entries[1].amount, Money::from_yuan(20));
    assert_eq!(s.entries[1].balance_after, Money::from_yuan(117));
    assert_eq!(s.closing_balance, Money::from_yuan(117));
    let whole = ledger.statement(&sys, WALLET, start, to).await.unwrap();
    assert_eq!(whole.opening_balance, Money::ZERO);
    assert_eq!(whole.entries.len(), 3);
    assert!(matches!(
        ledger.statement(&sys, WALLET, to, from).await,
        Err(LedgerError::InvalidRange)
    ));

    // Reconcile against the platform's view of the same period.
    let external = vec![
        ExternalEntry {
            reference: Reference::trip("T-1").unwrap(),
            amount: Money::from_yuan(-3),
            at: from,
        },
        ExternalEntry {
            reference: Reference::top_up_order("O-2").unwrap(),
            amount: Money::from_yuan(25),
            at: from,
        },
        ExternalEntry {
            reference: Reference::top_up_order("O-9").unwrap(),
            amount: Money::from_yuan(8),
            at: from,
        },
    ];
    let report = ledger
        .reconcile(&sys, WALLET, start, to, &external)
        .await
        .unwrap();
    assert!(!report.is_clean());
    assert_eq!(report.matched.len(), 1);
    assert_eq!(report.matched[0].transfer_ids, [id(3)]);
    assert_eq!(report.amount_mismatches.len(), 1);
    assert_eq!(report.amount_mismatches[0].ledger, Money::from_yuan(20));
    assert_eq!(report.amount_mismatches[0].external, Money::from_yuan(25));
    assert_eq!(report.missing_in_ledger.len(), 1);
    assert_eq!(report.missing_externally.len(), 1);
    assert_eq!(report.missing_externally[0].transfer_id, id(1));
}

#[tokio::test]
async fn batches_are_audited_and_keys_map_to_transfer_ids() {
    // Batch records commit with the batch, so the store writes them to the log.
    let core = citycard_core::MemoryCore::new();
    let audit = core.audit();
    let (ledger, _) = setup(Arc::new(MemoryLedgerStore::with_core(core))).await;
    let ledger = ledger.with_audit(audit.clone());
    let key = "topup-2026-11-26-1".parse().unwrap();
    let tid = TransferId::from_idempotency_key("wallet.top_up", &key);
    assert_eq!(tid, TransferId::from_idempotency_key("wallet.top_up", &key));
    assert_ne!(tid, TransferId::from_idempotency_key("wallet.refund", &key));
    let t = NewTransfer::new(tid, CLEARING, WALLET, Money::from_yuan(5), 1);
    let sys = Principal::System;
    assert_eq!(
        ledger
            .create_transfers(&sys, vec![t.clone()])
            .await
            .unwrap(),
        [R::Ok]
    );
    assert_eq!(
        ledger.create_transfers(&sys, vec![t]).await.unwrap(),
        [R::Exists]
    );
    let entries = audit.query(&AuditQuery::all()).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].record.action, "ledger.create_transfers");
    assert_eq!(entries[0].record.detail["ok"], "1");
}

#[tokio::test]
async fn a_lost_cards_balance_carries_to_its_replacement() {
    let (ledger, _) = setup(Arc::new(MemoryLedgerStore::new())).await;
    let sys = Principal::System;
    let replacement = AccountId::new(10);
    let control = AccountId::new(11);
    let ann = citycard_ledger::Owner::Person(person("psn-ann"));
    ledger
        .create_accounts(
            &sys,
            vec![
                WalletLimits::default().wallet(
                    replacement,
                    WalletHolder::Registered,
                    Some(person("psn-ann")),
                ),
                NewAccount::new(control, AccountKind::CONTROL),
            ],
        )
        .await
        .unwrap();
    let r = ledger
        .create_transfers(
            &sys,
            vec![
                NewTransfer::new(id(1), CLEARING, WALLET, Money::from_fen(12_345), 1),
                NewTransfer::pending(id(2), WALLET, METRO, Money::from_yuan(3), 2, 0),
                NewTransfer::void(id(3), id(2)),
                NewTransfer::carry_balance(id(4), WALLET, replacement, 5)
                    .with_flags(citycard_ledger::TransferFlags::LINKED),
                NewTransfer::close_account(id(5), WALLET, control, 6),
            ],
        )
        .await
        .unwrap();
    assert!(r.iter().all(|r| *r == R::Ok), "{r:?}");
    let old = ledger.account(&sys, WALLET).await.unwrap();
    assert!(old.is_closed());
    assert_eq!(old.posted(), Money::ZERO);
    let new = ledger.account(&sys, replacement).await.unwrap();
    assert_eq!(new.posted(), Money::from_fen(12_345));
    let owned = ledger
        .accounts_of(&Principal::cardholder(person("psn-ann")), &ann)
        .await
        .unwrap();
    assert_eq!(
        owned.iter().map(|a| a.id).collect::<Vec<_>>(),
        [WALLET, replacement]
    );
}

/// A commit that never finishes: its caller gives up (drops the future).
struct Abandoned;

#[async_trait::async_trait]
impl citycard_ledger::CommitWith for Abandoned {
    type Output = ();
    async fn commit(
        &mut self,
        _: &[R],
        _: &citycard_ledger::ChangeSet<'_>,
        _: citycard_core::AuditRecord,
    ) -> Result<(), citycard_core::StoreError> {
        std::future::pending().await
    }
}

/// A batch whose caller went away mid-commit is not acknowledged: the next
/// caller finds the ledger as the store has it (the balance unmoved, the id
/// free), not as the abandoned batch left the engine.
#[tokio::test]
async fn a_batch_abandoned_mid_commit_is_forgotten() {
    let (ledger, _) = setup(Arc::new(MemoryLedgerStore::new())).await;
    let sys = Principal::System;
    ledger
        .create_transfers(
            &sys,
            vec![NewTransfer::new(
                id(1),
                CLEARING,
                WALLET,
                Money::from_yuan(50),
                1,
            )],
        )
        .await
        .unwrap();
    {
        let fare = ledger.create_transfers_with(
            &sys,
            vec![NewTransfer::new(
                id(2),
                WALLET,
                METRO,
                Money::from_yuan(2),
                2,
            )],
            Abandoned,
        );
        let mut fare = std::pin::pin!(fare);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(fare.as_mut().poll(&mut cx).is_pending());
    }
    let wallet = ledger.account(&sys, WALLET).await.unwrap();
    assert_eq!(wallet.posted(), Money::from_yuan(50));
    let again = ledger
        .create_transfers(
            &sys,
            vec![NewTransfer::new(
                id(2),
                WALLET,
                METRO,
                Money::from_yuan(2),
                2,
            )],
        )
        .await
        .unwrap();
    assert_eq!(again, vec![R::Ok]);
    assert_eq!(
        ledger.account(&sys, WALLET).await.unwrap().posted(),
        Money::from_yuan(48)
    );
}
