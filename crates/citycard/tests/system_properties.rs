//! Properties of the whole card system: random journeys of several
//! cardholders (top up, ride and settle, pay a hospital bill, book, refund,
//! lose and replace a card, unbind and bind again, look at the wallet view),
//! attempted by every kind of principal: the holder, another cardholder, a
//! family delegate under a live grant, someone quoting that grant, a delegate
//! whose grant was revoked, the platform the card is (or is not) bound on,
//! another platform, operators with and without the finance role, the system.
//!
//! After every step: money is conserved across the whole ledger (every
//! account's net position sums to zero), no wallet is below zero or above its
//! cap, each person's wallet money equals what the accepted operations imply,
//! a refreshed wallet view equals the ledger, and every attempt by the wrong
//! principal was refused without moving anything.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Duration;
use citycard::binding::{
    BindRequest, BindingId, BindingState, ConsentInput, DataCategory, GrantDelegation, Relation,
    RemovalReason,
};
use citycard::core::{
    AuditOutcome, AuditQuery, Clock, DelegationId, DelegationScope, IdempotencyKey, ManualClock,
    Money, OperatorId, OperatorRole, PersonId, Platform, PlatformAccountId, Principal, Scopes,
    Sensitive, SequentialIdGenerator, civil_date,
};
use citycard::healthcare::{
    BillRequest, BookRequest, CashSource, CatalogueClass, ChargeItem, HospitalId, HospitalLevel,
    VisitType,
};
use citycard::identity::{IdNumber, KnownPerson, RealNameRequest, RegionCode, Sex};
use citycard::ledger::AccountKind;
use citycard::transit::{Tap, TapDirection, TapPlace};
use citycard::{CityCard, CityCardError, NewCitizenCard};
use proptest::prelude::*;

const PEOPLE: usize = 3;

struct Holder {
    person: PersonId,
    id_number: IdNumber,
    account: PlatformAccountId,
    card: citycard::binding::CardId,
    card_number: String,
    binding: Option<BindingId>,
    replacements: u32,
    /// Live grant to the next holder: top up and book, not view the balance.
    grant: DelegationId,
    /// Grant to the holder after next, revoked.
    revoked: DelegationId,
}

struct World {
    city: CityCard,
    clock: Arc<ManualClock>,
    holders: Vec<Holder>,
    expected_wallet: HashMap<usize, Money>,
    keys: u64,
}

fn key(text: String) -> IdempotencyKey {
    IdempotencyKey::parse(&text).expect("valid key")
}

fn operator() -> Principal {
    Principal::Operator {
        operator: OperatorId::parse("opr-1").expect("valid id"),
    }
}

fn unroled_operator() -> Principal {
    Principal::Operator {
        operator: OperatorId::parse("opr-nobody").expect("valid id"),
    }
}

fn consent() -> ConsentInput {
    ConsentInput {
        purpose: "use the citizen card in Alipay".into(),
        data_categories: [DataCategory::CardNumber, DataCategory::Balance].into(),
        text_version: "2026-01".into(),
        channel: "alipay_app".into(),
    }
}

