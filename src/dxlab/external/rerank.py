"""Learning to rank from real case reports: a second stage that reorders the ensemble's first candidates.

The ensemble adds its parts with fixed weights. Real case reports can teach how to weigh them case by case: a
broadly annotated or broadly reported disease that explains many findings a little (an "attractor") against one
that explains the key findings well, how far to trust the nearest reference case when the case has few findings,
and so on. The reranker sees, for each case and each of the ensemble's first `n_candidates` diseases, only
disease-agnostic features -- every ranker's score and its distance to the best candidate's, the ensemble's rank,
how much of the disease's annotation the case mentions, how many terms annotate the disease and how many other
publications report it, the number of observed and excluded findings -- never the disease's identity, so what it
learns carries to diseases it was not trained on. It is an XGBoost pairwise ranker (`rank:pairwise`) trained on
the reference cases, whose features are computed leave-publication-out like everything else.

Leave-publication-out all the way: the reference publications are split into `n_folds` folds by a hash of their
id; a query case whose publication is among the reference cases is reranked by the model trained without that
publication's fold, any other case by the model trained on every reference case (the default model). (The
features of a training case may use another publication's cases as neighbours, as the ensemble itself does; the
reranker never sees a disease id, so this cannot teach it a publication's diagnoses.)

A case whose true disease is not among the candidates is out of the reranker's reach: it keeps its rank, below
the candidates, in the ensemble's order.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

FLOOR = -1e3  # stands for -inf (a disease a ranker cannot score) in the features


class TooFewCases(ValueError):
    """Too few reference cases with their disease among the candidates to learn a reranker from."""


@dataclass
class PairContext:
    """What the features need besides the rankers' scores, for one set of cases over one disease universe."""

    groups: np.ndarray  # publication of each case
    n_findings: np.ndarray
    n_excluded: np.ndarray
    mentioned: sparse.csr_matrix  # cases x terms: observed or excluded, closed upwards
    annotation: sparse.csr_matrix  # universe x terms: annotated frequency (0 for a disease without annotations)
    reference_counts: Mapping[str, np.ndarray]  # "cases", "pubs": per disease of the universe, over the reference
    own_counts: Mapping[tuple[str, int], int]  # (publication, disease) -> its reference cases of that publication


def reference_counts(truth: Sequence[str], groups: Sequence[str], universe: Sequence[str]) -> tuple[dict, dict]:
    """Per disease: reference cases and publications; per (publication, disease): that publication's cases."""
    position = {d: i for i, d in enumerate(universe)}
    n_cases = np.zeros(len(universe))
    pubs: dict[int, set] = {}
    own: dict[tuple[str, int], int] = {}
    for disease, group in zip(truth, groups):
        j = position.get(str(disease))
        if j is None:
            continue
        n_cases[j] += 1
        pubs.setdefault(j, set()).add(group)
        own[(group, j)] = own.get((group, j), 0) + 1
    n_pubs = np.zeros(len(universe))
    for j, members in pubs.items():
        n_pubs[j] = len(members)
    return {"cases": n_cases, "pubs": n_pubs}, own


