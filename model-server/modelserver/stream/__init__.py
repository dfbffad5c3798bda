"""`modelserver stream`: a Kafka consumer scoring each record of an input topic into an output topic, exactly once
by default (a transaction per micro-batch), the records it cannot score into a dead-letter topic.

- `settings`: what a consumer is told (StreamSettings: the model's settings, the topics, the group, delivery, Kafka
  security, the key share); `clients`: the librdkafka configurations it derives and how an error is classified.
- `records`: a micro-batch's values decoded and checked into one feature matrix (and why each bad one is bad);
  `shares`: which records are this consumer's (the key buckets of modelrollout_contract.sticky).
- `scoring`: the model on the valid records, in one call, and each prediction's output value; `outgoing`: the
  output and dead-letter messages (keys, values, headers); `pipeline`: one micro-batch, consumed to produced.
- `rebalance`: the group's assignment (cooperative incremental assign/unassign), readiness; `delivery`: how a
  batch is committed (exactly-once transactions, or at-least-once produce-flush-commit) and what a failure does;
  `metrics`: the series and the /metrics and /ready endpoints; `run`: the loop, signals, exit codes.
- `cutover` (pure) and `coordination` (I/O): a rollout's shares with exact cutovers (modelrollout_contract.stream).
- `shadow` (pure) and `comparing` (I/O): a shadowing candidate's answers compared with the stable outputs.
"""
