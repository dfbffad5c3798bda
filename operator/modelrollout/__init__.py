"""ModelRollout: a Kubernetes operator that serves, scores and progressively rolls out ML models."""

__version__ = "0.1.0"
