//! Go to definition: a macro's `#[proc_macro*]` function, an alias's provider.

use super::*;

/// The definition of the macro (or a helper's parent macro) under `offset`: file and byte range.
pub(crate) fn definition(
    index: &Index,
    file: &Path,
    parsed: &Parsed,
    offset: usize,
) -> Option<(PathBuf, (usize, usize))> {
    let aliases = aliases(index, file, parsed);
    let e = if let Some(d) = parsed.derive_use_at(offset) {
        let p = aliases.iter().find(|a| a.name == d.alias)?.provider?;
        p.export(&d.name).filter(|e| e.kind == ExportKind::Derive)?
    } else {
        let u = parsed
            .attr_use_at(offset)
            .filter(|u| offset >= u.name_range.0 && offset <= u.name_range.1)?;
        let p = aliases.iter().find(|a| a.name == u.alias)?.provider?;
        p.export(&u.name)
            .or_else(|| p.exports.iter().find(|e| e.helpers.contains(&u.name)))?
    };
    let d = e.definition.as_ref()?;
    Some((d.file.clone(), (d.start, d.end)))
}
