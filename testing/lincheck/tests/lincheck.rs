//! cell-lincheck's tests, one binary. Contents:
//! - `register_*`: hand-written key-value histories, linearizable and not;
//! - `bank_*`: hand-written bank histories (torn reads, lost transfers, refusals);
//! - `unknown_*`: operations whose outcome is unknown, taking effect and not;
//! - `checker_*`: the checker itself (partitions, timeouts, explanations, odd input);
//! - `recorder_*`: histories recorded from threads;
//! - `simulated_*`: proptest over histories of a simulated correct register and bank (always
//!   linearizable), and the same with one injected stale read or wrong balance (always caught);
//! - `big_*`: a register history of 2,000 operations, 8 clients, 20 keys, and a bank history
//!   of 1,000 operations in one partition, both linearizable. (How fast the checker is lives
//!   in no test: the timeout below only keeps a search that never ends from hanging the run.)

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use std::collections::BTreeMap;
use std::time::Duration;

use cell_lincheck::models::{Bank, BankInput, BankOutput, Register, RegisterInput, RegisterOutput};
use cell_lincheck::{Model, Operation, Recorder, Verdict, check};
use proptest::prelude::*;

type RegOp = Operation<RegisterInput<u64, u64>, RegisterOutput<u64>>;
type BankOp = Operation<BankInput, BankOutput>;

/// A guard against a search that never ends, not a speed requirement: every history here is
/// checked in well under a second.
const TIMEOUT: Duration = Duration::from_secs(600);

fn put(client: u64, key: u64, value: u64, call: u64, ret: u64) -> RegOp {
    Operation {
        client,
        input: RegisterInput::Put(key, value),
        call,
        output: Some(RegisterOutput::Written),
        ret,
    }
}

fn get(client: u64, key: u64, read: Option<u64>, call: u64, ret: u64) -> RegOp {
    Operation {
        client,
        input: RegisterInput::Get(key),
        call,
        output: Some(RegisterOutput::Read(read)),
        ret,
    }
}

fn unknown<I, O>(mut op: Operation<I, O>) -> Operation<I, O> {
    op.output = None;
    op.ret = 0;
    op
}

fn check_register(history: &[RegOp]) -> Verdict {
    check(&Register::new(), history, TIMEOUT)
}

