#!/usr/bin/env bash
# Starts (or reuses) the local control plane: etcd + kube-apiserver + kube-controller-manager + kube-scheduler
# + kwok's fake-node controller, all built locally, no container runtime. Prints the kubeconfig path on stdout.
#   CLUSTER_NAME (default modelrollout)  NODES (default 2)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
NODES="${NODES:-2}"
"$HACK_DIR/build-tools.sh"
kwok_env
kwokctl="$KWOK_BIN/kwokctl"
kc() { kubectl --kubeconfig "$CLUSTER_KUBECONFIG" "$@"; }

if [[ -f "$CLUSTER_KUBECONFIG" ]] && kc get --raw /readyz >/dev/null 2>&1; then
  log "cluster $CLUSTER_NAME: already running"
else
  # A leftover cluster directory (a stopped machine, a killed session) cannot be trusted: start clean.
  "$kwokctl" delete cluster --name "$CLUSTER_NAME" >/dev/null 2>&1 || true
  log "cluster $CLUSTER_NAME: creating (kubernetes $K8S_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION)"
  # --kubeconfig "": never touch the user's ~/.kube/config; callers use the printed per-cluster file.
  "$kwokctl" create cluster --name "$CLUSTER_NAME" --runtime binary --kubeconfig "" \
    --disable-qps-limits --wait 3m >&2
fi

have="$(kc get nodes -l type=kwok -o name 2>/dev/null | wc -l)"
if (( have < NODES )); then
  log "cluster $CLUSTER_NAME: scaling fake nodes $have -> $NODES"
  "$kwokctl" scale node --name "$CLUSTER_NAME" --replicas "$NODES" >&2
fi
kc wait --for=condition=Ready node --all --timeout=120s >&2
log "cluster $CLUSTER_NAME: ready; export KUBECONFIG=$CLUSTER_KUBECONFIG"
echo "$CLUSTER_KUBECONFIG"
