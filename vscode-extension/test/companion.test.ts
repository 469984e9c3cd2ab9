/**
 * `besideRustAnalyzer`: the setting and whether the rust-analyzer extension is installed decide
 * the `rustAnalyzer` initialization option (the server-side filtering is tested in cell-lsp).
 */

import * as assert from "node:assert/strict";
import { test } from "node:test";
import { RUST_ANALYZER_EXTENSION, besideRustAnalyzer } from "../src/companion";

test("auto follows whether rust-analyzer is installed; always and never override it", () => {
  assert.equal(besideRustAnalyzer("auto", true), true);
  assert.equal(besideRustAnalyzer("auto", false), false);
  assert.equal(besideRustAnalyzer(undefined, true), true);
  assert.equal(besideRustAnalyzer("always", false), true);
  assert.equal(besideRustAnalyzer("never", true), false);
  // An unknown value (a typo in settings.json) behaves as auto.
  assert.equal(besideRustAnalyzer("sometimes", true), true);
});

test("the extension id is rust-analyzer's", () => {
  assert.equal(RUST_ANALYZER_EXTENSION, "rust-lang.rust-analyzer");
});
