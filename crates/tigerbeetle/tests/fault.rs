//! Fault test on the 3-replica cluster: during a stream of transfer batches,
//! `kill -9` replica 0 (the primary of a fresh cluster), keep going on the two left,
//! restart it, keep going; then every acknowledged transfer is on the cluster
//! exactly once and every balance equals the sum of the acknowledged
//! transfers. A batch acknowledged before the kill is sent again after it and
//! answers `exists` for every event (a retried charge is never a second one).
//!
//! Needs `CITYCARD_TEST_TIGERBEETLE_3`, `CITYCARD_TEST_TIGERBEETLE_DATA` and
//! `CITYCARD_TEST_TIGERBEETLE_BIN` (set by `.ci/tigerbeetle.sh`, which writes
//! each replica's pid to `pid_1_<replica>`; this test writes the restarted
//! replica's pid there so the script stops it). Without them the test prints
//! "skipped" locally and fails under `CI=true`. `CITYCARD_FAULT_BATCHES`
//! scales the stream (default 60 batches of 4,000 transfers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use chrono::{DateTime, Duration, Utc};
use citycard_core::Money;
use citycard_ledger::{
    AccountFlags, AccountId, AccountKind, CreateAccountResult, CreateTransferResult as R,
    NewAccount, NewTransfer, TransferId,
};
use citycard_tigerbeetle::{BATCH_MAX, SideStore, TigerBeetleLedger};

const ACCOUNTS: u64 = 100;
const BATCH: u64 = 4_000;
/// The 3-replica cluster's id (`.ci/tigerbeetle.sh`).
const CLUSTER: u128 = 1;

struct Cluster {
    addresses: String,
    data: PathBuf,
    bin: PathBuf,
    /// The replicas' start flags (`CITYCARD_TEST_TIGERBEETLE_FLAGS`).
    flags: String,
}

fn cluster() -> Option<Cluster> {
    let vars = (
        std::env::var("CITYCARD_TEST_TIGERBEETLE_3"),
        std::env::var("CITYCARD_TEST_TIGERBEETLE_DATA"),
        std::env::var("CITYCARD_TEST_TIGERBEETLE_BIN"),
    );
    match vars {
        (Ok(addresses), Ok(data), Ok(bin)) => Some(Cluster {
            addresses,
            data: data.into(),
            bin: bin.into(),
            flags: std::env::var("CITYCARD_TEST_TIGERBEETLE_FLAGS")
                .unwrap_or_else(|_| "--development --experimental --limit-request=1MiB".into()),
        }),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but the 3-replica cluster is not set: run .ci/tigerbeetle.sh"
            );
            eprintln!("skipped: CITYCARD_TEST_TIGERBEETLE_3 is not set (run .ci/tigerbeetle.sh)");
            None
        }
    }
}

impl Cluster {
    fn pid_file(&self, replica: u8) -> PathBuf {
        self.data.join(format!("pid_1_{replica}"))
    }

    fn kill(&self, replica: u8) {
        let pid = std::fs::read_to_string(self.pid_file(replica)).unwrap();
        let status = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -9 {pid}");
    }

    /// The restarted replica outlives this test: `.ci/tigerbeetle.sh` stops it by its pid file.
    #[allow(clippy::zombie_processes)]
    fn restart(&self, replica: u8) {
        let file = self.data.join(format!("1_{replica}.tigerbeetle"));
        let log = std::fs::File::create(self.data.join(format!("replica_1_{replica}.restart.log")))
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("start")
            .arg(format!("--addresses={}", self.addresses))
            .args(self.flags.split_whitespace())
            .arg(file)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        std::fs::write(self.pid_file(replica), child.id().to_string()).unwrap();
    }
}

fn id_base() -> u64 {
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or(1) as u64;
    ((nanos >> 24) & 0x0000_00ff_ffff_ffff) << 24
}

