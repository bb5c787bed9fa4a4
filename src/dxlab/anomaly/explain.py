"""Why a row was flagged: per-feature attributions for the top anomalies, and 2-D maps of normal vs anomalous.

Attributions are shares (each row sums to 1) of what made the row anomalous for one detector:

- autoencoder: the row's squared reconstruction error per feature (what its score averages);
- Isolation Forest: path-based, in the spirit of DIFFI (Carletti et al. 2023): over the trees, the features of
  the splits on the row's isolation path, each weighted by how much of the node's data it cut the row off from
  and each tree by 1 / path length, so the features that isolate the row in few splits dominate;
- ECOD: the per-feature tail scores the detector sums;
- any other detector: the row's absolute robust z-score per feature against the training data (how far each
  value is from typical), a model-agnostic fallback.

An ensemble averages the attributions of its members. Plots use matplotlib's Agg backend, chosen inside the
plotting function (nothing happens at import).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dxlab.anomaly.detectors import (
    AutoencoderDetector,
    ECODDetector,
    EnsembleDetector,
    IsolationForestDetector,
    _average_path_length,
    check_matrix,
)


def _shares(contrib: np.ndarray) -> np.ndarray:
    contrib = np.clip(np.asarray(contrib, dtype=float), 0.0, None)
    total = contrib.sum(axis=1, keepdims=True)
    uniform = np.full_like(contrib, 1.0 / max(contrib.shape[1], 1))
    return np.where(total > 0, contrib / np.where(total > 0, total, 1.0), uniform)


def iforest_attributions(detector: IsolationForestDetector, X) -> np.ndarray:
    """Path-based attribution of a fitted IsolationForestDetector (rows x features, rows sum to 1).

    Each split on the row's path credits its feature with the share of the node's training points the split
    separated the row from (1 - n_child / n_node: a split that leaves the row almost alone did the isolating,
    one that keeps it with the majority did little), and each tree is weighted by 1 / path length (DIFFI-style).
    """
    X = check_matrix(X, n_features=detector.n_features_in_)
    forest = detector.forest_
    contrib = np.zeros_like(X)
    for tree, features in zip(forest.estimators_, forest.estimators_features_):
        t = tree.tree_
        features = np.asarray(features)
        sub = X[:, features].astype(np.float32)  # the trees split on float32 values
        path = tree.decision_path(sub).tocsr()  # rows x nodes
        depth = np.asarray(path.sum(axis=1)).ravel() - 1.0
        length = depth + _average_path_length(t.n_node_samples[tree.apply(sub)])
        rows, nodes = path.nonzero()
        split = t.children_left[nodes] >= 0
        rows, nodes = rows[split], nodes[split]
        goes_left = sub[rows, t.feature[nodes]] <= t.threshold[nodes]
        child = np.where(goes_left, t.children_left[nodes], t.children_right[nodes])
        separated = 1.0 - t.n_node_samples[child] / t.n_node_samples[nodes]
        np.add.at(contrib, (rows, features[t.feature[nodes]]), separated / np.maximum(length[rows], 1.0))
    return _shares(contrib)


def autoencoder_attributions(detector: AutoencoderDetector, X) -> np.ndarray:
    """Per-feature share of the autoencoder's reconstruction error."""
    return _shares(detector.feature_errors(X))


def ecod_attributions(detector: ECODDetector, X) -> np.ndarray:
    return _shares(detector.tail_scores(X))


def deviation_attributions(X, reference) -> np.ndarray:
    """Absolute robust z-score per feature against reference rows (median, MAD; std when the MAD is 0)."""
    X = check_matrix(X)
    reference = check_matrix(reference, "reference", n_features=X.shape[1])
    centre = np.median(reference, axis=0)
    spread = 1.4826 * np.median(np.abs(reference - centre), axis=0)
    spread = np.where(spread > 1e-12, spread, reference.std(axis=0))
    spread = np.where(spread > 1e-12, spread, 1.0)
    return _shares(np.abs(X - centre) / spread)


