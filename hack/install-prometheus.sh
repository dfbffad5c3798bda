#!/usr/bin/env bash
# Installs Prometheus and its Pushgateway (batch runs push their metrics) from Debian's packages when they are
# not on PATH. The tests run their own processes on loopback, so the packaged system services are never started.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v prometheus-pushgateway >/dev/null || missing+=(prometheus-pushgateway)
if (( ${#missing[@]} == 0 )); then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  log "${missing[*]} not on PATH, and installing needs root: run 'apt-get install -y ${missing[*]}' as root"
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

log "installing ${missing[*]} from the Debian archive"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
log "installed: $(prometheus --version 2>&1 | sed -n 1p); $(prometheus-pushgateway --version 2>&1 | sed -n 1p)"
