"""Detectors: sklearn conventions, an obvious outlier ranks first, the threshold rule flags about the rate on clean
data, the autoencoder is deterministic, and attributions point at the feature that was perturbed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import (
    check_dont_overwrite_parameters,
    check_fit_idempotent,
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
)

from dxlab.anomaly.detectors import (
    DETECTORS,
    AutoencoderDetector,
    EnsembleDetector,
    IsolationForestDetector,
    make_detector,
    threshold_from_scores,
)
from dxlab.anomaly.explain import attributions, explain_top

NAMES = sorted(DETECTORS)


def _fast(name: str, **params):
    """Detectors with settings that keep the tests quick (the autoencoder trains for fewer epochs)."""
    if name == "autoencoder":
        params = {"max_epochs": 30, **params}
    if name == "ensemble":
        params = {"detectors": {"iforest": make_detector("iforest"), "knn": make_detector("knn"),
                                "autoencoder": AutoencoderDetector(max_epochs=30)}, **params}
    return make_detector(name, **params)


@pytest.fixture(scope="module")
def gaussian():
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(4, 4))
    return lambda n: rng.normal(size=(n, 4)) @ mixing


def _obvious_outlier(X: np.ndarray) -> np.ndarray:
    """Six standard deviations out in every feature, with the signs that break the features' correlations most
    (so it is both extreme for tree and distance methods and off the data's subspace for reconstruction)."""
    import itertools

    centre, spread = X.mean(axis=0), X.std(axis=0)
    _, _, vt = np.linalg.svd((X - centre) / spread, full_matrices=False)
    minor = vt[-2:]  # the two directions the data barely varies in

    def off_plane(signs):
        return np.linalg.norm(minor @ np.asarray(signs))

    signs = max(itertools.product((-1.0, 1.0), repeat=X.shape[1]), key=off_plane)
    return centre + 6 * spread * np.asarray(signs)


@pytest.mark.parametrize("name", NAMES)
def test_obvious_outlier_ranks_above_every_inlier(name, gaussian):
    X_train, inliers = gaussian(400), gaussian(200)
    outlier = _obvious_outlier(X_train)
    model = _fast(name, random_state=0) if "random_state" in _fast(name).get_params() else _fast(name)
    scores = model.fit(X_train).score_samples(np.vstack([outlier[None, :], inliers]))
    assert scores[0] > scores[1:].max()
    assert model.predict(outlier[None, :])[0] == 1


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("rule", "rate", "expected"), [("contamination", 0.05, 0.05), ("quantile", 0.9, 0.1)])
def test_threshold_flags_about_the_configured_rate_on_clean_data(name, rule, rate, expected, gaussian):
    model = _fast(name, threshold=rule, rate=rate).fit(gaussian(2000))
    flagged = model.predict(gaussian(4000)).mean()
    assert abs(flagged - expected) < 0.4 * expected, f"{name}: flagged {flagged:.3f}, expected about {expected}"
    assert model.threshold_ == pytest.approx(np.quantile(model.train_scores_, 1 - expected))


def test_threshold_rules_agree_and_reject_bad_rates():
    scores = np.arange(100.0)
    assert threshold_from_scores(scores, "contamination", 0.1) == threshold_from_scores(scores, "quantile", 0.9)
    with pytest.raises(ValueError, match="threshold must be one of"):
        threshold_from_scores(scores, "top-k", 0.1)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        threshold_from_scores(scores, "quantile", 1.5)
    with pytest.raises(ValueError, match="did you mean threshold='quantile'"):
        threshold_from_scores(scores, "contamination", 0.9)


@pytest.mark.parametrize("name", NAMES)
def test_sklearn_conventions(name):
    estimator = _fast(name)
    check_no_attributes_set_in_init(name, estimator)
    check_get_params_invariance(name, estimator)
    check_dont_overwrite_parameters(name, clone(estimator))
    check_fit_idempotent(name, clone(estimator))
    if name != "ensemble":  # its default members are built from names, which the default check cannot see
        check_parameters_default_constructible(name, estimator)
    X = np.random.default_rng(1).normal(size=(60, 3))
    fitted = clone(estimator)
    assert fitted.fit(X) is fitted
    assert fitted.n_features_in_ == 3 and fitted.train_scores_.shape == (60,)
    assert all(not k.endswith("_") for k in vars(estimator)), "__init__ must only store its arguments"


def test_autoencoder_is_deterministic_for_a_seed_and_stops_early(gaussian):
    X = gaussian(600)
    first = AutoencoderDetector(random_state=3, max_epochs=200, patience=3).fit(X).score_samples(X[:50])
    again = AutoencoderDetector(random_state=3, max_epochs=200, patience=3).fit(X)
    other = AutoencoderDetector(random_state=4, max_epochs=200, patience=3).fit(X).score_samples(X[:50])
    np.testing.assert_array_equal(first, again.score_samples(X[:50]))
    assert not np.array_equal(first, other)
    assert again.n_epochs_ < 200 and again.latent_size_ == 2  # capped at half the features
    import torch

    assert not torch.are_deterministic_algorithms_enabled()  # the global setting is restored after fitting


