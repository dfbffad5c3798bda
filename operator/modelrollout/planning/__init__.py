"""Pure planning: from a ModelDeployment (and what was observed) to the Kubernetes objects it should own.

Nothing here performs I/O itself: `decide.decide_pass` awaits the analysis the reconciler hands it (the one I/O,
injected), and everything else is deterministic in its inputs, so the whole layer is unit-tested.
"""
