//! Schema evolution: what happens when a table on disk was written by another version of its
//! type.
//!
//! The mechanism is explicit (a changed type is an error, never a misread: `docs/design.md`):
//! - same record structure, different index set: the indexes are rebuilt from the records
//!   (a new unique index over duplicate values is an [`Error::UniqueViolation`]);
//! - a different record structure whose fingerprint equals the type's declared previous
//!   version (`#[DB::persist(prev = UserV1)]` + `impl From<UserV1> for User`): every record is
//!   decoded as the previous type (validated), converted, re-encoded, and all indexes rebuilt;
//! - anything else: [`Error::SchemaMismatch`] naming the table and what changed.
//!
//! A migration is one write-set, so it is atomic: a crash in the middle leaves the old table.

use crate::error::{Error, Result};
use crate::local::Local;
use crate::log::Write;
use crate::schema::{TableMeta, index_keyspace};
use crate::table::Table;
use cell_sdk::codec;
use fjall::{KeyspaceCreateOptions, Slice};

/// Decodes and converts a record of the previous version.
type Upgrade<T> = fn(&[u8]) -> Result<T, cell_sdk::codec::DecodeError>;

/// Computes the writes that bring the table from `stored` to `current`, or explains why not.
pub(crate) fn upgrade<T: Table>(
    db: &Local,
    records: &fjall::Keyspace,
    indexes: &[fjall::Keyspace],
    stored: &TableMeta,
    current: &TableMeta,
) -> Result<Vec<Write>> {
    let mismatch = || Error::SchemaMismatch {
        table: T::TABLE.to_string(),
        what: what_changed(stored, current),
        stored: format!("{} keyed by {}", stored.describe, stored.key_type),
        current: format!("{} keyed by {}", current.describe, current.key_type),
    };
    if stored.layout != current.layout || stored.key_fingerprint != current.key_fingerprint {
        return Err(mismatch());
    }
    let upgrade: Option<Upgrade<T>> = if stored.fingerprint == current.fingerprint {
        None
    } else {
        match T::previous() {
            Some(prev) if prev.fingerprint == stored.fingerprint => Some(prev.upgrade),
            _ => return Err(mismatch()),
        }
    };
    tracing::info!(table = T::TABLE, "celldb: migrating table");
    let mut writes = Vec::new();
    // Drop every index entry written under the stored schema; rebuild below.
    for (name, _) in &stored.indexes {
        let ks = db.fjall.keyspace(
            &index_keyspace(T::TABLE, name),
            KeyspaceCreateOptions::default,
        )?;
        for guard in ks.iter() {
            let key = guard.key()?;
            writes.push(Write {
                keyspace: ks.clone(),
                key,
                value: None,
            });
        }
    }
    let mut unique_seen: Vec<std::collections::HashSet<Vec<u8>>> =
        vec![Default::default(); T::INDEXES.len()];
    for guard in records.iter() {
        let (pk, bytes) = guard.into_inner()?;
        let record: T = match upgrade {
            Some(up) => up(&bytes),
            None => codec::from_bytes::<T>(&bytes),
        }
        .map_err(|e| Error::Corrupt {
            table: T::TABLE.to_string(),
            reason: e.to_string(),
        })?;
        if upgrade.is_some() {
            let encoded = codec::to_bytes(&record).map_err(|e| Error::Encode {
                table: T::TABLE.to_string(),
                reason: e.to_string(),
            })?;
            writes.push(Write {
                keyspace: records.clone(),
                key: pk.clone(),
                value: Some(Slice::from(&encoded[..])),
            });
        }
        for (i, def) in T::INDEXES.iter().enumerate() {
            let mut ik = Vec::new();
            record.encode_index(i, &mut ik);
            let (key, value) = if def.unique {
                if !unique_seen[i].insert(ik.clone()) {
                    return Err(Error::UniqueViolation {
                        table: T::TABLE.to_string(),
                        index: def.name.to_string(),
                    });
                }
                (ik, pk.clone())
            } else {
                ik.extend_from_slice(&pk);
                (ik, Slice::from(&[][..]))
            };
            writes.push(Write {
                keyspace: indexes[i].clone(),
                key: Slice::from(key),
                value: Some(value),
            });
        }
    }
    Ok(writes)
}

/// A human summary of the difference between two table metadata records.
pub(crate) fn what_changed(stored: &TableMeta, current: &TableMeta) -> String {
    let mut parts = Vec::new();
    if stored.layout != current.layout {
        parts.push(format!(
            "on-disk layout {} vs {}",
            stored.layout, current.layout
        ));
    }
    if stored.key_fingerprint != current.key_fingerprint {
        parts.push(format!(
            "key type changed from `{}` to `{}`",
            stored.key_type, current.key_type
        ));
    }
    if stored.fingerprint != current.fingerprint {
        let old = fields(&stored.describe);
        let new = fields(&current.describe);
        let removed: Vec<_> = old.iter().filter(|f| !new.contains(f)).collect();
        let added: Vec<_> = new.iter().filter(|f| !old.contains(f)).collect();
        if removed.is_empty() && added.is_empty() {
            parts
                .push("a nested type changed (same field list, different fingerprint)".to_string());
        } else {
            let list = |v: &[&String]| {
                v.iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if !removed.is_empty() {
                parts.push(format!("fields no longer in code: {}", list(&removed)));
            }
            if !added.is_empty() {
                parts.push(format!("fields new in code: {}", list(&added)));
            }
        }
    }
    if stored.indexes != current.indexes {
        parts.push(format!(
            "indexes changed from {:?} to {:?}",
            stored.indexes, current.indexes
        ));
    }
    parts.join("; ")
}

/// `struct { a: u64, b: String }` → `["a: u64", "b: String"]` (top level only).
fn fields(describe: &str) -> Vec<String> {
    let inner = describe
        .find('{')
        .and_then(|start| describe.rfind('}').map(|end| (start, end)))
        .and_then(|(s, e)| describe.get(s + 1..e))
        .unwrap_or(describe);
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut current = String::new();
    for c in inner.chars() {
        match c {
            '<' | '(' | '[' | '{' => depth += 1,
            '>' | ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(current.trim().to_string());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}
