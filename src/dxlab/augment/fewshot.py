"""Few-shot learning for diseases with a handful of patients: a prototypical network (Snell et al. 2017).

`PrototypicalClassifier` is a scikit-learn classifier on the feature matrix: an embedding network trained on
episodes (a few diseases, 1 to `max_shot` support patients each, query patients to classify by their distance
to the support means), then one prototype per disease, the mean embedding of all its training patients, so
a disease with one training patient still has a prototype. predict_proba is the softmax of the negative
squared distances. `PrototypeBlend` mixes it with another classifier (`augment=fewshot`), and
`few_shot_report` scores predictions on the test patients whose disease has 1 to 5 training patients.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from dxlab.augment import torch_threads

log = logging.getLogger(__name__)


def _dense(X, rows=None) -> np.ndarray:
    part = X if rows is None else X[rows]
    return np.asarray(part.toarray() if sparse.issparse(part) else part, dtype=np.float32)


def _softmax_neg(distances: np.ndarray, temperature: float) -> np.ndarray:
    logits = -distances / temperature
    logits -= logits.max(axis=1, keepdims=True)
    proba = np.exp(logits)
    return proba / proba.sum(axis=1, keepdims=True)


class PrototypicalClassifier(ClassifierMixin, BaseEstimator):
    """Prototypical network head (PyTorch, CPU) with the scikit-learn classifier interface."""

    pip_requires = ("torch",)

    def __init__(self, hidden: int = 256, embedding_dim: int = 64, dropout: float = 0.2, episodes: int = 800,
                 n_way: int = 30, max_shot: int = 5, n_query: int = 5, lr: float = 1e-3,
                 weight_decay: float = 1e-4, temperature: float = 1.0, batch_size: int = 1024,
                 n_threads: int | None = 1, random_state: int | None = 0):
        self.hidden = hidden
        self.embedding_dim = embedding_dim
        self.dropout = dropout
        self.episodes = episodes
        self.n_way = n_way
        self.max_shot = max_shot
        self.n_query = n_query
        self.lr = lr
        self.weight_decay = weight_decay
        self.temperature = temperature
        self.batch_size = batch_size
        self.n_threads = n_threads
        self.random_state = random_state

    def fit(self, X, y):
        import torch
        from torch import nn

        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=np.float32)
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        rows_of = [np.flatnonzero(y_index == c) for c in range(len(self.classes_))]
        episodic = np.array([c for c, rows in enumerate(rows_of) if len(rows) >= 2])
        rng = check_random_state(self.random_state)
        with torch.random.fork_rng(devices=[]), torch_threads(self.n_threads):
            torch.manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
            self.embedder_ = nn.Sequential(nn.Linear(X.shape[1], self.hidden), nn.ReLU(), nn.Dropout(self.dropout),
                                           nn.Linear(self.hidden, self.embedding_dim))
            optimiser = torch.optim.Adam(self.embedder_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            self.loss_history_ = []
            if len(episodic) < 2:
                log.warning("PrototypicalClassifier: fewer than 2 classes with 2+ rows, no episodic training")
            for _ in range(self.episodes if len(episodic) >= 2 else 0):
                loss = self._episode(X, rows_of, episodic, rng, optimiser)
                self.loss_history_.append(loss)
        self.embedder_.eval()
        embedded = self._embed(X)
        self.prototypes_ = np.stack([embedded[rows].mean(axis=0) for rows in rows_of]).astype(np.float32)
        return self

    def _episode(self, X, rows_of, episodic, rng, optimiser) -> float:
        import torch
        import torch.nn.functional as F

        self.embedder_.train()
        ways = rng.choice(episodic, size=min(self.n_way, len(episodic)), replace=False)
        shot = int(rng.randint(1, self.max_shot + 1))
        support, support_way, query, query_way = [], [], [], []
        for w, c in enumerate(ways):
            rows = rng.permutation(rows_of[c])
            n_support = min(shot, len(rows) - 1)  # keep at least one query
            n_query = min(self.n_query, len(rows) - n_support)
            support.extend(rows[:n_support])
            support_way.extend([w] * n_support)
            query.extend(rows[n_support:n_support + n_query])
            query_way.extend([w] * n_query)
        embedded = self.embedder_(torch.from_numpy(_dense(X, np.asarray(support + query))))
        support_emb, query_emb = embedded[:len(support)], embedded[len(support):]
        support_way_t = torch.tensor(support_way)
        sums = torch.zeros(len(ways), embedded.shape[1]).index_add(0, support_way_t, support_emb)
        prototypes = sums / torch.bincount(support_way_t, minlength=len(ways)).unsqueeze(1)
        logits = -torch.cdist(query_emb, prototypes).pow(2) / self.temperature
        loss = F.cross_entropy(logits, torch.tensor(query_way))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        return float(loss.detach())

    def _embed(self, X) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for start in range(0, X.shape[0], self.batch_size):
                rows = np.arange(start, min(start + self.batch_size, X.shape[0]))
                out.append(self.embedder_(torch.from_numpy(_dense(X, rows))).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.embedding_dim), dtype=np.float32)

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float32, reset=False)
        embedded = self._embed(X)
        distances = ((embedded[:, None, :] - self.prototypes_[None, :, :]) ** 2).sum(axis=2)
        return _softmax_neg(distances, self.temperature)

    def predict(self, X) -> np.ndarray:
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class PrototypeBlend(ClassifierMixin, BaseEstimator):
    """(1 - weight) x the base classifier's probabilities + weight x a prototypical network's."""

    pip_requires = ("torch",)

    def __init__(self, base=None, protonet=None, weight: float = 0.5):
        self.base = base
        self.protonet = protonet
        self.weight = weight

    def fit(self, X, y):
        self.base_ = clone(self.base).fit(X, y)
        self.protonet_ = clone(self.protonet if self.protonet is not None else PrototypicalClassifier()).fit(X, y)
        self.classes_ = np.asarray(self.base_.classes_)
        position = {c: i for i, c in enumerate(self.protonet_.classes_)}
        self.protonet_columns_ = np.array([position[c] for c in self.classes_])
        return self

    def predict_proba(self, X) -> np.ndarray:
        base = self.base_.predict_proba(X)
        proto = self.protonet_.predict_proba(X)[:, self.protonet_columns_]
        return (1.0 - self.weight) * base + self.weight * proto

    def predict(self, X) -> np.ndarray:
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


def few_shot_report(y_true: Sequence[str], proba: np.ndarray, classes: Sequence[str],
                    train_counts: Mapping[str, int], max_shots: int = 5, ks: Sequence[int] = (1, 3)) -> dict:
    """Top-k on the test patients whose disease has 1..max_shots training patients, overall ("1-5") and by
    number of shots. Ranks as in `evaluate_predictions` (stable sort: ties go to the lower column)."""
    y_true = np.asarray(y_true).astype(str)
    classes = np.asarray(classes).astype(str)
    position = {c: i for i, c in enumerate(classes)}
    shots = np.array([int(train_counts.get(c, 0)) for c in y_true])
    column = np.array([position.get(c, -1) for c in y_true])
    order = np.argsort(-np.asarray(proba), axis=1, kind="stable")
    rank = np.argmax(order == column[:, None], axis=1) + 1
    rank = np.where(column >= 0, rank, len(classes) + 1)  # a disease the model does not know: a miss

    def scores(mask: np.ndarray) -> dict:
        out = {"n_patients": int(mask.sum()), "n_diseases": int(len(set(y_true[mask])))}
        for k in ks:
            out[f"top{k}"] = float((rank[mask] <= k).mean()) if mask.any() else None
        return out

    report = {f"1-{max_shots}": scores((shots >= 1) & (shots <= max_shots))}
    for n in range(1, max_shots + 1):
        report[str(n)] = scores(shots == n)
    return report