/// The failure's longest prefix, or a test failure if the verdict is not a violation.
fn violation(verdict: Verdict) -> (usize, Vec<usize>, String) {
    match verdict {
        Verdict::NotLinearizable {
            partition,
            longest_prefix,
            explanation,
        } => (partition, longest_prefix, explanation),
        other => panic!("expected a violation, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Register

#[test]
fn register_sequential_history_is_linearizable() {
    let history = [
        get(1, 0, None, 0, 1),
        put(1, 0, 5, 2, 3),
        get(2, 0, Some(5), 4, 5),
        put(2, 0, 6, 6, 7),
        get(1, 0, Some(6), 8, 9),
    ];
    assert_eq!(check_register(&history), Verdict::Linearizable);
}

#[test]
fn register_read_concurrent_with_a_write_may_see_either_value() {
    let old = [
        put(1, 0, 1, 0, 1),
        put(1, 0, 2, 2, 10),
        get(2, 0, Some(1), 3, 4),
    ];
    let new = [
        put(1, 0, 1, 0, 1),
        put(1, 0, 2, 2, 10),
        get(2, 0, Some(2), 3, 4),
    ];
    assert_eq!(check_register(&old), Verdict::Linearizable);
    assert_eq!(check_register(&new), Verdict::Linearizable);
}

#[test]
fn register_stale_read_after_a_completed_write_is_caught() {
    let history = [
        put(1, 0, 1, 0, 1),
        put(1, 0, 2, 2, 3),
        get(2, 0, Some(1), 4, 5),
    ];
    let (partition, prefix, explanation) = violation(check_register(&history));
    assert_eq!(partition, 0);
    assert_eq!(prefix, vec![0, 1]);
    assert!(
        explanation.contains("op 2 (client 2: Get(0)"),
        "{explanation}"
    );
    assert!(
        explanation.contains("impossible in that state"),
        "{explanation}"
    );
}

#[test]
fn register_read_of_a_value_never_written_is_caught() {
    let history = [put(1, 0, 1, 0, 10), get(2, 0, Some(9), 2, 3)];
    let (_, prefix, _) = violation(check_register(&history));
    // The write can go first (it is concurrent), and then the read still fails.
    assert_eq!(prefix, vec![0]);
}

#[test]
fn register_readers_disagreeing_on_the_order_of_two_writes_are_caught() {
    let history = [
        put(1, 0, 1, 0, 100),
        put(2, 0, 2, 0, 100),
        // Reader 3 sees 1 then 2; reader 4 sees 2 then 1: no single order of the writes.
        get(3, 0, Some(1), 10, 20),
        get(3, 0, Some(2), 30, 40),
        get(4, 0, Some(2), 10, 20),
        get(4, 0, Some(1), 30, 40),
    ];
    violation(check_register(&history));
    // Either reader alone is fine.
    assert_eq!(check_register(&history[..4]), Verdict::Linearizable);
}

#[test]
fn register_read_going_back_in_time_is_caught() {
    // One client reads the new value, a later read (by anyone) returns the old one.
    let history = [
        put(1, 0, 1, 0, 1),
        put(1, 0, 2, 2, 50),
        get(2, 0, Some(2), 10, 11),
        get(3, 0, Some(1), 12, 13),
    ];
    violation(check_register(&history));
}

#[test]
fn register_keys_are_independent_partitions() {
    let history = [
        put(1, 7, 1, 0, 1),
        put(1, 3, 1, 0, 1),
        get(2, 7, Some(1), 2, 3),
        // Key 3 reads a value nobody wrote.
        get(2, 3, Some(2), 2, 3),
        get(2, 3, Some(1), 4, 5),
    ];
    assert_eq!(
        Register::new().partition(&history),
        vec![vec![1, 3, 4], vec![0, 2]],
        "one part per key, in key order"
    );
    let (partition, prefix, explanation) = violation(check_register(&history));
    assert_eq!(partition, 0, "key 3's part");
    assert_eq!(prefix, vec![1], "indices into the whole history");
    assert!(explanation.contains("Get(3)"), "{explanation}");
}

#[test]
fn register_partition_leaves_out_unknown_ops_that_cannot_matter() {
    let history = [
        put(1, 0, 1, 0, 1),
        unknown(put(1, 0, 2, 2, 0)), // 2 is never read: as if it never happened
        unknown(put(1, 0, 3, 2, 0)), // 3 is read: kept
        unknown(get(2, 0, Some(1), 3, 4)), // unknown read: constrains nothing
        get(2, 0, Some(3), 5, 6),
        unknown(put(1, 1, 9, 2, 0)), // key 1 has nothing else
    ];
    assert_eq!(
        Register::new().partition(&history),
        vec![vec![0, 2, 4], vec![]]
    );
    assert_eq!(check_register(&history), Verdict::Linearizable);
}

#[test]
fn register_output_of_the_wrong_kind_is_caught() {
    let history = [Operation {
        client: 1,
        input: RegisterInput::Put(0, 1),
        call: 0,
        output: Some(RegisterOutput::Read(None)),
        ret: 1,
    }];
    violation(check_register(&history));
}

// ---------------------------------------------------------------------------------------------
// Bank

fn transfer(
    client: u64,
    from: usize,
    to: usize,
    amount: i64,
    ok: bool,
    call: u64,
    ret: u64,
) -> BankOp {
    Operation {
        client,
        input: BankInput::Transfer { from, to, amount },
        call,
        output: Some(if ok {
            BankOutput::Transferred
        } else {
            BankOutput::Insufficient
        }),
        ret,
    }
}

fn read_all(client: u64, balances: &[i64], call: u64, ret: u64) -> BankOp {
    Operation {
        client,
        input: BankInput::ReadAll,
        call,
        output: Some(BankOutput::Balances(balances.to_vec())),
        ret,
    }
}

fn check_bank(history: &[BankOp]) -> Verdict {
    check(&Bank::new(vec![100, 50, 0]), history, TIMEOUT)
}

#[test]
fn bank_concurrent_transfers_and_reads_are_linearizable() {
    let history = [
        transfer(1, 0, 1, 30, true, 0, 10),
        transfer(2, 1, 2, 60, true, 0, 10),
        // Transfer 2 needs transfer 1's money (50 < 60): reads see 1, then both.
        read_all(3, &[70, 80, 0], 2, 4),
        read_all(3, &[70, 20, 60], 5, 8),
        read_all(4, &[100, 50, 0], 1, 2),
        transfer(4, 2, 0, 61, false, 11, 12),
        read_all(4, &[70, 20, 60], 13, 14),
    ];
    assert_eq!(check_bank(&history), Verdict::Linearizable);
}

#[test]
fn bank_read_with_a_wrong_total_is_caught() {
    let history = [
        transfer(1, 0, 1, 30, true, 0, 10),
        // Money left account 0 and did not arrive: the total is 120, not 150.
        read_all(2, &[70, 50, 0], 2, 4),
    ];
    let (_, _, explanation) = violation(check_bank(&history));
    assert!(explanation.contains("ReadAll"), "{explanation}");
}

#[test]
fn bank_lost_transfer_is_caught() {
    let history = [
        transfer(1, 0, 1, 30, true, 0, 1),
        // The acknowledged transfer is gone.
        read_all(2, &[100, 50, 0], 2, 3),
    ];
    violation(check_bank(&history));
}

#[test]
fn bank_refusal_with_enough_money_is_caught() {
    let history = [transfer(1, 1, 2, 50, false, 0, 1)];
    violation(check_bank(&history));
    // And a success without enough money.
    let history = [transfer(1, 1, 2, 51, true, 0, 1)];
    violation(check_bank(&history));
}

#[test]
fn bank_refusal_explained_by_a_concurrent_transfer_is_linearizable() {
    let history = [
        transfer(1, 0, 2, 80, true, 0, 10),
        // Concurrent with the first: refused because it ran second.
        transfer(2, 0, 1, 80, false, 5, 6),
        read_all(3, &[20, 50, 80], 11, 12),
    ];
    assert_eq!(check_bank(&history), Verdict::Linearizable);
}

#[test]
fn bank_transfer_on_a_missing_account_is_caught() {
    let history = [transfer(1, 0, 9, 1, true, 0, 1)];
    violation(check_bank(&history));
}

// ---------------------------------------------------------------------------------------------
// Unknown outcomes

#[test]
fn unknown_write_may_take_effect() {
    let history = [
        put(1, 0, 1, 0, 1),
        unknown(put(1, 0, 2, 2, 0)),
        get(2, 0, Some(2), 100, 101),
    ];
    assert_eq!(check_register(&history), Verdict::Linearizable);
}

#[test]
fn unknown_write_may_never_happen() {
    let history = [
        put(1, 0, 1, 0, 1),
        unknown(put(1, 0, 2, 2, 0)),
        get(2, 0, Some(1), 100, 101),
    ];
    assert_eq!(check_register(&history), Verdict::Linearizable);
}

#[test]
fn unknown_write_may_take_effect_long_after_its_call() {
    let history = [
        unknown(put(1, 0, 2, 0, 0)),
        get(2, 0, None, 100, 101),
        get(2, 0, Some(2), 200, 201),
    ];
    assert_eq!(check_register(&history), Verdict::Linearizable);
}

#[test]
fn unknown_write_takes_effect_at_most_once() {
    let history = [
        put(1, 0, 1, 0, 1),
        unknown(put(1, 0, 2, 2, 0)),
        get(2, 0, Some(2), 10, 11),
        put(1, 0, 3, 12, 13),
        // The unknown write was seen, then overwritten; it cannot come back.
        get(2, 0, Some(2), 20, 21),
    ];
    violation(check_register(&history));
}

#[test]
fn unknown_write_cannot_take_effect_before_its_call() {
    let history = [get(2, 0, Some(2), 0, 1), unknown(put(1, 0, 2, 5, 0))];
    violation(check_register(&history));
}

#[test]
fn unknown_read_constrains_nothing() {
    let history = [put(1, 0, 1, 0, 1), unknown(get(2, 0, Some(7), 2, 3))];
    assert_eq!(check_register(&history), Verdict::Linearizable);
}

#[test]
fn unknown_transfer_may_or_may_not_take_effect() {
    let took = [
        unknown(transfer(1, 0, 1, 30, true, 0, 0)),
        read_all(2, &[70, 80, 0], 5, 6),
    ];
    let not = [
        unknown(transfer(1, 0, 1, 30, true, 0, 0)),
        read_all(2, &[100, 50, 0], 5, 6),
    ];
    let half = [
        unknown(transfer(1, 0, 1, 30, true, 0, 0)),
        read_all(2, &[70, 50, 0], 5, 6),
    ];
    let unknown_read = unknown(read_all(2, &[1, 2, 3], 5, 6));
    assert_eq!(
        Bank::new(vec![100, 50, 0]).partition(&[took[0].clone(), unknown_read.clone()]),
        vec![vec![0]],
        "an unknown read constrains nothing"
    );
    assert_eq!(check_bank(&[unknown_read]), Verdict::Linearizable);
    assert_eq!(check_bank(&took), Verdict::Linearizable);
    assert_eq!(check_bank(&not), Verdict::Linearizable);
    violation(check_bank(&half));
}

// ---------------------------------------------------------------------------------------------
// Checker

#[test]
fn checker_empty_history_is_linearizable() {
    assert_eq!(check_register(&[]), Verdict::Linearizable);
    assert_eq!(check_bank(&[]), Verdict::Linearizable);
}

#[test]
fn checker_zero_timeout_gives_up() {
    let history = [put(1, 0, 1, 0, 1)];
    assert_eq!(
        check(&Register::new(), &history, Duration::ZERO),
        Verdict::Timeout
    );
}

#[test]
fn checker_intervals_that_touch_are_concurrent() {
    // The read returns at 5, the write is called at 5: either order is allowed.
    let history = [get(2, 0, Some(1), 0, 5), put(1, 0, 1, 5, 6)];
    assert_eq!(check_register(&history), Verdict::Linearizable);
    // One tick apart, the read precedes the write and cannot see it.
    let history = [get(2, 0, Some(1), 0, 4), put(1, 0, 1, 5, 6)];
    violation(check_register(&history));
}

#[test]
fn checker_return_before_call_counts_as_instant() {
    let history = [put(1, 0, 1, 10, 3), get(2, 0, Some(1), 11, 12)];
    assert_eq!(check_register(&history), Verdict::Linearizable);
    let history = [put(1, 0, 1, 10, 3), get(2, 0, None, 11, 12)];
    violation(check_register(&history));
}

#[test]
fn checker_explanation_names_the_stuck_operation_and_the_state() {
    let history = [
        put(1, 0, 1, 0, 1),
        put(1, 0, 2, 2, 3),
        get(2, 0, Some(1), 4, 10),
        put(3, 0, 3, 5, 6),
    ];
    let (_, prefix, explanation) = violation(check_register(&history));
    // The concurrent write of 3 can go before the read; the read fails either way.
    assert_eq!(prefix, vec![0, 1, 3]);
    assert!(
        explanation.contains("State after them: {0: 3}"),
        "{explanation}"
    );
    assert!(
        explanation.contains(
            "op 2 (client 2: Get(0) -> Read(Some(1)), called 4, returned 10) must take effect"
        ),
        "{explanation}"
    );
    assert!(
        explanation.contains(
            "op 2 (client 2: Get(0) -> Read(Some(1)), called 4, returned 10): impossible"
        ),
        "{explanation}"
    );
}

/// A model whose partition function returns an index past the history's end.
#[derive(Debug)]
struct Sloppy;

impl Model for Sloppy {
    type State = u8;
    type Input = u8;
    type Output = u8;
    fn init(&self) -> u8 {
        0
    }
    fn step(&self, state: &u8, input: &u8, output: Option<&u8>) -> Option<u8> {
        (output.is_none() || output == Some(input)).then_some(*state)
    }
    fn partition(&self, history: &[Operation<u8, u8>]) -> Vec<Vec<usize>> {
        vec![(0..history.len() + 3).collect()]
    }
}

#[test]
fn checker_ignores_partition_indices_out_of_range() {
    let ok = [Operation {
        client: 0,
        input: 1,
        call: 0,
        output: Some(1),
        ret: 1,
    }];
    let bad = [Operation {
        client: 0,
        input: 1,
        call: 0,
        output: Some(2),
        ret: 1,
    }];
    assert_eq!(check(&Sloppy, &ok, TIMEOUT), Verdict::Linearizable);
    violation(check(&Sloppy, &bad, TIMEOUT));
}

// ---------------------------------------------------------------------------------------------
// Recorder

#[test]
fn recorder_records_real_time_order_across_threads() {
    let rec = Recorder::new();
    // Each thread writes its own key, then reads it back; one read is left pending.
    std::thread::scope(|scope| {
        for client in 0..4u64 {
            let rec = rec.clone();
            scope.spawn(move || {
                let h = rec.call(client, RegisterInput::Put(client, client + 100));
                rec.ret(h, RegisterOutput::Written);
                let h = rec.call(client, RegisterInput::Get(client));
                if client == 3 {
                    let _pending = h;
                } else {
                    rec.ret(h, RegisterOutput::Read(Some(client + 100)));
                }
            });
        }
    });
    let history = rec.finish();
    assert_eq!(history.len(), 8);
    for op in &history {
        if op.output.is_some() {
            assert!(op.call <= op.ret, "{op:?}");
        }
    }
    let pending: Vec<_> = history.iter().filter(|op| op.output.is_none()).collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].input, RegisterInput::Get(3));
    assert_eq!(check_register(&history), Verdict::Linearizable);

    // A read recorded after a completed write, seeing the old value, is caught.
    let h = rec.call(9, RegisterInput::Get(0));
    rec.ret(h, RegisterOutput::Read(None));
    violation(check_register(&rec.finish()));
}

#[test]
fn recorder_unknown_marks_the_outcome_unknown() {
    let rec: Recorder<RegisterInput<u64, u64>, RegisterOutput<u64>> = Recorder::new();
    let h = rec.call(1, RegisterInput::Put(1, 1));
    rec.unknown(h);
    let history = rec.finish();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].output, None);
}

