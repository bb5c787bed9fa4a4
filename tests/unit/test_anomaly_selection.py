"""Label-free detector selection by synthetic anomalies (dxlab.anomaly.selection)."""

import numpy as np
import pytest

from dxlab.anomaly.selection import KINDS, SelfSupervisedSelector, synthetic_anomalies


def correlated(n=400, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.normal(size=n)
    return np.column_stack([t, 2 * t + 0.05 * rng.normal(size=n), rng.normal(size=n) * 3 + 10])


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_has_the_requested_shape_and_is_finite(kind):
    X = correlated()
    out = synthetic_anomalies(X, kind, 37, np.random.default_rng(1))
    assert out.shape == (37, 3)
    assert np.isfinite(out).all()


def test_global_anomalies_stay_in_the_stretched_box_and_clustered_ones_leave_the_data():
    X = correlated()
    lo, hi = X.min(axis=0), X.max(axis=0)
    glob = synthetic_anomalies(X, "global", 500, np.random.default_rng(2))
    assert (glob >= lo - 0.1 * (hi - lo) - 1e-9).all() and (glob <= hi + 0.1 * (hi - lo) + 1e-9).all()
    assert (glob < lo).any() or (glob > hi).any()  # some beyond the data, as the 10% stretch allows
    clustered = synthetic_anomalies(X, "clustered", 200, np.random.default_rng(2))
    outside = ((clustered < lo) | (clustered > hi)).any(axis=1)
    assert outside.mean() > 0.9


def test_dependency_anomalies_keep_each_feature_but_break_the_relation():
    X = correlated(2000)
    dep = synthetic_anomalies(X, "dependency", 2000, np.random.default_rng(3))
    assert np.corrcoef(X[:, 0], X[:, 1])[0, 1] > 0.99
    assert abs(np.corrcoef(dep[:, 0], dep[:, 1])[0, 1]) < 0.1
    assert abs(dep[:, 2].mean() - X[:, 2].mean()) < 0.3 and abs(dep[:, 2].std() - X[:, 2].std()) < 0.5


def test_local_anomalies_spread_wider_than_the_data():
    X = correlated(1000)
    local = synthetic_anomalies(X, "local", 1000, np.random.default_rng(4))
    assert local[:, 2].std() > 1.5 * X[:, 2].std()


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind must be one of"):
        synthetic_anomalies(correlated(), "sideways", 5, np.random.default_rng(0))


def test_selector_prefers_a_detector_that_sees_broken_relations_and_flags_an_outlier():
    # Only a detector that looks at the joint distribution sees that x1 != 2 x0; ECOD reads each feature alone.
    X = correlated(600)
    selector = SelfSupervisedSelector(candidates=("ecod", "mahalanobis"), top=1, random_state=0).fit(X)
    table = selector.selection_
    assert list(table.columns) == [*KINDS, "mean"]
    assert set(table.index) == {"ecod", "mahalanobis"}
    assert table.loc["mahalanobis", "dependency"] > table.loc["ecod", "dependency"] + 0.2
    assert selector.selected_ == ["mahalanobis"]
    broken = np.array([[1.0, -2.0, 10.0]])  # each value ordinary, the pair impossible
    scores = selector.score_samples(np.vstack([X[:50], broken]))
    assert scores[-1] > scores[:-1].max()


def test_selector_is_deterministic_with_a_seed_and_averages_the_top_detectors():
    X = correlated(300)
    a = SelfSupervisedSelector(candidates=("iforest", "knn", "ecod"), top=2, random_state=5).fit(X)
    b = SelfSupervisedSelector(candidates=("iforest", "knn", "ecod"), top=2, random_state=5).fit(X)
    assert a.selected_ == b.selected_ and len(a.selected_) == 2
    np.testing.assert_allclose(a.score_samples(X[:20]), b.score_samples(X[:20]))
    assert a.selected_ == list(a.selection_.index[:2])
    assert 0.0 < a.predict(X).mean() < 0.15  # the configured 5% rate, from training scores


def test_selector_refuses_top_zero():
    with pytest.raises(ValueError, match="top must be at least 1"):
        SelfSupervisedSelector(top=0).fit(correlated(100))
