//! The demo journey on SQLite, run twice in one directory: real outcomes, not just "no error".
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use citycard::CityCard;
use citycard::binding::{BindingError, BindingState, CardStatus, Lang, Service};
use citycard::core::{Money, Principal};
use citycard::demo::{self, DemoOptions, DemoSummary};
use citycard::keys::FileKeyProvider;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("citycard-demo-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn run_once(dir: &Path) -> (DemoSummary, String) {
    let mut out = Vec::new();
    let summary = demo::run(&DemoOptions::new(dir), &mut out)
        .await
        .unwrap_or_else(|e| panic!("demo failed: {e}\n{}", String::from_utf8_lossy(&out)));
    (summary, String::from_utf8(out).unwrap())
}

async fn reopen(dir: &Path) -> CityCard {
    CityCard::builder()
        .sqlite(dir.join("citycard.db"))
        .key_provider(Arc::new(
            FileKeyProvider::open(dir.join("keys.json")).unwrap(),
        ))
        .build()
        .await
        .unwrap()
}

fn money(text: &str) -> Money {
    text.parse().unwrap()
}

#[tokio::test]
async fn the_demo_runs_twice_on_one_directory_and_continues() {
    let dir = temp_dir("twice");
    let (first, out1) = run_once(&dir).await;
    let (second, out2) = run_once(&dir).await;

    // Runs are counted and move on by a day.
    assert_eq!((first.run, second.run), (1, 2));
    assert_eq!(second.day, first.day.succ_opt().unwrap());
    assert!(out2.contains("run 2"));
    // Setup replays on the second run instead of failing or duplicating.
    assert!(!out1.contains("in an earlier run"));
    assert!(out2.contains("already enrolled in an earlier run"));
    assert!(out2.contains("already issued in an earlier run"));
    assert_eq!(first.cardholder, second.cardholder);

    // The failures a user meets, by their messages and what to do next.
    let mismatch = BindingError::DetailsDoNotMatch.user_message(Lang::En);
    let not_enabled = BindingError::ServiceNotEnabled {
        service: Service::SocialInsurance,
    }
    .user_message(Lang::En);
    for out in [&out1, &out2] {
        for m in [&mismatch, &not_enabled] {
            assert!(
                out.contains(&format!("refused: {}", m.problem)),
                "refusal missing:\n{out}"
            );
            assert!(
                out.contains(&format!("what to do next: {}", m.next_step)),
                "next step missing:\n{out}"
            );
        }
    }

    // The second run picked up the card the first run's replacement made.
    assert_eq!(second.card_used, first.card);
    assert_ne!(second.card, first.card);
    assert_eq!(first.cardholder, second.cardholder);

    // Wallet arithmetic: each run tops up, pays fares and a cash share, and
    // carries everything to the replacement card.
    let top_up = money(demo::TOP_UP_YUAN);
    for s in [&first, &second] {
        assert_eq!(s.topped_up, top_up);
        assert!(
            s.fares_charged.is_positive(),
            "a bus and a metro ride cost something"
        );
        assert!(s.medical_cash.is_positive(), "the bill leaves a cash share");
        let expected = s
            .opening_balance
            .checked_add(s.topped_up)
            .unwrap()
            .checked_sub(s.fares_charged)
            .unwrap()
            .checked_sub(s.medical_cash)
            .unwrap();
        assert_eq!(s.carried, expected);
        assert_eq!(s.wallet_balance, expected);
    }
    assert_eq!(first.opening_balance, Money::ZERO);
    assert_eq!(second.opening_balance, first.wallet_balance);
    // Run 1's deductible is used up, so run 2's fund share is larger and its cash share too.
    assert!(second.medical_cash > first.medical_cash);

    // FHIR files exist and are the resources they claim to be.
    for (name, kind) in [
        ("appointment.json", "Appointment"),
        ("claim.json", "Claim"),
        ("claim-response.json", "ClaimResponse"),
        ("bundle.json", "Bundle"),
    ] {
        let text = std::fs::read_to_string(dir.join("fhir").join(name)).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["resourceType"], kind, "{name}");
    }
    assert!(second.queue_number.is_some());
    // In the bundle every reference resolves to one of its entries.
    let bundle: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("fhir").join("bundle.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(bundle["type"], "transaction");
    let urls: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["request"]["url"].as_str().unwrap())
        .collect();
    let text = bundle.to_string();
    assert!(text.matches("\"reference\"").count() >= 8, "{text}");
    for part in text.split("\"reference\":\"").skip(1) {
        let reference = part.split('"').next().unwrap();
        assert!(urls.contains(&reference), "{reference} does not resolve");
    }
    assert!(urls.iter().any(|u| u.starts_with("Appointment/")));
    assert!(urls.iter().any(|u| u.starts_with("ClaimResponse/")));

    // Personal data never printed: not the ID numbers (nor their birth-date
    // digits), not the mistyped one, not the full names.
    let ids = [
        demo::cardholder_id_number().unwrap(),
        demo::mother_id_number().unwrap(),
    ];
    for out in [&out1, &out2] {
        for id in &ids {
            assert!(!out.contains(id.reveal()));
            assert!(
                !out.contains(&id.reveal()[6..14]),
                "birth date digits printed"
            );
            assert!(!out.contains(&demo::mistyped(id)));
        }
        assert!(!out.contains("张伟"));
        assert!(!out.contains("李秀英"));
        assert!(out.contains("张*"));
    }

    // Reopen the store from disk with the persisted vault keys and check it directly.
    let city = reopen(&dir).await;
    let [_, debits_posted, _, credits_posted] =
        city.ledger().inspect(|e| e.totals()).await.unwrap();
    assert_eq!(debits_posted, credits_posted, "double entry");
    assert!(debits_posted > 0);

    let wallet = city
        .wallet()
        .balance(&Principal::System, &second.card)
        .await
        .unwrap();
    let implied = [&first, &second]
        .iter()
        .try_fold(Money::ZERO, |acc, s| {
            acc.checked_add(s.topped_up)?
                .checked_sub(s.fares_charged)?
                .checked_sub(s.medical_cash)
        })
        .unwrap();
    assert_eq!(wallet, implied);

    let binding = city
        .cards()
        .binding(&Principal::System, &second.binding)
        .await
        .unwrap();
    assert_eq!(binding.card, second.card, "the binding followed the card");
    assert_eq!(binding.state, BindingState::Removed);
    let new_card = city
        .cards()
        .card(&Principal::System, &second.card)
        .await
        .unwrap();
    assert_eq!(new_card.status, CardStatus::Active);
    assert_eq!(new_card.replaces.as_ref(), Some(&second.card_used));
    for old in [&first.card_used, &second.card_used] {
        let card = city.cards().card(&Principal::System, old).await.unwrap();
        assert!(matches!(card.status, CardStatus::Replaced { .. }));
    }
    // The vault opens what the first run sealed: the person is found by ID number.
    let person = city
        .identity()
        .find_person_by_id_number(&Principal::System, &ids[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(person.id, first.cardholder);
    drop(city);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn deleted_vault_keys_are_named_as_the_cause() {
    let dir = temp_dir("no-keys");
    run_once(&dir).await;
    std::fs::remove_file(dir.join("keys.json")).unwrap();
    let state = std::fs::read(dir.join("demo-state.json")).unwrap();
    let mut out = Vec::new();
    let err = demo::run(&DemoOptions::new(&dir), &mut out)
        .await
        .expect_err("the data cannot be read without its keys");
    let message = err.to_string();
    assert!(message.contains("vault keys"), "{message}");
    assert!(message.contains("are missing"), "{message}");
    assert!(message.contains("cannot be read without them"), "{message}");
    assert!(!message.contains("idempotency"), "{message}");
    assert!(
        !dir.join("keys.json").exists(),
        "no new keys sealing new records beside the old ones"
    );
    assert_eq!(
        std::fs::read(dir.join("demo-state.json")).unwrap(),
        state,
        "the refused run does not count as a day"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

async fn run_with(options: DemoOptions) -> String {
    let mut out = Vec::new();
    demo::run(&options, &mut out)
        .await
        .unwrap_or_else(|e| panic!("demo failed: {e}\n{}", String::from_utf8_lossy(&out)));
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn the_demo_speaks_plainly_and_shows_ids_only_when_verbose() {
    let dir = temp_dir("words");
    let plain = run_with(DemoOptions::new(&dir)).await;
    for internal in [
        "psn-",
        "pass-",
        "bnd-",
        "pac-",
        "apt-",
        "Match",
        "TwoFactor",
        "Replayed",
        "(Active)",
        "Removed",
        "social_insurance",
        "hz_bus",
        "hz_metro",
        "(replayed)",
    ] {
        assert!(!plain.contains(internal), "{internal:?} printed:\n{plain}");
    }
    assert!(plain.contains("real name confirmed"), "{plain}");
    assert!(plain.contains("this code was already used"), "{plain}");
    // The statement dates fares by the ride, with the settlement time beside them.
    let statement = plain
        .split("The wallet statement for today")
        .nth(1)
        .and_then(|rest| rest.split("closing balance").next())
        .expect("a statement");
    assert!(
        statement.contains("08:30") && statement.contains("08:50"),
        "{statement}"
    );
    assert!(statement.contains("settled at 21:00"), "{statement}");
    assert!(!statement.contains("  21:00  "), "{statement}");

    let verbose = run_with(DemoOptions::new(&dir).with_verbose(true)).await;
    for id in ["psn-", "bnd-", "pass-"] {
        assert!(
            verbose.contains(id),
            "{id} missing with --verbose:\n{verbose}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_demo_speaks_chinese_with_the_refusal_texts_of_the_binding_crate() {
    let dir = temp_dir("zh");
    let zh = run_with(DemoOptions::new(&dir).with_lang(Lang::Zh)).await;
    for e in [
        BindingError::DetailsDoNotMatch,
        BindingError::ServiceNotEnabled {
            service: Service::SocialInsurance,
        },
    ] {
        let m = e.user_message(Lang::Zh);
        assert!(zh.contains(&format!("被拒绝：{}", m.problem)), "{zh}");
        assert!(zh.contains(&format!("下一步：{}", m.next_step)), "{zh}");
    }
    assert!(zh.contains("今天的钱包明细"), "{zh}");
    assert!(!zh.contains("refused"), "{zh}");
    assert!(!zh.contains("what to do next"), "{zh}");
    let _ = std::fs::remove_dir_all(&dir);
}
