#!/usr/bin/env bash
# Stops the local control plane and deletes its state.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
kwok_env
if [[ -x "$KWOK_BIN/kwokctl" ]]; then
  "$KWOK_BIN/kwokctl" delete cluster --name "$CLUSTER_NAME" >&2 || true
fi
log "cluster $CLUSTER_NAME: deleted"
