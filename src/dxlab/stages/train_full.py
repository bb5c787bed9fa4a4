"""Stage `train_full`: the full-coverage model of conf/experiment/rare_disease_full.yaml (every annotated disease).

    python -m dxlab.stages.train_full [full_model.per_disease=20 ...]

params.yaml (the project's composed default) + the experiment file + overrides; writes
`full_model.out`/model.joblib, its summary, and `full_model.report`; one MLflow run (params, held-out
simulated top-k per database, the model file as an artifact).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import joblib
from omegaconf import DictConfig, OmegaConf

from dxlab.config import load_params, project_root
from dxlab.models.full_coverage import train_full_model
from dxlab.stages._runner import write_json
from dxlab.tracking.mlflow_tracking import log_artifact, log_metrics, stage_run

EXPERIMENT = Path("conf/experiment/rare_disease_full.yaml")
MODEL_FILE = "model.joblib"


def config(overrides: Sequence[str] = ()) -> DictConfig:
    """params.yaml merged with the experiment file, then the dotted overrides."""
    experiment = OmegaConf.load(project_root() / EXPERIMENT)
    experiment.pop("defaults", None)
    cfg = OmegaConf.merge(load_params(), experiment)
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides))) if overrides else cfg


def run(cfg: DictConfig) -> dict:
    if not (Path(cfg.paths.knowledge) / "terms.parquet").exists():
        raise SystemExit(f"train_full: no knowledge tables in {cfg.paths.knowledge}; run `dvc repro knowledge` first")
    settings = OmegaConf.to_container(cfg.full_model, resolve=True)
    model, summary = train_full_model(cfg.paths.knowledge, settings, int(cfg.seed))
    out = Path(settings["out"])
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, out / MODEL_FILE, compress=3)
    summary["settings"] = {k: v for k, v in settings.items() if k != "simulator"}
    write_json(summary, out / "summary.json")
    write_json({"held_out": summary["held_out"], "n_diseases": summary["n_diseases"],
                "n_train_patients": summary["n_train_patients"], "epochs": summary["epochs"],
                "timings": summary["timings"], "peak_rss_gb": summary["peak_rss_gb"]}, settings["report"])
    log_artifact(out / "summary.json")
    log_artifact(out / MODEL_FILE, "model")  # the fitted pipeline (joblib), for `mlflow ui` and a later registry
    held = summary["held_out"]
    print(f"\nFull-coverage model: {summary['n_diseases']} diseases, {summary['n_train_patients']} simulated "
          f"patients, {summary['epochs']} epochs, fit {summary['timings']['fit_s']:.0f} s, "
          f"peak memory {summary['peak_rss_gb']:.1f} GB")
    for group, m in held.items():
        print(f"  held-out simulated {group:6s} n={m['n']:6d}  top1 {m['top1']:.3f}  top3 {m['top3']:.3f}  "
              f"top10 {m['top10']:.3f}")
    return {f"held_out_{group}_{k}": v for group, m in held.items() for k, v in m.items() if k != "n"} | {
        "fit_seconds": summary["timings"]["fit_s"], "epochs": summary["epochs"]}


def main(argv: Sequence[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = config(list(sys.argv[1:] if argv is None else argv))
    tracking = OmegaConf.merge(cfg, {"tracking": {"experiment": f"{cfg.tracking.experiment}-rare-disease-full"}})
    with stage_run("train_full", tracking):
        metrics = run(cfg)
        log_metrics(metrics)
    return metrics


if __name__ == "__main__":
    main()
