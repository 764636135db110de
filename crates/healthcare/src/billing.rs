//! Pre-settlement (quotes), settlement and reversal of bills through the payments port.
//!
//! A settlement is one all-or-nothing, idempotent set of transfers (current-year account,
//! accumulated account, pooled fund and e-wallet to the hospital) executed by the
//! [`MedicalPayments`] port, which the facade implements with the ledger. The annual
//! accumulators live in a [`SettlementStore`] next to the settlement records:
//!
//! 1. the service computes the split and asks the store to [`begin`](SettlementStore::begin)
//!    it: the store checks the accumulators are unchanged (compare-and-set), applies the
//!    new ones and keeps the record as pending, all atomically; a concurrent settlement for
//!    the same person makes this one recompute;
//! 2. the payments port executes the transfers under the settlement's idempotency key;
//! 3. the store marks the record completed, or failed (restoring the accumulators) when the
//!    payment was refused. When the payment outcome is unknown the record stays pending and
//!    a retry with the same key re-sends the *same* transfers, so nothing is paid twice.
//!
//! Reversal sends the opposite transfers under the reversal's own key and then subtracts
//! exactly what the settlement added to the accumulators.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use citycard_core::{
    AuditLog, AuditOutcome, AuditRecord, ClassifiedError, Clock, ErrorClass, Fingerprint,
    IdGenerator, IdempotencyKey, Money, PersonId, Principal, StoreError, civil_date,
};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::appointments::PatientDirectory;
use crate::error::HealthcareError;
use crate::ids::{HospitalId, SettlementId};
use crate::settlement::{
    AccountBalances, AnnualAccumulators, ChargeItem, HospitalLevel, PersonType,
    SettlementBreakdown, SettlementEngine, SettlementInput, VisitType,
};

/// An account the payments port moves money between.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum PaymentAccount {
    /// A person's current-year medical account.
    CurrentYearAccount(PersonId),
    /// A person's accumulated medical account.
    AccumulatedAccount(PersonId),
    /// A person's citizen-card e-wallet.
    EWallet(PersonId),
    /// The medical insurance pooled fund.
    PooledFund,
    /// A hospital's receivable account.
    Hospital(HospitalId),
}

/// One transfer of a settlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MedicalTransfer {
    /// Debited account.
    pub from: PaymentAccount,
    /// Credited account.
    pub to: PaymentAccount,
    /// Amount (positive).
    pub amount: Money,
}

/// The payments port's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentReceipt {
    /// The ledger's reference for the batch.
    pub reference: String,
}

/// Why the payments port did not pay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PaymentError {
    /// Definitively refused (insufficient funds, frozen account): nothing was moved.
    #[error("payment refused, nothing was moved: {0}")]
    Refused(String),
    /// The outcome is unknown (timeout, lost answer): retry with the same key.
    #[error("payment outcome unknown, retry with the same key: {0}")]
    Unknown(String),
}

impl ClassifiedError for PaymentError {
    fn class(&self) -> ErrorClass {
        match self {
            PaymentError::Refused(_) => ErrorClass::Conflict,
            PaymentError::Unknown(_) => ErrorClass::Unavailable,
        }
    }
}

impl From<PaymentError> for HealthcareError {
    fn from(e: PaymentError) -> Self {
        match e {
            PaymentError::Refused(why) => HealthcareError::PaymentRefused(why),
            PaymentError::Unknown(_) => HealthcareError::PaymentUnknown,
        }
    }
}

/// The port to money: all-or-nothing idempotent transfer batches and account balances.
#[async_trait::async_trait]
pub trait MedicalPayments: Send + Sync {
    /// Executes every transfer or none, at most once per key; a retry with the same key and
    /// transfers returns the first receipt.
    async fn execute(
        &self,
        key: &IdempotencyKey,
        transfers: &[MedicalTransfer],
    ) -> Result<PaymentReceipt, PaymentError>;
    /// A person's medical account balances.
    async fn balances(&self, person: &PersonId) -> Result<AccountBalances, PaymentError>;
}

