//! The binding conformance suites run against the SQLite stores.
#![cfg(feature = "binding")]
use citycard_sqlite::Database;
use citycard_sqlite::binding::{SqliteBindingStore, SqliteCardStore, SqliteDelegationStore};
use citycard_testkit::{
    binding_store_conformance, card_store_conformance, delegation_store_conformance,
};

fn db() -> Database {
    Database::open_in_memory().expect("in-memory database opens")
}

async fn card_store() -> SqliteCardStore {
    SqliteCardStore::new(db())
}

async fn binding_store() -> SqliteBindingStore {
    SqliteBindingStore::new(db())
}

async fn delegation_store() -> SqliteDelegationStore {
    SqliteDelegationStore::new(db())
}

card_store_conformance!(card_store);
binding_store_conformance!(binding_store);
delegation_store_conformance!(delegation_store);

#[tokio::test]
async fn the_schema_is_recorded_and_a_file_reopens_with_its_data() {
    use citycard_binding::CardStore;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("citycard.db");
    let card = citycard_testkit::binding::sample_card(1, "psn-a");
    {
        let db = Database::open(&path).expect("opens");
        assert!(
            db.schema_versions()
                .expect("versions")
                .contains(&("binding".to_owned(), 1))
        );
        SqliteCardStore::new(db)
            .insert(&card)
            .await
            .expect("insert");
    }
    let db = Database::open(&path).expect("reopens");
    let back = SqliteCardStore::new(db).get(&card.id).await.expect("get");
    assert_eq!(back, Some(card));
}
