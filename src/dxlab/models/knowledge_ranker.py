"""The knowledge ranker: scores every disease from its HPO annotations alone, with no training patients."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin

from dxlab.features.knowledge_scores import KnowledgeScorer


class KnowledgeRanker(ClassifierMixin, BaseEstimator):
    """Softmax over KnowledgeScorer similarities. Input: the canonical patient table.

    temperature: a number, or "fit" to choose it by maximum likelihood on the training patients (the only
    thing fit learns from them, so the ranking itself never depends on training data).
    diseases: None ranks the diseases of the training labels; "all" every annotated disease.
    """

    def __init__(self, knowledge_dir: str = "data/knowledge", diseases=None, similarity: str = "cosine",
                 frequency_weighted: bool = True, excluded_weight: float = 1.0, temperature="fit"):
        self.knowledge_dir = knowledge_dir
        self.diseases = diseases
        self.similarity = similarity
        self.frequency_weighted = frequency_weighted
        self.excluded_weight = excluded_weight
        self.temperature = temperature

    def fit(self, X: pd.DataFrame, y=None):
        self.scorer_ = KnowledgeScorer(self.knowledge_dir, self.diseases, self.similarity,
                                       self.frequency_weighted, self.excluded_weight).fit(X, y)
        self.classes_ = self.scorer_.diseases_
        if self.temperature == "fit" and y is not None:
            scores = self.scorer_.transform(X)
            position = {d: i for i, d in enumerate(self.classes_)}
            idx = np.array([position.get(str(label), -1) for label in y])
            keep = idx >= 0
            scores, idx = scores[keep], idx[keep]

            def nll(log_t: float) -> float:
                logp = log_softmax(scores / np.exp(log_t), axis=1)
                return -float(logp[np.arange(len(idx)), idx].mean())

            self.temperature_ = float(np.exp(minimize_scalar(nll, bounds=(-6, 2), method="bounded").x))
        else:
            self.temperature_ = float(self.temperature) if self.temperature != "fit" else 0.05
        return self

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        return self.scorer_.transform(X)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return softmax(self.decision_function(X) / self.temperature_, axis=1)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]
