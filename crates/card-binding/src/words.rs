//! Words for people: each failure a cardholder meets, in Chinese and English,
//! as what went wrong and what to do next.
//!
//! [`BindingError`]'s `Display` is for logs and developers (one English line,
//! with codes); [`BindingError::user_message`] is what an app shows the
//! cardholder, in the cardholder's language. Internal details (ids, store
//! errors, reasons meant for operators) are never put in front of them: such
//! failures read "something went wrong on our side" with a way forward.

use std::fmt;
use std::str::FromStr;

use citycard_core::Platform;

use crate::error::BindingError;
use crate::model::Service;

/// A language for words shown to people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Lang {
    /// Simplified Chinese (the cardholders are Hangzhou's).
    Zh,
    /// English.
    #[default]
    En,
}

impl Lang {
    /// The language of a POSIX locale, as `LC_ALL` then `LANG` name it:
    /// Chinese for `zh*`, English for any other set locale, `None` when
    /// neither is set (or both are empty).
    pub fn from_locale(lc_all: Option<&str>, lang: Option<&str>) -> Option<Lang> {
        let locale = [lc_all, lang]
            .into_iter()
            .flatten()
            .map(str::trim)
            .find(|l| !l.is_empty())?;
        Some(if locale.to_ascii_lowercase().starts_with("zh") {
            Lang::Zh
        } else {
            Lang::En
        })
    }

    /// `zh` or `en`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// Picks the text of this language.
    pub fn pick<T>(self, zh: T, en: T) -> T {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }
}

/// A language code that is neither `zh` nor `en`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("language {0:?} is not supported: use zh or en")]
pub struct UnknownLang(pub String);

impl FromStr for Lang {
    type Err = UnknownLang;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "zh" | "zh-cn" | "zh_cn" | "cn" => Ok(Lang::Zh),
            "en" | "en-us" | "en_us" | "en-gb" | "en_gb" => Ok(Lang::En),
            other => Err(UnknownLang(other.to_owned())),
        }
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// What a cardholder is told: what went wrong, and what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserMessage {
    /// What went wrong, in plain words.
    pub problem: String,
    /// What to do next.
    pub next_step: String,
}

impl fmt::Display for UserMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.problem, self.next_step)
    }
}

fn msg(problem: impl Into<String>, next_step: impl Into<String>) -> UserMessage {
    UserMessage {
        problem: problem.into(),
        next_step: next_step.into(),
    }
}

/// A service's name for people.
pub fn service_name(service: &Service, lang: Lang) -> String {
    match service {
        Service::Transit => lang.pick("乘车", "rides"),
        Service::Healthcare => lang.pick("医疗（挂号和缴费）", "hospital booking and payment"),
        Service::SocialInsurance => lang.pick("社保查询", "social insurance"),
        Service::Wallet => lang.pick("电子钱包", "the e-wallet"),
        Service::Other(code) => code.as_str(),
    }
    .to_owned()
}

/// A platform's name for people.
pub fn platform_name(platform: &Platform, lang: Lang) -> String {
    match platform {
        Platform::Alipay => lang.pick("支付宝", "Alipay"),
        Platform::WechatPay => lang.pick("微信支付", "WeChat Pay"),
        Platform::UnionPay => lang.pick("云闪付", "UnionPay"),
        Platform::Other(code) => code.as_str(),
        _ => platform.code(),
    }
    .to_owned()
}

/// A card status code (`reported_lost`, `frozen`, …) for people.
fn status_name(status: &str, lang: Lang) -> String {
    match status {
        "reported_lost" => lang.pick("已挂失", "reported lost"),
        "frozen" => lang.pick("已冻结", "frozen"),
        "replaced" => lang.pick("已补换", "replaced by a new card"),
        "cancelled" => lang.pick("已注销", "cancelled"),
        "pending" => lang.pick("尚未启用", "not yet in use"),
        other => other,
    }
    .to_owned()
}

