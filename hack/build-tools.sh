#!/usr/bin/env bash
# Builds every local control-plane binary that is not cached yet (see versions.env).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
command -v kubectl >/dev/null || { log "kubectl is required on PATH (kwokctl and the tests use it)"; exit 1; }
"$HACK_DIR/build-etcd.sh"
"$HACK_DIR/build-kwok.sh"
"$HACK_DIR/build-kubernetes.sh"
