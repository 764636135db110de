//! ID numbers: every sample of the domain notes, the error cases, and proptests.
use chrono::NaiveDate;
use citycard_identity::{
    IdNumber, IdNumberError, IdNumberKind, RegionCheck, RegionCode, Sex, ValidationPolicy,
    ValidityNote,
};
use citycard_testkit::identity::{
    foreign_id_number, id_number_like_text, legacy15_text, resident_parts,
};
use proptest::prelude::*;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

fn with_check(body: &str) -> String {
    let bytes: [u8; 17] = body.as_bytes().try_into().unwrap();
    format!("{body}{}", citycard_identity::check_character(&bytes))
}

fn policy() -> ValidationPolicy {
    ValidationPolicy::new().today(d(2026, 11, 26))
}

fn strict() -> ValidationPolicy {
    policy().region_check(RegionCheck::ExistedInBirthYear)
}

#[test]
fn valid_samples_from_the_domain_notes_parse() {
    // (number, birth date, sex) worked out by hand from the layout.
    let cases = [
        ("11010519491231002X", d(1949, 12, 31), Sex::Female),
        ("440524188001010014", d(1880, 1, 1), Sex::Male),
        ("110101199003078670", d(1990, 3, 7), Sex::Male),
        ("440308199901101512", d(1999, 1, 10), Sex::Male),
        ("321083197812162119", d(1978, 12, 16), Sex::Male),
        ("360426199101010071", d(1991, 1, 1), Sex::Male),
    ];
    for (text, birth, sex) in cases {
        let id = IdNumber::parse_with(text, &policy()).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(id.reveal(), text);
        assert_eq!(id.kind(), IdNumberKind::Resident);
        assert_eq!(id.birth_date(), birth, "{text}");
        assert_eq!(id.sex(), sex, "{text}");
        assert_eq!(id.check_char(), text.chars().last().unwrap());
        assert_eq!(id.region_code().to_string(), &text[..6]);
    }
}

#[test]
fn legacy_samples_upgrade_and_round_trip() {
    for (old, new) in [
        ("610104620927690", "610104196209276908"),
        ("150102880730303", "150102198807303035"),
    ] {
        let id = IdNumber::parse_with(old, &policy()).unwrap();
        assert_eq!(id.kind(), IdNumberKind::UpgradedLegacy);
        assert!(id.was_upgraded());
        assert_eq!(id.reveal(), new);
        assert_eq!(id.to_legacy15().unwrap().expose(), old);
        let again = IdNumber::parse_with(new, &policy()).unwrap();
        assert_eq!(again.kind(), IdNumberKind::Resident);
        assert_eq!(again, id, "equality compares the 18 characters");
        assert_eq!(again.to_legacy15().unwrap().expose(), old);
    }
    // Born 1880: no 15-digit form exists.
    assert!(
        IdNumber::parse_with("440524188001010014", &policy())
            .unwrap()
            .to_legacy15()
            .is_none()
    );
}

#[test]
fn invalid_samples_fail_for_the_stated_reason() {
    assert_eq!(
        IdNumber::parse_with("11010119900307867X", &policy()),
        Err(IdNumberError::CheckCharacter {
            expected: '0',
            found: 'X'
        })
    );
    // Date and region are checked before the check character, so a
    // mistyped date or region is named as such.
    assert_eq!(
        IdNumber::parse_with("440308199902301512", &policy()),
        Err(IdNumberError::ImpossibleBirthDate {
            year: 1999,
            month: 2,
            day: 30
        })
    );
    assert_eq!(
        IdNumber::parse_with("111111199901101512", &policy()),
        Err(IdNumberError::UnknownRegion {
            code: RegionCode::new(111_111).unwrap()
        })
    );
}

#[test]
fn feb_30_and_unknown_region_are_reported_precisely() {
    // 440308199902301512 changes the date of a valid sample; report whichever
    // check it fails, but it must fail and the date must be named when the
    // check character matches. Re-check with a fixed check character.
    let fixed = with_check("44030819990230151");
    assert_eq!(
        IdNumber::parse_with(&fixed, &policy()),
        Err(IdNumberError::ImpossibleBirthDate {
            year: 1999,
            month: 2,
            day: 30
        })
    );
    assert!(IdNumber::parse_with("440308199902301512", &policy()).is_err());

    let fixed = with_check("11111119990110151");
    assert_eq!(
        IdNumber::parse_with(&fixed, &policy()),
        Err(IdNumberError::UnknownRegion {
            code: RegionCode::new(111_111).unwrap()
        })
    );
    assert!(IdNumber::parse_with("111111199901101512", &policy()).is_err());
    // With the region check off, only the region was wrong.
    let off = policy().region_check(RegionCheck::Off);
    assert!(IdNumber::parse_with(&fixed, &off).is_ok());
}

