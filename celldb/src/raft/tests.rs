//! The state machine's determinism: the same committed log gives the same outcomes and the
//! same state, however entries are batched and wherever a replica restarts.

use super::CellRaft;
use super::cmd::{Cmd, CmdBuilder, Outcome};
use super::snapshot::range_digest;
use super::state_machine::StateMachine;
use openraft::entry::RaftEntry;
use openraft::type_config::alias::EntryOf;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::ops::Bound;

const KEYSPACES: [&str; 2] = ["t.a", "t.b"];

/// One generated write-set, in terms of the model's state when it is built.
#[derive(Debug, Clone)]
struct Spec {
    /// `(keyspace, key, fresh, value)`: check `key`; `fresh` uses the value the model holds,
    /// else `value` (often stale, so conflicts happen).
    points: Vec<(usize, u8, bool, Option<u8>)>,
    /// `(keyspace, fresh)`: check the whole keyspace's digest.
    ranges: Vec<(usize, bool)>,
    /// `(keyspace, key, value)`: `None` deletes.
    writes: Vec<(usize, u8, Option<u8>)>,
    /// Garbage bytes instead of a write-set.
    garbage: bool,
    /// `(second, retry)`: sent as a request of client session 1 (or 2, with `second`); with
    /// `retry`, it is instead a resend of that session's previous request (its outcome must be
    /// the first one's, and nothing is applied again).
    session: Option<(bool, bool)>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::collection::vec(
            (0..2usize, 0..4u8, any::<bool>(), prop::option::of(0..3u8)),
            0..3,
        ),
        prop::collection::vec((0..2usize, any::<bool>()), 0..2),
        prop::collection::vec((0..2usize, 0..4u8, prop::option::of(0..3u8)), 0..4),
        prop::bool::weighted(0.05),
        prop::option::of((any::<bool>(), prop::bool::weighted(0.3))),
    )
        .prop_map(|(points, ranges, writes, garbage, session)| Spec {
            points,
            ranges,
            writes,
            garbage,
            session,
        })
}

type Model = BTreeMap<(usize, Vec<u8>), Vec<u8>>;

fn model_digest(model: &Model, ks: usize) -> u64 {
    range_digest(
        model
            .iter()
            .filter(|((k, _), _)| *k == ks)
            .map(|((_, key), value)| (&key[..], &value[..])),
    )
}

/// Builds the commands from the specs, and the outcomes a reference model (a map, value
/// semantics, one entry at a time) gives them. The first two entries open client sessions 1
/// and 2 (a session's id is the index of the entry that opened it).
fn build(specs: &[Spec]) -> (Vec<Cmd>, Vec<Outcome>) {
    let mut model = Model::new();
    let mut cmds = Vec::new();
    let mut outcomes = Vec::new();
    for index in 1..=2 {
        cmds.push(CmdBuilder::open_session().finish().expect("encodes"));
        outcomes.push(Outcome::Committed { index });
    }
    // Per session: the next sequence number, and the last request with its outcome.
    let mut sessions: [(u64, Option<(Cmd, Outcome)>); 2] = [(1, None), (1, None)];
    for (i, spec) in specs.iter().enumerate() {
        let index = i as u64 + 3;
        if let Some((second, true)) = spec.session
            && let Some((cmd, outcome)) = sessions[usize::from(second)].1.clone()
        {
            cmds.push(cmd);
            outcomes.push(outcome);
            continue;
        }
        if spec.garbage {
            cmds.push(Cmd(vec![0xff; 7]));
            outcomes.push(Outcome::Rejected(String::new()));
            continue;
        }
        let mut cmd = CmdBuilder::new(0);
        let mut ok = true;
        for &(ks, key, fresh, value) in &spec.points {
            let current = model.get(&(ks, vec![key])).cloned();
            let seen = if fresh {
                current.clone()
            } else {
                value.map(|v| vec![v])
            };
            ok &= seen == current;
            cmd.check(KEYSPACES[ks], &[key], seen.as_deref());
        }
        for &(ks, fresh) in &spec.ranges {
            let digest = model_digest(&model, ks) ^ u64::from(!fresh);
            ok &= fresh;
            cmd.check_range(KEYSPACES[ks], Bound::Unbounded, Bound::Unbounded, digest);
        }
        for &(ks, key, value) in &spec.writes {
            match value {
                Some(v) => cmd.put(KEYSPACES[ks], &[key], &[v]),
                None => cmd.delete(KEYSPACES[ks], &[key]),
            };
        }
        let session = spec.session.map(|(second, _)| usize::from(second));
        if let Some(s) = session {
            let seq = sessions[s].0;
            sessions[s].0 += 1;
            cmd.request(s as u64 + 1, seq, 0);
        }
        if ok {
            for &(ks, key, value) in &spec.writes {
                match value {
                    Some(v) => model.insert((ks, vec![key]), vec![v]),
                    None => model.remove(&(ks, vec![key])),
                };
            }
            outcomes.push(Outcome::Committed { index });
        } else {
            outcomes.push(Outcome::Conflict);
        }
        let cmd = cmd.finish().expect("small write-sets encode");
        if let (Some(s), Some(outcome)) = (session, outcomes.last()) {
            sessions[s].1 = Some((cmd.clone(), outcome.clone()));
        }
        cmds.push(cmd);
    }
    (cmds, outcomes)
}

