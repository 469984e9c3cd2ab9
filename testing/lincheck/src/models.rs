//! Ready-made models: a key-value [`Register`] and a [`Bank`].

use std::collections::BTreeMap;
use std::fmt::{self, Debug};
use std::hash::Hash;
use std::marker::PhantomData;

use crate::{Model, Operation};

/// A key-value store of registers: `Put` overwrites a key's value, `Get` reads it (`None` for
/// a key never written). Each key is its own partition, so large histories over many keys
/// check quickly.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use cell_lincheck::models::{Register, RegisterInput as In, RegisterOutput as Out};
/// use cell_lincheck::{Operation, Verdict, check};
///
/// let op = |client, input, call, output, ret| Operation { client, input, call, output, ret };
/// let history = vec![
///     op(1, In::Put(7, "a"), 0, Some(Out::Written), 1),
///     // A write whose outcome is unknown (the client timed out)...
///     op(1, In::Put(7, "b"), 2, None, 0),
///     // ...which a later read may see, or not.
///     op(2, In::Get(7), 5, Some(Out::Read(Some("b"))), 6),
///     op(2, In::Get(8), 5, Some(Out::Read(None)), 6),
/// ];
/// assert_eq!(check(&Register::new(), &history, Duration::from_secs(1)), Verdict::Linearizable);
/// ```
pub struct Register<K, V> {
    types: PhantomData<fn() -> (K, V)>,
}

/// An operation on a [`Register`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RegisterInput<K, V> {
    /// Write the value to the key.
    Put(K, V),
    /// Read the key.
    Get(K),
}

/// What a [`Register`] operation returned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RegisterOutput<V> {
    /// A `Put` completed.
    Written,
    /// A `Get` read this value (`None`: the key has no value).
    Read(Option<V>),
}

impl<K, V> Register<K, V> {
    /// The model (every key starts without a value).
    pub fn new() -> Self {
        Register { types: PhantomData }
    }
}

impl<K, V> Default for Register<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> Debug for Register<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Register")
    }
}

impl<K, V> Model for Register<K, V>
where
    K: Clone + Ord + Hash + Debug,
    V: Clone + Eq + Hash + Debug,
{
    type State = BTreeMap<K, V>;
    type Input = RegisterInput<K, V>;
    type Output = RegisterOutput<V>;

    fn init(&self) -> Self::State {
        BTreeMap::new()
    }

    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State> {
        match (input, output) {
            (RegisterInput::Put(key, value), None | Some(RegisterOutput::Written)) => {
                let mut next = state.clone();
                next.insert(key.clone(), value.clone());
                Some(next)
            }
            (RegisterInput::Get(_), None) => Some(state.clone()),
            (RegisterInput::Get(key), Some(RegisterOutput::Read(read))) => {
                (state.get(key) == read.as_ref()).then(|| state.clone())
            }
            // An output of the other kind: nothing correct returns that.
            (RegisterInput::Put(..), Some(RegisterOutput::Read(_)))
            | (RegisterInput::Get(_), Some(RegisterOutput::Written)) => None,
        }
    }

    /// One part per key, without the unknown-outcome operations that cannot matter: reads
    /// (they constrain nothing) and writes of a value no completed read returned. Such a write
    /// may as well never have happened: where it took effect, no read saw it before the next
    /// write of the key. Leaving them out keeps the search small; unknown writes are otherwise
    /// concurrent with everything after their call.
    fn partition(&self, history: &[Operation<Self::Input, Self::Output>]) -> Vec<Vec<usize>> {
        let mut read: BTreeMap<&K, Vec<&V>> = BTreeMap::new();
        for op in history {
            if let (RegisterInput::Get(key), Some(RegisterOutput::Read(Some(value)))) =
                (&op.input, &op.output)
            {
                read.entry(key).or_default().push(value);
            }
        }
        let mut by_key: BTreeMap<&K, Vec<usize>> = BTreeMap::new();
        for (i, op) in history.iter().enumerate() {
            let key = match (&op.input, &op.output) {
                (RegisterInput::Get(_), None) => continue,
                (RegisterInput::Put(key, value), None)
                    if !read.get(key).is_some_and(|values| values.contains(&value)) =>
                {
                    // Still a part of its own key, so every key appears.
                    by_key.entry(key).or_default();
                    continue;
                }
                (RegisterInput::Put(key, _) | RegisterInput::Get(key), _) => key,
            };
            by_key.entry(key).or_default().push(i);
        }
        by_key.into_values().collect()
    }
}

