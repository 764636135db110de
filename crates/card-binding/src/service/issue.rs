//! Issuing cards: one card, or a batch of them (migrating an existing card base).
//!
//! Both are decide-then-commit. The service decides; the caller commits the
//! plan, so that a host can commit a card together with rows of other
//! domains (the card's ledger accounts) in one transaction, and can commit
//! many callers' plans in one transaction (group commit):
//!
//! - [`CardService::decide_issue`] looks the key up (a stored outcome is the
//!   answer) and otherwise returns an [`IssuePlan`]: the new card, its audit
//!   record and the key's outcome. A refused commit (the number was taken,
//!   or an identical request committed first) is decided again.
//! - [`CardService::prepare_issue_batch`] checks and fingerprints a whole
//!   batch under one key; [`CardService::decide_issue_chunk`] then decides
//!   one chunk of it: a row whose number does not parse, whose kind is
//!   unknown or whose number is taken (in the registry or earlier in the
//!   batch) is refused with its reason and the others are issued. Each chunk
//!   commits its cards, their audit records, a chunk audit record and the
//!   chunk's outcome (under a key derived from the batch key) at once, so a
//!   retry of the batch replays the chunks that committed and decides the
//!   rest: a crash between chunks resumes where it stopped.
//!
//! [`CardService::issue_card`] is the single path committed on the card
//! registry alone (the crate used without a ledger).

use std::collections::{BTreeSet, HashSet};

use citycard_core::{
    AuditOutcome, AuditRecord, CoreChanges, Fingerprint, IdempotencyKey, OperatorRole, Platform,
    Principal, principal_scope,
};
use serde::{Deserialize, Serialize};
use tracing::info;

use super::{CAS_ATTEMPTS, CardService, KeyRef, is_conflict};
use crate::changes::CardChanges;
use crate::decide::subject_card;
use crate::error::BindingError;
use crate::model::{
    BlindIndex, Card, CardId, CardKind, CardNumber, CardStatus, ServiceSet, WalletAccountRef,
};
use crate::service::IssueCard;

/// The scope of a single issue's key.
const ISSUE: &str = "card.issue";
/// The scope of a batch's chunk keys.
const ISSUE_BATCH: &str = "card.issue_batch";

/// A card issue decided and not yet committed: the registry's rows and the
/// core records (the card's audit record and the key's outcome).
#[derive(Debug, Clone)]
pub struct IssuePlan {
    /// The new card (its number and id must still be free).
    pub changes: CardChanges,
    /// The audit record and the idempotency outcome.
    pub core: CoreChanges,
    /// The card as it will be stored.
    pub card: Card,
}

/// What [`CardService::decide_issue`] found.
#[derive(Debug, Clone)]
pub enum IssueDecision {
    /// The key's request completed earlier: its card.
    Replayed(Box<Card>),
    /// A plan to commit; a commit refused as a conflict is decided again.
    Decided(Box<IssuePlan>),
}

/// One row of a batch issue, as the batch reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum IssueOutcome {
    /// The card was issued.
    Issued {
        /// The new card.
        card: CardId,
    },
    /// The row was refused; nothing was written for it.
    Refused {
        /// Why (no personal data).
        reason: String,
    },
}

/// One chunk of a batch, decided and not yet committed.
#[derive(Debug, Clone)]
pub struct IssueChunkPlan {
    /// The chunk's new cards.
    pub changes: CardChanges,
    /// Their audit records, the chunk's audit record and the chunk's outcome.
    pub core: CoreChanges,
    /// One outcome per row of the chunk, in order.
    pub outcomes: Vec<IssueOutcome>,
}

/// What [`CardService::decide_issue_chunk`] found.
#[derive(Debug, Clone)]
pub enum ChunkDecision {
    /// The chunk committed earlier: its rows' outcomes.
    Replayed(Vec<IssueOutcome>),
    /// A plan to commit; a commit refused as a conflict is decided again.
    Decided(Box<IssueChunkPlan>),
}

/// A checked row, ready to decide.
#[derive(Debug, Clone)]
struct Row {
    number: CardNumber,
    kind: CardKind,
    holder: citycard_core::PersonId,
    holder_index: BlindIndex,
    wallet_account: WalletAccountRef,
    services: ServiceSet,
    platforms: BTreeSet<Platform>,
}

