#!/usr/bin/env bash
# Generates the gRPC service's message and service code from its .proto files, beside them:
#
#   hack/gen-grpc.sh <python> <model-server dir> [--stubs]
#
# <python> must have grpcio-tools; --stubs also writes mypy-protobuf's .pyi files (its protoc-gen-mypy plugins
# next to <python>), which only mypy reads. The output is a build product, never committed (.gitignore): `make venv`
# writes it into the checkout, hack/install-image.sh into the copy it installs the image from.
set -euo pipefail
[[ $# -ge 2 ]] || { echo "usage: $0 <python> <model-server dir> [--stubs]" >&2; exit 2; }
python="$1"
root="$2"
# KServe's service (vendored), and the repository extension's messages (modelserver/grpc_api/model_repository.proto).
protos=(modelserver/grpc_api/grpc_predict_v2.proto modelserver/grpc_api/model_repository.proto)
outputs=(--python_out="$root" --grpc_python_out="$root")
if [[ "${3:-}" == "--stubs" ]]; then
  bin="$(dirname "$python")"
  outputs+=(--plugin=protoc-gen-mypy="$bin/protoc-gen-mypy" --mypy_out="$root"
            --plugin=protoc-gen-mypy_grpc="$bin/protoc-gen-mypy_grpc" --mypy_grpc_out="$root")
fi
# -I is the package root, so the generated service module imports its messages as modelserver.grpc_api.*.
"$python" -m grpc_tools.protoc -I "$root" "${outputs[@]}" "${protos[@]/#/$root/}"

# The messages go into a descriptor pool of their own, not protobuf's default one: tritonclient.grpc and KServe's
# client register the same `inference.*` symbols from files of other names there, and the default pool refuses a
# second definition (TypeError: duplicate symbol), so a process importing both (a test session, a custom model that
# calls Triton) could not start. Nothing of ours looks messages up by name, so nothing needs the default pool.
default='_descriptor_pool.Default().AddSerializedFile('
for proto in "${protos[@]}"; do
  messages="$root/${proto%.proto}_pb2.py"
  [[ "$(grep -cF "$default" "$messages")" == 1 ]] || { echo "$0: $messages does not add its file as expected" >&2; exit 1; }
  sed -i "s/_descriptor_pool\.Default()\.AddSerializedFile(/_descriptor_pool.DescriptorPool().AddSerializedFile(/" "$messages"
done
