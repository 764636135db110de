//! Ride codes: issuing, rendering and offline verification, each bad code with its own answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use citycard_transit::codes::{self, Algorithm, Issuer, RideCode, RideCodeWallet, SigningKey};
use citycard_transit::{
    CardRef, Decision, DenyEntry, DenyReason, FareEngine, Reader, ReaderConfig, Rejection,
    TapDirection, TapPlace, qr,
};
use proptest::prelude::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap()
}

struct Setup {
    issuer: Issuer,
    wallet: RideCodeWallet,
    card: CardRef,
}

fn setup(alg: Algorithm) -> Setup {
    let mut issuer = Issuer::new(1);
    issuer
        .rotate(alg, t0() - Duration::days(30), t0() + Duration::days(365))
        .unwrap();
    let user = SigningKey::generate(alg).unwrap();
    let card = CardRef(0x0123_4567_89ab_cdef);
    let cred = issuer
        .certify(
            &user.public_key(),
            card,
            t0() - Duration::days(1),
            t0() + Duration::days(7),
        )
        .unwrap();
    let wallet = RideCodeWallet::new(user, cred).unwrap();
    Setup {
        issuer,
        wallet,
        card,
    }
}

fn gate(issuer: &Issuer) -> Reader {
    let e = FareEngine::hangzhou().unwrap();
    let n = e.network();
    Reader::new(
        ReaderConfig {
            reader: 7,
            place: TapPlace::Station {
                network: n.network("metro").unwrap(),
                stop: n.stop("m_wulin").unwrap(),
            },
            direction: TapDirection::In,
            max_code_age_seconds: 60,
            clock_skew_seconds: 30,
            repeat_window_seconds: 0,
        },
        &issuer.public_keys(),
    )
}

fn bus_reader(issuer: &Issuer) -> Reader {
    let e = FareEngine::hangzhou().unwrap();
    Reader::new(
        ReaderConfig {
            reader: 8,
            place: TapPlace::Vehicle {
                route: e.network().route("b7").unwrap(),
                vehicle: 1001,
                stop: None,
            },
            direction: TapDirection::In,
            max_code_age_seconds: 60,
            clock_skew_seconds: 30,
            repeat_window_seconds: e.same_vehicle_repeat_seconds(),
        },
        &issuer.public_keys(),
    )
}

#[test]
fn a_fresh_code_is_accepted_once_and_yields_a_tap() {
    let mut s = setup(Algorithm::Sm2);
    let code = s.wallet.generate(t0()).unwrap();
    assert_eq!(code.as_bytes().len(), 191);
    let mut reader = gate(&s.issuer);
    match reader.decide(code.as_bytes(), t0() + Duration::seconds(5)) {
        Decision::Accept(mut tap) => {
            // The reader sees the credential's keyed reference, never the card.
            assert_ne!(tap.card, s.card);
            assert_eq!(tap.reader, 7);
            assert_eq!(tap.direction, TapDirection::In);
            let used = tap.code.expect("a ride-code tap carries its code use");
            assert_eq!(used.reference, tap.card);
            assert_eq!(used.timestamp, t0().timestamp() as u32);
            assert_eq!(used.counter, 1);
            assert_eq!(s.issuer.resolve_taps(std::slice::from_mut(&mut tap)), 0);
            assert_eq!(tap.card, s.card);
        }
        other => panic!("expected accept, got {other:?}"),
    }
    assert_eq!(
        reader.decide(code.as_bytes(), t0() + Duration::seconds(6)),
        Decision::Reject(Rejection::Replayed)
    );
    // The next code from the same phone is a new code.
    let next = s.wallet.generate(t0() + Duration::seconds(10)).unwrap();
    assert!(matches!(
        reader.decide(next.as_bytes(), t0() + Duration::seconds(11)),
        Decision::Accept(_)
    ));
}

