//! Who may do what, through the facade: every public operation × every kind
//! of principal, with the expected answer per cell. Each cell runs on a fresh
//! world; a refused call must change no state (ledger accounts and transfers,
//! cards, bindings, grants, appointments, persons) and must leave a denial in
//! the audit log. Allowed reads of personal data by anyone but the system
//! are audited too.
//!
//! The file is long because the table is: a row of expectations and a run arm
//! per operation, and one world holding every kind of principal.

use std::sync::Arc;

use chrono::Duration;
use citycard::binding::{
    BindRequest, BindingId, CardId, ConsentInput, DataCategory, GrantDelegation, Relation,
    RemovalReason, Service,
};
use citycard::core::{
    AuditOutcome, AuditQuery, ClassifiedError, Clock, DelegationId, DelegationScope, ErrorClass,
    IdempotencyKey, ManualClock, Money, OperatorId, OperatorRole, PersonId, Platform,
    PlatformAccountId, Principal, Scopes, Sensitive, SequentialIdGenerator, civil_date,
};
use citycard::healthcare::{
    BillRequest, BookRequest, CashSource, CatalogueClass, ChargeItem, HospitalId, HospitalLevel,
    PatientIdentifier, PersonCategory, SlotId, VisitType,
};
use citycard::identity::{IdNumber, KnownPerson, RealNameRequest, RegionCode, Sex};
use citycard::ledger::{AccountId, AccountKind, NewAccount, NewTransfer, TransferId};
use citycard::{Accounts, CityCard, NewCitizenCard};

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::parse(text).expect("valid key")
}

fn operator(id: &str) -> Principal {
    Principal::Operator {
        operator: OperatorId::parse(id).expect("valid id"),
    }
}

/// The kinds of principal in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    System,
    OperatorWithRole,
    OperatorWithoutRole,
    Holder,
    OtherCardholder,
    Guardian,
    DelegateRightScope,
    DelegateWrongScope,
    DelegateExpired,
    DelegateRevoked,
    QuotingAnothersGrant,
    BoundPlatform,
    UnboundPlatform,
    OtherPlatformsBinding,
}

const EVERYONE: [Who; 14] = [
    Who::System,
    Who::OperatorWithRole,
    Who::OperatorWithoutRole,
    Who::Holder,
    Who::OtherCardholder,
    Who::Guardian,
    Who::DelegateRightScope,
    Who::DelegateWrongScope,
    Who::DelegateExpired,
    Who::DelegateRevoked,
    Who::QuotingAnothersGrant,
    Who::BoundPlatform,
    Who::UnboundPlatform,
    Who::OtherPlatformsBinding,
];

/// Every public operation of the facade that touches a person's things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    WalletBalance,
    WalletStatement,
    WalletTopUp,
    WalletRefund,
    IssueCard,
    ReplaceCard,
    ReportLost,
    CancelCard,
    ViewCard,
    CardsOf,
    ViewBinding,
    Unbind,
    GrantDelegation,
    RevokeDelegation,
    ListDelegations,
    LedgerTransfer,
    LedgerAccount,
    LedgerStatement,
    IdentityPerson,
    RealNameStatus,
    FindAccount,
    FindPersonByIdNumber,
    BookAppointment,
    BannedUntil,
    SocialSummary,
    QuoteBill,
    EnrollPerson,
    Freeze,
    WalletView,
    Capabilities,
    SettleBill,
    RefreshBalance,
    EnsureService,
    BindingsOfAccount,
    ReconcileCard,
    PutSlot,
    LedgerBalancesAt,
    LedgerExpirePending,
    LedgerCreateAccounts,
    IdentifyPatient,
    SettleDay,
}

const OPS: [Op; 41] = [
    Op::WalletBalance,
    Op::WalletStatement,
    Op::WalletTopUp,
    Op::WalletRefund,
    Op::IssueCard,
    Op::ReplaceCard,
    Op::ReportLost,
    Op::CancelCard,
    Op::ViewCard,
    Op::CardsOf,
    Op::ViewBinding,
    Op::Unbind,
    Op::GrantDelegation,
    Op::RevokeDelegation,
    Op::ListDelegations,
    Op::LedgerTransfer,
    Op::LedgerAccount,
    Op::LedgerStatement,
    Op::IdentityPerson,
    Op::RealNameStatus,
    Op::FindAccount,
    Op::FindPersonByIdNumber,
    Op::BookAppointment,
    Op::BannedUntil,
    Op::SocialSummary,
    Op::QuoteBill,
    Op::EnrollPerson,
    Op::Freeze,
    Op::WalletView,
    Op::Capabilities,
    Op::SettleBill,
    Op::RefreshBalance,
    Op::EnsureService,
    Op::BindingsOfAccount,
    Op::ReconcileCard,
    Op::PutSlot,
    Op::LedgerBalancesAt,
    Op::LedgerExpirePending,
    Op::LedgerCreateAccounts,
    Op::IdentifyPatient,
    Op::SettleDay,
];

