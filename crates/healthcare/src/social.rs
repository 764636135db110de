//! Social insurance: monthly contribution records, the cardholder's summary, and a
//! generator of sample histories from dated rates and base limits.
//!
//! Maternity insurance is merged into employee medical insurance (national:
//! 国办发〔2019〕10号). The merger month is dated data
//! (`data/hangzhou_insurance_mergers.csv`; Zhejiang's own date was not found, so the
//! shipped row takes the national deadline and is marked unverified). For months from
//! the merger on, the generator collects the maternity rate as part of the medical
//! record (four records a month, not five), and a summary as of such a month shows four
//! lines: earlier maternity records are counted in the medical line.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::Datelike;
use citycard_core::{
    AuditLog, AuditOutcome, AuditRecord, CivilMonth, Clock, DelegationScope, Money, PersonId,
    Principal, civil_date,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::HealthcareError;
use crate::ids::EmployerId;
use crate::ports::{MedicalPayments, PatientDirectory, SocialInsuranceRecords};
use crate::provenance::{Provenance, read_provenance};
use crate::settlement::AccountBalances;

/// One of the five social insurances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Insurance {
    /// Basic pension (养老).
    Pension,
    /// Basic medical (医疗).
    Medical,
    /// Unemployment (失业).
    Unemployment,
    /// Work injury (工伤).
    WorkInjury,
    /// Maternity (生育).
    Maternity,
}

impl Insurance {
    /// All five, in display order.
    pub const ALL: [Insurance; 5] = [
        Insurance::Pension,
        Insurance::Medical,
        Insurance::Unemployment,
        Insurance::WorkInjury,
        Insurance::Maternity,
    ];

    /// A stable code.
    pub fn code(self) -> &'static str {
        match self {
            Insurance::Pension => "pension",
            Insurance::Medical => "medical",
            Insurance::Unemployment => "unemployment",
            Insurance::WorkInjury => "work_injury",
            Insurance::Maternity => "maternity",
        }
    }

    /// The insurance for a code.
    pub fn from_code(code: &str) -> Option<Insurance> {
        Insurance::ALL.into_iter().find(|i| i.code() == code)
    }
}

/// The state of one month's contribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContributionStatus {
    /// Paid in full.
    Paid,
    /// Due and not (fully) paid.
    Arrears,
    /// Suspended (no employment, insurance paused).
    Suspended,
}

impl ContributionStatus {
    /// A stable code.
    pub fn code(self) -> &'static str {
        match self {
            ContributionStatus::Paid => "paid",
            ContributionStatus::Arrears => "arrears",
            ContributionStatus::Suspended => "suspended",
        }
    }

    /// The status for a code.
    pub fn from_code(code: &str) -> Option<ContributionStatus> {
        [
            ContributionStatus::Paid,
            ContributionStatus::Arrears,
            ContributionStatus::Suspended,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }
}

/// One month of one insurance for one person and employer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContributionRecord {
    /// The insured person.
    pub person: PersonId,
    /// The paying employer.
    pub employer: EmployerId,
    /// The contribution month.
    pub month: CivilMonth,
    /// Which insurance.
    pub insurance: Insurance,
    /// The contribution base.
    pub base: Money,
    /// The employer's share due.
    pub employer_amount: Money,
    /// The employee's share due.
    pub employee_amount: Money,
    /// What was paid of the total due.
    pub paid: Money,
    /// Paid, arrears or suspended.
    pub status: ContributionStatus,
}

impl ContributionRecord {
    /// Employer plus employee amounts.
    pub fn due(&self) -> Money {
        Money::from_fen(
            self.employer_amount
                .fen()
                .saturating_add(self.employee_amount.fen()),
        )
    }
}

/// An employer (a company: public data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Employer {
    /// Its id.
    pub id: EmployerId,
    /// Its registered name.
    pub name: String,
    /// The district where it pays (e.g. 西湖区).
    pub district: String,
}

/// The insured person's category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonCategory {
    /// Insured through an employer (企业职工).
    Employee,
    /// Flexible employment, paying alone (灵活就业).
    FlexibleEmployment,
    /// A retiree.
    Retired,
    /// A resident (urban and rural residents' insurance).
    Resident,
}

