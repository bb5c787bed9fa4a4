"""Stage `ddxplus_cv`: stratified k-fold cross-validation of the model variants on DDXPlus patients.

    python -m dxlab.stages.ddxplus_cv [ddxplus.models=[logreg,rf]]      (or `make ddxplus`)

Ingests and validates the DDXPlus file into `ddxplus.work` (bad rows quarantined there), then cross-validates each
model of `ddxplus.models` over all validated patients. GTPA@1 of the DDXPlus paper is the top-1 accuracy of the
ground-truth pathology. Writes `<out>/metrics.json`, `per_pathology.csv` (recall against frequency per model),
`summary.md` and `figures/recall_vs_frequency.png`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from dxlab.config import compose
from dxlab.data.schema import read_parquet
from dxlab.data.sources import feed_settings
from dxlab.evaluation.cv import cross_validate
from dxlab.models.build import ModelSpec, build_pipeline
from dxlab.stages._runner import main_for, write_json
from dxlab.tracking.mlflow_tracking import log_metrics, stage_run

log = logging.getLogger(__name__)
HEADLINE = ("top1", "top3", "macro_f1", "macro_sensitivity", "ece")


def ddxplus_config(cfg: DictConfig, model: str) -> DictConfig:
    """The composed config of one DDXPlus variant, its data paths inside `ddxplus.work`."""
    d = cfg.ddxplus
    variant = compose([*d.data_overrides, f"model={model}"])
    variant.seed = cfg.seed
    for key in ("interim", "quarantine", "processed", "features", "models"):
        variant.paths[key] = str(Path(d.work) / Path(cfg.paths[key]).name)
    variant.paths.reports = str(Path(d.out))
    variant.paths.knowledge = cfg.paths.knowledge
    variant.tracking = cfg.tracking
    return variant


def run(cfg: DictConfig) -> dict:
    from dxlab.stages import ingest, validate

    d = cfg.ddxplus
    out = Path(d.out)
    first = ddxplus_config(cfg, d.models[0])
    path = feed_settings(first).source.path
    if not Path(path).exists():
        print(f"ddxplus_cv: {path} not found, skipped (set data.sources.ddxplus.source.path in conf/data/ddxplus.yaml)")
        write_json({"skipped": f"{path} not found"}, out / "metrics.json")
        return {}
    ingest.run(first)
    validate.run(first)
    patients = read_parquet(Path(first.paths.interim) / "patients.parquet")
    y = patients["diagnosis"].astype(str).to_numpy()
    thresholds = OmegaConf.to_container(first.evaluate.strata)
    summary, per_pathology = {}, {}
    for name in d.models:
        variant = ddxplus_config(cfg, name)
        if variant.model.get("requires_vocabulary") not in (None, variant.data.vocabulary):
            log.warning("ddxplus_cv: %s needs the %s vocabulary, skipped", name, variant.model.requires_vocabulary)
            continue
        spec = ModelSpec(name, variant.model)

        def on_fold(k: int, result: dict, name: str = name) -> None:
            with stage_run("ddxplus_cv", variant, nested=True, run_name=f"ddxplus_cv/{name}/fold-{k}",
                           tags={"dxlab.model": name, "dxlab.fold": str(k)}):
                log_metrics(result)

        result = cross_validate(lambda: build_pipeline(variant, spec), patients, y, int(d.n_splits), int(cfg.seed),
                                True, thresholds, tuple(first.evaluate.ks), on_fold)
        summary[name] = {**result.summary(), "cv": result.report}
        oof = result.oof
        predicted = oof.columns[2:][np.argmax(oof.iloc[:, 2:].to_numpy(), axis=1)]
        hits = pd.Series(predicted == oof["diagnosis"].to_numpy()).groupby(oof["diagnosis"].to_numpy()).mean()
        per_pathology[name] = hits
    counts = pd.Series(y).value_counts()
    table = pd.DataFrame({"patients": counts, **{f"recall_{m}": r for m, r in per_pathology.items()}})
    table.index.name = "pathology"
    out.mkdir(parents=True, exist_ok=True)
    table.sort_values("patients", ascending=False).round(4).to_csv(out / "per_pathology.csv")
    write_json({"n_patients": int(len(patients)), "n_pathologies": int(len(counts)), "models": summary},
               out / "metrics.json")
    (out / "summary.md").write_text(summary_markdown(summary, len(patients), len(counts)))
    _plot(table, out / "figures" / "recall_vs_frequency.png")
    print("\n" + (out / "summary.md").read_text())
    return {m: {s: {k: v for k, v in r.items() if k.endswith("_mean")} for s, r in res.items() if s != "cv"}
            for m, res in summary.items()}


def summary_markdown(summary: dict, n_patients: int, n_pathologies: int) -> str:
    lines = [f"DDXPlus, {n_patients:,} validated patients, {n_pathologies} pathologies; stratified "
             f"{next(iter(summary.values()))['cv']['n_splits'] if summary else '?'}-fold CV, mean ± sd over folds "
             "(strata by training patients of the pathology: common ≥ 100, mid 10–99, rare < 10).", "",
             "| model | stratum | GTPA@1 (top-1) | top-3 | macro F1 | macro sensitivity | ECE |",
             "|---|---|---|---|---|---|---|"]
    for model, result in summary.items():
        for stratum in ("overall", "common", "mid", "rare"):
            r = result.get(stratum) or {}
            if "top1_mean" not in r:
                continue
            cells = [f"{r[f'{k}_mean']:.3f} ± {r[f'{k}_std']:.3f}" if f"{k}_mean" in r else "" for k in HEADLINE]
            lines.append(f"| {model} | {stratum} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    for column in [c for c in table.columns if c.startswith("recall_")]:
        ax.scatter(table["patients"], table[column], s=14, alpha=0.7, label=column.removeprefix("recall_"))
    ax.set_xscale("log")
    ax.set_xlabel("patients with the pathology (log)")
    ax.set_ylabel("out-of-fold recall (top-1)")
    ax.set_title("DDXPlus: recall per pathology against its frequency")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    main_for("ddxplus_cv", run)


if __name__ == "__main__":
    main()
