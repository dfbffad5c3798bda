"""modelserver: the runtime the ModelRollout operator's pods run."""

__version__ = "0.1.0"
