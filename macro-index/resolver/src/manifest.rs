//! Reading the dependency tables of one manifest (and its workspace root's, for inherited
//! entries). Only `Cargo.toml` files are read: inputs cargo already tracks, so expansions that
//! depend on them stay correct in cargo and rust-analyzer alike.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::{ProblemCode, ResolveError};

/// Which dependency table an entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DepKind {
    /// `[dependencies]`
    Normal,
    /// `[dev-dependencies]`
    Dev,
    /// `[build-dependencies]`
    Build,
}

/// Where a dependency comes from, as far as the manifest says.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DepSource {
    /// A registry (crates.io or `registry = "…"`).
    Registry,
    /// `path = "…"`, made absolute against the manifest that declares it.
    Path(PathBuf),
    /// `git = "…"`.
    Git(String),
    /// The crate being compiled *is* the cell (a provider's own tests, examples, doctests).
    SelfPackage,
}

/// One entry of a dependency table, with inheritance (`workspace = true`) already applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The name the consumer's code uses (`db` for `db = { package = "celldb" }`), with `-`
    /// replaced by `_`: exactly what goes after `::` in a path.
    pub extern_crate: String,
    /// The package name (= the cell name).
    pub package: String,
    /// The version requirement as written, if any.
    pub version_req: Option<String>,
    /// Where it comes from.
    pub source: DepSource,
    /// Which table declared it.
    pub kind: DepKind,
    /// The `cfg(..)` or triple of a `[target.….dependencies]` table.
    pub target: Option<String>,
    /// Whether the entry was inherited from the workspace root (`workspace = true`).
    pub inherited: bool,
}

/// The parts of a consumer's manifest the resolver needs: its own package and every
/// dependency entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The directory holding `Cargo.toml`.
    pub dir: PathBuf,
    /// `[package] name`, if the manifest has a package (a virtual manifest has none).
    pub package: Option<String>,
    /// `[package] version` when written literally.
    pub version: Option<String>,
    /// The lib target's crate name (`[lib] name`, or the package name with `-` → `_`).
    pub lib_name: Option<String>,
    /// Every dependency entry, in manifest order: normal, dev, build, then target tables.
    pub dependencies: Vec<Dependency>,
}

impl Manifest {
    /// Reads `manifest_dir/Cargo.toml`, and the workspace root's manifest if an entry says
    /// `workspace = true`.
    ///
    /// Parsing TOML dominates the cost of a resolution (about 1.7 ms per call in an
    /// unoptimised proc-macro build, against ~5 µs to read the files), and a crate's macros
    /// resolve many times per compilation, so the parsed result is cached per process, keyed by
    /// the *contents* of every manifest it was built from: each call still re-reads those files
    /// and any change is seen at once (no timestamps, nothing stale in a long-lived
    /// rust-analyzer proc-macro server).
    ///
    /// # Errors
    /// [`ProblemCode::ManifestUnreadable`] when a manifest cannot be read or is not TOML.
    pub fn load(manifest_dir: &Path) -> Result<Manifest, ResolveError> {
        let path = manifest_dir.join("Cargo.toml");
        let text = read_text(&path)?;
        if let Some(hit) = cache::lookup(manifest_dir, &text) {
            return Ok(hit);
        }
        let table = parse_table(&path, &text)?;
        let (manifest, reads) = Manifest::build(manifest_dir, &table);
        cache::store(manifest_dir, text, reads, manifest.clone());
        Ok(manifest)
    }

    /// Builds the model from an already parsed manifest table. The workspace root (for
    /// inherited entries) is looked up on disk from `manifest_dir` when needed.
    pub fn from_table(manifest_dir: &Path, table: &Table) -> Manifest {
        Manifest::build(manifest_dir, table).0
    }

