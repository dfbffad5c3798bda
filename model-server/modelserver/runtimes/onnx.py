"""ONNX Runtime: one 2-D float input (rows x features) or one [N, 1] input per feature.

A single output is a regressor; a label output plus a probability output (tensor or ZipMap) is a classifier,
whose class labels are read from the graph's classifier node so probabilities keep their meaning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime

from modelserver.runtimes.base import (
    Array,
    LoadOptions,
    Model,
    Prediction,
    SignedModel,
    derive_signature,
    require_file,
)

_DTYPES: dict[str, np.dtype[Any]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
}
_CLASSIFIER_OPS = {"LinearClassifier", "TreeEnsembleClassifier", "SVMClassifier", "ZipMap"}


class OnnxModel(SignedModel):
    def __init__(self, session: onnxruntime.InferenceSession, graph: onnx.ModelProto, options: LoadOptions):
        inputs = session.get_inputs()
        dtypes = {i.type for i in inputs}
        if len(dtypes) != 1 or not dtypes <= _DTYPES.keys():
            raise ValueError(f"inputs must all be float or all double tensors, got {sorted(dtypes)}")
        inputs_dtype = _DTYPES[dtypes.pop()]
        self._session = session
        self._input_names = [i.name for i in inputs]
        self._per_feature = len(inputs) > 1
        if self._per_feature:
            derived: tuple[str, ...] | None = tuple(self._input_names)
            width: int | None = len(inputs)
        else:
            shape = inputs[0].shape
            if len(shape) != 2:
                raise ValueError(f"input {inputs[0].name!r} has shape {shape}; expected [rows, features]")
            derived, width = None, shape[1] if isinstance(shape[1], int) else None
        outputs = session.get_outputs()
        self._output_names = [o.name for o in outputs]
        classes = _class_labels(graph) if len(outputs) >= 2 else None
        if len(outputs) >= 2 and classes is None:
            raise ValueError("a two-output model (label, probabilities) needs a classifier node with class labels")
        self._signature = derive_signature(
            names=derived, width=width, options=options, dtype=inputs_dtype, classes=classes
        )

    def predict(self, x: Array) -> Prediction:
        if self._per_feature:
            feed = {name: x[:, i : i + 1] for i, name in enumerate(self._input_names)}
        else:
            feed = {self._input_names[0]: x}
        results = self._session.run(self._output_names, feed)
        first = np.asarray(results[0]).reshape(len(x))
        classes = self._signature.classes
        if classes is None:
            return Prediction(first)
        return Prediction(first, _probability_matrix(results[1], classes))


def _probability_matrix(raw: Any, classes: tuple[Any, ...]) -> Array:
    if isinstance(raw, list):  # ZipMap: one {class: probability} per row
        return np.array([[row[c] for c in classes] for row in raw], dtype=np.float64)
    return np.asarray(raw)


def _class_labels(graph: onnx.ModelProto) -> tuple[Any, ...] | None:
    for node in graph.graph.node:
        if node.op_type not in _CLASSIFIER_OPS:
            continue
        for attribute in node.attribute:
            if attribute.name in {"classlabels_ints", "classlabels_int64s"} and attribute.ints:
                return tuple(int(v) for v in attribute.ints)
            if attribute.name == "classlabels_strings" and attribute.strings:
                return tuple(v.decode() for v in attribute.strings)
    return None


def load(path: Path | None, options: LoadOptions) -> Model:
    path = require_file(path, "onnx")
    graph = onnx.load(str(path), load_external_data=False)
    session_options = onnxruntime.SessionOptions()
    session_options.intra_op_num_threads = options.threads
    session_options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), sess_options=session_options, providers=["CPUExecutionProvider"])
    return OnnxModel(session, graph, options)
