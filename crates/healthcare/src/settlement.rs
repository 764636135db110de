//! The outpatient (and inpatient) insurance settlement engine: pure, synchronous arithmetic.
//!
//! A bill is a list of [`ChargeItem`]s. Each item is split by its catalogue class and price
//! limit into fully self-paid (`fulamt_ownpay_amt`), over-limit self-paid
//! (`overlmt_selfpay`), pre-self-paid (`preselfpay_amt`) and within-policy
//! (`inscp_scp_amt`) amounts. The within-policy amount is then paid in Hangzhou's order
//! (the same scheme as Shanghai's):
//!
//! 1. the current-year personal account pays first (this does not count towards the deductible);
//! 2. the rest up to the annual deductible not yet met is the patient's (`act_pay_dedc`);
//! 3. above the deductible the pooled fund pays its ratio (`hifp_pay`), capped by the annual
//!    fund cap when the parameters set one; the remainder is the patient's co-payment;
//! 4. the patient's share (deductible + co-payment) is paid from the accumulated account,
//!    then from the e-wallet or cash (`psn_cash_pay`);
//! 5. the out-of-policy parts are paid from the remaining current-year and accumulated
//!    balances when the parameters allow (`accounts_cover_self_pay`), else in cash.
//!
//! Parameters are dated rows keyed by person type, hospital level and visit type, loaded
//! from CSV ([`SettlementParameters::from_csv`]); Hangzhou's table ships embedded
//! ([`SettlementParameters::hangzhou`]). Every row carries a confidence mark and its
//! source ([`Provenance`]); the loader refuses a row without one, and each breakdown
//! names the confidence of the row it used ([`SettlementBreakdown::parameters_confidence`]),
//! so a receipt computed on an unverified row can say so. The employee outpatient rows
//! (2024 placeholders and the 2025 row of one unofficial table) are unverified.

use chrono::{Datelike, NaiveDate};
use citycard_core::Money;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::HealthcareError;
use crate::provenance::{Confidence, Provenance, read_provenance};

/// The insured person's category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonType {
    /// An employee in service (在职职工).
    EmployeeInService,
    /// A retired employee (退休人员).
    Retired,
    /// An urban or rural resident (城乡居民).
    Resident,
    /// A student or child (学生儿童).
    Student,
}

impl PersonType {
    /// Every person type.
    pub const ALL: [PersonType; 4] = [
        PersonType::EmployeeInService,
        PersonType::Retired,
        PersonType::Resident,
        PersonType::Student,
    ];

    /// A stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            PersonType::EmployeeInService => "employee_in_service",
            PersonType::Retired => "retired",
            PersonType::Resident => "resident",
            PersonType::Student => "student",
        }
    }

    /// The person type for a code.
    pub fn from_code(code: &str) -> Option<PersonType> {
        PersonType::ALL.into_iter().find(|p| p.code() == code)
    }
}

/// A hospital's level, as the insurance ratios distinguish them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HospitalLevel {
    /// A community health service centre (社区).
    Community,
    /// A secondary hospital (二级).
    Secondary,
    /// A tertiary hospital (三级).
    Tertiary,
}

impl HospitalLevel {
    /// Every level.
    pub const ALL: [HospitalLevel; 3] = [
        HospitalLevel::Community,
        HospitalLevel::Secondary,
        HospitalLevel::Tertiary,
    ];

    /// A stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            HospitalLevel::Community => "community",
            HospitalLevel::Secondary => "secondary",
            HospitalLevel::Tertiary => "tertiary",
        }
    }

    /// The level for a code.
    pub fn from_code(code: &str) -> Option<HospitalLevel> {
        HospitalLevel::ALL.into_iter().find(|p| p.code() == code)
    }
}

/// Outpatient or inpatient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitType {
    /// An outpatient visit (门诊).
    Outpatient,
    /// An inpatient stay (住院).
    Inpatient,
}

impl VisitType {
    /// Both visit types.
    pub const ALL: [VisitType; 2] = [VisitType::Outpatient, VisitType::Inpatient];

    /// A stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            VisitType::Outpatient => "outpatient",
            VisitType::Inpatient => "inpatient",
        }
    }

    /// The visit type for a code.
    pub fn from_code(code: &str) -> Option<VisitType> {
        VisitType::ALL.into_iter().find(|p| p.code() == code)
    }
}

/// The insurance catalogue class of a charge item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "class", rename_all = "snake_case")]
pub enum CatalogueClass {
    /// 甲类: fully within policy.
    A,
    /// 乙类: the patient first pays `pre_self_pay` (a ratio, 0..=1), the rest is within policy.
    B {
        /// The pre-self-pay share (先行自付比例), e.g. 0.10.
        pre_self_pay: Decimal,
    },
    /// 丙类 or outside the catalogue: fully self-paid.
    C,
}

