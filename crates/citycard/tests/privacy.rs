//! Privacy through the facade: masked requests, keyed and rotating ride-code
//! references, ride codes that cannot ride twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use citycard::NewCitizenCard;
use citycard_core::{PersonId, Sensitive, mask_card_number};

#[test]
fn a_new_card_request_prints_its_number_masked() {
    let request = NewCitizenCard {
        number: "3301000000001003".into(),
        kind: "standard".into(),
        holder: PersonId::parse("psn-1").unwrap(),
        id_number: Sensitive::new("11010519491231002X".into()),
        services: None,
    };
    let shown = format!("{request:?}");
    assert!(!shown.contains("000000001"), "{shown}");
    assert!(!shown.contains("0519491231"), "{shown}");
    assert!(
        shown.contains(&mask_card_number("3301000000001003")),
        "{shown}"
    );
}

mod ride_codes {
    use std::sync::Arc;

    use chrono::Duration;
    use citycard::CityCard;
    use citycard::NewCitizenCard;
    use citycard::core::{
        Clock, IdempotencyKey, ManualClock, OperatorId, Principal, SequentialIdGenerator,
    };
    use citycard::identity::{IdNumber, RegionCode, Sex};
    use citycard_transit::codes::{Algorithm, RideCodeWallet, SigningKey};
    use citycard_transit::{
        Decision, DenyEntry, DenyReason, Reader, ReaderConfig, Rejection, TapDirection, TapPlace,
    };

    fn key(text: &str) -> IdempotencyKey {
        IdempotencyKey::parse(text).expect("valid key")
    }

    fn gate(city: &CityCard, reader: u32, stop: &str, direction: TapDirection) -> Reader {
        let n = city.transit().fares().network();
        Reader::new(
            ReaderConfig {
                reader,
                place: TapPlace::Station {
                    network: n.network("metro").expect("metro"),
                    stop: n.stop(stop).expect("stop"),
                },
                direction,
                max_code_age_seconds: 60,
                clock_skew_seconds: 30,
                repeat_window_seconds: 0,
            },
            &city.transit().issuer().public_keys(),
        )
    }

    #[tokio::test]
    async fn one_code_at_two_gates_rides_once_and_the_gates_never_see_the_card() {
        let clock = Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 8, 50, 0));
        let city = CityCard::builder()
            .in_memory()
            .clock(clock.clone())
            .id_generator(Arc::new(SequentialIdGenerator::new()))
            .build()
            .await
            .expect("builds");
        let operator = Principal::Operator {
            operator: OperatorId::parse("opr-1").expect("id"),
        };
        city.operator_roles().grant(
            OperatorId::parse("opr-1").expect("id"),
            citycard::core::OperatorRole::CardDesk,
        );
        let id_number = IdNumber::generate(
            RegionCode::new(330106).expect("region"),
            chrono::NaiveDate::from_ymd_opt(1980, 1, 1).expect("date"),
            Sex::Male,
            7,
        )
        .expect("number");
        let person = city
            .identity()
            .enroll_person(
                &operator,
                &citycard::core::Sensitive::new("王五".to_string()),
                &id_number.to_sensitive(),
                &key("enrol-1"),
            )
            .await
            .expect("enrols");
        let card = city
            .issue_card(
                &operator,
                &key("issue-1"),
                &NewCitizenCard {
                    number: "3301000000000007".into(),
                    kind: "standard".into(),
                    holder: person.id.clone(),
                    id_number: id_number.to_sensitive(),
                    services: None,
                },
            )
            .await
            .expect("issues");
        let card_ref = CityCard::card_ref(&card).expect("card ref");
        let now = clock.now();
        let phone = SigningKey::generate(Algorithm::Sm2).expect("key");
        let credential = city
            .transit()
            .certify(
                &phone.public_key(),
                card_ref,
                now - Duration::hours(1),
                now + Duration::days(7),
            )
            .await
            .expect("certifies");
        let mut wallet = RideCodeWallet::new(phone, credential).expect("wallet");
        let code = wallet.generate(now).expect("code");
        // Two gates, each with its own replay cache, both accept the same code.
        let mut taps = Vec::new();
        for (reader, at) in [(101, now), (102, now + Duration::seconds(20))] {
            match gate(&city, reader, "m_wulin", TapDirection::In).decide(code.as_bytes(), at) {
                Decision::Accept(tap) => {
                    assert_ne!(tap.card, card_ref, "a gate sees only the keyed reference");
                    taps.push(tap);
                }
                other => panic!("gate {reader} refused: {other:?}"),
            }
        }
        let out_at = now + Duration::minutes(30);
        let exit = wallet.generate(out_at).expect("code");
        match gate(&city, 202, "m_xianghu", TapDirection::Out).decide(exit.as_bytes(), out_at) {
            Decision::Accept(tap) => taps.push(tap),
            other => panic!("exit refused: {other:?}"),
        }
        // The back office maps references back to the card and settles the day.
        assert_eq!(city.transit().resolve_code_taps(&mut taps), 0);
        assert!(taps.iter().all(|t| t.card == card_ref));
        let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 26).expect("day");
        let report = city
            .transit()
            .settlement()
            .settle_day(&Principal::System, day, taps)
            .await
            .expect("settles");
        assert_eq!(report.taps.duplicate_codes, 1);
        assert_eq!(report.trips_settled, 1);
        assert_eq!(report.maximum_fares, 0);
        let trips = city
            .transit_store()
            .trips(card_ref, day)
            .await
            .expect("trips");
        assert_eq!(trips.len(), 1);

        // The empty wallet left the ride in arrears, and the card is then reported
        // lost: readers get both reasons under the credential's reference.
        city.transit_store()
            .deny(&DenyEntry {
                card: card_ref,
                reason: DenyReason::Lost,
                since: now,
            })
            .await
            .expect("denies");
        let later = now + Duration::hours(1);
        let list = city.transit().reader_deny_list(later).await.expect("list");
        let reasons: Vec<DenyReason> = list.iter().map(|e| e.reason).collect();
        assert_eq!(reasons, vec![DenyReason::Arrears, DenyReason::Lost]);
        assert!(
            list.iter()
                .all(|e| e.card != card_ref && e.card == list[0].card)
        );
        let mut gate = gate(&city, 103, "m_wulin", TapDirection::In);
        gate.update_deny_list(&list);
        let code = wallet.generate(later).expect("code");
        assert!(matches!(
            gate.decide(code.as_bytes(), later),
            Decision::Reject(Rejection::Denied { .. })
        ));
    }
}

