#!/usr/bin/env bash
# Builds web/vendor/mediasoup-client.js: the unmodified mediasoup-client npm package and its
# dependencies, bundled by esbuild into one minified browser script (IIFE) that sets
# `window.mediasoupClient`. The result is checked in, because the server compiles web/ into
# its binary (include_str!) and a cargo build must not need npm.
#
#   web/vendor/build.sh           rebuild the bundle and its license file
#   web/vendor/build.sh --check   fail if the checked-in files differ from a fresh build
#
# The versions are the ones pinned in tests/e2e/package.json (npm ci there installs them).
# esbuild runs from tests/e2e and reads the entry on stdin, so that the import resolves from
# tests/e2e/node_modules (esbuild resolves imports from the entry file's own directory).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
modules="$repo/tests/e2e/node_modules"
out="$here/mediasoup-client.js"
license="$here/LICENSE-mediasoup-client"

check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

if [ ! -x "$modules/.bin/esbuild" ] || [ ! -f "$modules/mediasoup-client/package.json" ]; then
  echo "$0: run 'npm ci' in tests/e2e first (it installs mediasoup-client and esbuild)" >&2
  exit 1
fi

version_of() { node -p "require('$modules/$1/package.json').version"; }
ms_version="$(version_of mediasoup-client)"
esbuild_version="$(version_of esbuild)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

banner="/*! mediasoup-client $ms_version (https://mediasoup.org), unmodified, with its dependencies; ISC license (dependencies: ISC and MIT), see web/vendor/LICENSE-mediasoup-client. Bundled by esbuild $esbuild_version from web/vendor/mediasoup-entry.js; rebuild with web/vendor/build.sh. Sets window.mediasoupClient. */"

# --legal-comments=none: the licenses are in LICENSE-mediasoup-client, listed by the banner.
(cd "$repo/tests/e2e" && "$modules/.bin/esbuild" \
  --bundle --format=iife --platform=browser --minify \
  --legal-comments=none --charset=utf8 \
  --sourcefile=web/vendor/mediasoup-entry.js \
  --banner:js="$banner" \
  --metafile="$tmp/meta.json" \
  --outfile="$tmp/mediasoup-client.js" --log-level=warning \
  < "$here/mediasoup-entry.js")

# The license file: mediasoup-client's own, then that of every package in the bundle.
node - "$tmp/meta.json" "$modules" > "$tmp/LICENSE-mediasoup-client" <<'JS'
const fs = require('node:fs');
const path = require('node:path');
const [meta, modules] = process.argv.slice(2);
const packages = new Set();
for (const input of Object.keys(JSON.parse(fs.readFileSync(meta, 'utf8')).inputs)) {
  const match = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (match) packages.add(match[1]);
}
packages.delete('mediasoup-client');
const names = ['mediasoup-client', ...[...packages].sort()];
const parts = names.map((name) => {
  const dir = path.join(modules, name);
  const { version, license } = require(path.join(dir, 'package.json'));
  const file = fs.readdirSync(dir).find((f) => /^licen[cs]e(\.md|\.txt)?$/i.test(f));
  if (!file) throw new Error(`${name} has no license file`);
  const text = fs.readFileSync(path.join(dir, file), 'utf8').trim();
  return `${name} ${version} (${license})\n${'-'.repeat(60)}\n\n${text}\n`;
});
process.stdout.write(
  'web/vendor/mediasoup-client.js bundles these npm packages, unmodified (built by\n'
  + 'web/vendor/build.sh). Their licenses follow, mediasoup-client first.\n\n'
  + parts.join('\n\n'),
);
JS

if [ "$check" = 1 ]; then
  status=0
  for file in mediasoup-client.js LICENSE-mediasoup-client; do
    if ! cmp -s "$tmp/$file" "$here/$file"; then
      echo "$0: web/vendor/$file is not what build.sh makes from tests/e2e/node_modules; run web/vendor/build.sh" >&2
      status=1
    fi
  done
  exit "$status"
fi
cp "$tmp/mediasoup-client.js" "$out"
cp "$tmp/LICENSE-mediasoup-client" "$license"
echo "wrote $out ($(wc -c < "$out") bytes) and $license"
