"""Over-samplers for rare diseases on the feature matrix, and class weighting.

Every sampler here implements `fit_resample(X, y)` the way imbalanced-learn's do, so it sits inside an
`imblearn.pipeline.Pipeline` between the featurizer and the classifier and only ever runs on a training fold.
What differs from calling imbalanced-learn directly:

- only classes with fewer than `target` rows are over-sampled, and only up to `target` (with 200 diseases,
  balancing up to the majority class would multiply the training set by ~30);
- k_neighbors shrinks to n-1 for a class of n < k+1 rows; a class with a single row cannot be interpolated:
  `singletons="jitter"` duplicates it with noise (binary entries dropped with probability `singleton_drop`,
  other columns moved by `singleton_noise` standard deviations), `"skip"` leaves it alone; both are logged;
- scipy sparse input stays sparse (SMOTE, ADASYN and BorderlineSMOTE take it as it is; SMOTEN/SMOTENC get
  the dense rows of the one class they over-sample, never the whole matrix). Synthetic rows come after the
  original ones; `n_synthetic_` records how many each class received.
"""

from __future__ import annotations

import inspect
import logging
from collections import Counter

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.class_weight import compute_sample_weight

log = logging.getLogger(__name__)


def rows_needed(y: np.ndarray, target: int) -> dict:
    """Class -> number of synthetic rows that brings it up to `target` (classes already there are absent)."""
    classes, counts = np.unique(y, return_counts=True)
    return {c: int(target - n) for c, n in zip(classes, counts) if n < target}


def binary_columns(X) -> np.ndarray:
    """Boolean mask of the columns whose stored values are all 1 (findings, excluded findings, one-hots)."""
    if sparse.issparse(X):
        X = sparse.csc_matrix(X)
        mask = np.ones(X.shape[1], dtype=bool)
        not_one = X.data != 1
        if not_one.any():
            columns = np.repeat(np.arange(X.shape[1]), np.diff(X.indptr))
            mask[np.unique(columns[not_one])] = False
        return mask
    X = np.asarray(X)
    return np.all((X == 0) | (X == 1), axis=0)


def append_rows(X, blocks: list, y: np.ndarray, labels: list):
    """Original rows first, then the synthetic blocks; sparse in, CSR out."""
    y_new = np.concatenate([y, *labels]) if labels else y.copy()
    if sparse.issparse(X):
        X_new = sparse.vstack([X, *[sparse.csr_matrix(b, dtype=X.dtype) for b in blocks]], format="csr")
    else:
        X_new = np.vstack([X, *[np.asarray(b.toarray() if sparse.issparse(b) else b, dtype=X.dtype)
                                for b in blocks]])
    return X_new, y_new


def jitter_rows(row, n: int, binary: np.ndarray, scale: np.ndarray, drop: float, noise: float,
                rng: np.random.RandomState) -> np.ndarray:
    """`n` noisy copies of one row: binary entries dropped with probability `drop` (a finding not recorded),
    the other columns moved by `noise` x their standard deviation."""
    base = np.asarray(row.toarray() if sparse.issparse(row) else row, dtype=np.float64).reshape(1, -1)
    out = np.repeat(base, n, axis=0)
    keep = rng.uniform(size=(n, int(binary.sum()))) >= drop
    out[:, binary] *= keep
    out[:, ~binary] += rng.normal(size=(n, int((~binary).sum()))) * noise * scale[~binary]
    return out


def column_std(X) -> np.ndarray:
    if sparse.issparse(X):
        mean = np.asarray(X.mean(axis=0)).ravel()
        mean_sq = np.asarray(X.multiply(X).mean(axis=0)).ravel()
        return np.sqrt(np.maximum(mean_sq - mean**2, 0.0))
    return np.asarray(X, dtype=np.float64).std(axis=0)


