//! Family delegation: scoped, expiring, revocable grants checked on every operation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use citycard_binding::*;
use citycard_core::*;
use common::*;

fn delegate_principal(grant: &Delegation, scopes: Scopes) -> Principal {
    Principal::Delegate {
        delegate: grant.delegate.clone(),
        on_behalf_of: grant.cardholder.clone(),
        delegation: grant.id.clone(),
        scopes,
    }
}

async fn grant(
    w: &World,
    grantor: &PersonId,
    cardholder: &PersonId,
    delegate: &PersonId,
    relation: Relation,
    scopes: &[DelegationScope],
    k: &str,
) -> Result<Delegation, BindingError> {
    w.service
        .grant_delegation(
            &Principal::cardholder(grantor.clone()),
            &key(k),
            &GrantDelegation {
                cardholder: cardholder.clone(),
                delegate: delegate.clone(),
                relation,
                scopes: scopes.iter().copied().collect(),
                expires_at: w.clock.now() + Duration::days(90),
            },
        )
        .await
}

#[tokio::test]
async fn a_son_binds_his_mothers_card_under_a_grant_and_acts_only_within_it() {
    let w = World::new();
    let card = w.issue("grandma", None).await;
    let (son, _) = w.citizen("son");
    let g = grant(
        &w,
        &card.holder,
        &card.holder,
        &son,
        Relation::Family,
        &[DelegationScope::Bind, DelegationScope::ViewBalance],
        "g1",
    )
    .await
    .unwrap();
    assert_eq!(g.granted_by, card.holder);
    let acting = delegate_principal(&g, g.scopes);

    // Binding the card on grandma's own account, from the son's hands.
    let r = w
        .service
        .bind(
            &acting,
            &key("b1"),
            &w.request(&card, "grandma", &account("pac-grandma")),
        )
        .await
        .unwrap();
    assert_eq!(r.state, BindingState::Active);
    let b = w.binding(&r.binding).await;
    assert_eq!(b.consent.actor, acting);
    assert_eq!(b.holder, card.holder);
    assert_eq!(b.consent.guardian, None);
    w.service.wallet_view(&acting, &r.binding).await.unwrap();
    // A session narrowed to binding only may not view the balance, although the grant allows it.
    let narrowed = delegate_principal(&g, [DelegationScope::Bind].into_iter().collect());
    assert!(matches!(
        w.service.wallet_view(&narrowed, &r.binding).await,
        Err(BindingError::Denied { .. })
    ));

    // Unbinding is outside the grant: denied and audited.
    let e = w
        .service
        .unbind(&acting, &key("u1"), &r.binding, RemovalReason::UserUnbound)
        .await
        .unwrap_err();
    assert!(matches!(e, BindingError::Denied { .. }));
    assert_eq!(e.class(), ErrorClass::Denied);
    // Claiming a scope in the principal that the stored grant lacks changes nothing.
    let forged = delegate_principal(&g, Scopes::all());
    assert!(matches!(
        w.service
            .unbind(&forged, &key("u2"), &r.binding, RemovalReason::UserUnbound)
            .await,
        Err(BindingError::Denied { .. })
    ));
    let denials = w
        .audit_actions()
        .await
        .into_iter()
        .filter(|a| *a == ("binding.unbind".to_owned(), AuditOutcome::Denied))
        .count();
    assert_eq!(denials, 2);
    assert_eq!(w.binding(&r.binding).await.state, BindingState::Active);
}

#[tokio::test]
async fn a_delegate_may_bind_onto_their_own_account_but_not_a_strangers() {
    let w = World::new();
    let card = w.issue("grandma", None).await;
    let (son, son_account) = w.citizen("son");
    w.citizen("stranger");
    let g = grant(
        &w,
        &card.holder,
        &card.holder,
        &son,
        Relation::Family,
        &[DelegationScope::Bind],
        "g1",
    )
    .await
    .unwrap();
    let acting = delegate_principal(&g, g.scopes);
    let e = w
        .service
        .bind(
            &acting,
            &key("b0"),
            &w.request(&card, "grandma", &account("pac-stranger")),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, BindingError::Denied { .. }));
    let r = w
        .service
        .bind(
            &acting,
            &key("b1"),
            &w.request(&card, "grandma", &son_account),
        )
        .await
        .unwrap();
    assert_eq!(w.binding(&r.binding).await.account, son_account);
}

