"""Runtimes behind one load/predict contract; each is imported only when its format is asked for."""

from __future__ import annotations

import importlib
from pathlib import Path

from modelserver.errors import ModelLoadError
from modelserver.runtimes.base import Loader, LoadOptions, Model, Prediction, Signature

__all__ = ["LoadOptions", "Model", "Prediction", "Signature", "import_runtime", "load_model", "resolve_format"]

_RUNTIMES = {
    "sklearn": "modelserver.runtimes.sklearn",
    "onnx": "modelserver.runtimes.onnx",
    "xgboost": "modelserver.runtimes.xgboost",
    "lightgbm": "modelserver.runtimes.lightgbm",
    "custom": "modelserver.runtimes.custom",
}
_SUFFIXES = {
    ".joblib": "sklearn",
    ".pkl": "sklearn",
    ".pickle": "sklearn",
    ".onnx": "onnx",
    ".ubj": "xgboost",
    ".json": "xgboost",
    ".bst": "xgboost",
    ".xgb": "xgboost",
    ".txt": "lightgbm",
    ".lgb": "lightgbm",
}
_EXTRAS = {"onnx": "onnx", "xgboost": "xgboost", "lightgbm": "lightgbm"}


def detect_format(path: Path) -> str:
    if path.suffix.lower() in _SUFFIXES:
        return _SUFFIXES[path.suffix.lower()]
    raise ModelLoadError(
        f"cannot tell the model format of {path.name!r} from its suffix "
        f"(known: {', '.join(sorted(_SUFFIXES))}); set MODELSERVER_MODEL_FORMAT"
    )


def model_file(path: Path) -> Path:
    """A directory (e.g. a fetched s3 prefix) must hold exactly one file with a known model suffix."""
    if not path.is_dir():
        return path
    found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _SUFFIXES)
    if len(found) != 1:
        raise ModelLoadError(f"{path} holds {len(found)} model files ({[p.name for p in found]}); expected one")
    return found[0]


def resolve_format(path: Path | None, model_format: str) -> tuple[Path | None, str]:
    """The model file to load (a directory is searched for one) and its format ('auto' detects it)."""
    if path is not None and model_format != "custom":
        path = model_file(path)
    if model_format == "auto":
        if path is None:
            raise ModelLoadError("no model file to detect a format from")
        model_format = detect_format(path)
    return path, model_format


def import_runtime(model_format: str) -> Loader:
    """The loader of the runtime for `model_format` (imported on first use); ModelLoadError when not installed."""
    try:
        module = importlib.import_module(_RUNTIMES[model_format])
    except ImportError as exc:
        extra = _EXTRAS.get(model_format, "all")
        raise ModelLoadError(
            f"the {model_format} runtime is not installed ({exc}); install modelserver[{extra}]"
        ) from exc
    loader: Loader = module.load
    return loader


def load_model(path: Path | None, model_format: str, options: LoadOptions) -> Model:
    """Load with the runtime for `model_format` (already resolved, see resolve_format)."""
    loader = import_runtime(model_format)
    try:
        return loader(path, options)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load {model_format} model from {path}: {exc}") from exc
