//! Words for cardholders: the facade's refusals in Chinese and English.
//!
//! [`CityCardError::user_message`] is what an app shows a cardholder when the
//! card system says no: binding refusals in the binding crate's own words
//! ([`BindingError::user_message`](citycard_binding::BindingError::user_message)),
//! the wallet's and the hospital booking's here (the domain crates share no
//! language type, so the facade, which sees them all, words them). Anything
//! that is not a refusal the cardholder can act on reads "something went wrong
//! on our side"; `Display` stays the English text for logs.

use citycard_binding::{Lang, UserMessage};
use citycard_healthcare::HealthcareError;

use crate::error::CityCardError;

fn msg(problem: String, next_step: String) -> UserMessage {
    UserMessage { problem, next_step }
}

fn both(lang: Lang, zh: (&str, &str), en: (&str, &str)) -> UserMessage {
    let (p, n) = lang.pick(zh, en);
    msg(p.to_owned(), n.to_owned())
}

impl CityCardError {
    /// What to tell the cardholder, in `lang`: the problem and the next step.
    pub fn user_message(&self, lang: Lang) -> UserMessage {
        match self {
            CityCardError::Binding(e) => e.user_message(lang),
            CityCardError::OverCap { cap, balance, room } => {
                let (cap, balance, room) = (
                    format!("{cap:#}"),
                    format!("{balance:#}"),
                    format!("{room:#}"),
                );
                match lang {
                    Lang::Zh => msg(
                        format!("充值后钱包余额会超过上限 {cap}（现在 {balance}）。"),
                        format!("最多还能充值 {room}；或先用掉一部分余额再充值。"),
                    ),
                    Lang::En => msg(
                        format!(
                            "The top-up would take the wallet over its {cap} limit (it holds {balance})."
                        ),
                        format!("Top up at most {room}, or spend some of the balance first."),
                    ),
                }
            }
            CityCardError::InsufficientBalance { balance } => {
                let balance = format!("{balance:#}");
                match lang {
                    Lang::Zh => msg(
                        format!("钱包余额不足（现在 {balance}）。"),
                        "请先充值再试。".to_owned(),
                    ),
                    Lang::En => msg(
                        format!("There is not enough in the wallet ({balance})."),
                        "Top up first, then try again.".to_owned(),
                    ),
                }
            }
            CityCardError::Denied { .. } => both(
                lang,
                (
                    "你没有权限办理这项业务。",
                    "请由持卡人本人或其授权的家人办理。",
                ),
                (
                    "You are not allowed to do this.",
                    "Ask the cardholder, or a family member they authorised, to do it.",
                ),
            ),
            CityCardError::Healthcare(e) => healthcare(e, lang),
            _ => both(
                lang,
                (
                    "我们这边暂时出了问题。",
                    "请稍后再试；如果一直不行，请联系市民卡客服。",
                ),
                (
                    "Something went wrong on our side.",
                    "Please try again later; if it keeps happening, contact citizen card customer service.",
                ),
            ),
        }
    }
}

fn healthcare(e: &HealthcareError, lang: Lang) -> UserMessage {
    match e {
        HealthcareError::QuotaExceeded(_) => both(
            lang,
            (
                "挂号次数已达上限。",
                "取消其他预约，或换一天、下个月再挂号。",
            ),
            (
                "You have reached the limit of bookings.",
                "Cancel another booking, or book another day or next month.",
            ),
        ),
        HealthcareError::SlotFull => both(
            lang,
            ("这个时段的号已经挂满了。", "请选择其他时段，或排队候补。"),
            (
                "This clinic session is fully booked.",
                "Choose another session, or join the waiting list.",
            ),
        ),
        HealthcareError::NotBookable(_) => both(
            lang,
            ("这个时段现在不能挂号。", "请选择其他时段，或等放号后再挂。"),
            (
                "This clinic session cannot be booked now.",
                "Choose another session, or wait until its places are released.",
            ),
        ),
        HealthcareError::Banned { until } => match lang {
            Lang::Zh => msg(
                "因多次预约未就诊，暂时不能挂号。".to_owned(),
                format!("{until} 起可以再次挂号。"),
            ),
            Lang::En => msg(
                "Booking is paused after missed appointments.".to_owned(),
                format!("You can book again from {until}."),
            ),
        },
        HealthcareError::NotRealName => both(
            lang,
            ("挂号需要先完成实名认证。", "请先在应用里完成实名认证。"),
            (
                "Booking needs real-name verification.",
                "Complete real-name verification in the app first.",
            ),
        ),
        HealthcareError::PaymentRefused(_) => both(
            lang,
            ("付款没有成功，没有扣款。", "请充值或换一种方式付款。"),
            (
                "The payment did not go through; nothing was charged.",
                "Top up, or pay another way.",
            ),
        ),
        _ => both(
            lang,
            (
                "我们这边暂时出了问题。",
                "请稍后再试；如果一直不行，请联系市民卡客服。",
            ),
            (
                "Something went wrong on our side.",
                "Please try again later; if it keeps happening, contact citizen card customer service.",
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citycard_core::Money;

    #[test]
    fn wallet_and_booking_refusals_have_both_languages_and_no_internal_words() {
        let errors = [
            CityCardError::OverCap {
                cap: Money::from_yuan(5000),
                balance: Money::from_yuan(4900),
                room: Money::from_yuan(100),
            },
            CityCardError::InsufficientBalance {
                balance: Money::from_fen(150),
            },
            CityCardError::Healthcare(HealthcareError::QuotaExceeded(
                "12 per month for psn-1".into(),
            )),
            CityCardError::Healthcare(HealthcareError::SlotFull),
            CityCardError::Ledger(citycard_ledger::LedgerError::Corrupt(
                "engine: account 42 poisoned".into(),
            )),
            CityCardError::Binding(citycard_binding::BindingError::DetailsDoNotMatch),
        ];
        for e in &errors {
            let (zh, en) = (e.user_message(Lang::Zh), e.user_message(Lang::En));
            assert_ne!(zh, en);
            assert!(
                zh.problem
                    .chars()
                    .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
                "{e:?}: {zh}"
            );
            assert!(
                !en.problem
                    .chars()
                    .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
                "{e:?}: {en}"
            );
            for text in [zh.to_string(), en.to_string()] {
                for internal in ["psn-", "account 42", "poisoned", "engine"] {
                    assert!(!text.contains(internal), "{e:?}: {text}");
                }
            }
        }
        let over = errors[0].user_message(Lang::En);
        assert!(over.next_step.contains("¥100.00"), "{over}");
    }
}
