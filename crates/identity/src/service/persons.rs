//! Persons: enrolment at the issuer's counter, the person a verified account
//! is linked to (created encrypted on first sight), reads by id or ID number,
//! and re-encryption under the current vault key.

use chrono::{DateTime, Utc};
use citycard_core::{
    AuditOutcome, AuditRecord, CoreChanges, Fingerprint, IdempotencyError, IdempotencyKey,
    KeyOutcome, PersonId, Principal, Sensitive, StoreError, principal_scope, replay,
};

use super::IdentityService;
use crate::error::IdentityError;
use crate::id_number::IdNumber;
use crate::person::{Person, RealNameLevel};
use crate::ports::PersonWrite;
use crate::vault::BlindIndex;

/// How many times an enrolment decides again after a conflicting commit.
const MAX_ENROL_DECISIONS: usize = 4;
impl IdentityService {
    /// The person with this ID number, created (encrypted) if new, with the
    /// level raised.
    pub(super) async fn person_for(
        &self,
        id_number: &IdNumber,
        name: &Sensitive<String>,
        index: BlindIndex,
        level: RealNameLevel,
        now: DateTime<Utc>,
    ) -> Result<Person, IdentityError> {
        let persons = &self.ports.persons;
        if let Some(mut person) = persons.find_by_id_number_index(&index).await? {
            if level >= person.level {
                person.level = level;
                person.verified_at = Some(now);
                persons.update(&person).await?;
            }
            return Ok(person);
        }
        let person = self.new_person(id_number, name, index, level, now).await?;
        persons.insert(&person).await?;
        Ok(person)
    }

    /// A new person, encrypted under the vault's current key.
    async fn new_person(
        &self,
        id_number: &IdNumber,
        name: &Sensitive<String>,
        index: BlindIndex,
        level: RealNameLevel,
        now: DateTime<Utc>,
    ) -> Result<Person, IdentityError> {
        let id = PersonId::generate(self.ports.ids.as_ref());
        let vault = &self.ports.vault;
        let person = Person {
            masked_name: Person::mask_name(name.expose()),
            name: vault
                .seal_name(name.expose().trim(), &Person::name_context(&id))
                .await?,
            masked_id_number: id_number.masked(),
            id_number: vault
                .seal_id_number(id_number, &Person::id_number_context(&id))
                .await?,
            id_number_index: index,
            level,
            verified_at: Some(now),
            created_at: now,
            id,
        };
        Ok(person)
    }