/// Payments in memory: personal accounts cannot go negative; the fund and hospitals can.
#[derive(Debug, Default)]
pub struct MemoryMedicalPayments {
    inner: Mutex<MemoryPaymentsInner>,
}

#[derive(Debug, Default)]
struct MemoryPaymentsInner {
    balances: HashMap<PaymentAccount, Money>,
    done: HashMap<IdempotencyKey, (Fingerprint, PaymentReceipt)>,
}

impl MemoryMedicalPayments {
    /// No accounts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets an account's balance.
    pub fn set_balance(&self, account: PaymentAccount, amount: Money) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.balances.insert(account, amount);
    }

    /// An account's balance (zero when unknown).
    pub fn balance(&self, account: &PaymentAccount) -> Money {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.balances.get(account).copied().unwrap_or(Money::ZERO)
    }
}

#[async_trait::async_trait]
impl MedicalPayments for MemoryMedicalPayments {
    async fn execute(
        &self,
        key: &IdempotencyKey,
        transfers: &[MedicalTransfer],
    ) -> Result<PaymentReceipt, PaymentError> {
        let fingerprint =
            Fingerprint::of(transfers).map_err(|e| PaymentError::Refused(e.to_string()))?;
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((fp, receipt)) = inner.done.get(key) {
            return if *fp == fingerprint {
                Ok(receipt.clone())
            } else {
                Err(PaymentError::Refused(
                    "the key was used for other transfers".into(),
                ))
            };
        }
        let mut next = inner.balances.clone();
        for t in transfers {
            if !t.amount.is_positive() {
                return Err(PaymentError::Refused("amounts must be positive".into()));
            }
            let from = next.entry(t.from.clone()).or_insert(Money::ZERO);
            let after = from
                .checked_sub(t.amount)
                .map_err(|e| PaymentError::Refused(e.to_string()))?;
            let personal = !matches!(
                t.from,
                PaymentAccount::PooledFund | PaymentAccount::Hospital(_)
            );
            if personal && after.is_negative() {
                return Err(PaymentError::Refused("insufficient funds".into()));
            }
            *from = after;
            let to = next.entry(t.to.clone()).or_insert(Money::ZERO);
            *to = to
                .checked_add(t.amount)
                .map_err(|e| PaymentError::Refused(e.to_string()))?;
        }
        inner.balances = next;
        let receipt = PaymentReceipt {
            reference: format!("mem-{}", inner.done.len() + 1),
        };
        inner
            .done
            .insert(key.clone(), (fingerprint, receipt.clone()));
        Ok(receipt)
    }

    async fn balances(&self, person: &PersonId) -> Result<AccountBalances, PaymentError> {
        Ok(AccountBalances {
            current_year: self.balance(&PaymentAccount::CurrentYearAccount(person.clone())),
            accumulated: self.balance(&PaymentAccount::AccumulatedAccount(person.clone())),
        })
    }
}

/// Where the patient's cash share comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CashSource {
    /// The citizen-card e-wallet (transferred in the same batch).
    EWallet,
    /// Paid at the counter outside the card system (not transferred).
    Counter,
}

/// A bill to quote or settle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillRequest {
    /// The insured patient.
    pub patient: PersonId,
    /// The hospital.
    pub hospital: HospitalId,
    /// The hospital's level.
    pub hospital_level: HospitalLevel,
    /// Outpatient or inpatient.
    pub visit_type: VisitType,
    /// The charge items.
    pub items: Vec<ChargeItem>,
    /// Where the cash share comes from.
    pub cash_source: CashSource,
}

/// The life of a settlement record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettlementStatus {
    /// Accumulators applied; payment sent or about to be.
    Pending,
    /// Paid.
    Completed,
    /// Payment refused; accumulators restored.
    Failed,
    /// Reversal sent or about to be.
    Reversing,
    /// Reversed; money and accumulators restored.
    Reversed,
}

