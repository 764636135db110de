//! Step 4: a service the card was not issued with (social insurance on the
//! mother's elderly card) is refused, and works on the cardholder's card.

use citycard_binding::{BindRequest, BindingError, BindingId, Service};
use citycard_core::{Platform, PlatformAccountId};

use super::binding::{consent, live_binding};
use super::people::Cast;
use super::{DemoError, Journey, Printer, mask_name};

/// Binds the mother's card (unless bound) and shows the refusal, then the service working.
pub(super) async fn not_enabled(
    j: &Journey<'_>,
    p: &mut Printer<'_>,
    cast: &Cast,
    mother_account: &PlatformAccountId,
    binding: &BindingId,
) -> Result<(), DemoError> {
    let city = j.city;
    p.heading("没有开通的服务", "A service that is not enabled")?;
    let (mother, mother_card) = (&cast.mother, &cast.mother_card);
    let (zn, mn) = (mask_name(cast.zhang.name), mask_name(mother.name));
    let (me, mum) = (cast.zhang.principal(), mother.principal());
    let mother_binding = match live_binding(j, &Platform::Alipay, mother_account).await? {
        Some(b) => b,
        None => {
            city.cards()
                .bind(
                    &mum,
                    &j.run_key("bind-mother")?,
                    &BindRequest {
                        platform: Platform::Alipay,
                        account: mother_account.clone(),
                        card_number: mother_card.number.as_str().to_owned(),
                        id_number: mother.id_number.to_sensitive(),
                        consent: consent(),
                    },
                )
                .await?
                .binding
        }
    };
    p.say(
        format!("{mn}的老年卡绑定在她的支付宝里；她打开社保查询……"),
        format!("{mn}'s elderly card is bound in her Alipay; she opens social insurance…"),
    )?;
    p.ids(format!("binding {mother_binding}"))?;
    match city
        .cards()
        .ensure_service(&mum, &mother_binding, &Service::SocialInsurance)
        .await
    {
        Err(e @ BindingError::ServiceNotEnabled { .. }) => {
            p.refusal(&e.user_message(p.lang))?;
        }
        Err(e) => return Err(e.into()),
        Ok(()) => {
            return Err(DemoError::Step(
                "social insurance worked on a card without it".into(),
            ));
        }
    }
    city.cards()
        .ensure_service(&me, binding, &Service::SocialInsurance)
        .await?;
    p.say(
        format!("{zn}的卡开通了社保查询，可以正常使用"),
        format!("{zn}'s card has it: social insurance works in his Alipay"),
    )?;
    Ok(())
}
