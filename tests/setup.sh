#!/usr/bin/env bash
# Installs and builds what the test suite needs beside Python packages, each step skipped when it
# is done already, each logged under .ci/logs/:
#   - Debian packages: docker-registry (a real OCI registry), apache2-utils (htpasswd for its
#     auth tests), skopeo (reads back what was pushed), buildah (builds images without a
#     daemon), busybox-static (the shell of the test base image), shellcheck (checks
#     examples/ci/drift-check.sh and, through actionlint, the workflows' run: scripts), graphviz
#     (`substratus graph --format svg|png` draws with its dot), tmux (the terminal the
#     live-progress test drives: tests/e2e/test_progress_tty.py), nodejs and npm when there is
#     no npm; apt-get as root, only when missing;
#   - the test Kubernetes control plane (tests/cluster/build.sh: Go builds into
#     ~/.cache/substratus/controlplane, about 8 minutes the first time on 2 cores);
#   - actionlint, which checks the GitHub Actions workflows of examples/ci
#     (tests/actionlint/build.sh: Go builds into ~/.cache/substratus/actionlint, about 25 s the
#     first time);
#   - tfjson-check, the terraform-json reader of the golden JSON plans (tests/tfjson/build.sh:
#     into ~/.cache/substratus/tfjson, about 30 s the first time);
#   - yaml-language-server, which the editor-schema test drives over LSP (tests/yamlls/install.sh:
#     npm ci of the pinned package into ~/.cache/substratus/yamlls, a few seconds the first
#     time; needs Node.js and npm).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .ci/logs

missing=()
for package in docker-registry apache2-utils skopeo buildah busybox-static shellcheck graphviz tmux; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
    || missing+=("$package")
done
# Node.js and npm install yaml-language-server (below); a Node from elsewhere (nodesource, nvm)
# will do, so they are asked of apt only when there is no npm at all.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "tests/setup.sh: the tests need these Debian packages: ${missing[*]}" >&2
    echo "install them as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "tests/setup.sh: installing ${missing[*]} (log: .ci/logs/apt.log)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } \
    > .ci/logs/apt.log 2>&1 || { tail -30 .ci/logs/apt.log; exit 1; }
fi

echo "tests/setup.sh: the test control plane (log: .ci/logs/controlplane-build.log)"
bash tests/cluster/build.sh > .ci/logs/controlplane-build.log 2>&1 \
  || { tail -50 .ci/logs/controlplane-build.log; exit 1; }
tail -1 .ci/logs/controlplane-build.log

echo "tests/setup.sh: actionlint (log: .ci/logs/actionlint-build.log)"
bash tests/actionlint/build.sh > .ci/logs/actionlint-build.log 2>&1 \
  || { tail -50 .ci/logs/actionlint-build.log; exit 1; }
tail -2 .ci/logs/actionlint-build.log

echo "tests/setup.sh: the terraform-json plan reader (log: .ci/logs/tfjson-build.log)"
bash tests/tfjson/build.sh > .ci/logs/tfjson-build.log 2>&1 \
  || { tail -50 .ci/logs/tfjson-build.log; exit 1; }
tail -1 .ci/logs/tfjson-build.log

echo "tests/setup.sh: yaml-language-server (log: .ci/logs/yamlls-install.log)"
bash tests/yamlls/install.sh > .ci/logs/yamlls-install.log 2>&1 \
  || { tail -50 .ci/logs/yamlls-install.log; exit 1; }
tail -1 .ci/logs/yamlls-install.log
