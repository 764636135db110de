//! Step 11: the day's wallet statement, each entry with its counterparty in
//! words; a fare is shown at the time of its ride and says when it was settled.

use std::collections::BTreeMap;

use chrono::Duration;
use citycard_binding::Lang;
use citycard_binding::words::platform_name;
use citycard_core::{Clock, Money, Platform, start_of_civil_day};
use citycard_ledger::AccountId;

use super::people::Cast;
use super::rides::Rides;
use super::{
    DemoError, HOSPITAL, HOSPITAL_NAME, HOSPITAL_NAME_ZH, Journey, Printer, hm, operator_name, y,
};
use crate::accounts::Accounts;
use crate::glue::money::codes;

/// Prints the statement of the cardholder's card from the start of the day.
pub(super) async fn print(
    j: &Journey<'_>,
    p: &mut Printer<'_>,
    cast: &Cast,
    rides: &Rides,
) -> Result<(), DemoError> {
    let city = j.city;
    j.at(23, 40);
    p.heading("今天的钱包明细", "The wallet statement for today")?;
    let (me, card) = (cast.zhang.principal(), &cast.card);
    let Rides {
        report, ride_times, ..
    } = rides;
    let statement = city
        .wallet()
        .statement(
            &me,
            &card.id,
            start_of_civil_day(j.day),
            j.clock.now() + Duration::seconds(1),
        )
        .await?;
    let labels = labels(&report.revenue_by_operator, p.lang);
    let opening = y(statement.opening_balance);
    p.say(
        format!("期初余额 {opening}"),
        format!("opening balance {opening}"),
    )?;
    for entry in &statement.entries {
        let amount = format!("{:+}", entry.amount.to_decimal());
        let other = labels
            .get(&entry.counterparty)
            .cloned()
            .unwrap_or_else(|| p.lang.pick("其他账户", "another account").to_owned());
        // A fare is shown at the time of the ride; it was settled later.
        let ride = entry
            .reference
            .as_ref()
            .and_then(|r| ride_times.get(r.as_str()));
        let at = hm(ride.copied().unwrap_or(entry.timestamp));
        let settled = hm(entry.timestamp);
        let what = match (entry.code, ride) {
            (codes::TOP_UP, _) => (format!("充值（{other}）"), format!("top-up ({other})")),
            (codes::FARE, Some(_)) => (
                format!("乘车（{other}），{settled} 结算"),
                format!("ride ({other}), settled at {settled}"),
            ),
            (codes::FARE, None) => (format!("乘车（{other}）"), format!("ride ({other})")),
            (codes::MEDICAL, _) => (
                format!("看病自付部分（{other}）"),
                format!("hospital bill, own share ({other})"),
            ),
            (codes::REFUND, _) => ("退款".to_owned(), "refund".to_owned()),
            (codes::CARRY, _) => ("余额转移".to_owned(), "balance carried".to_owned()),
            _ => (other.clone(), other.clone()),
        };
        p.say(
            format!("  {at}  {amount:>9}  {}", what.0),
            format!("  {at}  {amount:>9}  {}", what.1),
        )?;
        p.ids(format!(
            "transfer {}, memo {:?}",
            entry.transfer_id,
            entry.memo.as_deref().unwrap_or("-")
        ))?;
    }
    let closing = y(statement.closing_balance);
    p.say(
        format!("期末余额 {closing}"),
        format!("closing balance {closing}"),
    )?;
    Ok(())
}

/// Names for the accounts a statement may show as counterparties.
fn labels(operators: &BTreeMap<String, Money>, lang: Lang) -> BTreeMap<AccountId, String> {
    let mut labels = BTreeMap::new();
    for platform in [Platform::Alipay, Platform::WechatPay, Platform::UnionPay] {
        labels.insert(
            Accounts::clearing(&platform),
            platform_name(&platform, lang),
        );
    }
    for operator in operators
        .keys()
        .map(String::as_str)
        .chain(["hz_bus", "hz_metro"])
    {
        labels.insert(Accounts::revenue(operator), operator_name(operator, lang));
    }
    labels.insert(
        Accounts::hospital(HOSPITAL),
        lang.pick(HOSPITAL_NAME_ZH, HOSPITAL_NAME).to_owned(),
    );
    labels.insert(
        Accounts::pooled_fund(),
        lang.pick("医保统筹基金", "the insurance pooled fund")
            .to_owned(),
    );
    labels.insert(Accounts::refunds(), lang.pick("退款", "refunds").to_owned());
    labels
}