#[test]
fn expired_future_tampered_wrong_issuer_and_denied_codes_each_have_their_answer() {
    let mut s = setup(Algorithm::Sm2);
    let code = s.wallet.generate(t0()).unwrap();
    let mut reader = gate(&s.issuer);
    // Too old: 60 s max age + 30 s skew.
    assert_eq!(
        reader.decide(code.as_bytes(), t0() + Duration::seconds(91)),
        Decision::Reject(Rejection::Expired)
    );
    // From the future beyond the skew.
    assert_eq!(
        reader.decide(code.as_bytes(), t0() - Duration::seconds(31)),
        Decision::Reject(Rejection::FromTheFuture)
    );
    // Tampered: flip a bit of the counter.
    let mut bytes = code.as_bytes().to_vec();
    bytes[121] ^= 0x01;
    assert_eq!(
        reader.decide(&bytes, t0()),
        Decision::Reject(Rejection::Tampered)
    );
    // Tampered credential: change the card reference.
    let mut bytes = code.as_bytes().to_vec();
    bytes[6 + 33] ^= 0x80;
    assert_eq!(
        reader.decide(&bytes, t0()),
        Decision::Reject(Rejection::Tampered)
    );
    // Wrong issuer: another issuer's reader does not know this key.
    let mut other = Issuer::new(2);
    other
        .rotate(
            Algorithm::Sm2,
            t0() - Duration::days(1),
            t0() + Duration::days(1),
        )
        .unwrap();
    other
        .rotate(
            Algorithm::Sm2,
            t0() - Duration::days(1),
            t0() + Duration::days(1),
        )
        .unwrap();
    let mut foreign = gate(&other);
    foreign.update_keys(&other.public_keys()[1..]);
    assert_eq!(
        foreign.decide(code.as_bytes(), t0()),
        Decision::Reject(Rejection::WrongIssuer {
            key_id: codes::key_id(1, 1)
        })
    );
    // Another issuer's first key has its own key id: "wrong issuer", not "tampered".
    let mut same_number = gate(&other);
    assert_eq!(
        same_number.decide(code.as_bytes(), t0()),
        Decision::Reject(Rejection::WrongIssuer {
            key_id: codes::key_id(1, 1)
        })
    );
    // Denied for arrears: the deny list holds the credential's reference.
    let from = (t0() - Duration::days(1)).timestamp() as u32;
    let until = (t0() + Duration::days(7)).timestamp() as u32;
    let reference = s
        .issuer
        .reference_of(s.card, codes::key_id(1, 1), from, until)
        .unwrap();
    reader.update_deny_list(&[DenyEntry {
        card: reference,
        reason: DenyReason::Arrears,
        since: t0(),
    }]);
    assert_eq!(
        reader.decide(code.as_bytes(), t0()),
        Decision::Reject(Rejection::Denied {
            deny: DenyReason::Arrears
        })
    );
    reader.update_deny_list(&[]);
    assert!(matches!(
        reader.decide(code.as_bytes(), t0()),
        Decision::Accept(_)
    ));
    // Malformed and unsupported versions.
    assert_eq!(
        reader.decide(&code.as_bytes()[..100], t0()),
        Decision::Reject(Rejection::Malformed)
    );
    // Version 1 (no issuer id, plain card reference) is no longer read.
    let mut v1 = code.as_bytes().to_vec();
    v1[0] = 1;
    assert_eq!(
        reader.decide(&v1, t0()),
        Decision::Reject(Rejection::UnsupportedVersion)
    );
}

#[test]
fn credential_validity_and_key_rotation() {
    let mut s = setup(Algorithm::Sm2);
    let mut reader = gate(&s.issuer);
    let late = t0() + Duration::days(8);
    let code = s.wallet.generate(late).unwrap();
    assert_eq!(
        reader.decide(code.as_bytes(), late),
        Decision::Reject(Rejection::CredentialExpired)
    );
    // Rotation: new credentials carry key 2; old codes under key 1 still verify while key 1 is published.
    let k2 = s
        .issuer
        .rotate(Algorithm::Sm2, t0(), t0() + Duration::days(365))
        .unwrap();
    assert_eq!(k2, codes::key_id(1, 2));
    let user = SigningKey::generate(Algorithm::Sm2).unwrap();
    let cred = s
        .issuer
        .certify(
            &user.public_key(),
            CardRef(9),
            t0(),
            t0() + Duration::days(1),
        )
        .unwrap();
    let mut w2 = RideCodeWallet::new(user, cred).unwrap();
    let c2 = w2.generate(t0()).unwrap();
    assert_eq!(
        codes::parse(c2.as_bytes()).unwrap().issuer_key_id,
        codes::key_id(1, 2)
    );
    assert_eq!(
        reader.decide(c2.as_bytes(), t0()),
        Decision::Reject(Rejection::WrongIssuer { key_id: k2 })
    );
    reader.update_keys(&s.issuer.public_keys());
    assert!(matches!(
        reader.decide(c2.as_bytes(), t0()),
        Decision::Accept(_)
    ));
    let c1 = s.wallet.generate(t0()).unwrap();
    assert!(matches!(
        reader.decide(c1.as_bytes(), t0()),
        Decision::Accept(_)
    ));
}

