//! The conformance suite of the card service's one write,
//! [`CardChangeStore`](citycard_binding::CardChangeStore): a change set and
//! its core records commit together or not at all.

use citycard_core::{IdempotencyKey, Principal};

use crate::binding::fixture_time;

/// The stores a [`card_change_store_conformance`] factory hands over: the
/// commit port and the read ports of the same backend.
pub struct CardRegistryUnderTest {
    /// The one write.
    pub changes: std::sync::Arc<dyn citycard_binding::CardChangeStore>,
    /// Cards.
    pub cards: std::sync::Arc<dyn citycard_binding::CardStore>,
    /// Bindings and mismatches.
    pub bindings: std::sync::Arc<dyn citycard_binding::BindingStore>,
    /// Delegations.
    pub delegations: std::sync::Arc<dyn citycard_binding::DelegationStore>,
    /// The audit log commits write to.
    pub audit: std::sync::Arc<dyn citycard_core::AuditLog>,
    /// The idempotency store commits write outcomes to.
    pub idempotency: std::sync::Arc<dyn citycard_core::IdempotencyStore>,
}

/// An audit record for commit fixtures.
pub fn sample_audit(subject: &str) -> citycard_core::AuditRecord {
    citycard_core::AuditRecord::new(
        fixture_time(2),
        Principal::System,
        "binding.test",
        subject,
        citycard_core::AuditOutcome::Succeeded,
    )
}

/// An idempotency outcome for commit fixtures.
pub fn sample_outcome(key: &str) -> citycard_core::KeyOutcome {
    citycard_core::KeyOutcome::new(
        "binding.test",
        IdempotencyKey::parse(key).unwrap_or_else(|_| unreachable!()),
        citycard_core::Fingerprint::of_bytes(key.as_bytes()),
        &key,
        fixture_time(2),
    )
    .unwrap_or_else(|_| unreachable!())
}

