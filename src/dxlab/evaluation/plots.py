"""Evaluation figures (PNG). Each function writes one file and returns its path.

matplotlib is imported lazily inside the functions and switched to the
non-interactive Agg backend there, so importing :mod:`dxlab.evaluation` never
touches the matplotlib backend.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "plot_recall_vs_train_count",
    "plot_calibration",
    "plot_confused_pairs",
    "plot_metrics_by_stratum",
]

DPI = 120
MAX_LABEL = 45
STRATUM_ORDER = ("overall", "common", "mid", "rare")
STRATUM_COLORS = {"common": "#1f77b4", "mid": "#ff7f0e", "rare": "#d62728", "overall": "#7f7f7f"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _short(text: Any, n: int = MAX_LABEL) -> str:
    s = str(text)
    return s if len(s) <= n else s[: n - 1] + "…"


def _save(fig, plt, path: str | os.PathLike) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out


def plot_recall_vs_train_count(
    per_disease: pd.DataFrame,
    path: str | os.PathLike,
    title: str = "Per-disease top-1 recall vs training frequency",
    thresholds: Mapping[str, int] | None = None,
    y: str = "recall",
) -> Path:
    """Scatter of ``per_disease[y]`` against ``train_count`` (symmetric-log x axis so
    that diseases with 0 training cases stay visible), coloured by ``stratum``,
    marker area growing with ``n_test``. Diseases without test patients (NaN) are
    dropped. ``thresholds`` (``common_min`` / ``mid_min``) are drawn as vertical lines.
    """
    plt = _pyplot()
    df = per_disease.dropna(subset=[y])
    fig, ax = plt.subplots(figsize=(8, 5))
    if df.empty:
        ax.text(0.5, 0.5, "no diseases with test patients", ha="center", va="center", transform=ax.transAxes)
    else:
        n_test = df["n_test"].to_numpy(dtype=float) if "n_test" in df else np.ones(len(df))
        sizes = 12 + 60 * np.sqrt(n_test / max(n_test.max(), 1.0))
        strata = df["stratum"] if "stratum" in df else pd.Series("all", index=df.index)
        known = [s for s in STRATUM_ORDER if s in set(strata)]
        others = sorted(set(strata) - set(known), key=str)
        for s in known + others:
            m = (strata == s).to_numpy()
            ax.scatter(
                df["train_count"].to_numpy()[m],
                df[y].to_numpy()[m],
                s=sizes[m],
                alpha=0.6,
                color=STRATUM_COLORS.get(s),
                edgecolors="none",
                label=f"{s} ({int(m.sum())} diseases)",
            )
        ax.legend(loc="best", fontsize=9, title="stratum (marker size ~ test patients)", title_fontsize=8)
    if thresholds:
        for key, style in (("mid_min", ":"), ("common_min", "--")):
            if thresholds.get(key) is not None:
                v = thresholds[key]
                ax.axvline(v, color="black", linestyle=style, linewidth=1)
                ax.annotate(f"{key}={v}", xy=(v, 1.0), xycoords=("data", "axes fraction"),
                            xytext=(3, -12), textcoords="offset points", fontsize=8)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=-0.5)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("training cases of the disease (symmetric log scale)")
    ax.set_ylabel(_short(y.replace("_", " ")))
    ax.set_title(_short(title, 80))
    ax.grid(alpha=0.3)
    return _save(fig, plt, path)


def plot_calibration(
    tables: dict[str, pd.DataFrame],
    path: str | os.PathLike,
    title: str = "Reliability diagram (top-1 probability)",
) -> Path:
    """Reliability diagram: accuracy vs mean confidence per bin, one line per model
    (``tables`` maps model name -> :func:`~dxlab.evaluation.metrics.calibration_table`)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    for name, table in tables.items():
        if table is None or len(table) == 0:
            continue
        t = table.sort_values("mean_confidence")
        ax.plot(t["mean_confidence"], t["accuracy"], marker="o", markersize=4, label=_short(name))
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("mean top-1 probability in bin")
    ax.set_ylabel("top-1 accuracy in bin")
    ax.set_title(_short(title, 80))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    return _save(fig, plt, path)


