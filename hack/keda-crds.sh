#!/usr/bin/env bash
# KEDA's CRDs (keda.sh: ScaledObject, ScaledJob, TriggerAuthentication, ClusterTriggerAuthentication; eventing.keda.sh:
# CloudEventSource, ClusterCloudEventSource) from the Go module github.com/kedacore/keda/v2 (config/crd/bases),
# downloaded through the Go module proxy and cached by version, as hack/mesh-crds.sh does for the mesh CRDs.
#
#   hack/keda-crds.sh            fetch (once) and print the directory holding the YAML files
#   hack/keda-crds.sh install    also apply them to the cluster KUBECONFIG names and wait until established
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CRD_DIR="$MR_CACHE/crds/keda-$KEDA_VERSION"

fetch() {
  if [[ -f "$CRD_DIR/.complete" ]]; then
    return
  fi
  local work
  work="$(mktemp -d "${TMPDIR:-/tmp}/mr-keda-crds.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  mkdir -p "$work/out"
  local module="github.com/kedacore/keda/v2@$KEDA_VERSION" dir f
  log "KEDA CRDs: downloading $module"
  # Outside any module, so go.mod files nearby cannot interfere; -json names the unpacked directory.
  dir="$(cd "$work" && GOFLAGS= go mod download -json "$module" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -n "$dir" && -d "$dir" ]] || { log "go mod download $module gave no directory"; exit 1; }
  for f in "$dir"/config/crd/bases/*.yaml; do
    grep -q '^kind: CustomResourceDefinition' "$f" && cp "$f" "$work/out/"
  done
  [[ -f "$work/out/keda.sh_scaledobjects.yaml" ]] || { log "$module has no config/crd/bases/keda.sh_scaledobjects.yaml"; exit 1; }
  chmod -R u+w "$work/out"
  touch "$work/out/.complete"
  publish_dir "$work/out" "$CRD_DIR"
  log "KEDA CRDs: cached in $CRD_DIR"
}

fetch
case "${1:-fetch}" in
  fetch) ;;
  install)
    : "${KUBECONFIG:?install needs KUBECONFIG naming the cluster}"
    log "KEDA CRDs: applying KEDA $KEDA_VERSION CRDs"
    kubectl apply --server-side --force-conflicts --field-manager modelrollout-hack -f "$CRD_DIR" >/dev/null
    # A CRD just created has no status yet, and `kubectl wait` then fails at once ("status.conditions accessor
    # error") instead of waiting: ask again until the API server has written one.
    for attempt in $(seq 1 60); do
      if kubectl wait --for condition=established --timeout 60s \
        crd/scaledobjects.keda.sh crd/scaledjobs.keda.sh crd/triggerauthentications.keda.sh \
        crd/clustertriggerauthentications.keda.sh >/dev/null 2>&1; then
        break
      fi
      [[ $attempt -lt 60 ]] || { log "KEDA CRDs not established after 60 attempts"; exit 1; }
      sleep 0.5
    done
    ;;
  *) log "usage: $0 [fetch|install]"; exit 2 ;;
esac
echo "$CRD_DIR"
