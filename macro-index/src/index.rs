//! Building the index: providers from the graph, consumers from the workspace members, then the
//! resolution of every alias and the problems. [`Index::apply_changes`] redoes only the
//! providers/consumers whose files changed (a full rebuild when a manifest or `Cargo.lock`
//! changed).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cargo_metadata::semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};

use crate::cache::{CacheListing, cargo_home};
use crate::code::ProblemCode;
use crate::decl::parse_declaration;
use crate::discover::{discover_stamped, metadata_inputs};
use crate::model::{
    Alias, Consumer, Export, ExportKind, Fix, MacroCrate, Package, Problem, Provider, Resolution,
    Severity, SourceKind, Span,
};
use crate::procmacro::proc_macro_fns;
use crate::scan::scan;
use crate::snapshot::stamp_of;
use crate::span::{file_start, forget_sources};
use crate::{IndexError, IndexOptions, Progress};

/// Builtin attributes an exported attribute macro would shadow when glob-imported (the shared
/// list of `cell-export`).
pub const BUILTIN_ATTRIBUTES: &[&str] = cell_export::BUILTIN_ATTRIBUTES;

/// Macros `cell-sdk` itself exports (the shared list of `cell-export`), which an alias or an
/// export would shadow.
pub const CELL_SDK_NAMES: &[&str] = cell_export::CELL_SDK_MACROS;

/// Crate names an alias would shadow in paths.
const PRELUDE_CRATES: &[&str] = &["alloc", "cell_sdk", "core", "proc_macro", "std", "test"];

/// A glob `use` in a consumer, kept for the glob-ambiguity check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobImport {
    /// The path before `*` (leading `crate`/`self`/`super` removed).
    pub path: Vec<String>,
    /// The file holding it.
    pub file: PathBuf,
    /// Inline modules around it.
    pub module: Vec<String>,
    /// The `use` item.
    pub span: Span,
}

/// A bare name in a consumer's file that has glob imports (see [`Index::scope_names`]): a use
/// (`#[hello]`, `hello!(…)`, `hello(…)`, `Hello::new`), or a definition or explicit import that
/// shadows glob imports of the name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeName {
    /// The identifier.
    pub name: String,
    /// The file holding it.
    pub file: PathBuf,
    /// Inline modules around it.
    pub module: Vec<String>,
    /// The identifier's span.
    pub span: Span,
    /// `true` for a definition or explicit import, `false` for a use.
    pub defines: bool,
}

/// Whether an [`Index`] holds the whole dependency graph.
///
/// A degraded index is still useful (the members' own files are read, so the editor keeps
/// completing what it knows), but it cannot judge any alias: a checker must not call it clean,
/// and it is never saved as a warm-start snapshot (a later run, once cargo resolves again,
/// would otherwise be served the degraded graph as fresh).
///
/// ```
/// use cell_macro_index::IndexStatus;
///
/// let status = IndexStatus::Degraded { reason: "no matching package named `serde`".into() };
/// assert!(status.is_degraded());
/// assert_eq!(status.reason(), Some("no matching package named `serde`"));
/// assert!(!IndexStatus::Complete.is_degraded());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IndexStatus {
    /// `cargo metadata` resolved every dependency: every provider the workspace can name is in
    /// the index.
    Complete,
    /// `cargo metadata` could not resolve the dependencies (a registry crate missing from an
    /// offline cache, a dependency that exists nowhere, a broken lockfile), so only the
    /// workspace members were read (`--no-deps`): no provider outside the workspace is known.
    Degraded {
        /// Cargo's error, as it printed it.
        reason: String,
    },
}

impl IndexStatus {
    /// `true` for [`IndexStatus::Degraded`].
    pub fn is_degraded(&self) -> bool {
        matches!(self, IndexStatus::Degraded { .. })
    }

    /// Why the index is degraded (`None` when it is complete).
    pub fn reason(&self) -> Option<&str> {
        match self {
            IndexStatus::Complete => None,
            IndexStatus::Degraded { reason } => Some(reason),
        }
    }
}

/// The index of one workspace. Every field is public and plain; see the crate docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// The manifest the index was built for.
    pub manifest_path: PathBuf,
    /// The workspace root directory.
    pub workspace_root: PathBuf,
    /// Cargo's target directory (where the snapshot lives).
    pub target_dir: PathBuf,
    /// Package ids of the workspace members.
    pub members: Vec<String>,
    /// Every package of the graph (as many as `cargo metadata` lists).
    pub packages: Vec<Package>,
    /// Whether the whole dependency graph was read ([`IndexStatus::Complete`]) or only the
    /// workspace members ([`IndexStatus::Degraded`]: aliases are then left unresolved and
    /// unreported, and the index is never saved as a snapshot).
    pub status: IndexStatus,
    /// The host triple the graph was resolved for (`cargo metadata --filter-platform`; `None`
    /// with `--no-deps`).
    pub platform: Option<String>,
    /// Every provider found.
    pub providers: Vec<Provider>,
    /// Every workspace member that calls `cell_remote!`.
    pub consumers: Vec<Consumer>,
    /// Every problem, sorted by file and position.
    pub problems: Vec<Problem>,
    /// Problems found while parsing one package's files, by package id (kept so an incremental
    /// update replaces exactly that package's share).
    pub parse_problems: BTreeMap<String, Vec<Problem>>,
    /// Glob imports in consumers, by package id.
    pub globs: BTreeMap<String, Vec<GlobImport>>,
    /// Bare names in consumers' files that have glob imports, by package id: where an
    /// ambiguous name is used (CELL0005 is reported there, where rustc reports E0659).
    #[serde(default)]
    pub scope_names: BTreeMap<String, Vec<ScopeName>>,
    /// The `CARGO_HOME` used for the version-skew check.
    pub cargo_home: Option<PathBuf>,
    /// (length, mtime) of each input, taken before the build read it: an edit made while
    /// indexing differs from it (see [`Index::changed_inputs`]); the snapshot saves these. A
    /// manifest or `Cargo.lock` that kept moving while `cargo metadata` ran may hold a stamp
    /// of length `u64::MAX`, which matches no file.
    #[serde(default)]
    pub input_stamps: BTreeMap<PathBuf, Option<(u64, u128)>>,
}

