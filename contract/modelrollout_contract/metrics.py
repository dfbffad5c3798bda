"""Metric and label names the model server and the router export and the operator's analysis queries, and the
histogram buckets both sides must agree on (DESIGN.md section 4)."""

from __future__ import annotations

from typing import Final

# The model server (modelserver.metrics), per served model: labels model, version (+ the ones named per series).
REQUESTS = "modelserver_requests_total"  # {protocol, code}: values below
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

# The stream consumer (modelserver.stream.metrics), one consumer process each: labels model, version, revision (+
# the ones named per series), so the stable and the canary consumer groups of one topic are told apart.
STREAM_RECORDS = "modelserver_stream_records_total"  # {result: scored | dead_lettered | skipped | dropped}
STREAM_CONSUMER_LAG = "modelserver_stream_consumer_lag"  # {topic, partition}, gauge: high watermark - position
STREAM_END_TO_END = "modelserver_stream_end_to_end_seconds"  # histogram: record timestamp -> its batch committed
STREAM_BATCH_RECORDS = "modelserver_stream_batch_records"  # histogram: records per consumed micro-batch
STREAM_REBALANCES = "modelserver_stream_rebalances_total"  # {kind: assigned | revoked | lost}
STREAM_TRANSACTIONS = "modelserver_stream_transactions_total"  # {result: committed | aborted}; exactly-once only
# In a stream rollout (modelrollout_contract.stream), label `revision` tells the two revisions' consumers apart.
STREAM_CUTOVER_EPOCH = "modelserver_stream_cutover_epoch"  # {topic, partition}, gauge: epoch governing the position
STREAM_PARTITIONS = "modelserver_stream_partitions"  # {topic}, gauge: the input topic's partition count
STREAM_WAITING = "modelserver_stream_waiting"  # gauge: 1 while records wait for the leader's cutovers
# A stream shadow (the candidate scoring into a shadow topic) compares each of its answers with the stable output for
# the same input partition and offset, in the candidate's process; labelled with the candidate's revision.
STREAM_SHADOW_COMPARISONS = "modelserver_stream_shadow_comparisons_total"  # {result: agree | disagree | error}
STREAM_SHADOW_ABS_DIFF = "modelserver_stream_shadow_abs_diff"  # histogram: |stable - shadow| of the record's score
STREAM_SHADOW_UNMATCHED = "modelserver_stream_shadow_unmatched_total"  # {side: shadow | stable}: never met its pair
# modelserver_stream_shadow_unmatched_total's `side`.
SHADOW_SIDE: Final = "shadow"
STABLE_SIDE: Final = "stable"
# The values of modelserver_stream_records_total's `result`: SCORED, then these. `skipped`: out of this consumer's
# key share (another group scores it); `dropped`: invalid with no dead-letter topic (at-least-once only).
DEAD_LETTERED, SKIPPED, DROPPED = "dead_lettered", "skipped", "dropped"
COMMITTED, ABORTED = "committed", "aborted"
ASSIGNED, REVOKED, LOST = "assigned", "revoked", "lost"

# The router (modelserver.routing.metrics), per route.
ROUTER_REQUESTS = "modelrouter_requests_total"  # {route, version, role, code}
ROUTER_UPSTREAM_DURATION = "modelrouter_upstream_duration_seconds"  # {route, version, role}
SHADOW_COMPARISONS = "modelrouter_shadow_comparisons_total"  # {route, result}
SHADOW_ABS_DIFF = "modelrouter_shadow_abs_diff"  # {route}, histogram
ROUTER_WEIGHT = "modelrouter_weight"  # {route, role}
ROUTER_FALLBACKS = "modelrouter_fallbacks_total"  # {route, from, to, reason}: a failed backend's request sent on
# modelrouter_fallbacks_total's `reason`: a 5xx answer, no answer (refused, reset, not HTTP), timeoutSeconds passed,
# the chain's latencyBudgetSeconds passed.
FALLBACK_ERROR: Final = "error"
UNREACHABLE: Final = "unreachable"
FALLBACK_TIMEOUT: Final = "timeout"
FALLBACK_LATENCY_BUDGET: Final = "latency_budget"
FALLBACK_REASONS = (FALLBACK_ERROR, UNREACHABLE, FALLBACK_TIMEOUT, FALLBACK_LATENCY_BUDGET)
ROUTER_ENSEMBLE_ANSWERS = "modelrouter_ensemble_answers_total"  # {route, ensemble, outcome}: one per inference request
ROUTER_ENSEMBLE_MEMBER_FAILURES = "modelrouter_ensemble_member_failures_total"  # {route, ensemble, member, reason}
# modelrouter_ensemble_answers_total's `outcome`: every member combined, the quorum (not every member) combined, or
# no combined answer (too few members answered, or their answers could not be combined).
ENSEMBLE_COMPLETE: Final = "complete"
ENSEMBLE_QUORUM: Final = "quorum"
ENSEMBLE_FAILED: Final = "failed"
# modelrouter_ensemble_member_failures_total's `reason`: FALLBACK_ERROR, UNREACHABLE, FALLBACK_TIMEOUT, or these: the
# member refused the request (4xx), or answered something that is not a JSON answer to combine.
MEMBER_REJECTED: Final = "rejected"
MEMBER_UNREADABLE: Final = "unreadable"

MODEL_LABEL = "model"
VERSION_LABEL = "version"
PROTOCOL_LABEL = "protocol"
# modelserver_requests_total's and modelserver_request_duration_seconds' `protocol`: the Open Inference Protocol v2
# and /predict over REST, the Open Inference Protocol over gRPC. The operator's queries sum over it (a revision is
# judged on all of its traffic), so a new value needs no change there.
PROTOCOL_V2: Final = "v2"
PROTOCOL_PREDICT: Final = "predict"
PROTOCOL_GRPC: Final = "grpc"
# modelserver_requests_total's `code` is an HTTP status for every protocol (a gRPC answer counts under the status its
# error has over REST), so `code!~"2.."` selects the failures of all protocols and error rates need no per-protocol
# query.
ROUTE_LABEL = "route"
# The values of modelrouter_shadow_comparisons_total's (and the stream's) `result`.
AGREE, DISAGREE, ERROR = "agree", "disagree", "error"
# |stable - shadow| has the scale of the model's output: from float noise to large regression values.
ABS_DIFF_BUCKETS: tuple[float, ...] = (
    0, 1e-6, 1e-4, 1e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 100, 1e3, 1e4,
)  # fmt: skip

# 0.5 ms .. 10 s: sub-millisecond tabular models up to slow custom ones, on both sides of the router's hop. A
# latency SLO the sequential judge counts against must be one of these edges, or its count would be a guess.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# A stream record's time from its Kafka timestamp to its batch's commit: a micro-batch's wait and commit (tens of
# ms) up to a consumer minutes behind (lag). An end-to-end SLO must be one of these edges.
STREAM_LATENCY_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
)  # fmt: skip