impl World {
    async fn new() -> World {
        let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 2, 7, 0, 0));
        let city = CityCard::builder()
            .in_memory()
            .clock(clock.clone())
            .id_generator(Arc::new(SequentialIdGenerator::new()))
            .build()
            .await
            .expect("builds");
        for role in [OperatorRole::CardDesk, OperatorRole::Finance] {
            city.operator_roles()
                .grant(OperatorId::parse("opr-1").expect("valid id"), role);
        }
        let mut holders = Vec::new();
        for i in 0..PEOPLE {
            let id_number = IdNumber::generate(
                RegionCode::new(330106).expect("region"),
                chrono::NaiveDate::from_ymd_opt(1960 + 10 * i as i32, 3, 1).expect("date"),
                Sex::Female,
                10 + i as u16,
            )
            .expect("valid number");
            let name = format!("持卡人{i}");
            let person = city
                .identity()
                .enroll_person(
                    &operator(),
                    &Sensitive::new(name.clone()),
                    &id_number.to_sensitive(),
                    &key(format!("enrol-{i}")),
                )
                .await
                .expect("enrols");
            let card_number = format!("33010000{:08}", i + 1);
            let card = city
                .issue_card(
                    &operator(),
                    &key(format!("issue-{i}")),
                    &NewCitizenCard {
                        number: card_number.clone(),
                        kind: "standard".into(),
                        holder: person.id.clone(),
                        id_number: id_number.to_sensitive(),
                        services: None,
                    },
                )
                .await
                .expect("issues");
            city.simulated_verifier()
                .expect("simulated")
                .register(&id_number, KnownPerson::named(&name));
            let platform = Principal::Platform {
                platform: Platform::Alipay,
            };
            let account = city
                .identity()
                .register_account(
                    &platform,
                    Platform::Alipay,
                    &format!("2088-{i}"),
                    &key(format!("reg-{i}")),
                )
                .await
                .expect("registers");
            city.identity()
                .verify_real_name(
                    &platform,
                    &account.id,
                    &RealNameRequest::two_factor(&name, id_number.reveal()),
                    &key(format!("verify-{i}")),
                )
                .await
                .expect("verifies");
            holders.push(Holder {
                person: person.id,
                id_number,
                account: account.id,
                card: card.id,
                card_number,
                binding: None,
                replacements: 0,
                grant: DelegationId::parse("dlg-unset").expect("id"),
                revoked: DelegationId::parse("dlg-unset").expect("id"),
            });
        }
        for i in 0..PEOPLE {
            let holder = Principal::cardholder(holders[i].person.clone());
            let grant = |to: usize, tag: &str| {
                let request = GrantDelegation {
                    cardholder: holders[i].person.clone(),
                    delegate: holders[to].person.clone(),
                    relation: Relation::Family,
                    scopes: [DelegationScope::TopUp, DelegationScope::BookAppointments]
                        .into_iter()
                        .collect(),
                    expires_at: clock.now() + Duration::days(300),
                };
                let k = key(format!("{tag}-{i}"));
                let city = &city;
                let holder = holder.clone();
                async move {
                    city.cards()
                        .grant_delegation(&holder, &k, &request)
                        .await
                        .expect("grants")
                        .id
                }
            };
            let live = grant((i + 1) % PEOPLE, "grant").await;
            let revoked = grant((i + 2) % PEOPLE, "grant-revoked").await;
            city.cards()
                .revoke_delegation(&holder, &key(format!("revoke-{i}")), &revoked)
                .await
                .expect("revokes");
            holders[i].grant = live;
            holders[i].revoked = revoked;
        }
        let mut world = World {
            city,
            clock,
            holders,
            expected_wallet: HashMap::new(),
            keys: 0,
        };
        for i in 0..PEOPLE {
            world.bind(i).await;
        }
        world
    }

    fn next_key(&mut self, what: &str) -> IdempotencyKey {
        self.keys += 1;
        key(format!("{what}-{}", self.keys))
    }

    fn me(&self, who: usize) -> Principal {
        Principal::cardholder(self.holders[who].person.clone())
    }

    async fn bind(&mut self, who: usize) {
        let k = self.next_key("bind");
        let h = &self.holders[who];
        let receipt = self
            .city
            .cards()
            .bind(
                &Principal::cardholder(h.person.clone()),
                &k,
                &BindRequest {
                    platform: Platform::Alipay,
                    account: h.account.clone(),
                    card_number: h.card_number.clone(),
                    id_number: h.id_number.to_sensitive(),
                    consent: consent(),
                },
            )
            .await
            .expect("a verified holder binds an active card");
        assert_eq!(receipt.state, BindingState::Active);
        self.holders[who].binding = Some(receipt.binding);
    }

    /// Every account's net posted and pending position, summed: zero when money is conserved.
    async fn check_conservation_and_limits(&self) {
        let (posted, pending, bad) = self
            .city
            .ledger()
            .inspect(|engine| {
                let mut posted: i128 = 0;
                let mut pending: i128 = 0;
                let mut bad = Vec::new();
                for a in engine.accounts() {
                    let b = &a.balances;
                    posted +=
                        i128::from(b.credits_posted.fen()) - i128::from(b.debits_posted.fen());
                    pending +=
                        i128::from(b.credits_pending.fen()) - i128::from(b.debits_pending.fen());
                    if a.kind == AccountKind::E_WALLET {
                        let balance = a.posted();
                        if balance.is_negative() || a.upper_limit.is_some_and(|cap| balance > cap) {
                            bad.push((a.id, balance));
                        }
                    }
                }
                (posted, pending, bad)
            })
            .await
            .expect("inspects");
        assert_eq!(posted, 0, "posted money is conserved");
        assert_eq!(pending, 0, "pending money is conserved");
        assert!(bad.is_empty(), "wallets out of bounds: {bad:?}");
    }

    /// A person's money across all their wallets (old cards included).
    async fn wallet_money(&self, who: usize) -> Money {
        let person = self.holders[who].person.clone();
        self.city
            .ledger()
            .inspect(move |engine| {
                engine
                    .accounts()
                    .filter(|a| {
                        a.kind == AccountKind::E_WALLET
                            && a.owner == Some(citycard::ledger::Owner::Person(person.clone()))
                    })
                    .map(|a| a.posted())
                    .sum::<Result<Money, _>>()
            })
            .await
            .expect("inspects")
            .expect("no overflow")
    }

    async fn transfer_count(&self) -> u64 {
        self.city
            .ledger()
            .inspect(|engine| engine.transfer_count())
            .await
            .expect("inspects")
    }
}

