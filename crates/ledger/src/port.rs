//! The ledger port the facade uses: implemented by the embedded [`Ledger`]
//! (memory, SQLite, PostgreSQL stores) and by `citycard-tigerbeetle`'s
//! `TigerBeetleLedger` on a TigerBeetle cluster.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use citycard_core::Principal;

use crate::ids::{AccountId, Reference, TransferId};
use crate::model::{
    Account, Balances, CreateAccountResult, CreateTransferResult, NewAccount, NewTransfer, Transfer,
};
use crate::service::{Ledger, LedgerError};

/// What the card system asks of a ledger, wherever the money lives.
#[async_trait]
pub trait LedgerPort: Send + Sync {
    /// Creates accounts; one result per account, acknowledged once durable.
    async fn create_accounts(
        &self,
        principal: &Principal,
        batch: Vec<NewAccount>,
    ) -> Result<Vec<CreateAccountResult>, LedgerError>;

    /// Creates transfers; one result per transfer, acknowledged once durable.
    async fn create_transfers(
        &self,
        principal: &Principal,
        batch: Vec<NewTransfer>,
    ) -> Result<Vec<CreateTransferResult>, LedgerError>;

    /// An account with its flags and balances.
    async fn account(&self, principal: &Principal, id: AccountId) -> Result<Account, LedgerError>;

    /// An account's balances as of an instant (accounts with `history`).
    async fn balances_at(
        &self,
        principal: &Principal,
        id: AccountId,
        at: DateTime<Utc>,
    ) -> Result<Balances, LedgerError>;

    /// A transfer by id.
    async fn transfer(
        &self,
        principal: &Principal,
        id: TransferId,
    ) -> Result<Transfer, LedgerError>;

    /// Transfers with a reference, oldest first.
    async fn transfers_by_reference(
        &self,
        principal: &Principal,
        reference: &Reference,
    ) -> Result<Vec<Transfer>, LedgerError>;
}

#[async_trait]
impl LedgerPort for Ledger {
    async fn create_accounts(
        &self,
        principal: &Principal,
        batch: Vec<NewAccount>,
    ) -> Result<Vec<CreateAccountResult>, LedgerError> {
        Ledger::create_accounts(self, principal, batch).await
    }

    async fn create_transfers(
        &self,
        principal: &Principal,
        batch: Vec<NewTransfer>,
    ) -> Result<Vec<CreateTransferResult>, LedgerError> {
        Ledger::create_transfers(self, principal, batch).await
    }

    async fn account(&self, principal: &Principal, id: AccountId) -> Result<Account, LedgerError> {
        Ledger::account(self, principal, id).await
    }

    async fn balances_at(
        &self,
        principal: &Principal,
        id: AccountId,
        at: DateTime<Utc>,
    ) -> Result<Balances, LedgerError> {
        Ledger::balances_at(self, principal, id, at).await
    }

    async fn transfer(
        &self,
        principal: &Principal,
        id: TransferId,
    ) -> Result<Transfer, LedgerError> {
        Ledger::transfer(self, principal, id).await
    }

    async fn transfers_by_reference(
        &self,
        principal: &Principal,
        reference: &Reference,
    ) -> Result<Vec<Transfer>, LedgerError> {
        Ledger::transfers_by_reference(self, principal, reference).await
    }
}
