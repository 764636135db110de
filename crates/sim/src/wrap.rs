//! The simulator's own wrappers around the system's ports: each yields to
//! the interleaver before it calls through (so concurrent operations
//! interleave at every store commit and remote call), and each can carry
//! one deliberate bug ([`Mutation`]) to prove the checker catches it.
//! Nothing here is in a production crate.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use citycard::binding::{
    Binding, BindingId, BindingState, BindingStore, CardId, PassSerial, PassUpdate, PlatformWallet,
    PortError, RemovalReason, WalletPass,
};
use citycard::core::{CoreChanges, Platform, PlatformAccountId, StoreError};
use citycard::glue::money::codes;
use citycard::healthcare::{
    AccountBalances, MedicalPayments, MedicalTransfer, PaymentError, PaymentReceipt,
};
use citycard::identity::{
    FaceResult, FaceSession, FactorCheck, IdNumber, KeyId, KeyProvider, RealNameVerifier,
    SecretKey, VaultError, VerificationOutcome, VerifierError,
};
use citycard::ledger::store::{AccountRange, ChangeSet, LedgerState, Prefetched, Snapshot};
use citycard::ledger::{Account, AccountId, LedgerStore, Reference, Transfer, TransferId};
use citycard_testkit::{Fault, Faults};

/// One deliberate bug, switched on for a checker test (see the crate docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mutation {
    /// The ledger store drops the first fare transfer it is asked to commit
    /// (the balances it carries are kept): a trip is settled as charged
    /// with no charge behind it.
    DropCharge,
    /// The ledger store drops the audit record of the first top-up.
    SkipAudit,
    /// The binding store shows a second live binding of the first card and
    /// account bound (a store without its one-live-binding rule).
    SecondBinding,
    /// The crash child writes an operation's acknowledgement before the
    /// operation runs (so a kill in its commit loses an acknowledged operation).
    AckBeforeCommit,
    /// A gate is shown a tampered ride code untampered (a gate that does not
    /// check signatures accepts it).
    AcceptForged,
    /// The payments port pays a retried batch again under a fresh key (a
    /// payment retry that is not idempotent): a bill settled twice.
    DoubleBill,
    /// The platform's client sends a retried top-up with a new
    /// `Idempotency-Key` (the network simulation): a top-up made twice.
    FreshKeyRetry,
}

impl Mutation {
    /// Every mutation.
    pub const ALL: [Mutation; 7] = [
        Mutation::DropCharge,
        Mutation::SkipAudit,
        Mutation::SecondBinding,
        Mutation::AckBeforeCommit,
        Mutation::AcceptForged,
        Mutation::DoubleBill,
        Mutation::FreshKeyRetry,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mutation::DropCharge => "drop-charge",
            Mutation::SkipAudit => "skip-audit",
            Mutation::SecondBinding => "second-binding",
            Mutation::AckBeforeCommit => "ack-before-commit",
            Mutation::AcceptForged => "accept-forged",
            Mutation::DoubleBill => "double-bill",
            Mutation::FreshKeyRetry => "fresh-key-retry",
        }
    }

    /// The mutation with this name.
    pub fn parse(text: &str) -> Option<Mutation> {
        Mutation::ALL.into_iter().find(|m| m.name() == text)
    }
}

/// Returns `Pending` once (waking itself), so the interleaver may run another operation.
pub fn yield_now() -> impl Future<Output = ()> {
    struct Yield(bool);
    impl Future for Yield {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                Poll::Ready(())
            } else {
                self.0 = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
    Yield(false)
}

/// The ledger store, yielding before each commit; may drop a charge or an audit record.
pub struct SimLedgerStore {
    inner: Arc<dyn LedgerStore>,
    mutation: Option<Mutation>,
    fired: AtomicBool,
}

impl SimLedgerStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn LedgerStore>, mutation: Option<Mutation>) -> Self {
        Self {
            inner,
            mutation,
            fired: AtomicBool::new(false),
        }
    }

    fn fire(&self) -> bool {
        !self.fired.swap(true, Ordering::SeqCst)
    }
}

#[async_trait]
impl LedgerStore for SimLedgerStore {
    async fn commit(&self, changes: &ChangeSet<'_>, core: &CoreChanges) -> Result<(), StoreError> {
        yield_now().await;
        match self.mutation {
            Some(Mutation::DropCharge)
                if changes.transfers.iter().any(|t| t.code == codes::FARE) && self.fire() =>
            {
                let mut dropped = false;
                let transfers: Vec<Transfer> = changes
                    .transfers
                    .iter()
                    .filter(|t| {
                        let drop = !dropped && t.code == codes::FARE;
                        dropped |= drop;
                        !drop
                    })
                    .cloned()
                    .collect();
                let changed = ChangeSet {
                    transfers: &transfers,
                    ..*changes
                };
                self.inner.commit(&changed, core).await
            }
            Some(Mutation::SkipAudit)
                if core.audit.iter().any(|r| r.action == "wallet.top_up") && self.fire() =>
            {
                let mut core = core.clone();
                core.audit.retain(|r| r.action != "wallet.top_up");
                self.inner.commit(changes, &core).await
            }
            _ => self.inner.commit(changes, core).await,
        }
    }

