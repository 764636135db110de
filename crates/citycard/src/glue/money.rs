//! The money ports of transit, healthcare and card binding, on the ledger.

use std::sync::Arc;

use async_trait::async_trait;
use citycard_binding::{BalanceSource, BalanceView, CardFunds, PortError, WalletAccountRef};
use citycard_core::{
    AuditRecord, ClassifiedError, Clock, CoreChanges, IdempotencyKey, Money, PersonId, Principal,
    StoreError,
};
use citycard_healthcare::{
    AccountBalances, MedicalPayments, MedicalTransfer, PaymentAccount, PaymentError, PaymentReceipt,
};
use citycard_ledger::{
    AccountId, AccountKind, ChangeSet, CommitWith, CreateTransferResult, Ledger, NewTransfer,
    Owner, Reference, TransferFlags, TransferId,
};
use citycard_transit::{
    ChargeOutcome, ChargePlan, FareCharge, FarePayments, TransitError, TransitStore,
};

use crate::accounts::Accounts;
use crate::unit::{CityPlan, UnitOfWork};

/// Transfer codes the card system writes.
pub mod codes {
    /// A top-up of a card's wallet.
    pub const TOP_UP: u16 = 1;
    /// A transit fare.
    pub const FARE: u16 = 2;
    /// A medical settlement leg.
    pub const MEDICAL: u16 = 3;
    /// A refund to the cardholder.
    pub const REFUND: u16 = 4;
    /// A balance carried to a replacement card.
    pub const CARRY: u16 = 5;
    /// Funding of a personal medical account.
    pub const MEDICAL_FUNDING: u16 = 6;
    /// Closing a cancelled card's wallet.
    pub const CLOSE: u16 = 7;
}

/// The wallet account behind a binding crate's reference (the ledger id in decimal).
pub fn wallet_of(reference: &WalletAccountRef) -> Result<AccountId, String> {
    AccountId::parse(reference.as_str()).map_err(|e| format!("wallet account {reference}: {e}"))
}

/// The binding crate's reference for a wallet account.
pub fn wallet_ref(account: AccountId) -> WalletAccountRef {
    WalletAccountRef::parse(&account.to_string())
        .expect("a decimal account id satisfies the id rules")
}

/// Fares charged on the ledger: the card's wallet to the operator's revenue.
///
/// A transit `CardRef` is the card's wallet account id, so a reader's tap
/// names the account to charge directly.
///
/// A settlement chunk is one ledger batch, decided by the ledger and
/// committed with the chunk's trips, arrears and denials in one unit of
/// work ([`Ledger::create_transfers_with`]): one write transaction per chunk.
/// Each transfer is its own idempotency record: its id is derived from the
/// trip key, so a replayed chunk is answered `exists`
/// ([`ChargeOutcome::AlreadyCharged`]) and a fare the balance did not cover
/// is recorded as arrears in the same transaction that burns its id. The
/// same key with another card, amount or operator is refused
/// (`exists_with_different_*`: [`ChargeOutcome::Refused`]).
pub struct LedgerFarePayments {
    ledger: Arc<Ledger>,
    accounts: Accounts,
    unit: Arc<dyn UnitOfWork>,
    operators: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl LedgerFarePayments {
    /// Fares on this ledger, committed with the transit rows through `unit`.
    pub fn new(ledger: Arc<Ledger>, accounts: Accounts, unit: Arc<dyn UnitOfWork>) -> Self {
        Self {
            ledger,
            accounts,
            unit,
            operators: std::sync::Mutex::default(),
        }
    }

    /// The transfer id of a fare charge (the trip key, in the fare scope).
    pub fn transfer_id(key: &IdempotencyKey) -> TransferId {
        TransferId::from_idempotency_key(FARE_SCOPE, key)
    }

    /// Opens the revenue accounts of operators not yet seen by this process.
    async fn open_operators(&self, charges: &[FareCharge]) -> Result<(), TransitError> {
        let missing: Vec<String> = {
            let known = self.operators.lock().unwrap_or_else(|e| e.into_inner());
            let mut missing: Vec<String> = charges
                .iter()
                .filter(|c| !known.contains(&c.operator))
                .map(|c| c.operator.clone())
                .collect();
            missing.sort_unstable();
            missing.dedup();
            missing
        };
        for operator in missing {
            self.accounts
                .open_operator(&operator)
                .await
                .map_err(fare_error)?;
            self.operators
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(operator);
        }
        Ok(())
    }
}

/// The scope fare transfer ids are derived in.
pub const FARE_SCOPE: &str = "transit.fare";

/// The outcome of one fare from the ledger's result.
fn fare_outcome(result: CreateTransferResult, id: TransferId) -> ChargeOutcome {
    let reference = id.to_string();
    match result {
        CreateTransferResult::Ok => ChargeOutcome::Charged { reference },
        CreateTransferResult::Exists => ChargeOutcome::AlreadyCharged { reference },
        CreateTransferResult::ExceedsCredits => ChargeOutcome::InsufficientFunds,
        // A fare's id is burnt in the transaction that records its trip in
        // arrears, so a trip still unsettled should never find it burnt.
        other => ChargeOutcome::Refused {
            reason: format!("the ledger refused the fare: {other:?}"),
        },
    }
}

/// The transit half of a fare batch's commit.
struct FareCommit<'a> {
    plan: &'a dyn ChargePlan,
    ids: Vec<TransferId>,
    unit: &'a dyn UnitOfWork,
}

