#!/usr/bin/env bash
# Builds the binaries of the test Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, kwok) from the published Go modules pinned by
# the wrapper modules beside this script, into a cache outside the repository:
#
#   ${SUBSTRATUS_CACHE:-$HOME/.cache/substratus}/controlplane/<versions>/bin/
#
# A version set is built once; running this again with the binaries present does nothing. The
# only network access is the Go module proxy. Prints the bin directory on its last line.
# Usage: tests/cluster/build.sh [--print-bin-dir]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)

# The version a wrapper module requires, read from its go.mod (tests/cluster/controlplane.py
# reads the same lines to find the cache without Go).
version_of() {
  local gomod="$1" module="$2"
  awk -v m="$module" '($1 == "require" && $2 == m) { print $3; exit } ($1 == m) { print $2; exit }' "$gomod"
}

k8s_version="$(version_of "$here/kubernetes/go.mod" k8s.io/kubernetes)"
etcd_version="$(version_of "$here/etcd/go.mod" go.etcd.io/etcd/server/v3)"
kwok_version="$(version_of "$here/kwok/go.mod" sigs.k8s.io/kwok)"
cache_root="${SUBSTRATUS_CACHE:-$HOME/.cache/substratus}"
bin_dir="$cache_root/controlplane/kubernetes-${k8s_version}_etcd-${etcd_version}_kwok-${kwok_version}/bin"

if [[ "${1:-}" == "--print-bin-dir" ]]; then
  echo "$bin_dir"
  exit 0
fi

missing=()
for b in "${binaries[@]}"; do
  [[ -x "$bin_dir/$b" ]] || missing+=("$b")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "build.sh: control plane binaries are up to date"
  echo "$bin_dir"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  cat >&2 <<EOF
build.sh: Go is not installed, and it is needed once to build the test control plane
(missing: ${missing[*]} in $bin_dir).
Install Go 1.26 or newer (https://go.dev/doc/install; an older Go with GOTOOLCHAIN=auto fetches
1.26 through the module proxy), then run: tests/cluster/build.sh
EOF
  exit 1
fi

# Built into a scratch folder next to bin/ and moved into place at the end, so that an interrupted
# build never leaves a half-filled bin/ that looks complete.
work_dir="$(dirname "$bin_dir")"
mkdir -p "$work_dir"
stage="$(mktemp -d "$work_dir/bin.partial.XXXXXX")"
trap 'rm -rf "$stage"' EXIT

export CGO_ENABLED=0
# -mod=readonly: the go.sum files in the repository pin every module; a build never edits them.
build_flags=(-trimpath -mod=readonly)

echo "build.sh: building the test control plane into $bin_dir"
echo "build.sh: Kubernetes $k8s_version, etcd $etcd_version, kwok $kwok_version with $(go version)"
start=$SECONDS

# The version the Kubernetes binaries report (`kubectl version`, /version) is set at link time,
# as the release build does in hack/lib/version.sh.
minor="${k8s_version#v*.}"
minor="${minor%%.*}"
major="${k8s_version#v}"
major="${major%%.*}"
build_date="$(cd "$here/kubernetes" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  # The module proxy does not say which commit a release is: an empty gitCommit, not "$Format:%H$".
  ldflags+=" -X $pkg.gitCommit= -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done

echo "build.sh: [1/3] etcd"
(cd "$here/etcd" && go build "${build_flags[@]}" -ldflags "-s -w" -o "$stage/etcd" go.etcd.io/etcd/server/v3)

echo "build.sh: [2/3] kwok"
(cd "$here/kwok" && go build "${build_flags[@]}" -ldflags "-s -w" -o "$stage/kwok" sigs.k8s.io/kwok/cmd/kwok)

echo "build.sh: [3/3] kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (the slow part)"
(cd "$here/kubernetes" && go build "${build_flags[@]}" -ldflags "$ldflags" -o "$stage/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubectl)

rm -rf "$bin_dir"
mv "$stage" "$bin_dir"
chmod 755 "$bin_dir"
trap - EXIT
echo "build.sh: built in $((SECONDS - start)) s ($(du -sh "$bin_dir" | cut -f1))"
echo "$bin_dir"
