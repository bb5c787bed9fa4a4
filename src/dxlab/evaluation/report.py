"""Human-readable tables of evaluation results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

STRATA = ("overall", "common", "mid", "rare")


def metrics_table(results: Mapping[str, Mapping[str, Mapping]], ks: Sequence[int] = (1, 3, 10)) -> str:
    """A Markdown table: one row per model and stratum."""
    columns = ["n_patients", "n_diseases", *[f"top{k}" for k in ks], "macro_f1", "macro_auc_roc",
               "macro_sensitivity", "macro_specificity", "ece"]
    header = "| model | stratum | " + " | ".join(columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 2)]
    for model, by_stratum in results.items():
        for stratum in STRATA:
            row = by_stratum.get(stratum, {})
            cells = []
            for col in columns:
                value = row.get(col)
                cells.append("-" if value is None else (str(value) if isinstance(value, int) else f"{value:.3f}"))
            lines.append(f"| {model} | {stratum} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


LINE_COLUMNS = ("n", "top1", "top3", "top10", "mrr", "ece", "brier")


def lines_table(results: Mapping[str, Mapping[str, Mapping]]) -> str:
    """A Markdown table: one row per model, evaluation line and slice (overall, then by stratum)."""
    lines = ["| model | evaluated on | slice | cases | top-1 | top-3 | top-10 | MRR | ECE | Brier |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for model, by_line in results.items():
        for line, metrics in by_line.items():
            rows = [("overall", metrics["overall"])] + list(metrics.get("by_stratum", {}).items())
            for name, row in rows:
                cells = []
                for col in LINE_COLUMNS:
                    value = row.get(col)
                    cells.append("-" if value is None else (f"{value:,}" if isinstance(value, int) else
                                                           f"{value:.3f}"))
                lines.append(f"| {model} | {line} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
