"""Bad input to anomaly detection fails early with a message that names the file (or array) and the problem."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dxlab.anomaly.benchmark import find_datasets, load_dataset, run_benchmark
from dxlab.anomaly.detectors import IsolationForestDetector, KNNDetector, check_matrix
from dxlab.anomaly.patients import PatientAnomalyFeaturizer, inject_anomalies


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _good(n=40, d=3, n_anomalies=6):
    rng = np.random.default_rng(0)
    y = np.zeros(n, dtype=int)
    y[:n_anomalies] = 1
    return rng.normal(size=(n, d)), y


def test_a_good_file_loads(tmp_path):
    X, y = _good()
    data = load_dataset(_npz(tmp_path / "7_tiny.npz", X=X, y=y))
    assert data.name == "7_tiny" and data.key == "tiny" and data.X.shape == (40, 3) and data.y.sum() == 6


@pytest.mark.parametrize(("arrays", "message"), [
    ({"X": _good()[0]}, r"no array 'y' \(found \['X'\]\)"),
    ({"y": _good()[1]}, r"no array 'X'"),
    ({"X": _good()[0][:, 0], "y": _good()[1]}, r"X must be 2-D .* got shape \(40,\)"),
    ({"X": _good()[0], "y": _good()[1][:30]}, r"X has 40 rows but y has 30 labels"),
    ({"X": _good()[0], "y": np.zeros((40, 2))}, r"y must be 1-D"),
    ({"X": np.where(np.arange(120).reshape(40, 3) == 7, np.nan, 1.0), "y": _good()[1]},
     r"X contains 1 NaN and 0 infinite values in 1 rows \(first rows \[2\]\)"),
    ({"X": np.full((40, 3), np.inf), "y": _good()[1]}, r"infinite values"),
    ({"X": _good()[0], "y": np.arange(40) % 3}, r"y must hold only 0 \(normal\) and 1 \(anomaly\), found \[2.0\]"),
    ({"X": _good()[0], "y": np.r_[1, np.zeros(39, dtype=int)]}, r"at least 2 anomalies .* found 1 anomalies"),
    ({"X": np.array([["a"] * 3] * 40), "y": _good()[1]}, r"X must be numeric"),
    ({"X": np.zeros((0, 3)), "y": np.zeros(0)}, r"X is empty"),
])
def test_bad_files_name_the_file_and_the_problem(tmp_path, arrays, message):
    path = _npz(tmp_path / "broken.npz", **arrays)
    with pytest.raises(ValueError, match=message) as err:
        load_dataset(path)
    assert str(path) in str(err.value)


def test_unreadable_and_missing_files(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(ValueError, match="junk.npz: not a readable .npz file"):
        load_dataset(junk)
    with pytest.raises(ValueError, match="not a directory"):
        find_datasets(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .npz files"):
        find_datasets(tmp_path / "empty")


def test_the_benchmark_checks_every_file_before_running(tmp_path):
    X, y = _good()
    _npz(tmp_path / "1_fine.npz", X=X, y=y)
    _npz(tmp_path / "2_broken.npz", X=X)
    with pytest.raises(ValueError, match="2_broken.npz: no array 'y'"):
        run_benchmark(tmp_path, tmp_path / "out", {"iforest": IsolationForestDetector()}, seeds=[0], figures=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("X", "message"), [
    (np.array([[1.0, np.nan], [2.0, 3.0], [0.0, 1.0]]), r"X contains 1 NaN and 0 infinite values in 1 rows"),
    (np.ones(5), r"X must be 2-D \(samples x features\), got shape \(5,\)"),
    (np.ones((4, 0)), r"X has no features"),
    (pd.DataFrame({"age": [1.0, 2.0], "sex": ["F", "M"]}), r"non-numeric columns \['sex'\]"),
])
def test_detectors_reject_bad_matrices(X, message):
    with pytest.raises(ValueError, match=message):
        KNNDetector().fit(X)


def test_detectors_reject_a_different_feature_count_and_unfitted_use():
    from sklearn.exceptions import NotFittedError

    X = np.random.default_rng(0).normal(size=(50, 3))
    with pytest.raises(NotFittedError):
        IsolationForestDetector().score_samples(X)
    model = IsolationForestDetector(random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 2 features, but the detector was fitted on 3"):
        model.score_samples(X[:, :2])
    with pytest.raises(ValueError, match="1 samples, at least 2"):
        KNNDetector().fit(X[:1])
    assert check_matrix([[1, 2], [3, 4]]).dtype == np.float64


def test_patient_inputs_must_be_canonical():
    with pytest.raises(TypeError, match="canonical patient table"):
        PatientAnomalyFeaturizer(vocabulary="codes").fit(np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"lacks canonical columns \['findings'"):
        PatientAnomalyFeaturizer(vocabulary="codes").fit(pd.DataFrame({"age": [1.0], "sex": ["F"],
                                                                      "family_history": [0.0]}))
    table = pd.DataFrame({"age": [30.0], "sex": ["F"], "family_history": [0.0], "findings": [["A"]],
                          "excluded": [[]], "history": [[]], "measurements": [{}]})
    with pytest.raises(ValueError, match="unknown anomaly kinds"):
        inject_anomalies(table, 0.5, np.random.default_rng(0), kinds=["typo"])
    with pytest.raises(ValueError, match=r"rate must lie in \[0, 1\]"):
        inject_anomalies(table, 1.5, np.random.default_rng(0))
