#!/usr/bin/env bash
# Builds the linux-x64 .vsix with the server inside:
#   1. `cargo build --release -p cell-lsp` (honours CARGO_TARGET_DIR; skipped when CELL_LSP_BIN
#      names a prebuilt binary),
#   2. copies the binary to server/cell-lsp and checks that it answers --version,
#   3. `vsce package --target linux-x64` (which bundles src/ with esbuild via vscode:prepublish).
# Prints the path of the .vsix on its last line. Needs `npm ci` to have run.
set -euo pipefail

ext="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
repo="$(cd "$ext/.." && pwd)"
cd "$ext"

if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
    echo "package.sh builds the linux-x64 package and must run on Linux x86_64 (this is $(uname -s)-$(uname -m))." >&2
    exit 1
fi

if [[ -n "${CELL_LSP_BIN:-}" ]]; then
    bin="$CELL_LSP_BIN"
else
    target="${CARGO_TARGET_DIR:-$repo/target}"
    [[ "$target" = /* ]] || target="$repo/$target"   # cargo resolves a relative dir from the cwd
    (cd "$repo" && CARGO_TARGET_DIR="$target" cargo build --release --locked -p cell-lsp)
    bin="$target/release/cell-lsp"
fi

rm -rf server
mkdir server
cp "$bin" server/cell-lsp
chmod 755 server/cell-lsp
if ! version_line="$(server/cell-lsp --version)"; then
    echo "package.sh: $bin does not answer --version" >&2
    exit 1
fi
echo "bundling $version_line from $bin"

version="$(node -p "require('./package.json').version")"
out="${CELL_VSIX:-$ext/cell-lsp-linux-x64-$version.vsix}"
# --no-dependencies: the extension is one esbuild bundle; node_modules stays out of the .vsix.
npx --no-install vsce package --target linux-x64 --no-dependencies --out "$out"
echo "$out"
