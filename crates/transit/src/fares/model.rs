//! The public types of fare quoting: riders, legs, journeys, what each leg paid and why.

use chrono::{DateTime, Utc};
use citycard_core::Money;
use serde::{Deserialize, Serialize};

use crate::network::{NetworkIdx, RouteIdx, StopIdx};

/// The kind of card (or ride-code account) a rider holds; concessions refer to these codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CardKind {
    /// An ordinary card.
    #[default]
    Ordinary,
    /// A student card.
    Student,
    /// The 70+ card (老年卡).
    Senior,
    /// A card for a person with a disability (Hangzhou hukou, or severely disabled).
    Disabled,
    /// A veteran's card: no transit concession is sourced for veterans in general.
    Veteran,
    /// A card for blood-donation honour certificate holders (20+ donations).
    BloodDonor,
    /// The 60–69 elder card (长者卡).
    Elder,
    /// Serving soldiers, disabled soldiers and pre-1949 retired cadres.
    Military,
}

impl CardKind {
    /// Every kind.
    pub const ALL: [CardKind; 8] = [
        CardKind::Ordinary,
        CardKind::Student,
        CardKind::Senior,
        CardKind::Disabled,
        CardKind::Veteran,
        CardKind::BloodDonor,
        CardKind::Elder,
        CardKind::Military,
    ];

    /// The code used in data files.
    pub fn code(self) -> &'static str {
        match self {
            CardKind::Ordinary => "ordinary",
            CardKind::Student => "student",
            CardKind::Senior => "senior",
            CardKind::Disabled => "disabled",
            CardKind::Veteran => "veteran",
            CardKind::BloodDonor => "blood_donor",
            CardKind::Elder => "elder",
            CardKind::Military => "military",
        }
    }

    /// The kind for a code.
    pub fn from_code(code: &str) -> Option<CardKind> {
        CardKind::ALL.into_iter().find(|k| k.code() == code)
    }
}

/// What the rider paid with: the GTFS `fare_media_type` of the medium.
///
/// A feed's `fare_media.txt` names its media; the engine finds a product's
/// price for a medium by its type (two media of one type in a feed are
/// reported by `citycard fare check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Medium {
    /// No medium: cash paid to the driver, no ticket (`fare_media_type` 0).
    Cash,
    /// A paper ticket (`fare_media_type` 1).
    PaperTicket,
    /// A physical transit card: the citizen card (`fare_media_type` 2).
    #[default]
    Card,
    /// A contactless bank card, cEMV (`fare_media_type` 3).
    BankCard,
    /// A ride code in a mobile app (`fare_media_type` 4).
    RideCode,
}

impl Medium {
    /// Every medium, by `fare_media_type`.
    pub const ALL: [Medium; 5] = [
        Medium::Cash,
        Medium::PaperTicket,
        Medium::Card,
        Medium::BankCard,
        Medium::RideCode,
    ];

    /// The GTFS `fare_media_type`.
    pub fn fare_media_type(self) -> u8 {
        match self {
            Medium::Cash => 0,
            Medium::PaperTicket => 1,
            Medium::Card => 2,
            Medium::BankCard => 3,
            Medium::RideCode => 4,
        }
    }

    /// The medium of a GTFS `fare_media_type`.
    pub fn from_fare_media_type(t: u8) -> Option<Medium> {
        Medium::ALL.get(usize::from(t)).copied()
    }

    /// The code used on the command line and in JSON (`card`, `ride_code`, …).
    pub fn code(self) -> &'static str {
        match self {
            Medium::Cash => "cash",
            Medium::PaperTicket => "paper_ticket",
            Medium::Card => "card",
            Medium::BankCard => "bank_card",
            Medium::RideCode => "ride_code",
        }
    }
}

/// Who rides: what the concession and tier rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Rider {
    /// The card kind.
    pub card_kind: CardKind,
    /// Age in whole years on the day of travel, when known.
    pub age: Option<u8>,
    /// The medium of legs that do not name their own ([`Leg::medium`]).
    pub medium: Medium,
    /// Whether monthly volume tiers apply (e.g. topped up at least ¥50).
    pub volume_tiers: bool,
}

/// One ride from boarding to alighting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    /// The fare network.
    pub network: NetworkIdx,
    /// The route, when known (vehicles); `None` at gated stations.
    pub route: Option<RouteIdx>,
    /// Where the rider boarded (tapped in).
    pub from: StopIdx,
    /// Where the rider alighted (tapped out), if they did.
    pub to: Option<StopIdx>,
    /// Boarding time.
    pub board: DateTime<Utc>,
    /// Alighting time, if tapped out.
    pub alight: Option<DateTime<Utc>>,
    /// What the leg was paid with (from its tap); `None` means the rider's medium.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<Medium>,
}

