#!/usr/bin/env bash
# Builds actionlint (the GitHub Actions workflow checker, a Go module) at the version the wrapper
# module beside this script pins, into a cache outside the repository:
#
#   ${SUBSTRATUS_CACHE:-$HOME/.cache/substratus}/actionlint/<version>/actionlint
#
# A version is built once; running this again with the binary present does nothing. The only
# network access is the Go module proxy. Prints the binary's path on its last line.
# Usage: tests/actionlint/build.sh [--print-path]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
module=github.com/rhysd/actionlint
# The version the wrapper module requires (tests/actionlint/__init__.py reads the same line).
version="$(awk -v m="$module" '($1 == "require" && $2 == m) { print $3; exit }
  ($1 == m) { print $2; exit }' "$here/go.mod")"
cache_root="${SUBSTRATUS_CACHE:-$HOME/.cache/substratus}"
bin_dir="$cache_root/actionlint/$version"
binary="$bin_dir/actionlint"

if [[ "${1:-}" == "--print-path" ]]; then
  echo "$binary"
  exit 0
fi

if [[ -x "$binary" ]]; then
  echo "build.sh: actionlint $version is up to date"
  echo "$binary"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  cat >&2 <<MSG
build.sh: Go is not installed, and it is needed once to build actionlint $version
(missing: $binary).
Install Go 1.26 or newer (https://go.dev/doc/install; an older Go with GOTOOLCHAIN=auto fetches
1.26 through the module proxy), then run: tests/actionlint/build.sh
MSG
  exit 1
fi

# Built into a scratch file next to the binary and moved into place at the end, so that an
# interrupted build never leaves a binary that looks complete.
mkdir -p "$bin_dir"
stage="$(mktemp "$bin_dir/actionlint.partial.XXXXXX")"
trap 'rm -f "$stage"' EXIT

echo "build.sh: building actionlint $version with $(go version) into $binary"
start=$SECONDS
# -mod=readonly: go.sum pins every module; a build never edits it. The version actionlint reports
# (`actionlint -version`) is set at link time, as its release build does.
(cd "$here" && CGO_ENABLED=0 go build -trimpath -mod=readonly \
  -ldflags "-s -w -X $module.version=${version#v}" -o "$stage" "$module/cmd/actionlint")
chmod 755 "$stage"
mv "$stage" "$binary"
trap - EXIT
echo "build.sh: built in $((SECONDS - start)) s ($(du -h "$binary" | cut -f1))"
echo "$binary"