def test_ensemble_normalises_members_and_accepts_dataframes(gaussian):
    X = pd.DataFrame(gaussian(300), columns=list("abcd"))
    for normalisation in ("zscore", "rank"):
        model = EnsembleDetector(["iforest", "knn", "ecod"], normalisation=normalisation, random_state=0).fit(X)
        members = model.member_scores(X.iloc[:10])
        assert list(members.columns) == ["iforest", "knn", "ecod"]
        np.testing.assert_allclose(members.mean(axis=1), model.score_samples(X.iloc[:10]))
    assert list(model.feature_names_in_) == list("abcd")
    with pytest.raises(ValueError, match="normalisation"):
        EnsembleDetector(normalisation="minmax").fit(X)


@pytest.mark.parametrize("name", ["iforest", "autoencoder", "ecod", "knn", "ensemble"])
def test_attributions_point_at_the_perturbed_feature(name, gaussian):
    X = np.random.default_rng(5).normal(size=(500, 5))
    model = _fast(name).fit(X)
    rows = np.zeros((2, 5))
    rows[0, 2] = 9.0
    rows[1, 4] = -9.0
    shares = attributions(model, rows, reference=X)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    assert shares[0].argmax() == 2 and shares[1].argmax() == 4


def test_explain_top_lists_the_highest_scores_with_their_features():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 3))
    X[7, 1] = 12.0
    model = IsolationForestDetector(random_state=0).fit(X)
    table = explain_top(model, X, feature_names=["age", "height", "weight"], top=5, n_features=2, reference=X,
                        explainers={"iforest": model, "autoencoder": AutoencoderDetector(max_epochs=20).fit(X)})
    assert len(table) == 5 * 2 * 2
    first = table[(table["rank"] == 1) & (table["method"] == "iforest")]
    assert first["row"].iloc[0] == 7 and first["feature"].iloc[0] == "height"
    assert table.groupby(["method", "rank"])["score"].nunique().eq(1).all()


def test_inne_scores_follow_the_nearest_neighbour_balls():
    """Rows 0, 1, 3 all drawn: radii 1, 1, 2; the ball of 3 scores 1 - 1/2 (its neighbour 1 has radius 1)."""
    from dxlab.anomaly.detectors import INNEDetector

    rows = np.array([[0.0], [1.0], [3.0]])
    model = INNEDetector(n_estimators=1, max_samples=3, scale=False, random_state=0).fit(rows)
    scores = model.score_samples(np.array([[2.5], [0.5], [10.0]]))
    np.testing.assert_allclose(scores, [0.5, 0.0, 1.0])  # inside 3's ball only; inside 0's and 1's; in no ball


@pytest.mark.parametrize("max_features", [1.0, 0.5])
def test_packed_forest_scores_as_scikit_learn(max_features):
    """The isolation forest is scored by walking every tree at once (PackedForest): the numbers must be the
    forest's own, with and without feature subsampling, for one row and for many (chunked)."""
    from dxlab.anomaly.detectors import IsolationForestDetector, PackedForest

    rng = np.random.default_rng(3)
    X = rng.normal(size=(800, 9))
    X[:, 2] = np.round(X[:, 2])  # ties at thresholds
    det = IsolationForestDetector(n_estimators=40, max_features=max_features, random_state=0).fit(X)
    new = np.vstack([rng.normal(size=(300, 9)) * 3, X[:20]])
    expected = -det.forest_.score_samples(new)
    assert np.allclose(det.score_samples(new), expected, rtol=0, atol=1e-12)
    assert np.allclose(det.score_samples(new[:1]), expected[:1], rtol=0, atol=1e-12)
    assert np.allclose(PackedForest(det.forest_, chunk_rows=7).score(new), expected, rtol=0, atol=1e-12)
    import pickle

    det.score_samples(new[:1])
    assert "packed_" not in pickle.loads(pickle.dumps(det)).__dict__  # derived state is not saved


def test_knn_scores_a_few_rows_as_the_tree_does(gaussian):
    """The few-rows path (exact distances to every training row) gives the tree's numbers."""
    from dxlab.anomaly.detectors import KNNDetector

    det = KNNDetector(n_neighbors=5).fit(gaussian(300))
    new = gaussian(20) * 2
    many = det.score_samples(new)  # 20 rows: the tree
    few = np.concatenate([det.score_samples(new[i:i + 2]) for i in range(0, 20, 2)])
    assert np.allclose(few, many, rtol=1e-12, atol=1e-12)
