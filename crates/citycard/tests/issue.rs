//! Card issue through the facade: one write transaction per card with its
//! ledger accounts, concurrent issues grouped in one transaction (a refused
//! plan refuses only itself), a batch in one transaction per chunk with
//! per-row outcomes, and a batch equal to the same cards issued one by one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use citycard::binding::{BindingError, Card, IssueOutcome};
use citycard::core::{
    AuditQuery, IdempotencyKey, ManualClock, PersonId, Principal, SequentialIdGenerator,
};
use citycard::identity::{IdNumber, RegionCode, Sex};
use citycard::{Accounts, CityCard, CityCardError, NewCitizenCard};
use common::key;
use proptest::prelude::*;

async fn on_file(dir: &std::path::Path, chunk: usize) -> CityCard {
    CityCard::builder()
        .sqlite(dir.join("citycard.db"))
        .clock(Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0)))
        .issue_chunk_cards(chunk)
        .build()
        .await
        .expect("the city opens")
}

async fn in_memory(chunk: usize) -> CityCard {
    CityCard::builder()
        .in_memory()
        .clock(Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0)))
        .id_generator(Arc::new(SequentialIdGenerator::new()))
        .issue_chunk_cards(chunk)
        .build()
        .await
        .expect("the city opens")
}

fn commits(city: &CityCard) -> u64 {
    city.database().expect("on SQLite").commits()
}

/// Card `i`: a holder (not enrolled: issuing needs only the id and the ID number).
fn card(i: u32, number: &str, kind: &str) -> NewCitizenCard {
    let id_number = IdNumber::generate(
        RegionCode::new(330106).unwrap(),
        chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Duration::days(i64::from(i)),
        Sex::Female,
        1,
    )
    .unwrap();
    NewCitizenCard {
        number: number.into(),
        kind: kind.into(),
        holder: PersonId::parse(&format!("psn-{i}")).unwrap(),
        id_number: id_number.to_sensitive(),
        services: None,
    }
}

fn number(i: u32) -> String {
    format!("3301{:012}", 700_000 + i)
}

#[tokio::test]
async fn a_card_issue_is_one_write_transaction_and_its_replay_none() {
    let dir = tempfile::tempdir().unwrap();
    let city = on_file(dir.path(), 8).await;
    let system = Principal::System;
    let request = card(1, &number(1), "standard");
    let before = commits(&city);
    let issued = city
        .issue_card(&system, &key("issue-1"), &request)
        .await
        .unwrap();
    assert_eq!(
        commits(&city) - before,
        1,
        "accounts, card, audit and outcome at once"
    );
    let wallet = Accounts::wallet(&issued.number);
    assert!(
        city.accounts().balance(wallet).await.is_ok(),
        "the wallet is open"
    );
    let before = commits(&city);
    let again = city
        .issue_card(&system, &key("issue-1"), &request)
        .await
        .unwrap();
    assert_eq!(again, issued);
    assert_eq!(commits(&city) - before, 0, "a replay reads the stored card");
}

#[tokio::test]
async fn concurrent_issues_share_one_transaction_and_a_refused_one_refuses_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let city = on_file(dir.path(), 8).await;
    let system = Principal::System;
    // Sixteen cards, and a seventeenth request for card 3's number under another key.
    let mut requests: Vec<(IdempotencyKey, NewCitizenCard)> = (0..16)
        .map(|i| (key(&format!("issue-{i}")), card(i, &number(i), "standard")))
        .collect();
    requests.push((key("issue-clash"), card(99, &number(3), "standard")));
    let before = commits(&city);
    let results = futures_join(&city, &system, &requests).await;
    let after = commits(&city);
    assert!(
        after - before <= 2,
        "17 concurrent issues took {} write transactions",
        after - before
    );
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 16, "{results:?}");
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        matches!(
            refused.as_slice(),
            [CityCardError::Binding(BindingError::InvalidState { .. })]
        ),
        "{refused:?}"
    );
    // Each issue kept its own outcome: every replay answers its own card.
    for ((k, request), result) in requests.iter().zip(&results) {
        if let Ok(card) = result {
            let again = city.issue_card(&system, k, request).await.unwrap();
            assert_eq!(&again, card);
        }
    }
}

/// Runs the issues concurrently on this task (all queue before the first writes).
async fn futures_join(
    city: &CityCard,
    principal: &Principal,
    requests: &[(IdempotencyKey, NewCitizenCard)],
) -> Vec<Result<Card, CityCardError>> {
    let mut pending: Vec<_> = requests
        .iter()
        .map(|(k, r)| Box::pin(city.issue_card(principal, k, r)))
        .collect();
    join_all(&mut pending).await
}

/// Polls every future until all are done, in order (a minimal `join_all`).
async fn join_all<F, T>(futures: &mut [std::pin::Pin<Box<F>>]) -> Vec<T>
where
    F: std::future::Future<Output = T>,
{
    let mut out: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.into_iter()
        .map(|v| v.expect("every future finished"))
        .collect()
}

