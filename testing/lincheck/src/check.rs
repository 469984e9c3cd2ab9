//! The checker: operations, the model trait, the verdict, and the search.

use std::collections::HashSet;
use std::fmt::{self, Debug, Write as _};
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// One operation of a history: what a client asked, when, and what it got back when.
///
/// Times are in any unit, from any origin, as long as all operations of one history share them
/// (a [`Recorder`](crate::Recorder) uses nanoseconds since its creation). An operation `a`
/// precedes `b` in real time iff `a.ret < b.call`; operations whose intervals touch or overlap
/// are concurrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// Who issued it (for explanations only: the checker orders by time, not by client).
    pub client: u64,
    /// What was asked.
    pub input: I,
    /// When it was called.
    pub call: u64,
    /// What came back; `None` if the outcome is unknown (a timeout, a crashed server). Such an
    /// operation may have taken effect at any point after `call`, or never.
    pub output: Option<O>,
    /// When it returned. Ignored (treated as +∞) when `output` is `None`; a `ret` before `call`
    /// is treated as `call`.
    pub ret: u64,
}

/// A sequential specification: the behaviour of one correct copy, as executable Rust.
///
/// # Examples
/// A counter whose `Add` returns the new value:
/// ```
/// use std::time::Duration;
/// use cell_lincheck::{Model, Operation, Verdict, check};
///
/// #[derive(Debug)]
/// struct Counter;
/// impl Model for Counter {
///     type State = i64;
///     type Input = i64; // add this much
///     type Output = i64; // the new value
///     fn init(&self) -> i64 {
///         0
///     }
///     fn step(&self, state: &i64, add: &i64, output: Option<&i64>) -> Option<i64> {
///         let next = state + add;
///         // An unknown outcome (`None`) is possible from every state.
///         (output.is_none() || output == Some(&next)).then_some(next)
///     }
/// }
///
/// let op = |client, input, call, output, ret| Operation { client, input, call, output, ret };
/// // Two concurrent adds: whichever ran first returned 1.
/// let history = [op(1, 1, 0, Some(2), 10), op(2, 1, 0, Some(1), 10)];
/// assert_eq!(check(&Counter, &history, Duration::from_secs(1)), Verdict::Linearizable);
/// // Both saw 1: a lost update.
/// let history = [op(1, 1, 0, Some(1), 10), op(2, 1, 0, Some(1), 10)];
/// assert!(!check(&Counter, &history, Duration::from_secs(1)).is_linearizable());
/// ```
pub trait Model {
    /// The model's state. Compared and hashed to memoize explored configurations, so it
    /// should be small and canonical (equal states compare equal).
    type State: Clone + Eq + Hash + Debug;
    /// An operation's input.
    type Input: Debug;
    /// An operation's output.
    type Output: Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Applies `input` to `state`. Returns the next state if `output` is what a correct copy
    /// in `state` could have returned, `None` if that output is impossible from `state`.
    ///
    /// `output` is `None` when the outcome is unknown: then the step must succeed, returning
    /// the state after the operation's effect (an operation placed after every other one is
    /// observed by nobody, so "it never happened" needs no separate case).
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;

    /// Splits a history into independent sub-histories (indices into `history`, each index in
    /// at most one part) whose operations do not affect one another — one per key for a
    /// key-value store. The history is linearizable iff every part is (P-compositionality);
    /// small parts are much faster to check. The default is one part holding everything.
    ///
    /// An operation left out of every part is not checked: a model may leave out operations
    /// that cannot change the verdict, such as an unknown-outcome read (which constrains
    /// nothing). Indices past the history's end are ignored.
    fn partition(&self, history: &[Operation<Self::Input, Self::Output>]) -> Vec<Vec<usize>> {
        vec![(0..history.len()).collect()]
    }
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Some order of the operations, each between its call and its return, is a legal run of
    /// the model.
    Linearizable,
    /// No such order exists.
    NotLinearizable {
        /// The index of the failing part in the model's [`Model::partition`] (of one failing
        /// part if several fail).
        partition: usize,
        /// The longest linearizable sequence found in that part, as indices into the history,
        /// in linearization order: after these, no pending operation could take effect next.
        /// (Every order of the part fails; this is the one that got furthest.)
        longest_prefix: Vec<usize>,
        /// A readable account: the state after that prefix, the operation that had to take
        /// effect before its return, and why each candidate could not.
        explanation: String,
    },
    /// The check ran out of time before reaching a verdict (no violation found so far).
    Timeout,
}