    /// Enrols a person at the issuer's counter (documents checked by an
    /// operator), or returns the person already known by this ID number.
    ///
    /// The ID number is validated locally, stored encrypted with its blind
    /// index, and never logged. Enrolment does not make any platform account
    /// real-name verified: that still takes [`IdentityService::verify_real_name`].
    /// Operators and the system only; idempotent with `key` (the actor's own).
    ///
    /// After a crash between claim and completion, a retry once the claim's
    /// lease has run out takes it over and runs again, which is safe: the
    /// person is found by the ID number's blind index, never made twice.
    pub async fn enroll_person(
        &self,
        actor: &Principal,
        name: &Sensitive<String>,
        id_number: &Sensitive<String>,
        key: &IdempotencyKey,
    ) -> Result<Person, IdentityError> {
        const ACTION: &str = "identity.enroll_person";
        if !self.may_enrol(actor) {
            // Audits the refusal and returns it.
            self.audit_access(actor, false, ACTION, "enrol persons", "person:*".into())
                .await?;
        }
        let trimmed = name.expose().trim();
        if trimmed.is_empty() || trimmed.chars().count() > 64 {
            return Err(IdentityError::InvalidName);
        }
        let id_number = IdNumber::parse_with(id_number.expose(), &self.policy())?;
        let index = self.ports.vault.blind_index(&id_number).await?;
        let now = self.ports.clock.now();
        // Keyed like the blind index: a plain hash of the name would give it
        // back to anyone holding the database (a dictionary of names is small).
        let name_digest = self
            .ports
            .vault
            .keyed_digest(&[b"enroll-name", trimmed.as_bytes()])
            .await?;
        let request = (index.to_hex(), name_digest.to_hex());
        let scope = principal_scope(ACTION, actor);
        let fingerprint = Fingerprint::of(&request)?;
        // Look the key up, decide, commit the person with its audit record and
        // the key's outcome in one transaction; a conflict means another
        // enrolment committed first: look again.
        for _ in 0..MAX_ENROL_DECISIONS {
            match replay::<PersonId>(self.ports.idempotency.as_ref(), &scope, key, &fingerprint)
                .await
            {
                Ok(Some(id)) => return self.enrolled(&id).await,
                Ok(None) => {}
                // A claim an older version left behind: once its lease ran
                // out, this commit completes it.
                Err(IdempotencyError::InProgress { .. })
                    if self
                        .ports
                        .idempotency
                        .get(&scope, key)
                        .await?
                        .is_some_and(|r| r.is_expired(now)) => {}
                Err(e) => return Err(e.into()),
            }
            let (write, person) = match self.ports.persons.find_by_id_number_index(&index).await? {
                Some(mut known) if RealNameLevel::Unverified >= known.level => {
                    known.verified_at = Some(now);
                    (PersonWrite::Update(known.clone()), known)
                }
                Some(known) => (PersonWrite::Unchanged, known),
                None => {
                    let person = self
                        .new_person(&id_number, name, index, RealNameLevel::Unverified, now)
                        .await?;
                    (PersonWrite::Insert(person.clone()), person)
                }
            };
            let core = CoreChanges {
                audit: vec![AuditRecord::new(
                    now,
                    actor.clone(),
                    ACTION,
                    format!("person:{}", person.id),
                    AuditOutcome::Succeeded,
                )],
                outcomes: vec![KeyOutcome::new(
                    scope.clone(),
                    key.clone(),
                    fingerprint,
                    &person.id,
                    now,
                )?],
                events: Vec::new(),
            };
            match self.ports.persons.commit(&write, &core).await {
                Ok(()) => return Ok(person),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IdentityError::Store(StoreError::Conflict(
            "enrolments of this person keep colliding: retry with the same key".into(),
        )))
    }

    /// Enrols many persons under one key (migrating an existing card base):
    /// operators and the system only. Each row is checked and enrolled as
    /// [`IdentityService::enroll_person`] would: a row whose name or ID
    /// number is invalid is refused with its reason (`Err`), a known ID
    /// number answers its person. Rows go in chunks of `chunk`; each chunk's
    /// persons, audit records and outcome commit in one transaction, so a
    /// retry with the same key replays the chunks that committed and enrols
    /// the rest (a crash between chunks resumes). One answer per row.
    pub async fn enroll_persons(
        &self,
        actor: &Principal,
        key: &IdempotencyKey,
        people: &[(Sensitive<String>, Sensitive<String>)],
        chunk: usize,
    ) -> Result<Vec<Result<PersonId, String>>, IdentityError> {
        const ACTION: &str = "identity.enroll_persons";
        if !self.may_enrol(actor) {
            self.audit_access(actor, false, ACTION, "enrol persons", "person:*".into())
                .await?;
        }
        let chunk = chunk.max(1);
        // Check every row and fingerprint the whole batch (names and ID
        // numbers only as keyed digests).
        let mut rows: Vec<Result<(IdNumber, BlindIndex), String>> =
            Vec::with_capacity(people.len());
        let mut digest = Vec::with_capacity(people.len() * 64 + 8);
        digest.extend_from_slice(&(chunk as u64).to_le_bytes());
        for (name, id_number) in people {
            let trimmed = name.expose().trim();
            let checked = if trimmed.is_empty() || trimmed.chars().count() > 64 {
                Err(IdentityError::InvalidName.to_string())
            } else {
                IdNumber::parse_with(id_number.expose(), &self.policy())
                    .map_err(|e| IdentityError::from(e).to_string())
            };
            let name_digest = self
                .ports
                .vault
                .keyed_digest(&[b"enroll-name", trimmed.as_bytes()])
                .await?;
            digest.extend_from_slice(name_digest.to_hex().as_bytes());
            match checked {
                Ok(id) => {
                    let index = self.ports.vault.blind_index(&id).await?;
                    digest.extend_from_slice(index.to_hex().as_bytes());
                    rows.push(Ok((id, index)));
                }
                Err(reason) => rows.push(Err(reason)),
            }
        }
        let fingerprint = Fingerprint::of_bytes(&digest);
        let scope = principal_scope(ACTION, actor);
        let mut out = Vec::with_capacity(rows.len());
        for (n, part) in rows.chunks(chunk).enumerate() {
            let start = n * chunk;
            let chunk_key: IdempotencyKey = format!("{key}.chunk-{n}")
                .parse()
                .or_else(|_| {
                    let d = Fingerprint::of_bytes(key.as_str().as_bytes()).to_hex();
                    format!("batch-{}.chunk-{n}", &d[..40]).parse()
                })
                .map_err(|e: citycard_core::IdError| {
                    IdentityError::Store(StoreError::Internal(e.to_string()))
                })?;
            let mut done = false;
            for _ in 0..MAX_ENROL_DECISIONS {
                if let Some(stored) = replay::<Vec<Result<PersonId, String>>>(
                    self.ports.idempotency.as_ref(),
                    &scope,
                    &chunk_key,
                    &fingerprint,
                )
                .await?
                {
                    out.extend(stored);
                    done = true;
                    break;
                }
                let now = self.ports.clock.now();
                let mut writes = Vec::new();
                let mut audit = Vec::new();
                let mut answers = Vec::with_capacity(part.len());
                let mut seen: std::collections::HashMap<BlindIndex, PersonId> =
                    std::collections::HashMap::new();
                for (i, row) in part.iter().enumerate() {
                    let (id_number, index) = match row {
                        Ok(r) => r,
                        Err(reason) => {
                            answers.push(Err(reason.clone()));
                            continue;
                        }
                    };
                    if let Some(id) = seen.get(index) {
                        answers.push(Ok(id.clone()));
                        continue;
                    }
                    let (write, person) =
                        match self.ports.persons.find_by_id_number_index(index).await? {
                            Some(mut known) if RealNameLevel::Unverified >= known.level => {
                                known.verified_at = Some(now);
                                (PersonWrite::Update(known.clone()), known)
                            }
                            Some(known) => (PersonWrite::Unchanged, known),
                            None => {
                                let person = self
                                    .new_person(
                                        id_number,
                                        &people[start + i].0,
                                        *index,
                                        RealNameLevel::Unverified,
                                        now,
                                    )
                                    .await?;
                                (PersonWrite::Insert(person.clone()), person)
                            }
                        };
                    audit.push(AuditRecord::new(
                        now,
                        actor.clone(),
                        "identity.enroll_person",
                        format!("person:{}", person.id),
                        AuditOutcome::Succeeded,
                    ));
                    seen.insert(*index, person.id.clone());
                    if write != PersonWrite::Unchanged {
                        writes.push(write);
                    }
                    answers.push(Ok(person.id));
                }
                audit.push(
                    AuditRecord::new(
                        now,
                        actor.clone(),
                        ACTION,
                        format!("batch:{key}"),
                        AuditOutcome::Succeeded,
                    )
                    .with("chunk", n.to_string())
                    .with("rows", part.len().to_string()),
                );
                let core = CoreChanges {
                    audit,
                    outcomes: vec![KeyOutcome::new(
                        scope.clone(),
                        chunk_key.clone(),
                        fingerprint,
                        &answers,
                        now,
                    )?],
                    events: Vec::new(),
                };
                match self.ports.persons.commit_all(&writes, &core).await {
                    Ok(()) => {
                        out.extend(answers);
                        done = true;
                        break;
                    }
                    Err(StoreError::Conflict(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            if !done {
                return Err(IdentityError::Store(StoreError::Conflict(
                    "enrolments of these persons keep colliding: retry with the same key".into(),
                )));
            }
        }
        Ok(out)
    }

    /// The person an enrolment's outcome names.
    async fn enrolled(&self, id: &PersonId) -> Result<Person, IdentityError> {
        self.ports.persons.get(id).await?.ok_or_else(|| {
            IdentityError::Store(StoreError::Corrupt(format!(
                "person {id} is missing after enrolment"
            )))
        })
    }

    /// A person by id (ciphertext and masked forms only): for the person,
    /// reading operators and the system.
    pub async fn person(
        &self,
        actor: &Principal,
        id: &PersonId,
    ) -> Result<Option<Person>, IdentityError> {
        let allowed = self.may_read_back_office(actor)
            || matches!(actor, Principal::Cardholder { person } if person == id);
        self.audit_access(
            actor,
            allowed,
            "identity.person",
            "read this person's record",
            format!("person:{id}"),
        )
        .await?;
        Ok(self.ports.persons.get(id).await?)
    }

    /// Whether `id_number` is this person's ID number (by blind index; no decryption).
    pub async fn id_number_belongs_to(
        &self,
        person: &PersonId,
        id_number: &IdNumber,
    ) -> Result<bool, IdentityError> {
        let index = self.ports.vault.blind_index(id_number).await?;
        Ok(self
            .ports
            .persons
            .get(person)
            .await?
            .is_some_and(|p| p.id_number_index == index))
    }

    /// The person with this ID number, by blind index. Reading operators and
    /// the system only; audited.
    pub async fn find_person_by_id_number(
        &self,
        actor: &Principal,
        id_number: &IdNumber,
    ) -> Result<Option<Person>, IdentityError> {
        self.audit_access(
            actor,
            self.may_read_back_office(actor),
            "identity.find_person_by_id_number",
            "look up persons by id number",
            "person:*".into(),
        )
        .await?;
        let index = self.ports.vault.blind_index(id_number).await?;
        Ok(self.ports.persons.find_by_id_number_index(&index).await?)
    }

    /// Re-encrypts up to `limit` persons after `after` under the current key
    /// (a key-rotation job step); returns the last person handled, to continue from.
    /// Operators and the system only.
    pub async fn reencrypt_persons(
        &self,
        actor: &Principal,
        after: Option<&PersonId>,
        limit: usize,
    ) -> Result<Option<PersonId>, IdentityError> {
        if !matches!(actor, Principal::Operator { .. } | Principal::System) {
            return Err(IdentityError::Denied {
                actor: actor.to_string(),
                action: "re-encrypt persons",
            });
        }
        let vault = &self.ports.vault;
        let batch = self.ports.persons.list(after, limit).await?;
        let mut last = None;
        for mut person in batch {
            person.name = vault
                .reencrypt(&person.name, &Person::name_context(&person.id))
                .await?;
            person.id_number = vault
                .reencrypt(&person.id_number, &Person::id_number_context(&person.id))
                .await?;
            self.ports.persons.update(&person).await?;
            last = Some(person.id);
        }
        if let Some(last) = &last {
            self.audit(
                AuditRecord::new(
                    self.ports.clock.now(),
                    actor.clone(),
                    "identity.reencrypt",
                    "person:*",
                    AuditOutcome::Succeeded,
                )
                .with("last", last.as_str()),
            )
            .await?;
        }
        Ok(last)
    }
}
