//! Recording a history from concurrent clients.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::Operation;

/// Records a history from many threads or tasks: clone it into each client.
///
/// Times are nanoseconds since the recorder was created, from a monotonic clock ([`Instant`]),
/// read under the recorder's lock so the recorded order of events is their real order. Call
/// [`Recorder::call`] just *before* sending a request and [`Recorder::ret`] just *after* its
/// response arrived: the recorded interval must contain the operation's real effect.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use cell_lincheck::models::{Register, RegisterInput as In, RegisterOutput as Out};
/// use cell_lincheck::{Recorder, Verdict, check};
///
/// let rec = Recorder::new();
/// let threads: Vec<_> = (0..4u64)
///     .map(|client| {
///         let rec = rec.clone();
///         std::thread::spawn(move || {
///             let h = rec.call(client, In::Put(client, client * 10));
///             // ... send the request, await the answer ...
///             rec.ret(h, Out::Written);
///             let h = rec.call(client, In::Get(client));
///             rec.unknown(h); // timed out
///         })
///     })
///     .collect();
/// for t in threads {
///     t.join().unwrap();
/// }
/// let history = rec.finish();
/// assert_eq!(history.len(), 8);
/// assert_eq!(check(&Register::new(), &history, Duration::from_secs(5)), Verdict::Linearizable);
/// ```
pub struct Recorder<I, O> {
    inner: Arc<Mutex<Inner<I, O>>>,
}

/// A pending operation of a [`Recorder`]: pass it to [`Recorder::ret`] or
/// [`Recorder::unknown`].
#[derive(Debug)]
#[must_use = "an operation's outcome is recorded with Recorder::ret or Recorder::unknown"]
pub struct Call {
    index: usize,
}

struct Inner<I, O> {
    start: Instant,
    ops: Vec<Operation<I, O>>,
}

impl<I, O> Recorder<I, O> {
    /// An empty history; its clock starts now.
    pub fn new() -> Self {
        Recorder {
            inner: Arc::new(Mutex::new(Inner {
                start: Instant::now(),
                ops: Vec::new(),
            })),
        }
    }

    /// Records that `client` is about to issue `input`.
    pub fn call(&self, client: u64, input: I) -> Call {
        let mut inner = self.lock();
        let call = inner.now();
        inner.ops.push(Operation {
            client,
            input,
            call,
            output: None,
            ret: 0,
        });
        Call {
            index: inner.ops.len() - 1,
        }
    }

    /// Records that the operation returned `output`, now.
    pub fn ret(&self, call: Call, output: O) {
        let mut inner = self.lock();
        let now = inner.now();
        if let Some(op) = inner.ops.get_mut(call.index) {
            op.output = Some(output);
            op.ret = now;
        }
    }

    /// Records that the operation's outcome is unknown (it timed out, or its server crashed):
    /// it may have taken effect at any point after its call, or never.
    pub fn unknown(&self, call: Call) {
        let mut inner = self.lock();
        if let Some(op) = inner.ops.get_mut(call.index) {
            op.output = None;
        }
    }

    /// The history so far, in call order. Operations still pending are unknown (their
    /// clients may still be running: their effects may come at any time).
    pub fn finish(&self) -> Vec<Operation<I, O>>
    where
        I: Clone,
        O: Clone,
    {
        self.lock().ops.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner<I, O>> {
        // A client that panicked while holding the lock left the history consistent (every
        // update is a single push or field write), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<I, O> Inner<I, O> {
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl<I, O> Clone for Recorder<I, O> {
    fn clone(&self) -> Self {
        Recorder {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<I, O> Default for Recorder<I, O> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I, O> fmt::Debug for Recorder<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("operations", &self.lock().ops.len())
            .finish()
    }
}
