//! The city: its cardholders as the simulator knows them (what was
//! acknowledged), the card system they use, and how one operation is
//! resolved against that knowledge, run, and learnt from.
//!
//! This file is long because the operations and what an acknowledgement
//! teaches the model belong side by side; the checks are in `check.rs`.

// Each arm of `learn` pairs an action with its answer and then tests the
// model; folding the test into the pattern would hide that pairing.
#![allow(clippy::collapsible_match)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, Utc};
use citycard::binding::{
    BindRequest, BindingId, BindingState, CardId, ConsentInput, DataCategory, GrantDelegation,
    Relation, RemovalReason, SimulatedWallet,
};
use citycard::core::{
    ClassifiedError, Clock, DelegationId, DelegationScope, IdempotencyKey, ManualClock, Money,
    OperatorId, OperatorRole, PersonId, Platform, PlatformAccountId, Principal, Scopes, Sensitive,
    SequentialIdGenerator, civil_date,
};
use citycard::healthcare::{
    AppointmentId, AppointmentStatus, BillRequest, BookRequest, CashSource, CatalogueClass,
    ChargeItem, HospitalId, HospitalLevel, PaymentAccount, PersonCategory, SettlementId,
    SettlementStatus, VisitType,
};
use citycard::identity::{
    IdNumber, KeyProvider, KnownPerson, MemoryKeyProvider, RealNameRequest, RegionCode, Sex,
    SimulatedVerifier,
};
use citycard::transit::CardRef;
use citycard::{CityCard, NewCitizenCard};
use citycard_testkit::binding::Faulty;
use citycard_testkit::identity::{FaultyKeyProvider, FaultyVerifier};
use citycard_testkit::{Fault, Faults};

use crate::codes::{CODE_COLUMNS, CodeRide, Gates, Rows, STATION_IDS};
use crate::plan::{CLINICS, FaultKind, Op, Payer, Port};
use crate::rng::Rng;
use crate::wrap::{
    Mutation, PaymentsLog, Remote, SharedWallet, SimBindingStore, SimLedgerStore, SimPayments,
};

/// The platforms cardholders use, by index.
pub const PLATFORMS: [Platform; 3] = [Platform::Alipay, Platform::WechatPay, Platform::UnionPay];
/// Days of clinic slots published before the run.
pub const SLOT_DAYS: i64 = 8;

/// A cardholder as the simulator knows them.
#[derive(Debug, Clone)]
pub struct Person {
    /// The name (personal data: never in any output).
    pub name: String,
    /// The ID number (personal data).
    pub id_number: IdNumber,
    /// Card kind code.
    pub kind: &'static str,
    /// The enrolled person.
    pub person: PersonId,
    /// The current card.
    pub card: CardId,
    /// The current card's number (personal data).
    pub card_number: String,
    /// The transit references of every card they held (fares of old cards count).
    pub card_refs: Vec<CardRef>,
    /// Platform accounts by platform index, verified or not.
    pub accounts: [Option<(PlatformAccountId, bool)>; 3],
    /// Live bindings acknowledged, by platform index.
    pub bindings: [Option<BindingId>; 3],
    /// The delegate (elderly cardholders).
    pub delegate: Option<usize>,
    /// The live grant to the delegate.
    pub grant: Option<DelegationId>,
    /// Appointments acknowledged.
    pub appointments: Vec<AppointmentId>,
    /// Completed bills acknowledged.
    pub bills: Vec<SettlementId>,
    /// Replacement cards so far.
    pub replacements: u32,
}

/// An operation resolved against what the simulator knows: a concrete request.
#[derive(Debug, Clone)]
pub enum Action {
    /// Nothing to do (the operation's precondition is not met in the model).
    Skip(&'static str),
    /// Register and verify an account.
    Register {
        /// Cardholder.
        who: usize,
        /// Platform index.
        platform: usize,
        /// External account id.
        external: String,
        /// Registration key.
        key: IdempotencyKey,
        /// Verification key.
        verify_key: IdempotencyKey,
    },
    /// Bind.
    Bind {
        /// Cardholder.
        who: usize,
        /// Platform index.
        platform: usize,
        /// Key.
        key: IdempotencyKey,
        /// The request.
        request: Box<BindRequest>,
    },
    /// Unbind.
    Unbind {
        /// Cardholder.
        who: usize,
        /// Platform index.
        platform: usize,
        /// The binding.
        binding: BindingId,
        /// Key.
        key: IdempotencyKey,
    },
    /// Change a card's status.
    Status {
        /// Cardholder.
        who: usize,
        /// Card.
        card: CardId,
        /// `lost`, `found`, `freeze` or `thaw`.
        change: &'static str,
        /// Key.
        key: IdempotencyKey,
    },
    /// Replace a card.
    Replace {
        /// Cardholder.
        who: usize,
        /// Old card.
        card: CardId,
        /// New number (masked when printed).
        number: Sensitive<String>,
        /// Key.
        key: IdempotencyKey,
    },
    /// Top up.
    TopUp {
        /// Cardholder.
        who: usize,
        /// Card.
        card: CardId,
        /// Who pays.
        principal: Principal,
        /// Through which platform.
        via: Platform,
        /// Amount.
        amount: Money,
        /// Key.
        key: IdempotencyKey,
    },
    /// Refund at the counter.
    Refund {
        /// Cardholder.
        who: usize,
        /// Card.
        card: CardId,
        /// Amount.
        amount: Money,
        /// Key.
        key: IdempotencyKey,
    },
    /// Taps collected by readers (no call: settlement reads them).
    Taps {
        /// Cardholder.
        who: usize,
        /// The day.
        day: NaiveDate,
        /// CSV rows.
        rows: Vec<String>,
    },
    /// Ride with a ride code.
    CodeRide(CodeRide),
    /// Settle every day with taps.
    Settle {
        /// Days and their tap files.
        days: Vec<(NaiveDate, String)>,
    },
    /// Book.
    Book {
        /// Cardholder.
        who: usize,
        /// Who books.
        principal: Principal,
        /// The request.
        request: BookRequest,
    },
    /// Cancel.
    Cancel {
        /// Cardholder.
        who: usize,
        /// Appointment.
        appointment: AppointmentId,
    },
    /// Settle a bill.
    Bill {
        /// Cardholder.
        who: usize,
        /// Who settles (the patient or the hospital).
        principal: Principal,
        /// Key.
        key: IdempotencyKey,
        /// The bill.
        request: Box<BillRequest>,
    },
    /// Reverse a bill.
    Reverse {
        /// Cardholder.
        who: usize,
        /// Settlement.
        settlement: SettlementId,
        /// Key.
        key: IdempotencyKey,
    },
    /// Read the balance, the statement and the wallet views.
    Query {
        /// Cardholder.
        who: usize,
        /// Card.
        card: CardId,
        /// Live bindings.
        bindings: Vec<BindingId>,
    },
    /// Grant the delegation.
    Grant {
        /// Cardholder.
        who: usize,
        /// Key.
        key: IdempotencyKey,
        /// The grant.
        request: GrantDelegation,
    },
    /// Revoke it.
    Revoke {
        /// Cardholder.
        who: usize,
        /// The grant.
        delegation: DelegationId,
        /// Key.
        key: IdempotencyKey,
    },
    /// Fault the next call of a port.
    Fault(Port, FaultKind),
    /// Move the clock.
    Clock(i64),
    /// Settle pending bindings.
    SettlePending,
}

impl Action {
    /// Whether a repeat with the same key must answer as the first time did.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Action::Register { .. }
                | Action::Bind { .. }
                | Action::Unbind { .. }
                | Action::Status { .. }
                | Action::Replace { .. }
                | Action::TopUp { .. }
                | Action::Refund { .. }
                | Action::Book { .. }
                | Action::Bill { .. }
                | Action::Reverse { .. }
                | Action::Grant { .. }
                | Action::Revoke { .. }
        )
    }

    /// The audit action an acknowledged change must have left, if it changes anything.
    pub fn audited_as(&self) -> Option<&'static str> {
        Some(match self {
            Action::Bind { .. } => "binding.bind",
            Action::Unbind { .. } => "binding.unbind",
            Action::Status { change, .. } => match *change {
                "lost" => "card.report_lost",
                "found" => "card.report_found",
                "freeze" => "card.freeze",
                _ => "card.unfreeze",
            },
            Action::Replace { .. } => "card.replace",
            Action::TopUp { .. } => "wallet.top_up",
            Action::Refund { .. } => "wallet.refund",
            Action::Book { .. } => "appointment.book",
            Action::Cancel { .. } => "appointment.cancel",
            Action::Bill { .. } => "healthcare.settle",
            Action::Reverse { .. } => "healthcare.reverse",
            Action::Grant { .. } => "delegation.grant",
            Action::Revoke { .. } => "delegation.revoke",
            _ => return None,
        })
    }
}

