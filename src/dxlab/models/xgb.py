"""Gradient-boosted trees (xgboost, CPU hist) as a classifier over any labels, e.g. disease ids."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from dxlab.models.calibration import stratified_holdout


class XGBLabelClassifier(ClassifierMixin, BaseEstimator):
    """xgboost's XGBClassifier wants labels 0..K-1: this encodes any labels, and adds class weights.

    class_weight: None, "balanced" (sample weights inversely proportional to class counts) or {label: weight},
    multiplied with a sample_weight given to fit. early_stopping_rounds: None trains n_estimators rounds; a
    number holds out a stratified validation fold (validation_fraction; single-patient diseases stay in
    training) and stops when its log loss has not improved for that many rounds. Dense or scipy-sparse input
    (absent sparse cells are missing values to xgboost, which learns a default direction for them); NaN allowed.
    """

    def __init__(self, n_estimators: int = 50, max_depth: int = 4, learning_rate: float = 0.3,
                 subsample: float = 0.5, colsample_bytree: float = 0.3, min_child_weight: float = 1.0,
                 reg_lambda: float = 1.0, max_bin: int = 32, class_weight=None, early_stopping_rounds=None,
                 validation_fraction: float = 0.1, n_jobs: int = 2, random_state=None):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.max_bin = max_bin
        self.class_weight = class_weight
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None):
        from xgboost import XGBClassifier

        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], ensure_all_finite="allow-nan",
                             dtype=[np.float32, np.float64])
        check_classification_targets(y)
        self.label_encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.label_encoder_.classes_
        if len(self.classes_) < 2:
            raise ValueError(f"XGBLabelClassifier needs samples of at least 2 classes in the data, got "
                             f"{len(self.classes_)} class")
        codes = self.label_encoder_.transform(y)
        weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        if self.class_weight is not None:  # "balanced" or {label: weight}
            weight = weight * compute_sample_weight(self.class_weight, y)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        self.model_ = XGBClassifier(
            n_estimators=self.n_estimators, max_depth=self.max_depth, learning_rate=self.learning_rate,
            subsample=self.subsample, colsample_bytree=self.colsample_bytree,
            min_child_weight=self.min_child_weight, reg_lambda=self.reg_lambda, max_bin=self.max_bin,
            tree_method="hist", device="cpu", n_jobs=self.n_jobs, random_state=seed,
            early_stopping_rounds=self.early_stopping_rounds or None)
        train, val = (stratified_holdout(codes, self.validation_fraction, seed) if self.early_stopping_rounds
                      else (np.arange(len(codes)), np.zeros(0, dtype=int)))
        if len(val):
            self.model_.fit(X[train], codes[train], sample_weight=weight[train],
                            eval_set=[(X[val], codes[val])], verbose=False)
        else:
            self.model_.set_params(early_stopping_rounds=None)
            self.model_.fit(X, codes, sample_weight=weight, verbose=False)
        self.n_estimators_ = int(self.model_.best_iteration + 1) if len(val) else self.n_estimators
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, accept_sparse=["csr", "csc"], ensure_all_finite="allow-nan",
                          dtype=[np.float32, np.float64])
        return self.model_.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        scores = self.predict_proba(X)
        return self.classes_[np.argmax(scores, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.allow_nan = True
        return tags