impl Op {
    /// Whether the operation reads personal data (an allowed read by anyone
    /// but the system must be audited too); `EnsureService` only answers
    /// whether a service may be used.
    fn is_read(self) -> bool {
        matches!(
            self,
            Op::WalletBalance
                | Op::WalletStatement
                | Op::ViewCard
                | Op::CardsOf
                | Op::ViewBinding
                | Op::ListDelegations
                | Op::LedgerAccount
                | Op::LedgerStatement
                | Op::IdentityPerson
                | Op::RealNameStatus
                | Op::FindAccount
                | Op::FindPersonByIdNumber
                | Op::BannedUntil
                | Op::SocialSummary
                | Op::QuoteBill
                | Op::WalletView
                | Op::Capabilities
                | Op::RefreshBalance
                | Op::BindingsOfAccount
                | Op::LedgerBalancesAt
        )
    }

    /// The delegation scope the operation needs (what the "right scope" delegate holds).
    fn scope(self) -> DelegationScope {
        match self {
            Op::WalletBalance
            | Op::WalletStatement
            | Op::ViewCard
            | Op::CardsOf
            | Op::LedgerAccount
            | Op::WalletView
            | Op::RefreshBalance
            | Op::LedgerBalancesAt => DelegationScope::ViewBalance,
            Op::WalletTopUp | Op::WalletRefund => DelegationScope::TopUp,
            Op::ViewBinding
            | Op::ListDelegations
            | Op::LedgerStatement
            | Op::IdentityPerson
            | Op::RealNameStatus
            | Op::FindAccount
            | Op::FindPersonByIdNumber
            | Op::SocialSummary
            | Op::QuoteBill
            | Op::Capabilities
            | Op::SettleBill
            | Op::EnsureService
            | Op::BindingsOfAccount
            | Op::IdentifyPatient => DelegationScope::ViewRecords,
            Op::Unbind | Op::RevokeDelegation => DelegationScope::Unbind,
            Op::IssueCard
            | Op::ReplaceCard
            | Op::ReportLost
            | Op::CancelCard
            | Op::LedgerTransfer
            | Op::EnrollPerson
            | Op::Freeze
            | Op::ReconcileCard
            | Op::PutSlot
            | Op::LedgerExpirePending
            | Op::LedgerCreateAccounts
            | Op::SettleDay => DelegationScope::TopUp,
            Op::GrantDelegation => DelegationScope::Bind,
            Op::BookAppointment | Op::BannedUntil => DelegationScope::BookAppointments,
        }
    }

    /// The operator role the operation needs; `None` where any operator may
    /// (healthcare's facility staff are not the issuer's roles).
    fn role(self) -> Option<OperatorRole> {
        match self {
            Op::WalletTopUp
            | Op::WalletRefund
            | Op::LedgerTransfer
            | Op::LedgerExpirePending
            | Op::LedgerCreateAccounts
            | Op::SettleDay => Some(OperatorRole::Finance),
            Op::IssueCard
            | Op::ReplaceCard
            | Op::ReportLost
            | Op::CancelCard
            | Op::Unbind
            | Op::GrantDelegation
            | Op::RevokeDelegation
            | Op::EnrollPerson
            | Op::Freeze
            | Op::ReconcileCard => Some(OperatorRole::CardDesk),
            Op::WalletBalance
            | Op::WalletStatement
            | Op::ViewCard
            | Op::CardsOf
            | Op::ViewBinding
            | Op::ListDelegations
            | Op::LedgerAccount
            | Op::LedgerStatement
            | Op::IdentityPerson
            | Op::RealNameStatus
            | Op::FindAccount
            | Op::FindPersonByIdNumber
            | Op::WalletView
            | Op::Capabilities
            | Op::RefreshBalance
            | Op::EnsureService
            | Op::BindingsOfAccount
            | Op::LedgerBalancesAt => Some(OperatorRole::Auditor),
            Op::BookAppointment
            | Op::BannedUntil
            | Op::SocialSummary
            | Op::QuoteBill
            | Op::SettleBill
            | Op::PutSlot
            | Op::IdentifyPatient => None,
        }
    }