impl Index {
    /// Discovers and indexes the workspace of `options.manifest_path`.
    ///
    /// Fails only when not even `cargo metadata --no-deps` works (no such manifest, a manifest
    /// cargo cannot read); everything else becomes a [`Problem`].
    pub fn build(options: &IndexOptions) -> Result<Index, IndexError> {
        let manifest_path = absolute(&options.manifest_path);
        // The manifests and `Cargo.lock` with stamps that hold although most of them are known
        // only after cargo read them (see `discover_stamped`).
        let (graph, input_stamps) =
            discover_stamped(&manifest_path, options.offline, &options.cargo_env).map_err(|e| {
                IndexError::Metadata {
                    manifest: manifest_path.clone(),
                    message: e.to_string(),
                }
            })?;
        let mut index = Index {
            manifest_path,
            workspace_root: graph.workspace_root,
            target_dir: options.target_dir.clone().unwrap_or(graph.target_dir),
            members: graph.members,
            packages: graph.packages,
            status: match graph.unresolved {
                None => IndexStatus::Complete,
                Some(reason) => IndexStatus::Degraded { reason },
            },
            platform: graph.platform,
            providers: Vec::new(),
            consumers: Vec::new(),
            problems: Vec::new(),
            parse_problems: BTreeMap::new(),
            globs: BTreeMap::new(),
            scope_names: BTreeMap::new(),
            cargo_home: options.cargo_home.clone().or_else(cargo_home),
            input_stamps,
        };
        let total = index.packages.len();
        for i in 0..total {
            if let Some(progress) = &options.progress
                && (i % 25 == 0 || i + 1 == total)
            {
                progress(&Progress {
                    done: i + 1,
                    total,
                    package: index.packages[i].name.clone(),
                });
            }
            let id = index.packages[i].id.clone();
            index.reparse_package(&id);
        }
        index.recompute();
        Ok(index)
    }

    /// The package with this id.
    pub fn package(&self, id: &str) -> Option<&Package> {
        self.packages.iter().find(|p| p.id == id)
    }

