"""How well a patient's findings match each disease's HPO annotation profile (no training needed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin

from dxlab.features.terms import TermEncoder, rows_by_table
from dxlab.knowledge.base import Knowledge


def disease_profiles(knowledge: Knowledge, diseases: Sequence[str], encoder: TermEncoder,
                     min_frequency: float = 0.01) -> sparse.csr_matrix:
    """Diseases x terms, each cell the highest annotated frequency among the disease's terms that imply it.

    Annotation sets are closed upwards (a disease with 'Focal seizure' also has 'Seizure'), keeping the largest
    frequency, so a patient recorded with an imprecise parent term still matches.
    """
    ann = knowledge.phenotype_annotations(diseases)
    ann = ann[~ann["negated"] & (ann["frequency"] > 0)]
    row_of = {d: i for i, d in enumerate(diseases)}
    index, anc = encoder.index, encoder.ancestors
    best: dict[tuple[int, int], float] = {}
    for disease, term, freq in zip(ann["disease_id"], ann["hpo_id"], ann["frequency"]):
        j = index.get(term)
        if j is None:
            continue
        i, f = row_of[disease], max(float(freq), min_frequency)
        for a in anc.indices[anc.indptr[j]:anc.indptr[j + 1]]:
            if best.get((i, a), 0.0) < f:
                best[(i, a)] = f
    if not best:
        return sparse.csr_matrix((len(diseases), encoder.n_terms), dtype=np.float32)
    keys = np.array(list(best.keys()))
    return sparse.csr_matrix((np.fromiter(best.values(), dtype=np.float32), (keys[:, 0], keys[:, 1])),
                             shape=(len(diseases), encoder.n_terms))


class KnowledgeScorer(BaseEstimator, TransformerMixin):
    """Information-content-weighted similarity of each patient to each disease, minus excluded-finding conflicts.

    similarity: 'cosine' (IC-weighted cosine of the upward-closed term sets), 'simgic' (shared IC over union IC)
    or 'resnik' (one-way Resnik best-match average, the Phenomizer idea: for each finding, the information
    content of its most informative ancestor that the disease's annotations also imply, averaged over findings).
    frequency_weighted: shared terms count with the disease's annotated frequency, so a finding seen in 90% of
    patients of a disease weighs more than one seen in 5%. excluded_weight: how much an explicitly excluded
    finding that the disease usually shows lowers its score.
    diseases: the diseases to score; None takes the labels seen in fit, "all" every annotated disease.
    """

    def __init__(self, knowledge_dir: str = "data/knowledge", diseases=None, similarity: str = "cosine",
                 frequency_weighted: bool = True, excluded_weight: float = 1.0):
        self.knowledge_dir = knowledge_dir
        self.diseases = diseases
        self.similarity = similarity
        self.frequency_weighted = frequency_weighted
        self.excluded_weight = excluded_weight

    def fit(self, X: pd.DataFrame, y=None, knowledge: Knowledge | None = None):
        if self.similarity not in ("cosine", "simgic", "resnik"):
            raise ValueError(f"similarity must be 'cosine', 'simgic' or 'resnik', got {self.similarity!r}")
        knowledge = knowledge or Knowledge.load(self.knowledge_dir)
        known = set(knowledge.diseases["disease_id"])
        if self.diseases == "all":
            diseases = sorted(known)
        elif self.diseases is not None:
            diseases = list(self.diseases)
        elif y is not None:
            # Labels without annotations (e.g. case reports of diseases newer than the HPO release) cannot be
            # scored from knowledge: they are left out here and count as misses in evaluation.
            diseases = sorted(set(pd.Series(y).dropna().astype(str)) & known)
            if not diseases:
                raise ValueError("none of the training labels is an annotated disease of the knowledge base")
        else:
            raise ValueError("KnowledgeScorer needs labels y or an explicit `diseases` list to know what to score")
        unknown = [d for d in diseases if d not in known]
        if unknown:
            raise ValueError(f"{len(unknown)} disease ids have no HPO annotations, e.g. {unknown[:5]}")
        self.encoder_ = TermEncoder(knowledge)
        self.diseases_ = np.asarray(diseases, dtype=object)
        self.profile_ = disease_profiles(knowledge, diseases, self.encoder_)
        self.profile_binary_ = self.profile_.copy()
        self.profile_binary_.data[:] = 1.0
        ic = self.encoder_.ic
        self.profile_ic_ = np.asarray(self.profile_binary_ @ ic).ravel()
        return self

    def _resnik(self, X: pd.DataFrame) -> np.ndarray:
        # Dense diseases x terms closure, built per call (not pickled): 8k diseases x 19k terms is 150 MB.
        closure = self.profile_binary_.T.tocsr().toarray().astype(bool).T
        ic, anc, index = self.encoder_.ic, self.encoder_.ancestors, self.encoder_.index
        out = np.zeros((len(X), len(self.diseases_)), dtype=np.float32)
        for i, findings in enumerate(X["findings"]):
            terms = {index[t] for t in findings if t in index}
            for q in terms:
                a = anc.indices[anc.indptr[q]:anc.indptr[q + 1]]
                out[i] += (closure[:, a] * ic[a]).max(axis=1)
            out[i] /= max(len(terms), 1)
        return out

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        ic = self.encoder_.ic
        if self.similarity == "resnik":
            score = self._resnik(X)
            return score - self._excluded_penalty(X, np.maximum(score, 1e-6)) if self.excluded_weight else score
        found = self.encoder_.matrix(list(X["findings"]), propagate=True).multiply(ic).tocsr()
        profile = self.profile_ if self.frequency_weighted else self.profile_binary_
        shared = rows_by_table(found, profile)
        patient_ic = np.asarray(found.sum(axis=1), dtype=np.float32)
        if self.similarity == "cosine":
            denom = np.sqrt(np.maximum(patient_ic, 1e-6) * np.maximum(self.profile_ic_, 1e-6)[None, :])
        else:
            overlap = rows_by_table(found, self.profile_binary_)
            denom = np.maximum(patient_ic + self.profile_ic_[None, :] - overlap, 1e-6)
        score = shared / denom
        if self.excluded_weight:
            norm = np.sqrt(np.maximum(patient_ic, 1.0) * np.maximum(self.profile_ic_, 1e-6)[None, :])
            score -= self._excluded_penalty(X, norm)
        return score.astype(np.float32)

    def _excluded_penalty(self, X: pd.DataFrame, norm) -> np.ndarray:
        """Excluded findings the disease usually shows, IC- and frequency-weighted, divided by `norm`."""
        if "excluded" not in X:
            return np.zeros((len(X), len(self.diseases_)), dtype=np.float32)
        excluded = self.encoder_.matrix(list(X["excluded"]), propagate=False).multiply(self.encoder_.ic).tocsr()
        if not excluded.nnz:
            return np.zeros((len(X), len(self.diseases_)), dtype=np.float32)
        conflict = rows_by_table(excluded, self.profile_)
        return (self.excluded_weight * conflict / norm).astype(np.float32)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.asarray([f"knowledge__{d}" for d in self.diseases_], dtype=object)