#[test]
fn residence_permits_and_foreign_cards() {
    // Sequence 002 is even (female), 003 odd (male).
    for (text, kind, sex) in [
        (
            "810000199408230021",
            IdNumberKind::HongKongResidencePermit,
            Sex::Female,
        ),
        (
            "830000199201300022",
            IdNumberKind::TaiwanResidencePermit,
            Sex::Female,
        ),
        (
            "820000200009100032",
            IdNumberKind::MacauResidencePermit,
            Sex::Male,
        ),
    ] {
        let id = IdNumber::parse_with(text, &strict()).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(id.kind(), kind);
        assert_eq!(id.sex(), sex);
    }
    let saudi = IdNumber::parse_with("932682198501010017", &strict()).unwrap();
    assert_eq!(saudi.kind(), IdNumberKind::ForeignPermanentResident);
    assert_eq!(saudi.nationality(), Some(682));
    assert_eq!(saudi.province_of_application(), RegionCode::new(320_000));
    assert_eq!(saudi.birth_date(), d(1985, 1, 1));
    assert_eq!(saudi.sex(), Sex::Male);
    assert_eq!(saudi.region().unwrap().province, Some("江苏省"));
    assert_eq!(
        saudi.nationality_country().map(|c| (c.alpha3, c.name)),
        Some(("SAU", "Saudi Arabia"))
    );
    // Nationality 999 is no ISO 3166-1 country.
    let stateless = IdNumber::generate_foreign(32, 999, d(1985, 1, 1), Sex::Male, 0).unwrap();
    assert_eq!(
        IdNumber::parse_with(stateless.reveal(), &strict()),
        Err(IdNumberError::UnknownNationality { code: 999 })
    );
    assert!(
        IdNumber::parse_with(stateless.reveal(), &policy().region_check(RegionCheck::Off)).is_ok()
    );
    let canada = IdNumber::parse_with("911124198108030024", &strict()).unwrap();
    assert_eq!(canada.nationality(), Some(124));
    assert_eq!(canada.province_of_application(), RegionCode::new(110_000));
    assert_eq!(canada.sex(), Sex::Female);
    assert_eq!(canada.birth_date(), d(1981, 8, 3));
    assert_eq!(canada.to_legacy15(), None);
    assert_eq!(
        IdNumber::parse_with("110101199003078670", &strict())
            .unwrap()
            .nationality(),
        None
    );
}

#[test]
fn input_is_normalised() {
    for text in [
        "  11010519491231002X\t",
        "11010519491231002x",
        "１１０１０５１９４９１２３１００２Ｘ",
        "１１０１０５１９４９１２３１００２ｘ",
        "\u{3000}11010519491231002X\u{3000}",
    ] {
        let id = IdNumber::parse_with(text, &policy()).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(id.reveal(), "11010519491231002X");
    }
}

#[test]
fn errors_name_length_characters_and_dates() {
    let p = policy();
    assert_eq!(IdNumber::parse_with("   ", &p), Err(IdNumberError::Empty));
    assert_eq!(
        IdNumber::parse_with("1101051949123100", &p),
        Err(IdNumberError::Length { found: 16 })
    );
    assert_eq!(
        IdNumber::parse_with("1101051949123100-2X", &p),
        Err(IdNumberError::IllegalCharacter {
            position: 17,
            found: '-'
        })
    );
    assert_eq!(
        IdNumber::parse_with("110105 19491231 002X", &p),
        Err(IdNumberError::IllegalCharacter {
            position: 7,
            found: ' '
        })
    );
    assert_eq!(
        IdNumber::parse_with("11010519491231002X0", &p),
        Err(IdNumberError::Length { found: 19 })
    );
    assert_eq!(
        IdNumber::parse_with("110105194912a1002X", &p),
        Err(IdNumberError::IllegalCharacter {
            position: 13,
            found: 'a'
        })
    );
    assert_eq!(
        IdNumber::parse_with("1101051949X231002X", &p),
        Err(IdNumberError::IllegalCharacter {
            position: 11,
            found: 'X'
        })
    );
    assert_eq!(
        IdNumber::parse_with("61010462092769X", &p),
        Err(IdNumberError::IllegalCharacter {
            position: 15,
            found: 'X'
        })
    );
    // Born tomorrow relative to the policy's today.
    let born = IdNumber::generate(
        RegionCode::new(330_106).unwrap(),
        d(2026, 11, 27),
        Sex::Male,
        1,
    )
    .unwrap();
    assert_eq!(
        IdNumber::parse_with(born.reveal(), &p),
        Err(IdNumberError::FutureBirthDate)
    );
    let today = IdNumber::generate(
        RegionCode::new(330_106).unwrap(),
        d(2026, 11, 26),
        Sex::Male,
        1,
    )
    .unwrap();
    assert!(IdNumber::parse_with(today.reveal(), &p).is_ok());
    assert_eq!(
        IdNumber::parse_with("440524188001010014", &p.earliest_birth_year(1900)),
        Err(IdNumberError::BirthDateTooEarly {
            earliest_year: 1900
        })
    );
    // Month 13.
    let text = with_check("11010519491331002");
    assert!(matches!(
        IdNumber::parse_with(&text, &p),
        Err(IdNumberError::ImpossibleBirthDate { month: 13, .. })
    ));
}