impl SettlementStatus {
    /// A stable code.
    pub fn code(self) -> &'static str {
        match self {
            SettlementStatus::Pending => "pending",
            SettlementStatus::Completed => "completed",
            SettlementStatus::Failed => "failed",
            SettlementStatus::Reversing => "reversing",
            SettlementStatus::Reversed => "reversed",
        }
    }

    /// The status for a code.
    pub fn from_code(code: &str) -> Option<SettlementStatus> {
        use SettlementStatus::*;
        [Pending, Completed, Failed, Reversing, Reversed]
            .into_iter()
            .find(|s| s.code() == code)
    }
}

/// A settlement as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementRecord {
    /// Its id.
    pub id: SettlementId,
    /// The settlement's idempotency key (unique).
    pub key: IdempotencyKey,
    /// Fingerprint of the [`BillRequest`], to tell a retry from a reused key.
    pub request_fingerprint: Fingerprint,
    /// The bill.
    pub request: BillRequest,
    /// The insured person's category at settlement.
    pub person_type: PersonType,
    /// The civil date of the visit.
    pub date: NaiveDate,
    /// The split.
    pub breakdown: SettlementBreakdown,
    /// The accumulators the split started from.
    pub accumulators_before: AnnualAccumulators,
    /// The transfers sent.
    pub transfers: Vec<MedicalTransfer>,
    /// Where it stands.
    pub status: SettlementStatus,
    /// The reversal's idempotency key, once reversal started.
    pub reversal_key: Option<IdempotencyKey>,
    /// When created.
    pub created_at: DateTime<Utc>,
}

/// The store's answer to [`SettlementStore::begin`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // returned once per call
pub enum BeginDecision {
    /// Stored as pending; accumulators applied.
    Started,
    /// A record with this key exists: here it is.
    Existing {
        /// The stored record.
        record: SettlementRecord,
    },
    /// The accumulators changed meanwhile: recompute from these.
    Stale {
        /// The current accumulators.
        current: AnnualAccumulators,
    },
}

/// Settlement records and annual accumulators, changed together atomically.
#[async_trait::async_trait]
pub trait SettlementStore: Send + Sync {
    /// A person's accumulators for a year (fresh when none).
    async fn accumulators(
        &self,
        person: &PersonId,
        year: i32,
    ) -> Result<AnnualAccumulators, StoreError>;
    /// Atomically: an existing record for the key, or (if the person's accumulators still
    /// equal `record.accumulators_before`) apply `record.breakdown.accumulators_after` and
    /// store the record as pending.
    async fn begin(&self, record: &SettlementRecord) -> Result<BeginDecision, StoreError>;
    /// Marks a pending record completed, or failed restoring the accumulators it applied.
    async fn finish(
        &self,
        id: &SettlementId,
        paid: bool,
    ) -> Result<Option<SettlementRecord>, StoreError>;
    /// Marks a completed record as reversing under a key (idempotent for the same key).
    async fn begin_reversal(
        &self,
        id: &SettlementId,
        key: &IdempotencyKey,
    ) -> Result<Option<SettlementRecord>, StoreError>;
    /// Marks a reversing record reversed and subtracts exactly what it added to the accumulators.
    async fn finish_reversal(
        &self,
        id: &SettlementId,
    ) -> Result<Option<SettlementRecord>, StoreError>;
    /// One record.
    async fn settlement(&self, id: &SettlementId) -> Result<Option<SettlementRecord>, StoreError>;
}

/// Applies or removes a settlement's accumulator delta (shared by every store).
pub fn shift_accumulators(
    current: AnnualAccumulators,
    breakdown: &SettlementBreakdown,
    add: bool,
) -> Result<AnnualAccumulators, StoreError> {
    let err = |e: citycard_core::MoneyError| StoreError::Internal(e.to_string());
    let (d, f) = (breakdown.deductible_applied, breakdown.fund_paid);
    Ok(AnnualAccumulators {
        year: current.year,
        deductible_met: if add {
            current.deductible_met.checked_add(d)
        } else {
            current.deductible_met.checked_sub(d)
        }
        .map_err(err)?,
        fund_paid: if add {
            current.fund_paid.checked_add(f)
        } else {
            current.fund_paid.checked_sub(f)
        }
        .map_err(err)?,
    })
}

