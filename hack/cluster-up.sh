#!/usr/bin/env bash
# Starts (or reuses) the local control plane: etcd + kube-apiserver + kube-controller-manager + kube-scheduler
# + kwok's fake-node controller, all built locally, no container runtime. Prints the kubeconfig path on stdout.
#   CLUSTER_NAME (default modelrollout)  NODES (default 2)
#   SERVICE_CIDR (default: kube-apiserver's own, a /24: about 250 Services, 3 per ModelDeployment; the operator
#     bench gives its cluster a /16)  NODE_PODS (default: kwok's 110 pods allocatable per fake node)
# Both apply when the cluster is created or its nodes are added: a running cluster of that name is reused as it is.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
NODES="${NODES:-2}"
SERVICE_CIDR="${SERVICE_CIDR:-}"
NODE_PODS="${NODE_PODS:-}"
"$HACK_DIR/build-tools.sh"
kwok_env
kwokctl="$KWOK_BIN/kwokctl"
kc() { kubectl --kubeconfig "$CLUSTER_KUBECONFIG" "$@"; }

# kwok replaces its default stages with any given in a config, so the config carries kwok's own defaults (read
# from the kwok module we built, nothing downloaded) followed by ours (hack/kwok/failure-stages.yaml), and
# hack/kwok/controller.yaml, which keeps kwok's hands off nodes that are not its own (the local kubelet's).
write_stage_config() {
  local dir out
  dir="$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  # Clusters with another Service range get a file of their own (the name says which range).
  out="$KWOK_WORKDIR/stages-$KWOK_VERSION${SERVICE_CIDR:+-services-${SERVICE_CIDR//[.\/]/-}}.yaml"
  mkdir -p "$KWOK_WORKDIR"
  # Written aside and renamed: test workers start their clusters at the same time and share this file.
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo "---"; cat "$dir/kustomize/stage/$f"
  done > "$out.$$"
  { echo "---"; cat "$HACK_DIR/kwok/failure-stages.yaml"; echo "---"; cat "$HACK_DIR/kwok/controller.yaml"; } >> "$out.$$"
  if [[ -n "$SERVICE_CIDR" ]]; then
    # kwokctl reads only the first KwokctlConfiguration of a file, and hack/kwok/controller.yaml ends in its
    # componentsPatches list: the API server's patch joins that list. kwokctl passes no range of its own.
    printf '  - name: kube-apiserver\n    extraArgs:\n      - {key: service-cluster-ip-range, value: "%s"}\n' \
      "$SERVICE_CIDR" >> "$out.$$"
  fi
  mv -f "$out.$$" "$out"
  echo "$out"
}

# kwokctl picks each component's port by probing which are free when it creates a cluster: two clusters created
# at the same moment (parallel test workers) would pick the same ports. Creations take turns.
mkdir -p "$KWOK_WORKDIR"
exec 9>"$KWOK_WORKDIR/create.lock"
flock 9
if [[ -f "$CLUSTER_KUBECONFIG" ]] && kc get --raw /readyz >/dev/null 2>&1; then
  log "cluster $CLUSTER_NAME: already running"
else
  # A leftover cluster directory (a stopped machine, a killed session) cannot be trusted: start clean.
  "$kwokctl" delete cluster --name "$CLUSTER_NAME" >/dev/null 2>&1 || true
  log "cluster $CLUSTER_NAME: creating (kubernetes $K8S_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION)"
  stages="$(write_stage_config)"
  # --kubeconfig "": never touch the user's ~/.kube/config; callers use the printed per-cluster file.
  "$kwokctl" create cluster --name "$CLUSTER_NAME" --runtime binary --kubeconfig "" --config "$stages" \
    --disable-qps-limits --wait 3m >&2
fi

flock -u 9
have="$(kc get nodes -l type=kwok -o name 2>/dev/null | wc -l)"
if (( have < NODES )); then
  log "cluster $CLUSTER_NAME: scaling fake nodes $have -> $NODES"
  # kwok's default node has cpu, memory and pods only; a real node also has ephemeral-storage, which pods that
  # request it (the operator's chart does, as kube-score asks) need to be scheduled at all.
  params=(--param '.allocatable["ephemeral-storage"]="100Gi"')
  [[ -z "$NODE_PODS" ]] || params+=(--param ".allocatable.pods=\"$NODE_PODS\"")
  "$kwokctl" scale node --name "$CLUSTER_NAME" --replicas "$NODES" "${params[@]}" >&2
fi
kc wait --for=condition=Ready node --all --timeout=120s >&2
log "cluster $CLUSTER_NAME: ready; export KUBECONFIG=$CLUSTER_KUBECONFIG"
echo "$CLUSTER_KUBECONFIG"
