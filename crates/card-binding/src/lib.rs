//! # citycard-binding
//!
//! Citizen cards on the issuer side (issue, report lost, found, freeze,
//! replace, cancel) and their bindings to payment-platform accounts on the
//! platform side: the binding flow with consent, the card-wallet pass, family
//! delegation, and the failures a user meets with what to do next.
//!
//! Each failure has words for the cardholder in Chinese and English
//! ([`BindingError::user_message`] with a [`Lang`]): the problem and the next
//! step, without codes or ids; `Display` stays the one-line English text for
//! logs and developers.
//!
//! The crate needs identity and the ledger only through ports defined here
//! ([`RealNameCheck`], [`IdNumberIndex`], [`CardFunds`], [`BalanceSource`]);
//! the facade implements them. [`CardIssuer`] and [`PlatformWallet`] are the
//! issuer's check and the platform's card wallet (卡包); [`RegistryCardIssuer`]
//! and [`SimulatedWallet`] are in-process implementations.
//!
//! ```
//! use std::sync::Arc;
//! use citycard_binding::*;
//! use citycard_core::*;
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0));
//! let index = KeyedHashIndex::new(b"demo key");
//! let real_names = Arc::new(StaticRealNames::new(index.clone()));
//! // One registry: cards, bindings and grants commit together with their audit records.
//! let core = MemoryCore::new();
//! let registry = MemoryCardRegistry::with_core(core.clone());
//! let cards: Arc<dyn CardStore> = Arc::new(registry.cards());
//! let wallet = Arc::new(SimulatedWallet::new());
//! let funds = Arc::new(MemoryFunds::new(clock.clone()));
//! let service = CardService::new(
//!     CardPorts {
//!         cards: cards.clone(),
//!         bindings: Arc::new(registry.bindings()),
//!         delegations: Arc::new(registry.delegations()),
//!         changes: Arc::new(registry.clone()),
//!         idempotency: core.idempotency(),
//!         audit: core.audit(),
//!         clock: clock.clone(),
//!         ids: Arc::new(SequentialIdGenerator::new()),
//!         real_names: real_names.clone(),
//!         id_index: Arc::new(index.clone()),
//!         issuer: Arc::new(RegistryCardIssuer::new(cards, Arc::new(index))),
//!         wallet: wallet.clone(),
//!         funds: funds.clone(),
//!         balances: funds,
//!     },
//!     BindingConfig::default(),
//! );
//!
//! // The issuer issues a card; the holder's Alipay account is real-name verified.
//! let holder = PersonId::parse("psn-li")?;
//! let id_number = Sensitive::new("330106199003071234".to_string());
//! real_names.add_person(&holder, &id_number);
//! let account = PlatformAccountId::parse("pac-2088")?;
//! real_names.verify_account(&Platform::Alipay, &account, &holder);
//! let operator = Principal::Operator { operator: OperatorId::parse("opr-1")? };
//! let card = service.issue_card(&operator, &"issue-1".parse()?, &IssueCard {
//!     number: "3301000012345678".into(),
//!     kind: "standard".into(),
//!     holder: holder.clone(),
//!     id_number: id_number.clone(),
//!     wallet_account: WalletAccountRef::parse("wac-1")?,
//!     services: None,
//!     platforms: None,
//! }).await?;
//!
//! // The holder binds it from the Alipay app.
//! let request = BindRequest {
//!     platform: Platform::Alipay,
//!     account,
//!     card_number: "3301 0000 1234 5678".into(),
//!     id_number,
//!     consent: ConsentInput {
//!         purpose: "use the citizen card in Alipay".into(),
//!         data_categories: [DataCategory::CardNumber, DataCategory::Balance].into(),
//!         text_version: "2026-01".into(),
//!         channel: "alipay_app".into(),
//!     },
//! };
//! let me = Principal::cardholder(holder);
//! let receipt = service.bind(&me, &"bind-1".parse()?, &request).await?;
//! assert_eq!(receipt.state, BindingState::Active);
//! assert!(receipt.services.contains(&Service::Transit));
//! assert_eq!(wallet.passes().len(), 1);
//!
//! // A lost card suspends the binding and its pass.
//! service.report_lost(&me, &"lost-1".parse()?, &card.id).await?;
//! let err = service.ensure_service(&me, &receipt.binding, &Service::Transit).await.unwrap_err();
//! assert!(matches!(err, BindingError::CardNotActive { .. }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! ## Decide, then commit
//!
//! Every state change gathers what it needs (reads and remote checks),
//! decides purely ([`decide`]) and commits one [`CardChanges`] with its
//! audit records and idempotency outcome on the [`CardChangeStore`]: one
//! write transaction per operation, and per saga step of binding (the
//! pending binding with its consent before the wallet is called; the
//! activation with the request's outcome after). Preconditions (free ids and
//! numbers, one live binding per card and account, the versions read) are
//! the store's to check; a refused commit is read again and decided again,
//! at most [`CAS_ATTEMPTS`] times. Idempotent operations take no claim: the
//! outcome commits with the effect, so a crash leaves all of it or none.
//!
//! ## Design decisions not fixed by the design document
//!
//! - **Claims of earlier versions.** Operations no longer claim keys; a claim
//!   an earlier version left in progress makes a retry wait while its lease
//!   runs, then counts as free: the decision reads the effect back and the
//!   outcome committed with it completes the claim.
//! - **Card events carry their bindings' versions.** A card event commits the
//!   card with every settled binding moved to follow it and expects the
//!   pending ones unchanged; an activation expects the card's version. So a
//!   concurrent activation and card event conflict, and the loser decides
//!   again on what the winner wrote. A replayed card event syncs its
//!   bindings' passes again (idempotent), which finishes a sync a crash cut.
//!
//! - **Ids vs. numbers.** A card has an internal [`CardId`] and a printed
//!   [`CardNumber`]; the number format is data ([`CardRules`], embedded from
//!   `data/card_rules.json`, replaceable by the host).
//! - **Blind index only.** The registry keeps the holder's ID number only as
//!   a [`BlindIndex`] from [`IdNumberIndex`]; idempotency fingerprints of a
//!   bind request use the blind index too, never the number. The card number
//!   in a fingerprint (bind, issue, replace) is a keyed digest under the same
//!   key ([`IdNumberIndex::keyed_digest`]): card numbers come from a space of
//!   about 10^6, so a plain hash in the idempotency table would give them back.
//! - **Step order.** Steps run in the issue's order 1–6. An unknown card
//!   number answers "details do not match", like a wrong ID number, and
//!   counts toward the per-account mismatch limit.
//! - **Replayed answers.** Definitive refusals are stored under the
//!   idempotency key and replayed; "processing", "retry later" and "too many
//!   attempts" are not, so a retry with the same key resumes the same pending
//!   binding (same pass serial).
//! - **Settling.** Wallet writes are retried with the same serial; an
//!   ambiguous failure is resolved by reading the pass back. If the pass is
//!   still not confirmed after the configured attempts, the flow compensates
//!   by removing the pass (idempotent) and marking the binding removed
//!   (`binding_failed`); if even that cannot be confirmed, the binding stays
//!   pending and the caller gets "processing". One process settles a given
//!   binding at a time (an in-process guard); hosts running several
//!   instances route [`CardService::settle_pending`] to one of them.
//! - **Card events vs. concurrent binds.** A binding activated on a card that
//!   changed while the flow ran follows the card (suspended, moved to the
//!   replacement, or removed) in the same commit as its activation.
//! - **Replacement** moves each binding to the new card with a new pass
//!   serial: the old pass is removed (`card_replaced`) and a new one added.
//!   Serials are derived from (binding, card) ([`PassSerial::derive`]), so
//!   any later sync can still remove the pass of an earlier card. A binding
//!   left pending on the old card that would collide with a newer live
//!   binding on the new card is removed as superseded.
//! - **Replacement and cancellation** move money first (idempotent on the
//!   request's key), then change the card, so a retry with the same key
//!   finishes a half-done operation; [`CardService::reconcile_card`]
//!   re-applies a card's state to its bindings after a failed propagation.
//! - **Delegates** act only with a scope both claimed by the acting
//!   [`Principal::Delegate`](citycard_core::Principal) and held by the stored
//!   grant, which must be live (not expired, not revoked).
//! - **Wallet failures during card events** never block the card event: the
//!   binding state changes, and the binding is listed in
//!   [`CardChange::passes_unsynced`] for [`CardService::resync_pass`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod changes;
pub mod decide;
pub mod error;
pub mod memory;
pub mod model;
pub mod ports;
pub mod service;
pub mod sim;
pub mod words;

