#!/usr/bin/env bash
# Installs yaml-language-server (the npm package editors use for YAML completion, hover and
# validation), at the version package.json pins and with the dependency tree package-lock.json
# pins, into a cache outside the repository:
#
#   ${SUBSTRATUS_CACHE:-$HOME/.cache/substratus}/yamlls/<key>/node_modules/.bin/yaml-language-server
#
# where <key> is a hash of package.json and package-lock.json (tests/yamlls/__init__.py computes
# the same). A key is installed once; running this again with it present does nothing. The only
# network access is the npm registry. Prints the server's path on its last line.
# Usage: tests/yamlls/install.sh [--print-path]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
key="$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -c1-16)"
cache_root="${SUBSTRATUS_CACHE:-$HOME/.cache/substratus}"
dir="$cache_root/yamlls/$key"
server="$dir/node_modules/.bin/yaml-language-server"

if [[ "${1:-}" == "--print-path" ]]; then
  echo "$server"
  exit 0
fi

if [[ -x "$server" ]]; then
  echo "install.sh: yaml-language-server is up to date"
  echo "$server"
  exit 0
fi

if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  cat >&2 <<MESSAGE
install.sh: Node.js and npm are not installed, and they are needed to install yaml-language-server
(missing: $server).
Install them (Debian: apt-get install nodejs npm; Node 18 or newer), then run: tests/yamlls/install.sh
MESSAGE
  exit 1
fi

# Installed into a scratch folder and moved into place at the end, so that an interrupted install
# never leaves a tree that looks complete.
mkdir -p "$cache_root/yamlls"
stage="$(mktemp -d "$cache_root/yamlls/partial.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
cp "$here/package.json" "$here/package-lock.json" "$stage/"

echo "install.sh: installing yaml-language-server with node $(node --version), npm $(npm --version) into $dir"
start=$SECONDS
# npm ci installs exactly the lock file's tree; no package's install scripts run.
(cd "$stage" && npm ci --ignore-scripts --no-audit --no-fund)
rm -rf "$dir"
mv "$stage" "$dir"
trap - EXIT
echo "install.sh: installed in $((SECONDS - start)) s ($(du -sh "$dir" | cut -f1))"
echo "$server"
