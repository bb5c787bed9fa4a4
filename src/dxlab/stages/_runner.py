"""Shared plumbing of the stage entry points: config, logging, MLflow run, metrics file."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import DictConfig

from dxlab.config import load_params
from dxlab.tracking.mlflow_tracking import log_metrics, stage_run

log = logging.getLogger("dxlab")


def main_for(stage: str, run: Callable[[DictConfig], dict], argv: Sequence[str] | None = None) -> dict:
    """`python -m dxlab.stages.<stage> [key=value ...]`: params.yaml + overrides, one MLflow run, metrics."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = load_params(list(sys.argv[1:] if argv is None else argv))
    with stage_run(stage, cfg):
        metrics = run(cfg)
        log_metrics(metrics or {})
    return metrics


def write_json(data, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=_plain) + "\n")
    return path


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
