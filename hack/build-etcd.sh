#!/usr/bin/env bash
# Builds etcd from the Go module go.etcd.io/etcd/server/v3 through a two-line main (Debian's etcd 3.4 is too
# old for Kubernetes 1.33, and we may not download release tarballs).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ -x "$ETCD_BIN/etcd" ]]; then
  log "etcd $ETCD_VERSION: cached in $ETCD_BIN"
  exit 0
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/mr-etcd-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log "etcd $ETCD_VERSION: building"
cd "$work"
cat > main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
cat > go.mod <<GOMOD
module modelrollout.dev/hack/etcdbuild

go 1.23
GOMOD
go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
go mod tidy
mkdir -p out
go build -trimpath -ldflags "-s -w" -o out/etcd .
out/etcd --version | sed -n 1p  # sed reads to the end: `head` would SIGPIPE etcd under pipefail
publish_dir "$work/out" "$ETCD_BIN"
log "etcd $ETCD_VERSION: built into $ETCD_BIN"
