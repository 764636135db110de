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
    let mut issuer = Issuer::new();
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
        Decision::Accept(tap) => {
            assert_eq!(tap.card, s.card);
            assert_eq!(tap.reader, 7);
            assert_eq!(tap.direction, TapDirection::In);
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
    let mut other = Issuer::new();
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
        Decision::Reject(Rejection::WrongIssuer { key_id: 1 })
    );
    // Same key id, different issuer: the issuer signature fails.
    let mut same_id = gate(&other);
    assert_eq!(
        same_id.decide(code.as_bytes(), t0()),
        Decision::Reject(Rejection::Tampered)
    );
    // Denied for arrears.
    reader.update_deny_list(&[DenyEntry {
        card: s.card,
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
    let mut v2 = code.as_bytes().to_vec();
    v2[0] = 2;
    assert_eq!(
        reader.decide(&v2, t0()),
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
    assert_eq!(k2, 2);
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
    assert_eq!(codes::parse(c2.as_bytes()).unwrap().issuer_key_id, 2);
    assert_eq!(
        reader.decide(c2.as_bytes(), t0()),
        Decision::Reject(Rejection::WrongIssuer { key_id: 2 })
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
