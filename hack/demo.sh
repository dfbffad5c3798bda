#!/usr/bin/env bash
# The front door (`make demo`): a local cluster (named mr-demo, apart from the tests' clusters), the CRD, the
# operator, three model versions trained on the spot, their model servers, our router and Prometheus; then a
# canary of a good version that gets promoted and of a bad one that gets rolled back, printed as it happens.
# Everything is torn down at the end and on Ctrl-C; KEEP=1 keeps it running until Ctrl-C and keeps the cluster.
# The program is hack/demo.py (`hack/demo.sh --help`); BAD=slow makes version 3 slow instead of failing.
export CLUSTER_NAME="${CLUSTER_NAME:-mr-demo}"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
exec "$REPO_ROOT/.venv/bin/python" -m hack.demo "$@"