impl PersonCategory {
    /// A stable code.
    pub fn code(self) -> &'static str {
        match self {
            PersonCategory::Employee => "employee",
            PersonCategory::FlexibleEmployment => "flexible_employment",
            PersonCategory::Retired => "retired",
            PersonCategory::Resident => "resident",
        }
    }

    /// The category for a code.
    pub fn from_code(code: &str) -> Option<PersonCategory> {
        [
            PersonCategory::Employee,
            PersonCategory::FlexibleEmployment,
            PersonCategory::Retired,
            PersonCategory::Resident,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }
}

/// Months as "8 years 8 months".
pub fn format_months(months: u32) -> String {
    format!("{} years {} months", months / 12, months % 12)
}

/// One insurance in the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsuranceSummary {
    /// Which insurance.
    pub insurance: Insurance,
    /// Months fully paid, all employers together (a month counts once).
    pub cumulative_months: u32,
    /// The same as "N years M months".
    pub cumulative_text: String,
    /// The status of the latest month on record.
    pub current_status: Option<ContributionStatus>,
    /// The base of the latest month on record.
    pub current_base: Option<Money>,
    /// Due but unpaid, all months.
    pub arrears: Money,
    /// Paid this calendar year by the employer.
    pub employer_paid_this_year: Money,
    /// Paid this calendar year by the employee.
    pub employee_paid_this_year: Money,
}

/// An employer in the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmployerSummary {
    /// The employer (name and district), or just the id when unknown to the store.
    pub id: EmployerId,
    /// The name, when known.
    pub name: Option<String>,
    /// The district, when known.
    pub district: Option<String>,
    /// First month on record with this employer.
    pub first_month: CivilMonth,
    /// Last month on record with this employer.
    pub last_month: CivilMonth,
}

/// What a cardholder sees in the social insurance query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocialInsuranceSummary {
    /// The person.
    pub person: PersonId,
    /// Their category.
    pub category: Option<PersonCategory>,
    /// Employers, most recent last.
    pub employers: Vec<EmployerSummary>,
    /// One entry per insurance.
    pub insurances: Vec<InsuranceSummary>,
    /// Medical personal account balances, when the payments port answered.
    pub medical_accounts: Option<AccountBalances>,
    /// The year "this year" refers to.
    pub year: i32,
}

/// Builds the summary from records (pure; shared by the service and tests). With
/// `maternity_in_medical` (a summary as of a month after the merger) the summary has
/// four lines and maternity records count in the medical line; without it, five.
pub fn summarize(
    person: &PersonId,
    category: Option<PersonCategory>,
    records: &[ContributionRecord],
    employers: &HashMap<EmployerId, Employer>,
    year: i32,
    maternity_in_medical: bool,
) -> Result<SocialInsuranceSummary, HealthcareError> {
    let mut spans: BTreeMap<EmployerId, (CivilMonth, CivilMonth)> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.status != ContributionStatus::Suspended)
    {
        let e = spans
            .entry(r.employer.clone())
            .or_insert((r.month, r.month));
        e.0 = e.0.min(r.month);
        e.1 = e.1.max(r.month);
    }
    let mut employer_list: Vec<EmployerSummary> = spans
        .into_iter()
        .map(|(id, (first, last))| {
            let known = employers.get(&id);
            EmployerSummary {
                name: known.map(|e| e.name.clone()),
                district: known.map(|e| e.district.clone()),
                id,
                first_month: first,
                last_month: last,
            }
        })
        .collect();
    employer_list.sort_by_key(|e| (e.last_month, e.first_month));
    let mut insurances = Vec::new();
    let line_of = |i: Insurance| {
        if maternity_in_medical && i == Insurance::Maternity {
            Insurance::Medical
        } else {
            i
        }
    };
    for insurance in Insurance::ALL {
        if line_of(insurance) != insurance {
            continue;
        }
        let mine: Vec<&ContributionRecord> = records
            .iter()
            .filter(|r| line_of(r.insurance) == insurance)
            .collect();
        let paid_months: BTreeSet<CivilMonth> = mine
            .iter()
            .filter(|r| r.status == ContributionStatus::Paid)
            .map(|r| r.month)
            .collect();
        // The latest month on record; within a month, the line's own record.
        let latest = mine
            .iter()
            .max_by_key(|r| (r.month, r.insurance == insurance));
        let mut arrears = Money::ZERO;
        let mut employer_paid = Money::ZERO;
        let mut employee_paid = Money::ZERO;
        for r in &mine {
            if r.status == ContributionStatus::Arrears {
                arrears = arrears.checked_add(r.due().checked_sub(r.paid)?.max(Money::ZERO))?;
            }
            if r.month.year == year && r.status == ContributionStatus::Paid {
                employer_paid = employer_paid.checked_add(r.employer_amount)?;
                employee_paid = employee_paid.checked_add(r.employee_amount)?;
            }
        }
        let months = paid_months.len() as u32;
        insurances.push(InsuranceSummary {
            insurance,
            cumulative_months: months,
            cumulative_text: format_months(months),
            current_status: latest.map(|r| r.status),
            current_base: latest.map(|r| r.base),
            arrears,
            employer_paid_this_year: employer_paid,
            employee_paid_this_year: employee_paid,
        });
    }
    Ok(SocialInsuranceSummary {
        person: person.clone(),
        category,
        employers: employer_list,
        insurances,
        medical_accounts: None,
        year,
    })
}

