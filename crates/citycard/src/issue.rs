//! Card issue through the facade: a card, its ledger accounts, its audit
//! record and its key's outcome in one write transaction, and concurrent
//! issues in one transaction between them (group commit).
//!
//! The card service decides ([`citycard_binding::CardService::decide_issue`],
//! [`citycard_binding::CardService::decide_issue_chunk`]); the [`IssueDesk`]
//! commits. It opens the plans' accounts in one ledger batch
//! ([`citycard_ledger::Ledger::create_accounts_with`]) and hands the batch
//! and the card plans to [`UnitOfWork::commit_cards`], where each plan is
//! refused alone when its precondition fails (another card took the number,
//! an identical request committed first): the others commit. An account the
//! ledger refuses (a wallet that exists with another cap) refuses the plans
//! that need it, and the accounts that opened commit anyway: they are keyed
//! by the card number and the person, so a later issue finds them there.
//!
//! Issues that arrive while a group is being written wait for the writer
//! and then go together: the first of them to get the writer takes every
//! waiting plan. Nothing is spawned; a caller dropped while writing leaves
//! its group's answers unknown, and their retries with the same keys read
//! the outcome back.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use async_trait::async_trait;
use citycard_binding::CardChanges;
use citycard_core::{AuditRecord, CoreChanges, Principal, StoreError};
use citycard_ledger::{
    AccountId, ChangeSet, CommitAccountsWith, CreateAccountResult, Ledger, NewAccount,
};

use crate::error::CityCardError;
use crate::unit::{CardPlan, UnitOfWork};

/// A card plan with the ledger accounts it needs.
#[derive(Debug)]
pub(crate) struct PlanWithAccounts {
    pub(crate) changes: CardChanges,
    pub(crate) core: CoreChanges,
    pub(crate) accounts: Vec<NewAccount>,
}

/// Why one plan of a group did not commit.
#[derive(Debug, Clone)]
pub(crate) enum PlanRefused {
    /// The store refused it (a `Conflict`: decide again) or failed.
    Store(StoreError),
    /// The ledger refused one of its accounts.
    Account(AccountId, CreateAccountResult),
    /// The ledger failed for the whole group.
    Ledger(citycard_ledger::LedgerError),
    /// Its group's writer was dropped: the outcome is unknown.
    Unknown,
}

impl PlanRefused {
    /// True when the plan should be decided again.
    pub(crate) fn is_conflict(&self) -> bool {
        matches!(
            self,
            PlanRefused::Store(StoreError::Conflict(_))
                | PlanRefused::Ledger(citycard_ledger::LedgerError::Store(StoreError::Conflict(_)))
        )
    }
}

impl From<PlanRefused> for CityCardError {
    fn from(e: PlanRefused) -> Self {
        match e {
            PlanRefused::Store(e) => CityCardError::Store(e),
            PlanRefused::Account(account, result) => {
                CityCardError::AccountNotOpened { account, result }
            }
            PlanRefused::Ledger(e) => e.into(),
            PlanRefused::Unknown => CityCardError::Store(StoreError::Unavailable(
                "the issue's commit was interrupted: retry with the same key".into(),
            )),
        }
    }
}

/// The commit half of a group: the ledger's new accounts and every plan
/// whose accounts opened, through the unit of work.
struct GroupCommit<'a> {
    unit: &'a dyn UnitOfWork,
    plans: &'a [PlanWithAccounts],
}