#[tokio::test]
async fn a_batch_is_one_write_transaction_per_chunk_with_per_row_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let city = on_file(dir.path(), 8).await;
    let system = Principal::System;
    // 20 rows, chunks of 8: a bad number at 2, an unknown kind at 9, a
    // repeated number at 17 (of row 5), a number already issued at 12.
    city.issue_card(&system, &key("early"), &card(12, &number(12), "standard"))
        .await
        .unwrap();
    let rows: Vec<NewCitizenCard> = (0..20)
        .map(|i| match i {
            2 => card(i, "not-a-number", "standard"),
            9 => card(i, &number(i), "no-such-kind"),
            17 => card(i, &number(5), "standard"),
            _ => card(i, &number(i), "standard"),
        })
        .collect();
    let before = commits(&city);
    let report = city
        .issue_cards(&system, &key("migration-1"), &rows)
        .await
        .unwrap();
    assert_eq!(commits(&city) - before, 3, "20 rows in chunks of 8");
    assert_eq!(report.outcomes.len(), 20);
    let refused: Vec<usize> = report.refused().map(|(i, _)| i).collect();
    assert_eq!(refused, vec![2, 9, 12, 17]);
    for (i, reason) in report.refused() {
        assert!(
            !reason.contains("not-a-number") && !reason.contains(&number(5)),
            "{i}: {reason}"
        );
    }
    for (i, id) in report.issued() {
        let card = city.cards().card(&system, id).await.unwrap();
        assert_eq!(card.number.as_str(), number(i as u32));
        assert!(
            city.accounts()
                .balance(Accounts::wallet(&card.number))
                .await
                .is_ok()
        );
    }
    // A retry replays every chunk without writing; another batch under the key is refused.
    let before = commits(&city);
    let again = city
        .issue_cards(&system, &key("migration-1"), &rows)
        .await
        .unwrap();
    assert_eq!(again, report);
    assert_eq!(commits(&city) - before, 0);
    let err = city
        .issue_cards(&system, &key("migration-1"), &rows[..19])
        .await
        .unwrap_err();
    assert!(
        matches!(err, CityCardError::Binding(BindingError::Idempotency(_))),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_batch_needs_the_card_desk_and_its_refusal_is_audited() {
    let city = in_memory(8).await;
    let clerk = Principal::Operator {
        operator: "opr-clerk".parse().unwrap(),
    };
    let err = city
        .issue_cards(&clerk, &key("m"), &[card(1, &number(1), "standard")])
        .await
        .unwrap_err();
    assert!(matches!(err, CityCardError::Denied { .. }), "{err:?}");
    let denied = city
        .audit()
        .query(&AuditQuery::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.record.action == "card.issue_batch")
        .count();
    assert_eq!(denied, 1);
    assert!(
        city.cards()
            .cards_of(&Principal::System, &PersonId::parse("psn-1").unwrap())
            .await
            .unwrap()
            .is_empty()
    );
}

/// What a city holds after issuing: cards, their accounts, their audit records.
async fn holdings(city: &CityCard, holders: u32) -> (Vec<Card>, Vec<String>, Vec<String>) {
    let system = Principal::System;
    let mut cards = Vec::new();
    for i in 0..holders {
        cards.extend(
            city.cards()
                .cards_of(&system, &PersonId::parse(&format!("psn-{i}")).unwrap())
                .await
                .unwrap(),
        );
    }
    cards.sort_by(|a, b| a.number.cmp(&b.number));
    // Each city keys its blind index itself.
    for c in &mut cards {
        c.holder_index = citycard::binding::BlindIndex::new("-");
    }
    let mut accounts = Vec::new();
    for c in &cards {
        for id in [
            Accounts::wallet(&c.number),
            Accounts::medical_current(&c.holder),
            Accounts::medical_accumulated(&c.holder),
        ] {
            let a = city.ledger().account(&system, id).await.unwrap();
            accounts.push(format!(
                "{:?} {:?} {:?} {:?}",
                a.id, a.kind, a.flags, a.upper_limit
            ));
        }
    }
    let mut audit: Vec<String> = city
        .audit()
        .query(&AuditQuery::default())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.record)
        .filter(|r| r.action == "card.issue")
        .map(|r| format!("{} {} {:?} {:?}", r.subject, r.actor, r.outcome, r.detail))
        .collect();
    audit.sort();
    (cards, accounts, audit)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// A batch issues the same cards, accounts and audit records as the same
    /// rows issued one by one, and refuses exactly the rows a single issue refuses.
    #[test]
    fn a_batch_equals_its_cards_issued_one_by_one(
        rows in proptest::collection::vec((0u32..12, 0u32..6, 0u8..8), 0..24),
        chunk in 1usize..9,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let rows: Vec<NewCitizenCard> = rows
                .iter()
                .map(|(n, holder, twist)| match twist {
                    0 => card(*holder, "12", "standard"),
                    1 => card(*holder, &number(*n), "no-such-kind"),
                    2 => card(*holder, &number(*n), "elderly"),
                    3 => card(*holder, &number(*n), "student"),
                    _ => card(*holder, &number(*n), "standard"),
                })
                .collect();
            let system = Principal::System;
            let one_by_one = in_memory(chunk).await;
            let mut single_refused = Vec::new();
            for (i, row) in rows.iter().enumerate() {
                if one_by_one.issue_card(&system, &key(&format!("one-{i}")), row).await.is_err() {
                    single_refused.push(i);
                }
            }
            let batched = in_memory(chunk).await;
            let report = batched.issue_cards(&system, &key("batch"), &rows).await.unwrap();
            let batch_refused: Vec<usize> = report.refused().map(|(i, _)| i).collect();
            prop_assert_eq!(batch_refused, single_refused);
            prop_assert_eq!(holdings(&batched, 6).await, holdings(&one_by_one, 6).await);
            let reasons_given = report
                .outcomes
                .iter()
                .all(|o| !matches!(o, IssueOutcome::Refused { reason } if reason.is_empty()));
            prop_assert!(reasons_given);
            Ok(())
        })?;
    }
}
