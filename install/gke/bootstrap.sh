#!/usr/bin/env bash
# Bootstrap substratus on a Google Cloud project: a GKE cluster (a CPU pool, and an L4 pool that
# scales from zero), a bucket for artifacts and state, and an Artifact Registry repository with
# the workload images. Safe to run again: every step converges.
#
#   install/gke/bootstrap.sh PROJECT [REGION] [--no-images] [--plan]    REGION: us-central1
#
# --plan shows what it would do (gcloud's steps named, `substratus plan` of the stack) and
# changes nothing in the project. $SUBSTRATUS_BOOTSTRAP_REGISTRY pushes the images elsewhere.
#
# Needs gcloud, logged in twice (`gcloud auth login` for gcloud itself, `gcloud auth
# application-default login` for substratus), substratus with its cloud extras (`pip install
# 'substratus[gcp,kubernetes]'`), and buildah for substratus to build and push the images
# (apt-get install buildah; no Docker needed), or --no-images.
# install/gke's workspace (the stack stacks/gke-platform, with the project, region and registry
# as variables) is copied to $SUBSTRATUS_BOOTSTRAP_DIR (default ~/.substratus/bootstrap/PROJECT)
# and applied from there, so its state stays with it.
set -euo pipefail

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 3; }

PROJECT="" REGION="us-central1" IMAGES=1 VERB=apply
for arg in "$@"; do
  case "$arg" in
    --no-images) IMAGES=0 ;;
    --plan) VERB=plan ;;
    -h|--help) usage ;;
    -*) echo "error: unknown option $arg" >&2; usage ;;
    *) if [ -z "$PROJECT" ]; then PROJECT=$arg; else REGION=$arg; fi ;;
  esac
done
[ -n "$PROJECT" ] || usage
case "$PROJECT" in
  *[!a-z0-9-]*) echo "error: project id '$PROJECT': lowercase letters, digits and '-' only" >&2
                exit 3 ;;
esac
[[ $PROJECT =~ ^[a-z][-a-z0-9]{4,28}[a-z0-9]$ ]] || {
  echo "error: project id '$PROJECT': 6 to 30 characters, starting with a letter and not ending with '-'" >&2
  exit 3; }
[[ $REGION =~ ^[a-z]+-[a-z]+[0-9]+$ ]] || {
  echo "error: region '$REGION': a Google Cloud region such as us-central1, not a zone" >&2
  exit 3; }

HERE=$(cd "$(dirname "$0")" && pwd)
REPO_ROOT=$(cd "$HERE/../.." && pwd)
WORKDIR=${SUBSTRATUS_BOOTSTRAP_DIR:-$HOME/.substratus/bootstrap/$PROJECT}
REGISTRY=${SUBSTRATUS_BOOTSTRAP_REGISTRY:-$REGION-docker.pkg.dev/$PROJECT/substratus}
step() { printf '\n== %s\n' "$*"; }

command -v substratus >/dev/null || {
  echo "error: substratus is not on PATH: pip install 'substratus[gcp,kubernetes]'" >&2; exit 1; }

# Tests run the rest against the GKE fake and fake-gcs-server, where there is no gcloud.
if [ "$VERB" = plan ]; then
  step "would enable the GKE, Cloud Storage and Artifact Registry APIs in $PROJECT and make the Artifact Registry repository $REGISTRY (gcloud)"
elif [ "${SUBSTRATUS_BOOTSTRAP_NO_GCLOUD:-0}" != 1 ]; then
  command -v gcloud >/dev/null || {
    echo "error: gcloud is not on PATH: https://cloud.google.com/sdk/docs/install" >&2; exit 1; }
  gcloud auth application-default print-access-token >/dev/null 2>&1 || {
    echo "error: no Application Default Credentials: gcloud auth application-default login" >&2
    exit 1; }
  step "enabling the GKE, Cloud Storage and Artifact Registry APIs in $PROJECT"
  gcloud services enable container.googleapis.com storage.googleapis.com \
    artifactregistry.googleapis.com --project "$PROJECT"
  step "the Artifact Registry repository $REGISTRY"
  gcloud artifacts repositories describe substratus --location "$REGION" --project "$PROJECT" \
    >/dev/null 2>&1 ||
    gcloud artifacts repositories create substratus --repository-format docker \
      --location "$REGION" --project "$PROJECT" --description "substratus workload images"
fi

if [ "$IMAGES" = 1 ]; then
  command -v buildah >/dev/null || {
    echo "error: buildah is not on PATH: apt-get install buildah (or pass --no-images)" >&2
    exit 1; }
  if [ "${SUBSTRATUS_BOOTSTRAP_NO_GCLOUD:-0}" != 1 ] && [ "$VERB" = apply ]; then
    # Docker's credential helper for the registry, which substratus and buildah read.
    gcloud auth configure-docker "$REGION-docker.pkg.dev" --quiet
  fi
fi

step "the stack (cluster, node pools, bucket, and the workload images unless --no-images) in $WORKDIR"
mkdir -p "$WORKDIR"
# The workspace files are the same for every project: the project, region and registry are
# variables, given to every substratus command below.
cp "$HERE"/*.yaml "$WORKDIR"/
# An install made before the stack existed holds the cluster and the bucket in files of their
# own; the stack renders the same resources under the same names (the state carries over and
# nothing changes), and the old files would declare them twice.
rm -f "$WORKDIR/cluster.yaml" "$WORKDIR/bucket.yaml" "$WORKDIR/images.yaml"
VARS=(--var "project=$PROJECT" --var "region=$REGION" --var "registry=$REGISTRY")
# The gke-platform stack of this checkout, whichever substratus is on PATH.
export SUBSTRATUS_STACKS_PATH="$REPO_ROOT/stacks${SUBSTRATUS_STACKS_PATH:+:$SUBSTRATUS_STACKS_PATH}"
if [ "$IMAGES" = 1 ]; then
  # substratus builds the workload images from this checkout (the repository root is their
  # context; its .dockerignore sends only the store package and the workloads), tagged with
  # their content's identity and with this version, which the kubernetes runtime runs.
  VERSION=$(substratus --version | awk '{print $NF}')
  ln -sfn "$REPO_ROOT" "$WORKDIR/source"
  for program in scratch trainer server notebook loader; do
    dockerfile="workloads/$program/Dockerfile"
    [ -f "$REPO_ROOT/$dockerfile" ] || dockerfile="workloads/Dockerfile.$program"
    printf -- '---\napiVersion: substratus.ai/v1\nkind: Image\nmetadata: {name: substratus-%s}\nspec: {context: source, dockerfile: %s, tags: ["%s"]}\n' \
      "$program" "$dockerfile" "$VERSION" >> "$WORKDIR/images.yaml"
  done
fi
if [ "$VERB" = plan ]; then
  substratus plan "${VARS[@]}" "$WORKDIR"
  exit 0
fi
substratus apply --auto-approve "${VARS[@]}" "$WORKDIR"

# What the stack made, as its outputs name it.
output() { substratus output "${VARS[@]}" "substratus.$1" "$WORKDIR"; }
CLUSTER=$(output cluster)
CONTEXT=$(output kube_context)
ARTIFACTS=$(output artifacts)
STATE=$(output state)
step "done; an Environment that runs on it:"
cat <<EOF
apiVersion: substratus.ai/v1
kind: Environment
metadata:
  name: gke
spec:
  runtime: kubernetes
  kubernetes:
    context: $CONTEXT   # gcloud container clusters get-credentials $CLUSTER --location $REGION --project $PROJECT
    namespace: ml
  artifacts: $ARTIFACTS
  state: $STATE
  registry: $REGISTRY
EOF