// ---------------------------------------------------------------------------------------------
// Simulation: a correct register and bank, driven by interleaved clients.

/// splitmix64: a tiny deterministic generator for the simulations (proptest picks the seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

/// Drives `clients` clients issuing `ops` operations against `apply` (a correct sequential
/// object). Each step of the clock advances one client: it calls a new operation, applies its
/// pending one (the linearization point, strictly between call and return), or returns. With
/// probability `unknown_pct` an operation's client gives up on it (output unknown) before or
/// after it was applied.
fn simulate<I: Clone, O: Clone>(
    seed: u64,
    clients: u64,
    ops: usize,
    unknown_pct: u64,
    mut next_input: impl FnMut(&mut Rng) -> I,
    mut apply: impl FnMut(&I) -> O,
) -> Vec<Operation<I, O>> {
    enum Pending<O> {
        Called(usize),
        Applied(usize, O),
    }
    let mut rng = Rng(seed);
    let mut history: Vec<Operation<I, O>> = Vec::new();
    let mut pending: Vec<Option<Pending<O>>> = (0..clients).map(|_| None).collect();
    let mut time = 0;
    while history.len() < ops || pending.iter().any(Option::is_some) {
        time += 1;
        let client = rng.below(clients);
        let slot = &mut pending[client as usize];
        *slot = match slot.take() {
            None if history.len() < ops => {
                history.push(Operation {
                    client,
                    input: next_input(&mut rng),
                    call: time,
                    output: None,
                    ret: 0,
                });
                Some(Pending::Called(history.len() - 1))
            }
            None => None,
            // Given up before taking effect: it never will.
            Some(Pending::Called(_)) if rng.percent(unknown_pct) => None,
            Some(Pending::Called(i)) => Some(Pending::Applied(i, apply(&history[i].input))),
            // Given up after taking effect.
            Some(Pending::Applied(..)) if rng.percent(unknown_pct) => None,
            Some(Pending::Applied(i, output)) => {
                history[i].output = Some(output);
                history[i].ret = time;
                None
            }
        };
    }
    history
}

