//! Discovery of the dependency graph through `cargo metadata --offline` (`cargo_metadata`),
//! retried with `--no-deps` when resolution fails (a missing registry crate offline, a broken
//! lockfile): the workspace members are then still indexed, without resolved dependencies.

use std::path::{Path, PathBuf};

use cargo_metadata::{MetadataCommand, TargetKind};

use crate::model::{Dep, Package, SourceKind};

/// The graph as the index needs it.
#[derive(Debug)]
pub(crate) struct Graph {
    pub(crate) workspace_root: PathBuf,
    pub(crate) target_dir: PathBuf,
    pub(crate) members: Vec<String>,
    pub(crate) packages: Vec<Package>,
    /// `None` when dependencies were resolved; the resolution error otherwise.
    pub(crate) unresolved: Option<String>,
    /// `Some(triple)` when the graph was resolved for the host platform only.
    pub(crate) platform: Option<String>,
}

/// Runs `cargo metadata` for `manifest_path`. `offline` adds `--offline`.
pub(crate) fn discover(
    manifest_path: &Path,
    offline: bool,
) -> Result<Graph, cargo_metadata::Error> {
    let mut cmd = MetadataCommand::new();
    cmd.manifest_path(manifest_path);
    if offline {
        cmd.other_options(vec!["--offline".to_owned()]);
    }
    let first = match cmd.exec() {
        Ok(meta) => return Ok(convert(meta, None, None)),
        Err(e) => e,
    };
    // Offline, packages for other platforms (e.g. macOS-only dependencies) are often not in the
    // cache although everything this host builds is: resolve for the host only.
    if let Some(host) = host_triple() {
        tracing::warn!("cargo metadata failed ({first}); retrying with --filter-platform {host}");
        let mut filtered = cmd.clone();
        let mut opts = if offline {
            vec!["--offline".to_owned()]
        } else {
            Vec::new()
        };
        opts.extend(["--filter-platform".to_owned(), host.clone()]);
        filtered.other_options(opts);
        if let Ok(meta) = filtered.exec() {
            return Ok(convert(meta, None, Some(host)));
        }
    }
    tracing::warn!("cargo metadata failed ({first}); retrying with --no-deps");
    cmd.no_deps();
    let meta = cmd.exec()?;
    Ok(convert(meta, Some(first.to_string()), None))
}

/// The host target triple, from `rustc -vV` (only asked when the full resolution failed).
fn host_triple() -> Option<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = std::process::Command::new(rustc).arg("-vV").output().ok()?;
    String::from_utf8(out.stdout)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
}

fn convert(
    meta: cargo_metadata::Metadata,
    unresolved: Option<String>,
    platform: Option<String>,
) -> Graph {
    let members: Vec<String> = meta
        .workspace_members
        .iter()
        .map(|id| id.repr.clone())
        .collect();
    let nodes: std::collections::HashMap<&str, &cargo_metadata::Node> = meta
        .resolve
        .iter()
        .flat_map(|r| r.nodes.iter())
        .map(|n| (n.id.repr.as_str(), n))
        .collect();
    let mut packages = Vec::with_capacity(meta.packages.len());
    for pkg in &meta.packages {
        let id = pkg.id.repr.clone();
        let source = if members.contains(&id) {
            SourceKind::Workspace
        } else {
            match &pkg.source {
                None => SourceKind::Path,
                Some(s) if s.repr.starts_with("git+") => SourceKind::Git,
                Some(_) => SourceKind::Registry,
            }
        };
        let lib = pkg.targets.iter().find(|t| {
            t.kind.iter().any(|k| {
                matches!(
                    k,
                    TargetKind::Lib | TargetKind::RLib | TargetKind::ProcMacro | TargetKind::DyLib
                )
            })
        });
        let deps = nodes
            .get(pkg.id.repr.as_str())
            .map(|node| {
                node.deps
                    .iter()
                    .map(|d| Dep {
                        extern_crate: d.name.clone(),
                        package_id: d.pkg.repr.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        packages.push(Package {
            id,
            name: pkg.name.to_string(),
            version: pkg.version.to_string(),
            source,
            manifest_path: pkg.manifest_path.clone().into_std_path_buf(),
            lib_path: lib.map(|t| t.src_path.clone().into_std_path_buf()),
            proc_macro: lib.is_some_and(|t| t.kind.contains(&TargetKind::ProcMacro)),
            deps,
        });
    }
    Graph {
        workspace_root: meta.workspace_root.into_std_path_buf(),
        target_dir: meta.target_directory.into_std_path_buf(),
        members,
        packages,
        unresolved,
        platform,
    }
}
