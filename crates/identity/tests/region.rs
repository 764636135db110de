//! Region table: lookups agree with the records, by code and by year.
use citycard_identity::region::{self, RegionCode, Validity};
use proptest::prelude::*;

fn all() -> Vec<region::RegionRecord> {
    region::all_records().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_record_is_valid_inside_its_years_and_named_then(
        i in 0..region::record_count_embedded(),
        year in 1950i32..2030,
    ) {
        let rec = region::record_by_index(i).unwrap();
        prop_assert!(region::existed(rec.code));
        if rec.valid_in(year) {
            prop_assert_eq!(region::validity(rec.code, year), Validity::Valid);
            // Some name valid that year is returned (a code can have two).
            let name = region::name_as_of(rec.code, year).unwrap();
            prop_assert!(region::records(rec.code).any(|r| r.name == name && r.valid_in(year)));
        } else {
            let any_valid = region::records(rec.code).any(|r| r.valid_in(year));
            prop_assert_eq!(region::validity(rec.code, year) == Validity::Valid, any_valid);
        }
    }

    #[test]
    fn codes_not_in_the_table_are_unknown(code in 0u32..1_000_000) {
        let code = RegionCode::new(code).unwrap();
        let listed = all().iter().any(|r| r.code == code);
        prop_assert_eq!(region::existed(code), listed);
        prop_assert_eq!(region::validity(code, 2000) == Validity::Unknown, !listed);
    }
}

#[test]
fn hangzhou_codes_of_the_domain_notes() {
    let today = [
        (330102, "上城区"),
        (330105, "拱墅区"),
        (330106, "西湖区"),
        (330108, "滨江区"),
        (330109, "萧山区"),
        (330110, "余杭区"),
        (330111, "富阳区"),
        (330112, "临安区"),
        (330113, "临平区"),
        (330114, "钱塘区"),
        (330122, "桐庐县"),
        (330127, "淳安县"),
        (330182, "建德市"),
    ];
    for (code, name) in today {
        let code = RegionCode::new(code).unwrap();
        assert_eq!(region::validity(code, 2024), Validity::Valid, "{code}");
        assert_eq!(region::name_as_of(code, 2024), Some(name), "{code}");
    }
    // Retired but still in real ID numbers: known, not valid today.
    for code in [330103, 330104, 330183, 330185] {
        let code = RegionCode::new(code).unwrap();
        assert!(region::existed(code), "{code}");
        assert!(
            matches!(region::validity(code, 2024), Validity::NoLonger { .. }),
            "{code}"
        );
    }
    assert_eq!(region::embedded_size(), 109_279);
}