/// Answers the cardholder's social insurance query.
pub struct SocialInsuranceService {
    records: Arc<dyn SocialInsuranceRecords>,
    patients: Arc<dyn PatientDirectory>,
    payments: Option<Arc<dyn MedicalPayments>>,
    clock: Arc<dyn Clock>,
    audit: Option<Arc<dyn AuditLog>>,
    maternity_merged_from: Option<CivilMonth>,
}

impl std::fmt::Debug for SocialInsuranceService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocialInsuranceService")
            .finish_non_exhaustive()
    }
}

impl SocialInsuranceService {
    /// A service; `payments`, when given, supplies the medical account balances.
    pub fn new(
        records: Arc<dyn SocialInsuranceRecords>,
        patients: Arc<dyn PatientDirectory>,
        payments: Option<Arc<dyn MedicalPayments>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            records,
            patients,
            payments,
            clock,
            audit: None,
            maternity_merged_from: hangzhou_maternity_merger().ok().flatten(),
        }
    }

    /// Sets the month from which maternity is shown as part of medical (`None`: never);
    /// by default Hangzhou's shipped row (`data/hangzhou_insurance_mergers.csv`).
    #[must_use]
    pub fn with_maternity_merger(mut self, from: Option<CivilMonth>) -> Self {
        self.maternity_merged_from = from;
        self
    }

    /// Audits every summary read by a principal other than the system, allowed or denied.
    #[must_use]
    pub fn with_audit(mut self, audit: Arc<dyn AuditLog>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// The summary for a person: the person, a delegate with the view-records scope under a
    /// live grant, an operator or the system.
    #[tracing::instrument(skip_all)]
    pub async fn summary(
        &self,
        actor: &Principal,
        person: &PersonId,
    ) -> Result<SocialInsuranceSummary, HealthcareError> {
        let allowed = match actor {
            Principal::Cardholder { person: p } => p == person,
            Principal::Delegate { .. } => {
                self.patients
                    .delegate_allowed(actor, person, DelegationScope::ViewRecords)
                    .await?
            }
            Principal::Operator { .. } | Principal::System => true,
            _ => false,
        };
        if let Some(audit) = &self.audit
            && !matches!(actor, Principal::System)
        {
            audit
                .append(AuditRecord::new(
                    self.clock.now(),
                    actor.clone(),
                    "social_insurance.summary",
                    format!("person:{person}"),
                    if allowed {
                        AuditOutcome::Succeeded
                    } else {
                        AuditOutcome::Denied
                    },
                ))
                .await?;
        }
        if !allowed {
            return Err(HealthcareError::Denied(
                "only the insured person, a delegate allowed to view records or an operator may see this".into(),
            ));
        }
        let records = self.records.contributions(person, None, None).await?;
        let mut employers = HashMap::new();
        for id in records.iter().map(|r| &r.employer).collect::<BTreeSet<_>>() {
            if let Some(e) = self.records.employer(id).await? {
                employers.insert(id.clone(), e);
            }
        }
        let category = self.records.category(person).await?;
        let today = civil_date(self.clock.now());
        let year = today.year();
        let this_month = CivilMonth::new(year, today.month()).ok_or_else(|| {
            HealthcareError::InvalidInput("the clock's date has no civil month".into())
        })?;
        let merged = self
            .maternity_merged_from
            .is_some_and(|from| from <= this_month);
        let mut summary = summarize(person, category, &records, &employers, year, merged)?;
        if let Some(payments) = &self.payments {
            summary.medical_accounts = payments.balances(person).await.ok();
        }
        tracing::info!(records = records.len(), "social insurance summary");
        Ok(summary)
    }
}