def attributions(detector, X, reference=None) -> np.ndarray:
    """Attribution shares for any fitted detector (see the module docstring for the method per detector)."""
    if isinstance(detector, IsolationForestDetector):
        return iforest_attributions(detector, X)
    if isinstance(detector, AutoencoderDetector):
        return autoencoder_attributions(detector, X)
    if isinstance(detector, ECODDetector):
        return ecod_attributions(detector, X)
    if isinstance(detector, EnsembleDetector):
        parts = [attributions(member, X, reference) for member in detector.detectors_.values()]
        return _shares(np.tensordot(detector.weights_, np.stack(parts), axes=1))
    if reference is None:
        raise ValueError(f"{type(detector).__name__} has no built-in attribution: pass the training rows as "
                         "`reference` for the deviation-based fallback")
    return deviation_attributions(X, reference)


def method_name(detector) -> str:
    if isinstance(detector, IsolationForestDetector):
        return "iforest_path"
    if isinstance(detector, AutoencoderDetector):
        return "autoencoder_reconstruction"
    if isinstance(detector, ECODDetector):
        return "ecod_tail"
    if isinstance(detector, EnsembleDetector):
        return "ensemble_mean"
    return "robust_deviation"


def explain_top(detector, X, feature_names: Sequence[str] | None = None, top: int = 10, n_features: int = 3,
                scores=None, reference=None, row_ids=None, explainers: dict | None = None) -> pd.DataFrame:
    """One row per (top anomaly, contributing feature): the rows with the highest scores, and for each the
    ``n_features`` features with the largest attribution share under every explainer.

    explainers: {label: fitted detector} whose attributions to report (default: the detector itself); e.g. the
    autoencoder and the Isolation Forest for the ensemble's top anomalies. reference: training rows, for medians
    and for detectors without a built-in attribution. row_ids: labels for the rows (default: position).
    """
    frame = X if isinstance(X, pd.DataFrame) else None
    X = check_matrix(X)
    names = list(feature_names if feature_names is not None else
                 (frame.columns if frame is not None else [f"x{j}" for j in range(X.shape[1])]))
    if len(names) != X.shape[1]:
        raise ValueError(f"{len(names)} feature names for {X.shape[1]} features")
    scores = detector.score_samples(X) if scores is None else np.asarray(scores, dtype=float)
    order = np.argsort(-scores, kind="stable")[: min(top, len(X))]
    ids = np.arange(len(X)) if row_ids is None else np.asarray(row_ids)
    typical = np.median(check_matrix(reference, "reference"), axis=0) if reference is not None else None
    records = []
    for label, explainer in (explainers or {method_name(detector): detector}).items():
        shares = attributions(explainer, X[order], reference)
        for rank, (row, share) in enumerate(zip(order, shares), start=1):
            for j in np.argsort(-share, kind="stable")[:n_features]:
                records.append({"rank": rank, "row": ids[row], "score": float(scores[row]), "method": label,
                                "feature": names[j], "contribution": round(float(share[j]), 4),
                                "value": float(X[row, j]),
                                "typical": float(typical[j]) if typical is not None else np.nan})
    return pd.DataFrame.from_records(records, columns=["rank", "row", "score", "method", "feature", "contribution",
                                                      "value", "typical"])


