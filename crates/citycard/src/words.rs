//! Words for cardholders: the facade's refusals in Chinese and English.
//!
//! [`CityCardError::user_message`] is what an app shows a cardholder when the
//! card system says no: binding refusals in the binding crate's own words
//! ([`BindingError::user_message`](citycard_binding::BindingError::user_message)),
//! the wallet's, the hospital booking's and real-name verification's here (the domain crates share no
//! language type, so the facade, which sees them all, words them). Anything
//! that is not a refusal the cardholder can act on reads "something went wrong
//! on our side"; `Display` stays the English text for logs.

use citycard_binding::{Lang, UserMessage};
use citycard_healthcare::HealthcareError;
use citycard_identity::IdentityError;

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
            CityCardError::Identity(e) => identity(e, lang),
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

/// Real-name verification's refusals, as a cardholder meets them in a
/// platform's app; anything else is "something went wrong on our side".
fn identity(e: &IdentityError, lang: Lang) -> UserMessage {
    match e {
        IdentityError::InvalidIdNumber(_) => both(
            lang,
            ("身份证号码不正确。", "请核对后重新输入 18 位身份证号码。"),
            (
                "The ID number is not valid.",
                "Check it and enter the 18-character ID number again.",
            ),
        ),
        IdentityError::InvalidName => both(
            lang,
            ("姓名格式不正确。", "请输入身份证上的姓名。"),
            (
                "The name is not valid.",
                "Enter the name as it is on the ID card.",
            ),
        ),
        IdentityError::TooManyFailures { .. } => both(
            lang,
            (
                "今天实名认证失败次数太多。",
                "请明天再试，或到市民卡服务网点办理。",
            ),
            (
                "Too many failed real-name checks today.",
                "Try again tomorrow, or visit a citizen card service point.",
            ),
        ),
        IdentityError::AccountBelongsToAnotherPerson => both(
            lang,
            (
                "这个账户已经实名认证为另一个人。",
                "请联系客服更改实名信息。",
            ),
            (
                "This account is already verified as another person.",
                "Contact customer service to change it.",
            ),
        ),
        IdentityError::FaceCheckPending => both(
            lang,
            ("人脸识别还没有完成。", "请稍等片刻再查看结果。"),
            (
                "The face check is not finished yet.",
                "Wait a moment, then look again.",
            ),
        ),
        IdentityError::NoFaceCheckPending | IdentityError::FaceCheckExpired => both(
            lang,
            ("人脸识别已失效。", "请重新开始人脸识别。"),
            ("The face check has expired.", "Start the face check again."),
        ),
        IdentityError::Denied { .. } => both(
            lang,
            ("你没有权限办理这项业务。", "请由本人办理。"),
            (
                "You are not allowed to do this.",
                "Ask the person concerned to do it.",
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
    fn real_name_refusals_say_what_to_do_in_both_languages() {
        let refusals = [
            IdentityError::TooManyFailures { limit: 5 },
            IdentityError::InvalidName,
            IdentityError::AccountBelongsToAnotherPerson,
            IdentityError::FaceCheckExpired,
        ];
        let fallback = CityCardError::Invalid("x".into()).user_message(Lang::En);
        for e in refusals {
            let e = CityCardError::Identity(e);
            let (zh, en) = (e.user_message(Lang::Zh), e.user_message(Lang::En));
            assert_ne!(en, fallback, "{e:?} is a refusal the cardholder can act on");
            assert!(
                zh.next_step
                    .chars()
                    .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
                "{e:?}: {zh}"
            );
            assert!(en.next_step.is_ascii(), "{e:?}: {en}");
        }
    }

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