#[tokio::test]
async fn revoked_and_expired_grants_are_denied() {
    let w = World::new();
    let card = w.issue("grandma", None).await;
    let (son, _) = w.citizen("son");
    let g = grant(
        &w,
        &card.holder,
        &card.holder,
        &son,
        Relation::Family,
        &[DelegationScope::Bind, DelegationScope::Unbind],
        "g1",
    )
    .await
    .unwrap();
    let acting = delegate_principal(&g, g.scopes);
    // Only the grantor, cardholder, delegate or an operator revokes.
    let (other, _) = w.citizen("other");
    assert!(matches!(
        w.service
            .revoke_delegation(&Principal::cardholder(other), &key("r0"), &g.id)
            .await,
        Err(BindingError::Denied { .. })
    ));
    let revoked = w
        .service
        .revoke_delegation(
            &Principal::cardholder(card.holder.clone()),
            &key("r1"),
            &g.id,
        )
        .await
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(w.clock.now()));
    let e = w
        .service
        .bind(
            &acting,
            &key("b1"),
            &w.request(&card, "grandma", &account("pac-grandma")),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, BindingError::Denied { .. }));

    let g2 = grant(
        &w,
        &card.holder,
        &card.holder,
        &son,
        Relation::Family,
        &[DelegationScope::Bind],
        "g2",
    )
    .await
    .unwrap();
    w.clock.advance(Duration::days(91));
    let e = w
        .service
        .bind(
            &delegate_principal(&g2, g2.scopes),
            &key("b2"),
            &w.request(&card, "grandma", &account("pac-grandma")),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, BindingError::Denied { .. }));
    assert!(
        w.service
            .authorize(
                &delegate_principal(&g2, g2.scopes),
                &card.holder,
                DelegationScope::Bind,
                "binding.bind"
            )
            .await
            .is_err()
    );
    assert_eq!(
        w.service
            .delegations(&Principal::cardholder(card.holder.clone()), &card.holder)
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn grants_are_made_only_by_the_cardholder_or_a_guardian_with_a_sane_expiry() {
    let w = World::new();
    let card = w.issue("grandma", None).await;
    let (son, _) = w.citizen("son");
    let (other, _) = w.citizen("other");
    // Someone else may not grant rights over grandma.
    assert!(matches!(
        grant(
            &w,
            &other,
            &card.holder,
            &other,
            Relation::Family,
            &[DelegationScope::Bind],
            "g0"
        )
        .await,
        Err(BindingError::Denied { .. })
    ));
    // No scopes, or an expiry in the past or too far out, is refused.
    assert!(matches!(
        grant(
            &w,
            &card.holder,
            &card.holder,
            &son,
            Relation::Family,
            &[],
            "g1"
        )
        .await,
        Err(BindingError::InvalidState { .. })
    ));
    let far = w
        .service
        .grant_delegation(
            &Principal::cardholder(card.holder.clone()),
            &key("g2"),
            &GrantDelegation {
                cardholder: card.holder.clone(),
                delegate: son.clone(),
                relation: Relation::Family,
                scopes: Scopes::all(),
                expires_at: w.clock.now() + Duration::days(3650),
            },
        )
        .await;
    assert!(matches!(far, Err(BindingError::InvalidState { .. })));
    // Claiming to be a guardian needs the relation to be true.
    assert!(matches!(
        grant(
            &w,
            &card.holder,
            &card.holder,
            &son,
            Relation::Guardian,
            &[DelegationScope::Bind],
            "g3"
        )
        .await,
        Err(BindingError::Denied { .. })
    ));
}

#[tokio::test]
async fn a_minor_binds_only_with_a_guardians_consent() {
    let w = World::new();
    let card = w.issue("kid", None).await;
    let (mum, _) = w.citizen("mum");
    w.real_names.inner().add_minor(&card.holder, &mum);
    // The child alone: a guardian must consent.
    let e = w.bind_own(&card, "kid", "b1").await.unwrap_err();
    assert_eq!(e, BindingError::GuardianRequired);
    // The guardian grants herself a guardian delegation and binds the child's card.
    let g = grant(
        &w,
        &mum,
        &card.holder,
        &mum,
        Relation::Guardian,
        &[DelegationScope::Bind, DelegationScope::ViewBalance],
        "g1",
    )
    .await
    .unwrap();
    assert_eq!(g.granted_by, mum);
    let r = w
        .service
        .bind(
            &delegate_principal(&g, g.scopes),
            &key("b2"),
            &w.request(&card, "kid", &account("pac-kid")),
        )
        .await
        .unwrap();
    let b = w.binding(&r.binding).await;
    assert_eq!(b.consent.guardian, Some(mum.clone()));
    let entries = w
        .audit
        .query(&AuditQuery::subject(format!("binding:{}", r.binding)))
        .await
        .unwrap();
    assert!(entries.iter().any(|e| e.record.action == "binding.consent"
        && e.record.detail.get("guardian") == Some(&mum.to_string())));
    // The guardian may list the child's delegations.
    assert_eq!(
        w.service
            .delegations(&Principal::cardholder(mum), &card.holder)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// The one delegation check other crates use: claimed grant, stored grant, live.
#[tokio::test]
async fn stored_grants_verify_delegate_cardholder_scope_expiry_and_revocation() {
    let store = std::sync::Arc::new(MemoryDelegationStore::new());
    let now = chrono::Utc::now();
    let p = |s: &str| PersonId::parse(s).unwrap();
    let stored = |id: &str, scopes: Scopes, expires_in: Duration, revoked: bool| Delegation {
        id: DelegationId::parse(id).unwrap(),
        cardholder: p("psn-mum"),
        delegate: p("psn-son"),
        relation: Relation::Family,
        scopes,
        granted_by: p("psn-mum"),
        granted_at: now - Duration::days(1),
        expires_at: now + expires_in,
        revoked_at: revoked.then_some(now - Duration::hours(1)),
    };
    let view = Scopes::NONE.with(DelegationScope::ViewBalance);
    for grant in [
        stored("dlg-live", view, Duration::days(1), false),
        stored("dlg-expired", view, -Duration::minutes(1), false),
        stored("dlg-revoked", view, Duration::days(1), true),
        stored(
            "dlg-book",
            Scopes::NONE.with(DelegationScope::BookAppointments),
            Duration::days(1),
            false,
        ),
    ] {
        store.insert(&grant).await.unwrap();
    }
    let verifier = StoredGrants::new(store);
    let acting = |who: &str, for_whom: &str, grant: &str, scopes: Scopes| Principal::Delegate {
        delegate: p(who),
        on_behalf_of: p(for_whom),
        delegation: DelegationId::parse(grant).unwrap(),
        scopes,
    };
    let check = |principal: Principal| {
        let verifier = verifier.clone();
        async move {
            verifier
                .verify(&principal, &p("psn-mum"), DelegationScope::ViewBalance, now)
                .await
                .unwrap()
        }
    };
    assert!(check(acting("psn-son", "psn-mum", "dlg-live", view)).await);
    assert!(check(Principal::cardholder(p("psn-mum"))).await);
    for refused in [
        // another person quoting the grant
        acting("psn-stranger", "psn-mum", "dlg-live", view),
        // acting for someone the grant is not about
        acting("psn-son", "psn-dad", "dlg-live", view),
        // the scope not claimed (a narrowed session)
        acting(
            "psn-son",
            "psn-mum",
            "dlg-live",
            Scopes::NONE.with(DelegationScope::TopUp),
        ),
        // claimed, but not held by the stored grant
        acting("psn-son", "psn-mum", "dlg-book", Scopes::all()),
        acting("psn-son", "psn-mum", "dlg-expired", view),
        acting("psn-son", "psn-mum", "dlg-revoked", view),
        acting("psn-son", "psn-mum", "dlg-unknown", Scopes::all()),
        Principal::cardholder(p("psn-son")),
        Principal::System,
    ] {
        assert!(!check(refused.clone()).await, "{refused:?}");
    }
}