    /// Who is allowed (everyone else is refused).
    fn allowed(self) -> &'static [Who] {
        use Who::*;
        match self {
            Op::WalletBalance
            | Op::WalletTopUp
            | Op::Unbind
            | Op::ViewBinding
            | Op::WalletView
            | Op::Capabilities
            | Op::RefreshBalance
            | Op::EnsureService => &[
                System,
                OperatorWithRole,
                Holder,
                Guardian,
                DelegateRightScope,
                BoundPlatform,
            ],
            Op::WalletStatement
            | Op::ViewCard
            | Op::CardsOf
            | Op::LedgerAccount
            | Op::LedgerStatement
            | Op::LedgerBalancesAt => &[
                System,
                OperatorWithRole,
                Holder,
                Guardian,
                DelegateRightScope,
            ],
            Op::WalletRefund
            | Op::IssueCard
            | Op::ReplaceCard
            | Op::CancelCard
            | Op::LedgerTransfer
            | Op::FindPersonByIdNumber
            | Op::EnrollPerson
            | Op::Freeze
            | Op::ReconcileCard
            | Op::LedgerExpirePending
            | Op::LedgerCreateAccounts
            | Op::SettleDay => &[System, OperatorWithRole],
            Op::ReportLost | Op::RevokeDelegation | Op::ListDelegations | Op::IdentityPerson => {
                &[System, OperatorWithRole, Holder]
            }
            Op::GrantDelegation => &[Holder],
            Op::RealNameStatus | Op::BindingsOfAccount => {
                &[System, OperatorWithRole, Holder, BoundPlatform]
            }
            Op::FindAccount => &[System, OperatorWithRole, BoundPlatform],
            Op::BookAppointment | Op::BannedUntil | Op::SocialSummary => &[
                System,
                OperatorWithRole,
                OperatorWithoutRole,
                Holder,
                Guardian,
                DelegateRightScope,
            ],
            Op::QuoteBill | Op::SettleBill => {
                &[System, OperatorWithRole, OperatorWithoutRole, Holder]
            }
            Op::PutSlot | Op::IdentifyPatient => &[System, OperatorWithRole, OperatorWithoutRole],
        }
    }
}

/// The ID number of a person enrolled only by the table.
fn newcomer() -> IdNumber {
    IdNumber::generate(
        RegionCode::new(330106).expect("region"),
        chrono::NaiveDate::from_ymd_opt(1999, 9, 9).expect("date"),
        Sex::Male,
        99,
    )
    .expect("valid number")
}

struct Person {
    id: PersonId,
    id_number: IdNumber,
    name: String,
}

/// Grants of the son for the holder: one holding only each scope, one holding all but it.
struct SonGrants {
    only: Vec<(DelegationScope, DelegationId)>,
    all_but: Vec<(DelegationScope, DelegationId)>,
}

struct World {
    city: CityCard,
    holder: Person,
    other: Person,
    son: PersonId,
    guardian: PersonId,
    card: CardId,
    other_card: CardId,
    alipay_account: PlatformAccountId,
    alipay_binding: BindingId,
    grants: SonGrants,
    guardian_grant: DelegationId,
    expired_grant: DelegationId,
    revoked_grant: DelegationId,
}

async fn enrol(city: &CityCard, tag: &str, seq: u16, born: i32) -> Person {
    let id_number = IdNumber::generate(
        RegionCode::new(330106).expect("region"),
        chrono::NaiveDate::from_ymd_opt(born, 5, 1).expect("date"),
        Sex::Female,
        seq,
    )
    .expect("valid number");
    let name = format!("市民{tag}");
    let person = city
        .identity()
        .enroll_person(
            &Principal::System,
            &Sensitive::new(name.clone()),
            &id_number.to_sensitive(),
            &key(&format!("enrol-{tag}")),
        )
        .await
        .expect("enrols");
    Person {
        id: person.id,
        id_number,
        name,
    }
}

async fn issue(city: &CityCard, person: &Person, number: &str) -> CardId {
    city.issue_card(
        &Principal::System,
        &key(&format!("issue-{number}")),
        &NewCitizenCard {
            number: number.into(),
            kind: "standard".into(),
            holder: person.id.clone(),
            id_number: person.id_number.to_sensitive(),
            services: None,
        },
    )
    .await
    .expect("issues")
    .id
}