impl BindingError {
    /// What to tell the cardholder, in `lang`: the problem and the next step.
    pub fn user_message(&self, lang: Lang) -> UserMessage {
        use BindingError::*;
        let zh = lang == Lang::Zh;
        match self {
            InvalidCardNumber { .. } => lang.pick(
                msg("卡号格式不对。", "请核对卡面上印的卡号后重新输入。"),
                msg(
                    "The card number is not in the right format.",
                    "Check the number printed on the card and type it again.",
                ),
            ),
            DetailsDoNotMatch => lang.pick(
                msg(
                    "卡号和身份证号对不上。",
                    "请对照身份证逐位核对身份证号，并核对卡号，然后再试（失败次数会被记录）。",
                ),
                msg(
                    "The card number and the ID number do not match.",
                    "Compare the ID number with the ID card digit by digit, check the card number too, and try again (failed attempts are counted).",
                ),
            ),
            NotRealNameVerified => lang.pick(
                msg(
                    "这个账户还没有完成实名认证。",
                    "请先在应用里完成实名认证，再绑定市民卡。",
                ),
                msg(
                    "This account has not been real-name verified yet.",
                    "Complete real-name verification in the app first, then bind the card.",
                ),
            ),
            ServiceNotEnabled { service } => {
                let name = service_name(service, lang);
                if zh {
                    msg(
                        format!("这张卡没有开通{name}功能。"),
                        "请查看这张卡开通的服务，或到市民卡服务网点申请开通。",
                    )
                } else {
                    msg(
                        format!("This card does not have {name} switched on."),
                        "See which services the card has, or ask at a citizen card service point to switch it on.",
                    )
                }
            }
            PlatformNotEnabled { platform } => {
                let name = platform_name(platform, lang);
                if zh {
                    msg(
                        format!("这张卡不能绑定到{name}。"),
                        "请使用市民卡支持的其他平台。",
                    )
                } else {
                    msg(
                        format!("This card cannot be added to {name}."),
                        "Use another platform the citizen card supports.",
                    )
                }
            }
            CardNotActive { status } => {
                let state = status_name(status, lang);
                if zh {
                    msg(
                        format!("这张卡{state}，暂时不能使用。"),
                        "如已找到卡请办理解挂；冻结的卡请联系发卡机构；已补卡的请使用新卡。",
                    )
                } else {
                    msg(
                        format!("This card is {state}, so it cannot be used now."),
                        "If you found it, report it found; if it is frozen, contact the issuer; if it was replaced, use the new card.",
                    )
                }
            }
            TooManyAttempts { retry_after } => {
                let at = retry_after
                    .with_timezone(&citycard_core::china_offset())
                    .format("%Y-%m-%d %H:%M");
                if zh {
                    msg("尝试次数过多。", format!("请在 {at} 之后再试。"))
                } else {
                    msg(
                        "Too many failed attempts.",
                        format!("Try again after {at} (Hangzhou time)."),
                    )
                }
            }
            Processing { .. } => lang.pick(
                msg("绑定正在处理中。", "请稍后查看结果，不需要重新提交。"),
                msg(
                    "The binding is still being processed.",
                    "Check again in a moment; there is no need to submit it again.",
                ),
            ),
            RetryLater { .. } | Store(_) | Idempotency(_) | Config { .. } => lang.pick(
                msg("我们这边暂时出了问题，什么都没有改变。", "请稍后再试。"),
                msg(
                    "Something went wrong on our side; nothing was changed.",
                    "Please try again later.",
                ),
            ),
            Denied { .. } => lang.pick(
                msg("你没有权限办理这项业务。", "请由持卡人本人或其授权的家人办理。"),
                msg(
                    "You are not allowed to do this.",
                    "Ask the cardholder, or a family member they authorised, to do it.",
                ),
            ),
            AlreadyBound { .. } => lang.pick(
                msg("这张卡已经绑定在这个账户上。", "可以直接使用，不需要再次绑定。"),
                msg(
                    "This card is already added to this account.",
                    "You can use it as it is; there is no need to add it again.",
                ),
            ),
            GuardianRequired => lang.pick(
                msg("持卡人未满 14 周岁。", "请由监护人登录并同意后办理。"),
                msg(
                    "The cardholder is under 14.",
                    "A parent or guardian needs to sign in and give consent.",
                ),
            ),
            UnknownCardKind { .. } | ConsentIncomplete { .. } => lang.pick(
                msg("申请的信息不完整。", "请按页面提示重新填写后再提交。"),
                msg(
                    "The request is incomplete.",
                    "Fill it in again as the screen asks and submit it.",
                ),
            ),
            NotFound { .. } => lang.pick(
                msg("没有找到相关记录。", "请核对后重试，或联系市民卡客服。"),
                msg(
                    "We could not find that record.",
                    "Check and try again, or contact citizen card customer service.",
                ),
            ),
            InvalidState { .. } => lang.pick(
                msg("当前状态下不能办理这项业务。", "请先查看卡和绑定的当前状态。"),
                msg(
                    "This cannot be done in the current state.",
                    "Check the current state of the card and the binding first.",
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BindingId;
    use citycard_core::StoreError;

    fn every_error() -> Vec<BindingError> {
        vec![
            BindingError::InvalidCardNumber {
                rule: "16 digits".into(),
            },
            BindingError::UnknownCardKind { kind: "x".into() },
            BindingError::Config { reason: "x".into() },
            BindingError::ConsentIncomplete {
                missing: "purpose".into(),
            },
            BindingError::DetailsDoNotMatch,
            BindingError::NotRealNameVerified,
            BindingError::ServiceNotEnabled {
                service: Service::SocialInsurance,
            },
            BindingError::PlatformNotEnabled {
                platform: Platform::WechatPay,
            },
            BindingError::CardNotActive {
                status: "reported_lost".into(),
            },
            BindingError::TooManyAttempts {
                retry_after: chrono::DateTime::UNIX_EPOCH,
            },
            BindingError::Processing {
                binding: BindingId::parse("bnd-1").unwrap(),
            },
            BindingError::RetryLater {
                reason: "issuer: timed out".into(),
            },
            BindingError::Denied {
                reason: "principal opr-1 lacks x".into(),
            },
            BindingError::AlreadyBound {
                binding: BindingId::parse("bnd-1").unwrap(),
            },
            BindingError::GuardianRequired,
            BindingError::NotFound {
                what: "binding bnd-9".into(),
            },
            BindingError::InvalidState {
                operation: "unbind".into(),
                state: "removed".into(),
            },
            BindingError::Store(StoreError::Unavailable("sqlite busy".into())),
        ]
    }

    #[test]
    fn every_failure_has_both_languages_and_no_internal_words() {
        for e in every_error() {
            let zh = e.user_message(Lang::Zh);
            let en = e.user_message(Lang::En);
            for m in [&zh, &en] {
                assert!(!m.problem.is_empty() && !m.next_step.is_empty(), "{e:?}");
                let text = m.to_string();
                for internal in ["bnd-", "opr-", "sqlite", "_", "timed out", "Some("] {
                    assert!(!text.contains(internal), "{e:?}: {text}");
                }
            }
            assert!(
                zh.problem
                    .chars()
                    .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
                "Chinese: {e:?}: {zh}"
            );
            assert!(en.problem.is_ascii(), "English: {e:?}: {en}");
            assert_ne!(zh, en);
        }
    }

    #[test]
    fn a_service_refusal_names_the_service_in_words() {
        let e = BindingError::ServiceNotEnabled {
            service: Service::SocialInsurance,
        };
        assert!(
            e.user_message(Lang::En)
                .problem
                .contains("social insurance")
        );
        assert!(e.user_message(Lang::Zh).problem.contains("社保"));
    }

    #[test]
    fn the_locale_picks_the_language() {
        assert_eq!(Lang::from_locale(None, Some("zh_CN.UTF-8")), Some(Lang::Zh));
        assert_eq!(
            Lang::from_locale(Some("en_US.UTF-8"), Some("zh_CN.UTF-8")),
            Some(Lang::En)
        );
        assert_eq!(
            Lang::from_locale(Some(""), Some("zh_TW.UTF-8")),
            Some(Lang::Zh)
        );
        assert_eq!(Lang::from_locale(None, Some("C.UTF-8")), Some(Lang::En));
        assert_eq!(Lang::from_locale(None, None), None);
        assert_eq!("zh".parse::<Lang>(), Ok(Lang::Zh));
        assert_eq!("EN".parse::<Lang>(), Ok(Lang::En));
        assert!("fr".parse::<Lang>().is_err());
    }
}