    async fn load_state(&self) -> Result<LedgerState, StoreError> {
        self.inner.load_state().await
    }

    async fn prefetch(
        &self,
        ids: &[TransferId],
        holds: &[TransferId],
    ) -> Result<Prefetched, StoreError> {
        self.inner.prefetch(ids, holds).await
    }

    async fn accounts(&self, ids: &[AccountId]) -> Result<Vec<Account>, StoreError> {
        self.inner.accounts(ids).await
    }

    async fn account_transfers(&self, range: &AccountRange) -> Result<Vec<Transfer>, StoreError> {
        self.inner.account_transfers(range).await
    }

    async fn transfers_by_reference(
        &self,
        reference: &Reference,
    ) -> Result<Vec<Transfer>, StoreError> {
        self.inner.transfers_by_reference(reference).await
    }

    async fn load(&self) -> Result<Snapshot, StoreError> {
        self.inner.load().await
    }
}

/// The binding store, yielding before reads the bind saga decides on; may
/// show a second live binding.
pub struct SimBindingStore {
    inner: Arc<dyn BindingStore>,
    second: bool,
}

impl SimBindingStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn BindingStore>, mutation: Option<Mutation>) -> Self {
        Self {
            inner,
            second: mutation == Some(Mutation::SecondBinding),
        }
    }
}

#[async_trait]
impl BindingStore for SimBindingStore {
    async fn insert(&self, binding: &Binding) -> Result<(), StoreError> {
        self.inner.insert(binding).await
    }

    async fn get(&self, id: &BindingId) -> Result<Option<Binding>, StoreError> {
        self.inner.get(id).await
    }

    async fn live_for(
        &self,
        card: &CardId,
        platform: &Platform,
        account: &PlatformAccountId,
    ) -> Result<Option<Binding>, StoreError> {
        yield_now().await;
        self.inner.live_for(card, platform, account).await
    }

    async fn by_card(&self, card: &CardId) -> Result<Vec<Binding>, StoreError> {
        self.inner.by_card(card).await
    }

    async fn by_account(
        &self,
        platform: &Platform,
        account: &PlatformAccountId,
    ) -> Result<Vec<Binding>, StoreError> {
        let mut found = self.inner.by_account(platform, account).await?;
        if self.second
            && let Some(live) = found
                .iter()
                .find(|b| b.state == BindingState::Active)
                .cloned()
        {
            let mut copy = live;
            copy.id = BindingId::parse(&format!("{}-twin", copy.id))
                .map_err(|e| StoreError::Internal(e.to_string()))?;
            found.push(copy);
        }
        Ok(found)
    }

    async fn pending(&self, limit: usize) -> Result<Vec<Binding>, StoreError> {
        self.inner.pending(limit).await
    }

    async fn update(&self, binding: &Binding) -> Result<Binding, StoreError> {
        self.inner.update(binding).await
    }

    async fn record_mismatch(
        &self,
        platform: &Platform,
        account: &PlatformAccountId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner.record_mismatch(platform, account, at).await
    }

    async fn mismatches_since(
        &self,
        platform: &Platform,
        account: &PlatformAccountId,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        self.inner.mismatches_since(platform, account, since).await
    }
}

/// A remote port behind the testkit's fault double, yielding before each call.
pub struct Remote<T>(pub T);

#[async_trait]
impl<T: PlatformWallet> PlatformWallet for Remote<T> {
    async fn add_pass(&self, pass: &WalletPass) -> Result<(), PortError> {
        yield_now().await;
        self.0.add_pass(pass).await
    }

    async fn update_pass(
        &self,
        platform: &Platform,
        serial: &PassSerial,
        update: &PassUpdate,
    ) -> Result<(), PortError> {
        yield_now().await;
        self.0.update_pass(platform, serial, update).await
    }

    async fn remove_pass(
        &self,
        platform: &Platform,
        serial: &PassSerial,
        reason: RemovalReason,
    ) -> Result<(), PortError> {
        yield_now().await;
        self.0.remove_pass(platform, serial, reason).await
    }

    async fn pass(
        &self,
        platform: &Platform,
        serial: &PassSerial,
    ) -> Result<Option<WalletPass>, PortError> {
        yield_now().await;
        self.0.pass(platform, serial).await
    }
}

#[async_trait]
impl<T: RealNameVerifier> RealNameVerifier for Remote<T> {
    async fn check_factors(
        &self,
        check: &FactorCheck,
    ) -> Result<VerificationOutcome, VerifierError> {
        yield_now().await;
        self.0.check_factors(check).await
    }

