//! Resolution, the step after reading: [`Index::recompute`] takes every consumer's aliases
//! (clashes, CELL0004; shadowed names, CELL0006), resolves each against the consumer's
//! dependencies (CELL0001, CELL0002) and the versions around (CELL0008), runs the glob checks
//! (`globs.rs`) and sets [`Index::problems`].

use super::*;

/// Crate names an alias would shadow in paths.
const PRELUDE_CRATES: &[&str] = &["alloc", "cell_sdk", "core", "proc_macro", "std", "test"];

impl Index {
    /// Resolves every alias and recomputes [`Index::problems`].
    pub fn recompute(&mut self) {
        let cache = self
            .cargo_home
            .as_deref()
            .map(CacheListing::read)
            .unwrap_or_default();
        let mut problems: Vec<Problem> = self.parse_problems.values().flatten().cloned().collect();
        let provider_names: Vec<String> = {
            let mut v: Vec<String> = self.providers.iter().map(|p| p.package.clone()).collect();
            v.sort();
            v.dedup();
            v
        };
        let mut consumers = std::mem::take(&mut self.consumers);
        for consumer in &mut consumers {
            let pkg = self.package(&consumer.package_id).cloned();
            let mut seen: HashMap<(PathBuf, Vec<String>, String), Span> = HashMap::new();
            for alias in &mut consumer.aliases {
                alias.resolved = None;
                // Alias clash: the same alias twice in one module.
                let key = (
                    alias.span.file.clone(),
                    alias.module.clone(),
                    alias.name.clone(),
                );
                if let Some(first) = seen.get(&key) {
                    let mut p = problem(
                        ProblemCode::AliasClash,
                        Severity::Error,
                        format!("the alias `{}` is defined twice in this module", alias.name),
                        Some(alias.span.clone()),
                    );
                    p.notes.push(format!(
                        "note: first defined at {}:{}:{} (rustc reports this as E0428)",
                        first.file.display(),
                        first.line,
                        first.col
                    ));
                    problems.push(p);
                } else {
                    seen.insert(key, alias.span.clone());
                }
                if CELL_SDK_NAMES.contains(&alias.name.as_str())
                    || PRELUDE_CRATES.contains(&alias.name.as_str())
                    || BUILTIN_ATTRIBUTES.contains(&alias.name.as_str())
                {
                    problems.push(problem(
                        ProblemCode::BuiltinShadowing,
                        Severity::Warning,
                        format!(
                            "the alias `{}` shadows the builtin or cell-sdk name `{}`",
                            alias.name, alias.name
                        ),
                        Some(alias.span.clone()),
                    ));
                }
                let Some(pkg) = &pkg else { continue };
                if self.status.is_degraded() {
                    continue; // Never a false problem: dependencies are unknown.
                }
                self.resolve_alias(pkg, alias, &provider_names, &cache, &mut problems);
            }
        }
        self.consumers = consumers;
        self.check_globs(&mut problems);
        problems.sort_by(|a, b| {
            let ka = a.span.as_ref().map(|s| (s.file.clone(), s.start));
            let kb = b.span.as_ref().map(|s| (s.file.clone(), s.start));
            ka.cmp(&kb).then_with(|| a.code.cmp(&b.code))
        });
        problems.dedup();
        self.problems = problems;
    }

