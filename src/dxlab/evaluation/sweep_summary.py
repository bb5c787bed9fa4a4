"""Rank the members of a sweep by rare-stratum and overall metrics: Markdown + CSV beside the runs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def summarise_sweep(sweep_dir: str | Path, primary: str = "top3") -> pd.DataFrame:
    """One row per (member, model) with the overrides that made the member and its metrics by stratum, on the
    line that decides: the real case reports when the member has them, else the simulated test split."""
    rows = []
    for metrics_file in sorted(Path(sweep_dir).glob("*/reports/metrics.json")):
        member = metrics_file.parents[1]
        overrides_file = member / ".hydra" / "overrides.yaml"
        overrides = " ".join(OmegaConf.load(overrides_file)) if overrides_file.exists() else member.name
        train_file = member / "reports" / "stages" / "train.json"
        train = json.loads(train_file.read_text()) if train_file.exists() else {}
        config_file = member / "config.yaml"
        selected = OmegaConf.load(config_file).model.name if config_file.exists() else None
        for model, lines in json.loads(metrics_file.read_text()).items():
            if selected and model != selected:  # the baseline rides along in every member: count it once
                continue
            line = "case_reports" if "case_reports" in lines else next(iter(lines), None)
            if line is None:
                continue
            metrics = lines[line]
            row = {"member": member.name, "overrides": overrides, "model": model, "evaluated_on": line,
                   "cv": (metrics.get("cv") or {}).get("kind", "evaluate"),
                   "fit_seconds": train.get(model, {}).get("fit_seconds"),
                   "fit_peak_python_mb": train.get(model, {}).get("fit_peak_python_mb")}
            for stratum, values in {"overall": metrics["overall"], **metrics.get("by_stratum", {})}.items():
                for metric in (primary, "top1", "top10", "mrr", "ece"):
                    row[f"{stratum}_{metric}"] = (values or {}).get(metric)
            rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        sort = [c for c in (f"rare_{primary}", f"overall_{primary}") if c in table]
        table = table.sort_values(sort, ascending=False, na_position="last")
    return table.reset_index(drop=True)


def augmentation_verdict(table: pd.DataFrame, primary: str = "top3") -> list[str]:
    """Per model: does any augmentation beat `augment=none` on the rare stratum? Said with the numbers."""
    if "augment" not in table or table["augment"].isna().all():
        return []
    lines, col = [], f"rare_{primary}"
    for model, group in table.groupby("model"):
        base = group[group["augment"] == "none"]
        others = group[(group["augment"] != "none") & group[col].notna()]
        if base.empty or others.empty or base[col].isna().all():
            continue
        reference = base[col].max()
        best = others.loc[others[col].idxmax()]
        metrics = [c for c in group.columns if c.startswith(("overall_", "common_", "mid_", "rare_", "unseen_"))]
        if group[metrics].round(6).drop_duplicates().shape[0] == 1:
            lines.append(f"- {model}: every augmentation gives the same numbers as none ({reference:.3f}): "
                         "the model takes the patient table, samplers do not apply to it")
            continue
        if best[col] > reference:
            lines.append(f"- {model}: augment={best['augment']} beats none on rare {primary} "
                         f"({best[col]:.3f} vs {reference:.3f})")
        else:
            lines.append(f"- {model}: no augmentation beats none on rare {primary} (best {best['augment']} "
                         f"{best[col]:.3f} vs none {reference:.3f})")
    return lines


SHOWN = ["overrides", "model", "evaluated_on", "fit_seconds", "overall_top1", "overall_{p}", "overall_top10",
         "unseen_top1", "rare_top1", "rare_{p}", "mid_{p}", "common_{p}", "overall_ece"]


def write_summary(sweep_dir: str | Path, primary: str = "top3") -> Path | None:
    sweep_dir = Path(sweep_dir)
    table = summarise_sweep(sweep_dir, primary)
    if table.empty:
        return None
    table["augment"] = table["overrides"].str.extract(r"augment=(\S+)", expand=False).fillna("none")
    table.to_csv(sweep_dir / "summary.csv", index=False)
    on = ", ".join(sorted(set(table["evaluated_on"])))
    lines = [f"# Sweep summary ({len(table)} model runs on {on}), ranked by rare-stratum {primary}", "",
             "Winner per stratum:"]
    for stratum in ("common", "mid", "rare", "unseen", "overall"):
        col = f"{stratum}_{primary}"
        if col in table and table[col].notna().any():
            tie_break = f"{stratum}_top1" if f"{stratum}_top1" in table and primary != "top1" else col
            best = table.sort_values([col, tie_break], ascending=False, na_position="last").iloc[0]
            line = f"- **{stratum}** ({primary}): {best['model']} [{best['overrides']}] = {best[col]:.3f}"
            tied = table[(table[col] == best[col]) & (table["model"] != best["model"])]
            if len(tied) and tie_break != col and pd.notna(best[tie_break]):
                still = tied[tied[tie_break] == best[tie_break]]
                line += (f"; tied on {primary} with {tied['model'].nunique()} other model(s) "
                         f"({', '.join(sorted(tied['model'].unique()))}), top1 {best[tie_break]:.3f} "
                         + (f"also tied with {', '.join(sorted(still['model'].unique()))}" if len(still)
                            else "breaks the tie"))
            lines.append(line)
    verdict = augmentation_verdict(table, primary)
    if verdict:
        lines += ["", "Augmentation against none:", *verdict]
    shown = [c.format(p=primary) for c in SHOWN if c.format(p=primary) in table]
    lines += ["", table[shown].to_markdown(index=False, floatfmt=".3f")]
    path = sweep_dir / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path


class SweepSummary(Callback):
    """Hydra callback: after a multirun, write summary.md and summary.csv in the sweep folder."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        path = write_summary(config.hydra.sweep.dir, config.evaluate.get("primary_metric", "top3"))
        if path:
            print(path.read_text())
            log.info("sweep summary written to %s", path)
