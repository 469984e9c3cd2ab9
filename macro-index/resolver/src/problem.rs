//! Problem codes: the stable identifiers shared by `cell_remote!`, provider macros, the macro
//! index and cell-lsp, so one problem reads the same wherever it is reported.
//!
//! The strings (`CELL0001`…) are a public contract: documented in `docs/problems.md`, printed in
//! compile errors, matched by CI scripts. Never renumber; only append.

use std::fmt;
use std::str::FromStr;

/// A stable problem code. `Display` prints the code (`CELL0001`); [`ProblemCode::title`] a
/// short lowercase title.
///
/// ```
/// use cell_resolver::ProblemCode;
/// assert_eq!(ProblemCode::UnknownCell.as_str(), "CELL0001");
/// assert_eq!("CELL0002".parse::<ProblemCode>(), Ok(ProblemCode::AmbiguousVersion));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ProblemCode {
    /// `CELL0001`: the cell named in `cell_remote!` (or a provider's runtime crate) is not a
    /// dependency of the crate being compiled.
    UnknownCell,
    /// `CELL0002`: the crate depends on several versions of the cell and the call does not say
    /// which one (`"celldb@0.4"`), or the qualifier matches several.
    AmbiguousVersion,
    /// `CELL0003`: `cell_remote!` input is not `Alias = "cell"` or `Alias = "cell@version"`.
    MalformedRemote,
    /// `CELL0004`: the same alias is defined twice in one module (rustc: E0428).
    AliasClash,
    /// `CELL0005`: two glob imports bring the same macro name into scope (rustc: E0659).
    GlobAmbiguity,
    /// `CELL0006`: an alias or exported macro shadows a builtin attribute or a `cell-sdk` macro.
    BuiltinShadowing,
    /// `CELL0007`: an export declaration names a macro or API item that does not exist.
    MissingExport,
    /// `CELL0008`: the version a consumer depends on differs from other versions of the same
    /// cell in the graph or the local cargo cache in a way that matters.
    VersionSkew,
    /// `CELL0009`: the cell is a dependency but exports nothing (no `cell_sdk::export!`).
    NotAProvider,
    /// `CELL0010`: an `export!` declaration is malformed.
    MalformedExport,
    /// `CELL0011`: a helper attribute is written under another provider's alias, or is not a
    /// helper of the macro that consumes it.
    ForeignHelper,
    /// `CELL0012`: the crate's manifest (or its workspace root's) cannot be read or parsed.
    ManifestUnreadable,
    /// `CELL0013`: an export declaration uses a format version this toolchain does not know.
    UnsupportedExportFormat,
    /// `CELL0014`: a provider macro's argument does not match its declared schema.
    InvalidMacroArgument,
    /// `CELL0015`: `Alias::name` names no macro the alias's provider exports (rustc: E0433).
    UnknownMacro,
}

impl ProblemCode {
    /// Every code, in numeric order.
    pub const ALL: [ProblemCode; 15] = [
        ProblemCode::UnknownCell,
        ProblemCode::AmbiguousVersion,
        ProblemCode::MalformedRemote,
        ProblemCode::AliasClash,
        ProblemCode::GlobAmbiguity,
        ProblemCode::BuiltinShadowing,
        ProblemCode::MissingExport,
        ProblemCode::VersionSkew,
        ProblemCode::NotAProvider,
        ProblemCode::MalformedExport,
        ProblemCode::ForeignHelper,
        ProblemCode::ManifestUnreadable,
        ProblemCode::UnsupportedExportFormat,
        ProblemCode::InvalidMacroArgument,
        ProblemCode::UnknownMacro,
    ];

    /// The stable code string, e.g. `"CELL0001"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProblemCode::UnknownCell => "CELL0001",
            ProblemCode::AmbiguousVersion => "CELL0002",
            ProblemCode::MalformedRemote => "CELL0003",
            ProblemCode::AliasClash => "CELL0004",
            ProblemCode::GlobAmbiguity => "CELL0005",
            ProblemCode::BuiltinShadowing => "CELL0006",
            ProblemCode::MissingExport => "CELL0007",
            ProblemCode::VersionSkew => "CELL0008",
            ProblemCode::NotAProvider => "CELL0009",
            ProblemCode::MalformedExport => "CELL0010",
            ProblemCode::ForeignHelper => "CELL0011",
            ProblemCode::ManifestUnreadable => "CELL0012",
            ProblemCode::UnsupportedExportFormat => "CELL0013",
            ProblemCode::InvalidMacroArgument => "CELL0014",
            ProblemCode::UnknownMacro => "CELL0015",
        }
    }

    /// A short lowercase title, e.g. `"unknown cell"`.
    pub const fn title(self) -> &'static str {
        match self {
            ProblemCode::UnknownCell => "unknown cell",
            ProblemCode::AmbiguousVersion => "ambiguous version",
            ProblemCode::MalformedRemote => "malformed cell_remote! input",
            ProblemCode::AliasClash => "alias clash",
            ProblemCode::GlobAmbiguity => "glob-import ambiguity",
            ProblemCode::BuiltinShadowing => "builtin or cell-sdk shadowing",
            ProblemCode::MissingExport => "declared but missing export",
            ProblemCode::VersionSkew => "version skew",
            ProblemCode::NotAProvider => "not a provider",
            ProblemCode::MalformedExport => "malformed export declaration",
            ProblemCode::ForeignHelper => "foreign or unknown helper attribute",
            ProblemCode::ManifestUnreadable => "manifest unreadable",
            ProblemCode::UnsupportedExportFormat => "unsupported export format",
            ProblemCode::InvalidMacroArgument => "invalid macro argument",
            ProblemCode::UnknownMacro => "unknown provider macro",
        }
    }

    /// The rustc error code that reports this problem natively, if any (the docs map it).
    pub const fn rustc_code(self) -> Option<&'static str> {
        match self {
            ProblemCode::AliasClash => Some("E0428"),
            ProblemCode::GlobAmbiguity => Some("E0659"),
            ProblemCode::MissingExport => Some("E0432"),
            ProblemCode::NotAProvider => Some("E0432"),
            ProblemCode::UnknownMacro => Some("E0433"),
            _ => None,
        }
    }
}

impl fmt::Display for ProblemCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string was not a known `CELLnnnn` code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownProblemCode(pub String);

impl fmt::Display for UnknownProblemCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown problem code `{}`", self.0)
    }
}

impl std::error::Error for UnknownProblemCode {}

impl FromStr for ProblemCode {
    type Err = UnknownProblemCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProblemCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownProblemCode(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_numbered_in_order_and_round_trip() {
        for (i, code) in ProblemCode::ALL.into_iter().enumerate() {
            assert_eq!(code.as_str(), format!("CELL{:04}", i + 1));
            assert_eq!(code.as_str().parse::<ProblemCode>(), Ok(code));
        }
        assert!("CELL9999".parse::<ProblemCode>().is_err());
    }
}
