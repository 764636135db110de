//! The seed's flow and failure table, end to end over memory stores and fault doubles.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use citycard_binding::*;
use citycard_core::*;
use citycard_testkit::Fault;
use common::*;

#[tokio::test]
async fn the_seed_flow_binds_and_shows_the_card_in_the_wallet() {
    let w = World::new();
    let card = w.issue("li", None).await;
    let receipt = w.bind_own(&card, "li", "b1").await.unwrap();
    assert_eq!(receipt.state, BindingState::Active);
    assert_eq!(receipt.card, card.id);
    assert_eq!(receipt.services, card.services);
    for s in [
        Service::Transit,
        Service::Healthcare,
        Service::SocialInsurance,
        Service::Wallet,
    ] {
        assert!(receipt.services.contains(&s), "{s} is a default service");
    }
    let passes = w.passes();
    assert_eq!(passes.len(), 1);
    assert_eq!(passes[0].serial, receipt.pass_serial);
    assert_eq!(passes[0].status, PassStatus::Active);
    assert_eq!(passes[0].card_number_masked, card.number.masked());
    assert!(
        !passes[0]
            .card_number_masked
            .contains(&card.number.as_str()[3..12])
    );

    let b = w.binding(&receipt.binding).await;
    assert_eq!(b.consent.recipient, Platform::Alipay);
    assert_eq!(b.consent.given.text_version, "v1");
    assert_eq!(b.consent.actor, Principal::cardholder(card.holder.clone()));
    assert_eq!(b.consent.given_at, w.clock.now());
    assert_eq!(b.consent.guardian, None);
    let actions = w.audit_actions().await;
    assert!(actions.contains(&("binding.consent".into(), AuditOutcome::Succeeded)));
    assert!(actions.contains(&("binding.bind".into(), AuditOutcome::Succeeded)));
    for s in [Service::Transit, Service::Healthcare] {
        w.service
            .ensure_service(&Principal::cardholder(card.holder.clone()), &b.id, &s)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn wrong_card_number_and_wrong_id_number_give_the_same_answer() {
    let w = World::new();
    let card = w.issue("li", None).await;
    let other = w.issue("wang", None).await;
    let me = Principal::cardholder(card.holder.clone());
    let acct = account("pac-li");

    let mut wrong_number = w.request(&card, "li", &acct);
    wrong_number.card_number = other.number.as_str().to_owned(); // someone else's card
    let mut unknown_number = w.request(&card, "li", &acct);
    unknown_number.card_number = "33019999999999".into();
    let mut wrong_id = w.request(&card, "li", &acct);
    wrong_id.id_number = id_number_of("wang");

    let mut answers = Vec::new();
    for (i, r) in [wrong_number, unknown_number, wrong_id].iter().enumerate() {
        answers.push(
            w.service
                .bind(&me, &key(&format!("k{i}")), r)
                .await
                .unwrap_err(),
        );
    }
    for a in &answers {
        assert_eq!(*a, BindingError::DetailsDoNotMatch);
        assert_eq!(a.class(), ErrorClass::InvalidInput);
        let text = a.to_string();
        assert!(text.contains("card number") && text.contains("ID number"));
        assert!(!text.contains("wang"));
    }
    assert!(w.passes().is_empty());
    assert!(w.bindings.by_card(&other.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn repeated_mismatches_are_rate_limited_per_account_by_the_clock() {
    let w = World::new();
    let card = w.issue("li", None).await;
    let me = Principal::cardholder(card.holder.clone());
    let acct = account("pac-li");
    let mut bad = w.request(&card, "li", &acct);
    bad.id_number = id_number_of("nobody");
    let first = w.clock.now();
    for i in 0..5 {
        let e = w
            .service
            .bind(&me, &key(&format!("bad-{i}")), &bad)
            .await
            .unwrap_err();
        assert_eq!(e, BindingError::DetailsDoNotMatch);
        w.clock.advance(Duration::minutes(1));
    }
    // The sixth attempt, even with the right details, waits until the first mismatch ages out.
    let good = w.request(&card, "li", &acct);
    let e = w
        .service
        .bind(&me, &key("good-1"), &good)
        .await
        .unwrap_err();
    assert_eq!(
        e,
        BindingError::TooManyAttempts {
            retry_after: first + Duration::minutes(30)
        }
    );
    assert_eq!(e.class(), ErrorClass::RateLimited);
    // Another account is not affected.
    let other = w.issue("zhao", None).await;
    w.bind_own(&other, "zhao", "zhao-1").await.unwrap();
    // After the window the right details bind; the same key works, since the limit was not stored.
    w.clock.set(first + Duration::minutes(30));
    assert_eq!(
        w.service
            .bind(&me, &key("good-1"), &good)
            .await
            .unwrap()
            .state,
        BindingState::Active
    );
}

#[tokio::test]
async fn the_account_must_be_real_name_verified_and_the_id_number_the_holders_own() {
    let w = World::new();
    let card = w.issue("li", None).await;
    let me = Principal::cardholder(card.holder.clone());
    let unverified = account("pac-anon");
    let e = w
        .service
        .bind(&me, &key("k1"), &w.request(&card, "li", &unverified))
        .await
        .unwrap_err();
    assert_eq!(e, BindingError::NotRealNameVerified);
    assert!(e.to_string().contains("verif"));

    // Someone else's verified account, as the cardholder: denied and audited.
    w.citizen("wang");
    let e = w
        .service
        .bind(
            &me,
            &key("k2"),
            &w.request(&card, "li", &account("pac-wang")),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, BindingError::Denied { .. }));
    assert!(
        w.audit_actions()
            .await
            .contains(&("binding.bind".into(), AuditOutcome::Denied))
    );
    assert!(w.passes().is_empty());
}

#[tokio::test]
async fn an_inactive_card_or_a_platform_not_enabled_is_refused_by_name() {
    let w = World::new();
    let card = w.issue("li", None).await;
    let me = Principal::cardholder(card.holder.clone());
    w.service
        .report_lost(&me, &key("lost"), &card.id)
        .await
        .unwrap();
    let e = w.bind_own(&card, "li", "k1").await.unwrap_err();
    assert_eq!(
        e,
        BindingError::CardNotActive {
            status: "reported_lost".into()
        }
    );
    assert!(e.to_string().contains("reported_lost"));

    let n = w
        .service
        .issue_card(
            &w.operator,
            &key("issue-x"),
            &IssueCard {
                number: "3301777788889999".into(),
                kind: "elderly".into(),
                holder: person("psn-li"),
                id_number: id_number_of("li"),
                wallet_account: WalletAccountRef::parse("wac-x").unwrap(),
                services: None,
                platforms: Some([Platform::WechatPay].into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(n.kind, CardKind::Elderly);
    let e = w.bind_own(&n, "li", "k2").await.unwrap_err();
    assert_eq!(
        e,
        BindingError::PlatformNotEnabled {
            platform: Platform::Alipay
        }
    );
}

#[tokio::test]
async fn retries_return_the_first_answer_and_a_reused_key_for_another_request_conflicts() {
    let w = World::new();
    let card = w.issue("li", None).await;
    let first = w.bind_own(&card, "li", "b1").await.unwrap();
    let again = w.bind_own(&card, "li", "b1").await.unwrap();
    assert_eq!(first, again);
    assert_eq!(w.passes().len(), 1);
    // A new key for the same card and account: already bound.
    let e = w.bind_own(&card, "li", "b2").await.unwrap_err();
    assert_eq!(
        e,
        BindingError::AlreadyBound {
            binding: first.binding.clone()
        }
    );
    // The same key with a different request.
    let other = w.issue("wang", None).await;
    let e = w
        .service
        .bind(
            &Principal::cardholder(card.holder.clone()),
            &key("b1"),
            &w.request(&other, "wang", &account("pac-li")),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        BindingError::Idempotency(IdempotencyError::Conflict { .. })
    ));

    // A refusal is replayed without counting another mismatch.
    let me = Principal::cardholder(card.holder.clone());
    let mut bad = w.request(&card, "li", &account("pac-li"));
    bad.id_number = id_number_of("nobody");
    for _ in 0..10 {
        assert_eq!(
            w.service.bind(&me, &key("bad"), &bad).await.unwrap_err(),
            BindingError::DetailsDoNotMatch
        );
    }
    let since = w.clock.now() - Duration::hours(1);
    assert_eq!(
        w.bindings
            .mismatches_since(&Platform::Alipay, &account("pac-li"), since)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn one_card_binds_on_several_platforms() {
    let w = World::new();
    let card = w.issue("li", None).await;
    let me = Principal::cardholder(card.holder.clone());
    let a = w.bind_own(&card, "li", "b1").await.unwrap();
    let mut wechat = w.request(&card, "li", &account("pac-li"));
    wechat.platform = Platform::WechatPay;
    let b = w.service.bind(&me, &key("b2"), &wechat).await.unwrap();
    assert_ne!(a.binding, b.binding);
    assert_eq!(w.passes().len(), 2);
}

#[tokio::test]
async fn an_unknown_outcome_is_resolved_by_querying_the_wallet() {
    let w = World::new();
    let card = w.issue("li", None).await;
    w.faults.next("add_pass", Fault::UnknownOutcome);
    let r = w.bind_own(&card, "li", "b1").await.unwrap();
    assert_eq!(r.state, BindingState::Active);
    assert_eq!(w.passes().len(), 1);
    assert_eq!(
        w.faults.calls("add_pass"),
        1,
        "the pass was found, not re-added"
    );
    assert_eq!(w.faults.calls("pass"), 1);

    // A timeout that did not take effect: the query says absent, the retry uses the same serial.
    let card2 = w.issue("wang", None).await;
    w.faults.next("add_pass", Fault::Timeout);
    let r2 = w.bind_own(&card2, "wang", "b2").await.unwrap();
    assert_eq!(r2.state, BindingState::Active);
    let serials: Vec<_> = w.passes().into_iter().map(|p| p.serial).collect();
    assert!(serials.contains(&r2.pass_serial));
    assert_eq!(serials.len(), 2);
}

#[tokio::test]
async fn a_wallet_that_keeps_failing_is_compensated_and_nothing_is_bound() {
    let w = World::new();
    let card = w.issue("li", None).await;
    w.faults.always("add_pass", Fault::Fail);
    let e = w.bind_own(&card, "li", "b1").await.unwrap_err();
    assert!(matches!(e, BindingError::RetryLater { .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Unavailable);
    assert_eq!(
        w.faults.calls("add_pass"),
        3,
        "retried with the same serial"
    );
    assert!(w.passes().is_empty());
    let all = w.bindings.by_card(&card.id).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].state, BindingState::Removed);
    assert_eq!(all[0].removal, Some(RemovalReason::BindingFailed));
    assert!(all[0].consent.withdrawn_at.is_some());
    // The network recovers: the same key binds anew.
    w.faults.clear();
    let r = w.bind_own(&card, "li", "b1").await.unwrap();
    assert_eq!(r.state, BindingState::Active);
    assert_eq!(w.passes().len(), 1);
}

#[tokio::test]
async fn an_unsettled_outcome_is_processing_until_it_is_resolved() {
    let w = World::new();
    let card = w.issue("li", None).await;
    // The pass is written but every answer is lost, and nothing can be confirmed.
    w.faults.always("add_pass", Fault::UnknownOutcome);
    w.faults.always("pass", Fault::Timeout);
    w.faults.always("remove_pass", Fault::Timeout);
    let e = w.bind_own(&card, "li", "b1").await.unwrap_err();
    let BindingError::Processing { binding } = e.clone() else {
        panic!("expected processing, got {e:?}");
    };
    assert_eq!(e.class(), ErrorClass::Unavailable);
    assert_eq!(w.binding(&binding).await.state, BindingState::Pending);
    // Still processing on a retry while the faults last; never a false "failed".
    assert_eq!(
        w.bind_own(&card, "li", "b1").await.unwrap_err(),
        BindingError::Processing {
            binding: binding.clone()
        }
    );
    w.faults.clear();
    let r = w.bind_own(&card, "li", "b1").await.unwrap();
    assert_eq!(r.binding, binding);
    assert_eq!(r.state, BindingState::Active);
    assert_eq!(w.passes().len(), 1);
    assert_eq!(w.bind_own(&card, "li", "b1").await.unwrap(), r);
}

#[tokio::test]
async fn a_settling_job_finishes_bindings_whose_callers_went_away() {
    let w = World::new();
    let card = w.issue("li", None).await;
    w.faults.always("add_pass", Fault::Timeout);
    w.faults.always("pass", Fault::Timeout);
    w.faults.always("remove_pass", Fault::Timeout);
    let Err(BindingError::Processing { binding }) = w.bind_own(&card, "li", "b1").await else {
        panic!("expected processing");
    };
    let me = Principal::cardholder(card.holder.clone());
    assert!(matches!(
        w.service.settle_pending(&me, 10).await,
        Err(BindingError::Denied { .. })
    ));
    assert_eq!(
        w.service
            .settle_pending(&Principal::System, 10)
            .await
            .unwrap(),
        0
    );
    w.faults.clear();
    assert_eq!(
        w.service
            .settle_pending(&Principal::System, 10)
            .await
            .unwrap(),
        1
    );
    assert_eq!(w.binding(&binding).await.state, BindingState::Active);
    assert_eq!(w.passes().len(), 1);
}

#[tokio::test]
async fn card_events_propagate_to_bindings_and_passes() {
    let w = World::new();
    let card = w.issue("li", None).await;
    let me = Principal::cardholder(card.holder.clone());
    let r = w.bind_own(&card, "li", "b1").await.unwrap();
    let status = || {
        w.wallet
            .inner()
            .status_of(&Platform::Alipay, &r.pass_serial)
    };

    let change = w
        .service
        .report_lost(&me, &key("e1"), &card.id)
        .await
        .unwrap();
    assert_eq!(change.bindings_changed, vec![r.binding.clone()]);
    assert!(change.passes_unsynced.is_empty());
    assert_eq!(w.binding(&r.binding).await.state, BindingState::Suspended);
    assert_eq!(status(), Some(PassStatus::Suspended));
    let e = w
        .service
        .ensure_service(&me, &r.binding, &Service::Transit)
        .await
        .unwrap_err();
    assert!(matches!(e, BindingError::CardNotActive { .. }));

    w.service
        .report_found(&me, &key("e2"), &card.id)
        .await
        .unwrap();
    assert_eq!(w.binding(&r.binding).await.state, BindingState::Active);
    assert_eq!(status(), Some(PassStatus::Active));

    // Freezing is the issuer's; a cardholder is denied and the denial audited.
    assert!(matches!(
        w.service.freeze(&me, &key("e3"), &card.id).await,
        Err(BindingError::Denied { .. })
    ));
    assert!(
        w.audit_actions()
            .await
            .contains(&("card.freeze".into(), AuditOutcome::Denied))
    );
    w.service
        .freeze(&w.operator, &key("e4"), &card.id)
        .await
        .unwrap();
    assert_eq!(status(), Some(PassStatus::Suspended));
    w.service
        .unfreeze(&w.operator, &key("e5"), &card.id)
        .await
        .unwrap();
    assert_eq!(status(), Some(PassStatus::Active));
    // Reporting found on an active card is a state error.
    assert!(matches!(
        w.service.report_found(&me, &key("e6"), &card.id).await,
        Err(BindingError::InvalidState { .. })
    ));
}

#[tokio::test]
async fn replacing_a_card_moves_bindings_and_balance_to_the_new_card() {
    let w = World::new();
    let card = w.issue("li", None).await;
    let me = Principal::cardholder(card.holder.clone());
    w.funds
        .set_balance(&card.wallet_account, Money::from_fen(4_850));
    let r = w.bind_own(&card, "li", "b1").await.unwrap();
    w.service
        .report_lost(&me, &key("lost"), &card.id)
        .await
        .unwrap();
    let new_wallet = WalletAccountRef::parse("wac-new").unwrap();
    let change = w
        .service
        .replace_card(
            &w.operator,
            &key("replace"),
            &card.id,
            &ReplaceCard {
                new_number: "3301555566667777".into(),
                new_wallet_account: new_wallet.clone(),
            },
        )
        .await
        .unwrap();
    let new_card = change.new_card.clone().unwrap();
    assert_eq!(
        change.card.status,
        CardStatus::Replaced {
            by: new_card.id.clone()
        }
    );
    assert_eq!(new_card.replaces, Some(card.id.clone()));
    assert_eq!(new_card.holder, card.holder);
    assert_eq!(change.funds_moved, Some(Money::from_fen(4_850)));
    assert_eq!(w.funds.balance_of(&new_wallet), Money::from_fen(4_850));
    assert_eq!(w.funds.balance_of(&card.wallet_account), Money::ZERO);

    let moved = w.binding(&r.binding).await;
    assert_eq!(moved.card, new_card.id);
    assert_eq!(moved.state, BindingState::Active, "the new card is active");
    assert_ne!(moved.pass_serial, r.pass_serial);
    let passes = w.passes();
    assert_eq!(passes.len(), 1);
    assert_eq!(passes[0].serial, moved.pass_serial);
    assert_eq!(passes[0].card_number_masked, new_card.number.masked());
    assert!(
        w.wallet
            .inner()
            .removals()
            .contains(&(r.pass_serial.clone(), RemovalReason::CardReplaced))
    );
    // The replay answers the same without moving money twice.
    let again = w
        .service
        .replace_card(
            &w.operator,
            &key("replace"),
            &card.id,
            &ReplaceCard {
                new_number: "3301555566667777".into(),
                new_wallet_account: new_wallet.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(again, change);
    // The old number no longer binds.
    let e = w.bind_own(&card, "li", "b2").await.unwrap_err();
    assert_eq!(
        e,
        BindingError::CardNotActive {
            status: "replaced".into()
        }
    );
}

#[tokio::test]
async fn cancelling_a_card_removes_bindings_and_refunds_the_balance() {
    let w = World::new();
    let card = w.issue("li", None).await;
    w.funds
        .set_balance(&card.wallet_account, Money::from_fen(1_200));
    let r = w.bind_own(&card, "li", "b1").await.unwrap();
    let me = Principal::cardholder(card.holder.clone());
    assert!(matches!(
        w.service.cancel_card(&me, &key("c0"), &card.id).await,
        Err(BindingError::Denied { .. })
    ));
    let change = w
        .service
        .cancel_card(&w.operator, &key("c1"), &card.id)
        .await
        .unwrap();
    assert_eq!(change.funds_moved, Some(Money::from_fen(1_200)));
    assert_eq!(
        w.funds.refunded(&card.wallet_account),
        Money::from_fen(1_200)
    );
    let b = w.binding(&r.binding).await;
    assert_eq!(b.state, BindingState::Removed);
    assert_eq!(b.removal, Some(RemovalReason::CardCancelled));
    assert!(b.consent.withdrawn_at.is_some());
    assert!(w.passes().is_empty());
    assert!(
        w.wallet
            .inner()
            .removals()
            .contains(&(r.pass_serial.clone(), RemovalReason::CardCancelled))
    );
}

#[tokio::test]
async fn a_wallet_outage_during_a_card_event_leaves_the_pass_to_resync() {
    let w = World::new();
    let card = w.issue("li", None).await;
    let me = Principal::cardholder(card.holder.clone());
    let r = w.bind_own(&card, "li", "b1").await.unwrap();
    w.faults.always("update_pass", Fault::Fail);
    let change = w
        .service
        .report_lost(&me, &key("lost"), &card.id)
        .await
        .unwrap();
    assert_eq!(change.passes_unsynced, vec![r.binding.clone()]);
    assert_eq!(w.binding(&r.binding).await.state, BindingState::Suspended);
    assert!(w.service.resync_pass(&me, &r.binding).await.is_err());
    w.faults.clear();
    w.service.resync_pass(&me, &r.binding).await.unwrap();
    assert_eq!(
        w.wallet
            .inner()
            .status_of(&Platform::Alipay, &r.pass_serial),
        Some(PassStatus::Suspended)
    );
}

#[tokio::test]
async fn unbinding_withdraws_consent_removes_the_pass_and_allows_binding_again() {
    let w = World::new();
    let card = w.issue("li", None).await;
    let me = Principal::cardholder(card.holder.clone());
    let r = w.bind_own(&card, "li", "b1").await.unwrap();
    // A stranger may not unbind.
    w.citizen("wang");
    let stranger = Principal::cardholder(person("psn-wang"));
    assert!(matches!(
        w.service
            .unbind(
                &stranger,
                &key("u0"),
                &r.binding,
                RemovalReason::UserUnbound
            )
            .await,
        Err(BindingError::Denied { .. })
    ));
    assert!(
        w.audit_actions()
            .await
            .contains(&("binding.unbind".into(), AuditOutcome::Denied))
    );
    // The wallet is down: nothing changes, retry later.
    w.faults.always("remove_pass", Fault::Fail);
    let e = w
        .service
        .unbind(&me, &key("u1"), &r.binding, RemovalReason::UserUnbound)
        .await
        .unwrap_err();
    assert!(matches!(e, BindingError::RetryLater { .. }));
    assert_eq!(w.binding(&r.binding).await.state, BindingState::Active);
    w.faults.clear();
    let removed = w
        .service
        .unbind(&me, &key("u1"), &r.binding, RemovalReason::UserUnbound)
        .await
        .unwrap();
    assert_eq!(removed.state, BindingState::Removed);
    assert_eq!(removed.removal, Some(RemovalReason::UserUnbound));
    assert_eq!(removed.consent.withdrawn_at, Some(w.clock.now()));
    assert!(w.passes().is_empty());
    let entries = w
        .audit
        .query(&AuditQuery::subject(format!("binding:{}", r.binding)))
        .await
        .unwrap();
    let unbind = entries
        .iter()
        .find(|e| {
            e.record.action == "binding.unbind" && e.record.outcome == AuditOutcome::Succeeded
        })
        .expect("unbinding is audited");
    assert_eq!(unbind.record.detail["platform_copy_deleted"], "true");
    // Retry answers the same; binding again creates a new binding.
    assert_eq!(
        w.service
            .unbind(&me, &key("u1"), &r.binding, RemovalReason::UserUnbound)
            .await
            .unwrap(),
        removed
    );
    let again = w.bind_own(&card, "li", "b2").await.unwrap();
    assert_ne!(again.binding, r.binding);
    assert_eq!(again.state, BindingState::Active);
}

#[tokio::test]
async fn a_platform_unbinds_only_for_a_closed_or_handed_over_account() {
    let w = World::new();
    let card = w.issue("li", None).await;
    let r = w.bind_own(&card, "li", "b1").await.unwrap();
    let alipay = Principal::Platform {
        platform: Platform::Alipay,
    };
    let wechat = Principal::Platform {
        platform: Platform::WechatPay,
    };
    assert!(matches!(
        w.service
            .unbind(
                &wechat,
                &key("u1"),
                &r.binding,
                RemovalReason::AccountClosed
            )
            .await,
        Err(BindingError::Denied { .. })
    ));
    assert!(matches!(
        w.service
            .unbind(&alipay, &key("u2"), &r.binding, RemovalReason::UserUnbound)
            .await,
        Err(BindingError::Denied { .. })
    ));
    let b = w
        .service
        .unbind(
            &alipay,
            &key("u3"),
            &r.binding,
            RemovalReason::AccountClosed,
        )
        .await
        .unwrap();
    assert_eq!(b.removal, Some(RemovalReason::AccountClosed));
    assert_eq!(
        w.wallet.inner().removals(),
        vec![(r.pass_serial.clone(), RemovalReason::AccountClosed)]
    );
    // A closed account may not bind again; an account handed to another person may.
    let e = w.bind_own(&card, "li", "b2").await.unwrap_err();
    assert!(matches!(e, BindingError::Denied { .. }), "{e:?}");
    let other = w.issue("wang", None).await;
    let r2 = w.bind_own(&other, "wang", "b3").await.unwrap();
    w.service
        .unbind(
            &alipay,
            &key("u4"),
            &r2.binding,
            RemovalReason::HandedToAnotherPerson,
        )
        .await
        .unwrap();
    assert_eq!(
        w.bind_own(&other, "wang", "b4").await.unwrap().state,
        BindingState::Active
    );
}

#[tokio::test]
async fn a_service_not_enabled_is_a_distinct_error_naming_it() {
    let w = World::new();
    let card = w.issue("li", Some([Service::Transit].into())).await;
    let me = Principal::cardholder(card.holder.clone());
    let r = w.bind_own(&card, "li", "b1").await.unwrap();
    assert_eq!(r.services, [Service::Transit].into());
    w.service
        .ensure_service(&me, &r.binding, &Service::Transit)
        .await
        .unwrap();
    let e = w
        .service
        .ensure_service(&me, &r.binding, &Service::Healthcare)
        .await
        .unwrap_err();
    assert_eq!(
        e,
        BindingError::ServiceNotEnabled {
            service: Service::Healthcare
        }
    );
    assert!(e.to_string().contains("healthcare"));
    assert_eq!(
        w.service.capabilities(&me, &r.binding).await.unwrap(),
        [Service::Transit].into()
    );
    // The binding's platform may check too; another platform may not.
    let alipay = Principal::Platform {
        platform: Platform::Alipay,
    };
    w.service
        .ensure_service(&alipay, &r.binding, &Service::Transit)
        .await
        .unwrap();
    let wechat = Principal::Platform {
        platform: Platform::WechatPay,
    };
    assert!(matches!(
        w.service.capabilities(&wechat, &r.binding).await,
        Err(BindingError::Denied { .. })
    ));
}

#[tokio::test]
async fn the_wallet_view_shows_an_as_of_time_and_refresh_pulls_the_balance() {
    let w = World::new();
    let card = w.issue("li", None).await;
    let me = Principal::cardholder(card.holder.clone());
    let r = w.bind_own(&card, "li", "b1").await.unwrap();
    assert_eq!(
        w.service
            .wallet_view(&me, &r.binding)
            .await
            .unwrap()
            .balance,
        None
    );
    w.funds
        .set_balance(&card.wallet_account, Money::from_fen(4_800));
    let t1 = w.clock.now();
    let pushed = w
        .service
        .push_balance(
            &Principal::System,
            &card.id,
            BalanceView {
                balance: Money::from_fen(4_800),
                as_of: t1,
            },
        )
        .await
        .unwrap();
    assert!(pushed.is_empty());
    let view = w.service.wallet_view(&me, &r.binding).await.unwrap();
    assert_eq!(
        view.balance,
        Some(BalanceView {
            balance: Money::from_fen(4_800),
            as_of: t1
        })
    );
    // A ride happened and the push was lost; refresh pulls the authoritative balance.
    w.funds
        .set_balance(&card.wallet_account, Money::from_fen(4_400));
    w.clock.advance(Duration::minutes(5));
    let fresh = w.service.refresh_balance(&me, &r.binding).await.unwrap();
    assert_eq!(fresh.balance, Money::from_fen(4_400));
    assert_eq!(fresh.as_of, t1 + Duration::minutes(5));
    assert_eq!(
        w.service
            .wallet_view(&me, &r.binding)
            .await
            .unwrap()
            .balance,
        Some(fresh)
    );
    assert!(matches!(
        w.service.push_balance(&me, &card.id, fresh).await,
        Err(BindingError::Denied { .. })
    ));
}

#[tokio::test]
async fn no_id_number_reaches_the_audit_log_or_debug_output() {
    let w = World::new();
    let card = w.issue("li", None).await;
    w.bind_own(&card, "li", "b1").await.unwrap();
    let mut bad = w.request(&card, "li", &account("pac-li"));
    bad.id_number = id_number_of("nobody");
    let _ = w
        .service
        .bind(
            &Principal::cardholder(card.holder.clone()),
            &key("b2"),
            &bad,
        )
        .await;
    let audit = serde_json::to_string(
        &w.audit
            .query(&AuditQuery::all())
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.record)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    for name in ["li", "nobody"] {
        let id = id_number_of(name);
        assert!(!audit.contains(id.expose().as_str()));
        assert!(!format!("{bad:?}").contains(id.expose().as_str()) || name == "li");
    }
    assert!(!format!("{bad:?}").contains(id_number_of("nobody").expose().as_str()));
    let stored = serde_json::to_string(&w.cards.get(&card.id).await.unwrap()).unwrap();
    assert!(!stored.contains(id_number_of("li").expose().as_str()));
}

#[tokio::test]
async fn replacement_and_cancellation_are_sagas_a_retry_finishes() {
    let w = World::new();
    let card = w.issue("li", None).await;
    w.funds
        .set_balance(&card.wallet_account, Money::from_fen(3_000));
    let r = w.bind_own(&card, "li", "b1").await.unwrap();
    let request = ReplaceCard {
        new_number: "3301555566667777".into(),
        new_wallet_account: WalletAccountRef::parse("wac-new").unwrap(),
    };
    // The ledger is down: nothing changes, the caller retries with the same key.
    w.faults.next("move_balance", Fault::Fail);
    let e = w
        .service
        .replace_card(&w.operator, &key("rep"), &card.id, &request)
        .await
        .unwrap_err();
    assert!(matches!(e, BindingError::RetryLater { .. }), "{e:?}");
    assert_eq!(
        w.cards.get(&card.id).await.unwrap().unwrap().status,
        CardStatus::Active
    );
    // The move took effect but its answer was lost: the retry replays it, money moves once.
    w.faults.next("move_balance", Fault::UnknownOutcome);
    assert!(
        w.service
            .replace_card(&w.operator, &key("rep"), &card.id, &request)
            .await
            .is_err()
    );
    let change = w
        .service
        .replace_card(&w.operator, &key("rep"), &card.id, &request)
        .await
        .unwrap();
    assert_eq!(change.funds_moved, Some(Money::from_fen(3_000)));
    assert_eq!(
        w.funds.balance_of(&request.new_wallet_account),
        Money::from_fen(3_000)
    );
    let new_card = change.new_card.unwrap();
    assert_eq!(w.binding(&r.binding).await.card, new_card.id);

    // Cancelling the new card: the refund fails once, the card stays active, the retry finishes.
    w.faults.next("refund_balance", Fault::Timeout);
    assert!(
        w.service
            .cancel_card(&w.operator, &key("can"), &new_card.id)
            .await
            .is_err()
    );
    assert_eq!(
        w.cards.get(&new_card.id).await.unwrap().unwrap().status,
        CardStatus::Active
    );
    let done = w
        .service
        .cancel_card(&w.operator, &key("can"), &new_card.id)
        .await
        .unwrap();
    assert_eq!(done.card.status, CardStatus::Cancelled);
    assert_eq!(
        w.funds.refunded(&request.new_wallet_account),
        Money::from_fen(3_000)
    );
    assert_eq!(w.binding(&r.binding).await.state, BindingState::Removed);
    assert!(w.passes().is_empty());
    // Reconciling a card is the issuer's, and is harmless when all is in order.
    let me = Principal::cardholder(card.holder.clone());
    assert!(matches!(
        w.service.reconcile_card(&me, &new_card.id).await,
        Err(BindingError::Denied { .. })
    ));
    let again = w
        .service
        .reconcile_card(&w.operator, &new_card.id)
        .await
        .unwrap();
    assert!(again.bindings_changed.is_empty() && again.passes_unsynced.is_empty());
}

#[tokio::test]
async fn consent_must_name_purpose_data_version_and_channel() {
    let w = World::new();
    let card = w.issue("li", None).await;
    let me = Principal::cardholder(card.holder.clone());
    let base = w.request(&card, "li", &account("pac-li"));
    let mut no_purpose = base.clone();
    no_purpose.consent.purpose = " ".into();
    let mut no_data = base.clone();
    no_data.consent.data_categories.clear();
    let mut no_version = base.clone();
    no_version.consent.text_version.clear();
    for (i, r) in [no_purpose, no_data, no_version].iter().enumerate() {
        let e = w
            .service
            .bind(&me, &key(&format!("c{i}")), r)
            .await
            .unwrap_err();
        assert!(matches!(e, BindingError::ConsentIncomplete { .. }), "{e:?}");
        assert_eq!(e.class(), ErrorClass::InvalidInput);
    }
    assert!(w.bindings.by_card(&card.id).await.unwrap().is_empty());
    assert!(w.passes().is_empty());
}

#[tokio::test]
async fn a_binding_left_pending_on_a_replaced_card_is_superseded_by_a_newer_one() {
    let w = World::new();
    let card = w.issue("li", None).await;
    for op in ["add_pass", "pass", "remove_pass"] {
        w.faults.always(op, Fault::Fail);
    }
    let Err(BindingError::Processing { binding: stale }) = w.bind_own(&card, "li", "b1").await
    else {
        panic!("expected processing");
    };
    w.faults.clear();
    let change = w
        .service
        .replace_card(
            &w.operator,
            &key("rep"),
            &card.id,
            &ReplaceCard {
                new_number: "3301555566667777".into(),
                new_wallet_account: WalletAccountRef::parse("wac-new").unwrap(),
            },
        )
        .await
        .unwrap();
    let new_card = change.new_card.unwrap();
    let fresh = w.bind_own(&new_card, "li", "b2").await.unwrap();
    assert_eq!(
        w.service
            .settle_pending(&Principal::System, 10)
            .await
            .unwrap(),
        1
    );
    let old = w.binding(&stale).await;
    assert_eq!(old.state, BindingState::Removed);
    assert_eq!(old.removal, Some(RemovalReason::CardReplaced));
    let passes = w.passes();
    assert_eq!(passes.len(), 1);
    assert_eq!(passes[0].serial, fresh.pass_serial);
    // The first caller's retry learns which binding is live.
    assert_eq!(
        w.bind_own(&card, "li", "b1").await.unwrap_err(),
        BindingError::CardNotActive {
            status: "replaced".into()
        }
    );
}

#[tokio::test]
async fn an_account_lists_its_bindings_and_a_person_their_cards() {
    let w = World::new();
    let card = w.issue("li", None).await;
    let r = w.bind_own(&card, "li", "b1").await.unwrap();
    let me = Principal::cardholder(card.holder.clone());
    let listed = w
        .service
        .bindings_of_account(&me, &Platform::Alipay, &account("pac-li"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, r.binding);
    assert_eq!(
        w.service.cards_of(&me, &card.holder).await.unwrap(),
        vec![w.cards.get(&card.id).await.unwrap().unwrap()]
    );
    let (wang, _) = w.citizen("wang");
    let stranger = Principal::cardholder(wang);
    assert!(matches!(
        w.service
            .bindings_of_account(&stranger, &Platform::Alipay, &account("pac-li"))
            .await,
        Err(BindingError::Denied { .. })
    ));
    assert!(matches!(
        w.service.cards_of(&stranger, &card.holder).await,
        Err(BindingError::Denied { .. })
    ));
}

#[tokio::test]
async fn binding_and_issue_fingerprints_are_keyed_and_retries_still_replay() {
    #[derive(serde::Serialize)]
    struct PlainBind<'a> {
        principal: &'a Principal,
        platform: &'a Platform,
        account: &'a PlatformAccountId,
        card_number: &'a str,
        id_index: &'a BlindIndex,
        consent: &'a ConsentInput,
    }
    let w = World::new();
    let card = w.issue("li", None).await;
    let holder = Principal::cardholder(card.holder.clone());
    let acct = account("pac-li");
    let request = w.request(&card, "li", &acct);
    let first = w
        .service
        .bind(&holder, &key("fp-1"), &request)
        .await
        .unwrap();
    let stored = w
        .idempotency
        .get(
            &citycard_core::principal_scope("binding.bind", &holder),
            &key("fp-1"),
        )
        .await
        .unwrap()
        .expect("the binding is recorded under its key");
    // With the database alone (the ID-number index is stored with the card),
    // the card number is the only unknown: a plain hash would give it back.
    let id_index = w.index.index_of(&request.id_number);
    let plain = Fingerprint::of(&PlainBind {
        principal: &holder,
        platform: &request.platform,
        account: &request.account,
        card_number: card.number.as_str(),
        id_index: &id_index,
        consent: &request.consent,
    })
    .unwrap();
    assert_ne!(stored.fingerprint, plain);
    // A retry replays the first receipt; another card number under the key is refused.
    let again = w
        .service
        .bind(&holder, &key("fp-1"), &request)
        .await
        .unwrap();
    assert_eq!(again.binding, first.binding);
    let other = w.issue("zhao", None).await;
    let mut changed = request.clone();
    changed.card_number = other.number.as_str().to_owned();
    assert!(
        w.service
            .bind(&holder, &key("fp-1"), &changed)
            .await
            .is_err()
    );

    // Issuing: the fingerprint holds no plain hash of the card number either.
    let issued = w
        .idempotency
        .get(
            &citycard_core::principal_scope("card.issue", &w.operator),
            &key("issue-1"),
        )
        .await
        .unwrap()
        .expect("the issue is recorded under its key");
    let holder_index = w.index.index_of(&id_number_of("li"));
    let services = CardRules::embedded().default_services;
    let platforms = CardRules::embedded().default_platforms;
    let wallet = WalletAccountRef::parse("wac-1").unwrap();
    let plain_issue = Fingerprint::of(&(
        card.number.as_str(),
        "standard",
        &card.holder,
        &holder_index,
        &wallet,
        &services,
        &platforms,
    ))
    .unwrap();
    assert_ne!(issued.fingerprint, plain_issue);
}

#[tokio::test]
async fn requests_print_card_numbers_masked() {
    let w = World::new();
    let card = w.issue("li", None).await;
    let number = card.number.as_str().to_owned();
    let middle = &number[3..number.len() - 4];
    let bind = w.request(&card, "li", &account("pac-li"));
    let issue = IssueCard {
        number: number.clone(),
        kind: "standard".into(),
        holder: card.holder.clone(),
        id_number: id_number_of("li"),
        wallet_account: WalletAccountRef::parse("wac-9").unwrap(),
        services: None,
        platforms: None,
    };
    let replace = ReplaceCard {
        new_number: number.clone(),
        new_wallet_account: WalletAccountRef::parse("wac-9").unwrap(),
    };
    for shown in [
        format!("{bind:?}"),
        format!("{issue:?}"),
        format!("{replace:?}"),
        format!("{:?}", card.number),
        card.number.to_string(),
    ] {
        assert!(!shown.contains(middle), "{shown} shows the card number");
        assert!(shown.contains(&mask_card_number(&number)), "{shown}");
    }
}