async fn bind(
    city: &CityCard,
    person: &Person,
    platform: Platform,
    external: &str,
    number: &str,
) -> (PlatformAccountId, BindingId) {
    city.simulated_verifier()
        .expect("simulated provider")
        .register(&person.id_number, KnownPerson::named(&person.name));
    let as_platform = Principal::Platform {
        platform: platform.clone(),
    };
    let account = city
        .identity()
        .register_account(
            &as_platform,
            platform.clone(),
            external,
            &key(&format!("reg-{external}")),
        )
        .await
        .expect("registers");
    city.identity()
        .verify_real_name(
            &as_platform,
            &account.id,
            &RealNameRequest::two_factor(&person.name, person.id_number.reveal()),
            &key(&format!("verify-{external}")),
        )
        .await
        .expect("verifies");
    let receipt = city
        .cards()
        .bind(
            &Principal::cardholder(person.id.clone()),
            &key(&format!("bind-{external}")),
            &BindRequest {
                platform,
                account: account.id.clone(),
                card_number: number.into(),
                id_number: person.id_number.to_sensitive(),
                consent: ConsentInput {
                    purpose: "use the citizen card on the platform".into(),
                    data_categories: [DataCategory::CardNumber, DataCategory::Balance].into(),
                    text_version: "2026-01".into(),
                    channel: "app".into(),
                },
            },
        )
        .await
        .expect("binds");
    (account.id, receipt.binding)
}

#[allow(clippy::too_many_arguments)]
async fn grant(
    city: &CityCard,
    grantor: &PersonId,
    cardholder: &PersonId,
    delegate: &PersonId,
    relation: Relation,
    scopes: Scopes,
    expires_in: Duration,
    tag: &str,
) -> DelegationId {
    city.cards()
        .grant_delegation(
            &Principal::cardholder(grantor.clone()),
            &key(&format!("grant-{tag}")),
            &GrantDelegation {
                cardholder: cardholder.clone(),
                delegate: delegate.clone(),
                relation,
                scopes,
                expires_at: city.clock().now() + expires_in,
            },
        )
        .await
        .expect("grants")
        .id
}

