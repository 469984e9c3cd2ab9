//! `cell-resolver`: a cell name (+ optional version qualifier) → the extern crate name the
//! crate being compiled uses for it, read from that crate's own `Cargo.toml`.
//!
//! A cell name *is* a package name (`"celldb"`). Consumers may rename it
//! (`db = { package = "celldb" }`) or depend on two versions
//! (`celldb_v3 = { package = "celldb", version = "0.3" }` next to `celldb = "0.4"`), so a macro
//! expansion can never assume `::celldb`. `cell_remote!` and every provider macro ask this crate
//! instead:
//!
//! - [`resolve`] / [`resolve_from_env`]: the one call macros make. Returns a [`Resolved`] (extern
//!   crate name, package, version requirement, source) or a [`ResolveError`] carrying a stable
//!   [`ProblemCode`], a message, help lines and "did you mean" candidates.
//! - [`Manifest`]: the parsed dependency tables (`[dependencies]`, `[dev-dependencies]`,
//!   `[build-dependencies]`, `[target.'cfg(..)'.*]`, renames, `workspace = true` inheritance),
//!   for tools that want the whole list.
//! - [`ProblemCode`]: the problem codes shared by `cell_remote!`, provider macros, the macro index
//!   and cell-lsp (`CELL0001`…).
//!
//! **Key design decision: hermetic.** It reads the consumer's `Cargo.toml` and, only for
//! inherited entries, its workspace root's — inputs cargo already tracks — and nothing else. It
//! spawns no process (no `cargo locate-project`, unlike `proc-macro-crate`), reads no snapshot
//! or cache, and touches no network: rust-analyzer caches macro expansions and would never
//! notice such side inputs change. The price: a version qualifier can only match the version
//! requirement *written* in the manifest (`"0.4"`, `"^0.4.2"`, `"=0.4.1"`), not the version
//! cargo locked. A path or git dependency without a `version` key matches any qualifier, so
//! two such dependencies on one package cannot be told apart: give them `version` keys.
//!
//! **The provider's own package.** When the crate being compiled is the cell's own package (its
//! integration tests, examples, doctests), the cell resolves to the package's lib crate name. For
//! that name to also work inside the provider's lib itself, the provider writes
//! `extern crate self as celldb;` at the top of its `lib.rs`.
//!
//! **What it is not:** the macro index. It knows one manifest, not the dependency graph, and
//! cannot tell whether a dependency is a provider (the `__cell_exports` import that
//! `cell_remote!` emits checks that, through rustc).
//!
//! # Example
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::write(
//!     dir.path().join("Cargo.toml"),
//!     r#"
//!     [package]
//!     name = "app"
//!     version = "0.1.0"
//!
//!     [dependencies]
//!     db = { package = "celldb", version = "0.4" }
//!     celldb_v3 = { package = "celldb", version = "0.3" }
//!     "#,
//! )
//! .unwrap();
//!
//! let resolved = cell_resolver::resolve(dir.path(), "celldb", Some("0.3")).unwrap();
//! assert_eq!(resolved.extern_crate, "celldb_v3");
//!
//! let err = cell_resolver::resolve(dir.path(), "celldb", None).unwrap_err();
//! assert_eq!(err.code, cell_resolver::ProblemCode::AmbiguousVersion);
//! assert_eq!(err.candidates, ["celldb@0.3", "celldb@0.4"]);
//! ```

mod manifest;
mod problem;
mod version;

use std::fmt;
use std::path::Path;

pub use manifest::{DepKind, DepSource, Dependency, Manifest};
pub use problem::{ProblemCode, UnknownProblemCode};

/// What a cell name resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The name to put after `::` in generated paths (`db` for `db = { package = "celldb" }`).
    pub extern_crate: String,
    /// The package name (= the cell name).
    pub package: String,
    /// The version requirement written in the manifest, or the package's own version when
    /// [`DepSource::SelfPackage`].
    pub version_req: Option<String>,
    /// Where the dependency comes from.
    pub source: DepSource,
}

/// Why a cell name did not resolve. `Display` renders it as compile errors show it:
/// `CELL0001: unknown cell …` followed by `help:` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveError {
    /// The stable problem code.
    pub code: ProblemCode,
    /// One sentence, without the code.
    pub message: String,
    /// Further lines ("did you mean", the dependencies that exist), without a `help:` prefix.
    pub help: Vec<String>,
    /// Machine-readable alternatives a tool can offer as fixes: cell specs such as `"celldb"`
    /// or `"celldb@0.4"`.
    pub candidates: Vec<String>,
}

