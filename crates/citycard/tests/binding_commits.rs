//! One write transaction per saga step of binding, counted on a SQLite file
//! with `Database::commits()`: the bind's steps (verify input → issuer check
//! → platform wallet → bound), a refusal, a replay, an unbinding and a card
//! event. The wallet double reads the counter when the platform wallet is
//! called, which splits the bind at its remote step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use citycard::CityCard;
use citycard::binding::{
    PassSerial, PassUpdate, PlatformWallet, PortError, RemovalReason, SimulatedWallet, WalletPass,
};
use citycard::core::{ManualClock, Platform, Principal};
use citycard::sqlite::Database;
use common::{bind_request, enrol_as, issue_as, key, verified_account};

/// The simulated wallet, noting the commit count at each pass added.
#[derive(Default)]
struct CountingWallet {
    inner: SimulatedWallet,
    db: OnceLock<Database>,
    at_add: Mutex<Vec<u64>>,
}

impl CountingWallet {
    fn commits(&self) -> u64 {
        self.db.get().map_or(0, Database::commits)
    }
}

#[async_trait]
impl PlatformWallet for CountingWallet {
    async fn add_pass(&self, pass: &WalletPass) -> Result<(), PortError> {
        let before = self.commits();
        self.inner.add_pass(pass).await?;
        assert_eq!(self.commits(), before, "no commit during the wallet call");
        self.at_add.lock().unwrap().push(before);
        Ok(())
    }

    async fn update_pass(
        &self,
        platform: &Platform,
        serial: &PassSerial,
        update: &PassUpdate,
    ) -> Result<(), PortError> {
        self.inner.update_pass(platform, serial, update).await
    }

    async fn remove_pass(
        &self,
        platform: &Platform,
        serial: &PassSerial,
        reason: RemovalReason,
    ) -> Result<(), PortError> {
        self.inner.remove_pass(platform, serial, reason).await
    }

    async fn pass(
        &self,
        platform: &Platform,
        serial: &PassSerial,
    ) -> Result<Option<WalletPass>, PortError> {
        self.inner.pass(platform, serial).await
    }
}

#[tokio::test]
async fn each_bind_step_unbinding_and_card_event_is_one_write_transaction() {
    let dir = tempfile_dir("binding-commits");
    let wallet = Arc::new(CountingWallet::default());
    let city = CityCard::builder()
        .sqlite(dir.join("citycard.db"))
        .clock(Arc::new(ManualClock::at_ymd_hms(2026, 11, 26, 9, 0, 0)))
        .platform_wallet(wallet.clone())
        .build()
        .await
        .unwrap();
    let db = city.database().unwrap().clone();
    let _ = wallet.db.set(db.clone());
    let system = Principal::System;
    let li = enrol_as(&city, &system, "li", 1, (1990, 3, 7)).await;
    let number = "3301000000000101";
    let card = issue_as(&city, &system, &li, number, "standard").await;
    let account = verified_account(&city, &li, "2088-li").await;
    let me = Principal::cardholder(li.id.clone());
    let request = bind_request(&account, number, &li.id_number);

    // verify input → issuer check: the pending binding and its consent, one commit
    // before the wallet is called; platform wallet: none; bound: one.
    let start = db.commits();
    let receipt = city
        .cards()
        .bind(&me, &key("bind-1"), &request)
        .await
        .unwrap();
    let end = db.commits();
    let at_wallet = *wallet.at_add.lock().unwrap().last().unwrap();
    assert_eq!(
        at_wallet - start,
        1,
        "verify input + issuer check commit once"
    );
    assert_eq!(end - at_wallet, 1, "bound commits once");

    // A replay reads the stored outcome: no commit.
    let before = db.commits();
    let again = city
        .cards()
        .bind(&me, &key("bind-1"), &request)
        .await
        .unwrap();
    assert_eq!(again, receipt);
    assert_eq!(db.commits(), before, "a replay writes nothing");

    // A refusal (details do not match) commits its mismatch, audit and outcome once.
    let mut wrong = request.clone();
    wrong.card_number = "3301000000000999".into();
    let before = db.commits();
    assert!(
        city.cards()
            .bind(&me, &key("bind-2"), &wrong)
            .await
            .is_err()
    );
    assert_eq!(db.commits() - before, 1, "a refused bind commits once");

    // A card event (report lost) moves the card and its binding in one commit.
    let before = db.commits();
    city.cards()
        .report_lost(&me, &key("lost-1"), &card)
        .await
        .unwrap();
    assert_eq!(db.commits() - before, 1, "report lost commits once");
    let before = db.commits();
    city.cards()
        .report_found(&me, &key("found-1"), &card)
        .await
        .unwrap();
    assert_eq!(db.commits() - before, 1, "report found commits once");

    // Unbinding: the pass removed, then one commit.
    let before = db.commits();
    city.cards()
        .unbind(
            &me,
            &key("unbind-1"),
            &receipt.binding,
            RemovalReason::UserUnbound,
        )
        .await
        .unwrap();
    assert_eq!(db.commits() - before, 1, "unbind commits once");
    drop(city);
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("citycard-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