#[derive(Debug, Clone)]
enum Actor {
    Own,
    Other(usize),
    /// The next holder, under the live grant.
    Delegate,
    /// Someone quoting the live grant.
    Quoting(usize),
    /// The holder after next, under the revoked grant.
    Revoked,
    Platform(Platform),
    FinanceOperator,
    UnroledOperator,
    System,
}

/// What the actor tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Right {
    TopUp,
    Bill,
    Book,
}

#[derive(Debug, Clone)]
enum Op {
    TopUp { who: usize, actor: Actor, yuan: i64 },
    Ride { who: usize },
    Bill { who: usize, actor: Actor, yuan: i64 },
    Book { who: usize, actor: Actor },
    Refund { who: usize, yuan: i64 },
    Replace { who: usize },
    Unbind { who: usize },
    RefreshView { who: usize },
}

fn actor() -> impl Strategy<Value = Actor> {
    prop_oneof![
        6 => Just(Actor::Own),
        2 => (0..PEOPLE).prop_map(Actor::Other),
        2 => Just(Actor::Delegate),
        1 => (0..PEOPLE).prop_map(Actor::Quoting),
        1 => Just(Actor::Revoked),
        2 => prop_oneof![Just(Platform::Alipay), Just(Platform::WechatPay)].prop_map(Actor::Platform),
        1 => Just(Actor::FinanceOperator),
        1 => Just(Actor::UnroledOperator),
        1 => Just(Actor::System),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0..PEOPLE;
    prop_oneof![
        4 => (who.clone(), actor(), 1i64..3000).prop_map(|(who, actor, yuan)| Op::TopUp { who, actor, yuan }),
        3 => who.clone().prop_map(|who| Op::Ride { who }),
        2 => (who.clone(), actor(), 1i64..400).prop_map(|(who, actor, yuan)| Op::Bill { who, actor, yuan }),
        1 => (who.clone(), actor()).prop_map(|(who, actor)| Op::Book { who, actor }),
        1 => (who.clone(), 1i64..200).prop_map(|(who, yuan)| Op::Refund { who, yuan }),
        1 => who.clone().prop_map(|who| Op::Replace { who }),
        1 => who.clone().prop_map(|who| Op::Unbind { who }),
        2 => who.prop_map(|who| Op::RefreshView { who }),
    ]
}

/// The principal for an actor, and whether it may exercise `right` for `who`.
fn principal_for(world: &World, who: usize, actor: &Actor, right: Right) -> (Principal, bool) {
    let holder = &world.holders[who];
    let delegate = |by: usize, delegation: &DelegationId| Principal::Delegate {
        delegate: world.holders[by].person.clone(),
        on_behalf_of: holder.person.clone(),
        delegation: delegation.clone(),
        scopes: Scopes::all(),
    };
    let next = (who + 1) % PEOPLE;
    match actor {
        Actor::Own => (world.me(who), true),
        Actor::Other(other) => (world.me(*other), *other == who),
        // Healthcare bills only the patient or the hospital.
        Actor::Delegate => (delegate(next, &holder.grant), right != Right::Bill),
        Actor::Quoting(by) => (
            delegate(*by, &holder.grant),
            *by == next && right != Right::Bill,
        ),
        Actor::Revoked => (delegate((who + 2) % PEOPLE, &holder.revoked), false),
        Actor::Platform(platform) => (
            Principal::Platform {
                platform: platform.clone(),
            },
            right == Right::TopUp && *platform == Platform::Alipay && holder.binding.is_some(),
        ),
        Actor::FinanceOperator => (operator(), true),
        // Top-ups need the finance role; the hospital's desk is any operator.
        Actor::UnroledOperator => (unroled_operator(), right != Right::TopUp),
        Actor::System => (Principal::System, true),
    }
}

async fn denials(world: &World) -> usize {
    world
        .city
        .audit()
        .query(&AuditQuery::all())
        .await
        .expect("audit")
        .iter()
        .filter(|e| e.record.outcome == AuditOutcome::Denied)
        .count()
}

async fn step(world: &mut World, op: Op, day: usize) {
    world.clock.advance(Duration::minutes(7));
    let before = world.transfer_count().await;
    match op {
        Op::TopUp { who, actor, yuan } => {
            let (principal, allowed) = principal_for(world, who, &actor, Right::TopUp);
            let k = world.next_key("topup");
            let card = world.holders[who].card.clone();
            let via = match &principal {
                Principal::Platform { platform } => platform.clone(),
                _ => Platform::Alipay,
            };
            let denied_before = denials(world).await;
            let result = world
                .city
                .wallet()
                .top_up(&principal, &card, Money::from_yuan(yuan), &via, &k)
                .await;
            // The delegate may top up but not view the balance: it learns nothing of it.
            let sees_balance = !matches!(principal, Principal::Delegate { .. });
            match (allowed, result) {
                (true, Ok(receipt)) => {
                    assert_eq!(receipt.balance.is_some(), sees_balance, "{receipt:?}");
                    let e = world.expected_wallet.entry(who).or_insert(Money::ZERO);
                    *e = e.checked_add(receipt.amount).expect("no overflow");
                }
                (true, Err(CityCardError::OverCap { .. })) if sees_balance => {}
                (true, Err(CityCardError::OverCapUndisclosed { .. })) if !sees_balance => {}
                (false, Err(CityCardError::Denied { .. })) => {
                    assert_eq!(
                        world.transfer_count().await,
                        before,
                        "a denied top-up moved money"
                    );
                    assert!(
                        denials(world).await > denied_before,
                        "a denied top-up was not audited"
                    );
                }
                (allowed, other) => panic!("top-up (allowed: {allowed}) answered {other:?}"),
            }
        }
        Op::Ride { who } => {
            let card = world
                .city
                .cards()
                .card(&Principal::System, &world.holders[who].card)
                .await
                .expect("card");
            let card_ref = CityCard::card_ref(&card).expect("card ref");
            let network = world.city.transit().fares().network();
            let route = network.route("b7").expect("bus 7 is in the sample network");
            let at = world.clock.now();
            let tap = Tap {
                card: card_ref,
                direction: TapDirection::In,
                place: TapPlace::Vehicle {
                    route,
                    vehicle: 1 + who as u32,
                    stop: None,
                },
                reader: 1,
                at,
                code: None,
                medium: citycard_transit::Medium::Card,
            };
            let report = world
                .city
                .transit()
                .settlement()
                .settle_day(&Principal::System, civil_date(at), vec![tap])
                .await
                .expect("settles");
            // What was charged left the rider's wallet; what could not be is arrears.
            let e = world.expected_wallet.entry(who).or_insert(Money::ZERO);
            *e = e.checked_sub(report.charged).expect("no overflow");
        }
        Op::Bill { who, actor, yuan } => {
            let (principal, allowed) = principal_for(world, who, &actor, Right::Bill);
            let k = world.next_key("bill");
            let request = BillRequest {
                patient: world.holders[who].person.clone(),
                hospital: HospitalId::parse("hsp-1").expect("id"),
                hospital_level: HospitalLevel::Community,
                visit_type: VisitType::Outpatient,
                items: vec![ChargeItem::new(
                    "consult",
                    CatalogueClass::C,
                    Money::from_yuan(yuan),
                    1,
                )],
                cash_source: CashSource::EWallet,
            };
            let wallet_before = world.wallet_money(who).await;
            let result = world
                .city
                .healthcare()
                .billing()
                .settle(&principal, &k, &request)
                .await;
            let wallet_after = world.wallet_money(who).await;
            match (allowed, result) {
                (true, Ok(record)) => {
                    let paid = wallet_before
                        .checked_sub(wallet_after)
                        .expect("no overflow");
                    assert_eq!(
                        paid, record.breakdown.cash_paid,
                        "the wallet paid the cash part"
                    );
                    let e = world.expected_wallet.entry(who).or_insert(Money::ZERO);
                    *e = e.checked_sub(paid).expect("no overflow");
                }
                (true, Err(_)) => {
                    assert_eq!(wallet_before, wallet_after, "a refused bill moved money")
                }
                (false, Err(_)) => {
                    assert_eq!(
                        world.transfer_count().await,
                        before,
                        "a denied bill moved money"
                    );
                }
                (false, Ok(_)) => panic!("{principal} settled someone's bill"),
            }
        }
        Op::Book { who, actor } => {
            let (principal, allowed) = principal_for(world, who, &actor, Right::Book);
            let k = world.next_key("book");
            let slot = format!("slot-{day}");
            let result = world
                .city
                .healthcare()
                .appointments()
                .book(
                    &principal,
                    &BookRequest {
                        slot: slot.parse().expect("id"),
                        patient: world.holders[who].person.clone(),
                        key: k,
                        allow_waitlist: true,
                    },
                )
                .await;
            if !allowed {
                assert!(
                    matches!(
                        result,
                        Err(citycard::healthcare::HealthcareError::Denied(_))
                    ),
                    "{principal} booked for someone: {result:?}"
                );
            }
        }
        Op::Refund { who, yuan } => {
            let k = world.next_key("refund");
            let card = world.holders[who].card.clone();
            match world
                .city
                .wallet()
                .refund(&operator(), &card, Money::from_yuan(yuan), &k)
                .await
            {
                Ok(receipt) => {
                    let e = world.expected_wallet.entry(who).or_insert(Money::ZERO);
                    *e = e.checked_sub(receipt.amount).expect("no overflow");
                }
                Err(CityCardError::InsufficientBalance { .. }) => {}
                Err(other) => panic!("refund answered {other:?}"),
            }
            // A cardholder may not refund themself.
            let k = world.next_key("refund");
            let denied = world
                .city
                .wallet()
                .refund(&world.me(who), &card, Money::from_yuan(1), &k)
                .await;
            assert!(matches!(denied, Err(CityCardError::Denied { .. })));
        }
        Op::Replace { who } => {
            let me = world.me(who);
            let old = world.holders[who].card.clone();
            let k = world.next_key("lost");
            world
                .city
                .cards()
                .report_lost(&me, &k, &old)
                .await
                .expect("reports lost");
            world.holders[who].replacements += 1;
            let number = format!("3302{:02}00{:08}", world.holders[who].replacements, who + 1);
            let k = world.next_key("replace");
            let change = world
                .city
                .replace_card(&operator(), &k, &old, &number)
                .await
                .expect("replaces");
            let new_card = change.new_card.expect("a new card");
            world.holders[who].card = new_card.id;
            world.holders[who].card_number = number;
        }
        Op::Unbind { who } => {
            if let Some(binding) = world.holders[who].binding.take() {
                let me = world.me(who);
                let k = world.next_key("unbind");
                world
                    .city
                    .cards()
                    .unbind(&me, &k, &binding, RemovalReason::UserUnbound)
                    .await
                    .expect("unbinds");
            } else {
                world.bind(who).await;
            }
        }
        Op::RefreshView { who } => {
            if let Some(binding) = world.holders[who].binding.clone() {
                let me = world.me(who);
                let view = world
                    .city
                    .cards()
                    .refresh_balance(&me, &binding)
                    .await
                    .expect("refreshes");
                let ledger = world
                    .city
                    .wallet()
                    .balance(&me, &world.holders[who].card)
                    .await
                    .expect("balance");
                assert_eq!(
                    view.balance, ledger,
                    "the wallet view equals the ledger after a refresh"
                );
            }
        }
    }
    world.check_conservation_and_limits().await;
    for who in 0..PEOPLE {
        let expected = world
            .expected_wallet
            .get(&who)
            .copied()
            .unwrap_or(Money::ZERO);
        assert_eq!(
            world.wallet_money(who).await,
            expected,
            "wallet money of holder {who}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn random_journeys_conserve_money_and_respect_rights(ops in proptest::collection::vec(op(), 1..14)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(async {
            let mut world = World::new().await;
            let today = civil_date(world.clock.now());
            for day in 0..2 {
                let slot = citycard_testkit::healthcare::slot(
                    &format!("slot-{day}"),
                    "dep-1",
                    today + Duration::days(day + 1),
                    50,
                );
                world.city.healthcare().appointments().put_slot(&operator(), slot).await.expect("slot");
            }
            for op in ops {
                step(&mut world, op, 0).await;
            }
        });
    }
}
