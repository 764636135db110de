//! Personal medical account funding: what is deposited into an insured person's
//! current-year account (当年账户), as dated data.
//!
//! Under the outpatient mutual-aid reform (门诊共济, national direction 2021–2023) the
//! employer's contributions go to the pooled fund, an employee's account receives only
//! the employee's own medical contribution, and retirees' deposits are pegged to the
//! local average pension. Hangzhou's dates and amounts were not found, so the shipped
//! rows (`data/hangzhou_personal_account_funding.csv`) are marked unverified; a corrected
//! or earlier (pre-reform) row is a new dated row, not a code change. Deposits are monthly;
//! a person type without a row (residents, students) has no personal account funding.

use citycard_core::{CivilMonth, Money};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::HealthcareError;
use crate::provenance::{Provenance, read_provenance};
use crate::settlement::PersonType;

/// How a monthly deposit is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "basis", content = "value", rename_all = "snake_case")]
pub enum FundingBasis {
    /// A share of the person's monthly contribution base (`share_of_base`).
    ShareOfBase(Decimal),
    /// A share of the local average basic pension (`share_of_average_pension`).
    ShareOfAveragePension(Decimal),
    /// A fixed amount a month (`fixed_monthly`).
    FixedMonthly(Money),
}

/// One dated funding row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FundingRow {
    /// The first month the row applies.
    pub effective_from: CivilMonth,
    /// Who it applies to.
    pub person_type: PersonType,
    /// How the deposit is computed.
    pub basis: FundingBasis,
    /// The row's confidence mark and source.
    pub provenance: Provenance,
}

/// What the deposit is computed from, for one month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FundingInputs {
    /// The person's monthly contribution base (employees in service).
    pub contribution_base: Money,
    /// The local average basic pension of the month (retirees).
    pub average_pension: Option<Money>,
}

/// Dated personal-account funding rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountFunding {
    rows: Vec<FundingRow>,
}

/// Hangzhou's funding table, as shipped (unverified rows).
pub const HANGZHOU_FUNDING_CSV: &str =
    include_str!("../data/hangzhou_personal_account_funding.csv");

impl AccountFunding {
    /// Hangzhou's shipped rows.
    pub fn hangzhou() -> Result<Self, HealthcareError> {
        Self::from_csv(
            HANGZHOU_FUNDING_CSV,
            "hangzhou_personal_account_funding.csv",
        )
    }

    /// Loads `effective_from,person_type,basis,value,confidence,source` (`#` comments
    /// allowed); `basis` is `share_of_base`, `share_of_average_pension` or `fixed_monthly`.
    /// A row without a confidence mark or a source is refused.
    pub fn from_csv(text: &str, source: &str) -> Result<Self, HealthcareError> {
        let mut rows: Vec<FundingRow> = Vec::new();
        let mut reader = csv::ReaderBuilder::new()
            .comment(Some(b'#'))
            .trim(csv::Trim::All)
            .flexible(true)
            .from_reader(text.as_bytes());
        for (i, rec) in reader.records().enumerate() {
            let bad = |message: String| HealthcareError::BadData {
                location: format!("{source} record {}", i + 1),
                message,
            };
            let rec = rec.map_err(|e| bad(e.to_string()))?;
            let f = |n: usize| {
                rec.get(n)
                    .ok_or_else(|| bad(format!("missing column {}", n + 1)))
            };
            let effective_from = f(0)?
                .split_once('-')
                .and_then(|(y, m)| CivilMonth::new(y.parse().ok()?, m.parse().ok()?))
                .ok_or_else(|| bad("bad month: use YYYY-MM".into()))?;
            let person_type =
                PersonType::from_code(f(1)?).ok_or_else(|| bad("unknown person type".into()))?;
            let value = f(3)?;
            let ratio = || -> Result<Decimal, HealthcareError> {
                let r: Decimal = value.parse().map_err(|e| bad(format!("bad ratio: {e}")))?;
                if r < Decimal::ZERO || r > Decimal::ONE {
                    return Err(bad("a ratio must be within 0..=1".into()));
                }
                Ok(r)
            };
            let basis = match f(2)? {
                "share_of_base" => FundingBasis::ShareOfBase(ratio()?),
                "share_of_average_pension" => FundingBasis::ShareOfAveragePension(ratio()?),
                "fixed_monthly" => {
                    let m: Money = value.parse().map_err(|e| bad(format!("bad amount: {e}")))?;
                    if m.is_negative() {
                        return Err(bad("an amount cannot be negative".into()));
                    }
                    FundingBasis::FixedMonthly(m)
                }
                _ => {
                    return Err(bad(
                        "unknown basis: use share_of_base, share_of_average_pension or fixed_monthly"
                            .into(),
                    ));
                }
            };
            let provenance = read_provenance(rec.get(4), rec.get(5)).map_err(bad)?;
            if rows
                .iter()
                .any(|r| r.person_type == person_type && r.effective_from == effective_from)
            {
                return Err(bad(
                    "duplicate row for the same person type and month".into()
                ));
            }
            rows.push(FundingRow {
                effective_from,
                person_type,
                basis,
                provenance,
            });
        }
        rows.sort_by_key(|r| (r.person_type, r.effective_from));
        Ok(Self { rows })
    }