#[test]
fn the_same_card_is_refused_on_the_same_bus_within_five_minutes() {
    let mut s = setup(Algorithm::Sm2);
    let mut bus = bus_reader(&s.issuer);
    let a = s.wallet.generate(t0()).unwrap();
    assert!(matches!(
        bus.decide(a.as_bytes(), t0()),
        Decision::Accept(_)
    ));
    let b = s.wallet.generate(t0() + Duration::seconds(299)).unwrap();
    assert_eq!(
        bus.decide(b.as_bytes(), t0() + Duration::seconds(299)),
        Decision::Reject(Rejection::RepeatOnVehicle)
    );
    let c = s.wallet.generate(t0() + Duration::seconds(300)).unwrap();
    assert!(matches!(
        bus.decide(c.as_bytes(), t0() + Duration::seconds(300)),
        Decision::Accept(_)
    ));
}

#[test]
fn codes_travel_as_base64url_text_and_render_as_qr() {
    let mut s = setup(Algorithm::Sm2);
    let code = s.wallet.generate(t0()).unwrap();
    let text = code.to_text();
    assert_eq!(text.len(), 255);
    assert!(
        text.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_eq!(RideCode::from_text(&text).unwrap(), code);
    assert!(RideCode::from_text("not base64!").is_err());
    let term = qr::to_terminal(&code).unwrap();
    let matrix = qr::matrix(&code).unwrap();
    // Dense1x2 packs two module rows per line, with a quiet zone.
    assert!(term.lines().count() >= matrix.width() / 2);
    let svg = qr::to_svg(&code).unwrap();
    assert!(svg.contains("<svg") && svg.contains("</svg>"));
    let png = qr::to_png(&code, 4).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // The IHDR width is (modules + 8) × 4.
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert_eq!(width as usize, (matrix.width() + 8) * 4);
    assert!(qr::to_png(&code, 0).is_err());
}

#[cfg(feature = "ed25519")]
#[test]
fn ed25519_codes_work_the_same_way() {
    let mut s = setup(Algorithm::Ed25519);
    let code = s.wallet.generate(t0()).unwrap();
    assert_eq!(code.as_bytes().len(), 190);
    let mut reader = gate(&s.issuer);
    assert!(matches!(
        reader.decide(code.as_bytes(), t0()),
        Decision::Accept(_)
    ));
    assert_eq!(
        reader.decide(code.as_bytes(), t0()),
        Decision::Reject(Rejection::Replayed)
    );
    let mut bytes = code.as_bytes().to_vec();
    bytes[150] ^= 4;
    assert_eq!(
        gate(&s.issuer).decide(&bytes, t0()),
        Decision::Reject(Rejection::Tampered)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_single_bit_flip_is_rejected(bit in 0usize..191 * 8) {
        let mut s = setup(Algorithm::Sm2);
        let code = s.wallet.generate(t0()).unwrap();
        let mut bytes = code.as_bytes().to_vec();
        bytes[bit / 8] ^= 1 << (bit % 8);
        let mut reader = gate(&s.issuer);
        prop_assert!(matches!(reader.decide(&bytes, t0()), Decision::Reject(_)));
        // And the genuine code still passes on that reader (the flip did not poison the cache).
        prop_assert!(matches!(reader.decide(code.as_bytes(), t0()), Decision::Accept(_)));
    }

    #[test]
    fn a_code_is_accepted_at_most_once(attempts in 1usize..6, offsets in proptest::collection::vec(0i64..60, 6)) {
        let mut s = setup(Algorithm::Sm2);
        let code = s.wallet.generate(t0()).unwrap();
        let mut reader = gate(&s.issuer);
        let accepted = (0..attempts)
            .filter(|i| matches!(reader.decide(code.as_bytes(), t0() + Duration::seconds(offsets[*i])), Decision::Accept(_)))
            .count();
        prop_assert_eq!(accepted, 1);
    }
}

#[test]
fn issuer_keys_export_and_import_for_the_host_key_store() {
    let mut s = setup(Algorithm::Sm2);
    let exported = s.issuer.export();
    assert!(!format!("{exported:?}").contains(&format!("{:?}", exported[0].1.expose())));
    let restored = Issuer::import(exported.clone()).unwrap();
    assert_eq!(restored.public_keys(), s.issuer.public_keys());
    // A credential certified by the restored issuer verifies on a reader of the original key list.
    let user = SigningKey::generate(Algorithm::Sm2).unwrap();
    let cred = restored
        .certify(
            &user.public_key(),
            CardRef(77),
            t0(),
            t0() + Duration::days(1),
        )
        .unwrap();
    let mut w = RideCodeWallet::new(user, cred).unwrap();
    let mut reader = gate(&s.issuer);
    assert!(matches!(
        reader.decide(w.generate(t0()).unwrap().as_bytes(), t0()),
        Decision::Accept(_)
    ));
    // A secret that does not match its public key is refused.
    let other = SigningKey::generate(Algorithm::Sm2)
        .unwrap()
        .to_secret_bytes();
    assert!(Issuer::import(vec![(exported[0].0.clone(), other)]).is_err());
    let _ = s.wallet.generate(t0()).unwrap();
}

fn issuer_with_key(id: u16) -> Issuer {
    let mut issuer = Issuer::new(id);
    issuer
        .rotate(
            Algorithm::Sm2,
            t0() - Duration::days(30),
            t0() + Duration::days(365),
        )
        .unwrap();
    issuer
}

#[test]
fn a_code_of_another_issuer_is_wrong_issuer_even_for_its_first_key() {
    // Both issuers are on their first key; the key ids still differ.
    let hangzhou = issuer_with_key(1);
    let ningbo = issuer_with_key(2);
    assert_ne!(hangzhou.current_key_id(), ningbo.current_key_id());
    assert_eq!(hangzhou.public_keys()[0].issuer_id(), 1);
    let user = SigningKey::generate(Algorithm::Sm2).unwrap();
    let cred = ningbo
        .certify(
            &user.public_key(),
            CardRef(5),
            t0() - Duration::hours(1),
            t0() + Duration::days(1),
        )
        .unwrap();
    let code = RideCodeWallet::new(user, cred)
        .unwrap()
        .generate(t0())
        .unwrap();
    assert_eq!(
        gate(&hangzhou).decide(code.as_bytes(), t0()),
        Decision::Reject(Rejection::WrongIssuer {
            key_id: codes::key_id(2, 1)
        })
    );
    assert!(matches!(
        gate(&ningbo).decide(code.as_bytes(), t0()),
        Decision::Accept(_)
    ));
    // Keys of two issuers do not import as one.
    let mut mixed = hangzhou.export();
    mixed.extend(ningbo.export());
    assert!(Issuer::import(mixed).is_err());
}

#[test]
fn card_references_are_keyed_rotate_per_credential_and_map_back() {
    let issuer = issuer_with_key(1);
    let card = CardRef(0x0123_4567_89ab_cdef);
    let credential = |from: DateTime<Utc>| {
        let user = SigningKey::generate(Algorithm::Sm2).unwrap();
        let cred = issuer
            .certify(&user.public_key(), card, from, from + Duration::days(7))
            .unwrap();
        RideCodeWallet::new(user, cred)
            .unwrap()
            .generate(from + Duration::hours(1))
            .unwrap()
    };
    let week1 = credential(t0());
    let week2 = credential(t0() + Duration::days(7));
    let r1 = codes::parse(week1.as_bytes()).unwrap();
    let r2 = codes::parse(week2.as_bytes()).unwrap();
    // Neither code carries the card, and two credentials of it are not linkable by reference.
    assert_ne!(r1.card, card);
    assert_ne!(r2.card, card);
    assert_ne!(r1.card, r2.card);
    // The back office maps each reference back to the card.
    assert_eq!(issuer.card_of(&r1.code_use()), Some(card));
    assert_eq!(issuer.card_of(&r2.code_use()), Some(card));
    assert_eq!(
        issuer.reference_of(card, r1.issuer_key_id, r1.valid_from, r1.valid_until),
        Some(r1.card)
    );
    // Another issuer (another secret) maps nothing: the key is not its own,
    // and the same key id under another secret gives another card.
    assert_eq!(issuer_with_key(2).card_of(&r1.code_use()), None);
    assert_ne!(issuer_with_key(1).card_of(&r1.code_use()), Some(card));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_reference_always_maps_back_to_its_card(card in any::<u64>(), from in any::<u32>(), len in 1u32..10_000_000) {
        let issuer = issuer_with_key(3);
        let key = issuer.current_key_id().unwrap();
        let until = from.saturating_add(len);
        let reference = issuer.reference_of(CardRef(card), key, from, until).unwrap();
        let used = citycard_transit::CodeUse {
            key_id: key,
            reference,
            valid_from: from,
            valid_until: until,
            timestamp: from,
            counter: 1,
        };
        prop_assert_eq!(issuer.card_of(&used), Some(CardRef(card)));
    }
}

#[test]
fn the_rendered_png_decodes_with_an_independent_qr_reader_and_verifies() {
    let mut s = setup(Algorithm::Sm2);
    let code = s.wallet.generate(t0()).unwrap();
    let png_bytes = qr::to_png(&code, 4).unwrap();
    // Decode the PNG to grey pixels, then find and decode the QR code with rqrr.
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut image = decoder.read_info().unwrap();
    let mut pixels = vec![0u8; image.output_buffer_size()];
    let frame = image.next_frame(&mut pixels).unwrap();
    assert_eq!(frame.color_type, png::ColorType::Grayscale);
    let (w, h) = (frame.width as usize, frame.height as usize);
    let mut prepared =
        rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| pixels[y * frame.line_size + x]);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1);
    let mut payload = Vec::new();
    grids[0].decode_to(&mut payload).unwrap();
    assert_eq!(payload, code.as_bytes());
    // What the scanner read is the code: a reader verifies it offline.
    let parsed = codes::parse(&payload).unwrap();
    assert_eq!(parsed.issuer_key_id, codes::key_id(1, 1));
    match gate(&s.issuer).decide(&payload, t0()) {
        Decision::Accept(mut tap) => {
            s.issuer.resolve_taps(std::slice::from_mut(&mut tap));
            assert_eq!(tap.card, s.card);
        }
        other => panic!("the scanned code was refused: {other:?}"),
    }
}

