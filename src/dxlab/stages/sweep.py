"""Hydra multirun over variants, in-process, each member an MLflow run.

    python -m dxlab.stages.sweep -m model=logreg,knowledge_ranker features.min_term_count=1,2

A member reuses the data stages' outputs of the last `dvc repro` when its data, validation and split settings are
those of params.yaml; otherwise it runs them into its own folder. Features, training and evaluation always run
in the member's folder (multirun/<time>/<n>/), and the SweepSummary callback ranks the members at the end.
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
        same_data = all(OmegaConf.to_container(reference.get(k), resolve=True) == OmegaConf.to_container(cfg.get(k), resolve=True)
                        if isinstance(cfg.get(k), DictConfig) else reference.get(k) == cfg.get(k) for k in DATA_KEYS)
    except FileNotFoundError:
        same_data = False
    same_data = same_data and (Path(cfg.paths.processed) / "train.parquet").exists()
    if not same_data:
        for key in ("raw", "interim", "quarantine", "processed"):
            cfg.paths[key] = str(out_dir / cfg.paths[key])
        cfg.data.source.path = str(Path(cfg.paths.raw) / "hpo_cohort") if "simulator" in cfg.data else cfg.data.source.path
    for key in ("features", "models", "reports"):
        cfg.paths[key] = str(out_dir / Path(cfg.paths[key]).name)
    stages = [features, train, evaluate]
    if not same_data:
        stages = [simulate, ingest, validate, preprocess, *stages]
        if not (Path(cfg.paths.knowledge) / "terms.parquet").exists():
            stages.insert(0, knowledge)
    with stage_run("sweep", cfg, run_name=f"sweep/{cfg.model.name}"):
        for stage in stages:
            result = stage.run(cfg)
        log_metrics(result)
    OmegaConf.save(cfg, out_dir / "config.yaml")
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
        model = results.get(cfg.model.name, {})
        return (model.get("rare") or {}).get(cfg.evaluate.primary_metric)

    _member()


if __name__ == "__main__":
    sys.exit(main())
