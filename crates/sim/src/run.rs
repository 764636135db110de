//! One run: build the city, play the plan step by step (several operations
//! in flight at once where the plan says so, completed in a seeded order),
//! check every invariant after every step, and trace it all.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use chrono::Duration;
use serde::Serialize;

use crate::capture::{Capture, Lines};
use crate::check::{self, Cursor};
use crate::plan::{Op, Size, Step, plan};
use crate::rng::Rng;
use crate::world::{Action, Outcome, Store, World};
use crate::wrap::Mutation;

/// How to run.
#[derive(Clone)]
pub struct Options {
    /// The size of the city and of the run.
    pub size: Size,
    /// A deliberate bug, for the checker's own tests.
    pub mutation: Option<Mutation>,
    /// Where the city keeps its data.
    pub store: Store,
    /// Run only the first `n` steps of the plan (shrinking).
    pub prefix: Option<usize>,
    /// Moves the clock of the whole run (a restarted process starts past
    /// the leases of the claims a killed one left).
    pub clock_offset: Duration,
    /// Called with every acknowledged answer once it has returned (the crash
    /// child writes it to its acknowledgement file); `before` calls come
    /// before the operation runs (the ack-before-commit mutation).
    pub on_ack: Option<AckHook>,
    /// Called once the card system is open, before the city is populated
    /// (the crash child arms its commit hook here).
    pub on_open: Option<OpenHook>,
    /// Called before each step with its index (the crash child counts the setup's commits).
    pub on_step: Option<std::sync::Arc<dyn Fn(usize) + Send + Sync>>,
}

/// Sees the card system once it is open.
pub type OpenHook = std::sync::Arc<dyn Fn(&citycard::CityCard) + Send + Sync>;

/// Receives acknowledgements: (step, before-the-operation, the answer).
pub type AckHook = std::sync::Arc<dyn Fn(usize, &Action, &Outcome) + Send + Sync>;

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("size", &self.size)
            .field("mutation", &self.mutation)
            .field("store", &self.store)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Options {
    /// In memory, CI size, no mutation.
    pub fn memory(size: Size) -> Options {
        Options {
            size,
            mutation: None,
            store: Store::Memory,
            prefix: None,
            clock_offset: Duration::zero(),
            on_ack: None,
            on_open: None,
            on_step: None,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Steps played.
    pub steps: usize,
    /// Operations run (setup excluded).
    pub operations: u64,
    /// Operations acknowledged.
    pub acknowledged: u64,
    /// Operations refused or failed.
    pub failed: u64,
    /// Steps with several operations in flight.
    pub concurrent_steps: u64,
    /// Remote faults injected.
    pub faults: u64,
    /// Clock jumps and skews.
    pub clock_moves: u64,
    /// Retries of acknowledged operations (each answered as the first time).
    pub retries: u64,
    /// Full sweeps of the stored ledger and trips.
    pub sweeps: u64,
    /// Lines of `tracing` output checked for personal data.
    pub log_lines: u64,
    /// FNV-1a of the trace: equal seeds give equal traces.
    pub trace_hash: u64,
    /// Why operations failed, by the start of the error text (for the README).
    pub errors: std::collections::BTreeMap<String, u64>,
}

/// A run that broke an invariant.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// The step after which the invariant was found broken (`None`: setup).
    pub step: Option<usize>,
    /// What broke.
    pub message: String,
    /// The last lines of the trace.
    pub trace_tail: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.step {
            Some(step) => write!(
                f,
                "seed {} broke an invariant after step {step}: {}",
                self.seed, self.message
            ),
            None => write!(
                f,
                "seed {} failed while building the city: {}",
                self.seed, self.message
            ),
        }
    }
}

/// Runs futures together: each poll advances one of them, picked by a
/// seeded generator, so operations interleave at every point one of them
/// waits (the simulator's ports yield before each commit and remote call).
struct Interleave<'a> {
    futures: Vec<Option<Pin<Box<dyn Future<Output = Outcome> + 'a>>>>,
    done: Vec<(usize, Outcome)>,
    rng: Rng,
}