/// Settlement records and accumulators in memory.
#[derive(Debug, Default)]
pub struct MemorySettlementStore {
    inner: Mutex<MemorySettlementInner>,
}

#[derive(Debug, Default)]
struct MemorySettlementInner {
    accumulators: HashMap<(PersonId, i32), AnnualAccumulators>,
    records: HashMap<SettlementId, SettlementRecord>,
    by_key: HashMap<IdempotencyKey, SettlementId>,
}

impl MemorySettlementInner {
    fn acc(&self, person: &PersonId, year: i32) -> AnnualAccumulators {
        self.accumulators
            .get(&(person.clone(), year))
            .copied()
            .unwrap_or(AnnualAccumulators::new(year))
    }
}

impl MemorySettlementStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemorySettlementInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl SettlementStore for MemorySettlementStore {
    async fn accumulators(
        &self,
        person: &PersonId,
        year: i32,
    ) -> Result<AnnualAccumulators, StoreError> {
        Ok(self.lock().acc(person, year))
    }

    async fn begin(&self, record: &SettlementRecord) -> Result<BeginDecision, StoreError> {
        let mut inner = self.lock();
        if let Some(existing) = inner
            .by_key
            .get(&record.key)
            .and_then(|id| inner.records.get(id))
        {
            return Ok(BeginDecision::Existing {
                record: existing.clone(),
            });
        }
        let person = &record.request.patient;
        let year = record.accumulators_before.year;
        let current = inner.acc(person, year);
        if current != record.accumulators_before {
            return Ok(BeginDecision::Stale { current });
        }
        inner
            .accumulators
            .insert((person.clone(), year), record.breakdown.accumulators_after);
        inner.by_key.insert(record.key.clone(), record.id.clone());
        let mut stored = record.clone();
        stored.status = SettlementStatus::Pending;
        inner.records.insert(record.id.clone(), stored);
        Ok(BeginDecision::Started)
    }

    async fn finish(
        &self,
        id: &SettlementId,
        paid: bool,
    ) -> Result<Option<SettlementRecord>, StoreError> {
        let mut inner = self.lock();
        let Some(record) = inner.records.get(id).cloned() else {
            return Ok(None);
        };
        if record.status != SettlementStatus::Pending {
            return Ok(Some(record));
        }
        let mut record = record;
        if paid {
            record.status = SettlementStatus::Completed;
        } else {
            let person = record.request.patient.clone();
            let year = record.accumulators_before.year;
            let restored = shift_accumulators(inner.acc(&person, year), &record.breakdown, false)?;
            inner.accumulators.insert((person, year), restored);
            record.status = SettlementStatus::Failed;
        }
        inner.records.insert(id.clone(), record.clone());
        Ok(Some(record))
    }

    async fn begin_reversal(
        &self,
        id: &SettlementId,
        key: &IdempotencyKey,
    ) -> Result<Option<SettlementRecord>, StoreError> {
        let mut inner = self.lock();
        let Some(record) = inner.records.get_mut(id) else {
            return Ok(None);
        };
        if record.status == SettlementStatus::Completed {
            record.status = SettlementStatus::Reversing;
            record.reversal_key = Some(key.clone());
        }
        Ok(Some(record.clone()))
    }

    async fn finish_reversal(
        &self,
        id: &SettlementId,
    ) -> Result<Option<SettlementRecord>, StoreError> {
        let mut inner = self.lock();
        let Some(record) = inner.records.get(id).cloned() else {
            return Ok(None);
        };
        if record.status != SettlementStatus::Reversing {
            return Ok(Some(record));
        }
        let person = record.request.patient.clone();
        let year = record.accumulators_before.year;
        let restored = shift_accumulators(inner.acc(&person, year), &record.breakdown, false)?;
        inner.accumulators.insert((person, year), restored);
        let mut record = record;
        record.status = SettlementStatus::Reversed;
        inner.records.insert(id.clone(), record.clone());
        Ok(Some(record))
    }

