"""Nearest training rows: a disease scores the similarity of its most similar labelled training rows to the patient.

Similarity is the cosine of IC-weighted, ontology-closed observed findings, with the excluded findings as a second
block weighted `excluded_weight` (reports of one disease examine the same findings). A disease's score is the mean
of its `top_n` best rows (0 for a disease without training rows). A training row of the patient's own group (its
publication) is never used: `scores(X, groups)` is leave-group-out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from dxlab.features.terms import TermEncoder, table_by_rows


class NeighbourScores:
    """Per-disease similarity of the nearest labelled training rows (see the module docstring)."""

    def __init__(self, top_n: int = 1, excluded_weight: float = 1.0, batch: int = 512):
        self.top_n = top_n
        self.excluded_weight = excluded_weight
        self.batch = batch

    def fit(self, encoder: TermEncoder, n_classes: int, X: pd.DataFrame, label: np.ndarray,
            groups: Sequence[str]) -> "NeighbourScores":
        """label: each row's disease as an index into the universe (-1: not a training row for this part)."""
        self.encoder_ = encoder
        self.n_classes_ = int(n_classes)
        label = np.asarray(label)
        keep = label >= 0
        self.reference_ = self.embed(X[keep]) if keep.any() else sparse.csr_matrix((0, self._width()))
        self.groups_ = np.asarray(groups, dtype=object)[keep]
        self.label_ = label[keep]
        # rows sorted by disease, for a per-disease max over a row block
        order = np.argsort(self.label_, kind="stable")
        self.order_ = order
        self.diseases_, starts = np.unique(self.label_[order], return_index=True)
        self.starts_ = starts
        return self

    def _width(self) -> int:
        return self.encoder_.n_terms * (2 if self.excluded_weight else 1)

    def embed(self, X: pd.DataFrame) -> sparse.csr_matrix:
        """Rows: IC-weighted findings (propagated) beside IC-weighted excluded findings, L2-normalised (float32)."""
        ic = self.encoder_.ic
        found = self.encoder_.matrix(list(X["findings"]), propagate=True)
        found.data = ic[found.indices].astype(np.float32)
        m = found
        if self.excluded_weight:
            excluded = self.encoder_.matrix(list(X["excluded"]) if "excluded" in X else [[]] * len(X),
                                            propagate=False)
            excluded.data = (ic[excluded.indices] * np.float32(self.excluded_weight)).astype(np.float32)
            m = sparse.hstack([found, excluded], format="csr")
        row = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
        norms = np.sqrt(np.bincount(row, weights=m.data.astype(np.float64) ** 2, minlength=m.shape[0]))
        m.data = (m.data / np.maximum(norms, 1e-9)[row]).astype(np.float32)
        m.eliminate_zeros()  # terms without information (the root): no weight, and in every reference case
        return m

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_sorted_cache", None)  # derived at first use
        return state

    def _sorted(self) -> tuple[sparse.csr_matrix, np.ndarray]:
        """The reference rows and their groups in disease order (computed once: a product over sorted rows needs
        no gather of its result)."""
        if getattr(self, "_sorted_cache", None) is None:
            self._sorted_cache = (self.reference_[self.order_], self.groups_[self.order_])
        return self._sorted_cache

    def _best(self, sim: np.ndarray) -> np.ndarray:
        """Diseases x patients: the mean of each disease's top_n rows of `sim` (rows in disease order). For many
        patients, a row per disease is a copy and a disease with several rows takes its maximum over a contiguous
        slice (a Python loop over those diseases: ten times faster than `np.maximum.reduceat` along rows for 256
        patients); for a few patients the loop's per-disease overhead dominates and reduceat is faster (measured)."""
        ends = np.r_[self.starts_[1:], sim.shape[0]]
        if self.top_n != 1:
            return np.stack([np.sort(sim[s:e], axis=0)[-self.top_n:].mean(axis=0)
                             for s, e in zip(self.starts_, ends)], axis=0)
        if sim.shape[1] < 16:
            return np.maximum.reduceat(sim, self.starts_, axis=0)
        lengths = ends - self.starts_
        best = np.empty((len(self.starts_), sim.shape[1]), dtype=sim.dtype)
        single = lengths == 1
        best[single] = sim[self.starts_[single]]
        for i in np.flatnonzero(~single):
            np.max(sim[self.starts_[i]:ends[i]], axis=0, out=best[i])
        return best

    def scores(self, X: pd.DataFrame, groups: Sequence[str] | None = None) -> np.ndarray:
        """Rows x universe similarity scores (0 for diseases without training rows)."""
        out = np.zeros((len(X), self.n_classes_), dtype=np.float32)
        if not len(self.label_) or not len(X):
            return out
        query = self.embed(X)
        reference, reference_groups = self._sorted()
        groups = None if groups is None else np.asarray(groups, dtype=object)
        for start in range(0, len(X), self.batch):
            # reference cases (in disease order) x patients: each disease's cases are contiguous rows
            sim = table_by_rows(reference, query[start:start + self.batch])
            if groups is not None:  # leave-group-out
                sim[reference_groups[:, None] == groups[None, start:start + self.batch]] = 0.0
            out[start:start + self.batch, self.diseases_] = self._best(sim).T
        return out