#[test]
fn strict_region_check_follows_history() {
    let xiacheng_2022 = IdNumber::generate(
        RegionCode::new(330_103).unwrap(),
        d(2022, 5, 1),
        Sex::Female,
        7,
    )
    .unwrap();
    // Exists at some time: accepted by default.
    assert!(IdNumber::parse_with(xiacheng_2022.reveal(), &policy()).is_ok());
    assert_eq!(
        IdNumber::parse_with(xiacheng_2022.reveal(), &strict()),
        Err(IdNumberError::RegionNotValidInBirthYear {
            code: RegionCode::new(330_103).unwrap(),
            birth_year: 2022,
            validity: ValidityNote::RetiredAfter(2020),
        })
    );
    let linping_1990 = IdNumber::generate(
        RegionCode::new(330_113).unwrap(),
        d(1990, 5, 1),
        Sex::Male,
        7,
    )
    .unwrap();
    assert_eq!(
        IdNumber::parse_with(linping_1990.reveal(), &strict()),
        Err(IdNumberError::RegionNotValidInBirthYear {
            code: RegionCode::new(330_113).unwrap(),
            birth_year: 1990,
            validity: ValidityNote::NotYetUntil(2021),
        })
    );
    // Fuyang city (330183) in 2000 was valid; its name as of that year.
    let fuyang = IdNumber::generate(
        RegionCode::new(330_183).unwrap(),
        d(2000, 1, 1),
        Sex::Male,
        0,
    )
    .unwrap();
    let id = IdNumber::parse_with(fuyang.reveal(), &strict()).unwrap();
    let region = id.region().unwrap();
    assert_eq!(region.county, Some("富阳市"));
    assert_eq!(region.city, Some("杭州市"));
    assert_eq!(region.province, Some("浙江省"));
}

#[test]
fn age_is_counted_to_the_day() {
    let id = IdNumber::parse_with("110101199003078670", &policy()).unwrap(); // born 1990-03-07
    assert_eq!(id.age_on(d(2026, 3, 6)), Some(35));
    assert_eq!(id.age_on(d(2026, 3, 7)), Some(36));
    assert_eq!(id.age_on(d(1990, 3, 7)), Some(0));
    assert_eq!(id.age_on(d(1990, 3, 6)), None);
    // Born on 29 February: the birthday counts as passed on 1 March.
    let leap = IdNumber::generate(
        RegionCode::new(330_106).unwrap(),
        d(2000, 2, 29),
        Sex::Male,
        3,
    )
    .unwrap();
    assert_eq!(leap.age_on(d(2001, 2, 28)), Some(0));
    assert_eq!(leap.age_on(d(2001, 3, 1)), Some(1));
}

#[test]
fn printing_is_masked_and_revealing_is_explicit() {
    let id = IdNumber::parse_with("11010519491231002X", &policy()).unwrap();
    assert_eq!(id.to_string(), "110***********002X");
    assert_eq!(id.masked(), "110***********002X");
    assert!(!format!("{id:?}").contains("19491231"));
    assert_eq!(
        id.masked_with(citycard_core::Mask {
            keep_first: 6,
            keep_last: 1
        }),
        "110105***********X"
    );
    let json = serde_json::to_string(&id).unwrap();
    assert_eq!(json, "\"11010519491231002X\"");
    assert_eq!(serde_json::from_str::<IdNumber>(&json).unwrap(), id);
    let err = IdNumber::parse_with("11010119900307867X", &policy()).unwrap_err();
    assert!(!err.to_string().contains("110101199003"));
}