    async fn settlement(&self, id: &SettlementId) -> Result<Option<SettlementRecord>, StoreError> {
        Ok(self.lock().records.get(id).cloned())
    }
}

/// The transfers of a split: accounts, fund and (optionally) e-wallet to the hospital.
pub fn settlement_transfers(
    patient: &PersonId,
    hospital: &HospitalId,
    breakdown: &SettlementBreakdown,
    cash_source: CashSource,
) -> Vec<MedicalTransfer> {
    let to = PaymentAccount::Hospital(hospital.clone());
    let mut parts = vec![
        (
            PaymentAccount::CurrentYearAccount(patient.clone()),
            breakdown.current_year_account_paid,
        ),
        (
            PaymentAccount::AccumulatedAccount(patient.clone()),
            breakdown.accumulated_account_paid,
        ),
        (PaymentAccount::PooledFund, breakdown.fund_paid),
    ];
    if cash_source == CashSource::EWallet {
        parts.push((
            PaymentAccount::EWallet(patient.clone()),
            breakdown.cash_paid,
        ));
    }
    parts
        .into_iter()
        .filter(|(_, amount)| amount.is_positive())
        .map(|(from, amount)| MedicalTransfer {
            from,
            to: to.clone(),
            amount,
        })
        .collect()
}

/// Quotes, settles and reverses bills.
pub struct BillingService {
    engine: Arc<SettlementEngine>,
    store: Arc<dyn SettlementStore>,
    payments: Arc<dyn MedicalPayments>,
    patients: Arc<dyn PatientDirectory>,
    audit: Arc<dyn AuditLog>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
}

impl std::fmt::Debug for BillingService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BillingService").finish_non_exhaustive()
    }
}

const MAX_STALE_RETRIES: usize = 3;

impl BillingService {
    /// A service over its engine and ports.
    pub fn new(
        engine: Arc<SettlementEngine>,
        store: Arc<dyn SettlementStore>,
        payments: Arc<dyn MedicalPayments>,
        patients: Arc<dyn PatientDirectory>,
        audit: Arc<dyn AuditLog>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
    ) -> Self {
        Self {
            engine,
            store,
            payments,
            patients,
            audit,
            clock,
            ids,
        }
    }

    /// Audits a refusal and returns it.
    async fn refuse(
        &self,
        actor: &Principal,
        action: &str,
        subject: String,
        why: &str,
    ) -> HealthcareError {
        let record = AuditRecord::new(
            self.clock.now(),
            actor.clone(),
            action,
            subject,
            AuditOutcome::Denied,
        )
        .with("reason", why);
        if let Err(e) = self.audit.append(record).await {
            return e.into();
        }
        HealthcareError::Denied(why.to_owned())
    }

    fn may_bill(actor: &Principal, patient: &PersonId) -> bool {
        match actor {
            Principal::Cardholder { person } => person == patient,
            Principal::Operator { .. } | Principal::System => true,
            _ => false,
        }
    }

    async fn person_type(&self, patient: &PersonId) -> Result<PersonType, HealthcareError> {
        let record = self
            .patients
            .patient(patient)
            .await?
            .ok_or_else(|| HealthcareError::NotFound("patient".into()))?;
        record.person_type.ok_or_else(|| {
            HealthcareError::InvalidInput("the patient is not insured: bill in cash".into())
        })
    }

    /// Identifies the patient at the terminal (credential token, ID number or social
    /// security card number): operators and the system only.
    pub async fn identify(
        &self,
        actor: &Principal,
        identifier: &crate::appointments::PatientIdentifier,
    ) -> Result<PersonId, HealthcareError> {
        if !(actor.is_operator() || matches!(actor, Principal::System)) {
            return Err(self
                .refuse(
                    actor,
                    "billing.identify",
                    "patient:*".into(),
                    "only the hospital identifies patients by document",
                )
                .await);
        }
        self.patients
            .resolve(identifier)
            .await?
            .ok_or_else(|| HealthcareError::NotFound("patient for this identifier".into()))
    }