/// What an operation answered, reduced to what a retry must repeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing ran.
    Skipped,
    /// Refused or failed: the error's text.
    Failed(String),
    /// An account registered and verified.
    Registered(PlatformAccountId),
    /// Bound (binding, state code).
    Bound(BindingId, &'static str),
    /// Unbound.
    Unbound(BindingId),
    /// A card's status changed.
    StatusChanged(CardId),
    /// Replaced by a new card (its id and transit reference).
    Replaced(CardId, CardRef),
    /// Money moved (transfer id, amount).
    Moved(String, Money),
    /// Taps collected.
    Tapped,
    /// Days settled (trips charged, money charged).
    Settled(u64, Money),
    /// Booked (appointment, status).
    Booked(AppointmentId, AppointmentStatus),
    /// Cancelled.
    Cancelled(AppointmentId),
    /// A bill settled (settlement, status, wallet share).
    Billed(SettlementId, SettlementStatus, Money),
    /// A bill reversed.
    Reversed(SettlementId),
    /// Gates' decisions on a code ride, and the taps they accepted.
    Coded(Vec<String>, Rows),
    /// The system answered what it must not (an invariant checked inside the operation).
    Broken(String),
    /// Reads: the balance and every wallet view's balance.
    Read(Money, Vec<Money>),
    /// A delegation granted.
    Granted(DelegationId),
    /// A delegation revoked.
    Revoked(DelegationId),
    /// Pending bindings settled.
    SettledPending(usize),
    /// A fault queued or the clock moved.
    Done,
}

impl Outcome {
    /// Whether the operation was acknowledged (returned success).
    pub fn acknowledged(&self) -> bool {
        !matches!(
            self,
            Outcome::Skipped | Outcome::Failed(_) | Outcome::Broken(_)
        )
    }
}

/// The fault scripts of the remote ports.
#[derive(Clone, Default)]
pub struct FaultScripts {
    /// The real-name provider.
    pub verifier: Faults,
    /// The platform wallet.
    pub wallet: Faults,
    /// The key provider.
    pub keys: Faults,
    /// The medical payments port.
    pub payments: Faults,
}

impl FaultScripts {
    /// No more faults.
    pub fn clear(&self) {
        self.verifier.clear();
        self.wallet.clear();
        self.keys.clear();
        self.payments.clear();
    }
}

/// The card system and the simulator's knowledge of it.
pub struct World {
    /// The card system (shared with the platform API service in network runs).
    pub city: Arc<CityCard>,
    /// The clock.
    pub clock: Arc<ManualClock>,
    /// Fault scripts.
    pub faults: FaultScripts,
    /// The simulated platform wallet (the checker reads passes).
    pub wallet: Arc<SimulatedWallet>,
    /// Cardholders.
    pub people: Vec<Person>,
    /// Taps uploaded so far, per civil day (CSV rows).
    pub taps: BTreeMap<NaiveDate, Vec<String>>,
    /// Clinic slots published: (slot id, capacity).
    pub slots: Vec<(String, u32)>,
    /// Acknowledged retryable operations with their answers.
    pub acked: Vec<(Action, Outcome)>,
    /// Money movements acknowledged (transfer id → (cardholder, signed fen)).
    pub movements: BTreeMap<String, (usize, i64)>,
    /// Fares charged per cardholder, as of the last settlement (fen).
    pub fares: HashMap<usize, i64>,
    /// Bills acknowledged: settlement → (cardholder, wallet share in fen, reversed).
    pub bills: BTreeMap<String, (usize, i64, bool)>,
    /// Appointments acknowledged: id → (slot, cardholder, cancelled).
    pub appointments: BTreeMap<String, (String, usize, bool)>,
    /// Personal data to look for in every output line.
    pub secrets: std::collections::HashSet<String>,
    /// Counters for the report.
    pub counts: BTreeMap<&'static str, u64>,
    /// How far the clock was moved for a restarted process.
    pub offset: Duration,
    /// Phones and gates of ride codes.
    pub gates: std::sync::Mutex<Gates>,
    /// The deliberate bug of this run, if any.
    pub mutation: Option<Mutation>,
    /// Every batch billing asked the payments port to execute.
    pub payments: PaymentsLog,
    /// Bills and reversals whose outcome the caller does not know (an answer
    /// lost, a port down): retried with their keys by `Resume` steps and at
    /// the end; their cardholders' money is checked once they are resolved.
    pub uncertain: Vec<Action>,
    seq: u64,
}