/// Dated contribution rates and base limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContributionRates {
    rates: Vec<(CivilMonth, Insurance, Decimal, Decimal, Provenance)>,
    bases: Vec<(CivilMonth, Money, Money, Provenance)>,
    maternity_merged_from: Option<(CivilMonth, Provenance)>,
}

/// Hangzhou's shipped rates (marked "check").
pub const HANGZHOU_RATES_CSV: &str = include_str!("../data/hangzhou_contribution_rates.csv");
/// Hangzhou's shipped base limits (marked "check").
pub const HANGZHOU_BASES_CSV: &str = include_str!("../data/hangzhou_contribution_bases.csv");
/// Hangzhou's insurance mergers (maternity into medical), as shipped.
pub const HANGZHOU_MERGERS_CSV: &str = include_str!("../data/hangzhou_insurance_mergers.csv");

fn csv_reader(text: &str) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes())
}

/// Reads a mergers table (`effective_from,insurance,merged_into,confidence,source`); only
/// maternity into medical is known. Returns the merger month and its provenance.
pub fn parse_mergers(text: &str) -> Result<Option<(CivilMonth, Provenance)>, HealthcareError> {
    let mut found = None;
    for (i, rec) in csv_reader(text).records().enumerate() {
        let bad = |message: String| HealthcareError::BadData {
            location: format!("mergers record {}", i + 1),
            message,
        };
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let f = |n: usize| {
            rec.get(n)
                .ok_or_else(|| bad(format!("missing column {}", n + 1)))
        };
        let month = parse_month(f(0)?).ok_or_else(|| bad("bad month".into()))?;
        if (f(1)?, f(2)?) != ("maternity", "medical") {
            return Err(bad(
                "only maternity merged into medical is known: fix or remove the row".into(),
            ));
        }
        let provenance = read_provenance(rec.get(3), rec.get(4)).map_err(bad)?;
        if found.replace((month, provenance)).is_some() {
            return Err(bad("maternity is merged once: keep one row".into()));
        }
    }
    Ok(found)
}

/// The month from which Hangzhou shows maternity as part of medical (shipped data).
pub fn hangzhou_maternity_merger() -> Result<Option<CivilMonth>, HealthcareError> {
    Ok(parse_mergers(HANGZHOU_MERGERS_CSV)?.map(|(m, _)| m))
}

fn parse_month(text: &str) -> Option<CivilMonth> {
    let (y, m) = text.split_once('-')?;
    CivilMonth::new(y.parse().ok()?, m.parse().ok()?)
}

impl ContributionRates {
    /// Hangzhou's shipped tables (marked "check").
    pub fn hangzhou() -> Result<Self, HealthcareError> {
        Self::from_csv(HANGZHOU_RATES_CSV, HANGZHOU_BASES_CSV)?
            .with_mergers_csv(HANGZHOU_MERGERS_CSV)
    }

    /// The same rates with a mergers table (see [`parse_mergers`]).
    pub fn with_mergers_csv(mut self, text: &str) -> Result<Self, HealthcareError> {
        self.maternity_merged_from = parse_mergers(text)?;
        Ok(self)
    }

    /// The month from which maternity is collected and shown as part of medical, with
    /// the row's provenance.
    pub fn maternity_merger(&self) -> Option<&(CivilMonth, Provenance)> {
        self.maternity_merged_from.as_ref()
    }