    /// Pre-settlement: the split the bill would get now, changing nothing.
    pub async fn quote(
        &self,
        actor: &Principal,
        request: &BillRequest,
    ) -> Result<SettlementBreakdown, HealthcareError> {
        if !Self::may_bill(actor, &request.patient) {
            return Err(self
                .refuse(
                    actor,
                    "billing.quote",
                    format!("person:{}", request.patient),
                    "only the patient or the hospital may quote a bill",
                )
                .await);
        }
        if !matches!(actor, Principal::System) {
            self.audit
                .append(AuditRecord::new(
                    self.clock.now(),
                    actor.clone(),
                    "billing.quote",
                    format!("person:{}", request.patient),
                    AuditOutcome::Succeeded,
                ))
                .await?;
        }
        let person_type = self.person_type(&request.patient).await?;
        let date = civil_date(self.clock.now());
        let accounts = self.payments.balances(&request.patient).await?;
        let accumulators = self
            .store
            .accumulators(&request.patient, date.year())
            .await?;
        self.engine.compute(&SettlementInput {
            person_type,
            hospital_level: request.hospital_level,
            visit_type: request.visit_type,
            date,
            items: &request.items,
            accounts,
            accumulators,
        })
    }

    /// Settles a bill: one idempotent all-or-nothing batch of transfers, accumulators updated.
    #[tracing::instrument(skip_all, fields(key = %key))]
    pub async fn settle(
        &self,
        actor: &Principal,
        key: &IdempotencyKey,
        request: &BillRequest,
    ) -> Result<SettlementRecord, HealthcareError> {
        if !Self::may_bill(actor, &request.patient) {
            return Err(self
                .refuse(
                    actor,
                    "billing.settle",
                    format!("person:{}", request.patient),
                    "only the patient or the hospital may settle a bill",
                )
                .await);
        }
        // Keys are the caller's: another principal's identical key is another bill.
        let key = &key.scoped_to(actor);
        let fingerprint = Fingerprint::of(request)?;
        let person_type = self.person_type(&request.patient).await?;
        let now = self.clock.now();
        let date = civil_date(now);
        let mut accumulators = self
            .store
            .accumulators(&request.patient, date.year())
            .await?;
        let mut record = None;
        for _ in 0..MAX_STALE_RETRIES {
            let accounts = self.payments.balances(&request.patient).await?;
            let breakdown = self.engine.compute(&SettlementInput {
                person_type,
                hospital_level: request.hospital_level,
                visit_type: request.visit_type,
                date,
                items: &request.items,
                accounts,
                accumulators,
            })?;
            let candidate = SettlementRecord {
                id: SettlementId::generate(self.ids.as_ref()),
                key: key.clone(),
                request_fingerprint: fingerprint,
                request: request.clone(),
                person_type,
                date,
                transfers: settlement_transfers(
                    &request.patient,
                    &request.hospital,
                    &breakdown,
                    request.cash_source,
                ),
                breakdown,
                accumulators_before: accumulators.for_year(date.year()),
                status: SettlementStatus::Pending,
                reversal_key: None,
                created_at: now,
            };
            match self.store.begin(&candidate).await? {
                BeginDecision::Started => {
                    record = Some(candidate);
                    break;
                }
                BeginDecision::Existing { record: existing } => {
                    if existing.request_fingerprint != fingerprint {
                        return Err(HealthcareError::KeyReused);
                    }
                    if existing.status == SettlementStatus::Failed {
                        return Err(HealthcareError::PaymentRefused(
                            "an earlier attempt with this key was refused: settle again with a new key".into(),
                        ));
                    }
                    if existing.status != SettlementStatus::Pending {
                        return Ok(existing);
                    }
                    record = Some(existing);
                    break;
                }
                BeginDecision::Stale { current } => accumulators = current,
            }
        }
        let record = record.ok_or_else(|| {
            HealthcareError::Conflict(
                "the patient's accumulators keep changing: retry the settlement".into(),
            )
        })?;
        match self.payments.execute(key, &record.transfers).await {
            Ok(receipt) => {
                let done = self
                    .store
                    .finish(&record.id, true)
                    .await?
                    .ok_or_else(|| HealthcareError::NotFound("settlement".into()))?;
                self.audit
                    .append(
                        AuditRecord::new(
                            now,
                            actor.clone(),
                            "healthcare.settle",
                            format!("settlement:{}", done.id),
                            AuditOutcome::Succeeded,
                        )
                        .with("total", done.breakdown.total.to_string())
                        .with("fund", done.breakdown.fund_paid.to_string())
                        .with("reference", receipt.reference),
                    )
                    .await?;
                info!(settlement = %done.id, total = %done.breakdown.total, "settled");
                Ok(done)
            }
            Err(PaymentError::Refused(why)) => {
                self.store.finish(&record.id, false).await?;
                self.audit
                    .append(
                        AuditRecord::new(
                            now,
                            actor.clone(),
                            "healthcare.settle",
                            format!("settlement:{}", record.id),
                            AuditOutcome::Failed,
                        )
                        .with("reason", why.clone()),
                    )
                    .await?;
                Err(HealthcareError::PaymentRefused(why))
            }
            Err(e @ PaymentError::Unknown(_)) => Err(e.into()),
        }
    }

