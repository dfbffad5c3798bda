#!/usr/bin/env bash
# The front door: builds what is missing, starts the local cluster and shows it.
# (The rollout issues grow this into a full rollout: operator, Prometheus, model servers, router.)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
kubeconfig="$("$HACK_DIR/cluster-up.sh")"
export KUBECONFIG="$kubeconfig"
echo
echo "== local control plane ($CLUSTER_NAME) =="
kubectl version
echo
kubectl get nodes -o wide
echo
kubectl get --raw '/readyz?verbose' | tail -n 3
echo
echo "The cluster keeps running. Use it with:  export KUBECONFIG=$kubeconfig"
echo "Stop it with:                          make cluster-down"
