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
from scipy.special import log_softmax, softmax
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
    """The temperature T minimising the negative log likelihood of softmax(log_proba / T) at the true columns."""
    if not len(truth):
        return 1.0
    truth = np.asarray(truth)
    block = max(1, int(2e7 // max(log_proba.shape[1], 1)))  # rows per block: bounded memory with many classes

    def nll(log_t: float) -> float:
        total = 0.0
        for start in range(0, len(truth), block):
            part = log_softmax(log_proba[start:start + block] / np.exp(log_t), axis=1)
            total += float(part[np.arange(len(part)), truth[start:start + block]].sum())
        return -total / len(truth)

    return float(np.exp(minimize_scalar(nll, bounds=bounds, method="bounded").x))


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