def candidates(ensemble: np.ndarray, n_candidates: int) -> np.ndarray:
    """cases x n_candidates: the ensemble's first diseases, best first (ties in a stable order)."""
    n_candidates = min(n_candidates, ensemble.shape[1])
    top = np.argpartition(-ensemble, n_candidates - 1, axis=1)[:, :n_candidates]
    order = np.argsort(-np.take_along_axis(ensemble, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def pair_features(parts: Mapping[str, np.ndarray], cand: np.ndarray,
                  context: PairContext) -> tuple[np.ndarray, list[str]]:
    """(cases * n_candidates) x features, rows case by case in candidate order, and the feature names."""
    n, c = cand.shape
    rows = np.repeat(np.arange(n), c)
    cols = cand.ravel()
    columns, names = [], []
    for name in sorted(parts):
        value = np.nan_to_num(parts[name][rows, cols].astype(np.float64), nan=FLOOR, neginf=FLOOR, posinf=-FLOOR)
        value = np.maximum(value, FLOOR).reshape(n, c)
        columns += [value.ravel(), (value - value.max(axis=1, keepdims=True)).ravel()]
        names += [name, f"{name}_to_best"]
    columns.append(np.log1p(np.tile(np.arange(c), n)))
    names.append("ensemble_rank")
    annotation = context.annotation
    total = np.asarray(annotation.sum(axis=1)).ravel()
    mass = np.asarray(context.mentioned[rows].multiply(annotation[cols]).sum(axis=1)).ravel()  # pairs only
    columns.append(mass / np.maximum(total[cols], 1e-9))
    names.append("annotation_mentioned")
    columns.append(np.log1p(np.diff(annotation.indptr)[cols]))
    names.append("annotation_terms")
    own = _own_counts(context, rows, cols)
    columns.append(np.log1p(context.reference_counts["cases"][cols] - own))  # leave-publication-out
    names.append("reference_cases")
    columns.append(np.log1p(context.reference_counts["pubs"][cols] - (own > 0)))
    names.append("reference_publications")
    columns += [np.log1p(context.n_findings[rows]), np.log1p(context.n_excluded[rows])]
    names += ["observed_findings", "excluded_findings"]
    return np.column_stack(columns).astype(np.float32), names


def _own_counts(context: PairContext, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Per pair: reference cases of the pair's disease from the case's own publication."""
    if not context.own_counts:
        return np.zeros(len(rows))
    pairs = pd.MultiIndex.from_arrays([np.asarray(context.groups, dtype=object)[rows], cols])
    return pd.Series(context.own_counts, dtype=float).reindex(pairs).fillna(0.0).to_numpy()


def fold_of(groups: Sequence[str], n_folds: int) -> np.ndarray:
    """A publication's fold: a hash of its id, so the same publication lands in the same fold in any file."""
    return np.asarray([zlib.crc32(str(g).encode()) % n_folds for g in groups])


class CaseReranker:
    """XGBoost pairwise ranker over the ensemble's candidates (module docstring)."""

    def __init__(self, n_candidates: int = 50, n_folds: int = 5, n_estimators: int = 200,
                 learning_rate: float = 0.05, max_depth: int = 4, min_child_weight: float = 5.0,
                 subsample: float = 0.8, min_training_cases: int = 50, random_state: int = 0, n_jobs: int = 2):
        self.n_candidates = n_candidates
        self.n_folds = n_folds
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

    def fit(self, parts: Mapping[str, np.ndarray], ensemble: np.ndarray, truth_index: np.ndarray,
            context: PairContext) -> "CaseReranker":
        """Learn from reference cases: `parts` and `ensemble` are their scores (leave-publication-out),
        `truth_index` each case's true disease in the universe (-1 if outside it)."""
        cand = candidates(ensemble, self.n_candidates)
        X, self.features_ = pair_features(parts, cand, context)
        y = (cand == np.asarray(truth_index)[:, None]).ravel().astype(np.float32)
        hit = y.reshape(cand.shape).any(axis=1)  # a case without its truth among the candidates teaches nothing
        if hit.sum() < self.min_training_cases:
            raise TooFewCases(f"{int(hit.sum())} reference cases have their true disease among the ensemble's first "
                             f"{cand.shape[1]} candidates; the reranker needs at least {self.min_training_cases}")
        qid = np.repeat(np.arange(len(cand)), cand.shape[1])
        self.publications_ = set(np.asarray(context.groups))
        fold = fold_of(context.groups, self.n_folds)
        self.models_ = {}
        for k in [None, *range(self.n_folds)]:
            use = hit if k is None else hit & (fold != k)
            rows = np.repeat(use, cand.shape[1])
            # a fold without enough other cases gets no model: its cases keep the ensemble's order
            self.models_[k] = self._model().fit(X[rows], y[rows], qid=qid[rows]) if use.sum() >= 2 else None
        self.n_training_cases_ = int(hit.sum())
        return self

    def importance(self) -> dict[str, float]:
        """Share of the default model's total gain per feature, largest first."""
        gain = self.models_[None].get_booster().get_score(importance_type="total_gain")
        named = {self.features_[int(k[1:])] if k.startswith("f") and k[1:].isdigit() else k: v for k, v in gain.items()}
        total = sum(named.values()) or 1.0
        return {k: v / total for k, v in sorted(named.items(), key=lambda kv: -kv[1])}

    def rerank(self, parts: Mapping[str, np.ndarray], ensemble: np.ndarray, context: PairContext) -> np.ndarray:
        """cases x universe scores: the candidates in the reranker's order above every other disease, which keep the
        ensemble's order (a case of a reference publication is reranked by the model that never saw its fold)."""
        cand = candidates(ensemble, self.n_candidates)
        X, names = pair_features(parts, cand, context)
        if names != self.features_:
            raise ValueError(f"reranker trained on features {self.features_}, given {names}")
        groups = np.asarray(context.groups)
        fold = fold_of(groups, self.n_folds)
        model_of = np.asarray([fold[i] if g in self.publications_ else -1 for i, g in enumerate(groups)])
        margin = -np.tile(np.arange(cand.shape[1], dtype=float), len(cand))  # the ensemble's order
        for k in np.unique(model_of):
            model = self.models_[None if k < 0 else int(k)]
            rows = np.repeat(model_of == k, cand.shape[1])
            if model is not None:
                margin[rows] = model.predict(X[rows])
        margin = margin.reshape(cand.shape)
        out = ensemble.astype(np.float64, copy=True)
        floor = np.take_along_axis(out, cand[:, -1:], axis=1)  # the last candidate's ensemble score
        floor[~np.isfinite(floor)] = 0.0  # every other disease is -inf then
        out[np.arange(len(out))[:, None], cand] = floor + 1.0 + margin - margin.min(axis=1, keepdims=True)
        return out.astype(np.float32)
