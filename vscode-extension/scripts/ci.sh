#!/usr/bin/env bash
# CI for the VS Code extension, from a clean clone to a verified .vsix:
#   npm ci → typecheck → bundle → build cell-lsp → tests → package → check the .vsix.
# Needs Node >= 20 with npm, and cargo (for cell-lsp). Everything else comes from npm ci
# (the .vsix is read with the yauzl package, so no `unzip` is needed).
# Honours CARGO_TARGET_DIR. Run from anywhere: `bash vscode-extension/scripts/ci.sh`.
set -euo pipefail

ext="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
repo="$(cd "$ext/.." && pwd)"
cd "$ext"

group() { echo "::group::$*"; }
endgroup() { echo "::endgroup::"; }

group "toolchain"
node --version
npm --version
node -e 'const [major] = process.versions.node.split(".").map(Number);
if (major < 20) { console.error(`Node ${process.versions.node}: the extension build needs Node >= 20`); process.exit(1); }'
endgroup

group "npm ci"
npm ci --no-audit --no-fund
endgroup

group "typecheck"
npm run typecheck
endgroup

group "bundle"
npm run build
endgroup

group "cell-lsp (release; the tests and the package use the same binary)"
target="${CARGO_TARGET_DIR:-$repo/target}"
[[ "$target" = /* ]] || target="$repo/$target"
(cd "$repo" && CARGO_TARGET_DIR="$target" cargo build --release --locked -p cell-lsp)
export CELL_LSP_TEST_BIN="$target/release/cell-lsp"
endgroup

group "tests"
npm test
endgroup

group "package"
version="$(node -p "require('./package.json').version")"
export CELL_VSIX="$ext/cell-lsp-linux-x64-$version.vsix"
rm -f "$CELL_VSIX"
CELL_LSP_BIN="$CELL_LSP_TEST_BIN" bash scripts/package.sh
endgroup

group "check the .vsix"
npm run test:vsix
endgroup

echo "vscode-extension: OK ($CELL_VSIX)"
