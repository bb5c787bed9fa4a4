"""Rank-of-the-true-disease metrics for ranking every known disease (external validation)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MISSING_RANK = np.inf


def rank_of_truth(scores: np.ndarray, classes: Sequence[str], truth: Sequence[str]) -> np.ndarray:
    """1-based rank of each case's true disease; ties share the mean rank (no credit for a lucky tie-break);
    a disease the ranker does not know gets rank inf (a miss)."""
    position = {c: i for i, c in enumerate(classes)}
    ranks = np.full(len(truth), MISSING_RANK)
    for i, disease in enumerate(truth):
        j = position.get(disease)
        if j is None:
            continue
        row = scores[i]
        greater = int((row > row[j]).sum())
        ties = int((row == row[j]).sum())  # includes the disease itself
        ranks[i] = greater + (ties + 1) / 2
    return ranks


def ranking_metrics(ranks: np.ndarray, covered: np.ndarray | None = None, ks=(1, 3, 10)) -> dict:
    """top-k and mean reciprocal rank over all cases (unknown diseases are misses), and over covered cases."""
    ranks = np.asarray(ranks, dtype=float)
    covered = np.isfinite(ranks) if covered is None else np.asarray(covered, dtype=bool)
    out: dict = {"n_cases": int(len(ranks))}
    for k in ks:
        out[f"top{k}"] = float(np.mean(ranks <= k)) if len(ranks) else None
    out["mrr"] = float(np.mean(np.where(np.isfinite(ranks), 1.0 / ranks, 0.0))) if len(ranks) else None
    out["n_covered"] = int(covered.sum())
    for k in ks:
        out[f"covered_top{k}"] = float(np.mean(ranks[covered] <= k)) if covered.any() else None
    finite = ranks[np.isfinite(ranks)]
    out["median_rank_covered"] = float(np.median(finite)) if len(finite) else None
    return out
