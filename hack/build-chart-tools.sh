#!/usr/bin/env bash
# The tools hack/check-chart.sh runs on the Helm chart, each built (once) from its Go module at the version pinned in
# versions.env and cached by version under $MR_CACHE, plus the offline inputs of kubeconform: the JSON schemas of the
# built-in kinds (from the PyPI wheel kubernetes-validate) and the Prometheus Operator's CRDs (from its Go module).
#
#   hack/build-chart-tools.sh        build or fetch whatever is not cached; silent when everything is
#   hack/build-chart-tools.sh env    the same, then print `export VAR=value` lines naming them (for make and tests):
#                                    HELM KUBECONFORM KUBE_SCORE ACTIONLINT (binaries), HELM_PLUGINS (helm-unittest),
#                                    KUBE_SCHEMAS (kubeconform -schema-location) and KUBE_SCHEMAS_VERSION (its
#                                    -kubernetes-version), PROMETHEUS_OPERATOR_CRDS (CRD YAML for hack/crd_schemas.py)
#
# Cold, about 3 min on 2 cores (helm alone ~2 min); warm, ~10 ms (nothing but file tests).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The directory `go mod download` unpacks MODULE@VERSION into (read-only), fetched through the Go module proxy.
# Run outside any module, so go.mod files nearby cannot interfere.
module_dir() {
  local dir
  dir="$(cd "${TMPDIR:-/tmp}" && GOFLAGS='' go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -n "$dir" && -d "$dir" ]] || { log "go mod download $1 gave no directory"; exit 1; }
  echo "$dir"
}

# go_tool NAME VERSION PACKAGE DEST [LDFLAGS]: `go install PACKAGE@VERSION` into DEST/NAME, unless it is there.
go_tool() {
  local name="$1" version="$2" package="$3" dest="$4" ldflags="${5:-}" work start=$SECONDS
  [[ -x "$dest/$name" ]] && return
  work="$(mktemp -d "${TMPDIR:-/tmp}/mr-$name-build.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  log "$name $version: building from $package"
  mkdir -p "$work/out"
  (cd "$work" && GOBIN="$work/out" go install -trimpath -ldflags "-s -w $ldflags" "$package@$version")
  publish_dir "$work/out" "$dest"
  log "$name $version: built into $dest in $((SECONDS - start))s"
}

build_helm() {
  # Stamp what helm's own Makefile stamps: its version, and the Kubernetes version of the client-go it is built
  # with (the default of --kube-version for template and lint; 1.20 when unset).
  local client_go major minor x=helm.sh/helm/v3
  [[ -x "$HELM_BIN/helm" ]] && return
  client_go="$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$(module_dir "$x@$HELM_VERSION")/go.mod")"
  [[ -n "$client_go" ]] || { log "helm $HELM_VERSION: no k8s.io/client-go in its go.mod"; exit 1; }
  major=1 minor="$client_go"
  go_tool helm "$HELM_VERSION" "$x/cmd/helm" "$HELM_BIN" "-X $x/internal/version.version=$HELM_VERSION \
    -X $x/pkg/lint/rules.k8sVersionMajor=$major -X $x/pkg/lint/rules.k8sVersionMinor=$minor \
    -X $x/pkg/chartutil.k8sVersionMajor=$major -X $x/pkg/chartutil.k8sVersionMinor=$minor"
}

# helm-unittest as a Helm plugin: its plugin.yaml runs $HELM_PLUGIN_DIR/untt-<os>-<arch> (macos for darwin). Its
# go.mod has a replace line, which `go install module@version` refuses, so it is built inside the downloaded module,
# with exactly its go.mod and go.sum. Nothing of the plugin's install hook runs (it would download a release).
helm_unittest() {
  [[ -f "$HELM_PLUGINS_DIR/helm-unittest/plugin.yaml" ]] && return
  local work src os arch start=$SECONDS
  work="$(mktemp -d "${TMPDIR:-/tmp}/mr-helm-unittest-build.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  log "helm-unittest $HELM_UNITTEST_VERSION: building"
  src="$(module_dir "github.com/helm-unittest/helm-unittest@$HELM_UNITTEST_VERSION")"
  os="$(go env GOOS)" arch="$(go env GOARCH)"
  [[ "$os" == darwin ]] && os=macos
  mkdir -p "$work/out/helm-unittest"
  (cd "$src" && go build -trimpath -o "$work/out/helm-unittest/untt-$os-$arch" \
    -ldflags "-s -w -X github.com/helm-unittest/helm-unittest/internal/build.version=${HELM_UNITTEST_VERSION#v}" \
    ./cmd/helm-unittest)
  cp "$src/plugin.yaml" "$work/out/helm-unittest/"
  grep -q "untt-$os-$arch" "$work/out/helm-unittest/plugin.yaml" ||
    { log "helm-unittest $HELM_UNITTEST_VERSION: plugin.yaml does not run untt-$os-$arch"; exit 1; }
  chmod -R u+w "$work/out"
  publish_dir "$work/out" "$HELM_PLUGINS_DIR"
  log "helm-unittest $HELM_UNITTEST_VERSION: built into $HELM_PLUGINS_DIR in $((SECONDS - start))s"
}