/// A bank: fixed accounts (indices into the initial balances) and two operations, each one
/// atomic transaction — a transfer between two accounts, and a consistent read of every
/// balance. The state is the balances; there is one partition (a transfer touches two
/// accounts, a read all of them).
///
/// A transfer succeeds iff both accounts exist and the source's balance is at least the
/// amount; otherwise it reports [`BankOutput::Insufficient`] and changes nothing.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use cell_lincheck::models::{Bank, BankInput as In, BankOutput as Out};
/// use cell_lincheck::{Operation, Verdict, check};
///
/// let op = |client, input, call, output, ret| Operation { client, input, call, output, ret };
/// let transfer = In::Transfer { from: 0, to: 1, amount: 30 };
/// let history = vec![
///     op(1, transfer, 0, Some(Out::Transferred), 10),
///     // A read concurrent with the transfer may see it or not; both are consistent.
///     op(2, In::ReadAll, 2, Some(Out::Balances(vec![100, 0])), 4),
///     op(2, In::ReadAll, 5, Some(Out::Balances(vec![70, 30])), 8),
/// ];
/// let bank = Bank::new(vec![100, 0]);
/// assert_eq!(check(&bank, &history, Duration::from_secs(1)), Verdict::Linearizable);
///
/// // A read that saw the money leave account 0 but not arrive in account 1.
/// let torn = op(3, In::ReadAll, 2, Some(Out::Balances(vec![70, 0])), 4);
/// let history = vec![history[0].clone(), torn];
/// assert!(!check(&bank, &history, Duration::from_secs(1)).is_linearizable());
/// ```
#[derive(Debug, Clone)]
pub struct Bank {
    initial: Vec<i64>,
}

/// An operation on a [`Bank`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BankInput {
    /// Move `amount` from account `from` to account `to`.
    Transfer {
        /// The source account.
        from: usize,
        /// The destination account.
        to: usize,
        /// How much.
        amount: i64,
    },
    /// Read every balance in one consistent snapshot.
    ReadAll,
}

/// What a [`Bank`] operation returned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BankOutput {
    /// The transfer happened.
    Transferred,
    /// The transfer was refused: the source's balance was below the amount.
    Insufficient,
    /// Every balance, by account.
    Balances(Vec<i64>),
}

impl Bank {
    /// A bank whose account `i` starts with `initial[i]`.
    pub fn new(initial: Vec<i64>) -> Self {
        Bank { initial }
    }
}

impl Model for Bank {
    type State = Vec<i64>;
    type Input = BankInput;
    type Output = BankOutput;

    fn init(&self) -> Self::State {
        self.initial.clone()
    }

    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State> {
        match input {
            &BankInput::Transfer { from, to, amount } => {
                let (Some(&balance), true) = (state.get(from), to < state.len()) else {
                    // No such account: nothing correct answers that.
                    return None;
                };
                let possible = balance >= amount;
                match output {
                    None | Some(BankOutput::Transferred) if possible => {
                        let mut next = state.clone();
                        // Overflowing balances: no correct bank got there.
                        next[from] = next[from].checked_sub(amount)?;
                        next[to] = next[to].checked_add(amount)?;
                        Some(next)
                    }
                    None => Some(state.clone()),
                    Some(BankOutput::Insufficient) if !possible => Some(state.clone()),
                    Some(_) => None,
                }
            }
            BankInput::ReadAll => match output {
                None => Some(state.clone()),
                Some(BankOutput::Balances(read)) if read == state => Some(state.clone()),
                Some(_) => None,
            },
        }
    }

    /// One part (transfers touch two accounts, reads all of them), without the reads whose
    /// outcome is unknown: they constrain nothing.
    fn partition(&self, history: &[Operation<Self::Input, Self::Output>]) -> Vec<Vec<usize>> {
        let kept = history
            .iter()
            .enumerate()
            .filter(|(_, op)| !matches!((&op.input, &op.output), (BankInput::ReadAll, None)));
        vec![kept.map(|(i, _)| i).collect()]
    }
}
