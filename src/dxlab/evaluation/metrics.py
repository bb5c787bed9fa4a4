"""Evaluation metrics for multi-class diagnosis with long-tailed class frequencies.

Pure functions (numpy / pandas / scikit-learn only, no I/O).

Conventions shared by every function here:

* ``y_true`` is a sequence of disease labels (one per test patient).
* ``proba`` is an ``(n_patients, len(classes))`` array of scores; column ``j``
  belongs to ``classes[j]``. Rows are used as given (not renormalised).
* Ranks follow dxlab's one tie rule (``dxlab.evaluation.ranking``): diseases
  with the same score share the mean of the ranks they span, so a tie never earns
  credit (two diseases tied first rank 1.5: neither is a top-1 hit). The top-1
  prediction that F1 and the confusion counts use is ``classes[argmax(proba)]``.
* A true label that is not in ``classes`` can never be predicted: it is a miss
  for every top-k, a false negative for its disease, and it contributes the
  implicit ``(0 - 1)^2 = 1`` of its missing column to the Brier score.
* Strata come from *training* counts: ``common`` (>= ``common_min``), ``mid``
  (>= ``mid_min``) and ``rare`` (the rest, including diseases never seen in
  training).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, roc_auc_score

from dxlab.evaluation.ranking import ranks_at

__all__ = [
    "DEFAULT_THRESHOLDS",
    "STRATA",
    "assign_strata",
    "top_k_accuracy",
    "evaluate_predictions",
    "per_disease_table",
    "confused_pairs",
    "calibration_table",
]

DEFAULT_THRESHOLDS: dict[str, int] = {"common_min": 100, "mid_min": 10}
STRATA: tuple[str, ...] = ("common", "mid", "rare")


# --------------------------------------------------------------------------- helpers


def _resolve_thresholds(thresholds: Mapping[str, int] | None) -> tuple[int, int]:
    merged = dict(DEFAULT_THRESHOLDS)
    if thresholds is not None:
        for key in ("common_min", "mid_min"):
            if key in thresholds and thresholds[key] is not None:
                merged[key] = int(thresholds[key])
    common_min, mid_min = merged["common_min"], merged["mid_min"]
    if mid_min > common_min:
        raise ValueError(f"thresholds: mid_min ({mid_min}) must be <= common_min ({common_min})")
    return common_min, mid_min


def _stratum_of(count: int, common_min: int, mid_min: int) -> str:
    if count >= common_min:
        return "common"
    if count >= mid_min:
        return "mid"
    return "rare"


def _as_counts(train_counts: Mapping[str, int] | pd.Series | None) -> dict[Any, int]:
    if train_counts is None:
        return {}
    return {k: int(v) for k, v in dict(train_counts).items()}


def _as_labels(y: Any) -> np.ndarray:
    arr = np.asarray(list(y) if not isinstance(y, np.ndarray) else y, dtype=object)
    if arr.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {arr.shape}")
    return arr


def _check_inputs(y_true: Any, proba: Any, classes: Any) -> tuple[np.ndarray, np.ndarray, list]:
    y = _as_labels(y_true)
    cls = list(classes)
    if len(set(cls)) != len(cls):
        raise ValueError("classes contains duplicates")
    p = np.asarray(proba, dtype=float)
    if p.ndim != 2 or p.shape != (len(y), len(cls)):
        raise ValueError(
            f"proba must have shape (n_patients, n_classes) = ({len(y)}, {len(cls)}), got {p.shape}"
        )
    if len(cls) == 0:
        raise ValueError("classes is empty")
    if not np.all(np.isfinite(p)):
        raise ValueError("proba contains NaN or infinite values")
    return y, p, cls


def _true_column(y: np.ndarray, cls: list) -> np.ndarray:
    """Column index of each true label in ``classes``; -1 when absent."""
    index = {c: j for j, c in enumerate(cls)}
    return np.fromiter((index.get(v, -1) for v in y), dtype=np.int64, count=len(y))


def _true_rank(p: np.ndarray, true_col: np.ndarray) -> np.ndarray:
    """0-based rank of the true class under the one tie rule (mean rank of a tie, minus one); inf if absent."""
    return ranks_at(p, true_col) - 1.0


def _bin_index(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Uniform bins over [0, 1], right-closed: (lo, hi]; 0 falls in the first bin."""
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    inner_edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    return np.searchsorted(inner_edges, conf, side="left")


def _ece(conf: np.ndarray, correct: np.ndarray, n_bins: int) -> float:
    idx = _bin_index(conf, n_bins)
    total = 0.0
    for b in np.unique(idx):
        m = idx == b
        total += m.sum() * abs(float(correct[m].mean()) - float(conf[m].mean()))
    return float(total / len(conf))