fn fixed_strict() -> ValidationPolicy {
    ValidationPolicy::new()
        .today(d(2026, 11, 26))
        .region_check(RegionCheck::ExistedInBirthYear)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_numbers_parse_back_to_the_same_fields(parts in resident_parts()) {
        let id = parts.build();
        let back = IdNumber::parse_with(id.reveal(), &fixed_strict()).unwrap();
        prop_assert_eq!(back, id);
        prop_assert_eq!(back.region_code(), parts.region);
        prop_assert_eq!(back.birth_date(), parts.birth);
        prop_assert_eq!(back.sex(), parts.sex);
        prop_assert_eq!(back.sequence() / 2, parts.sequence);
        prop_assert!(back.region().is_some());
    }

    #[test]
    fn every_single_substitution_is_rejected(parts in resident_parts()) {
        let id = parts.build();
        let text = id.reveal().as_bytes().to_vec();
        for pos in 0..18 {
            for c in b"0123456789X" {
                if *c == text[pos] {
                    continue;
                }
                let mut changed = text.clone();
                changed[pos] = *c;
                let changed = String::from_utf8(changed).unwrap();
                let policy = ValidationPolicy::new().today(d(2026, 11, 26)).region_check(RegionCheck::Off);
                prop_assert!(IdNumber::parse_with(&changed, &policy).is_err(), "{} accepted", changed);
            }
        }
    }

    #[test]
    fn every_adjacent_transposition_is_rejected(parts in resident_parts()) {
        let id = parts.build();
        let text = id.reveal().as_bytes().to_vec();
        for pos in 0..17 {
            if text[pos] == text[pos + 1] {
                continue;
            }
            let mut changed = text.clone();
            changed.swap(pos, pos + 1);
            let changed = String::from_utf8(changed).unwrap();
            let policy = ValidationPolicy::new().today(d(2026, 11, 26)).region_check(RegionCheck::Off);
            prop_assert!(IdNumber::parse_with(&changed, &policy).is_err(), "{} accepted", changed);
        }
    }

    #[test]
    fn parsing_any_text_never_panics(text in id_number_like_text()) {
        let _ = IdNumber::parse(&text);
        let _ = IdNumber::parse_with(&text, &fixed_strict());
    }

    #[test]
    fn legacy_15_to_18_to_15_round_trips(text in legacy15_text()) {
        let id = IdNumber::parse_with(&text, &policy()).unwrap();
        prop_assert_eq!(id.reveal().len(), 18);
        prop_assert_eq!(&id.reveal()[6..8], "19");
        let legacy = id.to_legacy15().unwrap();
        prop_assert_eq!(legacy.expose(), &text);
        let again = IdNumber::parse_with(id.reveal(), &policy()).unwrap();
        let again15 = again.to_legacy15().unwrap();
        prop_assert_eq!(again15.expose(), &text);
    }

    #[test]
    fn foreign_cards_parse_back(id in foreign_id_number()) {
        let back = IdNumber::parse_with(id.reveal(), &fixed_strict()).unwrap();
        prop_assert_eq!(back.kind(), IdNumberKind::ForeignPermanentResident);
        prop_assert_eq!(back.nationality(), id.nationality());
        prop_assert_eq!(back.birth_date(), id.birth_date());
    }
}

#[test]
fn the_seeded_generator_is_deterministic_and_strictly_valid() {
    let (first, last) = (d(1940, 1, 1), d(2020, 12, 31));
    let mut a = citycard_identity::IdNumberGenerator::new(42);
    let mut b = citycard_identity::IdNumberGenerator::new(42);
    let mut distinct = std::collections::HashSet::new();
    for _ in 0..500 {
        let x = a.resident(first, last).unwrap();
        assert_eq!(x, b.resident(first, last).unwrap());
        let back = IdNumber::parse_with(x.reveal(), &strict()).unwrap();
        assert!(back.birth_date() >= first && back.birth_date() <= last);
        assert_eq!(back.kind(), IdNumberKind::Resident);
        distinct.insert(x);
    }
    assert!(distinct.len() > 490);
    let mut c = citycard_identity::IdNumberGenerator::new(43);
    assert_ne!(
        c.resident(first, last).unwrap(),
        citycard_identity::IdNumberGenerator::new(42)
            .resident(first, last)
            .unwrap()
    );
}

