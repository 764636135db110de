//! Step 3: binding the card in Alipay: a mistyped ID number is refused with
//! what to do next, then the right one binds (or the live binding of an
//! earlier run is reused).

use citycard_binding::{
    BindRequest, BindingError, BindingId, BindingState, ConsentInput, DataCategory, Lang,
};
use citycard_core::{Platform, PlatformAccountId, Principal, Sensitive};
use citycard_identity::IdNumber;

use super::people::Cast;
use super::{DemoError, Journey, Printer, mask_name, services_text};

/// Binds the cardholder's current card to his Alipay account; returns the binding.
pub(super) async fn bind(
    j: &Journey<'_>,
    p: &mut Printer<'_>,
    cast: &Cast,
    zhang_account: &PlatformAccountId,
) -> Result<BindingId, DemoError> {
    let city = j.city;
    j.at(8, 15);
    p.heading("在支付宝绑定市民卡", "Binding the card in Alipay")?;
    let (zhang, card) = (&cast.zhang, &cast.card);
    let zn = mask_name(zhang.name);
    let me = zhang.principal();
    let mistake = BindRequest {
        platform: Platform::Alipay,
        account: zhang_account.clone(),
        card_number: spaced(card.number.as_str()),
        id_number: Sensitive::new(mistyped(&zhang.id_number)),
        consent: consent(),
    };
    p.say(
        format!("{zn}输入了卡号，但身份证号有两位数字输反了……"),
        format!("{zn} types the card number and an ID number with two digits swapped…"),
    )?;
    match city
        .cards()
        .bind(&me, &j.run_key("bind-mistyped")?, &mistake)
        .await
    {
        Err(e @ BindingError::DetailsDoNotMatch) => {
            p.refusal(&e.user_message(p.lang))?;
        }
        Err(e) => p.refusal(&e.user_message(p.lang))?,
        Ok(_) => {
            return Err(DemoError::Step("a mistyped ID number was accepted".into()));
        }
    }
    let binding = match live_binding(j, &Platform::Alipay, zhang_account).await? {
        Some(existing) => {
            p.say(
                "之前的运行中已经绑定，继续使用",
                "already bound in an earlier run; using that binding",
            )?;
            p.ids(format!("binding {existing}"))?;
            existing
        }
        None => {
            let receipt = city
                .cards()
                .bind(
                    &me,
                    &j.run_key("bind")?,
                    &BindRequest {
                        id_number: zhang.id_number.to_sensitive(),
                        ..mistake.clone()
                    },
                )
                .await?;
            if receipt.state == BindingState::Active {
                p.say(
                    "输入正确的身份证号后绑定成功，市民卡已出现在支付宝卡包里",
                    "with the right ID number the card is bound and appears in Alipay's card wallet (卡包)",
                )?;
            } else {
                p.say(
                    "输入正确的身份证号后已提交绑定，正在处理",
                    "with the right ID number the binding is submitted and being processed",
                )?;
            }
            p.ids(format!(
                "binding {} ({:?}), pass {}",
                receipt.binding, receipt.state, receipt.pass_serial
            ))?;
            p.say(
                format!("可以使用：{}", services_text(&receipt.services, Lang::Zh)),
                format!(
                    "it can be used for {}",
                    services_text(&receipt.services, Lang::En)
                ),
            )?;
            receipt.binding
        }
    };
    Ok(binding)
}

/// The active or suspended binding of a platform account, if any.
pub(super) async fn live_binding(
    j: &Journey<'_>,
    platform: &Platform,
    account: &PlatformAccountId,
) -> Result<Option<BindingId>, DemoError> {
    Ok(j.city
        .cards()
        .bindings_of_account(&Principal::System, platform, account)
        .await?
        .into_iter()
        .find(|b| matches!(b.state, BindingState::Active | BindingState::Suspended))
        .map(|b| b.id))
}

/// The ID number as the user mistypes it: two digits of the sequence swapped,
/// or one changed when they are equal.
pub fn mistyped(id: &IdNumber) -> String {
    let mut digits: Vec<char> = id.reveal().chars().collect();
    if let (Some(&a), Some(&b)) = (digits.get(14), digits.get(15)) {
        if a == b {
            let changed = a
                .to_digit(10)
                .map_or('0', |d| char::from_digit((d + 1) % 10, 10).unwrap_or('0'));
            digits[14] = changed;
        } else {
            digits.swap(14, 15);
        }
    }
    digits.into_iter().collect()
}

/// A card number as people type it, in groups of four.
pub(super) fn spaced(number: &str) -> String {
    number
        .chars()
        .collect::<Vec<_>>()
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The consent the cardholder gives when binding in Alipay.
pub(super) fn consent() -> ConsentInput {
    ConsentInput {
        purpose: "use the citizen card in Alipay: rides, hospital payments, balance".into(),
        data_categories: [
            DataCategory::CardNumber,
            DataCategory::Identity,
            DataCategory::Balance,
            DataCategory::TransitRecords,
            DataCategory::MedicalRecords,
        ]
        .into(),
        text_version: "2026-01".into(),
        channel: "alipay_app".into(),
    }
}