def _brier_per_patient(p: np.ndarray, true_col: np.ndarray) -> np.ndarray:
    onehot = np.zeros_like(p)
    present = true_col >= 0
    onehot[np.flatnonzero(present), true_col[present]] = 1.0
    per = ((p - onehot) ** 2).sum(axis=1)
    # A true label outside ``classes`` has an implicit column with p = 0, onehot = 1.
    per[~present] += 1.0
    return per


def _k_name(k: int) -> str:
    return f"top{int(k)}"


class _Confusion:
    """Per-label one-vs-rest counts over all test patients, with the top-1 prediction."""

    def __init__(self, y: np.ndarray, p: np.ndarray, cls: list):
        self.y = y
        self.p = p
        self.cls = cls
        self.n = len(y)
        self.col = {c: j for j, c in enumerate(cls)}
        self.y_pred = np.asarray(cls, dtype=object)[np.argmax(p, axis=1)] if self.n else np.array([], dtype=object)
        labels = list(pd.unique(np.concatenate([y, np.asarray(cls, dtype=object)])))
        self.labels = labels
        idx = {lab: i for i, lab in enumerate(labels)}
        t = np.fromiter((idx[v] for v in y), dtype=np.int64, count=self.n)
        q = np.fromiter((idx[v] for v in self.y_pred), dtype=np.int64, count=self.n)
        L = len(labels)
        self.pos = np.bincount(t, minlength=L)
        self.n_pred = np.bincount(q, minlength=L)
        self.tp = np.bincount(t[t == q], minlength=L)
        self.fn = self.pos - self.tp
        self.fp = self.n_pred - self.tp
        self.tn = self.n - self.tp - self.fn - self.fp
        self.idx = idx
        self._auc: dict[Any, float] = {}

    def counts(self, label: Any) -> tuple[int, int, int, int]:
        i = self.idx.get(label)
        if i is None:  # never seen in y_true nor classes
            return 0, 0, 0, self.n
        return int(self.tp[i]), int(self.fp[i]), int(self.fn[i]), int(self.tn[i])

    def sensitivity(self, label: Any) -> float:
        tp, _, fn, _ = self.counts(label)
        return tp / (tp + fn) if tp + fn > 0 else float("nan")

    def specificity(self, label: Any) -> float:
        _, fp, _, tn = self.counts(label)
        return tn / (tn + fp) if tn + fp > 0 else float("nan")

    def f1(self, label: Any) -> float:
        tp, fp, fn, _ = self.counts(label)
        denom = 2 * tp + fp + fn
        return 2 * tp / denom if denom > 0 else 0.0

    def auc(self, label: Any) -> float:
        """One-vs-rest ROC AUC on all patients; NaN if not in classes or only one class present."""
        if label in self._auc:
            return self._auc[label]
        value = float("nan")
        j = self.col.get(label)
        if j is not None:
            positives = self.y == label
            n_pos = int(positives.sum())
            if 0 < n_pos < self.n:
                value = float(roc_auc_score(positives, self.p[:, j]))
        self._auc[label] = value
        return value


def _nanmean_or_none(values: list[float]) -> float | None:
    arr = np.asarray([v for v in values if not np.isnan(v)], dtype=float)
    return float(arr.mean()) if arr.size else None


# --------------------------------------------------------------------------- public API


def assign_strata(
    train_counts: Mapping[str, int],
    thresholds: Mapping[str, int] | None = None,
    diseases: Sequence[str] | None = None,
) -> dict[str, str]:
    """Map diseases to ``"common"``, ``"mid"`` or ``"rare"`` by their training count.

    ``common``: count >= ``thresholds["common_min"]`` (default 100);
    ``mid``: count >= ``thresholds["mid_min"]`` (default 10); ``rare``: below.
    The result covers every key of ``train_counts`` plus every disease in the
    optional ``diseases``; a disease absent from ``train_counts`` counts 0 (rare).
    """
    common_min, mid_min = _resolve_thresholds(thresholds)
    counts = _as_counts(train_counts)
    keys = list(counts)
    if diseases is not None:
        keys += [d for d in diseases if d not in counts]
    return {d: _stratum_of(counts.get(d, 0), common_min, mid_min) for d in keys}