/// A journey to price: a rider, their spend this month before it, and the legs in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journey {
    /// Who rides.
    pub rider: Rider,
    /// What the rider has paid this civil month before the first leg.
    pub month_spend_before: Money,
    /// The legs, in time order.
    pub legs: Vec<Leg>,
}

/// What the rider's account paid before the first leg priced, in the civil
/// day, week (Monday to Sunday) and month of that leg's boarding: the input
/// of monthly tiers and of fare caps.
///
/// The spend is the account's, whatever medium paid it; a leg in a later day,
/// week or month than the first starts that period from zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SpendSoFar {
    /// Paid earlier the same civil day.
    pub day: Money,
    /// Paid earlier the same week (Monday to Sunday).
    pub week: Money,
    /// Paid earlier the same civil month.
    pub month: Money,
}

impl SpendSoFar {
    /// Only the month's spend known (what the monthly tiers need); no earlier spend in the day or week.
    pub fn month(month: Money) -> Self {
        Self {
            month,
            ..Self::default()
        }
    }
}

/// Why a leg was charged the maximum fare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum MaximumFareReason {
    /// The rider tapped in and never tapped out.
    MissingTapOut,
    /// The rider stayed longer than the network allows.
    OverTimeLimit {
        /// Minutes between tap-in and tap-out.
        minutes: i64,
        /// The limit in minutes.
        limit: u32,
    },
}

/// What a leg's base fare was measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FareBasis {
    /// Shortest metro distance.
    Distance {
        /// Metres.
        metres: u32,
    },
    /// Fare sections ridden.
    Sections {
        /// Number of sections, both ends counted.
        count: u16,
    },
    /// A flat fare.
    Flat,
    /// The maximum fare.
    MaximumFare(MaximumFareReason),
}

/// A concession that changed a leg's fare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConcessionApplied {
    /// Index in `citycard_concessions.txt` order.
    pub concession: u32,
    /// Percentage of the base fare paid.
    pub percent: u16,
}

/// A transfer rule applied to a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferApplied {
    /// Index in `fare_transfer_rules.txt` order.
    pub rule: u32,
    /// How much less the leg costs (negative for a surcharge).
    pub discount: Money,
}

/// A monthly volume tier applied to a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierApplied {
    /// Index in `citycard_volume_tiers.txt` order.
    pub tier: u32,
    /// Percentage paid.
    pub percent: u16,
    /// The month's spend before this leg.
    pub spend_before: Money,
}

/// The period of a fare cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapPeriod {
    /// A civil day.
    Day,
    /// Monday to Sunday.
    Week,
    /// A civil month.
    Month,
}

/// A fare cap that lowered a leg's fare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapApplied {
    /// Index in `citycard_fare_caps.txt` order.
    pub cap: u32,
    /// The cap's period.
    pub period: CapPeriod,
    /// How much less the leg costs because of the cap.
    pub reduced_by: Money,
}

/// How one leg was priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegFare {
    /// Index of the leg in the journey.
    pub leg: usize,
    /// What the base fare was measured on.
    pub basis: FareBasis,
    /// The leg rule matched (index in `fare_leg_rules.txt` order), `None` for a maximum fare.
    pub rule: Option<u32>,
    /// The fare product charged.
    pub product: u32,
    /// The product's amount.
    pub base: Money,
    /// The concession applied, if any.
    pub concession: Option<ConcessionApplied>,
    /// The fare after the concession.
    pub after_concession: Money,
    /// The transfer rule applied, if any.
    pub transfer: Option<TransferApplied>,
    /// The monthly tier applied, if any.
    pub tier: Option<TierApplied>,
    /// The fare cap applied, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<CapApplied>,
    /// When `fare_leg_join_rules.txt` joined this leg to earlier ones into one
    /// effective fare leg: the index of its first leg, which carries the fare
    /// (this leg's own amounts are zero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joined_to: Option<usize>,
    /// The medium the leg was priced for.
    #[serde(default)]
    pub medium: Medium,
    /// What the rider pays for this leg.
    pub paid: Money,
}

/// The price of a journey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// One entry per leg.
    pub legs: Vec<LegFare>,
    /// What the rider pays in all.
    pub total: Money,
    /// Base fares minus what is paid (concessions, transfers, tiers, caps).
    pub discounts: Money,
}

/// `amount × percent / 100`, rounded half-up to the fen (exactly `Money::mul_percent`, without decimals).
#[inline]
pub fn percent_of(amount: Money, percent: u16) -> Money {
    let fen = i128::from(amount.fen()) * i128::from(percent);
    let rounded = if fen >= 0 {
        (fen + 50) / 100
    } else {
        (fen - 50) / 100
    };
    Money::from_fen(i64::try_from(rounded).unwrap_or(if fen >= 0 { i64::MAX } else { i64::MIN }))
}