#[test]
fn a_replica_killed_and_restarted_loses_and_doubles_nothing() {
    let Some(cluster) = cluster() else { return };
    let batches: u64 = std::env::var("CITYCARD_FAULT_BATCHES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(60);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tb =
        TigerBeetleLedger::connect(CLUSTER, &cluster.addresses, SideStore::in_memory().unwrap())
            .unwrap();
    let base = id_base();
    let accounts: Vec<NewAccount> = (0..ACCOUNTS)
        .map(|n| {
            NewAccount::new(AccountId::new(base + n + 1), AccountKind::E_WALLET)
                .with_flags(AccountFlags::HISTORY)
        })
        .collect();
    let results = rt.block_on(tb.create_accounts_unchecked(accounts)).unwrap();
    assert!(results.iter().all(|r| *r == CreateAccountResult::Ok));

    let batch_of = |b: u64| -> Vec<NewTransfer> {
        (0..BATCH)
            .map(|n| {
                let k = b * BATCH + n;
                let dr = k % ACCOUNTS;
                let cr = (k * 7 + 1 + dr) % ACCOUNTS;
                let cr = if cr == dr { (cr + 1) % ACCOUNTS } else { cr };
                NewTransfer::new(
                    TransferId::new(base + (1 << 23) + k),
                    AccountId::new(base + dr + 1),
                    AccountId::new(base + cr + 1),
                    Money::from_fen((k % 97 + 1) as i64),
                    1,
                )
            })
            .collect()
    };
    let kill_at = batches / 4;
    let restart_at = batches / 2;
    let mut acknowledged: Vec<NewTransfer> = Vec::new();
    let started: DateTime<Utc> = Utc::now();
    for b in 0..batches {
        if b == kill_at {
            cluster.kill(0);
            eprintln!("fault: replica 0 killed before batch {b}");
        }
        if b == restart_at {
            cluster.restart(0);
            eprintln!("fault: replica 0 restarted before batch {b}");
        }
        let batch = batch_of(b);
        let results = rt
            .block_on(tb.create_transfers_unchecked(batch.clone()))
            .unwrap();
        for (t, r) in batch.into_iter().zip(results) {
            assert_eq!(r, R::Ok, "batch {b}");
            acknowledged.push(t);
        }
        if b == kill_at {
            // A batch acknowledged before the kill, retried on the two replicas left.
            let again = rt
                .block_on(tb.create_transfers_unchecked(batch_of(0)))
                .unwrap();
            assert!(
                again.iter().all(|r| *r == R::Exists),
                "a retry after the kill"
            );
        }
    }
    eprintln!(
        "fault: {} transfers acknowledged in {} batches of {BATCH} in {} s",
        acknowledged.len(),
        batches,
        (Utc::now() - started).num_seconds()
    );

    // Every acknowledged transfer is there, with its amount.
    let ids: Vec<TransferId> = acknowledged.iter().map(|t| t.id).collect();
    let found = rt.block_on(tb.lookup_transfers(&ids)).unwrap();
    assert_eq!(
        found.len(),
        acknowledged.len(),
        "every acknowledged transfer is on the cluster"
    );
    for (t, f) in acknowledged.iter().zip(&found) {
        assert_eq!((t.id, t.amount), (f.id, f.amount));
    }
    // Exactly once: each account's statement holds each of its transfers once, and its
    // balances are the sums of the acknowledged transfers.
    let mut debits: HashMap<AccountId, (i64, usize)> = HashMap::new();
    let mut credits: HashMap<AccountId, (i64, usize)> = HashMap::new();
    for t in &acknowledged {
        let d = debits.entry(t.debit_account_id).or_default();
        d.0 += t.amount.fen();
        d.1 += 1;
        let c = credits.entry(t.credit_account_id).or_default();
        c.0 += t.amount.fen();
        c.1 += 1;
    }
    let account_ids: Vec<AccountId> = (0..ACCOUNTS)
        .map(|n| AccountId::new(base + n + 1))
        .collect();
    for a in rt.block_on(tb.lookup_accounts(&account_ids)).unwrap() {
        let d = debits.get(&a.id).copied().unwrap_or_default();
        let c = credits.get(&a.id).copied().unwrap_or_default();
        assert_eq!(
            a.balances.debits_posted,
            Money::from_fen(d.0),
            "debits of {}",
            a.id
        );
        assert_eq!(
            a.balances.credits_posted,
            Money::from_fen(c.0),
            "credits of {}",
            a.id
        );
        let mut seen = std::collections::HashSet::new();
        let mut from = DateTime::<Utc>::UNIX_EPOCH;
        loop {
            let page = rt
                .block_on(tb.account_transfers(
                    a.id,
                    from,
                    Utc::now() + Duration::days(1),
                    BATCH_MAX as u32,
                ))
                .unwrap();
            for t in &page {
                assert!(
                    seen.insert(t.id),
                    "transfer {} twice in {}'s statement",
                    t.id,
                    a.id
                );
            }
            match page.last() {
                Some(last) if page.len() == BATCH_MAX => {
                    from = last.timestamp + Duration::nanoseconds(1)
                }
                _ => break,
            }
        }
        assert_eq!(seen.len(), d.1 + c.1, "transfers of {}", a.id);
    }
}