    /// The provider whose package id is `id`.
    pub fn provider_by_id(&self, id: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.package_id == id)
    }

    /// The provider an alias resolved to.
    pub fn provider_of(&self, alias: &Alias) -> Option<&Provider> {
        alias
            .resolved
            .as_ref()
            .and_then(|r| self.provider_by_id(&r.package_id))
    }

    /// Providers a workspace member can name in `cell_remote!`: those among its resolved
    /// dependencies (every provider of the graph when dependencies are unresolved).
    pub fn providers_for(&self, member_id: &str) -> Vec<&Provider> {
        let Some(pkg) = self.package(member_id) else {
            return Vec::new();
        };
        if self.status.is_degraded() {
            return self.providers.iter().collect();
        }
        pkg.deps
            .iter()
            .filter_map(|d| self.provider_by_id(&d.package_id))
            .collect()
    }

    /// The workspace member whose directory holds `file` (the innermost one).
    pub fn member_for_file(&self, file: &Path) -> Option<&Package> {
        self.packages
            .iter()
            .filter(|p| self.members.contains(&p.id))
            .filter(|p| {
                p.manifest_path
                    .parent()
                    .is_some_and(|d| file.starts_with(d))
            })
            .max_by_key(|p| p.manifest_path.as_os_str().len())
    }

    /// Files whose change affects the index (for the snapshot's freshness check): manifests and
    /// sources of every non-registry package, `Cargo.lock`, and the source directories (a new
    /// file changes its directory's mtime).
    pub fn inputs(&self) -> Vec<PathBuf> {
        let mut out = metadata_inputs(&self.manifest_path, &self.workspace_root, &self.packages);
        for pkg in &self.packages {
            if matches!(pkg.source, SourceKind::Registry | SourceKind::Git) {
                continue;
            }
            if let Some(lib) = &pkg.lib_path {
                out.insert(lib.clone());
            }
            if self.members.contains(&pkg.id) {
                for file in source_files(pkg) {
                    // Its directory too: a new file changes the directory's mtime.
                    if let Some(parent) = file.parent() {
                        out.insert(parent.to_path_buf());
                    }
                    out.insert(file);
                }
                for dir in source_dirs(pkg) {
                    out.insert(dir);
                }
            }
        }
        for p in &self.providers {
            out.insert(p.lib_path.clone());
            if let Some(lib) = p.macro_crate.as_ref().and_then(|m| m.lib_path.clone()) {
                out.insert(lib);
            }
        }
        out.into_iter().collect()
    }

    /// Inputs whose (length, mtime) differs from the stamp taken before the build read them:
    /// edits made while indexing, which a watcher started afterwards never reports. An input
    /// without a stamp counts as unchanged.
    pub fn changed_inputs(&self) -> Vec<PathBuf> {
        self.inputs()
            .into_iter()
            .filter(|p| self.input_stamps.get(p).is_some_and(|s| *s != stamp_of(p)))
            .collect()
    }

    /// Re-indexes after `paths` changed: a full rebuild when a manifest or lockfile changed,
    /// else only the providers and consumers owning the changed `.rs` files, then the problems.
    /// Returns `true` when anything was re-read.
    pub fn apply_changes(
        &mut self,
        paths: &[PathBuf],
        options: &IndexOptions,
    ) -> Result<bool, IndexError> {
        if paths.iter().any(|p| {
            matches!(
                p.file_name().and_then(|n| n.to_str()),
                Some("Cargo.toml" | "Cargo.lock")
            ) && !p.starts_with(&self.target_dir)
        }) {
            *self = Index::build(options)?;
            return Ok(true);
        }
        let mut touched: BTreeSet<String> = BTreeSet::new();
        for path in paths {
            // A directory counts too: a file created in it (see `changed_inputs`).
            if (path.extension().and_then(|e| e.to_str()) != Some("rs") && !path.is_dir())
                || path.starts_with(&self.target_dir)
            {
                continue;
            }
            for pkg in &self.packages {
                if matches!(pkg.source, SourceKind::Registry) {
                    continue;
                }
                if pkg
                    .manifest_path
                    .parent()
                    .is_some_and(|d| path.starts_with(d))
                {
                    touched.insert(pkg.id.clone());
                }
            }
            // A macro crate's change re-reads its provider (docs, spans, missing exports).
            for prov in &self.providers {
                if prov
                    .macro_crate
                    .as_ref()
                    .and_then(|m| m.lib_path.as_deref())
                    .is_some_and(|l| l.parent().is_some_and(|d| path.starts_with(d)))
                {
                    touched.insert(prov.package_id.clone());
                }
            }
        }
        if touched.is_empty() {
            return Ok(false);
        }
        for id in &touched {
            self.reparse_package(id);
        }
        self.recompute();
        Ok(true)
    }

    /// Re-reads one package: as a provider (its `export!`) and, for a member, as a consumer.
    fn reparse_package(&mut self, id: &str) {
        let Some(pkg) = self.package(id).cloned() else {
            return;
        };
        let mut problems = Vec::new();
        // Stamped before reading: an edit from now on differs from the stamp.
        let mut stamps = BTreeMap::new();
        let mut stamp = |p: &Path| {
            stamps.insert(p.to_path_buf(), stamp_of(p));
        };
        // Not the manifest: `cargo metadata` read it, and `discover_stamped` stamped it as of
        // that read; a stamp taken now could already match an edit the graph does not hold.
        if let Some(lib) = &pkg.lib_path {
            stamp(lib);
        }
        if self.members.iter().any(|m| m == id) {
            for file in source_files(&pkg) {
                if let Some(parent) = file.parent() {
                    stamp(parent);
                }
                stamp(&file);
            }
            for dir in source_dirs(&pkg) {
                stamp(&dir);
            }
        }
        self.providers.retain(|p| p.package_id != id);
        let provider = self.read_provider(&pkg, &mut problems, &mut stamps);
        self.input_stamps.extend(stamps);
        if let Some(provider) = provider {
            self.providers.push(provider);
            self.providers
                .sort_by(|a, b| a.cell.cmp(&b.cell).then_with(|| a.version.cmp(&b.version)));
        }
        self.consumers.retain(|c| c.package_id != id);
        self.globs.remove(id);
        self.scope_names.remove(id);
        if self.members.iter().any(|m| m == id) {
            let (consumer, globs, names) = read_consumer(&pkg, &mut problems);
            if !names.is_empty() {
                self.scope_names.insert(id.to_owned(), names);
            }
            if let Some(c) = consumer {
                self.consumers.push(c);
                self.consumers.sort_by(|a, b| a.package.cmp(&b.package));
            }
            if !globs.is_empty() {
                self.globs.insert(id.to_owned(), globs);
            }
        }
        forget_sources();
        if problems.is_empty() {
            self.parse_problems.remove(id);
        } else {
            self.parse_problems.insert(id.to_owned(), problems);
        }
    }

    fn read_provider(
        &self,
        pkg: &Package,
        problems: &mut Vec<Problem>,
        stamps: &mut BTreeMap<PathBuf, Option<(u64, u128)>>,
    ) -> Option<Provider> {
        let lib = pkg.lib_path.as_ref()?;
        if pkg.proc_macro {
            return None;
        }
        let text = std::fs::read_to_string(lib).ok()?;
        // Cheap filter: most packages of a graph are not providers and are never lexed.
        if !text.contains("export!") && !text.contains("export !") {
            return None;
        }
        let found = match scan(lib, &text, &["export"]) {
            Ok(found) => found,
            Err((message, span)) => {
                if text.contains("cell_sdk::export") {
                    problems.push(problem(
                        ProblemCode::MalformedExport,
                        Severity::Error,
                        message,
                        Some(span),
                    ));
                }
                return None;
            }
        };
        // `cell_sdk::export!` always counts; a bare `export!` only when it looks like ours. One
        // that is always compiled first; one under `#[cfg(…)]` (maybe never compiled) is still
        // read, but reports nothing.
        let ours = |c: &crate::scan::MacroCall| {
            c.path.ends_with("cell_sdk::export")
                || (c.path == "export" && {
                    let body = c.group.stream().to_string();
                    body.contains("cell =") || body.starts_with("format")
                })
        };
        let mut calls: Vec<_> = found.calls.into_iter().filter(|c| ours(c)).collect();
        calls.sort_by_key(|c| c.gated);
        let call = calls.into_iter().next()?;
        let mut unheard = Vec::new();
        let problems = if call.gated { &mut unheard } else { problems };
        if !call.module.is_empty() {
            // `export!`'s compile-time check reports this at the whole call (E0080 carrying
            // CELL0010); what it declares is still read, as rustc still compiles it.
            problems.push(problem(
                ProblemCode::MalformedExport,
                Severity::Error,
                cell_export::NOT_AT_CRATE_ROOT.to_owned(),
                Some(call.span.clone()),
            ));
        }
        let decl = parse_declaration(lib, call.group.stream());
        for (code, message, span) in &decl.errors {
            problems.push(problem(
                *code,
                Severity::Error,
                message.clone(),
                Some(span.clone()),
            ));
        }
        let format = decl.format.unwrap_or(0);
        let cell = match &decl.cell {
            Some((name, span)) => {
                if *name != pkg.name {
                    let mut p = problem(
                        ProblemCode::MalformedExport,
                        Severity::Error,
                        // The words of `export!` itself.
                        cell_export::cell_name_mismatch(name, &pkg.name),
                        Some(span.clone()),
                    );
                    p.fix = Some(Fix {
                        title: format!("replace with \"{}\"", pkg.name),
                        replacement: format!("\"{}\"", pkg.name),
                        span: span.clone(),
                    });
                    problems.push(p);
                }
                name.clone()
            }
            None => pkg.name.clone(),
        };
        // The macro crate: the provider's dependency with that extern name.
        let macro_crate = decl.macros.as_ref().map(|(name, _)| {
            let dep_pkg = pkg
                .deps
                .iter()
                .find(|d| d.extern_crate == *name)
                .and_then(|d| self.package(&d.package_id))
                .or_else(|| {
                    // Unresolved graph: match by package name.
                    self.packages
                        .iter()
                        .find(|p| p.proc_macro && p.name.replace('-', "_") == *name)
                });
            MacroCrate {
                name: name.clone(),
                package_id: dep_pkg.map(|p| p.id.clone()),
                lib_path: dep_pkg.and_then(|p| p.lib_path.clone()),
            }
        });
        let macro_lib = macro_crate.as_ref().and_then(|m| m.lib_path.as_ref());
        if let Some(path) = macro_lib {
            stamps.insert(path.clone(), stamp_of(path));
        }
        let fns = match macro_lib {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => match proc_macro_fns(path, &text) {
                    Ok(fns) => Some(fns),
                    Err((message, span)) => {
                        problems.push(problem(
                            ProblemCode::MalformedExport,
                            Severity::Warning,
                            format!("cannot read the macro crate: {message}"),
                            Some(span),
                        ));
                        None
                    }
                },
                Err(e) => {
                    problems.push(problem(
                        ProblemCode::MalformedExport,
                        Severity::Warning,
                        format!("cannot read the macro crate `{}`: {e}", path.display()),
                        Some(file_start(path)),
                    ));
                    None
                }
            },
            None => None,
        };
        let mut exports = Vec::new();
        for d in decl.exports {
            let found = fns
                .as_ref()
                .and_then(|fns| fns.iter().find(|f| f.name == d.name));
            if let (Some(_), Some(mc)) = (&fns, &macro_crate) {
                match found {
                    None => problems.push(problem(
                        ProblemCode::MissingExport,
                        Severity::Error,
                        format!(
                            "`{}` is declared in export! but `{}` has no {} named `{}`",
                            d.name,
                            mc.name,
                            fn_attr(d.kind),
                            d.name
                        ),
                        Some(d.span.clone()),
                    )),
                    Some(f) if f.kind != d.kind => problems.push(problem(
                        ProblemCode::MissingExport,
                        Severity::Error,
                        format!(
                            "`{}` is declared as {} but `{}` defines it with {}",
                            d.name,
                            d.kind.keyword(),
                            mc.name,
                            fn_attr(f.kind)
                        ),
                        Some(d.span.clone()),
                    )),
                    Some(_) => {}
                }
            }
            let shadows = match d.kind {
                ExportKind::Attribute => BUILTIN_ATTRIBUTES.contains(&d.name.as_str()),
                _ => false,
            } || CELL_SDK_NAMES.contains(&d.name.as_str());
            if shadows {
                problems.push(problem(
                    ProblemCode::BuiltinShadowing,
                    Severity::Warning,
                    format!(
                        "the exported macro `{}` shadows the builtin or cell-sdk `{}` wherever a \
                         consumer glob-imports this provider (`use Alias::*`)",
                        d.name, d.name
                    ),
                    Some(d.span.clone()),
                ));
            }
            let mut helpers = d.helpers;
            if let Some(f) = found {
                for h in &f.derive_helpers {
                    if !helpers.contains(h) {
                        helpers.push(h.clone());
                    }
                }
            }
            exports.push(Export {
                helper_args: d.helper_args,
                docs: found
                    .map(|f| f.docs.clone())
                    .filter(|d| !d.is_empty())
                    .unwrap_or(d.docs),
                definition: found.map(|f| f.span.clone()),
                name: d.name,
                kind: d.kind,
                helpers,
                args: d.args,
                declared_at: d.span,
            });
        }
        check_api(&text, &decl.api, &pkg.name, problems);
        Some(Provider {
            cell,
            package: pkg.name.clone(),
            package_id: pkg.id.clone(),
            version: pkg.version.clone(),
            source: pkg.source,
            manifest_path: pkg.manifest_path.clone(),
            lib_path: lib.clone(),
            declaration: call.span,
            format,
            macro_crate,
            exports,
            api: decl.api.into_iter().map(|(n, _)| n).collect(),
        })
    }

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

    fn resolve_alias(
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

    /// When `cell` is a provider elsewhere in the graph but not a dependency of `pkg`: an edit
    /// of `pkg`'s manifest adding it under `[dependencies]` (a relative `path` for workspace and
    /// path providers, the version for registry ones).
    fn add_dependency_fix(&self, pkg: &Package, cell: &str) -> Option<Fix> {
        let provider = self
            .providers
            .iter()
            .filter(|p| p.package == cell)
            .max_by_key(|p| Version::parse(&p.version).ok())?;
        let manifest = std::fs::read_to_string(&pkg.manifest_path).ok()?;
        let line = match provider.source {
            SourceKind::Workspace | SourceKind::Path => {
                let from = pkg.manifest_path.parent()?;
                let to = provider.manifest_path.parent()?;
                format!("{cell} = {{ path = \"{}\" }}", relative(from, to).display())
            }
            SourceKind::Registry => format!("{cell} = \"{}\"", provider.version),
            SourceKind::Git => return None,
        };
        // Right after the `[dependencies]` header, or a new section at the end.
        let (at, text) = match manifest.find("[dependencies]") {
            Some(i) => {
                let eol = manifest[i..].find('\n').map_or(manifest.len(), |e| i + e);
                (eol, format!("\n{line}"))
            }
            None => {
                let sep = if manifest.ends_with('\n') { "" } else { "\n" };
                (manifest.len(), format!("{sep}\n[dependencies]\n{line}\n"))
            }
        };
        let line_no = manifest[..at].matches('\n').count() + 1;
        let col = manifest[..at]
            .rsplit('\n')
            .next()
            .map_or(0, |l| l.chars().count())
            + 1;
        let to_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Some(Fix {
            title: format!("Add `{line}` to Cargo.toml"),
            replacement: text,
            span: Span {
                file: pkg.manifest_path.clone(),
                line: to_u32(line_no),
                col: to_u32(col),
                end_line: to_u32(line_no),
                end_col: to_u32(col),
                start: at,
                end: at,
            },
        })
    }

    /// Version skew: a newer version of the resolved provider elsewhere in the graph (when the
    /// alias did not pin one) or in the local cargo cache (registry providers).
    fn check_skew(
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

    /// Two glob imports of aliases in one module whose providers bring *different* items under
    /// a common name, and a bare use of that name in the module: reported at the use, where
    /// rustc reports E0659. Without a use there is nothing ambiguous (rustc says nothing
    /// either); a definition or an explicit import of the name in the module shadows both
    /// globs; two globs bringing the same item (one proc-macro crate's macro re-exported by two
    /// providers, or one provider under two aliases) are no ambiguity (see [`exported_items`]).
    fn check_globs(&self, problems: &mut Vec<Problem>) {
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

    /// Shares this index behind a mutex (what the watcher and the LSP use).
    pub fn shared(self) -> Arc<std::sync::Mutex<Index>> {
        Arc::new(std::sync::Mutex::new(self))
    }
}

/// An edit of `pkg`'s manifest raising its requirement on `package` to `to`: the quoted
/// requirement on the dependency's own line (`kv = "=0.3.0"`, `kv = { version = "0.3" }`).
/// `None` when the entry is inherited from the workspace, has no version, or is written in a
/// form this does not find (a `[dependencies.kv]` table): no fix rather than a wrong one.
fn requirement_fix(pkg: &Package, package: &str, to: &Version) -> Option<Fix> {
    let dir = pkg.manifest_path.parent()?;
    let manifest = cell_resolver::Manifest::load(dir).ok()?;
    let dep = manifest
        .dependencies
        .iter()
        .find(|d| d.package == package && !d.inherited && d.version_req.is_some())?;
    let req = dep.version_req.as_deref()?;
    let text = std::fs::read_to_string(&pkg.manifest_path).ok()?;
    let keys = [dep.extern_crate.clone(), dep.extern_crate.replace('_', "-")];
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let is_entry = keys.iter().any(|k| {
            trimmed
                .strip_prefix(k.as_str())
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        });
        if is_entry && let Some(at) = line.find(&format!("\"{req}\"")) {
            let start = offset + at;
            let end = start + req.len() + 2;
            return Some(Fix {
                title: format!("require `{package}` {to} in Cargo.toml"),
                replacement: format!("\"{to}\""),
                span: text_span(&pkg.manifest_path, &text, start, end),
            });
        }
        offset += line.len();
    }
    None
}

/// The model span of the byte range `start..end` of `text` (one line).
fn text_span(file: &Path, text: &str, start: usize, end: usize) -> Span {
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let width = text[start..end].chars().count();
    let to_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Span {
        file: file.to_path_buf(),
        line: to_u32(line),
        col: to_u32(col),
        end_line: to_u32(line),
        end_col: to_u32(col + width),
        start,
        end,
    }
}

/// A glob import already seen in a scope: (alias, the items it brings by name, where).
type GlobSeen = (String, BTreeMap<String, BTreeSet<ItemId>>, Span);

/// What a name brought in by a glob import refers to, so that two globs bringing one item
/// under one name are told apart from two globs bringing different items (only the latter is
/// E0659).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum ItemId {
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
fn exported_items(
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
        items
            .entry(n.clone())
            .or_default()
            .insert(ItemId::Item {
                provider_id: provider.package_id.clone(),
                name: n.clone(),
            });
    }
    items
}

