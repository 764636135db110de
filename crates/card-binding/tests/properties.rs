//! Invariants of the binding flow, checked with proptest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use citycard_binding::*;
use citycard_core::*;
use citycard_testkit::Fault;
use citycard_testkit::binding::fault;
use common::*;
use proptest::prelude::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every binding of every card in `cards`.
async fn all_bindings(w: &World, cards: &[CardId]) -> Vec<Binding> {
    let mut out: Vec<Binding> = Vec::new();
    for c in cards {
        for b in w.bindings.by_card(c).await.unwrap() {
            if !out.iter().any(|o| o.id == b.id) {
                out.push(b);
            }
        }
    }
    out
}

/// No active binding on an inactive card; passes mirror settled bindings exactly.
async fn check_consistent(w: &World, cards: &[CardId]) -> Result<(), TestCaseError> {
    let bindings = all_bindings(w, cards).await;
    let passes = w.passes();
    let mut expected_passes = 0;
    for b in &bindings {
        let card = w.cards.get(&b.card).await.unwrap().unwrap();
        let pass = passes.iter().find(|p| p.serial == b.pass_serial);
        match b.state {
            BindingState::Active => {
                prop_assert!(
                    card.status.is_active(),
                    "active binding {} on a {} card",
                    b.id,
                    card.status.code()
                );
                prop_assert_eq!(pass.map(|p| p.status), Some(PassStatus::Active));
                expected_passes += 1;
            }
            BindingState::Suspended => {
                prop_assert!(!card.status.is_active());
                prop_assert_eq!(pass.map(|p| p.status), Some(PassStatus::Suspended));
                expected_passes += 1;
            }
            BindingState::Removed => {
                prop_assert!(pass.is_none(), "removed binding {} kept a pass", b.id);
                prop_assert!(b.consent.withdrawn_at.is_some());
            }
            BindingState::Pending => prop_assert!(false, "no faults, yet {} is pending", b.id),
        }
    }
    prop_assert_eq!(passes.len(), expected_passes, "orphan passes");
    Ok(())
}

