#!/usr/bin/env bash
# Installs Prometheus for the analysis tests from Debian's package when no `prometheus` is on PATH.
# The tests run their own Prometheus processes on loopback, so the packaged system service is never started.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if command -v prometheus >/dev/null; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  log "prometheus is not on PATH and installing it needs root: run 'apt-get install -y prometheus' as root"
  exit 1
fi

# invoke-rc.d asks policy-rc.d whether a package may start its service; 101 means "no". Only a policy we
# created ourselves is removed again, so an existing one (as in many container images) is left alone.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  trap 'rm -f "$policy"' EXIT
fi

log "installing prometheus from the Debian archive"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
log "installed: $(prometheus --version 2>&1 | sed -n 1p)"