    /// The model plus every other file looked at to build it (path and contents, `None` when
    /// it was missing or unreadable), for the cache.
    fn build(manifest_dir: &Path, table: &Table) -> (Manifest, Vec<(PathBuf, Option<String>)>) {
        let package_table = table.get("package").and_then(Value::as_table);
        let package = package_table
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let version = package_table
            .and_then(|p| p.get("version"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let lib_name = table
            .get("lib")
            .and_then(Value::as_table)
            .and_then(|l| l.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| package.as_ref().map(|p| p.replace('-', "_")));

        let mut workspace = WorkspaceRoot::new(manifest_dir, table);
        let mut dependencies = Vec::new();
        let mut collect = |deps: &Table, kind: DepKind, target: Option<&str>| {
            for (key, value) in deps {
                if let Some(dep) =
                    dependency(manifest_dir, key, value, kind, target, &mut workspace)
                {
                    dependencies.push(dep);
                }
            }
        };
        for (name, kind) in TABLES {
            if let Some(deps) = table.get(name).and_then(Value::as_table) {
                collect(deps, kind, None);
            }
        }
        if let Some(targets) = table.get("target").and_then(Value::as_table) {
            for (target, body) in targets {
                for (name, kind) in TABLES {
                    if let Some(deps) = body.get(name).and_then(Value::as_table) {
                        collect(deps, kind, Some(target));
                    }
                }
            }
        }
        let manifest = Manifest {
            dir: manifest_dir.to_owned(),
            package,
            version,
            lib_name,
            dependencies,
        };
        (manifest, workspace.reads)
    }
}

/// The table names, with the legacy underscore spellings cargo still accepts.
const TABLES: [(&str, DepKind); 5] = [
    ("dependencies", DepKind::Normal),
    ("dev-dependencies", DepKind::Dev),
    ("dev_dependencies", DepKind::Dev),
    ("build-dependencies", DepKind::Build),
    ("build_dependencies", DepKind::Build),
];

fn read_text(path: &Path) -> Result<String, ResolveError> {
    std::fs::read_to_string(path).map_err(|e| {
        ResolveError::new(
            ProblemCode::ManifestUnreadable,
            format!("cannot read `{}`: {e}", path.display()),
        )
    })
}

fn parse_table(path: &Path, text: &str) -> Result<Table, ResolveError> {
    text.parse::<Table>().map_err(|e| {
        ResolveError::new(
            ProblemCode::ManifestUnreadable,
            format!("`{}` is not valid TOML: {}", path.display(), e.message()),
        )
    })
}

/// The workspace root manifest, found lazily (only inherited entries need it).
struct WorkspaceRoot {
    /// Every manifest looked at while looking for the root, with its contents (`None`: missing
    /// or unreadable). Absent ones count too: a workspace root created later (while a
    /// rust-analyzer proc-macro server keeps this cache) changes the answer.
    reads: Vec<(PathBuf, Option<String>)>,
    start: PathBuf,
    explicit: Option<PathBuf>,
    own: Option<Table>,
    loaded: Option<Option<(PathBuf, Table)>>,
}

impl WorkspaceRoot {
    fn new(manifest_dir: &Path, table: &Table) -> WorkspaceRoot {
        let explicit = table
            .get("package")
            .and_then(Value::as_table)
            .and_then(|p| p.get("workspace"))
            .and_then(Value::as_str)
            .map(|rel| manifest_dir.join(rel));
        // A manifest can be its own workspace root (`[package]` and `[workspace]` together).
        let own = table.contains_key("workspace").then(|| table.clone());
        WorkspaceRoot {
            reads: Vec::new(),
            start: manifest_dir.to_owned(),
            explicit,
            own,
            loaded: None,
        }
    }

    /// `[workspace.dependencies]` of the root, with the root's directory.
    fn dependencies(&mut self) -> Option<(&Path, &Table)> {
        if self.loaded.is_none() {
            self.loaded = Some(self.find());
        }
        let (dir, table) = self.loaded.as_ref()?.as_ref()?;
        let deps = table
            .get("workspace")?
            .as_table()?
            .get("dependencies")?
            .as_table()?;
        Some((dir.as_path(), deps))
    }

    fn find(&mut self) -> Option<(PathBuf, Table)> {
        if let Some(own) = self.own.take() {
            return Some((self.start.clone(), own));
        }
        if let Some(dir) = self.explicit.clone() {
            let table = self.read(&dir.join("Cargo.toml"))?;
            return Some((dir, table));
        }
        // Cargo's rule: the nearest ancestor whose manifest has a `[workspace]` table.
        let start = self.start.clone();
        for dir in start.ancestors().skip(1) {
            let path = dir.join("Cargo.toml");
            let Some(table) = self.read(&path) else {
                continue;
            };
            if table.contains_key("workspace") {
                return Some((dir.to_owned(), table));
            }
        }
        None
    }

    fn read(&mut self, path: &Path) -> Option<Table> {
        let Ok(text) = read_text(path) else {
            self.reads.push((path.to_owned(), None));
            return None;
        };
        let table = parse_table(path, &text).ok();
        self.reads.push((path.to_owned(), Some(text)));
        table
    }
}

fn dependency(
    manifest_dir: &Path,
    key: &str,
    value: &Value,
    kind: DepKind,
    target: Option<&str>,
    workspace: &mut WorkspaceRoot,
) -> Option<Dependency> {
    let extern_crate = key.replace('-', "_");
    let mut dep = Dependency {
        extern_crate,
        package: key.to_owned(),
        version_req: None,
        source: DepSource::Registry,
        kind,
        target: target.map(str::to_owned),
        inherited: false,
    };
    match value {
        Value::String(req) => dep.version_req = Some(req.clone()),
        Value::Table(entry) => {
            let inherits = entry.get("workspace").and_then(Value::as_bool) == Some(true);
            if inherits {
                dep.inherited = true;
                // Best effort: without a root we still know the key, which is usually the
                // package name.
                if let Some((root, deps)) = workspace.dependencies()
                    && let Some(root_entry) = deps.get(key)
                {
                    apply_entry(&mut dep, root, root_entry);
                }
            } else {
                apply_entry(&mut dep, manifest_dir, value);
            }
        }
        // Not a valid dependency entry; cargo reports it, we skip it.
        _ => return None,
    }
    Some(dep)
}

fn apply_entry(dep: &mut Dependency, base: &Path, value: &Value) {
    match value {
        Value::String(req) => dep.version_req = Some(req.clone()),
        Value::Table(entry) => {
            if let Some(package) = entry.get("package").and_then(Value::as_str) {
                dep.package = package.to_owned();
            }
            if let Some(req) = entry.get("version").and_then(Value::as_str) {
                dep.version_req = Some(req.to_owned());
            }
            if let Some(path) = entry.get("path").and_then(Value::as_str) {
                dep.source = DepSource::Path(base.join(path));
            } else if let Some(git) = entry.get("git").and_then(Value::as_str) {
                dep.source = DepSource::Git(git.to_owned());
            }
        }
        _ => {}
    }
}

/// The per-process cache of parsed manifests (see [`Manifest::load`]).
mod cache {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::sync::{Mutex, OnceLock};

    use super::Manifest;

    struct Entry {
        text: String,
        reads: Vec<(PathBuf, Option<String>)>,
        manifest: Manifest,
    }

    fn entries() -> &'static Mutex<HashMap<PathBuf, Entry>> {
        static CACHE: OnceLock<Mutex<HashMap<PathBuf, Entry>>> = OnceLock::new();
        CACHE.get_or_init(|| Mutex::new(HashMap::new()))
    }

    /// The cached model, if `text` and every other file it was built from are unchanged (a
    /// file that was missing must still be missing).
    pub(super) fn lookup(dir: &Path, text: &str) -> Option<Manifest> {
        // A panic while holding the lock cannot leave an entry half-written: use it anyway.
        let cache = entries().lock().unwrap_or_else(|p| p.into_inner());
        let entry = cache.get(dir)?;
        let unchanged = entry.text == text
            && entry
                .reads
                .iter()
                .all(|(path, old)| std::fs::read_to_string(path).ok() == *old);
        unchanged.then(|| entry.manifest.clone())
    }

    pub(super) fn store(
        dir: &Path,
        text: String,
        reads: Vec<(PathBuf, Option<String>)>,
        manifest: Manifest,
    ) {
        let mut cache = entries().lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(
            dir.to_owned(),
            Entry {
                text,
                reads,
                manifest,
            },
        );
    }
}