impl Verdict {
    /// Whether this is [`Verdict::Linearizable`].
    ///
    /// # Examples
    /// ```
    /// assert!(cell_lincheck::Verdict::Linearizable.is_linearizable());
    /// assert!(!cell_lincheck::Verdict::Timeout.is_linearizable());
    /// ```
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// Checks whether `history` is linearizable with respect to `model`, giving up after
/// `timeout` (`Duration::MAX` for never). The model's parts are checked in parallel, one
/// thread per available core; the first violation stops the others.
///
/// A timeout of zero always yields [`Verdict::Timeout`] for a non-empty history.
///
/// # Examples
/// See the [crate documentation](crate) and [`Model`].
pub fn check<M>(model: &M, history: &[Operation<M::Input, M::Output>], timeout: Duration) -> Verdict
where
    M: Model + Sync,
    M::Input: Sync,
    M::Output: Sync,
{
    let deadline = Instant::now().checked_add(timeout);
    let parts: Vec<Vec<usize>> = model
        .partition(history)
        .into_iter()
        .map(|part| part.into_iter().filter(|&i| i < history.len()).collect())
        .collect();
    let stop = AtomicBool::new(false);
    let next = AtomicUsize::new(0);
    let workers = thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(parts.len())
        .max(1);

    // Each worker takes the next unchecked part until none is left or one part failed.
    let work = || {
        let mut results = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(part) = parts.get(index) else { break };
            // The explanation is written here: model states need not be `Send`.
            let outcome = match Search::new(model, history, part).run(deadline, &stop) {
                Outcome::Linearizable => Ok(()),
                Outcome::OutOfTime => Err(None),
                Outcome::Stuck(stuck) => {
                    stop.store(true, Ordering::Relaxed);
                    Err(Some(stuck.verdict(model, history, index, part)))
                }
            };
            results.push((index, outcome));
        }
        results
    };
    // Per part: Ok, or the verdict of a failure, or `Err(None)` for out of time.
    let mut outcomes: Vec<(usize, Result<(), Option<Verdict>>)> = if workers == 1 {
        work()
    } else {
        thread::scope(|scope| {
            let handles: Vec<_> = (0..workers).map(|_| scope.spawn(work)).collect();
            handles
                .into_iter()
                .flat_map(|handle| match handle.join() {
                    Ok(results) => results,
                    // A panicking model is a bug in the test: let it fail the test.
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        })
    };
    outcomes.sort_by_key(|(index, _)| *index);

    let mut timed_out = outcomes.len() < parts.len();
    for (_, outcome) in outcomes {
        match outcome {
            Ok(()) => {}
            Err(None) => timed_out = true,
            Err(Some(failure)) => return failure,
        }
    }
    if timed_out {
        Verdict::Timeout
    } else {
        Verdict::Linearizable
    }
}

/// How one part's search ended.
enum Outcome<S> {
    Linearizable,
    Stuck(Stuck<S>),
    /// The deadline passed, or another part failed first.
    OutOfTime,
}

/// Where a failed search got furthest: for the explanation.
struct Stuck<S> {
    /// Local operation ids, in linearization order.
    prefix: Vec<usize>,
    /// The model state after `prefix`.
    state: S,
    /// The operation whose return was reached while it was still pending.
    blocking: usize,
    /// The pending operations that were candidates to take effect next.
    candidates: Vec<usize>,
}

/// Marks the end of the event list.
const NIL: usize = usize::MAX;

/// The search over one part, on a doubly linked list of call and return events in time
/// order. Operation `i` (local id) has its call event at node `i` and its return event at node
/// `n + i`; node `2n` is the list's head. Linearizing an operation lifts both its events out
/// of the list; backtracking puts them back (the removed nodes keep their links, so undoing
/// in reverse order restores the list exactly).
struct Search<'a, M: Model> {
    model: &'a M,
    ops: Vec<&'a Operation<M::Input, M::Output>>,
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(model: &'a M, history: &'a [Operation<M::Input, M::Output>], part: &[usize]) -> Self {
        let ops: Vec<_> = part.iter().map(|&i| &history[i]).collect();
        let n = ops.len();
        // (time, 0 = call / 1 = return, node): at equal times calls come first, so operations
        // whose intervals touch count as concurrent.
        let mut events = Vec::with_capacity(2 * n);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.call, 0, i));
            events.push((return_time(op), 1, n + i));
        }
        events.sort_unstable();
        let head = 2 * n;
        let mut next = vec![NIL; 2 * n + 1];
        let mut prev = vec![NIL; 2 * n + 1];
        let mut last = head;
        for &(_, _, node) in &events {
            next[last] = node;
            prev[node] = last;
            last = node;
        }
        Search {
            model,
            ops,
            next,
            prev,
        }
    }

    fn run(mut self, deadline: Option<Instant>, stop: &AtomicBool) -> Outcome<M::State> {
        let n = self.ops.len();
        let head = 2 * n;
        let mut state = self.model.init();
        let mut linearized = Bitset::new(n);
        let mut explored: HashSet<(Bitset, M::State)> = HashSet::new();
        // The linearized operations in order, each with the state before it.
        let mut calls: Vec<(usize, M::State)> = Vec::new();
        let mut furthest: Option<Stuck<M::State>> = None;
        let mut steps: u64 = 0;
        let mut node = self.next[head];
        while self.next[head] != NIL {
            if steps.is_multiple_of(1024) && out_of_time(deadline, stop) {
                return Outcome::OutOfTime;
            }
            steps += 1;
            if node < n {
                // A call: try to linearize this operation now.
                let op = self.ops[node];
                if let Some(after) = self.model.step(&state, &op.input, op.output.as_ref()) {
                    linearized.set(node);
                    if explored.insert((linearized.clone(), after.clone())) {
                        calls.push((node, std::mem::replace(&mut state, after)));
                        self.lift(node);
                        node = self.next[head];
                        continue;
                    }
                    linearized.clear(node);
                }
                node = self.next[node];
            } else {
                // A return of a pending operation: it must have taken effect by now, so the
                // last choice was wrong. Remember how far we got, then backtrack.
                if furthest
                    .as_ref()
                    .is_none_or(|f| calls.len() > f.prefix.len())
                {
                    furthest = Some(Stuck {
                        prefix: calls.iter().map(|(op, _)| *op).collect(),
                        state: state.clone(),
                        blocking: node - n,
                        candidates: self.calls_before(node),
                    });
                }
                let Some((op, before)) = calls.pop() else {
                    // Nothing left to undo: every order failed. (`furthest` was set above.)
                    return furthest.map_or(Outcome::OutOfTime, Outcome::Stuck);
                };
                state = before;
                linearized.clear(op);
                self.unlift(op);
                node = self.next[op];
            }
        }
        Outcome::Linearizable
    }

    /// Removes operation `op`'s call and return events from the list.
    fn lift(&mut self, op: usize) {
        let ret = op + self.ops.len();
        for node in [op, ret] {
            let (p, q) = (self.prev[node], self.next[node]);
            self.next[p] = q;
            if q != NIL {
                self.prev[q] = p;
            }
        }
    }

    /// Puts back what [`Search::lift`] removed (the most recent lift first).
    fn unlift(&mut self, op: usize) {
        let ret = op + self.ops.len();
        for node in [ret, op] {
            let (p, q) = (self.prev[node], self.next[node]);
            self.next[p] = node;
            if q != NIL {
                self.prev[q] = node;
            }
        }
    }

    /// The call events in the list before `until`: the operations that could take effect
    /// before it.
    fn calls_before(&self, until: usize) -> Vec<usize> {
        let n = self.ops.len();
        let mut out = Vec::new();
        let mut node = self.next[2 * n];
        while node != until && node != NIL {
            if node < n {
                out.push(node);
            }
            node = self.next[node];
        }
        out
    }
}

