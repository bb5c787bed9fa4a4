"""Hydra multirun over variants, in-process, each member an MLflow run.

    python -m dxlab.stages.sweep -m model=logreg,knowledge_ranker features.min_term_count=1,2
    python -m dxlab.stages.sweep -m cv=grouped 'model.train_sources=null' model=logreg,mlp augment=none,knowledge

A member reuses the data stages' outputs of the last `dvc repro` when its data, validation and split settings are
those of params.yaml; otherwise it runs them into its own folder. Features, training and evaluation always run
in the member's folder (multirun/<time>/<n>/), and the SweepSummary callback ranks the members at the end, on the
real case reports when the run has them. With `cv=grouped` a member is refitted per fold of publications on the
real cases instead of trained once (`dxlab.evaluation.cv.grouped_cross_validation`): the verdict on a rare-disease
strategy is then about real patients, whatever the model.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dxlab.config import load_params, project_root
from dxlab.tracking.mlflow_tracking import log_metrics, stage_run

log = logging.getLogger(__name__)
DATA_KEYS = ("knowledge", "data", "validate", "split", "seed")


def run_member(cfg: DictConfig, out_dir: Path) -> dict:
    """Run one variant into out_dir and return its metrics."""
    from dxlab.stages import evaluate, features, ingest, knowledge, preprocess, simulate, train, validate

    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    try:
        reference = load_params()
        same = {k: (OmegaConf.to_container(reference.get(k), resolve=True)
                    == OmegaConf.to_container(cfg.get(k), resolve=True))
                if isinstance(cfg.get(k), DictConfig) else reference.get(k) == cfg.get(k) for k in DATA_KEYS}
    except FileNotFoundError:
        same = dict.fromkeys(DATA_KEYS, False)
    same_data = all(same.values()) and (Path(cfg.paths.processed) / "train.parquet").exists()
    if not same["knowledge"]:  # other knowledge sources: the member builds its own tables
        cfg.paths.knowledge = str(out_dir / "data" / "knowledge")
    if not same_data:
        for key in ("raw", "interim", "quarantine", "processed"):
            # inside the member's folder, also when the project's paths are absolute (never the project's own)
            path = Path(cfg.paths[key])
            cfg.paths[key] = str(out_dir / ("data" / Path(path.name) if path.is_absolute() else path))
        if "simulator" in cfg.data and "hpo_cohort" in cfg.data.sources:  # the member simulates its own cohort
            cfg.data.sources.hpo_cohort.source.path = str(Path(cfg.paths.raw) / "hpo_cohort")
    for key in ("features", "models", "reports", "evaluation"):
        cfg.paths[key] = str(out_dir / Path(cfg.paths[key]).name)
    grouped = cfg.get("cv", {}).get("kind") == "grouped"
    stages = [] if grouped else [features, train, evaluate]  # grouped: each fold fits its own featurizer
    if not same_data:
        stages = [simulate, ingest, validate, preprocess, *stages]
        if not (Path(cfg.paths.knowledge) / "terms.parquet").exists():
            stages.insert(0, knowledge)
    with stage_run("sweep", cfg, run_name=f"sweep/{cfg.model.name}"):
        for stage in stages:
            result = stage.run(cfg)
        if grouped:
            result = grouped_member(cfg)
        # the evaluate stage returns each line's overall metrics, a grouped member the whole metrics
        log_metrics({m: {line: metrics.get("overall", metrics) for line, metrics in by_line.items()}
                     for m, by_line in result.items()})
    OmegaConf.save(cfg, out_dir / "config.yaml")
    return result


def grouped_member(cfg: DictConfig) -> dict:
    """The member's model refitted per fold of publications on each grouped source: reports/metrics.json (the
    evaluate stage's shape: model -> line -> metrics) and the fit time."""
    import time

    from omegaconf import OmegaConf as _OmegaConf

    from dxlab.data.schema import read_parquet
    from dxlab.evaluation.cv import grouped_cross_validation
    from dxlab.models.build import build_pipeline, model_specs
    from dxlab.stages._runner import write_json

    train = read_parquet(Path(cfg.paths.processed) / "train.parquet")
    lines = [n for n in cfg.data.sources if cfg.data.sources[n].get("evaluation", "holdout") == "grouped"]
    spec = next(s for s in model_specs(cfg) if s.role == "model")
    start = time.perf_counter()
    metrics = grouped_cross_validation(lambda: build_pipeline(cfg, spec), train, lines, spec.train_sources,
                                       int(cfg.cv.n_splits), int(cfg.seed),
                                       _OmegaConf.to_container(cfg.evaluate.strata), int(cfg.evaluate.calibration_bins))
    seconds = time.perf_counter() - start
    result = {spec.name: metrics}
    write_json(result, Path(cfg.paths.reports) / "metrics.json")
    write_json({spec.name: {"fit_seconds": round(seconds / max(int(cfg.cv.n_splits), 1), 2)}},
               Path(cfg.paths.reports) / "stages" / "train.json")
    return result


def main() -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig

    logging.basicConfig(level=logging.INFO)
    conf_dir = str(project_root() / "conf")

    @hydra.main(version_base="1.3", config_path=conf_dir, config_name="config")
    def _member(cfg: DictConfig) -> float | None:
        out_dir = Path(HydraConfig.get().runtime.output_dir)
        results = run_member(cfg, out_dir)
        lines = results.get(cfg.model.name, {})
        line = next(iter(lines.values()), {})  # the real cases first when the run has them
        return ((line.get("by_stratum") or {}).get("rare") or {}).get(cfg.evaluate.primary_metric)

    _member()


if __name__ == "__main__":
    sys.exit(main())