    /// Whether maternity is part of medical in `month`.
    pub fn maternity_in_medical(&self, month: CivilMonth) -> bool {
        self.maternity_merged_from
            .as_ref()
            .is_some_and(|(from, _)| *from <= month)
    }

    /// The provenance of the rate row in force for an insurance in a month.
    pub fn rate_provenance(&self, insurance: Insurance, month: CivilMonth) -> Option<&Provenance> {
        self.rates
            .iter()
            .rev()
            .find(|r| r.1 == insurance && r.0 <= month)
            .map(|r| &r.4)
    }

    /// The provenance of the base-limit row in force in a month.
    pub fn base_provenance(&self, month: CivilMonth) -> Option<&Provenance> {
        self.bases.iter().rev().find(|b| b.0 <= month).map(|b| &b.3)
    }

    /// Loads rates (`effective_from,insurance,employer_rate,employee_rate,confidence,source`)
    /// and base limits (`effective_from,base_min,base_max,confidence,source`) from CSV text,
    /// without mergers; a row without a confidence mark or a source is refused.
    pub fn from_csv(rates_csv: &str, bases_csv: &str) -> Result<Self, HealthcareError> {
        let reader = csv_reader;
        let bad = |what: &str, i: usize, message: String| HealthcareError::BadData {
            location: format!("{what} record {}", i + 1),
            message,
        };
        let mut rates = Vec::new();
        for (i, rec) in reader(rates_csv).records().enumerate() {
            let rec = rec.map_err(|e| bad("rates", i, e.to_string()))?;
            let f = |n: usize| {
                rec.get(n)
                    .ok_or_else(|| bad("rates", i, format!("missing column {}", n + 1)))
            };
            let month = parse_month(f(0)?).ok_or_else(|| bad("rates", i, "bad month".into()))?;
            let ins = Insurance::from_code(f(1)?)
                .ok_or_else(|| bad("rates", i, "unknown insurance".into()))?;
            let er: Decimal = f(2)?.parse().map_err(|e| bad("rates", i, format!("{e}")))?;
            let ee: Decimal = f(3)?.parse().map_err(|e| bad("rates", i, format!("{e}")))?;
            if er < Decimal::ZERO || ee < Decimal::ZERO || er > Decimal::ONE || ee > Decimal::ONE {
                return Err(bad("rates", i, "rates must be within 0..=1".into()));
            }
            let provenance =
                read_provenance(rec.get(4), rec.get(5)).map_err(|m| bad("rates", i, m))?;
            rates.push((month, ins, er, ee, provenance));
        }
        let mut bases = Vec::new();
        for (i, rec) in reader(bases_csv).records().enumerate() {
            let rec = rec.map_err(|e| bad("bases", i, e.to_string()))?;
            let f = |n: usize| {
                rec.get(n)
                    .ok_or_else(|| bad("bases", i, format!("missing column {}", n + 1)))
            };
            let month = parse_month(f(0)?).ok_or_else(|| bad("bases", i, "bad month".into()))?;
            let min: Money = f(1)?.parse().map_err(|e| bad("bases", i, format!("{e}")))?;
            let max: Money = f(2)?.parse().map_err(|e| bad("bases", i, format!("{e}")))?;
            if min.is_negative() || max < min {
                return Err(bad("bases", i, "need 0 <= base_min <= base_max".into()));
            }
            let provenance =
                read_provenance(rec.get(3), rec.get(4)).map_err(|m| bad("bases", i, m))?;
            bases.push((month, min, max, provenance));
        }
        rates.sort_by_key(|r| (r.0, r.1));
        bases.sort_by_key(|b| b.0);
        Ok(Self {
            rates,
            bases,
            maternity_merged_from: None,
        })
    }

    /// The employer and employee rates in force for an insurance in a month.
    pub fn rates(&self, insurance: Insurance, month: CivilMonth) -> Option<(Decimal, Decimal)> {
        self.rates
            .iter()
            .rev()
            .find(|r| r.1 == insurance && r.0 <= month)
            .map(|r| (r.2, r.3))
    }

