//! Fixes that edit a manifest: adding a dependency (CELL0001), raising a requirement (CELL0008).

use super::*;

impl Index {
    /// When `cell` is a provider elsewhere in the graph but not a dependency of `pkg`: an edit
    /// of `pkg`'s manifest adding it under `[dependencies]` (a relative `path` for workspace and
    /// path providers, the version for registry ones).
    pub(super) fn add_dependency_fix(&self, pkg: &Package, cell: &str) -> Option<Fix> {
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
}

/// An edit of `pkg`'s manifest raising its requirement on `package` to `to`: the quoted
/// requirement on the dependency's own line (`kv = "=0.3.0"`, `kv = { version = "0.3" }`).
/// `None` when the entry is inherited from the workspace, has no version, or is written in a
/// form this does not find (a `[dependencies.kv]` table): no fix rather than a wrong one.
pub(super) fn requirement_fix(pkg: &Package, package: &str, to: &Version) -> Option<Fix> {
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
pub(super) fn text_span(file: &Path, text: &str, start: usize, end: usize) -> Span {
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
