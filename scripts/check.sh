#!/usr/bin/env bash
# Static checks: TypeScript types, task-shim warnings, buf lint, buf breaking (against the previous
# commit, when it has a proto/), and gen/ being exactly what proto/ generates.
set -euo pipefail
cd "$(dirname "$0")/.."
buf=node_modules/.bin/buf

node_modules/.bin/tsc -p tsconfig.json
node scripts/build-shim.mjs --check   # the shim compiles without warnings (-Werror here only, never at install)
"$buf" lint
if git rev-parse --verify -q HEAD~1 >/dev/null && git cat-file -e HEAD~1:proto 2>/dev/null; then
  # proto/ only: the vendored CRI (third_party/cri-api) changes when upstream does.
  "$buf" breaking proto --against ".git#ref=HEAD~1,subdir=proto"
fi
fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
scripts/generate.sh "$fresh" >/dev/null
if ! diff -r gen "$fresh/gen" >/dev/null; then
  echo "gen/ is stale: run 'npm run generate' and commit the result" >&2
  diff -r gen "$fresh/gen" | head -20 >&2
  exit 1
fi
echo "checks passed"
