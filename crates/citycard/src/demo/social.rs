//! Step 10: the cardholder's social insurance summary (category, employers,
//! each insurance's months paid, arrears and this year's contributions, the
//! medical accounts). The history it reads is registered during step 1
//! ([`register_history`]).

use citycard_core::{CivilMonth, PersonId, Principal};
use citycard_healthcare::{ContributionRates, Employer, EmploymentSpell, PersonCategory};

use super::people::Person;
use super::{DemoError, Journey, Printer, parse, y, yuan};

/// Prints the step's heading and the summary.
pub(super) async fn summary(
    j: &Journey<'_>,
    p: &mut Printer<'_>,
    person: &Person,
) -> Result<(), DemoError> {
    p.heading("社保概况", "The social insurance summary")?;
    print_summary(j, p, &person.principal(), &person.id).await
}

/// Registers the cardholder's employers, category and monthly contribution
/// history (part of step 1; upserts, so later runs change nothing).
pub(super) async fn register_history(
    j: &Journey<'_>,
    p: &mut Printer<'_>,
    person: &PersonId,
) -> Result<(), DemoError> {
    let records = j.city.social_insurance_records();
    let month = |y: i32, m: u32| {
        CivilMonth::new(y, m).ok_or_else(|| DemoError::Step(format!("month {y}-{m}")))
    };
    let employers = [
        Employer {
            id: parse("emp-westlake-software")?,
            name: "西湖软件有限公司".into(),
            district: "西湖区".into(),
        },
        Employer {
            id: parse("emp-qiantang-logistics")?,
            name: "钱塘物流有限公司".into(),
            district: "钱塘区".into(),
        },
    ];
    for e in &employers {
        records.put_employer(e).await?;
    }
    records
        .put_category(person, PersonCategory::Employee)
        .await?;
    let [first, second] = &employers;
    let history = citycard_healthcare::social::generate_history(
        &ContributionRates::hangzhou()?,
        person,
        &[
            EmploymentSpell {
                employer: first.id.clone(),
                from: month(2021, 3)?,
                to: month(2023, 2)?,
                wage: yuan("8500.00")?,
                yearly_raise: parse("0.05")?,
            },
            EmploymentSpell {
                employer: second.id.clone(),
                from: month(2023, 4)?,
                to: month(2026, 10)?,
                wage: yuan("11000.00")?,
                yearly_raise: parse("0.04")?,
            },
        ],
        &[month(2026, 9)?],
    )?;
    records.upsert(&history).await?;
    let n = history.len();
    p.say(
        format!("登记了社保缴费记录：2 家单位共 {n} 条月度记录"),
        format!("social insurance history registered: {n} monthly records with 2 employers"),
    )?;
    Ok(())
}

async fn print_summary(
    j: &Journey<'_>,
    p: &mut Printer<'_>,
    me: &Principal,
    person: &PersonId,
) -> Result<(), DemoError> {
    let s = j
        .city
        .healthcare()
        .social_insurance()
        .summary(me, person)
        .await?;
    let category = match s.category {
        Some(PersonCategory::Employee) => ("在职职工", "employed"),
        Some(PersonCategory::FlexibleEmployment) => ("灵活就业", "j-employed"),
        Some(PersonCategory::Retired) => ("退休", "retired"),
        Some(PersonCategory::Resident) => ("城乡居民", "resident"),
        _ => ("未知", "unknown"),
    };
    p.say(
        format!("参保身份：{}", category.0),
        format!("insured as: {}", category.1),
    )?;
    for e in &s.employers {
        let (name, district) = (
            e.name.as_deref().unwrap_or(e.id.as_str()),
            e.district.as_deref().unwrap_or("-"),
        );
        let (from, to) = (e.first_month, e.last_month);
        p.say(
            format!("工作单位 {name}（{district}）{from} – {to}"),
            format!("employer {name} ({district}) {from} – {to}"),
        )?;
    }
    for i in &s.insurances {
        use citycard_healthcare::social::{ContributionStatus, Insurance};
        let name = match i.insurance {
            Insurance::Pension => ("养老保险", "pension"),
            Insurance::Medical => ("医疗保险", "medical"),
            Insurance::Unemployment => ("失业保险", "unemployment"),
            Insurance::WorkInjury => ("工伤保险", "work injury"),
            Insurance::Maternity => ("生育保险", "maternity"),
        };
        let latest = match i.current_status {
            Some(ContributionStatus::Paid) => ("已缴", "paid"),
            Some(ContributionStatus::Arrears) => ("欠缴", "unpaid"),
            Some(ContributionStatus::Suspended) => ("暂停", "suspended"),
            None => ("-", "-"),
        };
        let (years, months) = (i.cumulative_months / 12, i.cumulative_months % 12);
        let (base, arrears, employer, employee) = (
            i.current_base.map_or("-".into(), y),
            y(i.arrears),
            y(i.employer_paid_this_year),
            y(i.employee_paid_this_year),
        );
        p.say(
            format!(
                "{:<6} 累计缴费 {years} 年 {months} 个月；最近一个月{}，缴费基数 {base}；欠缴 {arrears}；{} 年单位缴 {employer}，个人缴 {employee}",
                name.0, latest.0, s.year
            ),
            format!(
                "{:<13} {years} years {months} months paid; latest month {} on base {base}; owed {arrears}; paid in {} by the employer {} / by him {employee}",
                name.1, latest.1, s.year, employer
            ),
        )?;
    }
    if let Some(m) = &s.medical_accounts {
        let (c, a) = (y(m.current_year), y(m.accumulated));
        p.say(
            format!("医保个人账户：当年账户 {c}，历年账户 {a}"),
            format!("medical accounts: this year's {c}, savings of earlier years {a}"),
        )?;
    }
    Ok(())
}
