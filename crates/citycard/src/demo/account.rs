//! Step 2: each person registers an Alipay account and has it real-name
//! verified (two factors: name and ID number).

use citycard_core::{Platform, PlatformAccountId, Principal};
use citycard_identity::{KnownPerson, RealNameRequest, VerificationOutcome};

use super::people::{Cast, Person};
use super::{DemoError, Journey, Printer, key, mask_name, mask_number};

/// The two verified Alipay accounts.
pub(super) struct Accounts {
    /// The cardholder's.
    pub(super) zhang: PlatformAccountId,
    /// His mother's.
    pub(super) mother: PlatformAccountId,
}

/// Registers and verifies both accounts (fixed keys: later runs replay it).
pub(super) async fn register_verified(
    j: &Journey<'_>,
    p: &mut Printer<'_>,
    cast: &Cast,
) -> Result<Accounts, DemoError> {
    j.at(8, 10);
    p.heading(
        "注册支付宝账户并完成实名认证",
        "An Alipay account registered and real-name verified",
    )?;
    let zhang_account = verified_account(j, p, &cast.zhang, "2088102146225135", "zhang").await?;
    let mother_account = verified_account(j, p, &cast.mother, "2088102146227781", "mother").await?;
    Ok(Accounts {
        zhang: zhang_account,
        mother: mother_account,
    })
}

/// Registers one person's account, verifies its real name and checks it is linked to them.
async fn verified_account(
    j: &Journey<'_>,
    p: &mut Printer<'_>,
    person: &Person,
    external: &str,
    who: &str,
) -> Result<PlatformAccountId, DemoError> {
    let identity = j.city.identity();
    let alipay = Principal::Platform {
        platform: Platform::Alipay,
    };
    if let Some(sim) = j.city.simulated_verifier() {
        // The provider's own records (the simulated one lives in memory).
        sim.register(&person.id_number, KnownPerson::named(person.name));
    }
    let account = identity
        .register_account(
            &alipay,
            Platform::Alipay,
            external,
            &key(&format!("demo-setup-alipay-{who}"))?,
        )
        .await?;
    let report = identity
        .verify_real_name(
            &alipay,
            &account.id,
            &RealNameRequest::two_factor(person.name, person.id_number.reveal()),
            &key(&format!("demo-setup-verify-{who}"))?,
        )
        .await?;
    let (account_no, name) = (mask_number(external), mask_name(person.name));
    if report.outcome == VerificationOutcome::Match {
        p.say(
            format!("{name}的支付宝账户 {account_no}：实名认证通过（姓名和身份证号已核对）"),
            format!(
                "{name}'s Alipay account {account_no}: real name confirmed (name and ID number checked)"
            ),
        )?;
    } else {
        p.say(
            format!("{name}的支付宝账户 {account_no}：实名认证未通过"),
            format!("{name}'s Alipay account {account_no}: real name not confirmed"),
        )?;
    }
    p.ids(format!(
        "account {}, outcome {:?}, level {:?}",
        account.id, report.outcome, report.level
    ))?;
    if report.person.as_ref() != Some(&person.id) {
        return Err(DemoError::Step(
            "the verified account is not linked to the enrolled person".into(),
        ));
    }
    Ok(account.id)
}
