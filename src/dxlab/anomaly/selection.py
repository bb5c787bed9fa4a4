"""Label-free detector selection: choose among detectors by how well each finds *synthetic* anomalies.

No labels exist at fit time, so :class:`SelfSupervisedSelector` makes some. It holds out part of the training rows
(treated as normal, although they may hide a few real anomalies), generates synthetic anomalies of ADBench's four
kinds from the rest (Han et al., NeurIPS 2022, section 3.3), fits every candidate on the rest, and measures the
ROC-AUC of each candidate at telling the held-out rows from the synthetic anomalies:

- ``local``: a Gaussian mixture fitted to the rows (components chosen by BIC), sampled with its covariances scaled
  by ``alpha_local`` (5): points near the data but in the wrong density;
- ``global``: uniform in the bounding box of the rows stretched by ``alpha_global`` (10%);
- ``dependency``: every feature drawn independently from its own distribution (kernel density on the feature):
  plausible values, broken relations between features;
- ``clustered``: the mixture sampled with its means scaled by ``alpha_cluster`` (5): groups of anomalies away
  from the data.

The generators work on min-max scaled features, so the kinds mean the same on every table. The mean AUC over the
kinds ranks the candidates; ``top`` of them, z-scored against their training scores and averaged (one: the
detector itself), are then refitted on all training rows. Everything depends on the training rows and the seed
only, so the rule is fixed in advance and runs on tables it has never seen. The table of synthetic AUCs stays in
``selection_`` for the record.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import clone

from dxlab.anomaly.detectors import BaseDetector, EnsembleDetector, make_detector, with_seed

KINDS = ("local", "global", "dependency", "clustered")
DEFAULT_CANDIDATES = ("iforest", "knn", "ecod", "ocsvm", "lof", "mahalanobis")


def synthetic_anomalies(X: np.ndarray, kind: str, n: int, rng: np.random.Generator, *, alpha_local: float = 5.0,
                        alpha_global: float = 0.1, alpha_cluster: float = 5.0, max_components: int = 5,
                        max_fit_rows: int = 5000) -> np.ndarray:
    """``n`` synthetic anomalies of one kind (see the module docstring) in the units of ``X``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    X = np.asarray(X, dtype=float)
    lo, hi = X.min(axis=0), X.max(axis=0)
    span = np.where(hi - lo > 1e-12, hi - lo, 1.0)
    Z = (X - lo) / span
    if kind == "global":
        out = rng.uniform(-alpha_global, 1.0 + alpha_global, size=(n, X.shape[1]))
    elif kind == "dependency":
        cols = []
        for j in range(X.shape[1]):
            values = rng.choice(Z[:, j], size=n, replace=True)
            bandwidth = 1.06 * Z[:, j].std() * len(Z) ** -0.2  # Silverman: a kernel density on the feature
            cols.append(values + rng.normal(0.0, bandwidth, size=n) if bandwidth > 0 else values)
        out = np.column_stack(cols)
    else:
        gmm = _mixture(Z, rng, max_components, max_fit_rows)
        if kind == "local":
            gmm.covariances_ = alpha_local * gmm.covariances_
        else:
            gmm.means_ = alpha_cluster * gmm.means_  # as ADBench: the means scaled, in min-max units
        out, _ = gmm.sample(n)
        out = out[rng.permutation(n)]
    return lo + out * span


def _mixture(Z, rng, max_components, max_fit_rows):
    from sklearn.mixture import GaussianMixture

    rows = Z if len(Z) <= max_fit_rows else Z[rng.choice(len(Z), max_fit_rows, replace=False)]
    seed = int(rng.integers(2**31 - 1))
    best, best_bic = None, np.inf
    for k in range(1, max(1, min(max_components, len(rows) // 10)) + 1):
        gmm = GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=seed).fit(rows)
        bic = gmm.bic(rows)
        if bic < best_bic:
            best, best_bic = gmm, bic
    best.random_state = seed
    return best


class SelfSupervisedSelector(BaseDetector):
    """The ``top`` candidates that best separate held-out training rows from synthetic anomalies, z-scored and
    averaged (see the module docstring). ``candidates``: detector names or ``{name: detector}``."""

    def __init__(self, candidates=None, top: int = 1, kinds=KINDS, holdout: float = 0.3, anomaly_share: float = 0.2,
                 random_state: int | None = 0, threshold: str = "contamination", rate: float = 0.05):
        self.candidates = candidates
        self.top = top
        self.kinds = kinds
        self.holdout = holdout
        self.anomaly_share = anomaly_share
        self.random_state = random_state
        self.threshold = threshold
        self.rate = rate

    _min_samples = 10

    def _candidates(self) -> dict:
        cands = self.candidates if self.candidates is not None else DEFAULT_CANDIDATES
        if isinstance(cands, dict):
            return {str(k): v for k, v in cands.items()}
        return {str(c): make_detector(c) for c in cands}

    def _fit(self, X):
        from sklearn.metrics import roc_auc_score

        if not 1 <= int(self.top):
            raise ValueError(f"top must be at least 1, got {self.top!r}")
        candidates = self._candidates()
        rng = np.random.default_rng(self.random_state)
        order = rng.permutation(len(X))
        n_hold = max(2, int(round(self.holdout * len(X))))
        held, rest = X[order[:n_hold]], X[order[n_hold:]]
        n_synth = max(5, int(round(self.anomaly_share * n_hold)))
        synthetic = {kind: synthetic_anomalies(rest, kind, n_synth, rng) for kind in self.kinds}
        rows = []
        for name, detector in candidates.items():
            detector = clone(detector) if self.random_state is None else with_seed(detector, self.random_state)
            model = detector.fit(rest)
            normal = model.score_samples(held)
            for kind, anomalies in synthetic.items():
                scores = np.concatenate([normal, model.score_samples(anomalies)])
                labels = np.r_[np.zeros(len(normal)), np.ones(len(anomalies))]
                rows.append({"detector": name, "kind": kind, "roc_auc": float(roc_auc_score(labels, scores))})
        table = pd.DataFrame(rows).pivot(index="detector", columns="kind", values="roc_auc")
        table = table.reindex(index=list(candidates), columns=list(self.kinds))
        table["mean"] = table.mean(axis=1)
        self.selection_ = table.sort_values("mean", ascending=False, kind="stable")
        self.selected_ = list(self.selection_.index[: int(self.top)])
        self.ensemble_ = EnsembleDetector({name: candidates[name] for name in self.selected_},
                                          random_state=self.random_state, threshold=self.threshold, rate=self.rate)
        self.ensemble_.fit(X)
        return self.ensemble_.train_scores_

    def _score(self, X):
        return self.ensemble_._score(X)


__all__ = ["KINDS", "SelfSupervisedSelector", "synthetic_anomalies"]
