"""Where the true disease lands: the one rank, top-k and reciprocal-rank implementation of dxlab.

One tie rule for the whole project: diseases with the same score share the mean of the ranks they span, so a tie
never earns credit from a lucky order (two diseases tied first both rank 1.5: neither is a top-1 hit). A true
disease the model does not know (not among its classes) has rank inf: a miss at every k, reciprocal rank 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MISSING_RANK = np.inf


def true_columns(classes: Sequence[str], truth: Sequence[str]) -> np.ndarray:
    """Column of each true label among `classes`; -1 when absent."""
    position = {c: i for i, c in enumerate(classes)}
    return np.fromiter((position.get(t, -1) for t in truth), dtype=np.int64, count=len(truth))


def ranks_at(scores: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """1-based rank of column `columns[i]` in row i of `scores` (ties share the mean rank; -1 columns: inf)."""
    scores = np.asarray(scores)
    columns = np.asarray(columns)
    ranks = np.full(len(columns), MISSING_RANK)
    present = np.flatnonzero(columns >= 0)
    if len(present):
        value = scores[present, columns[present]][:, None]
        rows = scores[present]
        greater = (rows > value).sum(axis=1)
        ties = (rows == value).sum(axis=1)  # the true column itself included
        ranks[present] = greater + (ties + 1) / 2
    return ranks


def rank_of_truth(scores: np.ndarray, classes: Sequence[str], truth: Sequence[str]) -> np.ndarray:
    """1-based rank of each row's true disease among `classes` (see the module docstring)."""
    return ranks_at(scores, true_columns(list(classes), list(truth)))


def top_k(ranks: np.ndarray, k: int) -> float | None:
    """Share of rows whose true disease ranks k or better (None for no rows)."""
    ranks = np.asarray(ranks, dtype=float)
    return float(np.mean(ranks <= k)) if len(ranks) else None


def mean_reciprocal_rank(ranks: np.ndarray) -> float | None:
    ranks = np.asarray(ranks, dtype=float)
    return float(np.mean(np.where(np.isfinite(ranks), 1.0 / ranks, 0.0))) if len(ranks) else None


def ranking_metrics(ranks: np.ndarray, covered: np.ndarray | None = None, ks=(1, 3, 10)) -> dict:
    """top-k and mean reciprocal rank over all rows (unknown diseases are misses), and over covered rows."""
    ranks = np.asarray(ranks, dtype=float)
    covered = np.isfinite(ranks) if covered is None else np.asarray(covered, dtype=bool)
    out: dict = {"n_cases": int(len(ranks))}
    for k in ks:
        out[f"top{k}"] = top_k(ranks, k)
    out["mrr"] = mean_reciprocal_rank(ranks)
    out["n_covered"] = int(covered.sum())
    for k in ks:
        out[f"covered_top{k}"] = top_k(ranks[covered], k) if covered.any() else None
    finite = ranks[np.isfinite(ranks)]
    out["median_rank_covered"] = float(np.median(finite)) if len(finite) else None
    return out
