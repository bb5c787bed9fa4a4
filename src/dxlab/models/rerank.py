"""The learned reranker of the diagnostic model: reorders the first candidates of the weighted parts.

The parts are added with fixed weights. Labelled cases can teach how to weigh them case by case: a broadly
annotated or broadly reported disease that explains many findings a little (an "attractor") against one that
explains the key findings well, how far to trust the nearest training case when the patient has few findings,
and so on. The reranker sees, for each patient and each of the first `n_candidates` diseases, only
disease-agnostic features -- every part's score and its distance to the best candidate's, the candidate's rank,
how much of the disease's annotation the patient mentions, how many terms annotate the disease and how many
training groups report it, the numbers of observed and excluded findings -- never the disease's identity, so what
it learns carries to diseases it was not trained on. It is an XGBoost pairwise ranker (`rank:pairwise`).

Out-of-fold all the way: the training groups (publications) are split into folds; a training row is reranked by
the model trained without its fold, any other row (a new patient) by the model trained on every row. The features of
a training row are themselves leave-group-out (the diagnostic model computes them so).

A patient whose true disease is not among the candidates is out of the reranker's reach: it keeps its rank, below
the candidates, in the weighted parts' order.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

FLOOR = -1e3  # stands for -inf (a disease a part cannot score) in the features


class TooFewCases(ValueError):
    """Too few training rows with their disease among the candidates to learn a reranker from."""


def candidates(scores: np.ndarray, n_candidates: int) -> np.ndarray:
    """rows x n_candidates: the best-scored diseases, best first (ties in a stable order)."""
    n_candidates = min(n_candidates, scores.shape[1])
    top = np.argpartition(-scores, n_candidates - 1, axis=1)[:, :n_candidates]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def pair_features(parts: Mapping[str, np.ndarray], cand: np.ndarray, annotation_mentioned: np.ndarray,
                  annotation_terms: np.ndarray, reference_cases: np.ndarray, reference_groups: np.ndarray,
                  n_findings: np.ndarray, n_excluded: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """rows x candidates x features, and the feature names. parts: name -> rows x candidates scores (at the
    candidates); the other pair arrays are rows x candidates, the row arrays rows."""
    n, c = cand.shape
    columns, names = [], []
    for name in sorted(parts):
        value = np.nan_to_num(np.asarray(parts[name], dtype=np.float64), nan=FLOOR, neginf=FLOOR, posinf=-FLOOR)
        value = np.maximum(value, FLOOR)
        columns += [value, value - value.max(axis=1, keepdims=True)]
        names += [name, f"{name}_to_best"]
    columns.append(np.broadcast_to(np.log1p(np.arange(c, dtype=float))[None, :], (n, c)))
    names.append("candidate_rank")
    columns += [annotation_mentioned, np.log1p(annotation_terms), np.log1p(reference_cases),
                np.log1p(reference_groups)]
    names += ["annotation_mentioned", "annotation_terms", "reference_cases", "reference_groups"]
    columns += [np.broadcast_to(np.log1p(np.asarray(v, dtype=float))[:, None], (n, c)) for v in (n_findings, n_excluded)]
    names += ["observed_findings", "excluded_findings"]
    return np.stack(columns, axis=2).astype(np.float32), names


class CaseReranker:
    """XGBoost pairwise ranker over the candidates, one model per fold of training groups and a default one."""

    def __init__(self, n_estimators: int = 100, learning_rate: float = 0.1, max_depth: int = 4,
                 min_child_weight: float = 5.0, subsample: float = 0.8, min_training_cases: int = 50,
                 random_state: int = 0, n_jobs: int = 2):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.min_training_cases = min_training_cases
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _model(self):
        import xgboost as xgb

        return xgb.XGBRanker(objective="rank:pairwise", n_estimators=self.n_estimators,
                             learning_rate=self.learning_rate, max_depth=self.max_depth,
                             min_child_weight=self.min_child_weight, subsample=self.subsample,
                             colsample_bytree=0.8, tree_method="hist", n_jobs=self.n_jobs,
                             random_state=self.random_state)

    def fit(self, features: np.ndarray, is_truth: np.ndarray, fold: np.ndarray, names: list[str]) -> "CaseReranker":
        """features: rows x candidates x features; is_truth: rows x candidates, the true disease; fold: each row's
        fold. One model per fold learns without that fold's rows (it reranks that fold); a default model learns
        from every row (it reranks new patients)."""
        n, c, f = features.shape
        self.features_ = list(names)
        hit = is_truth.any(axis=1)  # a row without its truth among the candidates teaches nothing
        if hit.sum() < self.min_training_cases:
            raise TooFewCases(f"{int(hit.sum())} training rows have their true disease among the first {c} "
                              f"candidates; the reranker needs at least {self.min_training_cases}")
        X = features.reshape(n * c, f)
        y = is_truth.reshape(n * c).astype(np.float32)
        qid = np.repeat(np.arange(n), c)
        fold = np.asarray(fold)
        folds = sorted(set(fold[fold >= 0].tolist()))
        self.models_ = {}
        for k in [None, *(folds if len(folds) > 1 else [])]:
            use = hit if k is None else hit & (fold != k)
            rows = np.repeat(use, c)
            # a fold without enough other rows gets no model: its rows keep the parts' order
            self.models_[k] = self._model().fit(X[rows], y[rows], qid=qid[rows]) if use.sum() >= 2 else None
        self.n_training_cases_ = int(hit.sum())
        return self

    def importance(self) -> dict[str, float]:
        """Share of the default model's total gain per feature, largest first."""
        named: dict[str, float] = {}
        for key, value in self.models_[None].get_booster().get_score(importance_type="total_gain").items():
            name = self.features_[int(key[1:])] if key.startswith("f") and key[1:].isdigit() else key
            named[name] = value
        total = sum(named.values()) or 1.0
        return {k: v / total for k, v in sorted(named.items(), key=lambda kv: -kv[1])}

    def margins(self, features: np.ndarray, fold: np.ndarray | None = None) -> np.ndarray:
        """rows x candidates: the reranker's margins; a row of a training fold by the model trained without it
        (never one that saw its fold; none: the parts' order), any other row by the default model."""
        n, c, f = features.shape
        fold = np.full(n, -1) if fold is None else np.asarray(fold)
        margin = -np.tile(np.arange(c, dtype=np.float64), (n, 1))  # no model: the parts' order
        X = features.reshape(n * c, f)
        for k in np.unique(fold):
            rows = fold == k
            model = self.models_.get(None if k < 0 else int(k))
            if model is not None:
                margin[rows] = model.predict(X[np.repeat(rows, c)]).reshape(int(rows.sum()), c)
        return margin


def rerank(scores: np.ndarray, cand: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """rows x universe: the candidates in the reranker's order (its margins) above every other disease, which
    keep their order."""
    out = np.array(scores, dtype=np.float32, copy=True)
    # the candidates' new scores in float64, stored as float32 (the other scores are float32 already)
    floor = np.take_along_axis(out, cand[:, -1:], axis=1).astype(np.float64)  # the last candidate's score
    floor[~np.isfinite(floor)] = 0.0  # every other disease is -inf then
    out[np.arange(len(out))[:, None], cand] = floor + 1.0 + margin - margin.min(axis=1, keepdims=True)
    return out
