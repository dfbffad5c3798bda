"""Pure planning: from a ModelDeployment (and what was observed) to the Kubernetes objects it should own.

Nothing here performs I/O; every function is deterministic in its inputs, so the whole layer is unit-tested.
"""
