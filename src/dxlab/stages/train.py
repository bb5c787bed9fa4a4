"""Stage `train`: fit the baseline and the selected model; save them and log each to MLflow."""

from __future__ import annotations

import logging
import time
import tracemalloc
from pathlib import Path

import joblib
from omegaconf import DictConfig, OmegaConf
from scipy import sparse

from dxlab.augment import extra_requirements, synthetic_rows_by_stratum
from dxlab.data.schema import read_parquet
from dxlab.models.build import fit_model, model_specs, save_model
from dxlab.stages._runner import main_for, write_json
from dxlab.tracking.mlflow_tracking import log_metrics, package_requirements, stage_run

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    processed = Path(cfg.paths.processed)
    train = read_parquet(processed / "train.parquet")
    featurizer = joblib.load(Path(cfg.paths.features) / "featurizer.joblib")
    x_train = sparse.load_npz(Path(cfg.paths.features) / "train.npz")
    augment = cfg.get("augment")
    metrics = {}
    for spec in model_specs(cfg):
        with stage_run("train", cfg, nested=True, run_name=f"train/{spec.name}", tags={"dxlab.model": spec.name}):
            tracemalloc.start()
            start = time.perf_counter()
            model = fit_model(spec, train, featurizer, x_train, augment)
            seconds = time.perf_counter() - start
            peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            path = save_model(model, cfg.paths.models, spec.name)
            metrics[spec.name] = {"fit_seconds": round(seconds, 3), "fit_peak_python_mb": round(peak_mb, 1),
                                  "n_classes": int(len(model.classes_))}
            synthetic = synthetic_rows_by_stratum(model, train["diagnosis"],
                                                  OmegaConf.to_container(cfg.evaluate.strata, resolve=True))
            if synthetic is not None:  # rows the augment sampler added, by stratum of the disease
                metrics[spec.name]["synthetic_rows"] = synthetic
            log_metrics(metrics[spec.name])
            if cfg.tracking.enabled and cfg.tracking.get("log_models", True):
                from dxlab.tracking.pyfunc import log_pyfunc

                info = log_pyfunc(path, spec.name, package_requirements() + extra_requirements(model))
                write_json({"model_uri": info.model_uri, "run_id": info.run_id},
                           Path(cfg.paths.models) / f"{spec.name}.mlflow.json")
            log.info("trained %s in %.1f s (%d diseases)", spec.name, seconds, len(model.classes_))
    write_json(metrics, Path(cfg.paths.reports) / "stages" / "train.json")
    return metrics


def main() -> None:
    main_for("train", run)


if __name__ == "__main__":
    main()
