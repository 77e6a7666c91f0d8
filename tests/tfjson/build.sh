#!/usr/bin/env bash
# Builds tfjson-check (main.go: substratus's JSON plans read by github.com/hashicorp/terraform-json,
# the version go.mod and go.sum pin) into a cache outside the repository:
#
#   ${SUBSTRATUS_CACHE:-$HOME/.cache/substratus}/tfjson/<key>/tfjson-check
#
# where <key> is a hash of go.mod, go.sum and main.go (tests/tfjson/checker.py computes the same).
# A key is built once; running this again with the binary present does nothing. The only network
# access is the Go module proxy. Prints the binary's path on its last line.
# Usage: tests/tfjson/build.sh [--print-path]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
key="$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" | sha256sum | cut -c1-16)"
cache_root="${SUBSTRATUS_CACHE:-$HOME/.cache/substratus}"
binary="$cache_root/tfjson/$key/tfjson-check"

if [[ "${1:-}" == "--print-path" ]]; then
  echo "$binary"
  exit 0
fi

if [[ -x "$binary" ]]; then
  echo "build.sh: tfjson-check is up to date"
  echo "$binary"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  cat >&2 <<MESSAGE
build.sh: Go is not installed, and it is needed once to build tfjson-check, the terraform-json
reader the JSON plan tests run (missing: $binary).
Install Go 1.26 or newer (https://go.dev/doc/install), then run: bash tests/tfjson/build.sh
MESSAGE
  exit 1
fi

mkdir -p "$(dirname "$binary")"
stage="$(mktemp "$(dirname "$binary")/tfjson-check.partial.XXXXXX")"
trap 'rm -f "$stage"' EXIT
echo "build.sh: building tfjson-check into $binary with $(go version)"
start=$SECONDS
# -mod=readonly: go.sum pins every module; a build never edits it.
(cd "$here" && CGO_ENABLED=0 go build -trimpath -mod=readonly -o "$stage" .)
chmod 755 "$stage"
mv "$stage" "$binary"
trap - EXIT
echo "build.sh: built in $((SECONDS - start)) s"
echo "$binary"