/// CELL0007 for a declared `api` item the provider's crate root does not have: `export!`
/// re-exports it with the declared name's span, so rustc reports E0432 there when compiling
/// the provider. Read from the source, never compiled: only single names (`snapshot`,
/// `crate::snapshot`) are checked, and nothing when the root has a glob `use` or a macro call
/// that may define names ([`crate::scan::root_names`]).
fn check_api(lib_text: &str, api: &[(String, Span)], package: &str, problems: &mut Vec<Problem>) {
    if api.is_empty() {
        return;
    }
    let Some(names) = crate::scan::root_names(lib_text) else {
        return;
    };
    for (path, span) in api {
        let name = path.strip_prefix("crate::").unwrap_or(path);
        if name.contains("::") || names.contains(name) {
            continue;
        }
        let mut p = problem(
            ProblemCode::MissingExport,
            Severity::Error,
            format!(
                "`{name}` is declared in export!'s `api` but the crate root of `{package}` has no \
                 item named `{name}`"
            ),
            Some(span.clone()),
        );
        p.notes
            .push("note: rustc reports this as E0432 when compiling the provider".to_owned());
        let candidates: Vec<&str> = names.iter().map(String::as_str).collect();
        if let Some(best) = did_you_mean(name, &candidates) {
            p.notes.push(format!("help: did you mean `{best}`?"));
            p.fix = Some(Fix {
                title: format!("replace with `{best}`"),
                replacement: best.to_owned(),
                span: span.clone(),
            });
        }
        problems.push(p);
    }
}

