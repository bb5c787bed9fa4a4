"""From the canonical patient table to a sparse feature matrix; fitted on training patients only."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from dxlab.features.knowledge_scores import KnowledgeScorer
from dxlab.features.terms import TermEncoder
from dxlab.knowledge.base import Knowledge


def age_band(age: float, edges: Sequence[float]) -> str:
    if age is None or age != age:
        return "missing"
    for lo, hi in zip(edges[:-1], edges[1:]):
        if lo <= age < hi:
            return f"{lo:g}-{hi:g}"
    return f"{edges[-1]:g}+"


class PatientFeaturizer(BaseEstimator, TransformerMixin):
    """Blocks of features, each optional:

    - findings: observed findings propagated up the ontology (binary, terms seen >= min_term_count times);
    - excluded: explicitly excluded findings (binary);
    - history: medical-history codes (binary);
    - tabular: age (median-imputed, missing flag, scaled), age band, sex, family history (one-hot incl.
      missing), numeric measurements (imputed, scaled), per-row counts and information-content aggregates;
    - knowledge: KnowledgeScorer similarity of the patient to each training disease's annotation profile.
    """

    def __init__(self, knowledge_dir: str = "data/knowledge", vocabulary: str = "hpo", min_term_count: int = 2,
                 use_excluded: bool = True, use_history: bool = True, use_knowledge_scores: bool = True,
                 knowledge_scale: float = 5.0, age_bands: Sequence[float] = (0, 1, 6, 12, 18, 40, 65),
                 similarity: str = "cosine", excluded_weight: float = 1.0):
        self.knowledge_dir = knowledge_dir
        self.vocabulary = vocabulary
        self.min_term_count = min_term_count
        self.use_excluded = use_excluded
        self.use_history = use_history
        self.use_knowledge_scores = use_knowledge_scores
        self.knowledge_scale = knowledge_scale
        self.age_bands = age_bands
        self.similarity = similarity
        self.excluded_weight = excluded_weight

    # -- fitting -------------------------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y=None):
        ontology = self.vocabulary == "hpo"
        knowledge = Knowledge.load(self.knowledge_dir) if ontology else None
        codes = {c for col in ("findings", "excluded") for terms in X[col] for c in terms}
        self.encoder_ = TermEncoder(knowledge) if ontology else TermEncoder(codes=codes)
        found = self.encoder_.matrix(list(X["findings"]), propagate=True)
        counts = np.asarray(found.sum(axis=0)).ravel()
        self.finding_columns_ = np.flatnonzero(counts >= self.min_term_count)
        # Dataset aggregate: how common each term is among training patients (log share), for rarity features.
        self.term_log_share_ = np.log((counts + 1.0) / (len(X) + 1.0)).astype(np.float32)
        if self.use_excluded:
            excluded = self.encoder_.matrix(list(X["excluded"]), propagate=False)
            ex_counts = np.asarray(excluded.sum(axis=0)).ravel()
            self.excluded_columns_ = np.flatnonzero(ex_counts >= self.min_term_count)
        if self.use_history:
            seen = pd.Series([c for codes in X["history"] for c in codes]).value_counts()
            self.history_codes_ = np.asarray(sorted(seen[seen >= self.min_term_count].index), dtype=object)
        self.measurement_names_ = sorted({k for m in X["measurements"] for k in (m or {})})
        tab = self._tabular(X)
        numeric = [c for c in tab.columns if c not in ("sex", "family_history", "age_band")]
        self.tabular_ = ColumnTransformer([
            ("numeric", Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True,
                                                           keep_empty_features=True)),
                                  ("scale", StandardScaler())]), numeric),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), ["sex", "family_history", "age_band"]),
        ], sparse_threshold=1.0).fit(tab)
        if self.use_knowledge_scores and ontology and y is not None:
            self.scorer_ = KnowledgeScorer(self.knowledge_dir, similarity=self.similarity,
                                           excluded_weight=self.excluded_weight).fit(X, y, knowledge=knowledge)
        else:
            self.scorer_ = None
        self.n_features_out_ = len(self.get_feature_names_out())
        return self

    def _tabular(self, X: pd.DataFrame) -> pd.DataFrame:
        found = self.encoder_.matrix(list(X["findings"]), propagate=False).tocsr()
        ic = found.multiply(self.encoder_.ic).tocsr()
        n_found = np.asarray(found.sum(axis=1)).ravel()
        ic_sum = np.asarray(ic.sum(axis=1)).ravel()
        ic_max = np.asarray(ic.max(axis=1).todense()).ravel()
        share = found.multiply(self.term_log_share_).tocsr()
        tab = pd.DataFrame({
            "age": X["age"].astype(float).to_numpy(),
            "n_findings": n_found,
            "n_excluded": X["excluded"].map(len).to_numpy(dtype=float),
            "n_history": X["history"].map(len).to_numpy(dtype=float),
            "findings_ic_sum": ic_sum,
            "findings_ic_max": ic_max,
            "findings_ic_mean": np.divide(ic_sum, n_found, out=np.zeros_like(ic_sum), where=n_found > 0),
            "findings_mean_log_share": np.divide(np.asarray(share.sum(axis=1)).ravel(), n_found,
                                                 out=np.zeros_like(ic_sum), where=n_found > 0),
        })
        for name in self.measurement_names_:
            tab[f"measurement_{name}"] = [float((m or {}).get(name, np.nan)) for m in X["measurements"]]
        tab["sex"] = X["sex"].fillna("missing").astype(str).to_numpy()
        tab["family_history"] = X["family_history"].map(
            lambda v: "missing" if v != v else ("yes" if v >= 0.5 else "no")).to_numpy()
        tab["age_band"] = [age_band(a, self.age_bands) for a in X["age"]]
        return tab

    # -- transforming --------------------------------------------------------------------------------------
    def transform(self, X: pd.DataFrame) -> sparse.csr_matrix:
        blocks = [self.encoder_.matrix(list(X["findings"]), propagate=True)[:, self.finding_columns_]]
        if self.use_excluded:
            blocks.append(self.encoder_.matrix(list(X["excluded"]), propagate=False)[:, self.excluded_columns_])
        if self.use_history:
            index = {c: i for i, c in enumerate(self.history_codes_)}
            rows, cols = [], []
            for i, codes in enumerate(X["history"]):
                for c in codes:
                    if c in index:
                        rows.append(i)
                        cols.append(index[c])
            blocks.append(sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                                            shape=(len(X), len(index))))
        blocks.append(sparse.csr_matrix(self.tabular_.transform(self._tabular(X)), dtype=np.float32))
        if self.scorer_ is not None:
            blocks.append(sparse.csr_matrix(self.knowledge_scale * self.scorer_.transform(X)))
        return sparse.hstack(blocks, format="csr", dtype=np.float32)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        names = [f"finding__{t}" for t in self.encoder_.term_ids[self.finding_columns_]]
        if self.use_excluded:
            names += [f"excluded__{t}" for t in self.encoder_.term_ids[self.excluded_columns_]]
        if self.use_history:
            names += [f"history__{c}" for c in self.history_codes_]
        names += [f"tabular__{n}" for n in self.tabular_.get_feature_names_out()]
        if self.scorer_ is not None:
            names += list(self.scorer_.get_feature_names_out())
        return np.asarray(names, dtype=object)
