"""What the ModelRollout operator and its model server agree on, written once: the routing document the operator
writes and the router reads (`router`), metric and label names and histogram buckets (`metrics`), how a user's
key picks a variant (`sticky`), the Open Inference Protocol datatypes (`datatypes`), and what a batch run tells
the operator when it ends and what its manifest records (`batch`).

Both distributions depend on this one, which depends on pydantic only. `vectors/` beside the package holds
documents both sides must accept, and documents both must refuse.
"""