def top_k_accuracy(y_true: Sequence[str], proba: Any, classes: Sequence[str], k: int) -> float:
    """Fraction of patients whose true label is among the ``k`` highest-scored classes.

    Tied scores share the mean rank (``dxlab.evaluation.ranking``). A true label
    not in ``classes`` is always a miss. ``k`` larger than the number of classes
    behaves like ``k = len(classes)``.
    """
    if int(k) < 1:
        raise ValueError("k must be >= 1")
    y, p, cls = _check_inputs(y_true, proba, classes)
    if len(y) == 0:
        raise ValueError("y_true is empty")
    ranks = _true_rank(p, _true_column(y, cls))
    return float(np.mean(ranks <= int(k) - 1))


def evaluate_predictions(
    y_true: Sequence[str],
    proba: Any,
    classes: Sequence[str],
    train_counts: Mapping[str, int],
    thresholds: Mapping[str, int] | None = None,
    ks: Sequence[int] = (1, 3, 10),
    n_bins: int = 15,
) -> dict[str, dict[str, Any]]:
    """Overall and per-stratum metrics; every value is a plain int/float or None.

    Returns ``{"overall": m, "common": m, "mid": m, "rare": m}`` where each ``m`` has
    ``n_patients``, ``n_diseases``, ``top{k}`` for each k in ``ks``, ``macro_f1``,
    ``macro_auc_roc``, ``macro_sensitivity``, ``macro_specificity``, ``ece``, ``brier``.

    * A stratum's patients are those whose TRUE disease is in the stratum; top-k,
      ``ece`` (top-1 confidence, ``n_bins`` uniform bins) and ``brier`` use only them.
    * A stratum's diseases are its diseases that occur in ``y_true``. ``macro_f1``,
      ``macro_sensitivity``, ``macro_specificity`` and ``macro_auc_roc`` are
      one-vs-rest per disease computed on ALL test patients, then averaged over
      the stratum's diseases (AUC: only diseases in ``classes`` that have both
      positives and negatives; specificity: only diseases with negatives).
    * An empty stratum has ``n_patients = n_diseases = 0`` and every metric None;
      a metric with nothing to average is None as well (never NaN).
    """
    ks = tuple(int(k) for k in ks)
    if any(k < 1 for k in ks):
        raise ValueError("every k in ks must be >= 1")
    y, p, cls = _check_inputs(y_true, proba, classes)
    common_min, mid_min = _resolve_thresholds(thresholds)
    counts = _as_counts(train_counts)

    metric_names = [_k_name(k) for k in ks] + [
        "macro_f1",
        "macro_auc_roc",
        "macro_sensitivity",
        "macro_specificity",
        "ece",
        "brier",
    ]

    def empty() -> dict[str, Any]:
        out: dict[str, Any] = {"n_patients": 0, "n_diseases": 0}
        out.update({name: None for name in metric_names})
        return out

    if len(y) == 0:
        return {name: empty() for name in ("overall", *STRATA)}

    true_col = _true_column(y, cls)
    ranks = _true_rank(p, true_col)
    conf = p.max(axis=1)
    correct = ranks <= 0
    brier = _brier_per_patient(p, true_col)
    cm = _Confusion(y, p, cls)
    y_pred = cm.y_pred

    test_diseases = list(pd.unique(y))
    stratum_of = {d: _stratum_of(counts.get(d, 0), common_min, mid_min) for d in test_diseases}
    patient_stratum = np.asarray([stratum_of[v] for v in y], dtype=object)

    def summarise(mask: np.ndarray, diseases: list) -> dict[str, Any]:
        n = int(mask.sum())
        if n == 0:
            return empty()
        out: dict[str, Any] = {"n_patients": n, "n_diseases": len(diseases)}
        for k in ks:
            out[_k_name(k)] = float(np.mean(ranks[mask] <= k - 1))
        out["macro_f1"] = float(
            f1_score(y, y_pred, labels=diseases, average="macro", zero_division=0)
        )
        out["macro_auc_roc"] = _nanmean_or_none([cm.auc(d) for d in diseases])
        out["macro_sensitivity"] = _nanmean_or_none([cm.sensitivity(d) for d in diseases])
        out["macro_specificity"] = _nanmean_or_none([cm.specificity(d) for d in diseases])
        out["ece"] = _ece(conf[mask], correct[mask], n_bins)
        out["brier"] = float(brier[mask].mean())
        return out

    result = {"overall": summarise(np.ones(len(y), dtype=bool), test_diseases)}
    for s in STRATA:
        result[s] = summarise(patient_stratum == s, [d for d in test_diseases if stratum_of[d] == s])
    return result