    /// Every row, by person type then date.
    pub fn rows(&self) -> &[FundingRow] {
        &self.rows
    }

    /// The row in force for a person type in a month, if any.
    pub fn lookup(&self, person_type: PersonType, month: CivilMonth) -> Option<&FundingRow> {
        self.rows
            .iter()
            .rev()
            .find(|r| r.person_type == person_type && r.effective_from <= month)
    }

    /// The month's deposit into the current-year account, with the row used; `None`
    /// when no row applies (no personal account funding).
    pub fn monthly_deposit(
        &self,
        person_type: PersonType,
        month: CivilMonth,
        inputs: FundingInputs,
    ) -> Result<Option<(Money, &FundingRow)>, HealthcareError> {
        let Some(row) = self.lookup(person_type, month) else {
            return Ok(None);
        };
        let amount = match row.basis {
            FundingBasis::ShareOfBase(r) => {
                if inputs.contribution_base.is_negative() {
                    return Err(HealthcareError::InvalidInput(
                        "a contribution base cannot be negative".into(),
                    ));
                }
                inputs.contribution_base.mul_ratio(r)?
            }
            FundingBasis::ShareOfAveragePension(r) => {
                let avg = inputs.average_pension.ok_or_else(|| {
                    HealthcareError::InvalidInput(format!(
                        "the deposit for {month} needs the local average pension: pass it in the funding inputs"
                    ))
                })?;
                if avg.is_negative() {
                    return Err(HealthcareError::InvalidInput(
                        "an average pension cannot be negative".into(),
                    ));
                }
                avg.mul_ratio(r)?
            }
            FundingBasis::FixedMonthly(m) => m,
        };
        Ok(Some((amount, row)))
    }

    /// This year's deposits from `from` to `to` (inclusive, one year), with the same
    /// inputs each month; months without a row deposit nothing.
    pub fn deposits_between(
        &self,
        person_type: PersonType,
        from: CivilMonth,
        to: CivilMonth,
        inputs: FundingInputs,
    ) -> Result<Money, HealthcareError> {
        if to < from || to.year != from.year {
            return Err(HealthcareError::InvalidInput(
                "give months of one year, the first not after the last".into(),
            ));
        }
        let mut total = Money::ZERO;
        let mut month = from;
        loop {
            if let Some((m, _)) = self.monthly_deposit(person_type, month, inputs)? {
                total = total.checked_add(m)?;
            }
            if month == to {
                break;
            }
            month = month.next();
        }
        Ok(total)
    }
}