impl World {
    async fn new() -> World {
        let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0));
        let city = CityCard::builder()
            .in_memory()
            .clock(clock.clone())
            .id_generator(Arc::new(SequentialIdGenerator::new()))
            // No ride codes here: skip generating a signing key per world.
            .ride_code_issuer(citycard::transit::Issuer::new(
                citycard::DEFAULT_RIDE_CODE_ISSUER_ID,
            ))
            .build()
            .await
            .expect("builds");
        let roles = city.operator_roles();
        for (id, role) in [
            ("opr-desk", OperatorRole::CardDesk),
            ("opr-finance", OperatorRole::Finance),
            ("opr-auditor", OperatorRole::Auditor),
        ] {
            roles.grant(OperatorId::parse(id).expect("valid id"), role);
        }
        let holder = enrol(&city, "holder", 11, 1960).await;
        let other = enrol(&city, "other", 12, 1985).await;
        let son = enrol(&city, "son", 13, 1988).await.id;
        let guardian = enrol(&city, "guardian", 14, 1970).await.id;
        let card = issue(&city, &holder, "3301000000000101").await;
        let other_card = issue(&city, &other, "3301000000000102").await;
        let (alipay_account, alipay_binding) = bind(
            &city,
            &holder,
            Platform::Alipay,
            "2088-holder",
            "3301000000000101",
        )
        .await;
        bind(
            &city,
            &other,
            Platform::WechatPay,
            "wx-other",
            "3301000000000102",
        )
        .await;
        city.wallet()
            .top_up(
                &Principal::System,
                &card,
                Money::from_yuan(100),
                &Platform::Alipay,
                &key("seed-topup"),
            )
            .await
            .expect("tops up");
        city.social_insurance_records()
            .put_category(&holder.id, PersonCategory::Resident)
            .await
            .expect("category");
        let slot = citycard_testkit::healthcare::slot(
            "slot-1",
            "dep-1",
            civil_date(clock.now()) + Duration::days(1),
            10,
        );
        city.healthcare()
            .appointments()
            .put_slot(&Principal::System, slot)
            .await
            .expect("slot");

        // A grant that expires, then the clock moves past it.
        let expired_grant = grant(
            &city,
            &holder.id,
            &holder.id,
            &son,
            Relation::Family,
            Scopes::all(),
            Duration::minutes(30),
            "expired",
        )
        .await;
        clock.advance(Duration::hours(1));
        let revoked_grant = grant(
            &city,
            &holder.id,
            &holder.id,
            &son,
            Relation::Family,
            Scopes::all(),
            Duration::days(30),
            "revoked",
        )
        .await;
        city.cards()
            .revoke_delegation(
                &Principal::cardholder(holder.id.clone()),
                &key("revoke"),
                &revoked_grant,
            )
            .await
            .expect("revokes");
        let mut grants = SonGrants {
            only: Vec::new(),
            all_but: Vec::new(),
        };
        for scope in DelegationScope::ALL {
            let only = Scopes::NONE.with(scope);
            let all_but: Scopes = DelegationScope::ALL
                .into_iter()
                .filter(|s| *s != scope)
                .collect();
            let tag = format!("{scope:?}").to_lowercase();
            grants.only.push((
                scope,
                grant(
                    &city,
                    &holder.id,
                    &holder.id,
                    &son,
                    Relation::Family,
                    only,
                    Duration::days(30),
                    &format!("only-{tag}"),
                )
                .await,
            ));
            grants.all_but.push((
                scope,
                grant(
                    &city,
                    &holder.id,
                    &holder.id,
                    &son,
                    Relation::Family,
                    all_but,
                    Duration::days(30),
                    &format!("all-but-{tag}"),
                )
                .await,
            ));
        }
        city.guardianships()
            .register(guardian.clone(), holder.id.clone());
        let guardian_grant = grant(
            &city,
            &guardian,
            &holder.id,
            &guardian,
            Relation::Guardian,
            Scopes::all(),
            Duration::days(30),
            "guardian",
        )
        .await;
        World {
            city,
            holder,
            other,
            son,
            guardian,
            card,
            other_card,
            alipay_account,
            alipay_binding,
            grants,
            guardian_grant,
            expired_grant,
            revoked_grant,
        }
    }

    fn tomorrow(&self) -> chrono::NaiveDate {
        civil_date(self.city.clock().now()) + Duration::days(1)
    }

    fn bill(&self) -> BillRequest {
        BillRequest {
            patient: self.holder.id.clone(),
            hospital: HospitalId::parse("hsp-1").expect("id"),
            hospital_level: HospitalLevel::Community,
            visit_type: VisitType::Outpatient,
            items: vec![ChargeItem::new(
                "consult",
                CatalogueClass::A,
                Money::from_yuan(20),
                1,
            )],
            cash_source: CashSource::EWallet,
        }
    }

    async fn wallet_account(&self) -> citycard::ledger::AccountId {
        let card = self
            .city
            .cards()
            .card(&Principal::System, &self.card)
            .await
            .expect("card");
        Accounts::wallet(&card.number)
    }

    fn son_grant(
        &self,
        list: &[(DelegationScope, DelegationId)],
        scope: DelegationScope,
    ) -> DelegationId {
        list.iter()
            .find(|(s, _)| *s == scope)
            .map(|(_, id)| id.clone())
            .expect("a grant per scope")
    }

    fn principal(&self, who: Who, op: Op) -> Principal {
        let delegate =
            |delegate: &PersonId, delegation: DelegationId, scopes: Scopes| Principal::Delegate {
                delegate: delegate.clone(),
                on_behalf_of: self.holder.id.clone(),
                delegation,
                scopes,
            };
        let scope = op.scope();
        match who {
            Who::System => Principal::System,
            Who::OperatorWithRole => operator(match op.role() {
                Some(OperatorRole::Finance) => "opr-finance",
                Some(OperatorRole::Auditor) => "opr-auditor",
                _ => "opr-desk",
            }),
            Who::OperatorWithoutRole => operator("opr-nobody"),
            Who::Holder => Principal::cardholder(self.holder.id.clone()),
            Who::OtherCardholder => Principal::cardholder(self.other.id.clone()),
            Who::Guardian => delegate(&self.guardian, self.guardian_grant.clone(), Scopes::all()),
            Who::DelegateRightScope => delegate(
                &self.son,
                self.son_grant(&self.grants.only, scope),
                Scopes::NONE.with(scope),
            ),
            // Claims every scope; the stored grant holds all but the one needed.
            Who::DelegateWrongScope => delegate(
                &self.son,
                self.son_grant(&self.grants.all_but, scope),
                Scopes::all(),
            ),
            Who::DelegateExpired => delegate(&self.son, self.expired_grant.clone(), Scopes::all()),
            Who::DelegateRevoked => delegate(&self.son, self.revoked_grant.clone(), Scopes::all()),
            // Another person quotes the son's grant for exactly this scope.
            Who::QuotingAnothersGrant => delegate(
                &self.other.id,
                self.son_grant(&self.grants.only, scope),
                Scopes::all(),
            ),
            Who::BoundPlatform => Principal::Platform {
                platform: Platform::Alipay,
            },
            Who::UnboundPlatform => Principal::Platform {
                platform: Platform::UnionPay,
            },
            Who::OtherPlatformsBinding => Principal::Platform {
                platform: Platform::WechatPay,
            },
        }
    }

    /// Runs `op` as `principal`; `Err` carries the error's class and text.
    async fn run(&self, op: Op, principal: &Principal) -> Result<(), (ErrorClass, String)> {
        fn fail<E: ClassifiedError + std::fmt::Display>(e: E) -> (ErrorClass, String) {
            (e.class(), e.to_string())
        }
        let city = &self.city;
        let holder = &self.holder.id;
        let now = city.clock().now();
        let via = match principal {
            Principal::Platform { platform } => platform.clone(),
            _ => Platform::Alipay,
        };
        match op {
            Op::WalletBalance => city
                .wallet()
                .balance(principal, &self.card)
                .await
                .map(drop)
                .map_err(fail),
            Op::WalletStatement => city
                .wallet()
                .statement(principal, &self.card, now - Duration::days(1), now)
                .await
                .map(drop)
                .map_err(fail),
            Op::WalletTopUp => city
                .wallet()
                .top_up(
                    principal,
                    &self.card,
                    Money::from_yuan(5),
                    &via,
                    &key("t-topup"),
                )
                .await
                .map(drop)
                .map_err(fail),
            Op::WalletRefund => city
                .wallet()
                .refund(principal, &self.card, Money::from_yuan(5), &key("t-refund"))
                .await
                .map(drop)
                .map_err(fail),
            Op::IssueCard => city
                .issue_card(
                    principal,
                    &key("t-issue"),
                    &NewCitizenCard {
                        number: "3301000000000199".into(),
                        kind: "standard".into(),
                        holder: holder.clone(),
                        id_number: self.holder.id_number.to_sensitive(),
                        services: None,
                    },
                )
                .await
                .map(drop)
                .map_err(fail),
            Op::ReplaceCard => city
                .replace_card(principal, &key("t-replace"), &self.card, "3301000000000198")
                .await
                .map(drop)
                .map_err(fail),
            Op::ReportLost => city
                .cards()
                .report_lost(principal, &key("t-lost"), &self.card)
                .await
                .map(drop)
                .map_err(fail),
            Op::CancelCard => city
                .cards()
                .cancel_card(principal, &key("t-cancel"), &self.card)
                .await
                .map(drop)
                .map_err(fail),
            Op::ViewCard => city
                .cards()
                .card(principal, &self.card)
                .await
                .map(drop)
                .map_err(fail),
            Op::CardsOf => city
                .cards()
                .cards_of(principal, holder)
                .await
                .map(drop)
                .map_err(fail),
            Op::ViewBinding => city
                .cards()
                .binding(principal, &self.alipay_binding)
                .await
                .map(drop)
                .map_err(fail),
            Op::Unbind => city
                .cards()
                .unbind(
                    principal,
                    &key("t-unbind"),
                    &self.alipay_binding,
                    // A platform unbinds only when its account closed.
                    if matches!(principal, Principal::Platform { .. }) {
                        RemovalReason::AccountClosed
                    } else {
                        RemovalReason::UserUnbound
                    },
                )
                .await
                .map(drop)
                .map_err(fail),
            Op::GrantDelegation => city
                .cards()
                .grant_delegation(
                    principal,
                    &key("t-grant"),
                    &GrantDelegation {
                        cardholder: holder.clone(),
                        delegate: self.other.id.clone(),
                        relation: Relation::Family,
                        scopes: Scopes::NONE.with(DelegationScope::ViewBalance),
                        expires_at: now + Duration::days(7),
                    },
                )
                .await
                .map(drop)
                .map_err(fail),
            Op::RevokeDelegation => city
                .cards()
                .revoke_delegation(
                    principal,
                    &key("t-revoke"),
                    &self.son_grant(&self.grants.only, DelegationScope::Unbind),
                )
                .await
                .map(drop)
                .map_err(fail),
            Op::ListDelegations => city
                .cards()
                .delegations(principal, holder)
                .await
                .map(drop)
                .map_err(fail),
            Op::LedgerTransfer => {
                let account = self.wallet_account().await;
                let drain = NewTransfer::new(
                    TransferId::new(4242),
                    account,
                    Accounts::clearing(&Platform::WechatPay),
                    Money::from_yuan(50),
                    1,
                );
                city.ledger()
                    .create_transfers(principal, vec![drain])
                    .await
                    .map(drop)
                    .map_err(fail)
            }
            Op::LedgerAccount | Op::LedgerStatement => {
                let account = self.wallet_account().await;
                if op == Op::LedgerAccount {
                    city.ledger()
                        .account(principal, account)
                        .await
                        .map(drop)
                        .map_err(fail)
                } else {
                    city.ledger()
                        .statement(principal, account, now - Duration::days(1), now)
                        .await
                        .map(drop)
                        .map_err(fail)
                }
            }
            Op::IdentityPerson => city
                .identity()
                .person(principal, holder)
                .await
                .map(drop)
                .map_err(fail),
            Op::RealNameStatus => city
                .identity()
                .real_name_status(principal, &self.alipay_account)
                .await
                .map(drop)
                .map_err(fail),
            Op::FindAccount => city
                .identity()
                .find_account(principal, &Platform::Alipay, "2088-holder")
                .await
                .map(drop)
                .map_err(fail),
            Op::FindPersonByIdNumber => city
                .identity()
                .find_person_by_id_number(principal, &self.holder.id_number)
                .await
                .map(drop)
                .map_err(fail),
            Op::BookAppointment => city
                .healthcare()
                .appointments()
                .book(
                    principal,
                    &BookRequest {
                        slot: SlotId::parse("slot-1").expect("slot id"),
                        patient: holder.clone(),
                        key: key("t-book"),
                        allow_waitlist: false,
                    },
                )
                .await
                .map(drop)
                .map_err(fail),
            Op::BannedUntil => city
                .healthcare()
                .appointments()
                .banned_until(principal, holder)
                .await
                .map(drop)
                .map_err(fail),
            Op::SocialSummary => city
                .healthcare()
                .social_insurance()
                .summary(principal, holder)
                .await
                .map(drop)
                .map_err(fail),
            Op::QuoteBill => city
                .healthcare()
                .billing()
                .quote(principal, &self.bill())
                .await
                .map(drop)
                .map_err(fail),
            Op::SettleBill => city
                .healthcare()
                .billing()
                .settle(principal, &key("t-bill"), &self.bill())
                .await
                .map(drop)
                .map_err(fail),
            Op::EnrollPerson => city
                .identity()
                .enroll_person(
                    principal,
                    &Sensitive::new("市民新".into()),
                    &newcomer().to_sensitive(),
                    &key("t-enrol"),
                )
                .await
                .map(drop)
                .map_err(fail),
            Op::Freeze => city
                .cards()
                .freeze(principal, &key("t-freeze"), &self.card)
                .await
                .map(drop)
                .map_err(fail),
            Op::WalletView => city
                .cards()
                .wallet_view(principal, &self.alipay_binding)
                .await
                .map(drop)
                .map_err(fail),
            Op::Capabilities => city
                .cards()
                .capabilities(principal, &self.alipay_binding)
                .await
                .map(drop)
                .map_err(fail),
            Op::RefreshBalance => city
                .cards()
                .refresh_balance(principal, &self.alipay_binding)
                .await
                .map(drop)
                .map_err(fail),
            Op::EnsureService => city
                .cards()
                .ensure_service(principal, &self.alipay_binding, &Service::Transit)
                .await
                .map(drop)
                .map_err(fail),
            Op::BindingsOfAccount => city
                .cards()
                .bindings_of_account(principal, &Platform::Alipay, &self.alipay_account)
                .await
                .map(drop)
                .map_err(fail),
            Op::ReconcileCard => city
                .cards()
                .reconcile_card(principal, &self.card)
                .await
                .map(drop)
                .map_err(fail),
            Op::PutSlot => city
                .healthcare()
                .appointments()
                .put_slot(
                    principal,
                    citycard_testkit::healthcare::slot("slot-2", "dep-1", self.tomorrow(), 5),
                )
                .await
                .map_err(fail),
            Op::LedgerBalancesAt => {
                let account = self.wallet_account().await;
                city.ledger()
                    .balances_at(principal, account, now)
                    .await
                    .map(drop)
                    .map_err(fail)
            }
            Op::LedgerExpirePending => city
                .ledger()
                .expire_pending(principal)
                .await
                .map(drop)
                .map_err(fail),
            Op::LedgerCreateAccounts => city
                .ledger()
                .create_accounts(
                    principal,
                    vec![NewAccount::new(
                        AccountId::new(4343),
                        AccountKind::TOP_UP_CLEARING,
                    )],
                )
                .await
                .map(drop)
                .map_err(fail),
            Op::SettleDay => {
                // One bus ride of the holder's card: settling it charges a fare.
                let card = city
                    .cards()
                    .card(&Principal::System, &self.card)
                    .await
                    .expect("card");
                let network = city.transit().fares().network();
                let tap = citycard::transit::Tap {
                    card: CityCard::card_ref(&card).expect("card ref"),
                    direction: citycard::transit::TapDirection::In,
                    place: citycard::transit::TapPlace::Vehicle {
                        route: network.route("b7").expect("bus 7"),
                        vehicle: 7,
                        stop: None,
                    },
                    reader: 1,
                    at: now - Duration::hours(1),
                    code: None,
                    medium: citycard_transit::Medium::Card,
                };
                city.transit()
                    .settlement()
                    .settle_day(principal, civil_date(tap.at), vec![tap])
                    .await
                    .map(drop)
                    .map_err(fail)
            }
            Op::IdentifyPatient => city
                .healthcare()
                .billing()
                .identify(
                    principal,
                    &PatientIdentifier::IdNumber(self.holder.id_number.to_sensitive()),
                )
                .await
                .map(drop)
                .map_err(fail),
        }
    }

    /// Everything a refused call must leave as it was, read as the system.
    async fn snapshot(&self) -> String {
        let city = &self.city;
        let sys = Principal::System;
        let ledger = city
            .ledger()
            .inspect(|e| {
                let accounts: Vec<String> = e.accounts().map(|a| format!("{a:?}")).collect();
                (accounts, e.transfer_count())
            })
            .await
            .expect("ledger");
        let mut cards = Vec::new();
        for person in [&self.holder.id, &self.other.id] {
            cards.push(format!(
                "{:?}",
                city.cards().cards_of(&sys, person).await.expect("cards")
            ));
            cards.push(format!(
                "{:?}",
                city.cards()
                    .delegations(&sys, person)
                    .await
                    .expect("grants")
            ));
            cards.push(format!(
                "{:?}",
                city.appointment_store()
                    .patient_appointments(person)
                    .await
                    .expect("appointments")
            ));
            cards.push(format!(
                "{:?}",
                city.identity().person(&sys, person).await.expect("person")
            ));
        }
        let bindings = format!(
            "{:?} {:?}",
            city.cards()
                .bindings_of_account(&sys, &Platform::Alipay, &self.alipay_account)
                .await
                .expect("bindings"),
            city.cards()
                .card(&sys, &self.other_card)
                .await
                .expect("card"),
        );
        let slots = city
            .healthcare()
            .appointments()
            .slots(&sys, &"dep-1".parse().expect("id"), self.tomorrow())
            .await
            .expect("slots");
        let newcomer = city
            .identity()
            .find_person_by_id_number(&sys, &newcomer())
            .await
            .expect("lookup");
        format!("{ledger:?}\n{cards:?}\n{bindings}\n{newcomer:?}\n{slots:?}")
    }

    async fn audited(&self, outcome: AuditOutcome) -> Vec<Principal> {
        self.city
            .audit()
            .query(&AuditQuery::all())
            .await
            .expect("audit")
            .into_iter()
            .filter(|e| e.record.outcome == outcome)
            .map(|e| e.record.actor)
            .collect()
    }
}