def per_disease_table(
    y_true: Sequence[str],
    proba: Any,
    classes: Sequence[str],
    train_counts: Mapping[str, int],
    thresholds: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """One row per disease in ``y_true`` ∪ ``classes`` ∪ ``train_counts``.

    Columns: ``disease``, ``train_count``, ``stratum``, ``n_test``, ``recall``
    (top-1), ``top3_recall``, ``f1`` (one-vs-rest over all patients), ``auc_roc``.
    Rates are NaN where undefined (``n_test == 0``; ``auc_roc`` also for diseases
    not in ``classes``). Sorted by ``train_count`` descending, then ``disease``.
    """
    y, p, cls = _check_inputs(y_true, proba, classes)
    common_min, mid_min = _resolve_thresholds(thresholds)
    counts = _as_counts(train_counts)
    ranks = _true_rank(p, _true_column(y, cls)) if len(y) else np.array([], dtype=np.int64)
    cm = _Confusion(y, p, cls)

    diseases = list(pd.unique(np.concatenate([y, np.asarray(cls, dtype=object), np.asarray(list(counts), dtype=object)])))
    rows = []
    for d in diseases:
        mask = y == d
        n_test = int(mask.sum())
        tc = counts.get(d, 0)
        rows.append(
            {
                "disease": d,
                "train_count": int(tc),
                "stratum": _stratum_of(tc, common_min, mid_min),
                "n_test": n_test,
                "recall": float(np.mean(ranks[mask] <= 0)) if n_test else np.nan,
                "top3_recall": float(np.mean(ranks[mask] <= 2)) if n_test else np.nan,
                "f1": cm.f1(d) if n_test else np.nan,
                "auc_roc": cm.auc(d),
            }
        )
    columns = ["disease", "train_count", "stratum", "n_test", "recall", "top3_recall", "f1", "auc_roc"]
    df = pd.DataFrame(rows, columns=columns)
    df["disease_sort"] = df["disease"].astype(str)
    df = df.sort_values(["train_count", "disease_sort"], ascending=[False, True], kind="mergesort")
    df = df.drop(columns="disease_sort").reset_index(drop=True)
    df = df.astype({"train_count": "int64", "n_test": "int64", "recall": float, "top3_recall": float, "f1": float, "auc_roc": float})
    return df


def confused_pairs(y_true: Sequence[str], y_pred: Sequence[str], top: int = 20) -> pd.DataFrame:
    """The ``top`` most frequent (actual, predicted) pairs with actual != predicted.

    Columns ``actual``, ``predicted``, ``count``; sorted by count descending, then
    actual and predicted (as strings) for a deterministic order.
    """
    y = _as_labels(y_true)
    q = _as_labels(y_pred)
    if len(y) != len(q):
        raise ValueError(f"y_true and y_pred differ in length: {len(y)} vs {len(q)}")
    columns = ["actual", "predicted", "count"]
    off = y != q
    if not off.any():
        return pd.DataFrame({"actual": pd.Series(dtype=object), "predicted": pd.Series(dtype=object), "count": pd.Series(dtype="int64")})[columns]
    df = pd.DataFrame({"actual": y[off], "predicted": q[off]})
    df = df.groupby(["actual", "predicted"], sort=False).size().reset_index(name="count")
    df["_a"] = df["actual"].astype(str)
    df["_p"] = df["predicted"].astype(str)
    df = df.sort_values(["count", "_a", "_p"], ascending=[False, True, True], kind="mergesort")
    df = df[columns].head(int(top)).reset_index(drop=True)
    df["count"] = df["count"].astype("int64")
    return df


def calibration_table(
    y_true: Sequence[str], proba: Any, classes: Sequence[str], n_bins: int = 10
) -> pd.DataFrame:
    """Reliability table of the top-1 probability.

    ``n_bins`` uniform, right-closed bins over [0, 1] (``bin`` is the 0-based bin
    index; bin ``b`` covers ``(b/n_bins, (b+1)/n_bins]``, 0 goes to bin 0). Columns
    ``bin``, ``mean_confidence``, ``accuracy`` (share of top-1 hits), ``count``.
    Empty bins are omitted. The same binning defines ``ece`` in
    :func:`evaluate_predictions`.
    """
    y, p, cls = _check_inputs(y_true, proba, classes)
    columns = ["bin", "mean_confidence", "accuracy", "count"]
    if len(y) == 0:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("bin", "count") else float) for c in columns})
    conf = p.max(axis=1)
    correct = _true_rank(p, _true_column(y, cls)) <= 0
    idx = _bin_index(conf, n_bins)
    rows = []
    for b in np.unique(idx):
        m = idx == b
        rows.append(
            {
                "bin": int(b),
                "mean_confidence": float(conf[m].mean()),
                "accuracy": float(correct[m].mean()),
                "count": int(m.sum()),
            }
        )
    return pd.DataFrame(rows, columns=columns)