fn entries(cmds: &[Cmd]) -> Vec<EntryOf<CellRaft>> {
    cmds.iter()
        .enumerate()
        .map(|(i, cmd)| {
            EntryOf::<CellRaft>::new_normal(
                openraft::testing::log_id::<CellRaft>(1, 1, i as u64 + 1),
                cmd.clone(),
            )
        })
        .collect()
}

/// Applies `entries` in batches cut at `cuts`; with `reopen`, the database is closed and
/// reopened between batches (a replica restarting). Returns outcomes and the final digest.
fn run(
    entries: &[EntryOf<CellRaft>],
    cuts: &[usize],
    reopen: bool,
) -> (Vec<Outcome>, (Option<u64>, u64)) {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let db = crate::Db::open(dir.path()).unwrap();
        let local = db.local().unwrap();
        let sm = StateMachine::open(1, &local.fjall, dir.path()).unwrap();
        (db, sm)
    };
    let (mut db, mut sm) = open();
    let mut outcomes = Vec::new();
    let mut start = 0;
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (entries.len() + 1)).collect();
    bounds.push(entries.len());
    bounds.sort_unstable();
    for end in bounds {
        if end <= start {
            continue;
        }
        outcomes.extend(sm.apply_entries(entries[start..end].to_vec()).unwrap());
        start = end;
        if reopen {
            drop(sm);
            drop(db);
            (db, sm) = open();
        }
    }
    let digest = sm.digest().unwrap();
    drop(db);
    (outcomes, digest)
}

fn same(a: &[Outcome], b: &[Outcome]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Outcome::Rejected(_), Outcome::Rejected(_)) => true,
            _ => x == y,
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("CELLDB_RAFT_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(16),
        ..ProptestConfig::default()
    })]

    #[test]
    fn raft_apply_is_batching_invariant(
        specs in prop::collection::vec(spec(), 1..40),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
        cuts2 in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        let (cmds, expected) = build(&specs);
        let entries = entries(&cmds);
        let one_per_batch: Vec<usize> = (1..entries.len()).collect();
        let (single, single_digest) = run(&entries, &one_per_batch, false);
        let (batched, batched_digest) = run(&entries, &cuts, false);
        let (restarted, restarted_digest) = run(&entries, &cuts2, true);
        prop_assert!(same(&single, &expected), "one per batch {single:?} vs model {expected:?}");
        prop_assert!(same(&batched, &expected), "batched {batched:?} vs model {expected:?}");
        prop_assert!(same(&restarted, &expected), "restarted {restarted:?} vs model {expected:?}");
        prop_assert_eq!(single_digest, batched_digest);
        prop_assert_eq!(single_digest, restarted_digest);
        prop_assert_eq!(single_digest.0, Some(entries.len() as u64));
    }
}

#[test]
fn a_write_set_that_names_an_invalid_keyspace_is_refused_by_the_builder() {
    let mut cmd = CmdBuilder::new(0);
    cmd.put("no spaces", b"k", b"v");
    assert!(cmd.finish().is_err());
}

