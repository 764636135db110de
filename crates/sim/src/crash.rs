//! Crash runs: the city plays its plan on a SQLite file in a child process
//! (`citycard-sim child`) that kills itself with SIGKILL inside a seeded
//! commit (mid-transaction: the commit hook fires before the commit is
//! durable). An uninterrupted child first maps each step of the plan to the
//! commits it made, so the kill can be aimed: inside a day's settlement
//! (its chunks are four trips each, so the kill falls between or inside
//! chunks), inside a bind saga, inside a top-up, or anywhere (the city's
//! setup included). The child appends each acknowledgement to `acks.txt`
//! only after the operation returned. The parent then reopens the same
//! file, resolves the dead process's idempotency claims (`recover_claims`),
//! checks that every acknowledged operation is there and that the stored
//! ledger is whole. Half the runs then resume in a second child that is
//! killed again at a seeded commit of its own resumed run, and are checked
//! again. Finally the parent resumes: the plan is played again from the
//! start with the same keys (replays answer as the first time, settlement
//! skips settled trips, pending bindings are settled), past every dead
//! process's leases, with every invariant checked after every step.
//!
//! Crash runs have no remote faults or clock skews, so the resumed run
//! decides as the killed one did; and the platform wallet is the
//! simulator's memory, so passes are not checked after a restart.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::Duration;
use citycard::core::Principal;
use citycard::ledger::TransferId;
use serde::Serialize;

use crate::plan::{Op, Size, Step};
use crate::rng::Rng;
use crate::run::{Options, run};
use crate::world::{Action, Outcome, Store, World};
use crate::wrap::Mutation;

/// The size of crash runs (a child process on a file: smaller than memory runs).
pub const CRASH_SIZE: Size = Size {
    people: 40,
    steps: 80,
    faults: false,
};

/// Arguments of `citycard-sim child`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChildArgs {
    /// The seed.
    #[arg(long)]
    pub seed: u64,
    /// The data directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// Cardholders.
    #[arg(long)]
    pub people: usize,
    /// Steps.
    #[arg(long)]
    pub steps: usize,
    /// Die inside this commit (counted from the end of opening the store).
    #[arg(long)]
    pub kill_at: Option<u64>,
    /// How many processes died on this file before (the clock starts ten
    /// minutes past the last one's leases for each).
    #[arg(long, default_value_t = 0)]
    pub restart: u32,
    /// A deliberate bug.
    #[arg(long)]
    pub mutation: Option<String>,
}

/// What a crash run did.
#[derive(Debug, Clone, Serialize)]
pub struct CrashReport {
    /// The seed.
    pub seed: u64,
    /// Commits of an uninterrupted child (when one ran), else `None`.
    pub commits: Option<u64>,
    /// The commit the child died in.
    pub killed_at: u64,
    /// What the first kill aimed at (`settlement`, `bind`, `top-up`, `anywhere`).
    pub target: &'static str,
    /// Children killed (1 or 2).
    pub kills: u32,
    /// Acknowledgements the child wrote before it died.
    pub acknowledged: u64,
    /// Claims the restart found in progress.
    pub claims_recovered: usize,
    /// Operations of the resumed run.
    pub resumed_operations: u64,
}

/// The acknowledgement line of an answer (what the parent can read back).
fn ack_line(step: usize, action: &Action, outcome: &Outcome) -> String {
    match (action, outcome) {
        (_, Outcome::Moved(id, amount)) => format!("{step} transfer {id} {}", amount.fen()),
        // Written before the top-up ran (the ack-before-commit mutation).
        (
            Action::TopUp {
                principal,
                key,
                amount,
                ..
            },
            Outcome::Done,
        ) => {
            let id = TransferId::from_idempotency_key(
                &citycard::core::principal_scope("wallet.top_up", principal),
                key,
            );
            format!("{step} transfer {id} {}", amount.fen())
        }
        (_, Outcome::Bound(id, _)) => format!("{step} binding {id}"),
        (_, Outcome::Booked(id, _)) => format!("{step} appointment {id}"),
        (_, other) => format!("{step} other {}", variant(other)),
    }
}