impl Future for Interleave<'_> {
    type Output = Vec<(usize, Outcome)>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let live: Vec<usize> = (0..self.futures.len())
            .filter(|&i| self.futures[i].is_some())
            .collect();
        if live.is_empty() {
            return Poll::Ready(std::mem::take(&mut self.done));
        }
        let pick = live[self.rng.index(live.len())];
        let this = &mut *self;
        if let Some(f) = this.futures[pick].as_mut()
            && let Poll::Ready(outcome) = f.as_mut().poll(cx)
        {
            this.futures[pick] = None;
            this.done.push((pick, outcome));
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn fnv(hash: &mut u64, text: &str) {
    for b in text.as_bytes().iter().chain(b"\n") {
        *hash ^= u64::from(*b);
        *hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
}

/// The run's state besides the world.
struct Runner {
    seed: u64,
    report: Report,
    trace: Vec<String>,
    hash: u64,
    lines: Lines,
    cursor: Cursor,
    /// Whether the model has caught up with the store (always, except in
    /// a resumed run before its end): sweeps then require every fare to
    /// belong to a known trip, and each cardholder's money is checked.
    orphans: bool,
}

impl Runner {
    fn trace(&mut self, line: String) {
        if std::env::var_os("CITYCARD_SIM_TRACE").is_some() {
            eprintln!("trace: {line}");
        }
        fnv(&mut self.hash, &line);
        self.trace.push(line);
        if self.trace.len() > 60 {
            self.trace.remove(0);
        }
    }

    fn fail(&self, step: Option<usize>, message: String) -> Failure {
        Failure {
            seed: self.seed,
            step,
            message,
            trace_tail: self.trace.clone(),
        }
    }
}

/// Runs seed `seed` with `options` on a tokio runtime of the calling thread.
pub fn run(seed: u64, options: &Options) -> Result<Report, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure {
            seed,
            step: None,
            message: format!("no runtime: {e}"),
            trace_tail: Vec::new(),
        })?;
    let (capture, lines) = Capture::new();
    let _guard = tracing::subscriber::set_default(capture);
    runtime.block_on(run_async(seed, options, lines))
}

