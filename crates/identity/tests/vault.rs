//! The personal-data vault: sealing, opening, rotation, blind index.
use std::sync::Arc;

use citycard_identity::{
    Algorithm, IdNumber, KeyId, MemoryKeyProvider, SecretKey, Vault, VaultError,
};

fn keys() -> MemoryKeyProvider {
    MemoryKeyProvider::new(
        KeyId::parse("key-1").unwrap(),
        SecretKey::new([7; 32]),
        SecretKey::new([9; 32]),
    )
}

fn id(text: &str) -> IdNumber {
    IdNumber::parse(text).unwrap()
}

#[tokio::test]
async fn id_numbers_and_names_round_trip_and_ciphertext_hides_them() {
    let vault = Vault::new(Arc::new(keys()));
    let number = id("11010519491231002X");
    let env = vault
        .seal_id_number(&number, "person:psn-1:id_number")
        .await
        .unwrap();
    assert_eq!(env.algorithm, Algorithm::Aes256Gcm);
    assert_eq!(env.key_id.as_str(), "key-1");
    assert_eq!(env.nonce.len(), 12);
    assert_eq!(env.ciphertext.len(), 18 + 16);
    assert!(!env.ciphertext.windows(8).any(|w| w == b"19491231"));
    let json = serde_json::to_string(&env).unwrap();
    assert!(!json.contains("11010519491231002X"));
    assert!(!format!("{env:?}").contains("1101"));
    let back: citycard_identity::Envelope = serde_json::from_str(&json).unwrap();
    assert_eq!(
        vault
            .open_id_number(&back, "person:psn-1:id_number")
            .await
            .unwrap(),
        number
    );
    let name = vault
        .seal_name("张三丰", "person:psn-1:name")
        .await
        .unwrap();
    let opened = vault.open_name(&name, "person:psn-1:name").await.unwrap();
    assert_eq!(opened.expose(), "张三丰");
    assert_eq!(opened.to_string(), "张**");
    // Two seals of the same value differ (fresh nonces).
    let again = vault
        .seal_id_number(&number, "person:psn-1:id_number")
        .await
        .unwrap();
    assert_ne!(again.nonce, env.nonce);
    assert_ne!(again.ciphertext, env.ciphertext);
}

#[tokio::test]
async fn envelopes_do_not_open_in_another_context_or_after_tampering() {
    let vault = Vault::new(Arc::new(keys()));
    let env = vault.seal(b"secret", "person:psn-1:name").await.unwrap();
    assert_eq!(
        vault.open(&env, "person:psn-2:name").await.unwrap_err(),
        VaultError::Authentication
    );
    let mut tampered = env.clone();
    tampered.ciphertext[0] ^= 1;
    assert_eq!(
        vault
            .open(&tampered, "person:psn-1:name")
            .await
            .unwrap_err(),
        VaultError::Authentication
    );
    let mut relabelled = env.clone();
    relabelled.key_id = KeyId::parse("key-2").unwrap();
    assert!(matches!(
        vault
            .open(&relabelled, "person:psn-1:name")
            .await
            .unwrap_err(),
        VaultError::UnknownKey { .. }
    ));
    let mut short = env;
    short.nonce.pop();
    assert_eq!(
        vault.open(&short, "person:psn-1:name").await.unwrap_err(),
        VaultError::Malformed
    );
}

#[tokio::test]
async fn keys_rotate_and_old_envelopes_reencrypt_under_the_new_key() {
    let provider = keys();
    let vault = Vault::new(Arc::new(provider.clone()));
    let old = vault.seal(b"payload", "ctx").await.unwrap();
    provider.rotate(KeyId::parse("key-2").unwrap(), SecretKey::new([8; 32]));
    // Old envelopes still open; new ones use the new key.
    assert_eq!(&vault.open(&old, "ctx").await.unwrap()[..], b"payload");
    let fresh = vault.reencrypt(&old, "ctx").await.unwrap();
    assert_eq!(fresh.key_id.as_str(), "key-2");
    provider.retire(&KeyId::parse("key-1").unwrap());
    assert!(matches!(
        vault.open(&old, "ctx").await,
        Err(VaultError::UnknownKey { .. })
    ));
    assert_eq!(&vault.open(&fresh, "ctx").await.unwrap()[..], b"payload");
}