fn simulate_register(
    seed: u64,
    clients: u64,
    keys: u64,
    ops: usize,
    unknown_pct: u64,
) -> Vec<RegOp> {
    let mut state: BTreeMap<u64, u64> = BTreeMap::new();
    let mut next_value = 0;
    simulate(
        seed,
        clients,
        ops,
        unknown_pct,
        |rng| {
            let key = rng.below(keys);
            if rng.percent(50) {
                next_value += 1;
                RegisterInput::Put(key, next_value)
            } else {
                RegisterInput::Get(key)
            }
        },
        |input| match input {
            RegisterInput::Put(key, value) => {
                state.insert(*key, *value);
                RegisterOutput::Written
            }
            RegisterInput::Get(key) => RegisterOutput::Read(state.get(key).copied()),
        },
    )
}

fn simulate_bank(seed: u64, clients: u64, ops: usize, unknown_pct: u64) -> Vec<BankOp> {
    let mut balances = vec![100, 50, 0];
    simulate(
        seed,
        clients,
        ops,
        unknown_pct,
        |rng| {
            if rng.percent(60) {
                BankInput::Transfer {
                    from: rng.below(3) as usize,
                    to: rng.below(3) as usize,
                    amount: rng.below(80) as i64,
                }
            } else {
                BankInput::ReadAll
            }
        },
        |input| match *input {
            BankInput::Transfer { from, to, amount } => {
                if balances[from] >= amount {
                    balances[from] -= amount;
                    balances[to] += amount;
                    BankOutput::Transferred
                } else {
                    BankOutput::Insufficient
                }
            }
            BankInput::ReadAll => BankOutput::Balances(balances.clone()),
        },
    )
}