#[async_trait]
impl CommitWith for FareCommit<'_> {
    type Output = Vec<ChargeOutcome>;

    async fn commit(
        &mut self,
        results: &[CreateTransferResult],
        changes: &ChangeSet<'_>,
        audit: AuditRecord,
    ) -> Result<Vec<ChargeOutcome>, StoreError> {
        let outcomes: Vec<ChargeOutcome> = results
            .iter()
            .zip(&self.ids)
            .map(|(r, id)| fare_outcome(*r, *id))
            .collect();
        let transit = self.plan.resolve(&outcomes);
        self.unit
            .commit(CityPlan {
                ledger: Some(changes),
                transit: Some(&transit),
                core: CoreChanges::audited(audit),
            })
            .await?;
        Ok(outcomes)
    }
}

#[async_trait]
impl FarePayments for LedgerFarePayments {
    async fn commit(
        &self,
        plan: &dyn ChargePlan,
        _store: &dyn TransitStore,
    ) -> Result<Vec<ChargeOutcome>, TransitError> {
        let charges = plan.charges();
        self.open_operators(charges).await?;
        let mut ids = Vec::with_capacity(charges.len());
        let mut batch = Vec::with_capacity(charges.len());
        for charge in charges {
            let id = Self::transfer_id(&charge.key);
            let reference = Reference::trip(charge.key.as_str()).map_err(fare_error)?;
            ids.push(id);
            batch.push(
                NewTransfer::new(
                    id,
                    AccountId::new(charge.card.0),
                    Accounts::revenue(&charge.operator),
                    charge.amount,
                    codes::FARE,
                )
                .with_reference(reference),
            );
        }
        let (_, outcomes) = self
            .ledger
            .create_transfers_with(
                &Principal::System,
                batch,
                FareCommit {
                    plan,
                    ids,
                    unit: self.unit.as_ref(),
                },
            )
            .await
            .map_err(fare_error)?;
        Ok(outcomes)
    }
}

/// Medical settlements on the ledger: one linked chain per settlement, so
/// every leg moves or none does.
pub struct LedgerMedicalPayments {
    ledger: Arc<Ledger>,
    accounts: Accounts,
}

impl LedgerMedicalPayments {
    /// Medical payments on this ledger.
    pub fn new(ledger: Arc<Ledger>, accounts: Accounts) -> Self {
        Self { ledger, accounts }
    }

