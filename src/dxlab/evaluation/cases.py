"""A model on labelled patients, row by row: where the true disease lands, with what probability, and by slice.

One path for every line of the reports: the real case reports the model trained on (each row scored by what never
saw its group: leave-publication-out profiles and neighbours, the reranker and calibrator of another fold), the
simulated test split, and any case file (`dxlab evaluate-external`). Ranks follow dxlab's one tie rule
(`dxlab.evaluation.ranking`): a tie never earns credit; a disease outside the model's universe is a miss.

`case_table` returns one row per patient (rank of the truth, its probability, the top probability, the Brier
score, the slices) and, for the diagnostic model, the rank under each side-by-side variant (each part alone, each
part switched off: `SIDE_BY_SIDE`), from the same fitted estimator. `case_metrics` aggregates: top-1/3/10, MRR,
ECE of the top probability, Brier score, overall and by stratum (training rows of the disease from other groups:
unseen / rare / mid / common), sex, age band and what is known of the disease.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from dxlab.evaluation.metrics import _ece
from dxlab.evaluation.ranking import mean_reciprocal_rank, ranks_at, top_k, true_columns

STRATA = ("unseen", "rare", "mid", "common")
SEXES = (("F", "female"), ("M", "male"), ("unknown", "sex not reported"))
AGE_BANDS = (("under 1 year", 0.0, 1.0), ("1 to 5 years", 1.0, 5.0), ("5 to 16 years", 5.0, 16.0),
             ("16 years and over", 16.0, np.inf))
KNOWLEDGE = ("annotated and seen in another group", "annotated only", "seen in another group only",
             "neither: no model can know it")
FINAL = "diagnostic model"
BEFORE_RERANK = "without the reranker"
# Side by side, from the same fitted diagnostic model: the parts alone, then the whole with one part switched
# off. A variant changes the weighted score before the reranker (which learned from every part together), so the
# switched-off rows compare with "without the reranker".
SIDE_BY_SIDE: dict[str, dict] = {
    "likelihood from the annotations alone": {"case_profiles": False, "weights": {"neighbours": 0.0}},
    "nearest training cases alone": {"only": "neighbours"},
    BEFORE_RERANK: {},
    "without case-learned profiles": {"case_profiles": False},
    "without nearest training cases": {"weights": {"neighbours": 0.0}},
    "without excluded-finding mentions": {"weights": {"mention": 0.0}},
    "without sex and onset": {"weights": {"sex": 0.0, "onset": 0.0}},
}
# when the model has the simulated-patients network (the experiment/simulated_network overlay)
SIMULATED_SIDE_BY_SIDE: dict[str, dict] = {
    "simulated-patients network alone": {"only": "simulated"},
    "without the simulated-patients network": {"weights": {"simulated": 0.0}},
}


def side_by_side_variants(model) -> dict[str, dict]:
    """The side-by-side variants the fitted diagnostic model has parts for."""
    extra = SIMULATED_SIDE_BY_SIDE if getattr(model, "simulated_", None) is not None else {}
    return {**SIDE_BY_SIDE, **extra}


def stratum(count: float, thresholds: Mapping[str, int]) -> str:
    if count <= 0:
        return "unseen"
    if count >= thresholds.get("common_min", 100):
        return "common"
    if count >= thresholds.get("mid_min", 10):
        return "mid"
    return "rare"


def _age_band(age: float) -> str:
    if age is None or not np.isfinite(age):
        return "age not reported"
    for label, lo, hi in AGE_BANDS:
        if lo <= age < hi:
            return label
    return "age not reported"


def case_table(model, table: pd.DataFrame, groups: Sequence[str] | None = None, top: int = 10,
               side_by_side: bool = False, train_counts: Mapping[str, int] | None = None,
               thresholds: Mapping[str, int] | None = None, batch_size: int = 256,
               annotated: set | None = None) -> pd.DataFrame:
    """One row per patient of `table` (canonical rows with a `diagnosis`). groups: each row's group, so a model
    that learned from a group scores its rows without it (the diagnostic model); train_counts: training rows per
    disease for models that do not know their own (the zoo); annotated: the diseases the knowledge annotates."""
    table = table.reset_index(drop=True)
    thresholds = dict(thresholds or {})
    classes = np.asarray(model.classes_).astype(str)
    truth = table["diagnosis"].astype(str).to_numpy()
    truth_col = true_columns(list(classes), list(truth))
    groups = None if groups is None else np.asarray(groups, dtype=object).astype(str)
    diagnostic = hasattr(model, "part_scores")
    variants = side_by_side_variants(model) if (diagnostic and side_by_side) else {}
    columns: dict[str, list] = {k: [] for k in ("rank", "p_truth", "p_top", "brier", "top")}
    variant_ranks: dict[str, list] = {name: [] for name in variants}
    for start in range(0, len(table), batch_size):
        rows = slice(start, min(start + batch_size, len(table)))
        part = table.iloc[rows].reset_index(drop=True)
        g = None if groups is None else groups[rows]
        cols = truth_col[rows]
        if diagnostic:
            parts = model.part_scores(part, g)
            score, fold = model._final(part, g, parts)
            log_p = model.calibrated(score, fold)
            annotation_parts = None
            for name, spec in variants.items():
                if spec.get("only"):
                    v = parts[spec["only"]]
                else:
                    if not spec.get("case_profiles", True) and annotation_parts is None:
                        annotation_parts = model.part_scores(part, g, case_profiles=False)
                    source = parts if spec.get("case_profiles", True) else annotation_parts
                    v = model.combine(source, {**model.settings_["weights"], **spec.get("weights", {})})
                variant_ranks[name].append(ranks_at(v, cols))
        else:
            proba = np.asarray(model.predict_proba(part), dtype=np.float64)
            score = proba
            log_p = np.log(np.clip(proba, 1e-300, None))
        p = np.exp(log_p.astype(np.float64))
        p_truth = np.where(cols >= 0, p[np.arange(len(cols)), np.maximum(cols, 0)], 0.0)
        columns["rank"].append(ranks_at(score, cols))
        columns["p_truth"].append(p_truth)
        columns["p_top"].append(p.max(axis=1))
        # sum over classes of (p - onehot)^2; a truth outside the classes is an implicit column with p = 0
        columns["brier"].append((p ** 2).sum(axis=1) - 2 * p_truth + 1.0)
        best = np.argsort(-score, axis=1, kind="stable")[:, :top]
        columns["top"].append([";".join(f"{classes[j]}:{p[i, j]:.4f}" for j in best[i]) for i in range(len(part))])
    out = pd.DataFrame({
        "case_id": table["patient_id"].astype(str).to_numpy(),
        "group": groups if groups is not None else table.get("group_id", pd.Series([""] * len(table))).astype(str),
        "source": table["source"].astype(str).to_numpy() if "source" in table else "",
        "true_disease": truth,
        "rank": np.concatenate(columns["rank"]) if len(table) else [],
        "p_truth": np.concatenate(columns["p_truth"]) if len(table) else [],
        "p_top": np.concatenate(columns["p_top"]) if len(table) else [],
        "brier": np.concatenate(columns["brier"]) if len(table) else [],
        "n_findings": table["findings"].map(len).to_numpy(),
        "n_excluded": table["excluded"].map(len).to_numpy() if "excluded" in table else 0,
        "sex": table["sex"].fillna("unknown").astype(str).to_numpy() if "sex" in table else "unknown",
        "age": table["age"].to_numpy(dtype=float) if "age" in table else np.nan,
    })
    out["training_rows"] = _training_rows(model, truth, truth_col, groups, train_counts)
    out["stratum"] = [stratum(c, thresholds) for c in out["training_rows"]]
    if annotated is None and diagnostic:
        annotated = set(classes[: model.n_annotated_])
    out["annotated"] = np.isin(truth, list(annotated or ()))
    out["seen_elsewhere"] = out["training_rows"] > 0
    out["known"] = (truth_col >= 0) & (out["annotated"] | out["seen_elsewhere"]).to_numpy()
    out["age_band"] = [_age_band(a) for a in out["age"]]
    out[f"top{top}"] = [t for block in columns["top"] for t in block]
    for name, ranks in variant_ranks.items():
        out[f"rank: {name}"] = np.concatenate(ranks)
    return out


def _training_rows(model, truth, truth_col, groups, train_counts) -> np.ndarray:
    """Training rows of each row's disease, its own group's left out (what the scores could learn from)."""
    if train_counts is not None:
        return np.asarray([float(train_counts.get(d, 0)) for d in truth])
    core = getattr(model, "core_", None)
    if core is None:
        return np.zeros(len(truth))
    counts = np.where(truth_col >= 0, core.n_cases_[np.maximum(truth_col, 0)], 0.0)
    if groups is not None and getattr(model, "own_counts_", None):
        own = np.asarray([model.own_counts_.get((g, int(c)), 0) for g, c in zip(groups, truth_col)], dtype=float)
        counts = counts - own
    return counts


def summarise(frame: pd.DataFrame, ranks: np.ndarray | None = None, n_bins: int = 15) -> dict:
    """top-1/3/10, MRR, ECE of the top probability, Brier score; over the known rows too."""
    ranks = frame["rank"].to_numpy(dtype=float) if ranks is None else np.asarray(ranks, dtype=float)
    n = len(frame)
    out = {"n": int(n)}
    if not n:
        return out | {k: None for k in ("top1", "top3", "top10", "mrr", "ece", "brier", "mean_p_top",
                                        "known_top1", "known_top10")} | {"n_known": 0}
    for k in (1, 3, 10):
        out[f"top{k}"] = top_k(ranks, k)
    out["mrr"] = mean_reciprocal_rank(ranks)
    if "p_top" in frame:
        out["ece"] = _ece(frame["p_top"].to_numpy(dtype=float), ranks <= 1, n_bins)
        out["brier"] = float(frame["brier"].mean())
        out["mean_p_top"] = float(frame["p_top"].mean())
    known = frame["known"].to_numpy(dtype=bool)
    out["n_known"] = int(known.sum())
    out["known_top1"] = top_k(ranks[known], 1) if known.any() else None
    out["known_top10"] = top_k(ranks[known], 10) if known.any() else None
    return out


def case_metrics(frame: pd.DataFrame, n_bins: int = 15) -> dict:
    """Overall and by slice (stratum, sex, age band, what is known of the disease)."""
    out = {"overall": summarise(frame, n_bins=n_bins)}
    out["by_stratum"] = {s: summarise(frame[frame["stratum"] == s], n_bins=n_bins) for s in STRATA
                         if (frame["stratum"] == s).any()}
    out["by_sex"] = {label: summarise(frame[frame["sex"] == code], n_bins=n_bins) for code, label in SEXES
                     if (frame["sex"] == code).any()}
    bands = [label for label, _, _ in AGE_BANDS] + ["age not reported"]
    out["by_age_band"] = {b: summarise(frame[frame["age_band"] == b], n_bins=n_bins) for b in bands
                          if (frame["age_band"] == b).any()}
    annotated, seen = frame["annotated"].to_numpy(bool), frame["seen_elsewhere"].to_numpy(bool)
    masks = dict(zip(KNOWLEDGE, (annotated & seen, annotated & ~seen, ~annotated & seen, ~annotated & ~seen)))
    out["by_knowledge"] = {k: summarise(frame[m], n_bins=n_bins) for k, m in masks.items() if m.any()}
    variants = [c[len("rank: "):] for c in frame.columns if c.startswith("rank: ")]
    if variants:
        out["side_by_side"] = {v: {k: x for k, x in summarise(frame, frame[f"rank: {v}"], n_bins).items()
                                   if k in ("n", "top1", "top3", "top10", "mrr", "known_top1", "known_top10")}
                               for v in variants}
    return out


def reliability(frame: pd.DataFrame, n_bins: int = 15) -> pd.DataFrame:
    """Calibration table of the top probability: bin, mean confidence, accuracy (top-1 hits), count."""
    from dxlab.evaluation.metrics import _bin_index

    conf = frame["p_top"].to_numpy(dtype=float)
    correct = frame["rank"].to_numpy(dtype=float) <= 1
    idx = _bin_index(conf, n_bins)
    rows = [{"bin": int(b), "mean_confidence": float(conf[idx == b].mean()),
             "accuracy": float(correct[idx == b].mean()), "count": int((idx == b).sum())} for b in np.unique(idx)]
    return pd.DataFrame(rows, columns=["bin", "mean_confidence", "accuracy", "count"])
