"""The threshold judge: fixed absolute and stable-relative bounds on one window (analysis.evaluate)."""

from modelrollout.analysis.evaluate import evaluate_metric, run_verdict

__all__ = ["evaluate_metric", "run_verdict"]