fn variant(outcome: &Outcome) -> String {
    format!("{outcome:?}")
        .chars()
        .take_while(|c| c.is_alphanumeric())
        .collect()
}

/// Runs the child: plays the seed on `dir`, dying inside commit `kill_at`.
pub fn child(args: &ChildArgs) -> Result<(), String> {
    let mutation = args
        .mutation
        .as_deref()
        .map(|m| Mutation::parse(m).ok_or_else(|| format!("no mutation named {m}")))
        .transpose()?;
    std::fs::create_dir_all(&args.dir).map_err(|e| e.to_string())?;
    let acks = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(args.dir.join("acks.txt"))
            .map_err(|e| e.to_string())?,
    ));
    let commits = Arc::new(AtomicU64::new(0));
    let seen = commits.clone();
    let kill_at = args.kill_at;
    let setup = Arc::new(AtomicU64::new(0));
    let (setup_seen, counted) = (setup.clone(), commits.clone());
    let options = Options {
        on_step: Some(Arc::new(move |step| {
            let at = counted.load(Ordering::SeqCst);
            if step == 0 {
                setup_seen.store(at, Ordering::SeqCst);
            }
            // The parent maps steps to commits to aim its kills.
            eprintln!("child: step {step} at {at}");
        })),
        clock_offset: Duration::minutes(10 * i64::from(args.restart)),
        store: Store::Sqlite(args.dir.clone()),
        mutation,
        on_ack: Some(Arc::new(move |step, action, outcome| {
            let mut file = acks.lock().unwrap_or_else(|e| e.into_inner());
            // Written and flushed to the kernel before the next operation:
            // a SIGKILL does not lose it.
            let _ = writeln!(file, "{}", ack_line(step, action, outcome));
            let _ = file.flush();
        })),
        on_open: Some(Arc::new(move |city| {
            if let Some(db) = city.database() {
                let seen = seen.clone();
                db.lock().commit_hook(Some(move || {
                    if Some(seen.fetch_add(1, Ordering::SeqCst) + 1) == kill_at {
                        let _ = std::process::Command::new("kill")
                            .args(["-KILL", &std::process::id().to_string()])
                            .status();
                        loop {
                            std::thread::park();
                        }
                    }
                    false
                }));
            }
        })),
        ..Options::memory(Size {
            people: args.people,
            steps: args.steps,
            faults: false,
        })
    };
    let report = run(args.seed, &options).map_err(|f| f.to_string())?;
    eprintln!("child: {} setup", setup.load(Ordering::SeqCst));
    eprintln!("child: {} commits", commits.load(Ordering::SeqCst));
    eprintln!("child: {} operations", report.operations);
    Ok(())
}

/// A fresh scratch directory, on tmpfs where there is one (commits fsync).
fn scratch(seed: u64) -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    // Unique per run: tests of one process run crash seeds in parallel.
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let run = RUNS.fetch_add(1, Ordering::SeqCst);
    let dir = base.join(format!("citycard-sim-{}-{run}-{seed}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A child's end: killed or not, its (setup, total) commit counts, its stderr.
type Spawned = (bool, Option<(u64, u64)>, String);

/// The commit each step started at, from a child's stderr.
fn step_commits(stderr: &str) -> Vec<u64> {
    stderr
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("child: step ")?;
            let (_, at) = rest.split_once(" at ")?;
            at.parse().ok()
        })
        .collect()
}

/// The kinds of operation a step runs that a kill may aim at.
fn kinds(step: &Step) -> Vec<&'static str> {
    let ops: Vec<&Op> = match step {
        Step::One(op) => vec![op],
        Step::Together(ops, _) => ops.iter().collect(),
    };
    ops.into_iter()
        .filter_map(|op| match op {
            Op::SettleDays => Some("settlement"),
            Op::Bind { .. } => Some("bind"),
            Op::TopUp { .. } => Some("top-up"),
            _ => None,
        })
        .collect()
}

