/**
 * Deciding from a `Cargo.toml` whether a workspace uses Cell.
 *
 * The extension activates on any Rust workspace (`workspaceContains:**\/Cargo.toml`,
 * `onLanguage:rust`) but only starts the server where some manifest mentions `cell-sdk`, so
 * Rust projects that do not use Cell pay for one file scan and nothing else. The check is
 * textual on purpose: a TOML parser would be one more bundled dependency, and the forms that
 * matter are few (a dependency key, a dependency table header, a rename through
 * `package = "cell-sdk"`, or the `cell-sdk` package itself). No `vscode` import: tested in
 * plain Node.
 */

/** The package every Cell workspace depends on. */
export const CELL_SDK = "cell-sdk";

const KEY = /^\s*(["']?)cell-sdk\1\s*[=.]/;
const TABLE_HEADER = /^\s*\[[^\]]*\.(["']?)cell-sdk\1\s*\]/;
const NAMED = /\b(package|name)\s*=\s*(["'])cell-sdk\2/;

/** True when the manifest text declares a dependency on `cell-sdk` (or is `cell-sdk`). */
export function mentionsCellSdk(manifest: string): boolean {
  for (const raw of manifest.split(/\r?\n/)) {
    const line = stripComment(raw);
    if (KEY.test(line) || TABLE_HEADER.test(line) || NAMED.test(line)) {
      return true;
    }
  }
  return false;
}

/** Drops a `#` comment unless the `#` sits inside a string. */
function stripComment(line: string): string {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === "\\" && quote === '"') {
        i++;
      } else if (c === quote) {
        quote = undefined;
      }
    } else if (c === '"' || c === "'") {
      quote = c;
    } else if (c === "#") {
      return line.slice(0, i);
    }
  }
  return line;
}