/// A failure, its class first (`Unavailable: …`), so a retry may tell a
/// transient failure from a different answer.
fn failed<E: ClassifiedError>(e: &E) -> Outcome {
    Outcome::Failed(format!("{:?}: {e}", e.class()))
}

fn key(text: String) -> IdempotencyKey {
    IdempotencyKey::parse(&text)
        .unwrap_or_else(|_| unreachable!("keys are made of safe characters"))
}

/// The desk operator (card desk and finance roles).
pub fn operator() -> Principal {
    Principal::Operator {
        operator: OperatorId::parse("opr-desk").unwrap_or_else(|_| unreachable!()),
    }
}

fn consent(platform: &Platform) -> ConsentInput {
    ConsentInput {
        purpose: format!("use the citizen card in {platform}"),
        data_categories: [DataCategory::CardNumber, DataCategory::Balance].into(),
        text_version: "2026-01".into(),
        channel: "app".into(),
    }
}

/// Where the simulated city keeps its data.
#[derive(Debug, Clone)]
pub enum Store {
    /// Memory (the fast runs).
    Memory,
    /// One SQLite file in this directory, keys in a file beside it (crash runs).
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL database: this URL, whose search path is a fresh schema
    /// of the run's own ([`crate::pg`]).
    Postgres(String),
}

/// The instant every run starts at (a Monday morning in Hangzhou).
pub fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-02T07:00:00+08:00")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

impl World {
    /// Builds the card system (no cardholders yet).
    pub async fn open(
        store: &Store,
        mutation: Option<Mutation>,
        clock_offset: Duration,
        verifier: Arc<SimulatedVerifier>,
    ) -> Result<World, String> {
        let clock = Arc::new(ManualClock::new(start() + clock_offset));
        let faults = FaultScripts::default();
        let mut faulty_verifier = FaultyVerifier::new(verifier.clone());
        faulty_verifier.faults = faults.verifier.clone();
        let wallet = Arc::new(SimulatedWallet::new());
        let keys: Arc<dyn KeyProvider> = match store {
            Store::Memory | Store::Postgres(_) => {
                Arc::new(MemoryKeyProvider::random().map_err(|e| e.to_string())?)
            }
            Store::Sqlite(dir) => Arc::new(
                citycard::keys::FileKeyProvider::open_or_create(dir.join("keys.json"))
                    .map_err(|e| e.to_string())?,
            ),
        };
        let mut faulty_keys = FaultyKeyProvider::new(keys);
        faulty_keys.faults = faults.keys.clone();
        let mut builder = CityCard::builder().clock(clock.clone());
        if let Store::Memory | Store::Postgres(_) = store {
            // Sequential ids make a memory run byte-for-byte repeatable (a
            // PostgreSQL run has a fresh schema of its own); a restarted
            // process on a file keeps the default time-ordered random ids,
            // which never collide with the dead process's.
            builder = builder.id_generator(Arc::new(SequentialIdGenerator::new()));
        }
        builder = builder
            .real_name_verifier(Arc::new(Remote(faulty_verifier)))
            .platform_wallet(Arc::new(Remote(Faulty::new(
                SharedWallet(wallet.clone()),
                faults.wallet.clone(),
            ))))
            .key_provider(Arc::new(Remote(faulty_keys)))
            .ride_code_issuer(crate::codes::issuer()?)
            .wrap_binding_store(move |inner| Arc::new(SimBindingStore::new(inner, mutation)));
        let payments = PaymentsLog::default();
        let (pay_faults, pay_log) = (faults.payments.clone(), payments.clone());
        builder = builder.wrap_medical_payments(move |inner| {
            Arc::new(SimPayments::new(inner, pay_faults, pay_log, mutation))
        });
        builder = match store {
            // Memory stores commit through each port, so the ledger's wrapper changes nothing else.
            Store::Memory => builder
                .in_memory()
                .wrap_ledger_store(move |inner| Arc::new(SimLedgerStore::new(inner, mutation))),
            // On SQLite the ledger stays unwrapped: one transaction per unit of work, as shipped.
            Store::Sqlite(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
                // Small settlement chunks, so a crash run dies between and
                // inside the chunks of one day's settlement.
                builder
                    .sqlite(dir.join("city.db"))
                    .settlement_chunk_trips(4)
            }
            // On PostgreSQL too: the store as shipped, in chunks of four trips.
            Store::Postgres(url) => builder.postgres(url.clone()).settlement_chunk_trips(4),
        };
        let city = Arc::new(builder.build().await.map_err(|e| e.to_string())?);
        if let Principal::Operator { operator } = operator() {
            for role in [OperatorRole::CardDesk, OperatorRole::Finance] {
                city.operator_roles().grant(operator.clone(), role);
            }
        }
        Ok(World {
            city,
            clock,
            faults,
            wallet,
            people: Vec::new(),
            taps: BTreeMap::new(),
            slots: Vec::new(),
            acked: Vec::new(),
            movements: BTreeMap::new(),
            fares: HashMap::new(),
            bills: BTreeMap::new(),
            appointments: BTreeMap::new(),
            secrets: std::collections::HashSet::new(),
            counts: BTreeMap::new(),
            offset: clock_offset,
            gates: std::sync::Mutex::new(Gates::default()),
            mutation,
            payments,
            uncertain: Vec::new(),
            seq: 0,
        })
    }

    /// The time requests are made at: the clock, less a restarted
    /// process's offset, so a resumed run sends the very requests (tap
    /// times, dates) the dead one sent.
    pub fn plan_now(&self) -> DateTime<Utc> {
        self.clock.now() - self.offset
    }

