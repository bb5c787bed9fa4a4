"""The report of a model on labelled cases: Markdown and figures from a folder written by `write_case_outputs`.

`write_case_outputs(frame, metrics, out_dir, ...)` writes ranks.csv (one row per case) and DIR/metrics.json;
`write_report(DIR, report_path, ...)` reads only those two files (a report can be regenerated without scoring again)
and writes the report, `model_card.md` beside it and the figures: top-k curves of the side-by-side variants, the
histogram of the rank of the true disease and the reliability diagram of the top probability.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from dxlab.evaluation.cases import BEFORE_RERANK, FINAL, reliability

# Published anchors on phenopacket-store cases (../shared/data/phenopackets/README.md and PEER.md).
ANCHORS = [
    ("Exomiser, phenotype only (5,213 cases; Reese et al. 2026)", "35.5%", "", ""),
    ("GPT-4 (5,267 cases; Reese et al. 2024)", "19.2%", "28.6%", "32.5%"),
    ("hpo3 Resnik funSimAvg (1,000 of these cases, PEER.md)", "36.6%", "47.6%", "57.9%"),
]
TARGETS = {"top1": 0.60, "top10": 0.70, "ece": 0.05}  # issue "One diagnostic model", on the shared case reports
FINDING_BINS = [(1, 2), (3, 4), (5, 8), (9, 15), (16, 10_000)]
DESCRIPTIONS = {
    "likelihood from the annotations alone": "the likelihood core over the HPO annotations only (LIRICAL-like: "
                                             "frequencies, partial matches, excluded findings, sex, onset)",
    "nearest training cases alone": "the similarity of the nearest training case of another publication",
    BEFORE_RERANK: "the weighted parts: likelihood with case-learned profiles + nearest training cases",
    "without case-learned profiles": "the weighted parts with the core's profiles from the annotations alone",
    "without nearest training cases": "the weighted parts without the neighbours (likelihood with case profiles)",
    "without excluded-finding mentions": "excluded findings read only as absent, never as mentions",
    "without sex and onset": "the sex and onset likelihood ratios left out",
    "simulated-patients network alone": "the network trained on patients simulated from the annotations",
    "without the simulated-patients network": "the weighted parts without the simulated-patients network",
}


def _pct(x) -> str:
    return "" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.1f}%"


def _num(x, fmt: str = ".3f") -> str:
    return "" if x is None or (isinstance(x, float) and np.isnan(x)) else format(x, fmt)


def write_case_outputs(frame: pd.DataFrame, metrics: Mapping, out_dir: str | Path,
                       ranks_dir: str | Path | None = None) -> Path:
    """DIR/metrics.json, and the per-case table ranks.csv in `ranks_dir` (default DIR): the pipeline keeps per-case
    rows out of the reports it commits (data/evaluation/, a DVC output), a command writes both into DIR."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ranks_dir = Path(ranks_dir) if ranks_dir is not None else out_dir
    ranks_dir.mkdir(parents=True, exist_ok=True)
    frame.to_csv(ranks_dir / "ranks.csv", index=False)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    return out_dir


def _slice_table(rows: Mapping[str, Mapping], label: str) -> list[str]:
    lines = [f"| {label} | cases | top-1 | top-3 | top-10 | MRR | ECE | Brier |", "|---|---|---|---|---|---|---|---|"]
    for name, m in rows.items():
        lines.append(f"| {name} | {m['n']:,} | {_pct(m.get('top1'))} | {_pct(m.get('top3'))} | {_pct(m.get('top10'))} "
                     f"| {_num(m.get('mrr'))} | {_num(m.get('ece'))} | {_num(m.get('brier'))} |")
    return lines


