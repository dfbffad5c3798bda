#!/usr/bin/env bash
# Installs what one image runs into a fresh virtualenv at PREFIX, pinned by requirements.lock:
#
#   hack/install-image.sh <operator|model-server> <prefix>
#
#   operator      the contract + the operator (kopf, kubernetes-asyncio, scipy, ...)
#   model-server  the contract + modelserver[all]: every runtime (onnx, xgboost, lightgbm), s3 and stream, because
#                 the image is the one the examples run and the operator defaults to (spec.model.image unset)
#
# Environment: PYTHON (default python3) is the interpreter the virtualenv is made from (in the image, the base
# image's /usr/local/bin/python3.11); UV (default uv) is the installer; uv's own cache (UV_CACHE_DIR) is used.
#
# The Dockerfile RUNs this script and tests/integration/image/test_image_install.py runs it too, so what the test
# proves (every format served, read-only tree, operator imports) holds for the image as built. Nothing is written
# outside PREFIX and temp files; PREFIX must not exist yet (or be empty), so nothing stale can pass for installed.
set -euo pipefail

usage() { echo "usage: $0 <operator|model-server> <prefix>" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
target="$1"
prefix="$2"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
uv="${UV:-uv}"

case "$target" in
  operator) packages=("$repo/contract" "$repo/operator") ;;
  model-server) packages=("$repo/contract" "$repo/model-server[all]") ;;
  *) usage ;;
esac
if [[ -e "$prefix" && -n "$(ls -A "$prefix")" ]]; then
  echo "$0: $prefix is not empty; install into a fresh prefix" >&2
  exit 2
fi

# The lock names the contract as `-e ./contract`; constraints take no editable, so that line is dropped and the
# contract is installed from its folder (a regular install: the image has no checkout to point an editable at).
constraints="$(mktemp)"
work="$(mktemp -d)"
trap 'rm -rf "$constraints" "$work"' EXIT
grep -v '^-e ' "$repo/requirements.lock" > "$constraints"

# The model server's gRPC message code is generated, never committed: it is generated into a copy of the package
# (the checkout stays as it is), by the grpcio-tools the lock pins, from a throwaway virtualenv (the image has no
# use for the generator).
if [[ "$target" == model-server ]]; then
  tar -C "$repo" --exclude=__pycache__ --exclude='*_pb2*' -cf - model-server | tar -C "$work" -xf -
  "$python" -m venv --without-pip "$work/generator"
  "$uv" pip install --quiet --python "$work/generator/bin/python" --constraints "$constraints" grpcio-tools
  "$repo/hack/gen-grpc.sh" "$work/generator/bin/python" "$work/model-server"
  packages=("$repo/contract" "$work/model-server[all]")
fi

# No pip in the virtualenv: uv installs, and the image has no use for an installer at run time.
"$python" -m venv --without-pip "$prefix"
# --compile-bytecode: the images run on a read-only root filesystem as a user who cannot write here, so Python
# could never cache what it compiles; compiled once now, every start (and every new pod of a rollout) reads .pyc
# instead of compiling scikit-learn, scipy and the rest again. --strict: fail on a broken dependency set.
"$uv" pip install --quiet --python "$prefix/bin/python" --constraints "$constraints" --compile-bytecode --strict \
  "${packages[@]}"

# Constraints only bind what the lock names; a dependency missing from it would be resolved freely. Refuse that:
# every installed distribution but our own three must be pinned by the lock at exactly the installed version.
unpinned=()
while IFS= read -r line; do
  [[ "$line" == *" @ "* ]] && continue  # our local packages (contract, operator, model server)
  name="${line%%==*}"
  version="${line#*==}"
  name="$(tr '[:upper:]_.' '[:lower:]--' <<< "$name")"
  # A lock line is `name==version`, then maybe ` ; marker`: its first word, compared whole (no regex of versions).
  awk -v want="$name==$version" 'tolower($1) == tolower(want) { found = 1 } END { exit !found }' "$constraints" \
    || unpinned+=("$line")
done < <("$uv" pip freeze --quiet --python "$prefix/bin/python")
if [[ ${#unpinned[@]} -gt 0 ]]; then
  echo "$0: installed but not pinned by requirements.lock (run make lock): ${unpinned[*]}" >&2
  exit 1
fi
# uv leaves its install lock in the virtualenv, world-writable (0666): the one file the run user could write.
# Removed last, since any uv command above may take it again.
rm -f "$prefix/.lock"