/// One line of a bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeItem {
    /// The hospital's or catalogue's item code.
    pub code: String,
    /// The catalogue class.
    pub class: CatalogueClass,
    /// Price of one unit.
    pub unit_price: Money,
    /// Number of units (at least 1).
    pub quantity: u32,
    /// The insurance price limit per unit (限价), if any; the excess is self-paid.
    pub price_limit: Option<Money>,
}

impl ChargeItem {
    /// An item of one class, without a price limit.
    pub fn new(
        code: impl Into<String>,
        class: CatalogueClass,
        unit_price: Money,
        quantity: u32,
    ) -> Self {
        Self {
            code: code.into(),
            class,
            unit_price,
            quantity,
            price_limit: None,
        }
    }

    /// The same item with a per-unit price limit.
    pub fn with_price_limit(mut self, limit: Money) -> Self {
        self.price_limit = Some(limit);
        self
    }

    /// Splits the item by class and price limit; its four parts add up to `gross`.
    #[inline]
    pub fn split(&self) -> Result<ItemSplit, HealthcareError> {
        if self.quantity == 0 {
            return Err(invalid("a charge item needs a quantity of at least 1"));
        }
        if self.unit_price.is_negative() {
            return Err(invalid("a unit price cannot be negative"));
        }
        let qty = i64::from(self.quantity);
        let gross = self.unit_price.checked_mul_int(qty)?;
        let mut out = ItemSplit {
            gross,
            fully_self_paid: Money::ZERO,
            over_limit_self_paid: Money::ZERO,
            pre_self_paid: Money::ZERO,
            within_policy: Money::ZERO,
        };
        if let CatalogueClass::C = self.class {
            out.fully_self_paid = gross;
            return Ok(out);
        }
        let unit = match self.price_limit {
            Some(limit) if limit.is_negative() => {
                return Err(invalid("a price limit cannot be negative"));
            }
            Some(limit) => self.unit_price.min(limit),
            None => self.unit_price,
        };
        let allowed = unit.checked_mul_int(qty)?;
        out.over_limit_self_paid = gross.checked_sub(allowed)?;
        if let CatalogueClass::B { pre_self_pay } = self.class {
            if pre_self_pay < Decimal::ZERO || pre_self_pay > Decimal::ONE {
                return Err(invalid("a pre-self-pay share must be within 0..=1"));
            }
            out.pre_self_paid = allowed.mul_ratio(pre_self_pay)?;
        }
        out.within_policy = allowed.checked_sub(out.pre_self_paid)?;
        Ok(out)
    }
}

/// One item's split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemSplit {
    /// Unit price × quantity.
    pub gross: Money,
    /// Class C: fully self-paid.
    pub fully_self_paid: Money,
    /// Above the price limit.
    pub over_limit_self_paid: Money,
    /// Class B pre-self-pay share.
    pub pre_self_paid: Money,
    /// Within policy.
    pub within_policy: Money,
}

/// One dated parameter row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterRow {
    /// The first date the row applies.
    pub effective_from: NaiveDate,
    /// The annual deductible (起付标准).
    pub deductible: Money,
    /// The pooled fund's share above the deductible, 0..=1.
    pub fund_ratio: Decimal,
    /// The most the fund pays per person per year for this visit type, if capped.
    pub annual_fund_cap: Option<Money>,
    /// Whether the personal accounts may pay the out-of-policy parts of a bill.
    pub accounts_cover_self_pay: bool,
    /// The row's confidence mark and source.
    pub provenance: Provenance,
}

const KEYS: usize = 4 * 3 * 2;

fn key_index(p: PersonType, l: HospitalLevel, v: VisitType) -> usize {
    (p as usize) * 6 + (l as usize) * 2 + (v as usize)
}

/// Dated settlement parameters for every person type, hospital level and visit type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementParameters {
    rows: Vec<Vec<ParameterRow>>,
}

/// Hangzhou's parameter table, as shipped (each row marked sourced, check or unverified).
pub const HANGZHOU_PARAMETERS_CSV: &str =
    include_str!("../data/hangzhou_settlement_parameters.csv");

impl SettlementParameters {
    /// Hangzhou's shipped parameters (each row carries its confidence mark).
    pub fn hangzhou() -> Result<Self, HealthcareError> {
        Self::from_csv(
            HANGZHOU_PARAMETERS_CSV,
            "hangzhou_settlement_parameters.csv",
        )
    }