pub use changes::{CardChanges, Mismatch};
pub use error::{BindingError, PortError};
pub use memory::{MemoryBindingStore, MemoryCardRegistry, MemoryCardStore, MemoryDelegationStore};
pub use model::{
    BalanceView, Binding, BindingId, BindingReceipt, BindingState, BlindIndex, Card, CardId,
    CardKind, CardNumber, CardNumberCharset, CardNumberFormat, CardRules, CardStatus, ConsentInput,
    ConsentRecord, DataCategory, Delegation, PassSerial, PassStatus, PassUpdate, Relation,
    RemovalReason, Service, ServiceSet, WalletAccountRef, WalletPass,
};
pub use ports::{
    BalanceSource, BindingStore, CardChangeStore, CardFunds, CardIssuer, CardStore,
    DelegationStore, IdNumberIndex, IssuerVerdict, PlatformWallet, RealNameCheck,
};
pub use service::{
    BindRequest, BindingConfig, CAS_ATTEMPTS, CardChange, CardPorts, CardService, ChunkDecision,
    GrantDelegation, IssueBatch, IssueCard, IssueChunkPlan, IssueDecision, IssueOutcome, IssuePlan,
    ReplaceCard, StoredGrants, WalletView,
};
pub use sim::{KeyedHashIndex, MemoryFunds, RegistryCardIssuer, SimulatedWallet, StaticRealNames};
pub use words::{Lang, UserMessage};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_rules_parse() {
        let rules = CardRules::from_json(model::DEFAULT_CARD_RULES_JSON).expect("embedded rules");
        assert!(rules.kinds.iter().any(|k| k == "elderly"));
        assert!(rules.default_services.contains(&Service::Transit));
        assert!(
            rules
                .default_platforms
                .contains(&citycard_core::Platform::Alipay)
        );
    }

    #[test]
    fn card_numbers_follow_the_configured_format() {
        let rules = CardRules::embedded();
        let f = &rules.number_format;
        assert!(CardNumber::parse("3301 0000 1234", f).is_ok());
        assert!(CardNumber::parse("1234567", f).is_err()); // 7 digits, min is 8
        assert!(CardNumber::parse("33010000123A", f).is_err());
        let prefixed = CardNumberFormat {
            prefixes: vec!["3301".into()],
            ..f.clone()
        };
        assert!(CardNumber::parse("33019999", &prefixed).is_ok());
        assert!(CardNumber::parse("44019999", &prefixed).is_err());
        let n = CardNumber::parse("3301000012345678", f).expect("valid");
        assert_eq!(n.to_string(), "330*********5678");
        assert!(!format!("{n:?}").contains("00001234"));
    }

    #[test]
    fn binding_state_machine() {
        use BindingState::*;
        assert!(Pending.can_become(Active));
        assert!(Active.can_become(Suspended) && Suspended.can_become(Active));
        assert!(!Removed.can_become(Active) && !Removed.can_become(Pending));
        assert!(!Active.can_become(Pending));
        assert!(!Removed.is_live() && Pending.is_live());
    }

    #[test]
    fn kinds_and_services_round_trip_through_codes() {
        for k in ["standard", "elderly", "student", "disabled", "veteran"] {
            assert_eq!(CardKind::from_code(k).code(), k);
        }
        for s in [
            "transit",
            "healthcare",
            "social_insurance",
            "wallet",
            "parking",
        ] {
            assert_eq!(Service::from_code(s).code(), s);
        }
        let json = serde_json::to_string(&CardStatus::Replaced {
            by: CardId::parse("card-2").expect("id"),
        })
        .expect("json");
        assert_eq!(json, r#"{"status":"replaced","by":"card-2"}"#);
    }
}
