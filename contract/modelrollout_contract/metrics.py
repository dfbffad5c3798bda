"""Metric and label names the model server and the router export and the operator's analysis queries, and the
histogram buckets both sides must agree on (DESIGN.md section 4)."""

from __future__ import annotations

# The model server (modelserver.metrics), per served model: labels model, version (+ the ones named per series).
REQUESTS = "modelserver_requests_total"  # {protocol, code}
REQUEST_DURATION = "modelserver_request_duration_seconds"  # {protocol}, histogram
INFERENCE_ERRORS = "modelserver_inference_errors_total"  # {reason}
BATCH_SIZE = "modelserver_batch_size"
PREDICTIONS = "modelserver_predictions_total"  # {label}
PREDICTION_VALUE = "modelserver_prediction_value"

# The batch scorer (modelserver.batch.metrics), pushed to a Pushgateway per run: labels model, version.
BATCH_RECORDS = "modelserver_batch_records_total"  # {result: scored | rejected}
BATCH_RUN_DURATION = "modelserver_batch_run_duration_seconds"  # gauge, the run's wall time
BATCH_LAST_SUCCESS = "modelserver_batch_last_success_timestamp_seconds"  # gauge, set when a run commits
SCORED, REJECTED = "scored", "rejected"

# The router (modelserver.routing.metrics), per route.
ROUTER_REQUESTS = "modelrouter_requests_total"  # {route, version, role, code}
ROUTER_UPSTREAM_DURATION = "modelrouter_upstream_duration_seconds"  # {route, version, role}
SHADOW_COMPARISONS = "modelrouter_shadow_comparisons_total"  # {route, result}
SHADOW_ABS_DIFF = "modelrouter_shadow_abs_diff"  # {route}, histogram
ROUTER_WEIGHT = "modelrouter_weight"  # {route, role}

MODEL_LABEL = "model"
VERSION_LABEL = "version"
ROUTE_LABEL = "route"
# The values of modelrouter_shadow_comparisons_total's `result`.
AGREE, DISAGREE, ERROR = "agree", "disagree", "error"

# 0.5 ms .. 10 s: sub-millisecond tabular models up to slow custom ones, on both sides of the router's hop. A
# latency SLO the sequential judge counts against must be one of these edges, or its count would be a guess.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