    /// Loads a table from CSV text (`#` comment lines allowed), with the header
    /// `effective_from,person_type,hospital_level,visit_type,deductible,fund_ratio,annual_fund_cap,accounts_cover_self_pay,confidence,source`;
    /// a row without a confidence mark (`sourced`, `check`, `unverified`) or a source is refused.
    pub fn from_csv(text: &str, source: &str) -> Result<Self, HealthcareError> {
        let mut rows: Vec<Vec<ParameterRow>> = vec![Vec::new(); KEYS];
        let mut reader = csv::ReaderBuilder::new()
            .comment(Some(b'#'))
            .trim(csv::Trim::All)
            .flexible(true)
            .from_reader(text.as_bytes());
        for (i, record) in reader.records().enumerate() {
            let bad = |message: String| HealthcareError::BadData {
                location: format!("{source} record {}", i + 1),
                message,
            };
            let record = record.map_err(|e| bad(e.to_string()))?;
            let field = |n: usize| {
                record
                    .get(n)
                    .ok_or_else(|| bad(format!("missing column {}", n + 1)))
            };
            let effective_from = NaiveDate::parse_from_str(field(0)?, "%Y-%m-%d")
                .map_err(|e| bad(format!("bad date: {e}")))?;
            let person = PersonType::from_code(field(1)?)
                .ok_or_else(|| bad("unknown person type".into()))?;
            let level = HospitalLevel::from_code(field(2)?)
                .ok_or_else(|| bad("unknown hospital level".into()))?;
            let visit =
                VisitType::from_code(field(3)?).ok_or_else(|| bad("unknown visit type".into()))?;
            let deductible: Money = field(4)?
                .parse()
                .map_err(|e| bad(format!("bad deductible: {e}")))?;
            let fund_ratio: Decimal = field(5)?
                .parse()
                .map_err(|e| bad(format!("bad fund ratio: {e}")))?;
            if deductible.is_negative() || fund_ratio < Decimal::ZERO || fund_ratio > Decimal::ONE {
                return Err(bad(
                    "deductible must be >= 0 and fund ratio within 0..=1".into()
                ));
            }
            let cap = field(6)?;
            let annual_fund_cap = if cap.is_empty() {
                None
            } else {
                Some(
                    cap.parse::<Money>()
                        .map_err(|e| bad(format!("bad cap: {e}")))?,
                )
            };
            let accounts_cover_self_pay = match field(7)? {
                "true" => true,
                "false" => false,
                _ => return Err(bad("accounts_cover_self_pay must be true or false".into())),
            };
            let provenance = read_provenance(record.get(8), record.get(9)).map_err(bad)?;
            let list = &mut rows[key_index(person, level, visit)];
            if list.iter().any(|r| r.effective_from == effective_from) {
                return Err(bad("duplicate row for the same key and date".into()));
            }
            list.push(ParameterRow {
                effective_from,
                deductible,
                fund_ratio,
                annual_fund_cap,
                accounts_cover_self_pay,
                provenance,
            });
        }
        for list in &mut rows {
            list.sort_by_key(|r| r.effective_from);
        }
        Ok(Self { rows })
    }

    /// Every row with its key, in key then date order (to list what is unverified).
    pub fn rows(
        &self,
    ) -> impl Iterator<Item = (PersonType, HospitalLevel, VisitType, &ParameterRow)> + '_ {
        PersonType::ALL.into_iter().flat_map(move |p| {
            HospitalLevel::ALL.into_iter().flat_map(move |l| {
                VisitType::ALL.into_iter().flat_map(move |v| {
                    self.rows[key_index(p, l, v)]
                        .iter()
                        .map(move |r| (p, l, v, r))
                })
            })
        })
    }

    /// The row in force on `date` for a person type, level and visit type.
    pub fn lookup(
        &self,
        person_type: PersonType,
        hospital_level: HospitalLevel,
        visit_type: VisitType,
        date: NaiveDate,
    ) -> Result<&ParameterRow, HealthcareError> {
        self.rows
            .get(key_index(person_type, hospital_level, visit_type))
            .and_then(|list| list.iter().rev().find(|r| r.effective_from <= date))
            .ok_or_else(|| HealthcareError::NoParameters {
                person_type: person_type.code().into(),
                hospital_level: hospital_level.code().into(),
                visit_type: visit_type.code().into(),
                date,
            })
    }
}

/// The personal account balances on the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AccountBalances {
    /// The current-year account (当年账户).
    pub current_year: Money,
    /// The accumulated account (历年账户).
    pub accumulated: Money,
}

