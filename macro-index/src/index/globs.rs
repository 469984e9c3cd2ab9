//! Glob checks: two glob-imported aliases bringing different items under one used name
//! (CELL0005, rustc's E0659), with item identity as a type.

use super::*;

impl Index {
    /// Two glob imports of aliases in one module whose providers bring *different* items under
    /// a common name, and a bare use of that name in the module: reported at the use, where
    /// rustc reports E0659. Without a use there is nothing ambiguous (rustc says nothing
    /// either); a definition or an explicit import of the name in the module shadows both
    /// globs; two globs bringing the same item (one proc-macro crate's macro re-exported by two
    /// providers, or one provider under two aliases) are no ambiguity (see [`exported_items`]).
    pub(super) fn check_globs(&self, problems: &mut Vec<Problem>) {
        let mut lib_definitions: HashMap<PathBuf, BTreeSet<String>> = HashMap::new();
        for consumer in &self.consumers {
            let Some(globs) = self.globs.get(&consumer.package_id) else {
                continue;
            };
            let names = self
                .scope_names
                .get(&consumer.package_id)
                .map_or(&[][..], Vec::as_slice);
            // (file, module) → (alias, exported items by name, span)
            let mut by_scope: BTreeMap<(PathBuf, Vec<String>), Vec<GlobSeen>> = BTreeMap::new();
            // (file, start of the use) already reported.
            let mut reported: BTreeSet<(PathBuf, usize)> = BTreeSet::new();
            for g in globs {
                let Some(last) = g.path.last() else { continue };
                let Some(alias) = consumer.aliases.iter().find(|a| a.name == *last) else {
                    continue;
                };
                let Some(provider) = self.provider_of(alias) else {
                    continue;
                };
                let exported = exported_items(&mut lib_definitions, provider);
                let scope = by_scope
                    .entry((g.file.clone(), g.module.clone()))
                    .or_default();
                for (other_alias, other_names, other_span) in scope.iter() {
                    if *other_alias == alias.name {
                        continue;
                    }
                    let in_scope = |n: &&ScopeName| n.file == g.file && n.module == g.module;
                    // A name both bring in is ambiguous only when they bring different items:
                    // glob imports of one item (two providers re-exporting one proc-macro
                    // crate's macro) are accepted by rustc, which reports E0659 only for
                    // different items.
                    let clashing = exported.iter().filter(|(name, items)| {
                        other_names.get(*name).is_some_and(|other| other != *items)
                    });
                    for (common, _) in clashing {
                        let shadowed = names
                            .iter()
                            .filter(in_scope)
                            .any(|n| n.defines && n.name == *common);
                        if shadowed {
                            continue;
                        }
                        for used in names
                            .iter()
                            .filter(in_scope)
                            .filter(|n| !n.defines && n.name == *common)
                        {
                            if !reported.insert((used.file.clone(), used.span.start)) {
                                continue;
                            }
                            let mut p = problem(
                                ProblemCode::GlobAmbiguity,
                                Severity::Error,
                                format!(
                                    "`{common}` is ambiguous: `use {other_alias}::*` and `use {}::*` both bring it into scope",
                                    alias.name
                                ),
                                Some(used.span.clone()),
                            );
                            p.notes.push(format!(
                                "note: the glob imports are at {}:{} and {}:{} (rustc reports this as E0659)",
                                other_span.file.display(),
                                other_span.line,
                                g.span.file.display(),
                                g.span.line
                            ));
                            p.notes.push(format!(
                                "help: write the alias in the path: `{}::{common}` or `{other_alias}::{common}`",
                                alias.name
                            ));
                            p.fix = Some(Fix {
                                title: format!("write `{other_alias}::{common}`"),
                                replacement: format!("{other_alias}::{common}"),
                                span: used.span.clone(),
                            });
                            problems.push(p);
                        }
                    }
                }
                scope.push((alias.name.clone(), exported, g.span.clone()));
            }
        }
    }
}

/// A glob import already seen in a scope: (alias, the items it brings by name, where).
pub(super) type GlobSeen = (String, BTreeMap<String, BTreeSet<ItemId>>, Span);

/// What a name brought in by a glob import refers to, so that two globs bringing one item
/// under one name are told apart from two globs bringing different items (only the latter is
/// E0659).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum ItemId {
    /// A macro of a macro crate found in the graph: its package id (not the crate name, so two
    /// versions of one macro crate stay different items) and the macro's name.
    Macro { package_id: String, name: String },
    /// A macro whose crate was not found among the provider's dependencies: it counts as the
    /// provider's own.
    MacroOf { provider_id: String, name: String },
    /// An API item the provider defines itself at its root.
    Item { provider_id: String, name: String },
}

/// The items a provider's alias brings into scope through a glob, by name.
///
/// A macro is the item of its macro crate: two providers whose `export!` both name one
/// proc-macro crate (the same package) and the same macro re-export one item. When the macro
/// crate was not found among the provider's dependencies, the macro counts as the provider's
/// own (different from every other provider's). An API item counts only when the provider
/// defines it itself at its root: two providers re-exporting one item
/// (`pub use common::Error`) bring the same item into scope twice, which rustc accepts, and
/// which item a re-export names is not followed here. Unreadable: the API counts for nothing.
pub(super) fn exported_items(
    lib_definitions: &mut HashMap<PathBuf, BTreeSet<String>>,
    provider: &Provider,
) -> BTreeMap<String, BTreeSet<ItemId>> {
    let mut items: BTreeMap<String, BTreeSet<ItemId>> = BTreeMap::new();
    let macro_crate = provider
        .macro_crate
        .as_ref()
        .and_then(|m| m.package_id.as_deref());
    for e in &provider.exports {
        let id = match macro_crate {
            Some(package) => ItemId::Macro {
                package_id: package.to_owned(),
                name: e.name.clone(),
            },
            None => ItemId::MacroOf {
                provider_id: provider.package_id.clone(),
                name: e.name.clone(),
            },
        };
        items.entry(e.name.clone()).or_default().insert(id);
    }
    let defined = defined_at_root(lib_definitions, &provider.lib_path);
    for n in provider.api.iter().filter(|n| defined.contains(*n)) {
        items.entry(n.clone()).or_default().insert(ItemId::Item {
            provider_id: provider.package_id.clone(),
            name: n.clone(),
        });
    }
    items
}

/// The names the library at `lib` defines at its root (read once per check).
pub(super) fn defined_at_root<'a>(
    seen: &'a mut HashMap<PathBuf, BTreeSet<String>>,
    lib: &Path,
) -> &'a BTreeSet<String> {
    seen.entry(lib.to_owned()).or_insert_with(|| {
        std::fs::read_to_string(lib)
            .map(|text| crate::scan::root_definitions(&text))
            .unwrap_or_default()
    })
}
