//! `cell-lincheck`: a linearizability checker for histories recorded by tests.
//!
//! A test runs clients against a real system (celldb's raft cluster, under partitions from
//! `cell-faultproxy`), records every operation with the time it was called and the time it
//! returned, and asks this crate whether some order of those operations, each placed between
//! its call and its return, is a legal sequential run of a *model* — the specification written
//! as plain Rust ([`Model`]). If none is, the history is not linearizable: the system showed a
//! client something no correct single copy could have.
//!
//! Principal items:
//! - [`Operation`]: one recorded operation (client, input, call time, output, return time);
//!   an output of `None` means the outcome is unknown (a timeout, a crashed server);
//! - [`Model`]: the sequential specification (`init`, `step`, and an optional `partition`);
//! - [`check`] → [`Verdict`]: linearizable, not (with the longest linearizable prefix found and
//!   a readable explanation), or out of time;
//! - [`models::Register`] (a key-value register, one partition per key) and [`models::Bank`]
//!   (transfers and consistent reads of all balances);
//! - [`Recorder`]: records a history from many threads or tasks with a monotonic clock.
//!
//! Key design decision: the search is the algorithm of [porcupine] (Wing & Gong's search with
//! Lowe's just-in-time linearization, memoizing every (set of linearized operations, model
//! state) already explored, so an order that reaches a known configuration is cut off), split
//! into independent sub-histories by the model's partition function (P-compositionality:
//! a key-value history is linearizable iff each key's history is), checked in parallel. Written
//! for this crate from the paper and porcupine's documentation; no code is shared.
//!
//! Unknown outcomes are handled the simple, sound way: such an operation's return time is
//! treated as +∞, so it may take effect at any point after its call; an effect placed after
//! every other operation is observed by nobody, which covers "it never happened".
//!
//! What it is not: a history generator or a fault injector (tests do that), and not a
//! visualizer. It checks linearizability only — not serializability of multi-key transactions,
//! unless the model makes a whole transaction one operation (as [`models::Bank`] does for a
//! transfer and a read of all balances).
//!
//! [porcupine]: https://github.com/anishathalye/porcupine
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use cell_lincheck::models::{Register, RegisterInput as In, RegisterOutput as Out};
//! use cell_lincheck::{Operation, Verdict, check};
//!
//! let op = |client, input, call, output, ret| Operation { client, input, call, output, ret };
//! // Client 1 writes 1 to key "x" between t=0 and t=10; client 2 reads "x" during the write.
//! let history = vec![
//!     op(1, In::Put("x", 1), 0, Some(Out::Written), 10),
//!     op(2, In::Get("x"), 2, Some(Out::Read(Some(1))), 5),
//!     op(2, In::Get("x"), 6, Some(Out::Read(None)), 8),
//! ];
//! // Client 2 saw the write, then did not: no order explains that.
//! let verdict = check(&Register::new(), &history, Duration::from_secs(5));
//! let Verdict::NotLinearizable { longest_prefix, explanation, .. } = verdict else {
//!     panic!("expected a violation, got {verdict:?}");
//! };
//! assert_eq!(longest_prefix, vec![0, 1]); // the write, then the first read
//! assert!(explanation.contains("Get(\"x\")"), "{explanation}");
//!
//! // Without the second read, it is linearizable.
//! let verdict = check(&Register::new(), &history[..2], Duration::from_secs(5));
//! assert_eq!(verdict, Verdict::Linearizable);
//! ```

mod check;
pub mod models;
mod recorder;

pub use check::{Model, Operation, Verdict, check};
pub use recorder::{Call, Recorder};