    async fn account_of(&self, account: &PaymentAccount) -> Result<AccountId, PaymentError> {
        Ok(match account {
            PaymentAccount::CurrentYearAccount(p) => Accounts::medical_current(p),
            PaymentAccount::AccumulatedAccount(p) => Accounts::medical_accumulated(p),
            PaymentAccount::PooledFund => Accounts::pooled_fund(),
            PaymentAccount::Hospital(h) => self
                .accounts
                .open_hospital(h.as_str())
                .await
                .map_err(payment_error)?,
            PaymentAccount::EWallet(p) => open_wallet_of(&self.ledger, p)
                .await?
                .ok_or_else(|| PaymentError::Refused(format!("{p} has no open e-wallet")))?,
        })
    }
}

/// The open e-wallet account of a person's card, if any (the newest one).
async fn open_wallet_of(
    ledger: &Ledger,
    person: &PersonId,
) -> Result<Option<AccountId>, PaymentError> {
    let accounts = ledger
        .accounts_of(&Principal::System, &Owner::Person(person.clone()))
        .await
        .map_err(payment_error)?;
    Ok(accounts
        .iter()
        .filter(|a| a.kind == AccountKind::E_WALLET && !a.is_closed())
        .map(|a| a.id)
        .next_back())
}

#[async_trait]
impl MedicalPayments for LedgerMedicalPayments {
    async fn execute(
        &self,
        key: &IdempotencyKey,
        transfers: &[MedicalTransfer],
    ) -> Result<PaymentReceipt, PaymentError> {
        let mut batch = Vec::with_capacity(transfers.len());
        for (i, t) in transfers.iter().enumerate() {
            let id = TransferId::from_idempotency_key(&format!("healthcare.settle#{i}"), key);
            let reference = Reference::bill(key.as_str()).map_err(payment_error)?;
            let mut transfer = NewTransfer::new(
                id,
                self.account_of(&t.from).await?,
                self.account_of(&t.to).await?,
                t.amount,
                codes::MEDICAL,
            )
            .with_reference(reference)
            .with_memo("outpatient settlement");
            if i + 1 < transfers.len() {
                transfer = transfer.with_flags(TransferFlags::LINKED);
            }
            batch.push(transfer);
        }
        let results = self
            .ledger
            .create_transfers(&Principal::System, batch)
            .await
            .map_err(payment_error)?;
        let failed: Vec<String> = results
            .iter()
            .filter(|r| !r.is_success() && **r != CreateTransferResult::LinkedEventFailed)
            .map(|r| format!("{r:?}"))
            .collect();
        if failed.is_empty() {
            Ok(PaymentReceipt {
                reference: format!("bill:{key}"),
            })
        } else {
            Err(PaymentError::Refused(format!(
                "the ledger refused the settlement: {}",
                failed.join(", ")
            )))
        }
    }

    async fn balances(&self, person: &PersonId) -> Result<AccountBalances, PaymentError> {
        let read = |id| async move {
            match self.ledger.account(&Principal::System, id).await {
                Ok(a) => Ok(a.posted()),
                Err(citycard_ledger::LedgerError::AccountNotFound(_)) => Ok(Money::ZERO),
                Err(e) => Err(payment_error(e)),
            }
        };
        Ok(AccountBalances {
            current_year: read(Accounts::medical_current(person)).await?,
            accumulated: read(Accounts::medical_accumulated(person)).await?,
        })
    }
}

/// Balance moves on card replacement and cancellation, on the ledger.
pub struct LedgerCardFunds {
    ledger: Arc<Ledger>,
}

impl LedgerCardFunds {
    /// Card funds on this ledger.
    pub fn new(ledger: Arc<Ledger>) -> Self {
        Self { ledger }
    }

    async fn moved(&self, id: TransferId) -> Result<Money, PortError> {
        self.ledger
            .transfer(&Principal::System, id)
            .await
            .map(|t| t.amount)
            .map_err(ledger_port_error)
    }
}

/// A binding port error by class: retryable failures stay retryable
/// (`Unavailable`), every other class is a refusal (`Rejected`).
fn ledger_port_error(e: impl ClassifiedError) -> PortError {
    if e.class().is_retryable() {
        PortError::Unavailable(e.to_string())
    } else {
        PortError::Rejected(e.to_string())
    }
}