    /// Reverses a completed settlement: the opposite transfers, then the accumulators.
    /// Operators and the system only; idempotent per reversal key.
    #[tracing::instrument(skip_all, fields(settlement = %id))]
    pub async fn reverse(
        &self,
        actor: &Principal,
        id: &SettlementId,
        key: &IdempotencyKey,
    ) -> Result<SettlementRecord, HealthcareError> {
        if !(actor.is_operator() || matches!(actor, Principal::System)) {
            return Err(self
                .refuse(
                    actor,
                    "billing.reverse",
                    format!("settlement:{id}"),
                    "only the hospital or the insurer may reverse a settlement",
                )
                .await);
        }
        let record = self
            .store
            .begin_reversal(id, key)
            .await?
            .ok_or_else(|| HealthcareError::NotFound(format!("settlement {id}")))?;
        match record.status {
            SettlementStatus::Reversing if record.reversal_key.as_ref() == Some(key) => {}
            SettlementStatus::Reversed if record.reversal_key.as_ref() == Some(key) => {
                return Ok(record);
            }
            SettlementStatus::Reversing | SettlementStatus::Reversed => {
                return Err(HealthcareError::KeyReused);
            }
            other => {
                return Err(HealthcareError::Conflict(format!(
                    "a {} settlement cannot be reversed",
                    other.code()
                )));
            }
        }
        let back: Vec<MedicalTransfer> = record
            .transfers
            .iter()
            .map(|t| MedicalTransfer {
                from: t.to.clone(),
                to: t.from.clone(),
                amount: t.amount,
            })
            .collect();
        self.payments.execute(key, &back).await?;
        let done = self
            .store
            .finish_reversal(id)
            .await?
            .ok_or_else(|| HealthcareError::NotFound(format!("settlement {id}")))?;
        self.audit
            .append(AuditRecord::new(
                self.clock.now(),
                actor.clone(),
                "healthcare.reverse",
                format!("settlement:{id}"),
                AuditOutcome::Succeeded,
            ))
            .await?;
        info!("reversed");
        Ok(done)
    }

    /// One settlement, for its patient or the facility.
    pub async fn settlement(
        &self,
        actor: &Principal,
        id: &SettlementId,
    ) -> Result<SettlementRecord, HealthcareError> {
        let record = self
            .store
            .settlement(id)
            .await?
            .ok_or_else(|| HealthcareError::NotFound(format!("settlement {id}")))?;
        if !Self::may_bill(actor, &record.request.patient) {
            return Err(self
                .refuse(
                    actor,
                    "billing.settlement",
                    format!("settlement:{id}"),
                    "not your settlement",
                )
                .await);
        }
        Ok(record)
    }
}

/// Money that balances: the sum of a batch's transfers (for reconciliation).
pub fn transfers_total(transfers: &[MedicalTransfer]) -> Result<Money, HealthcareError> {
    Ok(Money::checked_sum(transfers.iter().map(|t| t.amount))?)
}
