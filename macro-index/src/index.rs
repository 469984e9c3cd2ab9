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

mod consumer;
mod fixes;
mod globs;
mod provider;
mod resolve;
use consumer::*;
use fixes::*;

/// Builtin attributes an exported attribute macro would shadow when glob-imported (the shared
/// list of `cell-export`).
pub const BUILTIN_ATTRIBUTES: &[&str] = cell_export::BUILTIN_ATTRIBUTES;

/// Macros `cell-sdk` itself exports (the shared list of `cell-export`), which an alias or an
/// export would shadow.
pub const CELL_SDK_NAMES: &[&str] = cell_export::CELL_SDK_MACROS;

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

    /// Shares this index behind a mutex (what the watcher and the LSP use).
    pub fn shared(self) -> Arc<std::sync::Mutex<Index>> {
        Arc::new(std::sync::Mutex::new(self))
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