class RareClassOversampler(BaseEstimator):
    """Base: plan (classes below `target`), singletons, k per class, bookkeeping. Subclasses say how to make
    the synthetic rows of one class with `_oversample_class`."""

    input = "features"  # the matrix after the featurizer; patient-level augmenters say "patients"

    def __init__(self, target: int = 10, k_neighbors: int = 5, singletons: str = "jitter",
                 singleton_drop: float = 0.1, singleton_noise: float = 0.1, random_state: int | None = 0):
        self.target = target
        self.k_neighbors = k_neighbors
        self.singletons = singletons
        self.singleton_drop = singleton_drop
        self.singleton_noise = singleton_noise
        self.random_state = random_state

    def fit_resample(self, X, y):
        if self.singletons not in ("jitter", "skip"):
            raise ValueError(f"singletons must be 'jitter' or 'skip', got {self.singletons!r}")
        X = sparse.csr_matrix(X) if sparse.issparse(X) else np.asarray(X)
        y = np.asarray(y)
        rng = check_random_state(self.random_state)
        counts = Counter(y.tolist())
        need = rows_needed(y, self.target)
        self.binary_columns_ = binary_columns(X)
        self.k_used_, self.fallbacks_, self.singletons_ = {}, {}, []
        blocks, labels = [], []
        scale = None
        for cls, n_new in need.items():
            seed = rng.randint(np.iinfo(np.int32).max)
            if counts[cls] == 1:
                self.singletons_.append(cls)
                if self.singletons == "skip":
                    continue
                scale = column_std(X) if scale is None else scale
                rows = jitter_rows(X[np.flatnonzero(y == cls)[0]], n_new, self.binary_columns_, scale,
                                   self.singleton_drop, self.singleton_noise, np.random.RandomState(seed))
            else:
                k = min(self.k_neighbors, counts[cls] - 1)
                self.k_used_[cls] = k
                rows = self._oversample_class(X, y, cls, n_new, k, seed)
                if rows is not None and rows.shape[0] > n_new:  # ADASYN's rounding can overshoot the target
                    rows = rows[np.sort(np.random.RandomState(seed).choice(rows.shape[0], n_new, replace=False))]
            if rows is not None and rows.shape[0]:
                blocks.append(rows)
                labels.append(np.full(rows.shape[0], cls, dtype=y.dtype))
        self.rows_needed_ = need
        self.n_synthetic_ = {lab[0]: int(len(lab)) for lab in labels}
        self._log(need, counts)
        return append_rows(X, blocks, y, labels)

    def _log(self, need: dict, counts: Counter) -> None:
        name = type(self).__name__
        adapted = sum(1 for k in self.k_used_.values() if k < self.k_neighbors)
        log.info("%s: +%d rows for %d of %d classes below target %d (k_neighbors lowered for %d small classes)",
                 name, sum(self.n_synthetic_.values()), len(self.n_synthetic_), len(need), self.target, adapted)
        if self.singletons_:
            log.info("%s: %d classes with a single row %s", name, len(self.singletons_),
                     "duplicated with noise" if self.singletons == "jitter" else "skipped (not over-sampled)")
        for cls, reason in self.fallbacks_.items():
            log.debug("%s: class %s: %s", name, cls, reason)
        if self.fallbacks_:
            log.info("%s: %d classes fell back to plain SMOTE (%s)", name, len(self.fallbacks_),
                     Counter(self.fallbacks_.values()).most_common(1)[0][0])

    def _oversample_class(self, X, y, cls, n_new: int, k: int, seed: int):
        raise NotImplementedError

    # -- shared helpers -------------------------------------------------------------------------------------
    @staticmethod
    def _class_rows(X, y, cls):
        """The rows of `cls` plus one row of another class: imbalanced-learn wants two classes in y."""
        own = np.flatnonzero(y == cls)
        other = np.flatnonzero(y != cls)[:1]
        index = np.concatenate([own, other])
        return X[index], y[index]

    @staticmethod
    def _new_rows(sampler, X, y, cls, n_new: int):
        """Run an imbalanced-learn over-sampler for one class; return only the rows it added."""
        n_class = int((y == cls).sum())
        X_res, _ = sampler.set_params(sampling_strategy={cls: n_class + n_new}).fit_resample(X, y)
        return X_res[X.shape[0]:]

    def _smote_rows(self, X, y, cls, n_new: int, k: int, seed: int):
        from imblearn.over_sampling import SMOTE

        X_sub, y_sub = self._class_rows(X, y, cls)
        return self._new_rows(SMOTE(k_neighbors=k, random_state=seed), X_sub, y_sub, cls, n_new)


class RareSMOTE(RareClassOversampler):
    """SMOTE (interpolation between a row and one of its k nearest same-class rows), rare classes only."""

    def _oversample_class(self, X, y, cls, n_new, k, seed):
        return self._smote_rows(X, y, cls, n_new, k, seed)


