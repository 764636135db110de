//! Step 13: the cardholder unbinds the card in Alipay, withdrawing his
//! consent; the pass leaves the card wallet.

use citycard_binding::{Binding, BindingId, BindingState, RemovalReason};

use super::people::Cast;
use super::{DemoError, Journey, Printer, hm};

/// Unbinds and returns the removed binding.
pub(super) async fn unbind(
    j: &Journey<'_>,
    p: &mut Printer<'_>,
    cast: &Cast,
    binding: &BindingId,
) -> Result<Binding, DemoError> {
    let city = j.city;
    j.at(23, 50);
    p.heading("解除绑定（撤回授权）", "Unbinding (consent withdrawn)")?;
    let me = cast.zhang.principal();
    let removed = city
        .cards()
        .unbind(
            &me,
            &j.run_key("unbind")?,
            binding,
            RemovalReason::UserUnbound,
        )
        .await?;
    let pass_left = city
        .simulated_wallet()
        .is_some_and(|sim| sim.passes().iter().any(|x| x.binding == *binding));
    let at = removed.consent.withdrawn_at.map_or("-".into(), hm);
    let unbound = removed.state == BindingState::Removed;
    p.say(
        format!(
            "{}；{at} 撤回了授权；{}",
            if unbound {
                "市民卡已从支付宝解绑"
            } else {
                "解绑尚未完成"
            },
            if pass_left {
                "卡包里还显示这张卡"
            } else {
                "卡包里已不再显示这张卡"
            }
        ),
        format!(
            "{}; consent withdrawn at {at}; {}",
            if unbound {
                "the card is unbound from Alipay"
            } else {
                "unbinding is not finished"
            },
            if pass_left {
                "the card still shows in the card wallet"
            } else {
                "the card is gone from Alipay's card wallet"
            }
        ),
    )?;
    p.ids(format!("binding {} ({:?})", removed.id, removed.state))?;
    Ok(removed)
}
