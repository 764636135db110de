//! # citycard-core
//!
//! The small shared core every citycard crate builds on:
//!
//! - [`Money`]: exact CNY amounts to the fen, with one rounding rule ([`round_half_up_to_fen`]);
//! - typed ids ([`define_id!`]) and the [`IdGenerator`] port;
//! - the [`Clock`] port with [`ManualClock`] for tests, and China civil time helpers;
//! - idempotency keys and the [`IdempotencyStore`] port, with [`run_idempotent`];
//! - [`Principal`]: who acts, including family delegates with [`Scopes`];
//! - the [`GrantVerifier`] port (delegates are checked against stored grants) and
//!   [`OperatorRoles`] (operators' roles are looked up, never claimed);
//! - [`WorkingCalendar`]: statutory working days (holidays and make-up days) as dated data;
//! - [`Sensitive`]: personal data that prints masked;
//! - the append-only [`AuditLog`] port;
//! - [`CoreChanges`]: the audit records and idempotency outcomes a plan commits with its domain rows ([`unit`]);
//! - [`ErrorClass`] and [`ClassifiedError`], so a host maps every crate's errors in one place.
//!
//! ```
//! use citycard_core::{civil_date, ClassifiedError, ErrorClass, ManualClock, Clock, Money, MoneyError};
//!
//! let clock = ManualClock::at_ymd_hms(2026, 11, 26, 8, 30, 0);
//! let balance: Money = "48.00".parse()?;
//! let fare = Money::from_fen(400);
//! let left = balance.checked_sub(fare)?;
//! println!("{} left on {}", left, civil_date(clock.now()));
//! assert_eq!(left.to_string(), "44.00");
//!
//! let err = "4.005".parse::<Money>().unwrap_err();
//! assert_eq!(err.class(), ErrorClass::InvalidInput);
//! # Ok::<(), MoneyError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod access;
pub mod audit;
pub mod calendar;
pub mod clock;
pub mod error;
pub mod idempotency;
pub mod ids;
pub mod money;
pub mod outbox;
pub mod principal;
pub mod sensitive;
pub mod unit;

pub use access::{GrantVerifier, OperatorRole, OperatorRoles};
pub use audit::{AuditEntry, AuditLog, AuditOutcome, AuditQuery, AuditRecord, MemoryAuditLog};
pub use calendar::{CalendarError, DayKind, WorkingCalendar};
pub use clock::{
    CivilMonth, Clock, ManualClock, SystemClock, china_offset, civil_date, civil_month,
    end_of_civil_day, start_of_civil_day, to_civil,
};
pub use error::{ClassifiedError, ErrorClass, StoreError};
pub use idempotency::{
    Claim, DEFAULT_CLAIM_LEASE, Fingerprint, IdempotencyError, IdempotencyKey, IdempotencyRecord,
    IdempotencyState, IdempotencyStore, MemoryIdempotencyStore, principal_scope, run_idempotent,
    run_idempotent_recovering,
};
pub use ids::{
    AuditId, DelegationId, IdError, IdGenerator, OperatorId, PersonId, PlatformAccountId,
    SequentialIdGenerator, TimeOrderedIdGenerator,
};
pub use money::{Money, MoneyError, round_half_up_to_fen};
pub use outbox::{Delivery, EventKind, MemoryOutbox, NewEvent, Outbox, OutboxEvent};
pub use principal::{DelegationScope, Platform, Principal, Scopes};
pub use sensitive::{Mask, Sensitive, mask_card_number};
pub use unit::{CoreChanges, KeyOutcome, MemoryCore, replay};

#[doc(hidden)]
pub mod __private {
    pub use serde;
}