/// The names the library at `lib` defines at its root (read once per check).
fn defined_at_root<'a>(
    seen: &'a mut HashMap<PathBuf, BTreeSet<String>>,
    lib: &Path,
) -> &'a BTreeSet<String> {
    seen.entry(lib.to_owned()).or_insert_with(|| {
        std::fs::read_to_string(lib)
            .map(|text| crate::scan::root_definitions(&text))
            .unwrap_or_default()
    })
}

fn fn_attr(kind: ExportKind) -> &'static str {
    match kind {
        ExportKind::Attribute => "`#[proc_macro_attribute]` fn",
        ExportKind::Function => "`#[proc_macro]` fn",
        ExportKind::Derive => "`#[proc_macro_derive]`",
    }
}

pub(crate) fn problem(
    code: ProblemCode,
    severity: Severity,
    message: String,
    span: Option<Span>,
) -> Problem {
    Problem {
        code,
        severity,
        message,
        span,
        notes: Vec::new(),
        fix: None,
    }
}

/// Reads a member's sources for `cell_remote!` calls and glob imports.
fn read_consumer(
    pkg: &Package,
    problems: &mut Vec<Problem>,
) -> (Option<Consumer>, Vec<GlobImport>, Vec<ScopeName>) {
    let mut aliases = Vec::new();
    let mut globs = Vec::new();
    let mut names = Vec::new();
    {
        for file in source_files(pkg) {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            if !text.contains("cell_remote") {
                continue;
            }
            let found = match scan(&file, &text, &["cell_remote"]) {
                Ok(found) => found,
                Err((message, span)) => {
                    // Not even the error-tolerant lexing could read it: an error, since its
                    // aliases (and so every use of them) go unchecked, and rustc rejects it too.
                    problems.push(problem(
                        ProblemCode::MalformedRemote,
                        Severity::Error,
                        message,
                        Some(span),
                    ));
                    continue;
                }
            };
            for call in found.calls {
                match parse_remote(&file, &call) {
                    Ok(alias) => aliases.push(alias),
                    Err((message, notes, span)) => {
                        let mut p = problem(
                            ProblemCode::MalformedRemote,
                            Severity::Error,
                            message,
                            Some(span),
                        );
                        p.notes = notes;
                        problems.push(p);
                    }
                }
            }
            for g in found.globs {
                globs.push(GlobImport {
                    path: g.path,
                    file: file.clone(),
                    module: g.module,
                    span: g.span,
                });
            }
            for n in found.names {
                names.push(ScopeName {
                    name: n.name,
                    file: file.clone(),
                    module: n.module,
                    span: n.span,
                    defines: n.defines,
                });
            }
        }
    }
    if aliases.is_empty() {
        return (None, Vec::new(), Vec::new());
    }
    (
        Some(Consumer {
            package: pkg.name.clone(),
            package_id: pkg.id.clone(),
            manifest_path: pkg.manifest_path.clone(),
            aliases,
        }),
        globs,
        names,
    )
}