    /// The base limits in force in a month.
    pub fn base_limits(&self, month: CivilMonth) -> Option<(Money, Money)> {
        self.bases
            .iter()
            .rev()
            .find(|b| b.0 <= month)
            .map(|b| (b.1, b.2))
    }

    /// One month's records for a wage: the base is the wage clamped to the limits, each
    /// share is base × rate rounded half-up to the fen.
    pub fn month_records(
        &self,
        person: &PersonId,
        employer: &EmployerId,
        month: CivilMonth,
        wage: Money,
        status: ContributionStatus,
    ) -> Result<Vec<ContributionRecord>, HealthcareError> {
        let no_data = || HealthcareError::BadData {
            location: "contribution rates".into(),
            message: format!("no rates or base limits in force in {month}"),
        };
        let (min, max) = self.base_limits(month).ok_or_else(no_data)?;
        let base = wage.max(min).min(max);
        let merged = self.maternity_in_medical(month);
        let mut out = Vec::with_capacity(5);
        for insurance in Insurance::ALL {
            if merged && insurance == Insurance::Maternity {
                continue;
            }
            let (mut er, mut ee) = self.rates(insurance, month).ok_or_else(no_data)?;
            if merged
                && insurance == Insurance::Medical
                && let Some((mer, mee)) = self.rates(Insurance::Maternity, month)
            {
                er += mer;
                ee += mee;
            }
            let employer_amount = base.mul_ratio(er)?;
            let employee_amount = base.mul_ratio(ee)?;
            let due = employer_amount.checked_add(employee_amount)?;
            out.push(ContributionRecord {
                person: person.clone(),
                employer: employer.clone(),
                month,
                insurance,
                base,
                employer_amount,
                employee_amount,
                paid: if status == ContributionStatus::Paid {
                    due
                } else {
                    Money::ZERO
                },
                status,
            });
        }
        Ok(out)
    }
}

/// One job in a sample history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmploymentSpell {
    /// The employer.
    pub employer: EmployerId,
    /// First month.
    pub from: CivilMonth,
    /// Last month (inclusive).
    pub to: CivilMonth,
    /// The monthly wage in the first month.
    pub wage: Money,
    /// The yearly raise applied each January, e.g. 0.05.
    pub yearly_raise: Decimal,
}

/// Generates a realistic history: contributions for each spell, raises each January,
/// suspended months between spells, and the listed months left in arrears.
pub fn generate_history(
    rates: &ContributionRates,
    person: &PersonId,
    spells: &[EmploymentSpell],
    arrears: &[CivilMonth],
) -> Result<Vec<ContributionRecord>, HealthcareError> {
    let mut out = Vec::new();
    let mut previous: Option<&EmploymentSpell> = None;
    for spell in spells {
        if spell.to < spell.from {
            return Err(HealthcareError::InvalidInput(
                "a spell ends before it starts".into(),
            ));
        }
        if let Some(prev) = previous {
            if spell.from <= prev.to {
                return Err(HealthcareError::InvalidInput(
                    "spells must not overlap".into(),
                ));
            }
            let mut gap = prev.to.next();
            while gap < spell.from {
                out.extend(rates.month_records(
                    person,
                    &prev.employer,
                    gap,
                    Money::ZERO,
                    ContributionStatus::Suspended,
                )?);
                gap = gap.next();
            }
        }
        let mut wage = spell.wage;
        let mut month = spell.from;
        while month <= spell.to {
            if month.month == 1 && month != spell.from {
                wage = wage.checked_add(wage.mul_ratio(spell.yearly_raise)?)?;
            }
            let status = if arrears.contains(&month) {
                ContributionStatus::Arrears
            } else {
                ContributionStatus::Paid
            };
            out.extend(rates.month_records(person, &spell.employer, month, wage, status)?);
            month = month.next();
        }
        previous = Some(spell);
    }
    // Suspended months carry no base or amounts.
    for r in out
        .iter_mut()
        .filter(|r| r.status == ContributionStatus::Suspended)
    {
        r.base = Money::ZERO;
        r.employer_amount = Money::ZERO;
        r.employee_amount = Money::ZERO;
        r.paid = Money::ZERO;
    }
    Ok(out)
}