/// A batch of cards to issue under one key, checked and fingerprinted by
/// [`CardService::prepare_issue_batch`]; decide it chunk by chunk.
#[derive(Debug, Clone)]
pub struct IssueBatch {
    principal: Principal,
    scope: String,
    key: IdempotencyKey,
    fingerprint: Fingerprint,
    rows: Vec<Result<Row, String>>,
    chunk: usize,
}

impl IssueBatch {
    /// How many rows the batch has.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True for a batch of no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// How many chunks the batch is decided and committed in.
    pub fn chunks(&self) -> usize {
        self.rows.len().div_ceil(self.chunk)
    }

    /// The rows of chunk `index`: their positions in the batch.
    pub fn chunk_rows(&self, index: usize) -> std::ops::Range<usize> {
        let start = (index * self.chunk).min(self.rows.len());
        start..(start + self.chunk).min(self.rows.len())
    }

    /// The key chunk `index`'s outcome is stored under: the batch key with
    /// the chunk's number (a digest of the batch key when that is too long).
    fn chunk_key(&self, index: usize) -> Result<IdempotencyKey, BindingError> {
        let key = format!("{}.chunk-{index}", self.key);
        if let Ok(k) = key.parse() {
            return Ok(k);
        }
        let digest = Fingerprint::of_bytes(self.key.as_str().as_bytes()).to_hex();
        format!("batch-{}.chunk-{index}", &digest[..40])
            .parse()
            .map_err(|e: citycard_core::IdError| BindingError::InvalidState {
                operation: "key a chunk of the batch".into(),
                state: e.to_string(),
            })
    }
}

/// A card number seen twice, or already registered.
const NUMBER_TAKEN: &str = "a card with this number exists";

impl CardService {
    /// Checks a request and computes what its fingerprint and card need.
    async fn check_issue(&self, request: &IssueCard) -> Result<Row, BindingError> {
        let number = self.parse_card_number(&request.number)?;
        let kind = self.config.rules.kind(&request.kind)?;
        let holder_index = self
            .ports
            .id_index
            .blind_index(&request.id_number)
            .await
            .map_err(|e| e.retry_later("id index"))?;
        Ok(Row {
            number,
            kind,
            holder: request.holder.clone(),
            holder_index,
            wallet_account: request.wallet_account.clone(),
            services: request
                .services
                .clone()
                .unwrap_or_else(|| self.config.rules.default_services.clone()),
            platforms: request
                .platforms
                .clone()
                .unwrap_or_else(|| self.config.rules.default_platforms.clone()),
        })
    }

    /// A row's request fingerprint (the card number only as a keyed digest).
    async fn row_fingerprint(&self, row: &Row) -> Result<Fingerprint, BindingError> {
        let card_digest = self.card_digest(&row.number).await?;
        Ok(Fingerprint::of(&(
            &card_digest,
            row.kind.code(),
            &row.holder,
            &row.holder_index,
            &row.wallet_account,
            &row.services,
            &row.platforms,
        ))?)
    }

    /// The card a row becomes, and its audit record.
    fn new_card(&self, principal: &Principal, row: &Row) -> (Card, AuditRecord) {
        let now = self.now();
        let card = Card {
            id: CardId::generate(&*self.ports.ids),
            number: row.number.clone(),
            kind: row.kind.clone(),
            holder: row.holder.clone(),
            holder_index: row.holder_index.clone(),
            wallet_account: row.wallet_account.clone(),
            services: row.services.clone(),
            platforms: row.platforms.clone(),
            status: CardStatus::Active,
            replaces: None,
            issued_at: now,
            version: 0,
        };
        let audit = AuditRecord::new(
            now,
            principal.clone(),
            ISSUE,
            subject_card(&card.id),
            AuditOutcome::Succeeded,
        )
        .with("kind", card.kind.code())
        .with("number", card.number.masked());
        (card, audit)
    }