/// `Alias = "cell"` or `Alias = "cell@version"`, parsed by the parser `cell_remote!` itself uses
/// (`cell_export::parse_remote`) and checked by the same `cell_resolver::parse_spec`, so the
/// CELL0003 message and token are the ones the compiler shows. The error is (message without
/// the code, notes, span).
fn parse_remote(
    file: &Path,
    call: &crate::scan::MacroCall,
) -> Result<Alias, (String, Vec<String>, Span)> {
    let input = cell_export::parse_remote(call.group.stream()).map_err(|e| {
        // An error at the end of the input or for an empty call carries no real location
        // (rustc shows the whole call there too): point at the call.
        let span = if e.span().byte_range().is_empty() {
            call.span.clone()
        } else {
            crate::span::span_of(file, e.span())
        };
        let text = e.to_string();
        let prefix = format!("{}: ", ProblemCode::MalformedRemote);
        let message = text.strip_prefix(&prefix).unwrap_or(&text).to_owned();
        (message, Vec::new(), span)
    })?;
    let literal = crate::span::span_of(file, input.cell.span());
    let spec = cell_resolver::parse_spec(&input.cell.value()).map_err(|e| {
        let notes = e.help.iter().map(|h| format!("help: {h}")).collect();
        (e.message, notes, literal.clone())
    })?;
    Ok(Alias {
        name: input.alias.to_string(),
        cell: spec.cell,
        version: spec.version,
        module: call.module.clone(),
        span: crate::span::span_of(file, input.alias.span()),
        literal,
        call: call.span.clone(),
        resolved: None,
    })
}

/// The cell as written in the call: `celldb` or `celldb@0.4`.
fn spec(alias: &Alias) -> String {
    match &alias.version {
        Some(v) => format!("{}@{v}", alias.cell),
        None => alias.cell.clone(),
    }
}

/// `0.4` matches 0.4.x (as a caret requirement would), `0.4.2` matches exactly 0.4.2 and up
/// within caret rules; anything semver cannot read is compared as a prefix.
pub fn version_matches(version: &str, qualifier: &str) -> bool {
    match (Version::parse(version), VersionReq::parse(qualifier)) {
        (Ok(v), Ok(req)) => req.matches(&v),
        _ => version == qualifier || version.starts_with(&format!("{qualifier}.")),
    }
}

/// `0.4.2` → `0.4`, `1.2.3` → `1` (the part a caret requirement keeps).
fn short_version(v: &str) -> String {
    match Version::parse(v) {
        Ok(v) if v.major > 0 => v.major.to_string(),
        Ok(v) if v.minor > 0 => format!("0.{}", v.minor),
        Ok(v) => format!("0.0.{}", v.patch),
        Err(_) => v.to_owned(),
    }
}

/// The closest candidate within a small edit distance (or equal modulo `-`/`_` and case).
pub fn did_you_mean<'a>(wanted: &str, candidates: &[&'a str]) -> Option<&'a str> {
    // One rule for every "did you mean" of the toolchain, macros included.
    cell_export::args::did_you_mean(wanted, candidates)
}

/// Directories watched for `pkg`: `src/` and the directory of every target root.
pub(crate) fn source_dirs(pkg: &Package) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut add = |d: PathBuf| {
        if d.is_dir() && !dirs.iter().any(|x| d.starts_with(x)) {
            dirs.retain(|x| !x.starts_with(&d));
            dirs.push(d);
        }
    };
    if let Some(dir) = pkg.manifest_path.parent() {
        add(dir.join("src"));
    }
    for root in pkg.target_roots.iter().chain(pkg.lib_path.iter()) {
        if let Some(dir) = root.parent() {
            add(dir.to_path_buf());
        }
    }
    dirs
}

/// The `.rs` files of `pkg`'s targets: everything under `src/`, and for each other target root
/// its whole directory when the root is a `main.rs`/`lib.rs`/`mod.rs` (a target with its own
/// directory, like `tests/integration/main.rs`), else the root file alone — so loose files
/// beside it that are not part of the crate (trybuild cases in `tests/ui/`) are not read.
pub fn source_files(pkg: &Package) -> Vec<PathBuf> {
    let mut files = BTreeSet::new();
    let src = pkg.manifest_path.parent().map(|d| d.join("src"));
    if let Some(src) = &src {
        files.extend(rust_files(src, true));
    }
    for root in pkg.target_roots.iter().chain(pkg.lib_path.iter()) {
        if src.as_ref().is_some_and(|s| root.starts_with(s)) {
            continue;
        }
        let own_dir = matches!(
            root.file_name().and_then(|n| n.to_str()),
            Some("main.rs" | "lib.rs" | "mod.rs")
        );
        match root.parent() {
            Some(dir) if own_dir => files.extend(rust_files(dir, true)),
            _ => {
                if root.is_file() {
                    files.insert(root.clone());
                }
            }
        }
    }
    files.into_iter().collect()
}

/// `.rs` files under `dir` (recursively), skipping `target` and nested packages.
pub(crate) fn rust_files(dir: &Path, recursive: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                if recursive && e.file_name() != "target" && !path.join("Cargo.toml").exists() {
                    stack.push(path);
                }
            } else if path.extension().and_then(|x| x.to_str()) == Some("rs") {
                out.push(path);
            }
        }
    }
    out
}

