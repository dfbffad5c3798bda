#!/usr/bin/env bash
# Builds ghz (the gRPC load generator of `make bench-serving`'s gRPC row) from its Go module github.com/bojand/ghz,
# once per version, into the cache. Prints the binary's path.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

GHZ_BIN="$MR_CACHE/bin/ghz-$GHZ_VERSION"
if [[ ! -x "$GHZ_BIN/ghz" ]]; then
  work="$(mktemp -d "${TMPDIR:-/tmp}/mr-ghz-build.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  log "ghz $GHZ_VERSION: building (a minute or two, once)"
  mkdir -p "$work/out"
  GOBIN="$work/out" go install -trimpath -ldflags "-s -w" "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION"
  publish_dir "$work/out" "$GHZ_BIN"
  log "ghz: built into $GHZ_BIN"
fi
echo "$GHZ_BIN/ghz"
