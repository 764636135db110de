//! Step 7: a bus ride by card tap, the metro ride by ride code, the mother's
//! free off-peak bus ride, and the day's settlement at 21:00.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use citycard_binding::Lang;
use citycard_core::{Money, Principal};
use citycard_transit::{SettlementReport, Tap, TapDirection, TapPlace, TripPayment};

use super::people::Cast;
use super::ride_code::GateTaps;
use super::{DemoError, Journey, Printer, civil, hm, mask_name, operator_name, y};
use crate::system::CityCard;

/// What the day's settlement did.
pub(super) struct Rides {
    /// The settlement report.
    pub(super) report: SettlementReport,
    /// When each of the cardholder's rides began, by its ledger reference (`trip:<id>`).
    pub(super) ride_times: BTreeMap<String, DateTime<Utc>>,
    /// Fares charged to the cardholder's wallet.
    pub(super) fares_charged: Money,
}

/// Builds the day's taps, settles them and prints each trip and the totals.
pub(super) async fn settle_the_day(
    j: &Journey<'_>,
    p: &mut Printer<'_>,
    cast: &Cast,
    gates: GateTaps,
) -> Result<Rides, DemoError> {
    let city = j.city;
    p.heading(
        "一次公交、一次地铁，以及当天的结算",
        "A bus ride, a metro ride, and the day's settlement",
    )?;
    let GateTaps {
        card_ref,
        tap_in,
        tap_out,
    } = gates;
    let (zhang, mother) = (&cast.zhang, &cast.mother);
    let (zn, mn) = (mask_name(zhang.name), mask_name(mother.name));
    let network = city.transit().fares().network();
    let b7 = network
        .route("b7")
        .ok_or_else(|| DemoError::Step("no route b7 in the fare data".into()))?;
    let bus_at = civil(j.day, 8, 30);
    let bus_tap = Tap {
        card: card_ref,
        direction: TapDirection::In,
        place: TapPlace::Vehicle {
            route: b7,
            vehicle: 7031,
            stop: None,
        },
        reader: 7031,
        at: bus_at,
        code: None,
        medium: citycard_transit::Medium::Card,
    };
    let mother_ref = CityCard::card_ref(&cast.mother_card)?;
    let mother_tap = Tap {
        card: mother_ref,
        at: civil(j.day, 10, 5),
        reader: 7044,
        place: TapPlace::Vehicle {
            route: b7,
            vehicle: 7044,
            stop: None,
        },
        ..bus_tap
    };
    let (b, i, o) = (hm(bus_at), hm(tap_in.at), hm(tap_out.at));
    p.say(
        format!("{zn} {b} 在武林广场刷卡上 7 路公交，然后 {i}–{o} 用乘车码坐地铁 武林广场 → 湘湖"),
        format!(
            "{zn} boards bus 7 at Wulin Square at {b} (card tap), then takes the metro Wulin Square → Xianghu {i}–{o} (ride code)"
        ),
    )?;
    let m = hm(mother_tap.at);
    p.say(
        format!("{mn}（74 岁）{m} 乘 7 路公交，非高峰时段"),
        format!("{mn} (74) takes bus 7 at {m}, off-peak"),
    )?;
    let mut taps = vec![bus_tap, tap_in, tap_out, mother_tap];
    j.at(21, 0);
    let system = Principal::System;
    // The gates saw only the code's keyed card reference: map it back to the card.
    city.transit().resolve_code_taps(&mut taps);
    let report = city
        .transit()
        .settlement()
        .settle_day(&system, j.day, taps)
        .await?;
    let mut fares_charged = Money::ZERO;
    // When each of his rides began, for the statement (fares are settled at 21:00).
    let mut ride_times: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for (who, r) in [(zhang.name, card_ref), (mother.name, mother_ref)] {
        for trip in city.transit_store().trips(r, j.day).await? {
            let (name, at) = (mask_name(who), hm(trip.started_at));
            let (base, paid) = (y(trip.base), y(trip.amount));
            let how = match trip.payment {
                TripPayment::Free => ("免费", "free"),
                TripPayment::Charged => ("已从卡内钱包扣款", "paid from the card's wallet"),
                TripPayment::Arrears => ("余额不足，记为欠款", "not enough balance: owed"),
            };
            p.say(
                format!(
                    "{name} {at} 的行程（{}）：票价 {base}，实付 {paid}，{}",
                    operator_name(&trip.operator, Lang::Zh),
                    how.0
                ),
                format!(
                    "{name}'s {at} ride ({}): fare {base}, paid {paid}, {}",
                    operator_name(&trip.operator, Lang::En),
                    how.1
                ),
            )?;
            p.ids(format!("trip {}", trip.id.as_str()))?;
            if r == card_ref {
                ride_times.insert(format!("trip:{}", trip.id.as_str()), trip.started_at);
            }
            if r == card_ref && trip.payment == TripPayment::Charged {
                fares_charged = fares_charged
                    .checked_add(trip.amount)
                    .map_err(|e| DemoError::Step(e.to_string()))?;
            }
        }
    }
    let (n, base, disc, transfer, charged) = (
        report.trips_settled,
        y(report.base_fares),
        y(report.discounts),
        y(report.transfer_discounts),
        y(report.charged),
    );
    p.say(
        format!(
            "21:00 结算当天 {n} 个行程：票价合计 {base}，优惠 {disc}（其中换乘优惠 {transfer}），实扣 {charged}"
        ),
        format!(
            "at 21:00 the day's {n} rides were settled: fares {base}, discounts {disc} (of which transfer discount {transfer}), charged {charged}"
        ),
    )?;
    if report.trips_already_settled > 0 {
        let k = report.trips_already_settled;
        p.say(
            format!("另有 {k} 个行程之前已结算"),
            format!("{k} rides had been settled before"),
        )?;
    }
    for (operator_code, revenue) in &report.revenue_by_operator {
        let r = y(*revenue);
        p.say(
            format!("{}收入：{r}", operator_name(operator_code, Lang::Zh)),
            format!("to {}: {r}", operator_name(operator_code, Lang::En)),
        )?;
    }
    Ok(Rides {
        report,
        ride_times,
        fares_charged,
    })
}
