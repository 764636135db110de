//! Step 9: an outpatient bill, quoted and then settled with the medical
//! insurance split (pooled fund, the two medical accounts, the e-wallet for
//! the cash part). The medical accounts it draws on are funded during step 1
//! ([`fund_accounts`]).

use citycard_core::{Money, PersonId, Principal};
use citycard_healthcare::{
    BillRequest, CashSource, CatalogueClass, ChargeItem, HospitalLevel, SettlementRecord, VisitType,
};
use citycard_ledger::{AccountId, CreateTransferResult, NewTransfer, TransferId};

use super::people::Person;
use super::{
    DemoError, HOSPITAL, HOSPITAL_NAME, HOSPITAL_NAME_ZH, Journey, Printer, key, mask_name, parse,
    y, yuan,
};
use crate::accounts::Accounts;
use crate::glue::money::codes;

/// Prints the step's heading and settles the cardholder's bill.
pub(super) async fn pay(
    j: &Journey<'_>,
    p: &mut Printer<'_>,
    patient: &Person,
) -> Result<SettlementRecord, DemoError> {
    j.at(21, 20);
    p.heading(
        "门诊缴费：医保分担",
        "An outpatient bill settled with the insurance split",
    )?;
    settle(j, p, &patient.principal(), patient).await
}

async fn settle(
    j: &Journey<'_>,
    p: &mut Printer<'_>,
    me: &Principal,
    patient: &Person,
) -> Result<SettlementRecord, DemoError> {
    let billing = j.city.healthcare().billing();
    let request = BillRequest {
        patient: patient.id.clone(),
        hospital: parse(HOSPITAL)?,
        hospital_level: HospitalLevel::Tertiary,
        visit_type: VisitType::Outpatient,
        items: vec![
            ChargeItem::new("consultation", CatalogueClass::A, yuan("50.00")?, 1),
            ChargeItem::new("blood-test", CatalogueClass::A, yuan("150.00")?, 1),
            ChargeItem::new("ct-scan", CatalogueClass::A, yuan("560.00")?, 1),
            ChargeItem::new("medicine", CatalogueClass::A, yuan("80.00")?, 3),
            ChargeItem::new("vitamin-supplement", CatalogueClass::C, yuan("30.00")?, 1),
        ],
        cash_source: CashSource::EWallet,
    };
    let quote = billing.quote(me, &request).await?;
    let (name, total) = (mask_name(patient.name), y(quote.total));
    p.say(
        format!("{name}在{HOSPITAL_NAME_ZH}（三级医院）看夜间门诊：费用 {total}，付款前先算好各方分担"),
        format!(
            "{name} at {HOSPITAL_NAME}'s evening clinic (tertiary): bill {total}, worked out before paying"
        ),
    )?;
    let record = billing.settle(me, &j.run_key("bill")?, &request).await?;
    let b = &record.breakdown;
    let ratio = (b.fund_ratio * rust_decimal::Decimal::from(100)).normalize();
    let (fund, current, accumulated, cash) = (
        y(b.fund_paid),
        y(b.current_year_account_paid),
        y(b.accumulated_account_paid),
        y(b.cash_paid),
    );
    p.say(
        format!(
            "已结算：医保统筹基金付 {fund}（起付线以上部分的 {ratio}%），当年账户付 {current}，历年账户付 {accumulated}，电子钱包付现金部分 {cash}"
        ),
        format!(
            "paid: the insurance pooled fund {fund} ({ratio}% above the deductible), this year's medical account {current}, savings of earlier years {accumulated}, the e-wallet (cash) {cash}"
        ),
    )?;
    let (within, deductible, co, own) = (
        y(b.within_policy),
        y(b.deductible_applied),
        y(b.co_payment),
        y(b.fully_self_paid),
    );
    p.say(
        format!("医保范围内 {within}，起付线 {deductible}，个人自付 {co}，全自费 {own}"),
        format!(
            "covered by the insurance {within}, deductible {deductible}, co-payment {co}, not covered {own}"
        ),
    )?;
    Ok(record)
}

/// One ledger transfer by the system; false when it already existed (a replayed setup).
async fn transfer(
    j: &Journey<'_>,
    id: TransferId,
    from: AccountId,
    to: AccountId,
    amount: Money,
    code: u16,
    memo: &str,
) -> Result<bool, DemoError> {
    let results = j
        .city
        .ledger()
        .create_transfers(
            &Principal::System,
            vec![NewTransfer::new(id, from, to, amount, code).with_memo(memo)],
        )
        .await?;
    match results.first() {
        Some(CreateTransferResult::Ok) => Ok(true),
        Some(CreateTransferResult::Exists) => Ok(false),
        other => Err(DemoError::Step(format!(
            "the ledger refused {memo}: {other:?}"
        ))),
    }
}

/// Funds the cardholder's medical accounts: the accumulated one once (fixed key),
/// the current-year credit each run.
pub(super) async fn fund_accounts(
    j: &Journey<'_>,
    p: &mut Printer<'_>,
    person: &PersonId,
) -> Result<(), DemoError> {
    let accumulated = yuan("600.00")?;
    let first = transfer(
        j,
        TransferId::from_idempotency_key("demo.medical_funding", &key("demo-setup-accumulated")?),
        Accounts::insurance_funding(),
        Accounts::medical_accumulated(person),
        accumulated,
        codes::MEDICAL_FUNDING,
        "accumulated medical account: savings of earlier years",
    )
    .await?;
    let credit = yuan("200.00")?;
    transfer(
        j,
        TransferId::from_idempotency_key("demo.medical_funding", &j.run_key("credit")?),
        Accounts::insurance_funding(),
        Accounts::medical_current(person),
        credit,
        codes::MEDICAL_FUNDING,
        "current-year medical account credit",
    )
    .await?;
    let (c, a) = (y(credit), y(accumulated));
    p.say(
        format!(
            "医保经办机构向他的医保个人账户划入：当年账户 +{c}{}",
            if first {
                format!("，历年账户 +{a}")
            } else {
                String::new()
            }
        ),
        format!(
            "the medical insurance agency paid into his medical accounts: this year's +{c}{}",
            if first {
                format!(", savings of earlier years +{a}")
            } else {
                String::new()
            }
        ),
    )?;
    Ok(())
}
