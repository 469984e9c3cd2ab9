/** The `cell-sdk` check that decides whether the server starts in "auto" mode. */

import * as assert from "node:assert/strict";
import { test } from "node:test";
import { mentionsCellSdk } from "../src/manifest";

test("a plain dependency key counts", () => {
  assert.ok(mentionsCellSdk('[dependencies]\ncell-sdk = "0.1"\n'));
  assert.ok(mentionsCellSdk('[dependencies]\ncell-sdk = { path = "../cell-sdk" }\n'));
});

test("an inherited workspace dependency counts", () => {
  assert.ok(mentionsCellSdk("[dependencies]\ncell-sdk.workspace = true\n"));
  assert.ok(mentionsCellSdk('[workspace.dependencies]\ncell-sdk = { path = "cell-sdk", version = "0.1.0" }\n'));
});

test("a dependency table header counts", () => {
  assert.ok(mentionsCellSdk('[dependencies.cell-sdk]\nversion = "0.1"\n'));
  assert.ok(mentionsCellSdk("[target.'cfg(unix)'.dev-dependencies.\"cell-sdk\"]\npath = \"x\"\n"));
});

test("a renamed dependency counts through `package =`", () => {
  assert.ok(mentionsCellSdk('[dependencies]\nsdk = { package = "cell-sdk", version = "0.1" }\n'));
});

test("the cell-sdk package itself counts", () => {
  assert.ok(mentionsCellSdk('[package]\nname = "cell-sdk"\nversion = "0.1.0"\n'));
});

test("other crates and look-alikes do not count", () => {
  assert.equal(mentionsCellSdk('[dependencies]\nserde = "1"\nmy-cell-sdk = "1"\ncell-sdk-macros = "0.1"\n'), false);
  assert.equal(mentionsCellSdk('[package]\nname = "app"\ndescription = "not using cell-sdk"\n'), false);
});

test("commented-out dependencies do not count", () => {
  assert.equal(mentionsCellSdk('[dependencies]\n# cell-sdk = "0.1"\nserde = "1" # cell-sdk = "0.1"\n'), false);
});

test("a # inside a string does not hide the rest of the line", () => {
  assert.ok(mentionsCellSdk('[dependencies]\nfoo = { git = "https://x/#frag", package = "cell-sdk" }\n'));
});

test("CRLF manifests work", () => {
  assert.ok(mentionsCellSdk('[dependencies]\r\ncell-sdk = "0.1"\r\n'));
});
