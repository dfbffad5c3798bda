#!/usr/bin/env bash
# Installs kwok (the fake-node controller) and kwokctl (the cluster launcher) from the Go module sigs.k8s.io/kwok.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ -x "$KWOK_BIN/kwok" && -x "$KWOK_BIN/kwokctl" ]]; then
  log "kwok $KWOK_VERSION: cached in $KWOK_BIN"
  exit 0
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/mr-kwok-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log "kwok $KWOK_VERSION: building"
mkdir -p "$work/out"
# kwok stamps its own version into pkg/consts; without it kwokctl reports "v0.0.0".
GOBIN="$work/out" go install -trimpath \
  -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" \
  "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
"$work/out/kwokctl" --version
publish_dir "$work/out" "$KWOK_BIN"
log "kwok $KWOK_VERSION: built into $KWOK_BIN"
