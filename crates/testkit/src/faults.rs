//! Fault injection for port doubles.
//!
//! A double holds a [`Faults`] and asks it, at the start of each call, what to
//! do. Tests script faults per operation name: fail the next call, time out
//! always, or perform the call but report an unknown outcome (the classic
//! "the network dropped the answer" case that retries must survive).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// What a double does on one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Behave normally.
    None,
    /// Fail before doing anything (a refused connection, a 5xx).
    Fail,
    /// Time out before doing anything; the caller cannot know more than that.
    Timeout,
    /// Do the work, then lose the answer: the caller sees a failure although it took effect.
    UnknownOutcome,
}

#[derive(Debug, Default)]
struct Plan {
    queued: HashMap<String, VecDeque<Fault>>,
    always: HashMap<String, Fault>,
    calls: HashMap<String, u64>,
}

/// A script of faults per operation, shared by clones.
///
/// ```
/// use citycard_testkit::{Fault, Faults};
///
/// let faults = Faults::new();
/// faults.next("add_pass", Fault::Timeout);
/// assert_eq!(faults.check("add_pass"), Fault::Timeout);
/// assert_eq!(faults.check("add_pass"), Fault::None);
/// faults.always("*", Fault::Fail);
/// assert_eq!(faults.check("anything"), Fault::Fail);
/// assert_eq!(faults.calls("add_pass"), 2);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Faults {
    plan: Arc<Mutex<Plan>>,
}

impl Faults {
    /// No faults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a fault for the next call of `operation` (`"*"` means any operation).
    pub fn next(&self, operation: &str, fault: Fault) {
        self.lock()
            .queued
            .entry(operation.to_owned())
            .or_default()
            .push_back(fault);
    }

    /// Makes every call of `operation` (`"*"` for all) behave this way until [`Faults::clear`].
    pub fn always(&self, operation: &str, fault: Fault) {
        self.lock().always.insert(operation.to_owned(), fault);
    }

    /// Removes every fault.
    pub fn clear(&self) {
        let mut plan = self.lock();
        plan.queued.clear();
        plan.always.clear();
    }

    /// Called by a double at the start of `operation`: what should it do?
    pub fn check(&self, operation: &str) -> Fault {
        let mut plan = self.lock();
        *plan.calls.entry(operation.to_owned()).or_default() += 1;
        for name in [operation, "*"] {
            if let Some(fault) = plan.queued.get_mut(name).and_then(VecDeque::pop_front) {
                return fault;
            }
        }
        for name in [operation, "*"] {
            if let Some(fault) = plan.always.get(name) {
                return *fault;
            }
        }
        Fault::None
    }

    /// How many times `operation` was called.
    pub fn calls(&self, operation: &str) -> u64 {
        self.lock().calls.get(operation).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner())
    }
}