/// Runs one cell on a fresh world; `Some` describes how it differs from the table.
async fn cell(op: Op, who: Who) -> Option<String> {
    let expect_allowed = op.allowed().contains(&who);
    let world = World::new().await;
    let principal = world.principal(who, op);
    let before = world.snapshot().await;
    let denials_before = world.audited(AuditOutcome::Denied).await.len();
    let reads_before = world.audited(AuditOutcome::Succeeded).await.len();
    let result = world.run(op, &principal).await;
    match (&result, expect_allowed) {
        (Ok(()), true) => {
            let reads = world.audited(AuditOutcome::Succeeded).await;
            (op.is_read() && who != Who::System && !reads[reads_before..].contains(&principal))
                .then(|| format!("{op:?} × {who:?}: read without an audit record"))
        }
        (Err((ErrorClass::Denied, _)), false) => {
            if world.snapshot().await != before {
                return Some(format!("{op:?} × {who:?}: refused but state changed"));
            }
            let denials = world.audited(AuditOutcome::Denied).await;
            (!denials[denials_before..].contains(&principal))
                .then(|| format!("{op:?} × {who:?}: refused without an audit record"))
        }
        (result, expected) => Some(format!(
            "{op:?} × {who:?}: expected {}, got {result:?}",
            if expected { "allowed" } else { "denied" }
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_every_principal_as_the_table_says() {
    let mut cells = tokio::task::JoinSet::new();
    for op in OPS {
        for who in EVERYONE {
            cells.spawn(cell(op, who));
        }
    }
    let mut ran = 0;
    let mut mismatches = Vec::new();
    while let Some(outcome) = cells.join_next().await {
        ran += 1;
        mismatches.extend(outcome.expect("the cell ran"));
    }
    assert_eq!(ran, OPS.len() * EVERYONE.len());
    mismatches.sort();
    assert!(
        mismatches.is_empty(),
        "{} of {ran} cells differ from the table:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
