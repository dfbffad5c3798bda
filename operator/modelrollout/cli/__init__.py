"""`kubectl modelrollout` (console script `kubectl-modelrollout`): status, list and the rollout verbs.

render.py is pure (a ModelDeployment in, a rich renderable out); kube.py is the only I/O; deliver.py holds the
verb annotation protocol; main.py wires them into typer commands.
"""
