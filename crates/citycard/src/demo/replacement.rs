//! Step 12: the card is reported lost (paused in Alipay) and replaced at the
//! counter: the binding moves to the new card and the balance is carried.

use citycard_binding::{BindingId, Card, CardStatus};
use citycard_core::{Money, Principal};

use super::people::{Cast, replacement_number};
use super::{DemoError, Journey, Printer, mask_name, mask_number, y};
use crate::error::CityCardError;

/// What the replacement step did.
pub(super) struct Replaced {
    /// The new card.
    pub(super) new_card: Card,
    /// The balance carried to it.
    pub(super) carried: Money,
    /// Its wallet balance.
    pub(super) wallet_balance: Money,
}

/// Reports the current card lost, replaces it and shows what moved.
pub(super) async fn replace(
    j: &Journey<'_>,
    p: &mut Printer<'_>,
    operator: &Principal,
    cast: &Cast,
    binding: &BindingId,
) -> Result<Replaced, DemoError> {
    let city = j.city;
    j.at(23, 45);
    p.heading("挂失并补卡", "The card reported lost and replaced (补卡)")?;
    let (me, card) = (cast.zhang.principal(), &cast.card);
    let zn = mask_name(cast.zhang.name);
    city.cards()
        .report_lost(&me, &j.run_key("report-lost")?, &card.id)
        .await?;
    let old_no = mask_number(card.number.as_str());
    p.say(
        format!("{zn}挂失了卡 {old_no}：支付宝里的这张卡暂停使用"),
        format!("{zn} reports card {old_no} lost: it is paused in Alipay"),
    )?;
    let change = city
        .replace_card(
            operator,
            &j.run_key("replace")?,
            &card.id,
            &replacement_number(j.run),
        )
        .await?;
    let new_card = change
        .new_card
        .clone()
        .ok_or_else(|| DemoError::Step("the replacement returned no new card".into()))?;
    let carried = change.funds_moved.unwrap_or(Money::ZERO);
    let moved = city.cards().binding(&me, binding).await?;
    let old_balance = city
        .accounts()
        .balance(
            crate::glue::money::wallet_of(&card.wallet_account).map_err(CityCardError::Invalid)?,
        )
        .await?;
    let wallet_balance = city.wallet().balance(&me, &new_card.id).await?;
    let new_no = mask_number(new_card.number.as_str());
    let old_replaced = matches!(
        city.cards().card(&me, &card.id).await?.status,
        CardStatus::Replaced { .. }
    );
    if old_replaced {
        p.say(
            format!("补办了新卡 {new_no}；旧卡作废"),
            format!("a new card {new_no} is issued; the old card no longer works"),
        )?;
    } else {
        p.say(
            format!("补办了新卡 {new_no}"),
            format!("a new card {new_no} is issued"),
        )?;
    }
    if moved.card == new_card.id {
        p.say(
            format!("支付宝里的绑定自动转到了新卡 {new_no}，不用重新绑定"),
            format!("the Alipay binding moved to the new card {new_no}: no need to bind again"),
        )?;
    } else {
        p.say(
            "支付宝里的绑定没有转到新卡，需要重新绑定",
            "the Alipay binding did not move to the new card: bind it again",
        )?;
    }
    p.ids(format!("binding {} ({:?})", moved.id, moved.state))?;
    let (c, o, n) = (y(carried), y(old_balance), y(wallet_balance));
    p.say(
        format!("余额 {c} 转到新卡：旧卡 {o}，新卡 {n}"),
        format!("the balance of {c} moved to the new card: old card {o}, new card {n}"),
    )?;
    if let Some(pass) = city
        .simulated_wallet()
        .and_then(|sim| sim.passes().into_iter().find(|x| x.binding == *binding))
    {
        let shown = &pass.card_number_masked;
        p.say(
            format!("支付宝卡包里现在显示新卡 {shown}"),
            format!("Alipay's card wallet now shows the new card {shown}"),
        )?;
        p.ids(format!("pass {} ({:?})", pass.serial, pass.status))?;
    }
    Ok(Replaced {
        new_card,
        carried,
        wallet_balance,
    })
}
