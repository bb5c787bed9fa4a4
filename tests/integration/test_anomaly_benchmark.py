"""`dxlab anomaly-benchmark` on a folder with one small generated .npz file (the entry point is
`dxlab.anomaly.benchmark.main`, which the `dxlab` command line wires to `anomaly-benchmark`)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dxlab.anomaly.benchmark import main, run_benchmark
from dxlab.anomaly.detectors import EnsembleDetector, IsolationForestDetector, KNNDetector

pytestmark = pytest.mark.integration
DETECTORS = {"iforest", "lof", "ocsvm", "knn", "inne", "ecod", "mahalanobis", "autoencoder", "ensemble", "auto"}


def write_tiny_npz(path, n_normal: int = 180, n_anomalies: int = 20, seed: int = 0):
    """Correlated normal rows and anomalies that break the correlation or sit far out."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(4, 4))
    normal = rng.normal(size=(n_normal, 4)) @ mixing
    anomalies = rng.normal(size=(n_anomalies, 4)) * 4 + rng.choice([-6.0, 6.0], size=(n_anomalies, 4))
    X = np.vstack([normal, anomalies])
    y = np.r_[np.zeros(n_normal, dtype=int), np.ones(n_anomalies, dtype=int)]
    order = rng.permutation(len(y))
    np.savez(path, X=X[order], y=y[order])
    return path


def test_benchmark_command_on_one_small_file(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    write_tiny_npz(data / "99_tiny.npz")
    assert main(["--data-dir", str(data), "--out", str(out), "--no-mlflow"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"99_tiny", "mean"}
    assert set(results["99_tiny"]) == DETECTORS and set(results["mean"]) == DETECTORS
    for detector in DETECTORS:
        entry = results["99_tiny"][detector]
        assert set(entry) == {"roc_auc", "pr_auc"} and all(0.0 <= v <= 1.0 for v in entry.values())
        assert results["mean"][detector] == entry  # one dataset: the mean is that dataset
    assert results["99_tiny"]["auto"]["roc_auc"] > 0.9
    details = json.loads((out / "details.json").read_text())
    assert details["seeds"] == [0, 1, 2] and details["datasets"]["99_tiny"]["n_samples"] == 200
    assert len(details["runs"]) == 3 * len(DETECTORS)
    report = (out / "results.md").read_text()
    assert "| 99_tiny | 200 | 4 | 10.0% |" in report and "auto" in report
    explanations = pd.read_csv(out / "explanations" / "99_tiny.csv")
    assert {"iforest_path", "autoencoder_reconstruction"} == set(explanations["method"])
    assert explanations["label"].isin([0, 1]).all()
    for method in ("pca", "tsne"):
        assert (out / "figures" / f"anomaly_99_tiny_{method}.png").stat().st_size > 0
    assert "## ROC-AUC" in capsys.readouterr().out


def test_published_figures_are_set_beside_ours_and_auto_is_compared(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_tiny_npz(data / "3_tiny.npz")
    write_tiny_npz(data / "4_other.npz", seed=1)
    detectors = {"iforest": IsolationForestDetector(), "knn": KNNDetector(),
                 "auto": EnsembleDetector({"iforest": IsolationForestDetector(), "knn": KNNDetector()})}
    results = run_benchmark(data, tmp_path / "out", detectors, seeds=[0, 1], figures=False, explain_top=3,
                            published={"tiny": {"iforest": 80.0, "lof": 70.0}})
    assert list(results) == ["3_tiny", "4_other", "mean"]
    mean = np.mean([results[d]["auto"]["roc_auc"] for d in ("3_tiny", "4_other")])
    assert results["mean"]["auto"]["roc_auc"] == pytest.approx(mean, abs=1e-4)
    report = (tmp_path / "out" / "results.md").read_text()
    assert "published iforest | published lof" in report
    assert "## `auto` against the published Isolation Forest" in report
    auto = 100 * results["3_tiny"]["auto"]["roc_auc"]
    assert f"| 3_tiny | {auto:.1f} |" in report and f"{auto - 80.0:+.1f}" in report
    assert not (tmp_path / "out" / "figures").exists()


def test_the_adbench_protocol_resamples_small_files(tmp_path):
    from dxlab.anomaly.benchmark import split

    X, y = np.arange(200.0).reshape(100, 2), np.r_[np.zeros(90, dtype=int), np.ones(10, dtype=int)]
    X_train, X_test, y_train, y_test = split(X, y, seed=0, protocol="adbench")
    assert len(X_train) + len(X_test) == 1000
    assert X_train.min() == pytest.approx(0.0) and X_train.max() == pytest.approx(1.0)
    X_train, X_test, y_train, y_test = split(X, y, seed=0)
    assert (len(X_train), len(X_test)) == (70, 30) and y_test.sum() == 3


def test_the_adbench_protocol_replays_adbench_random_stream():
    """ADBench seeds NumPy's global generator, resamples with it and lets train_test_split shuffle from it; the
    replay must draw the same rows, or the comparison with its published figures is not on its splits."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import MinMaxScaler

    from dxlab.anomaly.benchmark import split

    rng = np.random.default_rng(5)
    for n in (150, 1200, 10500):
        X, y = rng.normal(size=(n, 3)), (rng.random(n) < 0.1).astype(int)
        for seed in (1, 3):
            np.random.seed(seed)
            Xs, ys = X, y
            if n < 1000 or n > 10000:
                np.random.seed(seed)
                keep = np.random.choice(np.arange(n), 1000 if n < 1000 else 10000, replace=n < 1000)
                Xs, ys = X[keep], y[keep]
            X_train, X_test, y_train, y_test = train_test_split(Xs, ys, test_size=0.3, shuffle=True, stratify=ys)
            scaler = MinMaxScaler().fit(X_train)
            got = split(X, y, seed, protocol="adbench")
            np.testing.assert_allclose(got[0], scaler.transform(X_train))
            np.testing.assert_allclose(got[1], scaler.transform(X_test))
            assert np.array_equal(got[3], y_test)


def test_isolation_forest_draws_as_pyod_after_a_global_seed():
    """ADBench ran PyOD's IForest() after np.random.seed(seed): one stream for the whole fit. The detector seeded
    with the same integer must build the same forest (it reproduces the published figures through this)."""
    from sklearn.ensemble import IsolationForest

    from dxlab.anomaly.detectors import IsolationForestDetector

    X = np.random.default_rng(0).normal(size=(300, 4))
    np.random.seed(2)
    reference = -IsolationForest().fit(X).score_samples(X[:50])
    np.testing.assert_allclose(IsolationForestDetector(random_state=2).fit(X).score_samples(X[:50]), reference)


def test_bad_input_gives_a_clear_error_and_exit_code(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    np.savez(data / "5_broken.npz", X=np.ones((10, 2)))
    assert main(["--data-dir", str(data), "--out", str(tmp_path / "out"), "--no-mlflow"]) == 2
    err = capsys.readouterr().err
    assert "5_broken.npz: no array 'y'" in err
    assert main(["--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "out"), "--no-mlflow"]) == 2
    assert "not a directory" in capsys.readouterr().err
    write_tiny_npz(data / "5_broken.npz")
    assert main(["--data-dir", str(data), "--out", str(tmp_path / "out"), "--no-mlflow",
                 "--detectors", "iforest", "nonsense"]) == 2
    assert "unknown detectors ['nonsense']" in capsys.readouterr().err