    /// Counts one event for the report.
    pub fn count(&mut self, what: &'static str) {
        *self.counts.entry(what).or_default() += 1;
    }

    /// Enrols `people` cardholders, issues their cards, opens accounts and
    /// binds some, grants the elderly's delegations, publishes clinic slots.
    /// No faults: the city exists before the seeded day starts.
    pub async fn populate(
        &mut self,
        seed: u64,
        people: usize,
        verifier: &SimulatedVerifier,
    ) -> Result<(), String> {
        let mut rng = Rng::new(seed).fork(0xc17);
        let desk = operator();
        for i in 0..people {
            let (kind, birth) = match rng.below(100) {
                0..=19 => (
                    "elderly",
                    NaiveDate::from_ymd_opt(
                        1940 + rng.below(15) as i32,
                        1 + rng.below(12) as u32,
                        1 + rng.below(28) as u32,
                    ),
                ),
                20..=34 => (
                    "student",
                    NaiveDate::from_ymd_opt(
                        2004 + rng.below(3) as i32,
                        1 + rng.below(12) as u32,
                        1 + rng.below(28) as u32,
                    ),
                ),
                _ => (
                    "standard",
                    NaiveDate::from_ymd_opt(
                        1960 + rng.below(40) as i32,
                        1 + rng.below(12) as u32,
                        1 + rng.below(28) as u32,
                    ),
                ),
            };
            let birth = birth.ok_or("a birth date")?;
            let sex = if i % 2 == 0 { Sex::Female } else { Sex::Male };
            let id_number = IdNumber::generate(
                RegionCode::new(330106).ok_or("region")?,
                birth,
                sex,
                u16::try_from(i % 998 + 1).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?;
            let name = format!("市民{i}号");
            verifier.register(&id_number, KnownPerson::named(&name));
            let person = self
                .city
                .identity()
                .enroll_person(
                    &desk,
                    &Sensitive::new(name.clone()),
                    &id_number.to_sensitive(),
                    &key(format!("enrol-{i}")),
                )
                .await
                .map_err(|e| format!("enrolment {i}: {e}"))?;
            // Insured: the retired, residents (students among them) and employees.
            let category = match kind {
                "elderly" => PersonCategory::Retired,
                "student" => PersonCategory::Resident,
                _ if i % 5 == 0 => PersonCategory::Resident,
                _ => PersonCategory::Employee,
            };
            self.city
                .social_insurance_records()
                .put_category(&person.id, category)
                .await
                .map_err(|e| format!("insurance category {i}: {e}"))?;
            let card_number = format!("33010{:011}", i + 1);
            let card = self
                .city
                .issue_card(
                    &desk,
                    &key(format!("issue-{i}")),
                    &NewCitizenCard {
                        number: card_number.clone(),
                        kind: kind.into(),
                        holder: person.id.clone(),
                        id_number: id_number.to_sensitive(),
                        services: None,
                    },
                )
                .await
                .map_err(|e| format!("card issue {i}: {e}"))?;
            let card_ref = CityCard::card_ref(&card).map_err(|e| e.to_string())?;
            self.secrets.insert(name.clone());
            self.secrets.insert(id_number.reveal().to_owned());
            self.secrets.insert(card_number.clone());
            self.people.push(Person {
                name,
                id_number,
                kind,
                person: person.id,
                card: card.id,
                card_number,
                card_refs: vec![card_ref],
                accounts: [None, None, None],
                bindings: [None, None, None],
                delegate: None,
                grant: None,
                appointments: Vec::new(),
                bills: Vec::new(),
                replacements: 0,
            });
        }
        // The insurance agency credits each insured cardholder's current-year
        // medical account (20–150 yuan), so bills split between the account,
        // the pooled fund and the wallet.
        let mut funding = Vec::new();
        for (i, p) in self.people.iter().enumerate() {
            let id = citycard::ledger::TransferId::from_idempotency_key(
                "sim.medical_funding",
                &key(format!("fund-{i}")),
            );
            funding.push(
                citycard::ledger::NewTransfer::new(
                    id,
                    citycard::Accounts::insurance_funding(),
                    citycard::Accounts::medical_current(&p.person),
                    Money::from_yuan(20 + rng.below(130) as i64),
                    citycard::glue::money::codes::MEDICAL_FUNDING,
                )
                .with_memo("current-year medical account credit"),
            );
        }
        if !funding.is_empty() {
            self.city
                .ledger()
                .create_transfers(&Principal::System, funding)
                .await
                .map_err(|e| format!("medical funding: {e}"))?;
        }
        // Each elderly cardholder's delegate is the next cardholder who is not elderly.
        for i in 0..people {
            if self.people[i].kind != "elderly" {
                continue;
            }
            let delegate = (1..people)
                .map(|d| (i + d) % people)
                .find(|&j| self.people[j].kind != "elderly");
            self.people[i].delegate = delegate;
            if delegate.is_some() {
                let action = self.resolve(
                    &Op::Delegation {
                        who: i,
                        revoke: false,
                    },
                    u64::MAX,
                    i,
                )?;
                let outcome = self.exec(&action).await;
                self.learn(&action, &outcome, false);
            }
        }
        // Most open an Alipay account; some bind it before the day starts.
        for i in 0..people {
            if rng.chance(60) {
                let action = self.resolve(
                    &Op::Register {
                        who: i,
                        platform: 0,
                    },
                    u64::MAX,
                    i,
                )?;
                let outcome = self.exec(&action).await;
                self.learn(&action, &outcome, false);
                if rng.chance(50) {
                    let action = self.resolve(
                        &Op::Bind {
                            who: i,
                            platform: 0,
                            mistyped: false,
                        },
                        u64::MAX,
                        i,
                    )?;
                    let outcome = self.exec(&action).await;
                    self.learn(&action, &outcome, false);
                }
            }
        }
        // A community hospital's clinics: a few places each, every day of the run.
        let today = civil_date(self.clock.now());
        for c in 0..CLINICS {
            for d in 1..=SLOT_DAYS {
                let date = today + Duration::days(d);
                let id = format!("slot-c{c}-{}", date.format("%Y%m%d"));
                let capacity = 2 + (c as u32 % 3);
                let slot =
                    citycard_testkit::healthcare::slot(&id, &format!("dep-{c}"), date, capacity);
                self.city
                    .healthcare()
                    .appointments()
                    .put_slot(&desk, slot)
                    .await
                    .map_err(|e| format!("slot {id}: {e}"))?;
                self.slots.push((id, capacity));
            }
        }
        Ok(())
    }

    fn next_key(&mut self, what: &str, step: u64, sub: usize) -> IdempotencyKey {
        self.seq += 1;
        if step == u64::MAX {
            key(format!("{what}-setup-{sub}-{}", self.seq))
        } else {
            key(format!("{what}-{step}-{sub}"))
        }
    }

    fn holder(&self, who: usize) -> Principal {
        Principal::cardholder(self.people[who].person.clone())
    }

    fn delegate_principal(&self, who: usize) -> Option<Principal> {
        let p = &self.people[who];
        Some(Principal::Delegate {
            delegate: self.people[p.delegate?].person.clone(),
            on_behalf_of: p.person.clone(),
            delegation: p.grant.clone()?,
            scopes: Scopes::all(),
        })
    }

    /// Resolves an operation of step `step` (sub-operation `sub`) against the model.
    pub fn resolve(&mut self, op: &Op, step: u64, sub: usize) -> Result<Action, String> {
        let n = self.people.len();
        Ok(match op {
            Op::Register { who, platform } => {
                let who = who % n;
                if self.people[who].accounts[*platform]
                    .as_ref()
                    .is_some_and(|a| a.1)
                {
                    return Ok(Action::Skip("already verified"));
                }
                Action::Register {
                    who,
                    platform: *platform,
                    external: format!("ext-{platform}-{who}"),
                    key: key(format!("reg-{platform}-{who}")),
                    verify_key: self.next_key("verify", step, sub),
                }
            }
            Op::Bind {
                who,
                platform,
                mistyped,
            } => {
                let who = who % n;
                let p = &self.people[who];
                let Some((account, true)) = p.accounts[*platform].clone() else {
                    return Ok(Action::Skip("no verified account"));
                };
                let id_number = if *mistyped {
                    // Another resident's number: a well-formed but wrong ID number.
                    self.people[(who + 1) % n].id_number.to_sensitive()
                } else {
                    p.id_number.to_sensitive()
                };
                let request = BindRequest {
                    platform: PLATFORMS[*platform].clone(),
                    account,
                    card_number: p.card_number.clone(),
                    id_number,
                    consent: consent(&PLATFORMS[*platform]),
                };
                Action::Bind {
                    who,
                    platform: *platform,
                    key: self.next_key("bind", step, sub),
                    request: Box::new(request),
                }
            }
            Op::Unbind { who, platform } => {
                let who = who % n;
                let Some(binding) = self.people[who].bindings[*platform].clone() else {
                    return Ok(Action::Skip("not bound"));
                };
                Action::Unbind {
                    who,
                    platform: *platform,
                    binding,
                    key: self.next_key("unbind", step, sub),
                }
            }
            Op::ReportLost { who } | Op::ReportFound { who } | Op::Freeze { who, .. } => {
                let who = who % n;
                let change = match op {
                    Op::ReportLost { .. } => "lost",
                    Op::ReportFound { .. } => "found",
                    Op::Freeze { thaw: false, .. } => "freeze",
                    _ => "thaw",
                };
                Action::Status {
                    who,
                    card: self.people[who].card.clone(),
                    change,
                    key: self.next_key(change, step, sub),
                }
            }
            Op::Replace { who } => {
                let who = who % n;
                let p = &self.people[who];
                let number =
                    Sensitive::new(format!("3302{:02}{:010}", p.replacements + 1, who + 1));
                Action::Replace {
                    who,
                    card: p.card.clone(),
                    number,
                    key: self.next_key("replace", step, sub),
                }
            }
            Op::TopUp { who, yuan, payer } => {
                let who = who % n;
                let bound = (0..3).find(|&i| self.people[who].bindings[i].is_some());
                let (principal, via) = match payer {
                    Payer::Holder => (self.holder(who), Platform::Alipay),
                    Payer::Delegate => match self.delegate_principal(who) {
                        Some(p) => (p, Platform::Alipay),
                        None => (self.holder(who), Platform::Alipay),
                    },
                    Payer::Platform => match bound {
                        Some(i) => (
                            Principal::Platform {
                                platform: PLATFORMS[i].clone(),
                            },
                            PLATFORMS[i].clone(),
                        ),
                        None => (self.holder(who), Platform::WechatPay),
                    },
                    Payer::Counter => (operator(), Platform::Alipay),
                };
                Action::TopUp {
                    who,
                    card: self.people[who].card.clone(),
                    principal,
                    via,
                    amount: Money::from_yuan(*yuan),
                    key: self.next_key("topup", step, sub),
                }
            }
            Op::Refund { who, yuan } => {
                let who = who % n;
                Action::Refund {
                    who,
                    card: self.people[who].card.clone(),
                    amount: Money::from_yuan(*yuan),
                    key: self.next_key("refund", step, sub),
                }
            }
            Op::Ride {
                who,
                metro,
                stations,
                duplicate,
                lose_out,
            } => {
                let who = who % n;
                let card = *self.people[who].card_refs.last().ok_or("a card")?;
                let now = self.plan_now();
                let local = |t: DateTime<Utc>| {
                    t.with_timezone(
                        &FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| unreachable!()),
                    )
                    .format("%Y-%m-%dT%H:%M:%S+08:00")
                    .to_string()
                };
                let mut rows = Vec::new();
                if *metro {
                    let (from, to) = (STATION_IDS[stations.0], STATION_IDS[stations.1]);
                    rows.push(format!("{},in,metro,{from},,,1,{}", card.0, local(now)));
                    if *duplicate {
                        rows.push(rows[0].clone());
                    }
                    if !lose_out {
                        rows.push(format!(
                            "{},out,metro,{to},,,1,{}",
                            card.0,
                            local(now + Duration::minutes(25))
                        ));
                    }
                } else {
                    rows.push(format!(
                        "{},in,,,b7,{},2,{}",
                        card.0,
                        500 + who % 3,
                        local(now)
                    ));
                    if *duplicate {
                        rows.push(rows[0].clone());
                    }
                }
                Action::Taps {
                    who,
                    day: civil_date(now),
                    rows,
                }
            }
            Op::CodeRide {
                who,
                metro,
                stations,
                code,
            } => {
                let who = who % n;
                Action::CodeRide(CodeRide {
                    who,
                    card: *self.people[who].card_refs.last().ok_or("a card")?,
                    at: self.plan_now(),
                    metro: *metro,
                    stations: *stations,
                    code: *code,
                })
            }
            Op::Resume { pick } => {
                if self.uncertain.is_empty() {
                    return Ok(Action::Skip("nothing unresolved"));
                }
                self.uncertain[pick % self.uncertain.len()].clone()
            }
            Op::SettleDays => Action::Settle {
                days: self
                    .taps
                    .iter()
                    .map(|(day, rows)| {
                        let mut csv = format!(
                            "card,direction,network,stop,route,vehicle,reader,at,{CODE_COLUMNS}\n"
                        );
                        for r in rows {
                            csv.push_str(r);
                            // Card taps leave the ride-code columns empty.
                            if r.matches(',').count() == 7 {
                                csv.push_str(",,,,,,");
                            }
                            csv.push('\n');
                        }
                        (*day, csv)
                    })
                    .collect(),
            },
            Op::Book { who, clinic } => {
                let who = who % n;
                let date = civil_date(self.plan_now()) + Duration::days(1 + (*clinic as i64 % 3));
                let slot = format!("slot-c{clinic}-{}", date.format("%Y%m%d"));
                let principal = if self.people[who].kind == "elderly" {
                    self.delegate_principal(who)
                        .unwrap_or_else(|| self.holder(who))
                } else {
                    self.holder(who)
                };
                Action::Book {
                    who,
                    principal,
                    request: BookRequest {
                        slot: slot.parse().map_err(|e| format!("slot id: {e:?}"))?,
                        patient: self.people[who].person.clone(),
                        key: self.next_key("book", step, sub),
                        allow_waitlist: true,
                    },
                }
            }
            Op::Cancel { who } => {
                let who = who % n;
                let Some(appointment) = self.people[who].appointments.last().cloned() else {
                    return Ok(Action::Skip("no appointment"));
                };
                Action::Cancel { who, appointment }
            }
            Op::Bill { who, yuan } => {
                let who = who % n;
                let principal = if step.is_multiple_of(2) {
                    self.holder(who)
                } else {
                    operator()
                };
                Action::Bill {
                    who,
                    principal,
                    key: self.next_key("bill", step, sub),
                    request: Box::new(BillRequest {
                        patient: self.people[who].person.clone(),
                        hospital: HospitalId::parse("hsp-1").map_err(|e| e.to_string())?,
                        hospital_level: HospitalLevel::Community,
                        visit_type: VisitType::Outpatient,
                        // A catalogue drug (class A: the pooled fund pays
                        // part once past the deductible) and a class C
                        // item (self-paid), so bills split.
                        items: vec![
                            ChargeItem::new(
                                "drug",
                                CatalogueClass::A,
                                Money::from_yuan(1 + yuan * 2 / 3),
                                1,
                            ),
                            ChargeItem::new(
                                "consult",
                                CatalogueClass::C,
                                Money::from_yuan(1 + yuan / 10),
                                1,
                            ),
                        ],
                        cash_source: CashSource::EWallet,
                    }),
                }
            }
            Op::ReverseBill { who } => {
                let who = who % n;
                let Some(settlement) = self.people[who].bills.last().cloned() else {
                    return Ok(Action::Skip("no bill"));
                };
                Action::Reverse {
                    who,
                    settlement,
                    key: self.next_key("reverse", step, sub),
                }
            }
            Op::Query { who } => {
                let who = who % n;
                Action::Query {
                    who,
                    card: self.people[who].card.clone(),
                    bindings: self.people[who]
                        .bindings
                        .iter()
                        .flatten()
                        .cloned()
                        .collect(),
                }
            }
            Op::Delegation { who, revoke } => {
                let who = who % n;
                let p = self.people[who].clone();
                let Some(delegate) = p.delegate else {
                    return Ok(Action::Skip("no delegate"));
                };
                match (&p.grant, revoke) {
                    (Some(grant), true) => Action::Revoke {
                        who,
                        delegation: grant.clone(),
                        key: self.next_key("revoke", step, sub),
                    },
                    (None, false) => Action::Grant {
                        who,
                        key: self.next_key("grant", step, sub),
                        request: GrantDelegation {
                            cardholder: p.person.clone(),
                            delegate: self.people[delegate].person.clone(),
                            relation: Relation::Family,
                            scopes: [
                                DelegationScope::TopUp,
                                DelegationScope::ViewBalance,
                                DelegationScope::BookAppointments,
                            ]
                            .into_iter()
                            .collect(),
                            expires_at: start() + Duration::days(300),
                        },
                    },
                    _ => Action::Skip("delegation already in that state"),
                }
            }
            Op::Retry { pick } => {
                if self.acked.is_empty() {
                    return Ok(Action::Skip("nothing acknowledged yet"));
                }
                self.acked[pick % self.acked.len()].0.clone()
            }
            Op::Fault { port, kind } => Action::Fault(*port, *kind),
            Op::Clock { minutes } => Action::Clock(*minutes),
            Op::SettlePending => Action::SettlePending,
        })
    }