# The wheel's strict and non-strict schemas of one Kubernetes minor, made standalone (hack/kube_schemas.py).
kube_schemas() {
  [[ -f "$KUBE_SCHEMAS_DIR/.complete" ]] && return
  local work start=$SECONDS
  work="$(mktemp -d "${TMPDIR:-/tmp}/mr-kube-schemas.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  log "Kubernetes $KUBE_SCHEMAS_VERSION schemas: downloading kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
  # The hash pins the wheel's content, as go.sum does for the modules.
  echo "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION --hash=sha256:$KUBERNETES_VALIDATE_SHA256" >"$work/req.txt"
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary :all: --require-hashes \
    -r "$work/req.txt" -d "$work/wheel"
  python3 "$HACK_DIR/kube_schemas.py" "$work"/wheel/kubernetes_validate-*.whl "$KUBE_SCHEMAS_VERSION" "$work/out"
  touch "$work/out/.complete"
  publish_dir "$work/out" "$KUBE_SCHEMAS_DIR"
  log "Kubernetes $KUBE_SCHEMAS_VERSION schemas: cached in $KUBE_SCHEMAS_DIR in $((SECONDS - start))s"
}

prometheus_operator_crds() {
  [[ -f "$PROMETHEUS_OPERATOR_CRDS/.complete" ]] && return
  local work src kind
  work="$(mktemp -d "${TMPDIR:-/tmp}/mr-prometheus-operator-crds.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  log "Prometheus Operator CRDs: downloading $PROMETHEUS_OPERATOR_VERSION"
  src="$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")"
  mkdir -p "$work/out"
  for kind in servicemonitors podmonitors prometheusrules; do
    cp "$src/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$work/out/"
  done
  chmod -R u+w "$work/out"
  touch "$work/out/.complete"
  publish_dir "$work/out" "$PROMETHEUS_OPERATOR_CRDS"
  log "Prometheus Operator CRDs: cached in $PROMETHEUS_OPERATOR_CRDS"
}

case "${1:-build}" in
  build | env) ;;
  *) log "usage: $0 [build|env]"; exit 2 ;;
esac
# Whatever a build prints goes to stderr: stdout carries only the `env` lines.
{
  build_helm
  go_tool kubeconform "$KUBECONFORM_VERSION" github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_BIN" \
    "-X main.version=$KUBECONFORM_VERSION"
  go_tool kube-score "$KUBE_SCORE_VERSION" github.com/zegl/kube-score/cmd/kube-score "$KUBE_SCORE_BIN" \
    "-X main.version=${KUBE_SCORE_VERSION#v}"
  # actionlint reads its version from the module's build info.
  go_tool actionlint "$ACTIONLINT_VERSION" github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_BIN"
  helm_unittest
  kube_schemas
  prometheus_operator_crds
} >&2

if [[ "${1:-build}" == env ]]; then
  printf 'export %s=%q\n' \
    HELM "$HELM_BIN/helm" \
    KUBECONFORM "$KUBECONFORM_BIN/kubeconform" \
    KUBE_SCORE "$KUBE_SCORE_BIN/kube-score" \
    ACTIONLINT "$ACTIONLINT_BIN/actionlint" \
    HELM_PLUGINS "$HELM_PLUGINS_DIR" \
    KUBE_SCHEMAS "$KUBE_SCHEMAS_DIR" \
    KUBE_SCHEMAS_VERSION "$KUBE_SCHEMAS_VERSION" \
    PROMETHEUS_OPERATOR_CRDS "$PROMETHEUS_OPERATOR_CRDS"
fi