impl<S: Debug> Stuck<S> {
    fn verdict<M: Model<State = S>>(
        &self,
        model: &M,
        history: &[Operation<M::Input, M::Output>],
        partition: usize,
        part: &[usize],
    ) -> Verdict {
        let global = |local: usize| part[local];
        let longest_prefix: Vec<usize> = self.prefix.iter().map(|&op| global(op)).collect();
        let mut text = String::new();
        // Writing to a String cannot fail; the results are ignored below for that reason.
        let _ = writeln!(
            text,
            "partition {partition} ({}) is not linearizable: no order of its operations within \
             their call and return times is a run of the model.",
            count(part.len())
        );
        let _ = writeln!(
            text,
            "The furthest any order got is {}{}",
            count(longest_prefix.len()),
            if longest_prefix.is_empty() {
                "."
            } else {
                ", ending with:"
            }
        );
        const SHOWN: usize = 8;
        if longest_prefix.len() > SHOWN {
            let _ = writeln!(text, "  … ({} earlier)", longest_prefix.len() - SHOWN);
        }
        for &op in longest_prefix.iter().rev().take(SHOWN).rev() {
            let _ = writeln!(text, "  {}", Shown(op, &history[op]));
        }
        let _ = writeln!(text, "State after them: {:?}", self.state);
        let blocking = global(self.blocking);
        let _ = writeln!(
            text,
            "Then {} must take effect before its return, but no pending operation can:",
            Shown(blocking, &history[blocking])
        );
        for &candidate in &self.candidates {
            let op = &history[global(candidate)];
            let why = match model.step(&self.state, &op.input, op.output.as_ref()) {
                None => "impossible in that state",
                Some(_) => "possible, but no order of the rest works after it",
            };
            let _ = writeln!(text, "  {}: {why}", Shown(global(candidate), op));
        }
        Verdict::NotLinearizable {
            partition,
            longest_prefix,
            explanation: text,
        }
    }
}

/// An operation as the explanation shows it.
struct Shown<'a, I, O>(usize, &'a Operation<I, O>);

impl<I: Debug, O: Debug> fmt::Display for Shown<'_, I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Shown(index, op) = self;
        write!(f, "op {index} (client {}: {:?} -> ", op.client, op.input)?;
        match &op.output {
            Some(output) => write!(f, "{output:?}, called {}, returned {})", op.call, op.ret),
            None => write!(f, "unknown, called {})", op.call),
        }
    }
}

/// "1 operation", "2 operations".
fn count(n: usize) -> String {
    if n == 1 {
        "1 operation".to_owned()
    } else {
        format!("{n} operations")
    }
}

fn return_time<I, O>(op: &Operation<I, O>) -> u64 {
    match op.output {
        Some(_) => op.ret.max(op.call),
        None => u64::MAX,
    }
}

fn out_of_time(deadline: Option<Instant>, stop: &AtomicBool) -> bool {
    stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d)
}

/// The set of linearized operations.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bitset(Box<[u64]>);

impl Bitset {
    fn new(len: usize) -> Self {
        Bitset(vec![0; len.div_ceil(64)].into_boxed_slice())
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}
