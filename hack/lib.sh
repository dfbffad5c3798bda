#!/usr/bin/env bash
# Shared settings for the hack/ scripts: versions, cache locations, logging.
set -euo pipefail
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HACK_DIR/.." && pwd)"
# shellcheck source=versions.env
source "$HACK_DIR/versions.env"
# Heavy builds live outside the repo, keyed by version, so a warm machine rebuilds nothing.
MR_CACHE="${MODELROLLOUT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelrollout}"
K8S_BIN="$MR_CACHE/bin/kubernetes-$K8S_VERSION"
ETCD_BIN="$MR_CACHE/bin/etcd-$ETCD_VERSION"
KWOK_BIN="$MR_CACHE/bin/kwok-$KWOK_VERSION"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false

log() { printf '\033[1;34m[hack]\033[0m %s\n' "$*" >&2; }

# Build into a scratch directory and move it into place only when complete, so an interrupted build
# never leaves a half-filled cache entry that later runs would trust.
publish_dir() {
  local scratch="$1" dest="$2"
  mkdir -p "$(dirname "$dest")"
  rm -rf "$dest"
  mv "$scratch" "$dest"
}

CLUSTER_NAME="${CLUSTER_NAME:-modelrollout}"
KWOK_WORKDIR="${KWOK_WORKDIR:-$MR_CACHE/kwok}"
CLUSTER_KUBECONFIG="$KWOK_WORKDIR/clusters/$CLUSTER_NAME/kubeconfig.yaml"

# Point kwokctl at our locally built binaries; local paths are symlinked by kwokctl, never downloaded.
kwok_env() {
  export KWOK_WORKDIR
  export KWOK_RUNTIME=binary
  export KWOK_KUBE_VERSION="$K8S_VERSION"
  export KWOK_KUBE_BINARY_PREFIX="$K8S_BIN"
  export KWOK_ETCD_VERSION="${ETCD_VERSION#v}"
  export KWOK_ETCD_BINARY="$ETCD_BIN/etcd"
  export KWOK_CONTROLLER_BINARY="$KWOK_BIN/kwok"
}
