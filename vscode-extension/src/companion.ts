/**
 * Side by side with rust-analyzer: whether cell-lsp should leave out what rust-analyzer gives
 * by itself (macro names after `#[DB::`, API items after `DB::`, the argument errors a provider
 * macro reports in its own expansion), so that each completion and diagnostic appears once.
 *
 * The decision is sent to the server once, as the `rustAnalyzer` initialization option; the
 * server does the filtering (it knows which answers are rust-analyzer's too, the client does
 * not). No `vscode` import here: the tests drive it directly.
 */

/** The rust-analyzer extension's identifier on the VS Code Marketplace and Open VSX. */
export const RUST_ANALYZER_EXTENSION = "rust-lang.rust-analyzer";

/** `cell.rustAnalyzer.deduplicate`: `auto` follows whether rust-analyzer is installed. */
export type Deduplicate = "auto" | "always" | "never";

/**
 * Whether the server should run beside rust-analyzer. `installed`: the rust-analyzer extension
 * is installed and enabled (VS Code's `extensions.getExtension` returns only those). Not
 * whether it is *active* yet: it activates on Rust files, possibly after this extension.
 */
export function besideRustAnalyzer(setting: string | undefined, installed: boolean): boolean {
  switch (setting) {
    case "always":
      return true;
    case "never":
      return false;
    default:
      return installed;
  }
}