impl ResolveError {
    /// An error with a code and message, no help.
    pub fn new(code: ProblemCode, message: impl Into<String>) -> ResolveError {
        ResolveError {
            code,
            message: message.into(),
            help: Vec::new(),
            candidates: Vec::new(),
        }
    }
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        for line in &self.help {
            write!(f, "\n  help: {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ResolveError {}

/// A parsed `"cell"` or `"cell@version"` string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellSpec {
    /// The cell (package) name.
    pub cell: String,
    /// The version qualifier after `@`, e.g. `"0.4"`.
    pub version: Option<String>,
}

/// Parses `"celldb"` or `"celldb@0.4"`.
///
/// ```
/// let spec = cell_resolver::parse_spec("celldb@0.4").unwrap();
/// assert_eq!((spec.cell.as_str(), spec.version.as_deref()), ("celldb", Some("0.4")));
/// assert!(cell_resolver::parse_spec("celldb@latest").is_err());
/// ```
///
/// # Errors
/// [`ProblemCode::MalformedRemote`] when the name is not a package name or the qualifier is
/// not `MAJOR[.MINOR[.PATCH]]`.
pub fn parse_spec(spec: &str) -> Result<CellSpec, ResolveError> {
    let (cell, version) = match spec.split_once('@') {
        Some((cell, version)) => (cell, Some(version)),
        None => (spec, None),
    };
    let valid_name = !cell.is_empty()
        && cell
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !cell.starts_with(|c: char| c.is_ascii_digit() || c == '-');
    if !valid_name {
        let mut err = ResolveError::new(
            ProblemCode::MalformedRemote,
            format!("`{cell}` is not a cell name: write the provider's package name"),
        );
        err.help
            .push("expected `Alias = \"cell\"` or `Alias = \"cell@0.4\"`".to_owned());
        return Err(err);
    }
    if let Some(v) = version
        && version::parse_qualifier(v).is_none()
    {
        let mut err = ResolveError::new(
            ProblemCode::MalformedRemote,
            format!("`{v}` is not a version qualifier"),
        );
        err.help.push(format!(
            "write a version such as `\"{cell}@0.4\"` or `\"{cell}@1.2.3\"`"
        ));
        return Err(err);
    }
    Ok(CellSpec {
        cell: cell.to_owned(),
        version: version.map(str::to_owned),
    })
}

/// Resolves `cell` (optionally qualified by `version`, e.g. `"0.4"`) against the manifest in
/// `manifest_dir`.
///
/// # Errors
/// - [`ProblemCode::UnknownCell`]: no dependency on that package (or none matching
///   `version`); `candidates` holds close names.
/// - [`ProblemCode::AmbiguousVersion`]: several dependencies on the package match; `candidates`
///   holds one qualified spec per dependency.
/// - [`ProblemCode::MalformedRemote`]: `cell` or `version` is not well-formed.
/// - [`ProblemCode::ManifestUnreadable`]: the manifest cannot be read or parsed.
pub fn resolve(
    manifest_dir: &Path,
    cell: &str,
    version: Option<&str>,
) -> Result<Resolved, ResolveError> {
    let spec = match version {
        Some(v) => format!("{cell}@{v}"),
        None => cell.to_owned(),
    };
    let spec = parse_spec(&spec)?;
    let manifest = Manifest::load(manifest_dir)?;
    resolve_in(&manifest, &spec)
}

/// Resolves a `"cell"` or `"cell@version"` spec against the manifest of the crate being
/// compiled (`CARGO_MANIFEST_DIR`, which cargo and rust-analyzer set for proc macros).
///
/// Provider macros call this to find their runtime crate, qualified with their own version so
/// a consumer that depends on two versions of the provider still gets the matching one:
/// `cell_resolver::resolve_from_env(concat!("celldb@", env!("CARGO_PKG_VERSION")))`
/// (the macro crate and the runtime crate are released with the same version).
///
/// # Errors
/// As [`resolve`]; [`ProblemCode::ManifestUnreadable`] when `CARGO_MANIFEST_DIR` is unset.
pub fn resolve_from_env(spec: &str) -> Result<Resolved, ResolveError> {
    let spec = parse_spec(spec)?;
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").ok_or_else(|| {
        ResolveError::new(
            ProblemCode::ManifestUnreadable,
            "CARGO_MANIFEST_DIR is not set: cell macros must be expanded by cargo or \
             rust-analyzer",
        )
    })?;
    let manifest = Manifest::load(Path::new(&dir))?;
    resolve_in(&manifest, &spec)
}