#[test]
fn a_credential_of_another_payload_version_is_refused_by_the_phone_wallet() {
    let issuer = issuer_with_key(1);
    let user = SigningKey::generate(Algorithm::Sm2).unwrap();
    let cred = issuer
        .certify(
            &user.public_key(),
            CardRef(3),
            t0(),
            t0() + Duration::days(1),
        )
        .unwrap();
    let mut json = serde_json::to_value(&cred).unwrap();
    json["bytes"][0] = serde_json::json!(1);
    let old: citycard_transit::Credential = serde_json::from_value(json).unwrap();
    let err = RideCodeWallet::new(user, old).unwrap_err();
    assert!(err.to_string().contains("version 2"), "{err}");
}

#[test]
fn readers_deny_a_card_through_the_references_of_its_live_credentials() {
    let issuer = issuer_with_key(1);
    let mut wallets = Vec::new();
    let mut issued = Vec::new();
    for card in [CardRef(41), CardRef(42)] {
        let user = SigningKey::generate(Algorithm::Sm2).unwrap();
        let cred = issuer
            .certify(
                &user.public_key(),
                card,
                t0() - Duration::hours(1),
                t0() + Duration::days(1),
            )
            .unwrap();
        issued.push(citycard_transit::IssuedCredential {
            card,
            key_id: cred.key_id().unwrap(),
            reference: cred.reference().unwrap(),
            valid_from: t0() - Duration::hours(1),
            valid_until: t0() + Duration::days(1),
        });
        wallets.push(RideCodeWallet::new(user, cred).unwrap());
    }
    let deny = [DenyEntry {
        card: CardRef(42),
        reason: DenyReason::Arrears,
        since: t0(),
    }];
    let list = citycard_transit::reader_deny_list(&deny, &issued);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].card, issued[1].reference);
    let mut reader = gate(&issuer);
    reader.update_deny_list(&list);
    assert_eq!(
        reader.decide(wallets[1].generate(t0()).unwrap().as_bytes(), t0()),
        Decision::Reject(Rejection::Denied {
            deny: DenyReason::Arrears
        })
    );
    assert!(matches!(
        reader.decide(wallets[0].generate(t0()).unwrap().as_bytes(), t0()),
        Decision::Accept(_)
    ));
}
