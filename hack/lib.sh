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
# The chart checks' tools (hack/build-chart-tools.sh builds them, hack/check-chart.sh runs them), each keyed by version.
HELM_BIN="$MR_CACHE/bin/helm-$HELM_VERSION"
KUBECONFORM_BIN="$MR_CACHE/bin/kubeconform-$KUBECONFORM_VERSION"
KUBE_SCORE_BIN="$MR_CACHE/bin/kube-score-$KUBE_SCORE_VERSION"
ACTIONLINT_BIN="$MR_CACHE/bin/actionlint-$ACTIONLINT_VERSION"
# A HELM_PLUGINS directory holding only helm-unittest (plugin.yaml and its binary).
HELM_PLUGINS_DIR="$MR_CACHE/helm-plugins/unittest-$HELM_UNITTEST_VERSION"
# kubeconform's default layout (<dir>/v1.33.0-standalone-strict/deployment-apps-v1.json) for K8S_VERSION's minor.
KUBE_SCHEMAS_VERSION="${K8S_VERSION#v}"
KUBE_SCHEMAS_VERSION="${KUBE_SCHEMAS_VERSION%.*}.0"
KUBE_SCHEMAS_DIR="$MR_CACHE/schemas/kubernetes-v$KUBE_SCHEMAS_VERSION-kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
# The CRD YAML of ServiceMonitor, PodMonitor and PrometheusRule; hack/crd_schemas.py converts them at check time.
PROMETHEUS_OPERATOR_CRDS="$MR_CACHE/crds/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION"
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