/// The commit to die in: inside a step of the seeded kind when the plan
/// has one that commits, else anywhere (mostly inside the seeded day).
fn aim(
    rng: &mut Rng,
    seed: u64,
    size: Size,
    starts: &[u64],
    setup: u64,
    total: u64,
) -> (&'static str, u64) {
    let target = match rng.below(100) {
        0..=29 => "settlement",
        30..=54 => "bind",
        55..=79 => "top-up",
        _ => "anywhere",
    };
    let plan = crate::plan::plan(seed, size);
    let ranges: Vec<(u64, u64)> = (0..starts.len())
        .filter(|&i| plan.get(i).is_some_and(|s| kinds(s).contains(&target)))
        .map(|i| (starts[i], starts.get(i + 1).copied().unwrap_or(total)))
        .filter(|(from, to)| to > from)
        .collect();
    if target != "anywhere" && !ranges.is_empty() {
        let (from, to) = ranges[rng.index(ranges.len())];
        return (target, from + 1 + rng.below(to - from));
    }
    let at = if rng.chance(85) && total > setup {
        setup + 1 + rng.below(total - setup)
    } else {
        1 + rng.below(total.max(1))
    };
    ("anywhere", at)
}

fn spawn(
    bin: &Path,
    seed: u64,
    dir: &Path,
    size: Size,
    kill_at: u64,
    restart: u32,
    mutation: Option<Mutation>,
) -> Result<Spawned, String> {
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["child", "--seed", &seed.to_string(), "--dir"])
        .arg(dir)
        .args(["--people", &size.people.to_string()])
        .args(["--steps", &size.steps.to_string()])
        .args(["--kill-at", &kill_at.to_string()])
        .args(["--restart", &restart.to_string()]);
    if let Some(m) = mutation {
        cmd.args(["--mutation", m.name()]);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("the child does not start: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let count = |what: &str| -> Option<u64> {
        stderr
            .lines()
            .find_map(|l| l.strip_prefix("child: ")?.strip_suffix(what)?.parse().ok())
    };
    let commits = count(" setup").zip(count(" commits"));
    if out.status.success() {
        return Ok((false, commits, stderr));
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if out.status.signal() == Some(9) {
            return Ok((true, None, stderr));
        }
    }
    Err(format!("the child failed ({}): {stderr}", out.status))
}

/// One crash run of `seed` with the child binary `bin`: kill, restart,
/// check the acknowledged operations, resume, check everything.
pub fn crash_run_with(
    bin: &Path,
    seed: u64,
    size: Size,
    mutation: Option<Mutation>,
) -> Result<CrashReport, String> {
    let size = Size {
        faults: false,
        ..size
    };
    let mut rng = Rng::new(seed).fork(0xdead);
    let dir = scratch(seed);
    // An uninterrupted child counts the commits of the setup and of each step.
    let (_, counted, counting) = spawn(bin, seed, &dir, size, u64::MAX, 0, mutation)?;
    let (setup, total) = counted.ok_or("the child did not count its commits")?;
    let _ = std::fs::remove_dir_all(&dir);
    let (target, kill_at) = aim(&mut rng, seed, size, &step_commits(&counting), setup, total);
    let (killed, _, stderr) = spawn(bin, seed, &dir, size, kill_at, 0, mutation)?;
    if !killed {
        return Err(format!(
            "seed {seed}: the child was not killed at commit {kill_at} of {total}: {stderr}"
        ));
    }
    let commits = Some(total);
    let result = (|| {
        let acks = std::fs::read_to_string(dir.join("acks.txt")).unwrap_or_default();
        let mut claims = recover_and_check(&dir, &acks, 1)?;
        let mut kills = 1;
        // Half the runs resume in a second child, killed again in its resumed run.
        if rng.chance(50) {
            let again = 1 + rng.below(total.max(1));
            let (killed, _, _) = spawn(bin, seed, &dir, size, again, 1, None)?;
            let acks = std::fs::read_to_string(dir.join("acks.txt")).unwrap_or_default();
            if killed {
                kills += 1;
                claims += recover_and_check(&dir, &acks, 2)?;
            }
        }
        let resumed = resume(seed, size, &dir, kills, mutation)
            .map_err(|e| format!("{e} (after {kills} kills)"))?;
        Ok::<_, String>((claims, resumed, kills, acks_count(&dir)))
    })();
    let report = result.map(|(claims, resumed, kills, acknowledged)| CrashReport {
        seed,
        commits,
        killed_at: kill_at,
        target,
        kills,
        acknowledged,
        claims_recovered: claims,
        resumed_operations: resumed,
    });
    if report.is_err() && std::env::var_os("CITYCARD_SIM_KEEP").is_some() {
        eprintln!(
            "crash run of seed {seed} kept its directory: {}",
            dir.display()
        );
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    report.map_err(|e| {
        format!(
            "seed {seed}, killed inside commit {kill_at}: {e}\nreplay: cargo run -p citycard-sim --release -- crash --seed {seed} --people {} --steps {}{}",
            size.people,
            size.steps,
            mutation.map(|m| format!(" --mutation {}", m.name())).unwrap_or_default()
        )
    })
}

/// One crash run with this executable as the child.
pub fn crash_run(seed: u64, size: Size, mutation: Option<Mutation>) -> Result<CrashReport, String> {
    let bin = std::env::current_exe().map_err(|e| e.to_string())?;
    crash_run_with(&bin, seed, size, mutation)
}

fn acks_count(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("acks.txt"))
        .unwrap_or_default()
        .lines()
        .count() as u64
}

