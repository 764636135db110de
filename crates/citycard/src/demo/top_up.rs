//! Step 5: a top-up from Alipay into the card's e-wallet, and the balance the
//! card wallet (卡包) shows.

use citycard_binding::BindingId;
use citycard_core::{Money, Platform};

use super::people::Cast;
use super::{DemoError, Journey, Printer, TOP_UP_YUAN, hm, y, yuan};
use crate::error::CityCardError;

/// What the top-up step did.
pub(super) struct TopUp {
    /// The wallet balance before the top-up.
    pub(super) opening_balance: Money,
    /// Topped up (zero when the wallet cap refused it).
    pub(super) topped_up: Money,
}

/// Tops up [`TOP_UP_YUAN`]; over the wallet's cap the refusal is shown and the journey goes on.
pub(super) async fn top_up(
    j: &Journey<'_>,
    p: &mut Printer<'_>,
    cast: &Cast,
    binding: &BindingId,
) -> Result<TopUp, DemoError> {
    let city = j.city;
    j.at(8, 20);
    p.heading("通过支付宝充值", "Top-up via Alipay")?;
    let (me, card) = (cast.zhang.principal(), &cast.card);
    let opening_balance = city.wallet().balance(&me, &card.id).await?;
    let amount = yuan(TOP_UP_YUAN)?;
    let topped_up = match city
        .wallet()
        .top_up(
            &me,
            &card.id,
            amount,
            &Platform::Alipay,
            &j.run_key("top-up")?,
        )
        .await
    {
        Ok(receipt) => {
            let (a, from) = (y(amount), y(opening_balance));
            let to = receipt.balance.map_or_else(|| "—".to_owned(), y);
            p.say(
                format!("从支付宝充值 {a}：钱包余额 {from} → {to}"),
                format!("topped up {a} from Alipay: wallet {from} → {to}"),
            )?;
            amount
        }
        // After many runs the wallet reaches its cap: show the refusal and go on.
        Err(e @ CityCardError::OverCap { .. }) => {
            p.refusal(&e.user_message(p.lang))?;
            Money::ZERO
        }
        Err(e) => return Err(e.into()),
    };
    let view = city.cards().wallet_view(&me, binding).await?;
    match view.balance {
        Some(b) => {
            let (bal, at) = (y(b.balance), hm(b.as_of));
            p.say(
                format!("支付宝卡包里的市民卡显示余额 {bal}（{at} 更新）"),
                format!("the card in Alipay's card wallet shows {bal} (as of {at})"),
            )?
        }
        None => p.say(
            "卡包里暂时还没有显示余额（下次同步时更新）",
            "the card wallet shows no balance yet (it refreshes on the next sync)",
        )?,
    }
    Ok(TopUp {
        opening_balance,
        topped_up,
    })
}
