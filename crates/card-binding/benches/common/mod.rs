//! The binding bench world, shared by `benches/binding.rs` and
//! `examples/bind_cpu_time.rs`: stores, a service over memory adapters with
//! `n` issued cards, and the timed loop that binds each once.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use citycard_binding::*;
use citycard_core::*;

/// The stores a bench world runs on.
pub struct Stores {
    pub cards: Arc<dyn CardStore>,
    pub bindings: Arc<dyn BindingStore>,
    pub delegations: Arc<dyn DelegationStore>,
    pub changes: Arc<dyn CardChangeStore>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub audit: Arc<dyn AuditLog>,
}

pub fn memory_stores() -> Stores {
    let registry = MemoryCardRegistry::new();
    Stores {
        cards: Arc::new(registry.cards()),
        bindings: Arc::new(registry.bindings()),
        delegations: Arc::new(registry.delegations()),
        idempotency: registry.core().idempotency(),
        audit: registry.core().audit(),
        changes: Arc::new(registry),
    }
}

pub struct Bench {
    service: CardService,
    requests: Vec<(Principal, IdempotencyKey, BindRequest)>,
}

pub async fn prepare(stores: Stores, n: u64) -> Bench {
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0));
    let index = KeyedHashIndex::new(b"bench key");
    let real_names = Arc::new(StaticRealNames::new(index.clone()));
    let funds = Arc::new(MemoryFunds::new(clock.clone()));
    let service = CardService::new(
        CardPorts {
            cards: stores.cards.clone(),
            bindings: stores.bindings,
            delegations: stores.delegations,
            changes: stores.changes,
            idempotency: stores.idempotency,
            audit: stores.audit,
            clock,
            ids: Arc::new(SequentialIdGenerator::new()),
            real_names: real_names.clone(),
            id_index: Arc::new(index.clone()),
            issuer: Arc::new(RegistryCardIssuer::new(stores.cards, Arc::new(index))),
            wallet: Arc::new(SimulatedWallet::new()),
            funds: funds.clone(),
            balances: funds,
        },
        BindingConfig::default(),
    );
    let operator = Principal::Operator {
        operator: OperatorId::parse("opr-1").unwrap(),
    };
    let mut requests = Vec::with_capacity(n as usize);
    for i in 0..n {
        let holder = PersonId::parse(&format!("psn-{i}")).unwrap();
        let account = PlatformAccountId::parse(&format!("pac-{i}")).unwrap();
        let id_number = Sensitive::new(format!("330106{i:012}"));
        real_names.add_person(&holder, &id_number);
        real_names.verify_account(&Platform::Alipay, &account, &holder);
        let number = format!("3301{i:012}");
        service
            .issue_card(
                &operator,
                &IdempotencyKey::parse(&format!("issue-{i}")).unwrap(),
                &IssueCard {
                    number: number.clone(),
                    kind: "standard".into(),
                    holder: holder.clone(),
                    id_number: id_number.clone(),
                    wallet_account: WalletAccountRef::parse(&format!("wac-{i}")).unwrap(),
                    services: None,
                    platforms: None,
                },
            )
            .await
            .unwrap();
        requests.push((
            Principal::cardholder(holder),
            IdempotencyKey::parse(&format!("bind-{i}")).unwrap(),
            BindRequest {
                platform: Platform::Alipay,
                account,
                card_number: number,
                id_number,
                consent: ConsentInput {
                    purpose: "use the citizen card in Alipay".into(),
                    data_categories: [DataCategory::CardNumber, DataCategory::Balance].into(),
                    text_version: "2026-01".into(),
                    channel: "alipay_app".into(),
                },
            },
        ));
    }
    Bench { service, requests }
}

pub fn timed_binds(rt: &tokio::runtime::Runtime, bench: &Bench) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for (principal, key, request) in &bench.requests {
            let receipt = bench.service.bind(principal, key, request).await.unwrap();
            debug_assert_eq!(receipt.state, BindingState::Active);
            std::hint::black_box(receipt);
        }
        start.elapsed()
    })
}
