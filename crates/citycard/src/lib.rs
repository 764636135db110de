//! # citycard
//!
//! The facade that wires every citycard crate into one card system, and the
//! `citycard` command. A host builds a [`CityCard`], choosing the storage
//! (one SQLite file, or memory) and plugging in its own adapters for the
//! outside world (real-name provider, platform card wallet, key provider,
//! clock, ids) or taking the clearly named simulated ones. The glue between
//! domains lives in [`glue`] and nowhere else.
//!
//! ```
//! use std::sync::Arc;
//! use citycard::{CityCard, NewCitizenCard};
//! use citycard::core::{
//!     IdempotencyKey, ManualClock, Money, OperatorId, OperatorRole, OperatorRoles, Platform,
//!     Principal, Sensitive,
//! };
//! use citycard::identity::{IdNumber, RegionCode, Sex};
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! // Operators' roles come from the host's registry, never from the caller.
//! let roles = Arc::new(OperatorRoles::new());
//! roles.grant(OperatorId::parse("opr-1").unwrap(), OperatorRole::CardDesk);
//! let city = CityCard::builder()
//!     .in_memory()
//!     .clock(Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0)))
//!     .operator_roles(roles)
//!     .build()
//!     .await?;
//! let key = |k: &str| IdempotencyKey::parse(k).unwrap();
//!
//! // The issuer enrols a cardholder at the counter and issues a card.
//! let operator = Principal::Operator { operator: OperatorId::parse("opr-1").unwrap() };
//! let id_number = IdNumber::generate(
//!     RegionCode::new(330106).unwrap(),
//!     chrono::NaiveDate::from_ymd_opt(1990, 3, 7).unwrap(),
//!     Sex::Female,
//!     1,
//! ).unwrap();
//! let person = city.identity()
//!     .enroll_person(&operator, &Sensitive::new("李娜".into()), &id_number.to_sensitive(), &key("enrol-1"))
//!     .await?;
//! let card = city.issue_card(&operator, &key("issue-1"), &NewCitizenCard {
//!     number: "3301000011112222".into(),
//!     kind: "standard".into(),
//!     holder: person.id.clone(),
//!     id_number: id_number.to_sensitive(),
//!     services: None,
//! }).await?;
//!
//! // She tops up ¥50 through Alipay; a retry with the same key changes nothing.
//! let me = Principal::cardholder(person.id.clone());
//! for _ in 0..2 {
//!     city.wallet().top_up(&me, &card.id, Money::from_yuan(50), &Platform::Alipay, &key("topup-1")).await?;
//! }
//! assert_eq!(city.wallet().balance(&me, &card.id).await?, Money::from_yuan(50));
//!
//! // Over the ¥1,000 cap of a transit wallet, the error says how much still fits.
//! let err = city.wallet()
//!     .top_up(&me, &card.id, Money::from_yuan(1_000), &Platform::Alipay, &key("topup-2"))
//!     .await
//!     .unwrap_err();
//! assert!(err.to_string().contains("top up at most 950.00"));
//! # Ok::<(), citycard::CityCardError>(())
//! # }).unwrap();
//! ```
//!
//! ## Who may do what
//!
//! Every operation names its principal. Delegates are checked against the
//! stored grant by one [`core::GrantVerifier`] (the binding crate's
//! [`binding::StoredGrants`]), wired into the card service, the wallet, the
//! ledger and healthcare. Operators' roles are looked up in the
//! [`core::OperatorRoles`] registry given to
//! [`CityCardBuilder::operator_roles`] (or reached later through
//! [`CityCard::operator_roles`]); an operator the registry does not know has
//! no role, so a host grants its counter staff [`core::OperatorRole::CardDesk`],
//! its finance staff `Finance` and its auditors `Auditor`. Healthcare's
//! facility staff are not the issuer's roles: any operator acts there. A
//! platform's rights on a card's wallet rest on a live binding of that card
//! on that platform. Refusals, and reads of personal data by anyone but the
//! system, are audited. `tests/authorization.rs` holds the whole table.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod accounts;
pub mod demo;
mod error;
pub mod glue;
pub mod group_audit;
mod issue;
pub mod keys;
pub mod recovery;
pub mod riders;
mod system;
pub mod unit;
mod wallet;
pub mod words;

pub use accounts::Accounts;
pub use error::CityCardError;
pub use system::{
    CityCard, CityCardBuilder, DEFAULT_RIDE_CODE_ISSUER_ID, Healthcare, ISSUE_CHUNK, IssueReport,
    NewCitizenCard, Storage, Transit,
};
pub use wallet::{WalletReceipt, WalletService};

pub use citycard_binding as binding;
pub use citycard_core as core;
pub use citycard_healthcare as healthcare;
pub use citycard_identity as identity;
pub use citycard_ledger as ledger;
pub use citycard_sqlite as sqlite;
pub use citycard_transit as transit;
