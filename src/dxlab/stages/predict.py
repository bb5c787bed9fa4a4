"""Stage `predict`: score the simulator's newest days with the champion model (files already scored are skipped)."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from dxlab.serving.batch import predict_from_config
from dxlab.stages._runner import main_for, write_json

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    summary = predict_from_config(cfg, newest_days=int(cfg.serve.batch.newest_days), progress=False)
    headline = {k: summary[k] for k in ("model", "model_version", "n_files_scored", "n_files_skipped", "n_rows",
                                        "n_scored", "n_quarantined", "n_anomalies", "seconds", "patients_per_second")}
    write_json(headline, Path(cfg.paths.reports) / "stages" / "predict.json")
    return {k: v for k, v in headline.items() if isinstance(v, (int, float)) and v is not None}


def main() -> None:
    main_for("predict", run)


if __name__ == "__main__":
    main()