    pub(super) fn resolve_alias(
        &self,
        pkg: &Package,
        alias: &mut Alias,
        provider_names: &[String],
        cache: &CacheListing,
        problems: &mut Vec<Problem>,
    ) {
        let mut all: Vec<&Package> = Vec::new();
        // A package's own tests, benches, bins and examples name it as a cell too (celldb's
        // benchmark writes `cell_remote!(DB = "celldb")`); cargo lists no dependency edge for
        // that, and `cell-resolver` resolves it to the package's own lib.
        if pkg.name == alias.cell {
            all.push(pkg);
        }
        for d in &pkg.deps {
            if let Some(p) = self.package(&d.package_id)
                && p.name == alias.cell
                && !all.iter().any(|q| q.id == p.id)
            {
                all.push(p);
            }
        }
        let matching: Vec<&Package> = match &alias.version {
            None => all.clone(),
            Some(q) => all
                .iter()
                .copied()
                .filter(|p| version_matches(&p.version, q))
                .collect(),
        };
        let qualified = |p: &Package| format!("{}@{}", p.name, short_version(&p.version));
        match matching.as_slice() {
            [] if all.is_empty() => {
                let mut p = problem(
                    ProblemCode::UnknownCell,
                    Severity::Error,
                    format!(
                        "unknown cell `{}`: no dependency of this crate is the package `{}`",
                        alias.cell, alias.cell
                    ),
                    Some(alias.literal.clone()),
                );
                let mut candidates: Vec<&str> = pkg
                    .deps
                    .iter()
                    .filter_map(|d| self.package(&d.package_id))
                    .map(|p| p.name.as_str())
                    .filter(|n| provider_names.iter().any(|x| x == n))
                    .collect();
                candidates.extend(provider_names.iter().map(String::as_str));
                // The crate's own name for a renamed dependency: the words `cell_remote!`
                // uses (`cell_resolver`), and the package name as the fix.
                let renamed = pkg
                    .deps
                    .iter()
                    .filter(|d| d.extern_crate == alias.cell.replace('-', "_"))
                    .filter_map(|d| self.package(&d.package_id))
                    .find(|d| d.name != alias.cell);
                if let Some(dep) = renamed {
                    p.notes.push(format!(
                        "help: `{}` is this crate's name for the package `{}`; a cell is named \
                         by its package: write \"{}\"",
                        alias.cell, dep.name, dep.name
                    ));
                    p.fix = Some(Fix {
                        title: format!("replace with \"{}\"", dep.name),
                        replacement: format!("\"{}\"", dep.name),
                        span: alias.literal.clone(),
                    });
                } else if let Some(fix) = self.add_dependency_fix(pkg, &alias.cell) {
                    p.notes.push(format!(
                        "help: `{}` is a provider in this workspace's graph: {}",
                        alias.cell,
                        lowercase_first(&fix.title)
                    ));
                    p.fix = Some(fix);
                } else if let Some(best) = did_you_mean(&alias.cell, &candidates) {
                    p.notes.push(format!("help: did you mean \"{best}\"?"));
                    p.fix = Some(Fix {
                        title: format!("replace with \"{best}\""),
                        replacement: format!("\"{best}\""),
                        span: alias.literal.clone(),
                    });
                }
                let usable: Vec<String> = self
                    .providers_for(&pkg.id)
                    .iter()
                    .map(|p| format!("`{}` {}", p.cell, p.version))
                    .collect();
                if usable.is_empty() {
                    p.notes.push(
                        "help: this crate depends on no provider; add one to [dependencies]"
                            .to_owned(),
                    );
                } else {
                    p.notes.push(format!(
                        "help: providers this crate depends on: {}",
                        usable.join(", ")
                    ));
                }
                problems.push(p);
            }
            [] => {
                let q = alias.version.clone().unwrap_or_default();
                let mut p = problem(
                    ProblemCode::UnknownCell,
                    Severity::Error,
                    format!(
                        "this crate depends on `{}`, but on no version matching `{q}`",
                        alias.cell
                    ),
                    Some(alias.literal.clone()),
                );
                let versions: Vec<String> = all.iter().map(|p| p.version.clone()).collect();
                p.notes.push(format!(
                    "help: versions this crate depends on: {}",
                    versions.join(", ")
                ));
                if let [only] = all.as_slice() {
                    p.fix = Some(Fix {
                        title: format!("replace with \"{}\"", qualified(only)),
                        replacement: format!("\"{}\"", qualified(only)),
                        span: alias.literal.clone(),
                    });
                }
                problems.push(p);
            }
            [one] => {
                let extern_crate = pkg
                    .deps
                    .iter()
                    .find(|d| d.package_id == one.id)
                    .map(|d| d.extern_crate.clone())
                    .unwrap_or_else(|| one.name.replace('-', "_"));
                alias.resolved = Some(Resolution {
                    package_id: one.id.clone(),
                    package: one.name.clone(),
                    version: one.version.clone(),
                    extern_crate,
                });
                if self.provider_by_id(&one.id).is_none() {
                    problems.push(problem(
                        ProblemCode::NotAProvider,
                        Severity::Error,
                        // The same words as `cell_remote!` (cell-sdk-macros, remote.rs).
                        format!(
                            "`{}` is a dependency of this crate but not a provider cell: it has \
                             no `cell_sdk::export!` declaration, so there is nothing to put \
                             under `{}`",
                            spec(alias),
                            alias.name
                        ),
                        Some(alias.literal.clone()),
                    ));
                    return;
                }
                self.check_skew(pkg, alias, one, cache, problems);
            }
            several => {
                let mut p = problem(
                    ProblemCode::AmbiguousVersion,
                    Severity::Error,
                    match &alias.version {
                        None => format!(
                            "this crate depends on {} versions of `{}`: say which one",
                            several.len(),
                            alias.cell
                        ),
                        Some(q) => format!(
                            "`{}@{q}` matches {} dependencies: qualify it further",
                            alias.cell,
                            several.len()
                        ),
                    },
                    Some(alias.literal.clone()),
                );
                let options: Vec<String> = several
                    .iter()
                    .map(|p| format!("\"{}\"", qualified(p)))
                    .collect();
                p.notes
                    .push(format!("help: write one of: {}", options.join(", ")));
                if let Some(newest) = several
                    .iter()
                    .max_by_key(|p| Version::parse(&p.version).ok())
                {
                    p.fix = Some(Fix {
                        title: format!("use the newest, \"{}\"", qualified(newest)),
                        replacement: format!("\"{}\"", qualified(newest)),
                        span: alias.literal.clone(),
                    });
                }
                problems.push(p);
            }
        }
    }

