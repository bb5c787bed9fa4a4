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
    """One row per (member, model) with the overrides that made the member and its metrics by stratum."""
    rows = []
    for metrics_file in sorted(Path(sweep_dir).glob("*/reports/metrics.json")):
        member = metrics_file.parents[1]
        overrides_file = member / ".hydra" / "overrides.yaml"
        overrides = " ".join(OmegaConf.load(overrides_file)) if overrides_file.exists() else member.name
        train_file = member / "reports" / "stages" / "train.json"
        train = json.loads(train_file.read_text()) if train_file.exists() else {}
        for model, strata in json.loads(metrics_file.read_text()).items():
            row = {"member": member.name, "overrides": overrides, "model": model,
                   "fit_seconds": train.get(model, {}).get("fit_seconds"),
                   "fit_peak_python_mb": train.get(model, {}).get("fit_peak_python_mb")}
            for stratum, values in strata.items():
                for metric in (primary, "top1", "macro_f1", "macro_auc_roc", "ece"):
                    row[f"{stratum}_{metric}"] = (values or {}).get(metric)
            rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        table = table.sort_values([f"rare_{primary}", f"overall_{primary}"], ascending=False, na_position="last")
    return table.reset_index(drop=True)


def write_summary(sweep_dir: str | Path, primary: str = "top3") -> Path | None:
    sweep_dir = Path(sweep_dir)
    table = summarise_sweep(sweep_dir, primary)
    if table.empty:
        return None
    table.to_csv(sweep_dir / "summary.csv", index=False)
    lines = [f"# Sweep summary ({len(table)} model runs), ranked by rare-stratum {primary}", ""]
    for stratum in ("common", "mid", "rare", "overall"):
        col = f"{stratum}_{primary}"
        if col in table and table[col].notna().any():
            best = table.loc[table[col].idxmax()]
            lines.append(f"- best on **{stratum}** ({primary}): {best['model']} [{best['overrides']}] = {best[col]:.3f}")
    lines += ["", table.to_markdown(index=False, floatfmt=".3f")]
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
