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
