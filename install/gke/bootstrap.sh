#!/usr/bin/env bash
# Bootstrap substratus on a Google Cloud project: a GKE cluster (a CPU pool, and an L4 pool that
# scales from zero), a bucket for artifacts and state, and an Artifact Registry repository with
# the workload images. Safe to run again: every step converges.
#
#   install/gke/bootstrap.sh PROJECT [REGION] [--no-images]      REGION: us-central1
#
# Needs gcloud, logged in twice (`gcloud auth login` for gcloud itself, `gcloud auth
# application-default login` for substratus), substratus with its cloud extras (`pip install
# 'substratus[gcp,kubernetes]'`), and docker to build and push the images (or --no-images).
# The stack's files are written to $SUBSTRATUS_BOOTSTRAP_DIR (default
# ~/.substratus/bootstrap/PROJECT) and applied from there, so its state stays with them.
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 3; }

PROJECT="" REGION="us-central1" IMAGES=1
for arg in "$@"; do
  case "$arg" in
    --no-images) IMAGES=0 ;;
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

HERE=$(cd "$(dirname "$0")" && pwd)
REPO_ROOT=$(cd "$HERE/../.." && pwd)
WORKDIR=${SUBSTRATUS_BOOTSTRAP_DIR:-$HOME/.substratus/bootstrap/$PROJECT}
REGISTRY="$REGION-docker.pkg.dev/$PROJECT/substratus"
step() { printf '\n== %s\n' "$*"; }

command -v substratus >/dev/null || {
  echo "error: substratus is not on PATH: pip install 'substratus[gcp,kubernetes]'" >&2; exit 1; }

# Tests run the rest against the GKE fake and fake-gcs-server, where there is no gcloud.
if [ "${SUBSTRATUS_BOOTSTRAP_NO_GCLOUD:-0}" != 1 ]; then
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

step "the stack (cluster, node pools, bucket) in $WORKDIR"
mkdir -p "$WORKDIR"
for file in "$HERE"/*.yaml; do
  sed -e "s/__PROJECT__/$PROJECT/g" -e "s/__REGION__/$REGION/g" "$file" \
    > "$WORKDIR/$(basename "$file")"
done
substratus apply --auto-approve "$WORKDIR"

if [ "$IMAGES" = 1 ]; then
  command -v docker >/dev/null || {
    echo "error: docker is not on PATH (or pass --no-images and push the images yourself)" >&2
    exit 1; }
  VERSION=$(substratus --version | awk '{print $NF}')
  step "the workload images, $REGISTRY/substratus-PROGRAM:$VERSION"
  gcloud auth configure-docker "$REGION-docker.pkg.dev" --quiet
  for program in scratch trainer server notebook loader; do
    dockerfile="$REPO_ROOT/workloads/$program/Dockerfile"
    [ -f "$dockerfile" ] || dockerfile="$REPO_ROOT/workloads/Dockerfile.$program"
    docker build -f "$dockerfile" -t "$REGISTRY/substratus-$program:$VERSION" \
      "$REPO_ROOT"
    docker push "$REGISTRY/substratus-$program:$VERSION"
  done
fi

step "done; an Environment that runs on it:"
cat <<EOF
apiVersion: substratus.ai/v1
kind: Environment
metadata:
  name: gke
spec:
  runtime: kubernetes
  kubernetes:
    context: gke_${PROJECT}_${REGION}_substratus   # gcloud container clusters get-credentials substratus --location $REGION --project $PROJECT
    namespace: ml
  artifacts: gs://$PROJECT-substratus/artifacts
  state: gs://$PROJECT-substratus/state
  registry: $REGISTRY
EOF