    /// Runs an action against the card system.
    pub async fn exec(&self, action: &Action) -> Outcome {
        let city = &self.city;
        match action {
            Action::Skip(_) => Outcome::Skipped,
            Action::Register {
                platform,
                external,
                key,
                verify_key,
                who,
            } => {
                let by = Principal::Platform {
                    platform: PLATFORMS[*platform].clone(),
                };
                let account = match city
                    .identity()
                    .register_account(&by, PLATFORMS[*platform].clone(), external, key)
                    .await
                {
                    Ok(a) => a,
                    Err(e) => return failed(&e),
                };
                let p = &self.people[*who];
                match city
                    .identity()
                    .verify_real_name(
                        &by,
                        &account.id,
                        &RealNameRequest::two_factor(&p.name, p.id_number.reveal()),
                        verify_key,
                    )
                    .await
                {
                    Ok(report) if report.level.is_verified() => Outcome::Registered(account.id),
                    Ok(_) => Outcome::Failed("not verified".into()),
                    Err(e) => failed(&e),
                }
            }
            Action::Bind {
                who, key, request, ..
            } => match city.cards().bind(&self.holder(*who), key, request).await {
                Ok(r) => Outcome::Bound(r.binding, r.state.code()),
                Err(e) => failed(&e),
            },
            Action::Unbind {
                who, binding, key, ..
            } => match city
                .cards()
                .unbind(&self.holder(*who), key, binding, RemovalReason::UserUnbound)
                .await
            {
                Ok(b) => Outcome::Unbound(b.id),
                Err(e) => failed(&e),
            },
            Action::Status {
                who,
                card,
                change,
                key,
            } => {
                let cards = city.cards();
                let holder = self.holder(*who);
                let result = match *change {
                    "lost" => cards.report_lost(&holder, key, card).await,
                    "found" => cards.report_found(&holder, key, card).await,
                    "freeze" => cards.freeze(&operator(), key, card).await,
                    _ => cards.unfreeze(&operator(), key, card).await,
                };
                match result {
                    Ok(c) => Outcome::StatusChanged(c.card.id),
                    Err(e) => failed(&e),
                }
            }
            Action::Replace {
                card, number, key, ..
            } => match city
                .replace_card(&operator(), key, card, number.expose())
                .await
            {
                Ok(change) => match change.new_card {
                    Some(new) => match CityCard::card_ref(&new) {
                        Ok(r) => Outcome::Replaced(new.id, r),
                        Err(e) => failed(&e),
                    },
                    None => Outcome::Failed("no new card".into()),
                },
                Err(e) => failed(&e),
            },
            Action::TopUp {
                card,
                principal,
                via,
                amount,
                key,
                ..
            } => match city
                .wallet()
                .top_up(principal, card, *amount, via, key)
                .await
            {
                Ok(r) => Outcome::Moved(r.transfer.to_string(), r.amount),
                Err(e) => failed(&e),
            },
            Action::Refund {
                card, amount, key, ..
            } => match city.wallet().refund(&operator(), card, *amount, key).await {
                Ok(r) => Outcome::Moved(r.transfer.to_string(), r.amount),
                Err(e) => failed(&e),
            },
            Action::Taps { .. } => Outcome::Tapped,
            Action::CodeRide(ride) => self.code_ride(ride).await,
            Action::Settle { days } => {
                let mut trips = 0;
                let mut charged = Money::ZERO;
                for (day, csv) in days {
                    let taps = match citycard::transit::taps_from_csv(city.transit().fares(), csv) {
                        Ok(t) => t,
                        Err(e) => return Outcome::Failed(format!("InvalidInput: {e}")),
                    };
                    match city
                        .transit()
                        .settlement()
                        .settle_day(&Principal::System, *day, taps)
                        .await
                    {
                        Ok(report) => {
                            trips += report.trips_settled;
                            charged = charged.checked_add(report.charged).unwrap_or(charged);
                        }
                        Err(e) => return failed(&e),
                    }
                }
                Outcome::Settled(trips, charged)
            }
            Action::Book {
                principal, request, ..
            } => {
                match city
                    .healthcare()
                    .appointments()
                    .book(principal, request)
                    .await
                {
                    Ok(b) => Outcome::Booked(b.appointment.id, b.appointment.status),
                    Err(e) => failed(&e),
                }
            }
            Action::Cancel { who, appointment } => match city
                .healthcare()
                .appointments()
                .cancel(&self.holder(*who), appointment, "plans changed")
                .await
            {
                Ok(_) => Outcome::Cancelled(appointment.clone()),
                Err(e) => failed(&e),
            },
            Action::Bill {
                who,
                principal,
                key,
                request,
            } => match city
                .healthcare()
                .billing()
                .settle(principal, key, request)
                .await
            {
                Ok(record) => {
                    let me = PaymentAccount::EWallet(self.people[*who].person.clone());
                    let mut share: i64 = 0;
                    for t in &record.transfers {
                        if t.from == me {
                            share += t.amount.fen();
                        }
                        if t.to == me {
                            share -= t.amount.fen();
                        }
                    }
                    Outcome::Billed(record.id, record.status, Money::from_fen(share))
                }
                Err(e) => failed(&e),
            },
            Action::Reverse {
                settlement, key, ..
            } => match city
                .healthcare()
                .billing()
                .reverse(&operator(), settlement, key)
                .await
            {
                Ok(record) => Outcome::Reversed(record.id),
                Err(e) => failed(&e),
            },
            Action::Query {
                who,
                card,
                bindings,
            } => {
                let me = self.holder(*who);
                let balance = match city.wallet().balance(&me, card).await {
                    Ok(b) => b,
                    Err(e) => return failed(&e),
                };
                let day = self.clock.now();
                if let Err(e) = city
                    .wallet()
                    .statement(&me, card, day - Duration::days(30), day + Duration::days(1))
                    .await
                {
                    return failed(&e);
                }
                let mut views = Vec::new();
                for b in bindings {
                    match city.cards().refresh_balance(&me, b).await {
                        Ok(view) => views.push(view.balance),
                        Err(e) => return failed(&e),
                    }
                }
                Outcome::Read(balance, views)
            }
            Action::Grant { who, key, request } => match city
                .cards()
                .grant_delegation(&self.holder(*who), key, request)
                .await
            {
                Ok(d) => Outcome::Granted(d.id),
                Err(e) => failed(&e),
            },
            Action::Revoke {
                who,
                delegation,
                key,
            } => match city
                .cards()
                .revoke_delegation(&self.holder(*who), key, delegation)
                .await
            {
                Ok(d) => Outcome::Revoked(d.id),
                Err(e) => failed(&e),
            },
            Action::Fault(port, kind) => {
                let fault = match kind {
                    FaultKind::Fail => Fault::Fail,
                    FaultKind::Timeout => Fault::Timeout,
                    FaultKind::LoseAnswer => Fault::UnknownOutcome,
                };
                match port {
                    Port::Verifier => self.faults.verifier.next("check_factors", fault),
                    Port::Wallet => self.faults.wallet.next("*", fault),
                    Port::Keys => self.faults.keys.next("*", fault),
                    Port::Payments => self.faults.payments.next("execute", fault),
                }
                Outcome::Done
            }
            Action::Clock(minutes) => {
                self.clock.advance(Duration::minutes(*minutes));
                Outcome::Done
            }
            Action::SettlePending => {
                match city.cards().settle_pending(&Principal::System, 100).await {
                    Ok(n) => Outcome::SettledPending(n),
                    Err(e) => failed(&e),
                }
            }
        }
    }

