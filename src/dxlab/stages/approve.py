"""Stage `approve`: gate the selected model on its test metrics; register it as `champion` or `challenger`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dxlab.stages._runner import main_for, write_json
from dxlab.tracking.mlflow_tracking import log_dict, tracking_uri
from dxlab.tracking.registry import CHAMPION, champion_metrics, check_gates, register

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    import mlflow

    name, gates = cfg.model.name, cfg.approval
    metrics = json.loads((Path(cfg.paths.reports) / "metrics.json").read_text())[name]
    logged = Path(cfg.paths.models) / f"{name}.mlflow.json"
    if not logged.exists():
        raise FileNotFoundError(f"{logged} not found: the train stage logs models only with tracking.log_models=true")
    model_uri = json.loads(logged.read_text())["model_uri"]
    mlflow.set_tracking_uri(tracking_uri(cfg))  # mlflow.register_model uses the global store
    client = mlflow.MlflowClient(tracking_uri=tracking_uri(cfg))
    champion = champion_metrics(client, gates.registered_model)
    decision = check_gates(metrics, OmegaConf.to_container(gates.minimum), OmegaConf.to_container(gates.maximum),
                           champion, list(gates.no_regression.metrics), gates.no_regression.tolerance)
    alias = CHAMPION if decision.passed else gates.failing_alias
    version = None
    if alias:
        version = register(client, model_uri, gates.registered_model, metrics, decision, alias,
                           {"dxlab.model": name}).version
    result = {"model": name, "registered_model": gates.registered_model, "version": version, "alias": alias,
              **decision.as_dict()}
    log_dict(result, "approval.json")
    for line in decision.checks:
        log.info("gate %s", line)
    verdict = f"approved as {CHAMPION}" if decision.passed else f"refused ({'; '.join(decision.reasons)})"
    print(f"\n{name}: {verdict}; registered as {gates.registered_model} version {version} alias {alias}\n")
    write_json(result, Path(cfg.paths.reports) / "approval.json")
    return {"approved": int(decision.passed)}


def main() -> None:
    main_for("approve", run)


if __name__ == "__main__":
    main()
