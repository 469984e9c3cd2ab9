//! `cell-lsp`: the editor and CI face of the Cell macro index.
//!
//! **Status: skeleton.** This binary fixes the command-line surface that editors, the VS Code
//! extension and CI scripts rely on (`--version`, `--stdio`, `--check [PATH]`, `index`), so the
//! extension can be packaged and tested against a real executable. The modes themselves — the
//! language server, the workspace check and the index listing — are not implemented yet: each
//! one prints "not implemented yet" on stderr and exits with code 2 (the "usage or I/O error"
//! code of `--check`), so no caller ever mistakes the placeholder for a clean result.
//!
//! What it is not: a library. The server logic will live here as glue over
//! `cell-macro-index`; nothing else should depend on this crate.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Exit code for usage and I/O errors (0 = clean, 1 = findings, 2 = could not check).
const EXIT_ERROR: u8 = 2;

const AFTER_HELP: &str = "\
Modes:
  cell-lsp --stdio            Language server over stdin/stdout (what editors start).
  cell-lsp --check [PATH]     Check the workspace at PATH (default: .) and report problems.
  cell-lsp index [PATH]       Print the macro index: providers, versions, exports, problems.

Exit codes of --check: 0 clean, 1 problems found, 2 usage or I/O error.

Editor setup: docs/vscode.md (VS Code) and docs/lsp-setup.md (Neovim, Helix, others).";

/// Language server for Cell provider macros, and a checker for CI.
///
/// Completes `#[DB::` with the macros a provider cell exports, shows their docs and versions,
/// and reports unknown macros and conflicts — in the editor, or in CI with `--check`.
#[derive(Debug, Parser)]
#[command(name = "cell-lsp", version, after_help = AFTER_HELP)]
struct Cli {
    /// Serve the Language Server Protocol over stdin/stdout (the default mode).
    #[arg(long, conflicts_with = "check")]
    stdio: bool,

    /// Check the workspace at PATH without an editor (default: the current directory).
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = ".")]
    check: Option<PathBuf>,

    /// Report format for `--check`: `human` (rustc-style) or `json` (cargo-compatible).
    #[arg(
        long,
        value_name = "FORMAT",
        value_enum,
        default_value_t = MessageFormat::Human,
        requires = "check"
    )]
    message_format: MessageFormat,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the macro index of a workspace: providers, versions, exports and problems.
    Index {
        /// Workspace to index (default: the current directory).
        #[arg(value_name = "PATH", default_value = ".")]
        path: PathBuf,
        /// Print JSON instead of a human-readable listing.
        #[arg(long)]
        json: bool,
        /// Keep running and print the index again whenever it changes.
        #[arg(long)]
        watch: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MessageFormat {
    Human,
    Json,
}

/// What the invocation asks for, once clap has validated it.
#[derive(Debug, PartialEq, Eq)]
enum Mode {
    Server,
    Check(PathBuf),
    Index(PathBuf),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(mode(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("cell-lsp: error: {err:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Reduces the parsed flags to one mode; a subcommand wins over the server flags.
fn mode(cli: Cli) -> Mode {
    match (cli.command, cli.check) {
        (Some(Command::Index { path, .. }), _) => Mode::Index(path),
        (None, Some(path)) => Mode::Check(path),
        // `--stdio` or nothing at all: some clients start servers without arguments.
        (None, None) => Mode::Server,
    }
}

fn run(mode: Mode) -> anyhow::Result<ExitCode> {
    let what = match mode {
        Mode::Server => "the language server (--stdio)",
        Mode::Check(_) => "the workspace check (--check)",
        Mode::Index(_) => "the index listing (index)",
    };
    anyhow::bail!(
        "{what} is not implemented yet: this cell-lsp {} is a placeholder build",
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Mode, clap::Error> {
        let argv = std::iter::once("cell-lsp").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(mode)
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_arguments_and_stdio_both_mean_server() {
        assert_eq!(parse(&[]).unwrap(), Mode::Server);
        assert_eq!(parse(&["--stdio"]).unwrap(), Mode::Server);
    }

    #[test]
    fn check_without_path_checks_the_current_directory() {
        assert_eq!(parse(&["--check"]).unwrap(), Mode::Check(".".into()));
        assert_eq!(parse(&["--check", "ws"]).unwrap(), Mode::Check("ws".into()));
    }

    #[test]
    fn message_format_requires_check() {
        let err = parse(&["--message-format", "json"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(parse(&["--check", "--message-format", "json"]).is_ok());
    }

    #[test]
    fn stdio_and_check_conflict() {
        let err = parse(&["--stdio", "--check"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn index_subcommand_takes_an_optional_path() {
        assert_eq!(parse(&["index"]).unwrap(), Mode::Index(".".into()));
        assert_eq!(
            parse(&["index", "--json", "ws"]).unwrap(),
            Mode::Index("ws".into())
        );
    }

    fn placeholder_error(mode: Mode) -> String {
        run(mode).unwrap_err().to_string()
    }

    #[test]
    fn server_is_an_honest_placeholder() {
        let err = placeholder_error(Mode::Server);
        assert!(
            err.contains("language server (--stdio) is not implemented yet"),
            "{err}"
        );
    }

    #[test]
    fn check_is_an_honest_placeholder() {
        let err = placeholder_error(Mode::Check(".".into()));
        assert!(
            err.contains("check (--check) is not implemented yet"),
            "{err}"
        );
    }

    #[test]
    fn index_is_an_honest_placeholder() {
        let err = placeholder_error(Mode::Index(".".into()));
        assert!(
            err.contains("index listing (index) is not implemented yet"),
            "{err}"
        );
    }
}
