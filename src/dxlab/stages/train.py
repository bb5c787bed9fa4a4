"""Stage `train`: fit the baseline and the selected model on the training rows of every source; save them; log
each to MLflow with the sources that trained it (MLflow datasets with digests) and as a pyfunc."""

from __future__ import annotations

import logging
import time
import tracemalloc
from pathlib import Path

import joblib
from omegaconf import DictConfig, OmegaConf
from scipy import sparse

from dxlab.augment import synthetic_rows_by_stratum
from dxlab.data.schema import read_parquet
from dxlab.models.build import fit_model, model_specs, save_model
from dxlab.stages._runner import main_for, write_json
from dxlab.tracking.mlflow_tracking import log_metrics, log_training_sources, package_requirements, stage_run

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    processed = Path(cfg.paths.processed)
    train = read_parquet(processed / "train.parquet")
    augment = cfg.get("augment")
    metrics = {}
    for spec in model_specs(cfg):
        rows = spec.training_rows(train)
        featurizer = x_train = None
        if spec.input == "features":  # the features stage's matrix: the feed's training rows, in order
            featurizer = joblib.load(Path(cfg.paths.features) / "featurizer.joblib")
            x_train = sparse.load_npz(Path(cfg.paths.features) / "train.npz")
        sources = rows["source"].value_counts().to_dict()
        with stage_run("train", cfg, nested=True, run_name=f"train/{spec.name}", tags={"dxlab.model": spec.name}):
            log_training_sources(rows, cfg)
            tracemalloc.start()
            start = time.perf_counter()
            model = fit_model(spec, rows, featurizer, x_train, augment)
            seconds = time.perf_counter() - start
            peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            path = save_model(model, cfg.paths.models, spec.name)
            metrics[spec.name] = {"fit_seconds": round(seconds, 3), "fit_peak_python_mb": round(peak_mb, 1),
                                  "n_classes": int(len(model.classes_)), "n_training_rows": int(len(rows)),
                                  "training_rows_by_source": {str(k): int(v) for k, v in sources.items()}}
            synthetic = synthetic_rows_by_stratum(model, rows["diagnosis"],
                                                  OmegaConf.to_container(cfg.evaluate.strata, resolve=True))
            if synthetic is not None:  # rows the augment sampler added, by stratum of the disease
                metrics[spec.name]["synthetic_rows"] = synthetic
            log_metrics({k: v for k, v in metrics[spec.name].items() if k != "training_rows_by_source"})
            if cfg.tracking.enabled and cfg.tracking.get("log_models", True):
                from dxlab.tracking.pyfunc import log_pyfunc

                info = log_pyfunc(path, spec.name, package_requirements())
                write_json({"model_uri": info.model_uri, "run_id": info.run_id},
                           Path(cfg.paths.models) / f"{spec.name}.mlflow.json")
        trained_on = ", ".join(f"{name} ({n:,} rows)" for name, n in sources.items())
        scope = ("" if spec.train_sources is None else
                 f" -- only {', '.join(spec.train_sources)}: it cannot rank the full universe")
        print(f"train: {spec.name} ({spec.role}) on {trained_on}{scope}; {len(model.classes_):,} diseases, "
              f"{seconds:.0f} s")
    write_json(metrics, Path(cfg.paths.reports) / "stages" / "train.json")
    return metrics


def main() -> None:
    main_for("train", run)


if __name__ == "__main__":
    main()