#[tokio::test]
async fn blind_index_is_keyed_and_normalised() {
    let vault = Vault::new(Arc::new(keys()));
    let a = vault.blind_index(&id("11010519491231002X")).await.unwrap();
    let b = vault.blind_index(&id(" 11010519491231002x")).await.unwrap();
    assert_eq!(a, b);
    // The 15-digit form indexes as its upgraded 18-digit form.
    assert_eq!(
        vault.blind_index(&id("610104620927690")).await.unwrap(),
        vault.blind_index(&id("610104196209276908")).await.unwrap()
    );
    assert_ne!(
        a,
        vault.blind_index(&id("110101199003078670")).await.unwrap()
    );
    // Another index key gives another index: a plain hash would not.
    let other = Vault::new(Arc::new(MemoryKeyProvider::new(
        KeyId::parse("key-1").unwrap(),
        SecretKey::new([7; 32]),
        SecretKey::new([10; 32]),
    )));
    assert_ne!(
        a,
        other.blind_index(&id("11010519491231002X")).await.unwrap()
    );
    assert_eq!(
        citycard_identity::BlindIndex::from_hex(&a.to_hex()),
        Some(a)
    );
    assert!(!format!("{a:?}").contains(&a.to_hex()));
}

#[cfg(feature = "sm4")]
#[tokio::test]
async fn sm4_gcm_seals_and_opens_and_mixes_with_aes_envelopes() {
    let provider = Arc::new(keys());
    let sm4 = Vault::with_algorithm(provider.clone(), Algorithm::Sm4Gcm);
    let env = sm4.seal(b"national", "ctx").await.unwrap();
    assert_eq!(env.algorithm, Algorithm::Sm4Gcm);
    assert_eq!(env.ciphertext.len(), 8 + 16);
    // Any vault opens any envelope it has the algorithm for.
    let aes = Vault::new(provider);
    assert_eq!(&aes.open(&env, "ctx").await.unwrap()[..], b"national");
    let moved = aes.reencrypt(&env, "ctx").await.unwrap();
    assert_eq!(moved.algorithm, Algorithm::Aes256Gcm);
    let mut tampered = env.clone();
    tampered.ciphertext[0] ^= 1;
    assert_eq!(
        sm4.open(&tampered, "ctx").await.unwrap_err(),
        VaultError::Authentication
    );
}

#[cfg(not(feature = "sm4"))]
#[tokio::test]
async fn sm4_without_the_feature_is_refused_clearly() {
    let sm4 = Vault::with_algorithm(Arc::new(keys()), Algorithm::Sm4Gcm);
    assert_eq!(
        sm4.seal(b"x", "ctx").await.unwrap_err(),
        VaultError::UnsupportedAlgorithm(Algorithm::Sm4Gcm)
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn sealed_bytes_open_only_in_their_context(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            ctx in "[a-z:0-9-]{1,30}",
            other in "[a-z:0-9-]{1,30}",
        ) {
            let vault = Vault::new(Arc::new(keys()));
            rt().block_on(async {
                let env = vault.seal(&data, &ctx).await.unwrap();
                prop_assert_eq!(env.ciphertext.len(), data.len() + 16);
                prop_assert_eq!(&vault.open(&env, &ctx).await.unwrap()[..], &data[..]);
                if other != ctx {
                    prop_assert_eq!(vault.open(&env, &other).await.unwrap_err(), VaultError::Authentication);
                }
                Ok(())
            })?;
        }

        #[test]
        fn distinct_numbers_have_distinct_blind_indexes(
            a in citycard_testkit::identity::resident_id_number(),
            b in citycard_testkit::identity::resident_id_number(),
        ) {
            let vault = Vault::new(Arc::new(keys()));
            rt().block_on(async {
                let (ia, ib) = (vault.blind_index(&a).await.unwrap(), vault.blind_index(&b).await.unwrap());
                prop_assert_eq!(ia == ib, a == b);
                Ok(())
            })?;
        }
    }
}

/// RFC 8998, appendix A.1: the SM4-GCM construction this crate uses
/// (`AesGcm<Sm4, U12>`) reproduces the published test vector.
#[cfg(feature = "sm4")]
#[test]
fn sm4_gcm_matches_the_rfc_8998_test_vector() {
    use aes_gcm::AesGcm;
    use aes_gcm::aead::consts::U12;
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
    let key = hex("0123456789ABCDEFFEDCBA9876543210");
    let iv = hex("00001234567800000000ABCD");
    let aad = hex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2");
    let plain = hex(
        "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB CCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD
         EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFF EEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA",
    );
    let expected = hex(
        "17F399F08C67D5EE19D0DC9969C4BB7D 5FD46FD3756489069157B282BB200735
         D82710CA5C22F0CCFA7CBF93D496AC15 A56834CBCF98C397B4024A2691233B8D
         83DE3541E4C2B58177E065A9BF7B62EC",
    );
    let cipher = AesGcm::<sm4::Sm4, U12>::new_from_slice(&key).unwrap();
    let out = cipher
        .encrypt(
            iv.as_slice().into(),
            Payload {
                msg: &plain,
                aad: &aad,
            },
        )
        .unwrap();
    assert_eq!(out, expected);
}
