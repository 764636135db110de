//! Step 6: the phone's ride code (乘车码), verified offline by the metro gates
//! at Wulin Square (in) and Xianghu (out); a replayed code is refused.

use chrono::Duration;
use citycard_binding::Lang;
use citycard_core::Clock;
use citycard_transit::codes::{Algorithm, RideCodeWallet, SigningKey};
use citycard_transit::{CardRef, Decision, Reader, ReaderConfig, Tap, TapDirection, TapPlace, qr};

use super::people::Cast;
use super::{DemoError, Journey, Printer, hm};
use crate::system::CityCard;

/// What the gates saw: the metro ride's two taps.
pub(super) struct GateTaps {
    /// The cardholder's card as the readers know it.
    pub(super) card_ref: CardRef,
    /// The tap in at Wulin Square.
    pub(super) tap_in: Tap,
    /// The tap out at Xianghu.
    pub(super) tap_out: Tap,
}

/// Certifies the phone's key, shows a code, and passes the gates in and out.
pub(super) async fn through_the_gates(
    j: &Journey<'_>,
    p: &mut Printer<'_>,
    cast: &Cast,
) -> Result<GateTaps, DemoError> {
    let city = j.city;
    j.at(8, 50);
    p.heading(
        "乘车码：地铁闸机离线验码",
        "The ride code (乘车码), verified offline at the metro gate",
    )?;
    let card_ref = CityCard::card_ref(&cast.card)?;
    let now = j.clock.now();
    let phone_key = SigningKey::generate(Algorithm::Sm2)?;
    let credential = city
        .transit()
        .certify(
            &phone_key.public_key(),
            card_ref,
            now - Duration::hours(1),
            now + Duration::days(7),
        )
        .await?;
    let issuer_keys = city.transit().issuer().public_keys();
    let mut ride_wallet = RideCodeWallet::new(phone_key, credential)?;
    let code = ride_wallet.generate(now)?;
    p.say(
        "手机每分钟生成一个新的乘车码，这是现在的码：",
        "the phone shows a new ride code every minute; this is the current one:",
    )?;
    p.raw(qr::to_terminal(&code)?)?;
    let engine = city.transit().fares();
    let network = engine.network();
    let metro = network
        .network("metro")
        .ok_or_else(|| DemoError::Step("no metro network in the fare data".into()))?;
    let stop = |id: &str| {
        network
            .stop(id)
            .ok_or_else(|| DemoError::Step(format!("no stop {id} in the fare data")))
    };
    let mut gate_in = Reader::new(
        ReaderConfig {
            reader: 101,
            place: TapPlace::Station {
                network: metro,
                stop: stop("m_wulin")?,
            },
            direction: TapDirection::In,
            max_code_age_seconds: 60,
            clock_skew_seconds: 30,
            repeat_window_seconds: 0,
        },
        &issuer_keys,
    );
    let tap_in = match gate_in.decide(code.as_bytes(), now) {
        Decision::Accept(tap) => {
            let at = hm(now);
            p.say(
                format!("武林广场地铁站的闸机不联网就核验了这个码，{at} 放行进站"),
                format!(
                    "the gate at Wulin Square metro station checked the code without going online and let him in at {at}"
                ),
            )?;
            p.ids("reader 101")?;
            tap
        }
        Decision::Reject(why) => {
            return Err(DemoError::Step(format!(
                "the gate refused the code: {why:?}"
            )));
        }
    };
    if let Decision::Reject(why) = gate_in.decide(code.as_bytes(), now) {
        p.say(
            format!(
                "同一个码再刷一次被拒绝：{}。截图不能重复乘车",
                rejection_words(&why, Lang::Zh)
            ),
            format!(
                "the same code shown again is refused: {}; a screenshot cannot ride twice",
                rejection_words(&why, Lang::En)
            ),
        )?;
        p.ids(format!("rejection {why:?}"))?;
    }
    j.at(9, 20);
    let out_at = j.clock.now();
    let exit_code = ride_wallet.generate(out_at)?;
    let mut gate_out = Reader::new(
        ReaderConfig {
            reader: 202,
            place: TapPlace::Station {
                network: metro,
                stop: stop("m_xianghu")?,
            },
            direction: TapDirection::Out,
            max_code_age_seconds: 60,
            clock_skew_seconds: 30,
            repeat_window_seconds: 0,
        },
        &issuer_keys,
    );
    let tap_out = match gate_out.decide(exit_code.as_bytes(), out_at) {
        Decision::Accept(tap) => tap,
        Decision::Reject(why) => {
            return Err(DemoError::Step(format!("the exit gate refused: {why:?}")));
        }
    };
    let at = hm(out_at);
    p.say(
        format!("湘湖站出站闸机 {at} 核验了新的码，放行出站"),
        format!("at Xianghu the exit gate accepted a fresh code at {at}"),
    )?;
    p.ids("reader 202")?;
    Ok(GateTaps {
        card_ref,
        tap_in,
        tap_out,
    })
}

/// Why a gate refused a ride code, in words.
fn rejection_words(why: &citycard_transit::Rejection, lang: Lang) -> String {
    use citycard_transit::Rejection;
    match why {
        Rejection::Replayed => lang.pick("这个码已经用过了", "this code was already used"),
        Rejection::Expired => lang.pick("这个码已过期", "this code has expired"),
        Rejection::Tampered => lang.pick("这个码被改动过", "this code was altered"),
        _ => lang.pick("闸机不接受这个码", "the gate does not accept this code"),
    }
    .to_owned()
}