#[derive(Debug, Clone)]
enum Step {
    Bind { account: u8, wechat: bool },
    Unbind { account: u8 },
    Lost,
    Found,
    Freeze,
    Unfreeze,
    Replace,
    Cancel,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..3, any::<bool>()).prop_map(|(account, wechat)| Step::Bind { account, wechat }),
        2 => (0u8..3).prop_map(|account| Step::Unbind { account }),
        1 => Just(Step::Lost),
        1 => Just(Step::Found),
        1 => Just(Step::Freeze),
        1 => Just(Step::Unfreeze),
        1 => Just(Step::Replace),
        1 => Just(Step::Cancel),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Concurrent binds of one card on one account: exactly one active binding, and every
    /// successful answer names it.
    #[test]
    fn concurrent_binds_leave_exactly_one_active_binding(n in 2usize..8, same_key in any::<bool>()) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let w = World::new();
            let card = w.issue("li", None).await;
            let request = w.request(&card, "li", &account("pac-li"));
            let me = Principal::cardholder(card.holder.clone());
            let mut tasks = Vec::new();
            for i in 0..n {
                let service = Arc::clone(&w.service);
                let request = request.clone();
                let me = me.clone();
                let k = if same_key { key("k") } else { key(&format!("k{i}")) };
                tasks.push(tokio::spawn(async move { service.bind(&me, &k, &request).await }));
            }
            let mut ok_ids = Vec::new();
            for t in tasks {
                match t.await.unwrap() {
                    Ok(r) => ok_ids.push(r.binding),
                    Err(BindingError::AlreadyBound { binding }) => ok_ids.push(binding),
                    Err(BindingError::Processing { .. })
                    | Err(BindingError::Idempotency(IdempotencyError::InProgress { .. })) => {}
                    Err(other) => prop_assert!(false, "unexpected answer {other:?}"),
                }
            }
            let live: Vec<_> = w.bindings.by_card(&card.id).await.unwrap()
                .into_iter().filter(|b| b.state.is_live()).collect();
            prop_assert_eq!(live.len(), 1);
            prop_assert_eq!(live[0].state, BindingState::Active);
            prop_assert!(!ok_ids.is_empty());
            prop_assert!(ok_ids.iter().all(|id| *id == live[0].id));
            prop_assert_eq!(w.passes().len(), 1);
            Ok::<(), TestCaseError>(())
        })?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random card events and binding calls never leave an active binding on a card that is
    /// not active, and the wallet always mirrors the bindings (no orphan pass).
    #[test]
    fn events_and_binds_never_leave_an_active_binding_on_an_inactive_card(
        steps in prop::collection::vec(step(), 1..24)
    ) {
        runtime().block_on(async {
            let w = World::new();
            let mut card = w.issue("li", None).await;
            let me = Principal::cardholder(card.holder.clone());
            for i in 0..3 {
                let a = account(&format!("pac-li{i}"));
                w.real_names.inner().verify_account(&Platform::Alipay, &a, &card.holder);
                w.real_names.inner().verify_account(&Platform::WechatPay, &a, &card.holder);
            }
            let mut cards = vec![card.id.clone()];
            for (i, s) in steps.iter().enumerate() {
                let k = key(&format!("s{i}"));
                match s {
                    Step::Bind { account: a, wechat } => {
                        let mut r = w.request(&card, "li", &account(&format!("pac-li{a}")));
                        if *wechat { r.platform = Platform::WechatPay; }
                        let _ = w.service.bind(&me, &k, &r).await;
                    }
                    Step::Unbind { account: a } => {
                        let live = w.bindings.by_account(&Platform::Alipay, &account(&format!("pac-li{a}")))
                            .await.unwrap().into_iter().find(|b| b.state.is_live());
                        if let Some(b) = live {
                            w.service.unbind(&me, &k, &b.id, RemovalReason::UserUnbound).await.unwrap();
                        }
                    }
                    Step::Lost => { let _ = w.service.report_lost(&me, &k, &card.id).await; }
                    Step::Found => { let _ = w.service.report_found(&me, &k, &card.id).await; }
                    Step::Freeze => { let _ = w.service.freeze(&w.operator, &k, &card.id).await; }
                    Step::Unfreeze => { let _ = w.service.unfreeze(&w.operator, &k, &card.id).await; }
                    Step::Replace => {
                        let r = ReplaceCard {
                            new_number: format!("3302{i:012}"),
                            new_wallet_account: WalletAccountRef::parse(&format!("wac-r{i}")).unwrap(),
                        };
                        if let Ok(change) = w.service.replace_card(&w.operator, &k, &card.id, &r).await {
                            let new_card = change.new_card.unwrap();
                            cards.push(new_card.id.clone());
                            card = new_card;
                        }
                    }
                    Step::Cancel => { let _ = w.service.cancel_card(&w.operator, &k, &card.id).await; }
                }
                check_consistent(&w, &cards).await?;
                card = w.cards.get(&card.id).await.unwrap().unwrap();
            }
            Ok::<(), TestCaseError>(())
        })?;
    }

    /// Every retried call returns its first settled answer, whatever happened in between.
    #[test]
    fn retried_calls_return_their_first_answer(
        calls in prop::collection::vec((0usize..8, prop::option::of(0u8..2)), 1..30)
    ) {
        runtime().block_on(async {
            let w = World::new();
            let card = w.issue("li", None).await;
            let other = w.issue("wang", None).await;
            let me = Principal::cardholder(card.holder.clone());
            for i in 0..4 {
                w.real_names.inner().verify_account(&Platform::Alipay, &account(&format!("pac-li{i}")), &card.holder);
            }
            // Key i always carries the same request: right details, wrong ID, or someone else's card.
            let request_for = |i: usize| {
                let mut r = w.request(&card, "li", &account(&format!("pac-li{}", i % 4)));
                match i % 3 {
                    1 => r.id_number = id_number_of("nobody"),
                    2 if i >= 4 => r.card_number = other.number.as_str().to_owned(),
                    _ => {}
                }
                r
            };
            let mut first: HashMap<usize, Result<BindingReceipt, BindingError>> = HashMap::new();
            for (k, event) in calls {
                match event {
                    Some(0) => { let _ = w.service.report_lost(&me, &key(&format!("e{}", w.clock.now().timestamp_micros())), &card.id).await; }
                    Some(_) => { let _ = w.service.report_found(&me, &key(&format!("f{}", w.clock.now().timestamp_micros())), &card.id).await; }
                    None => {}
                }
                w.clock.advance(chrono::Duration::seconds(1));
                let answer = w.service.bind(&me, &key(&format!("k{k}")), &request_for(k)).await;
                let settled = !matches!(
                    answer,
                    Err(BindingError::TooManyAttempts { .. }) | Err(BindingError::Processing { .. }) | Err(BindingError::RetryLater { .. })
                );
                match first.get(&k) {
                    Some(previous) => prop_assert_eq!(previous, &answer, "key k{} answered differently", k),
                    None if settled => { first.insert(k, answer); }
                    None => {}
                }
            }
            Ok::<(), TestCaseError>(())
        })?;
    }

    /// A failure injected at any step leaves a complete binding or nothing: no orphan pass and
    /// no consent without a binding; "processing" settles to one of the two once faults clear.
    #[test]
    fn a_failure_at_any_step_leaves_a_complete_binding_or_nothing(
        op in prop::sample::select(vec![
            "account_holder", "id_number_is", "guardian_required", "verify",
            "add_pass", "pass", "remove_pass", "*",
        ]),
        injected in fault(),
        skip in 0usize..3,
        always in any::<bool>(),
    ) {
        runtime().block_on(async {
            let w = World::new();
            let card = w.issue("li", None).await;
            for _ in 0..skip { w.faults.next(op, Fault::None); }
            if always { w.faults.always(op, injected); } else { w.faults.next(op, injected); }
            let answer = w.bind_own(&card, "li", "b1").await;
            let bindings = w.bindings.by_card(&card.id).await.unwrap();
            let passes = w.passes();
            match &answer {
                Ok(r) => {
                    prop_assert_eq!(r.state, BindingState::Active);
                    prop_assert_eq!(bindings.iter().filter(|b| b.state == BindingState::Active).count(), 1);
                    prop_assert_eq!(passes.len(), 1);
                    prop_assert_eq!(&passes[0].serial, &r.pass_serial);
                }
                Err(BindingError::Processing { binding }) => {
                    let b = bindings.iter().find(|b| b.id == *binding).unwrap();
                    prop_assert_eq!(b.state, BindingState::Pending);
                }
                Err(e) => {
                    prop_assert!(bindings.iter().all(|b| b.state == BindingState::Removed), "{:?}", e);
                    prop_assert!(passes.is_empty(), "orphan pass after {:?}", e);
                }
            }
            w.faults.clear();
            w.service.settle_pending(&Principal::System, 10).await.unwrap();
            let bindings = w.bindings.by_card(&card.id).await.unwrap();
            let live: Vec<_> = bindings.iter().filter(|b| b.state.is_live()).collect();
            let passes = w.passes();
            prop_assert!(live.len() <= 1);
            if let Some(b) = live.first() {
                prop_assert_eq!(b.state, BindingState::Active);
                prop_assert_eq!(passes.len(), 1);
                prop_assert_eq!(&passes[0].serial, &b.pass_serial);
            } else {
                prop_assert!(passes.is_empty());
            }
            for b in bindings.iter().filter(|b| b.state == BindingState::Removed) {
                prop_assert!(b.consent.withdrawn_at.is_some());
            }
            // One consent record per binding record, and none without one.
            let consents = w.audit_actions().await.into_iter()
                .filter(|(a, _)| a == "binding.consent").count();
            prop_assert_eq!(consents, bindings.len());
            // A retry with the same key now ends with a complete binding.
            let r = w.bind_own(&card, "li", "b1").await.unwrap();
            prop_assert_eq!(r.state, BindingState::Active);
            prop_assert_eq!(w.passes().len(), 1);
            Ok::<(), TestCaseError>(())
        })?;
    }
}