#[async_trait]
impl CommitAccountsWith for GroupCommit<'_> {
    type Output = Vec<Result<(), PlanRefused>>;

    async fn commit(
        &mut self,
        results: &[CreateAccountResult],
        changes: &ChangeSet<'_>,
        audit: AuditRecord,
    ) -> Result<Self::Output, StoreError> {
        let mut out: Vec<Result<(), PlanRefused>> = Vec::with_capacity(self.plans.len());
        let mut committing = Vec::with_capacity(self.plans.len());
        let mut at = 0;
        for plan in self.plans {
            let range = at..at + plan.accounts.len();
            at = range.end;
            let refused = plan
                .accounts
                .iter()
                .zip(results.get(range).unwrap_or_default())
                .find(|(_, r)| !r.is_success());
            match refused {
                Some((account, result)) => out.push(Err(PlanRefused::Account(account.id, *result))),
                None => {
                    out.push(Ok(()));
                    committing.push(CardPlan {
                        changes: &plan.changes,
                        core: &plan.core,
                    });
                }
            }
        }
        let core = CoreChanges::audited(audit);
        let mut written = self
            .unit
            .commit_cards(changes, &core, &committing)
            .await?
            .into_iter();
        for slot in out.iter_mut().filter(|r| r.is_ok()) {
            *slot = written
                .next()
                .unwrap_or_else(|| Err(StoreError::Internal("a plan was not answered".into())))
                .map_err(PlanRefused::Store);
        }
        Ok(out)
    }
}

/// A queued plan and its answer.
#[derive(Debug)]
struct Job {
    plan: Mutex<Option<PlanWithAccounts>>,
    answer: Mutex<Option<Result<(), PlanRefused>>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Commits card issues: one transaction per group of concurrent issues, or
/// per chunk of a batch.
pub(crate) struct IssueDesk {
    ledger: Arc<Ledger>,
    unit: Arc<dyn UnitOfWork>,
    queue: Mutex<Vec<Arc<Job>>>,
    writer: tokio::sync::Mutex<()>,
    /// Cards per chunk of a batch.
    pub(crate) chunk: usize,
}

impl std::fmt::Debug for IssueDesk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssueDesk").finish_non_exhaustive()
    }
}

impl IssueDesk {
    /// The desk over the ledger and the unit of work on the same store.
    pub(crate) fn new(ledger: Arc<Ledger>, unit: Arc<dyn UnitOfWork>, chunk: usize) -> Self {
        Self {
            ledger,
            unit,
            chunk,
            queue: Mutex::default(),
            writer: tokio::sync::Mutex::new(()),
        }
    }

    /// Commits `plans` now, in one transaction with their accounts; one answer per plan.
    pub(crate) async fn commit(&self, plans: &[PlanWithAccounts]) -> Vec<Result<(), PlanRefused>> {
        let accounts: Vec<NewAccount> = plans
            .iter()
            .flat_map(|p| p.accounts.iter().cloned())
            .collect();
        let group = GroupCommit {
            unit: self.unit.as_ref(),
            plans,
        };
        match self
            .ledger
            .create_accounts_with(&Principal::System, accounts, group)
            .await
        {
            Ok((_, answers)) => answers,
            Err(e) => plans
                .iter()
                .map(|_| Err(PlanRefused::Ledger(e.clone())))
                .collect(),
        }
    }

    /// Commits one plan together with whatever other plans wait meanwhile.
    pub(crate) async fn commit_queued(&self, plan: PlanWithAccounts) -> Result<(), PlanRefused> {
        let job = Arc::new(Job {
            plan: Mutex::new(Some(plan)),
            answer: Mutex::default(),
        });
        locked(&self.queue).push(job.clone());
        // Let the other ready callers queue theirs first.
        YieldOnce(false).await;
        let _writer = self.writer.lock().await;
        if let Some(answer) = locked(&job.answer).take() {
            return answer;
        }
        let jobs = std::mem::take(&mut *locked(&self.queue));
        if !jobs.iter().any(|j| Arc::ptr_eq(j, &job)) {
            // Taken by a writer that was dropped before it answered.
            return Err(PlanRefused::Unknown);
        }
        let plans: Vec<PlanWithAccounts> =
            jobs.iter().filter_map(|j| locked(&j.plan).take()).collect();
        let answers = self.commit(&plans).await;
        for (j, answer) in jobs.iter().zip(answers) {
            *locked(&j.answer) = Some(answer);
        }
        locked(&job.answer)
            .take()
            .unwrap_or(Err(PlanRefused::Unknown))
    }
}

/// Yields once, so that the other ready tasks queue their plans first.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