def plot_confused_pairs(
    pairs: pd.DataFrame,
    path: str | os.PathLike,
    labels: Mapping[str, str] | None = None,
    title: str = "Most frequent confusions (actual → predicted)",
) -> Path:
    """Horizontal bars of :func:`~dxlab.evaluation.metrics.confused_pairs` output, most
    frequent on top. ``labels`` maps disease ids to readable names (ids kept when missing);
    each name is truncated to ~45 characters."""
    plt = _pyplot()
    labels = labels or {}

    def name(d: Any) -> str:
        return _short(labels.get(d, d))

    texts = [f"{name(a)} → {name(p)}" for a, p in zip(pairs["actual"], pairs["predicted"])] if len(pairs) else []
    width = 6 + 0.065 * max((len(t) for t in texts), default=0)
    fig, ax = plt.subplots(figsize=(min(width, 16), 1.2 + 0.32 * max(len(texts), 3)))
    if not texts:
        ax.text(0.5, 0.5, "no confusions", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    else:
        counts = pairs["count"].to_numpy()
        ypos = np.arange(len(texts))[::-1]
        ax.barh(ypos, counts, color="#4c72b0")
        ax.set_yticks(ypos)
        ax.set_yticklabels(texts, fontsize=8)
        for yy, c in zip(ypos, counts):
            ax.annotate(str(int(c)), xy=(c, yy), xytext=(3, 0), textcoords="offset points",
                        va="center", fontsize=8)
        ax.set_xlim(0, counts.max() * 1.12)
        ax.set_ylim(-0.6, len(texts) - 0.4)
    ax.set_xlabel("number of test patients")
    ax.set_title(_short(title, 80))
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, plt, path)


def plot_metrics_by_stratum(
    metrics_by_model: dict[str, dict],
    path: str | os.PathLike,
    metric: str = "top3",
    title: str | None = None,
) -> Path:
    """Grouped bars: strata (``overall``, ``common``, ``mid``, ``rare``) on x, one bar per
    model. ``metrics_by_model`` maps model name -> output of
    :func:`~dxlab.evaluation.metrics.evaluate_predictions`. None values (empty strata)
    are shown as "n/a"."""
    plt = _pyplot()
    models = list(metrics_by_model)
    strata = [s for s in STRATUM_ORDER if any(s in m for m in metrics_by_model.values())]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(strata) + 0.5 * len(models)), 4.5))
    x = np.arange(len(strata))
    width = 0.8 / max(len(models), 1)
    top = 1.0
    for i, model in enumerate(models):
        res = metrics_by_model[model]
        vals = [(res.get(s) or {}).get(metric) for s in strata]
        offs = x - 0.4 + width * (i + 0.5)
        heights = [v if v is not None else 0.0 for v in vals]
        bars = ax.bar(offs, heights, width * 0.95, label=_short(model))
        for b, v in zip(bars, vals):
            ax.annotate("n/a" if v is None else f"{v:.2f}", xy=(b.get_x() + b.get_width() / 2, b.get_height()),
                        xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=7)
        top = max([top] + [v for v in vals if v is not None])
    ticks = []
    for s in strata:
        n = next((res[s].get("n_patients") for res in metrics_by_model.values() if s in res and res[s]), None)
        ticks.append(s if n is None else f"{s}\n(n={n})")
    ax.set_xticks(x)
    ax.set_xticklabels(ticks)
    ax.set_ylim(0, top * 1.12)
    ax.set_xlabel("stratum (by training frequency of the true disease)")
    ax.set_ylabel(_short(metric.replace("_", " ")))
    ax.set_title(_short(title or f"{metric} by stratum", 80))
    ax.grid(axis="y", alpha=0.3)
    if models:
        ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, plt, path)