def plot_topk(ranks: Mapping[str, np.ndarray], path: Path, max_k: int = 100, knowable: float | None = None) -> Path:
    from dxlab.evaluation.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ks = np.arange(1, max_k + 1)
    for name, r in ranks.items():
        ax.plot(ks, [float(np.mean(r <= k)) for k in ks], label=name, lw=2.4 if name == FINAL else 1.2)
    if knowable is not None:
        ax.axhline(knowable, color="#d62728", ls="--", lw=1)
        ax.text(1, knowable, "cases whose disease the model can know", va="bottom", fontsize=7, color="#d62728")
    ax.set(xscale="log", xlabel="k (rank of the true disease at most k)", ylabel="share of all cases", ylim=(0, 1),
           title="Top-k on the cases (each scored by what never saw its publication)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    return _save(fig, plt, path)


def plot_rank_histogram(ranks: np.ndarray, path: Path) -> Path:
    from dxlab.evaluation.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    finite = ranks[np.isfinite(ranks)]
    # half-integer edges: a rank of 1.5 (tied for first) is not a top-1 hit, as in the metrics
    edges = np.array([0.5, 1.5, 3.5, 10.5, 30.5, 100.5, 300.5, 1000.5, 3000.5, np.inf])
    counts = np.histogram(finite, bins=edges)[0]
    labels = ["1", "2-3", "4-10", "11-30", "31-100", "101-300", "301-1k", "1k-3k", ">3k"]
    ax.bar(range(len(counts)), counts, color="#1f77b4")
    ax.bar(len(counts), int(np.sum(~np.isfinite(ranks))), color="#d62728")
    ax.set_xticks(range(len(counts) + 1), [*labels, "unknown"], rotation=30)
    ax.set(xlabel="rank of the true disease", ylabel="cases",
           title="Where the true disease lands (red: a disease outside the universe)")
    return _save(fig, plt, path)


def plot_reliability(table: pd.DataFrame, path: Path) -> Path:
    from dxlab.evaluation.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    ax.plot(table["mean_confidence"], table["accuracy"], marker="o", lw=1.5)
    for _, row in table.iterrows():
        ax.annotate(f"{int(row['count'])}", (row["mean_confidence"], row["accuracy"]), fontsize=6,
                    textcoords="offset points", xytext=(3, -8))
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="top probability (mean in bin)", ylabel="share of top-1 hits",
           title="Calibration of the top probability (cases per bin)")
    ax.grid(alpha=0.3)
    return _save(fig, plt, path)


def _reach(ranks: np.ndarray) -> str:
    """Where the cases below rank 10 are, and the best top-10 that reordering the first candidates could give."""
    n = len(ranks)
    bands = [(11, 20), (21, 50), (51, 100), (101, np.inf)]
    known = np.isfinite(ranks)
    counts = [int((known & (ranks >= lo) & (ranks <= hi)).sum()) for lo, hi in bands]
    hits = int((ranks <= 10).sum())
    labels = [f"at {lo}-{hi}" if np.isfinite(hi) else f"beyond {lo - 1}" for lo, hi in bands]
    return ("Cases ranked below 10, by rank of the true disease: " + ", ".join(
        f"{c:,} {label}" for c, label in zip(counts, labels)) + f"; {int(np.isinf(ranks).sum()):,} have a disease "
        f"outside the universe. Even a reordering that brought every case ranked 11-100 into the top 10 would give "
        f"top-10 {_pct((hits + sum(counts[:3])) / max(n, 1))} (now {_pct(hits / max(n, 1))}).")