proptest! {
    /// Any typed text is either a card number under the format or a clear error; never a panic,
    /// and a valid number never shows its middle digits.
    #[test]
    fn card_numbers_parse_or_fail_cleanly(
        text in citycard_testkit::strategies::id_like_text(),
        digits in citycard_testkit::binding::card_number_text(),
    ) {
        let format = citycard_testkit::binding::permissive_format();
        match CardNumber::parse(&text, &format) {
            Ok(n) => prop_assert!(n.as_str().chars().all(|c| c.is_ascii_digit())),
            Err(e) => prop_assert!(matches!(e, BindingError::InvalidCardNumber { .. }), "{:?}", e),
        }
        let n = CardNumber::parse(&digits, &format).unwrap();
        let shown = n.to_string();
        prop_assert_eq!(shown.chars().count(), digits.len());
        prop_assert_eq!(&shown[3..digits.len() - 4], "*".repeat(digits.len() - 7));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// With the wallet failing, timing out or losing answers during card events, binds and
    /// unbinds, the bindings themselves never go wrong, and once the wallet is back the
    /// settling job and a reconciliation leave the wallet mirroring the bindings exactly.
    #[test]
    fn wallet_faults_during_events_are_repaired_by_reconciliation(
        steps in prop::collection::vec((step(), prop::option::of(fault())), 1..20)
    ) {
        runtime().block_on(async {
            let w = World::new();
            let mut card = w.issue("li", None).await;
            let me = Principal::cardholder(card.holder.clone());
            for i in 0..3 {
                let a = account(&format!("pac-li{i}"));
                w.real_names.inner().verify_account(&Platform::Alipay, &a, &card.holder);
                w.real_names.inner().verify_account(&Platform::WechatPay, &a, &card.holder);
            }
            let mut cards = vec![card.id.clone()];
            for (i, (s, wallet_fault)) in steps.iter().enumerate() {
                w.faults.clear();
                if let Some(f) = wallet_fault {
                    for op in ["add_pass", "update_pass", "remove_pass", "pass"] {
                        w.faults.always(op, *f);
                    }
                }
                let k = key(&format!("s{i}"));
                match s {
                    Step::Bind { account: a, wechat } => {
                        let mut r = w.request(&card, "li", &account(&format!("pac-li{a}")));
                        if *wechat { r.platform = Platform::WechatPay; }
                        let _ = w.service.bind(&me, &k, &r).await;
                    }
                    Step::Unbind { account: a } => {
                        let live = w.bindings.by_account(&Platform::Alipay, &account(&format!("pac-li{a}")))
                            .await.unwrap().into_iter().find(|b| b.state.is_live());
                        if let Some(b) = live {
                            let _ = w.service.unbind(&me, &k, &b.id, RemovalReason::UserUnbound).await;
                        }
                    }
                    Step::Lost => { let _ = w.service.report_lost(&me, &k, &card.id).await; }
                    Step::Found => { let _ = w.service.report_found(&me, &k, &card.id).await; }
                    Step::Freeze => { let _ = w.service.freeze(&w.operator, &k, &card.id).await; }
                    Step::Unfreeze => { let _ = w.service.unfreeze(&w.operator, &k, &card.id).await; }
                    Step::Replace => {
                        let r = ReplaceCard {
                            new_number: format!("3302{i:012}"),
                            new_wallet_account: WalletAccountRef::parse(&format!("wac-r{i}")).unwrap(),
                        };
                        if let Ok(change) = w.service.replace_card(&w.operator, &k, &card.id, &r).await {
                            let new_card = change.new_card.unwrap();
                            cards.push(new_card.id.clone());
                            card = new_card;
                        }
                    }
                    Step::Cancel => { let _ = w.service.cancel_card(&w.operator, &k, &card.id).await; }
                }
                // Even while the wallet misbehaves, no active binding sits on an inactive card.
                for b in all_bindings(&w, &cards).await {
                    if b.state == BindingState::Active {
                        let c = w.cards.get(&b.card).await.unwrap().unwrap();
                        prop_assert!(c.status.is_active(), "active binding on a {} card", c.status.code());
                    }
                }
                card = w.cards.get(&card.id).await.unwrap().unwrap();
            }
            w.faults.clear();
            w.service.settle_pending(&Principal::System, 100).await.unwrap();
            for c in &cards {
                let change = w.service.reconcile_card(&w.operator, c).await.unwrap();
                prop_assert!(change.passes_unsynced.is_empty());
            }
            check_consistent(&w, &cards).await
        })?;
    }
}
