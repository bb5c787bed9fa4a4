"""Stage `approve`: gate the selected model on its evaluation (real cases first); register it as `champion` or
`challenger`, with what it knows (universe, knowledge version) and what it was validated on as version tags."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dxlab.models.build import load_model
from dxlab.stages._runner import main_for, write_json
from dxlab.tracking.mlflow_tracking import log_dict, tracking_uri
from dxlab.tracking.registry import CHAMPION, champion_metrics, check_gates, register

log = logging.getLogger(__name__)


def gate_metrics(metrics: dict) -> dict:
    """What the gates and the version tags read of a model's evaluation: overall and by stratum of each line."""
    return {line: {k: v for k, v in m.items() if k in ("overall", "by_stratum")} for line, m in metrics.items()}


def run(cfg: DictConfig) -> dict:
    import mlflow

    name, gates = cfg.model.name, cfg.approval
    metrics = gate_metrics(json.loads((Path(cfg.paths.reports) / "metrics.json").read_text())[name])
    logged = Path(cfg.paths.models) / f"{name}.mlflow.json"
    if not logged.exists():
        raise FileNotFoundError(f"{logged} not found: the train stage logs models only with tracking.log_models=true")
    model_uri = json.loads(logged.read_text())["model_uri"]
    mlflow.set_tracking_uri(tracking_uri(cfg))  # mlflow.register_model uses the global store
    client = mlflow.MlflowClient(tracking_uri=tracking_uri(cfg))
    champion = champion_metrics(client, gates.registered_model)
    regression = OmegaConf.to_container(gates.no_regression)
    decision = check_gates(metrics, OmegaConf.to_container(gates.minimum), OmegaConf.to_container(gates.maximum),
                           champion, regression.get("higher_is_better", []), regression.get("lower_is_better", []),
                           regression.get("tolerance", 0.0))
    alias = CHAMPION if decision.passed else gates.failing_alias
    model = load_model(cfg.paths.models, name)
    tags = {"dxlab.model": name, "dxlab.universe_size": str(len(model.classes_)),
            "dxlab.validated_on": ", ".join(metrics) or "nothing"}
    if hasattr(model, "knowledge_version_"):
        tags["dxlab.knowledge_version"] = model.knowledge_version_
    if hasattr(model, "training_sources_"):
        tags["dxlab.training_sources"] = json.dumps(model.training_sources_)
    version = None
    if alias:
        version = register(client, model_uri, gates.registered_model, metrics, decision, alias, tags).version
    result = {"model": name, "registered_model": gates.registered_model, "version": version, "alias": alias,
              "validated_on": list(metrics), **decision.as_dict()}
    log_dict(result, "approval.json")
    for line in decision.checks:
        log.info("gate %s", line)
    verdict = f"approved as {CHAMPION}" if decision.passed else f"refused ({'; '.join(decision.reasons)})"
    if decision.not_measured:
        verdict += f"; not measured: {', '.join(decision.not_measured)} (validated on {', '.join(metrics)} only)"
    print(f"\n{name}: {verdict}; registered as {gates.registered_model} version {version} alias {alias}\n")
    write_json(result, Path(cfg.paths.reports) / "approval.json")
    return {"approved": int(decision.passed)}


def main() -> None:
    main_for("approve", run)


if __name__ == "__main__":
    main()