/// A fare port error by class: retryable failures leave the trip pending
/// (`PaymentUnavailable`), every other class refuses the charge (`PaymentConflict`).
fn fare_error(e: impl ClassifiedError) -> TransitError {
    if e.class().is_retryable() {
        TransitError::PaymentUnavailable(e.to_string())
    } else {
        TransitError::PaymentConflict(e.to_string())
    }
}

/// A medical payment error by class: retryable failures are an unknown outcome
/// (`Unknown`, retry with the same key), every other class a refusal (`Refused`).
fn payment_error(e: impl ClassifiedError) -> PaymentError {
    if e.class().is_retryable() {
        PaymentError::Unknown(e.to_string())
    } else {
        PaymentError::Refused(e.to_string())
    }
}

#[async_trait]
impl CardFunds for LedgerCardFunds {
    async fn move_balance(
        &self,
        from: &WalletAccountRef,
        to: &WalletAccountRef,
        key: &IdempotencyKey,
    ) -> Result<Money, PortError> {
        let from = wallet_of(from).map_err(PortError::Rejected)?;
        let to = wallet_of(to).map_err(PortError::Rejected)?;
        // Scoped by the wallet it empties, so one key on two cards names two transfers.
        let id = TransferId::from_idempotency_key(&format!("card.carry_balance/{from}"), key);
        let transfer = NewTransfer::carry_balance(id, from, to, codes::CARRY)
            .with_memo("balance carried to the replacement card");
        let results = self
            .ledger
            .create_transfers(&Principal::System, vec![transfer])
            .await
            .map_err(ledger_port_error)?;
        match results.first().copied() {
            Some(CreateTransferResult::Ok | CreateTransferResult::Exists) => self.moved(id).await,
            Some(other) => Err(PortError::Rejected(format!(
                "the ledger refused the balance move: {other:?}"
            ))),
            None => Err(PortError::UnknownOutcome),
        }
    }

    async fn refund_balance(
        &self,
        account: &WalletAccountRef,
        key: &IdempotencyKey,
    ) -> Result<Money, PortError> {
        let account = wallet_of(account).map_err(PortError::Rejected)?;
        let refund =
            TransferId::from_idempotency_key(&format!("card.refund_balance/{account}"), key);
        let close = TransferId::from_idempotency_key(&format!("card.close_wallet/{account}"), key);
        let batch = vec![
            NewTransfer::carry_balance(refund, account, Accounts::refunds(), codes::REFUND)
                .with_flags(TransferFlags::BALANCING_DEBIT | TransferFlags::LINKED)
                .with_memo("balance refunded on cancellation"),
            NewTransfer::close_account(close, account, Accounts::control(), codes::CLOSE),
        ];
        let results = self
            .ledger
            .create_transfers(&Principal::System, batch)
            .await
            .map_err(ledger_port_error)?;
        if results.iter().all(|r| r.is_success()) {
            self.moved(refund).await
        } else {
            Err(PortError::Rejected(format!(
                "the ledger refused the refund: {results:?}"
            )))
        }
    }
}

/// The authoritative wallet balance, from the ledger.
pub struct LedgerBalances {
    ledger: Arc<Ledger>,
    clock: Arc<dyn Clock>,
}

impl LedgerBalances {
    /// Balances from this ledger.
    pub fn new(ledger: Arc<Ledger>, clock: Arc<dyn Clock>) -> Self {
        Self { ledger, clock }
    }
}

#[async_trait]
impl BalanceSource for LedgerBalances {
    async fn balance(&self, account: &WalletAccountRef) -> Result<BalanceView, PortError> {
        let id = wallet_of(account).map_err(PortError::Rejected)?;
        let account = self
            .ledger
            .account(&Principal::System, id)
            .await
            .map_err(ledger_port_error)?;
        Ok(BalanceView {
            balance: account.available(),
            as_of: self.clock.now(),
        })
    }
}