/// A snapshot streamed in small chunks, staged and installed on another node, gives the same
/// state; a damaged stream is refused before anything is installed.
#[test]
fn a_snapshot_round_trips_through_chunks_and_staging() {
    let source_dir = tempfile::tempdir().unwrap();
    let db = crate::Db::open(source_dir.path()).unwrap();
    let sm = StateMachine::open(1, &db.local().unwrap().fjall, source_dir.path()).unwrap();
    let mut specs = Vec::new();
    for i in 0..300u32 {
        let mut cmd = CmdBuilder::new(0);
        cmd.put(
            KEYSPACES[(i % 2) as usize],
            &i.to_be_bytes(),
            &[i as u8; 40],
        );
        specs.push(cmd.finish().unwrap());
    }
    sm.apply_entries(entries(&specs)).unwrap();
    let (meta, view) = sm.view_for_test();
    for chunk_size in [64usize, 1000, 1 << 20] {
        let (meta, view) = if chunk_size == 64 {
            (meta.clone(), sm.view_for_test().1)
        } else {
            sm.view_for_test()
        };
        let mut encoder = super::snapshot::ChunkEncoder::new(&meta, view, chunk_size).unwrap();
        let target_dir = tempfile::tempdir().unwrap();
        let mut staging =
            super::snapshot::Staging::begin(&target_dir.path().join("s"), "t").unwrap();
        let mut chunks = 0;
        while let Some(chunk) = encoder.next_chunk().unwrap() {
            // A chunk never passes its size because of a record (the first also carries the
            // header; the last, the end mark and the hash).
            if chunks > 0 {
                assert!(
                    chunk.len() <= chunk_size.max(64) + 12,
                    "chunk of {} bytes",
                    chunk.len()
                );
            }
            staging.write_chunk(&chunk).unwrap();
            chunks += 1;
        }
        assert!(chunk_size > 1000 || chunks > 10);
        let path = staging.finish().unwrap();
        let target_db = crate::Db::open(target_dir.path()).unwrap();
        let target =
            StateMachine::open(2, &target_db.local().unwrap().fjall, target_dir.path()).unwrap();
        target.install_for_test(&path).unwrap();
        assert_eq!(target.digest().unwrap(), sm.digest().unwrap());
    }
    drop(view);
    // A damaged stream: one flipped byte fails the hash.
    let mut encoder =
        super::snapshot::ChunkEncoder::new(&meta, sm.view_for_test().1, 1 << 20).unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = encoder.next_chunk().unwrap() {
        bytes.extend(chunk);
    }
    bytes[100] ^= 1;
    let dir = tempfile::tempdir().unwrap();
    let mut staging = super::snapshot::Staging::begin(dir.path(), "bad").unwrap();
    staging.write_chunk(&bytes).unwrap();
    let error = staging.finish().unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData, "{error}");
}

/// A session whose client never raises `done_below` keeps its newest answers only: its record
/// stays bounded, a retry of a recent request still gets the first outcome, and a retry of a
/// forgotten one is refused instead of being applied a second time.
#[test]
fn a_sessions_answers_are_bounded_and_a_forgotten_request_is_never_applied_twice() {
    use super::state_machine::MAX_SESSION_ANSWERS;
    let total = MAX_SESSION_ANSWERS as u64 + 100;
    // Entry 1 opens session 1; request `seq` writes `value` at key `seq` (done_below stays 0).
    let request = |seq: u64, value: &[u8]| {
        let mut cmd = CmdBuilder::new(0);
        cmd.request(1, seq, 0);
        cmd.put("t.a", &seq.to_be_bytes(), value);
        cmd.finish().expect("encodes")
    };
    let mut cmds = vec![CmdBuilder::open_session().finish().expect("encodes")];
    cmds.extend((1..=total).map(|seq| request(seq, b"first")));
    // Then retries of the newest request and of the first (long forgotten), with other values
    // so that applying either again would show in the state.
    cmds.push(request(total, b"again"));
    cmds.push(request(1, b"again"));
    let (outcomes, with_retries) = run(&entries(&cmds), &[], false);
    let n = outcomes.len();
    let newest_index = total + 1;
    assert_eq!(
        outcomes[n - 2],
        Outcome::Committed {
            index: newest_index
        },
        "a retry of a remembered request gets its first outcome"
    );
    match &outcomes[n - 1] {
        Outcome::Rejected(reason) => assert!(
            reason.contains("older than the answers the session keeps"),
            "{reason}"
        ),
        other => panic!("a retry of a forgotten request must be refused, got {other:?}"),
    }
    // The refused retry wrote nothing: replaying the log without the two retries gives the
    // same state.
    let (_, without) = run(&entries(&cmds[..cmds.len() - 2]), &[], false);
    assert_eq!(with_retries.1, without.1);
}