def write_report(out_dir: str | Path, report_path: str | Path, figures_dir: str | Path,
                 disease_names: Mapping[str, str] | None = None, title: str = "The diagnostic model on case reports",
                 context: Mapping | None = None, ranks_dir: str | Path | None = None) -> Path:
    """Markdown report (and model_card.md beside it) from DIR/metrics.json and ranks.csv (in `ranks_dir`, default
    DIR)."""
    out_dir, report_path, figures_dir = Path(out_dir), Path(report_path), Path(figures_dir)
    metrics = json.loads((out_dir / "metrics.json").read_text())
    ranks_csv = Path(ranks_dir if ranks_dir is not None else out_dir) / "ranks.csv"
    frame = pd.read_csv(ranks_csv, keep_default_na=False, na_values={"age": [""], "rank": [""]})
    frame["rank"] = frame["rank"].astype(float)
    names = dict(disease_names or {})
    context = {**metrics.get("context", {}), **dict(context or {})}
    rel = lambda p: Path(os.path.relpath(p, report_path.parent)).as_posix()  # noqa: E731
    ranks = frame["rank"].to_numpy(dtype=float)
    overall = metrics["overall"]
    n = overall["n"]
    variant_ranks = {FINAL: ranks, **{c[len("rank: "):]: frame[c].to_numpy(dtype=float)
                                      for c in frame.columns if c.startswith("rank: ")}}
    knowable = float(frame["known"].astype(bool).mean()) if n else None
    figures = {"topk": plot_topk(variant_ranks, figures_dir / "topk.png", knowable=knowable),
               "hist": plot_rank_histogram(ranks, figures_dir / "rank_histogram.png"),
               "calibration": plot_reliability(reliability(frame), figures_dir / "reliability.png")}

    lines = [f"# {title}", "", "Generated by `dxlab.evaluation.case_report` from `ranks.csv` and `metrics.json`; do "
             "not edit.", ""]
    if context.get("description"):
        lines += [context["description"], ""]
    lines += [f"{n:,} cases; {context.get('universe_size', '?'):,} diseases ranked for each"
              if isinstance(context.get("universe_size"), int) else f"{n:,} cases",
              ""]
    lines[-2] += (". A case whose disease is outside the universe counts as a miss; tied scores share the mean "
                  "rank (a tie is never a hit). ECE: expected calibration error of the top probability (15 bins); "
                  "Brier: the multi-class Brier score (0 is perfect, 2 the worst).")
    lines += ["| model | cases | top-1 | top-3 | top-10 | MRR | ECE | Brier | known cases | known top-1 | "
              "known top-10 |", "|---|---|---|---|---|---|---|---|---|---|---|",
              f"| {context.get('model', FINAL)} | {n:,} | {_pct(overall['top1'])} | {_pct(overall['top3'])} | "
              f"{_pct(overall['top10'])} | {_num(overall['mrr'])} | {_num(overall.get('ece'))} | "
              f"{_num(overall.get('brier'))} | {overall['n_known']:,} | {_pct(overall['known_top1'])} | "
              f"{_pct(overall['known_top10'])} |", ""]
    if context.get("targets"):
        met = {"top1": overall["top1"] >= TARGETS["top1"], "top10": overall["top10"] >= TARGETS["top10"],
               "ece": overall.get("ece") is not None and overall["ece"] <= TARGETS["ece"]}
        lines += [f"Targets on the shared case reports: top-1 >= {_pct(TARGETS['top1'])} "
                  f"({'met' if met['top1'] else 'not met'}), top-10 >= {_pct(TARGETS['top10'])} "
                  f"({'met' if met['top10'] else 'not met'}), ECE <= {TARGETS['ece']} "
                  f"({'met' if met['ece'] else 'not met'}).", ""]
    side = metrics.get("side_by_side")
    if side:
        before = side.get(BEFORE_RERANK)
        lines += ["## Each part alone, the whole, each part switched off", "",
                  "From the same fitted model, on the same cases. A switched-off part changes the weighted score "
                  "before the reranker (which learned from every part together): those rows compare with "
                  f"'{BEFORE_RERANK}', which compares with the whole.", "",
                  "| variant | top-1 | top-3 | top-10 | MRR | change in top-1 | change in top-10 |",
                  "|---|---|---|---|---|---|---|",
                  f"| **{FINAL}** (the whole) | {_pct(overall['top1'])} | {_pct(overall['top3'])} | "
                  f"{_pct(overall['top10'])} | {_num(overall['mrr'])} | | |"]
        for name, m in side.items():
            base = overall if name == BEFORE_RERANK or name in ("likelihood from the annotations alone",
                                                                "nearest training cases alone") else before
            change = "" if name.endswith("alone") else (
                f"{100 * (m['top1'] - base['top1']):+.1f} | {100 * (m['top10'] - base['top10']):+.1f}")
            lines.append(f"| {name} | {_pct(m['top1'])} | {_pct(m['top3'])} | {_pct(m['top10'])} | {_num(m['mrr'])} "
                         f"| {change or ' | '} |")
        lines += [""] + [f"- {name}: {DESCRIPTIONS[name]}" for name in side if name in DESCRIPTIONS] + [""]
    if context.get("reranker"):
        info = context["reranker"]
        top = ", ".join(f"`{k}` {100 * v:.0f}%" for k, v in list(info["importance"].items())[:6])
        lines += [f"The reranker learned from {info['training_cases']:,} training cases whose disease was among the "
                  f"first candidates; its features by share of gain: {top}.", ""]
    lines += ["Published anchors on phenopacket-store cases (phenotype only):", "", "| method | top-1 | top-3 | top-10 |",
              "|---|---|---|---|", *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in ANCHORS], "",
              f"![top-k curves]({rel(figures['topk'])})", "",
              "## What can be known about the case's disease", "",
              "Annotated by the knowledge; reported by training cases of another publication:", "",
              *_slice_table(metrics.get("by_knowledge", {}), "cases"), "",
              "## Calibration", "", f"![reliability]({rel(figures['calibration'])})", "",
              "## Rank of the true disease", "", f"![rank histogram]({rel(figures['hist'])})", "", _reach(ranks), "",
              "## By slice", "", "Strata count the training cases of the true disease from other publications "
              "(unseen: none; rare: fewer than the configured mid threshold; then mid, common):", "",
              *_slice_table(metrics.get("by_stratum", {}), "stratum"), "",
              *_slice_table(metrics.get("by_sex", {}), "sex"), "",
              *_slice_table(metrics.get("by_age_band", {}), "age band"), "",
              "| observed findings | cases | top-1 | top-10 |", "|---|---|---|---|"]
    for lo, hi in FINDING_BINS:
        m = ((frame["n_findings"] >= lo) & (frame["n_findings"] <= hi)).to_numpy()
        label = f"{lo}-{hi}" if hi < 10_000 else f"{lo}+"
        lines.append(f"| {label} | {m.sum():,} | {_pct(np.mean(ranks[m] <= 1) if m.any() else None)} | "
                     f"{_pct(np.mean(ranks[m] <= 10) if m.any() else None)} |")
    known = frame[frame["known"].astype(bool)].assign(missed=lambda f: f["rank"] > 10)
    worst = (known.groupby("true_disease").agg(cases=("rank", "size"), missed=("missed", "sum"),
                                              median=("rank", "median"), annotated=("annotated", "first"),
                                              seen=("seen_elsewhere", "mean"))
             .sort_values(["missed", "median"], ascending=False).head(15))
    lines += ["", "## Worst-ranked diseases the model knows", "",
              "| disease | cases | below rank 10 | median rank | annotated | with training cases elsewhere |",
              "|---|---|---|---|---|---|"]
    for disease, row in worst.iterrows():
        label = f"{disease} {names[disease]}" if disease in names else disease
        lines.append(f"| {label} | {int(row['cases'])} | {int(row['missed'])} | {row['median']:g} | "
                     f"{'yes' if str(row['annotated']) in ('True', 'true', '1') else 'no'} | {_pct(row['seen'])} |")
    top_col = next((c for c in frame.columns if c.startswith("top") and c[3:].isdigit()), None)
    if top_col:
        wrong = frame.loc[ranks > 1, top_col].astype(str).str.split(";").str[0].str.rsplit(":", n=1).str[0]
        hubs = wrong.value_counts().head(8)
        truth_counts = frame["true_disease"].value_counts()
        lines += ["", "Diseases most often ranked first for a case of another disease:", "",
                  "| disease | wrongly first | its own cases |", "|---|---|---|"]
        for disease, count in hubs.items():
            label = f"{disease} {names[disease]}" if disease in names else disease
            lines.append(f"| {label} | {count} | {truth_counts.get(disease, 0)} |")
    card = model_card(context)
    lines += ["", *card, ""]
    if context.get("params"):
        lines += ["## Parameters", "", "As fitted (conf/model/diagnostic.yaml):", "", "```json",
                  json.dumps(context["params"], indent=1, default=str), "```", ""]
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text("\n".join(lines))
    (report_path.parent / "model_card.md").write_text("\n".join(
        [f"# Model card: {context.get('model', FINAL)}", "", f"Generated with [the report]({report_path.name}); "
         "do not edit.", "", *card[2:], "", "## On the shared case reports (each scored by what never saw its "
         "publication)", "", *_slice_table({"all cases": overall}, "cases"), "",
         *_slice_table(metrics.get("by_sex", {}), "sex"), "", *_slice_table(metrics.get("by_age_band", {}), "age band"),
         ""]))
    return report_path


