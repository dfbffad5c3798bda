#!/usr/bin/env bash
# The CRDs the gatewayAPI and istio providers edit: Gateway API's standard channel from the Go module
# sigs.k8s.io/gateway-api (config/crd/standard) and Istio's from istio.io/api
# (kubernetes/customresourcedefinitions.gen.yaml), downloaded through the Go module proxy and cached by version.
#
#   hack/mesh-crds.sh            fetch (once) and print the directory holding the YAML files
#   hack/mesh-crds.sh install    also apply them to the cluster KUBECONFIG names and wait until established
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CRD_DIR="$MR_CACHE/crds/mesh-gateway-api-$GATEWAY_API_VERSION-istio-$ISTIO_API_VERSION"

fetch() {
  if [[ -f "$CRD_DIR/.complete" ]]; then
    return
  fi
  local work
  work="$(mktemp -d "${TMPDIR:-/tmp}/mr-mesh-crds.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  mkdir -p "$work/out"
  local module dir
  for module in "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" "istio.io/api@$ISTIO_API_VERSION"; do
    log "mesh CRDs: downloading $module"
    # Outside any module, so go.mod files nearby cannot interfere; -json names the unpacked directory.
    dir="$(cd "$work" && GOFLAGS= go mod download -json "$module" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -n "$dir" && -d "$dir" ]] || { log "go mod download $module gave no directory"; exit 1; }
    case "$module" in
      sigs.k8s.io/gateway-api@*)
        for f in "$dir"/config/crd/standard/gateway.networking.k8s.io_*.yaml; do
          # The directory also holds a ValidatingAdmissionPolicy (vap_safeupgrades); we install CRDs only.
          grep -q '^kind: CustomResourceDefinition' "$f" && cp "$f" "$work/out/"
        done
        ;;
      istio.io/api@*)
        cp "$dir/kubernetes/customresourcedefinitions.gen.yaml" "$work/out/istio.io_customresourcedefinitions.yaml"
        ;;
    esac
  done
  chmod -R u+w "$work/out"
  touch "$work/out/.complete"
  publish_dir "$work/out" "$CRD_DIR"
  log "mesh CRDs: cached in $CRD_DIR"
}

fetch
case "${1:-fetch}" in
  fetch) ;;
  install)
    : "${KUBECONFIG:?install needs KUBECONFIG naming the cluster}"
    log "mesh CRDs: applying Gateway API $GATEWAY_API_VERSION and Istio $ISTIO_API_VERSION CRDs"
    kubectl apply --server-side --force-conflicts --field-manager modelrollout-hack -f "$CRD_DIR" >/dev/null
    # A CRD just created has no status yet, and `kubectl wait` then fails at once ("status.conditions accessor
    # error") instead of waiting: ask again until the API server has written one.
    for attempt in $(seq 1 60); do
      if kubectl wait --for condition=established --timeout 60s \
        crd/httproutes.gateway.networking.k8s.io crd/virtualservices.networking.istio.io \
        crd/destinationrules.networking.istio.io >/dev/null 2>&1; then
        break
      fi
      [[ $attempt -lt 60 ]] || { log "mesh CRDs not established after 60 attempts"; exit 1; }
      sleep 0.5
    done
    ;;
  *) log "usage: $0 [fetch|install]"; exit 2 ;;
esac
echo "$CRD_DIR"