    /// Learns what an acknowledged operation did (`retry`: it repeats an earlier one).
    pub fn learn(&mut self, action: &Action, outcome: &Outcome, retry: bool) {
        if let Action::Taps { day, rows, .. } = action {
            self.taps
                .entry(*day)
                .or_default()
                .extend(rows.iter().cloned());
            return;
        }
        if let (Action::CodeRide(ride), Outcome::Coded(_, rows)) = (action, outcome) {
            self.taps
                .entry(civil_date(ride.at))
                .or_default()
                .extend(rows.0.iter().cloned());
            return;
        }
        if matches!(action, Action::Bill { .. } | Action::Reverse { .. }) {
            let unresolved = match outcome {
                // A refused payment failed the bill for good; anything else
                // failed may have moved money (or will, once retried).
                Outcome::Failed(e) => {
                    e.starts_with("Unavailable")
                        || (matches!(action, Action::Reverse { .. })
                            && e.contains("payment refused"))
                }
                _ => false,
            };
            let same = format!("{action:?}");
            self.uncertain.retain(|a| format!("{a:?}") != same);
            if unresolved {
                self.uncertain.push(action.clone());
            }
        }
        if !outcome.acknowledged() {
            return;
        }
        if action.retryable() && !retry {
            self.acked.push((action.clone(), outcome.clone()));
        }
        match (action, outcome) {
            (Action::Register { who, platform, .. }, Outcome::Registered(account)) => {
                self.people[*who].accounts[*platform] = Some((account.clone(), true));
            }
            (Action::Bind { who, platform, .. }, Outcome::Bound(binding, state)) => {
                if *state == BindingState::Active.code() || *state == BindingState::Pending.code() {
                    self.people[*who].bindings[*platform] = Some(binding.clone());
                }
            }
            (
                Action::Unbind {
                    who,
                    platform,
                    binding,
                    ..
                },
                Outcome::Unbound(_),
            ) => {
                if self.people[*who].bindings[*platform].as_ref() == Some(binding) {
                    self.people[*who].bindings[*platform] = None;
                }
            }
            (
                Action::Replace {
                    who, number, card, ..
                },
                Outcome::Replaced(new, card_ref),
            ) => {
                let p = &mut self.people[*who];
                if p.card == *card {
                    p.card = new.clone();
                    p.card_number = number.expose().clone();
                    p.replacements += 1;
                    if !p.card_refs.contains(card_ref) {
                        p.card_refs.push(*card_ref);
                    }
                    self.secrets.insert(number.expose().clone());
                }
            }
            (Action::TopUp { who, .. }, Outcome::Moved(id, amount)) => {
                self.movements
                    .entry(id.clone())
                    .or_insert((*who, amount.fen()));
            }
            (Action::Refund { who, .. }, Outcome::Moved(id, amount)) => {
                self.movements
                    .entry(id.clone())
                    .or_insert((*who, -amount.fen()));
            }
            (Action::Book { who, request, .. }, Outcome::Booked(id, status)) => {
                if matches!(
                    status,
                    AppointmentStatus::Booked | AppointmentStatus::Waitlist
                ) && !self.appointments.contains_key(id.as_str())
                {
                    self.appointments
                        .insert(id.to_string(), (request.slot.to_string(), *who, false));
                    self.people[*who].appointments.push(id.clone());
                }
            }
            (Action::Cancel { who, appointment }, Outcome::Cancelled(_)) => {
                if let Some(a) = self.appointments.get_mut(appointment.as_str()) {
                    a.2 = true;
                }
                self.people[*who].appointments.retain(|a| a != appointment);
            }
            (Action::Bill { who, .. }, Outcome::Billed(id, status, share)) => {
                // A resumed run's replay answers a bill as it stands now
                // (reversed since, perhaps): it was settled all the same.
                if matches!(
                    status,
                    SettlementStatus::Completed
                        | SettlementStatus::Reversing
                        | SettlementStatus::Reversed
                ) && !self.bills.contains_key(id.as_str())
                {
                    self.bills
                        .insert(id.to_string(), (*who, share.fen(), false));
                    self.people[*who].bills.push(id.clone());
                }
            }
            (
                Action::Reverse {
                    who, settlement, ..
                },
                Outcome::Reversed(_),
            ) => {
                if let Some(b) = self.bills.get_mut(settlement.as_str()) {
                    b.2 = true;
                }
                self.people[*who].bills.retain(|b| b != settlement);
            }
            (Action::Grant { who, .. }, Outcome::Granted(id)) => {
                self.people[*who].grant = Some(id.clone());
            }
            (
                Action::Revoke {
                    who, delegation, ..
                },
                Outcome::Revoked(_),
            ) => {
                if self.people[*who].grant.as_ref() == Some(delegation) {
                    self.people[*who].grant = None;
                }
            }
            _ => {}
        }
    }

    /// What each cardholder's wallets must hold, in fen: acknowledged
    /// top-ups less refunds, bills paid from the wallet (unless reversed)
    /// and fares charged at the last settlement.
    pub fn expected_wallets(&self) -> Vec<i64> {
        let mut out = vec![0i64; self.people.len()];
        for (who, fen) in self.movements.values() {
            out[*who] += fen;
        }
        for (who, share, reversed) in self.bills.values() {
            if !reversed {
                out[*who] -= share;
            }
        }
        for (who, fen) in &self.fares {
            out[*who] -= fen;
        }
        out
    }

    /// Every card reference of the city's cards, with its cardholder.
    pub fn card_refs(&self) -> BTreeMap<u64, usize> {
        let mut out = BTreeMap::new();
        for (i, p) in self.people.iter().enumerate() {
            for r in &p.card_refs {
                out.insert(r.0, i);
            }
        }
        out
    }

    /// The days with taps.
    pub fn tap_days(&self) -> BTreeSet<NaiveDate> {
        self.taps.keys().copied().collect()
    }
}