/// What a person has used of this year's deductible and fund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AnnualAccumulators {
    /// The insurance year (calendar year).
    pub year: i32,
    /// How much of the deductible the person has paid this year.
    pub deductible_met: Money,
    /// How much the pooled fund has paid for the person this year.
    pub fund_paid: Money,
}

impl AnnualAccumulators {
    /// Nothing used yet in `year`.
    pub const fn new(year: i32) -> Self {
        Self {
            year,
            deductible_met: Money::ZERO,
            fund_paid: Money::ZERO,
        }
    }

    /// These accumulators if they are for `year`, else a fresh year.
    pub fn for_year(self, year: i32) -> Self {
        if self.year == year {
            self
        } else {
            Self::new(year)
        }
    }
}

/// Everything the engine needs for one settlement.
#[derive(Debug, Clone, Copy)]
pub struct SettlementInput<'a> {
    /// The insured person's category.
    pub person_type: PersonType,
    /// The hospital's level.
    pub hospital_level: HospitalLevel,
    /// Outpatient or inpatient.
    pub visit_type: VisitType,
    /// The civil date of the visit (chooses parameters and the accumulator year).
    pub date: NaiveDate,
    /// The bill.
    pub items: &'a [ChargeItem],
    /// The account balances before the settlement.
    pub accounts: AccountBalances,
    /// The accumulators before the settlement (a different year counts as a fresh year).
    pub accumulators: AnnualAccumulators,
}

/// The split of one bill, with the national interface's names in the docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementBreakdown {
    /// The whole bill (`medfee_sumamt`).
    pub total: Money,
    /// Fully self-paid: class C and non-catalogue items (`fulamt_ownpay_amt`).
    pub fully_self_paid: Money,
    /// Above the price limit (`overlmt_selfpay`).
    pub over_limit_self_paid: Money,
    /// Class B pre-self-pay share (`preselfpay_amt`).
    pub pre_self_paid: Money,
    /// Within policy (`inscp_scp_amt`).
    pub within_policy: Money,
    /// Paid by the current-year account (within policy and, if allowed, out of policy).
    pub current_year_account_paid: Money,
    /// The deductible applied by this bill (`act_pay_dedc`).
    pub deductible_applied: Money,
    /// Paid by the pooled fund (`hifp_pay`).
    pub fund_paid: Money,
    /// The patient's within-policy share above the deductible.
    pub co_payment: Money,
    /// Paid by the accumulated account.
    pub accumulated_account_paid: Money,
    /// Paid by the e-wallet or in cash (`psn_cash_pay`).
    pub cash_paid: Money,
    /// The deductible in force.
    pub deductible: Money,
    /// The fund ratio in force.
    pub fund_ratio: Decimal,
    /// The confidence mark of the parameter row used.
    #[serde(default)]
    pub parameters_confidence: Confidence,
    /// Account balances after the settlement (`balc`).
    pub accounts_after: AccountBalances,
    /// Accumulators after the settlement.
    pub accumulators_after: AnnualAccumulators,
}

impl SettlementBreakdown {
    /// Paid from the personal accounts together (`acct_pay`).
    pub fn account_paid(&self) -> Money {
        Money::from_fen(self.current_year_account_paid.fen() + self.accumulated_account_paid.fen())
    }

    /// What the patient bears in all (everything but the fund).
    pub fn patient_share(&self) -> Money {
        Money::from_fen(self.total.fen() - self.fund_paid.fen())
    }

    /// The balances and accumulators before this settlement, from those after it:
    /// reversal gives back exactly what was taken.
    pub fn reverse(
        &self,
        accounts: AccountBalances,
        accumulators: AnnualAccumulators,
    ) -> Result<(AccountBalances, AnnualAccumulators), HealthcareError> {
        if accumulators.year != self.accumulators_after.year {
            return Err(HealthcareError::Conflict(
                "the accumulators are for another year than the settlement".into(),
            ));
        }
        Ok((
            AccountBalances {
                current_year: accounts
                    .current_year
                    .checked_add(self.current_year_account_paid)?,
                accumulated: accounts
                    .accumulated
                    .checked_add(self.accumulated_account_paid)?,
            },
            AnnualAccumulators {
                year: accumulators.year,
                deductible_met: accumulators
                    .deductible_met
                    .checked_sub(self.deductible_applied)?,
                fund_paid: accumulators.fund_paid.checked_sub(self.fund_paid)?,
            },
        ))
    }
}

fn invalid(message: &str) -> HealthcareError {
    HealthcareError::InvalidInput(message.to_owned())
}

