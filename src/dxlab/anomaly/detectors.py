"""Unsupervised anomaly detectors with one interface: ``fit(X)``, ``score_samples(X)`` (higher = more anomalous),
``predict(X)`` (1 = anomaly, 0 = normal, as the labels of the benchmarks).

Note the sign: scikit-learn's own outlier detectors score *normality* (higher = more normal) and predict -1 for
outliers; here every score is an anomaly score and flags are 0/1, so that scores from different detectors can be
normalised, averaged and compared with 0/1 labels without sign juggling.

Every detector chooses its flag threshold from its own *training* scores, never from labels:

- ``threshold="contamination"``: ``rate`` is the expected share of anomalies; the threshold is the
  ``1 - rate`` quantile of the training scores (scikit-learn's ``contamination``);
- ``threshold="quantile"``: ``rate`` is the quantile itself (0.99: about 1% of clean records are flagged).

Training scores are out-of-sample where the method allows it (kNN and LOF leave the point itself out, the
empirical-CDF detector counts the point as a new one), so the flagged share on new clean data stays near the rate.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM
from sklearn.utils.validation import check_is_fitted

THRESHOLD_RULES = ("contamination", "quantile")


# -- input checks and thresholds -------------------------------------------------------------------------------
def check_matrix(X, what: str = "X", n_features: int | None = None, min_samples: int = 1) -> np.ndarray:
    """A finite 2-D float array, or a ValueError that says what is wrong (shape, NaN rows, feature count)."""
    if sparse.issparse(X):
        X = X.toarray()
    if isinstance(X, pd.DataFrame):
        non_numeric = [c for c, t in X.dtypes.items() if not (pd.api.types.is_numeric_dtype(t)
                                                              or pd.api.types.is_bool_dtype(t))]
        if non_numeric:
            raise ValueError(f"{what} has non-numeric columns {non_numeric[:5]}: encode them first")
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be a numeric array: {err}") from None
    if arr.ndim != 2:
        raise ValueError(f"{what} must be 2-D (samples x features), got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{what} has no features (shape {arr.shape})")
    if arr.shape[0] < min_samples:
        raise ValueError(f"{what} has {arr.shape[0]} samples, at least {min_samples} are needed")
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        n_nan, n_inf = int(np.isnan(arr).sum()), int(np.isinf(arr).sum())
        raise ValueError(f"{what} contains {n_nan} NaN and {n_inf} infinite values in {len(rows)} rows "
                         f"(first rows {rows[:5].tolist()}): impute or drop them before anomaly detection")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{what} has {arr.shape[1]} features, but the detector was fitted on {n_features}")
    return arr


def check_threshold_rule(threshold: str, rate: float) -> None:
    if threshold not in THRESHOLD_RULES:
        raise ValueError(f"threshold must be one of {THRESHOLD_RULES}, got {threshold!r}")
    if not 0.0 < float(rate) < 1.0:
        raise ValueError(f"rate must lie strictly between 0 and 1, got {rate!r}")
    if threshold == "contamination" and rate > 0.5:
        raise ValueError(f"a contamination rate above 0.5 ({rate}) would flag most records: did you mean "
                         "threshold='quantile'?")


def threshold_from_scores(scores: np.ndarray, threshold: str = "contamination", rate: float = 0.05) -> float:
    """The flag threshold from training scores alone (see the module docstring for the two rules)."""
    check_threshold_rule(threshold, rate)
    level = 1.0 - rate if threshold == "contamination" else rate
    return float(np.quantile(np.asarray(scores, dtype=float), level))


class BaseDetector(BaseEstimator):
    """Shared fit / score / flag logic; subclasses implement ``_fit`` (returning training scores) and ``_score``."""

    _min_samples = 2

    def fit(self, X, y=None):
        """Fit on unlabelled rows (``y`` is ignored: the detectors are unsupervised)."""
        check_threshold_rule(self.threshold, self.rate)
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        X = check_matrix(X, "X", min_samples=self._min_samples)
        self.n_features_in_ = X.shape[1]
        self.train_scores_ = np.asarray(self._fit(X), dtype=float)
        self.threshold_ = threshold_from_scores(self.train_scores_, self.threshold, self.rate)
        return self

    def score_samples(self, X) -> np.ndarray:
        """Anomaly score per row: higher = more anomalous."""
        check_is_fitted(self, "threshold_")
        return np.asarray(self._score(check_matrix(X, "X", n_features=self.n_features_in_)), dtype=float)

    def decision_function(self, X) -> np.ndarray:
        """Score minus threshold: positive = flagged."""
        return self.score_samples(X) - self.threshold_

    def predict(self, X) -> np.ndarray:
        """1 for rows scoring above the threshold, else 0."""
        return (self.score_samples(X) > self.threshold_).astype(int)

    def fit_predict(self, X, y=None) -> np.ndarray:
        return self.fit(X).predict(X)

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        return self.scaler_.transform(X) if getattr(self, "scaler_", None) is not None else X

    def _fit_scaler(self, X: np.ndarray) -> np.ndarray:
        self.scaler_ = StandardScaler().fit(X) if getattr(self, "scale", False) else None
        return self._scaled(X)

    def _fit(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _score(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


# -- classic detectors -----------------------------------------------------------------------------------------
class IsolationForestDetector(BaseDetector):
    """Isolation Forest (Liu et al. 2008): the score is the forest's anomaly score s(x) in (0, 1)."""

    def __init__(self, n_estimators: int = 100, max_samples="auto", max_features: float = 1.0,
                 random_state: int | None = None, n_jobs: int | None = None, threshold: str = "contamination",
                 rate: float = 0.05):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_features = max_features
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.threshold = threshold
        self.rate = rate

    def _fit(self, X):
        # One stream for the whole fit, as PyOD's IForest draws after np.random.seed(seed) (ADBench's runs): an
        # integer would restart the stream between drawing the bagging seeds and the forest's own draws.
        seeded = self.random_state
        if isinstance(seeded, (int, np.integer)):
            seeded = np.random.RandomState(seeded)
        self.forest_ = IsolationForest(n_estimators=self.n_estimators, max_samples=self.max_samples,
                                       max_features=self.max_features, random_state=seeded, n_jobs=self.n_jobs).fit(X)
        return self._out_of_bag_scores(X)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("packed_", None)  # derived from forest_ at first use
        return state

    def _score(self, X):
        """The forest's score of each row, every tree walked at once (`PackedForest`): the same numbers as
        ``-IsolationForest.score_samples`` without its per-tree Python dispatch (~17 ms for one patient)."""
        packed = getattr(self, "packed_", None)
        if packed is None or packed.forest is not self.forest_:
            packed = self.packed_ = PackedForest(self.forest_)
        return packed.score(X)

    def _out_of_bag_scores(self, X):
        """Training scores from the trees that did not sample the row, so they match scores of new rows (a tree
        isolates its own sample points faster). Rows sampled by every tree keep their in-sample score."""
        forest = self.forest_
        depth_sum, count = np.zeros(len(X)), np.zeros(len(X))
        for tree, rows, features in zip(forest.estimators_, forest.estimators_samples_, forest.estimators_features_):
            out = np.ones(len(X), dtype=bool)
            out[rows] = False
            if not out.any():
                continue
            sub = X[out][:, features].astype(np.float32)
            leaves = tree.apply(sub)
            depth = np.asarray(tree.decision_path(sub).sum(axis=1)).ravel() - 1.0
            depth_sum[out] += depth + _average_path_length(tree.tree_.n_node_samples[leaves])
            count[out] += 1
        scores = -forest.score_samples(X)
        have = count > 0
        normaliser = _average_path_length(np.array([forest.max_samples_]))[0]
        scores[have] = 2.0 ** (-(depth_sum[have] / count[have]) / normaliser)
        return scores


