"""A weighted ensemble of a learned model and knowledge-based rankers, combined in log-probability space."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.pipeline import Pipeline
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from dxlab.models.calibration import fit_temperature, stratified_holdout, take_rows

CRITERIA = ("log_loss", "top1", "top3")


def aligned_log_proba(model, X, classes: np.ndarray) -> np.ndarray:
    """log predict_proba over `classes`; a class the model does not know gets the row's lowest log probability."""
    logp = np.log(np.clip(model.predict_proba(X), 1e-12, 1.0))
    out = np.repeat(logp.min(axis=1, keepdims=True), len(classes), axis=1)
    position = {c: i for i, c in enumerate(classes)}
    out[:, [position[c] for c in np.asarray(model.classes_).astype(str)]] = logp
    return out


class WeightedEnsemble(ClassifierMixin, BaseEstimator):
    """Input: the canonical patient table. log p(d) = sum_m w_m log p_m(d), renormalised (softmax / T).

    Members: `learned` (a classifier over the features of `featurizer`, both fitted here on the patients; no
    featurizer: the classifier takes the patients itself) and `rankers` (name -> patient-level estimator, e.g.
    KnowledgeRanker, BayesDiseaseRanker). Classes are the union of the members' classes.
    weights: "fit" chooses them from `weight_grid` (every combination) on a stratified held-out fold by
    `criterion` ("log_loss"; "top1" / "top3" with log loss breaking ties), patients weighted by the inverse of
    their disease's count in the fold when `balanced` (rare diseases count as much as common ones); then the
    members are refitted on all patients. Or a mapping name -> weight ("learned" for the learned member).
    The temperature T is fitted on the held-out fold for the chosen weights (1 with fixed weights).
    """

    def __init__(self, featurizer=None, learned=None, rankers=None, weights="fit",
                 weight_grid=(0.0, 0.25, 0.5, 1.0, 2.0), criterion: str = "log_loss", balanced: bool = True,
                 validation_fraction: float = 0.2, random_state=None):
        self.featurizer = featurizer
        self.learned = learned
        self.rankers = rankers
        self.weights = weights
        self.weight_grid = weight_grid
        self.criterion = criterion
        self.balanced = balanced
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    def _members(self) -> dict:
        members = {}
        if self.learned is not None:
            members["learned"] = (Pipeline([("features", clone(self.featurizer)), ("classifier", clone(self.learned))])
                                  if self.featurizer is not None else clone(self.learned))
        for name, ranker in dict(self.rankers or {}).items():
            if ranker is not None:
                members[str(name)] = clone(ranker)
        if not members:
            raise ValueError("WeightedEnsemble needs a learned model or at least one ranker")
        return members

    def fit(self, X: pd.DataFrame, y):
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {self.criterion!r}")
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        y = y.astype(str)
        members = self._members()
        self.temperature_ = 1.0
        self.selection_ = {}
        if isinstance(self.weights, str):
            if self.weights != "fit":
                raise ValueError(f"weights must be 'fit' or a mapping, got {self.weights!r}")
            self.weights_ = {name: 1.0 for name in members}
            train, val = stratified_holdout(y, self.validation_fraction, self.random_state)
            if len(val) and len(members) > 1:
                self._choose_weights(members, X, y, train, val)
        else:
            weights = dict(self.weights)
            unknown = set(weights) - set(members)
            if unknown:
                raise ValueError(f"weights for members that do not exist: {sorted(unknown)}")
            self.weights_ = {name: float(weights.get(name, 0.0)) for name in members}
        self.members_ = {name: member.fit(X, y) for name, member in members.items() if self.weights_[name] > 0}
        self.classes_ = np.asarray(sorted(set().union(*[set(np.asarray(m.classes_).astype(str))
                                                         for m in self.members_.values()])), dtype=object)
        return self

    def _choose_weights(self, members: dict, X, y, train, val) -> None:
        x_train, x_val = take_rows(X, train), take_rows(X, val)
        fitted = {name: clone(m).fit(x_train, y[train]) for name, m in members.items()}
        classes = np.asarray(sorted(set().union(*[set(np.asarray(m.classes_).astype(str))
                                                   for m in fitted.values()])), dtype=object)
        names = list(fitted)
        logp = np.stack([aligned_log_proba(fitted[n], x_val, classes) for n in names])
        position = {c: i for i, c in enumerate(classes)}
        truth = np.asarray([position.get(label, -1) for label in y[val]])
        keep = truth >= 0
        logp, truth = logp[:, keep], truth[keep]
        rows = np.arange(len(truth))
        if self.balanced:
            counts = pd.Series(truth).value_counts()
            patient_weight = 1.0 / pd.Series(truth).map(counts).to_numpy(dtype=float)
        else:
            patient_weight = np.ones(len(truth))
        patient_weight /= patient_weight.sum()
        best_key, best = None, None
        for combo in itertools.product([float(w) for w in self.weight_grid], repeat=len(names)):
            if not any(combo):
                continue
            combined = np.tensordot(np.asarray(combo), logp, axes=1)
            log_loss = -float(log_softmax(combined, axis=1)[rows, truth] @ patient_weight)
            if self.criterion == "log_loss":
                key = (log_loss,)
            else:
                k = int(self.criterion[3:])
                rank = (combined > combined[rows, truth][:, None]).sum(axis=1)
                key = (-float((rank < k) @ patient_weight), log_loss)
            if best_key is None or key < best_key:
                best_key, best = key, combo
        self.weights_ = dict(zip(names, best))
        combined = np.tensordot(np.asarray(best), logp, axes=1)
        self.temperature_ = fit_temperature(combined, truth)
        self.selection_ = {"criterion": self.criterion, "value": float(best_key[0]), "n_validation": int(len(truth)),
                           "weights": dict(self.weights_), "temperature": self.temperature_}

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Weighted sum of the members' log probabilities over classes_ (before the temperature)."""
        check_is_fitted(self, "members_")
        total = np.zeros((len(X), len(self.classes_)))
        for name, member in self.members_.items():
            total += self.weights_[name] * aligned_log_proba(member, X, self.classes_)
        return total

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return softmax(self.decision_function(X) / self.temperature_, axis=1)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        scores = self.decision_function(X)
        return self.classes_[np.argmax(scores, axis=1)]