def embed(X, method: str = "pca", random_state: int = 0) -> np.ndarray:
    """2-D coordinates of standardised rows by PCA or t-SNE."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler

    Z = StandardScaler().fit_transform(check_matrix(X))
    if Z.shape[1] == 1:
        Z = np.hstack([Z, np.zeros_like(Z)])
    if method == "pca":
        return PCA(n_components=2, random_state=random_state).fit_transform(Z)
    if method == "tsne":
        perplexity = float(min(30.0, max(2.0, (len(Z) - 1) / 3.0)))
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=random_state,
                    max_iter=500).fit_transform(Z)
    raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")


def plot_embeddings(X, labels, out_dir: str | Path, name: str, scores=None, methods=("pca", "tsne"),
                    max_points: int = 2000, random_state: int = 0, title: str | None = None) -> list[Path]:
    """For each method, ``<out_dir>/anomaly_<name>_<method>.png``: normal vs anomalous points (labels: 0/1 or
    kind strings, '' or 'normal' = normal) and, when given, the detector's score as colour in a second panel.
    Above ``max_points`` rows a seeded sample keeps every anomaly (up to half the points) and fills with normals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X = check_matrix(X)
    labels = np.asarray(labels)
    kinds = np.where(np.isin(labels.astype(str), ["", "0", "normal", "False"]), "normal", labels.astype(str))
    keep = _plot_sample(kinds != "normal", max_points, random_state)
    X, kinds = X[keep], kinds[keep]
    scores = None if scores is None else np.asarray(scores, dtype=float)[keep]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for method in methods:
        xy = embed(X, method, random_state)
        n_panels = 2 if scores is not None else 1
        fig, axes = plt.subplots(1, n_panels, figsize=(6.0 * n_panels, 5.0), squeeze=False)
        ax = axes[0, 0]
        normal = kinds == "normal"
        ax.scatter(xy[normal, 0], xy[normal, 1], s=6, c="#9aa5b1", alpha=0.5, label=f"normal ({normal.sum()})")
        palette = plt.get_cmap("tab10")
        for i, kind in enumerate(sorted(set(kinds[~normal]))):
            sel = kinds == kind
            shown = "anomaly" if kind == "1" else kind
            ax.scatter(xy[sel, 0], xy[sel, 1], s=18, color=palette(i % 10), edgecolor="black", linewidth=0.3,
                       label=f"{shown} ({sel.sum()})")
        ax.legend(fontsize=7, loc="best")
        ax.set_title("labels")
        if scores is not None:
            ax = axes[0, 1]
            order = np.argsort(scores)
            points = ax.scatter(xy[order, 0], xy[order, 1], s=8, c=scores[order], cmap="magma")
            fig.colorbar(points, ax=ax, label="anomaly score")
            ax.set_title("detector score")
        for ax in axes[0]:
            ax.set_xlabel(f"{method.upper()} 1")
            ax.set_ylabel(f"{method.upper()} 2")
        fig.suptitle(title or f"{name}: {method.upper()} of standardised features")
        fig.tight_layout()
        path = out_dir / f"anomaly_{name}_{method}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def _plot_sample(is_anomaly: np.ndarray, max_points: int, random_state: int) -> np.ndarray:
    n = len(is_anomaly)
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(random_state)
    anomalies, normals = np.flatnonzero(is_anomaly), np.flatnonzero(~is_anomaly)
    anomalies = rng.choice(anomalies, min(len(anomalies), max_points // 2), replace=False)
    normals = rng.choice(normals, min(len(normals), max_points - len(anomalies)), replace=False)
    return np.sort(np.concatenate([anomalies, normals]))


def plot_recall_by_kind(metrics: dict, path: str | Path, title: str = "recall at the threshold by anomaly kind"):
    """Grouped bars: recall of each detector (metrics[detector]['by_kind'][kind]['recall'])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    detectors = list(metrics)
    kinds = sorted({k for m in metrics.values() for k in m.get("by_kind", {})})
    width = 0.8 / max(len(detectors), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(kinds)) + 1.6, 4.5))
    for i, name in enumerate(detectors):
        values = [metrics[name]["by_kind"].get(k, {}).get("recall", np.nan) for k in kinds]
        ax.bar(np.arange(len(kinds)) + i * width, values, width, label=name)
    ax.set_xticks(np.arange(len(kinds)) + 0.4 - width / 2)
    ax.set_xticklabels(kinds, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("recall")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
