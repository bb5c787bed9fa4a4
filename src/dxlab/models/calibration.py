"""Calibration on a held-out fold: temperature scaling or one-vs-rest isotonic regression around any classifier.

`TemperatureCalibrated(estimator)` fits a clone of the estimator on part of the training data, fits the
calibrator on the held-out fold, then (refit=True) refits the estimator on all of it. `stratified_holdout` is
the held-out fold every dxlab model uses (early stopping, calibration, ensemble weights): a share of each
disease's patients, while a disease with a single patient always stays in training.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, logsumexp, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.isotonic import IsotonicRegression
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from dxlab.evaluation.metrics import evaluate_predictions

METHODS = ("temperature", "isotonic")


def stratified_holdout(y, fraction: float, random_state=None, min_class_count: int = 2):
    """(train, validation) row indices: round(n * fraction) of each class's n rows held out, at most n - 1, so
    every class keeps a training row; classes with fewer than `min_class_count` rows are not held out at all."""
    y = np.asarray(y)
    if not 0 <= fraction < 1:
        raise ValueError(f"validation fraction must lie in [0, 1), got {fraction}")
    rng = check_random_state(random_state)
    _, inverse = np.unique(y, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.r_[True, np.diff(inverse[order]) != 0, True])
    held = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        n = stop - start
        n_val = min(int(round(n * fraction)), n - 1) if n >= min_class_count else 0
        if n_val > 0:
            held.append(rng.permutation(order[start:stop])[:n_val])
    val = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=int)
    train = np.setdiff1d(np.arange(len(y)), val)
    return train, val


def take_rows(X, rows):
    """Rows of a DataFrame, array or sparse matrix."""
    if isinstance(X, (pd.DataFrame, pd.Series)):
        return X.iloc[rows].reset_index(drop=True)
    if sparse.issparse(X):
        return X.tocsr()[rows] if X.format not in ("csr", "csc") else X[rows]
    return np.asarray(X)[rows]


def calibration_summary(y_true, proba, classes) -> dict:
    """ECE and Brier score of probabilities (dxlab.evaluation.metrics definitions)."""
    # labels as strings: the metrics' one-vs-rest helpers reject object arrays of numbers
    overall = evaluate_predictions(np.asarray(y_true).astype(str), proba, [str(c) for c in classes], {},
                                   ks=(1,))["overall"]
    return {"ece": overall["ece"], "brier": overall["brier"], "top1": overall["top1"]}


def fit_temperature(log_proba: np.ndarray, truth: np.ndarray, bounds=(-4.0, 4.0)) -> float:
    """The temperature T minimising the negative log likelihood of softmax(log_proba / T) at the true columns (the
    one temperature fit of dxlab: `ScoreCalibrator` without its out-of-list mass)."""
    return ScoreCalibrator(mixture=False, bounds=bounds).fit(log_proba, truth).temperature_


def _compress(scores: np.ndarray, truth: np.ndarray, keep: int, bins: int) -> tuple:
    """Per row: the `keep` best scores exactly, the truth's score, and the other scores as a histogram (bin
    centre, count): enough for the log-sum-exp at any reasonable temperature, at a fraction of the memory."""
    scores = np.asarray(scores, dtype=np.float64)
    n, m = scores.shape
    keep = min(keep, m)
    top = -np.sort(-np.partition(scores, m - keep, axis=1)[:, m - keep:], axis=1) if keep < m else \
        -np.sort(-scores, axis=1)
    rows = np.arange(n)
    truth = np.asarray(truth)
    true_score = np.where(truth >= 0, scores[rows, np.maximum(truth, 0)], -np.inf)
    centres = np.full((n, bins), -np.inf)
    counts = np.zeros((n, bins))
    if keep < m:
        threshold = top[:, -1:]
        for i in range(n):
            rest = scores[i][scores[i] < threshold[i, 0]]
            rest = rest[np.isfinite(rest)]
            if len(rest):
                hist, edges = np.histogram(rest, bins=bins)
                centres[i] = (edges[:-1] + edges[1:]) / 2
                counts[i] = hist
    return top, true_score, centres, counts


class ScoreCalibrator:
    """Calibrated probabilities from ranking scores: p(d) = (1 - u) softmax(s / T)_d + u / n_classes.

    T is one temperature. u (with `mixture`) is the probability that the truth is none of what the scores point
    at -- a disease outside the universe or far down the list, a fifth of real case reports -- from a logistic
    model of how clearly the first candidate stands out (the gaps between the best score and the 2nd, 10th and
    50th, standardised). Both fitted together by maximum likelihood on scores the rows' true diseases never
    taught (out of fold). Without `mixture` it is temperature scaling alone. `n_classes` is the width of the
    score rows it was fitted on.
    """

    GAPS = (1, 9, 49)

    def __init__(self, mixture: bool = True, bounds=(-4.0, 4.0), keep: int = 64, bins: int = 16):
        self.mixture = mixture
        self.bounds = bounds
        self.keep = keep
        self.bins = bins

    def _gaps(self, top: np.ndarray) -> np.ndarray:
        last = top.shape[1] - 1
        return np.column_stack([top[:, 0] - top[:, min(g, last)] for g in self.GAPS])

    @classmethod
    def identity(cls, n_classes: int) -> "ScoreCalibrator":
        """softmax(scores) as they are: what an uncalibrated model gives."""
        out = cls(mixture=False)
        out.n_classes_, out.temperature_, out.coef_ = int(n_classes), 1.0, None
        out.gap_mean_ = out.gap_scale_ = np.zeros(len(cls.GAPS))
        return out

    def fit(self, scores: np.ndarray, truth: np.ndarray) -> "ScoreCalibrator":
        return self.fit_compressed(self.compress(scores, truth), int(np.asarray(scores).shape[1]))

    def compress(self, scores: np.ndarray, truth: np.ndarray) -> tuple:
        """What fitting needs of (scores, truth), row by row: fit several calibrators on subsets of rows (folds)
        with `fit_compressed(tuple(a[rows] for a in compressed), n_classes)` without compressing again."""
        return _compress(scores, truth, self.keep, self.bins)

    def fit_compressed(self, compressed: tuple, n_classes: int) -> "ScoreCalibrator":
        from scipy.optimize import minimize

        top, true_score, centres, counts = compressed
        self.n_classes_ = int(n_classes)
        self.temperature_, self.coef_ = 1.0, None
        self.gap_mean_ = self.gap_scale_ = np.zeros(len(self.GAPS))
        if not len(true_score):
            return self
        finite = np.isfinite(top)
        log_counts = np.log(np.maximum(counts, 1e-300))
        hist_mask = counts > 0

        def log_softmax_true(log_t: float) -> np.ndarray:
            t = np.exp(log_t)
            head = np.where(finite, top / t, -np.inf)
            tail = np.where(hist_mask, centres / t + log_counts, -np.inf)
            norm = logsumexp(np.concatenate([head, tail], axis=1), axis=1)
            return true_score / t - norm

        if not self.mixture:
            def nll(log_t: float) -> float:
                return -float(np.mean(log_softmax_true(log_t)))

            self.temperature_ = float(np.exp(minimize_scalar(nll, bounds=self.bounds, method="bounded").x))
            return self
        gaps = self._gaps(np.where(finite, top, top[:, :1]))
        self.gap_mean_, self.gap_scale_ = gaps.mean(axis=0), np.maximum(gaps.std(axis=0), 1e-9)
        z = (gaps - self.gap_mean_) / self.gap_scale_
        log_uniform = -np.log(self.n_classes_)

        def nll(theta: np.ndarray) -> float:
            log_t = np.clip(theta[0], *self.bounds)
            logit = theta[1] + z @ theta[2:]
            log_u, log_not_u = -np.logaddexp(0.0, -logit), -np.logaddexp(0.0, logit)
            return -float(np.mean(np.logaddexp(log_not_u + log_softmax_true(log_t), log_u + log_uniform)))

        theta = minimize(nll, np.zeros(2 + z.shape[1]), method="L-BFGS-B").x
        self.temperature_ = float(np.exp(np.clip(theta[0], *self.bounds)))
        self.coef_ = theta[1:]
        return self

    def parts(self, scores: np.ndarray, top: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(softmax(scores / T) as float32, u per row): p(d) = (1 - u) softmax_d + u / n_classes. `top`: the rows'
        best scores, best first (at least the 50 the gaps need), when the caller has them already."""
        scores = np.asarray(scores, dtype=np.float32)
        scaled = scores / np.float32(self.temperature_)
        peak = scaled.max(axis=1, keepdims=True)
        p = np.exp(scaled - peak)
        p /= p.sum(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
        if self.coef_ is None:
            return p, np.zeros(len(p))
        k = min(max(self.GAPS) + 1, scores.shape[1])
        if top is None or top.shape[1] < k:
            top = -np.sort(-np.partition(scores, scores.shape[1] - k, axis=1)[:, scores.shape[1] - k:], axis=1)
        z = (self._gaps(np.asarray(top, dtype=np.float64)) - self.gap_mean_) / self.gap_scale_
        return p, 1.0 / (1.0 + np.exp(-(self.coef_[0] + z @ self.coef_[1:])))

    def log_proba(self, scores: np.ndarray) -> np.ndarray:
        """Rows x classes log probabilities (float32: the scores of a universe are wide)."""
        p, u = self.parts(scores)
        mixed = p * (1.0 - u).astype(np.float32)[:, None] + (u / self.n_classes_).astype(np.float32)[:, None]
        return np.log(np.maximum(mixed, np.finfo(np.float32).tiny))


class TemperatureCalibrated(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Calibrated probabilities of any classifier (matrix or patient-table input).

    method: "temperature" (one scalar: softmax(log p / T)) or "isotonic" (one-vs-rest isotonic regression per
    disease with positives in the held-out fold, a pooled one for the others, rows renormalised).
    refit: after calibrating, refit the estimator on all training rows (the calibrator is kept).
    calibration_report_: ECE / Brier / top-1 on the held-out fold before and after (after is in-sample for the
    calibrator, a check that it fitted, not an unbiased estimate).
    """

    def __init__(self, estimator=None, method: str = "temperature", validation_fraction: float = 0.2,
                 refit: bool = True, random_state=None):
        self.estimator = estimator
        self.method = method
        self.validation_fraction = validation_fraction
        self.refit = refit
        self.random_state = random_state

    def _base(self):
        if self.estimator is None:
            from sklearn.linear_model import LogisticRegression

            return LogisticRegression(max_iter=300)
        return self.estimator

    def fit(self, X, y):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if not isinstance(X, (pd.DataFrame, pd.Series)) and not sparse.issparse(X):
            X = np.asarray(X)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        train, val = stratified_holdout(y, self.validation_fraction, self.random_state)
        self.temperature_ = 1.0
        self.isotonic_ = None
        self.calibration_report_ = {}
        if len(val):
            part = clone(self._base()).fit(take_rows(X, train), y[train])
            proba = part.predict_proba(take_rows(X, val))
            classes = np.asarray(part.classes_)
            position = {c: i for i, c in enumerate(classes)}
            truth = np.asarray([position.get(label, -1) for label in y[val]])
            known = truth >= 0
            proba, truth, y_val = proba[known], truth[known], y[val][known]
            self._fit_calibrator(proba, truth, classes)
            self.calibration_report_ = {"before": calibration_summary(y_val, proba, classes),
                                        "after": calibration_summary(y_val, self._calibrate(proba, classes), classes),
                                        "n_validation": int(len(truth))}
        self.estimator_ = clone(self._base()).fit(X, y) if self.refit or not len(val) else part
        self.classes_ = np.asarray(self.estimator_.classes_)
        if hasattr(self.estimator_, "n_features_in_"):
            self.n_features_in_ = self.estimator_.n_features_in_
        if hasattr(self.estimator_, "feature_names_in_"):
            self.feature_names_in_ = self.estimator_.feature_names_in_
        return self

    def _fit_calibrator(self, proba: np.ndarray, truth: np.ndarray, classes: np.ndarray) -> None:
        if self.method == "temperature":
            self.temperature_ = fit_temperature(np.log(np.clip(proba, 1e-12, 1.0)), truth)
            return
        onehot = np.zeros_like(proba)
        onehot[np.arange(len(truth)), truth] = 1.0
        pooled = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(proba.ravel(), onehot.ravel())
        per_class = {}
        for j, label in enumerate(classes):
            if 0 < onehot[:, j].sum() < len(truth):
                per_class[label] = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
                    proba[:, j], onehot[:, j])
        self.isotonic_ = {"pooled": pooled, "per_class": per_class}

    def _calibrate(self, proba: np.ndarray, classes) -> np.ndarray:
        if self.method == "temperature" or self.isotonic_ is None:
            return softmax(np.log(np.clip(proba, 1e-12, 1.0)) / self.temperature_, axis=1)
        out = np.empty_like(proba, dtype=float)
        for j, label in enumerate(classes):
            model = self.isotonic_["per_class"].get(label, self.isotonic_["pooled"])
            out[:, j] = model.predict(proba[:, j])
        total = out.sum(axis=1, keepdims=True)
        # A row the calibrators flatten to zero everywhere keeps the estimator's probabilities.
        return np.where(total > 0, out / np.where(total > 0, total, 1.0), proba)

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self._calibrate(self.estimator_.predict_proba(X), self.classes_)

    def predict(self, X) -> np.ndarray:
        scores = self.predict_proba(X)
        return self.classes_[np.argmax(scores, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        base = self._base().__sklearn_tags__()
        tags.input_tags = base.input_tags
        return tags


def with_calibration(estimator, calibration: Mapping | None):
    """The estimator wrapped as the model config's `calibration:` node asks ({method, validation_fraction,
    refit, random_state}); unchanged when it is None or empty."""
    if not calibration:
        return estimator
    return TemperatureCalibrated(estimator, **dict(calibration))