async fn run_async(seed: u64, options: &Options, lines: Lines) -> Result<Report, Failure> {
    let mut runner = Runner {
        seed,
        report: Report {
            seed,
            ..Report::default()
        },
        trace: Vec::new(),
        hash: 0xcbf2_9ce4_8422_2325,
        lines,
        cursor: Cursor::default(),
        orphans: options.clock_offset.is_zero(),
    };
    let verifier = std::sync::Arc::new(citycard::identity::SimulatedVerifier::new());
    let mut world = World::open(
        &options.store,
        options.mutation,
        options.clock_offset,
        verifier.clone(),
    )
    .await
    .map_err(|e| runner.fail(None, e))?;
    if let Some(hook) = &options.on_open {
        hook(&world.city);
    }
    world
        .populate(seed, options.size.people, &verifier)
        .await
        .map_err(|e| runner.fail(None, e))?;
    // The setup is checked like any step.
    check_step(&mut world, &mut runner, &[], None, true).await?;
    let steps = plan(seed, options.size);
    let steps = &steps[..options.prefix.unwrap_or(steps.len()).min(steps.len())];
    for (index, step) in steps.iter().enumerate() {
        if let Some(hook) = &options.on_step {
            hook(index);
        }
        // Time passes between operations.
        world
            .clock
            .advance(Duration::minutes(1 + (index as i64 * 7) % 13));
        let ops: Vec<Op> = match step {
            Step::One(op) => vec![op.clone()],
            Step::Together(ops, _) => ops.clone(),
        };
        let mut actions = Vec::new();
        for (sub, op) in ops.iter().enumerate() {
            let action = world
                .resolve(op, index as u64, sub)
                .map_err(|e| runner.fail(Some(index), e))?;
            let first = !matches!(op, Op::Retry { .. });
            actions.push((action, first));
        }
        if let Some(hook) = &options.on_ack
            && options.mutation == Some(Mutation::AckBeforeCommit)
        {
            for (action, _) in &actions {
                if let Action::TopUp { .. } = action {
                    hook(index, action, &Outcome::Done);
                }
            }
        }
        let outcomes: Vec<(usize, Outcome)> = match step {
            Step::One(_) => vec![(0, world.exec(&actions[0].0).await)],
            Step::Together(_, order) => {
                runner.report.concurrent_steps += 1;
                let futures = actions
                    .iter()
                    .map(|(a, _)| {
                        let w = &world;
                        Some(Box::pin(w.exec(a)) as Pin<Box<dyn Future<Output = Outcome> + '_>>)
                    })
                    .collect();
                Interleave {
                    futures,
                    done: Vec::new(),
                    rng: Rng::new(*order),
                }
                .await
            }
        };
        let mut done = Vec::new();
        for (i, outcome) in outcomes {
            let (action, first) = &actions[i];
            runner.report.operations += 1;
            match (&outcome, action) {
                (Outcome::Skipped, _) => {}
                (Outcome::Failed(e), _) => {
                    runner.report.failed += 1;
                    let class: String = e.chars().take(48).collect();
                    *runner.report.errors.entry(class).or_default() += 1;
                }
                (_, Action::Fault(..)) => runner.report.faults += 1,
                (_, Action::Clock(_)) => runner.report.clock_moves += 1,
                _ => runner.report.acknowledged += 1,
            }
            if let Some(hook) = &options.on_ack
                && outcome.acknowledged()
                && options.mutation != Some(Mutation::AckBeforeCommit)
            {
                hook(index, action, &outcome);
            }
            runner.trace(format!("{index}.{i} {action:?} -> {outcome:?}"));
            if let Outcome::Broken(why) = &outcome {
                return Err(runner.fail(Some(index), why.clone()));
            }
            if !*first {
                runner.report.retries += 1;
                let original = world
                    .acked
                    .iter()
                    .find(|(a, _)| same_request(a, action))
                    .map(|(_, o)| o.clone());
                if let Some(original) = original
                    && !same_answer(&original, &outcome)
                {
                    return Err(runner.fail(
                        Some(index),
                        format!(
                            "a retry with the same key answered {outcome:?}; the first answer was {original:?}"
                        ),
                    ));
                }
            } else {
                world.learn(action, &outcome, false);
            }
            done.push((action.clone(), outcome, *first));
        }
        let settle = done
            .iter()
            .any(|(a, _, _)| matches!(a, Action::Settle { .. }));
        check_step(&mut world, &mut runner, &done, Some(index), settle).await?;
        runner.report.steps = index + 1;
    }
    finish(
        &mut world,
        &mut runner,
        steps.len(),
        !matches!(options.store, Store::Sqlite(_)),
    )
    .await?;
    runner.report.trace_hash = runner.hash;
    Ok(runner.report)
}

/// Two actions are the same request (a retry repeats the first).
fn same_request(a: &Action, b: &Action) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// A retry's answer equals the first (bookings and bills may have moved on:
/// their ids must match).
fn same_answer(first: &Outcome, again: &Outcome) -> bool {
    match (first, again) {
        (Outcome::Booked(a, _), Outcome::Booked(b, _)) => a == b,
        (Outcome::Billed(a, _, _), Outcome::Billed(b, _, _)) => a == b,
        (Outcome::Bound(a, _), Outcome::Bound(b, _)) => a == b,
        // A transient failure (a remote port down, rate limits) is no answer: retry later.
        (_, Outcome::Failed(e)) if e.starts_with("Unavailable") || e.starts_with("RateLimited") => {
            true
        }
        _ => first == again,
    }
}

async fn check_step(
    world: &mut World,
    runner: &mut Runner,
    done: &[(Action, Outcome, bool)],
    step: Option<usize>,
    sweep: bool,
) -> Result<(), Failure> {
    let fail = |runner: &Runner, m: String| runner.fail(step, m);
    // Personal data in logs and answers.
    let lines = runner.lines.drain();
    runner.report.log_lines += lines.len() as u64;
    for line in &lines {
        if let Some(leak) = check::leaks(&world.secrets, line) {
            return Err(fail(runner, format!("log line: {leak}")));
        }
    }
    let fresh = runner.trace.len().min(done.len().max(1));
    for line in &runner.trace[runner.trace.len() - fresh..] {
        if let Some(leak) = check::leaks(&world.secrets, line) {
            return Err(fail(runner, format!("answer: {leak}")));
        }
    }
    if sweep {
        runner.report.sweeps += 1;
        world.fares = check::sweep(world, runner.orphans)
            .await
            .map_err(|m| fail(runner, m))?;
    }
    check::money(world, runner.orphans)
        .await
        .map_err(|m| fail(runner, m))?;
    check::acknowledged(world, done)
        .await
        .map_err(|m| fail(runner, m))?;
    check::audit(world, &mut runner.cursor, done, runner.orphans)
        .await
        .map_err(|m| fail(runner, m))?;
    let touched: Vec<usize> = if step.is_none() {
        (0..world.people.len()).collect()
    } else {
        done.iter().filter_map(|(a, _, _)| who(a)).collect()
    };
    check::bindings(world, &touched)
        .await
        .map_err(|m| fail(runner, m))?;
    let slots: Vec<String> = done
        .iter()
        .filter_map(|(a, _, _)| match a {
            Action::Book { request, .. } => Some(request.slot.to_string()),
            Action::Cancel { appointment, .. } => world
                .appointments
                .get(appointment.as_str())
                .map(|(s, _, _)| s.clone()),
            _ => None,
        })
        .collect();
    check::slots(world, &slots)
        .await
        .map_err(|m| fail(runner, m))?;
    Ok(())
}

fn who(action: &Action) -> Option<usize> {
    match action {
        Action::Register { who, .. }
        | Action::Bind { who, .. }
        | Action::Unbind { who, .. }
        | Action::Status { who, .. }
        | Action::Replace { who, .. }
        | Action::TopUp { who, .. }
        | Action::Refund { who, .. }
        | Action::Taps { who, .. }
        | Action::Book { who, .. }
        | Action::Cancel { who, .. }
        | Action::Bill { who, .. }
        | Action::Reverse { who, .. }
        | Action::Query { who, .. }
        | Action::Grant { who, .. }
        | Action::Revoke { who, .. } => Some(*who),
        Action::CodeRide(ride) => Some(ride.who),
        _ => None,
    }
}

/// The end of the run: faults stop, the host's jobs run, every pass
/// converges to its card, and everything is checked once more.
async fn finish(
    world: &mut World,
    runner: &mut Runner,
    steps: usize,
    passes: bool,
) -> Result<(), Failure> {
    let step = Some(steps.saturating_sub(1));
    world.faults.clear();
    // Bills and reversals left unresolved by faults are retried with their keys.
    for action in world.uncertain.clone() {
        let outcome = world.exec(&action).await;
        runner.trace(format!("end {action:?} -> {outcome:?}"));
        world.learn(&action, &outcome, false);
    }
    if let Some(left) = world
        .uncertain
        .iter()
        .find(|a| matches!(a, Action::Bill { .. }))
    {
        return Err(runner.fail(
            step,
            format!("a bill stays unresolved once faults stopped: {left:?}"),
        ));
    }
    // Past every claim's lease, the host settles what is pending.
    world.clock.advance(Duration::minutes(10));
    let _ = world
        .city
        .cards()
        .settle_pending(&citycard::core::Principal::System, 1000)
        .await;
    let settle = world
        .resolve(&Op::SettleDays, steps as u64, 99)
        .map_err(|e| runner.fail(step, e))?;
    let outcome = world.exec(&settle).await;
    if !outcome.acknowledged() {
        return Err(runner.fail(step, format!("the final settlement failed: {outcome:?}")));
    }
    runner.orphans = true;
    check_step(world, runner, &[], step, true).await?;
    if passes {
        crate::converge::passes(world)
            .await
            .map_err(|m| runner.fail(step, m))?;
    }
    let all: Vec<String> = world.slots.iter().map(|(s, _)| s.clone()).collect();
    check::slots(world, &all)
        .await
        .map_err(|m| runner.fail(step, m))?;
    let everyone: Vec<usize> = (0..world.people.len()).collect();
    check::bindings(world, &everyone)
        .await
        .map_err(|m| runner.fail(step, m))?;
    Ok(())
}

/// The shortest prefix of the plan that still fails (binary search on the
/// step count; the failure is deterministic in the prefix).
pub fn shrink(seed: u64, options: &Options, failed_at: usize) -> (usize, Failure) {
    let mut hi = failed_at + 1;
    let mut lo = 0;
    let mut last = None;
    while lo < hi {
        let mid = (lo + hi) / 2;
        let attempt = Options {
            prefix: Some(mid),
            ..options.clone()
        };
        match run(seed, &attempt) {
            Err(f) => {
                hi = mid;
                last = Some(f);
            }
            Ok(_) => lo = mid + 1,
        }
    }
    let failure = last.unwrap_or_else(|| {
        run(
            seed,
            &Options {
                prefix: Some(hi),
                ..options.clone()
            },
        )
        .err()
        .unwrap_or(Failure {
            seed,
            step: Some(hi),
            message: "the failure did not reproduce on a prefix".into(),
            trace_tail: Vec::new(),
        })
    });
    (hi, failure)
}