/// Reads that can be made stale for sure: `(read, value)` where `value` was overwritten before
/// the read was called (values are unique per write, and no write of it can be reordered past
/// the overwrite).
fn stale_reads(history: &[RegOp]) -> Vec<(usize, Option<u64>)> {
    let completed_puts: Vec<(usize, u64, u64)> = history
        .iter()
        .enumerate()
        .filter(|(_, op)| op.output.is_some())
        .filter_map(|(i, op)| match op.input {
            RegisterInput::Put(key, value) => Some((i, key, value)),
            RegisterInput::Get(_) => None,
        })
        .collect();
    let mut out = Vec::new();
    for (g, read) in history.iter().enumerate() {
        let (RegisterInput::Get(key), Some(_)) = (&read.input, &read.output) else {
            continue;
        };
        for &(w, wkey, _) in &completed_puts {
            let over = &history[w];
            if wkey != *key || over.ret >= read.call {
                continue;
            }
            // A completed write precedes the read: the initial "no value" is stale...
            out.push((g, None));
            // ...and so is every value whose write completed before the overwrite began.
            for &(v, vkey, value) in &completed_puts {
                if vkey == *key && history[v].ret < over.call {
                    out.push((g, Some(value)));
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn simulated_register_histories_are_linearizable(
        seed: u64, clients in 1..8u64, keys in 1..4u64, ops in 1..120usize, unknown_pct in 0..10u64,
    ) {
        let history = simulate_register(seed, clients, keys, ops, unknown_pct);
        prop_assert_eq!(check_register(&history), Verdict::Linearizable);
    }

    #[test]
    fn simulated_register_with_one_stale_read_is_caught(
        seed: u64, clients in 2..8u64, keys in 1..3u64, ops in 40..120usize, unknown_pct in 0..10u64,
        pick: prop::sample::Index,
    ) {
        let mut history = simulate_register(seed, clients, keys, ops, unknown_pct);
        let stale = stale_reads(&history);
        prop_assume!(!stale.is_empty());
        let (read, value) = stale[pick.index(stale.len())];
        history[read].output = Some(RegisterOutput::Read(value));
        let verdict = check_register(&history);
        prop_assert!(matches!(verdict, Verdict::NotLinearizable { .. }), "{:?}", verdict);
    }

    #[test]
    fn simulated_bank_histories_are_linearizable(
        seed: u64, clients in 1..6u64, ops in 1..60usize, unknown_pct in 0..10u64,
    ) {
        let history = simulate_bank(seed, clients, ops, unknown_pct);
        prop_assert_eq!(check_bank(&history), Verdict::Linearizable);
    }

    #[test]
    fn simulated_bank_with_one_wrong_balance_is_caught(
        seed: u64, clients in 1..6u64, ops in 10..60usize, pick: prop::sample::Index,
        account in 0..3usize, delta in prop::sample::select(vec![-1i64, 1, 7]),
    ) {
        let mut history = simulate_bank(seed, clients, ops, 0);
        let reads: Vec<usize> = (0..history.len())
            .filter(|&i| matches!(history[i].output, Some(BankOutput::Balances(_))))
            .collect();
        prop_assume!(!reads.is_empty());
        let read = reads[pick.index(reads.len())];
        if let Some(BankOutput::Balances(b)) = &mut history[read].output {
            b[account] += delta; // the total is now wrong: no state has it
        }
        let verdict = check_bank(&history);
        prop_assert!(matches!(verdict, Verdict::NotLinearizable { .. }), "{:?}", verdict);
    }
}

#[test]
fn big_register_history_is_linearizable() {
    let history = simulate_register(18, 8, 20, 2_000, 2);
    assert_eq!(history.len(), 2_000);
    assert_eq!(check_register(&history), Verdict::Linearizable);
}

#[test]
fn big_bank_history_is_linearizable() {
    // One partition: every transfer and read in one search.
    let history = simulate_bank(18, 8, 1_000, 1);
    assert_eq!(check_bank(&history), Verdict::Linearizable);
}