/// Resolves a parsed spec against an already loaded manifest (what the macro index calls for
/// each `cell_remote!` it finds).
///
/// # Errors
/// As [`resolve`], without the I/O cases.
pub fn resolve_in(manifest: &Manifest, spec: &CellSpec) -> Result<Resolved, ResolveError> {
    // Cargo sets `CARGO_CRATE_NAME` for every crate it compiles; a package's build script is
    // the crate `build_script_build`.
    let build_script =
        std::env::var("CARGO_CRATE_NAME").is_ok_and(|name| name == "build_script_build");
    resolve_for(manifest, spec, build_script)
}

/// [`resolve_in`] for ordinary code (`build_script == false`) or for the package's build script.
/// The two see different crates: `[build-dependencies]` are linked into the build script only,
/// and it sees nothing else, so counting them for ordinary code would make a cell ambiguous
/// (CELL0002) or resolve to a crate the code cannot name.
fn resolve_for(
    manifest: &Manifest,
    spec: &CellSpec,
    build_script: bool,
) -> Result<Resolved, ResolveError> {
    let cell = spec.cell.as_str();
    let qualifier = spec.version.as_deref();

    if manifest.package.as_deref() == Some(cell)
        && qualifier.is_none_or(|q| {
            manifest
                .version
                .as_deref()
                .is_none_or(|v| version::matches(v, q))
        })
    {
        return Ok(Resolved {
            extern_crate: manifest
                .lib_name
                .clone()
                .unwrap_or_else(|| cell.replace('-', "_")),
            package: cell.to_owned(),
            version_req: manifest.version.clone(),
            source: DepSource::SelfPackage,
        });
    }

    // One candidate per extern name: the same dependency listed in several tables (normal and
    // dev, or per target) is one crate to the code.
    let mut all: Vec<&Dependency> = Vec::new();
    let visible = |d: &&Dependency| (d.kind == DepKind::Build) == build_script;
    for dep in manifest
        .dependencies
        .iter()
        .filter(visible)
        .filter(|d| d.package == cell)
    {
        if !all.iter().any(|c| c.extern_crate == dep.extern_crate) {
            all.push(dep);
        }
    }
    if all.is_empty() {
        let mut err = unknown_cell(manifest, cell);
        let elsewhere = manifest
            .dependencies
            .iter()
            .any(|d| d.package == cell && (d.kind == DepKind::Build) != build_script);
        if elsewhere && !build_script {
            err.help.insert(
                0,
                format!(
                    "`{cell}` is only a [build-dependencies] entry, which only build.rs can use;                      add it to [dependencies]"
                ),
            );
        } else if elsewhere {
            err.help.insert(
                0,
                format!(
                    "a build script sees only [build-dependencies]; add `{cell}` there to use it                      in build.rs"
                ),
            );
        }
        return Err(err);
    }
    // Manifest tables are unordered maps: sort so messages are deterministic (oldest first).
    all.sort_by(|a, b| {
        let key = |d: &Dependency| d.version_req.as_deref().map(version::base);
        key(a)
            .cmp(&key(b))
            .then_with(|| a.extern_crate.cmp(&b.extern_crate))
    });
    let matching: Vec<&Dependency> = match qualifier {
        None => all.clone(),
        Some(q) => all
            .iter()
            .copied()
            // A dependency without a written version (a bare path or git entry) cannot be
            // excluded by a qualifier: it stays a candidate.
            .filter(|d| {
                d.version_req
                    .as_deref()
                    .is_none_or(|r| version::matches(r, q))
            })
            .collect(),
    };
    match matching.as_slice() {
        [one] => Ok(Resolved {
            extern_crate: one.extern_crate.clone(),
            package: one.package.clone(),
            version_req: one.version_req.clone(),
            source: one.source.clone(),
        }),
        [] => {
            let q = qualifier.unwrap_or_default();
            let mut err = ResolveError::new(
                ProblemCode::UnknownCell,
                format!("this crate depends on `{cell}`, but on no version matching `{q}`"),
            );
            err.candidates = all.iter().map(|d| qualified(d)).collect();
            err.help.push(format!(
                "versions this crate depends on: {}",
                describe_versions(&all)
            ));
            Err(err)
        }
        several => {
            let mut err = ResolveError::new(
                ProblemCode::AmbiguousVersion,
                match qualifier {
                    None => format!(
                        "this crate depends on {} versions of `{cell}`: say which one",
                        several.len()
                    ),
                    Some(q) => format!(
                        "`{cell}@{q}` matches {} dependencies: qualify it further",
                        several.len()
                    ),
                },
            );
            err.candidates = several.iter().map(|d| qualified(d)).collect();
            err.help.push(format!(
                "write one of: {}",
                err.candidates
                    .iter()
                    .map(|c| format!("\"{c}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            err.help
                .push(format!("dependencies: {}", describe_versions(several)));
            Err(err)
        }
    }
}

/// `celldb@0.4` for a dependency with a version requirement, else `celldb`.
fn qualified(dep: &Dependency) -> String {
    match dep.version_req.as_deref().and_then(version::short) {
        Some(v) => format!("{}@{v}", dep.package),
        None => dep.package.clone(),
    }
}

fn describe_versions(deps: &[&Dependency]) -> String {
    deps.iter()
        .map(|d| {
            let req = d.version_req.as_deref().unwrap_or("(no version)");
            format!("`{}` {req} as `{}`", d.package, d.extern_crate)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn unknown_cell(manifest: &Manifest, cell: &str) -> ResolveError {
    let mut err = ResolveError::new(
        ProblemCode::UnknownCell,
        format!("unknown cell `{cell}`: no dependency of this crate is the package `{cell}`"),
    );
    // The user may have written the extern name of a renamed dependency.
    if let Some(dep) = manifest
        .dependencies
        .iter()
        .find(|d| d.extern_crate == cell.replace('-', "_") && d.package != cell)
    {
        err.help.push(format!(
            "`{cell}` is this crate's name for the package `{}`; a cell is named by its \
             package: write \"{}\"",
            dep.package, dep.package
        ));
        err.candidates.push(dep.package.clone());
    }
    let mut names: Vec<&str> = Vec::new();
    for dep in &manifest.dependencies {
        if !names.contains(&dep.package.as_str()) {
            names.push(&dep.package);
        }
    }
    let close: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| is_close(cell, n) && !err.candidates.iter().any(|c| c == n))
        .collect();
    if !close.is_empty() {
        err.help.push(format!(
            "did you mean {}?",
            close
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(" or ")
        ));
        err.candidates.extend(close.iter().map(|n| (*n).to_owned()));
    }
    // The list of direct dependencies only helps when there is no better hint; with a
    // suggestion above it would be noise (and would change whenever the manifest does).
    if !err.candidates.is_empty() {
        return err;
    }
    let direct: Vec<String> = manifest
        .dependencies
        .iter()
        .filter(|d| d.kind == DepKind::Normal)
        .map(|d| format!("`{}`", d.package))
        .fold(Vec::new(), |mut acc, n| {
            if !acc.contains(&n) {
                acc.push(n);
            }
            acc
        });
    const SHOWN: usize = 12;
    if direct.is_empty() {
        err.help
            .push("this crate has no [dependencies]; add the provider to Cargo.toml".to_owned());
    } else {
        let more = direct.len().saturating_sub(SHOWN);
        let mut listed = direct[..direct.len().min(SHOWN)].join(", ");
        if more > 0 {
            listed.push_str(&format!(" and {more} more"));
        }
        err.help.push(format!(
            "this crate's direct dependencies: {listed}; add the provider to [dependencies]"
        ));
    }
    err
}

/// Close enough to suggest: same name modulo `-`/`_`, or a small edit distance.
fn is_close(wanted: &str, candidate: &str) -> bool {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let (a, b) = (norm(wanted), norm(candidate));
    if a == b {
        return true;
    }
    let limit = (a.len().max(b.len()) / 3).max(1);
    edit_distance(&a, &b) <= limit
}

/// Levenshtein distance over chars (names are short; quadratic is fine).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests;
