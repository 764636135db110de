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