/// The settlement engine: parameters plus pure arithmetic.
#[derive(Debug, Clone)]
pub struct SettlementEngine {
    parameters: SettlementParameters,
}

impl SettlementEngine {
    /// An engine on a parameter table.
    pub fn new(parameters: SettlementParameters) -> Self {
        Self { parameters }
    }

    /// An engine on Hangzhou's shipped parameters (marked "check").
    pub fn hangzhou() -> Result<Self, HealthcareError> {
        Ok(Self::new(SettlementParameters::hangzhou()?))
    }

    /// The parameter table.
    pub fn parameters(&self) -> &SettlementParameters {
        &self.parameters
    }

    /// Splits a bill. Allocation-free; an invalid bill or state is an error.
    pub fn compute(
        &self,
        input: &SettlementInput<'_>,
    ) -> Result<SettlementBreakdown, HealthcareError> {
        let params = self.parameters.lookup(
            input.person_type,
            input.hospital_level,
            input.visit_type,
            input.date,
        )?;
        if input.items.is_empty() {
            return Err(invalid("a bill needs at least one charge item"));
        }
        let accounts = input.accounts;
        if accounts.current_year.is_negative() || accounts.accumulated.is_negative() {
            return Err(invalid("account balances cannot be negative"));
        }
        let acc = input.accumulators.for_year(input.date.year());
        if acc.deductible_met.is_negative() || acc.fund_paid.is_negative() {
            return Err(invalid("accumulators cannot be negative"));
        }

        let mut total = Money::ZERO;
        let mut fully = Money::ZERO;
        let mut over = Money::ZERO;
        let mut pre = Money::ZERO;
        let mut within = Money::ZERO;
        for item in input.items {
            let split = item.split()?;
            total = total.checked_add(split.gross)?;
            fully = fully.checked_add(split.fully_self_paid)?;
            over = over.checked_add(split.over_limit_self_paid)?;
            pre = pre.checked_add(split.pre_self_paid)?;
            within = within.checked_add(split.within_policy)?;
        }

        // 1. current-year account first.
        let cy = accounts.current_year.min(within);
        let rest = within.checked_sub(cy)?;
        // 2. deductible.
        let ded_left = params
            .deductible
            .checked_sub(acc.deductible_met)?
            .max(Money::ZERO);
        let ded = rest.min(ded_left);
        // 3. fund above the deductible.
        let above = rest.checked_sub(ded)?;
        let mut fund = above.mul_ratio(params.fund_ratio)?;
        if let Some(cap) = params.annual_fund_cap {
            fund = fund.min(cap.checked_sub(acc.fund_paid)?.max(Money::ZERO));
        }
        let copay = above.checked_sub(fund)?;
        // 4. the patient's within-policy share: accumulated account, then cash.
        let share = ded.checked_add(copay)?;
        let mut acc_paid = accounts.accumulated.min(share);
        let mut cash = share.checked_sub(acc_paid)?;
        let mut cy_paid = cy;
        // 5. out-of-policy parts.
        let out_of_policy = fully.checked_add(over)?.checked_add(pre)?;
        if params.accounts_cover_self_pay {
            let cy_more = accounts
                .current_year
                .checked_sub(cy_paid)?
                .min(out_of_policy);
            let left = out_of_policy.checked_sub(cy_more)?;
            let acc_more = accounts.accumulated.checked_sub(acc_paid)?.min(left);
            cy_paid = cy_paid.checked_add(cy_more)?;
            acc_paid = acc_paid.checked_add(acc_more)?;
            cash = cash.checked_add(left.checked_sub(acc_more)?)?;
        } else {
            cash = cash.checked_add(out_of_policy)?;
        }

        Ok(SettlementBreakdown {
            total,
            fully_self_paid: fully,
            over_limit_self_paid: over,
            pre_self_paid: pre,
            within_policy: within,
            current_year_account_paid: cy_paid,
            deductible_applied: ded,
            fund_paid: fund,
            co_payment: copay,
            accumulated_account_paid: acc_paid,
            cash_paid: cash,
            deductible: params.deductible,
            fund_ratio: params.fund_ratio,
            parameters_confidence: params.provenance.confidence,
            accounts_after: AccountBalances {
                current_year: accounts.current_year.checked_sub(cy_paid)?,
                accumulated: accounts.accumulated.checked_sub(acc_paid)?,
            },
            accumulators_after: AnnualAccumulators {
                year: acc.year,
                deductible_met: acc.deductible_met.checked_add(ded)?,
                fund_paid: acc.fund_paid.checked_add(fund)?,
            },
        })
    }
}