    /// Refuses (audited) anyone but the system and card-desk operators.
    async fn may_issue(&self, principal: &Principal, action: &str) -> Result<(), BindingError> {
        if self.back_office(principal, &[OperatorRole::CardDesk]) {
            return Ok(());
        }
        Err(self
            .deny(
                principal,
                action,
                "card:new".into(),
                "only the issuer issues cards",
            )
            .await)
    }

    /// Decides a card issue (operators and the system only): the stored card
    /// when the key's request completed, otherwise a plan to commit. The
    /// caller commits the plan's rows and core records in one transaction
    /// and decides again when the commit is refused as a conflict.
    #[tracing::instrument(skip_all, fields(key = %key))]
    pub async fn decide_issue(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        request: &IssueCard,
    ) -> Result<IssueDecision, BindingError> {
        self.may_issue(principal, ISSUE).await?;
        let row = self.check_issue(request).await?;
        let key = KeyRef::new(
            principal_scope(ISSUE, principal),
            key,
            &self.row_fingerprint(&row).await?,
        )?;
        self.decide_issue_row(principal, &key, &row).await
    }

    async fn decide_issue_row(
        &self,
        principal: &Principal,
        key: &KeyRef,
        row: &Row,
    ) -> Result<IssueDecision, BindingError> {
        if let Some(card) = self.lookup::<Card>(key).await? {
            return Ok(IssueDecision::Replayed(Box::new(card)));
        }
        if self.ports.cards.by_number(&row.number).await?.is_some() {
            return Err(BindingError::InvalidState {
                operation: "issue the card".into(),
                state: NUMBER_TAKEN.into(),
            });
        }
        let (card, audit) = self.new_card(principal, row);
        let mut changes = CardChanges::new();
        changes.insert_card(card.clone());
        let mut core = CoreChanges::audited(audit);
        core.outcomes.push(key.outcome(&card, self.now())?);
        Ok(IssueDecision::Decided(Box::new(IssuePlan {
            changes,
            core,
            card,
        })))
    }