    async fn start_face_session(
        &self,
        name: &citycard::core::Sensitive<String>,
        id_number: &IdNumber,
    ) -> Result<FaceSession, VerifierError> {
        yield_now().await;
        self.0.start_face_session(name, id_number).await
    }

    async fn face_result(&self, session_id: &str) -> Result<FaceResult, VerifierError> {
        yield_now().await;
        self.0.face_result(session_id).await
    }
}

#[async_trait]
impl<T: KeyProvider> KeyProvider for Remote<T> {
    async fn current_key_id(&self) -> Result<KeyId, VaultError> {
        yield_now().await;
        self.0.current_key_id().await
    }

    async fn key(&self, id: &KeyId) -> Result<SecretKey, VaultError> {
        yield_now().await;
        self.0.key(id).await
    }

    async fn blind_index_key(&self) -> Result<SecretKey, VaultError> {
        yield_now().await;
        self.0.blind_index_key().await
    }
}

/// The simulated platform wallet, shared with the checker (which reads its passes).
pub struct SharedWallet(pub Arc<citycard::binding::SimulatedWallet>);

#[async_trait]
impl PlatformWallet for SharedWallet {
    async fn add_pass(&self, pass: &WalletPass) -> Result<(), PortError> {
        self.0.add_pass(pass).await
    }

    async fn update_pass(
        &self,
        platform: &Platform,
        serial: &PassSerial,
        update: &PassUpdate,
    ) -> Result<(), PortError> {
        self.0.update_pass(platform, serial, update).await
    }

    async fn remove_pass(
        &self,
        platform: &Platform,
        serial: &PassSerial,
        reason: RemovalReason,
    ) -> Result<(), PortError> {
        self.0.remove_pass(platform, serial, reason).await
    }

    async fn pass(
        &self,
        platform: &Platform,
        serial: &PassSerial,
    ) -> Result<Option<WalletPass>, PortError> {
        self.0.pass(platform, serial).await
    }
}

/// Every batch billing asked the payments port to execute: its ledger
/// reference (`bill:<key>`), its total in fen and its number of transfers.
#[derive(Clone, Default)]
pub struct PaymentsLog(Arc<std::sync::Mutex<Vec<(String, i64, usize)>>>);

impl PaymentsLog {
    /// The batches asked so far.
    pub fn asked(&self) -> Vec<(String, i64, usize)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn push(&self, entry: (String, i64, usize)) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(entry);
    }
}

/// The medical payments port behind a fault script: the next `execute`
/// fails (refused: nothing moved), times out (nothing moved, outcome
/// unknown to the caller) or pays and loses the answer; yields before each
/// call; logs every batch; may pay a retry twice ([`Mutation::DoubleBill`]).
pub struct SimPayments {
    inner: Arc<dyn MedicalPayments>,
    faults: Faults,
    log: PaymentsLog,
    double: bool,
    seen: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl SimPayments {
    /// Wraps `inner`.
    pub fn new(
        inner: Arc<dyn MedicalPayments>,
        faults: Faults,
        log: PaymentsLog,
        mutation: Option<Mutation>,
    ) -> Self {
        Self {
            inner,
            faults,
            log,
            double: mutation == Some(Mutation::DoubleBill),
            seen: std::sync::Mutex::new(std::collections::HashSet::new()),
        }
    }
}

#[async_trait]
impl MedicalPayments for SimPayments {
    async fn execute(
        &self,
        key: &citycard::core::IdempotencyKey,
        transfers: &[MedicalTransfer],
    ) -> Result<PaymentReceipt, PaymentError> {
        yield_now().await;
        let reference = Reference::bill(key.as_str())
            .map(|r| r.to_string())
            .map_err(|e| PaymentError::Refused(e.to_string()))?;
        let total: i64 = transfers.iter().map(|t| t.amount.fen()).sum();
        self.log.push((reference.clone(), total, transfers.len()));
        let again = !self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(reference);
        match self.faults.check("execute") {
            Fault::Fail => Err(PaymentError::Refused(
                "the payment system refused the connection".into(),
            )),
            Fault::Timeout => Err(PaymentError::Unknown("timed out".into())),
            Fault::UnknownOutcome => {
                self.inner.execute(key, transfers).await?;
                Err(PaymentError::Unknown("the answer was lost".into()))
            }
            Fault::None if self.double && again => {
                let fresh = citycard::core::IdempotencyKey::parse(&format!("{key}-again"))
                    .map_err(|e| PaymentError::Refused(e.to_string()))?;
                self.inner.execute(&fresh, transfers).await
            }
            Fault::None => self.inner.execute(key, transfers).await,
        }
    }

    async fn balances(
        &self,
        person: &citycard::core::PersonId,
    ) -> Result<AccountBalances, PaymentError> {
        yield_now().await;
        self.inner.balances(person).await
    }
}