/// The conformance suite for [`CardChangeStore`](citycard_binding::CardChangeStore):
/// a change set and its core records commit together or not at all.
///
/// `$factory` is an async fn returning a [`CardRegistryUnderTest`].
#[macro_export]
macro_rules! card_change_store_conformance {
    ($factory:ident) => {
        $crate::card_change_store_conformance!(@suite $factory, $crate::backend_available);
    };
    ($factory:ident, available = $available:ident) => {
        $crate::card_change_store_conformance!(@suite $factory, super::$available);
    };
    (@suite $factory:ident, $available:path) => {
        #[allow(clippy::unwrap_used)]
        mod card_change_store_conformance {
            use $crate::__private::citycard_binding::{BindingState, CardChanges, CardStatus};
            use $crate::__private::citycard_core::{AuditQuery, CoreChanges, Platform, StoreError};
            use $crate::binding::{
                fixture_time, sample_audit, sample_binding, sample_card, sample_delegation,
                sample_outcome,
            };

            fn core(subject: &str, key: &str) -> CoreChanges {
                CoreChanges {
                    audit: vec![sample_audit(subject)],
                    outcomes: vec![sample_outcome(key)],
                    events: Vec::new(),
                }
            }

            async fn audited(s: &$crate::binding::CardRegistryUnderTest, subject: &str) -> usize {
                s.audit
                    .query(&AuditQuery::subject(subject))
                    .await
                    .unwrap()
                    .len()
            }

            async fn stored(s: &$crate::binding::CardRegistryUnderTest, key: &str) -> bool {
                s.idempotency
                    .get("binding.test", &key.parse().unwrap())
                    .await
                    .unwrap()
                    .is_some()
            }

            #[tokio::test]
            async fn rows_commit_with_their_audit_and_outcome() {
                if !$available() {
                    return;
                }
                let s = super::$factory().await;
                let card = sample_card(1, "psn-a");
                let b = sample_binding(
                    "bnd-1",
                    &card.id,
                    Platform::Alipay,
                    "pac-1",
                    BindingState::Pending,
                );
                let g = sample_delegation("dlg-1", "psn-a", "psn-b");
                let mut c = CardChanges::new();
                c.insert_card(card.clone())
                    .insert_binding(b.clone())
                    .insert_delegation(g.clone())
                    .record_mismatch(Platform::Alipay, b.account.clone(), fixture_time(3));
                s.changes.commit(&c, &core("card:1", "k-1")).await.unwrap();
                assert_eq!(s.cards.get(&card.id).await.unwrap(), Some(card.clone()));
                assert_eq!(s.bindings.get(&b.id).await.unwrap(), Some(b.clone()));
                assert_eq!(s.delegations.get(&g.id).await.unwrap(), Some(g.clone()));
                assert_eq!(
                    s.bindings
                        .mismatches_since(&Platform::Alipay, &b.account, fixture_time(0))
                        .await
                        .unwrap(),
                    vec![fixture_time(3)]
                );
                assert_eq!(audited(&s, "card:1").await, 1);
                assert!(stored(&s, "k-1").await);

                // Changes are compare-and-swap and bump the version by one.
                let mut lost = card.clone();
                lost.status = CardStatus::ReportedLost;
                let mut active = b.clone();
                active.state = BindingState::Active;
                let mut c = CardChanges::new();
                c.update_card(lost)
                    .revoke_delegation(g.id.clone(), fixture_time(4));
                c.move_binding(&b, active).unwrap();
                s.changes.commit(&c, &core("card:1", "k-2")).await.unwrap();
                let card2 = s.cards.get(&card.id).await.unwrap().unwrap();
                assert_eq!((card2.version, card2.status), (1, CardStatus::ReportedLost));
                let b2 = s.bindings.get(&b.id).await.unwrap().unwrap();
                assert_eq!((b2.version, b2.state), (1, BindingState::Active));
                assert!(s.bindings.pending(10).await.unwrap().is_empty());
                let g2 = s.delegations.get(&g.id).await.unwrap().unwrap();
                assert_eq!(g2.revoked_at, Some(fixture_time(4)));
                // A later revocation keeps the first instant.
                let mut c = CardChanges::new();
                c.revoke_delegation(g.id.clone(), fixture_time(9));
                s.changes.commit(&c, &CoreChanges::default()).await.unwrap();
                assert_eq!(
                    s.delegations.get(&g.id).await.unwrap().unwrap().revoked_at,
                    Some(fixture_time(4))
                );
            }

            #[tokio::test]
            async fn a_stale_precondition_writes_nothing() {
                if !$available() {
                    return;
                }
                let s = super::$factory().await;
                let card = sample_card(1, "psn-a");
                let b = sample_binding(
                    "bnd-1",
                    &card.id,
                    Platform::Alipay,
                    "pac-1",
                    BindingState::Active,
                );
                let mut c = CardChanges::new();
                c.insert_card(card.clone()).insert_binding(b.clone());
                s.changes.commit(&c, &CoreChanges::default()).await.unwrap();
                let mut lost = card.clone();
                lost.status = CardStatus::ReportedLost;
                let mut c = CardChanges::new();
                c.update_card(lost.clone());
                s.changes.commit(&c, &CoreChanges::default()).await.unwrap();

                // Each refused commit carries rows, an audit record and an outcome:
                // none of them may land.
                let fresh = sample_card(2, "psn-b");
                let other = sample_binding(
                    "bnd-2",
                    &fresh.id,
                    Platform::Alipay,
                    "pac-2",
                    BindingState::Pending,
                );
                let refused: Vec<(&str, CardChanges)> = vec![
                    ("stale card", {
                        let mut c = CardChanges::new();
                        c.insert_card(fresh.clone()).update_card(lost.clone());
                        c
                    }),
                    ("expected card moved on", {
                        let mut c = CardChanges::new();
                        c.insert_card(fresh.clone()).expect_card(&card);
                        c
                    }),
                    ("expected binding moved on", {
                        let mut c = CardChanges::new();
                        let mut moved = b.clone();
                        moved.version = 7;
                        c.insert_card(fresh.clone()).expect_binding(&moved);
                        c
                    }),
                    ("a second live binding", {
                        let mut c = CardChanges::new();
                        let twin = sample_binding(
                            "bnd-3",
                            &card.id,
                            Platform::Alipay,
                            "pac-1",
                            BindingState::Pending,
                        );
                        c.insert_card(fresh.clone()).insert_binding(twin);
                        c
                    }),
                    ("a taken card number", {
                        let mut clash = fresh.clone();
                        clash.number = card.number.clone();
                        let mut c = CardChanges::new();
                        c.insert_binding(other.clone()).insert_card(clash);
                        c
                    }),
                    ("a missing grant", {
                        let mut c = CardChanges::new();
                        c.insert_card(fresh.clone())
                            .revoke_delegation("dlg-none".parse().unwrap(), fixture_time(5));
                        c
                    }),
                ];
                for (n, (what, c)) in refused.into_iter().enumerate() {
                    let key = format!("k-{n}");
                    let r = s.changes.commit(&c, &core("card:2", &key)).await;
                    assert!(matches!(r, Err(StoreError::Conflict(_))), "{what}: {r:?}");
                    assert_eq!(s.cards.get(&fresh.id).await.unwrap(), None, "{what}");
                    assert_eq!(s.bindings.get(&other.id).await.unwrap(), None, "{what}");
                    assert_eq!(audited(&s, "card:2").await, 0, "{what}");
                    assert!(!stored(&s, &key).await, "{what}");
                }
                assert_eq!(s.cards.get(&card.id).await.unwrap().unwrap().version, 1);
            }

            #[tokio::test]
            async fn a_key_with_an_outcome_refuses_the_whole_commit() {
                if !$available() {
                    return;
                }
                let s = super::$factory().await;
                let first = sample_card(1, "psn-a");
                let mut c = CardChanges::new();
                c.insert_card(first);
                s.changes.commit(&c, &core("card:1", "k-1")).await.unwrap();
                let second = sample_card(2, "psn-a");
                let mut c = CardChanges::new();
                c.insert_card(second.clone());
                assert!(matches!(
                    s.changes.commit(&c, &core("card:1", "k-1")).await,
                    Err(StoreError::Conflict(_))
                ));
                assert_eq!(s.cards.get(&second.id).await.unwrap(), None);
                assert_eq!(audited(&s, "card:1").await, 1);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_commits_for_one_card_and_account_admit_one_with_its_records() {
                let s = super::$factory().await;
                let card = sample_card(1, "psn-a");
                let mut c = CardChanges::new();
                c.insert_card(card.clone());
                s.changes.commit(&c, &CoreChanges::default()).await.unwrap();
                let mut tasks = Vec::new();
                for i in 0..16 {
                    let changes = s.changes.clone();
                    let card = card.clone();
                    tasks.push($crate::__private::tokio::spawn(async move {
                        let b = sample_binding(
                            &format!("bnd-{i}"),
                            &card.id,
                            Platform::Alipay,
                            "pac-1",
                            BindingState::Pending,
                        );
                        let mut c = CardChanges::new();
                        c.insert_binding(b).expect_card(&card);
                        changes.commit(&c, &core("card:1", &format!("k-{i}"))).await
                    }));
                }
                let mut won = Vec::new();
                for (i, t) in tasks.into_iter().enumerate() {
                    match t.await.unwrap() {
                        Ok(()) => won.push(i),
                        Err(StoreError::Conflict(_)) => {}
                        Err(other) => panic!("unexpected {other:?}"),
                    }
                }
                assert_eq!(won.len(), 1);
                assert_eq!(s.bindings.by_card(&card.id).await.unwrap().len(), 1);
                assert_eq!(
                    audited(&s, "card:1").await,
                    1,
                    "only the winner's audit record"
                );
                for i in 0..16 {
                    assert_eq!(stored(&s, &format!("k-{i}")).await, won == [i]);
                }
            }

            #[tokio::test]
            async fn a_binding_leaving_the_live_set_frees_its_slot_in_the_same_commit() {
                if !$available() {
                    return;
                }
                let s = super::$factory().await;
                let card = sample_card(1, "psn-a");
                let old = sample_binding(
                    "bnd-1",
                    &card.id,
                    Platform::Alipay,
                    "pac-1",
                    BindingState::Active,
                );
                let mut c = CardChanges::new();
                c.insert_card(card.clone()).insert_binding(old.clone());
                s.changes.commit(&c, &CoreChanges::default()).await.unwrap();
                let mut removed = old.clone();
                removed.state = BindingState::Removed;
                let new = sample_binding(
                    "bnd-2",
                    &card.id,
                    Platform::Alipay,
                    "pac-1",
                    BindingState::Pending,
                );
                let mut c = CardChanges::new();
                c.move_binding(&old, removed).unwrap();
                c.insert_binding(new.clone()).expect_card(&card);
                s.changes.commit(&c, &CoreChanges::default()).await.unwrap();
                let live = s
                    .bindings
                    .live_for(&card.id, &Platform::Alipay, &new.account)
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(live.id, new.id);
            }
        }
    };
}
