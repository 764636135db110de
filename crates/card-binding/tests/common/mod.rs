//! A wired service over memory stores and fault-injecting doubles, for the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use citycard_binding::*;
use citycard_core::*;
use citycard_testkit::Faults;
use citycard_testkit::binding::{Faulty, sample_consent};

pub struct World {
    pub service: Arc<CardService>,
    pub clock: Arc<ManualClock>,
    pub cards: Arc<MemoryCardStore>,
    pub bindings: Arc<MemoryBindingStore>,
    pub audit: Arc<MemoryAuditLog>,
    pub wallet: Arc<Faulty<SimulatedWallet>>,
    pub issuer: Arc<Faulty<RegistryCardIssuer>>,
    pub real_names: Arc<Faulty<StaticRealNames>>,
    pub funds: Arc<MemoryFunds>,
    pub faults: Faults,
    pub index: KeyedHashIndex,
    pub idempotency: Arc<MemoryIdempotencyStore>,
    pub operator: Principal,
    next: std::sync::atomic::AtomicU32,
}

pub fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).unwrap()
}

pub fn person(s: &str) -> PersonId {
    PersonId::parse(s).unwrap()
}

pub fn account(s: &str) -> PlatformAccountId {
    PlatformAccountId::parse(s).unwrap()
}

/// A fake 18-character ID number for a person name (never printed unmasked).
pub fn id_number_of(name: &str) -> Sensitive<String> {
    let mut digits: u64 = 0;
    for b in name.bytes() {
        digits = digits.wrapping_mul(31).wrapping_add(u64::from(b));
    }
    Sensitive::new(format!("330106{:012}", digits % 1_000_000_000_000))
}

impl World {
    pub fn new() -> World {
        Self::with_config(BindingConfig::default())
    }

    pub fn with_config(config: BindingConfig) -> World {
        let faults = Faults::new();
        let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0));
        let index = KeyedHashIndex::new(b"test key");
        // One registry: its commits write audit records and outcomes to the same core.
        let core = MemoryCore::new();
        let registry = MemoryCardRegistry::with_core(core.clone());
        let cards = Arc::new(registry.cards());
        let bindings = Arc::new(registry.bindings());
        let audit = core.audit();
        let wallet = Arc::new(Faulty::new(SimulatedWallet::new(), faults.clone()));
        let issuer = Arc::new(Faulty::new(
            RegistryCardIssuer::new(cards.clone(), Arc::new(index.clone())),
            faults.clone(),
        ));
        let real_names = Arc::new(Faulty::new(
            StaticRealNames::new(index.clone()),
            faults.clone(),
        ));
        let funds = Arc::new(MemoryFunds::new(clock.clone()));
        let idempotency = core.idempotency();
        let faulty_funds = Arc::new(Faulty::new(funds.clone(), faults.clone()));
        let service = Arc::new(CardService::new(
            CardPorts {
                cards: cards.clone(),
                bindings: bindings.clone(),
                delegations: Arc::new(registry.delegations()),
                changes: Arc::new(registry.clone()),
                idempotency: idempotency.clone(),
                audit: audit.clone(),
                clock: clock.clone(),
                ids: Arc::new(SequentialIdGenerator::new()),
                real_names: real_names.clone(),
                id_index: Arc::new(index.clone()),
                issuer: issuer.clone(),
                wallet: wallet.clone(),
                funds: faulty_funds.clone(),
                balances: faulty_funds,
            },
            config,
        ));
        World {
            service,
            clock,
            cards,
            bindings,
            audit,
            wallet,
            issuer,
            real_names,
            funds,
            faults,
            index,
            idempotency,
            operator: Principal::Operator {
                operator: OperatorId::parse("opr-1").unwrap(),
            },
            next: std::sync::atomic::AtomicU32::new(1),
        }
    }

    fn fresh(&self) -> u32 {
        self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Registers a person with a real-name verified Alipay account `pac-<name>`.
    pub fn citizen(&self, name: &str) -> (PersonId, PlatformAccountId) {
        let p = person(&format!("psn-{name}"));
        let a = account(&format!("pac-{name}"));
        let names = self.real_names.inner();
        names.add_person(&p, &id_number_of(name));
        names.verify_account(&Platform::Alipay, &a, &p);
        names.verify_account(&Platform::WechatPay, &a, &p);
        (p, a)
    }

    /// Issues a card to a citizen (registered first), with the given services or the defaults.
    pub async fn issue(&self, name: &str, services: Option<ServiceSet>) -> Card {
        let (holder, _) = self.citizen(name);
        let n = self.fresh();
        self.service
            .issue_card(
                &self.operator,
                &key(&format!("issue-{n}")),
                &IssueCard {
                    number: format!("3301{n:012}"),
                    kind: "standard".into(),
                    holder,
                    id_number: id_number_of(name),
                    wallet_account: WalletAccountRef::parse(&format!("wac-{n}")).unwrap(),
                    services,
                    platforms: None,
                },
            )
            .await
            .unwrap()
    }

    pub fn request(&self, card: &Card, name: &str, acct: &PlatformAccountId) -> BindRequest {
        BindRequest {
            platform: Platform::Alipay,
            account: acct.clone(),
            card_number: card.number.as_str().to_owned(),
            id_number: id_number_of(name),
            consent: sample_consent(),
        }
    }

    /// Binds `name`'s card on `name`'s Alipay account, as the cardholder.
    pub async fn bind_own(
        &self,
        card: &Card,
        name: &str,
        k: &str,
    ) -> Result<BindingReceipt, BindingError> {
        let acct = account(&format!("pac-{name}"));
        self.service
            .bind(
                &Principal::cardholder(card.holder.clone()),
                &key(k),
                &self.request(card, name, &acct),
            )
            .await
    }

    pub fn passes(&self) -> Vec<WalletPass> {
        self.wallet.inner().passes()
    }

    pub async fn binding(&self, id: &BindingId) -> Binding {
        self.bindings.get(id).await.unwrap().unwrap()
    }

    pub async fn audit_actions(&self) -> Vec<(String, AuditOutcome)> {
        self.audit
            .query(&AuditQuery::all())
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.record.action, e.record.outcome))
            .collect()
    }
}
