"""Access to the Kubernetes API server: the only package that performs cluster I/O."""

from modelrollout.kube.client import KubeClient

__all__ = ["KubeClient"]
