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
    /// The platform the graph was resolved for (`None` with `--no-deps`).
    pub(crate) platform: Option<String>,
}

/// Runs `cargo metadata` for `manifest_path`, resolved for the host platform
/// (`--filter-platform`, as rust-analyzer does: offline, other platforms' crates are often not
/// in the cache although everything this host builds is). `offline` adds `--offline`. Falls
/// back to `--no-deps` when resolution fails.
pub(crate) fn discover(
    manifest_path: &Path,
    offline: bool,
    env: &[(std::ffi::OsString, std::ffi::OsString)],
) -> Result<Graph, cargo_metadata::Error> {
    let mut cmd = MetadataCommand::new();
    cmd.manifest_path(manifest_path);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let mut opts = if offline {
        vec!["--offline".to_owned()]
    } else {
        Vec::new()
    };
    let host = host_triple();
    if let Some(host) = &host {
        opts.extend(["--filter-platform".to_owned(), host.clone()]);
    }
    let mut full = cmd.clone();
    full.other_options(opts);
    let first = match full.exec() {
        Ok(meta) => return Ok(convert(meta, None, host)),
        Err(e) => e,
    };
    tracing::warn!("cargo metadata failed ({first}); retrying with --no-deps");
    cmd.no_deps();
    let meta = cmd.exec()?;
    Ok(convert(meta, Some(first.to_string()), None))
}

/// The host target triple: known without a subprocess on Linux, else from `rustc -vV`.
fn host_triple() -> Option<String> {
    if cfg!(target_os = "linux") {
        let env = if cfg!(target_env = "musl") {
            "musl"
        } else {
            "gnu"
        };
        return Some(format!("{}-unknown-linux-{env}", std::env::consts::ARCH));
    }
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
            target_roots: pkg
                .targets
                .iter()
                .filter(|t| !t.kind.contains(&TargetKind::CustomBuild))
                .map(|t| t.src_path.clone().into_std_path_buf())
                .collect(),
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
