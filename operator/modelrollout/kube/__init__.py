"""The operator's access to the Kubernetes API server (the kubectl plugin has its own, `cli/kube.py`), the table of
kinds it touches, and the traffic routers wired to it."""

from modelrollout.kube.client import KubeClient

__all__ = ["KubeClient"]