/// Parsing returns only `Copy` values: neither the number nor the error can
/// own heap memory. (A counting global allocator would need `unsafe`, which
/// the workspace forbids; the parse path calls no allocating function.)
#[test]
fn parse_results_cannot_hold_heap_memory() {
    fn is_copy<T: Copy>() {}
    is_copy::<IdNumber>();
    is_copy::<IdNumberError>();
    is_copy::<Result<IdNumber, IdNumberError>>();
    assert!(std::mem::size_of::<IdNumber>() <= 32);
}

fn full_width(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '0'..='9' => char::from_u32(c as u32 - '0' as u32 + '０' as u32).unwrap(),
            'X' => 'Ｘ',
            'x' => 'ｘ',
            other => other,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The ASCII fast path and the general path agree on every answer,
    /// errors included.
    #[test]
    fn fast_and_general_paths_agree(text in "[0-9xX]{15}|[0-9xX]{18}|[0-9]{17}[0-9xX]") {
        let p = policy();
        let direct = IdNumber::parse_with(&text, &p);
        prop_assert_eq!(IdNumber::parse_with(&format!(" {text} "), &p), direct);
        prop_assert_eq!(IdNumber::parse_with(&full_width(&text), &p), direct);
    }

    #[test]
    fn spelling_variants_of_a_valid_number_parse_equal(parts in resident_parts()) {
        let id = parts.build();
        let text = id.reveal().to_owned();
        let p = fixed_strict();
        for variant in [text.to_lowercase(), format!("\t{text}\u{3000}"), full_width(&text)] {
            let parsed = IdNumber::parse_with(&variant, &p).unwrap();
            prop_assert_eq!(parsed.reveal(), id.reveal());
        }
    }
}

#[test]
fn policies_deserialize_with_defaults() {
    let p: ValidationPolicy =
        serde_json::from_str(r#"{"region":"existed_in_birth_year"}"#).unwrap();
    assert_eq!(p.region, RegionCheck::ExistedInBirthYear);
    assert_eq!(
        p.earliest_birth_year,
        citycard_identity::DEFAULT_EARLIEST_BIRTH_YEAR
    );
    assert_eq!(p.today, None);
    let c: citycard_identity::IdentityConfig =
        serde_json::from_str(r#"{"max_failures_per_day":2}"#).unwrap();
    assert_eq!(c.max_failures_per_day, 2);
    assert_eq!(c.region_check, RegionCheck::ExistedAnyTime);
}

proptest! {
    /// The check character follows the standard's definition literally.
    #[test]
    fn check_character_matches_the_definition(body in "[0-9]{17}") {
        let weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
        let s: u32 = body.bytes().zip(weights).map(|(b, w)| u32::from(b - b'0') * w).sum();
        let expected = "10X98765432".as_bytes()[(s % 11) as usize] as char;
        let bytes: [u8; 17] = body.as_bytes().try_into().unwrap();
        prop_assert_eq!(citycard_identity::check_character(&bytes), expected);
    }
}

#[test]
fn errors_name_the_wrong_part_without_echoing_its_digits() {
    let strict = ValidationPolicy::new().region_check(RegionCheck::ExistedInBirthYear);
    let stateless = IdNumber::generate_foreign(32, 999, d(1985, 1, 1), Sex::Male, 0).unwrap();
    let xiacheng_2022 = IdNumber::generate(
        RegionCode::new(330_103).unwrap(),
        d(2022, 5, 1),
        Sex::Female,
        7,
    )
    .unwrap();
    // (number, digits that must not appear in the message or the Debug output)
    let cases: [(&str, &[&str]); 5] = [
        (
            "440308199902301512",
            &["440308", "1999", "02-30", "0230", "year: "],
        ),
        ("111111199901101512", &["111111"]),
        ("11010119900307867X", &["110101", "19900307", "0"]),
        (stateless.reveal(), &["999"]),
        (xiacheng_2022.reveal(), &["330103", "2022", "2020"]),
    ];
    for (number, hidden) in cases {
        let err = IdNumber::parse_with(number, &strict).expect_err(number);
        let shown = format!("{err} {err:?}");
        for digits in hidden {
            assert!(!shown.contains(digits), "{shown:?} shows {digits}");
        }
    }
}