/// `to` relative to `from` (both absolute directories), e.g. `../providers/kv`.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    out
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// `"Add x"` → `"add x"`: a fix title used inside a sentence. Only the first letter changes;
/// the rest (crate names, paths) must stay as written.
fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_qualifiers() {
        assert!(version_matches("0.4.2", "0.4"));
        assert!(!version_matches("0.5.0", "0.4"));
        assert!(version_matches("1.3.0", "1"));
        assert_eq!(short_version("0.4.2"), "0.4");
        assert_eq!(short_version("2.1.0"), "2");
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative(Path::new("/a/b/app"), Path::new("/a/providers/kv")),
            PathBuf::from("../../providers/kv")
        );
        assert_eq!(
            relative(Path::new("/a"), Path::new("/a/kv")),
            PathBuf::from("kv")
        );
    }

    /// A span in the consumer's `src/lib.rs` at byte `start` (line 1).
    fn at(start: usize) -> Span {
        let to_u32 = |n: usize| u32::try_from(n).unwrap();
        Span {
            file: PathBuf::from("/ws/app/src/lib.rs"),
            line: 1,
            col: to_u32(start + 1),
            end_line: 1,
            end_col: to_u32(start + 6),
            start,
            end: start + 5,
        }
    }

    fn package(id: &str, name: &str, version: &str, deps: &[(&str, &str)]) -> Package {
        Package {
            id: id.to_owned(),
            name: name.to_owned(),
            version: version.to_owned(),
            source: SourceKind::Path,
            manifest_path: PathBuf::from(format!("/ws/{id}/Cargo.toml")),
            lib_path: Some(PathBuf::from(format!("/ws/{id}/src/lib.rs"))),
            proc_macro: false,
            target_roots: Vec::new(),
            deps: deps
                .iter()
                .map(|(extern_crate, package_id)| crate::model::Dep {
                    extern_crate: (*extern_crate).to_owned(),
                    package_id: (*package_id).to_owned(),
                })
                .collect(),
        }
    }

    /// A provider `cell` (package id = cell name) exporting the attribute `hello` from the
    /// macro crate package `macros` (`None`: not found among its dependencies).
    fn provider(cell: &str, macros: Option<&str>) -> Provider {
        Provider {
            cell: cell.to_owned(),
            package: cell.to_owned(),
            package_id: cell.to_owned(),
            version: "1.0.0".to_owned(),
            source: SourceKind::Path,
            manifest_path: PathBuf::from(format!("/ws/{cell}/Cargo.toml")),
            // Does not exist: no API item counts as defined by the provider.
            lib_path: PathBuf::from(format!("/ws/{cell}/src/lib.rs")),
            declaration: at(0),
            format: 1,
            macro_crate: Some(MacroCrate {
                name: "shared_macros".to_owned(),
                package_id: macros.map(str::to_owned),
                lib_path: None,
            }),
            exports: vec![Export {
                name: "hello".to_owned(),
                kind: ExportKind::Attribute,
                docs: String::new(),
                helpers: Vec::new(),
                helper_args: BTreeMap::new(),
                args: Vec::new(),
                declared_at: at(0),
                definition: None,
            }],
            api: vec!["greeting".to_owned()],
        }
    }

    /// The problem codes of a consumer `app` with `cell_remote!(Ai = "<cell i>")` for each
    /// alias, `use Ai::*;` for each, and one bare use `#[hello]`: the glob-ambiguity check on
    /// a hand-built index (no cargo), so each case states exactly which items the globs bring.
    fn glob_check(aliases: &[(&str, &str)], providers: Vec<Provider>) -> Vec<ProblemCode> {
        let mut deps: Vec<(&str, &str)> = providers
            .iter()
            .map(|p| (p.package.as_str(), p.package_id.as_str()))
            .collect();
        deps.dedup();
        let mut packages = vec![package("app", "app", "0.1.0", &deps)];
        packages.extend(
            providers
                .iter()
                .map(|p| package(&p.package_id, &p.package, &p.version, &[])),
        );
        let file = PathBuf::from("/ws/app/src/lib.rs");
        let mut index = Index {
            manifest_path: PathBuf::from("/ws/Cargo.toml"),
            workspace_root: PathBuf::from("/ws"),
            target_dir: PathBuf::from("/ws/target"),
            members: vec!["app".to_owned()],
            packages,
            status: IndexStatus::Complete,
            platform: None,
            providers,
            consumers: vec![Consumer {
                package: "app".to_owned(),
                package_id: "app".to_owned(),
                manifest_path: PathBuf::from("/ws/app/Cargo.toml"),
                aliases: aliases
                    .iter()
                    .enumerate()
                    .map(|(i, (name, cell))| Alias {
                        name: (*name).to_owned(),
                        cell: (*cell).to_owned(),
                        version: None,
                        module: Vec::new(),
                        span: at(10 * i),
                        literal: at(10 * i + 5),
                        call: at(10 * i),
                        resolved: None,
                    })
                    .collect(),
            }],
            problems: Vec::new(),
            parse_problems: BTreeMap::new(),
            globs: BTreeMap::from([(
                "app".to_owned(),
                aliases
                    .iter()
                    .enumerate()
                    .map(|(i, (name, _))| GlobImport {
                        path: vec![(*name).to_owned()],
                        file: file.clone(),
                        module: Vec::new(),
                        span: at(100 + 10 * i),
                    })
                    .collect(),
            )]),
            scope_names: BTreeMap::from([(
                "app".to_owned(),
                vec![ScopeName {
                    name: "hello".to_owned(),
                    file: file.clone(),
                    module: Vec::new(),
                    span: at(200),
                    defines: false,
                }],
            )]),
            cargo_home: None,
            input_stamps: BTreeMap::new(),
        };
        index.recompute();
        index.problems.iter().map(|p| p.code).collect()
    }

    #[test]
    fn two_providers_re_exporting_one_macro_crates_macro_are_not_cell0005() {
        let codes = glob_check(
            &[("G", "greet"), ("S", "shout")],
            vec![
                provider("greet", Some("shared-macros 1.0.0")),
                provider("shout", Some("shared-macros 1.0.0")),
            ],
        );
        assert_eq!(codes, []);
    }

    #[test]
    fn two_providers_with_their_own_macro_crates_are_cell0005() {
        let codes = glob_check(
            &[("G", "greet"), ("S", "shout")],
            vec![
                provider("greet", Some("greet-macros 1.0.0")),
                provider("shout", Some("shout-macros 1.0.0")),
            ],
        );
        assert_eq!(codes, [ProblemCode::GlobAmbiguity]);
    }

    #[test]
    fn two_versions_of_one_macro_crate_are_different_items_and_cell0005() {
        // Same crate name (`shared_macros`), two packages: two different items for rustc.
        let codes = glob_check(
            &[("G", "greet"), ("S", "shout")],
            vec![
                provider("greet", Some("shared-macros 0.3.0")),
                provider("shout", Some("shared-macros 0.4.0")),
            ],
        );
        assert_eq!(codes, [ProblemCode::GlobAmbiguity]);
    }

    #[test]
    fn macro_crates_not_found_count_as_each_providers_own_and_cell0005() {
        let codes = glob_check(
            &[("G", "greet"), ("S", "shout")],
            vec![provider("greet", None), provider("shout", None)],
        );
        assert_eq!(codes, [ProblemCode::GlobAmbiguity]);
    }

    #[test]
    fn one_provider_glob_imported_under_two_aliases_is_not_cell0005() {
        let codes = glob_check(
            &[("G", "greet"), ("H", "greet")],
            vec![provider("greet", Some("greet-macros 1.0.0"))],
        );
        assert_eq!(codes, []);
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("celdb", &["celldb", "validate"]),
            Some("celldb")
        );
        assert_eq!(did_you_mean("cell_db", &["cell-db"]), Some("cell-db"));
        assert_eq!(did_you_mean("zzz", &["celldb"]), None);
    }

    /// The manifests' freshness stamps against real `cargo metadata` on a temp workspace, with
    /// the test seam standing for an edit saved while cargo runs (after it read the file,
    /// before the index stamps it): deterministic, where a real concurrent edit would race.
    mod metadata_stamps {
        use std::cell::Cell;
        use std::rc::Rc;
        use std::time::{Duration, SystemTime};

        use super::*;
        use crate::discover::tests::set_after_metadata;
        use crate::snapshot::{load_fresh, save};

        /// A workspace with one member `app` at 0.1.0, every file dated an hour ago (so only
        /// what a test writes is recent); returns (guard, options, the member's manifest).
        fn workspace() -> (tempfile::TempDir, IndexOptions, PathBuf) {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().canonicalize().unwrap();
            let files = [
                (
                    root.join("Cargo.toml"),
                    "[workspace]\nmembers = [\"app\"]\nresolver = \"2\"\n",
                ),
                (
                    root.join("app/Cargo.toml"),
                    "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
                ),
                (root.join("app/src/lib.rs"), "pub fn f() {}\n"),
            ];
            let old = SystemTime::now() - Duration::from_secs(3600);
            for (path, text) in &files {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, text).unwrap();
                let file = std::fs::File::options().write(true).open(path).unwrap();
                file.set_modified(old).unwrap();
            }
            let mut options = IndexOptions::new(root.join("Cargo.toml"));
            options.target_dir = Some(root.join("target"));
            (dir, options, root.join("app/Cargo.toml"))
        }

        fn app_version(index: &Index) -> &str {
            &index
                .packages
                .iter()
                .find(|p| p.name == "app")
                .unwrap()
                .version
        }

        /// Builds with `edit(run)` called after each `cargo metadata` run (from 1); returns
        /// the index and the number of runs.
        fn build_editing(
            options: &IndexOptions,
            mut edit: impl FnMut(usize) + 'static,
        ) -> (Index, usize) {
            let runs = Rc::new(Cell::new(0));
            let counter = runs.clone();
            set_after_metadata(Some(Box::new(move || {
                counter.set(counter.get() + 1);
                edit(counter.get());
            })));
            let index = Index::build(options);
            set_after_metadata(None);
            (index.unwrap(), runs.get())
        }

        /// The gap this reproduces: the member's manifest was stamped after `cargo metadata`,
        /// so an edit saved while cargo ran matched the stamp and the snapshot of the old
        /// graph (app 0.1.0) was served as fresh. Now the edit is newer than the run's start,
        /// so cargo runs again (and a third time: the new version makes it rewrite
        /// `Cargo.lock` in the second) and the index holds the edit.
        #[test]
        fn a_member_manifest_edited_while_metadata_runs_is_not_served_stale() {
            let (_guard, options, member) = workspace();
            // A first build writes `Cargo.lock`, so the edit alone decides below.
            build_editing(&options, |_| {});
            let edited = member.clone();
            let (index, runs) = build_editing(&options, move |run| {
                if run == 1 {
                    let text = std::fs::read_to_string(&edited).unwrap();
                    std::fs::write(&edited, text.replace("0.1.0", "0.2.0")).unwrap();
                }
            });
            // The snapshot served as fresh holds what the files say.
            save(&index).unwrap();
            let target = options.target_dir.as_deref().unwrap();
            let served = load_fresh(target, &options.manifest_path).unwrap();
            assert_eq!(app_version(&served), "0.2.0");
            assert_eq!(index.changed_inputs(), Vec::<PathBuf>::new());
            assert_eq!(runs, 3);
        }

        /// Edited while every run reads it: the stamp from before the last run is kept, so
        /// the snapshot is stale and `changed_inputs` names the manifest.
        #[test]
        fn a_member_manifest_edited_during_every_run_leaves_the_snapshot_stale() {
            let (_guard, options, member) = workspace();
            build_editing(&options, |_| {});
            let edited = member.clone();
            let (index, runs) = build_editing(&options, move |run| {
                let text = std::fs::read_to_string(&edited).unwrap();
                // A new length each time, so the stamps differ whatever the clock's tick.
                let versions = ["0.1.0", "0.2.0", "0.30.0", "0.400.0"];
                std::fs::write(&edited, text.replace(versions[run - 1], versions[run])).unwrap();
            });
            save(&index).unwrap();
            let target = options.target_dir.as_deref().unwrap();
            assert!(load_fresh(target, &options.manifest_path).is_none());
            assert!(index.changed_inputs().contains(&member));
            // What the last run read.
            assert_eq!(app_version(&index), "0.30.0");
            assert_eq!(runs, 3);
        }

        /// Indexed through a member's manifest, the root manifest is known only from cargo's
        /// answer: an edit of it saved while cargo ran (a new member) is caught by the start
        /// time all the same.
        #[test]
        fn the_root_manifest_edited_while_metadata_runs_for_a_member_is_not_served_stale() {
            let (_guard, mut options, member) = workspace();
            let root = options.manifest_path.clone();
            let dir = root.parent().unwrap().to_path_buf();
            std::fs::create_dir_all(dir.join("extra/src")).unwrap();
            std::fs::write(
                dir.join("extra/Cargo.toml"),
                "[package]\nname = \"extra\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
            )
            .unwrap();
            std::fs::write(dir.join("extra/src/lib.rs"), "").unwrap();
            options.manifest_path = member;
            build_editing(&options, |_| {});
            // Dated back like the rest, so only the edit below is recent.
            let lock = std::fs::File::options()
                .write(true)
                .open(dir.join("Cargo.lock"))
                .unwrap();
            lock.set_modified(SystemTime::now() - Duration::from_secs(3600))
                .unwrap();
            let (index, runs) = build_editing(&options, move |run| {
                if run == 1 {
                    let text = std::fs::read_to_string(&root).unwrap();
                    std::fs::write(&root, text.replace("[\"app\"]", "[\"app\", \"extra\"]"))
                        .unwrap();
                }
            });
            save(&index).unwrap();
            let target = options.target_dir.as_deref().unwrap();
            let served = load_fresh(target, &options.manifest_path).unwrap();
            assert!(served.packages.iter().any(|p| p.name == "extra"));
            assert!(runs >= 2, "{runs}");
        }

        /// `Cargo.lock` written by cargo itself (missing before) is settled by the second
        /// run, which does not rewrite it; with nothing moving, cargo runs once.
        #[test]
        fn a_lockfile_cargo_writes_is_settled_and_a_quiet_build_runs_cargo_once() {
            let (_guard, options, _member) = workspace();
            let (first, runs) = build_editing(&options, |_| {});
            assert_eq!(runs, 2);
            assert!(first.changed_inputs().is_empty());
            save(&first).unwrap();
            let target = options.target_dir.as_deref().unwrap();
            assert_eq!(load_fresh(target, &options.manifest_path), Some(first));
            let (second, runs) = build_editing(&options, |_| {});
            assert_eq!(runs, 1);
            assert!(second.changed_inputs().is_empty());
        }
    }
}
