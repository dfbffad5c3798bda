"""Each runtime loads a model trained here, derives its signature, and predicts what the library predicts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xgboost

from modelserver.errors import ModelLoadError
from modelserver.runtimes import LoadOptions, Model, load_model, resolve_format
from tests.unit.modelserver import builders


def _load(path: Path, fmt: str = "auto", feature_names: tuple[str, ...] | None = None) -> Model:
    resolved, model_format = resolve_format(path, fmt)
    return load_model(resolved, model_format, LoadOptions(feature_names=feature_names))


def test_sklearn_classifier_matches_estimator(logistic: builders.Built) -> None:
    model = _load(logistic.path)
    sig = model.signature
    assert (sig.n_features, sig.task, sig.classes, sig.dtype) == (20, "classification", (0, 1), np.float64)
    assert sig.feature_names[:3] == ("f0", "f1", "f2")
    prediction = model.predict(logistic.x[:50])
    np.testing.assert_allclose(prediction.probabilities, logistic.estimator.predict_proba(logistic.x[:50]))
    np.testing.assert_array_equal(prediction.values, logistic.estimator.predict(logistic.x[:50]))


def test_sklearn_string_labels_and_regression(iris: builders.Built, regressor: builders.Built) -> None:
    classifier = _load(iris.path)
    assert classifier.signature.classes == ("setosa", "versicolor", "virginica")
    x = iris.x.astype(classifier.signature.dtype)  # the forest takes float32, as sklearn casts to
    np.testing.assert_array_equal(classifier.predict(x).values, iris.estimator.predict(iris.x))
    model = _load(regressor.path)
    assert model.signature.task == "regression"
    assert model.signature.classes is None
    np.testing.assert_allclose(model.predict(regressor.x[:10]).values, regressor.estimator.predict(regressor.x[:10]))


@pytest.mark.parametrize("zipmap", [False, True])
def test_onnx_classifier_reads_class_labels(tmp_path: Path, zipmap: bool) -> None:
    built = builders.onnx_logistic(tmp_path, zipmap=zipmap)
    model = _load(built.path)
    sig = model.signature
    assert (sig.n_features, sig.classes, sig.dtype) == (20, (0, 1), np.float32)
    x = built.x[:40].astype(np.float32)
    prediction = model.predict(x)
    np.testing.assert_allclose(prediction.probabilities, built.estimator.predict_proba(x), atol=1e-5)
    np.testing.assert_array_equal(prediction.values, built.estimator.predict(x))


def test_onnx_regressor(model_dir: Path) -> None:
    built = builders.onnx_regressor(model_dir)
    model = _load(built.path)
    assert model.signature.task == "regression"
    x = built.x[:10].astype(np.float32)
    np.testing.assert_allclose(model.predict(x).values, built.estimator.predict(x), rtol=1e-4)


def test_xgboost_binary_and_multiclass(model_dir: Path) -> None:
    binary = builders.xgboost_binary(model_dir)
    model = _load(binary.path)
    assert model.signature.feature_names[:2] == ("x0", "x1")
    assert model.signature.classes == (0, 1)
    x = binary.x[:30].astype(np.float32)
    expected = binary.estimator.predict(xgboost.DMatrix(x, feature_names=list(model.signature.feature_names)))
    np.testing.assert_allclose(model.predict(x).probabilities[:, 1], expected, rtol=1e-6)  # type: ignore[index]

    multi = builders.xgboost_multiclass(model_dir)
    model = _load(multi.path)
    assert model.signature.classes == (0, 1, 2)
    assert model.signature.n_features == 4
    x = multi.x.astype(np.float32)
    expected = multi.estimator.predict(xgboost.DMatrix(x))
    np.testing.assert_allclose(model.predict(x).probabilities, expected, rtol=1e-6)
    np.testing.assert_array_equal(model.predict(x).values, expected.argmax(axis=1))


def test_lightgbm_binary_and_regression(model_dir: Path) -> None:
    binary = builders.lightgbm_binary(model_dir)
    model = _load(binary.path)
    assert model.signature.feature_names[:2] == ("col_0", "col_1")
    assert model.signature.classes == (0, 1)
    np.testing.assert_allclose(
        model.predict(binary.x[:30]).probabilities[:, 1],  # type: ignore[index]
        binary.estimator.predict(binary.x[:30]),
    )
    regressor = builders.lightgbm_regressor(model_dir)
    model = _load(regressor.path)
    assert model.signature.task == "regression"
    assert model.signature.n_features == 10
    np.testing.assert_allclose(model.predict(regressor.x[:5]).values, regressor.estimator.predict(regressor.x[:5]))


def test_custom_class_by_import_path(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(builders.custom_module(model_dir)))
    config = model_dir / "limit.json"
    config.write_text(json.dumps({"limit": 3.0}))
    model = load_model(config, "custom", LoadOptions(model_class=f"{builders.CUSTOM_MODULE}:Thresholder"))
    assert model.signature.feature_names == ("a", "b")
    assert model.signature.classes == ("low", "high")
    prediction = model.predict(np.array([[0.0, 0.0], [10.0, 10.0]]))
    assert prediction.values.tolist() == ["low", "high"]


def test_feature_name_override_must_match_width(logistic: builders.Built) -> None:
    names = tuple(f"n{i}" for i in range(20))
    assert _load(logistic.path, feature_names=names).signature.feature_names == names
    with pytest.raises(ModelLoadError, match="lists 3 names but the model takes 20"):
        _load(logistic.path, feature_names=("a", "b", "c"))


def test_load_errors_say_what_went_wrong(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    garbage = model_dir / "garbage.joblib"
    garbage.write_bytes(b"not a pickle")
    with pytest.raises(ModelLoadError, match="cannot load sklearn model"):
        _load(garbage)
    unknown = model_dir / "model.bin"
    unknown.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="cannot tell the model format"):
        _load(unknown)
    monkeypatch.syspath_prepend(str(builders.custom_module(model_dir)))
    with pytest.raises(ModelLoadError, match="this model cannot be built"):
        load_model(None, "custom", LoadOptions(model_class=f"{builders.CUSTOM_MODULE}:Broken"))
    with pytest.raises(ModelLoadError, match="cannot import"):
        load_model(None, "custom", LoadOptions(model_class="no_such_module_here:Model"))


def test_directory_must_hold_one_model(model_dir: Path, logistic: builders.Built) -> None:
    single = model_dir / "single"
    single.mkdir(exist_ok=True)
    builders.sklearn_logistic(single)
    assert resolve_format(single, "auto") == (single / "model.joblib", "sklearn")
    builders.sklearn_regressor(single)
    with pytest.raises(ModelLoadError, match="holds 2 model files"):
        resolve_format(single, "auto")