    /// Issues a card (operators and the system only), committed on the card
    /// registry: [`CardService::decide_issue`], then one commit.
    #[tracing::instrument(skip_all, fields(key = %key))]
    pub async fn issue_card(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        request: &IssueCard,
    ) -> Result<Card, BindingError> {
        self.may_issue(principal, ISSUE).await?;
        let row = self.check_issue(request).await?;
        let key = KeyRef::new(
            principal_scope(ISSUE, principal),
            key,
            &self.row_fingerprint(&row).await?,
        )?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let plan = match self.decide_issue_row(principal, &key, &row).await? {
                IssueDecision::Replayed(card) => return Ok(*card),
                IssueDecision::Decided(plan) => *plan,
            };
            match self.commit(&plan.changes, &plan.core).await {
                Ok(()) => {
                    info!(card = %plan.card.id, "card issued");
                    return Ok(plan.card);
                }
                Err(e) if is_conflict(&e) && attempt < CAS_ATTEMPTS => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Checks a batch of cards to issue under one key (operators and the
    /// system only), to be decided in chunks of `chunk` rows. A row that
    /// does not check (its number or kind) is kept as refused, with its
    /// reason; the batch's fingerprint covers every row and the chunk size,
    /// so a retry with the same key must send the same batch.
    #[tracing::instrument(skip_all, fields(key = %key, rows = requests.len()))]
    pub async fn prepare_issue_batch(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        requests: &[IssueCard],
        chunk: usize,
    ) -> Result<IssueBatch, BindingError> {
        self.may_issue(principal, ISSUE_BATCH).await?;
        let chunk = chunk.max(1);
        let mut rows = Vec::with_capacity(requests.len());
        let mut digest = Vec::with_capacity(requests.len() * 32 + 8);
        digest.extend_from_slice(&(chunk as u64).to_le_bytes());
        for request in requests {
            match self.check_issue(request).await {
                Ok(row) => {
                    digest.extend_from_slice(self.row_fingerprint(&row).await?.as_bytes());
                    rows.push(Ok(row));
                }
                Err(
                    e @ (BindingError::InvalidCardNumber { .. }
                    | BindingError::UnknownCardKind { .. }),
                ) => {
                    // The row as sent, under the index key (never a plain hash of a number).
                    let sent = self
                        .ports
                        .id_index
                        .keyed_digest(
                            "card-issue-row",
                            &format!("{}|{}", request.number, request.kind),
                        )
                        .await
                        .map_err(|e| e.retry_later("id index"))?;
                    digest.extend_from_slice(Fingerprint::of(&sent)?.as_bytes());
                    rows.push(Err(e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(IssueBatch {
            principal: principal.clone(),
            scope: principal_scope(ISSUE_BATCH, principal),
            key: key.clone(),
            fingerprint: Fingerprint::of_bytes(&digest),
            rows,
            chunk,
        })
    }

    /// Decides chunk `index` of a batch: its stored outcomes when it
    /// committed earlier, otherwise a plan to commit (every issued card with
    /// its audit record, one chunk audit record and the chunk's outcome).
    /// The registry is read for the chunk's numbers in one query.
    pub async fn decide_issue_chunk(
        &self,
        batch: &IssueBatch,
        index: usize,
    ) -> Result<ChunkDecision, BindingError> {
        let key = KeyRef {
            scope: batch.scope.clone(),
            key: batch.chunk_key(index)?,
            fingerprint: batch.fingerprint,
        };
        if let Some(outcomes) = self.lookup::<Vec<IssueOutcome>>(&key).await? {
            return Ok(ChunkDecision::Replayed(outcomes));
        }
        let rows = &batch.rows[batch.chunk_rows(index)];
        let numbers: Vec<CardNumber> = rows
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|r| r.number.clone()))
            .collect();
        let mut taken: HashSet<CardNumber> = self
            .ports
            .cards
            .by_numbers(&numbers)
            .await?
            .into_iter()
            .map(|c| c.number)
            .collect();
        let mut changes = CardChanges::new();
        let mut core = CoreChanges::default();
        let mut outcomes = Vec::with_capacity(rows.len());
        for row in rows {
            let outcome = match row {
                Err(reason) => IssueOutcome::Refused {
                    reason: reason.clone(),
                },
                Ok(row) if !taken.insert(row.number.clone()) => IssueOutcome::Refused {
                    reason: NUMBER_TAKEN.into(),
                },
                Ok(row) => {
                    let (card, audit) = self.new_card(&batch.principal, row);
                    core.audit.push(audit);
                    let id = card.id.clone();
                    changes.insert_card(card);
                    IssueOutcome::Issued { card: id }
                }
            };
            outcomes.push(outcome);
        }
        let issued = changes.new_cards.len();
        core.audit.push(
            AuditRecord::new(
                self.now(),
                batch.principal.clone(),
                ISSUE_BATCH,
                format!("batch:{}", batch.key),
                AuditOutcome::Succeeded,
            )
            .with("chunk", index.to_string())
            .with("issued", issued.to_string())
            .with("refused", (outcomes.len() - issued).to_string()),
        );
        core.outcomes.push(key.outcome(&outcomes, self.now())?);
        Ok(ChunkDecision::Decided(Box::new(IssueChunkPlan {
            changes,
            core,
            outcomes,
        })))
    }

    /// Issues a batch on the card registry alone (the crate used without a
    /// ledger): [`CardService::prepare_issue_batch`], then each chunk decided
    /// and committed in turn. One outcome per request, in order.
    pub async fn issue_cards(
        &self,
        principal: &Principal,
        key: &IdempotencyKey,
        requests: &[IssueCard],
        chunk: usize,
    ) -> Result<Vec<IssueOutcome>, BindingError> {
        let batch = self
            .prepare_issue_batch(principal, key, requests, chunk)
            .await?;
        let mut out = Vec::with_capacity(batch.len());
        for index in 0..batch.chunks() {
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self.decide_issue_chunk(&batch, index).await? {
                    ChunkDecision::Replayed(outcomes) => {
                        out.extend(outcomes);
                        break;
                    }
                    ChunkDecision::Decided(plan) => {
                        match self.commit(&plan.changes, &plan.core).await {
                            Ok(()) => {
                                out.extend(plan.outcomes);
                                break;
                            }
                            Err(e) if is_conflict(&e) && attempt < CAS_ATTEMPTS => continue,
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}
