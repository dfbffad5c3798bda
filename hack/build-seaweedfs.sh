#!/usr/bin/env bash
# Builds SeaweedFS's `weed` (its S3 gateway is the real S3-compatible store the tests use) from the Go module
# github.com/seaweedfs/seaweedfs. `go install module@version` refuses a module whose go.mod has replace lines, so
# we build through a wrapper module that requires it and repeats its one replace. ~4 min cold on 2 cores.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WEED_BIN="$MR_CACHE/bin/seaweedfs-$SEAWEEDFS_VERSION"
if [[ -x "$WEED_BIN/weed" ]]; then
  exit 0
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/mr-weed-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log "SeaweedFS $SEAWEEDFS_VERSION: building weed (a few minutes, once)"
cd "$work"
cat > go.mod <<GOMOD
module modelrollout.dev/hack/weedbuild

go 1.26

require github.com/seaweedfs/seaweedfs $SEAWEEDFS_VERSION

// The one replace of SeaweedFS's own go.mod (a wrapper module must repeat it).
replace github.com/tyler-smith/go-bip39 => github.com/cosmos/go-bip39 v1.0.0
GOMOD
cat > tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/seaweedfs/seaweedfs/weed"
GO
GOFLAGS=-mod=mod go mod tidy
mkdir -p out
GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o out/weed github.com/seaweedfs/seaweedfs/weed
out/weed version | sed -n 1p
publish_dir "$work/out" "$WEED_BIN"
log "SeaweedFS: built into $WEED_BIN"
