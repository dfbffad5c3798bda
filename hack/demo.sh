#!/usr/bin/env bash
# The front door: local cluster -> CRD -> the operator -> a ModelDeployment served online -> a new model version
# replacing it (strategy direct). Everything is real except that kwok's pods do not run containers.
# (The rollout work grows this into a canary with Prometheus, model servers and the router.)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export KUBECONFIG="$("$HACK_DIR/cluster-up.sh")"
PY="$REPO_ROOT/.venv/bin/python"
NS=modelrollout-demo
step() { printf '\n\033[1;32m== %s\033[0m\n' "$*"; }

step "local control plane"
kubectl version | sed -n 2p
kubectl get nodes

step "install the ModelDeployment CRD"
kubectl apply --server-side -f "$REPO_ROOT/crds/" >/dev/null
kubectl wait --for condition=Established crd/modeldeployments.modelrollout.dev >/dev/null
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null

step "start the operator (log: $MR_CACHE/demo-operator.log)"
MODELROLLOUT_RECONCILE_INTERVAL_S=2 MODELROLLOUT_LIVENESS_PORT=0 \
  "$PY" -m modelrollout.main run --namespace "$NS" > "$MR_CACHE/demo-operator.log" 2>&1 &
operator=$!
trap 'kill $operator 2>/dev/null; wait $operator 2>/dev/null' EXIT

wait_phase() {  # name phase version
  for _ in $(seq 1 60); do
    got="$(kubectl get mdep "$1" -n "$NS" -o jsonpath='{.status.phase}/{.status.stable.version}' 2>/dev/null)"
    [[ "$got" == "$2/$3" ]] && return 0
    sleep 1
  done
  echo "timed out waiting for $1 to be $2 on version $3 (got $got)" >&2; return 1
}

step "apply examples/online-direct.yaml (model iris, version 1)"
kubectl apply --server-side -n "$NS" -f "$REPO_ROOT/examples/online-direct.yaml"
wait_phase iris Healthy 1
kubectl get mdep,deployments,services -n "$NS"

step "new model version 2: brought up beside version 1, switched to once available, old one removed"
kubectl patch mdep iris -n "$NS" --type merge -p '{"spec":{"model":{"version":"2","uri":"file:///models/iris/2/model.joblib"}}}'
wait_phase iris Healthy 2
sleep 2
kubectl get mdep,deployments -n "$NS"
step "what the operator decided (events)"
kubectl get events -n "$NS" --field-selector involvedObject.kind=ModelDeployment \
  --sort-by=.lastTimestamp -o custom-columns=REASON:.reason,MESSAGE:.message
step "done: the cluster keeps running (export KUBECONFIG=$KUBECONFIG); make cluster-down stops it"
