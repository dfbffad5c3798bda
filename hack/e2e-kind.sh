#!/usr/bin/env bash
# For users with a Docker engine: the same end-to-end suite on a kind cluster instead of the kwok control
# plane. Never used by `make test` (our machines have no Docker engine).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
for tool in docker kind; do
  command -v "$tool" >/dev/null || { log "make e2e-kind needs $tool on PATH"; exit 1; }
done
docker info >/dev/null 2>&1 || { log "make e2e-kind needs a running Docker engine"; exit 1; }
name="${KIND_CLUSTER_NAME:-modelrollout-e2e}"
kubeconfig="$MR_CACHE/kind-$name.kubeconfig"
kind get clusters | grep -qx "$name" || kind create cluster --name "$name" --image "kindest/node:${KIND_NODE_VERSION:-v1.33.1}"
kind get kubeconfig --name "$name" > "$kubeconfig"
for target in operator model-server; do
  docker build --target "$target" -t "modelrollout/$target:dev" "$REPO_ROOT"
  kind load docker-image --name "$name" "modelrollout/$target:dev"
done
cd "$REPO_ROOT"
KUBECONFIG="$kubeconfig" .venv/bin/pytest -m e2e tests/e2e
