"""Stage `crossval`: stratified k-fold CV of the baseline and the model pipelines on the training part."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dxlab.data.schema import read_parquet
from dxlab.evaluation.cv import cross_validate
from dxlab.models.build import build_pipeline, model_specs
from dxlab.stages._runner import main_for, write_json
from dxlab.tracking.mlflow_tracking import log_metrics, stage_run

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    train = read_parquet(Path(cfg.paths.processed) / "train.parquet")
    y = train["diagnosis"].astype(str).to_numpy()
    out = Path(cfg.paths.reports) / "cv"
    out.mkdir(parents=True, exist_ok=True)
    thresholds = OmegaConf.to_container(cfg.evaluate.strata)
    summary, report = {}, {}
    for spec in model_specs(cfg):
        def on_fold(k: int, result: dict, name: str = spec.name) -> None:
            with stage_run("crossval", cfg, nested=True, run_name=f"crossval/{name}/fold-{k}",
                           tags={"dxlab.model": name, "dxlab.fold": str(k)}):
                log_metrics(result)
            log.info("%s fold %d: top3 %.3f (rare %s)", name, k, result["overall"]["top3"],
                     result["rare"].get("top3"))

        result = cross_validate(lambda s=spec: build_pipeline(cfg, s), train, y, cfg.cv.n_splits, cfg.seed,
                                cfg.cv.shuffle, thresholds, tuple(cfg.evaluate.ks), on_fold)
        summary[spec.name] = result.summary()
        report[spec.name] = result.report
        (out / "oof").mkdir(exist_ok=True)
        result.oof.to_parquet(out / "oof" / f"{spec.role}.parquet", index=False)
    write_json(summary, out / "metrics.json")
    write_json(report, Path(cfg.paths.reports) / "stages" / "crossval.json")
    return summary


def main() -> None:
    main_for("crossval", run)


if __name__ == "__main__":
    main()
