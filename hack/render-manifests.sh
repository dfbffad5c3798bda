#!/usr/bin/env bash
# deploy/modelrollout.yaml: the chart rendered with its default values into namespace modelrollout-system, plus that
# Namespace, so `kubectl apply --server-side -f deploy/` installs what `helm install` would (`make manifests`;
# tests/integration/chart/test_manifests.py fails when the file is stale).
#
#   hack/render-manifests.sh          write deploy/modelrollout.yaml
#   hack/render-manifests.sh stdout   print it instead
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
eval "$("$HACK_DIR/build-chart-tools.sh" env)"
NAMESPACE=modelrollout-system
render() {
  cat <<HEADER
# The ModelRollout operator, rendered from charts/modelrollout with its default values by \`make manifests\`
# (hack/render-manifests.sh); do not edit. Install: kubectl apply --server-side -f deploy/
# Settings are the Deployment's MODELROLLOUT_* variables (charts/modelrollout/values.yaml says what each does).
---
apiVersion: v1
kind: Namespace
metadata:
  name: $NAMESPACE
  labels:
    pod-security.kubernetes.io/enforce: restricted
HEADER
  "$HELM" template modelrollout "$REPO_ROOT/charts/modelrollout" --namespace "$NAMESPACE"
}
case "${1:-write}" in
  write) render > "$REPO_ROOT/deploy/modelrollout.yaml" ;;
  stdout) render ;;
  *) log "usage: $0 [write|stdout]"; exit 2 ;;
esac