def model_card(context: Mapping) -> list[str]:
    universe = context.get("universe_size")
    return [
        "## Model card", "",
        "**Intended use.** Decision support for clinicians and researchers looking for the disease behind a "
        "patient's findings, rare genetic diseases first: from observed findings (HPO terms), excluded findings, "
        "sex and age or onset it gives calibrated probabilities over every disease the HPO knowledge annotates "
        f"(OMIM and Orphanet{f', {universe:,} diseases' if isinstance(universe, int) else ''}) and every disease "
        "its training cases report, so that the true one is among the first few to check. It is not a diagnosis "
        "and does not replace clinical judgement or genetic testing; a disease outside its universe can never be "
        "proposed.", "",
        f"**Data.** Knowledge: {context.get('knowledge_version', 'the HPO release in the knowledge tables')}. "
        f"Training: {context.get('training', 'the labelled sources of the data config')}. Each case is scored by "
        "what never saw its publication (profiles and neighbours leave it out; the reranker and the calibrator "
        "are those of another fold of publications). Parameters marked 'grid' in the configuration were chosen "
        "on the shared development cases; held-back cases from other publications are the independent check.", "",
        "**Limitations.** (1) Coverage: a case whose disease is neither annotated nor reported by another "
        "publication cannot be placed (the knowledge table shows how many). (2) Reading excluded findings as "
        "*mentions* helps on case reports, which list absent findings because they belong to the disease under "
        "discussion; that is how case reports are written, not a law of medicine: for clinic data set "
        "`weights.mention: 0` (the side-by-side table shows the cost), and the ranking can echo the clinician's "
        "own suspicion. (3) Training cases favour diseases that are often published. (4) Published cases are "
        "curated and mostly genetically solved; findings in a clinic are sparser and noisier. (5) Cases with few "
        "or unspecific findings rank poorly. (6) The probabilities are calibrated on case reports (the reliability "
        "diagram); about a fifth of their mass is kept for 'none of the listed diseases', so on another population "
        "check the calibration before trusting a number.",
    ]
