//! Binding throughput measured in on-CPU time, for a machine shared with other work.
//!
//! The criterion bench (`benches/binding.rs`) measures wall-clock time, which on a
//! busy machine includes time spent waiting for a core. This example runs the same
//! flow over the memory adapters and reports the best of five runs both as wall time
//! and as the thread's on-CPU time (from `/proc/thread-self/schedstat`, Linux only;
//! elsewhere only wall time is shown).
//!
//! `cargo run --release -p citycard-binding --example bind_cpu_time -- 50000`
#![allow(clippy::unwrap_used, clippy::expect_used)]
use citycard_binding::*;
use citycard_core::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
struct Stores {
    cards: Arc<dyn CardStore>,
    bindings: Arc<dyn BindingStore>,
    delegations: Arc<dyn DelegationStore>,
    idempotency: Arc<dyn IdempotencyStore>,
    audit: Arc<dyn AuditLog>,
}

fn memory_stores() -> Stores {
    Stores {
        cards: Arc::new(MemoryCardStore::new()),
        bindings: Arc::new(MemoryBindingStore::new()),
        delegations: Arc::new(MemoryDelegationStore::new()),
        idempotency: Arc::new(MemoryIdempotencyStore::new()),
        audit: Arc::new(MemoryAuditLog::new()),
    }
}

struct Bench {
    service: CardService,
    requests: Vec<(Principal, IdempotencyKey, BindRequest)>,
}

async fn prepare(stores: Stores, n: u64) -> Bench {
    let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0));
    let index = KeyedHashIndex::new(b"bench key");
    let real_names = Arc::new(StaticRealNames::new(index.clone()));
    let funds = Arc::new(MemoryFunds::new(clock.clone()));
    let service = CardService::new(
        CardPorts {
            cards: stores.cards.clone(),
            bindings: stores.bindings,
            delegations: stores.delegations,
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

fn timed_binds(rt: &tokio::runtime::Runtime, bench: &Bench) -> Duration {
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

fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000)
        .max(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut best_wall = Duration::MAX;
    let mut best_cpu: Option<u64> = None;
    for _ in 0..5 {
        let bench = rt.block_on(prepare(memory_stores(), n));
        let c0 = cpu_ns();
        best_wall = best_wall.min(timed_binds(&rt, &bench) / n as u32);
        if let (Some(c0), Some(c1)) = (c0, cpu_ns()) {
            let per = (c1 - c0) / n;
            best_cpu = Some(best_cpu.map_or(per, |b| b.min(per)));
        }
    }
    let rate = |ns: f64| 1e9 / ns;
    println!(
        "{n} bindings per run, best of 5: wall {best_wall:?} per binding ({:.0}/s)",
        rate(best_wall.as_nanos() as f64)
    );
    if let Some(cpu) = best_cpu {
        println!(
            "on-CPU {cpu} ns per binding ({:.0}/s on one core)",
            rate(cpu as f64)
        );
    }
}
