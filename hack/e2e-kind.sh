#!/usr/bin/env bash
# For users with a Docker engine: the images built and run on a kind cluster, then the same end-to-end suite
# against kind's API server instead of the kwok control plane. Never used by `make test` (our machines have no
# Docker engine, so this has only been checked by reading).
#
# The suite's pods select the local kubelet's node (testkit/kubelet) and run there as processes of this checkout,
# as on kwok; kind's own node runs the images: first hack/kind/image-smoke.yaml (each image, locked down as the
# operator's pods are: every runtime imports and a model is served; every operator module imports), and the
# operator of the suite names the model server image built here (MODELROLLOUT_TEST_DEFAULT_IMAGE), so every pod
# it plans names an image kind has.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { log "make e2e-kind needs $tool on PATH"; exit 1; }
done
docker info >/dev/null 2>&1 || { log "make e2e-kind needs a running Docker engine"; exit 1; }
name="${KIND_CLUSTER_NAME:-modelrollout-e2e}"
kubeconfig="$MR_CACHE/kind-$name.kubeconfig"
mkdir -p "$MR_CACHE"
kc() { kubectl --kubeconfig "$kubeconfig" "$@"; }

kind get clusters | grep -qx "$name" || kind create cluster --name "$name" --image "kindest/node:${KIND_NODE_VERSION:-v1.33.1}"
kind get kubeconfig --name "$name" > "$kubeconfig"

# BuildKit: the Dockerfile caches uv's downloads in a cache mount (RUN --mount).
declare -A image
for target in operator model-server; do
  image[$target]="modelrollout/$target:dev"
  DOCKER_BUILDKIT=1 docker build --target "$target" -t "${image[$target]}" "$REPO_ROOT"
  kind load docker-image --name "$name" "${image[$target]}"
done

# Each Job passes or fails once (backoffLimit 0): wait for either, and show the log.
smoke="modelrollout-image-smoke"
kc delete namespace "$smoke" --ignore-not-found --wait=true
kc create namespace "$smoke"
sed -e "s|MODEL_SERVER_IMAGE|${image[model-server]}|" -e "s|OPERATOR_IMAGE|${image[operator]}|" \
  "$HACK_DIR/kind/image-smoke.yaml" | kc apply -n "$smoke" -f -
for job in model-server-image operator-image; do
  state=""
  for _ in $(seq 360); do
    state="$(kc get -n "$smoke" "job/$job" -o jsonpath='{.status.succeeded}/{.status.failed}')"
    [[ "$state" == 1/* || "$state" == */1 ]] && break
    sleep 1
  done
  kc logs -n "$smoke" "job/$job" --tail=40 || true
  if [[ "$state" != 1/* ]]; then
    kc describe -n "$smoke" "job/$job" | tail -20 || true
    log "image smoke test $job did not pass on kind's node (state succeeded/failed: $state)"
    exit 1
  fi
done
kc delete namespace "$smoke" --wait=false

cd "$REPO_ROOT"
KUBECONFIG="$kubeconfig" MODELROLLOUT_TEST_DEFAULT_IMAGE="${image[model-server]}" .venv/bin/pytest -m e2e tests/e2e