mod replay_cache {
    use std::path::PathBuf;
    use std::process::{Command, Output};

    fn run(args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_citycard"))
            .args(args)
            .output()
            .expect("runs")
    }

    fn fresh_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("citycard-privacy-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn issue(dir: &str, out: &str) -> String {
        let o = run(&[
            "ridecode",
            "issue",
            "--data-dir",
            dir,
            "--quiet",
            "--out",
            out,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    }

    #[test]
    fn a_phone_wallet_from_before_payload_version_2_is_certified_again() {
        let dir = fresh_dir("wallet-v1");
        let d = dir.to_str().expect("utf-8");
        let png = dir.join("code.png");
        issue(d, png.to_str().expect("utf-8"));
        // Make the stored credential look like one written by the version-1 code.
        let wallet = dir.join("ridecode").join("wallet-1.json");
        let mut doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&wallet).expect("wallet")).expect("json");
        doc["credential"]["bytes"][0] = serde_json::json!(1);
        std::fs::write(&wallet, doc.to_string()).expect("writes");
        let payload = issue(d, png.to_str().expect("utf-8"));
        let o = run(&["ridecode", "verify", "--data-dir", d, &payload]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_replay_cache_is_named_with_what_to_do() {
        let dir = fresh_dir("seen");
        let d = dir.to_str().expect("utf-8");
        let png = dir.join("code.png");
        let payload = issue(d, png.to_str().expect("utf-8"));
        let o = run(&["ridecode", "verify", "--data-dir", d, &payload]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        let seen = dir.join("ridecode").join("seen");
        assert!(seen.is_file());
        let next = issue(d, png.to_str().expect("utf-8"));
        for (damage, what) in [
            (b"1 2 3 4\nnot a cache line\n".to_vec(), "line 2"),
            (vec![0xff, 0xfe, b' ', b'1', b'\n'], "not UTF-8"),
        ] {
            std::fs::write(&seen, damage).expect("damages the cache");
            let o = run(&["ridecode", "verify", "--data-dir", d, &next]);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{err}");
            assert!(err.contains(&seen.display().to_string()), "{err}");
            assert!(err.contains(what), "{err}");
            assert!(err.contains("delete that file"), "{err}");
        }
        // Deleting the cache, as the message says, lets the reader work again.
        std::fs::remove_file(&seen).expect("deletes");
        let o = run(&["ridecode", "verify", "--data-dir", d, &next]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