class RareSMOTEN(RareClassOversampler):
    """SMOTENC for the mixed matrix: binary columns (findings, excluded findings, history, one-hots) are
    categorical, so a synthetic patient has a finding when most of the base row's neighbours have it instead
    of a fractional value; the other columns (age, counts, knowledge scores) are interpolated. SMOTEN when
    every column is binary, plain SMOTE when none is. Only the rows and non-zero columns of the class being
    over-sampled are densified."""

    def _oversample_class(self, X, y, cls, n_new, k, seed):
        from imblearn.over_sampling import SMOTE, SMOTEN, SMOTENC

        X_sub, y_sub = self._class_rows(X, y, cls)
        own = X_sub[: int((y_sub == cls).sum())]
        # Neighbours come from the class itself: a column that is 0 in all its rows stays 0 in every synthetic
        # row (interpolated or voted), so only the class's non-zero columns are densified and resampled.
        active = np.flatnonzero(np.asarray(abs(own).sum(axis=0)).ravel() > 0)
        binary = self.binary_columns_[active]
        dense = X_sub[:, active]
        dense = dense.toarray() if sparse.issparse(dense) else np.asarray(dense)
        if binary.all():
            sampler = SMOTEN(k_neighbors=k, random_state=seed)
        elif not binary.any():
            sampler = SMOTE(k_neighbors=k, random_state=seed)
        else:
            sampler = SMOTENC(categorical_features=np.flatnonzero(binary).tolist(), k_neighbors=k,
                              random_state=seed)
        rows = np.asarray(self._new_rows(sampler, dense, y_sub, cls, n_new), dtype=np.float64)
        out = np.zeros((rows.shape[0], X.shape[1]))
        out[:, active] = rows
        return sparse.csr_matrix(out)


class RareADASYN(RareClassOversampler):
    """ADASYN: more synthetic rows around the class's rows whose neighbours (in the whole matrix) belong to
    other diseases. A class none of whose rows has another disease among its neighbours, or for which the
    rounding leaves nothing to generate, falls back to SMOTE (recorded in `fallbacks_`)."""

    def _oversample_class(self, X, y, cls, n_new, k, seed):
        from imblearn.over_sampling import ADASYN

        try:
            return self._new_rows(ADASYN(n_neighbors=k, random_state=seed), X, y, cls, n_new)
        except (RuntimeError, ValueError) as error:
            self.fallbacks_[cls] = str(error).split(".")[0]
            return self._smote_rows(X, y, cls, n_new, k, seed)


class RareBorderlineSMOTE(RareClassOversampler):
    """Borderline-SMOTE: interpolates only from the class's rows "in danger" (at least half of their
    `m_neighbors` nearest rows belong to other diseases, but not all). A class with no such row gets no
    synthetic rows unless `fallback="smote"`."""

    def __init__(self, target: int = 10, k_neighbors: int = 5, m_neighbors: int = 10, kind: str = "borderline-1",
                 fallback: str | None = None, singletons: str = "jitter", singleton_drop: float = 0.1,
                 singleton_noise: float = 0.1, random_state: int | None = 0):
        super().__init__(target, k_neighbors, singletons, singleton_drop, singleton_noise, random_state)
        self.m_neighbors = m_neighbors
        self.kind = kind
        self.fallback = fallback

    def _oversample_class(self, X, y, cls, n_new, k, seed):
        from imblearn.over_sampling import BorderlineSMOTE

        sampler = BorderlineSMOTE(k_neighbors=k, m_neighbors=self.m_neighbors, kind=self.kind, random_state=seed)
        rows = self._new_rows(sampler, X, y, cls, n_new)
        if rows.shape[0] == 0 and self.fallback == "smote":
            self.fallbacks_[cls] = "no row in danger"
            return self._smote_rows(X, y, cls, n_new, k, seed)
        return rows


# -- class weights ------------------------------------------------------------------------------------------
class BalancedSampleWeight(ClassifierMixin, BaseEstimator):
    """A classifier without `class_weight` but whose fit takes `sample_weight`: fit it with balanced weights
    (n_samples / (n_classes * count of the row's class)); prediction is the inner classifier's."""

    def __init__(self, estimator=None):
        self.estimator = estimator

    def fit(self, X, y):
        self.estimator_ = clone(self.estimator).fit(X, y, sample_weight=compute_sample_weight("balanced", y))
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X):
        return self.estimator_.predict_proba(X)

    def predict(self, X):
        return self.estimator_.predict(X)


def with_class_weight(estimator, class_weight: str | dict = "balanced"):
    """Set `class_weight` when the estimator has it, else wrap it to pass balanced `sample_weight` to fit;
    an estimator with neither is returned unchanged (logged)."""
    if "class_weight" in estimator.get_params(deep=False):
        return estimator.set_params(class_weight=class_weight)
    if "sample_weight" in inspect.signature(estimator.fit).parameters and class_weight == "balanced":
        return BalancedSampleWeight(estimator)
    log.warning("%s takes neither class_weight nor sample_weight: class weighting not applied",
                type(estimator).__name__)
    return estimator