    /// Version skew: a newer version of the resolved provider elsewhere in the graph (when the
    /// alias did not pin one) or in the local cargo cache (registry providers).
    pub(super) fn check_skew(
        &self,
        pkg: &Package,
        alias: &Alias,
        resolved: &Package,
        cache: &CacheListing,
        problems: &mut Vec<Problem>,
    ) {
        let Ok(current) = Version::parse(&resolved.version) else {
            return;
        };
        let newer_in_graph = self
            .packages
            .iter()
            .filter(|p| p.name == resolved.name)
            .filter_map(|p| Version::parse(&p.version).ok())
            .filter(|v| *v > current)
            .max();
        if alias.version.is_none()
            && let Some(v) = newer_in_graph
        {
            problems.push(problem(
                ProblemCode::VersionSkew,
                Severity::Warning,
                format!(
                    "`{}` resolves to {current} here, but {v} is also in this workspace's dependency graph",
                    resolved.name
                ),
                Some(alias.literal.clone()),
            ));
            return;
        }
        if resolved.source == SourceKind::Registry
            && let Some(v) = cache.newest_newer(&resolved.name, &current)
        {
            let mut p = problem(
                ProblemCode::VersionSkew,
                Severity::Warning,
                format!(
                    "`{}` resolves to {current}, but {v} is in the local cargo cache",
                    resolved.name
                ),
                Some(alias.literal.clone()),
            );
            p.notes.push(format!(
                "help: `cargo update -p {}` or raise the requirement in Cargo.toml",
                resolved.name
            ));
            p.fix = requirement_fix(pkg, &resolved.name, v);
            problems.push(p);
        }
    }
}
