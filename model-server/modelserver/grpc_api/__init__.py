"""The Open Inference Protocol v2 over gRPC (`inference.GRPCInferenceService`), served by `modelserver serve` beside
REST on the same data plane: `convert` (messages <-> the data plane's requests and tensors), `status` (errors ->
gRPC status codes), `service` (the servicer and the server's life cycle).

`grpc_predict_v2.proto` is KServe's, vendored as it is; its `*_pb2*` modules are generated from it at build time
(hack/gen-grpc.sh: `make venv`, hack/install-image.sh) and never committed.
"""