class PackedForest:
    """A fitted IsolationForest as (trees x nodes) arrays, walked level by level for all trees and rows at once.

    Per node: the feature in the forest's input (a tree fitted on a feature subset is mapped back), the threshold,
    the children (a leaf points to itself), and the leaf's path length (depth + c(n samples in the leaf) - 1, as
    scikit-learn's `_compute_score_samples`). Rows are compared in float32 against the float64 thresholds, as the
    tree's own `apply`. Score: 2 ** (-mean path length / c(max_samples))."""

    def __init__(self, forest: IsolationForest, chunk_rows: int = 4096):
        self.forest = forest
        self.chunk_rows = chunk_rows
        trees = [e.tree_ for e in forest.estimators_]
        width = max(t.node_count for t in trees)
        n = len(trees)
        self.feature = np.zeros((n, width), dtype=np.intp)
        self.threshold = np.zeros((n, width), dtype=np.float64)
        self.left = np.zeros((n, width), dtype=np.intp)
        self.right = np.zeros((n, width), dtype=np.intp)
        self.path = np.zeros((n, width), dtype=np.float64)
        subsampled = forest._max_features != forest.n_features_in_
        for i, (tree, features) in enumerate(zip(trees, forest.estimators_features_)):
            c = tree.node_count
            own = np.arange(c)
            leaf = tree.children_left[:c] < 0
            feature = np.maximum(tree.feature[:c], 0)
            self.feature[i, :c] = np.asarray(features)[feature] if subsampled else feature
            self.threshold[i, :c] = np.where(leaf, np.inf, tree.threshold[:c])
            self.left[i, :c] = np.where(leaf, own, tree.children_left[:c])
            self.right[i, :c] = np.where(leaf, own, tree.children_right[:c])
            self.path[i, :c] = forest._decision_path_lengths[i] + forest._average_path_length_per_tree[i] - 1.0
        self.depth = max(t.max_depth for t in trees)
        self.flat = np.arange(n) * width  # offset of each tree's nodes in the raveled arrays
        self.normaliser = n * _average_path_length(np.array([forest._max_samples]))[0]

    def score(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        out = np.empty(len(X), dtype=np.float64)
        feature, threshold = self.feature.ravel(), self.threshold.ravel()
        left, right, path = self.left.ravel(), self.right.ravel(), self.path.ravel()
        for start in range(0, len(X), self.chunk_rows):
            part = X[start:start + self.chunk_rows]
            rows = np.arange(len(part))[:, None]
            node = np.broadcast_to(self.flat, (len(part), len(self.flat))).copy()  # rows x trees, at the roots
            for _ in range(self.depth):
                go_left = part[rows, feature[node]] <= threshold[node]
                node = self.flat + np.where(go_left, left[node], right[node])
            out[start:start + len(part)] = 2.0 ** (-path[node].sum(axis=1) / self.normaliser)
        return out


class LOFDetector(BaseDetector):
    """Local Outlier Factor in novelty mode on standardised features; the score is the LOF (about 1 = inlier)."""

    def __init__(self, n_neighbors: int = 20, metric: str = "minkowski", scale: bool = True,
                 threshold: str = "contamination", rate: float = 0.05):
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.scale = scale
        self.threshold = threshold
        self.rate = rate

    def _fit(self, X):
        Z = self._fit_scaler(X)
        self.lof_ = LocalOutlierFactor(n_neighbors=min(self.n_neighbors, len(Z) - 1), metric=self.metric,
                                       novelty=True).fit(Z)
        return -self.lof_.negative_outlier_factor_  # leave-one-out LOF of the training rows

    def _score(self, X):
        return -self.lof_.score_samples(self._scaled(X))


class OCSVMDetector(BaseDetector):
    """One-Class SVM (RBF kernel) on standardised features; the score is minus the signed distance to the
    boundary. Fits on at most ``max_samples`` rows (random, seeded) since the kernel matrix grows as n^2."""

    def __init__(self, kernel: str = "rbf", nu: float = 0.5, gamma="scale", max_samples: int | None = 5000,
                 scale: bool = True, random_state: int | None = None, threshold: str = "contamination",
                 rate: float = 0.05):
        self.kernel = kernel
        self.nu = nu
        self.gamma = gamma
        self.max_samples = max_samples
        self.scale = scale
        self.random_state = random_state
        self.threshold = threshold
        self.rate = rate

    def _fit(self, X):
        Z = self._fit_scaler(X)
        fit_rows = Z
        if self.max_samples and len(Z) > self.max_samples:
            rng = np.random.default_rng(self.random_state)
            fit_rows = Z[np.sort(rng.choice(len(Z), self.max_samples, replace=False))]
        self.svm_ = OneClassSVM(kernel=self.kernel, nu=self.nu, gamma=self.gamma, cache_size=500).fit(fit_rows)
        return self._score(X)

    def _score(self, X):
        return -self.svm_.score_samples(self._scaled(X))


class KNNDetector(BaseDetector):
    """Distance to the k-th nearest training row (``method='largest'``) or the mean of the k distances, on
    standardised features (Ramaswamy et al. 2000). Training rows are scored without themselves."""

    def __init__(self, n_neighbors: int = 5, method: str = "largest", scale: bool = True,
                 threshold: str = "contamination", rate: float = 0.05):
        self.n_neighbors = n_neighbors
        self.method = method
        self.scale = scale
        self.threshold = threshold
        self.rate = rate

    def _fit(self, X):
        if self.method not in ("largest", "mean"):
            raise ValueError(f"method must be 'largest' or 'mean', got {self.method!r}")
        Z = self._fit_scaler(X)
        self.k_ = int(min(self.n_neighbors, len(Z) - 1))
        self.nn_ = NearestNeighbors(n_neighbors=self.k_ + 1).fit(Z)
        dist, _ = self.nn_.kneighbors(Z, n_neighbors=self.k_ + 1)
        return self._combine(dist[:, 1:])  # the first neighbour of a training row is itself (distance 0)

    def _score(self, X):
        Z = self._scaled(X)
        if len(Z) <= 8:  # a few rows (the API's one patient): exact distances to every training row, without the
            # tree's per-call set-up (~1 ms)
            train = self.nn_._fit_X
            dist = np.sort(np.stack([np.sqrt(((train - z) ** 2).sum(axis=1)) for z in Z]), axis=1)[:, :self.k_]
            return self._combine(dist)
        dist, _ = self.nn_.kneighbors(Z, n_neighbors=self.k_)
        return self._combine(dist)

    def _combine(self, dist):
        return dist[:, -1] if self.method == "largest" else dist.mean(axis=1)


class INNEDetector(BaseDetector):
    """Isolation using nearest-neighbour ensembles (iNNE, Bandaragoda et al. 2018), on standardised features.

    Each of ``n_estimators`` members draws ``max_samples`` training rows (``auto``: 8, PyOD's default); each drawn
    row c owns a ball whose radius is the distance to its nearest other drawn row. A row covered by no ball gets
    the member's maximum score 1; otherwise the smallest covering ball (c) decides: 1 - radius(nn(c)) / radius(c),
    near 1 where c sits alone next to a dense pair. The score is the mean over members; training rows are scored
    by the members that did not draw them (as the Isolation Forest's), so their scores match those of new rows."""

    def __init__(self, n_estimators: int = 200, max_samples="auto", scale: bool = True,
                 random_state: int | None = None, threshold: str = "contamination", rate: float = 0.05):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.scale = scale
        self.random_state = random_state
        self.threshold = threshold
        self.rate = rate

    def _fit(self, X):
        Z = self._fit_scaler(X)
        size = 8 if self.max_samples == "auto" else int(self.max_samples)
        if size < 2 or self.n_estimators < 1:
            raise ValueError(f"max_samples must be >= 2 and n_estimators >= 1, got {self.max_samples!r}, "
                             f"{self.n_estimators!r}")
        size = min(size, len(Z))
        rng = np.random.default_rng(self.random_state)
        self.samples_ = np.stack([rng.choice(len(Z), size, replace=False) for _ in range(self.n_estimators)])
        self.centres_ = Z[self.samples_]                                       # members x size x features
        within = np.linalg.norm(self.centres_[:, :, None] - self.centres_[:, None], axis=-1)
        within[:, np.arange(size), np.arange(size)] = np.inf
        nearest = within.argmin(axis=2)
        self.radius_ = np.take_along_axis(within, nearest[..., None], axis=2)[..., 0]
        neighbour_radius = np.take_along_axis(self.radius_, nearest, axis=1)
        alone = self.radius_ > 0  # a radius of 0 (a duplicated row) covers only its copies: score 0 there
        self.ratio_ = np.where(alone, 1.0 - neighbour_radius / np.where(alone, self.radius_, 1.0), 0.0)
        per_member = self._member_scores(Z)
        drawn = np.zeros_like(per_member, dtype=bool)
        drawn[np.arange(self.n_estimators)[:, None], self.samples_] = True
        kept = (~drawn).sum(axis=0)
        out_of_bag = np.where(drawn, 0.0, per_member).sum(axis=0) / np.maximum(kept, 1)
        return np.where(kept > 0, out_of_bag, per_member.mean(axis=0))

    def _score(self, X):
        return self._member_scores(self._scaled(X)).mean(axis=0)

    def _member_scores(self, Z: np.ndarray, chunk: int = 2048) -> np.ndarray:
        """members x rows: each member's isolation score of each row."""
        out = np.empty((self.n_estimators, len(Z)))
        for start in range(0, len(Z), chunk):
            block = Z[start:start + chunk]
            flat = self.centres_.reshape(-1, Z.shape[1])
            squared = (block ** 2).sum(1)[:, None] + (flat ** 2).sum(1)[None] - 2.0 * block @ flat.T
            dist = np.sqrt(np.maximum(squared, 0.0)).reshape(len(block), *self.radius_.shape).transpose(1, 0, 2)
            covering = dist <= self.radius_[:, None, :]
            radius = np.where(covering, self.radius_[:, None, :], np.inf)
            best = radius.argmin(axis=2)
            ratio = np.take_along_axis(np.broadcast_to(self.ratio_[:, None, :], radius.shape), best[..., None],
                                       axis=2)[..., 0]
            out[:, start:start + chunk] = np.where(covering.any(axis=2), ratio, 1.0)
        return out


class MahalanobisDetector(BaseDetector):
    """Squared Mahalanobis distance to the training mean on standardised features, i.e. the PCA detector that
    weighs every principal component by one over its variance (Shyu et al. 2003): it catches rows that break
    the correlations between measurements (height against weight) even when each value alone is plausible.
    Eigenvalues are floored at ``min_variance`` x the largest, so constant features do not divide by zero."""

    def __init__(self, min_variance: float = 1e-6, threshold: str = "contamination", rate: float = 0.05):
        self.min_variance = min_variance
        self.threshold = threshold
        self.rate = rate

    def _fit(self, X):
        self.scaler_ = StandardScaler().fit(X)
        Z = self.scaler_.transform(X)
        variances, self.components_ = np.linalg.eigh(np.atleast_2d(np.cov(Z, rowvar=False)))
        self.explained_variance_ = np.maximum(variances, self.min_variance * max(variances.max(), 1e-12))
        return self._score(X)

    def _score(self, X):
        projected = self._scaled(X) @ self.components_
        return (projected ** 2 / self.explained_variance_).sum(axis=1)


class ECODDetector(BaseDetector):
    """Empirical-CDF outlier detection (ECOD, Li et al. 2022): per feature, minus the log tail probability of
    the value under the training distribution, summed over features; the tail (left, right or the one the
    feature's skew points to) that gives the largest sum wins. Parameter-free, and a value never seen in
    training (a count that is always 0 in clean data) gets the largest possible tail score."""

    def __init__(self, threshold: str = "contamination", rate: float = 0.05):
        self.threshold = threshold
        self.rate = rate

    def _fit(self, X):
        self.sorted_ = np.sort(X, axis=0)
        centred = X - X.mean(axis=0)
        m2, m3 = (centred ** 2).mean(axis=0), (centred ** 3).mean(axis=0)
        self.skew_ = np.divide(m3, m2 ** 1.5, out=np.zeros_like(m3), where=m2 > 1e-12)
        return self._total(*self._tails(X, training=True))

    def _score(self, X):
        return self._total(*self._tails(X))

    def tail_scores(self, X) -> np.ndarray:
        """Per-feature contributions (rows x features) on the tail the score used: an explanation for free."""
        check_is_fitted(self, "threshold_")
        left, right = self._tails(check_matrix(X, n_features=self.n_features_in_))
        auto = np.where(self.skew_ < 0, left, right)
        totals = np.stack([left.sum(1), right.sum(1), auto.sum(1)], axis=1)
        choice = totals.argmax(axis=1)
        return np.where((choice == 0)[:, None], left, np.where((choice == 1)[:, None], right, auto))

    def _tails(self, X, training: bool = False):
        n = self.sorted_.shape[0]
        left = np.empty_like(X)
        right = np.empty_like(X)
        for j in range(X.shape[1]):
            column = self.sorted_[:, j]
            below = np.searchsorted(column, X[:, j], side="right")      # training values <= x
            above = n - np.searchsorted(column, X[:, j], side="left")   # training values >= x
            if training:  # the row itself is among the counts: leave it out, then smooth as for a new row
                left[:, j], right[:, j] = below / n, above / n
            else:
                left[:, j], right[:, j] = (below + 1) / (n + 1), (above + 1) / (n + 1)
        return -np.log(left), -np.log(right)

    def _total(self, left, right):
        auto = np.where(self.skew_ < 0, left, right)
        return np.maximum(np.maximum(left.sum(1), right.sum(1)), auto.sum(1))


# -- autoencoder -----------------------------------------------------------------------------------------------
class AutoencoderDetector(BaseDetector):
    """A small fully connected autoencoder (PyTorch, CPU): the score is the mean squared reconstruction error
    of the standardised row. Layers: in -> hidden -> latent -> hidden -> in (ReLU); the latent size is capped
    at half the number of features so the network cannot learn the identity. Early stopping on a validation
    split of the training rows; seeded and deterministic (``torch.use_deterministic_algorithms``)."""

    def __init__(self, hidden_size: int = 64, latent_size: int = 32, max_epochs: int = 100, batch_size: int = 128,
                 learning_rate: float = 1e-3, weight_decay: float = 1e-5, validation_fraction: float = 0.1,
                 patience: int = 10, min_delta: float = 1e-4, random_state: int | None = 0, n_threads: int = 2,
                 threshold: str = "contamination", rate: float = 0.05):
        self.hidden_size = hidden_size
        self.latent_size = latent_size
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.min_delta = min_delta
        self.random_state = random_state
        self.n_threads = n_threads
        self.threshold = threshold
        self.rate = rate

    def _fit(self, X):
        import torch
        from torch import nn

        self.scaler_ = StandardScaler().fit(X)
        Z = self.scaler_.transform(X).astype(np.float32)
        n, d = Z.shape
        self.latent_size_ = int(max(1, min(self.latent_size, d // 2)))
        seed = 0 if self.random_state is None else int(self.random_state)
        # fork_rng: seed the weight initialisation without touching the caller's global torch random state
        with _TorchSettings(self.n_threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model_ = nn.Sequential(
                nn.Linear(d, self.hidden_size), nn.ReLU(),
                nn.Linear(self.hidden_size, self.latent_size_), nn.ReLU(),
                nn.Linear(self.latent_size_, self.hidden_size), nn.ReLU(),
                nn.Linear(self.hidden_size, d),
            )
            rng = np.random.default_rng(seed)
            order = rng.permutation(n)
            n_val = int(round(self.validation_fraction * n)) if n >= 20 else 0
            val, train = order[:n_val], order[n_val:]
            x_train, x_val = torch.from_numpy(Z[train]), torch.from_numpy(Z[val])
            optimiser = torch.optim.Adam(self.model_.parameters(), lr=self.learning_rate,
                                         weight_decay=self.weight_decay)
            generator = torch.Generator().manual_seed(seed)
            best, best_state, stale, history = np.inf, None, 0, []
            for epoch in range(self.max_epochs):
                self.model_.train()
                for batch in torch.randperm(len(x_train), generator=generator).split(self.batch_size):
                    optimiser.zero_grad()
                    loss = ((self.model_(x_train[batch]) - x_train[batch]) ** 2).mean()
                    loss.backward()
                    optimiser.step()
                self.model_.eval()
                with torch.no_grad():
                    monitor = x_val if n_val else x_train
                    loss = float(((self.model_(monitor) - monitor) ** 2).mean())
                history.append(loss)
                if loss < best - self.min_delta:
                    best, stale = loss, 0
                    best_state = {k: v.clone() for k, v in self.model_.state_dict().items()}
                else:
                    stale += 1
                    if stale >= self.patience:
                        break
            if best_state is not None:
                self.model_.load_state_dict(best_state)
            self.model_.eval()
        self.n_epochs_ = len(history)
        self.validation_loss_ = np.asarray(history)
        return self._score(X)

    def feature_errors(self, X) -> np.ndarray:
        """Squared reconstruction error per row and feature (standardised units): what the score averages."""
        check_is_fitted(self, "threshold_")
        return self._feature_errors(check_matrix(X, n_features=self.n_features_in_))

    def _feature_errors(self, X):
        import torch

        Z = self.scaler_.transform(X).astype(np.float32)
        with _TorchSettings(self.n_threads), torch.no_grad():
            out = self.model_(torch.from_numpy(Z)).numpy()
        return (out - Z) ** 2

    def _score(self, X):
        return self._feature_errors(X).mean(axis=1)


def _average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n): the average path length of an unsuccessful search in a binary search tree of n points (Liu et al.)."""
    n = np.asarray(n, dtype=float)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


class _TorchSettings:
    """Deterministic kernels and a thread cap for the duration of a fit or score, restored afterwards."""

    def __init__(self, n_threads: int):
        self.n_threads = n_threads

    def __enter__(self):
        import torch

        self._threads = torch.get_num_threads()
        self._deterministic = torch.are_deterministic_algorithms_enabled()
        torch.set_num_threads(max(1, int(self.n_threads)))
        torch.use_deterministic_algorithms(True)
        return self

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self._threads)
        torch.use_deterministic_algorithms(self._deterministic)
        return False


# -- ensemble --------------------------------------------------------------------------------------------------
class EnsembleDetector(BaseDetector):
    """Average of member scores, each normalised against the member's own training scores.

    normalisation: ``zscore`` (standardised with the mean and standard deviation of the member's training
    scores; keeps how extreme a score is beyond anything seen in training) or ``rank`` (the share of training
    scores below it: robust to skewed scores but flat beyond the training maximum). combine: ``mean`` or ``max``.
    detectors: ``{name: detector}``, a list of ``(name, detector)`` pairs, or detector names for
    :func:`make_detector`; default Isolation Forest + kNN + ECOD. ``random_state`` (when set) is passed to every
    member that takes one.
    """

    def __init__(self, detectors=None, normalisation: str = "zscore", combine: str = "mean", weights=None,
                 random_state: int | None = None, threshold: str = "contamination", rate: float = 0.05):
        self.detectors = detectors
        self.normalisation = normalisation
        self.combine = combine
        self.weights = weights
        self.random_state = random_state
        self.threshold = threshold
        self.rate = rate

    def members(self) -> list[tuple[str, BaseEstimator]]:
        """The (name, unfitted detector) pairs this ensemble is made of."""
        detectors = self.detectors if self.detectors is not None else ("iforest", "knn", "ecod")
        if isinstance(detectors, Mapping):
            pairs = list(detectors.items())
        else:
            pairs = [(d, make_detector(d)) if isinstance(d, str) else tuple(d) for d in detectors]
        if not pairs:
            raise ValueError("an EnsembleDetector needs at least one member detector")
        return [(str(name), det) for name, det in pairs]

    def _fit(self, X):
        if self.normalisation not in ("rank", "zscore"):
            raise ValueError(f"normalisation must be 'rank' or 'zscore', got {self.normalisation!r}")
        if self.combine not in ("mean", "max"):
            raise ValueError(f"combine must be 'mean' or 'max', got {self.combine!r}")
        self.detectors_ = {}
        for name, detector in self.members():
            detector = clone(detector)
            if self.random_state is not None and "random_state" in detector.get_params(deep=False):
                detector.set_params(random_state=self.random_state)
            self.detectors_[name] = detector.fit(X)
        weights = np.ones(len(self.detectors_)) if self.weights is None else np.asarray(self.weights, float)
        if weights.shape != (len(self.detectors_),):
            raise ValueError(f"weights has {weights.size} values for {len(self.detectors_)} detectors")
        self.weights_ = weights / weights.sum()
        self.reference_scores_ = {name: np.sort(det.train_scores_) for name, det in self.detectors_.items()}
        return self._combine({name: det.train_scores_ for name, det in self.detectors_.items()})

    def member_scores(self, X) -> pd.DataFrame:
        """Normalised score of each member (columns) for each row."""
        check_is_fitted(self, "threshold_")
        X = check_matrix(X, n_features=self.n_features_in_)
        return pd.DataFrame({name: self._normalise(name, det._score(X)) for name, det in self.detectors_.items()})

    def _normalise(self, name: str, scores: np.ndarray) -> np.ndarray:
        ref = self.reference_scores_[name]
        if self.normalisation == "rank":
            lo, hi = np.searchsorted(ref, scores, side="left"), np.searchsorted(ref, scores, side="right")
            return (lo + hi) / (2.0 * len(ref))
        spread = ref.std()
        return (scores - ref.mean()) / (spread if spread > 1e-12 else 1.0)

    def _combine(self, raw: Mapping[str, np.ndarray]) -> np.ndarray:
        stacked = np.stack([self._normalise(name, np.asarray(raw[name])) for name in self.detectors_], axis=1)
        if self.combine == "max":
            return stacked.max(axis=1)
        return stacked @ self.weights_

    def _score(self, X):
        return self._combine({name: det._score(X) for name, det in self.detectors_.items()})


# -- factory ---------------------------------------------------------------------------------------------------
DETECTORS: dict[str, type[BaseDetector]] = {
    "iforest": IsolationForestDetector,
    "lof": LOFDetector,
    "ocsvm": OCSVMDetector,
    "knn": KNNDetector,
    "inne": INNEDetector,
    "ecod": ECODDetector,
    "mahalanobis": MahalanobisDetector,
    "autoencoder": AutoencoderDetector,
    "ensemble": EnsembleDetector,
}


def make_detector(name: str, **params) -> BaseDetector:
    """A detector by short name (``iforest``, ``lof``, ``ocsvm``, ``knn``, ``inne``, ``ecod``, ``mahalanobis``,
    ``autoencoder``, ``ensemble``) with its parameters."""
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; choose from {sorted(DETECTORS)}") from None
    return cls(**params)


def detectors_from_config(anomaly_cfg) -> dict[str, BaseDetector]:
    """Instantiate ``anomaly.detectors`` (Hydra ``_target_`` nodes) plus ``anomaly.auto`` under the name ``auto``."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    detectors = {str(name): instantiate(node) for name, node in anomaly_cfg.detectors.items()}
    auto = anomaly_cfg.get("auto")
    if auto is not None:
        detectors["auto"] = instantiate(auto) if OmegaConf.is_dict(auto) else clone(detectors[str(auto)])
    return detectors


def with_seed(detector: BaseEstimator, seed: int) -> BaseEstimator:
    """A fresh clone of the detector with ``random_state=seed`` where it takes one (members included)."""
    detector = clone(detector)
    params = detector.get_params(deep=False)
    if "random_state" in params:
        detector.set_params(random_state=seed)
    return detector


__all__ = [
    "AutoencoderDetector", "BaseDetector", "DETECTORS", "ECODDetector", "EnsembleDetector", "INNEDetector",
    "IsolationForestDetector", "KNNDetector", "LOFDetector", "MahalanobisDetector", "OCSVMDetector", "check_matrix",
    "detectors_from_config",
    "make_detector", "threshold_from_scores", "with_seed",
]