/// Reopens the file after the `restart`-th death, resolves the dead
/// process's claims, checks every acknowledgement so far and the stored ledger.
fn recover_and_check(dir: &Path, acks: &str, restart: i64) -> Result<usize, String> {
    // Past the lease of every claim the dead process held.
    let offset = Duration::minutes(10 * restart);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| e.to_string())?;
    runtime
        .block_on(async {
            let verifier = Arc::new(citycard::identity::SimulatedVerifier::new());
            let world =
                World::open(&Store::Sqlite(dir.to_path_buf()), None, offset, verifier).await?;
            let recovered = world
                .city
                .recover_claims()
                .await
                .map_err(|e| format!("recovery failed: {e}"))?;
            for line in acks.lines() {
                check_ack(&world, line).await?;
            }
            // The stored ledger is whole: balances equal transfers, no id twice.
            crate::check::sweep(&world, false).await?;
            crate::check::money(&world, false).await?;
            Ok::<usize, String>(recovered.len())
        })
        .map_err(|e| format!("after death {restart}: {e}"))
}

/// Resumes in this process after `kills` deaths: the plan again from the
/// start, on the same file, every invariant checked after every step.
fn resume(
    seed: u64,
    size: Size,
    dir: &Path,
    kills: u32,
    mutation: Option<Mutation>,
) -> Result<u64, String> {
    let offset = Duration::minutes(10 * i64::from(kills));
    let options = Options {
        store: Store::Sqlite(dir.to_path_buf()),
        clock_offset: offset,
        mutation: mutation.filter(|m| *m != Mutation::AckBeforeCommit),
        ..Options::memory(size)
    };
    let report = run(seed, &options).map_err(|f| format!("after the restart: {f}"))?;
    Ok(report.operations)
}

async fn check_ack(world: &World, line: &str) -> Result<(), String> {
    let parts: Vec<&str> = line.split(' ').collect();
    match parts.as_slice() {
        [step, "transfer", id, fen] => {
            let id: TransferId = id.parse().map_err(|_| format!("ack {line}"))?;
            let t = world
                .city
                .ledger()
                .transfer(&Principal::System, id)
                .await
                .map_err(|e| {
                    format!("the transfer acknowledged at step {step} was lost in the crash: {e}")
                })?;
            if t.amount.fen().to_string() != *fen {
                return Err(format!(
                    "transfer {id} holds {} fen, acknowledged {fen}",
                    t.amount.fen()
                ));
            }
        }
        [step, "binding", id] => {
            let id = id.parse().map_err(|_| format!("ack {line}"))?;
            world
                .city
                .cards()
                .binding(&Principal::System, &id)
                .await
                .map_err(|e| format!("the binding acknowledged at step {step} was lost: {e}"))?;
        }
        [step, "appointment", id] => {
            let id = id.parse().map_err(|_| format!("ack {line}"))?;
            if world
                .city
                .appointment_store()
                .appointment(&id)
                .await
                .map_err(|e| e.to_string())?
                .is_none()
            {
                return Err(format!(
                    "the appointment acknowledged at step {step} was lost"
                ));
            }
        }
        _ => {}
    }
    Ok(())
}
